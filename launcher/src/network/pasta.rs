//! `--net=pasta` (experimental): pasta from the passt project connects the namespace and
//! configures the interface itself (`--config-net`), so the child does not touch the device.
//!
//! RootlessKit runs pasta in the background mode and waits for the foreground process to exit.
//! Debian 12's pasta (2023_03_09) then lives on after the namespace is gone, and a daemonised
//! process loses `PR_SET_PDEATHSIG`. So when pasta knows `--pid FILE` we run it with
//! `--foreground --pid $STATE/.pasta.pid`: it stays our child (death signal, killed on cleanup)
//! and writing the PID file is its "ready" signal. Older builds without `--pid` are run the
//! RootlessKit way and found for cleanup by scanning /proc for pasta/passt processes in the
//! child's network namespace.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::helper::{describe_exit, Helper, Spawn};
use super::{
    cidr_config, driver_info, look_path, Cidr, NetError, NetworkConfig, NetworkDriver,
    NetworkDriverInfo, SetupContext,
};
use crate::cli::{Options, PortDriverKind};

const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// What the installed pasta supports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Features {
    /// `--host-lo-to-ns-lo` (passt >= 2024_10_30).
    pub host_lo_to_ns_lo: bool,
    /// `--pid FILE` and `--foreground`.
    pub pid_file: bool,
}

/// The two feature probes (`pasta --host-lo-to-ns-lo --version` and `pasta --help`), started
/// together before the clone and collected at setup, so they overlap each other, the clone and
/// the id maps instead of running one after the other in front of them.
pub struct FeatureProbe {
    accepts_lo: Option<std::process::Child>,
    help: Option<std::process::Child>,
}

impl FeatureProbe {
    pub fn spawn(binary: &Path) -> Self {
        let accepts_lo = Command::new(binary)
            .args(["--host-lo-to-ns-lo", "--version"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok();
        let help = Command::new(binary)
            .arg("--help")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .ok();
        FeatureProbe { accepts_lo, help }
    }

    /// Wait for both probes; a probe that could not run means "not supported".
    pub fn finish(self) -> Features {
        let host_lo_to_ns_lo = self
            .accepts_lo
            .and_then(|mut c| c.wait().ok())
            .is_some_and(|s| s.success());
        let help = self
            .help
            .and_then(|c| c.wait_with_output().ok())
            .map(|o| {
                let mut s = String::from_utf8_lossy(&o.stdout).into_owned();
                s.push_str(&String::from_utf8_lossy(&o.stderr));
                s
            })
            .unwrap_or_default();
        Features {
            host_lo_to_ns_lo,
            pid_file: help.contains("--pid") && help.contains("--foreground"),
        }
    }
}

/// Everything that determines the argv.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Args {
    pub ifname: String,
    pub mtu: u32,
    pub cidr: Cidr,
    pub disable_host_loopback: bool,
    pub ipv6: bool,
    pub implicit_ports: bool,
    pub host_lo_to_ns_lo: bool,
    /// `--foreground --pid FILE` (our addition, see the module docs).
    pub pid_file: Option<PathBuf>,
}

/// The argv after the program name (spec §5).
pub fn build_args(
    a: &Args,
    child_pid: i32,
    detached_netns: Option<&Path>,
) -> Result<Vec<String>, NetError> {
    let mut v = vec![
        "--stderr".to_string(),
        format!("--ns-ifname={}", a.ifname),
        format!("--mtu={}", a.mtu),
        "--config-net".into(),
        format!("--address={}", a.cidr.nth(100)?),
        format!("--netmask={}", a.cidr.prefix),
        format!("--gateway={}", a.cidr.nth(2)?),
        format!("--dns-forward={}", a.cidr.nth(3)?),
    ];
    if a.disable_host_loopback {
        v.push("--no-map-gw".into());
        // pasta forwards namespace connections to ports bound on the host's loopback by
        // default (`-T auto -U auto`, spliced); that is exactly what this flag forbids
        // (RootlessKit PR #612 blocks the splice path too).
        v.push("--tcp-ns=none".into());
        v.push("--udp-ns=none".into());
    }
    if !a.ipv6 {
        v.push("--ipv4-only".into());
    }
    let ports = if a.implicit_ports { "auto" } else { "none" };
    v.push(format!("--tcp-ports={ports}"));
    v.push(format!("--udp-ports={ports}"));
    if a.host_lo_to_ns_lo {
        v.push("--host-lo-to-ns-lo".into());
    }
    if let Some(p) = &a.pid_file {
        v.push("--foreground".into());
        v.push("--pid".into());
        v.push(p.display().to_string());
    }
    match detached_netns {
        None => v.push(child_pid.to_string()),
        Some(p) => {
            v.push(format!("--userns=/proc/{child_pid}/ns/user"));
            v.push(format!("--netns={}", p.display()));
        }
    }
    Ok(v)
}

pub(crate) struct Pasta {
    binary: PathBuf,
    args: Args,
    /// In flight until setup, then the result.
    probe: Option<FeatureProbe>,
    features: Features,
    helper: Option<Helper>,
    /// Daemonised pasta found by the /proc scan (no `--pid` support).
    daemon_pid: Option<i32>,
    config: Option<NetworkConfig>,
}

impl Pasta {
    pub(crate) fn new(opts: &Options, cidr: Cidr, ifname: String) -> Result<Self, NetError> {
        let binary = look_path(&opts.pasta_binary)?;
        let probe = FeatureProbe::spawn(&binary);
        Ok(Pasta {
            binary,
            args: Args {
                ifname,
                mtu: if opts.mtu == 0 { 65520 } else { opts.mtu },
                cidr,
                disable_host_loopback: opts.disable_host_loopback,
                ipv6: opts.ipv6,
                implicit_ports: opts.port_driver == PortDriverKind::Implicit,
                host_lo_to_ns_lo: false,
                pid_file: None,
            },
            probe: Some(probe),
            features: Features::default(),
            helper: None,
            daemon_pid: None,
            config: None,
        })
    }

    fn setup_foreground(
        &mut self,
        ctx: &SetupContext,
        argv: &[String],
        pid_file: &Path,
    ) -> Result<(), NetError> {
        let _ = std::fs::remove_file(pid_file);
        let mut h = Spawn {
            name: "pasta",
            binary: &self.binary,
            args: argv,
            fd3: None,
            setns: Vec::new(),
        }
        .spawn()?;
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Ok(Some(st)) = h.child.try_wait() {
                let out = h.output.text();
                self.helper = Some(h);
                return Err(pasta_failed(&st, &out));
            }
            if std::fs::read_to_string(pid_file)
                .map(|s| !s.trim().is_empty())
                .unwrap_or(false)
            {
                self.helper = Some(h);
                return Ok(());
            }
            if Instant::now() >= deadline {
                let _ = h.kill();
                let out = h.output.text();
                return Err(NetError::Msg(format!(
                    "pasta did not become ready within {}s for PID {} (killed it); output:\n{out}",
                    READY_TIMEOUT.as_secs(),
                    ctx.child_pid
                )));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn setup_daemon(&mut self, ctx: &SetupContext, argv: &[String]) -> Result<(), NetError> {
        let out = Command::new(&self.binary)
            .args(argv)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| NetError::io(format!("executing {}", self.binary.display()), e))?;
        if !out.status.success() {
            let mut s = String::from_utf8_lossy(&out.stdout).into_owned();
            s.push_str(&String::from_utf8_lossy(&out.stderr));
            return Err(pasta_failed(&out.status, &s));
        }
        let netns = match &ctx.detached_netns {
            Some(p) => p.clone(),
            None => PathBuf::from(format!("/proc/{}/ns/net", ctx.child_pid)),
        };
        self.daemon_pid = find_pasta_in_netns(&netns);
        if self.daemon_pid.is_none() {
            crate::warn!(
                "could not find the pasta process for {}; it will not be stopped at exit",
                netns.display()
            );
        }
        Ok(())
    }
}

fn pasta_failed(st: &std::process::ExitStatus, out: &str) -> NetError {
    match st.code() {
        Some(c) => NetError::Msg(format!("pasta failed with exit code {c}:\n{out}")),
        None => NetError::Msg(format!("pasta failed ({}):\n{out}", describe_exit(st))),
    }
}

/// Identity of a namespace file (st_dev, st_ino).
fn ns_id(p: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(p).ok().map(|m| (m.dev(), m.ino()))
}

/// PID of a pasta/passt process (any of our uid's) whose netns is `netns`. pasta stays in the
/// host netns but keeps an fd of the target netns open, so compare the fds.
fn find_pasta_in_netns(netns: &Path) -> Option<i32> {
    let want = ns_id(netns)?;
    let me = nix::unistd::getuid().as_raw();
    for e in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        if !(comm.starts_with("pasta") || comm.starts_with("passt")) {
            continue;
        }
        use std::os::unix::fs::MetadataExt;
        if std::fs::metadata(format!("/proc/{pid}"))
            .map(|m| m.uid())
            .ok()
            != Some(me)
        {
            continue;
        }
        let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            if ns_id(&fd.path()) == Some(want) {
                return Some(pid);
            }
        }
    }
    None
}

impl NetworkDriver for Pasta {
    fn setup(&mut self, ctx: &SetupContext) -> Result<NetworkConfig, NetError> {
        if let Some(probe) = self.probe.take() {
            self.features = probe.finish();
            crate::debug!("pasta features {:?}", self.features);
            self.args.host_lo_to_ns_lo = self.features.host_lo_to_ns_lo;
        }
        let mut args = self.args.clone();
        let pid_file = ctx.state_dir.join(".pasta.pid");
        if self.features.pid_file {
            args.pid_file = Some(pid_file.clone());
        }
        let argv = build_args(&args, ctx.child_pid, ctx.detached_netns.as_deref())?;
        crate::debug!("executing {} {}", self.binary.display(), argv.join(" "));
        if self.features.pid_file {
            self.setup_foreground(ctx, &argv, &pid_file)?;
        } else {
            self.setup_daemon(ctx, &argv)?;
        }
        let mut cfg = cidr_config("pasta", &args.cidr, &args.ifname, args.mtu)?;
        // pasta configured address, route and MTU itself.
        cfg.configure_dev = false;
        self.config = Some(cfg.clone());
        Ok(cfg)
    }

    fn info(&self) -> Option<NetworkDriverInfo> {
        Some(driver_info(self.config.as_ref(), "pasta", self.args.ipv6))
    }

    fn cleanup(&mut self) -> Result<(), NetError> {
        if let Some(pid) = self.daemon_pid.take() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        match self.helper.take() {
            Some(mut h) => {
                crate::debug!("killing pasta");
                h.kill()
            }
            None => Ok(()),
        }
    }
}

impl Drop for Pasta {
    fn drop(&mut self) {
        let _ = self.cleanup();
    }
}
