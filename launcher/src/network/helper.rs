//! Helper processes of the network drivers (slirp4netns, pasta, vpnkit, lxc-user-nic):
//! spawned with `PR_SET_PDEATHSIG=SIGKILL` so that a `kill -9` of rootlesskit leaves nothing
//! behind, stdout+stderr captured (debug log and error messages), optional ready fd 3, and
//! killed + reaped on cleanup.
//!
//! Note: the death signal fires when the *thread* that spawned the helper exits, so drivers must
//! be set up from a thread that lives as long as the parent (the main thread).

use std::io::Read;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use super::NetError;

const OUTPUT_KEEP: usize = 64 * 1024;

/// Captured output of a helper (last 64 KiB).
#[derive(Clone, Default)]
pub(crate) struct Output {
    buf: Arc<Mutex<Vec<u8>>>,
    eof: Arc<AtomicBool>,
}

impl Output {
    pub(crate) fn text(&self) -> String {
        // Give the reader thread a moment to drain what the process wrote before exiting.
        let deadline = Instant::now() + Duration::from_millis(500);
        while !self.eof.load(Ordering::Relaxed) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        let b = self.buf.lock().map(|b| b.clone()).unwrap_or_default();
        String::from_utf8_lossy(&b).into_owned()
    }
}

/// A running helper.
pub(crate) struct Helper {
    pub(crate) name: String,
    pub(crate) child: Child,
    pub(crate) output: Output,
}

/// How to start a helper.
pub(crate) struct Spawn<'a> {
    pub(crate) name: &'a str,
    pub(crate) binary: &'a Path,
    pub(crate) args: &'a [String],
    /// Becomes fd 3 in the helper (slirp4netns `-r 3`).
    pub(crate) fd3: Option<OwnedFd>,
    /// Enter these namespaces (user, then net) before exec (lxc-user-nic's detached helper).
    pub(crate) setns: Vec<OwnedFd>,
}

impl Spawn<'_> {
    pub(crate) fn spawn(self) -> Result<Helper, NetError> {
        let (out_r, out_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
            .map_err(|e| NetError::sys(format!("creating the output pipe of {}", self.name), e))?;
        let out_w2 = out_w.try_clone().map_err(|e| {
            NetError::io(format!("duplicating the output pipe of {}", self.name), e)
        })?;
        let mut cmd = Command::new(self.binary);
        cmd.args(self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::from(out_w))
            .stderr(Stdio::from(out_w2));
        let parent_pid = nix::unistd::getpid();
        let fd3 = self.fd3.as_ref().map(|f| f.as_raw_fd());
        let ns_fds: Vec<i32> = self.setns.iter().map(|f| f.as_raw_fd()).collect();
        // SAFETY: the closure runs in the forked child before exec and only makes
        // async-signal-safe syscalls (sigprocmask, signal, prctl, getppid, dup2, fcntl, setns,
        // close_range, _exit); it does not
        // allocate or take locks.
        unsafe {
            cmd.pre_exec(move || {
                // The parent blocks every signal (signalfd); the helper must not inherit that.
                crate::sys::reset_signals_after_fork()?;
                nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)?;
                // The parent may have died between fork and prctl.
                if nix::unistd::getppid() != parent_pid {
                    libc::_exit(1);
                }
                for fd in &ns_fds {
                    // SAFETY: fd is a namespace fd owned by the parent and open in this child.
                    let b = std::os::fd::BorrowedFd::borrow_raw(*fd);
                    nix::sched::setns(b, nix::sched::CloneFlags::empty())?;
                }
                if let Some(fd) = fd3 {
                    if fd != 3 {
                        if libc::dup2(fd, 3) < 0 {
                            return Err(std::io::Error::last_os_error());
                        }
                    } else if libc::fcntl(3, libc::F_SETFD, 0) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                // Do not leak the launcher's other descriptors (handshake pipes, sockets)
                // into the helper: mark everything above stdio/fd 3 close-on-exec
                // (close_range(CLOSE_RANGE_CLOEXEC), Linux 5.11+; best effort).
                let first: libc::c_uint = if fd3.is_some() { 4 } else { 3 };
                libc::syscall(
                    libc::SYS_close_range,
                    first,
                    libc::c_uint::MAX,
                    4 as libc::c_uint,
                );
                Ok(())
            });
        }
        let child = cmd.spawn().map_err(|e| {
            NetError::io(
                format!("executing {} ({})", self.name, self.binary.display()),
                e,
            )
        })?;
        // Close our copies of fd3/setns fds now that the child has them.
        drop(self.fd3);
        drop(self.setns);
        drop(cmd);
        let output = Output::default();
        let o2 = output.clone();
        let name = self.name.to_string();
        std::thread::Builder::new()
            .name(format!("{name}-output"))
            .spawn(move || read_output(&name, std::fs::File::from(out_r), &o2))
            .map_err(|e| NetError::io("starting the output reader thread", e))?;
        Ok(Helper {
            name: self.name.to_string(),
            child,
            output,
        })
    }
}

fn read_output(name: &str, mut f: std::fs::File, out: &Output) {
    let mut chunk = [0u8; 4096];
    let mut line = Vec::new();
    loop {
        match f.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if let Ok(mut b) = out.buf.lock() {
                    b.extend_from_slice(&chunk[..n]);
                    if b.len() > OUTPUT_KEEP {
                        let cut = b.len() - OUTPUT_KEEP;
                        b.drain(..cut);
                    }
                }
                for &c in &chunk[..n] {
                    if c == b'\n' {
                        crate::debug!("network/{name}: {}", String::from_utf8_lossy(&line));
                        line.clear();
                    } else {
                        line.push(c);
                    }
                }
            }
        }
    }
    out.eof.store(true, Ordering::Relaxed);
}

/// What a helper's exit status means, for messages.
pub(crate) fn describe_exit(st: &ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    if let Some(c) = st.code() {
        format!("exit code {c}")
    } else if let Some(s) = st.signal() {
        format!("signal {s}")
    } else {
        "unknown status".into()
    }
}

impl Helper {
    #[allow(dead_code)]
    pub(crate) fn pid(&self) -> i32 {
        i32::try_from(self.child.id()).unwrap_or(0)
    }

    /// Wait until `ready` becomes readable (one byte or more written, or EOF), checking every
    /// second whether the helper died. `Ok(())` only when data arrived.
    pub(crate) fn wait_ready_fd(
        &mut self,
        ready: &OwnedFd,
        timeout: Duration,
    ) -> Result<(), NetError> {
        let deadline = Instant::now() + timeout;
        loop {
            let mut fds = [PollFd::new(ready.as_fd(), PollFlags::POLLIN)];
            match poll(&mut fds, PollTimeout::from(1000u16)) {
                Ok(0) | Err(nix::errno::Errno::EINTR) => {}
                Ok(_) => {
                    let mut b = [0u8; 16];
                    match nix::unistd::read(ready.as_raw_fd(), &mut b) {
                        Ok(n) if n > 0 => return Ok(()),
                        _ => {
                            // EOF: the helper closed the ready fd, i.e. it exited.
                            let st = self.wait_timeout(Duration::from_secs(2));
                            return Err(self.died(st));
                        }
                    }
                }
                Err(e) => {
                    return Err(NetError::sys(
                        format!("failed to read from {} sync pipe", self.name),
                        e,
                    ))
                }
            }
            if let Ok(Some(st)) = self.child.try_wait() {
                return Err(self.died(Some(st)));
            }
            if Instant::now() >= deadline {
                let _ = self.kill();
                return Err(NetError::Msg(format!(
                    "{} did not become ready within {}s (killed it); output:\n{}",
                    self.name,
                    timeout.as_secs(),
                    self.output.text()
                )));
            }
        }
    }

    fn wait_timeout(&mut self, t: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + t;
        loop {
            if let Ok(Some(st)) = self.child.try_wait() {
                return Some(st);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The error for a helper that exited before being ready.
    pub(crate) fn died(&self, st: Option<ExitStatus>) -> NetError {
        use std::os::unix::process::ExitStatusExt;
        let out = self.output.text();
        let out = out.trim_end();
        let how = match st {
            Some(s) if s.signal().is_some() => format!("{} killed by signal", self.name),
            Some(s) => format!("{} failed ({})", self.name, describe_exit(&s)),
            None => format!("{} failed", self.name),
        };
        if out.is_empty() {
            NetError::Msg(how)
        } else {
            NetError::Msg(format!("{how}:\n{out}"))
        }
    }

    /// SIGKILL and reap; a helper that already exited is fine.
    pub(crate) fn kill(&mut self) -> Result<(), NetError> {
        if let Ok(Some(_)) = self.child.try_wait() {
            return Ok(());
        }
        let _ = self.child.kill();
        self.child
            .wait()
            .map(|_| ())
            .map_err(|e| NetError::io(format!("waiting for {} to exit", self.name), e))
    }
}
