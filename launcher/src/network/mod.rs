//! Network drivers (owner: network helper).
//!
//! A driver has a parent side ([`NetworkDriver`], runs in the host namespaces after the id maps
//! are written, may start an external program such as slirp4netns or pasta) and a child side
//! ([`configure_child`], runs inside the namespaces as root-in-userns before the command starts).
//! The parent side returns a [`NetworkConfig`] which the lead's process model sends to the child
//! in the handshake; the child applies it with netlink (no `ip` binary needed).

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

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

/// Build the parent-side driver for the parsed options (the options are already validated).
pub fn new_driver(opts: &crate::cli::Options) -> Result<Box<dyn NetworkDriver>, NetError> {
    match opts.net {
        crate::cli::NetDriver::Host => Ok(Box::new(HostDriver)),
        _ => Err(NetError::Msg("network drivers not implemented yet".into())),
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

/// Child side: runs inside the user+mount(+net) namespaces as root, after propagation and
/// copy-up, before the command. `detached_netns` is the child's own path to the detached netns
/// (`$STATE/netns`) when `--detach-netns` is set.
pub fn configure_child(
    _cfg: &NetworkConfig,
    _state_dir: &Path,
    _detached_netns: Option<&Path>,
) -> Result<(), NetError> {
    Ok(())
}
