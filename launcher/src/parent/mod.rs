//! The rootlesskit parent: stays in the host namespaces (spec §1.5, parent side).
//!
//! One entry point, [`run`], does the whole sequence while the process is still
//! single-threaded up to step 4:
//! 1. state dir (created/cleaned, shared flock on the dir, exclusive flock on `lock`);
//! 2. block every signal (a signalfd reads them later), create the handshake and port
//!    `SOCK_SEQPACKET` socketpairs;
//! 3. clone the child into new user+mount (+pid/net/cgroup/uts/ipc) namespaces;
//! 4. `newuidmap`/`newgidmap` for the child, `IdmapDone`;
//! 5. cgroup2 evacuation, network driver setup (slirp4netns, pasta, ...), `Setup` to the child;
//! 6. after `ChildReady`: threads may start: the forwarder, `-p` ports, `child_pid`, the API
//!    server on `api.sock`, then `Go`;
//! 7. forward signals to the child until it exits;
//! 8. teardown in reverse order, running every cleanup and reporting every failure, remove the
//!    state dir, exit with the child's status.

pub mod cgroup;
pub mod idmap;
pub mod services;
pub mod state_dir;

use std::os::fd::OwnedFd;
use std::path::PathBuf;

use nix::sched::CloneFlags;
use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
use nix::sys::wait::waitpid;
use nix::unistd::Pid;

use crate::child::reaper::{wait_forwarding, Status};
use crate::cli::{NetDriver, Options, PortDriverKind};
use crate::messages::{self, Message};
use crate::network::{NetworkConfig, NetworkDriver, SetupContext};
use crate::sys::{clone_process, CloneResult};
use crate::{debug, error, warn};
use state_dir::StateDir;

/// Run rootlesskit as the parent; returns the process exit code.
pub fn run(opts: Options) -> i32 {
    debug!(
        "starting version={} pid={} uid={} gid={} net={} port_driver={} command={:?}",
        crate::VERSION,
        std::process::id(),
        nix::unistd::getuid(),
        nix::unistd::getgid(),
        opts.net.name(),
        opts.port_driver.name(),
        opts.command
    );
    preflight_warnings();
    if let Some(e) = opts.idmap_error() {
        error!("{e}");
        return 1;
    }
    if let Some(name) = opts.evacuate_cgroup2.as_deref().filter(|n| n.contains('/')) {
        error!("unexpected evacuation group name {name:?}: must not contain \"/\"");
        return 1;
    }
    let sd = match StateDir::open(opts.state_dir.as_deref()) {
        Ok(sd) => {
            debug!(
                "state dir ready path={} lock={}",
                sd.path().display(),
                sd.path().join("lock").display()
            );
            sd
        }
        Err(e) => {
            error!("{e}");
            return 1;
        }
    };
    let mut cleanups = Cleanups::default();
    let code = match run_with_state_dir(&opts, &sd, &mut cleanups) {
        Ok(code) => code,
        Err(e) => {
            error!("{e}");
            1
        }
    };
    cleanups.run();
    let path = sd.path().display().to_string();
    match sd.remove() {
        Ok(()) => debug!("state dir removed path={path}"),
        Err(e) => warn!("failed to remove the state dir {path}: {e}"),
    }
    debug!("exiting code={code}");
    code
}

type CleanupFn = Box<dyn FnOnce() -> Result<(), String>>;

/// Teardown steps, run in reverse order of registration; every step runs and every failure is
/// reported.
#[derive(Default)]
pub struct Cleanups {
    steps: Vec<(&'static str, CleanupFn)>,
}

impl Cleanups {
    pub fn push(&mut self, what: &'static str, f: impl FnOnce() -> Result<(), String> + 'static) {
        self.steps.push((what, Box::new(f)));
    }

    pub fn run(&mut self) {
        while let Some((what, f)) = self.steps.pop() {
            debug!("cleanup step={what:?}");
            if let Err(e) = f() {
                warn!("cleanup: {what}: {e}");
            }
        }
    }
}

fn preflight_warnings() {
    if nix::unistd::geteuid().is_root() {
        warn!("Running RootlessKit as the root user is unsupported.");
    }
    if let Ok(s) = std::fs::read_to_string("/proc/sys/kernel/unprivileged_userns_clone") {
        if s.trim() == "0" {
            warn!("/proc/sys/kernel/unprivileged_userns_clone needs to be set to 1.");
        }
    }
    if let Ok(s) = std::fs::read_to_string("/proc/sys/user/max_user_namespaces") {
        if let Ok(n) = s.trim().parse::<u64>() {
            if n < 1024 {
                warn!("/proc/sys/user/max_user_namespaces needs to be set to non-zero (current: {n}); fix: sysctl -w user.max_user_namespaces=28633");
            }
        }
    }
}

fn clone_flags(opts: &Options) -> CloneFlags {
    let mut f = CloneFlags::CLONE_NEWUSER | CloneFlags::CLONE_NEWNS;
    if opts.pidns {
        f |= CloneFlags::CLONE_NEWPID;
    }
    if opts.net != NetDriver::Host && !opts.detach_netns {
        f |= CloneFlags::CLONE_NEWNET;
    }
    if opts.cgroupns {
        f |= CloneFlags::CLONE_NEWCGROUP;
    }
    if opts.utsns {
        f |= CloneFlags::CLONE_NEWUTS;
    }
    if opts.ipcns {
        f |= CloneFlags::CLONE_NEWIPC;
    }
    f
}

/// Explain why creating the user namespace failed, with the fix.
fn clone_error(e: std::io::Error) -> String {
    let mut msg = format!("failed to start the child: clone: {e}");
    let read = |p: &str| {
        std::fs::read_to_string(p)
            .ok()
            .map(|s| s.trim().to_string())
    };
    if read("/proc/sys/user/max_user_namespaces").as_deref() == Some("0") {
        msg.push_str("; user namespaces are disabled: run as root `sysctl -w user.max_user_namespaces=28633`");
    }
    if read("/proc/sys/kernel/unprivileged_userns_clone").as_deref() == Some("0") {
        msg.push_str("; run as root `sysctl -w kernel.unprivileged_userns_clone=1`");
    }
    if read("/proc/sys/kernel/apparmor_restrict_unprivileged_userns").as_deref() == Some("1") {
        msg.push_str("; AppArmor restricts unprivileged user namespaces: run as root `sysctl -w kernel.apparmor_restrict_unprivileged_userns=0`, or install an AppArmor profile with `userns,` for this binary (see https://rootlesscontaine.rs/getting-started/common/apparmor/)");
    }
    msg
}

fn seqpacket_pair() -> Result<(OwnedFd, OwnedFd), String> {
    socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .map_err(|e| format!("socketpair(AF_UNIX, SOCK_SEQPACKET, SOCK_CLOEXEC): {e}"))
}

/// `CLONE_NEWUSER|CLONE_NEWNS|...` for the debug log.
fn clone_flags_text(f: CloneFlags) -> String {
    f.iter_names().map(|(n, _)| n).collect::<Vec<_>>().join("|")
}

/// Kill and reap the child when setup fails half-way.
struct ChildGuard {
    pid: Pid,
    armed: bool,
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if self.armed {
            let _ = nix::sys::signal::kill(self.pid, nix::sys::signal::Signal::SIGKILL);
            let _ = waitpid(self.pid, None);
        }
    }
}

/// The handshake broke: the child reported an error (already printed by the child) or died.
/// Reap it (killing it if it does not exit within 2 s) and describe its end like RootlessKit:
/// `child exited: exit status 1`.
fn child_exited(guard: &mut ChildGuard) -> String {
    use nix::sys::wait::{WaitPidFlag, WaitStatus};
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    loop {
        match waitpid(guard.pid, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(_, c)) => {
                guard.armed = false;
                return format!("child exited: exit status {c}");
            }
            Ok(WaitStatus::Signaled(_, s, _)) => {
                guard.armed = false;
                return format!(
                    "child exited: signal: {}",
                    crate::sys::go_signal_name(s as i32)
                );
            }
            Ok(_) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            _ => return "child stopped responding during start-up; killed it".to_string(),
        }
    }
}

fn run_with_state_dir(
    opts: &Options,
    sd: &StateDir,
    cleanups: &mut Cleanups,
) -> Result<i32, String> {
    let euid = nix::unistd::geteuid().as_raw();
    let egid = nix::unistd::getegid().as_raw();
    let uid = nix::unistd::getuid();
    let user = nix::unistd::User::from_uid(uid).ok().flatten();
    let user_name = user
        .as_ref()
        .map(|u| u.name.clone())
        .unwrap_or_else(|| uid.to_string());
    let primary_gid = user
        .as_ref()
        .map(|u| u.gid.as_raw())
        .unwrap_or_else(|| nix::unistd::getgid().as_raw());
    // Resolve sub-id ranges before cloning so a missing range leaves no child behind.
    let etc = std::path::Path::new("/etc");
    let uid_ranges = idmap::ranges(opts.subid_source, false, &user_name, uid.as_raw(), etc)
        .map_err(|e| e.to_string())?;
    let gid_ranges = idmap::ranges(opts.subid_source, true, &user_name, uid.as_raw(), etc)
        .map_err(|e| e.to_string())?;
    let show = |r: &[idmap::SubIdRange]| {
        r.iter()
            .map(|r| format!("{}:{}", r.start, r.count))
            .collect::<Vec<_>>()
            .join(",")
    };
    debug!(
        "sub-id ranges user={user_name} uid={uid} gid={primary_gid} subuid={} subgid={}",
        show(&uid_ranges),
        show(&gid_ranges)
    );

    let mut net_driver: Box<dyn NetworkDriver> =
        crate::network::new_driver(opts).map_err(|e| e.to_string())?;

    let signals = crate::sys::block_all_signals()
        .map_err(|e| format!("failed to block signals and create a signalfd: {e}"))?;
    let (hs_parent, hs_child) = seqpacket_pair()?;
    let builtin = opts.port_driver == PortDriverKind::Builtin;
    let (port_parent, port_child) = if builtin {
        let (a, b) = seqpacket_pair()?;
        (Some(a), Some(b))
    } else {
        (None, None)
    };

    let parent_pid = nix::unistd::getpid();
    debug!(
        "cloning the child flags={}",
        clone_flags_text(clone_flags(opts))
    );
    // SAFETY: no thread has been started in this process yet (the API server, the forwarder
    // and every other thread start only after ChildReady below).
    let child_pid = match unsafe { clone_process(clone_flags(opts)) } {
        Err(e) => return Err(clone_error(e)),
        Ok(CloneResult::Child) => {
            drop(hs_parent);
            drop(port_parent);
            let args = crate::child::ChildArgs {
                opts: opts.clone(),
                state_dir: sd.path().to_path_buf(),
                handshake: hs_child,
                port_channel: port_child,
                signals,
                parent_euid: euid,
                parent_egid: egid,
                // getppid() is 0 inside a new PID namespace; there the handshake EOF and
                // SIGKILL as pdeathsig are enough.
                parent_pid: (!opts.pidns).then_some(parent_pid),
                launcher_pid: parent_pid.as_raw(),
            };
            // The parent may already be gone; then pdeathsig would never fire.
            if crate::child::arm_pdeathsig(&args).is_err() {
                std::process::exit(1);
            }
            crate::child::run(args);
        }
        Ok(CloneResult::Parent { child }) => child,
    };
    drop(hs_child);
    drop(port_child);
    debug!("child started pid={child_pid}");
    let mut guard = ChildGuard {
        pid: child_pid,
        armed: true,
    };
    let pid = child_pid.as_raw();

    idmap::write_maps(
        pid,
        &idmap::map_args(uid.as_raw(), &uid_ranges),
        &idmap::map_args(primary_gid, &gid_ranges),
    )
    .map_err(|e| e.to_string())?;
    messages::send(&hs_parent, &Message::IdmapDone).map_err(|_| child_exited(&mut guard))?;
    messages::expect(&hs_parent, "UserNsReady").map_err(|_| child_exited(&mut guard))?;

    if let Some(name) = &opts.evacuate_cgroup2 {
        debug!("evacuating cgroup2 name={name}");
        cgroup::evacuate(name);
    }

    let detached_netns = opts.detach_netns.then(|| {
        let rel = sd.path().strip_prefix("/").unwrap_or(sd.path());
        PathBuf::from(format!("/proc/{pid}/root"))
            .join(rel)
            .join("netns")
    });
    let ctx = SetupContext {
        child_pid: pid,
        state_dir: sd.path().to_path_buf(),
        detached_netns,
        slirp4netns_api_socket: opts.port_driver == PortDriverKind::Slirp4netns,
    };
    debug!(
        "network driver setup driver={} child_pid={pid}",
        opts.net.name()
    );
    let net_cfg: NetworkConfig = match net_driver.setup(&ctx) {
        Ok(c) => c,
        Err(e) => {
            debug!("network driver failed driver={} error={e}", opts.net.name());
            let _ = net_driver.cleanup();
            return Err(e.to_string());
        }
    };
    debug!(
        "network driver ready driver={} config={}",
        opts.net.name(),
        serde_json::to_string(&net_cfg).unwrap_or_default()
    );
    let net_info = net_driver.info();
    cleanups.push("network driver", move || {
        net_driver.cleanup().map_err(|e| e.to_string())
    });
    messages::send(
        &hs_parent,
        &Message::Setup {
            network: net_cfg,
            builtin_port_driver: builtin,
            source_ip_transparent: builtin && opts.source_ip_transparent,
        },
    )
    .map_err(|_| child_exited(&mut guard))?;
    messages::expect(&hs_parent, "ChildReady").map_err(|_| child_exited(&mut guard))?;

    // From here on threads may exist.
    let port_driver = services::start(
        opts,
        sd.path(),
        pid,
        port_parent,
        net_info.as_ref(),
        cleanups,
    )?;
    sd.write_child_pid(pid).map_err(|e| e.to_string())?;
    debug!(
        "wrote child_pid path={} pid={pid}",
        sd.path().join("child_pid").display()
    );
    services::start_api(sd.path(), pid, net_info, port_driver, cleanups)?;
    messages::send(&hs_parent, &Message::Go).map_err(|_| child_exited(&mut guard))?;
    drop(hs_parent);

    guard.armed = false;
    debug!("waiting for the child pid={pid}");
    let status = wait_forwarding(&signals, child_pid, false, None);
    debug!("child exited pid={pid} status=\"{status}\"");
    Ok(match status {
        Status::Code(0) => 0,
        Status::Code(c) => {
            error!("child exited: exit status {c}");
            c
        }
        Status::Signal(s) => {
            error!("child exited: signal: {}", crate::sys::go_signal_name(s));
            255
        }
    })
}
