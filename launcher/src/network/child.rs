//! Child side of the network drivers ([`super::configure_child`]): loopback and device
//! configuration by netlink (inside `$STATE/netns` on a helper thread when detached),
//! `$STATE/resolv.conf` / `$STATE/hosts` and their bind mounts, and the fresh `/sys` that
//! shows the namespace's own `/sys/class/net` (keeping `/sys/fs/cgroup`).

use std::fs;
use std::net::{IpAddr, Ipv4Addr};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use nix::mount::{mount, umount2, MntFlags, MsFlags};

use super::netlink::Netlink;
use super::{NetError, NetworkConfig};

pub(crate) fn configure(
    cfg: &NetworkConfig,
    state_dir: &Path,
    detached: Option<&Path>,
) -> Result<(), NetError> {
    // Devices that the child itself creates or brings in first.
    match cfg.driver.as_str() {
        "vpnkit" => super::vpnkit::child_start(cfg, detached)?,
        "gvisor-tap-vsock" => {
            return Err(NetError::Msg(
                "--net=gvisor-tap-vsock is not supported by rootlesskit-rs".into(),
            ))
        }
        _ => {}
    }
    let dhcp_cfg;
    let cfg = if cfg.driver == "lxc-user-nic" {
        dhcp_cfg = super::lxc_user_nic::child_dhcp(cfg, detached)?;
        &dhcp_cfg
    } else {
        cfg
    };
    in_netns(detached, || configure_links(cfg))?;
    if cfg.driver == "none" {
        return Ok(());
    }
    if cfg.write_resolv_and_hosts {
        let resolv = state_dir.join("resolv.conf");
        write_file(&resolv, resolv_conf(&cfg.dns).as_bytes())?;
        let host_hosts = fs::read_to_string("/etc/hosts").unwrap_or_default();
        let hostname = nix::unistd::gethostname()
            .map(|h| h.to_string_lossy().into_owned())
            .unwrap_or_else(|_| "localhost".into());
        let hosts = state_dir.join("hosts");
        write_file(&hosts, hosts_file(&host_hosts, &hostname).as_bytes())?;
        if detached.is_none() {
            let copied_etc = is_copied_up(Path::new("/etc/resolv.conf"));
            if !copied_etc {
                crate::warn!("Mounting /etc/resolv.conf without copying-up /etc. Note that /etc/resolv.conf in the namespace will be unmounted when it is recreated on the host. Unless /etc/resolv.conf is statically configured, copying-up /etc is highly recommended. Please refer to RootlessKit documentation for further information.");
            }
            bind_over(&resolv, Path::new("/etc/resolv.conf"))?;
            bind_over(&hosts, Path::new("/etc/hosts"))?;
        }
    }
    if detached.is_none() {
        remount_sys();
    }
    Ok(())
}

/// Run `f` in the network namespace at `netns` (on a helper thread, so the calling thread
/// stays where it is), or in the current one when `None`.
pub(crate) fn in_netns<T: Send>(
    netns: Option<&Path>,
    f: impl FnOnce() -> Result<T, NetError> + Send,
) -> Result<T, NetError> {
    let Some(p) = netns else {
        return f();
    };
    std::thread::scope(|s| {
        let h = s.spawn(|| {
            enter_netns(p)?;
            f()
        });
        h.join()
            .unwrap_or_else(|_| Err(NetError::Msg("netns helper thread panicked".into())))
    })
}

/// setns(2) the calling thread into the network namespace at `p`.
pub(crate) fn enter_netns(p: &Path) -> Result<(), NetError> {
    let f = fs::File::open(p).map_err(|e| NetError::io(format!("opening {}", p.display()), e))?;
    nix::sched::setns(f, nix::sched::CloneFlags::CLONE_NEWNET)
        .map_err(|e| NetError::sys(format!("entering the network namespace {}", p.display()), e))
}

/// `lo` up with 127.0.0.1/8, then the driver's device.
pub(crate) fn configure_links(cfg: &NetworkConfig) -> Result<(), NetError> {
    let mut nl = Netlink::open()?;
    nl.link_up("lo")?;
    nl.add_addr("lo", &IpAddr::V4(Ipv4Addr::LOCALHOST), 8)?;
    if !cfg.configure_dev || cfg.dev.is_empty() {
        return Ok(());
    }
    nl.link_up(&cfg.dev)?;
    if cfg.mtu != 0 {
        nl.set_mtu(&cfg.dev, cfg.mtu)?;
    }
    if let Some(ip) = &cfg.ip {
        nl.add_addr(&cfg.dev, ip, cfg.netmask)?;
    }
    if let Some(gw) = &cfg.gateway {
        nl.add_default_route(&cfg.dev, gw)?;
    }
    Ok(())
}

/// `nameserver X` per DNS server, nothing else.
pub fn resolv_conf(dns: &[IpAddr]) -> String {
    dns.iter().map(|d| format!("nameserver {d}\n")).collect()
}

/// The host's /etc/hosts plus the hostname on 127.0.0.1 and ::1.
pub fn hosts_file(host_hosts: &str, hostname: &str) -> String {
    format!("{host_hosts}\n127.0.0.1 {hostname}\n::1 {hostname}\n")
}

fn write_file(p: &Path, data: &[u8]) -> Result<(), NetError> {
    use std::io::Write;
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o644)
        .open(p)
        .map_err(|e| NetError::io(format!("writing {}", p.display()), e))?;
    f.write_all(data)
        .map_err(|e| NetError::io(format!("writing {}", p.display()), e))
}

/// A copied-up `/etc` turns every entry into a symlink to `.roNNNN/<name>`.
fn is_copied_up(p: &Path) -> bool {
    fs::read_link(p)
        .map(|t| t.to_string_lossy().starts_with(".ro"))
        .unwrap_or(false)
}

/// Bind-mount `src` over `dst`; a symlink at `dst` (copied-up /etc) is replaced by an empty
/// file first so the mount does not land on the symlink's target.
fn bind_over(src: &Path, dst: &Path) -> Result<(), NetError> {
    let is_link = fs::symlink_metadata(dst)
        .map(|m| m.file_type().is_symlink())
        .unwrap_or(false);
    if is_link && is_copied_up(dst) {
        fs::remove_file(dst).map_err(|e| NetError::io(format!("removing {}", dst.display()), e))?;
    }
    if fs::symlink_metadata(dst).is_err() {
        write_file(dst, b"")?;
    }
    mount(Some(src), dst, None::<&str>, MsFlags::MS_BIND, None::<&str>).map_err(|e| {
        NetError::sys(
            format!("bind-mounting {} on {}", src.display(), dst.display()),
            e,
        )
    })
}

/// Mount a fresh sysfs on /sys (so /sys/class/net shows this namespace), keeping
/// /sys/fs/cgroup. Failures only warn, like RootlessKit.
pub(crate) fn remount_sys() {
    if let Err(e) = try_remount_sys() {
        crate::warn!("failed to mount sysfs on /sys (read-write and read-only): {e}");
    }
}

fn try_remount_sys() -> Result<(), NetError> {
    let cgroup = Path::new("/sys/fs/cgroup");
    let keep = is_mountpoint(cgroup);
    let tmp = if keep {
        let t = nix::unistd::mkdtemp("/tmp/rksys.XXXXXX")
            .map_err(|e| NetError::sys("creating a temporary directory under /tmp", e))?;
        mount(
            Some(cgroup),
            &t,
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None::<&str>,
        )
        .map_err(|e| NetError::sys(format!("rbind /sys/fs/cgroup to {}", t.display()), e))?;
        Some(t)
    } else {
        None
    };
    let locked = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    let mut last = nix::errno::Errno::UnknownErrno;
    let mut ok = false;
    for flags in [
        MsFlags::empty(),
        locked,
        MsFlags::MS_RDONLY,
        MsFlags::MS_RDONLY | locked,
    ] {
        match mount(Some("none"), "/sys", Some("sysfs"), flags, None::<&str>) {
            Ok(()) => {
                ok = true;
                break;
            }
            Err(e) => last = e,
        }
    }
    let mut res = if ok {
        Ok(())
    } else {
        Err(NetError::sys("mounting sysfs on /sys", last))
    };
    if let Some(t) = tmp {
        if ok {
            if let Err(e) = mount(
                Some(&t),
                cgroup,
                None::<&str>,
                MsFlags::MS_MOVE,
                None::<&str>,
            ) {
                res = Err(NetError::sys(
                    format!("moving {} back to /sys/fs/cgroup", t.display()),
                    e,
                ));
                let _ = umount2(&t, MntFlags::MNT_DETACH);
            }
        } else {
            let _ = umount2(&t, MntFlags::MNT_DETACH);
        }
        let _ = fs::remove_dir(&t);
    }
    res
}

fn is_mountpoint(p: &Path) -> bool {
    let Ok(mi) = fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    let want = p.to_string_lossy();
    mi.lines()
        .any(|l| l.split(' ').nth(4).is_some_and(|m| m == want))
}
