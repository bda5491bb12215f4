//! Readiness sources behind one interface: level-triggered epoll, or io_uring `POLL_ADD`.
//!
//! # Theory of operation
//!
//! The engine registers every fd with a `token` and an [`Interest`] (read, write, both or none)
//! and asks [`Poller::wait`] for `(token, Ready)` pairs. Both backends give *level* semantics:
//! an event is reported again on the next wait while the condition persists and the interest
//! still includes it. The state machine always works until EAGAIN anyway, so spurious or
//! repeated events are harmless.
//!
//! io_uring backend: per registration at most one poll request is in flight (`ARMED`, with the
//! mask it was armed with). When it completes the registration becomes `IDLE` and is re-armed
//! (with the current interest) on the next `wait`, all re-arms of a loop iteration going to the
//! kernel in the same `io_uring_enter` as the wait. A one-shot `POLL_ADD` checks readiness when
//! it is armed, which is what makes this level-triggered. If the interest grows beyond the armed
//! mask, the old request is removed (`POLL_REMOVE`) and a new one is armed. Stale completions
//! (after a removal, or for a reused token) are recognised by their `user_data` sequence number,
//! which is never reused. One-shot polls were chosen over multishot ones because the interest of
//! a socket changes with backpressure (POLLIN is dropped while the peer's pipe is full); with
//! multishot polls every such change would need a remove + add pair anyway.
//!
//! The io_uring backend also offers [`Poller::uring_splice`], a synchronous `IORING_OP_SPLICE`
//! (submit and wait for that one completion) used by the `UringSplice` backend.

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::time::Duration;

use io_uring::{opcode, types, IoUring};
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Interest {
    pub read: bool,
    pub write: bool,
}

impl Interest {
    pub const NONE: Interest = Interest {
        read: false,
        write: false,
    };
    pub const READ: Interest = Interest {
        read: true,
        write: false,
    };
    fn poll_mask(self) -> u32 {
        let mut m = (libc::POLLERR | libc::POLLHUP | libc::POLLRDHUP) as u32;
        if self.read {
            m |= libc::POLLIN as u32;
        }
        if self.write {
            m |= libc::POLLOUT as u32;
        }
        m
    }
    fn epoll_flags(self) -> EpollFlags {
        let mut f = EpollFlags::empty();
        if self.read {
            f |= EpollFlags::EPOLLIN | EpollFlags::EPOLLRDHUP;
        }
        if self.write {
            f |= EpollFlags::EPOLLOUT;
        }
        f
    }
}

#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Ready {
    pub read: bool,
    pub write: bool,
    pub error: bool,
    pub hup: bool,
}

impl Ready {
    fn from_poll(m: u32) -> Ready {
        Ready {
            read: m & (libc::POLLIN | libc::POLLRDHUP) as u32 != 0,
            write: m & libc::POLLOUT as u32 != 0,
            error: m & libc::POLLERR as u32 != 0,
            hup: m & libc::POLLHUP as u32 != 0,
        }
    }
}

struct Reg {
    fd: RawFd,
    interest: Interest,
    /// (user_data, mask) of the poll in flight.
    armed: Option<(u64, u32)>,
    dirty: bool,
}

pub(crate) struct UringPoller {
    ring: IoUring,
    regs: HashMap<u64, Reg>,
    inflight: HashMap<u64, u64>, // user_data -> token
    seq: u64,
    dirty: Vec<u64>,
    backlog: Vec<io_uring::squeue::Entry>,
}

const UD_IGNORE: u64 = u64::MAX;
const UD_SPLICE: u64 = u64::MAX - 1;

pub(crate) enum Poller {
    Epoll(Epoll),
    Uring(Box<UringPoller>),
}

impl Poller {
    pub(crate) fn new(uring: bool) -> io::Result<Poller> {
        if uring {
            let ring = IoUring::builder()
                .setup_coop_taskrun()
                .build(1024)
                .or_else(|_| IoUring::new(1024))?;
            return Ok(Poller::Uring(Box::new(UringPoller {
                ring,
                regs: HashMap::new(),
                inflight: HashMap::new(),
                seq: 1,
                dirty: Vec::new(),
                backlog: Vec::new(),
            })));
        }
        Ok(Poller::Epoll(
            Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC).map_err(io::Error::from)?,
        ))
    }

    pub(crate) fn add(&mut self, fd: BorrowedFd<'_>, token: u64, i: Interest) -> io::Result<()> {
        match self {
            Poller::Epoll(ep) => ep
                .add(fd, EpollEvent::new(i.epoll_flags(), token))
                .map_err(io::Error::from),
            Poller::Uring(u) => {
                u.regs.insert(
                    token,
                    Reg {
                        fd: fd.as_raw_fd(),
                        interest: i,
                        armed: None,
                        dirty: true,
                    },
                );
                u.dirty.push(token);
                Ok(())
            }
        }
    }

    pub(crate) fn modify(&mut self, fd: BorrowedFd<'_>, token: u64, i: Interest) {
        match self {
            Poller::Epoll(ep) => {
                let mut ev = EpollEvent::new(i.epoll_flags(), token);
                let _ = ep.modify(fd, &mut ev);
            }
            Poller::Uring(u) => {
                if let Some(r) = u.regs.get_mut(&token) {
                    r.interest = i;
                    if !r.dirty {
                        r.dirty = true;
                        u.dirty.push(token);
                    }
                }
            }
        }
    }

    /// Must be called before the fd is closed.
    pub(crate) fn delete(&mut self, fd: BorrowedFd<'_>, token: u64) {
        match self {
            Poller::Epoll(ep) => {
                let _ = ep.delete(fd);
            }
            Poller::Uring(u) => {
                if let Some(r) = u.regs.remove(&token) {
                    if let Some((ud, _)) = r.armed {
                        u.inflight.remove(&ud);
                        u.backlog
                            .push(opcode::PollRemove::new(ud).build().user_data(UD_IGNORE));
                    }
                }
            }
        }
    }

    pub(crate) fn wait(
        &mut self,
        out: &mut Vec<(u64, Ready)>,
        timeout: Option<Duration>,
    ) -> io::Result<()> {
        out.clear();
        match self {
            Poller::Epoll(ep) => {
                let mut evs = [EpollEvent::empty(); 256];
                let t = match timeout {
                    None => EpollTimeout::NONE,
                    Some(d) => EpollTimeout::from(d.as_millis().min(60_000) as u16),
                };
                let n = match ep.wait(&mut evs, t) {
                    Ok(n) => n,
                    Err(nix::Error::EINTR) => 0,
                    Err(e) => return Err(e.into()),
                };
                for ev in &evs[..n] {
                    let f = ev.events();
                    out.push((
                        ev.data(),
                        Ready {
                            read: f.intersects(EpollFlags::EPOLLIN | EpollFlags::EPOLLRDHUP),
                            write: f.contains(EpollFlags::EPOLLOUT),
                            error: f.contains(EpollFlags::EPOLLERR),
                            hup: f.contains(EpollFlags::EPOLLHUP),
                        },
                    ));
                }
                Ok(())
            }
            Poller::Uring(u) => u.wait(out, timeout),
        }
    }

    /// io_uring: submit queued removals now. A pending poll holds a reference to its file, so
    /// a closed listener stays open in the kernel until the `POLL_REMOVE` is submitted; callers
    /// that promise "closed" (remove_port) flush first.
    pub(crate) fn flush(&mut self) {
        if let Poller::Uring(u) = self {
            let backlog = std::mem::take(&mut u.backlog);
            for e in backlog {
                let _ = u.push(e);
            }
            let _ = u.ring.submit();
        }
    }

    /// Synchronous `IORING_OP_SPLICE` (UringSplice backend); other completions that arrive
    /// meanwhile are kept for the next `wait`.
    pub(crate) fn uring_splice(
        &mut self,
        fd_in: BorrowedFd<'_>,
        fd_out: BorrowedFd<'_>,
        len: usize,
        flags: u32,
        parked: &mut Vec<(u64, Ready)>,
    ) -> io::Result<usize> {
        let Poller::Uring(u) = self else {
            return crate::engine::sys::splice(fd_in, fd_out, len, flags);
        };
        let e = opcode::Splice::new(
            types::Fd(fd_in.as_raw_fd()),
            -1,
            types::Fd(fd_out.as_raw_fd()),
            -1,
            u32::try_from(len).unwrap_or(u32::MAX),
        )
        .flags(flags)
        .build()
        .user_data(UD_SPLICE);
        u.push(e)?;
        loop {
            match u.ring.submit_and_wait(1) {
                Ok(_) => {}
                Err(e) if e.raw_os_error() == Some(libc::EINTR) => continue,
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {}
                Err(e) => return Err(e),
            }
            let mut result = None;
            let cqes: Vec<(u64, i32)> = u
                .ring
                .completion()
                .map(|c| (c.user_data(), c.result()))
                .collect();
            for (ud, res) in cqes {
                if ud == UD_SPLICE {
                    result = Some(res);
                } else {
                    u.complete(ud, res, parked);
                }
            }
            if let Some(res) = result {
                return if res < 0 {
                    Err(io::Error::from_raw_os_error(-res))
                } else {
                    Ok(res as usize)
                };
            }
        }
    }
}

impl UringPoller {
    fn push(&mut self, e: io_uring::squeue::Entry) -> io::Result<()> {
        loop {
            // SAFETY: POLL_ADD/POLL_REMOVE/SPLICE entries reference only fds (kept open by the
            // engine until after `delete`, which cancels the poll) and no memory buffers.
            let r = unsafe { self.ring.submission().push(&e) };
            if r.is_ok() {
                return Ok(());
            }
            self.ring.submit()?;
        }
    }

    fn complete(&mut self, ud: u64, res: i32, out: &mut Vec<(u64, Ready)>) {
        if ud == UD_IGNORE || ud == UD_SPLICE {
            return;
        }
        let Some(token) = self.inflight.remove(&ud) else {
            return; // stale
        };
        let Some(r) = self.regs.get_mut(&token) else {
            return;
        };
        if r.armed.map(|a| a.0) == Some(ud) {
            r.armed = None;
        }
        if !r.dirty {
            r.dirty = true;
            self.dirty.push(token);
        }
        let ready = if res < 0 {
            Ready {
                error: true,
                ..Ready::default()
            }
        } else {
            Ready::from_poll(res as u32)
        };
        out.push((token, ready));
    }

    fn arm_dirty(&mut self) -> io::Result<()> {
        let dirty = std::mem::take(&mut self.dirty);
        for token in dirty {
            let Some(r) = self.regs.get_mut(&token) else {
                continue;
            };
            r.dirty = false;
            let want = r.interest.poll_mask();
            let fd = r.fd;
            match r.armed {
                Some((_, mask)) if mask & want == want => continue,
                Some((ud, _)) => {
                    self.inflight.remove(&ud);
                    r.armed = None;
                    self.backlog
                        .push(opcode::PollRemove::new(ud).build().user_data(UD_IGNORE));
                }
                None => {}
            }
            if !r.interest.read && !r.interest.write {
                // Errors/hangups only matter while we wait for something; an fd with no interest
                // is left unpolled (the engine always has read interest on live sockets unless
                // backpressured, and then write interest on the peer).
                continue;
            }
            let ud = self.seq;
            self.seq += 1;
            r.armed = Some((ud, want));
            self.inflight.insert(ud, token);
            self.backlog.push(
                opcode::PollAdd::new(types::Fd(fd), want)
                    .build()
                    .user_data(ud),
            );
        }
        let backlog = std::mem::take(&mut self.backlog);
        for e in backlog {
            self.push(e)?;
        }
        Ok(())
    }

    fn wait(&mut self, out: &mut Vec<(u64, Ready)>, timeout: Option<Duration>) -> io::Result<()> {
        self.arm_dirty()?;
        let have = !self.ring.completion().is_empty();
        let r = if have {
            self.ring.submit()
        } else {
            match timeout {
                Some(d) => {
                    let ts = types::Timespec::from(d);
                    let args = types::SubmitArgs::new().timespec(&ts);
                    self.ring.submitter().submit_with_args(1, &args)
                }
                None => self.ring.submit_and_wait(1),
            }
        };
        match r {
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::ETIME) | Some(libc::EINTR) | Some(libc::EBUSY)
                ) => {}
            Err(e) => return Err(e),
        }
        let cqes: Vec<(u64, i32)> = self
            .ring
            .completion()
            .map(|c| (c.user_data(), c.result()))
            .collect();
        for (ud, res) in cqes {
            self.complete(ud, res, out);
        }
        Ok(())
    }
}
