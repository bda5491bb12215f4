//! Shared helpers: an in-process child (`serve_child` on a thread over a SEQPACKET socketpair),
//! free ports, echo servers, random data and hashing.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::OwnedFd;
use std::thread::JoinHandle;
use std::time::Duration;

use forwarder::{Backend, Forwarder, ForwarderConfig, PortSpec};
use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
use rand::{RngCore, SeedableRng};
use sha2::{Digest, Sha256};

pub const IO_TIMEOUT: Duration = Duration::from_secs(30);

pub struct Env {
    pub fwd: Option<Forwarder>,
    child: Option<JoinHandle<()>>,
}

impl Env {
    pub fn fwd(&self) -> &Forwarder {
        self.fwd.as_ref().expect("forwarder running")
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        if let Some(f) = self.fwd.take() {
            f.shutdown();
        }
        if let Some(c) = self.child.take() {
            let _ = c.join();
        }
    }
}

pub fn channel_pair() -> (OwnedFd, OwnedFd) {
    socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .expect("socketpair")
}

pub fn start(backend: Backend) -> Env {
    start_with(ForwarderConfig {
        backend: Some(backend),
        workers: 2,
        require_foreign_netns: false,
        ..ForwarderConfig::default()
    })
}

pub fn start_with(cfg: ForwarderConfig) -> Env {
    let (parent, child) = channel_pair();
    let h = std::thread::spawn(move || {
        forwarder::channel::serve_child(child, None).expect("serve_child");
    });
    let requested = cfg.backend;
    let fwd = Forwarder::start(parent, cfg).expect("start forwarder");
    if let Some(b) = requested {
        let avail = forwarder::probe::uring();
        let expect_same = match b {
            Backend::UringPoll => avail.poll,
            Backend::UringSplice => avail.splice,
            _ => true,
        };
        if expect_same {
            assert_eq!(fwd.backend(), b, "requested backend not used");
        } else {
            eprintln!("io_uring unavailable: {b:?} ran as {:?}", fwd.backend());
        }
    }
    Env {
        fwd: Some(fwd),
        child: Some(h),
    }
}

/// A port that is currently free for TCP and UDP on both 127.0.0.1 and ::1.
pub fn free_port() -> u16 {
    loop {
        let l = TcpListener::bind("[::]:0").expect("bind probe");
        let p = l.local_addr().expect("addr").port();
        drop(l);
        if UdpSocket::bind(("::", p)).is_ok() && TcpListener::bind(("0.0.0.0", p)).is_ok() {
            return p;
        }
    }
}

pub fn spec(
    proto: &str,
    parent_ip: &str,
    parent_port: u16,
    child_ip: &str,
    child_port: u16,
) -> PortSpec {
    PortSpec {
        proto: proto.into(),
        parent_ip: parent_ip.into(),
        parent_port: i64::from(parent_port),
        child_port: i64::from(child_port),
        child_ip: child_ip.into(),
    }
}

/// Port 1: a free host port on 127.0.0.1 forwarded to `127.0.0.1:sport`; returns the host port.
pub fn publish_tcp(env: &Env, sport: u16) -> u16 {
    let port = free_port();
    env.fwd()
        .add_port(1, &spec("tcp", "127.0.0.1", port, "", sport))
        .expect("add_port");
    port
}

pub fn random_bytes(n: usize, seed: u64) -> Vec<u8> {
    let mut v = vec![0u8; n];
    rand::rngs::StdRng::seed_from_u64(seed).fill_bytes(&mut v);
    v
}

pub fn sha(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

/// Echo server: every connection echoes until EOF, then shuts down its write side.
pub fn echo_server(addr: &str) -> (SocketAddr, JoinHandle<()>) {
    let l = TcpListener::bind(addr).expect("bind echo server");
    let a = l.local_addr().expect("addr");
    let h = std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else {
                std::thread::sleep(Duration::from_millis(5));
                continue;
            };
            std::thread::spawn(move || {
                let mut buf = vec![0u8; 65536];
                loop {
                    match s.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            if s.write_all(&buf[..n]).is_err() {
                                return;
                            }
                        }
                    }
                }
                let _ = s.shutdown(Shutdown::Write);
            });
        }
    });
    (a, h)
}

pub fn connect(addr: &str) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    s.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
    s.set_write_timeout(Some(IO_TIMEOUT)).expect("timeout");
    s
}

/// Connect, retrying briefly (the worker registers the listener asynchronously).
pub fn connect_retry(addr: &str) -> TcpStream {
    for _ in 0..100 {
        if let Ok(s) = TcpStream::connect(addr) {
            s.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
            s.set_write_timeout(Some(IO_TIMEOUT)).expect("timeout");
            return s;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("connect {addr} failed");
}

/// Send `data`, half-close, read the echo to EOF, assert it is byte-exact.
pub fn echo_roundtrip(addr: &str, data: &[u8]) {
    echo_roundtrip_timeout(addr, data, IO_TIMEOUT)
}

pub fn echo_roundtrip_timeout(addr: &str, data: &[u8], timeout: Duration) {
    let mut s = connect_retry(addr);
    s.set_read_timeout(Some(timeout)).expect("timeout");
    let mut r = s.try_clone().expect("clone");
    let d2 = data.to_vec();
    let w = std::thread::spawn(move || {
        s.write_all(&d2).expect("write");
        s.shutdown(Shutdown::Write).expect("shutdown");
    });
    let mut got = Vec::with_capacity(data.len());
    r.read_to_end(&mut got).expect("read echo");
    w.join().expect("writer");
    assert_eq!(got.len(), data.len(), "echo length via {addr}");
    assert!(got == data, "echo bytes differ via {addr}");
}

pub fn bulk_mib() -> usize {
    std::env::var("ROOTLESSKIT_TEST_BULK_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64)
}
