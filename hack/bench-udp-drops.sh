#!/usr/bin/env bash
# Where do the datagrams of a UDP blast through a published port get dropped, and who spends
# the CPU? One `iperf3 -u -b 0 -l 1400` run per kit, counters read before and after.
#
#   sudo bash hack/bench-udp-drops.sh [SECONDS] [KIT...]      (as root; default 5, "ours")
#
# KIT is `ours` (target/release/rootlesskit, or RK_OURS), `ref` (/usr/bin/rootlesskit), `direct`
# (iperf3 server on the host, no forwarder) or a path to a rootlesskit-compatible binary. Each
# kit runs, as the test user, `KIT --net=slirp4netns --disable-host-loopback --port-driver=builtin
# -p 127.0.0.1:P:5201/tcp -p 127.0.0.1:P:5201/udp iperf3 -s -p 5201`; the client (root, host)
# runs `iperf3 -c 127.0.0.1 -p P -u -b 0 -l 1400 -t SECONDS -J` (see RK_UDP_RATE).
#
# Reported per kit:
#   - datagrams: sent by the client (iperf3), received by the server (iperf3), lost (iperf3);
#   - drops per place: `Udp: RcvbufErrors` (and InErrors) of /proc/net/snmp in the host netns
#     (the published port socket: the forwarder did not read fast enough) and in the child netns
#     (read through /proc/<server pid>/net/snmp: the server did not read fast enough), plus the
#     `drops` column of /proc/net/udp for the two sockets bound to the port;
#   - CPU seconds (schedstat run time, so softirq work done in a task's context is charged to it)
#     of the client, the forwarder (the kit's process tree minus the server) and the server, the
#     machine's busy CPU seconds (/proc/stat) out of 2 x wall, and CPU microseconds per datagram
#     (client per datagram sent, forwarder per datagram it delivered to the namespace, server per
#     datagram received); voluntary context switches (wake-ups) of the forwarder per datagram.
#
# Knobs: RK_OURS, RK_BENCH_USER (default rkbench, created by portfwd_bench.py; rktest works too),
# RK_PERF=DIR: also `perf record -e cpu-clock -g` the forwarder (DIR/KIT-fwd.data) and the
# server (DIR/KIT-server.data) during the run; RK_SYSCALLS=1: count the forwarder's
# recvmmsg/sendmsg/sendmmsg/epoll_wait calls (perf stat on syscall tracepoints) per datagram;
# RK_UDP_RATE=1G: offered rate (iperf3 -b) instead of 0 (unlimited), to compare CPU per datagram
# at a load that saturates nothing.
# Wrap it in `flock /tmp/rk-bench.lock` like every benchmark on the shared machine.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-5}
shift || true
[ $# -gt 0 ] || set -- ours
user=${RK_BENCH_USER:-rkbench}
[ "$(id -u)" = 0 ] || { echo "bench-udp-drops.sh: run as root" >&2; exit 1; }
id "$user" >/dev/null 2>&1 || { echo "bench-udp-drops.sh: no user $user (RK_BENCH_USER)" >&2; exit 1; }
command -v iperf3 >/dev/null || { echo "bench-udp-drops.sh: iperf3 missing: apt-get install iperf3" >&2; exit 1; }
kits=()
for k in "$@"; do
	case $k in
	ours) kits+=("ours=$(readlink -f "${RK_OURS:-target/release/rootlesskit}")") ;;
	ref) kits+=("ref=/usr/bin/rootlesskit") ;;
	direct) kits+=("direct=") ;;
	*) kits+=("$(basename "$k")=$(readlink -f "$k")") ;;
	esac
done

exec python3 - "$secs" "$user" "${kits[@]}" <<'EOF'
import json, os, pwd, signal, socket, subprocess, sys, tempfile, time

secs, user, kits = int(sys.argv[1]), sys.argv[2], [k.split("=", 1) for k in sys.argv[3:]]
HZ = os.sysconf("SC_CLK_TCK")

def free_port():
    # TCP and UDP both free on 127.0.0.1
    while True:
        t = socket.socket(); t.bind(("127.0.0.1", 0)); p = t.getsockname()[1]
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            u.bind(("127.0.0.1", p)); return p
        except OSError:
            pass
        finally:
            t.close(); u.close()

def snmp_udp(path):
    lines = [l.split() for l in open(path) if l.startswith("Udp:")]
    return dict(zip(lines[0][1:], map(int, lines[1][1:])))

def udp_drops(path, port):
    """drops column of the sockets bound to `port`."""
    out = 0
    for l in open(path).readlines()[1:]:
        f = l.split()
        if int(f[1].split(":")[1], 16) == port:
            out += int(f[-1])
    return out

def tree(root):
    kids = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                st = open(f"/proc/{d}/stat").read()
            except OSError:
                continue
            rp = st.rindex(")")
            kids.setdefault(int(st[rp + 2:].split()[1]), []).append(int(d))
    out, todo = [], [root]
    while todo:
        p = todo.pop(); out.append(p); todo += kids.get(p, [])
    return out

def comm(pid):
    try:
        return open(f"/proc/{pid}/comm").read().strip()
    except OSError:
        return ""

def task_cpu(pids):
    """(run ns, voluntary ctx switches) summed over all threads of pids."""
    ns = vcs = 0
    for p in pids:
        try:
            tids = os.listdir(f"/proc/{p}/task")
        except OSError:
            continue
        for t in tids:
            try:
                ns += int(open(f"/proc/{p}/task/{t}/schedstat").read().split()[0])
                for l in open(f"/proc/{p}/task/{t}/status"):
                    if l.startswith("voluntary_ctxt_switches"):
                        vcs += int(l.split()[1])
            except OSError:
                pass
    return ns, vcs

def cpu_busy():
    f = list(map(int, open("/proc/stat").readline().split()[1:]))
    idle = f[3] + f[4]
    return (sum(f[:8]) - idle) / HZ, f[7] / HZ  # busy (incl. steal), steal

def wait_udp_port(path, port, timeout=20):
    end = time.time() + timeout
    while time.time() < end:
        for l in open(path).readlines()[1:]:
            if int(l.split()[1].split(":")[1], 16) == port:
                return True
        time.sleep(0.1)
    return False

def run_kit(name, kit):
    port = free_port()
    work = tempfile.mkdtemp(prefix="rk-udpdrops-")
    os.chmod(work, 0o777)
    if kit:
        cmd = [kit, "--net=slirp4netns", "--disable-host-loopback", "--port-driver=builtin",
               f"--state-dir={work}/state",
               "-p", f"127.0.0.1:{port}:5201/tcp", "-p", f"127.0.0.1:{port}:5201/udp",
               "iperf3", "-s", "-p", "5201"]
    else:
        cmd = ["iperf3", "-s", "-p", str(port)]
    env = dict(os.environ, XDG_RUNTIME_DIR=work, HOME=work)
    log = open(f"{work}/kit.log", "w")
    kp = subprocess.Popen(["runuser", "-u", user, "--"] + cmd, cwd=work, env=env, stdout=log,
                          stderr=log, start_new_session=True)
    try:
        server = None
        end = time.time() + 30
        while time.time() < end and server is None:
            for p in tree(kp.pid):
                if comm(p) == "iperf3":
                    server = p
            time.sleep(0.2)
        if server is None:
            raise RuntimeError(f"{name}: no iperf3 server: " + open(f"{work}/kit.log").read()[-1000:])
        # the server listens on TCP 5201 in its netns, the forwarder binds the host port
        end = time.time() + 30
        while time.time() < end:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.2)
        time.sleep(0.5)
        fwd = [p for p in tree(kp.pid) if p != server and comm(p) not in ("runuser", "iperf3")]
        hs, ns_ = "/proc/net/snmp", f"/proc/{server}/net/snmp"
        hu, nu = "/proc/net/udp", f"/proc/{server}/net/udp"
        before = (snmp_udp(hs), snmp_udp(ns_) if kit else None, udp_drops(hu, port),
                  udp_drops(nu, 5201) if kit else 0, task_cpu(fwd), task_cpu([server]), cpu_busy())
        perfs = []
        pdir = os.environ.get("RK_PERF")
        if pdir and kit:
            os.makedirs(pdir, exist_ok=True)
            for what, pids in (("fwd", fwd), ("server", [server])):
                perfs.append(subprocess.Popen(
                    ["perf", "record", "-q", "-e", "cpu-clock", "-g", "-o", f"{pdir}/{name}-{what}.data",
                     "-p", ",".join(map(str, pids)), "--", "sleep", str(secs)],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        if os.environ.get("RK_SYSCALLS") and kit:
            ev = ",".join(f"syscalls:sys_enter_{c}" for c in
                          ("recvmmsg", "recvfrom", "sendmsg", "sendmmsg", "sendto", "epoll_wait", "clock_nanosleep"))
            perfs.append(subprocess.Popen(
                ["perf", "stat", "-x", ",", "-e", ev, "-p", ",".join(map(str, fwd)), "--",
                 "sleep", str(secs)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True))
        t0 = time.time()
        cp = subprocess.Popen(["iperf3", "-c", "127.0.0.1", "-p", str(port), "-u", "-b", os.environ.get("RK_UDP_RATE", "0"),
                               "-l", "1400", "-t", str(secs), "-J"], stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT)
        out = cp.stdout.read()
        _, status, ru = os.wait4(cp.pid, 0)
        wall = time.time() - t0
        calls = {}
        for pp in perfs:
            _, err = pp.communicate()
            for l in (err or "").splitlines():
                f = l.split(",")
                if len(f) > 2 and f[2].startswith("syscalls:sys_enter_") and f[0].isdigit():
                    calls[f[2][len("syscalls:sys_enter_"):]] = int(f[0])
        after = (snmp_udp(hs), snmp_udp(ns_) if kit else None, udp_drops(hu, port),
                 udp_drops(nu, 5201) if kit else 0, task_cpu(fwd), task_cpu([server]), cpu_busy())
        j = json.loads(out[out.index(b"{"):])
        if "error" in j:
            raise RuntimeError(j["error"])
        s = j["end"]["sum"]
        sent, lost = s["packets"], s["lost_packets"]
        got = sent - lost
        d = lambda i, k: after[i][k] - before[i][k]
        client_cpu = ru.ru_utime + ru.ru_stime
        fwd_cpu = (after[4][0] - before[4][0]) / 1e9
        fwd_vcs = after[4][1] - before[4][1]
        srv_cpu = (after[5][0] - before[5][0]) / 1e9
        busy = after[6][0] - before[6][0]
        steal = after[6][1] - before[6][1]
        r = {"kit": name, "wall_s": round(wall, 2), "sent": sent, "received": got,
             "lost_pct": round(100 * lost / max(sent, 1), 1),
             "gbps_received": round(got * 1400 * 8 / secs / 1e9, 2),
             "host_RcvbufErrors": d(0, "RcvbufErrors"), "host_InErrors": d(0, "InErrors"),
             "host_InDatagrams": d(0, "InDatagrams"), "host_port_sock_drops": after[2] - before[2]}
        if kit:
            delivered = d(1, "InDatagrams") + d(1, "RcvbufErrors")
            r.update({"ns_RcvbufErrors": d(1, "RcvbufErrors"), "ns_InErrors": d(1, "InErrors"),
                      "ns_InDatagrams": d(1, "InDatagrams"),
                      "ns_server_sock_drops": after[3] - before[3],
                      "fwd_delivered": delivered})
        r.update({"cpu_client_s": round(client_cpu, 2), "cpu_fwd_s": round(fwd_cpu, 2),
                  "cpu_server_s": round(srv_cpu, 2), "cpu_busy_s": round(busy, 2),
                  "cpu_steal_s": round(steal, 2), "cpu_avail_s": round(2 * wall, 2),
                  "us_per_dgram_client": round(1e6 * client_cpu / max(sent, 1), 2),
                  "us_per_dgram_server": round(1e6 * srv_cpu / max(
                      (r.get("ns_InDatagrams") if kit else got) or 1, 1), 2)})
        if kit:
            r["us_per_dgram_fwd"] = round(1e6 * fwd_cpu / max(r["fwd_delivered"], 1), 2)
            r["fwd_wakeups_per_1k_dgram"] = round(1000 * fwd_vcs / max(r["fwd_delivered"], 1), 2)
            if calls:
                r["fwd_calls_per_1k_dgram"] = {k: round(1000 * v / max(r["fwd_delivered"], 1), 2)
                                               for k, v in calls.items()}
        return r
    finally:
        try:
            os.killpg(kp.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            kp.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(kp.pid, signal.SIGKILL); kp.wait()
        subprocess.run(["rm", "-rf", work])

for name, kit in kits:
    r = run_kit(name, kit)
    print(json.dumps(r))
    sys.stdout.flush()
EOF
