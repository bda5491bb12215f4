//! Raw syscalls not covered by nix. Every `unsafe` block carries a `// SAFETY:` comment.
//!
//! The launcher clones its child with `clone(2)` used like `fork(2)` (no new stack, copy of the
//! address space) but with namespace flags, so the child is created directly inside the new
//! user/mount/(pid/net/...) namespaces and, with `--pidns`, is PID 1 there. This is only sound
//! while the process is single-threaded: the parent calls it before any thread or runtime exists.

use std::io;

use nix::sched::CloneFlags;
use nix::unistd::Pid;

/// Result of [`clone_process`], as with fork.
pub enum CloneResult {
    Parent { child: Pid },
    Child,
}

/// `clone(flags | SIGCHLD)` with fork semantics.
///
/// # Safety
/// The caller must be single-threaded (no other thread may hold locks that the child would
/// inherit in a locked state), exactly like `fork(2)`.
pub unsafe fn clone_process(flags: CloneFlags) -> io::Result<CloneResult> {
    let raw = flags.bits() as libc::c_ulong | libc::SIGCHLD as libc::c_ulong;
    // SAFETY: clone with a null stack pointer behaves like fork: the child gets a copy of the
    // address space and continues on its own copy of the stack. The caller guarantees the
    // process is single-threaded. The remaining pointer arguments are null (unused without
    // CLONE_PARENT_SETTID/CHILD_SETTID/SETTLS).
    let ret = unsafe {
        libc::syscall(
            libc::SYS_clone,
            raw,
            std::ptr::null_mut::<libc::c_void>(),
            std::ptr::null_mut::<libc::c_int>(),
            std::ptr::null_mut::<libc::c_int>(),
            0 as libc::c_ulong,
        )
    };
    match ret {
        -1 => Err(io::Error::last_os_error()),
        0 => Ok(CloneResult::Child),
        pid => Ok(CloneResult::Parent {
            child: Pid::from_raw(pid as i32),
        }),
    }
}

/// Go's `syscall.Signal.String()` texts, used in `signal: user defined signal 1` messages.
pub fn go_signal_name(sig: i32) -> String {
    let s = match sig {
        libc::SIGABRT => "aborted",
        libc::SIGALRM => "alarm clock",
        libc::SIGBUS => "bus error",
        libc::SIGCHLD => "child exited",
        libc::SIGCONT => "continued",
        libc::SIGFPE => "floating point exception",
        libc::SIGHUP => "hangup",
        libc::SIGILL => "illegal instruction",
        libc::SIGINT => "interrupt",
        libc::SIGIO => "I/O possible",
        libc::SIGKILL => "killed",
        libc::SIGPIPE => "broken pipe",
        libc::SIGPROF => "profiling timer expired",
        libc::SIGPWR => "power failure",
        libc::SIGQUIT => "quit",
        libc::SIGSEGV => "segmentation fault",
        libc::SIGSTKFLT => "stack fault",
        libc::SIGSTOP => "stopped (signal)",
        libc::SIGSYS => "bad system call",
        libc::SIGTERM => "terminated",
        libc::SIGTRAP => "trace/breakpoint trap",
        libc::SIGTSTP => "stopped",
        libc::SIGTTIN => "stopped (tty input)",
        libc::SIGTTOU => "stopped (tty output)",
        libc::SIGURG => "urgent I/O condition",
        libc::SIGUSR1 => "user defined signal 1",
        libc::SIGUSR2 => "user defined signal 2",
        libc::SIGVTALRM => "virtual timer expired",
        libc::SIGWINCH => "window changed",
        libc::SIGXCPU => "CPU time limit exceeded",
        libc::SIGXFSZ => "file size limit exceeded",
        _ => return format!("signal {sig}"),
    };
    s.to_string()
}

/// Block every signal in the calling thread (inherited by threads and children created later)
/// and return a signalfd that reads them. Used by both parent and child to forward signals.
pub fn block_all_signals() -> io::Result<nix::sys::signalfd::SignalFd> {
    use nix::sys::signal::{SigSet, SigmaskHow};
    let all = SigSet::all();
    nix::sys::signal::pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&all), None)
        .map_err(io::Error::from)?;
    nix::sys::signalfd::SignalFd::with_flags(&all, nix::sys::signalfd::SfdFlags::SFD_CLOEXEC)
        .map_err(io::Error::from)
}

/// Signals that are forwarded to the child / command: every catchable signal except SIGCHLD,
/// SIGPIPE and SIGURG (RootlessKit's list).
pub fn is_forwarded(sig: i32) -> bool {
    !matches!(
        sig,
        libc::SIGCHLD | libc::SIGPIPE | libc::SIGURG | libc::SIGKILL | libc::SIGSTOP
    )
}

/// `kill(pid, sig)` with a raw signal number (RT signals included, which nix's `Signal` lacks).
pub fn kill_raw(pid: Pid, sig: i32) -> io::Result<()> {
    // SAFETY: kill(2) takes plain integers and has no memory-safety preconditions.
    let r = unsafe { libc::kill(pid.as_raw(), sig) };
    if r == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Set the parent-death signal of the calling thread's process to SIGKILL.
pub fn set_pdeathsig_kill() -> io::Result<()> {
    nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL).map_err(io::Error::from)
}

/// Make a spawned helper or command start in a clean state: empty signal mask (std's Command
/// inherits ours, and the launcher blocks every signal to read them from a signalfd), default
/// dispositions for the signals std ignores, and `PR_SET_PDEATHSIG=SIGKILL` so nothing
/// outlives the launcher, even after `kill -9`. Optionally `setsid()` first.
pub fn prepare_command(cmd: &mut std::process::Command, setsid: bool) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure runs between fork and exec and only calls async-signal-safe
    // functions (sigemptyset/pthread_sigmask/signal/setsid/prctl); it allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            if setsid {
                nix::unistd::setsid().map_err(io::Error::from)?;
            }
            reset_signals_after_fork()?;
            set_pdeathsig_kill()
        });
    }
}

/// Unblock every signal and restore SIGPIPE to its default (async-signal-safe).
pub fn reset_signals_after_fork() -> io::Result<()> {
    // SAFETY: sigemptyset initialises the set before use; pthread_sigmask and signal only take
    // plain values; all three are async-signal-safe.
    unsafe {
        let mut set = std::mem::MaybeUninit::<libc::sigset_t>::uninit();
        libc::sigemptyset(set.as_mut_ptr());
        if libc::pthread_sigmask(libc::SIG_SETMASK, set.as_ptr(), std::ptr::null_mut()) != 0 {
            return Err(io::Error::last_os_error());
        }
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    Ok(())
}

/// The parent-death signal of the child when it is not PID 1 of its own PID namespace: a
/// real-time signal the child reads from its signalfd, so it can take the whole user namespace
/// down with it (the command's own children included) instead of dying alone.
pub const CHILD_PDEATHSIG: i32 = 64; // SIGRTMAX on Linux

/// Set the parent-death signal of the calling process to a raw signal number.
pub fn set_pdeathsig_raw(sig: i32) -> io::Result<()> {
    // SAFETY: prctl(PR_SET_PDEATHSIG, sig) takes plain integers.
    let r = unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, sig as libc::c_ulong, 0, 0, 0) };
    if r == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// SIGKILL every other process that lives in the caller's user namespace (the caller is root
/// there, so it may signal all of them). Used when the parent died without `--pidns`.
pub fn kill_user_namespace_processes() {
    let Ok(own) = std::fs::read_link("/proc/self/ns/user") else {
        return;
    };
    let me = std::process::id();
    // Two passes: a process may fork while we iterate.
    for _ in 0..2 {
        let Ok(dir) = std::fs::read_dir("/proc") else {
            return;
        };
        for e in dir.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            if pid == me {
                continue;
            }
            if std::fs::read_link(format!("/proc/{pid}/ns/user"))
                .ok()
                .as_ref()
                == Some(&own)
            {
                let _ = kill_raw(Pid::from_raw(pid as i32), libc::SIGKILL);
            }
        }
    }
}

/// Run `f` inside the network namespace at `path` on a short-lived thread, so the calling
/// thread's namespace never changes (setns(CLONE_NEWNET) is per thread).
pub fn in_netns<T: Send + 'static, E: Send + 'static + From<io::Error>>(
    path: &std::path::Path,
    f: impl FnOnce() -> Result<T, E> + Send + 'static,
) -> Result<T, E> {
    let path = path.to_path_buf();
    std::thread::spawn(move || {
        let ns = std::fs::File::open(&path)?;
        nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET).map_err(io::Error::from)?;
        f()
    })
    .join()
    .unwrap_or_else(|_| Err(io::Error::other("netns thread panicked").into()))
}

/// Go's `os.MkdirTemp(dir, prefix)`: creates `dir/prefix<random decimal digits>` with mode 0700
/// and returns it (used for the default state dir and copy-up's `.roNNNN` directories, whose
/// names RootlessKit users see).
pub fn mkdir_temp_go(dir: &std::path::Path, prefix: &str) -> io::Result<std::path::PathBuf> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let mut seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
        ^ (u64::from(std::process::id()) << 32);
    for _ in 0..10000 {
        // xorshift64: Go also uses a fast RNG and decimal digits.
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let p = dir.join(format!("{prefix}{}", seed % 4_000_000_000));
        match std::fs::DirBuilder::new().mode(0o700).create(&p) {
            Ok(()) => {
                // The mode passed to mkdir is subject to the umask; Go ends with 0700 too.
                std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o700))?;
                return Ok(p);
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::new(
        io::ErrorKind::AlreadyExists,
        "no free temporary name",
    ))
}
