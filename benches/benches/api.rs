//! REST API benchmark: add 1,000 ports one `POST /v1/ports` at a time, list them with one
//! `GET /v1/ports`, remove them one `DELETE` at a time, against Debian's RootlessKit 1.1.0 and
//! ours, both started as `rktest` with `--net=slirp4netns --port-driver=builtin`.
//!
//! ```text
//! cargo build --release -p rootlesskit-launcher --bins
//! RK_BIN_DIR=target/release cargo bench -p rootlesskit-benches --bench api
//! ```
//! Needs root (to start both as `rktest`). `RK_BENCH_PORTS` changes the count (default 1000,
//! at most 4000),
//! `RK_BENCH_ONLY=rust|go-1.1.0|floor` (or a comma-separated list) measures only those,
//! `RK_BENCH_CONN=keep-alive|per-request` only that pass of the servers; `RK_BENCH_THREADS=1`
//! prints the server's CPU per add by thread name.
//! Requests go over one keep-alive connection (like Docker's Go client), plus a second pass
//! with one connection per request (like separate `rootlessctl` runs).
//!
//! The `floor` rows are a minimal blocking unix-socket server on a thread of this process
//! (read the request head and body, write a fixed small response; no HTTP library, no port
//! work) measured by the same client loops: what any server can reach on this machine.

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

/// `n` requests `req(i)` one at a time, on one connection or one connection each; checks the
/// status and hands each body to `seen`. Returns the total and each request's latency.
fn requests(
    sock: &Path,
    n: u32,
    keep_alive: bool,
    want: u16,
    req: impl Fn(u32) -> Vec<u8>,
    mut seen: impl FnMut(u32, &[u8]) -> Result<(), String>,
) -> Result<(Duration, Vec<Duration>), String> {
    let mut conn = keep_alive.then(|| connect(sock));
    let mut lat = Vec::with_capacity(n as usize);
    let t0 = Instant::now();
    for i in 0..n {
        // Per-request: the connect is in the total, not in the latency.
        let conn = match &mut conn {
            Some(c) => c,
            None => &mut connect(sock),
        };
        let r = req(i);
        let t = Instant::now();
        let (st, body) = roundtrip(conn, &r);
        lat.push(t.elapsed());
        if st != want {
            return Err(format!(
                "request #{i} -> {st} {}",
                String::from_utf8_lossy(&body)
            ));
        }
        seen(i, &body)?;
    }
    Ok((t0.elapsed(), lat))
}

/// The `floor` server: blocking, one connection at a time (the client is sequential), on its
/// own thread. Reads a request head (and a `Content-Length` body), writes one fixed response
/// with a single `write`, until the client closes.
fn floor_server(dir: &Path) -> PathBuf {
    use std::os::unix::net::UnixListener;
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).expect("floor dir");
    let path = dir.join("floor.sock");
    let listener = UnixListener::bind(&path).expect("floor bind");
    std::thread::Builder::new()
        .name("floor".into())
        .spawn(move || {
            let mut buf = vec![0u8; 64 * 1024];
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { continue };
                let mut have = 0;
                'conn: loop {
                    // One request: head, then the body its Content-Length announces.
                    let (head_end, body_len) = loop {
                        if let Some(e) = buf[..have].windows(4).position(|w| w == b"\r\n\r\n") {
                            let head = String::from_utf8_lossy(&buf[..e]).to_ascii_lowercase();
                            let len = head
                                .split("\r\n")
                                .find_map(|l| l.strip_prefix("content-length:"))
                                .and_then(|v| v.trim().parse::<usize>().ok())
                                .unwrap_or(0);
                            break (e + 4, len);
                        }
                        match conn.read(&mut buf[have..]) {
                            Ok(0) | Err(_) => break 'conn,
                            Ok(k) => have += k,
                        }
                    };
                    while have < head_end + body_len {
                        match conn.read(&mut buf[have..]) {
                            Ok(0) | Err(_) => break 'conn,
                            Ok(k) => have += k,
                        }
                    }
                    let reply: &[u8] = if buf.starts_with(b"POST") {
                        b"HTTP/1.1 201 Created\r\nContent-Length: 9\r\n\r\n{\"id\":1,}"
                    } else {
                        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}"
                    };
                    if conn.write_all(reply).is_err() {
                        break;
                    }
                    buf.copy_within(head_end + body_len..have, 0);
                    have -= head_end + body_len;
                }
            }
        })
        .expect("floor thread");
    path
}

/// The floor: the `GET /v1/info` and `POST /v1/ports` loops against [`floor_server`].
fn floor_pass(
    sock: &Path,
    n: u32,
    keep_alive: bool,
) -> Result<(Duration, Duration, Vec<Duration>), String> {
    let info = |_| b"GET /v1/info HTTP/1.1\r\nHost: rootlesskit\r\n\r\n".to_vec();
    let (info_total, _) = requests(sock, n, keep_alive, 200, info, |_, _| Ok(()))?;
    let (add_total, lat) = requests(sock, n, keep_alive, 201, |i| post(20000 + i), |_, _| Ok(()))?;
    Ok((info_total, add_total, lat))
}

struct Pass {
    info_total: Duration,
    /// CPU time of the server process (every thread) over the info loop, per request.
    info_cpu: Option<Duration>,
    /// The same over the add loop, per add.
    add_cpu: Option<Duration>,
    add_total: Duration,
    add_p50: Duration,
    add_p99: Duration,
    list: Duration,
    list_bytes: usize,
    del_total: Duration,
}

/// `12.3us`, or `-`.
fn us(d: Option<Duration>) -> String {
    d.map(|d| format!("{:.1}us", d.as_secs_f64() * 1e6))
        .unwrap_or_else(|| "-".into())
}

fn print_deciles(lat: &[Duration], n: u32) {
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

/// CPU time so far of every live thread of `pid` (`/proc/PID/task/*/schedstat`, ns).
fn server_cpu(pid: u32) -> Option<Duration> {
    Some(Duration::from_nanos(server_threads(pid)?.values().sum()))
}

/// CPU ns so far per thread name of `pid` (threads of one name summed).
fn server_threads(pid: u32) -> Option<std::collections::BTreeMap<String, u64>> {
    let mut m = std::collections::BTreeMap::new();
    for t in std::fs::read_dir(format!("/proc/{pid}/task"))
        .ok()?
        .flatten()
    {
        let s = std::fs::read_to_string(t.path().join("schedstat")).ok()?;
        let comm = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default();
        *m.entry(comm.trim().to_string()).or_insert(0) +=
            s.split_whitespace().next()?.parse::<u64>().ok()?;
    }
    Some(m)
}

fn pass(sock: &Path, server: u32, base: u32, n: u32, keep_alive: bool) -> Result<Pass, String> {
    // The same number of `GET /v1/info` (client, HTTP and socket costs only).
    let info = |_| b"GET /v1/info HTTP/1.1\r\nHost: rootlesskit\r\n\r\n".to_vec();
    let info0 = server_cpu(server);
    let (info_total, _) = requests(sock, n, keep_alive, 200, info, |_, _| Ok(()))?;
    let info_cpu = match (info0, server_cpu(server)) {
        (Some(a), Some(b)) if b >= a => Some((b - a) / n.max(1)),
        _ => None,
    };
    let mut ids = Vec::with_capacity(n as usize);
    let cpu0 = server_cpu(server);
    let threads0 = server_threads(server);
    let (add_total, mut lat) = requests(
        sock,
        n,
        keep_alive,
        201,
        |i| post(base + i),
        |_, body| {
            let s = String::from_utf8_lossy(body);
            let id: i64 = s["{\"id\":".len()..s.find(',').unwrap_or(0)]
                .parse()
                .map_err(|_| format!("bad reply {s}"))?;
            ids.push(id);
            Ok(())
        },
    )?;
    let add_cpu = match (cpu0, server_cpu(server)) {
        (Some(a), Some(b)) if b >= a => Some((b - a) / n.max(1)),
        _ => None,
    };
    if std::env::var_os("RK_BENCH_THREADS").is_some() {
        if let (Some(a), Some(b)) = (threads0, server_threads(server)) {
            let per: Vec<String> = b
                .iter()
                .map(|(k, v)| {
                    let d = v.saturating_sub(a.get(k).copied().unwrap_or(0));
                    format!("{k} {:.2}us", d as f64 / 1e3 / f64::from(n.max(1)))
                })
                .collect();
            eprintln!("server cpu per add by thread: {}", per.join(", "));
        }
    }
    if std::env::var_os("RK_BENCH_DECILES").is_some() {
        print_deciles(&lat, n);
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
    let del = |i: u32| {
        format!(
            "DELETE /v1/ports/{} HTTP/1.1\r\nHost: rootlesskit\r\n\r\n",
            ids[i as usize]
        )
        .into_bytes()
    };
    let (del_total, _) = requests(sock, n, keep_alive, 200, del, |_, _| Ok(()))?;
    Ok(Pass {
        info_total,
        info_cpu,
        add_cpu,
        add_p50: pct(&mut lat, 0.5),
        add_p99: pct(&mut lat, 0.99),
        add_total,
        list,
        list_bytes: body.len(),
        del_total,
    })
}

/// Exit with a message naming the variable, its value and what it takes.
fn bad_env(var: &str, value: &str, want: &str) -> ! {
    eprintln!("api bench: {var}={value:?} is not valid: set {want}, or unset it");
    std::process::exit(2)
}

fn main() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("api bench: needs root (starts both servers as rktest); skipped");
        return;
    }
    // Ports 20000.. (Go) and 24000.. (ours), plus 2000 for the per-request pass: at most 4000
    // stays below the ephemeral range (32768..), where outgoing connections take ports.
    let n: u32 = match std::env::var("RK_BENCH_PORTS") {
        Err(_) => 1000,
        Ok(v) => match v.parse::<u32>() {
            Ok(n) if (1..=4000).contains(&n) => n,
            _ => bad_env("RK_BENCH_PORTS", &v, "a number of ports from 1 to 4000"),
        },
    };
    let ours_dir = std::env::var_os("RK_BIN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/release"));
    let targets = [
        ("go-1.1.0", PathBuf::from("/usr/bin/rootlesskit"), 20000u32),
        ("rust", ours_dir.join("rootlesskit"), 24000u32),
    ];
    // RK_BENCH_ONLY=rust (or go-1.1.0, floor, or a comma-separated list) measures only those,
    // e.g. while profiling one.
    let only = std::env::var("RK_BENCH_ONLY").ok();
    if let Some(o) = &only {
        if o.split(',')
            .any(|w| !["floor", "go-1.1.0", "rust"].contains(&w))
        {
            bad_env(
                "RK_BENCH_ONLY",
                o,
                "a comma-separated list of floor, go-1.1.0, rust",
            );
        }
    }
    let wanted = |name: &str| {
        only.as_deref()
            .is_none_or(|o| o.split(',').any(|o| o == name))
    };
    // RK_BENCH_CONN=keep-alive or per-request: only that pass.
    let conn_only = std::env::var("RK_BENCH_CONN").ok();
    if let Some(c) = &conn_only {
        if c != "keep-alive" && c != "per-request" {
            bad_env("RK_BENCH_CONN", c, "keep-alive or per-request");
        }
    }
    println!(
        "{:<10} {:<11} {:>10} {:>10} {:>9} {:>9} {:>10} {:>9} {:>10} {:>11} {:>11}",
        "server",
        "conn",
        "info total",
        "add total",
        "add p50",
        "add p99",
        "list",
        "list KiB",
        "del total",
        "info cpu/rq",
        "add cpu/req"
    );
    let conn_wanted = |label: &str| conn_only.as_deref().is_none_or(|c| c == label);
    if wanted("floor") {
        let sock = floor_server(&PathBuf::from(format!(
            "/tmp/rkrs-bench-floor-{}",
            std::process::id()
        )));
        for (label, ka) in [("keep-alive", true), ("per-request", false)] {
            match floor_pass(&sock, n, ka) {
                Ok((info, add, mut lat)) => println!(
                    "{:<10} {label:<11} {:>8.1}ms {:>8.1}ms {:>7.0}us {:>7.0}us {:>10} {:>9} {:>10} {:>11} {:>11}",
                    "floor",
                    info.as_secs_f64() * 1e3,
                    add.as_secs_f64() * 1e3,
                    pct(&mut lat, 0.5).as_secs_f64() * 1e6,
                    pct(&mut lat, 0.99).as_secs_f64() * 1e6,
                    "-",
                    "-",
                    "-",
                    "-",
                    "-",
                ),
                Err(e) => println!("floor      {label:<11} failed: {e}"),
            }
        }
        let _ = std::fs::remove_dir_all(sock.parent().unwrap_or(&sock));
    }
    let mut add_list: Vec<(&str, &str, Duration)> = Vec::new();
    for (name, bin, base) in &targets {
        if !wanted(name) {
            continue;
        }
        let Some(kit) = Kit::start(bin, name) else {
            println!("{name:<10} not available ({})", bin.display());
            continue;
        };
        let sock = kit.dir.join("api.sock");
        for (label, ka, off) in [("keep-alive", true, 0), ("per-request", false, 2000)] {
            if !conn_wanted(label) {
                continue;
            }
            match pass(&sock, kit.child.id(), base + off, n, ka) {
                Ok(p) => {
                    println!(
                        "{name:<10} {label:<11} {:>8.1}ms {:>8.1}ms {:>7.0}us {:>7.0}us {:>8.2}ms {:>9.1} {:>8.1}ms {:>11} {:>11}",
                        p.info_total.as_secs_f64() * 1e3,
                        p.add_total.as_secs_f64() * 1e3,
                        p.add_p50.as_secs_f64() * 1e6,
                        p.add_p99.as_secs_f64() * 1e6,
                        p.list.as_secs_f64() * 1e3,
                        p.list_bytes as f64 / 1024.0,
                        p.del_total.as_secs_f64() * 1e3,
                        us(p.info_cpu),
                        us(p.add_cpu),
                    );
                    add_list.push((*name, label, p.add_total + p.list));
                }
                Err(e) => println!("{name:<10} {label:<11} failed: {e}"),
            }
        }
    }
    // The issue's figure: adding the ports one POST at a time and listing them, Go's time over
    // ours, per connection mode.
    for label in ["keep-alive", "per-request"] {
        let t = |who: &str| {
            add_list
                .iter()
                .find(|(n, l, _)| *n == who && *l == label)
                .map(|x| x.2.as_secs_f64())
        };
        if let (Some(go), Some(rs)) = (t("go-1.1.0"), t("rust")) {
            println!(
                "add {n} + list, {label}: go-1.1.0 {:.1} ms, rust {:.1} ms: {:.2}x faster",
                go * 1e3,
                rs * 1e3,
                go / rs
            );
        }
    }
}
