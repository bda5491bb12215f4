//! Readiness sources behind one interface: level-triggered epoll, or io_uring `POLL_ADD`
//! (multishot with level emulation, or one-shot).
//!
//! # Theory of operation
//!
//! The engine registers every fd with a `token` and an [`Interest`] (read, write, both or none)
//! and asks [`Poller::wait`] for `(token, Ready)` pairs. Both backends give *level* semantics:
//! an event is reported again on the next wait while the condition persists and the interest
//! still includes it. The state machine always works until EAGAIN anyway, so spurious or
//! repeated events are harmless.
//!
//! io_uring backend, one ring per worker thread, per registration at most one poll request in
//! flight (`armed`, with the mask it was armed with). Two modes:
//!
//! - **One-shot** (the default). When a poll completes the registration becomes idle and is
//!   re-armed (with the current interest) on the next `wait`; a one-shot `POLL_ADD` checks
//!   readiness when it is armed, which is what makes it level-triggered. If the interest grows
//!   beyond the armed mask, the old request is removed (`POLL_REMOVE`) and a new one is armed.
//! - **Multishot** (`ROOTLESSKIT_FORWARDER_URING_POLL=multishot`; `IORING_POLL_ADD_MULTI`,
//!   Linux 5.13+, probed once per process, one-shot where unsupported). The poll stays armed
//!   and posts a completion with `IORING_CQE_F_MORE` for every wake-up; it is re-armed only
//!   when the kernel ends it (a completion without `F_MORE`, e.g. on CQ overflow) or when
//!   POLLOUT has to be added or dropped (remove + add). POLLIN stays armed while reading is
//!   paused for backpressure, so pausing and resuming cost no request; completions are
//!   filtered by the current interest. A multishot poll reports wake-ups, i.e. edges, while the
//!   engine relies on level semantics (it may stop before EAGAIN: its per-wake-up budget, the
//!   accept batch; and it resumes reading a socket whose data arrived while reading was
//!   paused). Level is emulated: `wait` first reaps the completions already posted (no
//!   syscall), then checks the fds reported by the previous wait, or whose interest grew, that
//!   no completion covered, with one `poll(2)` (zero timeout); it blocks only if neither found
//!   anything.
//!
//! In both modes all (re-)arms of a loop iteration go to the kernel in the same
//! `io_uring_enter` as the wait, and stale completions (after a removal, or for a reused token)
//! are recognised by their `user_data` sequence number, which is never reused. Multishot accept
//! is not used: the worker accepts in batches itself (with its EMFILE back-off and the socket
//! pool), so a readiness report fits its model and a multishot accept, which hands over fds in
//! completions and ends on the first EMFILE, would not.
//!
//! **Why one-shot stays the default** (measured 2026-11-29 on the 2-vCPU development VM, only
//! same-run interleaved pairs compared). Engine CPU report,
//! `FWD_BENCH_CASE=uring ROOTLESSKIT_FORWARDER_URING_POLL=oneshot|multishot cargo bench -p
//! rootlesskit-benches --bench engine -- cpu`, alternating the modes round by round:
//!
//! | run | io_uring poll | bulk CPU-s/GB per round (median) | CPU-µs per 64 B round trip, min | conns/s, median |
//! |---|---|---|---|---|
//! | loaded (load 9), 6 rounds | one-shot  | 0.182 0.173 0.165 0.171 0.188 0.193 (0.177) | 6.24 | 2.7k |
//! | loaded (load 9), 6 rounds | multishot | 0.205 0.180 0.211 0.193 0.193 0.199 (0.196) | 6.17 | 2.4k |
//! | quieter (load 3), 4 rounds | one-shot  | 0.112 0.127 0.109 0.115 (0.114) | 33.6 | 6.1k |
//! | quieter (load 3), 4 rounds | multishot | 0.112 0.105 0.107 0.110 (0.109) | 35.5 | 6.0k |
//! | quiet (load 1.7), 4 rounds | one-shot  | 0.112 0.114 0.096 0.108 (0.110) | 31.6 | 6.5k |
//! | quiet (load 1.7), 4 rounds | multishot | 0.127 0.105 0.116 0.106 (0.111) | 32.4 | 6.7k |
//!
//! (The round-trip CPU moves between a 6 µs and a 35 µs regime from run to run on this VM,
//! for both modes alike.) Under load multishot cost more CPU per byte in all 6 pairs (+4% to
//! +28%; an earlier 4-round loaded run of the first multishot version: +16% to +60%); on the
//! quieter machine the two are equal within noise (medians −4% and +1%). Per round trip
//! (multishot +1% to +4% in the 4 quiet pairs) and per connection (+3%) they are equal
//! within noise. So multishot is not better here, and worse under load. The likely
//! reason: while the worker splices a bulk flow its multishot poll stays armed, so every arriving
//! segment queues poll task work that runs at the exit of the worker's next syscall and posts a
//! completion the worker then reaps, whereas a one-shot poll stays disarmed until the worker
//! hits EAGAIN. Request/response traffic gains nothing either: the one-shot re-arm travels in
//! the `io_uring_enter` that waits anyway, and multishot pays a `poll(2)` level check instead.
//!
//! Through the real launcher, `portfwd_bench.py --secs 2 --rounds 3 --tests crr,http,rr
//! --direct` with three `--kit`s, all `ROOTLESSKIT_FORWARDER_BACKEND=uring`: the binary before
//! this change (one-shot), this binary with multishot, this binary one-shot. Forwarder CPU per
//! request (µs, per round, median), and the raw medians:
//!
//! | test | before (one-shot) | multishot | one-shot |
//! |---|---|---|---|
//! | crr, CPU-µs/conn | 38.0, 36.8, 37.3 (37.3) | 40.5, 37.8, 35.2 (37.8) | 47.5, 33.0, 46.2 (46.2) |
//! | http, CPU-µs/req | 9.2, 9.7, 7.0 (9.2) | 8.5, 7.8, 7.1 (7.8) | 9.3, 7.3, 7.8 (7.8) |
//! | crr req/s (direct 27.0k) | 12.9k | 8.5k | 7.4k |
//! | http req/s (direct 63.2k) | 47.1k | 28.9k | 48.4k |
//! | rr µs (direct 4.3) | 55.5 | 11.0 | 67.3 |
//!
//! The two one-shot columns run the same code and differ by up to 2.5× in rate: on this loaded
//! machine the launcher-level figures cannot separate the modes; the CPU per request is the
//! same within noise. Multishot stays available for kernels or workloads where it pays off.
//!
//! The io_uring backend also offers [`Poller::uring_splice`], a synchronous `IORING_OP_SPLICE`
//! (submit and wait for that one completion) used by the `UringSplice` backend.

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd, RawFd};
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

/// Drop `fd` from the epoll instance behind `epoll` (a [`Poller::remote_handle`]) from any
/// thread (epoll is thread-safe); `ENOENT` when it is not registered (yet).
pub(crate) fn remote_delete(epoll: BorrowedFd<'_>, fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: plain syscall on two borrowed (open) fds; EPOLL_CTL_DEL ignores the event.
    let r = unsafe {
        libc::epoll_ctl(
            epoll.as_raw_fd(),
            libc::EPOLL_CTL_DEL,
            fd.as_raw_fd(),
            std::ptr::null_mut(),
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Ready {
    pub read: bool,
    pub write: bool,
    pub error: bool,
    pub hup: bool,
    /// The peer shut down its sending side (`POLLRDHUP`): a read drains to EOF.
    pub rdhup: bool,
}

impl Ready {
    fn from_poll(m: u32) -> Ready {
        Ready {
            read: m & (libc::POLLIN | libc::POLLRDHUP) as u32 != 0,
            write: m & libc::POLLOUT as u32 != 0,
            error: m & libc::POLLERR as u32 != 0,
            hup: m & libc::POLLHUP as u32 != 0,
            rdhup: m & libc::POLLRDHUP as u32 != 0,
        }
    }
}

struct Reg {
    fd: RawFd,
    interest: Interest,
    /// (user_data, mask) of the poll in flight.
    armed: Option<(u64, u32)>,
    dirty: bool,
    /// Multishot: queued for a level check at the next `wait`.
    recheck: bool,
    /// Multishot: the `wait` round whose level check reported this fd.
    reported: u64,
}

pub(crate) struct UringPoller {
    ring: IoUring,
    regs: HashMap<u64, Reg>,
    inflight: HashMap<u64, u64>, // user_data -> token
    seq: u64,
    dirty: Vec<u64>,
    backlog: Vec<io_uring::squeue::Entry>,
    /// Multishot polls (probed once per process) instead of one-shot ones.
    multishot: bool,
    /// Multishot: tokens to level-check (`poll(2)`, zero timeout) at the next `wait`.
    recheck: Vec<u64>,
    pollfds: Vec<libc::pollfd>,
    /// Number of `wait` calls (multishot duplicate suppression).
    round: u64,
}

const UD_IGNORE: u64 = u64::MAX;
const UD_SPLICE: u64 = u64::MAX - 1;

pub(crate) enum Poller {
    Epoll(Epoll),
    Uring(Box<UringPoller>),
}

/// Poll mode of the io_uring backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum UringPollMode {
    /// One-shot `POLL_ADD`, re-armed after every completion (the default: see the figures in
    /// the module documentation).
    OneShot,
    /// Multishot, where the kernel supports it (probed once per process); one-shot otherwise.
    Multishot,
}

/// Does the kernel support `IORING_POLL_ADD_MULTI` (5.13+)? Probed once per process on a
/// throw-away ring: a multishot POLLOUT poll on an (always writable) eventfd must complete with
/// a positive mask and `IORING_CQE_F_MORE`.
fn multishot_supported() -> bool {
    static SUPPORTED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *SUPPORTED.get_or_init(|| probe_multishot().unwrap_or(false))
}

fn probe_multishot() -> io::Result<bool> {
    let mut ring = IoUring::new(4)?;
    let efd = crate::engine::sys::eventfd()?;
    let e = opcode::PollAdd::new(types::Fd(efd.as_raw_fd()), libc::POLLOUT as u32)
        .multi(true)
        .build()
        .user_data(1);
    // SAFETY: the entry references no memory, only the fd `efd`; the kernel takes its own
    // reference to the file when the poll is armed, and dropping the ring cancels the poll.
    unsafe { ring.submission().push(&e) }.map_err(|_| io::Error::other("probe ring full"))?;
    ring.submit_and_wait(1)?;
    let ok = ring
        .completion()
        .next()
        .is_some_and(|c| c.result() > 0 && io_uring::cqueue::more(c.flags()));
    Ok(ok)
}

impl Poller {
    /// `ROOTLESSKIT_FORWARDER_URING_POLL=multishot` selects multishot polls for the io_uring
    /// backend (measurements, kernels where it pays off); the default is one-shot.
    pub(crate) fn new(uring: bool) -> io::Result<Poller> {
        let mode = match std::env::var("ROOTLESSKIT_FORWARDER_URING_POLL").as_deref() {
            Ok("multishot") => UringPollMode::Multishot,
            _ => UringPollMode::OneShot,
        };
        Self::with_mode(uring, mode)
    }

    pub(crate) fn with_mode(uring: bool, mode: UringPollMode) -> io::Result<Poller> {
        if uring {
            let ring = IoUring::builder()
                .setup_coop_taskrun()
                .build(1024)
                .or_else(|_| IoUring::new(1024))?;
            // Multishot only where the kernel supports it.
            let multishot = mode == UringPollMode::Multishot && multishot_supported();
            return Ok(Poller::Uring(Box::new(UringPoller {
                ring,
                regs: HashMap::new(),
                inflight: HashMap::new(),
                seq: 1,
                dirty: Vec::new(),
                backlog: Vec::new(),
                multishot,
                recheck: Vec::new(),
                pollfds: Vec::new(),
                round: 0,
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
                        recheck: false,
                        reported: 0,
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
                    let grew = (i.read && !r.interest.read) || (i.write && !r.interest.write);
                    r.interest = i;
                    if !r.dirty {
                        r.dirty = true;
                        u.dirty.push(token);
                    }
                    // A multishot poll that stays armed reports only new wake-ups: a condition
                    // that became true while it was not wanted is found by a level check.
                    if u.multishot && grew && !r.recheck {
                        r.recheck = true;
                        u.recheck.push(token);
                    }
                }
            }
        }
    }

    /// A second handle on the epoll instance, through which another thread may drop an fd
    /// from it ([`remote_delete`]); None for io_uring, whose submission queue only this thread
    /// may use.
    pub(crate) fn remote_handle(&self) -> Option<OwnedFd> {
        match self {
            Poller::Epoll(ep) => ep.0.try_clone().ok(),
            Poller::Uring(_) => None,
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
                            rdhup: f.contains(EpollFlags::EPOLLRDHUP),
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
            let cqes: Vec<(u64, i32, u32)> = u
                .ring
                .completion()
                .map(|c| (c.user_data(), c.result(), c.flags()))
                .collect();
            for (ud, res, flags) in cqes {
                if ud == UD_SPLICE {
                    result = Some(res);
                } else {
                    u.complete(ud, res, flags, parked);
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

    fn complete(&mut self, ud: u64, res: i32, flags: u32, out: &mut Vec<(u64, Ready)>) {
        if ud == UD_IGNORE || ud == UD_SPLICE {
            return;
        }
        // A multishot poll stays armed while its completions carry IORING_CQE_F_MORE.
        let more = self.multishot && io_uring::cqueue::more(flags);
        let token = if more {
            self.inflight.get(&ud).copied()
        } else {
            self.inflight.remove(&ud)
        };
        let Some(token) = token else {
            return; // stale
        };
        let Some(r) = self.regs.get_mut(&token) else {
            return;
        };
        if !more {
            if r.armed.map(|a| a.0) == Some(ud) {
                r.armed = None;
            }
            if !r.dirty {
                r.dirty = true;
                self.dirty.push(token);
            }
        }
        if self.multishot && res == -libc::ECANCELED {
            return; // ended by the kernel (e.g. CQ overflow): re-armed on the next wait
        }
        let mut ready = if res < 0 {
            Ready {
                error: true,
                ..Ready::default()
            }
        } else {
            Ready::from_poll(res as u32)
        };
        if self.multishot {
            // The multishot mask may be wider than the interest (POLLIN stays armed while
            // reading is paused): report only what is wanted, plus errors and hang-ups.
            ready.read &= r.interest.read;
            ready.write &= r.interest.write;
            if !(ready.read || ready.write || ready.error || ready.hup) {
                return;
            }
            if r.reported == self.round && !ready.error {
                // Already reported in this round (and queued for the next level check).
                return;
            }
            r.reported = self.round;
            // Level emulation: the engine may stop before EAGAIN (its per-wake-up budget, the
            // accept batch), and a multishot poll reports only new wake-ups.
            if (ready.read || ready.write) && !r.recheck {
                r.recheck = true;
                self.recheck.push(token);
            }
        }
        out.push((token, ready));
    }

    fn arm_dirty(&mut self) -> io::Result<()> {
        let dirty = std::mem::take(&mut self.dirty);
        for token in dirty {
            let Some(r) = self.regs.get_mut(&token) else {
                continue;
            };
            r.dirty = false;
            let mut want = r.interest.poll_mask();
            if self.multishot {
                // Keep POLLIN armed while reading is paused (backpressure), so that the pause
                // and the resume cost no remove + add; completions are filtered by interest.
                want |= libc::POLLIN as u32;
            }
            let fd = r.fd;
            match r.armed {
                // One-shot: any superset will do (it completes once anyway). Multishot: POLLOUT
                // must go when not wanted, or every freed send buffer would wake us.
                Some((_, mask)) if !self.multishot && mask & want == want => continue,
                Some((_, mask)) if self.multishot && mask == want => continue,
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
                    .multi(self.multishot)
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

    /// Multishot level emulation: one `poll(2)` with zero timeout over the fds queued in
    /// `recheck` (reported last time, or whose interest grew) that no completion of this round
    /// reported already; those still ready are reported now. Every fd reported in this round
    /// (by a completion or by this check) is queued for the next one.
    fn level_check(&mut self, out: &mut Vec<(u64, Ready)>) {
        if self.recheck.is_empty() {
            return;
        }
        let tokens = std::mem::take(&mut self.recheck);
        self.pollfds.clear();
        let mut live = Vec::with_capacity(tokens.len());
        let mut again = Vec::with_capacity(tokens.len());
        for t in tokens {
            let Some(r) = self.regs.get_mut(&t) else {
                continue;
            };
            r.recheck = false;
            if r.reported == self.round {
                again.push(t);
                continue;
            }
            let mut events: libc::c_short = 0;
            if r.interest.read {
                events |= libc::POLLIN | libc::POLLRDHUP;
            }
            if r.interest.write {
                events |= libc::POLLOUT;
            }
            if events == 0 {
                continue;
            }
            self.pollfds.push(libc::pollfd {
                fd: r.fd,
                events,
                revents: 0,
            });
            live.push(t);
        }
        if !live.is_empty() {
            // SAFETY: `pollfds` is a live, initialised array of `len` entries; the fds are
            // registered, so the engine keeps them open until `delete`.
            let n = unsafe {
                libc::poll(
                    self.pollfds.as_mut_ptr(),
                    self.pollfds.len() as libc::nfds_t,
                    0,
                )
            };
            if n > 0 {
                for (pfd, t) in self.pollfds.iter().zip(live) {
                    if pfd.revents == 0 {
                        continue;
                    }
                    if let Some(r) = self.regs.get_mut(&t) {
                        r.reported = self.round;
                        out.push((t, Ready::from_poll(pfd.revents as u16 as u32)));
                        again.push(t);
                    }
                }
            }
        }
        for t in again {
            if let Some(r) = self.regs.get_mut(&t) {
                if !r.recheck {
                    r.recheck = true;
                    self.recheck.push(t);
                }
            }
        }
    }

    fn reap(&mut self, out: &mut Vec<(u64, Ready)>) {
        let cqes: Vec<(u64, i32, u32)> = self
            .ring
            .completion()
            .map(|c| (c.user_data(), c.result(), c.flags()))
            .collect();
        for (ud, res, flags) in cqes {
            self.complete(ud, res, flags, out);
        }
    }

    fn wait(&mut self, out: &mut Vec<(u64, Ready)>, timeout: Option<Duration>) -> io::Result<()> {
        self.round += 1;
        self.arm_dirty()?;
        if self.multishot {
            // Completions already posted (no syscall), then the level check of the fds they
            // did not cover; block only if neither found anything.
            self.reap(out);
            self.level_check(out);
        }
        let have = !out.is_empty() || !self.ring.completion().is_empty();
        let r = if have {
            if self.multishot && self.ring.submission().is_empty() {
                Ok(0)
            } else {
                self.ring.submit()
            }
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
        self.reap(out);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::os::fd::AsFd;
    use std::os::unix::net::UnixStream;

    const SHORT: Option<Duration> = Some(Duration::from_millis(50));

    fn pollers() -> Vec<(&'static str, Poller)> {
        let mut v = vec![("epoll", Poller::new(false).expect("epoll"))];
        for (name, mode) in [
            ("uring one-shot", UringPollMode::OneShot),
            ("uring multishot", UringPollMode::Multishot),
        ] {
            let p = Poller::with_mode(true, mode).unwrap_or_else(|e| {
                panic!("io_uring ring: {e} (allow io_uring: sysctl kernel.io_uring_disabled=0)")
            });
            v.push((name, p));
        }
        v
    }

    fn events(p: &mut Poller, timeout: Option<Duration>) -> Vec<(u64, Ready)> {
        let mut out = Vec::new();
        p.wait(&mut out, timeout).expect("wait");
        out
    }

    fn reads(ev: &[(u64, Ready)], t: u64) -> usize {
        ev.iter().filter(|(k, r)| *k == t && r.read).count()
    }

    fn writes(ev: &[(u64, Ready)], t: u64) -> usize {
        ev.iter().filter(|(k, r)| *k == t && r.write).count()
    }

    #[test]
    fn multishot_is_probed_on_this_kernel() {
        let Poller::Uring(u) = Poller::with_mode(true, UringPollMode::Multishot).expect("ring")
        else {
            panic!("not an io_uring poller");
        };
        // IORING_POLL_ADD_MULTI exists since Linux 5.13; the development and CI kernels have it.
        assert!(
            u.multishot,
            "multishot poll not detected (kernel {})",
            std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default()
        );
    }

    /// Every backend gives level semantics: readiness is reported again while data is unread,
    /// not after it was read, and a pause of the read interest loses nothing.
    #[test]
    fn level_semantics_every_mode() {
        for (name, mut p) in pollers() {
            let (mut a, b) = UnixStream::pair().expect("socketpair");
            b.set_nonblocking(true).expect("nonblock");
            let t = 42;
            p.add(b.as_fd(), t, Interest::READ).expect("add");
            assert_eq!(reads(&events(&mut p, SHORT), t), 0, "{name}: spurious read");

            a.write_all(b"hello").expect("write");
            assert_eq!(reads(&events(&mut p, SHORT), t), 1, "{name}: first report");
            // Nothing read: still ready, reported again (exactly once per wait).
            assert_eq!(reads(&events(&mut p, SHORT), t), 1, "{name}: level report");
            assert_eq!(
                reads(&events(&mut p, SHORT), t),
                1,
                "{name}: level report 2"
            );

            let mut buf = [0u8; 16];
            assert_eq!((&b).read(&mut buf).expect("read"), 5);
            assert_eq!(&buf[..5], b"hello");
            let ev = events(&mut p, SHORT);
            assert_eq!(reads(&ev, t), 0, "{name}: reported after draining: {ev:?}");

            // Pause reading, data arrives, resume: the data is reported.
            p.modify(b.as_fd(), t, Interest::NONE);
            assert!(events(&mut p, SHORT).is_empty(), "{name}: paused");
            a.write_all(b"x").expect("write");
            // (One-shot keeps an armed superset poll, so it may report once while paused.)
            let paused = reads(&events(&mut p, SHORT), t);
            let allowed = usize::from(name == "uring one-shot");
            assert!(paused <= allowed, "{name}: reported {paused}x while paused");
            p.modify(b.as_fd(), t, Interest::READ);
            assert_eq!(
                reads(&events(&mut p, SHORT), t),
                1,
                "{name}: lost while paused"
            );
            assert_eq!((&b).read(&mut buf).expect("read"), 1);
            assert_eq!(reads(&events(&mut p, SHORT), t), 0, "{name}: after drain 2");

            // Write interest: reported while wanted, never after it was dropped.
            p.modify(
                b.as_fd(),
                t,
                Interest {
                    read: true,
                    write: true,
                },
            );
            assert_eq!(writes(&events(&mut p, SHORT), t), 1, "{name}: writable");
            p.modify(b.as_fd(), t, Interest::READ);
            assert_eq!(
                writes(&events(&mut p, SHORT), t),
                0,
                "{name}: unwanted POLLOUT"
            );
            a.write_all(b"yz").expect("write");
            let ev = events(&mut p, SHORT);
            assert_eq!((reads(&ev, t), writes(&ev, t)), (1, 0), "{name}: {ev:?}");

            // After delete, nothing more is reported for the token.
            p.delete(b.as_fd(), t);
            a.write_all(b"more").expect("write");
            let ev = events(&mut p, SHORT);
            assert!(
                ev.iter().all(|(k, _)| *k != t),
                "{name}: event after delete: {ev:?}"
            );

            // EOF of the peer is reported as readable.
            let (a2, b2) = UnixStream::pair().expect("socketpair");
            p.add(b2.as_fd(), 7, Interest::READ).expect("add");
            drop(a2);
            let ev = events(&mut p, SHORT);
            assert!(
                ev.iter().any(|(k, r)| *k == 7 && (r.read || r.hup)),
                "{name}: EOF not reported: {ev:?}"
            );
            p.delete(b2.as_fd(), 7);
            p.flush();
        }
    }

    /// Many registrations at once (more than the ring's 1024 submission entries): every one
    /// reported.
    #[test]
    fn thousands_of_registrations_every_mode() {
        crate::engine::sys::raise_nofile();
        for (name, mut p) in pollers() {
            let pairs: Vec<(UnixStream, UnixStream)> = (0..1200)
                .map(|_| {
                    UnixStream::pair().expect("socketpair (needs RLIMIT_NOFILE >= 2600: ulimit -n)")
                })
                .collect();
            for (i, (_, b)) in pairs.iter().enumerate() {
                p.add(b.as_fd(), i as u64 + 100, Interest::READ)
                    .expect("add");
            }
            assert!(events(&mut p, SHORT).is_empty(), "{name}: spurious");
            for (a, _) in &pairs {
                (&*a).write_all(b"!").expect("write");
            }
            let mut seen = std::collections::HashSet::new();
            for _ in 0..50 {
                for (t, r) in events(&mut p, SHORT) {
                    if r.read {
                        seen.insert(t);
                    }
                }
                if seen.len() == pairs.len() {
                    break;
                }
            }
            assert_eq!(seen.len(), pairs.len(), "{name}: not every fd reported");
            for (i, (_, b)) in pairs.iter().enumerate() {
                p.delete(b.as_fd(), i as u64 + 100);
            }
            p.flush();
        }
    }
}
