//! Network driver integration tests: run the real `rootlesskit` binary (from `RK_BIN_DIR`,
//! default `<workspace>/target/debug`) as the non-root user `rktest` (via `runuser` when the
//! tests run as root) and look inside the namespace.
//!
//! Traffic goes only to loopback or to a "remote host" network namespace that the test creates
//! itself (root only: `ip netns add`, a veth pair, a socat server). Tests that need a driver or
//! flag the binary does not have (`rootlesskit --help`) are skipped with a message, so the same
//! file can be run against Debian's RootlessKit 1.1.0: `RK_BIN_DIR=/usr/bin cargo test -p
//! rootlesskit-tests --test network`.

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

const USER: &str = "rktest";

fn bin() -> PathBuf {
    let dir = std::env::var_os("RK_BIN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/debug"));
    dir.join("rootlesskit")
}

/// The suite may run against Debian's RootlessKit 1.1.0 (`RK_BIN_DIR=/usr/bin`) to check the
/// tests themselves; only then may a test skip a feature the binary lacks.
fn is_reference() -> bool {
    bin().starts_with("/usr/bin")
}

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// A command that runs as `rktest` when we are root.
fn as_user(prog: &str) -> Command {
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", USER, "--", prog]);
        c
    } else {
        Command::new(prog)
    }
}

fn rk_command(args: &[&str]) -> Command {
    let b = bin();
    let mut c = as_user("timeout");
    c.arg("60").arg(&b).args(args).current_dir("/tmp");
    c.stdin(Stdio::null());
    c
}

fn rk(args: &[&str]) -> Output {
    rk_command(args).output().expect("running rootlesskit")
}

fn text(o: &Output) -> String {
    format!(
        "status: {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn help() -> String {
    static HELP: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HELP.get_or_init(|| {
        let o = rk(&["--help"]);
        String::from_utf8_lossy(&o.stdout).into_owned()
    })
    .clone()
}

/// Skip (return false) unless the binary knows `what` (a flag or driver name in `--help`).
fn supports(what: &str) -> bool {
    let h = help();
    // A binary without --help (the work-in-progress CLI) is assumed to be ours and complete.
    if h.is_empty() || h.contains(what) {
        true
    } else {
        assert!(
            is_reference(),
            "{} lacks a feature under test; only the Go reference may skip",
            bin().display()
        );
        eprintln!("skipped: {} does not support {what}", bin().display());
        false
    }
}

/// Skip unless `--net=NAME` is a known network driver of the binary.
fn supports_net(name: &str) -> bool {
    let o = rk(&[&format!("--net={name}"), "true"]);
    let t = text(&o);
    if t.contains("unknown network mode") || t.contains("not supported in this Debian package") {
        assert!(
            is_reference(),
            "{} lacks a feature under test; only the Go reference may skip",
            bin().display()
        );
        eprintln!("skipped: {} does not support --net={name}", bin().display());
        false
    } else {
        true
    }
}

fn have_userns() -> bool {
    let ok = bin().exists();
    if !ok {
        panic!(
            "{} not built: run cargo build --workspace --bins (hack/test.sh does)",
            bin().display()
        );
    }
    ok
}

fn uniq() -> u32 {
    static N: AtomicU32 = AtomicU32::new(0);
    std::process::id() % 10000 * 10 + N.fetch_add(1, Ordering::Relaxed) % 10
}

const CHECK: &str = "ip -o addr show; echo ---; cat /proc/net/route; echo ---; cat /etc/resolv.conf; echo ---; ip -o link show";

fn assert_cidr_net(o: &Output, ip: &str, prefix: u8, gw_hex: &str, dns: &str, mtu: u32) {
    let t = text(o);
    assert!(o.status.success(), "{t}");
    assert!(t.contains(&format!("inet {ip}/{prefix}")), "{t}");
    assert!(t.contains(&format!("tap0\t00000000\t{gw_hex}")), "{t}");
    assert!(t.contains(&format!("nameserver {dns}")), "{t}");
    assert!(
        t.contains(&format!(
            "tap0: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu {mtu}"
        )),
        "{t}"
    );
    assert!(t.contains("lo    inet 127.0.0.1/8"), "{t}");
}

#[test]
fn slirp4netns_defaults() {
    if !have_userns() {
        return;
    }
    let o = rk(&["--net=slirp4netns", "--copy-up=/etc", "sh", "-c", CHECK]);
    assert_cidr_net(&o, "10.0.2.100", 24, "0202000A", "10.0.2.3", 65520);
    let t = text(&o);
    assert!(
        t.contains("--disable-host-loopback is highly recommended"),
        "{t}"
    );
}

/// slirp4netns attaches to the persistent tap the child created (its exit then does not wait
/// for the device's unregistration; docs/network.md), in the namespace and in a detached one.
/// Traffic through it is covered by `host_loopback_via_gateway` and the port-driver suites.
#[test]
fn slirp4netns_uses_the_childs_persistent_tap() {
    if !have_userns() || is_reference() {
        return;
    }
    let script = "ip -d link show tap0; ip -o addr show tap0";
    let o = rk(&["--net=slirp4netns", "sh", "-c", script]);
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(t.contains("tun type tap pi off"), "{t}");
    assert!(t.contains("persist on"), "{t}");
    assert!(t.contains("inet 10.0.2.100/24"), "{t}");
    let o = rk(&[
        "--net=slirp4netns",
        "--detach-netns",
        "sh",
        "-c",
        &format!("nsenter --net=$ROOTLESSKIT_STATE_DIR/netns sh -c '{script}'"),
    ]);
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(t.contains("persist on"), "{t}");
    assert!(t.contains("inet 10.0.2.100/24"), "{t}");
}

#[test]
fn slirp4netns_custom_cidr_mtu() {
    if !have_userns() {
        return;
    }
    let o = rk(&[
        "--net=slirp4netns",
        "--cidr=10.9.8.0/24",
        "--mtu=1500",
        "--disable-host-loopback",
        "--copy-up=/etc",
        "sh",
        "-c",
        CHECK,
    ]);
    assert_cidr_net(&o, "10.9.8.100", 24, "0208090A", "10.9.8.3", 1500);
    // and /sys shows the namespace
    let o = rk(&[
        "--net=slirp4netns",
        "--disable-host-loopback",
        "ls",
        "/sys/class/net",
    ]);
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        "lo\ntap0\n",
        "{}",
        text(&o)
    );
}

#[test]
fn slirp4netns_ipv6() {
    if !have_userns() || !supports("--ipv6") {
        return;
    }
    let o = rk(&[
        "--net=slirp4netns",
        "--ipv6",
        "--disable-host-loopback",
        "--copy-up=/etc",
        "sh",
        "-c",
        "cat /etc/resolv.conf; sleep 3; ip -o -6 addr show dev tap0",
    ]);
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(
        t.contains("nameserver 10.0.2.3\nnameserver fd00::3\n"),
        "{t}"
    );
    // SLAAC from slirp4netns's router advertisement
    assert!(t.contains("inet6 fd00::"), "{t}");
}

#[test]
fn validation_errors() {
    if !have_userns() {
        return;
    }
    let o = rk(&["--net=slirp4netns", "--cidr=10.0.2.100/24", "true"]);
    assert!(!o.status.success());
    assert!(
        text(&o).contains("cidr must be like 10.0.2.0/24, not like 10.0.2.100/24"),
        "{}",
        text(&o)
    );
    let o = rk(&["--net=slirp4netns", "--mtu=70000", "true"]);
    assert!(
        text(&o).contains("mtu must be <= 65521, got 70000"),
        "{}",
        text(&o)
    );
    let o = rk(&["--net=host", "--ifname=eth9", "true"]);
    assert!(
        text(&o).contains("ifname cannot be specified for --net=host"),
        "{}",
        text(&o)
    );
}

#[test]
fn slirp4netns_detached() {
    if !have_userns() || !supports("--detach-netns") {
        return;
    }
    let o = rk(&[
        "--net=slirp4netns",
        "--detach-netns",
        "--disable-host-loopback",
        "sh",
        "-c",
        &format!(
            "ls /sys/class/net | grep -c tap0; nsenter --net=$ROOTLESSKIT_STATE_DIR/netns sh -c '{CHECK}'; cat $ROOTLESSKIT_STATE_DIR/resolv.conf"
        ),
    ]);
    // the command itself runs in the host netns: no tap0 there
    assert!(
        String::from_utf8_lossy(&o.stdout).starts_with("0\n"),
        "{}",
        text(&o)
    );
    assert!(text(&o).contains("nameserver 10.0.2.3"), "{}", text(&o));
    let t = text(&o);
    assert!(t.contains("inet 10.0.2.100/24"), "{t}");
    assert!(t.contains("tap0\t00000000\t0202000A"), "{t}");
    assert!(t.contains("mtu 65520"), "{t}");
}

#[test]
fn pasta_defaults_and_detached() {
    if !have_userns() || !supports_net("pasta") {
        return;
    }
    let o = rk(&["--net=pasta", "--copy-up=/etc", "sh", "-c", CHECK]);
    assert_cidr_net(&o, "10.0.2.100", 24, "0202000A", "10.0.2.3", 65520);
    if !supports("--detach-netns") {
        return;
    }
    let o = rk(&[
        "--net=pasta",
        "--detach-netns",
        "sh",
        "-c",
        &format!("nsenter --net=$ROOTLESSKIT_STATE_DIR/netns sh -c '{CHECK}'; cat $ROOTLESSKIT_STATE_DIR/resolv.conf"),
    ]);
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(t.contains("inet 10.0.2.100/24"), "{t}");
    assert!(t.contains("tap0\t00000000\t0202000A"), "{t}");
    assert!(t.contains("nameserver 10.0.2.3"), "{t}");
}

#[test]
fn none_driver() {
    if !have_userns() || !supports_net("none") {
        return;
    }
    let o = rk(&[
        "--net=none",
        "sh",
        "-c",
        "ip -o addr show; ls $ROOTLESSKIT_STATE_DIR",
    ]);
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(t.contains("lo    inet 127.0.0.1/8"), "{t}");
    assert!(!t.contains("tap0") && !t.contains("resolv.conf"), "{t}");
    if !supports("--detach-netns") {
        return;
    }
    let o = rk(&[
        "--net=none",
        "--detach-netns",
        "sh",
        "-c",
        "nsenter --net=$ROOTLESSKIT_STATE_DIR/netns ip -o addr show",
    ]);
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(t.contains("lo    inet 127.0.0.1/8"), "{t}");
    assert!(!t.contains("eth0"), "{t}");
}

/// A TCP server on the host's 127.0.0.1 that answers `reply` (socat, as rktest).
struct Server(std::process::Child);

impl Server {
    fn start(netns: Option<&str>, listen: &str, reply: &str) -> Server {
        let mut c = match netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, "socat"]);
                c
            }
            None => Command::new("socat"),
        };
        c.arg(format!("TCP-LISTEN:{listen},fork,reuseaddr"))
            .arg(format!("SYSTEM:echo {reply}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let s = Server(c.spawn().expect("socat"));
        // Ready when the port accepts (never a fixed sleep: the machine may be loaded).
        let port: u16 = listen
            .split(',')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("listen spec starts with the port");
        let probe = |ns: Option<&str>| -> bool {
            let st = match ns {
                Some(ns) => Command::new("ip")
                    .args([
                        "netns",
                        "exec",
                        ns,
                        "socat",
                        "-u",
                        "OPEN:/dev/null",
                        &format!("TCP:127.0.0.1:{port},connect-timeout=1"),
                    ])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status(),
                None => return std::net::TcpStream::connect(("127.0.0.1", port)).is_ok(),
            };
            st.map(|s| s.success()).unwrap_or(false)
        };
        let mut s = s;
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !probe(netns) {
            if let Ok(Some(st)) = s.0.try_wait() {
                panic!("socat server on port {port} exited ({st}) before listening");
            }
            assert!(
                std::time::Instant::now() < deadline,
                "socat server on port {port} not ready after 10 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        s
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn connect_script(addr: &str, port: u16) -> String {
    format!("socat -T3 - TCP:{addr}:{port},connect-timeout=3 </dev/null; echo rc=$?")
}

#[test]
fn host_loopback_via_gateway() {
    if !have_userns() {
        return;
    }
    // A port the kernel just handed out is free (a guessed one may be in use).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let _srv = Server::start(None, &format!("{port},bind=127.0.0.1"), "hello-host");
    let o = rk(&[
        "--net=slirp4netns",
        "sh",
        "-c",
        &connect_script("10.0.2.2", port),
    ]);
    assert!(text(&o).contains("hello-host"), "{}", text(&o));
    let o = rk(&[
        "--net=slirp4netns",
        "--slirp4netns-sandbox=true",
        "--slirp4netns-seccomp=true",
        "sh",
        "-c",
        &connect_script("10.0.2.2", port),
    ]);
    assert!(text(&o).contains("hello-host"), "{}", text(&o));
    let o = rk(&[
        "--net=slirp4netns",
        "--disable-host-loopback",
        "sh",
        "-c",
        &connect_script("10.0.2.2", port),
    ]);
    let t = text(&o);
    assert!(!t.contains("hello-host") && !t.contains("rc=0"), "{t}");
    if supports_net("pasta") {
        let o = rk(&["--net=pasta", "sh", "-c", &connect_script("10.0.2.2", port)]);
        assert!(text(&o).contains("hello-host"), "{}", text(&o));
        let o = rk(&[
            "--net=pasta",
            "--disable-host-loopback",
            "sh",
            "-c",
            &connect_script("10.0.2.2", port),
        ]);
        // pasta (--no-map-gw) may accept the connection itself, but never reaches the host's
        // loopback.
        let t = text(&o);
        assert!(!t.contains("hello-host"), "{t}");
    }
}

/// A "remote host" in a network namespace of its own, reachable from the host via a veth pair.
struct Remote {
    ns: String,
    veth: String,
    addr: String,
}

impl Remote {
    fn new() -> Option<Remote> {
        if !is_root() {
            panic!("creating the remote-host namespace needs root: this test belongs to the as_root phase of hack/test.sh");
        }
        let n = uniq();
        let ns = format!("rknet{n}");
        let veth = format!("rkv{n}");
        let a = 1 + (n % 60) * 4;
        let host_ip = format!("192.168.213.{a}");
        let addr = format!("192.168.213.{}", a + 1);
        let sh = |s: &str| {
            let o = Command::new("sh").arg("-c").arg(s).output().unwrap();
            assert!(o.status.success(), "{s}: {}", text(&o));
        };
        sh(&format!("ip netns add {ns}"));
        let r = Remote {
            ns: ns.clone(),
            veth: veth.clone(),
            addr: addr.clone(),
        };
        sh(&format!(
            "ip link add {veth} type veth peer name {veth}r netns {ns}"
        ));
        sh(&format!(
            "ip addr add {host_ip}/30 dev {veth} && ip link set {veth} up"
        ));
        sh(&format!(
            "ip -n {ns} addr add {addr}/30 dev {veth}r && ip -n {ns} link set {veth}r up && ip -n {ns} link set lo up"
        ));
        Some(r)
    }
}

impl Drop for Remote {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["link", "del", &self.veth])
            .status();
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).status();
    }
}

#[test]
fn reaches_remote_host_as_root() {
    if !have_userns() {
        return;
    }
    let Some(remote) = Remote::new() else {
        return;
    };
    let _srv = Server::start(Some(&remote.ns), "8080", "hello-remote");
    let mut nets = vec!["slirp4netns"];
    if supports_net("pasta") {
        nets.push("pasta");
    }
    for net in nets {
        let o = rk(&[
            &format!("--net={net}"),
            "--disable-host-loopback",
            "sh",
            "-c",
            &connect_script(&remote.addr, 8080),
        ]);
        assert!(text(&o).contains("hello-remote"), "{net}: {}", text(&o));
    }
}

fn proc_children(pid: i32) -> Vec<i32> {
    let mut v = Vec::new();
    for t in std::fs::read_dir(format!("/proc/{pid}/task"))
        .into_iter()
        .flatten()
        .flatten()
    {
        let c = std::fs::read_to_string(t.path().join("children")).unwrap_or_default();
        v.extend(c.split_whitespace().filter_map(|s| s.parse::<i32>().ok()));
    }
    v
}

fn comm(pid: i32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .unwrap_or_default()
        .trim()
        .to_string()
}

fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => !s
            .rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z'),
        Err(_) => false,
    }
}

/// Start rootlesskit with `sleep`, return (rootlesskit parent pid, driver helper pids).
fn start_and_find_helpers(net: &str, state: &str) -> (std::process::Child, i32, Vec<i32>) {
    // "--net=vpnkit --vpnkit-binary=X" arrives as one string
    let mut args: Vec<String> = net.split(' ').map(|a| a.to_string()).collect();
    args[0] = format!("--net={}", args[0]);
    args.push(format!("--state-dir={state}"));
    args.push("sleep".into());
    args.push("30".into());
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    let child = rk_command(&a)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let child_pid_file = format!("{state}/child_pid");
    let cpid = loop {
        if let Ok(s) = std::fs::read_to_string(&child_pid_file) {
            if let Ok(p) = s.trim().parse::<i32>() {
                break p;
            }
        }
        assert!(Instant::now() < deadline, "no {child_pid_file}");
        std::thread::sleep(Duration::from_millis(50));
    };
    let status = std::fs::read_to_string(format!("/proc/{cpid}/status")).unwrap();
    let ppid: i32 = status
        .lines()
        .find_map(|l| l.strip_prefix("PPid:"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let helpers: Vec<i32> = proc_children(ppid)
        .into_iter()
        .filter(|p| {
            let c = comm(*p);
            c.starts_with("slirp4netns")
                || c.starts_with("pasta")
                || c.starts_with("passt")
                || c.starts_with("network-") // the fake vpnkit (this test binary)
        })
        .collect();
    (child, ppid, helpers)
}

fn wait_gone(pids: &[i32]) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if pids.iter().all(|p| !alive(*p)) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

#[test]
fn helpers_gone_after_exit_and_kill9() {
    if !have_userns() {
        return;
    }
    let mut nets = vec!["slirp4netns".to_string()];
    if supports_net("pasta") {
        nets.push("pasta".into());
    }
    let wrapper = fake_vpnkit_wrapper();
    if supports_net("vpnkit") {
        nets.push(format!("vpnkit --vpnkit-binary={wrapper}"));
    }
    for net in &nets {
        // normal exit (SIGTERM to rootlesskit is forwarded; the command dies, rootlesskit exits)
        let state = format!("/tmp/rknet-it-{}", uniq());
        let (mut child, ppid, helpers) = start_and_find_helpers(net, &state);
        assert_eq!(helpers.len(), 1, "{net}: helpers of {ppid}: {helpers:?}");
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(ppid),
            nix::sys::signal::Signal::SIGTERM,
        )
        .unwrap();
        let _ = child.wait();
        assert!(wait_gone(&helpers), "{net}: {helpers:?} survived the exit");
        // kill -9
        let state = format!("/tmp/rknet-it-{}", uniq());
        let (mut child, ppid, helpers) = start_and_find_helpers(net, &state);
        assert_eq!(helpers.len(), 1, "{net}: helpers of {ppid}: {helpers:?}");
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(ppid),
            nix::sys::signal::Signal::SIGKILL,
        )
        .unwrap();
        let _ = child.wait();
        assert!(
            wait_gone(&helpers),
            "{net}: {helpers:?} survived kill -9 of the parent"
        );
        let _ = as_user("rm").args(["-rf", &state]).status();
    }
    let _ = std::fs::remove_file(&wrapper);
}

/// PIDs whose command line contains `needle`.
fn processes_mentioning(needle: &str) -> Vec<i32> {
    let mut v = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        if pid == std::process::id() as i32 {
            continue;
        }
        let c = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        if alive(pid) && String::from_utf8_lossy(&c).contains(needle) {
            v.push(pid);
        }
    }
    v
}

fn fake_binary(name: &str, script: &str) -> String {
    let path = format!("/tmp/rknet-fake-{name}-{}", uniq());
    std::fs::write(&path, format!("#!/bin/sh\n{script}\n")).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

#[test]
fn missing_or_failing_driver_binary() {
    if !have_userns() {
        return;
    }
    let o = rk(&[
        "--net=slirp4netns",
        "--slirp4netns-binary=/nonexistent/slirp4netns",
        "true",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("/nonexistent/slirp4netns"),
        "{}",
        text(&o)
    );

    let fake = fake_binary(
        "slirp4netns",
        r#"case "$1" in --help) echo "--netns-type --cidr --disable-host-loopback --api-socket --enable-sandbox --enable-seccomp"; exit 0;; esac; echo slirp-boom >&2; exit 3"#,
    );
    let state = format!("/tmp/rknet-it-{}", uniq());
    let o = rk(&[
        "--net=slirp4netns",
        &format!("--slirp4netns-binary={fake}"),
        &format!("--state-dir={state}"),
        "true",
    ]);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(1), "{t}");
    assert!(t.contains("slirp4netns failed"), "{t}");
    // no leftovers: no process still mentions the fake binary, the state dir is gone
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(processes_mentioning(&fake), Vec::<i32>::new(), "{t}");
    if supports("--detach-netns") {
        // (RootlessKit >= 2 removes the state dir on every exit after it was created)
        assert!(
            !std::path::Path::new(&state).exists(),
            "{state} left behind"
        );
    }
    let _ = std::fs::remove_file(&fake);

    if supports("--pasta-binary") {
        let fake = fake_binary(
            "pasta",
            r#"case "$1" in --help|--version) exit 0;; esac; echo pasta-boom >&2; exit 5"#,
        );
        let o = rk(&["--net=pasta", &format!("--pasta-binary={fake}"), "true"]);
        let t = text(&o);
        assert_eq!(o.status.code(), Some(1), "{t}");
        assert!(
            t.contains("pasta failed with exit code 5:\npasta-boom"),
            "{t}"
        );
        let _ = std::fs::remove_file(&fake);
    }
}

/// The LXC side for `--net=lxc-user-nic`: bridge `lxcbr0` (10.0.3.1/24) with dnsmasq serving
/// DHCP, and `rktest veth lxcbr0 10` in /etc/lxc/lxc-usernet. Undone on drop (only what this
/// test created).
struct LxcBridge {
    created_bridge: bool,
    added_usernet: bool,
    dnsmasq: Option<std::process::Child>,
}

const USERNET: &str = "/etc/lxc/lxc-usernet";
const USERNET_LINE: &str = "rktest veth lxcbr0 10";

impl LxcBridge {
    fn new() -> Option<LxcBridge> {
        if !is_root() {
            panic!("setting up lxcbr0 needs root: this test belongs to the as_root phase of hack/test.sh");
        }
        if Command::new("dnsmasq").arg("--version").output().is_err() {
            panic!(
                "dnsmasq is not installed: apt-get install dnsmasq-base (hack/test.sh installs it)"
            );
        }
        let mut b = LxcBridge {
            created_bridge: false,
            added_usernet: false,
            dnsmasq: None,
        };
        let exists = Command::new("ip")
            .args(["link", "show", "lxcbr0"])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        if !exists {
            let o = Command::new("sh")
                .arg("-c")
                .arg("ip link add lxcbr0 type bridge && ip addr add 10.0.3.1/24 dev lxcbr0 && ip link set lxcbr0 up")
                .output()
                .unwrap();
            assert!(o.status.success(), "{}", text(&o));
            b.created_bridge = true;
        }
        let cur = std::fs::read_to_string(USERNET).unwrap_or_default();
        if !cur.lines().any(|l| l.trim() == USERNET_LINE) {
            let _ = std::fs::create_dir_all("/etc/lxc");
            std::fs::write(USERNET, format!("{cur}{USERNET_LINE}\n")).unwrap();
            b.added_usernet = true;
        }
        let leases = format!("/tmp/rknet-dnsmasq-{}.leases", uniq());
        b.dnsmasq = Some(
            Command::new("dnsmasq")
                .args([
                    "--keep-in-foreground",
                    "--conf-file=/dev/null",
                    "--bind-interfaces",
                    "--listen-address=10.0.3.1",
                    "--dhcp-range=10.0.3.2,10.0.3.254",
                    "--except-interface=lo",
                    "--interface=lxcbr0",
                    "--dhcp-authoritative",
                    "--pid-file=",
                    &format!("--dhcp-leasefile={leases}"),
                ])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("dnsmasq"),
        );
        std::thread::sleep(Duration::from_millis(300));
        Some(b)
    }
}

impl Drop for LxcBridge {
    fn drop(&mut self) {
        if let Some(mut d) = self.dnsmasq.take() {
            let _ = d.kill();
            let _ = d.wait();
        }
        if self.added_usernet {
            let cur = std::fs::read_to_string(USERNET).unwrap_or_default();
            let rest: String = cur
                .lines()
                .filter(|l| l.trim() != USERNET_LINE)
                .map(|l| format!("{l}\n"))
                .collect();
            let _ = std::fs::write(USERNET, rest);
        }
        if self.created_bridge {
            let _ = Command::new("ip").args(["link", "del", "lxcbr0"]).status();
        }
    }
}

#[test]
fn lxc_user_nic_dhcp_as_root() {
    if !have_userns() || !supports_net("lxc-user-nic") {
        return;
    }
    let Some(_br) = LxcBridge::new() else {
        return;
    };
    let o = rk(&[
        "--net=lxc-user-nic",
        "--copy-up=/etc",
        "sh",
        "-c",
        "ip -o addr show eth0; ip route; cat /etc/resolv.conf; ip -o link show eth0",
    ]);
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(t.contains("eth0    inet 10.0.3."), "{t}");
    assert!(t.contains("default via 10.0.3.1 dev eth0"), "{t}");
    assert!(t.contains("nameserver 10.0.3.1"), "{t}");
    assert!(t.contains("mtu 1500"), "{t}");
    if !supports("--detach-netns") {
        return;
    }
    let o = rk(&[
        "--net=lxc-user-nic",
        "--detach-netns",
        "sh",
        "-c",
        "nsenter --net=$ROOTLESSKIT_STATE_DIR/netns sh -c 'ip -o addr show eth0; ip route'; cat $ROOTLESSKIT_STATE_DIR/resolv.conf",
    ]);
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(t.contains("eth0    inet 10.0.3."), "{t}");
    assert!(t.contains("default via 10.0.3.1 dev eth0"), "{t}");
    assert!(t.contains("nameserver 10.0.3.1"), "{t}");
}

// ---------------------------------------------------------------------------------------------
// vpnkit: VPNKit is not packaged, so the tests run a VPNKit-compatible peer: this test binary
// re-executed (through a small wrapper script given as --vpnkit-binary) in the ignored test
// `fake_vpnkit_peer`. It speaks the vmnet protocol (init, ethernet request, 258-byte VIF
// response, u16-LE-framed Ethernet) and answers ARP and ICMP echo for the gateway 192.168.65.1
// and DHCP (192.168.65.3) — enough for RootlessKit's client and ours.

const VPNKIT_GW: [u8; 4] = [192, 168, 65, 1];
const VPNKIT_CLIENT: [u8; 4] = [192, 168, 65, 3];
const VPNKIT_GW_MAC: [u8; 6] = [2, 0x50, 0, 0, 0, 1];

fn ip_checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    for c in data.chunks(2) {
        sum += u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

fn ipv4_packet(proto: u8, src: [u8; 4], dst: [u8; 4], payload: &[u8]) -> Vec<u8> {
    let mut p = vec![0u8; 20];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&((20 + payload.len()) as u16).to_be_bytes());
    p[8] = 64;
    p[9] = proto;
    p[12..16].copy_from_slice(&src);
    p[16..20].copy_from_slice(&dst);
    let c = ip_checksum(&p);
    p[10..12].copy_from_slice(&c.to_be_bytes());
    p.extend_from_slice(payload);
    p
}

fn eth(dst: [u8; 6], src: [u8; 6], ty: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(14 + payload.len());
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    f.extend_from_slice(&ty.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// Answer one frame from the client, if it is something the peer handles.
fn vpnkit_answer(f: &[u8], client_mac: [u8; 6]) -> Option<Vec<u8>> {
    if f.len() < 14 {
        return None;
    }
    let ty = u16::from_be_bytes([f[12], f[13]]);
    let p = &f[14..];
    if ty == 0x0806 && p.len() >= 28 && p[7] == 1 && p[24..28] == VPNKIT_GW {
        let mut r = p[..28].to_vec();
        r[7] = 2;
        r[8..14].copy_from_slice(&VPNKIT_GW_MAC);
        r[14..18].copy_from_slice(&VPNKIT_GW);
        r[18..24].copy_from_slice(&p[8..14]);
        r[24..28].copy_from_slice(&p[14..18]);
        return Some(eth(client_mac, VPNKIT_GW_MAC, 0x0806, &r));
    }
    if ty != 0x0800 || p.len() < 20 {
        return None;
    }
    let ihl = usize::from(p[0] & 0xf) * 4;
    let body = p.get(ihl..)?;
    match p[9] {
        1 if p[16..20] == VPNKIT_GW && body.first() == Some(&8) => {
            let mut icmp = body.to_vec();
            icmp[0] = 0;
            icmp[2..4].copy_from_slice(&[0, 0]);
            let c = ip_checksum(&icmp);
            icmp[2..4].copy_from_slice(&c.to_be_bytes());
            let src: [u8; 4] = p[12..16].try_into().ok()?;
            Some(eth(
                client_mac,
                VPNKIT_GW_MAC,
                0x0800,
                &ipv4_packet(1, VPNKIT_GW, src, &icmp),
            ))
        }
        17 if body.len() >= 8 + 240 && body[2..4] == [0, 67] => {
            let m = &body[8..];
            let mut msg_type = 0;
            let mut i = 240;
            while i + 1 < m.len() && m[i] != 255 {
                if m[i] == 0 {
                    i += 1;
                    continue;
                }
                if m[i] == 53 {
                    msg_type = m[i + 2];
                }
                i += 2 + usize::from(m[i + 1]);
            }
            let reply_type = match msg_type {
                1 => 2,
                3 => 5,
                _ => return None,
            };
            let mut r = vec![0u8; 236];
            r[0] = 2;
            r[1] = 1;
            r[2] = 6;
            r[4..8].copy_from_slice(&m[4..8]);
            r[10..12].copy_from_slice(&m[10..12]);
            r[16..20].copy_from_slice(&VPNKIT_CLIENT);
            r[20..24].copy_from_slice(&VPNKIT_GW);
            r[28..44].copy_from_slice(&m[28..44]);
            r.extend_from_slice(&[99, 130, 83, 99, 53, 1, reply_type]);
            r.extend_from_slice(&[54, 4, 192, 168, 65, 1, 51, 4, 0, 0, 0x0e, 0x10]);
            r.extend_from_slice(&[
                1, 4, 255, 255, 255, 0, 3, 4, 192, 168, 65, 1, 6, 4, 192, 168, 65, 1, 255,
            ]);
            let mut udp = vec![0, 67, 0, 68];
            udp.extend_from_slice(&((8 + r.len()) as u16).to_be_bytes());
            udp.extend_from_slice(&[0, 0]);
            udp.extend_from_slice(&r);
            let ip = ipv4_packet(17, VPNKIT_GW, [255, 255, 255, 255], &udp);
            Some(eth([0xff; 6], VPNKIT_GW_MAC, 0x0800, &ip))
        }
        _ => None,
    }
}

fn vpnkit_serve(mut c: std::os::unix::net::UnixStream) -> std::io::Result<()> {
    use std::io::{Read, Write};
    let mut init = [0u8; 49];
    c.read_exact(&mut init)?;
    let mut me = [0u8; 49];
    me[..5].copy_from_slice(b"VMN3T");
    me[5..9].copy_from_slice(&22u32.to_le_bytes());
    c.write_all(&me)?;
    let mut req = [0u8; 41];
    c.read_exact(&mut req)?;
    // the same UUID always gets the same MAC
    let h = req[1..37]
        .iter()
        .fold(0u32, |a, b| a.wrapping_mul(31).wrapping_add(u32::from(*b)));
    let mut mac = [2, 0x50, 0, 0, 0, 0];
    mac[2..6].copy_from_slice(&h.to_be_bytes());
    mac[2] |= 0x10;
    let mut resp = [0u8; 258];
    resp[0] = 1;
    resp[1..3].copy_from_slice(&1500u16.to_le_bytes());
    resp[3..5].copy_from_slice(&1550u16.to_le_bytes());
    resp[5..11].copy_from_slice(&mac);
    c.write_all(&resp)?;
    let mut buf = Vec::new();
    loop {
        let mut l = [0u8; 2];
        c.read_exact(&mut l)?;
        buf.resize(usize::from(u16::from_le_bytes(l)), 0);
        c.read_exact(&mut buf)?;
        if let Some(r) = vpnkit_answer(&buf, mac) {
            let mut out = (r.len() as u16).to_le_bytes().to_vec();
            out.extend_from_slice(&r);
            c.write_all(&out)?;
        }
    }
}

#[test]
#[ignore]
fn fake_vpnkit_peer() {
    let Ok(args) = std::env::var("RKNET_VPNKIT_ARGS") else {
        return;
    };
    let a: Vec<&str> = args.split_whitespace().collect();
    let path = a
        .iter()
        .position(|x| *x == "--ethernet")
        .and_then(|i| a.get(i + 1))
        .expect("--ethernet PATH");
    let l = std::os::unix::net::UnixListener::bind(path).expect("bind");
    for c in l.incoming().flatten() {
        std::thread::spawn(move || {
            let _ = vpnkit_serve(c);
        });
    }
}

fn fake_vpnkit_wrapper() -> String {
    let exe = std::env::current_exe().unwrap();
    fake_binary(
        "vpnkit",
        &format!(
            "RKNET_VPNKIT_ARGS=\"$*\" exec {} --ignored --exact fake_vpnkit_peer --nocapture --test-threads=1",
            exe.display()
        ),
    )
}

#[test]
fn vpnkit_with_compatible_peer() {
    if !have_userns() || !supports_net("vpnkit") {
        return;
    }
    let wrapper = fake_vpnkit_wrapper();
    let script = "ip -o addr show; cat /proc/net/route; cat /etc/resolv.conf; ip -o link show tap0; busybox ping -c1 -W3 192.168.65.1";
    let o = rk(&[
        "--net=vpnkit",
        &format!("--vpnkit-binary={wrapper}"),
        "--copy-up=/etc",
        "sh",
        "-c",
        script,
    ]);
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(t.contains("tap0    inet 192.168.65.3/24"), "{t}");
    assert!(t.contains("tap0\t00000000\t0141A8C0"), "{t}");
    assert!(t.contains("nameserver 192.168.65.1"), "{t}");
    assert!(t.contains("mtu 1500"), "{t}");
    assert!(t.contains("1 packets received"), "{t}");
    if supports("--detach-netns") {
        let o = rk(&[
            "--net=vpnkit",
            &format!("--vpnkit-binary={wrapper}"),
            "--detach-netns",
            "sh",
            "-c",
            &format!("nsenter --net=$ROOTLESSKIT_STATE_DIR/netns sh -c '{script}'"),
        ]);
        let t = text(&o);
        assert!(o.status.success(), "{t}");
        assert!(t.contains("tap0    inet 192.168.65.3/24"), "{t}");
        assert!(t.contains("1 packets received"), "{t}");
    }
    let _ = std::fs::remove_file(&wrapper);
}

/// `networkDriver` of `rootlessctl info --json` (GET /v1/info).
fn api_network_driver(args: &[&str]) -> Option<serde_json::Value> {
    let ctl = bin().with_file_name("rootlessctl");
    let script = format!(
        "timeout 10 {} --socket $ROOTLESSKIT_STATE_DIR/api.sock info --json",
        ctl.display()
    );
    let mut a: Vec<&str> = args.to_vec();
    a.extend_from_slice(&["sh", "-c", &script]);
    let o = rk(&a);
    assert!(o.status.success(), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("info json");
    v.get("networkDriver").cloned()
}

#[test]
fn api_info_network_driver() {
    if !have_userns() {
        return;
    }
    let v = api_network_driver(&["--net=slirp4netns", "--disable-host-loopback"]).unwrap();
    assert_eq!(
        v,
        serde_json::json!({"driver": "slirp4netns", "dns": ["10.0.2.3"], "childIP": "10.0.2.100"})
    );
    assert_eq!(api_network_driver(&["--net=host"]), None);
    if supports_net("none") {
        let v = api_network_driver(&["--net=none"]).unwrap();
        assert_eq!(v, serde_json::json!({"driver": "none"}));
    }
    if supports_net("pasta") {
        let v = api_network_driver(&["--net=pasta", "--cidr=10.4.0.0/24"]).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"driver": "pasta", "dns": ["10.4.0.3"], "childIP": "10.4.0.100"})
        );
    }
}

#[test]
fn pasta_implicit_port_driver() {
    if !have_userns() || !supports_net("pasta") || !supports("implicit") {
        return;
    }
    // A port the kernel just handed out on the host is free (pasta mirrors it there).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let mut child = rk_command(&[
        "--net=pasta",
        "--port-driver=implicit",
        "timeout",
        "10",
        "socat",
        &format!("TCP-LISTEN:{port},reuseaddr"),
        "SYSTEM:echo hello-ns",
    ])
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .unwrap();
    // pasta's auto mode notices the bound port within about a second
    let deadline = Instant::now() + Duration::from_secs(8);
    let mut got = String::new();
    while Instant::now() < deadline && !got.contains("hello-ns") {
        std::thread::sleep(Duration::from_millis(300));
        if let Ok(mut c) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            use std::io::Read;
            let _ = c.set_read_timeout(Some(Duration::from_secs(2)));
            let _ = c.read_to_string(&mut got);
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(got.contains("hello-ns"), "got {got:?}");
}

#[test]
fn custom_ifname() {
    if !have_userns() {
        return;
    }
    let mut nets = vec!["slirp4netns"];
    if supports_net("pasta") {
        nets.push("pasta");
    }
    for net in nets {
        let o = rk(&[
            &format!("--net={net}"),
            "--ifname=eth7",
            "--disable-host-loopback",
            "sh",
            "-c",
            "ip -o addr show eth7; ip route",
        ]);
        let t = text(&o);
        assert!(o.status.success(), "{net}: {t}");
        assert!(t.contains("eth7    inet 10.0.2.100/24"), "{net}: {t}");
        assert!(t.contains("default via 10.0.2.2 dev eth7"), "{net}: {t}");
    }
}
