//! API compatibility against Debian's RootlessKit 1.1.0 with the real binaries.
//!
//! Run as root (the servers are started as the unprivileged user `rktest`):
//! ```text
//! cargo build -p rootlesskit-launcher --bins
//! cargo test -p rootlesskit-tests --test api_compat -- --test-threads=2
//! ```
//! Our binaries are taken from `$RK_BIN_DIR` (default `<workspace>/target/debug`).
//!
//! - `rootlessctl_matches_debian_against_go_server`: our `rootlessctl` and Debian's against the
//!   Go server: identical stdout, stderr and exit codes.
//! - `docker_proxy_against_go_and_our_servers`: our `rootlesskit-docker-proxy` against the Go
//!   server and ours
//!   (builtin and slirp4netns port drivers) with a fake `docker-proxy`.
//! - `our_rootlesskit_api_matches_go`: our `rootlesskit` and Debian's started with the same
//!   flags; identical raw requests to both `api.sock`s, compared byte for byte (Date masked);
//!   Debian's `rootlessctl` against our server.
//!
//! Where the newest RootlessKit differs from 1.1.0 the newest is asserted (noted inline).

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

fn bin_dir() -> PathBuf {
    std::env::var_os("RK_BIN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/debug"))
}

fn ours(name: &str) -> PathBuf {
    let p = bin_dir().join(name);
    assert!(
        p.exists(),
        "{} missing: run `cargo build -p rootlesskit-launcher --bins` first",
        p.display()
    );
    p
}

fn rktest() -> (u32, u32) {
    let pw = nix::unistd::User::from_name("rktest")
        .ok()
        .flatten()
        .expect("user rktest");
    (pw.uid.as_raw(), pw.gid.as_raw())
}

/// Preconditions of every test here; printed reason and false when not met.
fn can_run() -> bool {
    assert!(
        nix::unistd::geteuid().is_root(),
        "must run as root (the servers run as rktest): these tests belong to the as_root phase of hack/test.sh"
    );
    assert!(
        Path::new("/usr/bin/rootlesskit").exists() && Path::new("/usr/bin/rootlessctl").exists(),
        "Debian's rootlesskit 1.1.0 is not installed: apt-get install rootlesskit (hack/test.sh does)"
    );
    true
}

/// A `rootlesskit ... sleep 600` as rktest; SIGTERM + wait on drop.
struct Kit {
    child: Child,
    dir: PathBuf,
}

impl Kit {
    fn start(binary: &Path, tag: &str, flags: &[&str]) -> Kit {
        let dir = PathBuf::from(format!("/tmp/rkrs-api-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let (uid, gid) = rktest();
        let child = Command::new(binary)
            .arg(format!("--state-dir={}", dir.display()))
            .args(flags)
            .args(["sleep", "600"])
            .current_dir("/tmp")
            .env("HOME", "/tmp")
            .env_remove("ROOTLESSKIT_STATE_DIR")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .uid(uid)
            .gid(gid)
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", binary.display()));
        let mut kit = Kit { child, dir };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !kit.sock().exists() {
            if let Ok(Some(st)) = kit.child.try_wait() {
                panic!("{} {flags:?} exited early: {st}", binary.display());
            }
            assert!(
                Instant::now() < deadline,
                "{} did not create api.sock",
                binary.display()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        kit
    }
    fn sock(&self) -> PathBuf {
        self.dir.join("api.sock")
    }
}

impl Drop for Kit {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn run(binary: &Path, args: &[&str]) -> Output {
    Command::new(binary)
        .args(args)
        .env_remove("ROOTLESSKIT_STATE_DIR")
        .output()
        .unwrap()
}

/// (exit code, stdout, stderr) with the client's own version masked in help/version output.
fn norm(o: &Output) -> (i32, String, String) {
    let mut out = String::from_utf8_lossy(&o.stdout).into_owned();
    for v in ["1.1.0", env!("CARGO_PKG_VERSION")] {
        out = out
            .replace(&format!("VERSION:\n   {v}\n"), "VERSION:\n   *\n")
            .replace(
                &format!("rootlessctl version {v}\n"),
                "rootlessctl version *\n",
            );
    }
    (
        o.status.code().unwrap_or(-1),
        out,
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// Body lines after the table header sorted (Go lists ports in map order).
fn sorted_lines(s: &str, keep_first: bool) -> Vec<String> {
    let mut l: Vec<String> = s.lines().map(String::from).collect();
    let skip = usize::from(keep_first && !l.is_empty());
    l[skip..].sort();
    l
}

#[test]
fn rootlessctl_matches_debian_against_go_server_as_root() {
    if !can_run() {
        return;
    }
    let go = Kit::start(
        Path::new("/usr/bin/rootlesskit"),
        "ctl",
        &["--net=slirp4netns", "--port-driver=builtin"],
    );
    let debian = Path::new("/usr/bin/rootlessctl");
    let mine = ours("rootlessctl");
    let sock = go.sock();
    let s = sock.to_str().unwrap();
    let same = |args: &[&str]| {
        let (a, b) = (run(debian, args), run(&mine, args));
        assert_eq!(norm(&b), norm(&a), "rootlessctl {args:?}");
    };
    // Stateless cases: help texts, usage errors, parse errors, info.
    for args in [
        &["--help"][..],
        &[],
        &["help"],
        &["h"],
        &["--version"],
        &["-v"],
        &["list-ports", "--help"],
        &["add-ports", "--help"],
        &["remove-ports", "--help"],
        &["info", "-h"],
        &["help", "info"],
        &["help", "add-ports"],
        &["help", "remove-ports"],
        &["h", "list-ports"],
        &["help", "help"],
        &["help", "-x"],
        &["-x"],
        &["--socket"],
        &["list-ports", "-x"],
        &["bogus"],
        &["help", "bogus"],
        &["info"],
        &["--socket", "/nonexistent", "info"],
        &["--socket", s, "info", "--json"],
        &["--debug", "--socket", s, "info"],
        &["-debug=false", "--socket=/x", "--socket", s, "info"],
        &["--socket", s, "info", "--json=false"],
        &["--socket", s, "info", "--json=maybe"],
        &["--socket", s, "list-ports"],
        &["--socket", s, "list-ports", "--json"],
        &["--socket", s, "add-ports"],
        &["--socket", s, "add-ports", "bad"],
        &["--socket", s, "add-ports", "8080:80/tcp"],
        &["--socket", s, "add-ports", "127.0.0.1:8080:80/TCP"],
        &["--socket", s, "add-ports", "127.0.0.1:x:80/tcp"],
        &["--socket", s, "add-ports", "127.0.0.1:18700:y/tcp"],
        &["--socket", s, "add-ports", "127.0.0.1:0:80/tcp"],
        &[
            "--socket",
            s,
            "add-ports",
            "127.0.0.1:18700:80/tcp",
            "--json",
        ],
        &["--socket", s, "add-ports", "bogus:18700:80/tcp"],
        &["--socket", s, "remove-ports"],
        &["--socket", s, "remove-ports", "abc"],
        &["--socket", s, "remove-ports", "99"],
        &["--socket", s, "remove-ports", "--", "-1"],
    ] {
        same(args);
    }
    // A socket nobody listens on, and a directory: Go's url.Error texts.
    let stale = go.dir.with_extension("stale.sock");
    let _ = std::fs::remove_file(&stale);
    drop(std::os::unix::net::UnixListener::bind(&stale).unwrap());
    let st = stale.to_str().unwrap();
    for args in [
        &["--socket", st, "info"][..],
        &["--socket", st, "add-ports", "127.0.0.1:1:1/tcp"],
        &["--socket", st, "remove-ports", "1"],
        &["--socket", "/tmp", "list-ports"],
    ] {
        same(args);
    }
    let _ = std::fs::remove_file(&stale);
    // Stateful: alternate clients, expecting the next id each time.
    let add = |bin: &Path, json: bool, spec: &str| {
        let mut a = vec!["--socket", s, "add-ports"];
        if json {
            a.push("--json");
        }
        a.push(spec);
        norm(&run(bin, &a))
    };
    assert_eq!(
        add(debian, false, "127.0.0.1:18701:80/tcp"),
        (0, "1\n".into(), String::new())
    );
    assert_eq!(
        add(&mine, false, ":18702:10.0.2.100:81/udp"),
        (0, "2\n".into(), String::new())
    );
    let d = add(debian, true, "[::1]:18703:82/tcp6");
    let m = add(&mine, true, "[::1]:18704:83/tcp6");
    assert_eq!(
        m.1,
        d.1.replace("\"id\":3", "\"id\":4")
            .replace("18703", "18704")
            .replace(":82}", ":83}")
    );
    // Duplicate: both fail with the server's text.
    let dd = add(debian, false, "127.0.0.1:18701:80/tcp");
    assert_eq!(dd, (1, String::new(), "error: conflict with ID 1\n".into()));
    assert_eq!(add(&mine, false, "127.0.0.1:18701:80/tcp"), dd);
    for args in [
        &["--socket", s, "list-ports"][..],
        &["--socket", s, "list-ports", "--json"],
    ] {
        let (a, b) = (norm(&run(debian, args)), norm(&run(&mine, args)));
        assert_eq!((b.0, &b.2), (a.0, &a.2));
        let table = args.len() == 3;
        assert_eq!(
            sorted_lines(&b.1, table),
            sorted_lines(&a.1, table),
            "{args:?}"
        );
        assert_eq!(sorted_lines(&b.1, table).len(), 4 + usize::from(table));
    }
    let r = norm(&run(debian, &["--socket", s, "remove-ports", "1", "99"]));
    assert_eq!(r, (1, "1\n".into(), "error: unknown id: 99\n".into()));
    let r = norm(&run(&mine, &["--socket", s, "remove-ports", "2", "1"]));
    assert_eq!(r, (1, "2\n".into(), "error: unknown id: 1\n".into()));
    // $ROOTLESSKIT_STATE_DIR instead of --socket.
    let env_run = |bin: &Path| {
        let (code, out, err) = norm(
            &Command::new(bin)
                .args(["list-ports", "--json"])
                .env("ROOTLESSKIT_STATE_DIR", &go.dir)
                .output()
                .unwrap(),
        );
        (code, sorted_lines(&out, false), err)
    };
    let e = env_run(debian);
    assert_eq!(e.1.len(), 2);
    assert_eq!(env_run(&mine), e);
    // --net=host, no port driver: info without drivers, "no PortDriver is available".
    let host = Kit::start(
        Path::new("/usr/bin/rootlesskit"),
        "ctl-host",
        &["--net=host"],
    );
    let hs = host.sock();
    let hs = hs.to_str().unwrap();
    for args in [
        &["--socket", hs, "info"][..],
        &["--socket", hs, "info", "--json"],
        &["--socket", hs, "list-ports"],
        &["--socket", hs, "add-ports", "127.0.0.1:18705:80/tcp"],
        &["--socket", hs, "remove-ports", "1"],
    ] {
        same(args);
    }
    drop(host);
    // Non-JSON error bodies (gorilla/mux's 404/405) are rendered identically: point both at a
    // socket served by a tiny fake that always answers 404 / 405.
    for (status, body) in [
        ("404 Not Found", "404 page not found\n"),
        ("405 Method Not Allowed", ""),
    ] {
        let fake = fake_server(status, body);
        let fs = fake.0.to_str().unwrap().to_string();
        let args = ["--socket", fs.as_str(), "info"];
        let (a, b) = (norm(&run(debian, &args)), norm(&run(&mine, &args)));
        assert_eq!(b, a);
        assert!(a.2.starts_with("error: unexpected HTTP status "), "{a:?}");
        let _ = fake.1.join();
        let _ = std::fs::remove_file(&fake.0);
    }
}

/// A unix socket answering every request with `status` and `body` (close-delimited), for
/// `count` connections.
fn fake_server(status: &str, body: &str) -> (PathBuf, std::thread::JoinHandle<()>) {
    let path = std::env::temp_dir().join(format!(
        "rkrs-fake-{}-{}.sock",
        std::process::id(),
        status.split(' ').next().unwrap()
    ));
    let _ = std::fs::remove_file(&path);
    let l = std::os::unix::net::UnixListener::bind(&path).unwrap();
    let resp = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let h = std::thread::spawn(move || {
        for _ in 0..2 {
            let Ok((mut c, _)) = l.accept() else { return };
            let mut buf = [0u8; 4096];
            let _ = c.read(&mut buf);
            let _ = c.write_all(resp.as_bytes());
        }
    });
    (path, h)
}

/// Fake `docker-proxy`: records its arguments, reports success on fd 3, sleeps.
fn fake_docker_proxy(dir: &Path) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let p = dir.join("docker-proxy");
    std::fs::write(
        &p,
        "#!/bin/sh\necho \"$@\" > \"$FAKE_PROXY_LOG\"\nprintf '0\\n' >&3\nexec sleep 300\n",
    )
    .unwrap();
    std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    p
}

/// Runs our docker-proxy with fd 3 = a pipe; returns (child, fd 3 reader).
fn start_proxy(state: &Path, fakebin: &Path, log: &Path, args: &[&str]) -> (Child, std::fs::File) {
    let (r, w) = nix::unistd::pipe().unwrap();
    let w_raw = std::os::fd::AsRawFd::as_raw_fd(&w);
    let mut cmd = Command::new(ours("rootlesskit-docker-proxy"));
    cmd.args(args)
        .env("ROOTLESSKIT_STATE_DIR", state)
        .env("FAKE_PROXY_LOG", log)
        .env(
            "PATH",
            format!(
                "{}:{}",
                fakebin.display(),
                std::env::var("PATH").unwrap_or_default()
            ),
        )
        .stderr(Stdio::piped());
    // SAFETY: dup2 is async-signal-safe; it places the pipe's write end on fd 3 in the child.
    unsafe {
        cmd.pre_exec(move || {
            if libc::dup2(w_raw, 3) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = cmd.spawn().unwrap();
    drop(w);
    (child, std::fs::File::from(r))
}

fn list_json(sock: &Path) -> Vec<serde_json::Value> {
    let o = run(
        Path::new("/usr/bin/rootlessctl"),
        &["--socket", sock.to_str().unwrap(), "list-ports", "--json"],
    );
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn docker_proxy_against_go_and_our_servers_as_root() {
    if !can_run() {
        return;
    }
    let tmp = std::env::temp_dir().join(format!("rkrs-dp-{}", std::process::id()));
    let fakebin = tmp.join("bin");
    fake_docker_proxy(&fakebin);
    let log = tmp.join("args");

    // builtin: tcp -> tcp4, childIP 127.0.0.1, real proxy on 127.0.0.1; SIGINT removes the port.
    // Against the Go server and against ours.
    let ours_bin = ours("rootlesskit");
    for (bin, tag) in [
        (Path::new("/usr/bin/rootlesskit"), "dp-builtin-go"),
        (ours_bin.as_path(), "dp-builtin-rs"),
    ] {
        let go = Kit::start(bin, tag, &["--net=slirp4netns", "--port-driver=builtin"]);
        for (host_ip, proto, want_proto, child_ip) in [
            ("127.0.0.1", "tcp", "tcp4", "127.0.0.1"),
            ("::1", "udp", "udp6", "::1"),
        ] {
            let (mut child, mut fd3) = start_proxy(
                &go.dir,
                &fakebin,
                &log,
                &[
                    "-container-ip",
                    "172.17.0.2",
                    "-container-port",
                    "80",
                    "-host-ip",
                    host_ip,
                    "-host-port",
                    "18801",
                    "-proto",
                    proto,
                ],
            );
            let mut got = [0u8; 2];
            fd3.read_exact(&mut got).unwrap();
            assert_eq!(&got, b"0\n");
            let ports = list_json(&go.sock());
            assert_eq!(ports.len(), 1);
            assert_eq!(
                ports[0]["spec"],
                serde_json::json!({"proto": want_proto, "parentIP": host_ip, "parentPort": 18801, "childPort": 18801, "childIP": child_ip})
            );
            assert_eq!(
            std::fs::read_to_string(&log).unwrap(),
            format!("-container-ip 172.17.0.2 -container-port 80 -host-ip {child_ip} -host-port 18801 -proto {proto}\n")
        );
            nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(child.id() as i32),
                nix::sys::signal::Signal::SIGINT,
            )
            .unwrap();
            assert!(child.wait().unwrap().success());
            assert!(list_json(&go.sock()).is_empty());
        }
        drop(go);
    }

    // slirp4netns port driver: no tcp6 -> warning, "0\n", exit 0, nothing published; tcp ->
    // childIP is the network's 10.0.2.100 (disallowLoopbackChildIP).
    for (bin, tag) in [
        (Path::new("/usr/bin/rootlesskit"), "dp-slirp-go"),
        (ours_bin.as_path(), "dp-slirp-rs"),
    ] {
        let go = Kit::start(
            bin,
            tag,
            &["--net=slirp4netns", "--port-driver=slirp4netns"],
        );
        let (child, mut fd3) = start_proxy(
            &go.dir,
            &fakebin,
            &log,
            &[
                "-container-ip",
                "172.17.0.2",
                "-container-port",
                "80",
                "-host-ip",
                "::",
                "-host-port",
                "18802",
                "-proto",
                "tcp",
            ],
        );
        let mut all = Vec::new();
        fd3.read_to_end(&mut all).unwrap();
        assert_eq!(all, b"0\n");
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success());
        assert!(String::from_utf8_lossy(&out.stderr)
        .contains(r#"level=warning msg="protocol \"tcp6\" is not supported by the RootlessKit port driver \"slirp4netns\""#));
        assert!(list_json(&go.sock()).is_empty());
        let (mut child, mut fd3) = start_proxy(
            &go.dir,
            &fakebin,
            &log,
            &[
                "-container-ip",
                "172.17.0.2",
                "-container-port",
                "80",
                "-host-ip",
                "0.0.0.0",
                "-host-port",
                "18803",
                "-proto",
                "tcp",
            ],
        );
        let mut got = [0u8; 2];
        fd3.read_exact(&mut got).unwrap();
        let ports = list_json(&go.sock());
        assert_eq!(ports[0]["spec"]["childIP"], "10.0.2.100");
        assert!(std::fs::read_to_string(&log)
            .unwrap()
            .contains("-host-ip 10.0.2.100 "));
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(child.id() as i32),
            nix::sys::signal::Signal::SIGINT,
        )
        .unwrap();
        assert!(child.wait().unwrap().success());
        assert!(list_json(&go.sock()).is_empty());
    }

    // No port driver (--net=host): the real docker-proxy is executed with the same arguments.
    let host = Kit::start(
        Path::new("/usr/bin/rootlesskit"),
        "dp-host",
        &["--net=host"],
    );
    let (mut child, mut fd3) = start_proxy(
        &host.dir,
        &fakebin,
        &log,
        &[
            "-container-ip",
            "172.17.0.2",
            "-container-port",
            "80",
            "-host-ip",
            "0.0.0.0",
            "-host-port",
            "18804",
            "-proto",
            "udp",
        ],
    );
    let mut got = [0u8; 2];
    fd3.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"0\n");
    assert_eq!(
        std::fs::read_to_string(&log).unwrap(),
        "-container-ip 172.17.0.2 -container-port 80 -host-ip 0.0.0.0 -host-port 18804 -proto udp\n"
    );
    // exec: the process is now the fake proxy (script or its sleep), not a wrapper.
    let comm = std::fs::read_to_string(format!("/proc/{}/comm", child.id())).unwrap();
    assert!(comm == "sleep\n" || comm == "docker-proxy\n", "{comm:?}");
    child.kill().unwrap();
    let _ = child.wait();
    drop(host);

    // Flag errors and -h: Go's flag package (usage on stderr, exit 2 / 0), same as Debian's.
    // The usage line names argv[0]: mapped to "PROG" on both sides.
    let go_dp = Path::new("/usr/bin/rootlesskit-docker-proxy");
    let our_dp = ours("rootlesskit-docker-proxy");
    for args in [
        &["-h"][..],
        &["--help"],
        &["-bogus"],
        &["-host-port", "x"],
        &["-proto"],
    ] {
        let prog = |o: &Output, bin: &Path| {
            String::from_utf8_lossy(&o.stderr).replace(bin.to_str().unwrap(), "PROG")
        };
        let (a, b) = (run(go_dp, args), run(&our_dp, args));
        assert_eq!(
            (b.status.code(), &b.stdout, prog(&b, &our_dp)),
            (a.status.code(), &a.stdout, prog(&a, go_dp)),
            "{args:?}"
        );
        assert!(prog(&a, go_dp).contains("Usage of PROG:\n"));
    }

    // Errors go to fd 3 as "1\n<err>" and exit 1.
    let (mut child, mut fd3) = start_proxy(&tmp.join("nonexistent"), &fakebin, &log, &[]);
    let mut all = String::new();
    fd3.read_to_string(&mut all).unwrap();
    assert!(!child.wait().unwrap().success());
    assert!(
        all.starts_with("1\nerror while connecting to RootlessKit API socket: stat "),
        "{all:?}"
    );
    let _ = std::fs::remove_dir_all(&tmp);
}

// ------------------------------------------------------------------------------------------
// Raw HTTP against both servers.

struct Raw {
    head: Vec<String>,
    body: Vec<u8>,
}

impl Raw {
    fn masked(&self) -> Vec<String> {
        self.head
            .iter()
            .map(|l| {
                if l.starts_with("Date: ") {
                    "Date: *".into()
                } else {
                    l.clone()
                }
            })
            .collect()
    }
}

fn exchange(sock: &Path, req: &[u8]) -> Raw {
    exchange_with(sock, req, false)
}

/// [`exchange`]; with `half_close` the client shuts down its write side once the request is
/// sent (`curl`/`nc -N` style) and still expects the answer.
fn exchange_with(sock: &Path, req: &[u8], half_close: bool) -> Raw {
    let mut s = UnixStream::connect(sock).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    s.write_all(req).unwrap();
    if half_close {
        s.shutdown(std::net::Shutdown::Write).unwrap();
    }
    let mut r = BufReader::new(s);
    let mut head = Vec::new();
    loop {
        let mut line = String::new();
        r.read_line(&mut line).unwrap();
        let line = line.trim_end().to_string();
        if line.is_empty() {
            break;
        }
        head.push(line);
    }
    let get = |n: &str| {
        head.iter()
            .find(|l| l.to_ascii_lowercase().starts_with(&format!("{n}:")))
            .map(|l| l[n.len() + 1..].trim().to_string())
    };
    let mut body = Vec::new();
    if req.starts_with(b"HEAD ") {
    } else if get("transfer-encoding").as_deref() == Some("chunked") {
        loop {
            let mut line = String::new();
            r.read_line(&mut line).unwrap();
            let n = usize::from_str_radix(line.trim(), 16).unwrap();
            let mut buf = vec![0u8; n + 2];
            r.read_exact(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            body.extend_from_slice(&buf[..n]);
        }
    } else if let Some(n) = get("content-length") {
        body = vec![0u8; n.parse().unwrap()];
        r.read_exact(&mut body).unwrap();
    }
    Raw { head, body }
}

fn post(body: &str) -> Vec<u8> {
    format!(
        "POST /v1/ports HTTP/1.1\r\nHost: rootlesskit\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

fn req(method: &str, path: &str) -> Vec<u8> {
    format!("{method} {path} HTTP/1.1\r\nHost: rootlesskit\r\n\r\n").into_bytes()
}

#[test]
fn our_rootlesskit_api_matches_go_as_root() {
    if !can_run() {
        return;
    }
    let flags = ["--net=slirp4netns", "--port-driver=builtin"];
    let go = Kit::start(Path::new("/usr/bin/rootlesskit"), "kit-go", &flags);
    let rs = Kit::start(&ours("rootlesskit"), "kit-rs", &flags);

    // info: same keys in the same order and the same drivers; apiVersion 1.1.2 is the newest
    // (v3.1.0+), 1.1.0 reports 1.1.1.
    let (gi, ri) = (
        exchange(&go.sock(), &req("GET", "/v1/info")),
        exchange(&rs.sock(), &req("GET", "/v1/info")),
    );
    let names = |r: &Raw| {
        r.head
            .iter()
            .map(|l| l.split(':').next().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(names(&ri), names(&gi));
    let (gv, rv): (serde_json::Value, serde_json::Value) = (
        serde_json::from_slice(&gi.body).unwrap(),
        serde_json::from_slice(&ri.body).unwrap(),
    );
    assert_eq!(rv["apiVersion"], "1.1.2");
    assert_eq!(gv["apiVersion"], "1.1.1");
    assert_eq!(rv["networkDriver"], gv["networkDriver"]);
    assert_eq!(rv["portDriver"], gv["portDriver"]);
    assert_eq!(rv["stateDir"], rs.dir.to_str().unwrap());
    assert_eq!(
        rv["childPID"].as_i64().unwrap().to_string(),
        std::fs::read_to_string(rs.dir.join("child_pid")).unwrap()
    );

    // The script: each server gets its own ports (same digit count), mapped back for the
    // comparison.
    let script: Vec<(&str, String)> = vec![
        ("empty list", "GET /v1/ports".into()),
        (
            "add",
            r#"{"proto":"tcp","parentIP":"127.0.0.1","parentPort":P1,"childPort":81}"#.into(),
        ),
        (
            "duplicate",
            r#"{"proto":"tcp","parentIP":"127.0.0.1","parentPort":P1,"childPort":82}"#.into(),
        ),
        (
            "unknown proto",
            r#"{"proto":"xx","parentPort":P2,"childPort":1}"#.into(),
        ),
        (
            "bad parentIP",
            r#"{"proto":"tcp","parentIP":"bogus","parentPort":P2,"childPort":1}"#.into(),
        ),
        (
            "bad childIP",
            r#"{"proto":"tcp4","childIP":"zz","parentPort":P2,"childPort":1}"#.into(),
        ),
        ("zero ports", r#"{"proto":"tcp"}"#.into()),
        (
            "bad childPort",
            r#"{"proto":"tcp","parentPort":P2,"childPort":-200}"#.into(),
        ),
        ("array", "[]".into()),
        ("null", "null".into()),
        ("empty", String::new()),
        ("truncated", r#"{"proto":"#.into()),
        ("string port", r#"{"proto":"tcp","parentPort":"1"}"#.into()),
        (
            "trailing garbage",
            r#"{"proto":"tcp","parentIP":"127.0.0.1","parentPort":P3,"childPort":83} trailing"#
                .into(),
        ),
        (
            "html",
            r#"{"proto":"tcp","parentIP":"<&>","parentPort":P2,"childPort":1}"#.into(),
        ),
        ("delete", "DELETE /v1/ports/1".into()),
        ("delete unknown", "DELETE /v1/ports/99".into()),
        ("delete non-numeric", "DELETE /v1/ports/abc".into()),
        ("unknown path", "GET /v1/foo".into()),
        ("wrong method", "PUT /v1/ports".into()),
        ("head", "HEAD /v1/info".into()),
        ("double slash", "GET //v1/info".into()),
        // Bind errors come from the forwarder, verbatim like Go's net.Listen texts.
        (
            "bind foreign ip",
            r#"{"proto":"tcp","parentIP":"1.2.3.4","parentPort":P2,"childPort":80}"#.into(),
        ),
        (
            "tcp4 on ::1",
            r#"{"proto":"tcp4","parentIP":"::1","parentPort":P2,"childPort":80}"#.into(),
        ),
        (
            "privileged",
            r#"{"proto":"tcp","parentIP":"127.0.0.1","parentPort":22,"childPort":80}"#.into(),
        ),
        (
            "wildcard v4",
            r#"{"proto":"tcp","parentIP":"0.0.0.0","parentPort":P2,"childPort":80}"#.into(),
        ),
        (
            "empty ip is not 0.0.0.0",
            r#"{"proto":"tcp","parentPort":P2,"childPort":80}"#.into(),
        ),
        (
            "tcp4 in use",
            r#"{"proto":"tcp4","parentIP":"0.0.0.0","parentPort":P2,"childPort":80}"#.into(),
        ),
        ("delete wildcard", "DELETE /v1/ports/3".into()),
    ];
    let build = |item: &str, base: u16| -> Vec<u8> {
        let item = item
            .replace("P1", &base.to_string())
            .replace("P2", &(base + 1).to_string())
            .replace("P3", &(base + 2).to_string());
        match item.split_once(' ') {
            Some((m, p)) if ["GET", "PUT", "DELETE", "HEAD"].contains(&m) && p.starts_with('/') => {
                req(m, p)
            }
            _ => post(&item),
        }
    };
    const GO: u16 = 18910;
    const RS: u16 = 19910;
    for (name, item) in &script {
        let g = exchange(&go.sock(), &build(item, GO));
        let r = exchange(&rs.sock(), &build(item, RS));
        let mut rb = String::from_utf8_lossy(&r.body).into_owned();
        for i in 0..3 {
            rb = rb.replace(&(RS + i).to_string(), &(GO + i).to_string());
        }
        assert_eq!(r.masked(), g.masked(), "{name}: head");
        assert_eq!(rb, String::from_utf8_lossy(&g.body), "{name}: body");
    }
    // sctp: newest (v2.3.2+) `unsupported port protocol sctp`; 1.1.0 `spec was not validated?`.
    let r = exchange(
        &rs.sock(),
        &post(r#"{"proto":"sctp","parentPort":19950,"childPort":1}"#),
    );
    assert_eq!(
        String::from_utf8_lossy(&r.body),
        "{\"message\":\"unsupported port protocol sctp\"}\n"
    );

    // Debian's rootlessctl against our server.
    let ctl = |args: &[&str]| norm(&run(Path::new("/usr/bin/rootlessctl"), args));
    let s = rs.sock();
    let s = s.to_str().unwrap();
    assert_eq!(
        ctl(&["--socket", s, "add-ports", "127.0.0.1:19960:80/tcp"]),
        (0, "4\n".into(), String::new())
    );
    assert_eq!(
        ctl(&["--socket", s, "add-ports", "127.0.0.1:19960:80/tcp"]),
        (1, String::new(), "error: conflict with ID 4\n".into())
    );
    let list = ctl(&["--socket", s, "list-ports"]);
    assert_eq!(
        list.1,
        "ID    PROTO    PARENTIP     PARENTPORT    CHILDIP    CHILDPORT    \n\
         2     tcp      127.0.0.1    19912                    83           \n\
         4     tcp      127.0.0.1    19960                    80           \n"
    );
    assert_eq!(
        ctl(&["--socket", s, "remove-ports", "4", "2"]),
        (0, "4\n2\n".into(), String::new())
    );
    let info = ctl(&["--socket", s, "info"]);
    assert!(
        info.1
            .starts_with("- REST API version: 1.1.2\n- Implementation version: "),
        "{info:?}"
    );
    assert!(info.1.ends_with(
        "- Network Driver: slirp4netns\n  - DNS: [10.0.2.3]\n  - IP: 10.0.2.100\n- Port Driver: builtin\n  - Supported protocols: [tcp tcp4 tcp6 udp udp4 udp6]\n"
    ));

    // A client that shuts down its write side right after the request still gets the answer
    // from Go (net/http only cancels the request context); ours answers the same bytes.
    let (g, r) = (
        exchange_with(&go.sock(), &req("GET", "/v1/info"), true),
        exchange_with(&rs.sock(), &req("GET", "/v1/info"), true),
    );
    assert_eq!(r.head[0], "HTTP/1.1 200 OK");
    assert_eq!(names(&r), names(&g), "half-closed info: header names");
    let truncated = post(r#"{"proto":"#);
    let (g, r) = (
        exchange_with(&go.sock(), &truncated, true),
        exchange_with(&rs.sock(), &truncated, true),
    );
    assert_eq!(r.masked(), g.masked(), "half-closed bad add: head");
    assert_eq!(r.body, g.body, "half-closed bad add: body");
    let add = |port: u16| {
        post(&format!(
            r#"{{"proto":"tcp","parentIP":"127.0.0.1","parentPort":{port},"childPort":80}}"#
        ))
    };
    let (g, r) = (
        exchange_with(&go.sock(), &add(GO + 70), true),
        exchange_with(&rs.sock(), &add(RS + 70), true),
    );
    assert_eq!(r.head[0], "HTTP/1.1 201 Created", "half-closed add");
    assert_eq!(r.masked(), g.masked(), "half-closed add: head");
    // Same spec back (ids differ: rootlessctl used one more on ours above).
    let spec = |b: &[u8], port: u16| {
        let v: serde_json::Value = serde_json::from_slice(b).unwrap();
        assert_eq!(v["spec"]["parentPort"], port, "half-closed add: {v}");
        let mut spec = v["spec"].clone();
        spec["parentPort"] = 0.into();
        spec
    };
    assert_eq!(
        spec(&r.body, RS + 70),
        spec(&g.body, GO + 70),
        "half-closed add: body"
    );
}

/// rootlesskit-rs extension: `GET /v1/ports/{id}/stats` counts real forwarded traffic.
#[test]
fn stats_extension_counts_forwarded_traffic_as_root() {
    if !can_run() {
        return;
    }
    let rs = Kit::start(
        &ours("rootlesskit"),
        "stats",
        &["--net=slirp4netns", "--port-driver=builtin"],
    );
    let child_pid = std::fs::read_to_string(rs.dir.join("child_pid")).unwrap();
    // A TCP echo-once service inside the namespace (python3, as root-in-userns).
    let mut svc = Command::new("nsenter")
        .args(["-U", "-n", "-t", child_pid.trim(), "--preserve-credentials", "python3", "-c"])
        .arg(
            "import socket\ns=socket.socket()\ns.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\n\
             s.bind(('127.0.0.1',8090))\ns.listen()\nprint('ready',flush=True)\n\
             c,_=s.accept()\nd=c.recv(100)\nc.sendall(d*10)\nc.close()",
        )
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut ready = String::new();
    BufReader::new(svc.stdout.take().unwrap())
        .read_line(&mut ready)
        .unwrap();
    assert_eq!(ready, "ready\n");
    let r = exchange(
        &rs.sock(),
        &post(r#"{"proto":"tcp","parentIP":"127.0.0.1","parentPort":19970,"childPort":8090}"#),
    );
    assert_eq!(r.head[0], "HTTP/1.1 201 Created");
    let mut c = std::net::TcpStream::connect("127.0.0.1:19970").unwrap();
    c.write_all(b"0123456789").unwrap();
    let mut back = Vec::new();
    c.read_to_end(&mut back).unwrap();
    assert_eq!(back.len(), 100);
    drop(c);
    assert!(svc.wait().unwrap().success());
    // Counters are updated by the workers; allow them a moment after the close.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let r = exchange(&rs.sock(), &req("GET", "/v1/ports/1/stats"));
        assert_eq!(r.head[0], "HTTP/1.1 200 OK");
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        if v["bytesOut"] == 100 && v["active"] == 0 || Instant::now() > deadline {
            assert_eq!(v["id"], 1);
            assert_eq!(v["total"], 1);
            assert_eq!(v["bytesIn"], 10);
            assert_eq!(v["bytesOut"], 100);
            assert_eq!(v["active"], 0);
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let r = exchange(&rs.sock(), &req("GET", "/v1/ports/9/stats"));
    assert_eq!(
        String::from_utf8_lossy(&r.body),
        "{\"message\":\"unknown id: 9\"}\n"
    );
}

/// `--net=host` (no network driver, no port driver): info without `networkDriver` and
/// `portDriver`; every port call answers `no PortDriver is available`, byte for byte as Go.
#[test]
fn our_rootlesskit_without_drivers_matches_go_as_root() {
    if !can_run() {
        return;
    }
    let go = Kit::start(
        Path::new("/usr/bin/rootlesskit"),
        "host-go",
        &["--net=host"],
    );
    let rs = Kit::start(&ours("rootlesskit"), "host-rs", &["--net=host"]);
    let (gi, ri) = (
        exchange(&go.sock(), &req("GET", "/v1/info")),
        exchange(&rs.sock(), &req("GET", "/v1/info")),
    );
    let keys = |r: &Raw| -> Vec<String> {
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        v.as_object().unwrap().keys().cloned().collect()
    };
    assert_eq!(keys(&ri), keys(&gi));
    assert_eq!(keys(&ri), ["apiVersion", "childPID", "stateDir", "version"]);
    for rq in [
        req("GET", "/v1/ports"),
        post(r#"{"proto":"tcp","parentPort":18990,"childPort":80}"#),
        post("garbage"),
        req("DELETE", "/v1/ports/1"),
        req("DELETE", "/v1/ports/x"),
    ] {
        let (g, r) = (exchange(&go.sock(), &rq), exchange(&rs.sock(), &rq));
        assert_eq!(r.masked(), g.masked());
        assert_eq!(r.body, g.body);
        assert_eq!(
            String::from_utf8_lossy(&r.body),
            "{\"message\":\"no PortDriver is available\"}\n"
        );
    }
}
