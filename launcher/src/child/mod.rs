//! The rootlesskit child: runs inside the new namespaces (spec §1.5, child side).
//!
//! Created by the parent with `clone(2)` (see [`crate::sys::clone_process`]), so it shares
//! the parent's code and parsed options and needs no re-exec and no environment variables.
//! Order: wait for the id maps -> re-arm pdeathsig -> `/proc` (`--pidns`) -> detached netns ->
//! persistent slirp4netns tap (see [`crate::network::precreate_slirp4netns_tap`]) ->
//! `UserNsReady` -> wait for `Setup` -> propagation -> copy-up -> network configuration
//! (lo, device, resolv.conf/hosts, /sys) -> source-IP routing -> port driver child side ->
//! `ChildReady` -> wait for `Go` -> run the command -> forward signals, reap -> exit with the
//! command's status (255 when it was killed by a signal).

pub mod mounts;
pub mod reaper;

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use crate::cli::Options;
use crate::messages::{self, Message};
use crate::{debug, error, log};

/// Everything the child receives from the parent at clone time.
pub struct ChildArgs {
    pub opts: Options,
    pub state_dir: PathBuf,
    pub handshake: OwnedFd,
    pub port_channel: Option<OwnedFd>,
    pub signals: nix::sys::signalfd::SignalFd,
    pub parent_euid: u32,
    pub parent_egid: u32,
    /// The launcher parent's PID when the child is not PID 1 of a new PID namespace.
    pub parent_pid: Option<nix::unistd::Pid>,
    /// The launcher parent's PID as seen from the host (for `LISTEN_PID`).
    pub launcher_pid: i32,
}

/// Run the child; never returns.
pub fn run(args: ChildArgs) -> ! {
    log::set_role(log::Role::Child);
    let code = match setup(&args) {
        Ok(()) => reaper::run_command(&args),
        Err(msg) => {
            let _ = messages::send(
                &args.handshake,
                &Message::Error {
                    message: msg.clone(),
                },
            );
            error!("{msg}");
            1
        }
    };
    std::process::exit(code);
}

fn setup(a: &ChildArgs) -> Result<(), String> {
    debug!(
        "child started pid={} launcher_pid={} state_dir={}",
        std::process::id(),
        a.launcher_pid,
        a.state_dir.display()
    );
    a.opts.validate_child().map_err(|e| e.to_string())?;
    // The parent holds the other end; if it dies we get EOF (and pdeathsig kills us anyway).
    messages::expect(&a.handshake, "IdmapDone")?;
    arm_pdeathsig(a)?;
    if a.opts.pidns {
        match mounts::mount_proc() {
            Ok(()) => debug!("mounted /proc for the new pid namespace"),
            Err(e) => crate::warn!("{e}"),
        }
    }
    let detached = if a.opts.detach_netns {
        let p = create_detached_netns(&a.state_dir, &a.opts)?;
        debug!(
            "created the detached network namespace path={}",
            p.display()
        );
        Some(p)
    } else {
        if crate::network::precreate_slirp4netns_tap(&a.opts) {
            debug!("created the persistent tap device for slirp4netns");
        }
        None
    };
    messages::send(&a.handshake, &Message::UserNsReady).map_err(|e| e.to_string())?;
    let Message::Setup {
        network,
        builtin_port_driver,
        source_ip_transparent,
    } = messages::expect(&a.handshake, "Setup")?
    else {
        return Err("handshake: expected Setup, got another message".into());
    };
    debug!("setting mount propagation mode={}", a.opts.propagation);
    mounts::set_propagation(&a.opts.propagation).map_err(|e| e.to_string())?;
    if !a.opts.copy_up.is_empty() {
        debug!("copy-up dirs={:?}", a.opts.copy_up);
    }
    mounts::copy_up(&a.opts.copy_up).map_err(|e| e.to_string())?;
    debug!(
        "configuring the network config={}",
        serde_json::to_string(&network).unwrap_or_default()
    );
    crate::network::configure_child(&network, &a.state_dir, detached.as_deref())
        .map_err(|e| e.to_string())?;
    debug!("network configured");
    if builtin_port_driver {
        start_port_child(a, detached.clone(), source_ip_transparent)?;
        debug!(
            "builtin port driver child side started source_ip_transparent={source_ip_transparent}"
        );
    }
    messages::send(&a.handshake, &Message::ChildReady).map_err(|e| e.to_string())?;
    messages::expect(&a.handshake, "Go")?;
    Ok(())
}

/// The builtin port driver's child side: serve socket requests on its own thread (created
/// inside the child's network namespace, or entering the detached one). With
/// `--source-ip-transparent`, the fwmark rule and `local default dev lo` route that let
/// transparent sockets receive their replies are installed first (netlink, no iptables).
fn start_port_child(
    a: &ChildArgs,
    netns: Option<PathBuf>,
    source_ip_transparent: bool,
) -> Result<(), String> {
    if source_ip_transparent {
        let r = match &netns {
            Some(path) => crate::sys::in_netns(path, || {
                crate::network::netlink::setup_transparent_routing()
                    .map_err(|e| std::io::Error::other(e.to_string()))
            }),
            None => crate::network::netlink::setup_transparent_routing()
                .map_err(|e| std::io::Error::other(e.to_string())),
        };
        if let Err(e) = r {
            crate::warn!("source IP preservation disabled: {e}");
        }
    }
    let fd = a
        .port_channel
        .as_ref()
        .ok_or("builtin port driver (child side): the port channel was not passed")?
        .try_clone()
        .map_err(|e| format!("builtin port driver (child side): dup of the port channel: {e}"))?;
    std::thread::Builder::new()
        .name("port-child".into())
        .spawn(move || {
            if let Err(e) = forwarder::channel::serve_child(fd, netns) {
                crate::error!("builtin port driver (child side): {e}");
            }
        })
        .map_err(|e| {
            format!("builtin port driver (child side): failed to spawn its thread: {e}")
        })?;
    Ok(())
}

/// `--detach-netns`: create a network namespace and bind-mount it on `$STATE/netns`, while the
/// child itself stays in the host network namespace.
fn create_detached_netns(state_dir: &Path, opts: &crate::cli::Options) -> Result<PathBuf, String> {
    use std::os::unix::fs::OpenOptionsExt;
    let path = state_dir.join("netns");
    std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o400)
        .open(&path)
        .map_err(|e| format!("failed to create {}: {e}", path.display()))?;
    // A short-lived helper process unshares the netns and bind-mounts its own ns file; the
    // mount namespace is shared with us, so the bind mount stays after the helper exits.
    // SAFETY: the child is single-threaded at this point (no thread has been started yet), so
    // forking is sound; the helper only makes raw syscalls and exits with _exit.
    match unsafe { nix::unistd::fork() } {
        Ok(nix::unistd::ForkResult::Child) => {
            let ok = nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).is_ok()
                && nix::mount::mount(
                    Some("/proc/self/ns/net"),
                    &path,
                    None::<&str>,
                    nix::mount::MsFlags::MS_BIND,
                    None::<&str>,
                )
                .is_ok();
            // Inside the new namespace: the slirp4netns tap, as in the non-detached case.
            let _ = ok && crate::network::precreate_slirp4netns_tap(opts);
            // SAFETY: _exit is async-signal-safe and skips atexit handlers of the copied image.
            unsafe { libc::_exit(if ok { 0 } else { 1 }) }
        }
        Ok(nix::unistd::ForkResult::Parent { child }) => {
            match nix::sys::wait::waitpid(child, None) {
                Ok(nix::sys::wait::WaitStatus::Exited(_, 0)) => Ok(path),
                other => Err(format!(
                    "failed to create the detached network namespace at {}: {other:?}",
                    path.display()
                )),
            }
        }
        Err(e) => Err(format!(
            "fork for --detach-netns (creating {}): {e}",
            path.display()
        )),
    }
}

/// Re-arm the parent-death signal (SIGKILL as PID 1 of a PID namespace, where the whole
/// namespace dies with us; else [`crate::sys::CHILD_PDEATHSIG`], handled in the wait loop).
pub fn arm_pdeathsig(a: &ChildArgs) -> Result<(), String> {
    let sig = if a.parent_pid.is_some() {
        crate::sys::CHILD_PDEATHSIG
    } else {
        libc::SIGKILL
    };
    crate::sys::set_pdeathsig_raw(sig)
        .map_err(|e| format!("prctl(PR_SET_PDEATHSIG, {sig}): {e}"))?;
    if let Some(p) = a.parent_pid {
        if nix::unistd::getppid() != p {
            return Err(format!(
                "the parent (pid {p}) exited during start-up (parent is now pid {})",
                nix::unistd::getppid()
            ));
        }
    }
    Ok(())
}

/// Whether the reaper runs (`--reaper=auto` follows `--pidns`).
pub fn reaper_enabled(opts: &Options) -> bool {
    opts.reaper_enabled()
}
