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
#[cfg(test)]
mod tests;
mod validate;

use std::collections::HashMap;
use std::path::PathBuf;

use flags::{FlagDef, FlagKind};
pub use validate::{clean_path, Feature, UNBUILT_FEATURES};

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
    let mut opts = validate::build(&raw)?;
    opts.command = command;
    opts.check = check;
    Ok(Parsed::Run(Box::new(opts)))
}

/// `-p` / `--publish`: one port spec string.
/// (The shared parser and validator of `forwarder::spec`, with RootlessKit's texts.)
pub fn parse_publish(s: &str) -> Result<forwarder::PortSpec, CliError> {
    let spec = forwarder::PortSpec::parse(s).map_err(|e| CliError::Invalid(e.to_string()))?;
    spec.validate()
        .map_err(|e| CliError::Invalid(e.to_string()))?;
    Ok(spec)
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
