//! End-to-end self test of the drivers without the launcher's process model: fork a child that
//! unshares user+mount(+net) namespaces, map it to root, run `driver.setup()` in this process
//! and `configure_child()` in the child, then run a shell script inside and return its output.
//!
//! Opt-in (`#[ignore]`, they change this process's namespaces): `RK_NET_SELFTEST=1`, as a
//! non-root user with unprivileged user namespaces, e.g. `runuser -u rktest -- env
//! RK_NET_SELFTEST=1 <test binary> --ignored ::selftest:: --test-threads=1`, which is what
//! `hack/test.sh` (and so CI) runs as its `selftest` phase. Run any other way they fail and say
//! how to run them.

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::sched::{unshare, CloneFlags};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{fork, ForkResult};

use super::*;

static TRANSPARENT: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Panics, naming the fix, unless the environment is the one these tests need.
fn require_enabled() {
    assert!(
        std::env::var_os("RK_NET_SELFTEST").is_some() && !nix::unistd::getuid().is_root(),
        "network self tests: run as a non-root user with RK_NET_SELFTEST=1 and \
         --test-threads=1 (hack/test.sh does: its selftest phase)"
    );
}

fn read_byte(fd: &OwnedFd) -> bool {
    let mut b = [0u8; 1];
    matches!(nix::unistd::read(fd.as_raw_fd(), &mut b), Ok(1))
}

fn child_main(
    state: &Path,
    detach: bool,
    c2p: OwnedFd,
    p2c: OwnedFd,
    script: &str,
    out: &Path,
) -> Result<(), String> {
    let mut flags = CloneFlags::CLONE_NEWUSER | CloneFlags::CLONE_NEWNS;
    if !detach {
        flags |= CloneFlags::CLONE_NEWNET;
    }
    unshare(flags).map_err(|e| format!("unshare: {e}"))?;
    nix::unistd::write(&c2p, b"u").map_err(|e| e.to_string())?;
    if !read_byte(&p2c) {
        return Err("parent gone".into());
    }
    nix::mount::mount(
        None::<&str>,
        "/",
        None::<&str>,
        nix::mount::MsFlags::MS_REC | nix::mount::MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .map_err(|e| format!("rprivate: {e}"))?;
    let netns = state.join("netns");
    if detach {
        std::fs::write(&netns, b"").map_err(|e| e.to_string())?;
        // SAFETY: the grandchild only makes syscalls and exits with _exit.
        match unsafe { fork() }.map_err(|e| e.to_string())? {
            ForkResult::Child => {
                let ok = unshare(CloneFlags::CLONE_NEWNET).is_ok()
                    && nix::mount::mount(
                        Some("/proc/self/ns/net"),
                        &netns,
                        None::<&str>,
                        nix::mount::MsFlags::MS_BIND,
                        None::<&str>,
                    )
                    .is_ok();
                // SAFETY: _exit is async-signal-safe.
                unsafe { libc::_exit(if ok { 0 } else { 1 }) };
            }
            ForkResult::Parent { child } => match waitpid(child, None) {
                Ok(WaitStatus::Exited(_, 0)) => {}
                other => return Err(format!("creating the detached netns: {other:?}")),
            },
        }
    }
    nix::unistd::write(&c2p, b"r").map_err(|e| e.to_string())?;
    let mut json = String::new();
    std::fs::File::from(p2c)
        .read_to_string(&mut json)
        .map_err(|e| e.to_string())?;
    let cfg: NetworkConfig = serde_json::from_str(&json).map_err(|e| format!("{e}: {json:?}"))?;
    configure_child(&cfg, state, detach.then_some(netns.as_path()))
        .map_err(|e| format!("configure_child: {e}"))?;
    if TRANSPARENT.load(std::sync::atomic::Ordering::Relaxed) {
        super::child::in_netns(detach.then_some(netns.as_path()), setup_transparent_routing)
            .map_err(|e| format!("setup_transparent_routing: {e}"))?;
    }
    if detach {
        super::child::enter_netns(&netns).map_err(|e| e.to_string())?;
    }
    let f = std::fs::File::create(out).map_err(|e| e.to_string())?;
    use std::os::unix::process::CommandExt;
    let e = std::process::Command::new("sh")
        .arg("-c")
        .arg(script)
        .env("STATE", state)
        .stdout(f.try_clone().map_err(|e| e.to_string())?)
        .stderr(f)
        .exec();
    Err(format!("exec sh: {e}"))
}

/// Result of one self-test run.
pub(crate) struct Run {
    pub(crate) output: String,
    pub(crate) status: i32,
    pub(crate) helper_pids_after: Vec<i32>,
}

fn pids_named(prefixes: &[&str]) -> Vec<i32> {
    let me = nix::unistd::getuid().as_raw();
    let mut v = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        use std::os::unix::fs::MetadataExt;
        if e.metadata().map(|m| m.uid()).ok() != Some(me) {
            continue;
        }
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        if prefixes.iter().any(|p| comm.starts_with(p)) {
            v.push(pid);
        }
    }
    v
}

pub(crate) fn run(opts: &Options, script: &str) -> Result<Run, String> {
    let state = nix::unistd::mkdtemp("/tmp/rknet-selftest.XXXXXX").map_err(|e| e.to_string())?;
    let out = PathBuf::from(format!("{}.out", state.display()));
    let before = pids_named(&["slirp4netns", "pasta", "passt"]);
    let mut driver = new_driver_quiet(opts).map_err(|e| e.to_string())?;
    let cloexec = nix::fcntl::OFlag::O_CLOEXEC;
    let (c2p_r, c2p_w) = nix::unistd::pipe2(cloexec).map_err(|e| e.to_string())?;
    let (p2c_r, p2c_w) = nix::unistd::pipe2(cloexec).map_err(|e| e.to_string())?;
    // SAFETY: the child runs child_main and exits with _exit; it never returns into the test
    // harness.
    let child = match unsafe { fork() }.map_err(|e| e.to_string())? {
        ForkResult::Child => {
            drop(c2p_r);
            drop(p2c_w);
            let r = child_main(&state, opts.detach_netns, c2p_w, p2c_r, script, &out);
            if let Err(e) = r {
                let _ = std::fs::write(&out, format!("selftest child error: {e}\n"));
            }
            // SAFETY: _exit is async-signal-safe and skips the harness's atexit handlers.
            unsafe { libc::_exit(99) };
        }
        ForkResult::Parent { child } => child,
    };
    drop(c2p_w);
    drop(p2c_r);
    let res = (|| {
        if !read_byte(&c2p_r) {
            return Err("child failed before unshare".to_string());
        }
        let uid = nix::unistd::getuid().as_raw();
        let gid = nix::unistd::getgid().as_raw();
        std::fs::write(format!("/proc/{child}/uid_map"), format!("0 {uid} 1\n"))
            .map_err(|e| format!("uid_map: {e}"))?;
        std::fs::write(format!("/proc/{child}/setgroups"), "deny\n")
            .map_err(|e| format!("setgroups: {e}"))?;
        std::fs::write(format!("/proc/{child}/gid_map"), format!("0 {gid} 1\n"))
            .map_err(|e| format!("gid_map: {e}"))?;
        nix::unistd::write(&p2c_w, b"m").map_err(|e| e.to_string())?;
        if !read_byte(&c2p_r) {
            return Err("child failed before ready".to_string());
        }
        let ctx = SetupContext {
            child_pid: child.as_raw(),
            state_dir: state.clone(),
            detached_netns: opts.detach_netns.then(|| {
                PathBuf::from(format!(
                    "/proc/{}/root{}/netns",
                    child.as_raw(),
                    state.display()
                ))
            }),
            slirp4netns_api_socket: opts.port_driver == PortDriverKind::Slirp4netns,
        };
        let cfg = driver.setup(&ctx).map_err(|e| e.to_string())?;
        let mut w = std::fs::File::from(p2c_w);
        w.write_all(serde_json::to_string(&cfg).unwrap_or_default().as_bytes())
            .map_err(|e| e.to_string())?;
        drop(w);
        Ok(())
    })();
    if res.is_err() {
        let _ = nix::sys::signal::kill(child, nix::sys::signal::Signal::SIGKILL);
    }
    let status = match waitpid(child, None) {
        Ok(WaitStatus::Exited(_, c)) => c,
        other => -(format!("{other:?}").len() as i32),
    };
    let cleanup = driver.cleanup();
    let output = std::fs::read_to_string(&out).unwrap_or_default();
    let _ = std::fs::remove_file(&out);
    let _ = std::fs::remove_dir_all(&state);
    std::thread::sleep(std::time::Duration::from_millis(200));
    let helper_pids_after = pids_named(&["slirp4netns", "pasta", "passt"])
        .into_iter()
        .filter(|p| !before.contains(p))
        .collect();
    res?;
    cleanup.map_err(|e| e.to_string())?;
    Ok(Run {
        output,
        status,
        helper_pids_after,
    })
}

const CHECK: &str = r#"
ip -o addr show; echo ---; cat /proc/net/route; echo ---; cat /etc/resolv.conf 2>&1; echo ---
cat $STATE/resolv.conf 2>&1; echo ---; ls /sys/class/net; echo ---
ip -o link show tap0; echo ---
"#;

fn check_cidr_net(r: &Run, detached: bool, configured_by_child: bool) {
    let o = &r.output;
    assert_eq!(r.status, 0, "{o}");
    assert!(o.contains("inet 10.0.2.100/24"), "{o}");
    assert!(o.contains("lo    inet 127.0.0.1/8"), "{o}");
    // default route via 10.0.2.2
    assert!(o.contains("tap0\t00000000\t0202000A"), "{o}");
    assert!(
        o.contains("tap0: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 65520"),
        "{o}"
    );
    assert!(o.contains("nameserver 10.0.2.3"), "{o}");
    if !detached {
        // /sys shows the namespace (only lo and tap0)
        assert!(o.contains("lo\ntap0\n"), "{o}");
    }
    let _ = configured_by_child;
    assert!(r.helper_pids_after.is_empty(), "{:?}", r.helper_pids_after);
}

#[test]
#[ignore]
fn selftest_slirp4netns() {
    require_enabled();
    let o = test_opts(NetDriver::Slirp4netns);
    let r = run(&o, CHECK).unwrap();
    check_cidr_net(&r, false, true);
}

#[test]
#[ignore]
fn selftest_slirp4netns_detached() {
    require_enabled();
    let mut o = test_opts(NetDriver::Slirp4netns);
    o.detach_netns = true;
    o.slirp4netns_sandbox = AutoBool::Auto;
    o.slirp4netns_seccomp = AutoBool::Auto;
    let r = run(&o, CHECK).unwrap();
    check_cidr_net(&r, true, true);
}

#[test]
#[ignore]
fn selftest_pasta() {
    require_enabled();
    let o = test_opts(NetDriver::Pasta);
    let r = run(&o, CHECK).unwrap();
    check_cidr_net(&r, false, false);
}

#[test]
#[ignore]
fn selftest_pasta_detached() {
    require_enabled();
    let mut o = test_opts(NetDriver::Pasta);
    o.detach_netns = true;
    let r = run(&o, CHECK).unwrap();
    check_cidr_net(&r, true, false);
}

#[test]
#[ignore]
fn selftest_none() {
    require_enabled();
    for detach in [false, true] {
        let mut o = test_opts(NetDriver::None);
        o.detach_netns = detach;
        let r = run(&o, "ip -o addr show; ls $STATE").unwrap();
        assert_eq!(r.status, 0, "{}", r.output);
        assert!(r.output.contains("lo    inet 127.0.0.1/8"), "{}", r.output);
        assert!(!r.output.contains("tap0"), "{}", r.output);
        assert!(!r.output.contains("resolv.conf"), "{}", r.output);
    }
}

#[test]
#[ignore]
fn selftest_transparent_routing() {
    require_enabled();
    TRANSPARENT.store(true, std::sync::atomic::Ordering::Relaxed);
    let o = test_opts(NetDriver::None);
    let r = run(
        &o,
        "ip rule; ip route show table 100; ip -6 rule; ip -6 route show table 100; cat /proc/sys/net/ipv4/tcp_fwmark_accept",
    );
    TRANSPARENT.store(false, std::sync::atomic::Ordering::Relaxed);
    let r = r.unwrap();
    let o = &r.output;
    assert_eq!(r.status, 0, "{o}");
    assert!(o.contains("100:\tfrom all fwmark 0x64 lookup 100"), "{o}");
    assert!(o.contains("local default dev lo scope host"), "{o}");
    assert!(o.trim_end().ends_with('1'), "{o}");
}
