//! REST API benchmark: add 1,000 ports one `POST /v1/ports` at a time, list them with one
//! `GET /v1/ports`, remove them one `DELETE` at a time, against Debian's RootlessKit 1.1.0 and
//! ours, both started as `rktest` with `--net=slirp4netns --port-driver=builtin`.
//!
//! ```text
//! cargo build --release -p rootlesskit-launcher --bins
//! RK_BIN_DIR=target/release cargo bench -p rootlesskit-benches --bench api
//! ```
//! Needs root (to start both as `rktest`). `RK_BENCH_PORTS` changes the count (default 1000),
//! `RK_BENCH_ONLY=rust|go-1.1.0` measures one server only.
//! Requests go over one keep-alive connection (like Docker's Go client), plus a second pass
//! with one connection per request (like separate `rootlessctl` runs).

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Kit {
    child: Child,
    dir: PathBuf,
}

impl Kit {
    fn start(bin: &Path, tag: &str) -> Option<Kit> {
        let pw = nix::unistd::User::from_name("rktest").ok()??;
        let dir = PathBuf::from(format!("/tmp/rkrs-bench-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let child = Command::new(bin)
            .arg(format!("--state-dir={}", dir.display()))
            .args([
                "--net=slirp4netns",
                "--port-driver=builtin",
                "sleep",
                "3600",
            ])
            .current_dir("/tmp")
            .env("HOME", "/tmp")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .uid(pw.uid.as_raw())
            .gid(pw.gid.as_raw())
            .spawn()
            .ok()?;
        let mut k = Kit { child, dir };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !k.dir.join("api.sock").exists() {
            if Instant::now() > deadline || matches!(k.child.try_wait(), Ok(Some(_))) {
                eprintln!("{} did not start", bin.display());
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(k)
    }
}

impl Drop for Kit {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let _ = self.child.wait();
    }
}

/// Send one request on `conn`, read one response; returns (status, body).
fn roundtrip(conn: &mut BufReader<UnixStream>, req: &[u8]) -> (u16, Vec<u8>) {
    conn.get_mut().write_all(req).expect("write");
    let mut status = 0;
    let mut len = None;
    let mut chunked = false;
    loop {
        let mut line = String::new();
        conn.read_line(&mut line).expect("read");
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if status == 0 {
            status = l
                .split(' ')
                .nth(1)
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
        }
        let low = l.to_ascii_lowercase();
        if let Some(v) = low.strip_prefix("content-length:") {
            len = v.trim().parse::<usize>().ok();
        }
        if low == "transfer-encoding: chunked" {
            chunked = true;
        }
    }
    let mut body = Vec::new();
    if chunked {
        loop {
            let mut line = String::new();
            conn.read_line(&mut line).expect("read");
            let n = usize::from_str_radix(line.trim(), 16).expect("chunk");
            let mut b = vec![0u8; n + 2];
            conn.read_exact(&mut b).expect("read");
            if n == 0 {
                break;
            }
            body.extend_from_slice(&b[..n]);
        }
    } else if let Some(n) = len {
        body.resize(n, 0);
        conn.read_exact(&mut body).expect("read");
    }
    (status, body)
}

fn connect(sock: &Path) -> BufReader<UnixStream> {
    BufReader::new(UnixStream::connect(sock).expect("connect"))
}

fn post(port: u32) -> Vec<u8> {
    let body =
        format!(r#"{{"proto":"tcp","parentIP":"127.0.0.1","parentPort":{port},"childPort":80}}"#);
    format!(
        "POST /v1/ports HTTP/1.1\r\nHost: rootlesskit\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

fn pct(v: &mut [Duration], p: f64) -> Duration {
    v.sort();
    v[((v.len() as f64 - 1.0) * p) as usize]
}

struct Pass {
    info_total: Duration,
    add_total: Duration,
    add_p50: Duration,
    add_p99: Duration,
    list: Duration,
    list_bytes: usize,
    del_total: Duration,
}

fn pass(sock: &Path, base: u32, n: u32, keep_alive: bool) -> Result<Pass, String> {
    // Floor: the same number of `GET /v1/info` (client, HTTP and socket costs only).
    let mut conn = connect(sock);
    let t0 = Instant::now();
    for _ in 0..n {
        if !keep_alive {
            conn = connect(sock);
        }
        let (st, _) = roundtrip(
            &mut conn,
            b"GET /v1/info HTTP/1.1\r\nHost: rootlesskit\r\n\r\n",
        );
        if st != 200 {
            return Err(format!("GET /v1/info -> {st}"));
        }
    }
    let info_total = t0.elapsed();
    let mut conn = connect(sock);
    let mut lat = Vec::with_capacity(n as usize);
    let mut ids = Vec::with_capacity(n as usize);
    let t0 = Instant::now();
    for i in 0..n {
        if !keep_alive {
            conn = connect(sock);
        }
        let t = Instant::now();
        let (st, body) = roundtrip(&mut conn, &post(base + i));
        lat.push(t.elapsed());
        if st != 201 {
            return Err(format!(
                "POST #{i} -> {st} {}",
                String::from_utf8_lossy(&body)
            ));
        }
        let s = String::from_utf8_lossy(&body);
        let id: i64 = s["{\"id\":".len()..s.find(',').unwrap_or(0)]
            .parse()
            .map_err(|_| format!("bad reply {s}"))?;
        ids.push(id);
    }
    let add_total = t0.elapsed();
    if std::env::var_os("RK_BENCH_DECILES").is_some() {
        let d: Vec<String> = lat
            .chunks((n as usize / 10).max(1))
            .map(|c| {
                format!(
                    "{:.0}",
                    c.iter().map(|d| d.as_secs_f64()).sum::<f64>() / c.len() as f64 * 1e6
                )
            })
            .collect();
        eprintln!("add mean per decile (us): {}", d.join(" "));
        let mut top: Vec<(Duration, usize)> = lat.iter().copied().zip(0..).collect();
        top.sort();
        let top: Vec<String> = top
            .iter()
            .rev()
            .take(8)
            .map(|(d, i)| format!("#{i}:{}us", d.as_micros()))
            .collect();
        eprintln!("slowest adds: {}", top.join(" "));
    }
    let t = Instant::now();
    let (st, body) = roundtrip(
        &mut connect(sock),
        b"GET /v1/ports HTTP/1.1\r\nHost: rootlesskit\r\n\r\n",
    );
    let list = t.elapsed();
    if st != 200 || body.iter().filter(|&&b| b == b'{').count() != 2 * n as usize {
        return Err(format!("GET -> {st}, {} bytes", body.len()));
    }
    let t = Instant::now();
    let mut conn = connect(sock);
    for id in ids {
        if !keep_alive {
            conn = connect(sock);
        }
        let (st, _) = roundtrip(
            &mut conn,
            format!("DELETE /v1/ports/{id} HTTP/1.1\r\nHost: rootlesskit\r\n\r\n").as_bytes(),
        );
        if st != 200 {
            return Err(format!("DELETE {id} -> {st}"));
        }
    }
    Ok(Pass {
        info_total,
        add_p50: pct(&mut lat, 0.5),
        add_p99: pct(&mut lat, 0.99),
        add_total,
        list,
        list_bytes: body.len(),
        del_total: t.elapsed(),
    })
}

fn main() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("api bench: needs root (starts both servers as rktest); skipped");
        return;
    }
    let n: u32 = std::env::var("RK_BENCH_PORTS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1000);
    let ours_dir = std::env::var_os("RK_BIN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/release"));
    let targets = [
        ("go-1.1.0", PathBuf::from("/usr/bin/rootlesskit"), 20000u32),
        ("rust", ours_dir.join("rootlesskit"), 24000u32),
    ];
    println!(
        "{:<10} {:<11} {:>10} {:>10} {:>9} {:>9} {:>10} {:>9} {:>10}",
        "server",
        "conn",
        "info total",
        "add total",
        "add p50",
        "add p99",
        "list",
        "list KiB",
        "del total"
    );
    // RK_BENCH_ONLY=rust (or go-1.1.0) measures one server, e.g. while profiling it.
    let only = std::env::var("RK_BENCH_ONLY").ok();
    for (name, bin, base) in &targets {
        if only.as_deref().is_some_and(|o| o != *name) {
            continue;
        }
        let Some(kit) = Kit::start(bin, name) else {
            println!("{name:<10} not available ({})", bin.display());
            continue;
        };
        let sock = kit.dir.join("api.sock");
        for (label, ka, off) in [("keep-alive", true, 0), ("per-request", false, 2000)] {
            match pass(&sock, base + off, n, ka) {
                Ok(p) => println!(
                    "{name:<10} {label:<11} {:>8.1}ms {:>8.1}ms {:>7.0}us {:>7.0}us {:>8.2}ms {:>9.1} {:>8.1}ms",
                    p.info_total.as_secs_f64() * 1e3,
                    p.add_total.as_secs_f64() * 1e3,
                    p.add_p50.as_secs_f64() * 1e6,
                    p.add_p99.as_secs_f64() * 1e6,
                    p.list.as_secs_f64() * 1e3,
                    p.list_bytes as f64 / 1024.0,
                    p.del_total.as_secs_f64() * 1e3,
                ),
                Err(e) => println!("{name:<10} {label:<11} failed: {e}"),
            }
        }
    }
}
