//! The `rootlesskit` command line (owner: CLI helper): urfave/cli v2 semantics.
//!
//! Contract: `parse(args)` returns [`Parsed`]; [`Options`] is what the rest of the launcher reads.
//! Validation that RootlessKit does in the parent before anything starts lives in
//! `Options::validate()` and returns the exact error texts of spec §1.2.

use std::path::PathBuf;

/// `--net`
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetDriver {
    Host,
    None,
    Slirp4netns,
    Pasta,
    Vpnkit,
    LxcUserNic,
    GvisorTapVsock,
}

/// `--port-driver`
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortDriverKind {
    None,
    Builtin,
    Slirp4netns,
    Implicit,
    GvisorTapVsock,
    Pesto,
}

/// `auto` / `true` / `false` flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AutoBool {
    Auto,
    True,
    False,
}

/// `--subid-source`
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubidSource {
    Auto,
    Dynamic,
    Static,
}

/// `--propagation`: kept as the string (unknown values only warn, like RootlessKit).
pub type Propagation = String;

/// Every flag of the newest RootlessKit, parsed and defaulted.
#[derive(Debug, Clone)]
pub struct Options {
    pub debug: bool,
    pub state_dir: Option<PathBuf>,
    pub net: NetDriver,
    pub mtu: u32,
    pub cidr: Option<String>,
    pub ifname: Option<String>,
    pub disable_host_loopback: bool,
    pub ipv6: bool,
    pub detach_netns: bool,
    pub pasta_binary: String,
    pub slirp4netns_binary: String,
    pub slirp4netns_sandbox: AutoBool,
    pub slirp4netns_seccomp: AutoBool,
    pub vpnkit_binary: String,
    pub lxc_user_nic_binary: String,
    pub lxc_user_nic_bridge: String,
    pub port_driver: PortDriverKind,
    /// `-p` / `--publish`, already parsed and validated.
    pub publish: Vec<forwarder::PortSpec>,
    pub source_ip_transparent: bool,
    pub copy_up: Vec<PathBuf>,
    pub copy_up_mode: String,
    pub propagation: Propagation,
    pub pidns: bool,
    pub cgroupns: bool,
    pub utsns: bool,
    pub ipcns: bool,
    pub reaper: AutoBool,
    pub evacuate_cgroup2: Option<String>,
    pub subid_source: SubidSource,
    /// The command and its arguments (non-empty after validation).
    pub command: Vec<String>,
}

/// Outcome of parsing the command line.
#[derive(Debug)]
pub enum Parsed {
    Run(Box<Options>),
    /// `--help`: print this text to stdout, exit 0.
    Help(String),
    /// `--version`: print this text to stdout, exit 0.
    Version(String),
    /// `--print-semver=...`: print this text to stdout, exit 0.
    PrintSemver(String),
}

/// CLI errors. `Display` is the text after `[rootlesskit:parent] error: `.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Unknown flag or bad flag syntax: usage is printed before the error (urfave's "Incorrect Usage.").
    #[error("{message}")]
    Usage { message: String, usage: String },
    /// Any other validation error.
    #[error("{0}")]
    Invalid(String),
}

/// TEMPORARY minimal parser used by the lead until the CLI branch lands (replaced wholesale).
pub fn parse(args: &[String]) -> Result<Parsed, CliError> {
    let mut o = Options {
        debug: false,
        state_dir: None,
        net: NetDriver::Host,
        mtu: 0,
        cidr: None,
        ifname: None,
        disable_host_loopback: false,
        ipv6: false,
        detach_netns: false,
        pasta_binary: "pasta".into(),
        slirp4netns_binary: "slirp4netns".into(),
        slirp4netns_sandbox: AutoBool::False,
        slirp4netns_seccomp: AutoBool::False,
        vpnkit_binary: "vpnkit".into(),
        lxc_user_nic_binary: String::new(),
        lxc_user_nic_bridge: "lxcbr0".into(),
        port_driver: PortDriverKind::None,
        publish: vec![],
        source_ip_transparent: true,
        copy_up: vec![],
        copy_up_mode: "tmpfs+symlink".into(),
        propagation: "rprivate".into(),
        pidns: false,
        cgroupns: false,
        utsns: false,
        ipcns: false,
        reaper: AutoBool::Auto,
        evacuate_cgroup2: None,
        subid_source: SubidSource::Auto,
        command: vec![],
    };
    let mut i = 1;
    while i < args.len() {
        let a = &args[i];
        if a == "--" {
            i += 1;
            break;
        }
        if !a.starts_with('-') {
            break;
        }
        let (k, v) = match a.split_once('=') {
            Some((k, v)) => (k.trim_start_matches('-').to_string(), Some(v.to_string())),
            None => (a.trim_start_matches('-').to_string(), None),
        };
        let b = |v: &Option<String>| v.as_deref().map(|x| x == "true").unwrap_or(true);
        match k.as_str() {
            "pidns" => o.pidns = b(&v),
            "cgroupns" => o.cgroupns = b(&v),
            "utsns" => o.utsns = b(&v),
            "ipcns" => o.ipcns = b(&v),
            "debug" => o.debug = b(&v),
            "detach-netns" => o.detach_netns = b(&v),
            "state-dir" => o.state_dir = v.map(Into::into),
            "copy-up" => o.copy_up.push(v.unwrap_or_default().into()),
            "propagation" => o.propagation = v.unwrap_or_default(),
            "reaper" => {
                o.reaper = match v.as_deref() {
                    Some("true") => AutoBool::True,
                    Some("false") => AutoBool::False,
                    _ => AutoBool::Auto,
                }
            }
            "subid-source" => {
                o.subid_source = match v.as_deref() {
                    Some("static") => SubidSource::Static,
                    Some("dynamic") => SubidSource::Dynamic,
                    _ => SubidSource::Auto,
                }
            }
            "net" => {
                o.net = match v.as_deref() {
                    Some("none") => NetDriver::None,
                    Some("slirp4netns") => NetDriver::Slirp4netns,
                    Some("pasta") => NetDriver::Pasta,
                    _ => NetDriver::Host,
                }
            }
            "port-driver" => {
                o.port_driver = match v.as_deref() {
                    Some("builtin") => PortDriverKind::Builtin,
                    Some("slirp4netns") => PortDriverKind::Slirp4netns,
                    Some("implicit") => PortDriverKind::Implicit,
                    _ => PortDriverKind::None,
                }
            }
            "disable-host-loopback" => o.disable_host_loopback = b(&v),
            "p" | "publish" => {
                let val = match v {
                    Some(v) => v,
                    None => {
                        i += 1;
                        args.get(i).cloned().unwrap_or_default()
                    }
                };
                o.publish.push(
                    forwarder::PortSpec::parse(&val)
                        .map_err(|e| CliError::Invalid(e.to_string()))?,
                );
            }
            other => {
                return Err(CliError::Invalid(format!(
                    "flag provided but not defined: -{other}"
                )))
            }
        }
        i += 1;
    }
    o.command = args[i..].to_vec();
    if o.command.is_empty() {
        return Err(CliError::Invalid("no command specified".into()));
    }
    Ok(Parsed::Run(Box::new(o)))
}
