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

pub fn parse(_args: &[String]) -> Result<Parsed, CliError> {
    Err(CliError::Invalid("CLI not implemented yet".into()))
}
