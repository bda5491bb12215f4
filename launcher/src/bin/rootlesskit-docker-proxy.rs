//! `rootlesskit-docker-proxy`: drop-in replacement for Docker's `docker-proxy` (Docker <= 27 runs
//! it inside the RootlessKit namespaces when `ROOTLESSKIT_STATE_DIR` is set). Deprecated upstream;
//! kept for compatibility. Flow (RootlessKit HEAD, spec §3.6):
//!
//! 1. `GET /v1/info`; no port driver (or `none`/`implicit`) -> exec the real `docker-proxy` with
//!    the same arguments.
//! 2. `tcp`/`udp` become `tcp4`/`tcp6` by the host IP's family; a proto the driver does not list
//!    -> warning, `0\n` on fd 3, exit 0 without listening (issue #250).
//! 3. childIP = `127.0.0.1` (`::1` for an IPv6 host IP), or the network driver's child IP when
//!    the port driver disallows loopback child IPs.
//! 4. `POST /v1/ports`, run the real `docker-proxy` on the child IP with fd 3 passed on, wait for
//!    SIGINT, kill it, `DELETE /v1/ports/<id>`.
//!
//! Errors: `1\n<error>` on fd 3 and `<date> <error>` on stderr, exit 1 (Go's `log.Fatal`).

use std::fs::File;
use std::io::Write;
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::Command;

use anyhow::{anyhow, Context, Result};
use launcher::api::client::Client;
use nix::sys::signal::{SigSet, SigmaskHow, Signal};

const REAL_PROXY: &str = "docker-proxy";

#[derive(Debug, Clone)]
struct Args {
    container_ip: String,
    container_port: i64,
    host_ip: String,
    host_port: i64,
    proto: String,
}

/// Go's `flag.PrintDefaults` for our flag set, after `Usage of <argv[0]>:`.
const USAGE: &str = "  -container-ip string
    \tcontainer ip
  -container-port int
    \tcontainer port (default -1)
  -host-ip string
    \thost ip
  -host-port int
    \thost port (default -1)
  -proto string
    \tproxy protocol (default \"tcp\")
";

/// `-h`/`-help` (Go's `flag.ErrHelp`).
const HELP: &str = "help requested";

/// Go `flag` parsing of docker-proxy's flags (`-flag value`, `-flag=value`, `--flag`).
fn parse_args(argv: &[String]) -> Result<Args, String> {
    let mut a = Args {
        container_ip: String::new(),
        container_port: -1,
        host_ip: String::new(),
        host_port: -1,
        proto: "tcp".into(),
    };
    let mut i = 0;
    while i < argv.len() {
        let s = &argv[i];
        if s.len() < 2 || !s.starts_with('-') {
            break;
        }
        if s == "--" {
            break;
        }
        let nv = s.trim_start_matches('-');
        let (name, val) = match nv.split_once('=') {
            Some((n, v)) => (n.to_string(), Some(v.to_string())),
            None => (nv.to_string(), None),
        };
        i += 1;
        if name == "h" || name == "help" {
            return Err(HELP.into());
        }
        if ![
            "container-ip",
            "container-port",
            "host-ip",
            "host-port",
            "proto",
        ]
        .contains(&name.as_str())
        {
            return Err(format!("flag provided but not defined: -{name}"));
        }
        let val = match val {
            Some(v) => v,
            None => {
                let v = argv
                    .get(i)
                    .ok_or_else(|| format!("flag needs an argument: -{name}"))?;
                i += 1;
                v.clone()
            }
        };
        let int = |v: &str| {
            v.parse::<i64>().map_err(|_| {
                format!(
                    "invalid value {} for flag -{name}: parse error",
                    forwarder::spec::go_quote(v)
                )
            })
        };
        match name.as_str() {
            "container-ip" => a.container_ip = val,
            "container-port" => a.container_port = int(&val)?,
            "host-ip" => a.host_ip = val,
            "host-port" => a.host_port = int(&val)?,
            "proto" => a.proto = val,
            _ => return Err(format!("flag provided but not defined: -{name}")),
        }
    }
    Ok(a)
}

fn is_ipv6(ip: &str) -> bool {
    matches!(forwarder::spec::go_parse_ip(ip), Some(std::net::IpAddr::V6(a)) if a.to_ipv4_mapped().is_none())
}

/// fd 3, the "signal parent" pipe, if it is open.
fn signal_parent() -> Option<File> {
    nix::fcntl::fcntl(3, nix::fcntl::FcntlArg::F_GETFD).ok()?;
    // SAFETY: fd 3 is open (checked above), was given to us by the caller for exactly this
    // purpose and nothing else in this process owns it.
    Some(File::from(unsafe { OwnedFd::from_raw_fd(3) }))
}

/// logrus's text format on a non-terminal: `time="2006-01-02T15:04:05Z" level=warning msg="..."`.
fn log_line(level: &str, msg: &str) {
    let (date, time) = utc_now();
    let now = format!("{}T{}Z", date.replace('/', "-"), time);
    eprintln!(
        "time=\"{now}\" level={level} msg={}",
        forwarder::spec::go_quote(msg)
    );
}

/// Runs `docker-proxy` with SIGINT unblocked, fd 3 inherited and SIGKILL on our death.
fn real_proxy(args: &[String]) -> Command {
    let mut cmd = Command::new(REAL_PROXY);
    cmd.args(args);
    // SAFETY: only async-signal-safe calls (sigprocmask, fcntl, prctl) run between fork and
    // exec; no allocation, no locks.
    unsafe {
        cmd.pre_exec(|| {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
            let fl = libc::fcntl(3, libc::F_GETFD);
            if fl >= 0 {
                libc::fcntl(3, libc::F_SETFD, fl & !libc::FD_CLOEXEC);
            }
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    cmd
}

fn xmain(a: Args, argv: &[String], fd3: &mut Option<File>) -> Result<()> {
    let state_dir = std::env::var("ROOTLESSKIT_STATE_DIR").unwrap_or_default();
    if state_dir.is_empty() {
        return Err(anyhow!("$ROOTLESSKIT_STATE_DIR needs to be set"));
    }
    let socket = std::path::Path::new(&state_dir).join("api.sock");
    let c = Client::new(&socket).context("error while connecting to RootlessKit API socket")?;
    let info = c.info().context(
        "failed to call info API, probably RootlessKit binary is too old (needs to be v0.14.0 or later)",
    )?;
    let pd = match &info.port_driver {
        Some(pd) if pd.driver != "none" && pd.driver != "implicit" => pd.clone(),
        _ => {
            // No port driver: the real docker-proxy listens in the namespace itself.
            let err = real_proxy(argv).exec();
            return Err(anyhow!("error while executing {REAL_PROXY}: {err}"));
        }
    };
    let mut api_proto = a.proto.clone();
    if !api_proto.ends_with('4') && !api_proto.ends_with('6') {
        api_proto.push(if is_ipv6(&a.host_ip) { '6' } else { '4' });
    }
    let protos = pd.protos.clone().unwrap_or_default();
    if !protos.contains(&api_proto) {
        // slirp4netns cannot listen on IPv6: warn and report success without listening.
        let hostport = if a.host_ip.contains(':') {
            format!("[{}]:{}", a.host_ip, a.host_port)
        } else {
            format!("{}:{}", a.host_ip, a.host_port)
        };
        log_line(
            "warning",
            &format!(
                "protocol {} is not supported by the RootlessKit port driver {}, ignoring request for {}",
                forwarder::spec::go_quote(&api_proto),
                forwarder::spec::go_quote(&pd.driver),
                forwarder::spec::go_quote(&hostport)
            ),
        );
        if let Some(f) = fd3.as_mut() {
            f.write_all(b"0\n")?;
        }
        return Ok(());
    }
    let mut child_ip = if is_ipv6(&a.host_ip) {
        "::1"
    } else {
        "127.0.0.1"
    }
    .to_string();
    if pd.disallow_loopback_child_ip {
        child_ip = info
            .network_driver
            .as_ref()
            .map(|n| n.child_ip.clone())
            .filter(|ip| !ip.is_empty())
            .ok_or_else(|| {
                anyhow!(
                    "port driver ({}) does not allow loopback child IP, but network driver has no non-loopback IP",
                    pd.driver
                )
            })?;
    }
    let spec = forwarder::PortSpec {
        proto: api_proto,
        parent_ip: a.host_ip.clone(),
        parent_port: a.host_port,
        child_port: a.host_port,
        child_ip: child_ip.clone(),
    };
    let st = c
        .add_port(&spec)
        .context("error while calling PortManager.AddPort()")?;
    let remove = || {
        if let Err(e) = c.remove_port(st.id) {
            log_line(
                "warning",
                &format!("error while calling PortManager.RemovePort(): {e}"),
            );
        }
    };

    // Block SIGINT before starting the real proxy so no interrupt is lost; the child unblocks.
    let mut set = SigSet::empty();
    set.add(Signal::SIGINT);
    if let Err(e) = set.thread_block() {
        remove();
        return Err(anyhow!("blocking SIGINT: {e}"));
    }
    let proxy_args: Vec<String> = vec![
        "-container-ip".into(),
        a.container_ip.clone(),
        "-container-port".into(),
        a.container_port.to_string(),
        "-host-ip".into(),
        child_ip,
        "-host-port".into(),
        a.host_port.to_string(),
        "-proto".into(),
        a.proto.clone(),
    ];
    let mut child = match real_proxy(&proxy_args).spawn() {
        Ok(c) => c,
        Err(e) => {
            remove();
            return Err(anyhow!("error while starting {REAL_PROXY}: {e}"));
        }
    };
    // The real proxy reports readiness on fd 3 itself; drop our copy.
    drop(fd3.take());
    let _ = set.wait();
    let _ = nix::sys::signal::pthread_sigmask(SigmaskHow::SIG_UNBLOCK, Some(&set), None);
    let killed = child.kill();
    let _ = child.wait();
    remove();
    killed.with_context(|| format!("error while killing {REAL_PROXY}"))?;
    Ok(())
}

fn main() {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    // Flag errors behave like Go's flag.ExitOnError: message and usage on stderr, exit 2
    // (0 for -h), nothing on fd 3.
    let a = match parse_args(&argv) {
        Ok(a) => a,
        Err(e) => {
            let argv0 = std::env::args().next().unwrap_or_default();
            if e == HELP {
                eprint!("Usage of {argv0}:\n{USAGE}");
                std::process::exit(0);
            }
            eprint!("{e}\nUsage of {argv0}:\n{USAGE}");
            std::process::exit(2);
        }
    };
    let mut fd3 = signal_parent();
    if let Err(e) = xmain(a, &argv, &mut fd3) {
        if let Some(f) = fd3.as_mut() {
            let _ = write!(f, "1\n{e:#}");
        }
        let (date, time) = utc_now();
        eprintln!("{date} {time} {e:#}");
        std::process::exit(1);
    }
}

/// (`2006/01/02`, `15:04:05`) in UTC (Go's `log` prefix; Go uses local time, UTC here).
fn utc_now() -> (String, String) {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let days = secs / 86400;
    let rem = secs % 86400;
    // Civil-from-days (Howard Hinnant), valid for dates after 1970.
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (
        format!("{y:04}/{m:02}/{d:02}"),
        format!("{:02}:{:02}:{:02}", rem / 3600, rem % 3600 / 60, rem % 60),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_proxy_flags() {
        let v = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let a = parse_args(&v(&[
            "-container-ip",
            "172.17.0.2",
            "-container-port",
            "80",
            "-host-ip",
            "::",
            "--host-port=8080",
            "-proto",
            "udp",
        ]))
        .unwrap();
        assert_eq!(
            (
                a.container_ip.as_str(),
                a.container_port,
                a.host_ip.as_str(),
                a.host_port,
                a.proto.as_str()
            ),
            ("172.17.0.2", 80, "::", 8080, "udp")
        );
        assert!(is_ipv6("::"));
        assert!(!is_ipv6("0.0.0.0"));
        assert!(!is_ipv6("::ffff:1.2.3.4"));
        assert_eq!(
            parse_args(&v(&["-bogus", "1"])).unwrap_err(),
            "flag provided but not defined: -bogus"
        );
        assert_eq!(
            parse_args(&v(&["-host-port", "x"])).unwrap_err(),
            "invalid value \"x\" for flag -host-port: parse error"
        );
    }
}
