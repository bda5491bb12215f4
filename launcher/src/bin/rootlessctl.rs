//! `rootlessctl`: RootlessKit API client, output byte-identical to RootlessKit's (urfave/cli v2
//! help and usage texts, Go `flag` parsing, tabwriter table, `json.Marshal(Indent)` output).

use std::io::Write;
use std::time::Duration;

use anyhow::{anyhow, Result};
use launcher::api::client::Client;
use launcher::api::gojson;
use launcher::api::Info;

const NAME_USAGE: &str = "rootlessctl - RootlessKit API client";

fn app_help() -> String {
    format!(
        "NAME:\n   {NAME_USAGE}\n\nUSAGE:\n   rootlessctl [global options] command [command options] [arguments...]\n\nVERSION:\n   {}\n\nCOMMANDS:\n   list-ports    List ports\n   add-ports     Add ports\n   remove-ports  Remove ports\n   info          Show info\n   help, h       Shows a list of commands or help for one command\n\nGLOBAL OPTIONS:\n   --debug         debug mode (default: false)\n   --socket value  Path to api.sock (under the \"rootlesskit --state-dir\" directory), defaults to $ROOTLESSKIT_STATE_DIR/api.sock\n   --help, -h      show help (default: false)\n   --version, -v   print the version (default: false)\n",
        launcher::VERSION
    )
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Cmd {
    ListPorts,
    AddPorts,
    RemovePorts,
    Info,
    /// rootlesskit-rs extension; not listed in the app help, which stays byte-identical to
    /// RootlessKit's.
    Stats,
    Help,
}

impl Cmd {
    fn lookup(name: &str) -> Option<Cmd> {
        Some(match name {
            "list-ports" => Cmd::ListPorts,
            "add-ports" => Cmd::AddPorts,
            "remove-ports" => Cmd::RemovePorts,
            "info" => Cmd::Info,
            "stats" => Cmd::Stats,
            "help" | "h" => Cmd::Help,
            _ => return None,
        })
    }
    fn has_json(self) -> bool {
        matches!(
            self,
            Cmd::ListPorts | Cmd::AddPorts | Cmd::Info | Cmd::Stats
        )
    }
    /// Help of a command; `with_help_flag` is true for `cmd --help` (urfave lists its own
    /// `--help` flag then) and false for `help cmd`.
    fn help(self, with_help_flag: bool) -> String {
        let json = if with_help_flag {
            "   --json      Prints as JSON (default: false)\n   --help, -h  show help (default: false)\n   \n"
        } else {
            "   --json  Prints as JSON (default: false)\n   \n"
        };
        let simple = |name: &str, usage: &str, args: &str| {
            format!(
                "NAME:\n   rootlessctl {name} - {usage}\n\nUSAGE:\n   rootlessctl {name} [command options] {args}\n\nOPTIONS:\n{json}"
            )
        };
        match self {
            Cmd::ListPorts => simple("list-ports", "List ports", "[flags]"),
            Cmd::Info => simple("info", "Show info", "[flags]"),
            Cmd::Stats => format!(
                "NAME:\n   rootlessctl stats - Show traffic statistics of ports (rootlesskit-rs extension)\n\nUSAGE:\n   rootlessctl stats [command options] [flags] [ID...]\n\nDESCRIPTION:\n   Per published port (all ports, or the given IDs): active and total TCP connections or UDP flows, bytes in (host -> namespace) and out, errors. Needs the builtin port driver.\n\nOPTIONS:\n   --json              Prints as JSON, one object per port and line (default: false)\n   --watch[=INTERVAL]  Redraw every INTERVAL (default 1s; e.g. 500ms, 2s, 1.5) with rates per second, until interrupted\n{}",
                if with_help_flag {
                    "   --help, -h          show help (default: false)\n   \n"
                } else {
                    "   \n"
                }
            ),
            Cmd::AddPorts => format!(
                "NAME:\n   rootlessctl add-ports - Add ports\n\nUSAGE:\n   rootlessctl add-ports [command options] [flags] PARENTIP:PARENTPORT:CHILDPORT/PROTO [PARENTIP:PARENTPORT:CHILDPORT/PROTO...]\n\nDESCRIPTION:\n   Add exposed ports. The port spec is similar to `docker run -p`. e.g. \"127.0.0.1:8080:80/tcp\".\n\nOPTIONS:\n{json}"
            ),
            Cmd::RemovePorts if with_help_flag => "NAME:\n   rootlessctl remove-ports - Remove ports\n\nUSAGE:\n   rootlessctl remove-ports [command options] [flags] ID [ID...]\n\nOPTIONS:\n   --help, -h  show help (default: false)\n   \n".into(),
            Cmd::RemovePorts => "NAME:\n   rootlessctl remove-ports - Remove ports\n\nUSAGE:\n   rootlessctl remove-ports [flags] ID [ID...]\n".into(),
            Cmd::Help => "NAME:\n    - Shows a list of commands or help for one command\n\nUSAGE:\n    [command options] [command]\n\nOPTIONS:\n   --help, -h  show help (default: false)\n   \n".into(),
        }
    }
}

/// Outcome of Go's `flag.FlagSet.Parse` for our small flag sets.
#[derive(Default)]
struct Flags {
    debug: bool,
    socket: Option<String>,
    help: bool,
    version: bool,
    json: bool,
    /// `stats --watch[=INTERVAL]`.
    watch: Option<Duration>,
    rest: Vec<String>,
}

fn parse_bool(v: &str, name: &str) -> Result<bool, String> {
    match v {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(false),
        _ => Err(format!(
            "invalid boolean value {} for -{name}: parse error",
            forwarder::spec::go_quote(v)
        )),
    }
}

/// Go's `flag` parsing: `-f`, `--f`, `-f=v`, `-f v` (non-bool), stops at the first non-flag or
/// after `--`. `global` selects the app's flag set, else a command's (`--json` if `json`,
/// `--watch[=INTERVAL]` if `watch`).
fn parse_flags(args: &[String], global: bool, json: bool, watch: bool) -> Result<Flags, String> {
    let mut f = Flags::default();
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        if a.len() < 2 || !a.starts_with('-') {
            break;
        }
        if a == "--" {
            i += 1;
            break;
        }
        let name_val = a
            .strip_prefix("--")
            .unwrap_or_else(|| a.strip_prefix('-').unwrap_or(a));
        if name_val.is_empty() || name_val.starts_with('-') || name_val.starts_with('=') {
            return Err(format!("bad flag syntax: {a}"));
        }
        let (name, value) = match name_val.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (name_val, None),
        };
        i += 1;
        let bool_flag = |v: Option<&str>| v.map_or(Ok(true), |v| parse_bool(v, name));
        match name {
            "help" | "h" => f.help = bool_flag(value)?,
            "debug" if global => f.debug = bool_flag(value)?,
            "version" | "v" if global => f.version = bool_flag(value)?,
            "json" if json => f.json = bool_flag(value)?,
            "watch" if watch => {
                f.watch = Some(match value {
                    None => Duration::from_secs(1),
                    Some(v) => parse_interval(v).map_err(|e| {
                        format!(
                            "invalid value {} for flag -watch: {e}",
                            forwarder::spec::go_quote(v)
                        )
                    })?,
                })
            }
            "socket" if global => {
                let v = match value {
                    Some(v) => v.to_string(),
                    None => {
                        let v = args
                            .get(i)
                            .ok_or_else(|| format!("flag needs an argument: -{name}"))?;
                        i += 1;
                        v.clone()
                    }
                };
                f.socket = Some(v);
            }
            _ => return Err(format!("flag provided but not defined: -{name}")),
        }
    }
    f.rest = args[i..].to_vec();
    Ok(f)
}

enum Exit {
    Ok,
    Code(i32),
}

/// `--debug` (set once in `real_main`).
static DEBUG: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

fn debug_on() -> bool {
    DEBUG.load(std::sync::atomic::Ordering::Relaxed)
}

/// One debug line on stderr in the format of logrus' text formatter (what RootlessKit's
/// rootlessctl, a logrus program, writes to a non-terminal):
/// `time="2026-11-29T13:30:18Z" level=debug msg="GET /v1/info: 200 OK"`.
fn debug_log(msg: &str) {
    if debug_on() {
        eprintln!(
            "time=\"{}\" level=debug msg={}",
            rfc3339_now(),
            forwarder::spec::go_quote(msg)
        );
    }
}

/// Local time like Go's `time.RFC3339`: `2026-11-29T14:30:18+01:00`, `...Z` in UTC.
fn rfc3339_now() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs()) as libc::time_t;
    // SAFETY: `tm` is plain old data that `localtime_r` fills; both pointers are valid for
    // the call.
    let tm = unsafe {
        let mut tm: libc::tm = std::mem::zeroed();
        if libc::localtime_r(&now, &mut tm).is_null() {
            return String::new();
        }
        tm
    };
    let off = tm.tm_gmtoff;
    let zone = if off == 0 {
        "Z".to_string()
    } else {
        let a = off.abs();
        format!(
            "{}{:02}:{:02}",
            if off < 0 { '-' } else { '+' },
            a / 3600,
            a % 3600 / 60
        )
    };
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}{zone}",
        tm.tm_year + 1900,
        tm.tm_mon + 1,
        tm.tm_mday,
        tm.tm_hour,
        tm.tm_min,
        tm.tm_sec
    )
}

/// `--debug`: each API call with its status (or error).
fn trace_request(method: &str, path: &str, outcome: Result<(u16, &str), &str>) {
    match outcome {
        Ok((status, reason)) => debug_log(&format!("{method} {path}: {status} {reason}")),
        Err(e) => debug_log(&format!("{method} {path}: {e}")),
    }
}

fn client(socket: &Option<String>) -> Result<Client> {
    let path = match socket {
        Some(s) if !s.is_empty() => s.clone(),
        _ => match std::env::var("ROOTLESSKIT_STATE_DIR") {
            Ok(d) if !d.is_empty() => format!("{d}/api.sock"),
            _ => {
                return Err(anyhow!(
                    "please specify --socket or set $ROOTLESSKIT_STATE_DIR"
                ))
            }
        },
    };
    debug_log(&format!("socket: {path}"));
    Ok(Client::new(path)?.with_trace(trace_request))
}

/// Go's tabwriter with minwidth 4, tabwidth 8, padding 4, padchar ' ', flags 0, for lines
/// whose cells are all tab-terminated.
fn tabwrite(rows: &[Vec<String>]) -> String {
    let ncols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..ncols)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count() + 4)
                .max()
                .unwrap_or(0)
                .max(4)
        })
        .collect();
    let mut out = String::new();
    for r in rows {
        for (c, cell) in r.iter().enumerate() {
            out.push_str(cell);
            for _ in cell.chars().count()..widths[c] {
                out.push(' ');
            }
        }
        out.push('\n');
    }
    out
}

fn print_info(info: &Info, json: bool, out: &mut String) {
    if json {
        out.push_str(&gojson::marshal_indent(info));
        out.push('\n');
        return;
    }
    out.push_str(&format!("- REST API version: {}\n", info.api_version));
    out.push_str(&format!("- Implementation version: {}\n", info.version));
    out.push_str(&format!("- State Directory: {}\n", info.state_dir));
    out.push_str(&format!("- Child PID: {}\n", info.child_pid));
    if let Some(n) = &info.network_driver {
        out.push_str(&format!("- Network Driver: {}\n", n.driver));
        out.push_str(&format!("  - DNS: [{}]\n", n.dns.join(" ")));
        if !n.child_ip.is_empty() {
            out.push_str(&format!("  - IP: {}\n", n.child_ip));
        }
    }
    if let Some(p) = &info.port_driver {
        out.push_str(&format!("- Port Driver: {}\n", p.driver));
        out.push_str(&format!(
            "  - Supported protocols: [{}]\n",
            p.protos.as_deref().unwrap_or_default().join(" ")
        ));
    }
}

/// Runs a command; output goes to `out` as it is produced (printed even when a later step
/// fails, like Go's per-line prints).
fn run_cmd(cmd: Cmd, g: &Flags, f: &Flags, out: &mut dyn Write) -> Result<()> {
    match cmd {
        Cmd::Info => {
            let info = client(&g.socket)?.info()?;
            let mut s = String::new();
            print_info(&info, f.json, &mut s);
            out.write_all(s.as_bytes())?;
        }
        Cmd::ListPorts => {
            let ports = client(&g.socket)?.list_ports()?;
            let mut s = String::new();
            if f.json {
                for p in &ports {
                    s.push_str(&gojson::marshal(p));
                    s.push('\n');
                }
            } else {
                let mut rows = vec![[
                    "ID",
                    "PROTO",
                    "PARENTIP",
                    "PARENTPORT",
                    "CHILDIP",
                    "CHILDPORT",
                ]
                .iter()
                .map(|s| s.to_string())
                .collect::<Vec<_>>()];
                for p in &ports {
                    rows.push(vec![
                        p.id.to_string(),
                        p.spec.proto.clone(),
                        p.spec.parent_ip.clone(),
                        p.spec.parent_port.to_string(),
                        p.spec.child_ip.clone(),
                        p.spec.child_port.to_string(),
                    ]);
                }
                s = tabwrite(&rows);
            }
            out.write_all(s.as_bytes())?;
        }
        Cmd::AddPorts => {
            if f.rest.is_empty() {
                return Err(anyhow!("no port specified"));
            }
            let specs = f
                .rest
                .iter()
                .map(|s| forwarder::PortSpec::parse(s))
                .collect::<Result<Vec<_>, _>>()?;
            let c = client(&g.socket)?;
            for sp in &specs {
                let st = c.add_port(sp)?;
                if f.json {
                    writeln!(out, "{}", gojson::marshal(&st))?;
                } else {
                    writeln!(out, "{}", st.id)?;
                }
            }
        }
        Cmd::RemovePorts => {
            if f.rest.is_empty() {
                return Err(anyhow!("no ID specified"));
            }
            let ids = f
                .rest
                .iter()
                .map(|s| forwarder::spec::go_atoi(s))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| anyhow!(e))?;
            let c = client(&g.socket)?;
            for id in ids {
                c.remove_port(id)?;
                writeln!(out, "{id}")?;
            }
        }
        Cmd::Stats => {
            let ids = f
                .rest
                .iter()
                .map(|s| forwarder::spec::go_atoi(s))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| anyhow!(e))?;
            let c = client(&g.socket)?;
            match f.watch {
                None => {
                    let rows = stats::collect(&c, &ids)?;
                    out.write_all(stats::render(&rows, None, f.json).as_bytes())?;
                }
                Some(interval) => {
                    use std::io::IsTerminal;
                    let tty = std::io::stdout().is_terminal();
                    stats::watch(&c, &ids, interval, f.json, tty, out)?
                }
            }
        }
        Cmd::Help => {}
    }
    Ok(())
}

/// `--watch` interval: a Go duration (`500ms`, `2s`, `1m`, `1.5s`) or bare seconds (`2`, `0.5`).
fn parse_interval(v: &str) -> Result<Duration, String> {
    let (num, unit) = match v.find(|c: char| !(c.is_ascii_digit() || c == '.')) {
        Some(i) => v.split_at(i),
        None => (v, "s"),
    };
    let n: f64 = num.parse().map_err(|_| "not a duration".to_string())?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        _ => return Err(format!("unknown unit {unit:?}")),
    };
    if !(0.01..=86400.0).contains(&secs) {
        return Err("interval must be between 10ms and 24h".into());
    }
    Ok(Duration::from_secs_f64(secs))
}

/// `rootlessctl stats`: per-port counters from the `GET /v1/ports/{id}/stats` extension.
mod stats {
    use std::collections::HashMap;
    use std::io::Write;
    use std::time::{Duration, Instant};

    use anyhow::Result;
    use forwarder::PortSpec;
    use launcher::api::client::{Client, ClientError};
    use launcher::port::PortStats;

    /// One port: its spec (None when it vanished between the list and the stats call) and
    /// counters.
    pub struct Row {
        pub spec: Option<PortSpec>,
        pub stats: PortStats,
    }

    /// Counters of `ids` (every published port when empty). With no explicit IDs, a port
    /// removed between the listing and its stats request is skipped.
    pub fn collect(c: &Client, ids: &[i64]) -> Result<Vec<Row>, ClientError> {
        let ports = c.list_ports()?;
        let explicit = !ids.is_empty();
        let ids: Vec<i64> = if explicit {
            ids.to_vec()
        } else {
            ports.iter().map(|p| p.id).collect()
        };
        let mut rows = Vec::new();
        for id in ids {
            match c.port_stats(id) {
                Ok(stats) => rows.push(Row {
                    spec: ports.iter().find(|p| p.id == id).map(|p| p.spec.clone()),
                    stats,
                }),
                Err(ClientError::Api(m)) if !explicit && m.starts_with("unknown id") => {}
                Err(e) => return Err(e),
            }
        }
        Ok(rows)
    }

    /// Rates per second between two samples.
    #[derive(Clone, Copy, Default)]
    pub struct Rates {
        pub conns: f64,
        pub bytes_in: f64,
        pub bytes_out: f64,
    }

    /// `1023 B`, `1.0 KiB`, `12.3 MiB` (IEC units).
    pub fn human_bytes(n: f64) -> String {
        const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
        if n < 1024.0 {
            return format!("{n:.0} B");
        }
        let mut v = n / 1024.0;
        let mut i = 0;
        while v >= 1024.0 && i + 1 < UNITS.len() {
            v /= 1024.0;
            i += 1;
        }
        format!("{v:.1} {}", UNITS[i])
    }

    fn addr(ip: &str, port: i64, empty_ip: &str) -> String {
        match ip {
            "" => format!("{empty_ip}:{port}"),
            ip if ip.contains(':') => format!("[{ip}]:{port}"),
            ip => format!("{ip}:{port}"),
        }
    }

    #[derive(serde::Serialize)]
    struct JsonLine<'a> {
        #[serde(flatten)]
        stats: &'a PortStats,
        #[serde(rename = "connsPerSec", skip_serializing_if = "Option::is_none")]
        conns: Option<f64>,
        #[serde(rename = "bytesInPerSec", skip_serializing_if = "Option::is_none")]
        bytes_in: Option<f64>,
        #[serde(rename = "bytesOutPerSec", skip_serializing_if = "Option::is_none")]
        bytes_out: Option<f64>,
    }

    /// The table (or JSON lines). `rates`: Some in watch mode (one entry per row; None for a
    /// row without a previous sample).
    pub fn render(rows: &[Row], rates: Option<&[Option<Rates>]>, json: bool) -> String {
        let mut out = String::new();
        if json {
            for (i, r) in rows.iter().enumerate() {
                let rt = rates.and_then(|v| v.get(i).copied().flatten());
                let line = JsonLine {
                    stats: &r.stats,
                    conns: rt.map(|r| round2(r.conns)),
                    bytes_in: rt.map(|r| round2(r.bytes_in)),
                    bytes_out: rt.map(|r| round2(r.bytes_out)),
                };
                out.push_str(&serde_json::to_string(&line).unwrap_or_default());
                out.push('\n');
            }
            return out;
        }
        let mut header = vec!["ID", "PROTO", "PARENT", "CHILD", "ACTIVE", "TOTAL"];
        if rates.is_some() {
            header.push("NEW/s");
        }
        header.extend(["IN", "OUT"]);
        if rates.is_some() {
            header.extend(["IN/s", "OUT/s"]);
        }
        header.push("ERRORS");
        let mut table = vec![header.iter().map(|s| s.to_string()).collect::<Vec<_>>()];
        for (i, r) in rows.iter().enumerate() {
            let s = &r.stats;
            let (proto, parent, child) = match &r.spec {
                Some(sp) => (
                    sp.proto.clone(),
                    addr(&sp.parent_ip, sp.parent_port, "*"),
                    addr(&sp.child_ip, sp.child_port, ""),
                ),
                None => ("-".into(), "-".into(), "-".into()),
            };
            let rt = rates.map(|v| v.get(i).copied().flatten().unwrap_or_default());
            let mut row = vec![
                s.id.to_string(),
                proto,
                parent,
                child,
                s.active.to_string(),
                s.total.to_string(),
            ];
            if let Some(rt) = rt {
                row.push(format!("{:.1}", rt.conns));
            }
            row.push(human_bytes(s.bytes_in as f64));
            row.push(human_bytes(s.bytes_out as f64));
            if let Some(rt) = rt {
                row.push(format!("{}/s", human_bytes(rt.bytes_in)));
                row.push(format!("{}/s", human_bytes(rt.bytes_out)));
            }
            row.push(s.errors.to_string());
            table.push(row);
        }
        super::tabwrite(&table)
    }

    fn round2(v: f64) -> f64 {
        (v * 100.0).round() / 100.0
    }

    fn rate(cur: u64, prev: u64, secs: f64) -> f64 {
        cur.saturating_sub(prev) as f64 / secs
    }

    /// Signals that end `--watch` cleanly (status 0): Ctrl-C, `kill`, a closed terminal.
    const STOP_SIGNALS: [nix::sys::signal::Signal; 3] = [
        nix::sys::signal::Signal::SIGINT,
        nix::sys::signal::Signal::SIGTERM,
        nix::sys::signal::Signal::SIGHUP,
    ];

    /// Waits up to `d` for one of the (blocked) stop signals; true if one came.
    fn stop_signal_within(set: &nix::sys::signal::SigSet, d: Duration) -> bool {
        let deadline = Instant::now() + d;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let ts = libc::timespec {
                tv_sec: left.as_secs() as libc::time_t,
                tv_nsec: left.subsec_nanos() as libc::c_long,
            };
            // SAFETY: `set` is a valid sigset_t, `ts` lives across the call, a null siginfo
            // pointer is allowed.
            let r = unsafe { libc::sigtimedwait(set.as_ref(), std::ptr::null_mut(), &ts) };
            if r > 0 {
                return true;
            }
            // EAGAIN: timed out; EINTR (another handled signal): wait out the rest.
            if left.is_zero()
                || std::io::Error::last_os_error().raw_os_error() == Some(libc::EAGAIN)
            {
                return false;
            }
        }
    }

    /// `stats --watch`: a batch every `interval` until SIGINT, SIGTERM or SIGHUP, which end it
    /// with status 0 between two batches (the signals are blocked and taken only while
    /// waiting, so a batch is never cut: no partial line). Output per batch:
    /// * `--json`: one JSON object per port and line, rates from the second batch on;
    /// * table on a terminal: clear the screen, a title line, the table;
    /// * table to a pipe or file: the table followed by an empty line, no escape codes.
    ///
    /// When the rootlesskit being watched goes away (socket removed, connection refused or
    /// cut), the error says so and the status is 1.
    pub fn watch(
        c: &Client,
        ids: &[i64],
        interval: Duration,
        json: bool,
        tty: bool,
        out: &mut dyn Write,
    ) -> Result<()> {
        let mut set = nix::sys::signal::SigSet::empty();
        for sig in STOP_SIGNALS {
            set.add(sig);
        }
        set.thread_block()?;
        let mut prev: Option<(Instant, HashMap<i64, PortStats>)> = None;
        loop {
            let rows = match collect(c, ids) {
                Ok(r) => r,
                Err(e @ ClientError::Io(_)) if prev.is_some() => {
                    return Err(anyhow::anyhow!(
                        "rootlesskit stopped answering on {} (did it exit?): {e}",
                        c.socket().display()
                    ))
                }
                Err(e) => return Err(e.into()),
            };
            let now = Instant::now();
            let rates: Vec<Option<Rates>> = rows
                .iter()
                .map(|r| {
                    let (t, m) = prev.as_ref()?;
                    let p = m.get(&r.stats.id)?;
                    let secs = now.duration_since(*t).as_secs_f64().max(1e-3);
                    Some(Rates {
                        conns: rate(r.stats.total, p.total, secs),
                        bytes_in: rate(r.stats.bytes_in, p.bytes_in, secs),
                        bytes_out: rate(r.stats.bytes_out, p.bytes_out, secs),
                    })
                })
                .collect();
            let body = render(&rows, Some(&rates), json);
            let batch = if json {
                body
            } else if tty {
                // Cursor home, clear the screen, then a title and the table.
                format!(
                    "\x1b[H\x1b[2JEvery {:?}: rootlessctl stats (Ctrl-C to quit)\n\n{body}",
                    interval
                )
            } else {
                format!("{body}\n")
            };
            // One write per batch.
            out.write_all(batch.as_bytes())?;
            out.flush()?;
            prev = Some((now, rows.iter().map(|r| (r.stats.id, r.stats)).collect()));
            if stop_signal_within(&set, interval) {
                return Ok(());
            }
        }
    }
}

fn main() {
    // Like a Go program, die quietly of SIGPIPE when stdout goes away (`| head`) instead of
    // reporting EPIPE as an error (Rust ignores SIGPIPE by default).
    // SAFETY: restoring the default disposition of SIGPIPE before any thread exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    let code = match real_main(&args) {
        Exit::Ok => 0,
        Exit::Code(c) => c,
    };
    let _ = std::io::stdout().flush();
    std::process::exit(code);
}

fn real_main(args: &[String]) -> Exit {
    let mut stdout = std::io::stdout().lock();
    let usage_err = |out: &mut dyn Write, sep: &str, e: &str, help: &str| {
        let _ = write!(out, "Incorrect Usage{sep} {e}\n\n{help}");
        eprintln!("error: {e}");
        Exit::Code(1)
    };
    let g = match parse_flags(args, true, false, false) {
        Ok(g) => g,
        Err(e) => return usage_err(&mut stdout, ".", &e, &app_help()),
    };
    DEBUG.store(g.debug, std::sync::atomic::Ordering::Relaxed);
    if g.help {
        let _ = stdout.write_all(app_help().as_bytes());
        return Exit::Ok;
    }
    if g.version {
        let _ = writeln!(stdout, "rootlessctl version {}", launcher::VERSION);
        return Exit::Ok;
    }
    let Some(name) = g.rest.first() else {
        let _ = stdout.write_all(app_help().as_bytes());
        return Exit::Ok;
    };
    let Some(cmd) = Cmd::lookup(name) else {
        eprintln!("No help topic for '{name}'");
        return Exit::Code(3);
    };
    let f = match parse_flags(&g.rest[1..], false, cmd.has_json(), cmd == Cmd::Stats) {
        Ok(f) => f,
        Err(e) => return usage_err(&mut stdout, ":", &e, &cmd.help(true)),
    };
    if f.help {
        let _ = stdout.write_all(cmd.help(true).as_bytes());
        return Exit::Ok;
    }
    if cmd == Cmd::Help {
        let text = match f.rest.first() {
            None => app_help(),
            Some(t) => match Cmd::lookup(t) {
                Some(c) => c.help(false),
                None => {
                    eprintln!("No help topic for '{t}'");
                    return Exit::Code(3);
                }
            },
        };
        let _ = stdout.write_all(text.as_bytes());
        return Exit::Ok;
    }
    match run_cmd(cmd, &g, &f, &mut stdout) {
        Ok(()) => Exit::Ok,
        Err(e) => {
            let _ = stdout.flush();
            eprintln!("error: {e}");
            Exit::Code(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tabwriter_layout() {
        let rows: Vec<Vec<String>> = [
            vec![
                "ID",
                "PROTO",
                "PARENTIP",
                "PARENTPORT",
                "CHILDIP",
                "CHILDPORT",
            ],
            vec!["3", "tcp", "", "18003", "", "2"],
            vec!["4", "tcp", "127.0.0.1", "18123", "", "80"],
        ]
        .iter()
        .map(|r| r.iter().map(|s| s.to_string()).collect())
        .collect();
        // Observed from rootlessctl 1.1.0.
        assert_eq!(
            tabwrite(&rows),
            "ID    PROTO    PARENTIP     PARENTPORT    CHILDIP    CHILDPORT    \n\
             3     tcp                   18003                    2            \n\
             4     tcp      127.0.0.1    18123                    80           \n"
        );
    }

    #[test]
    fn go_flag_parsing() {
        let a = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let f = parse_flags(
            &a(&["-socket", "/x", "--debug", "list-ports", "--json"]),
            true,
            false,
            false,
        )
        .unwrap();
        assert_eq!(f.socket.as_deref(), Some("/x"));
        assert!(f.debug);
        assert_eq!(f.rest, a(&["list-ports", "--json"]));
        assert_eq!(
            parse_flags(&a(&["-x"]), true, false, false).err().unwrap(),
            "flag provided but not defined: -x"
        );
        assert_eq!(
            parse_flags(&a(&["--socket"]), true, false, false)
                .err()
                .unwrap(),
            "flag needs an argument: -socket"
        );
        assert_eq!(
            parse_flags(&a(&["--json=maybe"]), false, true, false)
                .err()
                .unwrap(),
            "invalid boolean value \"maybe\" for -json: parse error"
        );
        let f = parse_flags(&a(&["--json=false", "--", "-5"]), false, true, false).unwrap();
        assert!(!f.json);
        assert_eq!(f.rest, a(&["-5"]));
    }

    #[test]
    fn stats_units_and_intervals() {
        use stats::human_bytes;
        assert_eq!(human_bytes(0.0), "0 B");
        assert_eq!(human_bytes(1023.0), "1023 B");
        assert_eq!(human_bytes(1024.0), "1.0 KiB");
        assert_eq!(human_bytes(12.3 * 1024.0 * 1024.0), "12.3 MiB");
        assert_eq!(human_bytes(5.0 * (1u64 << 40) as f64), "5.0 TiB");
        assert_eq!(parse_interval("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_interval("2s").unwrap(), Duration::from_secs(2));
        assert_eq!(parse_interval("1.5").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_interval("1m").unwrap(), Duration::from_secs(60));
        assert!(parse_interval("0").is_err());
        assert!(parse_interval("2h").is_err());
        assert!(parse_interval("x").is_err());
        let a = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let f = parse_flags(&a(&["--watch", "--json", "3"]), false, true, true).unwrap();
        assert_eq!(f.watch, Some(Duration::from_secs(1)));
        assert_eq!(f.rest, a(&["3"]));
        let f = parse_flags(&a(&["--watch=250ms"]), false, true, true).unwrap();
        assert_eq!(f.watch, Some(Duration::from_millis(250)));
        assert_eq!(
            parse_flags(&a(&["--watch"]), false, true, false)
                .err()
                .unwrap(),
            "flag provided but not defined: -watch"
        );
    }

    #[test]
    fn stats_table_and_json() {
        let rows = vec![
            stats::Row {
                spec: Some(forwarder::PortSpec::parse("127.0.0.1:8080:80/tcp").unwrap()),
                stats: launcher::port::PortStats {
                    id: 1,
                    active: 2,
                    total: 17,
                    bytes_in: 10240,
                    bytes_out: 12_897_485,
                    errors: 0,
                },
            },
            stats::Row {
                spec: Some(forwarder::PortSpec::parse(":5353:[::1]:53/udp6").unwrap()),
                stats: launcher::port::PortStats {
                    id: 12,
                    ..Default::default()
                },
            },
        ];
        assert_eq!(
            stats::render(&rows, None, false),
            "ID    PROTO    PARENT            CHILD       ACTIVE    TOTAL    IN          OUT         ERRORS    \n\
             1     tcp      127.0.0.1:8080    :80         2         17       10.0 KiB    12.3 MiB    0         \n\
             12    udp6     *:5353            [::1]:53    0         0        0 B         0 B         0         \n"
        );
        assert_eq!(
            stats::render(&rows[..1], None, true),
            "{\"id\":1,\"active\":2,\"total\":17,\"bytesIn\":10240,\"bytesOut\":12897485,\"errors\":0}\n"
        );
        let rates = [Some(stats::Rates {
            conns: 1.0,
            bytes_in: 2048.0,
            bytes_out: 10.0,
        })];
        let t = stats::render(&rows[..1], Some(&rates), false);
        assert!(t.starts_with("ID    PROTO    PARENT            CHILD    ACTIVE    TOTAL    NEW/s    IN          OUT         IN/s         OUT/s     ERRORS"), "{t}");
        assert!(t.contains("2.0 KiB/s"), "{t}");
        assert!(stats::render(&rows[..1], Some(&rates), true)
            .contains(",\"connsPerSec\":1.0,\"bytesInPerSec\":2048.0,\"bytesOutPerSec\":10.0}"));
    }
}
