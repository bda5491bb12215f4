//! Security properties of the real binaries, run as the unprivileged user `rktest`.
//!
//! - No file descriptor of rootlesskit (handshake sockets, lock, signalfd, driver sockets,
//!   listeners, ...) leaks into the command: it sees exactly the fds rootlesskit itself was
//!   started with (0, 1, 2 and one the user passed on purpose), for every network/port driver.
//! - `api.sock` and the state directory cannot be used by another local user (`as_root`:
//!   a second user is created).
//! - `--disable-host-loopback`: nothing in the namespace reaches the host's 127.0.0.1 / ::1
//!   (TCP and UDP) through slirp4netns or pasta; without the flag slirp4netns reaches it via
//!   10.0.2.2 (positive control). The pasta cases run in a private network namespace with a
//!   dummy uplink (`as_root`), so no probe ever leaves the machine.
//! - After `kill -9` of the parent no process is left: the command, its own children
//!   (background, orphaned and `setsid` ones), slirp4netns/pasta; with and without `--pidns`.
//!
//! Run: `cargo test -p rootlesskit-tests --test security` (as `rktest`; as root the binaries
//! are still run as `rktest` and the `as_root` tests run too).

mod reliability_support;

use std::collections::BTreeSet;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::Duration;

use reliability_support::*;

// ------------------------------------------------------------------------------------------
// fd leaks

/// Run rootlesskit with exactly fds 0, 1, 2 and `7 -> /dev/null` (the fd "the user passed"),
/// command `ls -l /proc/self/fd`; returns the command's fds (without ls's own directory fd).
fn command_fds(flags: &[&str]) -> BTreeSet<u32> {
    let dir = TempDir::new("fd");
    let out = std::fs::File::create(dir.path().join("out")).unwrap();
    let err = std::fs::File::create(dir.path().join("err")).unwrap();
    let mut c = cmd_user(bin("rootlesskit"));
    c.arg(format!("--state-dir={}/state", dir.path().display()))
        .args(flags)
        .args(["--", "ls", "-l", "/proc/self/fd"])
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err);
    // SAFETY: close_range/open/dup2/close are async-signal-safe.
    unsafe {
        c.pre_exec(|| {
            libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32);
            let fd = libc::open(c"/dev/null".as_ptr(), libc::O_RDONLY);
            if fd < 0 || libc::dup2(fd, 7) != 7 {
                return Err(std::io::Error::last_os_error());
            }
            libc::close(fd);
            Ok(())
        });
    }
    let mut child = c.spawn().expect("spawn rootlesskit");
    let ok = wait_until(Duration::from_secs(60), || {
        child.try_wait().unwrap().is_some()
    });
    if !ok {
        let _ = child.kill();
    }
    let st = child.wait().unwrap();
    let out = std::fs::read_to_string(dir.path().join("out")).unwrap();
    let err = std::fs::read_to_string(dir.path().join("err")).unwrap();
    assert!(
        !err.contains("not built yet"),
        "{flags:?}: {err} (build the workspace first: cargo build --workspace --bins; hack/test.sh does)"
    );
    assert!(
        st.success(),
        "{flags:?}: {st}\nstdout: {out}\nstderr: {err}"
    );
    let mut fds = BTreeSet::new();
    for line in out.lines() {
        // lrwx------ 1 root root 64 Nov 29 10:55 3 -> /proc/20577/fd
        let Some((left, target)) = line.split_once(" -> ") else {
            continue;
        };
        let fd: u32 = left.rsplit(' ').next().unwrap().parse().unwrap();
        if target.starts_with("/proc/") && target.ends_with("/fd") {
            continue; // ls's own opendir()
        }
        fds.insert(fd);
    }
    eprintln!("{flags:?}: command fds {fds:?}");
    fds
}

fn assert_no_fd_leak(flags: &[&str]) {
    let fds = command_fds(flags);
    assert_eq!(
        fds,
        BTreeSet::from([0, 1, 2, 7]),
        "{flags:?}: the command must see only 0,1,2 and the user's fd 7"
    );
}

#[test]
fn no_fd_leak_host() {
    if can_run(&[]) {
        assert_no_fd_leak(&["--net=host"]);
    }
}

#[test]
fn no_fd_leak_host_pidns_reaper_false() {
    if can_run(&[]) {
        assert_no_fd_leak(&["--net=host", "--pidns", "--reaper=false"]);
        assert_no_fd_leak(&["--net=host", "--pidns", "--cgroupns", "--utsns", "--ipcns"]);
    }
}

#[test]
fn no_fd_leak_none() {
    if can_run(&[]) {
        assert_no_fd_leak(&["--net=none"]);
    }
}

#[test]
fn no_fd_leak_slirp4netns_port_driver() {
    if can_run(&["slirp4netns"]) {
        let p = format!("127.0.0.1:{}:80/tcp", free_port());
        assert_no_fd_leak(&[
            "--net=slirp4netns",
            "--port-driver=slirp4netns",
            "-p",
            &p,
            "--disable-host-loopback",
        ]);
    }
}

#[test]
fn no_fd_leak_slirp4netns_detach_netns() {
    if can_run(&["slirp4netns"]) {
        assert_no_fd_leak(&["--net=slirp4netns", "--detach-netns", "--pidns"]);
    }
}

#[test]
fn no_fd_leak_pasta() {
    if can_run(&["pasta"]) {
        assert_no_fd_leak(&["--net=pasta", "--port-driver=implicit"]);
    }
}

#[test]
fn no_fd_leak_builtin_port_driver() {
    if can_run(&["slirp4netns"]) {
        let p = format!("127.0.0.1:{}:80/tcp", free_port());
        assert_no_fd_leak(&["--net=slirp4netns", "--port-driver=builtin", "-p", &p]);
    }
}

/// Socket activation: the fds the user passes with LISTEN_FDS are the only extra ones.
#[test]
fn no_fd_leak_socket_activation() {
    if !can_run(&["sh"]) {
        return;
    }
    let dir = TempDir::new("fdsa");
    let script = format!(
        "exec 3</dev/null 4</dev/null; export LISTEN_PID=$$ LISTEN_FDS=2; \
         exec {} --state-dir={}/state --net=slirp4netns -- ls -l /proc/self/fd",
        bin("rootlesskit").display(),
        dir.path().display()
    );
    let mut c = cmd_user("sh");
    c.args(["-c", &script]).stdin(Stdio::null());
    // SAFETY: close_range is async-signal-safe.
    unsafe {
        c.pre_exec(|| {
            libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32);
            Ok(())
        });
    }
    let out = c.output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let fds: BTreeSet<u32> = text
        .lines()
        .filter_map(|l| l.split_once(" -> "))
        .filter(|(_, t)| !(t.starts_with("/proc/") && t.ends_with("/fd")))
        .map(|(l, _)| l.rsplit(' ').next().unwrap().parse().unwrap())
        .collect();
    assert_eq!(fds, BTreeSet::from([0, 1, 2, 3, 4]), "{text}");
}

// ------------------------------------------------------------------------------------------
// state dir and api.sock vs another local user

const OTHER: &str = "rkother";

fn other_user() -> Option<(u32, u32)> {
    if nix::unistd::User::from_name(OTHER).ok().flatten().is_none() {
        let st = Command::new("useradd")
            .args(["--system", "--no-create-home", "--shell", "/bin/sh", OTHER])
            .status()
            .ok()?;
        if !st.success() {
            return None;
        }
    }
    let u = nix::unistd::User::from_name(OTHER).ok().flatten()?;
    Some((u.uid.as_raw(), u.gid.as_raw()))
}

fn as_other(ids: (u32, u32), args: &[&str]) -> std::process::Output {
    cmd_as(args[0], ids)
        .args(&args[1..])
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// Find the state dir of a rootlesskit parent started without `--state-dir` (its `lock` fd).
fn state_dir_of(pid: i32) -> std::path::PathBuf {
    for e in std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .flatten()
    {
        if let Ok(t) = std::fs::read_link(e.path()) {
            if t.file_name().is_some_and(|n| n == "lock") {
                return t.parent().unwrap().to_path_buf();
            }
        }
    }
    panic!("no lock fd in /proc/{pid}/fd");
}

fn check_other_user_locked_out(state: &std::path::Path, other: (u32, u32), default_dir: bool) {
    let sock = state.join("api.sock");
    let sock_s = sock.to_str().unwrap();
    // rootlessctl as the other user.
    let o = as_other(
        other,
        &[
            bin("rootlessctl").to_str().unwrap(),
            &format!("--socket={sock_s}"),
            "list-ports",
        ],
    );
    assert!(
        !o.status.success(),
        "{OTHER} could use api.sock with rootlessctl: {}",
        String::from_utf8_lossy(&o.stdout)
    );
    // A raw connect + HTTP request.
    let o = as_other(
        other,
        &["socat", "-T2", "-", &format!("UNIX-CONNECT:{sock_s}")],
    );
    assert!(!o.status.success(), "{OTHER} could connect to {sock_s}");
    // Creating or removing files in the state dir.
    let x = state.join("x");
    let o = as_other(other, &["touch", x.to_str().unwrap()]);
    assert!(
        !o.status.success() && !x.exists(),
        "{OTHER} could write into the state dir"
    );
    let o = as_other(other, &["rm", "-f", state.join("lock").to_str().unwrap()]);
    assert!(
        state.join("lock").exists(),
        "{OTHER} could remove lock: {o:?}"
    );
    if default_dir {
        let o = as_other(other, &["ls", state.to_str().unwrap()]);
        assert!(
            !o.status.success(),
            "{OTHER} could list the default (0700) state dir"
        );
    }
    // The owner can connect (positive control).
    let o = cmd_user("socat")
        .args(["-T2", "-", &format!("UNIX-CONNECT:{sock_s}")])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "owner cannot connect to api.sock: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn as_root_state_dir_and_api_sock_private() {
    assert!(
        is_root(),
        "needs root: it belongs to the as_root phase of `sudo bash hack/test.sh`"
    );
    if !can_run(&["socat"]) {
        return;
    }
    let other = other_user().unwrap_or_else(|| {
        panic!("cannot create the second user {OTHER} (useradd failed): run as root with useradd available (package passwd)")
    });
    // Explicit --state-dir (RootlessKit creates it 0755; the socket must still refuse others).
    {
        let kit = Kit::start(&["--net=host"], &["sleep", "60"]);
        check_other_user_locked_out(&kit.state, other, false);
    }
    // Default temp state dir (mode 0700).
    {
        let dir = TempDir::new("defstate");
        let mut c = cmd_user(bin("rootlesskit"));
        c.env("TMPDIR", dir.path())
            .args(["--net=host", "--", "sleep", "60"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let mut child = c.spawn().unwrap();
        let pid = child.id() as i32;
        let ready = wait_until(Duration::from_secs(20), || {
            std::fs::read_dir(dir.path())
                .map(|rd| rd.flatten().any(|e| e.path().join("api.sock").exists()))
                .unwrap_or(false)
        });
        let state = if ready { Some(state_dir_of(pid)) } else { None };
        let res = std::panic::catch_unwind(|| {
            let state = state.expect("not ready");
            let mode = std::os::unix::fs::PermissionsExt::mode(
                &std::fs::metadata(&state).unwrap().permissions(),
            );
            assert_eq!(mode & 0o777, 0o700, "default state dir mode");
            check_other_user_locked_out(&state, other, true);
        });
        let _ = child.kill();
        let _ = child.wait();
        if let Err(e) = res {
            std::panic::resume_unwind(e);
        }
    }
}

// ------------------------------------------------------------------------------------------
// --disable-host-loopback

/// Listeners on the host's 127.0.0.1 and ::1 (TCP and UDP, socat appending what they receive
/// to files), then rootlesskit with `flags` runs a probe that sends a token to every candidate
/// address over TCP and UDP. Returns the names of the listeners that received something.
/// With `private_netns`, everything runs in a new network namespace with a veth uplink
/// (veth; 192.0.2.2/24 via 192.0.2.1, fd00::2/64 via fd00::1) so nothing leaves the machine.
fn loopback_reached(flags: &[&str], private_netns: bool) -> BTreeSet<String> {
    let dir = TempDir::new("lo");
    let d = dir.path().display().to_string();
    let port = free_port();
    let probe = format!(
        r#"
P={port}
addrs4="10.0.2.2 10.0.2.3 127.0.0.1 $(ip -4 route show default | awk '{{print $3}}')"
addrs6="::1 fd00::2 fd00::1 $(ip -6 route show default | awk '{{print $3}}')"
for a in $addrs4; do
  echo "tcp4 $a" | timeout 4 socat -t0.5 -T2 - TCP4:$a:$P,connect-timeout=2 2>/dev/null &
  echo "udp4 $a" | timeout 3 socat -t0.2 -T1 - UDP4-SENDTO:$a:$P 2>/dev/null &
done
for a in $addrs6; do
  echo "tcp6 $a" | timeout 4 socat -t0.5 -T2 - TCP6:[$a]:$P,connect-timeout=2 2>/dev/null &
  echo "udp6 $a" | timeout 3 socat -t0.2 -T1 - UDP6-SENDTO:[$a]:$P 2>/dev/null &
done
wait
echo probe-done
"#
    );
    std::fs::write(dir.path().join("probe.sh"), probe).unwrap();
    let rk = format!(
        "{} --state-dir={d}/state {} -- sh {d}/probe.sh",
        bin("rootlesskit").display(),
        flags.join(" ")
    );
    let (uid, _) = target_ids().unwrap();
    let user = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
        .unwrap()
        .unwrap()
        .name;
    let run_rk = if is_root() {
        format!("runuser -u {user} -- {rk}")
    } else {
        rk
    };
    let setup = if private_netns {
        "ip link set lo up
ip link add eth0 type veth peer name eth1
ip link set eth1 up
ip addr add 192.0.2.2/24 dev eth0
ip -6 addr add fd00::2/64 dev eth0 nodad
ip link set eth0 up
ip route add default via 192.0.2.1
ip -6 route add default via fd00::1 dev eth0"
    } else {
        ""
    };
    let script = format!(
        r#"set -e
{setup}
for f in tcp4 tcp6 udp4 udp6; do : > {d}/$f; done
chmod 0666 {d}/*
socat -u TCP4-LISTEN:{port},bind=127.0.0.1,reuseaddr,fork OPEN:{d}/tcp4,append & L1=$!
socat -u TCP6-LISTEN:{port},bind=[::1],reuseaddr,fork OPEN:{d}/tcp6,append & L2=$!
socat -u UDP4-RECV:{port},bind=127.0.0.1 OPEN:{d}/udp4,append & L3=$!
socat -u UDP6-RECV:{port},bind=[::1] OPEN:{d}/udp6,append & L4=$!
sleep 0.5
set +e
timeout -s KILL 60 {run_rk} > {d}/rk.out 2> {d}/rk.err < /dev/null
echo "rc=$?" >> {d}/rk.out
sleep 0.5
kill -9 $L1 $L2 $L3 $L4 2>/dev/null
wait $L1 $L2 $L3 $L4 2>/dev/null
exit 0
"#
    );
    let mut c = if private_netns {
        let mut c = Command::new("unshare");
        c.args(["--net", "--", "sh", "-c", &script]);
        c
    } else {
        let mut c = Command::new("sh");
        c.args(["-c", &script]);
        c
    };
    let out = c.stdin(Stdio::null()).output().unwrap();
    let rk_out = std::fs::read_to_string(dir.path().join("rk.out")).unwrap_or_default();
    let rk_err = std::fs::read_to_string(dir.path().join("rk.err")).unwrap_or_default();
    assert!(
        rk_out.contains("probe-done"),
        "{flags:?}: probe did not run: {:?}\nrk.out: {rk_out}\nrk.err: {rk_err}",
        out
    );
    let mut reached = BTreeSet::new();
    for f in ["tcp4", "tcp6", "udp4", "udp6"] {
        let got = std::fs::read_to_string(dir.path().join(f)).unwrap_or_default();
        for line in got.lines() {
            reached.insert(format!("host {f} listener <- {line}"));
        }
    }
    eprintln!("{flags:?} private_netns={private_netns}: reached {reached:?}");
    reached
}

#[test]
fn disable_host_loopback_slirp4netns() {
    if !can_run(&["slirp4netns", "socat", "ip"]) {
        return;
    }
    let reached = loopback_reached(
        &["--net=slirp4netns", "--ipv6", "--disable-host-loopback"],
        false,
    );
    assert!(reached.is_empty(), "host loopback reached: {reached:?}");
    // Positive control: without the flag, 10.0.2.2 is the host's loopback.
    let reached = loopback_reached(&["--net=slirp4netns", "--ipv6"], false);
    assert!(
        reached.contains("host tcp4 listener <- tcp4 10.0.2.2"),
        "positive control failed: {reached:?}"
    );
    assert!(
        reached.contains("host udp4 listener <- udp4 10.0.2.2"),
        "positive control (udp) failed: {reached:?}"
    );
}

#[test]
fn as_root_disable_host_loopback_pasta_private_netns() {
    assert!(
        is_root(),
        "needs root: it belongs to the as_root phase of `sudo bash hack/test.sh`"
    );
    if !can_run(&["pasta", "socat", "ip", "unshare", "runuser"]) {
        return;
    }
    let reached = loopback_reached(&["--net=pasta", "--disable-host-loopback"], true);
    assert!(reached.is_empty(), "host loopback reached: {reached:?}");
    // Informational: what pasta reaches without the flag (map-gw).
    let reached = loopback_reached(&["--net=pasta"], true);
    eprintln!("pasta without --disable-host-loopback reaches: {reached:?}");
}

#[test]
fn as_root_disable_host_loopback_slirp4netns_private_netns() {
    assert!(
        is_root(),
        "needs root: it belongs to the as_root phase of `sudo bash hack/test.sh`"
    );
    if !can_run(&["slirp4netns", "socat", "ip", "unshare", "runuser"]) {
        return;
    }
    let reached = loopback_reached(
        &["--net=slirp4netns", "--ipv6", "--disable-host-loopback"],
        true,
    );
    assert!(reached.is_empty(), "host loopback reached: {reached:?}");
}

// ------------------------------------------------------------------------------------------
// kill -9 of the parent

fn sigkill_leaves_nothing(flags: &[&str]) {
    let base: u32 = 800_000 + rand::random::<u32>() % 100_000;
    let m: Vec<String> = (0..4).map(|i| format!("{}", base * 10 + i)).collect();
    // background child, orphaned grandchild, setsid'd grandchild, and the command itself.
    let script = format!(
        "sleep {} & (sleep {} &) ; (setsid sleep {} &) ; exec sleep {}",
        m[0], m[1], m[2], m[3]
    );
    let mut kit = Kit::start(flags, &["sh", "-c", &script]);
    let markers = |m: &[String]| -> Vec<i32> {
        m.iter()
            .flat_map(|x| pids_with_exact_cmdline(&format!("sleep {x}")))
            .collect()
    };
    assert!(
        wait_until(Duration::from_secs(20), || markers(&m).len() == 4),
        "{flags:?}: command processes not all started: {:?}\n{}",
        markers(&m),
        kit.stderr()
    );
    let parent = kit.pid();
    let child = kit.child_pid();
    let helpers: Vec<i32> = children_of(parent)
        .into_iter()
        .filter(|&p| p != child)
        .collect();
    let helper_names: Vec<String> = helpers.iter().map(|&p| comm(p)).collect();
    let mut watched: Vec<i32> = markers(&m);
    watched.push(child);
    watched.extend(&helpers);
    kit.signal(nix::sys::signal::Signal::SIGKILL);
    let _ = kit.wait_timeout(Duration::from_secs(5));
    let gone = wait_until(Duration::from_secs(10), || {
        watched.iter().all(|&p| !alive(p))
    });
    let left: Vec<(i32, String)> = watched
        .iter()
        .filter(|&&p| alive(p))
        .map(|&p| (p, comm(p)))
        .collect();
    // Never leave processes behind on the shared machine, even when the test fails.
    for (p, _) in &left {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(*p),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    assert!(
        gone,
        "{flags:?}: left after kill -9 of the parent: {left:?} (helpers were {helper_names:?})"
    );
}

#[test]
fn sigkill_parent_slirp4netns() {
    if can_run(&["slirp4netns", "setsid"]) {
        sigkill_leaves_nothing(&["--net=slirp4netns", "--port-driver=slirp4netns"]);
    }
}

#[test]
fn sigkill_parent_slirp4netns_pidns() {
    if can_run(&["slirp4netns", "setsid"]) {
        sigkill_leaves_nothing(&["--net=slirp4netns", "--pidns"]);
    }
}

#[test]
fn sigkill_parent_pasta() {
    if can_run(&["pasta", "setsid"]) {
        sigkill_leaves_nothing(&["--net=pasta"]);
    }
}

#[test]
fn sigkill_parent_pasta_pidns() {
    if can_run(&["pasta", "setsid"]) {
        sigkill_leaves_nothing(&["--net=pasta", "--pidns"]);
    }
}

#[test]
fn sigkill_parent_slirp4netns_port_driver_detach_netns() {
    if can_run(&["slirp4netns", "setsid"]) {
        sigkill_leaves_nothing(&[
            "--net=slirp4netns",
            "--port-driver=slirp4netns",
            "--detach-netns",
        ]);
    }
}

#[test]
fn sigkill_parent_host_reaper_false() {
    if can_run(&["setsid"]) {
        sigkill_leaves_nothing(&["--net=host", "--reaper=false"]);
    }
}
