//! Forwarder data-plane benchmarks: per backend, bulk throughput (64 MiB one way through the
//! forwarder over loopback) and a 64-byte request/response round trip on a persistent
//! connection, plus a "direct" baseline without forwarder. The child side runs on a thread in
//! the same process (same netns), as in the crate's tests.
//!
//! `cargo bench -p rootlesskit-benches -- --warm-up-time 1 --measurement-time 3`

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use forwarder::{Backend, Forwarder, ForwarderConfig, PortSpec};
use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};

const BULK: usize = 64 << 20;

struct Target {
    sink: u16,
    echo: u16,
}

/// Sink: reads to EOF then writes one byte. Echo: echoes forever.
fn targets() -> Target {
    let sink = TcpListener::bind("127.0.0.1:0").expect("bind");
    let echo = TcpListener::bind("127.0.0.1:0").expect("bind");
    let t = Target {
        sink: sink.local_addr().expect("a").port(),
        echo: echo.local_addr().expect("a").port(),
    };
    std::thread::spawn(move || {
        for s in sink.incoming().flatten() {
            std::thread::spawn(move || {
                let mut s = s;
                let mut buf = vec![0u8; 256 * 1024];
                while let Ok(n) = s.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                }
                let _ = s.write_all(b"k");
            });
        }
    });
    std::thread::spawn(move || {
        for s in echo.incoming().flatten() {
            std::thread::spawn(move || {
                let mut s = s;
                let _ = s.set_nodelay(true);
                let mut buf = vec![0u8; 65536];
                while let Ok(n) = s.read(&mut buf) {
                    if n == 0 || s.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            });
        }
    });
    t
}

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("a").port()
}

struct Fwd {
    fwd: Option<Forwarder>,
    sink: u16,
    echo: u16,
}

impl Drop for Fwd {
    fn drop(&mut self) {
        if let Some(f) = self.fwd.take() {
            f.shutdown();
        }
    }
}

fn start(backend: Backend, adaptive: bool, t: &Target) -> Fwd {
    let (parent, child) = socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .expect("socketpair");
    std::thread::spawn(move || {
        let _ = forwarder::channel::serve_child(child, None);
    });
    let fwd = Forwarder::start(
        parent,
        ForwarderConfig {
            backend: Some(backend),
            workers: 2,
            require_foreign_netns: false,
            adaptive_copy: adaptive,
            ..ForwarderConfig::default()
        },
    )
    .expect("start");
    let sink = free_port();
    let echo = free_port();
    let spec = |pp: u16, cp: u16| PortSpec {
        proto: "tcp".into(),
        parent_ip: "127.0.0.1".into(),
        parent_port: i64::from(pp),
        child_port: i64::from(cp),
        child_ip: String::new(),
    };
    fwd.add_port(1, &spec(sink, t.sink)).expect("add sink");
    fwd.add_port(2, &spec(echo, t.echo)).expect("add echo");
    std::thread::sleep(Duration::from_millis(50));
    Fwd {
        fwd: Some(fwd),
        sink,
        echo,
    }
}

fn bulk_once(port: u16, data: &[u8]) -> Duration {
    let t0 = Instant::now();
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.write_all(data).expect("write");
    s.shutdown(Shutdown::Write).expect("shutdown");
    let mut k = [0u8; 1];
    s.read_exact(&mut k).expect("ack");
    t0.elapsed()
}

fn bench(c: &mut Criterion) {
    let t = targets();
    let data = vec![0x5au8; BULK];
    let mut cases: Vec<(String, Option<(Backend, bool)>)> = vec![("direct".into(), None)];
    for b in Backend::ALL {
        cases.push((b.name().to_string(), Some((b, true))));
    }
    // Same backends without the adaptive copy-first small-message path.
    cases.push(("epoll-splice-only".into(), Some((Backend::Epoll, false))));
    cases.push((
        "uring-splice-only".into(),
        Some((Backend::UringPoll, false)),
    ));

    let mut g = c.benchmark_group("bulk_64MiB");
    g.throughput(Throughput::Bytes(BULK as u64));
    g.sample_size(10);
    for (name, cfg) in &cases {
        let fwd = cfg.map(|(b, a)| start(b, a, &t));
        let port = fwd.as_ref().map(|f| f.sink).unwrap_or(t.sink);
        g.bench_function(name.as_str(), |bch| {
            bch.iter_custom(|iters| (0..iters).map(|_| bulk_once(port, &data)).sum())
        });
    }
    g.finish();

    let mut g = c.benchmark_group("rr_64B");
    for (name, cfg) in &cases {
        let fwd = cfg.map(|(b, a)| start(b, a, &t));
        let port = fwd.as_ref().map(|f| f.echo).unwrap_or(t.echo);
        let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        s.set_nodelay(true).expect("nodelay");
        let msg = [7u8; 64];
        let mut buf = [0u8; 64];
        g.bench_function(name.as_str(), |bch| {
            bch.iter(|| {
                s.write_all(&msg).expect("write");
                s.read_exact(&mut buf).expect("read");
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
