//! Cost of the live per-port statistics (issue #7: "no measurable cost on the hot path").
//!
//! The same engine source is linked twice: `forwarder` (counters on, the shipped build) and
//! `forwarder_nostats` (the crate's own source built with the feature `no-stats`, where every
//! counter is a zero-sized no-op; see `benches/nostats/Cargo.toml`). Both run in this one
//! process, same backend (the probed default unless `FWD_BENCH_BACKEND` names one), 2 workers,
//! the child side on a thread (same netns), like `benches/benches/engine.rs`:
//!
//! * criterion groups `stats_bulk_64MiB` (64 MiB one way, then a 1-byte ack) and `stats_rr_64B`
//!   (64-byte request/response on a persistent connection), functions `on` and `off`;
//! * then an interleaved table (on, off, on, off, ... `FWD_STATS_ROUNDS` rounds, default 6) of
//!   wall time and worker CPU time (from schedstat; robust on a loaded machine): bulk GB/s and
//!   CPU-s/GB, 2 parallel bulk streams through one port (both workers hit the same counters),
//!   64 B round trips (wall and CPU µs), and connect/1-byte echo/close per second.
//!
//! `flock /tmp/rk-bench.lock cargo bench -p rootlesskit-benches --bench stats`
//! (`-- table` skips criterion and prints only the interleaved table).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
use rootlesskit_benches::{bulk_once, free_port, targets, Targets};

const BULK: usize = 64 << 20;

// The two builds really differ.
const _: () = assert!(forwarder::engine::STATS_ENABLED);
const _: () = assert!(!forwarder_nostats::engine::STATS_ENABLED);

/// A running engine of either crate: its two host ports and how to stop it.
struct Engine {
    sink: u16,
    echo: u16,
    stop: Option<Box<dyn FnOnce()>>,
}

impl Drop for Engine {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            stop();
        }
    }
}

/// Starts the engine of crate `$krate` with 2 workers and ports sink/echo; `$backend` is a
/// backend name or None (probed default).
macro_rules! start_engine {
    ($krate:ident, $t:expr, $backend:expr) => {{
        use $krate::{Backend, Forwarder, ForwarderConfig, PortSpec};
        let (parent, child) = socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .expect("socketpair");
        std::thread::spawn(move || {
            let _ = $krate::channel::serve_child(child, None);
        });
        let backend: Option<Backend> = $backend.map(|name: &str| {
            *Backend::ALL
                .iter()
                .find(|b| b.name() == name)
                .unwrap_or_else(|| panic!("FWD_BENCH_BACKEND={name}: unknown backend"))
        });
        let fwd = Forwarder::start(
            parent,
            ForwarderConfig {
                backend,
                workers: 2,
                require_foreign_netns: false,
                ..ForwarderConfig::default()
            },
        )
        .expect("start forwarder");
        let spec = |pp: u16, cp: u16| PortSpec {
            proto: "tcp".into(),
            parent_ip: "127.0.0.1".into(),
            parent_port: i64::from(pp),
            child_port: i64::from(cp),
            child_ip: String::new(),
        };
        let (sink, echo) = (free_port(), free_port());
        fwd.add_port(1, &spec(sink, $t.sink)).expect("add sink");
        fwd.add_port(2, &spec(echo, $t.echo)).expect("add echo");
        Engine {
            sink,
            echo,
            stop: Some(Box::new(move || fwd.shutdown())),
        }
    }};
}

fn start(stats_on: bool, t: &Targets) -> Engine {
    let backend = std::env::var("FWD_BENCH_BACKEND").ok();
    let backend = backend.as_deref();
    let e = if stats_on {
        start_engine!(forwarder, t, backend)
    } else {
        start_engine!(forwarder_nostats, t, backend)
    };
    // Warm the connection path (socket pools filled by the child thread).
    for port in [e.sink, e.echo] {
        let s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        drop(s);
    }
    std::thread::sleep(Duration::from_millis(50));
    e
}

fn rr_conn(port: u16) -> TcpStream {
    let s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_nodelay(true).expect("nodelay");
    s
}

fn rr_once(s: &mut TcpStream) {
    let msg = [7u8; 64];
    let mut buf = [0u8; 64];
    s.write_all(&msg).expect("write");
    s.read_exact(&mut buf).expect("read");
}

const VARIANTS: [(&str, bool); 2] = [("on", true), ("off", false)];

fn criterion_part(c: &mut Criterion, t: &Targets) {
    let data = vec![0x5au8; BULK];
    let mut g = c.benchmark_group("stats_bulk_64MiB");
    g.throughput(Throughput::Bytes(BULK as u64));
    g.sample_size(10);
    for (name, on) in VARIANTS {
        let e = start(on, t);
        g.bench_function(name, |b| {
            b.iter_custom(|iters| (0..iters).map(|_| bulk_once(e.sink, &data)).sum())
        });
    }
    g.finish();
    let mut g = c.benchmark_group("stats_rr_64B");
    for (name, on) in VARIANTS {
        let e = start(on, t);
        let mut s = rr_conn(e.echo);
        g.bench_function(name, |b| b.iter(|| rr_once(&mut s)));
    }
    g.finish();
}

/// CPU time (ns) of this process's forwarder workers (and io-wq threads).
fn worker_cpu_ns() -> u64 {
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    let mut total = 0;
    for e in dir.flatten() {
        let p = e.path();
        let comm = std::fs::read_to_string(p.join("comm")).unwrap_or_default();
        if !comm.starts_with("fwd-worker") && !comm.starts_with("iou-wrk") {
            continue;
        }
        total += std::fs::read_to_string(p.join("schedstat"))
            .unwrap_or_default()
            .split_whitespace()
            .next()
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
    }
    total
}

#[derive(Default, Clone, Copy)]
struct Sample {
    bulk_gbps: f64,
    bulk_cpu_s_per_gb: f64,
    par_gbps: f64,
    rr_wall_us: f64,
    rr_cpu_us: f64,
    conns_per_s: f64,
}

fn measure(on: bool, t: &Targets, data: &[u8]) -> Sample {
    let e = start(on, t);
    let rounds = 4;
    let c0 = worker_cpu_ns();
    let wall: Duration = (0..rounds).map(|_| bulk_once(e.sink, data)).sum();
    let c1 = worker_cpu_ns();
    let gb = (rounds * data.len()) as f64 / 1e9;
    // Two streams at once through one port: both workers update the same counters.
    let w = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                for _ in 0..2 {
                    bulk_once(e.sink, data);
                }
            });
        }
    });
    let par = w.elapsed();
    let mut s = rr_conn(e.echo);
    let n = 20_000;
    let c2 = worker_cpu_ns();
    let w = Instant::now();
    for _ in 0..n {
        rr_once(&mut s);
    }
    let rr_wall = w.elapsed();
    let c3 = worker_cpu_ns();
    let nconn = 1000;
    let w = Instant::now();
    for _ in 0..nconn {
        let mut s = TcpStream::connect(("127.0.0.1", e.echo)).expect("connect");
        s.write_all(b"c").expect("write");
        let mut one = [0u8; 1];
        s.read_exact(&mut one).expect("read");
    }
    let cps = nconn as f64 / w.elapsed().as_secs_f64();
    Sample {
        bulk_gbps: gb / wall.as_secs_f64(),
        bulk_cpu_s_per_gb: (c1 - c0) as f64 / 1e9 / gb,
        par_gbps: (4 * data.len()) as f64 / 1e9 / par.as_secs_f64(),
        rr_wall_us: rr_wall.as_secs_f64() * 1e6 / f64::from(n),
        rr_cpu_us: (c3 - c2) as f64 / 1e3 / f64::from(n),
        conns_per_s: cps,
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn table(t: &Targets) {
    let rounds: usize = std::env::var("FWD_STATS_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(6);
    let data = vec![0x5au8; BULK];
    let mut samples: [Vec<Sample>; 2] = [Vec::new(), Vec::new()];
    for r in 0..rounds {
        // Alternate which variant goes first, so drift on the machine hits both alike.
        let order = if r % 2 == 0 { [0, 1] } else { [1, 0] };
        for i in order {
            let m = measure(VARIANTS[i].1, t, &data);
            eprintln!(
                "round {r} {:<3}: bulk {:.2} GB/s {:.3} CPU-s/GB, 2 streams {:.2} GB/s, RR {:.1} µs ({:.2} CPU µs), {:.0} conn/s",
                VARIANTS[i].0,
                m.bulk_gbps,
                m.bulk_cpu_s_per_gb,
                m.par_gbps,
                m.rr_wall_us,
                m.rr_cpu_us,
                m.conns_per_s
            );
            samples[i].push(m);
        }
    }
    println!(
        "\nport statistics on vs off, interleaved, {rounds} rounds, medians (backend: {}):",
        std::env::var("FWD_BENCH_BACKEND").unwrap_or_else(|_| "probed default".into())
    );
    println!(
        "| stats | bulk GB/s | bulk CPU-s/GB | 2 streams GB/s | 64 B RR wall µs | 64 B RR CPU µs | conn+echo+close /s |"
    );
    println!("|---|---|---|---|---|---|---|");
    for (i, (name, _)) in VARIANTS.iter().enumerate() {
        let col = |f: fn(&Sample) -> f64| median(samples[i].iter().map(f).collect());
        println!(
            "| {name} | {:.2} | {:.3} | {:.2} | {:.1} | {:.2} | {:.0} |",
            col(|s| s.bulk_gbps),
            col(|s| s.bulk_cpu_s_per_gb),
            col(|s| s.par_gbps),
            col(|s| s.rr_wall_us),
            col(|s| s.rr_cpu_us),
            col(|s| s.conns_per_s),
        );
    }
}

fn main() {
    let t = targets();
    let only_table = std::env::args().any(|a| a == "table");
    if !only_table {
        let mut c = Criterion::default()
            .warm_up_time(Duration::from_secs(1))
            .measurement_time(Duration::from_secs(3))
            .configure_from_args();
        criterion_part(&mut c, &t);
        c.final_summary();
    }
    table(&t);
}
