//! Operator experience: `rootlessctl stats` (rootlesskit-rs extension), systemd socket
//! activation (reference §1.6, like upstream's `hack/integration-systemd-socket.sh`) and
//! `--debug` start-up logs (§1.4 log line format).
//!
//! Tests that check something RootlessKit 1.1.0 does not do say so ("1.1.0: fails").

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rootlesskit_tests::*;

const TIMEOUT: Duration = Duration::from_secs(60);

/// `rootlessctl --socket <state>/api.sock ARGS...` as the test user.
fn rootlessctl(state: &Path, args: &[&str]) -> Output {
    let mut c = Command::new(rk_bin("rootlessctl"));
    c.arg(format!("--socket={}", state.join("api.sock").display()))
        .args(args);
    run_as(&mut c, &run_user());
    run_with_timeout(&mut c, TIMEOUT)
}

fn json_lines(s: &str) -> Vec<serde_json::Value> {
    s.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}")))
        .collect()
}

// ---------------------------------------------------------------------------------------
// rootlessctl stats

/// A server inside the namespace (python3) accepts 3 connections, reads exactly 1000 bytes
/// from each and answers 5000; `rootlessctl stats` then reports 3000 bytes in, 15000 out,
/// 3 connections, none active, as JSON, as a table, and with rates in watch mode.
/// 1.1.0: fails (no `stats` command).
#[test]
fn stats_reports_forwarded_bytes_and_connections() {
    require_tool("python3", "python3");
    require_tool("slirp4netns", "slirp4netns");
    let port = free_port();
    let dir = TempDir::new();
    let server = format!(
        "import socket, os, time\n\
         s = socket.socket()\n\
         s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n\
         s.bind(('127.0.0.1', 8080))\n\
         s.listen(8)\n\
         open('{ready}', 'w').close()\n\
         for _ in range(3):\n\
         \x20   c, _ = s.accept()\n\
         \x20   n = 0\n\
         \x20   while n < 1000:\n\
         \x20       d = c.recv(65536)\n\
         \x20       if not d: break\n\
         \x20       n += len(d)\n\
         \x20   c.sendall(b'x' * 5000)\n\
         \x20   c.close()\n\
         while not os.path.exists('{go}'): time.sleep(0.05)\n",
        ready = dir.join("ready").display(),
        go = dir.join("go").display()
    );
    let mut kit = Kit::new()
        .args([
            "--net=slirp4netns",
            "--port-driver=builtin",
            "-p",
            &format!("127.0.0.1:{port}:8080/tcp"),
        ])
        .cmd(["python3", "-c", &server])
        .spawn_in(dir);
    kit.wait_ready().wait_for_file("ready");
    let state = kit.state_dir();
    for _ in 0..3 {
        let mut c = TcpStream::connect(("127.0.0.1", port)).expect("connect to the port");
        c.write_all(&[b'a'; 1000]).unwrap();
        let mut back = Vec::new();
        c.read_to_end(&mut back).unwrap();
        assert_eq!(back.len(), 5000);
    }
    // The workers update the counters when they see the close; allow them a moment.
    let mut last = String::new();
    let done = wait_until(Duration::from_secs(10), || {
        let o = rootlessctl(&state, &["stats", "--json"]);
        assert_eq!(o.code, Some(0), "{}", o.dump());
        last = o.stdout;
        let v = json_lines(&last);
        v.len() == 1 && v[0]["active"] == 0 && v[0]["bytesOut"] == 15000
    });
    assert!(done, "counters never settled: {last}");
    let v = json_lines(&last);
    assert_eq!(
        v[0],
        serde_json::json!({"id":1,"active":0,"total":3,"bytesIn":3000,"bytesOut":15000,"errors":0})
    );
    // Exactly the API object, field order included.
    assert_eq!(
        last,
        "{\"id\":1,\"active\":0,\"total\":3,\"bytesIn\":3000,\"bytesOut\":15000,\"errors\":0}\n"
    );
    // Explicit IDs give the same; an unknown one is an error naming it.
    let o = rootlessctl(&state, &["stats", "--json", "1"]);
    assert_eq!(o.stdout, last, "{}", o.dump());
    let o = rootlessctl(&state, &["stats", "7"]);
    assert_eq!(o.code, Some(1), "{}", o.dump());
    assert_eq!(o.stderr, "error: unknown id: 7\n");

    // The table: header and one row, columns separated by runs of spaces.
    let o = rootlessctl(&state, &["stats"]);
    assert_eq!(o.code, Some(0), "{}", o.dump());
    let rows: Vec<Vec<&str>> = o
        .stdout
        .lines()
        .map(|l| {
            l.split("  ")
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .collect()
        })
        .collect();
    let parent = format!("127.0.0.1:{port}");
    assert_eq!(
        rows,
        vec![
            vec!["ID", "PROTO", "PARENT", "CHILD", "ACTIVE", "TOTAL", "IN", "OUT", "ERRORS"],
            vec!["1", "tcp", &parent, ":8080", "0", "3", "2.9 KiB", "14.6 KiB", "0"],
        ],
        "{}",
        o.stdout
    );

    // Watch mode, JSON: one batch per interval; from the second on, rates per second.
    let wdir = TempDir::new();
    let mut c = Command::new(rk_bin("rootlessctl"));
    c.arg(format!("--socket={}", state.join("api.sock").display()))
        .args(["stats", "--json", "--watch=100ms"])
        .stdout(std::fs::File::create(wdir.join("out")).unwrap())
        .stderr(Stdio::null());
    run_as(&mut c, &run_user());
    let mut w = c.spawn().unwrap();
    let got = wait_until(Duration::from_secs(10), || {
        std::fs::read_to_string(wdir.join("out")).is_ok_and(|s| s.lines().count() >= 3)
    });
    let _ = w.kill();
    let _ = w.wait();
    let out = std::fs::read_to_string(wdir.join("out")).unwrap();
    assert!(got, "watch printed too little: {out:?}");
    let v = json_lines(&out);
    assert!(v[0].get("bytesInPerSec").is_none(), "{out}");
    assert_eq!(v[1]["bytesInPerSec"], 0.0, "{out}");
    assert_eq!(v[1]["bytesOut"], 15000, "{out}");

    // Watch mode, table: clears the screen and redraws with the rate columns.
    let mut c = Command::new(rk_bin("rootlessctl"));
    c.arg(format!("--socket={}", state.join("api.sock").display()))
        .args(["stats", "--watch=100ms"])
        .stdout(std::fs::File::create(wdir.join("table")).unwrap())
        .stderr(Stdio::null());
    run_as(&mut c, &run_user());
    let mut w = c.spawn().unwrap();
    let got = wait_until(Duration::from_secs(10), || {
        std::fs::read_to_string(wdir.join("table")).is_ok_and(|s| s.matches("\x1b[2J").count() >= 2)
    });
    let _ = w.kill();
    let _ = w.wait();
    let out = std::fs::read_to_string(wdir.join("table")).unwrap();
    assert!(got, "watch did not redraw: {out:?}");
    assert!(out.contains("NEW/s"), "{out}");
    assert!(out.contains("IN/s"), "{out}");

    // list-ports is untouched by the extension.
    let o = rootlessctl(&state, &["list-ports", "--json"]);
    assert_eq!(
        o.stdout,
        format!(
            "{{\"id\":1,\"spec\":{{\"proto\":\"tcp\",\"parentIP\":\"127.0.0.1\",\"parentPort\":{port},\"childPort\":8080}}}}\n"
        )
    );
    std::fs::write(kit.dir().join("go"), "").unwrap();
    let o = kit.wait();
    assert_eq!(o.code, Some(0), "{}", o.dump());
}

/// UDP: one host socket sending 3 datagrams of 100 bytes, each answered with 300, is one
/// flow (still active: flows expire on idle), 300 bytes in, 900 out. 1.1.0: fails.
#[test]
fn stats_counts_udp_flows() {
    require_tool("python3", "python3");
    require_tool("slirp4netns", "slirp4netns");
    let port = free_port();
    let dir = TempDir::new();
    let server = format!(
        "import socket, os, time\n\
         s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
         s.bind(('127.0.0.1', 8081))\n\
         open('{ready}', 'w').close()\n\
         for _ in range(3):\n\
         \x20   d, a = s.recvfrom(65536)\n\
         \x20   s.sendto(b'y' * (3 * len(d)), a)\n\
         while not os.path.exists('{go}'): time.sleep(0.05)\n",
        ready = dir.join("ready").display(),
        go = dir.join("go").display()
    );
    let mut kit = Kit::new()
        .args([
            "--net=slirp4netns",
            "--port-driver=builtin",
            "-p",
            &format!("127.0.0.1:{port}:8081/udp"),
        ])
        .cmd(["python3", "-c", &server])
        .spawn_in(dir);
    kit.wait_ready().wait_for_file("ready");
    let state = kit.state_dir();
    let u = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    u.connect(("127.0.0.1", port)).unwrap();
    u.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    for _ in 0..3 {
        u.send(&[b'u'; 100]).unwrap();
        let mut buf = [0u8; 2048];
        let n = u.recv(&mut buf).expect("UDP reply through the port");
        assert_eq!(n, 300);
    }
    let mut last = String::new();
    let done = wait_until(Duration::from_secs(10), || {
        let o = rootlessctl(&state, &["stats", "--json"]);
        assert_eq!(o.code, Some(0), "{}", o.dump());
        last = o.stdout;
        json_lines(&last)
            .first()
            .is_some_and(|v| v["bytesOut"] == 900)
    });
    assert!(done, "counters never settled: {last}");
    assert_eq!(
        json_lines(&last)[0],
        serde_json::json!({"id":1,"active":1,"total":1,"bytesIn":300,"bytesOut":900,"errors":0})
    );
    let o = rootlessctl(&state, &["stats"]);
    let row: Vec<&str> = o
        .stdout
        .lines()
        .nth(1)
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    let parent = format!("127.0.0.1:{port}");
    assert_eq!(
        row,
        ["1", "udp", &parent, ":8081", "1", "1", "300", "B", "900", "B", "0"],
        "{}",
        o.stdout
    );
    std::fs::write(kit.dir().join("go"), "").unwrap();
    let o = kit.wait();
    assert_eq!(o.code, Some(0), "{}", o.dump());
}

/// Drivers without counters: a clear error, exit 1. 1.1.0: fails.
#[test]
fn stats_without_counters_is_an_error() {
    require_tool("slirp4netns", "slirp4netns");
    let port = free_port();
    let mut kit = Kit::new()
        .args([
            "--net=slirp4netns",
            "--port-driver=slirp4netns",
            "-p",
            &format!("127.0.0.1:{port}:80/tcp"),
        ])
        .sh("sleep 60")
        .spawn();
    kit.wait_ready();
    let o = rootlessctl(&kit.state_dir(), &["stats"]);
    assert_eq!(o.code, Some(1), "{}", o.dump());
    assert!(
        o.stderr
            .starts_with("error: port driver slirp4netns does not provide statistics"),
        "{}",
        o.dump()
    );
    let mut host = Kit::new().args(["--net=host"]).sh("sleep 60").spawn();
    host.wait_ready();
    let o = rootlessctl(&host.state_dir(), &["stats", "--json"]);
    assert_eq!(o.code, Some(1), "{}", o.dump());
    assert_eq!(
        o.stderr,
        "error: no PortDriver is available\n",
        "{}",
        o.dump()
    );
}

// ---------------------------------------------------------------------------------------
// systemd socket activation

/// `systemd-socket-activate -l 127.0.0.1:P1 ... rootlesskit FLAGS CMD...` as the test user.
/// systemd-socket-activate starts the command on the first connection to P1: a client thread
/// connects (retrying until the sockets exist), sends `request` and returns what it reads
/// until EOF.
fn socket_activate(
    ports: &[u16],
    flags: &[&str],
    cmd: &[&str],
    request: &'static [u8],
) -> (Output, String) {
    let activate = require_tool("systemd-socket-activate", "systemd");
    let dir = TempDir::new();
    let mut c = Command::new(activate);
    for p in ports {
        c.arg(format!("--listen=127.0.0.1:{p}"));
    }
    c.arg(rk_bin("rootlesskit"))
        .arg(format!("--state-dir={}", dir.join("state").display()))
        .args(flags)
        .args(cmd);
    run_as(&mut c, &run_user());
    let first = ports[0];
    let client = std::thread::spawn(move || {
        let deadline = Instant::now() + TIMEOUT;
        let mut s = loop {
            match TcpStream::connect(("127.0.0.1", first)) {
                Ok(s) => break s,
                Err(e) if Instant::now() > deadline => return format!("connect: {e}"),
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        };
        let _ = s.set_read_timeout(Some(TIMEOUT));
        let _ = s.write_all(request);
        let mut back = Vec::new();
        let _ = s.read_to_end(&mut back);
        String::from_utf8_lossy(&back).into_owned()
    });
    let out = run_with_timeout(&mut c, TIMEOUT);
    (out, client.join().unwrap())
}

/// Prints what the command sees: LISTEN_*, its PID, the type of fds 3.., `_ROOTLESSKIT*`
/// variables. The shell execs nothing, so `$$` is the PID systemd's protocol must name.
const CHECK: &str = r#"echo "fds=$LISTEN_FDS"
echo "listen_pid=$LISTEN_PID"
echo "pid=$$"
i=3
while [ $i -lt 8 ]; do
  echo "fd$i=$(readlink /proc/$$/fd/$i)"
  i=$((i+1))
done
env | grep '^_ROOTLESSKIT' | sed 's/^/leaked=/'
for f in /proc/$$/fd/*; do echo "open=${f##*/}:$(readlink $f)"; done
python3 -c 'import os, socket
for fd in range(3, 3 + int(os.environ["LISTEN_FDS"])):
    s = socket.socket(fileno=fd)
    print("name%d=%s:%d" % ((fd,) + s.getsockname()), "listening=%d" % s.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN))
    s.detach()'
true
"#;

fn check_activation(flags: &[&str]) {
    require_tool("python3", "python3");
    for n in 1..=3usize {
        let ports: Vec<u16> = (0..n).map(|_| free_port()).collect();
        let (o, _) = socket_activate(&ports, flags, &["sh", "-c", CHECK], b"");
        assert_eq!(o.code, Some(0), "{n} sockets, {flags:?}: {}", o.dump());
        let get = |k: &str| {
            o.stdout
                .lines()
                .find_map(|l| l.strip_prefix(&format!("{k}=")))
                .unwrap_or_else(|| panic!("no {k}= in {}", o.dump()))
                .to_string()
        };
        assert_eq!(get("fds"), n.to_string(), "{}", o.dump());
        assert_eq!(get("listen_pid"), get("pid"), "LISTEN_PID: {}", o.dump());
        for (i, fd) in (3..3 + n).enumerate() {
            assert!(
                get(&format!("fd{fd}")).starts_with("socket:["),
                "fd {fd} is not a socket: {}",
                o.dump()
            );
            // The listening socket of the i-th `--listen`, in order.
            assert_eq!(
                get(&format!("name{fd}")),
                format!("127.0.0.1:{} listening=1", ports[i]),
                "{}",
                o.dump()
            );
        }
        // No other socket reaches the command (handshake and port channels are CLOEXEC).
        for l in o.stdout.lines().filter_map(|l| l.strip_prefix("open=")) {
            let (fd, target) = l.split_once(':').unwrap();
            let fd: usize = fd.parse().unwrap();
            assert!(
                !target.starts_with("socket:") || (3..3 + n).contains(&fd),
                "unexpected socket fd {fd} in the command: {}",
                o.dump()
            );
        }
        assert!(
            !o.stdout.contains("leaked="),
            "_ROOTLESSKIT* variable leaked: {}",
            o.dump()
        );
    }
}

/// 1, 2 and 3 sockets: `LISTEN_FDS` = count, `LISTEN_PID` = the command's own PID, fds
/// 3..3+N-1 are the sockets, no helper variable leaks. 1.1.0: fails (fds not passed).
#[test]
fn socket_activation_passes_listen_fds() {
    check_activation(&["--net=host"]);
}

/// Same with `--pidns` (the command's PID is the one inside the PID namespace).
/// 1.1.0: fails.
#[test]
fn socket_activation_passes_listen_fds_pidns() {
    check_activation(&["--net=host", "--pidns"]);
}

/// A server inside accepts on the passed fd 3 and answers the very connection that
/// triggered the activation. 1.1.0: fails.
fn activation_end_to_end(flags: &[&str]) {
    require_tool("python3", "python3");
    let server = "import socket, os\n\
                  assert os.environ['LISTEN_PID'] == str(os.getpid()), os.environ['LISTEN_PID']\n\
                  s = socket.socket(fileno=3)\n\
                  c, _ = s.accept()\n\
                  d = c.recv(100)\n\
                  c.sendall(b'hello from inside: ' + d)\n\
                  c.close()\n";
    let port = free_port();
    let (o, reply) = socket_activate(&[port], flags, &["python3", "-c", server], b"ping\n");
    assert_eq!(o.code, Some(0), "{flags:?}: {}", o.dump());
    assert_eq!(reply, "hello from inside: ping\n", "{}", o.dump());
    if flags.contains(&"--debug") {
        assert!(o.stderr.contains("socket_activation=true"), "{}", o.dump());
    }
}

/// With `--debug`, the child logs that it took the activation path. 1.1.0: fails.
#[test]
fn socket_activation_end_to_end() {
    activation_end_to_end(&["--net=host", "--debug"]);
}

/// 1.1.0: fails.
#[test]
fn socket_activation_end_to_end_pidns() {
    activation_end_to_end(&["--net=host", "--pidns"]);
}

/// With `--net=slirp4netns` (new network namespace) the passed socket still lives in the
/// host's network namespace, so the host reaches it. 1.1.0: fails.
#[test]
fn socket_activation_end_to_end_slirp4netns_pidns() {
    require_tool("slirp4netns", "slirp4netns");
    activation_end_to_end(&["--net=slirp4netns", "--pidns"]);
}

// ---------------------------------------------------------------------------------------
// --debug logs

/// Asserts that `needles` appear in this order among the lines of `lines`.
fn assert_in_order(lines: &[&str], needles: &[&str], all: &str) {
    let mut at = 0;
    for n in needles {
        match lines[at..].iter().position(|l| l.contains(n)) {
            Some(i) => at += i + 1,
            None => panic!("{n:?} missing or out of order in:\n{all}"),
        }
    }
}

/// `--debug`: every start-up step of parent and child, in order, as
/// `[rootlesskit:<role>] debug: <message> key=value...` lines. Exact texts are ours.
#[test]
fn debug_logs_every_startup_step_in_order() {
    require_tool("slirp4netns", "slirp4netns");
    let port = free_port();
    let o = Kit::new()
        .args([
            "--debug",
            "--net=slirp4netns",
            "--port-driver=builtin",
            "--pidns",
            "-p",
            &format!("127.0.0.1:{port}:80/tcp"),
        ])
        .cmd(["true"])
        .run();
    assert_eq!(o.code, Some(0), "{}", o.dump());
    let lines: Vec<&str> = o.stderr.lines().collect();
    for l in &lines {
        assert!(
            l.starts_with("[rootlesskit:parent] ") || l.starts_with("[rootlesskit:child ] "),
            "line without the RootlessKit prefix: {l:?}\n{}",
            o.stderr
        );
    }
    let parent: Vec<&str> = lines
        .iter()
        .filter_map(|l| l.strip_prefix("[rootlesskit:parent] debug: "))
        .collect();
    let child: Vec<&str> = lines
        .iter()
        .filter_map(|l| l.strip_prefix("[rootlesskit:child ] debug: "))
        .collect();
    assert_in_order(
        &parent,
        &[
            "starting version=",
            "state dir ready path=",
            "sub-id ranges user=",
            "cloning the child flags=CLONE_NEWNS|CLONE_NEWUSER|CLONE_NEWPID|CLONE_NEWNET",
            "child started pid=",
            "newuidmap pid=",
            "newgidmap pid=",
            "handshake: send msg=IdmapDone",
            "handshake: received msg=UserNsReady",
            "network driver setup driver=slirp4netns",
            "executing ",
            "network driver ready driver=slirp4netns config=",
            "handshake: send msg=Setup",
            "handshake: received msg=ChildReady",
            "port driver started driver=builtin",
            &format!("port published id=1 spec={{\"proto\":\"tcp\",\"parentIP\":\"127.0.0.1\",\"parentPort\":{port},\"childPort\":80}}"),
            "wrote child_pid path=",
            "api listening path=",
            "handshake: send msg=Go",
            "child exited pid=",
            "cleanup step=",
            "state dir removed path=",
            "exiting code=0",
        ],
        &o.stderr,
    );
    // The id-map argv: `0 <uid> 1 1 <subuid start> <count>`.
    let uid = run_user().uid.as_raw();
    let (start, count) = subid_range("/etc/subuid", &run_user()).expect("subuid range");
    let expected = format!("args=\"0 {uid} 1 1 {start} {count}\"");
    assert!(
        parent
            .iter()
            .any(|l| l.starts_with("newuidmap pid=") && l.contains(&expected)),
        "no newuidmap line with {expected}:\n{}",
        o.stderr
    );
    assert_in_order(
        &child,
        &[
            "child started pid=1 ",
            "handshake: received msg=IdmapDone",
            "mounted /proc",
            "handshake: send msg=UserNsReady",
            "handshake: received msg=Setup",
            "setting mount propagation mode=",
            "network configured",
            "builtin port driver child side started",
            "handshake: send msg=ChildReady",
            "handshake: received msg=Go",
            "executing command argv=[\"true\"]",
            "command started pid=",
            "command exited pid=",
        ],
        &o.stderr,
    );
    assert!(
        child
            .iter()
            .any(|l| l.starts_with("command exited") && l.ends_with("status=\"exit status 0\"")),
        "{}",
        o.stderr
    );
}

/// Without `--debug` a clean run prints nothing at all on stderr (1.1.0 too).
#[test]
fn quiet_without_debug() {
    for flags in [&["--net=host"][..], &["--net=host", "--pidns"]] {
        let o = Kit::new().args(flags).cmd(["true"]).run();
        assert_eq!(o.code, Some(0), "{}", o.dump());
        assert_eq!(o.stderr, "", "{flags:?}: {}", o.dump());
        assert_eq!(o.stdout, "", "{flags:?}: {}", o.dump());
    }
}

/// A failing command with `--debug`: the error names the command and its status.
#[test]
fn debug_failing_command_names_it() {
    let o = Kit::new()
        .args(["--debug", "--net=host"])
        .sh("exit 3")
        .run();
    assert_eq!(o.code, Some(3), "{}", o.dump());
    assert!(
        o.stderr
            .contains("[rootlesskit:child ] error: command [sh -c exit 3] exited: exit status 3"),
        "{}",
        o.dump()
    );
    assert!(
        o.stderr
            .contains("[rootlesskit:parent] error: child exited: exit status 3"),
        "{}",
        o.dump()
    );
}
