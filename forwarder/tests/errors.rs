//! Error texts of add_port (Go's `net.Listen` wording), privileged ports, listener survival under
//! EMFILE (in a subprocess with a low RLIMIT_NOFILE, with the child in-process or, as in
//! rootlesskit, in its own process with its own fd table), and a misbehaving child.
//!
//! Run: `cargo test -p rootlesskit-forwarder --test errors`. When run as root, the privileged
//! port check re-executes this binary as uid 1001 (`rktest`) so that port 80 really is refused.

mod common;

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::os::fd::AsFd;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use forwarder::{Backend, ForwarderConfig};

fn add_err(env: &Env, id: u64, s: forwarder::PortSpec) -> String {
    match env.fwd().add_port(id, &s) {
        Ok(()) => panic!("add_port {s:?} succeeded"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn bind_error_texts_are_gos() {
    let env = start(Backend::Epoll);
    assert_eq!(
        add_err(&env, 1, spec("tcp", "1.2.3.4", 18300, "", 80)),
        "listen tcp 1.2.3.4:18300: bind: cannot assign requested address"
    );
    assert_eq!(
        add_err(&env, 1, spec("udp", "1.2.3.4", 18300, "", 80)),
        "listen udp 1.2.3.4:18300: bind: cannot assign requested address"
    );
    assert_eq!(
        add_err(&env, 1, spec("tcp4", "::1", 18301, "", 80)),
        "listen tcp4: address ::1: no suitable address found"
    );
    assert_eq!(
        add_err(&env, 1, spec("tcp6", "127.0.0.1", 18301, "", 80)),
        "listen tcp6: address 127.0.0.1: no suitable address found"
    );
    assert_eq!(
        add_err(&env, 1, spec("sctp", "", 18302, "", 80)),
        "unsupported port protocol sctp"
    );
    let p = free_port();
    env.fwd()
        .add_port(1, &spec("tcp", "", p, "", 80))
        .expect("first bind");
    assert_eq!(
        add_err(&env, 2, spec("tcp", "", p, "", 80)),
        format!("listen tcp :{p}: bind: address already in use")
    );
    assert_eq!(
        add_err(&env, 3, spec("tcp", "0.0.0.0", p, "", 80)),
        format!("listen tcp 0.0.0.0:{p}: bind: address already in use")
    );
    assert_eq!(
        add_err(&env, 4, spec("tcp", "::", p, "", 80)),
        format!("listen tcp [::]:{p}: bind: address already in use")
    );
    let q = free_port();
    env.fwd()
        .add_port(5, &spec("udp", "", q, "", 80))
        .expect("udp bind");
    assert_eq!(
        add_err(&env, 6, spec("udp", "", q, "", 80)),
        format!("listen udp :{q}: bind: address already in use")
    );
    // Same id twice.
    assert_eq!(
        add_err(&env, 1, spec("tcp", "", free_port(), "", 80)),
        "conflict with ID 1"
    );
    assert_eq!(
        env.fwd().remove_port(99).err().map(|e| e.to_string()),
        Some("unknown id: 99".into())
    );
}

fn check_privileged() {
    let start_port = std::fs::read_to_string("/proc/sys/net/ipv4/ip_unprivileged_port_start")
        .expect("read sysctl")
        .trim()
        .to_string();
    assert_eq!(start_port, "1024", "test assumes the default sysctl");
    let env = start(Backend::Epoll);
    assert_eq!(
        add_err(&env, 1, spec("tcp", "", 80, "", 80)),
        "cannot expose privileged port 80, you can add 'net.ipv4.ip_unprivileged_port_start=80' to /etc/sysctl.conf (currently 1024), or choose a larger port number (>= 1024): listen tcp :80: bind: permission denied"
    );
    drop(env);
    let env = start_with(ForwarderConfig {
        backend: Some(Backend::Epoll),
        argv0_is_rootlesskit: true,
        require_foreign_netns: false,
        ..ForwarderConfig::default()
    });
    assert_eq!(
        add_err(&env, 1, spec("udp", "127.0.0.1", 80, "", 80)),
        "cannot expose privileged port 80, you can add 'net.ipv4.ip_unprivileged_port_start=80' to /etc/sysctl.conf (currently 1024), or set CAP_NET_BIND_SERVICE on rootlesskit binary, or choose a larger port number (>= 1024): listen udp 127.0.0.1:80: bind: permission denied"
    );
}

#[test]
fn privileged_port_text() {
    if std::env::var_os("FWD_PRIV_HELPER").is_some() {
        check_privileged();
        return;
    }
    if nix::unistd::geteuid().is_root() {
        let exe = std::env::current_exe().expect("exe");
        let out = Command::new(exe)
            .args(["--exact", "privileged_port_text", "--nocapture"])
            .env("FWD_PRIV_HELPER", "1")
            .uid(1001)
            .gid(1001)
            .output()
            .expect("run helper as uid 1001");
        assert!(
            out.status.success(),
            "helper failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let so = String::from_utf8_lossy(&out.stdout);
        assert!(so.contains("1 passed"), "helper did not run the test: {so}");
    } else {
        check_privileged();
    }
}

/// Subprocess body of the channel child: `serve_child` on the inherited fd, until EOF.
#[test]
fn channel_child_helper() {
    use std::os::fd::{FromRawFd, OwnedFd};
    if let Some(fd) = std::env::var("FWD_CHANNEL_CHILD_FD")
        .ok()
        .and_then(|v| v.parse::<i32>().ok())
    {
        // SAFETY: the fd was inherited for us (see `start_own_child`); nothing else owns it.
        let ch = unsafe { OwnedFd::from_raw_fd(fd) };
        forwarder::channel::serve_child(ch, None).expect("serve_child");
    }
}

/// A forwarder whose channel child is a separate process (own fd table, normal limit), as with
/// the real rootlesskit child: at the parent's fd limit, replies arrive with MSG_CTRUNC.
fn start_own_child(backend: Backend) -> (forwarder::Forwarder, std::process::Child) {
    use std::os::fd::AsRawFd;
    let (parent, child) = channel_pair();
    let raw = child.as_raw_fd();
    let mut cmd = Command::new(std::env::current_exe().expect("exe"));
    cmd.args([
        "--exact",
        "channel_child_helper",
        "--nocapture",
        "--test-threads=1",
    ])
    .env("FWD_CHANNEL_CHILD_FD", raw.to_string())
    .env_remove("FWD_EMFILE_HELPER")
    .stdin(Stdio::null())
    .stdout(Stdio::null());
    // SAFETY: only fcntl between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            if libc::fcntl(raw, libc::F_SETFD, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let proc = cmd.spawn().expect("spawn channel child");
    drop(child);
    let fwd = forwarder::Forwarder::start(
        parent,
        ForwarderConfig {
            backend: Some(backend),
            workers: 2,
            require_foreign_netns: false,
            ..ForwarderConfig::default()
        },
    )
    .expect("start forwarder");
    (fwd, proc)
}

/// Subprocess body: low RLIMIT_NOFILE, forwarder + echo target, print the port, wait for stdin
/// EOF, print the stats.
fn emfile_helper_body(backend: Backend) {
    use nix::sys::resource::{setrlimit, Resource};
    let own_child = std::env::var_os("FWD_EMFILE_OWN_CHILD").is_some();
    // The separate child keeps the normal limit: spawn it first.
    let mut own = own_child.then(|| start_own_child(backend));
    setrlimit(Resource::RLIMIT_NOFILE, 256, 256).expect("setrlimit");
    let env = own.is_none().then(|| start(backend));
    let fwd = match (&env, &own) {
        (Some(e), _) => e.fwd(),
        (None, Some((f, _))) => f,
        (None, None) => unreachable!(),
    };
    // The target lives in the test process (its own fd table), as a real service would.
    let target: u16 = std::env::var("FWD_EMFILE_TARGET")
        .ok()
        .and_then(|v| v.parse().ok())
        .expect("target port");
    let port = free_port();
    fwd.add_port(1, &spec("tcp", "127.0.0.1", port, "", target))
        .expect("add_port");
    println!("PORT {port}");
    std::io::stdout().flush().expect("flush");
    let mut sink = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut sink);
    let st = fwd.stats(1).expect("stats");
    println!("STATS errors={} total={}", st.errors, st.total);
    std::io::stdout().flush().expect("flush");
    drop(env);
    if let Some((f, mut p)) = own.take() {
        f.shutdown();
        assert!(
            p.wait().expect("wait channel child").success(),
            "channel child failed"
        );
    }
}

/// Open fds of a process.
fn fd_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

#[test]
fn emfile_helper() {
    if let Ok(b) = std::env::var("FWD_EMFILE_HELPER") {
        let backend = Backend::from_env_value(&b).expect("backend name");
        emfile_helper_body(backend);
    }
}

/// Echo round trip that reports failure instead of panicking (the helper may still be busy).
fn try_echo(addr: &str, data: &[u8], timeout: Duration) -> bool {
    let Ok(mut s) = std::net::TcpStream::connect(addr) else {
        return false;
    };
    if s.set_read_timeout(Some(timeout)).is_err() || s.set_write_timeout(Some(timeout)).is_err() {
        return false;
    }
    let Ok(mut w) = s.try_clone() else {
        return false;
    };
    let d2 = data.to_vec();
    let wt = std::thread::spawn(move || {
        w.write_all(&d2).is_ok() && w.shutdown(std::net::Shutdown::Write).is_ok()
    });
    let mut got = Vec::new();
    let read_ok = s.read_to_end(&mut got).is_ok();
    let write_ok = wt.join().unwrap_or(false);
    read_ok && write_ok && got == data
}

fn emfile_case(backend: Backend, own_child: bool) {
    let (ea, _h) = echo_server("127.0.0.1:0");
    let exe = std::env::current_exe().expect("exe");
    let mut cmd = Command::new(exe);
    cmd.args([
        "--exact",
        "emfile_helper",
        "--nocapture",
        "--test-threads=1",
    ])
    .env("FWD_EMFILE_HELPER", backend.name())
    .env("FWD_EMFILE_TARGET", ea.port().to_string());
    if own_child {
        cmd.env("FWD_EMFILE_OWN_CHILD", "1");
    }
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn helper");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let port: u16 = loop {
        let l = lines.next().expect("helper output").expect("line");
        // libtest prints "test emfile_helper ... " on the same line.
        if let Some(p) = l.split("PORT ").nth(1) {
            break p.trim().parse().expect("port");
        }
    };
    let addr = format!("127.0.0.1:{port}");
    // Baseline once the initial pool batches have arrived.
    std::thread::sleep(Duration::from_millis(300));
    let baseline = fd_count(child.id());
    // Flood: far more connections than the helper has fds for.
    let mut conns = Vec::new();
    for _ in 0..300 {
        match std::net::TcpStream::connect(&addr) {
            Ok(mut s) => {
                let _ = s.write_all(b"x");
                conns.push(s);
            }
            Err(_) => break,
        }
    }
    eprintln!("flooded with {} connections", conns.len());
    std::thread::sleep(Duration::from_millis(700));
    drop(conns);
    std::thread::sleep(Duration::from_millis(300));
    // The listener must still serve.
    let t0 = Instant::now();
    let data = random_bytes(100_000, 77);
    let mut ok = false;
    while t0.elapsed() < Duration::from_secs(10) {
        if try_echo(&addr, &data, Duration::from_secs(3)) {
            ok = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!("served again: {ok} after {:?}", t0.elapsed());
    // Pools may hold up to a few batches more than at start, but nothing may be kept for
    // good: under a full fd table the parent used to leak the fds of truncated replies.
    let t1 = Instant::now();
    let mut fds = fd_count(child.id());
    while fds > baseline + 48 && t1.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(100));
        fds = fd_count(child.id());
    }
    // A second round after the fd count settled must work too.
    let again = ok && try_echo(&addr, &data, Duration::from_secs(3));
    eprintln!("fds: baseline {baseline}, after {fds}; served a second time: {again}");
    drop(child.stdin.take());
    let mut stats = String::new();
    for l in lines.by_ref() {
        let l = l.expect("line");
        if let Some(st) = l.split("STATS").nth(1) {
            stats = st.to_string();
        }
    }
    let status = child.wait().expect("wait helper");
    assert!(
        ok,
        "listener did not serve after EMFILE ({backend:?}, own child {own_child})"
    );
    assert!(
        fds <= baseline + 48,
        "parent kept fds after EMFILE ({backend:?}, own child {own_child}): {fds} vs {baseline}"
    );
    assert!(again, "no second round after EMFILE ({backend:?})");
    assert!(status.success(), "helper failed");
    let errors: u64 = stats
        .split_whitespace()
        .find_map(|w| w.strip_prefix("errors="))
        .and_then(|v| v.parse().ok())
        .expect("stats line");
    assert!(errors > 0, "EMFILE never happened: {stats}");
}

#[test]
fn listener_survives_emfile_all_backends() {
    if std::env::var_os("FWD_EMFILE_HELPER").is_some() {
        return;
    }
    for own_child in [false, true] {
        for b in Backend::ALL {
            eprintln!("emfile case {b:?}, own child {own_child}");
            emfile_case(b, own_child);
        }
    }
}

/// A child that answers with garbage: wrong socket types, pipes, short and unknown messages.
#[test]
fn garbage_from_child_never_crashes_parent() {
    use nix::sys::socket::{recv, sendmsg, ControlMessage, MsgFlags, UnixAddr};
    use std::os::fd::AsRawFd;
    let (parent, child) = channel_pair();
    let h = std::thread::spawn(move || {
        let mut buf = [0u8; 64];
        loop {
            let n = match recv(child.as_raw_fd(), &mut buf, MsgFlags::empty()) {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            let _ = n;
            // Short message, unknown op, then a "reply" for the requested kind carrying a UDP
            // socket and a pipe instead of TCP sockets.
            let _ = nix::sys::socket::send(child.as_raw_fd(), b"x", MsgFlags::empty());
            let _ = nix::sys::socket::send(child.as_raw_fd(), &[0xffu8; 40], MsgFlags::empty());
            let udp = std::net::UdpSocket::bind("127.0.0.1:0").expect("udp");
            let (pr, pw) = nix::unistd::pipe().expect("pipe");
            let fds = [udp.as_raw_fd(), pr.as_raw_fd(), pw.as_raw_fd()];
            let mut hdr = [0u8; 16];
            hdr[0] = 0x81;
            hdr[1] = buf[1];
            hdr[2] = 3;
            let iov = [std::io::IoSlice::new(&hdr)];
            let _ = sendmsg::<UnixAddr>(
                child.as_raw_fd(),
                &iov,
                &[ControlMessage::ScmRights(&fds)],
                MsgFlags::empty(),
                None,
            );
            // Unknown kind with an fd.
            let mut hdr2 = hdr;
            hdr2[1] = 77;
            let iov2 = [std::io::IoSlice::new(&hdr2)];
            let _ = sendmsg::<UnixAddr>(
                child.as_raw_fd(),
                &iov2,
                &[ControlMessage::ScmRights(&fds[..1])],
                MsgFlags::empty(),
                None,
            );
        }
    });
    let fwd = forwarder::Forwarder::start(
        parent,
        ForwarderConfig {
            backend: Some(Backend::Epoll),
            workers: 1,
            require_foreign_netns: false,
            source_ip_transparent: false,
            ..ForwarderConfig::default()
        },
    )
    .expect("start");
    let (ea, _e) = echo_server("127.0.0.1:0");
    let port = free_port();
    fwd.add_port(1, &spec("tcp", "127.0.0.1", port, "", ea.port()))
        .expect("add_port");
    let mut c = connect_retry(&format!("127.0.0.1:{port}"));
    let t0 = Instant::now();
    let _ = c.write_all(b"hello");
    let mut b = [0u8; 8];
    match c.read(&mut b) {
        Ok(0) => {}
        Err(e) => assert!(
            matches!(e.kind(), ErrorKind::ConnectionReset | ErrorKind::BrokenPipe),
            "{e}"
        ),
        Ok(n) => panic!("got {n} bytes through a broken child"),
    }
    assert!(t0.elapsed() < Duration::from_secs(6));
    assert!(fwd.stats(1).expect("stats").errors >= 1);
    fwd.shutdown();
    h.join().expect("garbage child");
}

/// With `require_foreign_netns` (the default), sockets from our own netns are refused.
#[test]
fn sockets_from_own_netns_are_refused() {
    let (parent, child) = channel_pair();
    let h = std::thread::spawn(move || {
        forwarder::channel::serve_child(child, None).expect("serve_child");
    });
    let fwd = forwarder::Forwarder::start(
        parent,
        ForwarderConfig {
            backend: Some(Backend::Epoll),
            workers: 1,
            ..ForwarderConfig::default()
        },
    )
    .expect("start");
    let (ea, _e) = echo_server("127.0.0.1:0");
    let port = free_port();
    fwd.add_port(1, &spec("tcp", "127.0.0.1", port, "", ea.port()))
        .expect("add_port");
    let mut c = connect_retry(&format!("127.0.0.1:{port}"));
    let _ = c.write_all(b"hello");
    let mut b = [0u8; 8];
    match c.read(&mut b) {
        Ok(0) => {}
        Err(e) => assert!(
            matches!(e.kind(), ErrorKind::ConnectionReset | ErrorKind::BrokenPipe),
            "{e}"
        ),
        Ok(n) => panic!("got {n} bytes through a same-netns socket"),
    }
    let _ = c.as_fd();
    fwd.shutdown();
    h.join().expect("child");
}

#[test]
fn serve_child_reports_a_missing_netns() {
    let (_parent, child) = channel_pair();
    let err = forwarder::channel::serve_child(child, Some("/nonexistent/netns".into()))
        .expect_err("must fail");
    assert_eq!(err.to_string(), "open netns /nonexistent/netns");
}
