//! End to end through a real child network namespace, as the launcher runs it: the child side
//! (`serve_child`) runs in a process started under `unshare -rn` (new user + network namespace,
//! no privilege needed), the forwarder runs here with `require_foreign_netns = true` (so the
//! `SO_NETNS_COOKIE` check is live). A decoy server on the host listens on the same port number
//! as the echo server inside the namespace: reaching the decoy would mean the socket was created
//! in the wrong namespace.
//!
//! Run: `cargo test -p rootlesskit-forwarder --test netns` (needs `unshare` from util-linux and
//! `ip` from iproute2, and unprivileged user namespaces).

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, UdpSocket};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use forwarder::{Backend, Forwarder, ForwarderConfig};

fn ip_cmd() -> &'static str {
    ["/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .unwrap_or("ip")
}

/// Inside the namespace: lo up, TCP + UDP echo on 127.0.0.1:PORT, then serve the channel on fd 3.
fn helper(port: u16) {
    let st = Command::new(ip_cmd())
        .args(["link", "set", "lo", "up"])
        .status()
        .expect("run ip");
    assert!(st.success(), "ip link set lo up failed");
    // What the launcher's child sets up for --source-ip-transparent (done with commands here).
    let routes = std::env::var_os("FWD_NETNS_NO_TPROXY_ROUTES").is_none();
    for args in [
        &[
            "route", "add", "local", "default", "dev", "lo", "table", "100",
        ][..],
        &[
            "rule", "add", "fwmark", "100", "lookup", "100", "priority", "100",
        ][..],
    ] {
        if !routes {
            break;
        }
        let st = Command::new(ip_cmd()).args(args).status().expect("run ip");
        assert!(st.success(), "ip {args:?} failed");
    }
    std::fs::write("/proc/sys/net/ipv4/tcp_fwmark_accept", "1").expect("tcp_fwmark_accept");
    // whoami on port+1: replies with the peer address it sees.
    let w = TcpListener::bind(("127.0.0.1", port + 1)).expect("bind whoami in netns");
    std::thread::spawn(move || {
        for (mut s, peer) in w.incoming().flatten().filter_map(|s| {
            let p = s.peer_addr().ok()?;
            Some((s, p))
        }) {
            let _ = s.write_all(peer.ip().to_string().as_bytes());
        }
    });
    let l = TcpListener::bind(("127.0.0.1", port)).expect("bind echo in netns");
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            std::thread::spawn(move || {
                let mut s = s;
                let mut buf = vec![0u8; 65536];
                while let Ok(n) = s.read(&mut buf) {
                    if n == 0 || s.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
                let _ = s.shutdown(Shutdown::Write);
            });
        }
    });
    let u = UdpSocket::bind(("127.0.0.1", port)).expect("bind udp echo in netns");
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 65536];
        while let Ok((n, from)) = u.recv_from(&mut buf) {
            let _ = u.send_to(&buf[..n], from);
        }
    });
    println!("READY");
    std::io::stdout().flush().expect("flush");
    // SAFETY: the parent test placed the child end of the channel on fd 3 (dup2 in pre_exec);
    // nothing else in this process owns fd 3.
    let ch = unsafe { OwnedFd::from_raw_fd(3) };
    forwarder::channel::serve_child(ch, None).expect("serve_child");
}

#[test]
fn netns_helper() {
    if let Ok(p) = std::env::var("FWD_NETNS_HELPER") {
        helper(p.parse().expect("port"));
    }
}

/// A non-loopback IPv4 address of this host (connecting to it from itself keeps that source).
fn host_ipv4() -> Option<std::net::Ipv4Addr> {
    nix::ifaddrs::getifaddrs().ok()?.find_map(|ifa| {
        let a = ifa.address?;
        let v4 = a.as_sockaddr_in()?.ip();
        (!v4.is_loopback()).then_some(v4)
    })
}

fn case(backend: Backend, routes: bool) {
    // Decoy on the host with the same port number as the namespace's echo server.
    let decoy = TcpListener::bind("127.0.0.1:0").expect("decoy");
    let port = decoy.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for mut s in decoy.incoming().flatten() {
            let _ = s.write_all(b"DECOY");
        }
    });
    let (parent, child) = channel_pair();
    let child_raw = child.as_raw_fd();
    let exe = std::env::current_exe().expect("exe");
    let mut cmd = Command::new("unshare");
    cmd.arg("-rn")
        .arg(exe)
        .args(["--exact", "netns_helper", "--nocapture", "--test-threads=1"])
        .env("FWD_NETNS_HELPER", port.to_string())
        .env(
            if routes {
                "FWD_NETNS_ROUTES"
            } else {
                "FWD_NETNS_NO_TPROXY_ROUTES"
            },
            "1",
        )
        .stdout(Stdio::piped());
    // SAFETY: only async-signal-safe dup2 between fork and exec; `child_raw` stays open until
    // after spawn returns.
    unsafe {
        cmd.pre_exec(move || {
            if libc::dup2(child_raw, 3) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut proc_ = cmd.spawn().expect("spawn unshare helper");
    drop(child);
    let out = proc_.stdout.take().expect("stdout");
    let mut lines = BufReader::new(out).lines();
    loop {
        let l = lines
            .next()
            .expect("helper exited before READY")
            .expect("line");
        if l.contains("READY") {
            break;
        }
    }
    let fwd = Forwarder::start(
        parent,
        ForwarderConfig {
            backend: Some(backend),
            workers: 2,
            ..ForwarderConfig::default()
        },
    )
    .expect("start");
    let hp = free_port();
    fwd.add_port(1, &spec("tcp", "127.0.0.1", hp, "", port))
        .expect("add tcp");
    echo_roundtrip(&format!("127.0.0.1:{hp}"), &random_bytes(4 << 20, 21));
    let hu = free_port();
    fwd.add_port(2, &spec("udp", "127.0.0.1", hu, "", port))
        .expect("add udp");
    let c = UdpSocket::bind("127.0.0.1:0").expect("udp client");
    c.set_read_timeout(Some(Duration::from_millis(500)))
        .expect("t");
    let msg = random_bytes(1200, 22);
    let mut buf = vec![0u8; 65536];
    let mut ok = false;
    for _ in 0..10 {
        c.send_to(&msg, ("127.0.0.1", hu)).expect("send");
        if let Ok((n, _)) = c.recv_from(&mut buf) {
            assert_eq!(&buf[..n], &msg[..], "udp echo differs");
            ok = true;
            break;
        }
    }
    assert!(ok, "no UDP echo through the namespace");
    assert_eq!(fwd.stats(1).expect("stats").errors, 0);
    // Source IP: a loopback client is seen as loopback; a client from a non-loopback host
    // address is seen with that address (transparent socket bound to the client address).
    let hw = free_port();
    fwd.add_port(3, &spec("tcp", "", hw, "", port + 1))
        .expect("add whoami");
    let whoami = |from: std::net::IpAddr| -> String {
        let sock = std::net::TcpStream::connect_timeout(
            &std::net::SocketAddr::new(from, hw),
            Duration::from_secs(5),
        )
        .expect("connect whoami");
        sock.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("t");
        let mut s = String::new();
        (&sock).read_to_string(&mut s).expect("read whoami");
        s
    };
    assert_eq!(whoami("127.0.0.1".parse().expect("ip")), "127.0.0.1");
    match host_ipv4() {
        Some(ip) => {
            let t0 = std::time::Instant::now();
            let seen = whoami(std::net::IpAddr::V4(ip));
            if routes {
                assert_eq!(
                    seen,
                    ip.to_string(),
                    "source IP not preserved ({backend:?})"
                );
                assert!(
                    t0.elapsed() < Duration::from_millis(900),
                    "transparent connect fell back"
                );
            } else {
                // Without the fwmark routes the SYN-ACK has no route: after the 1 s transparent
                // connect timeout the connection is retried with a normal socket.
                assert_eq!(seen, "127.0.0.1", "fallback to a normal socket");
                assert!(
                    t0.elapsed() >= Duration::from_millis(900),
                    "no fallback delay?"
                );
            }
            eprintln!("source-ip case ok ({backend:?}, routes={routes}): seen {seen}");
        }
        None => eprintln!("no non-loopback IPv4 on this host: source-IP case not exercised"),
    }
    fwd.shutdown();
    // The child's serve_child returns once the channel is closed.
    let st = proc_.wait().expect("wait helper");
    assert!(st.success(), "helper failed");
}

#[test]
fn through_real_child_netns_all_backends() {
    if std::env::var_os("FWD_NETNS_HELPER").is_some() {
        return;
    }
    for b in Backend::ALL {
        case(b, true);
    }
    // Transparent connect without working routes falls back to a normal socket.
    case(Backend::Epoll, false);
}
