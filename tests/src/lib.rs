//! Integration-test harness shared by every file in `tests/tests/`.
//!
//! The tests never create namespaces in-process (libtest runs each test on its own
//! thread, and `unshare(CLONE_NEWUSER)` needs a single-threaded caller). They run the
//! real binaries as subprocesses instead, always as a **non-root** user:
//!
//! * binaries come from `RK_BIN_DIR` (default `<workspace>/target/debug`); `RK_BIN`
//!   overrides `rootlesskit` itself (and its siblings), e.g. `RK_BIN=/usr/bin/rootlesskit`
//!   runs a suite against Debian's Go reference;
//! * when the test process is root, every binary is started as [`TEST_USER`] (`rktest`)
//!   through `setgid`/`setuid` in the spawned process (same effect as `runuser -u rktest --`,
//!   but without a `runuser` process in between, so signals sent to [`Running::pid`] reach
//!   rootlesskit itself);
//! * every [`Kit`] gets a fresh temp dir (mode 0755, owned by the user that runs the
//!   binary) holding its `--state-dir`, its captured stdout/stderr and any scratch files;
//! * readiness is waited for by polling (`child_pid` + `api.sock`), never by sleeping;
//! * on drop, the whole process group is killed and reaped, the temp dir removed.
//!
//! Tests whose name contains `as_root` run only in the root phase of `hack/test.sh`
//! (see `docs/testing.md`).

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::fs;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::{Pid, User};
use rand::RngCore;
use sha2::{Digest, Sha256};

/// The non-root user the binaries run as when the tests run as root.
pub const TEST_USER: &str = "rktest";

/// Default time allowed for rootlesskit to become ready (2 shared cores in CI).
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// Default time allowed for a process to exit.
pub const EXIT_TIMEOUT: Duration = Duration::from_secs(30);

/// Where Debian's Go reference is installed.
pub const REFERENCE_DIR: &str = "/usr/bin";

// ---------------------------------------------------------------------------------------
// binaries

/// The workspace root (parent of the `tests/` crate).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests crate has a parent dir")
        .to_path_buf()
}

/// Directory the binaries under test are taken from: `RK_BIN_DIR`, or the directory of
/// `RK_BIN`, or `<workspace>/target/debug`.
pub fn bin_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("RK_BIN_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(d);
    }
    if let Some(b) = std::env::var_os("RK_BIN").filter(|d| !d.is_empty()) {
        if let Some(parent) = Path::new(&b).parent() {
            return parent.to_path_buf();
        }
    }
    workspace_root().join("target").join("debug")
}

/// Path of one of the project's binaries (`rootlesskit`, `rootlessctl`,
/// `rootlesskit-docker-proxy`). `RK_BIN` overrides `rootlesskit` exactly.
/// Panics with a how-to-fix message when the file is missing.
pub fn rk_bin(name: &str) -> PathBuf {
    let path = match std::env::var_os("RK_BIN").filter(|b| !b.is_empty()) {
        Some(b) if name == "rootlesskit" => PathBuf::from(b),
        _ => bin_dir().join(name),
    };
    assert!(
        path.is_file(),
        "binary {} not found: build it with `cargo build --workspace --bins`, \
         or point RK_BIN_DIR (or RK_BIN) at it",
        path.display()
    );
    path
}

/// Path of the Go reference binary (Debian's rootlesskit 1.1.0 package).
pub fn ref_bin(name: &str) -> PathBuf {
    let path = Path::new(REFERENCE_DIR).join(name);
    assert!(
        path.is_file(),
        "reference binary {} not found: install it with `apt-get install rootlesskit`",
        path.display()
    );
    path
}

/// True when the suite is running against the Go reference instead of ours.
pub fn is_reference() -> bool {
    let ours = rk_bin("rootlesskit");
    let reference = Path::new(REFERENCE_DIR).join("rootlesskit");
    fs::canonicalize(&ours).ok() == fs::canonicalize(&reference).ok()
}

/// Directory of the project's `shared/` material (`RK_SHARED_DIR`, default `<ws>/../shared`).
pub fn shared_dir() -> PathBuf {
    match std::env::var_os("RK_SHARED_DIR").filter(|d| !d.is_empty()) {
        Some(d) => PathBuf::from(d),
        None => workspace_root().join("..").join("shared"),
    }
}

/// Finds `tool` on PATH (plus the sbin dirs); panics naming the Debian package to install.
pub fn require_tool(tool: &str, package: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let extra = [
        OsString::from("/usr/sbin"),
        OsString::from("/sbin"),
        OsString::from("/usr/bin"),
    ];
    for dir in std::env::split_paths(&path).chain(extra.iter().map(PathBuf::from)) {
        let p = dir.join(tool);
        if p.is_file() {
            return p;
        }
    }
    panic!(
        "required tool `{tool}` is missing: install it with `apt-get install {package}` \
         (hack/test.sh installs every test dependency when run as root)"
    );
}

// ---------------------------------------------------------------------------------------
// users

/// True when the test process runs as root.
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// The user a [`Kit`] runs as by default: the current one, or [`TEST_USER`] when root.
pub fn run_user() -> User {
    if is_root() {
        lookup_user(TEST_USER)
    } else {
        User::from_uid(nix::unistd::getuid())
            .ok()
            .flatten()
            .expect("current uid has a passwd entry")
    }
}

/// Looks a user up by name; panics with a how-to-fix message if absent.
pub fn lookup_user(name: &str) -> User {
    User::from_name(name).ok().flatten().unwrap_or_else(|| {
        panic!("user `{name}` does not exist: run hack/test.sh as root once (it creates it)")
    })
}

/// First `/etc/subuid` (or `/etc/subgid`) range of `user` as `(start, count)`.
pub fn subid_range(file: &str, user: &User) -> Option<(u64, u64)> {
    let text = fs::read_to_string(file).ok()?;
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| {
            let mut it = l.trim().split(':');
            let (who, start, count) = (it.next()?, it.next()?, it.next()?);
            let matches = who == user.name || who == user.uid.to_string();
            matches.then(|| Some((start.parse().ok()?, count.parse().ok()?)))?
        })
        .next()
}

/// Makes `cmd` run as `user` when the test process is root (no-op otherwise), with the
/// `HOME`/`USER`/`LOGNAME` that `runuser` would set.
pub fn run_as(cmd: &mut Command, user: &User) {
    if is_root() && !user.uid.is_root() {
        cmd.uid(user.uid.as_raw()).gid(user.gid.as_raw());
        cmd.env("HOME", &user.dir)
            .env("USER", &user.name)
            .env("LOGNAME", &user.name);
    }
}

/// Changes the owner of `path` to `user` when running as root (so the user can write it).
pub fn give_to(path: &Path, user: &User) {
    if is_root() {
        nix::unistd::chown(path, Some(user.uid), Some(user.gid))
            .unwrap_or_else(|e| panic!("chown {}: {e}", path.display()));
    }
}

// ---------------------------------------------------------------------------------------
// temp dirs, markers, data

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A string unique to this test process and call, for process cmdlines and file names.
pub fn unique_marker(prefix: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    let r = rand::thread_rng().next_u32();
    format!("{prefix}-{}-{n}-{r:08x}", std::process::id())
}

/// A fresh directory under `/tmp` (mode 0755, owned by `user` when root); removed on drop.
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    /// Creates a temp dir owned by [`run_user`].
    pub fn new() -> TempDir {
        TempDir::for_user(&run_user())
    }

    /// Creates a temp dir owned by `user` (when root).
    pub fn for_user(user: &User) -> TempDir {
        let path = std::env::temp_dir().join(unique_marker("rk-test"));
        fs::create_dir(&path).unwrap_or_else(|e| panic!("mkdir {}: {e}", path.display()));
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
        give_to(&path, user);
        TempDir { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn join(&self, p: impl AsRef<Path>) -> PathBuf {
        self.path.join(p)
    }
}

impl Default for TempDir {
    fn default() -> Self {
        TempDir::new()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if fs::remove_dir_all(&self.path).is_ok() {
            return;
        }
        // A test may leave read-only dirs behind on purpose; make them removable and retry.
        let _ = Command::new("chmod")
            .args(["-R", "u+rwx"])
            .arg(&self.path)
            .stderr(Stdio::null())
            .status();
        let _ = fs::remove_dir_all(&self.path);
    }
}

/// `n` random bytes.
pub fn random_bytes(n: usize) -> Vec<u8> {
    let mut v = vec![0u8; n];
    rand::thread_rng().fill_bytes(&mut v);
    v
}

/// Lower-case hex SHA-256 of `data`.
pub fn sha256_hex(data: &[u8]) -> String {
    Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A TCP port on 127.0.0.1 that was free a moment ago (and its UDP twin too).
///
/// The port is picked at random below the kernel's ephemeral range (`ip_local_port_range`,
/// 32768-60999 by default), which only explicit binds use, so no outgoing connection on the
/// machine takes it before the caller binds it, and it is checked against the local ports of
/// every TCP and UDP socket in `/proc/net/{tcp,tcp6,udp,udp6}`. It is not probed by binding
/// it: a probe socket would be copied into any child that another test thread forks at that
/// moment and keep the port bound until that child execs (seen as a rare EADDRINUSE).
pub fn free_port() -> u16 {
    let (lo, hi) = (20000u16, 32767u16);
    for _ in 0..1000 {
        let used = ports_in_use();
        let port = lo + (rand::random::<u16>() % (hi - lo + 1));
        if !used.contains(&port) {
            return port;
        }
    }
    panic!("no free port found on 127.0.0.1 in {lo}..={hi}");
}

/// Local ports of all TCP and UDP sockets (IPv4 and IPv6) of this network namespace.
fn ports_in_use() -> std::collections::BTreeSet<u16> {
    let mut used = std::collections::BTreeSet::new();
    for table in ["tcp", "tcp6", "udp", "udp6"] {
        let Ok(text) = fs::read_to_string(format!("/proc/net/{table}")) else {
            continue;
        };
        for line in text.lines().skip(1) {
            // "  sl  local_address rem_address ...": local_address is ADDR:PORT in hex.
            let port = line
                .split_whitespace()
                .nth(1)
                .and_then(|a| a.rsplit_once(':'))
                .and_then(|(_, p)| u16::from_str_radix(p, 16).ok());
            if let Some(p) = port {
                used.insert(p);
            }
        }
    }
    used
}

// ---------------------------------------------------------------------------------------
// waiting and processes

/// Polls `cond` every 10 ms until it is true (returns true) or `timeout` passes (false).
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// True when `pid` exists and is not a zombie.
pub fn pid_alive(pid: i32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => proc_state(&stat) != Some('Z'),
        Err(_) => false,
    }
}

fn proc_state(stat: &str) -> Option<char> {
    // "pid (comm) S ppid ..." — comm may contain spaces/parens, so split at the last ')'.
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}

fn proc_ppid(pid: i32) -> Option<i32> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn all_pids() -> Vec<i32> {
    fs::read_dir("/proc")
        .map(|rd| {
            rd.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// `/proc/<pid>/cmdline` with NULs turned into spaces ("" if gone or a kernel thread).
pub fn cmdline(pid: i32) -> String {
    let raw = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    String::from_utf8_lossy(&raw)
        .trim_end_matches('\0')
        .replace('\0', " ")
}

/// Live (non-zombie) processes whose cmdline contains `marker`, except this process,
/// as `(pid, cmdline)`. Use it for leftover checks.
pub fn processes_with_marker(marker: &str) -> Vec<(i32, String)> {
    let me = std::process::id() as i32;
    all_pids()
        .into_iter()
        .filter(|&p| p != me)
        .filter_map(|p| {
            let c = cmdline(p);
            (c.contains(marker) && pid_alive(p)).then_some((p, c))
        })
        .collect()
}

/// All live descendants of `pid` (children, grandchildren, ...), found via `/proc/*/stat`.
pub fn descendants(pid: i32) -> Vec<i32> {
    let parents: BTreeMap<i32, i32> = all_pids()
        .into_iter()
        .filter_map(|p| Some((p, proc_ppid(p)?)))
        .collect();
    let mut out = Vec::new();
    let mut frontier = vec![pid];
    while let Some(cur) = frontier.pop() {
        for (&child, &ppid) in &parents {
            if ppid == cur && !out.contains(&child) {
                out.push(child);
                frontier.push(child);
            }
        }
    }
    out.retain(|&p| pid_alive(p));
    out
}

/// Waits up to `timeout` for every pid in `pids` to be gone; returns the ones still alive
/// with their cmdlines.
pub fn wait_gone(pids: &[i32], timeout: Duration) -> Vec<(i32, String)> {
    wait_until(timeout, || pids.iter().all(|&p| !pid_alive(p)));
    pids.iter()
        .copied()
        .filter(|&p| pid_alive(p))
        .map(|p| (p, cmdline(p)))
        .collect()
}

// ---------------------------------------------------------------------------------------
// one-shot commands

/// Result of a finished process.
#[derive(Debug, Clone)]
pub struct Output {
    /// Exit code, `None` if killed by a signal.
    pub code: Option<i32>,
    /// Terminating signal, if any.
    pub signal: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    fn from(status: ExitStatus, stdout: String, stderr: String) -> Output {
        Output {
            code: status.code(),
            signal: status.signal(),
            stdout,
            stderr,
        }
    }

    /// Both streams, for assertion messages.
    pub fn dump(&self) -> String {
        format!(
            "exit code {:?}, signal {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.code, self.signal, self.stdout, self.stderr
        )
    }
}

/// Runs `cmd` (stdin from /dev/null, stdout/stderr captured through files so that
/// leftover grandchildren cannot block us) in its own process group; kills the group
/// and panics if it does not finish within `timeout`.
pub fn run_with_timeout(cmd: &mut Command, timeout: Duration) -> Output {
    let dir = TempDir::new();
    let out = fs::File::create(dir.join("stdout")).unwrap();
    let err = fs::File::create(dir.join("stderr")).unwrap();
    cmd.stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .process_group(0);
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {:?}: {e}", cmd.get_program()));
    let status = wait_child(&mut child, timeout);
    let stdout = read_lossy(&dir.join("stdout"));
    let stderr = read_lossy(&dir.join("stderr"));
    match status {
        Some(s) => Output::from(s, stdout, stderr),
        None => {
            let _ = killpg(Pid::from_raw(child.id() as i32), Signal::SIGKILL);
            let _ = child.wait();
            panic!(
                "{:?} did not finish within {timeout:?}\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}",
                cmd
            );
        }
    }
}

fn wait_child(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let mut status = None;
    wait_until(timeout, || {
        status = child.try_wait().expect("try_wait");
        status.is_some()
    });
    status
}

fn read_lossy(p: &Path) -> String {
    let mut v = Vec::new();
    if let Ok(mut f) = fs::File::open(p) {
        let _ = f.read_to_end(&mut v);
    }
    String::from_utf8_lossy(&v).into_owned()
}

// ---------------------------------------------------------------------------------------
// Kit: one rootlesskit run

/// Builder for one `rootlesskit [flags] CMD...` run.
///
/// ```no_run
/// # use rootlesskit_tests::*;
/// let out = Kit::new().args(["--pidns"]).cmd(["sh", "-c", "exit 42"]).run();
/// assert_eq!(out.code, Some(42), "{}", out.dump());
/// ```
pub struct Kit {
    bin: PathBuf,
    flags: Vec<OsString>,
    cmd: Vec<OsString>,
    env: Vec<(OsString, Option<OsString>)>,
    env_clear: bool,
    state_dir: StateDirChoice,
    user: User,
    cwd: Option<PathBuf>,
}

enum StateDirChoice {
    /// `--state-dir <tmp>/state` (the default).
    Fresh,
    /// No `--state-dir`; `TMPDIR=<tmp>` so the default one lands in the temp dir.
    Default,
    /// `--state-dir <this>`.
    Given(PathBuf),
}

impl Default for Kit {
    fn default() -> Self {
        Kit::new()
    }
}

impl Kit {
    /// `rootlesskit` under test ([`rk_bin`]), run as [`run_user`].
    pub fn new() -> Kit {
        Kit::with_bin(rk_bin("rootlesskit"))
    }

    /// Debian's Go reference `rootlesskit` (for side-by-side comparisons).
    pub fn reference() -> Kit {
        Kit::with_bin(ref_bin("rootlesskit"))
    }

    /// Any binary with the same conveniences (e.g. [`ref_bin`]`("rootlesskit")`).
    pub fn with_bin(bin: PathBuf) -> Kit {
        Kit {
            bin,
            flags: Vec::new(),
            cmd: Vec::new(),
            env: Vec::new(),
            env_clear: false,
            state_dir: StateDirChoice::Fresh,
            user: run_user(),
            cwd: None,
        }
    }

    /// Adds rootlesskit flags (before the command).
    pub fn args<I, S>(mut self, args: I) -> Kit
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.flags
            .extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    /// Sets the command rootlesskit runs (after the flags).
    pub fn cmd<I, S>(mut self, cmd: I) -> Kit
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.cmd = cmd.into_iter().map(|a| a.as_ref().to_owned()).collect();
        self
    }

    /// Shorthand for `.cmd(["sh", "-c", script])`.
    pub fn sh(self, script: &str) -> Kit {
        self.cmd(["sh", "-c", script])
    }

    /// Sets an environment variable for rootlesskit.
    pub fn env(mut self, k: impl AsRef<OsStr>, v: impl AsRef<OsStr>) -> Kit {
        self.env
            .push((k.as_ref().to_owned(), Some(v.as_ref().to_owned())));
        self
    }

    /// Removes an environment variable for rootlesskit.
    pub fn env_remove(mut self, k: impl AsRef<OsStr>) -> Kit {
        self.env.push((k.as_ref().to_owned(), None));
        self
    }

    /// Starts from an empty environment (then `.env(...)` adds to it).
    pub fn env_clear(mut self) -> Kit {
        self.env_clear = true;
        self
    }

    /// Uses rootlesskit's default state dir (no `--state-dir`), with `TMPDIR` pointing
    /// at the kit's temp dir so it can be inspected.
    pub fn default_state_dir(mut self) -> Kit {
        self.state_dir = StateDirChoice::Default;
        self
    }

    /// Passes `--state-dir <dir>` instead of a fresh one.
    pub fn state_dir(mut self, dir: impl Into<PathBuf>) -> Kit {
        self.state_dir = StateDirChoice::Given(dir.into());
        self
    }

    /// Working directory of rootlesskit (default: the test's).
    pub fn current_dir(mut self, dir: impl Into<PathBuf>) -> Kit {
        self.cwd = Some(dir.into());
        self
    }

    /// Runs as another (non-root) user; only possible when the tests run as root.
    pub fn user(mut self, name: &str) -> Kit {
        assert!(
            is_root(),
            "Kit::user({name}) needs the test to run as root (as_root test)"
        );
        self.user = lookup_user(name);
        self
    }

    /// Starts rootlesskit with a fresh temp dir; see [`Running`].
    pub fn spawn(self) -> Running {
        let dir = TempDir::for_user(&self.user);
        self.spawn_in(dir)
    }

    /// Like [`Kit::spawn`] but uses `dir` as the kit's temp dir.
    pub fn spawn_in(self, dir: TempDir) -> Running {
        let mut c = Command::new(&self.bin);
        if self.env_clear {
            c.env_clear();
        }
        run_as(&mut c, &self.user);
        let state_dir = match &self.state_dir {
            StateDirChoice::Fresh => {
                let s = dir.join("state");
                c.arg(format!("--state-dir={}", s.display()));
                Some(s)
            }
            StateDirChoice::Default => {
                c.env("TMPDIR", dir.path());
                None
            }
            StateDirChoice::Given(s) => {
                c.arg(format!("--state-dir={}", s.display()));
                Some(s.clone())
            }
        };
        for (k, v) in &self.env {
            match v {
                Some(v) => c.env(k, v),
                None => c.env_remove(k),
            };
        }
        c.args(&self.flags).args(&self.cmd);
        if let Some(d) = &self.cwd {
            c.current_dir(d);
        }
        let out = fs::File::create(dir.join("stdout")).unwrap();
        let err = fs::File::create(dir.join("stderr")).unwrap();
        c.stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0);
        let child = c
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", self.bin.display()));
        Running {
            child,
            dir,
            state_dir,
            status: None,
            argv: format!("{c:?}"),
        }
    }

    /// Spawns, waits for exit within [`EXIT_TIMEOUT`] and returns the output.
    pub fn run(self) -> Output {
        self.spawn().wait()
    }
}

/// A running (or finished) rootlesskit. Killed (whole process group) and reaped on drop.
pub struct Running {
    child: Child,
    dir: TempDir,
    state_dir: Option<PathBuf>,
    status: Option<ExitStatus>,
    argv: String,
}

impl Running {
    /// PID of the rootlesskit parent.
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// The kit's temp dir (holds `state/`, `stdout`, `stderr`; use it for scratch files).
    pub fn dir(&self) -> &TempDir {
        &self.dir
    }

    /// The state dir passed with `--state-dir`; with [`Kit::default_state_dir`], the
    /// `rootlesskit*` dir that appeared in the temp dir (panics if none yet).
    pub fn state_dir(&self) -> PathBuf {
        self.try_state_dir()
            .unwrap_or_else(|| panic!("no rootlesskit* state dir in {}", self.dir.path().display()))
    }

    /// Captured stdout so far.
    pub fn stdout(&self) -> String {
        read_lossy(&self.dir.join("stdout"))
    }

    /// Captured stderr so far.
    pub fn stderr(&self) -> String {
        read_lossy(&self.dir.join("stderr"))
    }

    fn describe(&self) -> String {
        format!(
            "{}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.argv,
            self.stdout(),
            self.stderr()
        )
    }

    /// True once the process has exited (reaps it).
    pub fn exited(&mut self) -> bool {
        if self.status.is_none() {
            self.status = self.child.try_wait().expect("try_wait");
        }
        self.status.is_some()
    }

    /// Waits until `child_pid` and `api.sock` exist in the state dir ([`READY_TIMEOUT`]).
    /// Panics with the captured output if rootlesskit exits first or times out.
    pub fn wait_ready(&mut self) -> &mut Running {
        let mut exited = false;
        let ok = wait_until(READY_TIMEOUT, || {
            if self.exited() {
                exited = true;
                return true;
            }
            self.try_state_dir()
                .is_some_and(|s| s.join("child_pid").exists() && s.join("api.sock").exists())
        });
        assert!(
            !exited,
            "rootlesskit exited before becoming ready: {:?}\n{}",
            self.status,
            self.describe()
        );
        assert!(
            ok,
            "rootlesskit not ready within {READY_TIMEOUT:?}\n{}",
            self.describe()
        );
        self
    }

    /// The given state dir, or the `rootlesskit*` dir that appeared in the temp dir.
    fn try_state_dir(&self) -> Option<PathBuf> {
        if let Some(s) = &self.state_dir {
            return Some(s.clone());
        }
        fs::read_dir(self.dir.path())
            .ok()?
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .find(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("rootlesskit"))
            })
    }

    /// Waits until `file` (relative to the temp dir) exists, e.g. a marker the command
    /// touches once it runs. Panics if rootlesskit exits first or after [`READY_TIMEOUT`].
    pub fn wait_for_file(&mut self, file: &str) -> &mut Running {
        let p = self.dir.join(file);
        let mut exited = false;
        let ok = wait_until(READY_TIMEOUT, || {
            if p.exists() {
                return true;
            }
            exited = self.exited();
            exited
        });
        assert!(
            ok && !exited,
            "{} never appeared (exited: {exited})\n{}",
            p.display(),
            self.describe()
        );
        self
    }

    /// Contents of `child_pid`, parsed (panics, showing the raw bytes, if malformed).
    pub fn child_pid(&self) -> i32 {
        let raw = fs::read_to_string(self.state_dir().join("child_pid")).expect("read child_pid");
        raw.parse()
            .unwrap_or_else(|e| panic!("child_pid {raw:?} is not a bare decimal PID: {e}"))
    }

    /// Sends `sig` to the rootlesskit parent.
    pub fn signal(&self, sig: Signal) {
        kill(Pid::from_raw(self.pid()), sig).expect("kill rootlesskit");
    }

    /// Waits for exit within [`EXIT_TIMEOUT`]; panics (after killing the group) otherwise.
    pub fn wait(&mut self) -> Output {
        self.wait_timeout(EXIT_TIMEOUT)
    }

    /// Waits for exit within `timeout`; panics (after killing the group) otherwise.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Output {
        if !wait_until(timeout, || self.exited()) {
            let msg = self.describe();
            self.kill_group();
            panic!("rootlesskit did not exit within {timeout:?}\n{msg}");
        }
        Output::from(self.status.unwrap(), self.stdout(), self.stderr())
    }

    fn kill_group(&mut self) {
        let _ = killpg(Pid::from_raw(self.pid()), Signal::SIGKILL);
        if self.status.is_none() {
            self.status = self.child.wait().ok();
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        // Also kill what escaped the group (setsid'ed commands) while we still know them.
        let stragglers = descendants(self.pid());
        self.kill_group();
        for p in stragglers {
            let _ = kill(Pid::from_raw(p), Signal::SIGKILL);
        }
    }
}

/// Metadata helpers used by several suites.
pub fn mode_of(p: &Path) -> u32 {
    fs::symlink_metadata(p)
        .unwrap_or_else(|e| panic!("stat {}: {e}", p.display()))
        .mode()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_of_abc() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn random_bytes_have_length_and_vary() {
        let a = random_bytes(64);
        assert_eq!(a.len(), 64);
        assert_ne!(a, random_bytes(64));
    }

    #[test]
    fn free_port_is_bindable() {
        let p = free_port();
        assert!(p > 0);
        std::net::TcpListener::bind(("127.0.0.1", p)).expect("port reported free is bindable");
    }

    #[test]
    fn wait_until_times_out_and_succeeds() {
        assert!(!wait_until(Duration::from_millis(30), || false));
        let mut n = 0;
        assert!(wait_until(Duration::from_secs(1), || {
            n += 1;
            n > 3
        }));
    }

    #[test]
    fn run_with_timeout_captures_code_and_streams() {
        let out = run_with_timeout(
            Command::new("sh").args(["-c", "echo out; echo err >&2; exit 3"]),
            Duration::from_secs(10),
        );
        assert_eq!(out.code, Some(3));
        assert_eq!(out.stdout, "out\n");
        assert_eq!(out.stderr, "err\n");
    }

    #[test]
    fn markers_and_descendants_are_found() {
        let marker = unique_marker("harness-selftest");
        let mut c = Command::new("sh")
            .args(["-c", &format!("sleep 30 & wait; : {marker}")])
            .spawn()
            .unwrap();
        let pid = c.id() as i32;
        // Until the forked child has exec'd `sleep`, it still carries the shell's command line
        // (and so the marker): wait for both conditions.
        assert!(wait_until(Duration::from_secs(5), || descendants(pid)
            .len()
            == 1
            && processes_with_marker(&marker).len() == 1));
        let found = processes_with_marker(&marker);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].0, pid);
        let kids = descendants(pid);
        let _ = kill(Pid::from_raw(kids[0]), Signal::SIGKILL);
        c.wait().unwrap();
        assert!(wait_gone(&kids, Duration::from_secs(5)).is_empty());
        assert!(processes_with_marker(&marker).is_empty());
    }

    #[test]
    fn temp_dir_is_0755_and_removed() {
        let p;
        {
            let d = TempDir::new();
            p = d.path().to_path_buf();
            assert_eq!(mode_of(&p) & 0o777, 0o755);
        }
        assert!(!p.exists());
    }

    #[test]
    fn proc_state_parses_odd_comm() {
        assert_eq!(proc_state("12 (a) b) S 1 2"), Some('S'));
    }
}
