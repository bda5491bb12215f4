//! One worker thread: event loop, TCP listeners and the TCP connection state machine.
//!
//! # Theory of operation
//!
//! A forwarded connection has two sides: side 0 is the accepted host client, side 1 the socket
//! in the child namespace. Direction `d` reads from side `d` and writes to side `1 - d`, through
//! a pipe (splice) or a buffer (copy). Connection states:
//!
//! - `SOCK_WAIT`: accepted, waiting for a namespace socket because the pool was dry (woken by
//!   the channel reader; times out after 5 s with a reset of the client).
//! - `CONNECTING`: non-blocking `connect()` in progress; waiting for POLLOUT on side 1, then
//!   `SO_ERROR`. A refused target resets the client (`SO_LINGER {1,0}` + close).
//!   Source-IP preservation (`source_ip_transparent`, TCP, non-loopback client of the target's
//!   family): the namespace socket comes from the transparent pool (`IP_TRANSPARENT` +
//!   `SO_MARK 100`, set by the child) and is bound to the client's address before `connect()`.
//!   If that pool is disabled, the bind fails, the connect fails, or it has not completed after
//!   1 s (`T_CONNECTING` list, coarse timer), the socket is dropped and the connection goes back
//!   to `SOCK_WAIT` with normal sockets only (the service then sees a namespace address).
//! - `OPEN`: data flows. Per direction the events are, as in passt's `tcp_splice.c`:
//!   - `OUT_WAIT_d`: bytes of direction `d` are pending and side `1-d` returned EAGAIN: stop
//!     reading side `d`, watch POLLOUT on side `1-d` (backpressure; at most one pipe or buffer of
//!     data per direction).
//!   - `FIN_RCVD_d`: side `d` returned EOF; its read interest is dropped. When the poller
//!     already reports the FIN (`RDHUP`) the short read that drains the data is followed by the
//!     EOF read in the same wake-up, and those last bytes are sent `MSG_MORE`, so the kernel
//!     puts our FIN into the same segment (a request/response-and-close costs the client one
//!     segment and one wake-up less).
//!   - `FIN_SENT_d`: the pending bytes of `d` are written and `shutdown(side 1-d, SHUT_WR)` was
//!     called. When both `FIN_SENT` are set the connection is closed.
//! - Errors: ECONNRESET/EPIPE/ETIMEDOUT or POLLERR on a side reset the *other* side
//!   (`SO_LINGER {1,0}` then close); pipes holding data are dropped, never pooled.
//!
//! Data path per direction (splice mode): flush the pipe to the destination (`SPLICE_F_MORE` when
//! the pipe was ≥ 90% full), then splice the source into the pipe (`len` = free room), loop until
//! EAGAIN with an exact count of bytes in the pipe, at most 4 pipe capacities per wake-up. Pipes
//! are taken lazily from the worker's pool and returned to it as soon as they are empty at
//! EAGAIN, so idle connections hold none. A pipe filled completely 4 times grows to 512 KiB.
//! Copy mode: read into the worker's 64 KiB scratch buffer and write directly; only an unwritten
//! remainder is kept per direction. With `adaptive_copy`, every direction starts in copy mode
//! (small request/response messages cost one read + one write) and switches to splice once a
//! read fills the buffer. splice EINVAL or an exhausted pipe budget switch to copy for good.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::pipes::{Pipe, PipePool, PIPE_MIN};
use super::poller::{Interest, Poller, Ready};
use super::slab::{Key, Slab};
use super::udp::{UdpFlow, UdpPort, UdpState};
use super::{sys, Backend, Cmd, Counters, Shared};
use crate::channel::SockKind;

pub(crate) const T_WAKE: u64 = 0;
pub(crate) const T_LISTEN: u64 = 1;
pub(crate) const T_SIDE0: u64 = 2;
pub(crate) const T_SIDE1: u64 = 3;
pub(crate) const T_UDP: u64 = 4;
pub(crate) const T_FLOW: u64 = 5;

pub(crate) fn token(kind: u64, k: Key) -> u64 {
    (u64::from(k.gen) << 32) | (u64::from(k.idx) << 3) | kind
}

fn untoken(t: u64) -> (u64, Key) {
    (
        t & 7,
        Key {
            idx: ((t & 0xffff_ffff) >> 3) as u32,
            gen: (t >> 32) as u32,
        },
    )
}

const SCRATCH: usize = 64 * 1024;
const SOCK_WAIT_TIMEOUT: Duration = Duration::from_secs(5);
/// A transparent (source-IP preserving) connect that has not completed by then is retried with
/// a normal socket, as RootlessKit's 1 s transparent dial timeout.
const TRANSPARENT_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// Load window of a worker (wall time outside the poller wait).
const LOAD_WINDOW: Duration = Duration::from_millis(20);
/// A worker busy for more than this share (percent) of its last load window hands newly
/// accepted connections to the other workers; below it keeps them.
const SPILL_BUSY_PCT: u128 = 50;
const ACCEPT_BATCH: usize = 64;

/// Congestion-control verdict (see [`sys::unpace_local`]) for host-side loopback clients, one
/// per process (namespace-side sockets are switched by the child, `channel::make_socket`).
static HOST_CC: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(0);

pub(crate) struct Listener {
    id: u64,
    /// Shared with the port table (`remove_port` shuts it down from the API thread).
    fd: Arc<OwnedFd>,
    target: SocketAddr,
    stats: Arc<Counters>,
    backoff_until: Option<Instant>,
    /// Loopback listener whose congestion control was switched (accepted sockets inherit it).
    unpaced: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    SockWait(Instant),
    Connecting,
    Open,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Copy,
    Splice,
}

struct Dir {
    mode: Mode,
    /// Copy mode may switch to splice once a read fills the scratch buffer.
    adaptive: bool,
    pipe: Option<Pipe>,
    /// Bytes in `pipe`.
    pending: usize,
    /// Copy mode: bytes read but not yet written.
    buf: Vec<u8>,
    buf_off: usize,
    fills: u8,
    fin_rcvd: bool,
    /// The poller reported the source's FIN (`RDHUP`) while data may still be queued before it:
    /// a short read is followed by the read that returns EOF in the same wake-up, and the last
    /// bytes go out with `MSG_MORE` so the kernel puts our FIN into the same segment.
    peer_fin: bool,
    fin_sent: bool,
    out_wait: bool,
}

impl Dir {
    fn new(backend: Backend, adaptive: bool) -> Dir {
        let (mode, adaptive) = match backend {
            Backend::Copy => (Mode::Copy, false),
            _ if adaptive => (Mode::Copy, true),
            _ => (Mode::Splice, false),
        };
        Dir {
            mode,
            adaptive,
            pipe: None,
            pending: 0,
            buf: Vec::new(),
            buf_off: 0,
            fills: 0,
            fin_rcvd: false,
            peer_fin: false,
            fin_sent: false,
            out_wait: false,
        }
    }
}

pub(crate) struct Conn {
    id: u64,
    stats: Arc<Counters>,
    fds: [Option<OwnedFd>; 2],
    registered: [bool; 2],
    /// Side no longer needed (read EOF and our FIN sent to it): deregistered for good, so a
    /// level-triggered EPOLLHUP cannot spin while the other side drains.
    retired: [bool; 2],
    interest: [Interest; 2],
    state: State,
    target: SocketAddr,
    peer: Option<SocketAddr>,
    dirs: [Dir; 2],
    /// The namespace socket is a transparent one bound to the client address.
    transparent: bool,
    /// A transparent attempt failed: use normal sockets only.
    no_transparent: bool,
    connect_deadline: Option<Instant>,
}

/// Why a connection ends.
enum End {
    /// Both FINs sent: close normally.
    Done,
    /// Side `n` failed (reset, error): reset the other side.
    Reset(usize),
}

pub(crate) struct Worker {
    pub(crate) idx: usize,
    pub(crate) shared: Arc<Shared>,
    pub(crate) rx: mpsc::Receiver<Cmd>,
    pub(crate) wake: Arc<OwnedFd>,
    pub(crate) poller: Poller,
    pub(crate) events: Vec<(u64, Ready)>,
    pub(crate) parked: Vec<(u64, Ready)>,
    pub(crate) listeners: Slab<Listener>,
    pub(crate) conns: Slab<Conn>,
    pub(crate) udps: Slab<UdpPort>,
    pub(crate) flows: Slab<UdpFlow>,
    pub(crate) pipes: PipePool,
    pub(crate) scratch: Vec<u8>,
    pub(crate) sock_wait: Vec<Key>,
    pub(crate) udp: UdpState,
    pub(crate) stop: bool,
    /// Listeners currently backed off after an accept error (they need the coarse timer).
    pub(crate) backoffs: usize,
    /// Connections in a transparent connect (checked against their deadline by the timer).
    pub(crate) tconnecting: Vec<Key>,
    /// Busy for more than [`SPILL_BUSY_PCT`] of the last load window.
    pub(crate) saturated: bool,
    /// Returns from waiting for events (read by `Forwarder::wakeups`).
    wakeups: Arc<super::LineCounter>,
}

impl Worker {
    pub(crate) fn new(
        idx: usize,
        shared: Arc<Shared>,
        rx: mpsc::Receiver<Cmd>,
        wake: Arc<OwnedFd>,
    ) -> io::Result<Worker> {
        let mut poller = Poller::new(shared.backend.uses_uring())?;
        poller.add(wake.as_fd(), T_WAKE, Interest::READ)?;
        let pipes = PipePool::new(shared.budget.clone());
        Ok(Worker {
            idx,
            shared,
            rx,
            wake,
            poller,
            events: Vec::with_capacity(256),
            parked: Vec::new(),
            listeners: Slab::new(),
            conns: Slab::new(),
            udps: Slab::new(),
            flows: Slab::new(),
            pipes,
            scratch: vec![0u8; SCRATCH],
            sock_wait: Vec::new(),
            udp: UdpState::new(),
            stop: false,
            backoffs: 0,
            tconnecting: Vec::new(),
            saturated: false,
            wakeups: Arc::default(),
        })
    }

    /// See [`Poller::remote_handle`].
    pub(crate) fn remote_handle(&self) -> Option<OwnedFd> {
        self.poller.remote_handle()
    }

    /// This worker's wake-up counter (`Forwarder::wakeups`).
    pub(crate) fn wakeups(&self) -> Arc<super::LineCounter> {
        self.wakeups.clone()
    }

    pub(crate) fn run(mut self) {
        let mut last_tick = Instant::now();
        let mut window_start = last_tick;
        let mut busy = Duration::ZERO;
        while !self.stop {
            let timeout = self.next_timeout();
            let mut events = std::mem::take(&mut self.events);
            if let Err(_e) = self.poller.wait(&mut events, timeout) {
                std::thread::sleep(Duration::from_millis(10));
            }
            let woke = Instant::now();
            self.wakeups.0.fetch_add(1, Ordering::Relaxed);
            events.append(&mut self.parked);
            for &(t, r) in &events {
                self.dispatch(t, r);
            }
            events.clear();
            self.events = events;
            let now = Instant::now();
            busy += now.duration_since(woke);
            let window = now.duration_since(window_start);
            if window >= LOAD_WINDOW {
                self.saturated = busy.as_micros() * 100 > window.as_micros() * SPILL_BUSY_PCT;
                window_start = now;
                busy = Duration::ZERO;
            }
            if now.duration_since(last_tick) >= Duration::from_millis(50) {
                last_tick = now;
                self.tick(now);
            }
            // A UDP port under sustained load asked for a pause so that its next read finds a
            // full batch (see `udp::coalesce_nap`); it is idle time, not counted as busy.
            if let Some(nap) = self.udp.take_nap() {
                std::thread::sleep(nap);
            }
        }
        self.close_all();
        self.poller.flush();
    }

    fn next_timeout(&self) -> Option<Duration> {
        if self.backoffs > 0
            || !self.sock_wait.is_empty()
            || !self.tconnecting.is_empty()
            || self.udp.waiting()
        {
            // Coarse timer: accept back-off, socket waits, pending UDP flows.
            return Some(Duration::from_millis(100));
        }
        if self.flows.len() > 0 {
            return Some(Duration::from_secs(1));
        }
        None
    }

    fn dispatch(&mut self, t: u64, r: Ready) {
        let (kind, key) = untoken(t);
        match kind {
            T_WAKE => {
                sys::eventfd_drain(self.wake.as_fd());
                self.drain_cmds();
                self.retry_sock_wait();
                self.udp_retry_pending();
            }
            T_LISTEN => self.on_accept(key),
            T_SIDE0 | T_SIDE1 => self.on_conn(key, (kind - T_SIDE0) as usize, r),
            T_UDP => self.udp_on_port(key),
            T_FLOW => self.udp_on_flow(key, r),
            _ => {}
        }
    }

    fn tick(&mut self, now: Instant) {
        for k in self.listeners.keys() {
            let resume = match self.listeners.get_mut(k) {
                Some(l) => match l.backoff_until {
                    Some(t) if t <= now => {
                        l.backoff_until = None;
                        self.backoffs = self.backoffs.saturating_sub(1);
                        true
                    }
                    _ => false,
                },
                None => false,
            };
            if resume {
                if let Some(l) = self.listeners.get_mut(k) {
                    self.poller
                        .modify(l.fd.as_fd(), token(T_LISTEN, k), Interest::READ);
                }
            }
        }
        if !self.sock_wait.is_empty() {
            self.retry_sock_wait();
            let waits = std::mem::take(&mut self.sock_wait);
            for k in waits {
                let expired = match self.conns.get_mut(k) {
                    Some(c) => {
                        matches!(c.state, State::SockWait(t) if now.duration_since(t) > SOCK_WAIT_TIMEOUT)
                    }
                    None => continue,
                };
                if expired {
                    if let Some(c) = self.conns.remove(k) {
                        self.finish(k, c, End::Reset(1));
                    }
                } else {
                    self.sock_wait.push(k);
                }
            }
        }
        if !self.tconnecting.is_empty() {
            let list = std::mem::take(&mut self.tconnecting);
            for k in list {
                let (connecting, expired) = match self.conns.get_mut(k) {
                    Some(c) => (
                        c.state == State::Connecting && c.transparent,
                        c.connect_deadline.is_some_and(|d| d <= now),
                    ),
                    None => (false, false),
                };
                if !connecting {
                    continue;
                }
                if expired {
                    if let Some(c) = self.conns.take(k) {
                        self.transparent_fallback(k, c);
                    }
                } else {
                    self.tconnecting.push(k);
                }
            }
        }
        self.udp_tick(now);
    }

    fn drain_cmds(&mut self) {
        while let Ok(cmd) = self.rx.try_recv() {
            match cmd {
                Cmd::AddTcp {
                    id,
                    listener,
                    loopback,
                    target,
                    stats,
                } => {
                    // A loopback-only listener: accepted sockets inherit the congestion control
                    // set here, so they are never paced (BBR initialised at the handshake keeps
                    // pacing on even after a later switch).
                    let unpaced = loopback && sys::unpace_local(listener.as_fd(), &HOST_CC);
                    let k = self.listeners.insert(Listener {
                        id,
                        fd: listener,
                        target,
                        stats,
                        backoff_until: None,
                        unpaced,
                    });
                    if let Some(l) = self.listeners.get_mut(k) {
                        if self
                            .poller
                            .add(l.fd.as_fd(), token(T_LISTEN, k), Interest::READ)
                            .is_err()
                        {
                            self.listeners.remove(k);
                        }
                    }
                }
                Cmd::AddUdp {
                    id,
                    sock,
                    target,
                    stats,
                } => self.udp_add(id, sock, target, stats),
                Cmd::NewConn {
                    id,
                    client,
                    peer,
                    target,
                    stats,
                } => self.new_conn(id, client, peer, target, stats),
                Cmd::Remove { id, ack } => {
                    self.remove_port(id);
                    self.poller.flush();
                    if let Some(ack) = ack {
                        let _ = ack.send(());
                    }
                }
                Cmd::Shutdown => self.stop = true,
            }
        }
    }

    fn remove_port(&mut self, id: u64) {
        for k in self.listeners.keys_where(|l| l.id == id) {
            if let Some(l) = self.listeners.remove(k) {
                if l.backoff_until.is_some() {
                    self.backoffs = self.backoffs.saturating_sub(1);
                }
                self.poller.delete(l.fd.as_fd(), token(T_LISTEN, k));
            }
        }
        for k in self.conns.keys_where(|c| c.id == id) {
            if let Some(mut c) = self.conns.remove(k) {
                // Reset both sides.
                for fd in c.fds.iter().flatten() {
                    sys::set_linger_zero(fd.as_fd());
                }
                c.dirs[0].pending = 1; // never pool
                c.dirs[1].pending = 1;
                self.finish(k, c, End::Done);
            }
        }
        self.udp_remove(id);
    }

    fn close_all(&mut self) {
        for k in self.conns.keys() {
            if let Some(c) = self.conns.remove(k) {
                self.finish(k, c, End::Done);
            }
        }
        for k in self.listeners.keys() {
            if let Some(l) = self.listeners.remove(k) {
                self.poller.delete(l.fd.as_fd(), token(T_LISTEN, k));
            }
        }
        let ids: Vec<u64> = self
            .udps
            .keys()
            .into_iter()
            .filter_map(|k| self.udps.get_mut(k).map(|u| u.id))
            .collect();
        for id in ids {
            self.udp_remove(id);
        }
    }

    // ---- accept ----

    fn on_accept(&mut self, k: Key) {
        let Some(l) = self.listeners.get_mut(k) else {
            return;
        };
        if l.backoff_until.is_some() {
            return;
        }
        let id = l.id;
        let unpaced = l.unpaced;
        let target = l.target;
        let stats = l.stats.clone();
        let mut accepted = Vec::new();
        let mut backoff = false;
        let mut out_of_fds = false;
        for _ in 0..ACCEPT_BATCH {
            match sys::accept(l.fd.as_fd()) {
                Ok((fd, peer)) => accepted.push((fd, peer)),
                Err(e) => match sys::errno(&e) {
                    libc::EAGAIN => break,
                    libc::EINTR | libc::ECONNABORTED | libc::EPROTO | libc::EPERM => continue,
                    _ => {
                        // EMFILE, ENFILE, ENOBUFS, ENOMEM, anything else: never kill the
                        // listener, stop polling it for a while.
                        stats.err();
                        backoff = true;
                        out_of_fds = matches!(sys::errno(&e), libc::EMFILE | libc::ENFILE);
                        break;
                    }
                },
            }
        }
        if backoff {
            self.backoffs += 1;
            l.backoff_until = Some(Instant::now() + ACCEPT_BACKOFF);
            self.poller
                .modify(l.fd.as_fd(), token(T_LISTEN, k), Interest::NONE);
        }
        if out_of_fds {
            // Pooled namespace sockets are fds too: give some back so accept can progress.
            self.shared.pools.release_under_pressure();
        }
        let shared = self.shared.clone();
        let Some(workers) = shared.workers.get() else {
            return;
        };
        for (fd, peer) in accepted {
            // TCP_NODELAY is inherited from the listener (set in `listen::bind_listener`).
            if !unpaced && peer.is_some_and(|p| sys::unmap(p).ip().is_loopback()) {
                let _ = sys::unpace_local(fd.as_fd(), &HOST_CC);
            }
            stats.total.fetch_add(1, Ordering::Relaxed);
            stats.active.fetch_add(1, Ordering::Relaxed);
            // Keep the connection unless this worker is saturated: no hand-off through the
            // command channel and the other worker's eventfd, fuller event batches.
            let w = if self.saturated && workers.len() > 1 {
                let r = self.shared.rr.fetch_add(1, Ordering::Relaxed) % (workers.len() - 1);
                if r >= self.idx {
                    r + 1
                } else {
                    r
                }
            } else {
                self.idx
            };
            if w == self.idx {
                self.new_conn(id, fd, peer, target, stats.clone());
            } else {
                workers[w].send(Cmd::NewConn {
                    id,
                    client: fd,
                    peer,
                    target,
                    stats: stats.clone(),
                });
            }
        }
    }

    // ---- connection setup ----

    fn new_conn(
        &mut self,
        id: u64,
        client: OwnedFd,
        peer: Option<SocketAddr>,
        target: SocketAddr,
        stats: Arc<Counters>,
    ) {
        let adaptive = self.shared.cfg.adaptive_copy;
        let backend = self.shared.backend;
        let c = Conn {
            id,
            stats,
            fds: [Some(client), None],
            registered: [false, false],
            retired: [false, false],
            interest: [Interest::NONE, Interest::NONE],
            state: State::SockWait(Instant::now()),
            target,
            peer: peer.map(sys::unmap),
            dirs: [Dir::new(backend, adaptive), Dir::new(backend, adaptive)],
            transparent: false,
            no_transparent: false,
            connect_deadline: None,
        };
        let removed = c.stats.removed.load(Ordering::SeqCst);
        let k = self.conns.insert(c);
        if removed {
            if let Some(mut c) = self.conns.remove(k) {
                for fd in c.fds.iter().flatten() {
                    sys::set_linger_zero(fd.as_fd());
                }
                c.state = State::SockWait(Instant::now());
                self.finish(k, c, End::Done);
            }
            return;
        }
        self.try_connect(k);
    }

    fn retry_sock_wait(&mut self) {
        let waits = std::mem::take(&mut self.sock_wait);
        for k in waits {
            self.try_connect(k);
        }
    }

    /// Get a namespace socket and start the connect; parks in `SOCK_WAIT` if the pool is dry.
    fn try_connect(&mut self, k: Key) {
        let Some(mut c) = self.conns.take(k) else {
            return;
        };
        let pools = self.shared.pools.clone();
        let v6 = c.target.is_ipv6();
        let want_transparent = self.shared.cfg.source_ip_transparent
            && !c.no_transparent
            && c.peer
                .is_some_and(|p| !p.ip().is_loopback() && p.is_ipv6() == v6);
        let mut sock = None;
        c.transparent = false;
        if want_transparent {
            let kind = SockKind::for_target(true, v6, true);
            if pools.enabled(kind) {
                match pools.take(kind) {
                    Some(s) => {
                        let bound = c
                            .peer
                            .map(|p| sys::bind(s.as_fd(), &p).is_ok())
                            .unwrap_or(false);
                        if bound {
                            sock = Some(s);
                            c.transparent = true;
                        }
                    }
                    None if !pools.is_closed() && pools.enabled(kind) => {
                        self.conns.restore(k, c);
                        self.sock_wait.push(k);
                        return;
                    }
                    None => {}
                }
            }
        }
        if sock.is_none() {
            let kind = SockKind::for_target(true, v6, false);
            match pools.take(kind) {
                Some(s) => sock = Some(s),
                None if !pools.is_closed() && pools.enabled(kind) => {
                    self.conns.restore(k, c);
                    self.sock_wait.push(k);
                    return;
                }
                None => {
                    self.conns.release(k);
                    self.finish(k, c, End::Reset(1));
                    return;
                }
            }
        }
        let Some(s) = sock else {
            self.conns.release(k);
            self.finish(k, c, End::Reset(1));
            return;
        };
        // Congestion control: the child switched it when it created the socket.
        let res = sys::connect(s.as_fd(), &c.target);
        c.fds[1] = Some(s);
        match res {
            Ok(()) => c.state = State::Open,
            Err(e) if sys::errno(&e) == libc::EINPROGRESS && !c.transparent => {
                // Optimistic open: data for the namespace side waits in its direction (send
                // returns EAGAIN until the handshake completes, and that direction then watches
                // POLLOUT), and a refused connect shows up as POLLERR on side 1 or as an error of
                // the first send, both of which reset the client as `CONNECTING` would.
                c.state = State::Open;
            }
            Err(e) if sys::errno(&e) == libc::EINPROGRESS => {
                c.state = State::Connecting;
                c.connect_deadline = Some(Instant::now() + TRANSPARENT_CONNECT_TIMEOUT);
                self.tconnecting.push(k);
            }
            Err(_) if c.transparent => {
                self.transparent_fallback(k, c);
                return;
            }
            Err(_) => {
                self.conns.release(k);
                self.finish(k, c, End::Reset(1));
                return;
            }
        }
        if c.state == State::Open {
            // Data may already be waiting on the client side. The namespace side cannot have
            // sent anything yet (and level-triggered readiness would report it anyway).
            self.drive(k, c, [true, false]);
        } else {
            self.update_interest(k, &mut c);
            self.conns.restore(k, c);
        }
    }

    /// The transparent attempt failed or timed out: drop that socket and retry with a normal
    /// one (`c` was taken out of the slab; this puts it back).
    fn transparent_fallback(&mut self, k: Key, mut c: Conn) {
        if let Some(fd) = c.fds[1].take() {
            if c.registered[1] {
                self.poller.delete(fd.as_fd(), token(T_SIDE1, k));
            }
        }
        c.registered[1] = false;
        c.interest[1] = Interest::NONE;
        c.transparent = false;
        c.no_transparent = true;
        c.connect_deadline = None;
        c.state = State::SockWait(Instant::now());
        self.conns.restore(k, c);
        self.try_connect(k);
    }

    // ---- events ----

    fn on_conn(&mut self, k: Key, side: usize, r: Ready) {
        let Some(mut c) = self.conns.take(k) else {
            return;
        };
        match c.state {
            State::SockWait(_) => {
                self.conns.restore(k, c);
            }
            State::Connecting => {
                if side == 0 {
                    self.conns.restore(k, c);
                    return;
                }
                let err = c.fds[1]
                    .as_ref()
                    .map(|f| sys::take_socket_error(f.as_fd()))
                    .unwrap_or(libc::EBADF);
                if err != 0 && c.transparent {
                    self.transparent_fallback(k, c);
                    return;
                }
                if err != 0 {
                    self.conns.release(k);
                    self.finish(k, c, End::Reset(1));
                    return;
                }
                if !(r.write || r.error || r.hup) {
                    self.conns.restore(k, c);
                    return;
                }
                c.state = State::Open;
                self.drive(k, c, [true, true]);
            }
            State::Open => {
                if r.error {
                    self.conns.release(k);
                    self.finish(k, c, End::Reset(side));
                    return;
                }
                // Readable side `side` drives direction `side`; writable drives `1 - side`.
                if r.rdhup || r.hup {
                    c.dirs[side].peer_fin = true;
                }
                let mut run = [false, false];
                if r.read || r.hup {
                    run[side] = true;
                }
                if r.write || r.hup {
                    run[1 - side] = true;
                }
                self.drive(k, c, run);
            }
        }
    }

    /// Run the selected directions, then either close or re-register interest.
    fn drive(&mut self, k: Key, mut c: Conn, run: [bool; 2]) {
        for (d, _) in run.iter().enumerate().filter(|(_, r)| **r) {
            if let Err(end) = self.run_dir(&mut c, d) {
                self.conns.release(k);
                self.finish(k, c, end);
                return;
            }
        }
        if c.dirs[0].fin_sent && c.dirs[1].fin_sent {
            self.conns.release(k);
            self.finish(k, c, End::Done);
            return;
        }
        self.update_interest(k, &mut c);
        self.conns.restore(k, c);
    }

    fn update_interest(&mut self, k: Key, c: &mut Conn) {
        for s in 0..2 {
            let want = match c.state {
                State::SockWait(_) => Interest::NONE,
                State::Connecting => Interest {
                    read: false,
                    write: s == 1,
                },
                State::Open => Interest {
                    read: !c.dirs[s].fin_rcvd && !c.dirs[s].out_wait,
                    write: c.dirs[1 - s].out_wait,
                },
            };
            let Some(fd) = c.fds[s].as_ref() else {
                continue;
            };
            let t = token(T_SIDE0 + s as u64, k);
            if c.retired[s] {
                continue;
            }
            if c.state == State::Open && c.dirs[s].fin_rcvd && c.dirs[1 - s].fin_sent {
                if c.registered[s] {
                    self.poller.delete(fd.as_fd(), t);
                    c.registered[s] = false;
                }
                c.retired[s] = true;
                continue;
            }
            if !c.registered[s] {
                if self.poller.add(fd.as_fd(), t, want).is_ok() {
                    c.registered[s] = true;
                    c.interest[s] = want;
                }
            } else if c.interest[s] != want {
                self.poller.modify(fd.as_fd(), t, want);
                c.interest[s] = want;
            }
        }
    }

    /// Close a connection (already removed from the slab).
    fn finish(&mut self, k: Key, mut c: Conn, end: End) {
        // Closing an fd removes it from an epoll set (our sockets are never duplicated; during a
        // fork of the launcher a registration may outlive the close briefly, and its token's
        // generation is stale then). io_uring polls hold a file reference and must be removed.
        if self.shared.backend.uses_uring() {
            for s in 0..2 {
                if let Some(fd) = c.fds[s].as_ref() {
                    if c.registered[s] {
                        self.poller.delete(fd.as_fd(), token(T_SIDE0 + s as u64, k));
                    }
                }
            }
        }
        if let End::Reset(failed) = end {
            c.stats.err();
            if let Some(fd) = c.fds[1 - failed].as_ref() {
                sys::set_linger_zero(fd.as_fd());
            }
        }
        for d in c.dirs.iter_mut() {
            if let Some(p) = d.pipe.take() {
                if d.pending == 0 {
                    self.pipes.put(p);
                }
            }
        }
        c.stats.active.fetch_sub(1, Ordering::Relaxed);
        // fds close on drop
    }

    // ---- data path ----

    fn run_dir(&mut self, c: &mut Conn, d: usize) -> Result<(), End> {
        let (Some(src), Some(dst)) = (c.fds[d].as_ref(), c.fds[1 - d].as_ref()) else {
            return Ok(());
        };
        // The other direction is finished: once this one is too the connection is closed at
        // once, and close() sends the FIN (both sockets are read to EOF), so no shutdown().
        let last = c.dirs[1 - d].fin_sent;
        let dir = &mut c.dirs[d];
        let mut moved = 0usize;
        let mut rounds = 0;
        let r = loop {
            rounds += 1;
            if dir.mode == Mode::Splice && dir.buf_off >= dir.buf.len() {
                match splice_dir(
                    dir,
                    src.as_fd(),
                    dst.as_fd(),
                    d,
                    &mut moved,
                    &mut self.pipes,
                    &mut self.poller,
                    &mut self.parked,
                    self.shared.backend,
                    last,
                ) {
                    Ok(true) if rounds < 4 => continue, // switched to copy
                    Ok(_) => break Ok(()),
                    Err(e) => break Err(e),
                }
            } else {
                match copy_dir(
                    dir,
                    src.as_fd(),
                    dst.as_fd(),
                    d,
                    &mut moved,
                    &mut self.scratch,
                    last,
                ) {
                    Ok(())
                        if dir.mode == Mode::Splice
                            && dir.buf_off >= dir.buf.len()
                            && !dir.out_wait
                            && !dir.fin_sent
                            && rounds < 4 =>
                    {
                        continue; // adaptive switch to splice
                    }
                    Ok(()) => break Ok(()),
                    Err(e) => break Err(e),
                }
            }
        };
        if moved > 0 {
            let ctr = if d == 0 {
                &c.stats.bytes_in
            } else {
                &c.stats.bytes_out
            };
            ctr.fetch_add(moved as u64, Ordering::Relaxed);
        }
        r
    }
}

fn is_again(e: &io::Error) -> bool {
    matches!(sys::errno(e), libc::EAGAIN | libc::EINTR)
}

/// Splice mode for one direction. `Ok(true)` = switched to copy mode, caller continues there.
#[allow(clippy::too_many_arguments)]
fn splice_dir(
    dir: &mut Dir,
    src: std::os::fd::BorrowedFd<'_>,
    dst: std::os::fd::BorrowedFd<'_>,
    d: usize,
    moved: &mut usize,
    pipes: &mut PipePool,
    poller: &mut Poller,
    parked: &mut Vec<(u64, Ready)>,
    backend: Backend,
    last: bool,
) -> Result<bool, End> {
    let uring = backend == Backend::UringSplice;
    let mut do_splice = |i: std::os::fd::BorrowedFd<'_>,
                         o: std::os::fd::BorrowedFd<'_>,
                         len: usize,
                         flags: u32|
     -> io::Result<usize> {
        if uring {
            poller.uring_splice(i, o, len, flags, parked)
        } else {
            sys::splice(i, o, len, flags)
        }
    };
    let base = libc::SPLICE_F_MOVE | libc::SPLICE_F_NONBLOCK;
    let mut budget_left = 4 * dir.pipe.as_ref().map(|p| p.cap).unwrap_or(PIPE_MIN);
    let mut drained = false;
    loop {
        if dir.pending > 0 {
            let Some(p) = dir.pipe.as_ref() else {
                dir.pending = 0;
                continue;
            };
            let more = if dir.pending * 10 >= p.cap * 9 {
                libc::SPLICE_F_MORE
            } else {
                0
            };
            match do_splice(p.r.as_fd(), dst, dir.pending, base | more) {
                Ok(n) => {
                    dir.pending -= n.min(dir.pending);
                    *moved += n;
                    if dir.pending > 0 {
                        continue;
                    }
                }
                Err(e) if sys::errno(&e) == libc::EINTR => continue,
                Err(e) if sys::errno(&e) == libc::EAGAIN => {
                    dir.out_wait = true;
                    return Ok(false);
                }
                Err(_) => return Err(End::Reset(1 - d)),
            }
        }
        dir.out_wait = false;
        if dir.fin_rcvd {
            if !dir.fin_sent {
                if !last {
                    let _ = sys::shutdown_write(dst);
                }
                dir.fin_sent = true;
            }
            if let Some(p) = dir.pipe.take() {
                pipes.put(p);
            }
            return Ok(false);
        }
        if drained {
            // The last read was short (socket drained) and the pipe is flushed: skip the read
            // that would only return EAGAIN. Keep the pipe only while it holds data.
            if let Some(p) = dir.pipe.take() {
                pipes.put(p);
            }
            return Ok(false);
        }
        if *moved >= budget_left {
            // Yield to other connections; level-triggered readiness brings us back.
            return Ok(false);
        }
        if dir.pipe.is_none() {
            match pipes.get() {
                Some(p) => dir.pipe = Some(p),
                None => {
                    dir.mode = Mode::Copy;
                    dir.adaptive = false;
                    return Ok(true);
                }
            }
        }
        let Some(p) = dir.pipe.as_mut() else {
            return Ok(false);
        };
        let room = p.cap - dir.pending;
        match do_splice(src, p.w.as_fd(), room, base) {
            Ok(0) => dir.fin_rcvd = true,
            Ok(n) => {
                dir.pending += n;
                if n < room {
                    drained = true;
                }
                if n == room && room == p.cap {
                    dir.fills = dir.fills.saturating_add(1);
                    if dir.fills >= 4 && p.grow() {
                        budget_left = budget_left.max(4 * p.cap);
                    }
                }
            }
            Err(e) if sys::errno(&e) == libc::EINTR => {}
            Err(e) if sys::errno(&e) == libc::EAGAIN => {
                if dir.pending == 0 {
                    if let Some(p) = dir.pipe.take() {
                        pipes.put(p);
                    }
                }
                return Ok(false);
            }
            Err(e) if sys::errno(&e) == libc::EINVAL && dir.pending == 0 => {
                dir.mode = Mode::Copy;
                dir.adaptive = false;
                if let Some(p) = dir.pipe.take() {
                    pipes.put(p);
                }
                return Ok(true);
            }
            Err(_) => return Err(End::Reset(d)),
        }
    }
}

/// Copy mode for one direction (switches `dir.mode` to splice when adaptive and bulk). `last`:
/// the other direction is finished (see [`Worker::run_dir`]).
fn copy_dir(
    dir: &mut Dir,
    src: std::os::fd::BorrowedFd<'_>,
    dst: std::os::fd::BorrowedFd<'_>,
    d: usize,
    moved: &mut usize,
    scratch: &mut [u8],
    last: bool,
) -> Result<(), End> {
    let budget = 4 * scratch.len();
    loop {
        if dir.buf_off < dir.buf.len() {
            match sys::send(dst, &dir.buf[dir.buf_off..]) {
                Ok(n) => {
                    dir.buf_off += n;
                    *moved += n;
                    if dir.buf_off < dir.buf.len() {
                        continue;
                    }
                }
                Err(e) if sys::errno(&e) == libc::EINTR => continue,
                Err(e) if sys::errno(&e) == libc::EAGAIN => {
                    dir.out_wait = true;
                    return Ok(());
                }
                Err(_) => return Err(End::Reset(1 - d)),
            }
            dir.buf.clear();
            dir.buf_off = 0;
        }
        dir.out_wait = false;
        if dir.fin_rcvd {
            if !dir.fin_sent {
                if !last {
                    let _ = sys::shutdown_write(dst);
                }
                dir.fin_sent = true;
            }
            dir.buf = Vec::new();
            return Ok(());
        }
        if dir.mode == Mode::Splice {
            return Ok(()); // adaptive switch; caller continues with splice
        }
        if *moved >= budget {
            return Ok(());
        }
        match sys::read(src, scratch) {
            Ok(0) => dir.fin_rcvd = true,
            Ok(n) => {
                // A short read after the peer's FIN drained the data: EOF is next, and our FIN
                // (shutdown, or close for the last direction) follows at once; MSG_MORE holds
                // these bytes for it, so the pair is one segment and one wake-up of the peer.
                let fin_next = dir.peer_fin && n < scratch.len();
                let flags = if fin_next { libc::MSG_MORE } else { 0 };
                match sys::send_flags(dst, &scratch[..n], flags) {
                    Ok(m) => {
                        *moved += m;
                        if m < n {
                            dir.buf.extend_from_slice(&scratch[m..n]);
                            dir.buf_off = 0;
                        }
                    }
                    Err(e) if is_again(&e) => {
                        dir.buf.extend_from_slice(&scratch[..n]);
                        dir.buf_off = 0;
                    }
                    Err(_) => return Err(End::Reset(1 - d)),
                }
                if dir.adaptive && n == scratch.len() {
                    dir.mode = Mode::Splice;
                    dir.adaptive = false;
                }
                if n < scratch.len() && dir.buf_off >= dir.buf.len() && !fin_next {
                    // A short read drained the socket: skip the read that would only return
                    // EAGAIN; level-triggered readiness reports new data or EOF.
                    return Ok(());
                }
            }
            Err(e) if sys::errno(&e) == libc::EINTR => {}
            Err(e) if sys::errno(&e) == libc::EAGAIN => {
                if dir.peer_fin {
                    // Not expected after RDHUP; never leave MSG_MORE bytes held back.
                    sys::push(dst);
                }
                return Ok(());
            }
            Err(_) => return Err(End::Reset(d)),
        }
    }
}
