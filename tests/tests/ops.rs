//! Operator experience: `rootlessctl stats` (rootlesskit-rs extension), systemd socket
//! activation (reference §1.6, like upstream's `hack/integration-systemd-socket.sh`) and
//! `--debug` start-up logs (§1.4 log line format).
//!
//! Tests that check something RootlessKit 1.1.0 does not do say so ("1.1.0: fails").

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
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

    // Watch mode, table to a file: plain tables with the rate columns, no escape codes
    // (the terminal redraw is `stats_watch_redraws_on_a_terminal`).
    let mut c = Command::new(rk_bin("rootlessctl"));
    c.arg(format!("--socket={}", state.join("api.sock").display()))
        .args(["stats", "--watch=100ms"])
        .stdout(std::fs::File::create(wdir.join("table")).unwrap())
        .stderr(Stdio::null());
    run_as(&mut c, &run_user());
    let mut w = c.spawn().unwrap();
    let got = wait_until(Duration::from_secs(10), || {
        std::fs::read_to_string(wdir.join("table")).is_ok_and(|s| s.matches("NEW/s").count() >= 2)
    });
    let _ = w.kill();
    let _ = w.wait();
    let out = std::fs::read_to_string(wdir.join("table")).unwrap();
    assert!(got, "watch did not repeat: {out:?}");
    assert!(out.contains("IN/s"), "{out}");
    assert!(!out.contains('\x1b'), "{out:?}");

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

// ---------------------------------------------------------------------------------------
// rootlessctl stats --watch: pipes, terminals, signals, rootlesskit going away

/// A rootlesskit with the builtin port driver and one published TCP port, running until the
/// file `go` appears in its directory.
fn kit_with_one_port() -> Running {
    require_tool("slirp4netns", "slirp4netns");
    let dir = TempDir::new();
    let go = dir.join("go");
    let mut kit = Kit::new()
        .args([
            "--net=slirp4netns",
            "--port-driver=builtin",
            "-p",
            &format!("127.0.0.1:{}:8080/tcp", free_port()),
        ])
        .sh(&format!(
            "while [ ! -e {} ]; do sleep 0.05; done",
            go.display()
        ))
        .spawn_in(dir);
    kit.wait_ready();
    kit
}

/// `rootlessctl --socket=... ARGS` started as the test user with stdout/stderr to files in
/// `dir` (`NAME.out`, `NAME.err`).
fn spawn_ctl(state: &Path, dir: &TempDir, name: &str, args: &[&str]) -> std::process::Child {
    let mut c = Command::new(rk_bin("rootlessctl"));
    c.arg(format!("--socket={}", state.join("api.sock").display()))
        .args(args)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(dir.join(format!("{name}.out"))).unwrap())
        .stderr(std::fs::File::create(dir.join(format!("{name}.err"))).unwrap());
    run_as(&mut c, &run_user());
    c.spawn().expect("spawn rootlessctl")
}

fn read(dir: &TempDir, file: &str) -> String {
    std::fs::read_to_string(dir.join(file)).unwrap_or_default()
}

/// Waits (bounded) for `child` to exit; kills it and fails if it does not.
fn wait_exit(child: &mut std::process::Child, what: &str) -> std::process::ExitStatus {
    let mut status = None;
    wait_until(Duration::from_secs(10), || {
        status = child.try_wait().expect("try_wait");
        status.is_some()
    });
    status.unwrap_or_else(|| {
        let _ = child.kill();
        let _ = child.wait();
        panic!("{what}: still running 10 s later (hang)")
    })
}

/// Not a terminal: the table mode prints plain tables (each followed by an empty line, no
/// escape codes), the JSON mode complete lines; SIGINT, SIGTERM and SIGHUP end both between
/// two batches with status 0 and nothing on stderr. 1.1.0: fails (no `stats`).
#[test]
fn stats_watch_to_a_pipe_and_signals() {
    use nix::sys::signal::{kill, Signal};
    use nix::unistd::Pid;
    let kit = kit_with_one_port();
    let state = kit.state_dir();
    let dir = TempDir::new();
    for (name, args, sig) in [
        ("table", &["stats", "--watch=50ms"][..], Signal::SIGINT),
        (
            "json",
            &["stats", "--json", "--watch=20ms"][..],
            Signal::SIGTERM,
        ),
        (
            "table-term",
            &["stats", "--watch=20ms"][..],
            Signal::SIGTERM,
        ),
        (
            "json-int",
            &["stats", "--json", "--watch=50ms"][..],
            Signal::SIGINT,
        ),
        ("table-hup", &["stats", "--watch=20ms"][..], Signal::SIGHUP),
    ] {
        let mut w = spawn_ctl(&state, &dir, name, args);
        let out = format!("{name}.out");
        assert!(
            wait_until(Duration::from_secs(10), || read(&dir, &out)
                .matches(if name.starts_with("json") {
                    "\"id\""
                } else {
                    "ERRORS"
                })
                .count()
                >= 4),
            "{name}: fewer than 4 batches: {:?}",
            read(&dir, &out)
        );
        kill(Pid::from_raw(w.id() as i32), sig).unwrap();
        let st = wait_exit(&mut w, name);
        let (stdout, stderr) = (read(&dir, &out), read(&dir, &format!("{name}.err")));
        assert_eq!(
            st.code(),
            Some(0),
            "{name} after {sig}: {st:?}\n{stdout}\n{stderr}"
        );
        assert_eq!(stderr, "", "{name}");
        assert!(!stdout.contains('\x1b'), "{name}: escape codes: {stdout:?}");
        assert!(
            stdout.ends_with('\n'),
            "{name}: partial last line: {stdout:?}"
        );
        if name.starts_with("json") {
            let v = json_lines(&stdout);
            assert!(v.len() >= 4, "{stdout}");
            assert!(v[0].get("bytesInPerSec").is_none(), "{stdout}");
            for l in &v[1..] {
                assert_eq!(l["id"], 1, "{stdout}");
                assert_eq!(l["bytesInPerSec"], 0.0, "{stdout}");
            }
        } else {
            assert!(stdout.ends_with("\n\n"), "{stdout:?}");
            let batches: Vec<&str> = stdout.trim_end().split("\n\n").collect();
            assert!(batches.len() >= 4, "{stdout}");
            for b in batches {
                let rows: Vec<Vec<&str>> =
                    b.lines().map(|l| l.split_whitespace().collect()).collect();
                assert_eq!(rows.len(), 2, "{b:?}");
                assert_eq!(
                    rows[0],
                    [
                        "ID", "PROTO", "PARENT", "CHILD", "ACTIVE", "TOTAL", "NEW/s", "IN", "OUT",
                        "IN/s", "OUT/s", "ERRORS"
                    ],
                    "{b:?}"
                );
                assert_eq!(rows[1][..2], ["1", "tcp"], "{b:?}");
            }
        }
    }
    std::fs::write(kit.dir().join("go"), "").unwrap();
}

/// On a terminal (`script(1)`) the table mode clears the screen and redraws under a title
/// line; SIGINT ends it with status 0. 1.1.0: fails (no `stats`).
#[test]
fn stats_watch_redraws_on_a_terminal() {
    require_tool("script", "bsdutils");
    require_tool("timeout", "coreutils");
    let kit = kit_with_one_port();
    let state = kit.state_dir();
    let ctl = rk_bin("rootlessctl");
    let mut c = Command::new("script");
    c.args(["-q", "-e", "-c"])
        .arg(format!(
            "timeout --preserve-status -s INT 1 {} --socket={} stats --watch=100ms; echo \"rc=$?\"",
            ctl.display(),
            state.join("api.sock").display()
        ))
        .arg("/dev/null");
    run_as(&mut c, &run_user());
    let o = run_with_timeout(&mut c, TIMEOUT);
    assert_eq!(o.code, Some(0), "{}", o.dump());
    assert!(
        o.stdout.matches("\x1b[H\x1b[2J").count() >= 3,
        "{:?}",
        o.stdout
    );
    assert!(
        o.stdout
            .contains("Every 100ms: rootlessctl stats (Ctrl-C to quit)"),
        "{:?}",
        o.stdout
    );
    assert!(o.stdout.contains("NEW/s"), "{:?}", o.stdout);
    assert!(o.stdout.contains("rc=0"), "{:?}", o.stdout);
    std::fs::write(kit.dir().join("go"), "").unwrap();
}

/// The rootlesskit being watched exits: every watcher stops within seconds with status 1 and
/// an error saying so; what it printed before ends with complete lines. 1.1.0: fails.
#[test]
fn stats_watch_stops_when_rootlesskit_exits() {
    let mut kit = kit_with_one_port();
    let state = kit.state_dir();
    let dir = TempDir::new();
    let mut watchers: Vec<_> = [
        ("table", &["stats", "--watch=50ms"][..]),
        ("json", &["stats", "--json", "--watch=50ms"][..]),
    ]
    .into_iter()
    .map(|(name, args)| (name, spawn_ctl(&state, &dir, name, args)))
    .collect();
    assert!(
        wait_until(Duration::from_secs(10), || read(&dir, "table.out")
            .matches("ERRORS")
            .count()
            >= 2
            && read(&dir, "json.out").lines().count() >= 2),
        "watchers printed too little"
    );
    std::fs::write(kit.dir().join("go"), "").unwrap();
    let o = kit.wait();
    assert_eq!(o.code, Some(0), "{}", o.dump());
    let sock = state.join("api.sock");
    for (name, w) in &mut watchers {
        let st = wait_exit(w, name);
        let (stdout, stderr) = (
            read(&dir, &format!("{name}.out")),
            read(&dir, &format!("{name}.err")),
        );
        assert_eq!(st.code(), Some(1), "{name}: {st:?}\n{stdout}\n{stderr}");
        let prefix = format!(
            "error: rootlesskit stopped answering on {} (did it exit?): ",
            sock.display()
        );
        assert!(
            stderr.starts_with(&prefix) && stderr.ends_with('\n') && stderr.lines().count() == 1,
            "{name}: {stderr:?}"
        );
        assert!(stdout.ends_with('\n'), "{name}: {stdout:?}");
        if *name == "json" {
            json_lines(&stdout);
        }
    }
}

// ---------------------------------------------------------------------------------------
// rootlessctl --debug

/// The logrus text-formatter line `time="<RFC3339>" level=debug msg="<msg>"`: returns msg
/// (Go-unquoted) or None.
fn logrus_debug_msg(line: &str) -> Option<String> {
    let rest = line.strip_prefix("time=\"")?;
    let (time, rest) = rest.split_once("\" level=debug msg=")?;
    // 2026-11-29T13:30:18Z or ...+01:00
    let b = time.as_bytes();
    let digits =
        |r: std::ops::Range<usize>| b.get(r).is_some_and(|s| s.iter().all(u8::is_ascii_digit));
    let zone = &time.get(19..)?;
    let zone_ok = *zone == "Z"
        || (zone.len() == 6
            && (zone.starts_with('+') || zone.starts_with('-'))
            && zone.as_bytes()[3] == b':');
    if !(time.len() >= 20
        && digits(0..4)
        && b[4] == b'-'
        && digits(5..7)
        && b[7] == b'-'
        && digits(8..10)
        && b[10] == b'T'
        && digits(11..13)
        && b[13] == b':'
        && digits(14..16)
        && b[16] == b':'
        && digits(17..19)
        && zone_ok)
    {
        return None;
    }
    serde_json::from_str::<String>(rest).ok()
}

fn debug_msgs(o: &Output) -> Vec<String> {
    o.stderr
        .lines()
        .filter(|l| l.contains("level=debug"))
        .map(|l| {
            logrus_debug_msg(l)
                .unwrap_or_else(|| panic!("not a logrus debug line: {l:?}\n{}", o.dump()))
        })
        .collect()
}

/// `rootlessctl --debug`: one logrus-format debug line per API request on stderr (method,
/// path, HTTP status, or the connection error), after one naming the socket; stdout is the
/// same as without the flag, which prints nothing on stderr. 1.1.0: fails (its --debug only
/// raises the log level of a client that logs nothing).
#[test]
fn rootlessctl_debug_logs_api_calls() {
    let mut kit = kit_with_one_port();
    let state = kit.state_dir();
    let sock = state.join("api.sock").display().to_string();
    let socket_msg = format!("socket: {sock}");

    let quiet = rootlessctl(&state, &["info"]);
    assert_eq!(quiet.code, Some(0), "{}", quiet.dump());
    assert_eq!(quiet.stderr, "", "{}", quiet.dump());
    let loud = rootlessctl(&state, &["--debug", "info"]);
    assert_eq!(loud.code, Some(0), "{}", loud.dump());
    assert_eq!(loud.stdout, quiet.stdout);
    assert_eq!(
        debug_msgs(&loud),
        [socket_msg.clone(), "GET /v1/info: 200 OK".to_string()],
        "{}",
        loud.dump()
    );
    assert_eq!(loud.stderr.lines().count(), 2, "{}", loud.dump());

    let port = free_port();
    let o = rootlessctl(
        &state,
        &["--debug", "add-ports", &format!("127.0.0.1:{port}:81/tcp")],
    );
    assert_eq!(o.code, Some(0), "{}", o.dump());
    assert_eq!(o.stdout, "2\n");
    assert_eq!(
        debug_msgs(&o),
        [socket_msg.clone(), "POST /v1/ports: 201 Created".into()]
    );
    let o = rootlessctl(&state, &["--debug", "stats", "--json"]);
    assert_eq!(o.code, Some(0), "{}", o.dump());
    assert_eq!(
        debug_msgs(&o),
        [
            socket_msg.clone(),
            "GET /v1/ports: 200 OK".into(),
            "GET /v1/ports/1/stats: 200 OK".into(),
            "GET /v1/ports/2/stats: 200 OK".into()
        ]
    );
    let o = rootlessctl(&state, &["--debug", "remove-ports", "2", "9"]);
    assert_eq!(o.code, Some(1), "{}", o.dump());
    assert_eq!(o.stdout, "2\n");
    let msgs = debug_msgs(&o);
    assert_eq!(msgs.len(), 3, "{}", o.dump());
    assert_eq!(
        msgs[..2],
        [socket_msg.clone(), "DELETE /v1/ports/2: 200 OK".into()]
    );
    assert_eq!(
        msgs[2],
        "DELETE /v1/ports/9: 400 Bad Request",
        "{}",
        o.dump()
    );
    assert!(
        o.stderr.ends_with("\nerror: unknown id: 9\n"),
        "{}",
        o.dump()
    );
    assert!(!rootlessctl(&state, &["remove-ports", "9"])
        .stderr
        .contains("level=debug"));

    // rootlesskit gone: the socket file is removed (stat fails before any request).
    std::fs::write(kit.dir().join("go"), "").unwrap();
    assert_eq!(kit.wait().code, Some(0));
    let o = rootlessctl(&state, &["--debug", "info"]);
    assert_eq!(o.code, Some(1), "{}", o.dump());
    assert_eq!(debug_msgs(&o), [socket_msg]);
    assert!(
        o.stderr
            .ends_with(&format!("error: stat {sock}: no such file or directory\n")),
        "{}",
        o.dump()
    );

    // A socket nobody listens on: the connection error is logged with the request.
    let dir = TempDir::new();
    let stale = dir.join("api.sock");
    drop(std::os::unix::net::UnixListener::bind(&stale).unwrap());
    give_to(&stale, &run_user());
    let mut c = Command::new(rk_bin("rootlessctl"));
    c.arg("--debug")
        .arg(format!("--socket={}", stale.display()))
        .arg("list-ports");
    run_as(&mut c, &run_user());
    let o = run_with_timeout(&mut c, TIMEOUT);
    assert_eq!(o.code, Some(1), "{}", o.dump());
    let want = format!(
        "GET /v1/ports: Get \"http://rootlesskit/v1/ports\": dial unix {}: connect: connection refused",
        stale.display()
    );
    assert_eq!(debug_msgs(&o)[1..], [want], "{}", o.dump());
}

// ---------------------------------------------------------------------------------------
// shell completions (generated by launcher/src/cli/gen.rs, committed under completions/)

fn completion_file(rel: &str) -> PathBuf {
    let p = workspace_root().join("completions").join(rel);
    assert!(
        p.is_file(),
        "{} missing: ROOTLESSKIT_UPDATE_GENERATED=1 cargo test -p rootlesskit-launcher --lib cli::gen",
        p.display()
    );
    p
}

/// PATH for the shells: our binaries first (completions of port IDs run `rootlessctl`).
fn shell_path() -> String {
    format!("{}:/usr/local/bin:/usr/bin:/bin", bin_dir().display())
}

/// Runs a shell command line as the test user with a fresh HOME; fails on a non-zero exit.
fn run_shell(mut c: Command) -> Output {
    let home = TempDir::new();
    run_as(&mut c, &run_user());
    c.env("HOME", home.path())
        .env("PATH", shell_path())
        .env("LC_ALL", "C.UTF-8")
        .env_remove("ROOTLESSKIT_STATE_DIR")
        .current_dir(home.path());
    let o = run_with_timeout(&mut c, TIMEOUT);
    assert_eq!(o.code, Some(0), "{c:?}\n{}", o.dump());
    o
}

/// fish: the candidates of `complete -C LINE` after sourcing `file` (which must load with
/// nothing on stderr).
fn fish_complete(file: &Path, line: &str) -> Vec<String> {
    require_tool("fish", "fish");
    let mut c = Command::new("fish");
    // Not --no-config: that also empties fish_complete_path (no completions for `ls`).
    c.args(["-c", "source $argv[1]; or exit 9; complete -C $argv[2]"])
        .arg(file)
        .arg(line);
    let o = run_shell(c);
    assert_eq!(o.stderr, "", "fish, {line:?}: {}", o.dump());
    o.stdout
        .lines()
        .map(|l| l.split('\t').next().unwrap_or_default().to_string())
        .collect()
}

/// zsh: the matches the completion system adds for LINE<Tab> in an interactive zsh on a
/// pseudo-terminal (zsh/zpty), with `compinit` loading our functions from `fpath_dir`;
/// `compadd` is wrapped to print every match. The key is bound to a widget that runs
/// `complete-word` and then prints a marker, so nothing is typed ahead while completion runs
/// (zsh skips work when input is pending). Fails if the completion printed an error.
fn zsh_complete(fpath_dir: &Path, line: &str) -> Vec<String> {
    require_tool("zsh", "zsh");
    let dir = TempDir::new();
    let script = dir.join("capture.zsh");
    std::fs::write(
        &script,
        r#"zmodload zsh/zpty || exit 2
zpty z zsh -f -i || exit 2
zpty -w z "PS1='%% '; fpath=(${(q)1} \$fpath); autoload -U compinit; compinit -u -D"
zpty -w z 'compadd () { if (( ${@[(I)-[ODA]]} )); then builtin compadd "$@"; return; fi; local -a __h; builtin compadd -A __h "$@"; (( ${#__h} )) && print -rl -- "<M>"${^__h}; builtin compadd "$@" }'
zpty -w z '__rk_complete() { zle complete-word; print -rn -- "<DONE>" }; zle -N __rk_complete; bindkey "^X^T" __rk_complete'
zpty -w z "zstyle ':completion:*' list-prompt ''; zstyle ':completion:*' menu no; LISTMAX=100000; print READY''-MARK"
zpty -r z out '*READY-MARK*' || exit 3
zpty -n -w z "$2"$'\x18\x14'
zpty -r z out '*<DONE>*' || exit 4
print -r -- "$out"
zpty -d z
"#,
    )
    .unwrap();
    let mut c = Command::new("zsh");
    c.arg("-f").arg(&script).arg(fpath_dir).arg(line);
    let o = run_shell(c);
    for bad in [
        "_rootlesskit:",
        "_rootlessctl:",
        "_arguments:",
        "parse error",
        "command not found",
        "bad pattern",
    ] {
        assert!(
            !o.stdout.contains(bad),
            "zsh, {line:?}: {bad}: {:?}",
            o.stdout
        );
    }
    let mut v: Vec<String> = o
        .stdout
        .split("<M>")
        .skip(1)
        .map(|m| {
            m.split(|c: char| c.is_control())
                .next()
                .unwrap_or_default()
                .to_string()
        })
        .collect();
    v.sort();
    v.dedup();
    v
}

/// bash: COMPREPLY of `func` for the words `words` (the last one is the word under the
/// cursor), after loading bash-completion and `file`.
fn bash_complete(file: &Path, func: &str, words: &[&str]) -> Vec<String> {
    let lib = Path::new("/usr/share/bash-completion/bash_completion");
    assert!(
        lib.is_file(),
        "{} missing: apt-get install bash-completion",
        lib.display()
    );
    let mut c = Command::new("bash");
    c.args([
        "--norc",
        "--noprofile",
        "-c",
        r#"source /usr/share/bash-completion/bash_completion || exit 9
source "$1" || exit 9
# Outside readline's completion `compopt` refuses to run; its display options do not
# change COMPREPLY.
compopt() { :; }
fn=$2; shift 2
COMP_WORDS=("$@"); COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
COMP_LINE="${COMP_WORDS[*]}"; COMP_POINT=${#COMP_LINE}
"$fn" || exit 8
printf '%s\n' "${COMPREPLY[@]}""#,
        "bash",
    ])
    .arg(file)
    .arg(func)
    .args(words);
    let o = run_shell(c);
    assert_eq!(o.stderr, "", "bash, {words:?}: {}", o.dump());
    o.stdout
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

/// What the real binaries offer, parsed from their `--help`: rootlesskit's long flags and
/// the `[a, b, c]` value lists of `--net` and `--port-driver`; rootlessctl's commands.
struct HelpFacts {
    kit_long_flags: Vec<String>,
    net_drivers: Vec<String>,
    port_drivers: Vec<String>,
    ctl_commands: Vec<String>,
    ctl_long_flags: Vec<String>,
}

fn help_facts() -> HelpFacts {
    let help = |bin: &str| {
        let mut c = Command::new(rk_bin(bin));
        c.arg("--help");
        run_as(&mut c, &run_user());
        let o = run_with_timeout(&mut c, TIMEOUT);
        assert_eq!(o.code, Some(0), "{}", o.dump());
        o.stdout
    };
    let long_flags = |text: &str| {
        let mut v: Vec<String> = text
            .lines()
            .filter_map(|l| {
                let t = l.trim_start();
                t.starts_with("--")
                    .then(|| t.split([' ', ',']).next().unwrap_or_default().to_string())
            })
            .collect();
        v.sort();
        v
    };
    let kit = help("rootlesskit");
    let values = |flag: &str| -> Vec<String> {
        let line = kit
            .lines()
            .find(|l| l.trim_start().starts_with(&format!("{flag} value")))
            .unwrap_or_else(|| panic!("{flag} not in rootlesskit --help"));
        let list = line
            .split('[')
            .nth(1)
            .and_then(|r| r.split(']').next())
            .unwrap();
        let mut v: Vec<String> = list
            .split(", ")
            .map(|x| x.split(['(', ' ']).next().unwrap().to_string())
            .collect();
        v.sort();
        v
    };
    let ctl = help("rootlessctl");
    let mut ctl_commands: Vec<String> = ctl
        .split("COMMANDS:\n")
        .nth(1)
        .unwrap()
        .split("\n\n")
        .next()
        .unwrap()
        .lines()
        // `help, h`: the alias is completed by bash only.
        .map(|l| {
            l.trim()
                .split([' ', ','])
                .next()
                .unwrap_or_default()
                .to_string()
        })
        .collect();
    // The extension hidden from `rootlessctl --help` (kept byte-identical to RootlessKit's).
    ctl_commands.push("stats".into());
    ctl_commands.sort();
    let mut kit_long_flags = long_flags(&kit);
    // The rootlesskit-rs extension hidden from `rootlesskit --help` (kept like RootlessKit's).
    kit_long_flags.push("--check".into());
    kit_long_flags.sort();
    HelpFacts {
        kit_long_flags,
        net_drivers: values("--net"),
        port_drivers: values("--port-driver"),
        ctl_commands,
        ctl_long_flags: long_flags(ctl.split("GLOBAL OPTIONS:").nth(1).unwrap()),
    }
}

fn sorted(v: Vec<String>) -> Vec<String> {
    let mut v = v;
    v.sort();
    v.dedup();
    v
}

fn has(v: &[String], want: &str) -> bool {
    v.iter().any(|x| x == want)
}

/// fish: both scripts load without a message; `rootlesskit --` offers exactly the long flags
/// of `rootlesskit --help`, `--net=` / `--port-driver ` the drivers it lists; after the
/// flags (also after flags with separate values, and after `--`) the wrapped command and
/// then its own options; rootlessctl: the commands of `rootlessctl --help` plus `stats`, the
/// global flags, per-command flags.
#[test]
fn completion_fish() {
    let h = help_facts();
    let kit = completion_file("fish/rootlesskit.fish");
    let ctl = completion_file("fish/rootlessctl.fish");
    let longs = |v: Vec<String>| sorted(v.into_iter().filter(|x| x.starts_with("--")).collect());
    assert_eq!(
        longs(fish_complete(&kit, "rootlesskit --")),
        h.kit_long_flags
    );
    assert!(has(&fish_complete(&kit, "rootlesskit --ne"), "--net"));
    let nets: Vec<String> = h.net_drivers.iter().map(|d| format!("--net={d}")).collect();
    assert_eq!(sorted(fish_complete(&kit, "rootlesskit --net=")), nets);
    assert_eq!(
        sorted(fish_complete(&kit, "rootlesskit --pidns --port-driver ")),
        h.port_drivers
    );
    for line in [
        "rootlesskit ech",
        "rootlesskit --net=slirp4netns -p 127.0.0.1:8080:80/tcp ech",
        "rootlesskit --state-dir /tmp --pidns ech",
        "rootlesskit -- ech",
    ] {
        let v = fish_complete(&kit, line);
        assert!(has(&v, "echo"), "{line}: {v:?}");
    }
    // The wrapped command's own completion (fish ships one for ls), not rootlesskit's flags.
    let v = fish_complete(&kit, "rootlesskit --copy-up=/etc --pidns ls --al");
    assert!(has(&v, "--all") && !has(&v, "--pidns"), "{v:?}");
    assert!(has(
        &fish_complete(&kit, "rootlesskit --copy-up /e"),
        "/etc/"
    ));

    assert_eq!(sorted(fish_complete(&ctl, "rootlessctl ")), h.ctl_commands);
    assert_eq!(
        longs(fish_complete(&ctl, "rootlessctl --")),
        h.ctl_long_flags
    );
    assert_eq!(
        sorted(fish_complete(&ctl, "rootlessctl --socket /x stats --")),
        ["--json", "--watch"]
    );
    assert_eq!(fish_complete(&ctl, "rootlessctl list-ports --"), ["--json"]);
    assert_eq!(
        sorted(fish_complete(&ctl, "rootlessctl help ")),
        h.ctl_commands
    );
}

/// zsh (`compinit`, interactive zsh on a pty): the same checks as fish, for both functions.
#[test]
fn completion_zsh() {
    let h = help_facts();
    let fpath = completion_file("zsh/_rootlesskit")
        .parent()
        .unwrap()
        .to_path_buf();
    completion_file("zsh/_rootlessctl");
    let longs = |v: Vec<String>| sorted(v.into_iter().filter(|x| x.starts_with("--")).collect());
    assert_eq!(
        longs(zsh_complete(&fpath, "rootlesskit --")),
        h.kit_long_flags
    );
    assert_eq!(zsh_complete(&fpath, "rootlesskit --ne"), ["--net"]);
    assert_eq!(zsh_complete(&fpath, "rootlesskit --net="), h.net_drivers);
    assert_eq!(
        zsh_complete(&fpath, "rootlesskit --pidns --port-driver "),
        h.port_drivers
    );
    for line in [
        "rootlesskit ech",
        "rootlesskit --net=slirp4netns -p 127.0.0.1:8080:80/tcp ech",
        "rootlesskit --state-dir /tmp --pidns ech",
    ] {
        let v = zsh_complete(&fpath, line);
        assert!(has(&v, "echo"), "{line}: {v:?}");
    }
    let v = zsh_complete(&fpath, "rootlesskit --copy-up=/etc --pidns ls --al");
    assert!(has(&v, "--all") && !has(&v, "--pidns"), "{v:?}");
    assert_eq!(zsh_complete(&fpath, "rootlessctl "), h.ctl_commands);
    assert_eq!(
        longs(zsh_complete(&fpath, "rootlessctl --")),
        h.ctl_long_flags
    );
    assert_eq!(
        zsh_complete(&fpath, "rootlessctl --socket=/x stats --"),
        ["--json", "--watch"]
    );
    assert_eq!(zsh_complete(&fpath, "rootlessctl help "), h.ctl_commands);
}

/// bash (with bash-completion): the same checks; `--net=` arrives as `--net` `=` `` because
/// of COMP_WORDBREAKS.
#[test]
fn completion_bash() {
    let h = help_facts();
    let kit = completion_file("bash/rootlesskit");
    let ctl = completion_file("bash/rootlessctl");
    let k = |w: &[&str]| sorted(bash_complete(&kit, "_rootlesskit", w));
    let longs = |v: Vec<String>| sorted(v.into_iter().filter(|x| x.starts_with("--")).collect());
    assert_eq!(longs(k(&["rootlesskit", "--"])), h.kit_long_flags);
    assert_eq!(k(&["rootlesskit", "--ne"]), ["--net"]);
    assert_eq!(k(&["rootlesskit", "--net", "=", ""]), h.net_drivers);
    assert_eq!(
        k(&["rootlesskit", "--pidns", "--port-driver", ""]),
        h.port_drivers
    );
    for w in [
        &["rootlesskit", "ech"][..],
        &[
            "rootlesskit",
            "--net",
            "=",
            "slirp4netns",
            "-p",
            "127.0.0.1:8080:80/tcp",
            "ech",
        ],
        &["rootlesskit", "--", "ech"],
    ] {
        assert!(has(&k(w), "echo"), "{w:?}");
    }
    let c = |w: &[&str]| sorted(bash_complete(&ctl, "_rootlessctl", w));
    let mut cmds = h.ctl_commands.clone();
    cmds.push("h".into());
    cmds.sort();
    assert_eq!(c(&["rootlessctl", ""]), cmds);
    assert_eq!(longs(c(&["rootlessctl", "--"])), h.ctl_long_flags);
    assert_eq!(
        c(&["rootlessctl", "--socket", "=", "/x", "stats", "--"]),
        ["--json", "--watch"]
    );
    assert_eq!(c(&["rootlessctl", "info", "--"]), ["--json"]);
}

/// `remove-ports` and `stats` complete the IDs of the ports published by the running
/// rootlesskit named by `--socket`, in every shell.
#[test]
fn completion_of_port_ids_asks_the_running_rootlesskit() {
    let kit = kit_with_one_port();
    let state = kit.state_dir();
    let o = rootlessctl(
        &state,
        &["add-ports", &format!("127.0.0.1:{}:82/udp", free_port())],
    );
    assert_eq!(o.stdout, "2\n", "{}", o.dump());
    let sock = state.join("api.sock").display().to_string();
    let ids = ["1", "2"];
    let fish = completion_file("fish/rootlessctl.fish");
    for cmd in ["remove-ports", "stats"] {
        let v = sorted(fish_complete(
            &fish,
            &format!("rootlessctl --socket {sock} {cmd} "),
        ));
        assert_eq!(v, ids, "fish {cmd}");
        let v = sorted(fish_complete(
            &fish,
            &format!("rootlessctl --socket={sock} {cmd} 1 "),
        ));
        assert_eq!(v, ids, "fish {cmd}");
    }
    let fpath = completion_file("zsh/_rootlessctl")
        .parent()
        .unwrap()
        .to_path_buf();
    for cmd in ["remove-ports", "stats"] {
        let v = zsh_complete(&fpath, &format!("rootlessctl --socket={sock} {cmd} "));
        assert_eq!(v, ids, "zsh {cmd}");
    }
    let bash = completion_file("bash/rootlessctl");
    for cmd in ["remove-ports", "stats"] {
        let v = sorted(bash_complete(
            &bash,
            "_rootlessctl",
            &["rootlessctl", "--socket", "=", &sock, cmd, ""],
        ));
        assert_eq!(v, ids, "bash {cmd}");
    }
    std::fs::write(kit.dir().join("go"), "").unwrap();
}
