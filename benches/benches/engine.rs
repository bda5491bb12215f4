//! Forwarder data-plane benchmarks: per backend, bulk throughput (64 MiB one way through the
//! forwarder over loopback) and a 64-byte request/response round trip on a persistent
//! connection, plus a "direct" baseline without forwarder. The child side runs on a thread in
//! the same process (same netns), as in the crate's tests.
//!
//! `cargo bench -p rootlesskit-benches -- --warm-up-time 1 --measurement-time 3`

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use criterion::{criterion_group, Criterion, Throughput};
use forwarder::{Backend, Forwarder, ForwarderConfig, PortSpec};
use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
use rootlesskit_benches::{bulk_once, free_port, targets, Targets};

const BULK: usize = 64 << 20;

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

fn start(backend: Backend, adaptive: bool, t: &Targets) -> Fwd {
    let (parent, child) = socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .expect("socketpair");
    std::thread::Builder::new()
        .name("port-child".into())
        .spawn(move || {
            let _ = forwarder::channel::serve_child(child, None);
        })
        .expect("spawn child thread");
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

fn bench(c: &mut Criterion) {
    let t = targets();
    let data = vec![0x5au8; BULK];
    let mut cases: Vec<(String, Option<(Backend, bool)>)> = vec![("direct".into(), None)];
    let only = std::env::var("FWD_BENCH_CASE").ok();
    for b in Backend::ALL {
        cases.push((b.name().to_string(), Some((b, true))));
    }
    // Same backends without the adaptive copy-first small-message path.
    cases.push(("epoll-splice-only".into(), Some((Backend::Epoll, false))));
    cases.push((
        "uring-splice-only".into(),
        Some((Backend::UringPoll, false)),
    ));

    if let Some(o) = only.as_deref() {
        cases.retain(|(n, _)| n == o);
    }
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

/// CPU time (ns, from schedstat) of this process's forwarder worker threads and io-wq workers.
fn worker_cpu_ns() -> u64 {
    threads_cpu_ns(&["fwd-worker", "iou-wrk"])
}

/// CPU time of every forwarding thread, including the socket channel (both ends): the cost
/// of a new connection.
fn conn_cpu_ns() -> u64 {
    threads_cpu_ns(&["fwd-worker", "iou-wrk", "fwd-channel", "port-child"])
}

/// CPU time (ns, from schedstat) of this process's threads whose name starts with a prefix.
fn threads_cpu_ns(prefixes: &[&str]) -> u64 {
    let mut total = 0;
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    for e in dir.flatten() {
        let p = e.path();
        let comm = std::fs::read_to_string(p.join("comm")).unwrap_or_default();
        if !prefixes.iter().any(|p| comm.starts_with(p)) {
            continue;
        }
        let st = std::fs::read_to_string(p.join("schedstat")).unwrap_or_default();
        total += st
            .split_whitespace()
            .next()
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
    }
    total
}

/// CPU cost of the forwarder itself (robust on a loaded machine, unlike wall-clock numbers):
/// CPU seconds per GB for bulk, CPU microseconds per 64-byte round trip.
fn cpu_report() {
    let t = targets();
    let data = vec![0x5au8; BULK];
    println!("\nforwarder CPU cost (worker threads incl. io-wq):");
    println!(
        "{:<20} {:>12} {:>14} {:>12} {:>12} {:>14}",
        "backend", "CPU-s/GB", "CPU-us/RR", "wall-us/RR", "conn/s", "CPU-us/conn"
    );
    let cases: Vec<(&str, Backend, bool)> = vec![
        ("uring", Backend::UringPoll, true),
        ("uring-splice", Backend::UringSplice, true),
        ("epoll", Backend::Epoll, true),
        ("copy", Backend::Copy, true),
        ("epoll-splice-only", Backend::Epoll, false),
        ("uring-splice-only", Backend::UringPoll, false),
    ];
    let only = std::env::var("FWD_BENCH_CASE").ok();
    for (name, b, adaptive) in cases {
        if only.as_deref().is_some_and(|o| o != name) {
            continue;
        }
        let f = start(b, adaptive, &t);
        let rounds = if std::env::var_os("FWD_BENCH_NO_BULK").is_some() {
            0
        } else {
            16
        };
        let c0 = worker_cpu_ns();
        for _ in 0..rounds {
            bulk_once(f.sink, &data);
        }
        let c1 = worker_cpu_ns();
        let gb = (rounds * BULK) as f64 / 1e9;
        let s_per_gb = if gb > 0.0 {
            (c1 - c0) as f64 / 1e9 / gb
        } else {
            0.0
        };
        let mut s = TcpStream::connect(("127.0.0.1", f.echo)).expect("connect");
        s.set_nodelay(true).expect("nodelay");
        let msg = [7u8; 64];
        let mut buf = [0u8; 64];
        let n = 20_000;
        let c2 = worker_cpu_ns();
        let w0 = Instant::now();
        for _ in 0..n {
            s.write_all(&msg).expect("write");
            s.read_exact(&mut buf).expect("read");
        }
        let wall = w0.elapsed().as_secs_f64() * 1e6 / n as f64;
        let c3 = worker_cpu_ns();
        let us_per_rr = (c3 - c2) as f64 / 1e3 / n as f64;
        // Short connections: connect, 1-byte echo, close (covers the socket pool).
        let nconn = 2000;
        let c4 = conn_cpu_ns();
        let w1 = Instant::now();
        for _ in 0..nconn {
            let mut s = TcpStream::connect(("127.0.0.1", f.echo)).expect("connect");
            s.write_all(b"c").expect("write");
            let mut one = [0u8; 1];
            s.read_exact(&mut one).expect("read");
        }
        let cps = nconn as f64 / w1.elapsed().as_secs_f64();
        // The last connections may still be closing in the forwarder.
        std::thread::sleep(Duration::from_millis(100));
        let us_per_conn = (conn_cpu_ns() - c4) as f64 / 1e3 / nconn as f64;
        println!(
            "{name:<20} {s_per_gb:>12.3} {us_per_rr:>14.2} {wall:>12.1} {cps:>12.0} {us_per_conn:>14.1}"
        );
    }
}

criterion_group!(benches, bench);

fn main() {
    let only_cpu = std::env::args().any(|a| a == "cpu");
    if !only_cpu {
        benches();
    }
    cpu_report();
    Criterion::default().configure_from_args().final_summary();
}
