//! `--net=slirp4netns`: usermode networking by the slirp4netns program (>= v0.4.0).
//!
//! The parent runs `slirp4netns --mtu N -r 3 [...] <childPID | --userns-path=/proc/PID/ns/user
//! --netns-type=path NETNS> TAP`; slirp4netns creates the tap device inside the namespace and
//! writes to fd 3 when it is ready. The child then brings the device up and sets
//! CIDR+100/prefix, the default route via CIDR+2 and DNS CIDR+3.

use std::net::{IpAddr, Ipv6Addr};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use super::helper::{Helper, Spawn};
use super::{
    cidr_config, driver_info, look_path, Cidr, NetError, NetworkConfig, NetworkDriver,
    NetworkDriverInfo, SetupContext,
};
use crate::cli::{AutoBool, Options};

/// How long slirp4netns may take to become ready.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// What the installed slirp4netns supports (from `slirp4netns --help`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Features {
    pub cidr: bool,
    pub disable_host_loopback: bool,
    pub api_socket: bool,
    pub enable_sandbox: bool,
    pub enable_seccomp: bool,
    pub enable_ipv6: bool,
    pub kernel_seccomp: bool,
}

/// Parse the `--help` text; the presence of `--netns-type` proves v0.4.0+.
pub fn parse_features(help: &str, binary: &str) -> Result<Features, NetError> {
    if !help.contains("--netns-type") {
        return Err(NetError::Msg(format!(
            "{binary} seems older than v0.4.0 (its --help does not mention --netns-type); install slirp4netns v0.4.0 or later"
        )));
    }
    Ok(Features {
        cidr: help.contains("--cidr"),
        disable_host_loopback: help.contains("--disable-host-loopback"),
        api_socket: help.contains("--api-socket"),
        enable_sandbox: help.contains("--enable-sandbox"),
        enable_seccomp: help.contains("--enable-seccomp"),
        enable_ipv6: help.contains("--enable-ipv6"),
        kernel_seccomp: false,
    })
}

fn kernel_supports_seccomp() -> bool {
    use nix::errno::Errno;
    // SAFETY: PR_GET_SECCOMP takes no pointer arguments and only reads the caller's mode.
    let r = unsafe { libc::prctl(libc::PR_GET_SECCOMP, 0, 0, 0, 0) };
    if r < 0 && Errno::last() == Errno::EINVAL {
        return false;
    }
    // SAFETY: a NULL filter program makes the kernel fail with EFAULT when filters are
    // supported (EINVAL when not); no filter is ever installed.
    let r = unsafe {
        libc::prctl(
            libc::PR_SET_SECCOMP,
            libc::SECCOMP_MODE_FILTER,
            std::ptr::null::<libc::c_void>(),
            0,
            0,
        )
    };
    !(r < 0 && Errno::last() == Errno::EINVAL)
}

/// A `slirp4netns --help` run in flight. The parent starts it before cloning the child and
/// collects it when the driver is set up, so the probe overlaps the clone and the id maps
/// instead of adding its 1–4 ms to start-up.
pub struct FeatureProbe {
    binary: PathBuf,
    child: std::process::Child,
}

impl FeatureProbe {
    pub fn spawn(binary: &PathBuf) -> Result<Self, NetError> {
        let child = Command::new(binary)
            .arg("--help")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .map_err(|e| {
                NetError::io(
                    format!(
                        "command \"{} --help\" failed, make sure slirp4netns v0.4.0+ is installed",
                        binary.display()
                    ),
                    e,
                )
            })?;
        Ok(FeatureProbe {
            binary: binary.clone(),
            child,
        })
    }

    /// Wait for the probe and parse its output.
    pub fn finish(self) -> Result<Features, NetError> {
        let binary = self.binary;
        let out = self.child.wait_with_output().map_err(|e| {
            NetError::io(
                format!(
                    "command \"{} --help\" failed, make sure slirp4netns v0.4.0+ is installed",
                    binary.display()
                ),
                e,
            )
        })?;
        let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.push_str(&String::from_utf8_lossy(&out.stderr));
        if !out.status.success() {
            return Err(NetError::Msg(format!(
                "command \"{} --help\" failed, make sure slirp4netns v0.4.0+ is installed: {:?}",
                binary.display(),
                text
            )));
        }
        let mut f = parse_features(&text, &binary.display().to_string())?;
        f.kernel_seccomp = kernel_supports_seccomp();
        Ok(f)
    }
}

/// Everything that determines the argv.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Args {
    pub mtu: u32,
    pub disable_host_loopback: bool,
    pub cidr: Option<Cidr>,
    pub api_socket: Option<PathBuf>,
    pub sandbox: bool,
    pub seccomp: bool,
    pub ipv6: bool,
    pub ifname: String,
}

/// The exact argv after the program name (spec §5).
pub fn build_args(
    a: &Args,
    child_pid: i32,
    detached_netns: Option<&std::path::Path>,
) -> Vec<String> {
    let mut v = vec![
        "--mtu".to_string(),
        a.mtu.to_string(),
        "-r".into(),
        "3".into(),
    ];
    if a.disable_host_loopback {
        v.push("--disable-host-loopback".into());
    }
    if let Some(c) = &a.cidr {
        v.push("--cidr".into());
        v.push(c.to_string());
    }
    if let Some(s) = &a.api_socket {
        v.push("--api-socket".into());
        v.push(s.display().to_string());
    }
    if a.sandbox {
        v.push("--enable-sandbox".into());
    }
    if a.seccomp {
        v.push("--enable-seccomp".into());
    }
    if a.ipv6 {
        v.push("--enable-ipv6".into());
    }
    match detached_netns {
        None => v.push(child_pid.to_string()),
        Some(p) => {
            v.push(format!("--userns-path=/proc/{child_pid}/ns/user"));
            v.push("--netns-type=path".into());
            v.push(p.display().to_string());
        }
    }
    v.push(a.ifname.clone());
    v
}

/// Resolve `--slirp4netns-sandbox` / `--slirp4netns-seccomp` against the features.
pub fn resolve_sandbox_seccomp(
    sandbox: AutoBool,
    seccomp: AutoBool,
    detach: bool,
    f: &Features,
) -> Result<(bool, bool), NetError> {
    let sb = match sandbox {
        AutoBool::Auto => f.enable_sandbox && !detach,
        AutoBool::True => {
            if !f.enable_sandbox {
                return Err(NetError::Msg(
                    "unsupported slirp4netns version: lacks SupportsEnableSandbox".into(),
                ));
            }
            if detach {
                return Err(NetError::Msg("--slirp4netns-sandbox conflicts with --detach-netns (https://github.com/rootless-containers/slirp4netns/issues/317)".into()));
            }
            true
        }
        AutoBool::False => false,
    };
    let sc = match seccomp {
        AutoBool::Auto => f.enable_seccomp && f.kernel_seccomp,
        AutoBool::True => {
            if !f.enable_seccomp {
                return Err(NetError::Msg(
                    "unsupported slirp4netns version: lacks SupportsEnableSeccomp".into(),
                ));
            }
            if !f.kernel_seccomp {
                return Err(NetError::Msg("kernel doesn't support seccomp".into()));
            }
            true
        }
        AutoBool::False => false,
    };
    Ok((sb, sc))
}

pub(crate) struct Slirp4netns {
    binary: PathBuf,
    args: Args,
    /// `--cidr` given explicitly (only then is it passed to slirp4netns).
    cidr: Cidr,
    /// What decides sandbox/seccomp and the feature checks, kept until the probe is collected.
    explicit_cidr: bool,
    port_driver_slirp4netns: bool,
    sandbox_opt: AutoBool,
    seccomp_opt: AutoBool,
    detach_netns: bool,
    probe: Option<FeatureProbe>,
    helper: Option<Helper>,
    config: Option<NetworkConfig>,
}

impl Slirp4netns {
    /// Finds the binary and starts the `--help` probe; its result is checked in
    /// [`Slirp4netns::check_features`] at setup, after the clone.
    pub(crate) fn new(opts: &Options, cidr: Cidr, ifname: String) -> Result<Self, NetError> {
        let binary = look_path(&opts.slirp4netns_binary)?;
        let probe = FeatureProbe::spawn(&binary)?;
        let explicit_cidr = opts.cidr.as_deref().is_some_and(|s| !s.is_empty());
        Ok(Slirp4netns {
            binary,
            args: Args {
                mtu: if opts.mtu == 0 { 65520 } else { opts.mtu },
                disable_host_loopback: opts.disable_host_loopback,
                cidr: explicit_cidr.then_some(cidr),
                api_socket: None,
                sandbox: false,
                seccomp: false,
                ipv6: opts.ipv6,
                ifname,
            },
            cidr,
            explicit_cidr,
            port_driver_slirp4netns: opts.port_driver == crate::cli::PortDriverKind::Slirp4netns,
            sandbox_opt: opts.slirp4netns_sandbox,
            seccomp_opt: opts.slirp4netns_seccomp,
            detach_netns: opts.detach_netns,
            probe: Some(probe),
            helper: None,
            config: None,
        })
    }

    /// Collect the `--help` probe and check the features against the options (the error texts
    /// are RootlessKit's); decides `--enable-sandbox` / `--enable-seccomp`.
    fn check_features(&mut self) -> Result<(), NetError> {
        let Some(probe) = self.probe.take() else {
            return Ok(());
        };
        let f = probe.finish()?;
        crate::debug!("slirp4netns features {f:?}");
        if self.explicit_cidr && !f.cidr {
            return Err(NetError::Msg(
                "this version of slirp4netns does not support --cidr".into(),
            ));
        }
        if self.args.disable_host_loopback && !f.disable_host_loopback {
            return Err(NetError::Msg(
                "unsupported slirp4netns version: lacks SupportsDisableHostLoopback".into(),
            ));
        }
        if self.port_driver_slirp4netns && !f.api_socket {
            return Err(NetError::Msg(
                "unsupported slirp4netns version: lacks SupportsAPISocket".into(),
            ));
        }
        if self.args.ipv6 && !f.enable_ipv6 {
            return Err(NetError::Msg(
                "this version of slirp4netns does not support --enable-ipv6".into(),
            ));
        }
        let (sandbox, seccomp) =
            resolve_sandbox_seccomp(self.sandbox_opt, self.seccomp_opt, self.detach_netns, &f)?;
        self.args.sandbox = sandbox;
        self.args.seccomp = seccomp;
        Ok(())
    }
}

impl NetworkDriver for Slirp4netns {
    fn setup(&mut self, ctx: &SetupContext) -> Result<NetworkConfig, NetError> {
        self.check_features()?;
        let mut args = self.args.clone();
        if ctx.slirp4netns_api_socket {
            args.api_socket = Some(ctx.state_dir.join(".s4nn.sock"));
        }
        let mut cfg = cidr_config("slirp4netns", &self.cidr, &args.ifname, args.mtu)?;
        if args.ipv6 {
            cfg.dns
                .push(IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 3)));
        }
        let argv = build_args(&args, ctx.child_pid, ctx.detached_netns.as_deref());
        crate::debug!("executing {} {}", self.binary.display(), argv.join(" "));
        let (ready_r, ready_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
            .map_err(|e| NetError::sys("creating the slirp4netns ready pipe", e))?;
        let mut helper = Spawn {
            name: "slirp4netns",
            binary: &self.binary,
            args: &argv,
            fd3: Some(ready_w),
            setns: Vec::new(),
        }
        .spawn()?;
        let r = helper.wait_ready_fd(&ready_r, READY_TIMEOUT);
        self.helper = Some(helper);
        r?;
        self.config = Some(cfg.clone());
        Ok(cfg)
    }

    fn info(&self) -> Option<NetworkDriverInfo> {
        Some(driver_info(
            self.config.as_ref(),
            "slirp4netns",
            self.args.ipv6,
        ))
    }

    fn cleanup(&mut self) -> Result<(), NetError> {
        match self.helper.take() {
            Some(mut h) => {
                crate::debug!("killing slirp4netns");
                h.kill()
            }
            None => Ok(()),
        }
    }
}

impl Drop for Slirp4netns {
    fn drop(&mut self) {
        let _ = self.cleanup();
    }
}
