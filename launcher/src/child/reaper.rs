//! Running the command: PATH lookup with Go's error text, environment, `setsid` only with the
//! reaper (so the controlling TTY is kept without it), pdeathsig, signal forwarding and
//! reaping. The command's exit status becomes the child's; death by signal gives 255.

use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::PathBuf;
use std::process::Command;

use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use super::{reaper_enabled, ChildArgs};
use crate::sys::{go_signal_name, is_forwarded, kill_raw};
use crate::{debug, error};

/// Go's `exec.LookPath`: names with a slash are used as is; others are searched in `$PATH`.
pub fn look_path(name: &str) -> Result<PathBuf, String> {
    use std::os::unix::fs::PermissionsExt;
    let is_exec = |p: &std::path::Path| {
        std::fs::metadata(p)
            .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            .unwrap_or(false)
    };
    if name.contains('/') {
        return Ok(PathBuf::from(name));
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            let dir = if dir.as_os_str().is_empty() {
                PathBuf::from(".")
            } else {
                dir
            };
            let p = dir.join(name);
            if is_exec(&p) {
                return Ok(p);
            }
        }
    }
    Err(format!(
        "exec: {name:?}: executable file not found in $PATH"
    ))
}

/// Start the command and wait for it, forwarding signals. Returns the exit code.
pub fn run_command(a: &ChildArgs) -> i32 {
    let argv = &a.opts.command;
    let shown = format!("[{}]", argv.join(" "));
    let path = match look_path(&argv[0]) {
        Ok(p) => p,
        Err(e) => {
            error!("command {shown} exited: {e}");
            return 1;
        }
    };
    let reaper = reaper_enabled(&a.opts);
    let activation = socket_activation(a.launcher_pid);
    debug!(
        "executing command argv={argv:?} path={} reaper={reaper} socket_activation={activation}",
        path.display()
    );
    let mut cmd = if activation {
        // systemd socket activation: fds 3.. are inherited unchanged (nothing of ours is
        // without O_CLOEXEC); LISTEN_PID must name the command, whose PID is only known after
        // fork, so a tiny helper (this binary) sets it to its own PID and execs the command.
        let mut c = Command::new("/proc/self/exe");
        c.arg0(&argv[0])
            .env(ACTIVATION_HELPER_ENV, "true")
            .arg(&path)
            .args(&argv[1..]);
        c
    } else {
        let mut c = Command::new(&path);
        c.arg0(&argv[0]).args(&argv[1..]);
        c
    };
    cmd.env("ROOTLESSKIT_STATE_DIR", &a.state_dir)
        .env("ROOTLESSKIT_PARENT_EUID", a.parent_euid.to_string())
        .env("ROOTLESSKIT_PARENT_EGID", a.parent_egid.to_string());
    crate::sys::prepare_command(&mut cmd, reaper);
    let child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            error!(
                "command {shown} exited: fork/exec {}: {}",
                path.display(),
                go_errno_text(&e)
            );
            return 1;
        }
    };
    let pid = Pid::from_raw(child.id() as i32);
    // `child` (std's handle) is never waited through std: we reap with waitpid ourselves.
    std::mem::forget(child);
    debug!("command started pid={pid}");
    let status = wait_forwarding(&a.signals, pid, reaper, a.parent_pid);
    debug!("command exited pid={pid} status=\"{status}\"");
    match status {
        Status::Code(0) => 0,
        Status::Code(c) => {
            error!("command {shown} exited: exit status {c}");
            c
        }
        Status::Signal(s) => {
            error!("command {shown} exited: signal: {}", go_signal_name(s));
            255
        }
    }
}

/// Set for the activation helper only; removed by it before the command's exec.
pub const ACTIVATION_HELPER_ENV: &str = "_ROOTLESSKIT_SYSTEMD_ACTIVATION_RUN_HELPER_UNDOCUMENTED";

/// `LISTEN_PID` names the launcher and `LISTEN_FDS` > 0 (systemd socket activation).
fn socket_activation(launcher_pid: i32) -> bool {
    let pid = std::env::var("LISTEN_PID")
        .ok()
        .and_then(|s| s.parse::<i32>().ok());
    let fds = std::env::var("LISTEN_FDS")
        .ok()
        .and_then(|s| s.parse::<i32>().ok());
    pid == Some(launcher_pid) && fds.unwrap_or(0) > 0
}

/// The activation helper: `argv[1]` is the resolved command path, `argv[2..]` its arguments,
/// `argv[0]` the command's argv[0]. Sets `LISTEN_PID` to our PID and execs; never returns.
pub fn run_activation_helper() -> ! {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    crate::log::set_role(crate::log::Role::Child);
    std::env::remove_var(ACTIVATION_HELPER_ENV);
    std::env::set_var("LISTEN_PID", std::process::id().to_string());
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if args.len() < 2 {
        error!("systemd activation helper: missing the command argument (argv={args:?})");
        std::process::exit(1);
    }
    let to_c = |s: &std::ffi::OsStr| CString::new(s.as_bytes()).unwrap_or_default();
    let path = to_c(&args[1]);
    let mut argv = vec![to_c(&args[0])];
    argv.extend(args[2..].iter().map(|a| to_c(a)));
    let err = nix::unistd::execv(&path, &argv).unwrap_err();
    error!(
        "systemd activation helper: exec {} (argv[0] {}): {err}",
        args[1].to_string_lossy(),
        args[0].to_string_lossy()
    );
    std::process::exit(1);
}

fn go_errno_text(e: &std::io::Error) -> String {
    match e.raw_os_error() {
        Some(libc::EACCES) => "permission denied".into(),
        Some(libc::ENOENT) => "no such file or directory".into(),
        Some(libc::ENOEXEC) => "exec format error".into(),
        _ => e.to_string(),
    }
}

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Code(i32),
    Signal(i32),
}

/// Go's `ProcessState.String()` style: `exit status 3`, `signal: killed`.
impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Status::Code(c) => write!(f, "exit status {c}"),
            Status::Signal(s) => write!(f, "signal: {}", go_signal_name(*s)),
        }
    }
}

impl Status {
    pub fn from_wait(ws: WaitStatus) -> Option<Status> {
        match ws {
            WaitStatus::Exited(_, c) => Some(Status::Code(c)),
            WaitStatus::Signaled(_, s, _) => Some(Status::Signal(s as i32)),
            _ => None,
        }
    }

    pub fn from_exit(st: std::process::ExitStatus) -> Status {
        match (st.code(), st.signal()) {
            (Some(c), _) => Status::Code(c),
            (None, Some(s)) => Status::Signal(s),
            _ => Status::Code(255),
        }
    }
}

/// Forward every forwardable signal from `sigfd` to `pid` until `pid` exits. With `reap_all`
/// every exited descendant is reaped too (we are PID 1 of the pid namespace).
///
/// `parent`: in the child without `--pidns`, the launcher parent's PID; the child's
/// parent-death signal is [`crate::sys::CHILD_PDEATHSIG`], and when it arrives with the parent
/// gone every process of the user namespace is killed.
pub fn wait_forwarding(
    sigfd: &nix::sys::signalfd::SignalFd,
    pid: Pid,
    reap_all: bool,
    parent: Option<Pid>,
) -> Status {
    loop {
        // Check first: SIGCHLD may have been delivered before we started reading.
        if let Some(st) = reap(pid, reap_all) {
            return st;
        }
        match sigfd.read_signal() {
            Ok(Some(info)) => {
                let sig = info.ssi_signo as i32;
                if sig == libc::SIGCHLD {
                    continue;
                }
                if let Some(parent) = parent {
                    if sig == crate::sys::CHILD_PDEATHSIG && nix::unistd::getppid() != parent {
                        crate::sys::kill_user_namespace_processes();
                        std::process::exit(255);
                    }
                }
                if is_forwarded(sig) {
                    let _ = kill_raw(pid, sig);
                }
            }
            Ok(None) => {}
            Err(nix::errno::Errno::EINTR) => {}
            Err(_) => {
                // Without the signalfd we can still wait (no forwarding).
                return match waitpid(pid, None).ok().and_then(Status::from_wait) {
                    Some(s) => s,
                    None => Status::Code(255),
                };
            }
        }
    }
}

fn reap(pid: Pid, reap_all: bool) -> Option<Status> {
    let target = if reap_all { Pid::from_raw(-1) } else { pid };
    let mut result = None;
    loop {
        match waitpid(target, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) => break,
            Ok(ws) => {
                if ws.pid() == Some(pid) {
                    if let Some(st) = Status::from_wait(ws) {
                        result = Some(st);
                    }
                }
                if !reap_all {
                    break;
                }
            }
            Err(_) => break,
        }
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn look_path_texts() {
        assert!(look_path("sh").unwrap().ends_with("sh"));
        assert_eq!(
            look_path("no-such-command-xyz").unwrap_err(),
            "exec: \"no-such-command-xyz\": executable file not found in $PATH"
        );
        assert_eq!(look_path("./x").unwrap(), PathBuf::from("./x"));
    }
}
