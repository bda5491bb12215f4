//! The `rootlesskit` command line (owner: CLI helper): urfave/cli v2 semantics.
//!
//! Contract: `parse(args)` returns [`Parsed`]; [`Options`] is what the rest of the launcher reads.
//! Validation that RootlessKit does in the parent before anything starts happens inside `parse`
//! (in RootlessKit's order) and is also available as `Options::validate()` for hand-built
//! options. Checks RootlessKit only makes later (in the child, or while writing the id maps)
//! are kept for those stages: [`Options::validate_child`] and [`Options::idmap_error`].
//!
//! The flag table ([`flags::FLAGS`]) drives parsing, `--help`, the man pages and the shell
//! completions ([`gen`]).
//!
//! Printing (for the binary's `main`), see [`front`]:
//! - `Parsed::Help/Version/PrintSemver(text)`: `print!("{text}")` to stdout (text ends in `\n`), exit 0.
//! - `CliError::Usage{message, usage}`: `usage` to stdout verbatim (it already holds urfave's
//!   `Incorrect Usage. <message>` line and the help), then `[rootlesskit:parent] error: <message>`
//!   on stderr, exit 1.
//! - `CliError::Invalid(message)`: `[rootlesskit:parent] error: <message>` on stderr, exit 1.

pub mod flags;
pub mod gen;
mod goparse;
mod portspec;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::path::PathBuf;

use flags::{FlagDef, FlagKind};

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

impl NetDriver {
    /// The `--net` spelling; `None` for unknown strings.
    pub fn from_name(s: &str) -> Option<Self> {
        Some(match s {
            "host" => Self::Host,
            "none" => Self::None,
            "slirp4netns" => Self::Slirp4netns,
            "pasta" => Self::Pasta,
            "vpnkit" => Self::Vpnkit,
            "lxc-user-nic" => Self::LxcUserNic,
            "gvisor-tap-vsock" => Self::GvisorTapVsock,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Host => "host",
            Self::None => "none",
            Self::Slirp4netns => "slirp4netns",
            Self::Pasta => "pasta",
            Self::Vpnkit => "vpnkit",
            Self::LxcUserNic => "lxc-user-nic",
            Self::GvisorTapVsock => "gvisor-tap-vsock",
        }
    }
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

impl PortDriverKind {
    /// The `--port-driver` spelling; `None` for unknown strings. `gvisortapvsock` (the
    /// spelling of some v2.x snapshots) and `pesto` (v3.1.0+) are accepted as well.
    pub fn from_name(s: &str) -> Option<Self> {
        Some(match s {
            "none" => Self::None,
            "builtin" => Self::Builtin,
            "slirp4netns" => Self::Slirp4netns,
            "implicit" => Self::Implicit,
            "gvisor-tap-vsock" | "gvisortapvsock" => Self::GvisorTapVsock,
            "pesto" => Self::Pesto,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Builtin => "builtin",
            Self::Slirp4netns => "slirp4netns",
            Self::Implicit => "implicit",
            Self::GvisorTapVsock => "gvisor-tap-vsock",
            Self::Pesto => "pesto",
        }
    }
}

/// `auto` / `true` / `false` flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AutoBool {
    Auto,
    True,
    False,
}

impl AutoBool {
    fn from_name(s: &str) -> Option<Self> {
        match s {
            "auto" => Some(Self::Auto),
            "true" => Some(Self::True),
            "false" | "" => Some(Self::False),
            _ => None,
        }
    }
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

/// Errors RootlessKit reports after the child exists; kept so that the stage that reports
/// them prints the same text (see [`Options::validate_child`], [`Options::idmap_error`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Deferred {
    /// Child-side error of an unknown `--reaper` value: `unknown reaper mode: X`.
    pub child: Option<String>,
    /// Parent-side error while computing the id maps: `unknown subid source "x"`.
    pub idmap: Option<String>,
}

/// systemd socket activation (§1.6, RootlessKit v2.1+): `LISTEN_PID` and `LISTEN_FDS` as found
/// in the parent's environment. fds `3..3+fds` are passed on to the child and the command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SocketActivation {
    /// `LISTEN_FDS` (> 0).
    pub fds: u32,
    /// `LISTEN_PID`.
    pub listen_pid: u32,
    /// `LISTEN_PID` is this (parent) process: the child must run the activation helper so that
    /// the command sees `LISTEN_PID` equal to its own PID.
    pub pid_is_parent: bool,
}

impl SocketActivation {
    /// Valid when both variables are decimal numbers and `LISTEN_FDS > 0`.
    pub fn from_vars(
        listen_pid: Option<&str>,
        listen_fds: Option<&str>,
        own_pid: u32,
    ) -> Option<Self> {
        let listen_pid: u32 = listen_pid?.trim().parse().ok()?;
        let fds: u32 = listen_fds?.trim().parse().ok()?;
        (fds > 0 && listen_pid > 0).then_some(SocketActivation {
            fds,
            listen_pid,
            pid_is_parent: listen_pid == own_pid,
        })
    }

    /// From this process's environment.
    pub fn from_env() -> Option<Self> {
        let pid = std::env::var("LISTEN_PID").ok();
        let fds = std::env::var("LISTEN_FDS").ok();
        Self::from_vars(pid.as_deref(), fds.as_deref(), std::process::id())
    }
}

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
    /// The command and its arguments (non-empty after validation, unless `check`).
    pub command: Vec<String>,
    /// `--check` (rootlesskit-rs only): run [`crate::check::run_check`] instead of the command.
    pub check: bool,
    /// Errors of later stages, see [`Deferred`].
    pub deferred: Deferred,
    /// systemd socket activation found in the environment by `parse` (not a flag).
    pub socket_activation: Option<SocketActivation>,
}

impl Default for Options {
    /// The defaults of every flag (no command).
    fn default() -> Self {
        Options {
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
            lxc_user_nic_binary: flags::lxc_user_nic_bin(),
            lxc_user_nic_bridge: "lxcbr0".into(),
            port_driver: PortDriverKind::None,
            publish: Vec::new(),
            source_ip_transparent: true,
            copy_up: Vec::new(),
            copy_up_mode: "tmpfs+symlink".into(),
            propagation: "rprivate".into(),
            pidns: false,
            cgroupns: false,
            utsns: false,
            ipcns: false,
            reaper: AutoBool::Auto,
            evacuate_cgroup2: None,
            subid_source: SubidSource::Auto,
            command: Vec::new(),
            check: false,
            deferred: Deferred::default(),
            socket_activation: None,
        }
    }
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
    /// Unknown flag or bad flag syntax: `usage` is the exact stdout text (urfave's
    /// `Incorrect Usage. <message>`, a blank line, then the help), printed before the error.
    #[error("{message}")]
    Usage { message: String, usage: String },
    /// Any other validation error.
    #[error("{0}")]
    Invalid(String),
}

fn invalid(s: impl Into<String>) -> CliError {
    CliError::Invalid(s.into())
}

fn usage_error(message: String) -> CliError {
    let usage = format!("Incorrect Usage. {message}\n\n{}", flags::help_text());
    CliError::Usage { message, usage }
}

/// One parsed flag value.
#[derive(Debug, Clone)]
enum Value {
    Bool(bool),
    Str(String),
    Int(i64),
    List(Vec<String>),
}

/// The flags as given (canonical name -> value), before defaults and validation.
#[derive(Debug, Default)]
struct Raw {
    values: HashMap<&'static str, Value>,
    /// Every spelling used, for urfave's "two forms" check.
    spellings: Vec<&'static str>,
}

impl Raw {
    fn def(name: &str) -> &'static FlagDef {
        // Only called with names from the table.
        flags::lookup(name).unwrap_or(&flags::FLAGS[0])
    }

    fn bool(&self, name: &str) -> bool {
        match self.values.get(name) {
            Some(Value::Bool(b)) => *b,
            _ => Self::def(name).default == "true",
        }
    }

    fn string(&self, name: &str) -> String {
        match self.values.get(name) {
            Some(Value::Str(s)) => s.clone(),
            _ => Self::def(name).default_value(),
        }
    }

    fn int(&self, name: &str) -> i64 {
        match self.values.get(name) {
            Some(Value::Int(n)) => *n,
            _ => Self::def(name).default.parse().unwrap_or(0),
        }
    }

    fn list(&self, name: &str) -> Vec<String> {
        match self.values.get(name) {
            Some(Value::List(v)) => v.clone(),
            _ => Vec::new(),
        }
    }
}

/// Go `flag.FlagSet.Parse` + urfave v2: returns the flags and the index of the first positional.
fn parse_flags(args: &[String]) -> Result<(Raw, usize), CliError> {
    let mut raw = Raw::default();
    let mut i = 0;
    while i < args.len() {
        let s = args[i].as_str();
        if s.len() < 2 || !s.starts_with('-') {
            break;
        }
        let mut minuses = 1;
        if s.as_bytes()[1] == b'-' {
            minuses = 2;
            if s.len() == 2 {
                i += 1;
                break;
            }
        }
        let name = &s[minuses..];
        if name.is_empty() || name.starts_with('-') || name.starts_with('=') {
            return Err(usage_error(format!("bad flag syntax: {s}")));
        }
        i += 1;
        let (name, value) = match name.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (name, None),
        };
        let Some(def) = flags::lookup(name) else {
            return Err(usage_error(format!(
                "flag provided but not defined: -{name}"
            )));
        };
        let spelling = def.names().find(|n| *n == name).unwrap_or(def.name);
        if !raw.spellings.contains(&spelling) {
            raw.spellings.push(spelling);
        }
        if def.kind == FlagKind::Bool {
            let b = match value {
                None => true,
                Some(v) => goparse::parse_bool(v).ok_or_else(|| {
                    usage_error(format!(
                        "invalid boolean value {} for -{name}: parse error",
                        goparse::quote(v)
                    ))
                })?,
            };
            raw.values.insert(def.name, Value::Bool(b));
            continue;
        }
        let value = match value {
            Some(v) => v.to_string(),
            None if i < args.len() => {
                i += 1;
                args[i - 1].clone()
            }
            None => {
                return Err(usage_error(format!("flag needs an argument: -{name}")));
            }
        };
        match def.kind {
            FlagKind::Int => {
                let n = goparse::parse_int(&value).map_err(|e| {
                    usage_error(format!(
                        "invalid value {} for flag -{name}: {e}",
                        goparse::quote(&value)
                    ))
                })?;
                raw.values.insert(def.name, Value::Int(n));
            }
            FlagKind::StringSlice => {
                let entry = raw
                    .values
                    .entry(def.name)
                    .or_insert_with(|| Value::List(Vec::new()));
                if let Value::List(list) = entry {
                    list.extend(value.split(',').map(|v| v.trim().to_string()));
                }
            }
            _ => {
                raw.values.insert(def.name, Value::Str(value));
            }
        }
    }
    // urfave's normalizeFlags: two spellings of one flag.
    for def in flags::FLAGS {
        let used: Vec<&str> = def.names().filter(|n| raw.spellings.contains(n)).collect();
        if used.len() > 1 {
            return Err(usage_error(format!(
                "Cannot use two forms of the same flag: {} {}",
                used[1], used[0]
            )));
        }
    }
    Ok((raw, i))
}

/// `major`, `minor`, `patch` of a semver string (pre-release and build metadata ignored).
fn semver_component(version: &str, which: &str) -> Option<u64> {
    let core = version.split(['-', '+']).next().unwrap_or("");
    let mut it = core.split('.');
    let (major, minor, patch) = (it.next()?, it.next()?, it.next()?);
    let pick = match which {
        "major" => major,
        "minor" => minor,
        "patch" => patch,
        _ => return None,
    };
    pick.parse().ok()
}

/// Parses `args` (without argv[0]) like RootlessKit: flags, help/version, `--print-semver`,
/// the command, then the parent-side validation in RootlessKit's order.
pub fn parse(args: &[String]) -> Result<Parsed, CliError> {
    let (raw, first_arg) = parse_flags(args)?;
    if raw.bool("help") {
        return Ok(Parsed::Help(flags::help_text()));
    }
    if raw.bool("version") {
        return Ok(Parsed::Version(format!(
            "rootlesskit version {}\n",
            crate::VERSION
        )));
    }
    let semver = raw.string("print-semver");
    if !semver.is_empty() {
        return match semver_component(crate::VERSION, &semver) {
            Some(n) => Ok(Parsed::PrintSemver(format!("{n}\n"))),
            None if matches!(semver.as_str(), "major" | "minor" | "patch") => Err(invalid(
                format!("failed to parse version {:?}", crate::VERSION),
            )),
            None => Err(invalid(format!(
                "expected --print-semver=(major|minor|patch), got {}",
                goparse::quote(&semver)
            ))),
        };
    }
    let command: Vec<String> = args[first_arg..].to_vec();
    let check = raw.bool("check");
    if command.is_empty() && !check {
        return Err(invalid("no command specified"));
    }
    let mut opts = build(&raw)?;
    opts.command = command;
    opts.check = check;
    Ok(Parsed::Run(Box::new(opts)))
}

fn check_evacuate(evac: Option<&str>, cgroupns: bool, pidns: bool) -> Result<(), CliError> {
    if evac.is_some_and(|e| !e.is_empty()) {
        if !cgroupns {
            return Err(invalid("evacuate-cgroup2 requires --cgroupns"));
        }
        if !pidns {
            return Err(invalid("evacuate-cgroup2 requires --pidns"));
        }
    }
    Ok(())
}

fn check_mtu(mtu: i64) -> Result<(), CliError> {
    if !(0..=65521).contains(&mtu) {
        return Err(invalid(format!("mtu must be <= 65521, got {mtu}")));
    }
    Ok(())
}

/// Go's `net.ParseCIDR` plus RootlessKit's "network address" rule.
fn check_cidr(s: &str) -> Result<(), CliError> {
    if s.is_empty() {
        return Ok(());
    }
    let bad = || invalid(format!("invalid CIDR address: {s}"));
    let (ip, len) = s.split_once('/').ok_or_else(bad)?;
    let ip: std::net::IpAddr = goparse::parse_ip(ip).ok_or_else(bad)?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    if len.is_empty() || !len.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let len: u32 = len.parse().map_err(|_| bad())?;
    if len > max {
        return Err(bad());
    }
    let is_network = match ip {
        std::net::IpAddr::V4(v4) => {
            let bits = u32::from(v4);
            let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
            bits & !mask == 0
        }
        std::net::IpAddr::V6(v6) => {
            let bits = u128::from(v6);
            let mask = if len == 0 {
                0
            } else {
                u128::MAX << (128 - len)
            };
            bits & !mask == 0
        }
    };
    if !is_network {
        return Err(invalid(
            "cidr must be like 10.0.2.0/24, not like 10.0.2.100/24",
        ));
    }
    Ok(())
}

fn check_ifname(ifname: Option<&str>) -> Result<(), CliError> {
    if ifname.is_some_and(|i| i.contains('/')) {
        return Err(invalid("ifname must not contain \"/\""));
    }
    Ok(())
}

/// The per-network checks of RootlessKit's `switch net` (binaries are looked up later).
#[allow(clippy::too_many_arguments)]
fn check_net(
    net: NetDriver,
    cidr: Option<&str>,
    ifname: Option<&str>,
    port_driver: &str,
    ipv6: bool,
    sandbox: &str,
    seccomp: &str,
    detach_netns: bool,
) -> Result<(), CliError> {
    let has_cidr = cidr.is_some_and(|c| !c.is_empty());
    let has_ifname = ifname.is_some_and(|c| !c.is_empty());
    let n = net.name();
    match net {
        NetDriver::Host | NetDriver::None => {
            if has_cidr {
                return Err(invalid(format!(
                    "custom cidr is not supported for --net={n}"
                )));
            }
            if has_ifname {
                return Err(invalid(format!("ifname cannot be specified for --net={n}")));
            }
            if net == NetDriver::None && !matches!(port_driver, "none" | "builtin") {
                return Err(invalid(
                    "network \"none\" requires either port driver \"none\" or \"builtin\"",
                ));
            }
        }
        NetDriver::Pasta => {
            if !matches!(port_driver, "none" | "implicit" | "pesto") {
                return Err(invalid(
                    "network \"pasta\" requires port driver \"none\" or \"implicit\"",
                ));
            }
        }
        NetDriver::Slirp4netns => {
            match sandbox {
                "auto" | "false" | "" => {}
                "true" => {
                    if detach_netns {
                        return Err(invalid("--slirp4netns-sandbox conflicts with --detach-netns (https://github.com/rootless-containers/slirp4netns/issues/317)"));
                    }
                }
                s => {
                    return Err(invalid(format!(
                        "unsupported slirp4netns-sandbox mode: {}",
                        goparse::quote(s)
                    )))
                }
            }
            if !matches!(seccomp, "auto" | "true" | "false" | "") {
                return Err(invalid(format!(
                    "unsupported slirp4netns-seccomp mode: {}",
                    goparse::quote(seccomp)
                )));
            }
        }
        NetDriver::Vpnkit | NetDriver::LxcUserNic => {
            if has_cidr {
                return Err(invalid(format!(
                    "custom cidr is not supported for --net={n}"
                )));
            }
        }
        NetDriver::GvisorTapVsock => {
            if ipv6 {
                return Err(invalid("--ipv6 is not supported for gvisor-tap-vsock"));
            }
        }
    }
    Ok(())
}

/// RootlessKit's `switch port-driver`.
fn check_port(port: PortDriverKind, net: NetDriver, publishing: bool) -> Result<(), CliError> {
    match port {
        PortDriverKind::None => {
            if publishing {
                return Err(invalid(
                    "port driver \"none\" does not support publishing ports",
                ));
            }
        }
        PortDriverKind::Implicit | PortDriverKind::Pesto => {
            if net != NetDriver::Pasta {
                return Err(invalid("port driver requires pasta network"));
            }
        }
        PortDriverKind::Slirp4netns => {
            if net != NetDriver::Slirp4netns {
                return Err(invalid("port driver requires slirp4netns network"));
            }
        }
        PortDriverKind::Builtin => {
            if net == NetDriver::Host {
                return Err(invalid("port driver requires non-host network"));
            }
        }
        PortDriverKind::GvisorTapVsock => {
            if net == NetDriver::Host {
                return Err(invalid("port driver requires non-host network"));
            }
            if net != NetDriver::GvisorTapVsock {
                // rootlesskit-rs text: upstream fails later, when the port driver starts.
                return Err(invalid("port driver requires gvisor-tap-vsock network"));
            }
        }
    }
    Ok(())
}

/// `-p` / `--publish`: one port spec string.
///
/// TODO(lead): redirect to `forwarder::PortSpec::parse(s)` + `PortSpec::validate()` once
/// `forwarder/src/spec.rs` lands; this is a private minimal version with the same texts.
pub fn parse_publish(s: &str) -> Result<forwarder::PortSpec, CliError> {
    let spec = portspec::parse(s).map_err(CliError::Invalid)?;
    portspec::validate(&spec).map_err(CliError::Invalid)?;
    Ok(spec)
}

/// Builds [`Options`] from the raw flags, failing like RootlessKit's `createParentOpt`
/// (same checks, same order, same texts).
fn build(raw: &Raw) -> Result<Options, CliError> {
    let non_empty = |s: String| if s.is_empty() { None } else { Some(s) };
    let evac = non_empty(raw.string("evacuate-cgroup2"));
    let pidns = raw.bool("pidns");
    let cgroupns = raw.bool("cgroupns");
    check_evacuate(evac.as_deref(), cgroupns, pidns)?;
    let mtu = raw.int("mtu");
    check_mtu(mtu)?;
    let cidr = non_empty(raw.string("cidr"));
    check_cidr(cidr.as_deref().unwrap_or(""))?;
    let ifname = non_empty(raw.string("ifname"));
    check_ifname(ifname.as_deref())?;
    let net_s = raw.string("net");
    let net = NetDriver::from_name(&net_s)
        .ok_or_else(|| invalid(format!("unknown network mode: {net_s}")))?;
    let port_s = raw.string("port-driver");
    let sandbox_s = raw.string("slirp4netns-sandbox");
    let seccomp_s = raw.string("slirp4netns-seccomp");
    let ipv6 = raw.bool("ipv6");
    let detach_netns = raw.bool("detach-netns");
    check_net(
        net,
        cidr.as_deref(),
        ifname.as_deref(),
        &port_s,
        ipv6,
        &sandbox_s,
        &seccomp_s,
        detach_netns,
    )?;
    let port_driver = PortDriverKind::from_name(&port_s)
        .ok_or_else(|| invalid(format!("unknown port driver: {port_s}")))?;
    let publish_raw = raw.list("publish");
    check_port(port_driver, net, !publish_raw.is_empty())?;
    let publish = publish_raw
        .iter()
        .map(|s| parse_publish(s))
        .collect::<Result<Vec<_>, _>>()?;

    // Values RootlessKit only looks at later (child / id map) or only for one network driver.
    let mut deferred = Deferred::default();
    let reaper_s = raw.string("reaper");
    let reaper = match reaper_s.as_str() {
        "auto" => AutoBool::Auto,
        "true" => AutoBool::True,
        "false" => AutoBool::False,
        other => {
            deferred.child = Some(format!("unknown reaper mode: {other}"));
            AutoBool::Auto
        }
    };
    let subid_s = raw.string("subid-source");
    let subid_source = match subid_s.as_str() {
        "auto" | "" => SubidSource::Auto,
        "dynamic" => SubidSource::Dynamic,
        "static" => SubidSource::Static,
        other => {
            deferred.idmap = Some(format!("unknown subid source {}", goparse::quote(other)));
            SubidSource::Auto
        }
    };
    let state_dir = non_empty(raw.string("state-dir")).map(PathBuf::from);
    Ok(Options {
        debug: raw.bool("debug"),
        state_dir,
        net,
        // check_mtu guarantees 0..=65521.
        mtu: u32::try_from(mtu).unwrap_or(0),
        cidr,
        ifname,
        disable_host_loopback: raw.bool("disable-host-loopback"),
        ipv6,
        detach_netns,
        pasta_binary: raw.string("pasta-binary"),
        slirp4netns_binary: raw.string("slirp4netns-binary"),
        slirp4netns_sandbox: AutoBool::from_name(&sandbox_s).unwrap_or(AutoBool::False),
        slirp4netns_seccomp: AutoBool::from_name(&seccomp_s).unwrap_or(AutoBool::False),
        vpnkit_binary: raw.string("vpnkit-binary"),
        lxc_user_nic_binary: raw.string("lxc-user-nic-binary"),
        lxc_user_nic_bridge: raw.string("lxc-user-nic-bridge"),
        port_driver,
        publish,
        source_ip_transparent: raw.bool("source-ip-transparent"),
        copy_up: raw.list("copy-up").into_iter().map(PathBuf::from).collect(),
        copy_up_mode: raw.string("copy-up-mode"),
        propagation: raw.string("propagation"),
        pidns,
        cgroupns,
        utsns: raw.bool("utsns"),
        ipcns: raw.bool("ipcns"),
        reaper,
        evacuate_cgroup2: evac,
        subid_source,
        command: Vec::new(),
        check: false,
        deferred,
        socket_activation: SocketActivation::from_env(),
    })
}

/// Go's `filepath.Clean` for absolute and relative paths.
pub fn clean_path(p: &str) -> String {
    let rooted = p.starts_with('/');
    let mut out: Vec<&str> = Vec::new();
    for part in p.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if out.last().is_some_and(|l| *l != "..") {
                    out.pop();
                } else if !rooted {
                    out.push("..");
                }
            }
            x => out.push(x),
        }
    }
    let joined = out.join("/");
    match (rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".to_string(),
        (false, false) => joined,
    }
}

/// A feature of RootlessKit that rootlesskit-rs may not have built yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Feature {
    Net(NetDriver),
    Port(PortDriverKind),
    DetachNetns,
    SourceIpTransparent,
    EvacuateCgroup2,
    Ipv6,
}

/// Features not built yet; the lead lists them here and `unsupported_features()` reports them.
/// Everything is assumed built for now.
pub const UNBUILT_FEATURES: &[Feature] = &[];

impl Options {
    /// RootlessKit's parent-side validation on typed options (same texts and order as `parse`).
    pub fn validate(&self) -> Result<(), CliError> {
        check_evacuate(self.evacuate_cgroup2.as_deref(), self.cgroupns, self.pidns)?;
        check_mtu(i64::from(self.mtu))?;
        check_cidr(self.cidr.as_deref().unwrap_or(""))?;
        check_ifname(self.ifname.as_deref())?;
        let ab = |a: AutoBool| match a {
            AutoBool::Auto => "auto",
            AutoBool::True => "true",
            AutoBool::False => "false",
        };
        check_net(
            self.net,
            self.cidr.as_deref(),
            self.ifname.as_deref(),
            self.port_driver.name(),
            self.ipv6,
            ab(self.slirp4netns_sandbox),
            ab(self.slirp4netns_seccomp),
            self.detach_netns,
        )?;
        check_port(self.port_driver, self.net, !self.publish.is_empty())?;
        for spec in &self.publish {
            portspec::validate(spec).map_err(CliError::Invalid)?;
        }
        if self.command.is_empty() && !self.check {
            return Err(invalid("no command specified"));
        }
        Ok(())
    }

    /// The checks RootlessKit makes in the child (it prints them as `[rootlesskit:child ] error: ...`
    /// and the parent then fails with `child exited: exit status 1`): reaper, copy-up mode,
    /// propagation vs copy-up, `/tmp`.
    pub fn validate_child(&self) -> Result<(), CliError> {
        if let Some(e) = &self.deferred.child {
            return Err(invalid(e.clone()));
        }
        if self.reaper == AutoBool::True && !self.pidns {
            return Err(invalid("reaper requires --pidns"));
        }
        if self.copy_up_mode != "tmpfs+symlink" {
            return Err(invalid(format!(
                "unknown copy-up mode: {}",
                self.copy_up_mode
            )));
        }
        if !self.copy_up.is_empty() && matches!(self.propagation.as_str(), "rshared" | "shared") {
            return Err(invalid(format!(
                "propagation {} does not support copy-up driver {}",
                self.propagation, self.copy_up_mode
            )));
        }
        for d in &self.copy_up {
            if clean_path(&d.to_string_lossy()) == "/tmp" {
                return Err(invalid("/tmp cannot be copied up"));
            }
        }
        Ok(())
    }

    /// The error RootlessKit reports while writing the id maps for a bad `--subid-source`
    /// (full text: `failed to setup UID/GID map: failed to compute uid/gid map: unknown subid source "x"`).
    pub fn idmap_error(&self) -> Option<CliError> {
        self.deferred.idmap.as_ref().map(|e| {
            invalid(format!(
                "failed to setup UID/GID map: failed to compute uid/gid map: {e}"
            ))
        })
    }

    /// RootlessKit's `exec.LookPath` of the network driver's binary (pasta, slirp4netns, vpnkit,
    /// lxc-user-nic), done while creating the parent options; `Ok(None)` for drivers without one.
    /// Error text as Go's: `exec: "vpnkit": executable file not found in $PATH`.
    pub fn lookup_driver_binary(&self) -> Result<Option<PathBuf>, CliError> {
        let bin = match self.net {
            NetDriver::Pasta => &self.pasta_binary,
            NetDriver::Slirp4netns => &self.slirp4netns_binary,
            NetDriver::Vpnkit => &self.vpnkit_binary,
            NetDriver::LxcUserNic => &self.lxc_user_nic_binary,
            NetDriver::Host | NetDriver::None | NetDriver::GvisorTapVsock => return Ok(None),
        };
        crate::check::look_path_go(bin)
            .map(Some)
            .map_err(CliError::Invalid)
    }

    /// Whether the reaper runs (`auto` = `--pidns`).
    pub fn reaper_enabled(&self) -> bool {
        match self.reaper {
            AutoBool::Auto => self.pidns,
            AutoBool::True => true,
            AutoBool::False => false,
        }
    }

    /// The effective MTU (0 = driver default).
    pub fn effective_mtu(&self) -> u32 {
        if self.mtu != 0 {
            return self.mtu;
        }
        match self.net {
            NetDriver::Slirp4netns | NetDriver::Pasta | NetDriver::GvisorTapVsock => 65520,
            NetDriver::Vpnkit | NetDriver::LxcUserNic => 1500,
            NetDriver::Host | NetDriver::None => 0,
        }
    }

    /// The warnings RootlessKit prints while creating the parent options (without prefix).
    pub fn warnings(&self) -> Vec<String> {
        let mut w = Vec::new();
        let n = self.net.name();
        if self.ipv6 {
            w.push("ipv6 is experimental".to_string());
            if !matches!(self.net, NetDriver::Pasta | NetDriver::Slirp4netns) {
                w.push(format!("--ipv6 is discarded for --net={n}"));
            }
        }
        if !self.disable_host_loopback && !matches!(self.net, NetDriver::Host | NetDriver::None) {
            w.push("specifying --disable-host-loopback is highly recommended to prohibit connecting to 127.0.0.1:* on the host namespace (requires pasta, slirp4netns, or VPNKit)".to_string());
        }
        match self.net {
            NetDriver::Host | NetDriver::None if self.mtu != 0 => {
                w.push(format!("unsupported mtu for --net={n}: {}", self.mtu));
            }
            NetDriver::Pasta => w.push("\"pasta\" network driver is experimental. Needs very recent version of pasta (see docs/network.md).".to_string()),
            NetDriver::LxcUserNic => {
                w.push("\"lxc-user-nic\" network driver is experimental".to_string());
                if !self.disable_host_loopback {
                    w.push("--disable-host-loopback is implicitly set for lxc-user-nic".to_string());
                }
            }
            NetDriver::GvisorTapVsock => {
                w.push("\"gvisor-tap-vsock\" network driver is experimental".to_string());
                if self.disable_host_loopback {
                    w.push("\"--disable-host-loopback\" is not yet supported for gvisor-tap-vsock".to_string());
                }
            }
            _ => {}
        }
        w
    }

    /// The features these options need that rootlesskit-rs has not built ([`UNBUILT_FEATURES`]),
    /// each as an error naming the flag (exit 1 before anything starts).
    pub fn unsupported_features(&self) -> Vec<CliError> {
        self.unsupported_features_in(UNBUILT_FEATURES)
    }

    /// [`Self::unsupported_features`] against an explicit list (for tests).
    pub fn unsupported_features_in(&self, unbuilt: &[Feature]) -> Vec<CliError> {
        let mut needed: Vec<(Feature, String)> = vec![
            (Feature::Net(self.net), format!("--net={}", self.net.name())),
            (
                Feature::Port(self.port_driver),
                format!("--port-driver={}", self.port_driver.name()),
            ),
        ];
        if self.detach_netns {
            needed.push((Feature::DetachNetns, "--detach-netns".into()));
        }
        if self.source_ip_transparent && self.port_driver == PortDriverKind::Builtin {
            needed.push((
                Feature::SourceIpTransparent,
                "--source-ip-transparent".into(),
            ));
        }
        if self.evacuate_cgroup2.is_some() {
            needed.push((Feature::EvacuateCgroup2, "--evacuate-cgroup2".into()));
        }
        if self.ipv6 {
            needed.push((Feature::Ipv6, "--ipv6".into()));
        }
        needed
            .into_iter()
            .filter(|(f, _)| unbuilt.contains(f))
            .map(|(_, flag)| invalid(format!("{flag} is not supported by rootlesskit-rs yet")))
            .collect()
    }
}

/// What the binary's `main` does with the command line: prints help/version/semver/errors
/// exactly like RootlessKit and returns `Err(exit code)`, or returns the options to run.
/// `--check` is handled here too (runs [`crate::check::run_check`]).
pub fn front(args: &[String]) -> Result<Box<Options>, i32> {
    use std::io::Write;
    match parse(args) {
        Ok(Parsed::Help(t) | Parsed::Version(t) | Parsed::PrintSemver(t)) => {
            let _ = std::io::stdout().write_all(t.as_bytes());
            Err(0)
        }
        Ok(Parsed::Run(opts)) => {
            if opts.check {
                return Err(crate::check::run_check(&opts));
            }
            if let Some(e) = opts.unsupported_features().into_iter().next() {
                crate::error!("{e}");
                return Err(1);
            }
            if let Err(e) = opts.lookup_driver_binary() {
                crate::error!("{e}");
                return Err(1);
            }
            Ok(opts)
        }
        Err(e) => {
            if let CliError::Usage { usage, .. } = &e {
                let _ = std::io::stdout().write_all(usage.as_bytes());
            }
            crate::error!("{e}");
            Err(1)
        }
    }
}

/// Go's `%q` of a string (for error texts shared with other modules).
pub fn quote_go(s: &str) -> String {
    goparse::quote(s)
}
