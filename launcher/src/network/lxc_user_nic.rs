//! `--net=lxc-user-nic` (experimental): the SUID `lxc-user-nic` helper of LXC creates a veth
//! pair, attaches the host end to a bridge (`--lxc-user-nic-bridge`, default `lxcbr0`, allowed
//! by `/etc/lxc/lxc-usernet`) and moves the other end into the namespace as `eth0`. The child
//! then gets its address by DHCP (see [`super::dhcp`]) and renews the lease in the background.
//!
//! With `--detach-netns` a helper (`sleep infinity` that entered the child's user namespace and
//! the detached netns) gives lxc-user-nic a PID in that namespace; it is killed right after.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::helper::{describe_exit, Spawn};
use super::netlink::Netlink;
use super::{look_path, NetError, NetworkConfig, NetworkDriver, NetworkDriverInfo, SetupContext};
use crate::cli::Options;

const DHCP_TIMEOUT: Duration = Duration::from_secs(30);

pub(crate) struct LxcUserNic {
    binary: PathBuf,
    mtu: u32,
    bridge: String,
    ifname: String,
}

impl LxcUserNic {
    pub(crate) fn new(opts: &Options, ifname: String) -> Result<Self, NetError> {
        let configured = if opts.lxc_user_nic_binary.is_empty() {
            default_binary()
        } else {
            Some(opts.lxc_user_nic_binary.clone())
        };
        let Some(configured) = configured else {
            return Err(NetError::Msg("lxc-user-nic binary not found: install LXC (Debian/Ubuntu package \"lxc\") or set --lxc-user-nic-binary".into()));
        };
        let binary = look_path(&configured)?;
        if opts.lxc_user_nic_bridge.is_empty() {
            return Err(NetError::Msg(
                "got empty bridge: set --lxc-user-nic-bridge".into(),
            ));
        }
        Ok(LxcUserNic {
            binary,
            mtu: if opts.mtu == 0 { 1500 } else { opts.mtu },
            bridge: opts.lxc_user_nic_bridge.clone(),
            ifname,
        })
    }
}

/// RootlessKit's default `--lxc-user-nic-binary`: the first that exists of
/// `/usr/libexec/lxc/lxc-user-nic`, `/usr/lib/<uname -m>-linux-gnu/lxc/lxc-user-nic`,
/// `/usr/lib/lxc/lxc-user-nic`.
pub fn default_binary() -> Option<String> {
    let machine = nix::sys::utsname::uname()
        .map(|u| u.machine().to_string_lossy().into_owned())
        .unwrap_or_else(|_| "x86_64".into());
    [
        "/usr/libexec/lxc/lxc-user-nic".to_string(),
        format!("/usr/lib/{machine}-linux-gnu/lxc/lxc-user-nic"),
        "/usr/lib/lxc/lxc-user-nic".to_string(),
    ]
    .into_iter()
    .find(|p| Path::new(p).exists())
}

/// argv after the program name.
pub fn build_args(pid: i32, bridge: &str, ifname: &str) -> Vec<String> {
    vec![
        "create".into(),
        "/dev/null".into(),
        "dummy".into(),
        pid.to_string(),
        "veth".into(),
        bridge.into(),
        ifname.into(),
    ]
}

fn ns_ino(p: &Path) -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(p).ok().map(|m| m.ino())
}

impl NetworkDriver for LxcUserNic {
    fn setup(&mut self, ctx: &SetupContext) -> Result<NetworkConfig, NetError> {
        let mut helper = None;
        let mut pid = ctx.child_pid;
        if let Some(netns) = &ctx.detached_netns {
            let open = |p: PathBuf| {
                std::fs::File::open(&p)
                    .map(std::os::fd::OwnedFd::from)
                    .map_err(|e| NetError::io(format!("opening {}", p.display()), e))
            };
            let userns = open(PathBuf::from(format!("/proc/{}/ns/user", ctx.child_pid)))?;
            let net = open(netns.clone())?;
            let sleep = look_path("sleep")?;
            let args = ["infinity".to_string()];
            let h = Spawn {
                name: "lxc-user-nic netns helper",
                binary: &sleep,
                args: &args,
                fd3: None,
                setns: vec![userns, net],
            }
            .spawn()?;
            let want = ns_ino(netns);
            let deadline = Instant::now() + Duration::from_secs(5);
            while ns_ino(Path::new(&format!("/proc/{}/ns/net", h.pid()))) != want {
                if Instant::now() > deadline {
                    return Err(NetError::Msg(
                        "the lxc-user-nic netns helper did not enter the detached netns".into(),
                    ));
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            pid = h.pid();
            helper = Some(h);
        }
        let argv = build_args(pid, &self.bridge, &self.ifname);
        crate::debug!("executing {} {}", self.binary.display(), argv.join(" "));
        let out = Command::new(&self.binary)
            .args(&argv)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| NetError::io(format!("executing {}", self.binary.display()), e));
        if let Some(mut h) = helper {
            let _ = h.kill();
        }
        let out = out?;
        if !out.status.success() {
            let mut s = String::from_utf8_lossy(&out.stdout).into_owned();
            s.push_str(&String::from_utf8_lossy(&out.stderr));
            return Err(NetError::Msg(format!(
                "{} failed: {}: {} (is \"<user> veth {} <count>\" in /etc/lxc/lxc-usernet and does the bridge exist?)",
                self.binary.display(),
                s.trim_end(),
                describe_exit(&out.status),
                self.bridge
            )));
        }
        Ok(NetworkConfig {
            driver: "lxc-user-nic".into(),
            dev: self.ifname.clone(),
            ip: None,
            netmask: 0,
            gateway: None,
            dns: Vec::new(),
            mtu: self.mtu,
            configure_dev: true,
            write_resolv_and_hosts: true,
            opaque: Default::default(),
        })
    }

    fn info(&self) -> Option<NetworkDriverInfo> {
        Some(NetworkDriverInfo {
            driver: "lxc-user-nic".into(),
            dynamic_child_ip: true,
            ..Default::default()
        })
    }

    fn cleanup(&mut self) -> Result<(), NetError> {
        // The veth pair disappears with the namespace.
        Ok(())
    }
}

/// Child side: bring the device up, run DHCP (in the detached netns if any), start the renewal
/// thread and return the configuration with the leased address, router and DNS filled in.
pub(crate) fn child_dhcp(
    cfg: &NetworkConfig,
    detached: Option<&Path>,
) -> Result<NetworkConfig, NetError> {
    let dev = cfg.dev.clone();
    let mtu = cfg.mtu;
    let (ifindex, lease) = super::child::in_netns(detached, || {
        let mut nl = Netlink::open()?;
        nl.link_up(&dev)?;
        if mtu != 0 {
            nl.set_mtu(&dev, mtu)?;
        }
        let idx = nl.link_index(&dev)?;
        crate::debug!("exchanging DHCP messages using {dev}, may take a few seconds");
        let lease = super::dhcp::exchange(&dev, idx, DHCP_TIMEOUT)?;
        Ok((idx, lease))
    })?;
    crate::debug!("DHCP lease on {}: {lease:?}", cfg.dev);
    let Some(router) = lease.router else {
        return Err(NetError::Msg(format!("DHCP on {}: got no Router", cfg.dev)));
    };
    if lease.dns.is_empty() {
        return Err(NetError::Msg(format!("DHCP on {}: got no DNS", cfg.dev)));
    }
    let mut out = cfg.clone();
    out.ip = Some(lease.ip.into());
    out.netmask = lease.prefix;
    out.gateway = Some(router.into());
    out.dns = vec![lease.dns[0].into()];
    super::dhcp::renew_loop(
        cfg.dev.clone(),
        ifindex,
        lease,
        detached.map(Path::to_path_buf),
    );
    Ok(out)
}
