#!/usr/bin/env bash
# Idle forwarded connections: memory and threads of the rootlesskit parent (the forwarder)
# holding N idle TCP connections through a builtin-driver port.
#
#   sudo bash hack/bench-idle.sh [N] [IDLE_SECONDS]        (as root; default 9000 and 10)
#
# For every kit (our binary once per forwarder backend, then the Go reference) it starts, as
# the test user, `rootlesskit --net=slirp4netns --port-driver=builtin -p 127.0.0.1:P:P/tcp
# python3 SERVER` where SERVER is a single-threaded selectors echo server inside the namespace.
# The client (root, on the host, RLIMIT_NOFILE raised) then
#   1. opens N TCP connections to 127.0.0.1:P and waits until the server has accepted all N
#      (no byte sent yet), idles IDLE_SECONDS and samples the parent ("fresh");
#   2. sends 16 distinct bytes on every connection and checks the echo byte for byte (both
#      directions through the forwarder), idles IDLE_SECONDS again and samples ("after echo");
#   3. checks the echo once more, closes everything and samples ("closed").
# A sample is the parent's VmRSS (/proc/PID/status), Pss (/proc/PID/smaps_rollup), its threads
# (/proc/PID/task; io_uring's kernel io-wq workers "iou-wrk-*" are counted apart), and its fds.
# The launcher's soft RLIMIT_NOFILE is raised to the hard limit (20,000 for rktest) for every
# kit. Kits run one after the other in the same run.
#
# Knobs: RK_OURS (default target/release/rootlesskit), RK_REF (default /usr/bin/rootlesskit,
# empty = skip), RK_BACKENDS (default "epoll uring uring-splice copy"), RK_BENCH_USER (rktest).
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-9000}
idle=${2:-10}
ours=$(readlink -f "${RK_OURS:-target/release/rootlesskit}")
ref=${RK_REF-/usr/bin/rootlesskit}
user=${RK_BENCH_USER:-rktest}
backends=${RK_BACKENDS:-epoll uring uring-splice copy}

[ "$(id -u)" = 0 ] || { echo "bench-idle.sh: run as root (it opens $n client sockets and drops to $user for the kits)" >&2; exit 1; }
id "$user" >/dev/null 2>&1 || { echo "bench-idle.sh: no user $user; create it with: bash -c '. hack/lib.sh; ensure_test_user'" >&2; exit 1; }
[ -x "$ours" ] || { echo "bench-idle.sh: $ours missing; build it with: cargo build --release -p rootlesskit-launcher --bins" >&2; exit 1; }
command -v python3 >/dev/null || { echo "bench-idle.sh: python3 missing: apt-get install python3" >&2; exit 1; }
command -v slirp4netns >/dev/null || { echo "bench-idle.sh: slirp4netns missing: apt-get install slirp4netns" >&2; exit 1; }

work=$(mktemp -d /tmp/rk-bench-idle.XXXXXX)
chmod 0755 "$work"
kitpid=
cleanup() {
	if [ -n "$kitpid" ] && kill -0 "$kitpid" 2>/dev/null; then
		kill -TERM -- "-$kitpid" 2>/dev/null || kill -TERM "$kitpid" 2>/dev/null || true
		wait "$kitpid" 2>/dev/null || true
	fi
	rm -rf "$work"
}
trap cleanup EXIT

# Echo server run inside the namespace: one thread, selectors (epoll), one fd per connection.
# Writes the number of open connections to STATUS (atomically) whenever it changed.
cp "$(dirname "$0")/../tests/idle-echo-server.py" "$work/server.py"
chmod 0644 "$work/server.py"

# Client and sampler (root).
cat >"$work/client.py" <<'EOF'
import json, os, resource, selectors, socket, sys, time
port, status, ppid, n, idle = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
resource.setrlimit(resource.RLIMIT_NOFILE, (n + 1024, n + 1024))

def sample():
    s = {}
    with open(f"/proc/{ppid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                s["rss_kib"] = int(line.split()[1])
    with open(f"/proc/{ppid}/smaps_rollup") as f:
        for line in f:
            if line.startswith("Pss:"):
                s["pss_kib"] = int(line.split()[1])
    user = iowq = 0
    for t in os.listdir(f"/proc/{ppid}/task"):
        try:
            with open(f"/proc/{ppid}/task/{t}/comm") as f:
                comm = f.read().strip()
        except FileNotFoundError:
            continue
        if comm.startswith("iou-"):
            iowq += 1
        else:
            user += 1
    s["threads"], s["iowq"] = user, iowq
    s["fds"] = len(os.listdir(f"/proc/{ppid}/fd"))
    return s

def server_count():
    try:
        with open(status) as f:
            return int(f.read() or 0)
    except (FileNotFoundError, ValueError):
        return -1

def echo_round(socks, tag):
    """16 distinct bytes out on every connection, the same 16 back; all connections at once,
    30 s in all. Returns the number of connections that did not echo byte for byte."""
    sel = selectors.DefaultSelector()
    want, got = {}, {}
    bad = 0
    for i, s in enumerate(socks):
        if s is None:
            bad += 1
            continue
        msg = (b"%c%09d" % (tag, i)).ljust(16, b".")
        try:
            s.setblocking(False)
            if s.send(msg) != len(msg):
                raise OSError("short send")
        except OSError:
            bad += 1
            continue
        want[s] = msg
        got[s] = b""
        sel.register(s, selectors.EVENT_READ)
    deadline = time.monotonic() + 30
    while want and time.monotonic() < deadline:
        for key, _ in sel.select(1.0):
            s = key.fileobj
            try:
                chunk = s.recv(64)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                chunk = b""
            got[s] += chunk
            if not chunk or len(got[s]) >= len(want[s]):
                if got[s] != want[s]:
                    bad += 1
                sel.unregister(s)
                del want[s]
    bad += len(want)  # no (complete) echo before the deadline
    sel.close()
    return bad

# The port is published around the time the command starts: wait until it connects.
deadline = time.monotonic() + 20
while True:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
        break
    except OSError:
        if time.monotonic() > deadline:
            raise
        time.sleep(0.1)
while server_count() != 0 and time.monotonic() < deadline:
    time.sleep(0.1)
out = {"n": n, "base": sample()}
t0 = time.monotonic()
socks, failed = [], 0
for i in range(n):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(10)
    try:
        s.connect(("127.0.0.1", port))
        socks.append(s)
    except OSError as e:
        failed += 1
        s.close()
        socks.append(None)
        if failed == 1:
            print(f"  connect {i}: {e}", file=sys.stderr)
out["connect_failed"] = failed
out["connect_s"] = round(time.monotonic() - t0, 2)
# Every connection reaches the server (no byte sent yet); give up after 60 s.
deadline = time.monotonic() + 60
while server_count() < n - failed and time.monotonic() < deadline:
    time.sleep(0.2)
out["server_accepted"] = server_count()
time.sleep(idle)
out["fresh"] = sample()
out["echo1_bad"] = echo_round(socks, ord("a"))
time.sleep(idle)
out["after_echo"] = sample()
out["echo2_bad"] = echo_round(socks, ord("b"))
for s in socks:
    if s is not None:
        s.close()
deadline = time.monotonic() + 30
while server_count() > 0 and time.monotonic() < deadline:
    time.sleep(0.2)
time.sleep(1)
out["closed"] = sample()
print(json.dumps(out))
EOF

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# run_kit LABEL BIN BACKEND: prints one JSON line (label added) on stdout.
run_kit() {
	local label=$1 bin=$2 backend=$3 port dir child ppid res
	port=$(free_port)
	dir=$work/$label
	mkdir -p "$dir"
	chown "$user" "$dir"
	echo "== $label: $n connections, idle ${idle}s (port $port)" >&2
	setsid runuser -u "$user" -- env ROOTLESSKIT_FORWARDER_BACKEND="$backend" bash -c \
		'ulimit -Sn "$(ulimit -Hn)"; cd /tmp && exec "$@"' _ \
		"$bin" --state-dir "$dir/state" --net=slirp4netns --port-driver=builtin \
		-p "127.0.0.1:$port:$port/tcp" python3 "$work/server.py" "$port" "$dir/status" \
		>"$dir/out" 2>"$dir/err" &
	kitpid=$!
	local i
	for i in $(seq 1 300); do
		[ -s "$dir/state/child_pid" ] && [ -s "$dir/status" ] && break
		kill -0 "$kitpid" 2>/dev/null || break
		sleep 0.1
	done
	if ! [ -s "$dir/state/child_pid" ] || ! [ -s "$dir/status" ]; then
		echo "$label: kit did not start:" >&2
		cat "$dir/err" >&2
		kill -TERM -- "-$kitpid" 2>/dev/null || true
		wait "$kitpid" 2>/dev/null || true
		kitpid=
		return 0
	fi
	child=$(cat "$dir/state/child_pid")
	ppid=$(awk '/^PPid:/{print $2}' "/proc/$child/status")
	res=$(python3 "$work/client.py" "$port" "$dir/status" "$ppid" "$n" "$idle") || res='{}'
	kill -TERM -- "-$kitpid" 2>/dev/null || kill -TERM "$kitpid" 2>/dev/null || true
	wait "$kitpid" 2>/dev/null || true
	kitpid=
	if grep -qi 'too many open files\|accept' "$dir/err"; then
		echo "$label: launcher stderr:" >&2
		grep -i 'too many open files\|accept' "$dir/err" | sort | uniq -c | head -5 >&2
	fi
	python3 -c 'import json,sys; d=json.loads(sys.argv[2]); d["label"]=sys.argv[1]; print(json.dumps(d))' "$label" "$res"
}

results=()
for b in $backends; do
	results+=("$(run_kit "ours-$b" "$ours" "$b")")
done
if [ -n "$ref" ]; then
	results+=("$(run_kit "go-1.1.0" "$ref" "")")
fi

printf '%s\n' "${results[@]}" >"$work/results.jsonl"
echo
python3 - "$work/results.jsonl" <<'EOF'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
mib = lambda k: "%.1f" % (k / 1024)
print("| kit | conns ok | parent RSS MiB: start / idle / after echo / closed | Pss MiB (idle) | threads (idle) | io-wq (idle) | fds (idle) | echo byte-exact (2 rounds) |")
print("|---|---|---|---|---|---|---|---|")
for r in rows:
    if "fresh" not in r:
        print(f"| {r['label']} | FAIL (kit did not start or client crashed) | | | | | | |")
        continue
    n = r["n"]
    ok = n - r["connect_failed"]
    b, f, a, c = r["base"], r["fresh"], r["after_echo"], r["closed"]
    ex = f"{n - r['echo1_bad']}/{n}, {n - r['echo2_bad']}/{n}"
    acc = f"{ok} (server saw {r['server_accepted']})"
    print(f"| {r['label']} | {acc} | {mib(b['rss_kib'])} / {mib(f['rss_kib'])} / {mib(a['rss_kib'])} / {mib(c['rss_kib'])} "
          f"| {mib(f['pss_kib'])} | {b['threads']} → {f['threads']} | {f['iowq']} (after echo {a['iowq']}) | {f['fds']} | {ex} |")
EOF
