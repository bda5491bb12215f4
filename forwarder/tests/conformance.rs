//! One conformance suite run against every backend (`Backend::ALL`): byte-exact bulk in both
//! directions, concurrency, half-close, resets, port removal, address families and UDP.
//!
//! Run: `cargo test -p rootlesskit-forwarder` (as any user, no namespaces needed: the child side
//! runs on a thread in the same process). `ROOTLESSKIT_TEST_BULK_MIB=256` for the full size.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpListener, UdpSocket};
use std::time::{Duration, Instant};

use common::*;
use forwarder::Backend;

/// 64 MiB (default) each way at once through one connection, SHA-256 compared on both ends.
fn bulk_each_way(b: Backend) {
    let env = start(b);
    let size = bulk_mib() << 20;
    let up = random_bytes(size, 1);
    let down = random_bytes(size, 2);
    let (up_sha, down_sha) = (sha(&up), sha(&down));
    let server = TcpListener::bind("127.0.0.1:0").expect("bind");
    let sport = server.local_addr().expect("addr").port();
    let srv = std::thread::spawn(move || {
        let (s, _) = server.accept().expect("accept");
        s.set_read_timeout(Some(IO_TIMEOUT)).expect("t");
        let mut w = s.try_clone().expect("clone");
        let wt = std::thread::spawn(move || {
            w.write_all(&down).expect("server write");
            w.shutdown(Shutdown::Write).expect("shutdown");
        });
        let mut got = Vec::with_capacity(size);
        (&s).read_to_end(&mut got).expect("server read");
        wt.join().expect("server writer");
        got
    });
    let port = publish_tcp(&env, sport);
    let c = connect_retry(&format!("127.0.0.1:{port}"));
    let mut w = c.try_clone().expect("clone");
    let wt = std::thread::spawn(move || {
        w.write_all(&up).expect("client write");
        w.shutdown(Shutdown::Write).expect("shutdown");
    });
    let mut got = Vec::with_capacity(size);
    (&c).read_to_end(&mut got).expect("client read");
    wt.join().expect("client writer");
    let server_got = srv.join().expect("server");
    assert_eq!(server_got.len(), size);
    assert_eq!(sha(&server_got), up_sha, "client->server bytes differ");
    assert_eq!(got.len(), size);
    assert_eq!(sha(&got), down_sha, "server->client bytes differ");
    std::thread::sleep(Duration::from_millis(100));
    let st = env.fwd().stats(1).expect("stats");
    assert_eq!(st.bytes_in, size as u64);
    assert_eq!(st.bytes_out, size as u64);
    assert_eq!(st.total, 1);
    assert_eq!(st.active, 0);
}

/// 200 concurrent connections, each echoing its own random payload byte-exact.
fn concurrent_200(b: Backend) {
    let env = start(b);
    let (ea, _h) = echo_server("127.0.0.1:0");
    let port = free_port();
    env.fwd()
        .add_port(1, &spec("tcp", "", port, "", ea.port()))
        .expect("add_port");
    let addr = format!("127.0.0.1:{port}");
    let mut hs = Vec::new();
    for i in 0..200u64 {
        let addr = addr.clone();
        hs.push(std::thread::spawn(move || {
            let data = random_bytes(1000 + (i as usize * 997) % 100_000, 100 + i);
            echo_roundtrip(&addr, &data);
        }));
    }
    for h in hs {
        h.join().expect("client thread");
    }
    std::thread::sleep(Duration::from_millis(200));
    let st = env.fwd().stats(1).expect("stats");
    assert_eq!(st.total, 200);
    assert_eq!(st.active, 0);
}

/// Client shuts down its write side and still gets the whole reply.
fn half_close(b: Backend) {
    let env = start(b);
    let server = TcpListener::bind("127.0.0.1:0").expect("bind");
    let sport = server.local_addr().expect("addr").port();
    let reply = random_bytes(3 << 20, 7);
    let reply2 = reply.clone();
    let srv = std::thread::spawn(move || {
        let (mut s, _) = server.accept().expect("accept");
        s.set_read_timeout(Some(IO_TIMEOUT)).expect("t");
        let mut req = Vec::new();
        s.read_to_end(&mut req).expect("read request to EOF");
        // The FIN arrived; the reverse direction must still work.
        s.write_all(&reply2).expect("write reply");
        req
    });
    let port = publish_tcp(&env, sport);
    let mut c = connect_retry(&format!("127.0.0.1:{port}"));
    c.write_all(b"GET / HTTP/1.0\r\n\r\n").expect("write");
    c.shutdown(Shutdown::Write).expect("shutdown");
    let mut got = Vec::new();
    c.read_to_end(&mut got).expect("read reply");
    assert_eq!(srv.join().expect("server"), b"GET / HTTP/1.0\r\n\r\n");
    assert_eq!(got.len(), reply.len());
    assert!(got == reply);
}

/// Segments the socket has received (`tcpi_segs_in` of `TCP_INFO`).
fn segs_in(s: &std::net::TcpStream) -> u32 {
    use std::os::fd::AsRawFd;
    // SAFETY: tcp_info is plain old data; all-zero is a valid value.
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    // SAFETY: `info` is a writable tcp_info of `len` bytes; the fd is open for the call.
    let r = unsafe {
        libc::getsockopt(
            s.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&mut info as *mut libc::tcp_info).cast(),
            &mut len,
        )
    };
    assert_eq!(r, 0, "getsockopt(TCP_INFO)");
    info.tcpi_segs_in
}

/// The target answers and closes at once (reply and FIN in one segment, as a server that
/// corks its last write does): the client gets the reply byte-exact, then EOF, and the
/// forwarder passes the pair on as one segment too (reply sent `MSG_MORE`, then the FIN), so
/// the client's socket receives SYN-ACK, the ACK of its request and reply+FIN: 3 segments.
fn reply_and_fin_in_one_segment(b: Backend) {
    let env = start(b);
    let server = TcpListener::bind("127.0.0.1:0").expect("bind");
    let sport = server.local_addr().expect("addr").port();
    let reply = random_bytes(700, 11);
    let reply2 = reply.clone();
    let srv = std::thread::spawn(move || {
        use std::os::fd::AsRawFd;
        let (mut s, _) = server.accept().expect("accept");
        s.set_read_timeout(Some(IO_TIMEOUT)).expect("t");
        let mut req = [0u8; 5];
        s.read_exact(&mut req).expect("read request");
        // SAFETY: `reply2` is valid for reads of its length; the fd is open for the call.
        let n = unsafe {
            libc::send(
                s.as_raw_fd(),
                reply2.as_ptr().cast(),
                reply2.len(),
                libc::MSG_MORE | libc::MSG_NOSIGNAL,
            )
        };
        assert_eq!(n, reply2.len() as isize, "server send");
        s.shutdown(Shutdown::Write).expect("server shutdown");
        let mut rest = Vec::new();
        s.read_to_end(&mut rest)
            .expect("server waits for the client's FIN");
        rest
    });
    let port = publish_tcp(&env, sport);
    let mut c = connect_retry(&format!("127.0.0.1:{port}"));
    c.write_all(b"hello").expect("write");
    let mut got = Vec::new();
    c.read_to_end(&mut got).expect("read reply to EOF");
    assert!(got == reply, "reply differs ({} bytes)", got.len());
    let segs = segs_in(&c);
    drop(c);
    assert!(srv.join().expect("server").is_empty());
    assert!(
        segs <= 3,
        "client socket received {segs} segments, want <= 3 (SYN-ACK, ACK, reply+FIN)"
    );
}

fn is_reset(e: &std::io::Error) -> bool {
    matches!(e.kind(), ErrorKind::ConnectionReset | ErrorKind::BrokenPipe)
}

fn set_linger0(s: &std::net::TcpStream) {
    use std::os::fd::AsRawFd;
    let l = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: valid linger struct and size; the socket is open.
    let r = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&l as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    assert_eq!(r, 0);
}

/// A reset on either side is propagated as a reset to the other side.
fn rst_propagation(b: Backend) {
    let env = start(b);
    let server = TcpListener::bind("127.0.0.1:0").expect("bind");
    let sport = server.local_addr().expect("addr").port();
    let port = publish_tcp(&env, sport);
    // Server resets -> client sees ECONNRESET.
    let mut c = connect_retry(&format!("127.0.0.1:{port}"));
    c.write_all(b"hello").expect("write");
    let (mut s, _) = server.accept().expect("accept");
    let mut buf = [0u8; 5];
    s.read_exact(&mut buf).expect("server read");
    assert_eq!(&buf, b"hello");
    set_linger0(&s);
    drop(s);
    let t0 = Instant::now();
    let mut rb = [0u8; 16];
    let r = c.read(&mut rb);
    match r {
        Err(e) => assert!(is_reset(&e), "client got {e}, want reset"),
        Ok(n) => panic!("client read {n} bytes, want reset"),
    }
    assert!(t0.elapsed() < Duration::from_secs(1));
    // Client resets -> server sees ECONNRESET.
    let mut c = connect_retry(&format!("127.0.0.1:{port}"));
    c.write_all(b"x").expect("write");
    let (mut s, _) = server.accept().expect("accept");
    s.set_read_timeout(Some(IO_TIMEOUT)).expect("t");
    let mut one = [0u8; 1];
    s.read_exact(&mut one).expect("server read");
    set_linger0(&c);
    drop(c);
    match s.read(&mut rb) {
        Err(e) => assert!(is_reset(&e), "server got {e}, want reset"),
        Ok(n) => panic!("server read {n} bytes, want reset"),
    }
}

/// No listener at the target: the client is reset promptly.
fn refused_target_resets(b: Backend) {
    let env = start(b);
    let dead = free_port();
    let port = free_port();
    env.fwd()
        .add_port(1, &spec("tcp", "127.0.0.1", port, "", dead))
        .expect("add_port");
    let mut c = connect_retry(&format!("127.0.0.1:{port}"));
    let t0 = Instant::now();
    let mut buf = [0u8; 8];
    match c.read(&mut buf) {
        Err(e) => assert!(is_reset(&e), "got {e}, want reset"),
        Ok(n) => panic!("read {n} bytes, want reset"),
    }
    assert!(
        t0.elapsed() < Duration::from_secs(1),
        "reset took {:?}",
        t0.elapsed()
    );
    std::thread::sleep(Duration::from_millis(50));
    let st = env.fwd().stats(1).expect("stats");
    assert!(st.errors >= 1);
    assert_eq!(st.active, 0);
}

/// remove_port closes the listener and ends live connections.
fn remove_port_ends_connections(b: Backend) {
    let env = start(b);
    let (ea, _h) = echo_server("127.0.0.1:0");
    let port = free_port();
    env.fwd()
        .add_port(7, &spec("tcp", "127.0.0.1", port, "", ea.port()))
        .expect("add_port");
    let mut c = connect_retry(&format!("127.0.0.1:{port}"));
    c.write_all(b"ping").expect("write");
    let mut buf = [0u8; 4];
    c.read_exact(&mut buf).expect("echo");
    assert_eq!(&buf, b"ping");
    assert_eq!(env.fwd().stats(7).expect("stats").active, 1);
    env.fwd().remove_port(7).expect("remove_port");
    let t0 = Instant::now();
    let mut rb = [0u8; 4];
    match c.read(&mut rb) {
        Ok(0) => {}
        Err(e) => assert!(is_reset(&e), "got {e}"),
        Ok(n) => panic!("read {n} bytes after remove"),
    }
    assert!(t0.elapsed() < Duration::from_secs(1));
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "listener still open"
    );
    assert_eq!(
        env.fwd()
            .remove_port(7)
            .map_err(|e| e.to_string())
            .err()
            .as_deref(),
        Some("unknown id: 7")
    );
    assert!(env.fwd().stats(7).is_none());
}

/// tcp4 and tcp6 on the same port coexist, each reaching its own target.
fn tcp4_tcp6_same_port(b: Backend) {
    let env = start(b);
    let (e4, _h4) = echo_server("127.0.0.1:0");
    let (e6, _h6) = echo_server("[::1]:0");
    let port = free_port();
    env.fwd()
        .add_port(1, &spec("tcp4", "", port, "", e4.port()))
        .expect("tcp4");
    env.fwd()
        .add_port(2, &spec("tcp6", "", port, "::1", e6.port()))
        .expect("tcp6");
    echo_roundtrip(&format!("127.0.0.1:{port}"), &random_bytes(100_000, 4));
    echo_roundtrip(&format!("[::1]:{port}"), &random_bytes(100_000, 6));
    assert_eq!(env.fwd().stats(1).expect("s").total, 1);
    assert_eq!(env.fwd().stats(2).expect("s").total, 1);
}

/// `tcp` on `::` (and on empty) is one dual-stack socket.
fn dual_stack_tcp(b: Backend) {
    let env = start(b);
    let (ea, _h) = echo_server("127.0.0.1:0");
    let port = free_port();
    env.fwd()
        .add_port(1, &spec("tcp", "::", port, "127.0.0.1", ea.port()))
        .expect("add_port");
    echo_roundtrip(&format!("127.0.0.1:{port}"), &random_bytes(50_000, 8));
    echo_roundtrip(&format!("[::1]:{port}"), &random_bytes(50_000, 9));
    let port2 = free_port();
    env.fwd()
        .add_port(2, &spec("tcp", "", port2, "", ea.port()))
        .expect("add_port empty");
    echo_roundtrip(&format!("127.0.0.1:{port2}"), &random_bytes(5_000, 10));
    echo_roundtrip(&format!("[::1]:{port2}"), &random_bytes(5_000, 11));
}

/// IPv4 listener forwarding to an IPv6 target and vice versa.
fn v4_to_v6_and_back(b: Backend) {
    let env = start(b);
    let (e6, _h6) = echo_server("[::1]:0");
    let (e4, _h4) = echo_server("127.0.0.1:0");
    let p1 = free_port();
    env.fwd()
        .add_port(1, &spec("tcp4", "127.0.0.1", p1, "::1", e6.port()))
        .expect("v4->v6");
    echo_roundtrip(&format!("127.0.0.1:{p1}"), &random_bytes(200_000, 12));
    let p2 = free_port();
    env.fwd()
        .add_port(2, &spec("tcp6", "::1", p2, "127.0.0.1", e4.port()))
        .expect("v6->v4");
    echo_roundtrip(&format!("[::1]:{p2}"), &random_bytes(200_000, 13));
    // Default target for parentIP ::1 is ::1 (spec §4.1 item 4).
    let p3 = free_port();
    env.fwd()
        .add_port(3, &spec("tcp6", "::1", p3, "", e6.port()))
        .expect("v6 default target");
    echo_roundtrip(&format!("[::1]:{p3}"), &random_bytes(1_000, 14));
}

/// UDP echo from 50 concurrent clients, each datagram byte-exact.
fn udp_echo_50(b: Backend) {
    let env = start(b);
    let server = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let sport = server.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 65536];
        while let Ok((n, from)) = server.recv_from(&mut buf) {
            let _ = server.send_to(&buf[..n], from);
        }
    });
    let port = free_port();
    env.fwd()
        .add_port(1, &spec("udp", "", port, "", sport))
        .expect("add_port");
    std::thread::sleep(Duration::from_millis(50));
    let mut hs = Vec::new();
    for i in 0..50u64 {
        hs.push(std::thread::spawn(move || {
            let c = UdpSocket::bind(if i % 2 == 0 { "127.0.0.1:0" } else { "[::1]:0" })
                .expect("bind client");
            let dst = if i % 2 == 0 {
                format!("127.0.0.1:{port}")
            } else {
                format!("[::1]:{port}")
            };
            c.connect(&dst).expect("connect");
            c.set_read_timeout(Some(Duration::from_millis(300)))
                .expect("t");
            let mut buf = vec![0u8; 65536];
            for j in 0..10u64 {
                let len = match j {
                    0 => 65507,
                    1 => 1,
                    _ => 1 + ((i * 131 + j * 977) % 1400) as usize,
                };
                let mut msg = random_bytes(len, i * 1000 + j);
                msg[0] = j as u8;
                let mut ok = false;
                'tries: for _ in 0..20 {
                    c.send(&msg).expect("send");
                    loop {
                        match c.recv(&mut buf) {
                            Ok(n) if n == msg.len() && buf[..n] == msg[..] => {
                                ok = true;
                                break 'tries;
                            }
                            Ok(n) => {
                                // A late echo of an earlier datagram (retry): must be one of ours.
                                assert!(n > 0 && u64::from(buf[0]) < j, "unexpected datagram");
                            }
                            Err(_) => break,
                        }
                    }
                }
                assert!(
                    ok,
                    "client {i} datagram {j} ({len} bytes) not echoed byte-exact"
                );
            }
        }));
    }
    for h in hs {
        h.join().expect("udp client");
    }
    let st = env.fwd().stats(1).expect("stats");
    assert_eq!(st.total, 50, "one flow per client");
    assert_eq!(st.active, 50);
    env.fwd().remove_port(1).expect("remove");
}

/// UDP flows expire after the idle timeout; remove_port closes the port and its flows.
fn udp_idle_and_remove(b: Backend) {
    let env = start_with(forwarder::ForwarderConfig {
        backend: Some(b),
        workers: 1,
        require_foreign_netns: false,
        udp_idle_timeout: Duration::from_millis(500),
        ..forwarder::ForwarderConfig::default()
    });
    let server = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let sport = server.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 65536];
        while let Ok((n, from)) = server.recv_from(&mut buf) {
            let _ = server.send_to(&buf[..n], from);
        }
    });
    let port = free_port();
    env.fwd()
        .add_port(3, &spec("udp4", "127.0.0.1", port, "", sport))
        .expect("add_port");
    let c = UdpSocket::bind("127.0.0.1:0").expect("client");
    c.connect(("127.0.0.1", port)).expect("connect");
    c.set_read_timeout(Some(Duration::from_millis(300)))
        .expect("t");
    let mut buf = [0u8; 64];
    let mut echoed = |c: &UdpSocket| -> bool {
        for _ in 0..10 {
            c.send(b"ping").expect("send");
            if let Ok(n) = c.recv(&mut buf) {
                return &buf[..n] == b"ping";
            }
        }
        false
    };
    assert!(echoed(&c));
    assert_eq!(env.fwd().stats(3).expect("s").active, 1);
    let t0 = Instant::now();
    while env.fwd().stats(3).expect("s").active != 0 {
        assert!(t0.elapsed() < Duration::from_secs(5), "flow never expired");
        std::thread::sleep(Duration::from_millis(100));
    }
    // A new flow after expiry works.
    assert!(echoed(&c));
    assert_eq!(env.fwd().stats(3).expect("s").total, 2);
    env.fwd().remove_port(3).expect("remove");
    c.send(b"gone").expect("send");
    assert!(c.recv(&mut buf).is_err(), "reply after remove_port");
    // The port is free again.
    UdpSocket::bind(("127.0.0.1", port)).expect("port released");
}

/// A client streaming 1400-byte datagrams (bursts of 50 per millisecond: sustained load, read
/// coalescing pauses the worker, yet the sink keeps up) arrives in order and intact, and
/// another client's request/response flow on the same port and worker keeps getting prompt
/// answers.
fn udp_blast_and_ping(b: Backend) {
    let env = start_with(forwarder::ForwarderConfig {
        backend: Some(b),
        workers: 1,
        require_foreign_netns: false,
        ..forwarder::ForwarderConfig::default()
    });
    let server = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let sport = server.local_addr().expect("addr").port();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 65536];
        let (mut last, mut got, mut bad) = (None::<u64>, 0u64, 0u64);
        server
            .set_read_timeout(Some(Duration::from_secs(3)))
            .expect("t");
        while let Ok((n, from)) = server.recv_from(&mut buf) {
            if buf[0] == b'B' {
                let seq = u64::from_le_bytes(buf[1..9].try_into().expect("seq"));
                let intact = n == 1400 && buf[9..n].iter().all(|&x| x == seq as u8);
                if !intact || last.is_some_and(|l| seq <= l) {
                    bad += 1;
                }
                last = Some(seq);
                got += 1;
            } else if &buf[..n] == b"end" {
                break;
            } else {
                let _ = server.send_to(&buf[..n], from);
            }
        }
        let _ = tx.send((got, bad));
    });
    let port = free_port();
    env.fwd()
        .add_port(1, &spec("udp4", "127.0.0.1", port, "", sport))
        .expect("add_port");
    std::thread::sleep(Duration::from_millis(50));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let blaster = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let c = UdpSocket::bind("127.0.0.1:0").expect("bind blaster");
            c.connect(("127.0.0.1", port)).expect("connect");
            let mut msg = vec![0u8; 1400];
            let mut seq = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                for _ in 0..50 {
                    msg[0] = b'B';
                    msg[1..9].copy_from_slice(&seq.to_le_bytes());
                    msg[9..].fill(seq as u8);
                    let _ = c.send(&msg);
                    seq += 1;
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            seq
        })
    };
    std::thread::sleep(Duration::from_millis(200));
    let c = UdpSocket::bind("127.0.0.1:0").expect("client");
    c.connect(("127.0.0.1", port)).expect("connect");
    c.set_read_timeout(Some(Duration::from_millis(500)))
        .expect("t");
    let mut buf = [0u8; 64];
    let (mut answered, mut worst) = (0, Duration::ZERO);
    for i in 0..50u32 {
        let msg = i.to_le_bytes();
        let t0 = Instant::now();
        c.send(&msg).expect("send");
        // A datagram may still be lost on a loaded machine: a lost one is not retried.
        while let Ok(n) = c.recv(&mut buf) {
            if buf[..n] == msg {
                answered += 1;
                worst = worst.max(t0.elapsed());
                break;
            }
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let sent = blaster.join().expect("blaster");
    std::thread::sleep(Duration::from_millis(100));
    let e = UdpSocket::bind("127.0.0.1:0").expect("bind");
    e.send_to(b"end", ("127.0.0.1", sport)).expect("end");
    let (got, bad) = rx.recv_timeout(Duration::from_secs(10)).expect("sink");
    assert!(
        sent > 1000 && got > 100,
        "blast: {got} of {sent} datagrams arrived"
    );
    assert_eq!(
        bad, 0,
        "blast datagrams reordered or damaged ({got} of {sent} arrived)"
    );
    assert!(
        answered >= 45,
        "only {answered} of 50 requests answered during the blast"
    );
    assert!(
        worst < Duration::from_millis(250),
        "slowest answer during the blast took {worst:?}"
    );
    env.fwd().remove_port(1).expect("remove");
}

/// `remove_port_deferred` of a TCP port: no new connection once it returns, the port can be
/// bound again at once, and the workers neither spin on the shut-down listener (it polls as
/// HUP for ever) nor, on epoll backends where this thread takes the listener out of the
/// owner's epoll, wake up at all until the flush. Both when the owner has registered the
/// listener and when it has not read its `AddTcp` yet.
fn deferred_remove(b: Backend) {
    let env = start(b);
    let (ea, _h) = echo_server("127.0.0.1:0");
    let f = env.fwd();
    let epoll = matches!(b, Backend::Epoll | Backend::Copy);
    // 1: registered (a connection went through).
    let port = free_port();
    f.add_port_deferred(1, &spec("tcp", "127.0.0.1", port, "", ea.port()))
        .expect("add");
    f.flush();
    echo_once(port);
    let before = settled_wakeups(f);
    f.remove_port_deferred(1).expect("remove");
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "{b:?}: connection accepted after remove_port_deferred"
    );
    std::thread::sleep(Duration::from_millis(200));
    let woke = f.wakeups() - before;
    assert!(
        woke < 20,
        "{b:?}: {woke} worker wake-ups in 200 ms after the remove (spin?)"
    );
    if epoll {
        assert_eq!(woke, 0, "{b:?}: a worker woke for a deferred remove");
    }
    f.flush();
    // The port is free again at once (the old socket may still be open until the flush).
    f.add_port(2, &spec("tcp", "127.0.0.1", port, "", ea.port()))
        .expect("add the same port again");
    echo_once(port);
    f.remove_port(2).expect("remove");
    // 2: removed before the owner read its AddTcp (no flush in between).
    let port = free_port();
    f.add_port_deferred(3, &spec("tcp", "127.0.0.1", port, "", ea.port()))
        .expect("add");
    f.remove_port_deferred(3).expect("remove");
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "{b:?}: connection accepted after remove_port_deferred"
    );
    let before = f.wakeups();
    std::thread::sleep(Duration::from_millis(200));
    let woke = f.wakeups() - before;
    assert!(
        woke < 20,
        "{b:?}: {woke} worker wake-ups in 200 ms after the remove (spin?)"
    );
    f.flush();
}

/// The workers' wake-up count once it has not moved for 100 ms (the last connection's close,
/// pool refills), within 5 s.
fn settled_wakeups(f: &forwarder::Forwarder) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut last = f.wakeups();
    loop {
        std::thread::sleep(Duration::from_millis(100));
        let now = f.wakeups();
        if now == last || Instant::now() > deadline {
            return now;
        }
        last = now;
    }
}

/// One 4-byte echo through 127.0.0.1:`port`.
fn echo_once(port: u16) {
    let mut c = connect_retry(&format!("127.0.0.1:{port}"));
    c.write_all(b"ping").expect("write");
    let mut buf = [0u8; 4];
    c.read_exact(&mut buf).expect("echo");
    assert_eq!(&buf, b"ping");
}

macro_rules! suite {
    ($($m:ident => $b:expr),* $(,)?) => {$(
        mod $m {
            use super::*;
            const B: Backend = $b;
            #[test] fn bulk_64mib_each_way() { bulk_each_way(B) }
            #[test] fn concurrent_200_connections() { concurrent_200(B) }
            #[test] fn half_close_reply_after_fin() { half_close(B) }
            #[test] fn reply_and_fin_share_one_segment() { reply_and_fin_in_one_segment(B) }
            #[test] fn reset_propagates_both_ways() { rst_propagation(B) }
            #[test] fn no_listener_resets_client_promptly() { refused_target_resets(B) }
            #[test] fn remove_port_ends_live_connections() { remove_port_ends_connections(B) }
            #[test] fn deferred_remove_refuses_and_never_spins() { deferred_remove(B) }
            #[test] fn tcp4_and_tcp6_coexist_on_one_port() { tcp4_tcp6_same_port(B) }
            #[test] fn tcp_on_unspecified_is_dual_stack() { dual_stack_tcp(B) }
            #[test] fn v4_listener_v6_target_and_back() { v4_to_v6_and_back(B) }
            #[test] fn udp_echo_50_clients() { udp_echo_50(B) }
            #[test] fn udp_idle_timeout_and_remove() { udp_idle_and_remove(B) }
            #[test] fn udp_blast_keeps_order_and_other_flows() { udp_blast_and_ping(B) }
        }
    )*};
}

suite! {
    uring_poll => Backend::UringPoll,
    uring_splice => Backend::UringSplice,
    epoll => Backend::Epoll,
    copy => Backend::Copy,
}

#[test]
fn every_backend_is_covered() {
    assert_eq!(Backend::ALL.len(), 4);
}
