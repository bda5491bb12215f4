//! Network drivers (owner: network helper).
//!
//! A driver has a parent side ([`NetworkDriver`], runs in the host namespaces after the id maps
//! are written, may start an external program such as slirp4netns or pasta) and a child side
//! ([`configure_child`], runs inside the namespaces as root-in-userns before the command starts).
//! The parent side returns a [`NetworkConfig`] which the lead's process model sends to the child
//! in the handshake; the child applies it with netlink (no `ip` binary needed).

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::cli::{NetDriver, Options};

mod child;
pub mod dhcp;
mod helper;
mod lxc_user_nic;
pub mod netlink;
mod pasta;
mod slirp4netns;
pub mod tap;
pub mod vpnkit;

pub use netlink::setup_transparent_routing;

/// What the child needs to configure its network; sent parent -> child as JSON.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkConfig {
    /// Driver name as in `--net`.
    pub driver: String,
    /// Device inside the namespace (`tap0`, `eth0`); empty for host/none.
    pub dev: String,
    /// Address of `dev` (CIDR+100 for slirp4netns/pasta); None when the child must not set it
    /// (pasta configures the interface itself, lxc-user-nic uses DHCP).
    pub ip: Option<IpAddr>,
    pub netmask: u8,
    pub gateway: Option<IpAddr>,
    pub dns: Vec<IpAddr>,
    pub mtu: u32,
    /// The child brings `dev` up and sets address/route/MTU (false for pasta, which does it).
    pub configure_dev: bool,
    /// The child writes `$STATE/resolv.conf` and `$STATE/hosts` and bind-mounts them (non-host,
    /// non-none drivers), and remounts /sys.
    pub write_resolv_and_hosts: bool,
    /// Driver-specific data for the child (vpnkit socket/MAC/uuid, lxc-user-nic DHCP, ...).
    pub opaque: std::collections::BTreeMap<String, String>,
}

/// Parent-side context given to [`NetworkDriver::setup`].
#[derive(Debug, Clone)]
pub struct SetupContext {
    /// Host PID of the rootlesskit child (in the new user namespace).
    pub child_pid: i32,
    /// Absolute state dir.
    pub state_dir: PathBuf,
    /// With `--detach-netns`: the parent's path to the namespace
    /// (`/proc/<child_pid>/root/<state>/netns`).
    pub detached_netns: Option<PathBuf>,
    /// Whether the slirp4netns port driver needs `--api-socket $STATE/.s4nn.sock`.
    pub slirp4netns_api_socket: bool,
}

/// `networkDriver` object of `GET /v1/info`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkDriverInfo {
    pub driver: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dns: Vec<String>,
    #[serde(rename = "childIP", default, skip_serializing_if = "String::is_empty")]
    pub child_ip: String,
    #[serde(
        rename = "dynamicChildIP",
        default,
        skip_serializing_if = "std::ops::Not::not"
    )]
    pub dynamic_child_ip: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ipv6: bool,
}

/// Errors of the network drivers; messages name the driver, the program and the fix.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("{0}")]
    Msg(String),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    /// A netlink request was refused by the kernel.
    #[error("netlink: {what}: {errno}")]
    Netlink {
        what: String,
        errno: nix::errno::Errno,
    },
    /// Another syscall failed.
    #[error("{what}: {errno}")]
    Sys {
        what: String,
        errno: nix::errno::Errno,
    },
}

impl NetError {
    pub(crate) fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        NetError::Io {
            what: what.into(),
            source,
        }
    }
    pub(crate) fn sys(what: impl Into<String>, errno: nix::errno::Errno) -> Self {
        NetError::Sys {
            what: what.into(),
            errno,
        }
    }
}

/// Parent side of a network driver.
pub trait NetworkDriver: Send {
    /// Start whatever the driver needs for the child (after the id maps are written) and return
    /// the configuration the child applies.
    fn setup(&mut self, ctx: &SetupContext) -> Result<NetworkConfig, NetError>;
    /// `networkDriver` of the API info; None for host.
    fn info(&self) -> Option<NetworkDriverInfo>;
    /// Stop helpers (kill slirp4netns/pasta/...). Called once at exit, also after failures.
    fn cleanup(&mut self) -> Result<(), NetError>;
}

/// `--net` as the string RootlessKit uses in messages.
pub fn net_name(net: NetDriver) -> &'static str {
    match net {
        NetDriver::Host => "host",
        NetDriver::None => "none",
        NetDriver::Slirp4netns => "slirp4netns",
        NetDriver::Pasta => "pasta",
        NetDriver::Vpnkit => "vpnkit",
        NetDriver::LxcUserNic => "lxc-user-nic",
        NetDriver::GvisorTapVsock => "gvisor-tap-vsock",
    }
}

/// Default `--cidr`.
pub const DEFAULT_CIDR: &str = "10.0.2.0/24";

/// An IPv4 network parsed from `--cidr`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    pub network: Ipv4Addr,
    pub prefix: u8,
}

impl Cidr {
    /// Parse `A.B.C.D/N`; the address must be the network address (RootlessKit's texts).
    pub fn parse(s: &str) -> Result<Self, NetError> {
        let bad = || NetError::Msg(format!("invalid CIDR address: {s}"));
        let (a, p) = s.split_once('/').ok_or_else(bad)?;
        let prefix: u8 = p.parse().map_err(|_| bad())?;
        if prefix > 32 || p.starts_with('+') {
            return Err(bad());
        }
        let ip: Ipv4Addr = match a.parse::<IpAddr>() {
            Ok(IpAddr::V4(v4)) => v4,
            Ok(IpAddr::V6(_)) => {
                return Err(NetError::Msg(format!(
                    "cidr must be an IPv4 network, got {s}"
                )))
            }
            Err(_) => return Err(bad()),
        };
        let mask = if prefix == 0 {
            0
        } else {
            u32::MAX << (32 - u32::from(prefix))
        };
        let network = Ipv4Addr::from(u32::from(ip) & mask);
        if network != ip {
            // RootlessKit prints this fixed example whatever the input (checked on 1.1.0).
            return Err(NetError::Msg(
                "cidr must be like 10.0.2.0/24, not like 10.0.2.100/24".into(),
            ));
        }
        Ok(Cidr { network, prefix })
    }

    /// The network address plus `n` (RootlessKit's `AddIPInt`), which must stay inside the
    /// network.
    pub fn nth(&self, n: u32) -> Result<Ipv4Addr, NetError> {
        let host_bits = 32 - u32::from(self.prefix);
        let size: u64 = 1u64 << host_bits;
        if u64::from(n) >= size {
            return Err(NetError::Msg(format!(
                "cidr {self} is too small: it has no address +{n} (use a /24 or larger, e.g. 10.0.2.0/24)"
            )));
        }
        Ok(Ipv4Addr::from(u32::from(self.network) + n))
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

/// Addresses of the CIDR-based drivers (slirp4netns, pasta): CIDR+100, gateway +2, DNS +3.
pub(crate) fn cidr_config(
    driver: &str,
    cidr: &Cidr,
    dev: &str,
    mtu: u32,
) -> Result<NetworkConfig, NetError> {
    Ok(NetworkConfig {
        driver: driver.to_string(),
        dev: dev.to_string(),
        ip: Some(IpAddr::V4(cidr.nth(100)?)),
        netmask: cidr.prefix,
        gateway: Some(IpAddr::V4(cidr.nth(2)?)),
        dns: vec![IpAddr::V4(cidr.nth(3)?)],
        mtu,
        configure_dev: true,
        write_resolv_and_hosts: true,
        opaque: Default::default(),
    })
}

/// What `GET /v1/info` reports for a driver: from its configuration once set up, else just its
/// name; `ipv6` as configured.
pub(crate) fn driver_info(
    config: Option<&NetworkConfig>,
    driver: &str,
    ipv6: bool,
) -> NetworkDriverInfo {
    let mut i = match config {
        Some(c) => info_from_config(c),
        None => NetworkDriverInfo {
            driver: driver.into(),
            ..Default::default()
        },
    };
    i.ipv6 = ipv6;
    i
}

pub(crate) fn info_from_config(cfg: &NetworkConfig) -> NetworkDriverInfo {
    NetworkDriverInfo {
        driver: cfg.driver.clone(),
        dns: cfg.dns.iter().map(|d| d.to_string()).collect(),
        child_ip: cfg.ip.map(|i| i.to_string()).unwrap_or_default(),
        dynamic_child_ip: false,
        ipv6: false,
    }
}

/// `exec.LookPath`: a name with a `/` is used as is, otherwise searched in `$PATH`.
pub(crate) fn look_path(binary: &str) -> Result<PathBuf, NetError> {
    use std::os::unix::fs::PermissionsExt;
    let is_exec = |p: &Path| {
        std::fs::metadata(p)
            .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            .unwrap_or(false)
    };
    if binary.is_empty() {
        return Err(NetError::Msg(
            "exec: no command: the binary name is empty".into(),
        ));
    }
    if binary.contains('/') {
        let p = PathBuf::from(binary);
        if is_exec(&p) {
            return Ok(p);
        }
        return Err(NetError::Msg(format!(
            "exec: {binary:?}: stat {binary}: no such executable file"
        )));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        let p = dir.join(binary);
        if is_exec(&p) {
            return Ok(p);
        }
    }
    Err(NetError::Msg(format!(
        "exec: {binary:?}: executable file not found in $PATH"
    )))
}

/// Build the parent-side driver for the parsed options: checks that the helper program exists
/// and probes its features, so it fails before the child is started. The options come from
/// `cli::parse`, which already ran `Options::validate()` (the one place with RootlessKit's
/// validation texts and warnings), so they are not validated again here. Driver-specific
/// warnings (vpnkit MTU) are printed here.
pub fn new_driver(opts: &Options) -> Result<Box<dyn NetworkDriver>, NetError> {
    new_driver_quiet(opts)
}

/// The device name in the child: `--ifname`, else `eth0` for lxc-user-nic and `tap0` otherwise.
pub fn ifname(opts: &Options) -> String {
    opts.ifname
        .clone()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| {
            if opts.net == NetDriver::LxcUserNic {
                "eth0".into()
            } else {
                "tap0".into()
            }
        })
}

/// The tap device slirp4netns will attach to, created by the child in its own network
/// namespace before the parent starts slirp4netns, with `TUNSETPERSIST`.
///
/// Why: when slirp4netns creates the tap itself, the device is unregistered when its fd is
/// closed, inside slirp4netns's exit, and that unregistration waits for RCU grace periods
/// (13–20 ms measured here), so the parent's wait for the killed slirp4netns took most of the
/// run time of `rootlesskit --net=slirp4netns true`. A persistent device survives the close and
/// is deleted by the kernel when the namespace itself goes away, asynchronously, in the
/// namespace cleanup work. slirp4netns's `TUNSETIFF` attaches to the existing device (same
/// flags, no owner set, and it holds CAP_NET_ADMIN in the namespace).
///
/// Returns whether the device was created; failure is not an error (slirp4netns then creates
/// the device as before).
pub fn precreate_slirp4netns_tap(opts: &Options) -> bool {
    if opts.net != NetDriver::Slirp4netns {
        return false;
    }
    tap::open_tap(&ifname(opts), true).is_ok()
}

/// [`new_driver`] without validation and warnings.
pub fn new_driver_quiet(opts: &Options) -> Result<Box<dyn NetworkDriver>, NetError> {
    let cidr = match opts.cidr.as_deref() {
        Some(s) if !s.is_empty() => Cidr::parse(s)?,
        _ => Cidr::parse(DEFAULT_CIDR)?,
    };
    let ifname = ifname(opts);
    match opts.net {
        NetDriver::Host => Ok(Box::new(HostDriver)),
        NetDriver::None => Ok(Box::new(NoneDriver)),
        NetDriver::Slirp4netns => Ok(Box::new(slirp4netns::Slirp4netns::new(
            opts, cidr, ifname,
        )?)),
        NetDriver::Pasta => Ok(Box::new(pasta::Pasta::new(opts, cidr, ifname)?)),
        NetDriver::LxcUserNic => Ok(Box::new(lxc_user_nic::LxcUserNic::new(opts, ifname)?)),
        NetDriver::Vpnkit => Ok(Box::new(vpnkit::Vpnkit::new(opts, ifname)?)),
        NetDriver::GvisorTapVsock => Err(NetError::Msg(
            "--net=gvisor-tap-vsock is not supported by rootlesskit-rs (it needs gVisor's in-process netstack); use --net=slirp4netns (Debian/Ubuntu package \"slirp4netns\") or --net=pasta (package \"passt\") instead".into(),
        )),
    }
}

/// `--net=host`: nothing to do.
struct HostDriver;

impl NetworkDriver for HostDriver {
    fn setup(&mut self, _ctx: &SetupContext) -> Result<NetworkConfig, NetError> {
        Ok(NetworkConfig {
            driver: "host".into(),
            ..Default::default()
        })
    }
    fn info(&self) -> Option<NetworkDriverInfo> {
        None
    }
    fn cleanup(&mut self) -> Result<(), NetError> {
        Ok(())
    }
}

/// `--net=none`: a new netns with only `lo`.
struct NoneDriver;

impl NetworkDriver for NoneDriver {
    fn setup(&mut self, _ctx: &SetupContext) -> Result<NetworkConfig, NetError> {
        Ok(NetworkConfig {
            driver: "none".into(),
            ..Default::default()
        })
    }
    fn info(&self) -> Option<NetworkDriverInfo> {
        Some(NetworkDriverInfo {
            driver: "none".into(),
            ..Default::default()
        })
    }
    fn cleanup(&mut self) -> Result<(), NetError> {
        Ok(())
    }
}

/// Child side: runs inside the user+mount(+net) namespaces as root, after propagation and
/// copy-up, before the command. `detached_netns` is the child's own path to the detached netns
/// (`$STATE/netns`) when `--detach-netns` is set.
///
/// For every driver but host: `lo` up (127.0.0.1/8, ::1). For the drivers with a device: the
/// device up with MTU/address/default route (unless the driver configured it), then
/// `$STATE/resolv.conf` and `$STATE/hosts`, bind-mounted over `/etc/resolv.conf` and
/// `/etc/hosts` and a fresh `/sys` unless detached. Driver-specific child work (lxc-user-nic's
/// DHCP client, vpnkit's frame copier) starts background threads in the calling process, which
/// must stay alive while the command runs.
pub fn configure_child(
    cfg: &NetworkConfig,
    state_dir: &Path,
    detached_netns: Option<&Path>,
) -> Result<(), NetError> {
    if cfg.driver.is_empty() || cfg.driver == "host" {
        return Ok(());
    }
    child::configure(cfg, state_dir, detached_netns)
}

#[cfg(test)]
mod tests;
