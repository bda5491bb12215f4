//! Shared helpers of the security and reliability suites (`security.rs`, `reliability.rs`).
//!
//! The real binaries always run as the unprivileged user `rktest` (uid 1001 with subuid
//! ranges): directly when the test process already is that user (hack/test.sh's normal
//! phase), through `setuid` in `pre_exec` when the test runs as root (the `as_root` phase or a
//! developer running `cargo test` as root). Binaries come from `RK_BIN_DIR`, else
//! `<workspace>/target/debug` (built there if missing and we are root).
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub const USER: &str = "rktest";

/// Directory holding `rootlesskit`, `rootlessctl`, ...
pub fn bin_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        if let Some(d) = std::env::var_os("RK_BIN_DIR").filter(|d| !d.is_empty()) {
            return PathBuf::from(d);
        }
        if let Some(b) = std::env::var_os("RK_BIN").filter(|d| !d.is_empty()) {
            if let Some(parent) = Path::new(&b).parent() {
                return parent.to_path_buf();
            }
        }
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| root.join("target"));
        let dir = target.join("debug");
        if is_root() && (!dir.join("rootlesskit").exists() || !dir.join("rootlessctl").exists()) {
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            let st = Command::new(cargo)
                .args(["build", "-p", "rootlesskit-launcher", "--bins"])
                .current_dir(root)
                .status()
                .expect("cargo build");
            assert!(st.success(), "building the binaries failed");
        }
        dir
    })
}

/// `RK_BIN` overrides `rootlesskit` exactly (as in the shared harness).
pub fn bin(name: &str) -> PathBuf {
    match std::env::var_os("RK_BIN").filter(|b| !b.is_empty()) {
        Some(b) if name == "rootlesskit" => PathBuf::from(b),
        _ => bin_dir().join(name),
    }
}

/// uid/gid of `rktest`, or of the current user when it is not root.
pub fn target_ids() -> Option<(u32, u32)> {
    let me = nix::unistd::geteuid();
    if !me.is_root() {
        return Some((me.as_raw(), nix::unistd::getegid().as_raw()));
    }
    let u = nix::unistd::User::from_name(USER).ok().flatten()?;
    Some((u.uid.as_raw(), u.gid.as_raw()))
}

pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Preconditions of a test: the user `rktest` (or a non-root user with subuids) and the tools.
/// A missing prerequisite fails the test with the command that fixes it (never a silent skip);
/// returns true so call sites read `if !can_run(..) { return; }`.
pub fn can_run(tools: &[&str]) -> bool {
    assert!(
        target_ids().is_some(),
        "needs the user {USER} with subuid/subgid ranges, or a non-root user with subuids: run the suite through `sudo bash hack/test.sh`, which creates it"
    );
    for t in tools {
        assert!(
            which(t).is_some(),
            "{t} not found in PATH: apt-get install {} (hack/test.sh installs it)",
            debian_package(t)
        );
    }
    true
}

/// The Debian package that provides a tool used by these tests.
fn debian_package(tool: &str) -> &str {
    match tool {
        "newuidmap" | "newgidmap" => "uidmap",
        "pasta" => "passt",
        "nc" => "netcat-openbsd",
        other => other,
    }
}

pub fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/sbin:/usr/bin:/sbin:/bin".into());
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// A command that runs as uid/gid `ids` (no-op when we already are that user).
pub fn cmd_as(program: impl AsRef<std::ffi::OsStr>, ids: (u32, u32)) -> Command {
    let mut c = Command::new(program);
    if is_root() && ids.0 != 0 {
        let (uid, gid) = ids;
        let home = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
            .ok()
            .flatten()
            .map(|u| u.dir)
            .unwrap_or_else(|| "/".into());
        c.env("HOME", home).env_remove("XDG_RUNTIME_DIR");
        // SAFETY: only async-signal-safe syscalls between fork and exec.
        unsafe {
            c.pre_exec(move || {
                if libc::setgroups(0, std::ptr::null()) != 0
                    || libc::setresgid(gid, gid, gid) != 0
                    || libc::setresuid(uid, uid, uid) != 0
                {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    c
}

/// A command that runs as `rktest` (or the current non-root user).
pub fn cmd_user(program: impl AsRef<std::ffi::OsStr>) -> Command {
    cmd_as(program, target_ids().expect("test user"))
}

/// The test process's RLIMIT_NOFILE soft limit before [`raise_own_nofile`].
static ORIGINAL_NOFILE: OnceLock<(u64, u64)> = OnceLock::new();

/// Raise this (client) process's soft RLIMIT_NOFILE to its hard limit, so thousands of client
/// connections fit. rootlesskit is still started with the original limits (see
/// [`Kit::start_opts`]), as a user's shell would start it.
pub fn raise_own_nofile() {
    ORIGINAL_NOFILE.get_or_init(|| {
        let mut l = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit/setrlimit with a valid struct.
        unsafe {
            libc::getrlimit(libc::RLIMIT_NOFILE, &mut l);
            let orig = (l.rlim_cur, l.rlim_max);
            l.rlim_cur = l.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &l);
            orig
        }
    });
}

/// A temporary directory, owned by the test user, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        let p = std::env::temp_dir().join(format!(
            "rk-rel-{tag}-{}-{}",
            std::process::id(),
            rand::random::<u32>()
        ));
        std::fs::create_dir_all(&p).unwrap();
        if let Some((uid, gid)) = target_ids() {
            let _ = std::os::unix::fs::chown(&p, Some(uid), Some(gid));
        }
        TempDir(p)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A running `rootlesskit` (the parent process), killed on drop.
pub struct Kit {
    pub child: Child,
    pub dir: TempDir,
    pub state: PathBuf,
    reaped: Option<ExitStatus>,
}

pub struct KitOpts<'a> {
    pub flags: Vec<String>,
    pub command: Vec<String>,
    /// Wait for api.sock (false: return right after spawning).
    pub wait_ready: bool,
    pub state: Option<&'a Path>,
    /// Extra environment for rootlesskit.
    pub env: Vec<(String, String)>,
    /// RLIMIT_NOFILE (soft = hard) for rootlesskit and everything it starts.
    pub nofile: Option<u64>,
}

impl Kit {
    /// `rootlesskit --state-dir=<tmp>/state FLAGS -- COMMAND`, stdout/stderr to files.
    pub fn start(flags: &[&str], command: &[&str]) -> Kit {
        Self::start_opts(KitOpts {
            flags: flags.iter().map(|s| s.to_string()).collect(),
            command: command.iter().map(|s| s.to_string()).collect(),
            wait_ready: true,
            state: None,
            env: Vec::new(),
            nofile: None,
        })
    }

    pub fn start_opts(o: KitOpts) -> Kit {
        let dir = TempDir::new("kit");
        let state = o
            .state
            .map(Path::to_path_buf)
            .unwrap_or_else(|| dir.path().join("state"));
        let out = std::fs::File::create(dir.path().join("stdout")).unwrap();
        let err = std::fs::File::create(dir.path().join("stderr")).unwrap();
        let mut c = cmd_user(bin("rootlesskit"));
        c.arg(format!("--state-dir={}", state.display()))
            .args(&o.flags)
            .arg("--")
            .args(&o.command)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        for (k, v) in &o.env {
            c.env(k, v);
        }
        let nofile = o
            .nofile
            .map(|n| (n, n))
            .or_else(|| ORIGINAL_NOFILE.get().copied());
        if let Some((soft, hard)) = nofile {
            // SAFETY: setrlimit is async-signal-safe.
            unsafe {
                c.pre_exec(move || {
                    let l = libc::rlimit {
                        rlim_cur: soft,
                        rlim_max: hard,
                    };
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &l) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        let child = c.spawn().expect("spawn rootlesskit");
        let mut kit = Kit {
            child,
            dir,
            state,
            reaped: None,
        };
        if o.wait_ready {
            kit.wait_ready(Duration::from_secs(30));
        }
        kit
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Wait until `api.sock` exists; panics with the logs if the parent exits first.
    pub fn wait_ready(&mut self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while !self.state.join("api.sock").exists() {
            if let Some(st) = self.try_wait() {
                panic!(
                    "rootlesskit exited before ready: {st}\nstdout: {}\nstderr: {}",
                    self.stdout(),
                    self.stderr()
                );
            }
            assert!(
                Instant::now() < deadline,
                "rootlesskit not ready after {timeout:?}\nstderr: {}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn child_pid(&self) -> i32 {
        std::fs::read_to_string(self.state.join("child_pid"))
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    }

    pub fn stdout(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stdout")).unwrap_or_default()
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stderr")).unwrap_or_default()
    }

    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        if self.reaped.is_none() {
            self.reaped = self.child.try_wait().unwrap();
        }
        self.reaped
    }

    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = self.try_wait() {
                return Some(s);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid()), sig);
    }

    /// `rootlessctl --socket=<state>/api.sock ARGS` as the test user.
    pub fn ctl(&self, args: &[&str]) -> std::process::Output {
        cmd_user(bin("rootlessctl"))
            .arg(format!(
                "--socket={}",
                self.state.join("api.sock").display()
            ))
            .args(args)
            .output()
            .expect("rootlessctl")
    }

    /// Run a command inside the kit's namespaces (user, mount, net) as its root, via nsenter.
    pub fn exec(&self, args: &[&str]) -> Command {
        let mut c = cmd_user("nsenter");
        c.arg("-t")
            .arg(self.child_pid().to_string())
            .args(["-U", "-m", "-n", "--preserve-credentials", "--"])
            .args(args);
        c
    }
}

impl Drop for Kit {
    fn drop(&mut self) {
        if self.try_wait().is_none() {
            self.signal(nix::sys::signal::Signal::SIGTERM);
            if self.wait_timeout(Duration::from_secs(5)).is_none() {
                self.signal(nix::sys::signal::Signal::SIGKILL);
                let _ = self.child.wait();
            }
        }
    }
}

/// Host PIDs of the direct children of `pid` (every thread's `children` file).
pub fn children_of(pid: i32) -> Vec<i32> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for t in rd.flatten() {
            if let Ok(s) = std::fs::read_to_string(t.path().join("children")) {
                out.extend(s.split_whitespace().filter_map(|x| x.parse::<i32>().ok()));
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

/// A process exists and is not a zombie.
pub fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => {
            let state = s.rsplit(')').next().unwrap_or("").trim_start();
            !state.starts_with('Z') && !state.starts_with('X')
        }
        Err(_) => false,
    }
}

pub fn comm(pid: i32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// Every live PID whose command line (NULs shown as spaces, trailing space trimmed) is `exact`.
pub fn pids_with_exact_cmdline(exact: &str) -> Vec<i32> {
    pids_matching(|s| s.trim_end() == exact)
}

/// Every live PID whose command line contains `needle` (NULs shown as spaces).
pub fn pids_with_cmdline(needle: &str) -> Vec<i32> {
    pids_matching(|s| s.contains(needle))
}

fn pids_matching(f: impl Fn(&str) -> bool) -> Vec<i32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        if let Ok(b) = std::fs::read(format!("/proc/{pid}/cmdline")) {
            let s = String::from_utf8_lossy(&b).replace('\0', " ");
            if f(&s) && alive(pid) {
                out.push(pid);
            }
        }
    }
    out
}

/// Poll `f` until true or timeout.
pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if f() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// One free TCP port on 127.0.0.1 (the harness's pick below the ephemeral range; callers still
/// retry on EADDRINUSE).
pub fn free_port() -> u16 {
    rootlesskit_tests::free_port()
}

/// Send `data`, half-close, read everything back (with a read timeout on every read).
pub fn tcp_roundtrip(addr: &str, data: &[u8], timeout: Duration) -> std::io::Result<Vec<u8>> {
    let mut s = TcpStream::connect_timeout(&addr.parse().unwrap(), timeout)?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    s.write_all(data)?;
    s.shutdown(Shutdown::Write)?;
    let mut out = Vec::new();
    s.read_to_end(&mut out)?;
    Ok(out)
}
