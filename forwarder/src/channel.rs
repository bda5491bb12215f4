//! Parent<->child socket channel: one persistent `SOCK_SEQPACKET` socket with `SCM_RIGHTS`.
//!
//! # Theory of operation
//!
//! The child (root in its user namespace, inside the child network namespace) creates
//! *unconnected* non-blocking sockets on request and passes them to the parent. A socket's
//! network namespace is fixed when it is created, so when the parent later `connect()`s such a
//! socket, the connection is made inside the child namespace without any round trip.
//!
//! The parent keeps one pool per [`SockKind`] (TCP/UDP × IPv4/IPv6, plus "transparent" TCP
//! sockets that carry `IP_TRANSPARENT`/`IPV6_TRANSPARENT` and `SO_MARK` for source-IP
//! preservation). Pool states per kind:
//!
//! - `FULL`: at least [`REFILL_BELOW`] sockets; `take()` pops without any I/O.
//! - `REFILLING`: below the threshold, one `ALLOC` request for [`BATCH`] sockets is in flight
//!   (never more than one per kind); `take()` still pops.
//! - `DRY`: empty; `take()` returns `None`, the caller parks its connection and is woken through
//!   the registered wakers when the reply arrives (this is the round-trip fallback).
//! - `DISABLED`: the child answered with an errno (e.g. transparent sockets without
//!   CAP_NET_ADMIN); callers fall back to the normal kind.
//!
//! A pool never holds more than [`MAX_POOLED`] sockets (extras are closed). Under fd pressure
//! the pools give way to connections: a reply truncated because our fd table is full
//! (`MSG_CTRUNC`; the fds that were installed are still taken over) or accept failing with
//! EMFILE/ENFILE (`SocketPools::release_under_pressure` closes half of every pool) holds off
//! new requests for a moment instead of re-asking at once.
//!
//! Wire format: every message is one datagram starting with a 16-byte little-endian header
//! `op:u8 kind:u8 count:u16 errno:i32 req_id:u64`. Parent→child: `INIT` (kind = transparent mode
//! 0/1), `ALLOC` (kind, count ≤ [`MAX_FDS`]). Child→parent: `REPLY` with `count` fds attached via
//! `SCM_RIGHTS`, or `errno` != 0 and no fds. The parent validates every received fd (`SO_TYPE`,
//! `SO_DOMAIN`, and, when required, that `SO_NETNS_COOKIE` differs from its own namespace) and
//! closes anything unexpected: garbage from the child never crashes the parent.

use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags, UnixAddr};

use crate::engine::sys;

/// Sockets per `ALLOC` request.
pub const BATCH: u16 = 32;
/// A pool below this many sockets asks the child for a new batch.
pub const REFILL_BELOW: usize = 16;
/// Hard cap of one pool: sockets beyond it are closed on arrival.
pub const MAX_POOLED: usize = 2 * BATCH as usize;
/// After fd pressure (our table full, the child out of fds, accept EMFILE): no new request
/// for this long, so freed fds go to accept and connections first.
const PRESSURE_BACKOFF_MS: u64 = 100;
/// SCM_RIGHTS limit per message (`SCM_MAX_FD`).
pub const MAX_FDS: usize = 253;
/// `SO_MARK` of transparent sockets (the child's `ip rule fwmark 100 lookup 100`).
pub const TRANSPARENT_MARK: i32 = 100;

const HDR: usize = 16;
const OP_INIT: u8 = 1;
const OP_ALLOC: u8 = 2;
const OP_REPLY: u8 = 0x81;

/// Errors of the channel (both sides).
#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    #[error("open netns {0}")]
    OpenNetns(PathBuf, #[source] io::Error),
    #[error("setns into {0}")]
    Setns(PathBuf, #[source] nix::Error),
    #[error("receive on channel")]
    Recv(#[source] nix::Error),
    #[error("send on channel")]
    Send(#[source] nix::Error),
}

/// Kind of a pooled socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SockKind {
    Tcp4 = 0,
    Tcp6 = 1,
    Udp4 = 2,
    Udp6 = 3,
    Tcp4Transparent = 4,
    Tcp6Transparent = 5,
}

const KINDS: usize = 6;

impl SockKind {
    fn from_u8(v: u8) -> Option<SockKind> {
        Some(match v {
            0 => SockKind::Tcp4,
            1 => SockKind::Tcp6,
            2 => SockKind::Udp4,
            3 => SockKind::Udp6,
            4 => SockKind::Tcp4Transparent,
            5 => SockKind::Tcp6Transparent,
            _ => return None,
        })
    }
    fn domain(self) -> libc::c_int {
        match self {
            SockKind::Tcp4 | SockKind::Udp4 | SockKind::Tcp4Transparent => libc::AF_INET,
            _ => libc::AF_INET6,
        }
    }
    fn sock_type(self) -> libc::c_int {
        match self {
            SockKind::Udp4 | SockKind::Udp6 => libc::SOCK_DGRAM,
            _ => libc::SOCK_STREAM,
        }
    }
    fn transparent(self) -> bool {
        matches!(self, SockKind::Tcp4Transparent | SockKind::Tcp6Transparent)
    }
    /// Pool for a target (`v6`), protocol and transparency.
    pub fn for_target(tcp: bool, v6: bool, transparent: bool) -> SockKind {
        match (tcp, v6, transparent) {
            (true, false, false) => SockKind::Tcp4,
            (true, true, false) => SockKind::Tcp6,
            (true, false, true) => SockKind::Tcp4Transparent,
            (true, true, true) => SockKind::Tcp6Transparent,
            (false, false, _) => SockKind::Udp4,
            (false, true, _) => SockKind::Udp6,
        }
    }
}

fn encode(op: u8, kind: u8, count: u16, errno: i32, id: u64) -> [u8; HDR] {
    let mut b = [0u8; HDR];
    b[0] = op;
    b[1] = kind;
    b[2..4].copy_from_slice(&count.to_le_bytes());
    b[4..8].copy_from_slice(&errno.to_le_bytes());
    b[8..16].copy_from_slice(&id.to_le_bytes());
    b
}

struct Header {
    op: u8,
    kind: u8,
    count: u16,
    errno: i32,
}

fn decode(b: &[u8]) -> Option<Header> {
    if b.len() < HDR {
        return None;
    }
    Some(Header {
        op: b[0],
        kind: b[1],
        count: u16::from_le_bytes([b[2], b[3]]),
        errno: i32::from_le_bytes([b[4], b[5], b[6], b[7]]),
    })
}

/// Receive one datagram with up to [`MAX_FDS`] fds; every fd is owned at once (closed on drop).
///
/// Returns the byte count, the fds and whether the control data was truncated (`MSG_CTRUNC`).
/// When our fd table is full the kernel installs as many of the passed fds as it can, sets
/// `MSG_CTRUNC`, describes the installed ones in a valid `SCM_RIGHTS` header and closes the
/// rest. Those installed fds must still be taken over: skipping the control data on
/// `MSG_CTRUNC` (as `nix`'s `cmsgs()` does) leaks them for the life of the process.
fn recv_with_fds(
    fd: BorrowedFd<'_>,
    buf: &mut [u8],
) -> Result<(usize, Vec<OwnedFd>, bool), nix::Error> {
    const FD_SIZE: usize = std::mem::size_of::<RawFd>();
    // SAFETY: pure size computation.
    let space = unsafe { libc::CMSG_SPACE((MAX_FDS * FD_SIZE) as u32) } as usize;
    // u64 elements: cmsghdr alignment.
    let mut cbuf = vec![0u64; space.div_ceil(8)];
    let cbuf_len = cbuf.len() * 8;
    loop {
        let mut iov = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        // SAFETY: all-zero is a valid msghdr (null pointers, zero lengths).
        let mut mh: libc::msghdr = unsafe { std::mem::zeroed() };
        mh.msg_iov = &mut iov;
        mh.msg_iovlen = 1;
        mh.msg_control = cbuf.as_mut_ptr().cast();
        mh.msg_controllen = cbuf_len as _;
        // SAFETY: `mh` points to live buffers of the stated lengths.
        let n = unsafe { libc::recvmsg(fd.as_raw_fd(), &mut mh, libc::MSG_CMSG_CLOEXEC) };
        if n < 0 {
            match nix::Error::last() {
                nix::Error::EINTR => continue,
                e => return Err(e),
            }
        }
        let truncated = mh.msg_flags & libc::MSG_CTRUNC != 0;
        let mut fds = Vec::new();
        let base = cbuf.as_ptr() as usize;
        // SAFETY: the kernel wrote `msg_controllen` bytes of well-formed cmsgs into `cbuf`
        // (also with MSG_CTRUNC); CMSG_FIRSTHDR/CMSG_NXTHDR stay within that length and every
        // read below is bounds-checked against the buffer.
        unsafe {
            let mut c = libc::CMSG_FIRSTHDR(&mh);
            while !c.is_null() {
                if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_RIGHTS {
                    let data = libc::CMSG_DATA(c);
                    let hdr = libc::CMSG_LEN(0) as usize;
                    let len = ((*c).cmsg_len as usize).saturating_sub(hdr);
                    let room = (base + cbuf_len).saturating_sub(data as usize);
                    let cnt = len.min(room) / FD_SIZE;
                    for i in 0..cnt {
                        let r = std::ptr::read_unaligned(data.cast::<RawFd>().add(i));
                        if r >= 0 {
                            // The kernel installed this fd in our table for us (SCM_RIGHTS);
                            // nobody else owns it.
                            fds.push(OwnedFd::from_raw_fd(r));
                        }
                    }
                }
                c = libc::CMSG_NXTHDR(&mh, c);
            }
        }
        return Ok((n as usize, fds, truncated));
    }
}

fn send_with_fds(fd: BorrowedFd<'_>, data: &[u8], fds: &[RawFd]) -> Result<(), nix::Error> {
    let iov = [io::IoSlice::new(data)];
    let cmsg = [ControlMessage::ScmRights(fds)];
    let cm: &[ControlMessage<'_>] = if fds.is_empty() { &[] } else { &cmsg };
    loop {
        match sendmsg::<UnixAddr>(fd.as_raw_fd(), &iov, cm, MsgFlags::MSG_NOSIGNAL, None) {
            Ok(_) => return Ok(()),
            Err(nix::Error::EINTR) => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Congestion-control verdict of the child's namespace (see [`sys::unpace_local`]).
static CHILD_CC: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(0);

/// Create one socket of `kind` in the current thread's network namespace.
fn make_socket(kind: SockKind) -> io::Result<OwnedFd> {
    let s = sys::socket(kind.domain(), kind.sock_type())?;
    if kind.sock_type() == libc::SOCK_STREAM {
        let _ = sys::setsockopt_int(s.as_fd(), libc::IPPROTO_TCP, libc::TCP_NODELAY, 1);
        // Namespace-internal connections never need pacing (see `sys::unpace_local`); done
        // here, in batches off the connection path, instead of per connection in the parent.
        let _ = sys::unpace_local(s.as_fd(), &CHILD_CC);
    }
    if kind.transparent() {
        if kind.domain() == libc::AF_INET {
            sys::setsockopt_int(s.as_fd(), libc::SOL_IP, libc::IP_TRANSPARENT, 1)?;
        } else {
            sys::setsockopt_int(s.as_fd(), libc::SOL_IPV6, libc::IPV6_TRANSPARENT, 1)?;
        }
        sys::setsockopt_int(s.as_fd(), libc::SOL_SOCKET, libc::SO_MARK, TRANSPARENT_MARK)?;
    }
    Ok(s)
}

/// Child side: serve socket requests until the parent closes the channel.
///
/// Runs on a dedicated thread in the rootlesskit child. With `netns`, that thread first enters
/// the namespace (`--detach-netns`).
pub fn serve_child(channel: OwnedFd, netns: Option<PathBuf>) -> Result<(), ChannelError> {
    if let Some(path) = netns {
        let f = std::fs::File::open(&path).map_err(|e| ChannelError::OpenNetns(path.clone(), e))?;
        nix::sched::setns(f.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET)
            .map_err(|e| ChannelError::Setns(path, e))?;
    }
    let mut transparent_enabled = false;
    let mut buf = [0u8; 64];
    loop {
        let (n, fds) = match recv_with_fds(channel.as_fd(), &mut buf) {
            Ok((n, fds, _)) => (n, fds),
            Err(nix::Error::ECONNRESET) => return Ok(()),
            Err(e) => return Err(ChannelError::Recv(e)),
        };
        drop(fds); // the parent never sends fds
        if n == 0 {
            return Ok(()); // parent closed the channel
        }
        let Some(h) = decode(&buf[..n]) else { continue };
        let id = u64::from_le_bytes(buf[8..16].try_into().unwrap_or([0; 8]));
        match h.op {
            OP_INIT => {
                transparent_enabled = h.kind == 1;
                let reply = encode(OP_REPLY, 255, 0, 0, id);
                send_or_closed(&channel, &reply, &[])?;
            }
            OP_ALLOC => {
                let Some(kind) = SockKind::from_u8(h.kind) else {
                    let reply = encode(OP_REPLY, h.kind, 0, libc::EINVAL, id);
                    send_or_closed(&channel, &reply, &[])?;
                    continue;
                };
                let count = usize::from(h.count).clamp(1, MAX_FDS);
                let mut socks = Vec::with_capacity(count);
                let mut err = 0;
                if kind.transparent() && !transparent_enabled {
                    err = libc::EPERM;
                } else {
                    for _ in 0..count {
                        match make_socket(kind) {
                            Ok(s) => socks.push(s),
                            Err(e) => {
                                err = sys::errno(&e);
                                break;
                            }
                        }
                    }
                }
                if !socks.is_empty() {
                    err = 0;
                }
                let raw: Vec<RawFd> = socks.iter().map(|s| s.as_raw_fd()).collect();
                let reply = encode(OP_REPLY, h.kind, raw.len() as u16, err, id);
                send_or_closed(&channel, &reply, &raw)?;
                // `socks` dropped here: our copies close, the parent holds its own.
            }
            _ => {}
        }
    }
}

fn send_or_closed(ch: &OwnedFd, data: &[u8], fds: &[RawFd]) -> Result<(), ChannelError> {
    match send_with_fds(ch.as_fd(), data, fds) {
        Ok(()) => Ok(()),
        // The parent went away: that is the normal end.
        Err(nix::Error::EPIPE) | Err(nix::Error::ECONNRESET) => Ok(()),
        Err(e) => Err(ChannelError::Send(e)),
    }
}

/// Something to call when sockets arrive (a worker's eventfd).
pub(crate) type Waker = Box<dyn Fn() + Send + Sync>;

struct PoolQ {
    socks: VecDeque<OwnedFd>,
    /// A `take()` found the pool empty since the last reply: wake the workers on the next one.
    waiters: bool,
}

struct Pool {
    q: Mutex<PoolQ>,
    outstanding: AtomicBool,
    disabled: AtomicBool,
}

/// Parent side: socket pools fed by the child over the channel.
pub(crate) struct SocketPools {
    channel: OwnedFd,
    send_lock: Mutex<()>,
    pools: [Pool; KINDS],
    next_id: AtomicU64,
    closed: AtomicBool,
    /// Transient failure (EMFILE/ENFILE/ENOBUFS in the child): no new request before this
    /// instant (ms since `epoch`), so waiting connections don't ping-pong with the child.
    retry_after_ms: AtomicU64,
    epoch: std::time::Instant,
    own_cookie: Option<u64>,
    require_foreign_netns: bool,
    wakers: Mutex<Vec<Waker>>,
}

impl SocketPools {
    /// Wrap the parent end of the channel. Call [`SocketPools::run_reader`] on a thread.
    pub(crate) fn new(channel: OwnedFd, require_foreign_netns: bool) -> Arc<SocketPools> {
        let own_cookie = sys::socket(libc::AF_INET, libc::SOCK_DGRAM)
            .ok()
            .and_then(|s| netns_cookie(s.as_fd()));
        let mk = || Pool {
            q: Mutex::new(PoolQ {
                socks: VecDeque::new(),
                waiters: false,
            }),
            outstanding: AtomicBool::new(false),
            disabled: AtomicBool::new(false),
        };
        Arc::new(SocketPools {
            channel,
            send_lock: Mutex::new(()),
            pools: [mk(), mk(), mk(), mk(), mk(), mk()],
            next_id: AtomicU64::new(1),
            closed: AtomicBool::new(false),
            retry_after_ms: AtomicU64::new(0),
            epoch: std::time::Instant::now(),
            own_cookie,
            require_foreign_netns,
            wakers: Mutex::new(Vec::new()),
        })
    }

    pub(crate) fn add_waker(&self, w: Waker) {
        if let Ok(mut v) = self.wakers.lock() {
            v.push(w);
        }
    }

    fn wake_all(&self) {
        if let Ok(v) = self.wakers.lock() {
            for w in v.iter() {
                w();
            }
        }
    }

    fn send(&self, msg: &[u8]) -> bool {
        let _g = self.send_lock.lock();
        send_with_fds(self.channel.as_fd(), msg, &[]).is_ok()
    }

    /// Send `INIT` and prefill the pools that are always needed.
    pub(crate) fn init(&self, transparent: bool) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.send(&encode(OP_INIT, u8::from(transparent), 0, 0, id));
        if !transparent {
            self.pools[SockKind::Tcp4Transparent as usize]
                .disabled
                .store(true, Ordering::Relaxed);
            self.pools[SockKind::Tcp6Transparent as usize]
                .disabled
                .store(true, Ordering::Relaxed);
        }
        for k in [SockKind::Tcp4, SockKind::Tcp6] {
            self.request(k);
        }
    }

    fn request(&self, kind: SockKind) {
        let p = &self.pools[kind as usize];
        if self.closed.load(Ordering::Relaxed) || p.disabled.load(Ordering::Relaxed) {
            return;
        }
        if self.now_ms() < self.retry_after_ms.load(Ordering::Relaxed) {
            return;
        }
        if p.outstanding.swap(true, Ordering::AcqRel) {
            return;
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        if !self.send(&encode(OP_ALLOC, kind as u8, BATCH, 0, id)) {
            p.outstanding.store(false, Ordering::Release);
        }
    }

    /// The process is out of fds (accept failed with EMFILE/ENFILE): close half of every
    /// pool's sockets (rounded up) so accept can make progress, and hold off refills for a
    /// moment so the freed fds are not taken right back. Returns the number of closed sockets.
    pub(crate) fn release_under_pressure(&self) -> usize {
        self.retry_after_ms
            .store(self.now_ms() + PRESSURE_BACKOFF_MS, Ordering::Relaxed);
        let mut dropped = Vec::new();
        for p in &self.pools {
            if let Ok(mut q) = p.q.lock() {
                let n = q.socks.len().div_ceil(2);
                dropped.extend(q.socks.drain(..n));
            }
        }
        dropped.len() // closed here
    }

    /// Whether a kind is usable (not disabled by the child's answer).
    pub(crate) fn enabled(&self, kind: SockKind) -> bool {
        !self.pools[kind as usize].disabled.load(Ordering::Relaxed)
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Relaxed)
    }

    /// Pop a socket; refill asynchronously below the threshold. `None` = dry (wait for a waker)
    /// or disabled (check [`SocketPools::enabled`]).
    pub(crate) fn take(&self, kind: SockKind) -> Option<OwnedFd> {
        let p = &self.pools[kind as usize];
        let (s, left) = match p.q.lock() {
            Ok(mut q) => {
                let s = q.socks.pop_front();
                if s.is_none() {
                    q.waiters = true;
                }
                (s, q.socks.len())
            }
            Err(_) => (None, 0),
        };
        if left < REFILL_BELOW {
            self.request(kind);
        }
        s
    }

    fn validate(&self, kind: SockKind, fd: &OwnedFd) -> bool {
        let b = fd.as_fd();
        let ty = sys::getsockopt_int(b, libc::SOL_SOCKET, libc::SO_TYPE);
        let dom = sys::getsockopt_int(b, libc::SOL_SOCKET, libc::SO_DOMAIN);
        if ty.ok() != Some(kind.sock_type()) || dom.ok() != Some(kind.domain()) {
            return false;
        }
        if self.require_foreign_netns {
            if let (Some(own), Some(theirs)) = (self.own_cookie, netns_cookie(b)) {
                if own == theirs {
                    return false;
                }
            }
        }
        // Must be unconnected and non-blocking-capable: make sure of O_NONBLOCK ourselves.
        // SAFETY: F_GETFL/F_SETFL on a borrowed (open) fd.
        unsafe {
            let fl = libc::fcntl(b.as_raw_fd(), libc::F_GETFL);
            if fl >= 0 && fl & libc::O_NONBLOCK == 0 {
                libc::fcntl(b.as_raw_fd(), libc::F_SETFL, fl | libc::O_NONBLOCK);
            }
        }
        true
    }

    /// Reader loop (own thread): receive replies, validate, fill pools, wake workers.
    pub(crate) fn run_reader(&self) {
        let mut buf = [0u8; 64];
        loop {
            let r = recv_with_fds(self.channel.as_fd(), &mut buf);
            let (n, fds, truncated) = match r {
                Ok((0, _, _)) | Err(_) => break,
                Ok(v) => v,
            };
            let Some(h) = decode(&buf[..n]) else { continue };
            if h.op != OP_REPLY {
                continue;
            }
            if h.kind == 255 {
                continue; // INIT ack
            }
            let Some(kind) = SockKind::from_u8(h.kind) else {
                continue; // fds dropped (closed)
            };
            let p = &self.pools[kind as usize];
            let received = fds.len();
            let good: Vec<OwnedFd> = fds
                .into_iter()
                .filter(|fd| self.validate(kind, fd))
                .collect();
            if received > 0 && good.is_empty() {
                // A whole batch of wrong sockets (wrong type/family, or from our own netns):
                // the child is broken; stop asking instead of looping.
                p.disabled.store(true, Ordering::Relaxed);
            }
            // Only a permanent refusal disables a kind (transparent sockets without
            // CAP_NET_ADMIN, unsupported family); EMFILE/ENFILE/ENOBUFS are transient and the
            // next `take()` asks again.
            if good.is_empty()
                && matches!(
                    h.errno,
                    libc::EPERM
                        | libc::EACCES
                        | libc::EAFNOSUPPORT
                        | libc::EINVAL
                        | libc::ENOPROTOOPT
                )
            {
                p.disabled.store(true, Ordering::Relaxed);
            }
            let _ = h.count;
            // A truncated reply (MSG_CTRUNC: our fd table is full, the kernel closed the fds it
            // could not install) is fd pressure on our side: asking again at once would only
            // have the kernel drop the next batch too.
            let transient = (good.is_empty() && h.errno != 0) || truncated;
            let pooled = good.len();
            let mut extra = Vec::new();
            let mut waiters = false;
            if let Ok(mut q) = p.q.lock() {
                for s in good {
                    if q.socks.len() < MAX_POOLED {
                        q.socks.push_back(s);
                    } else {
                        extra.push(s);
                    }
                }
                // Cleared under the same lock that `take()` sets it with: a worker that found
                // the pool dry either sees these sockets or is woken below.
                if pooled > 0 || !transient || p.disabled.load(Ordering::Relaxed) {
                    waiters = std::mem::take(&mut q.waiters);
                }
            }
            drop(extra); // beyond the cap: closed
            if transient {
                let ms = if truncated { PRESSURE_BACKOFF_MS } else { 50 };
                self.retry_after_ms
                    .store(self.now_ms() + ms, Ordering::Relaxed);
            }
            p.outstanding.store(false, Ordering::Release);
            if waiters {
                // Waiting connections retry now (a refill nobody waits for wakes nobody);
                // after a transient failure they retry from their worker's coarse timer.
                self.wake_all();
            }
        }
        self.closed.store(true, Ordering::Relaxed);
        self.wake_all();
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// Make the reader thread return (and tell the child to stop).
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::Relaxed);
        sys::shutdown_both(self.channel.as_fd());
    }
}

fn netns_cookie(fd: BorrowedFd<'_>) -> Option<u64> {
    const SO_NETNS_COOKIE: libc::c_int = 71;
    sys::getsockopt_u64(fd, libc::SOL_SOCKET, SO_NETNS_COOKIE).ok()
}
