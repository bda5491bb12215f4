//! UDP: one host socket per published port, a flow table keyed by client address.
//!
//! # Theory of operation
//!
//! The worker owning a port receives datagrams in batches (`recvmmsg`, 32 slots of 64 KiB, so
//! datagrams up to 65507 bytes pass). Each client address maps to a flow with its own connected
//! UDP socket created in the child namespace (from the channel's UDP pool). Flow states:
//!
//! - `SOCK_WAIT`: the pool was dry; up to [`QUEUE_MAX`] datagrams are queued and the flow is
//!   retried when sockets arrive. Other flows keep running (a new flow never stalls the port).
//! - `OPEN`: datagrams are sent on the flow socket (a run of one client's datagrams from one
//!   `recvmmsg` goes out as `UDP_SEGMENT` GSO batches of equal-sized datagrams, else `sendmmsg`;
//!   port and flow sockets ask for 4 MiB buffers); replies read from it are sent back to
//!   the client with `sendto()` through the port socket. ECONNREFUSED on the flow socket (no
//!   listener yet in the namespace) is ignored, as RootlessKit does.
//! - `EXPIRED`: no traffic for `udp_idle_timeout` (90 s by default, coarse 1 s timer) → closed.
//!
//! At most `udp_max_flows` flows exist per port; datagrams of further clients are dropped and
//! counted as errors.
//!
//! Under sustained load (datagrams arriving faster than one per 200 µs) a read that found less
//! than a full batch makes the worker pause before polling again (asks for at most 50 µs; the
//! kernel's default 50 µs timer slack can stretch it to 100 µs), so that reads and GSO sends
//! carry ~20–32 datagrams ([`coalesce_nap`]; switched off for 10 ms for a port whose reads stay
//! at one datagram after a pause, i.e. request/response traffic). While the worker pauses, its
//! other sockets wait too: at most one pause per loop iteration.

use std::collections::HashMap;
use std::io;
use std::mem::{size_of, MaybeUninit};
use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::poller::{Interest, Ready};
use super::slab::Key;
use super::worker::{token, Worker, T_FLOW, T_UDP};
use super::{sys, Counters};
use crate::channel::SockKind;

const SLOTS: usize = 32;
const SLOT: usize = 65536;
/// Distance between slot starts: a power-of-two stride would put the first bytes of every slot
/// (all that a typical 1400-byte datagram touches) into the same few cache sets, so slots are
/// staggered by 23 cache lines.
const STRIDE: usize = SLOT + 23 * 64;
const QUEUE_MAX: usize = 8;
const SOCK_WAIT_TIMEOUT: Duration = Duration::from_secs(5);

pub(crate) struct UdpPort {
    pub id: u64,
    fd: OwnedFd,
    target: SocketAddr,
    stats: Arc<Counters>,
    flows: HashMap<SocketAddr, Key>,
    /// When the port socket was last drained (for the arrival rate of [`coalesce_nap`]).
    last_read: Instant,
    /// The worker napped for this port after its last read.
    napped: bool,
    /// No naps for this port before this time (a nap did not gather datagrams).
    nap_off_until: Option<Instant>,
}

pub(crate) struct UdpFlow {
    port: Key,
    client: SocketAddr,
    fd: Option<OwnedFd>,
    queue: Vec<Vec<u8>>,
    last: Instant,
    created: Instant,
}

pub(crate) struct UdpState {
    bufs: Vec<u8>,
    /// (length, source) of the datagrams of the last `recvmmsg` (kept to avoid an allocation
    /// per batch).
    got: Vec<Dgram>,
    pending: Vec<Key>,
    last_sweep: Instant,
    /// Pause the worker wants before its next poll (sustained UDP load), see [`coalesce_nap`].
    nap: Option<Duration>,
}

impl UdpState {
    pub(crate) fn new() -> UdpState {
        UdpState {
            bufs: Vec::new(),
            got: Vec::with_capacity(SLOTS),
            pending: Vec::new(),
            last_sweep: Instant::now(),
            nap: None,
        }
    }
    pub(crate) fn waiting(&self) -> bool {
        !self.pending.is_empty()
    }
    /// The pause asked for by the ports drained in this loop iteration (the shortest), reset.
    pub(crate) fn take_nap(&mut self) -> Option<Duration> {
        self.nap.take()
    }
}

/// Read coalescing under sustained load: a port whose datagrams arrive faster than one per
/// `HOT_GAP` but whose reads find less than `COALESCE_BATCH` of them makes its worker pause (at
/// most `NAP_MAX`, plus the timer slack) before polling again, so that the next `recvmmsg` and
/// the `UDP_SEGMENT` send after it carry up to `COALESCE_BATCH` datagrams. The fixed cost of a
/// batch (poll, receive and send calls, one trip through the stack, waking the receiver) is
/// then shared by ~20 datagrams instead of 1–5, and the receiver in the namespace drains its queue while the
/// forwarder sleeps instead of competing with it for the CPU (2 vCPUs, `iperf3 -u -b 0`:
/// forwarder CPU per datagram −15 to −30%, see docs/performance.md). A nap after which the read
/// still finds a single datagram (request/response traffic: the next datagram only comes
/// after the reply) switches naps off for the port for `NAP_COOLDOWN`. `NAP_MAX` 50 and 100 µs
/// gave the same batches and CPU per datagram (the default 50 µs timer slack of `nanosleep`
/// stretches both), so the shorter bound is kept.
const COALESCE_BATCH: usize = SLOTS;
const HOT_GAP: Duration = Duration::from_micros(200);
const NAP_MAX: Duration = Duration::from_micros(50);
const NAP_COOLDOWN: Duration = Duration::from_millis(10);

/// How long to wait before draining a port again so that the next read finds about
/// `COALESCE_BATCH` datagrams, given that `got` datagrams arrived in `gap`; None unless they
/// arrived at least one per `HOT_GAP` on average and were fewer than a batch.
fn coalesce_nap(got: usize, gap: Duration) -> Option<Duration> {
    if got == 0 || got >= COALESCE_BATCH || gap > HOT_GAP * got as u32 {
        return None;
    }
    let want = gap * (COALESCE_BATCH - got) as u32 / got as u32;
    Some(want.min(NAP_MAX))
}

/// A received datagram: `len` bytes in slot `slot` of the buffers, from `from`.
#[derive(Clone, Copy)]
struct Dgram {
    slot: usize,
    len: usize,
    from: SocketAddr,
}

/// `recvmmsg` into `bufs` (SLOTS slots of SLOT bytes, STRIDE apart). Fills `out` with the
/// datagrams to forward (truncated ones and unknown address families are left out) and returns
/// how many the kernel returned.
fn recv_batch(fd: BorrowedFd<'_>, bufs: &mut [u8], out: &mut Vec<Dgram>) -> io::Result<usize> {
    out.clear();
    let slots = (bufs.len() / STRIDE).min(SLOTS);
    // SAFETY: these are plain-old-data C structs; all-zero is a valid value for each.
    let mut addrs: [libc::sockaddr_storage; SLOTS] = unsafe { MaybeUninit::zeroed().assume_init() };
    // SAFETY: as above.
    let mut hdrs: [libc::mmsghdr; SLOTS] = unsafe { MaybeUninit::zeroed().assume_init() };
    let mut iovs: [libc::iovec; SLOTS] = [libc::iovec {
        iov_base: std::ptr::null_mut(),
        iov_len: 0,
    }; SLOTS];
    for i in 0..slots {
        iovs[i].iov_base = bufs[i * STRIDE..].as_mut_ptr().cast();
        iovs[i].iov_len = SLOT;
        hdrs[i].msg_hdr.msg_name = (&mut addrs[i] as *mut libc::sockaddr_storage).cast();
        hdrs[i].msg_hdr.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        hdrs[i].msg_hdr.msg_iov = &mut iovs[i];
        hdrs[i].msg_hdr.msg_iovlen = 1;
    }
    // SAFETY: every header points at a live iovec (into `bufs`, SLOT bytes each, in bounds) and
    // a live sockaddr_storage of the advertised length; `slots` ≤ array lengths.
    let n = unsafe {
        libc::recvmmsg(
            fd.as_raw_fd(),
            hdrs.as_mut_ptr(),
            slots as libc::c_uint,
            // glibc takes c_int flags, musl c_uint.
            libc::MSG_DONTWAIT as _,
            std::ptr::null_mut(),
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    for i in 0..n as usize {
        if hdrs[i].msg_hdr.msg_flags & libc::MSG_TRUNC != 0 {
            continue;
        }
        if let Some(from) = sys::from_sockaddr(&addrs[i]) {
            out.push(Dgram {
                slot: i,
                len: hdrs[i].msg_len as usize,
                from,
            });
        }
    }
    Ok(n as usize)
}

/// `sendmmsg` of datagrams `slots[i] = (slot index in bufs, len)` to `to`. Returns the bytes
/// sent; datagrams the kernel did not take are dropped (UDP).
fn send_batch(
    fd: BorrowedFd<'_>,
    bufs: &mut [u8],
    slots: &[(usize, usize)],
    to: &SocketAddr,
) -> io::Result<usize> {
    let n = slots.len().min(SLOTS);
    let (mut addr, alen) = sys::to_sockaddr(to);
    // SAFETY: plain-old-data C structs; all-zero is a valid value.
    let mut hdrs: [libc::mmsghdr; SLOTS] = unsafe { MaybeUninit::zeroed().assume_init() };
    let mut iovs: [libc::iovec; SLOTS] = [libc::iovec {
        iov_base: std::ptr::null_mut(),
        iov_len: 0,
    }; SLOTS];
    for (i, &(slot, len)) in slots[..n].iter().enumerate() {
        let Some(b) = bufs.get_mut(slot * STRIDE..slot * STRIDE + len.min(SLOT)) else {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        };
        iovs[i].iov_base = b.as_mut_ptr().cast();
        iovs[i].iov_len = b.len();
        hdrs[i].msg_hdr.msg_name = (&mut addr as *mut libc::sockaddr_storage).cast();
        hdrs[i].msg_hdr.msg_namelen = alen;
        hdrs[i].msg_hdr.msg_iov = &mut iovs[i];
        hdrs[i].msg_hdr.msg_iovlen = 1;
    }
    // SAFETY: headers 0..n point at live iovecs (in-bounds slices of `bufs`) and at `addr` (a
    // valid sockaddr of `alen` bytes); all outlive the call.
    let (sent, taken, err) = unsafe {
        sendmmsg_all(fd, &mut hdrs[..n], |errno| match errno {
            libc::EINTR => OnError::Retry,
            _ => OnError::Stop,
        })
    };
    match err {
        Some(e) if taken == 0 => Err(e),
        _ => Ok(sent),
    }
}

/// What [`sendmmsg_all`] does with the datagram that failed.
enum OnError {
    Retry,
    Skip,
    Stop,
}

/// `sendmmsg(2)` of every header in `hdrs` (non-blocking), resuming after partial sends. On an
/// error `on_error(errno)` decides: retry the same datagram, skip it, or stop. Returns the bytes
/// sent, how many datagrams the kernel took, and the error that stopped it.
///
/// # Safety
/// Every header must point at live iovecs (and, if set, a valid address) that outlive the call.
unsafe fn sendmmsg_all(
    fd: BorrowedFd<'_>,
    hdrs: &mut [libc::mmsghdr],
    mut on_error: impl FnMut(i32) -> OnError,
) -> (usize, usize, Option<io::Error>) {
    let n = hdrs.len();
    let (mut sent, mut off) = (0usize, 0usize);
    while off < n {
        // SAFETY: headers off..n are valid by this function's contract.
        let r = unsafe {
            libc::sendmmsg(
                fd.as_raw_fd(),
                hdrs[off..].as_mut_ptr(),
                (n - off) as libc::c_uint,
                // glibc takes c_int flags, musl c_uint.
                (libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL) as _,
            )
        };
        if r < 0 {
            let e = io::Error::last_os_error();
            match on_error(sys::errno(&e)) {
                OnError::Retry => continue,
                OnError::Skip => {
                    off += 1;
                    continue;
                }
                OnError::Stop => return (sent, off, Some(e)),
            }
        }
        if r == 0 {
            break;
        }
        for h in &hdrs[off..off + r as usize] {
            sent += h.msg_len as usize;
        }
        off += r as usize;
    }
    (sent, off, None)
}

/// Socket buffers of the port socket and of flow sockets: a blasting client must not overflow
/// the default (≈ 200 KiB) receive queue while the worker waits for the CPU. The kernel caps
/// this at `net.core.rmem_max`/`wmem_max` (no privilege needed).
const UDP_BUF: i32 = 4 << 20;

fn grow_buffers(fd: BorrowedFd<'_>) {
    let _ = sys::setsockopt_int(fd, libc::SOL_SOCKET, libc::SO_RCVBUF, UDP_BUF);
    let _ = sys::setsockopt_int(fd, libc::SOL_SOCKET, libc::SO_SNDBUF, UDP_BUF);
}

/// `UDP_SEGMENT` (linux/udp.h; not in the libc crate).
const UDP_SEGMENT: libc::c_int = 103;
/// Payload limit of one GSO send (IPv4 maximum is 65507) and segment limit (UDP_MAX_SEGMENTS).
const GSO_MAX_BYTES: usize = 65000;
const GSO_MAX_SEGS: usize = 64;
/// Cleared for the process when the kernel refuses `UDP_SEGMENT` (old kernel, no checksum
/// offload on the route): every send then uses `sendmmsg`.
static GSO_OK: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(true);

/// One `sendmsg` with `UDP_SEGMENT = seg`: the kernel carries the datagrams as one GSO packet
/// and splits it at the receiving socket (or device), so a burst costs one trip through the
/// stack and one wake-up of the receiver instead of one per datagram. Datagram boundaries are
/// kept: every slot is exactly one segment (all `seg` bytes, the last one ≤ `seg`).
fn send_gso(
    fd: BorrowedFd<'_>,
    bufs: &mut [u8],
    slots: &[(usize, usize)],
    seg: usize,
) -> io::Result<usize> {
    let n = slots.len().min(GSO_MAX_SEGS);
    let mut iovs: [libc::iovec; GSO_MAX_SEGS] = [libc::iovec {
        iov_base: std::ptr::null_mut(),
        iov_len: 0,
    }; GSO_MAX_SEGS];
    for (i, &(slot, len)) in slots[..n].iter().enumerate() {
        let Some(b) = bufs.get_mut(slot * STRIDE..slot * STRIDE + len.min(SLOT)) else {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        };
        iovs[i].iov_base = b.as_mut_ptr().cast();
        iovs[i].iov_len = b.len();
    }
    // cmsg space for one u16, aligned (CMSG_SPACE(2) = 24 on 64-bit Linux).
    let mut cbuf = [0u64; 4];
    // SAFETY: plain-old-data C struct; all-zero is valid.
    let mut msg: libc::msghdr = unsafe { MaybeUninit::zeroed().assume_init() };
    msg.msg_iov = iovs.as_mut_ptr();
    msg.msg_iovlen = n as _;
    msg.msg_control = cbuf.as_mut_ptr().cast();
    // SAFETY: CMSG_SPACE is a pure computation.
    msg.msg_controllen = unsafe { libc::CMSG_SPACE(size_of::<u16>() as u32) } as _;
    // SAFETY: msg_control points at `cbuf` (32 bytes ≥ CMSG_SPACE(2)), so the first header and
    // its data are in bounds; the u16 is written unaligned-safe.
    unsafe {
        let c = libc::CMSG_FIRSTHDR(&msg);
        (*c).cmsg_level = libc::SOL_UDP;
        (*c).cmsg_type = UDP_SEGMENT;
        (*c).cmsg_len = libc::CMSG_LEN(size_of::<u16>() as u32) as _;
        std::ptr::write_unaligned(libc::CMSG_DATA(c).cast::<u16>(), seg as u16);
    }
    // SAFETY: `msg` references live iovecs (in-bounds slices of `bufs`) and `cbuf`, all of which
    // outlive the call.
    let r = unsafe {
        libc::sendmsg(
            fd.as_raw_fd(),
            &msg,
            libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(r as usize)
}

/// Datagrams `slots[i] = (slot index in bufs, len)` on a connected socket: GSO batches of
/// equal-sized datagrams where possible, `sendmmsg` otherwise.
/// Returns (bytes sent, datagrams dropped by errors other than ECONNREFUSED).
fn send_connected(fd: BorrowedFd<'_>, bufs: &mut [u8], slots: &[(usize, usize)]) -> (usize, u64) {
    let mut sent = 0usize;
    let mut dropped = 0u64;
    let mut i = 0;
    while i < slots.len() && GSO_OK.load(Ordering::Relaxed) {
        // Longest run from i of datagrams of the same size (the last one may be shorter).
        let seg = slots[i].1;
        let mut j = i;
        let mut bytes = 0;
        while j < slots.len()
            && j - i < GSO_MAX_SEGS
            && bytes + slots[j].1 <= GSO_MAX_BYTES
            && slots[j].1 <= seg
            && slots[j].1 > 0
        {
            bytes += slots[j].1;
            j += 1;
            if slots[j - 1].1 < seg {
                break;
            }
        }
        if j - i < 2 {
            break;
        }
        match send_gso(fd, bufs, &slots[i..j], seg) {
            Ok(n) => sent += n,
            Err(e) => match sys::errno(&e) {
                libc::EINTR => continue,
                libc::ECONNREFUSED => {}
                libc::EIO
                | libc::EINVAL
                | libc::ENOPROTOOPT
                | libc::EOPNOTSUPP
                | libc::EMSGSIZE => {
                    // Not supported here: the plain path takes this run and all later ones.
                    GSO_OK.store(false, Ordering::Relaxed);
                    break;
                }
                _ => dropped += (j - i) as u64,
            },
        }
        i = j;
    }
    if i < slots.len() {
        let (s, d) = send_mmsg(fd, bufs, &slots[i..]);
        sent += s;
        dropped += d;
    }
    (sent, dropped)
}

/// `sendmmsg` of datagrams `slots[i] = (slot index in bufs, len)` on a connected socket.
fn send_mmsg(fd: BorrowedFd<'_>, bufs: &mut [u8], slots: &[(usize, usize)]) -> (usize, u64) {
    let n = slots.len().min(SLOTS);
    // SAFETY: plain-old-data C structs; all-zero is a valid value.
    let mut hdrs: [libc::mmsghdr; SLOTS] = unsafe { MaybeUninit::zeroed().assume_init() };
    let mut iovs: [libc::iovec; SLOTS] = [libc::iovec {
        iov_base: std::ptr::null_mut(),
        iov_len: 0,
    }; SLOTS];
    for (i, &(slot, len)) in slots[..n].iter().enumerate() {
        let Some(b) = bufs.get_mut(slot * STRIDE..slot * STRIDE + len.min(SLOT)) else {
            return (0, 0);
        };
        iovs[i].iov_base = b.as_mut_ptr().cast();
        iovs[i].iov_len = b.len();
        hdrs[i].msg_hdr.msg_iov = &mut iovs[i];
        hdrs[i].msg_hdr.msg_iovlen = 1;
    }
    let mut dropped = 0u64;
    // SAFETY: headers 0..n point at live iovecs (in-bounds slices of `bufs`) that outlive the
    // call; no address (connected socket).
    let (sent, _, _) = unsafe {
        sendmmsg_all(fd, &mut hdrs[..n], |errno| match errno {
            libc::EINTR => OnError::Retry,
            // Nobody listens yet; RootlessKit ignores this until the timeout.
            libc::ECONNREFUSED => OnError::Skip,
            _ => {
                dropped += 1;
                OnError::Skip
            }
        })
    };
    (sent, dropped)
}

impl Worker {
    pub(crate) fn udp_add(
        &mut self,
        id: u64,
        fd: OwnedFd,
        target: SocketAddr,
        stats: Arc<Counters>,
    ) {
        grow_buffers(fd.as_fd());
        let k = self.udps.insert(UdpPort {
            id,
            fd,
            target,
            stats,
            flows: HashMap::new(),
            last_read: Instant::now(),
            napped: false,
            nap_off_until: None,
        });
        let ok = match self.udps.get_mut(k) {
            Some(p) => self
                .poller
                .add(p.fd.as_fd(), token(T_UDP, k), Interest::READ)
                .is_ok(),
            None => false,
        };
        if !ok {
            self.udps.remove(k);
        }
    }

    pub(crate) fn udp_remove(&mut self, id: u64) {
        for k in self.udps.keys() {
            if self.udps.get_mut(k).map(|p| p.id) != Some(id) {
                continue;
            }
            let Some(p) = self.udps.remove(k) else {
                continue;
            };
            self.poller.delete(p.fd.as_fd(), token(T_UDP, k));
            for (_, fk) in p.flows {
                if let Some(f) = self.flows.remove(fk) {
                    if let Some(fd) = f.fd.as_ref() {
                        self.poller.delete(fd.as_fd(), token(T_FLOW, fk));
                    }
                    p.stats.active.fetch_sub(1, Ordering::Relaxed);
                }
            }
        }
    }

    fn udp_close_flow(&mut self, fk: Key) {
        let Some(f) = self.flows.remove(fk) else {
            return;
        };
        if let Some(fd) = f.fd.as_ref() {
            self.poller.delete(fd.as_fd(), token(T_FLOW, fk));
        }
        if let Some(p) = self.udps.get_mut(f.port) {
            if p.flows.get(&f.client) == Some(&fk) {
                p.flows.remove(&f.client);
            }
            p.stats.active.fetch_sub(1, Ordering::Relaxed);
        }
    }

    pub(crate) fn udp_on_port(&mut self, pk: Key) {
        if self.udp.bufs.is_empty() {
            self.udp.bufs = vec![0u8; SLOTS * STRIDE];
        }
        let mut bufs = std::mem::take(&mut self.udp.bufs);
        let mut got = std::mem::take(&mut self.udp.got);
        let mut total = 0usize;
        for _ in 0..4 {
            let raw = match self.udps.get_mut(pk) {
                Some(p) => match recv_batch(p.fd.as_fd(), &mut bufs, &mut got) {
                    Ok(raw) => raw,
                    Err(_) => break,
                },
                None => break,
            };
            let n = got.len();
            total += raw;
            let now = Instant::now();
            let mut i = 0;
            while i < n {
                // A run of datagrams from one client with an open flow: one sendmmsg.
                let from = got[i].from;
                let mut j = i + 1;
                while j < n && got[j].from == from {
                    j += 1;
                }
                if j - i > 1 && self.udp_send_run(pk, from, &mut bufs, &got, i..j, now) {
                    i = j;
                    continue;
                }
                for d in &got[i..j] {
                    let at = d.slot * STRIDE;
                    self.udp_datagram(pk, d.from, &bufs[at..at + d.len], now);
                }
                i = j;
            }
            if raw < SLOTS {
                break;
            }
        }
        self.udp.bufs = bufs;
        self.udp.got = got;
        if let Some(p) = self.udps.get_mut(pk) {
            let now = Instant::now();
            if p.napped && total <= 1 {
                p.nap_off_until = Some(now + NAP_COOLDOWN);
            }
            p.napped = false;
            if p.nap_off_until.is_some_and(|t| now < t) {
                p.last_read = now;
                return;
            }
            p.nap_off_until = None;
            if let Some(nap) = coalesce_nap(total, now.duration_since(p.last_read)) {
                self.udp.nap = Some(self.udp.nap.map_or(nap, |n| n.min(nap)));
                p.napped = true;
            }
            p.last_read = now;
        }
    }

    /// Datagrams `range` of `got` (all from `from`) on the client's open flow; false if the
    /// flow is not open (the caller then takes the per-datagram path).
    fn udp_send_run(
        &mut self,
        pk: Key,
        from: SocketAddr,
        bufs: &mut [u8],
        got: &[Dgram],
        range: std::ops::Range<usize>,
        now: Instant,
    ) -> bool {
        let Some(p) = self.udps.get_mut(pk) else {
            return false;
        };
        let Some(&fk) = p.flows.get(&from) else {
            return false;
        };
        let Some(f) = self.flows.get_mut(fk) else {
            return false;
        };
        let Some(fd) = f.fd.as_ref() else {
            return false;
        };
        f.last = now;
        let mut slots = [(0usize, 0usize); SLOTS];
        let mut n = 0;
        for (slot, d) in slots.iter_mut().zip(&got[range]) {
            *slot = (d.slot, d.len);
            n += 1;
        }
        let (sent, dropped) = send_connected(fd.as_fd(), bufs, &slots[..n]);
        p.stats.bytes_in.fetch_add(sent as u64, Ordering::Relaxed);
        if dropped > 0 {
            p.stats.errors.fetch_add(dropped, Ordering::Relaxed);
        }
        true
    }

    fn udp_datagram(&mut self, pk: Key, from: SocketAddr, data: &[u8], now: Instant) {
        let max = self.shared.cfg.udp_max_flows;
        let Some(p) = self.udps.get_mut(pk) else {
            return;
        };
        let stats = p.stats.clone();
        if let Some(&fk) = p.flows.get(&from) {
            let Some(f) = self.flows.get_mut(fk) else {
                return;
            };
            f.last = now;
            match f.fd.as_ref() {
                Some(fd) => match sys::send(fd.as_fd(), data) {
                    Ok(n) => {
                        stats.bytes_in.fetch_add(n as u64, Ordering::Relaxed);
                    }
                    Err(e) if sys::errno(&e) == libc::ECONNREFUSED => {
                        // Nobody listens yet; RootlessKit ignores this until the timeout.
                    }
                    Err(_) => stats.err(),
                },
                None if f.queue.len() < QUEUE_MAX => f.queue.push(data.to_vec()),
                None => stats.err(),
            }
            return;
        }
        if p.flows.len() >= max {
            stats.err();
            return;
        }
        let fk = self.flows.insert(UdpFlow {
            port: pk,
            client: from,
            fd: None,
            queue: vec![data.to_vec()],
            last: now,
            created: now,
        });
        p.flows.insert(from, fk);
        stats.total.fetch_add(1, Ordering::Relaxed);
        stats.active.fetch_add(1, Ordering::Relaxed);
        self.udp_try_open(fk);
    }

    fn udp_try_open(&mut self, fk: Key) {
        let Some(f) = self.flows.get_mut(fk) else {
            return;
        };
        let Some(p) = self.udps.get_mut(f.port) else {
            return;
        };
        let target = p.target;
        let stats = p.stats.clone();
        let kind = SockKind::for_target(false, target.is_ipv6(), false);
        let pools = self.shared.pools.clone();
        let Some(s) = pools.take(kind) else {
            if !pools.is_closed() && pools.enabled(kind) {
                self.udp.pending.push(fk);
            } else {
                stats.err();
                self.udp_close_flow(fk);
            }
            return;
        };
        grow_buffers(s.as_fd());
        if sys::connect(s.as_fd(), &target).is_err() {
            stats.err();
            self.udp_close_flow(fk);
            return;
        }
        if self
            .poller
            .add(s.as_fd(), token(T_FLOW, fk), Interest::READ)
            .is_err()
        {
            stats.err();
            self.udp_close_flow(fk);
            return;
        }
        let queue = std::mem::take(&mut f.queue);
        for d in &queue {
            match sys::send(s.as_fd(), d) {
                Ok(n) => {
                    stats.bytes_in.fetch_add(n as u64, Ordering::Relaxed);
                }
                Err(e) if sys::errno(&e) == libc::ECONNREFUSED => {}
                Err(_) => stats.err(),
            }
        }
        f.fd = Some(s);
    }

    pub(crate) fn udp_retry_pending(&mut self) {
        let pending = std::mem::take(&mut self.udp.pending);
        for fk in pending {
            self.udp_try_open(fk);
        }
    }

    /// Replies: `recvmmsg` from the flow socket, one `sendmmsg` back to the client.
    pub(crate) fn udp_on_flow(&mut self, fk: Key, _r: Ready) {
        if self.udp.bufs.is_empty() {
            self.udp.bufs = vec![0u8; SLOTS * STRIDE];
        }
        let mut bufs = std::mem::take(&mut self.udp.bufs);
        let mut got = std::mem::take(&mut self.udp.got);
        for _ in 0..4 {
            let Some(f) = self.flows.get_mut(fk) else {
                break;
            };
            let Some(fd) = f.fd.as_ref() else { break };
            let Some(p) = self.udps.get_mut(f.port) else {
                break;
            };
            let raw = match recv_batch(fd.as_fd(), &mut bufs, &mut got) {
                Ok(raw) => raw,
                // Nobody listens in the namespace (ICMP): ignored, as RootlessKit does.
                Err(e) if matches!(sys::errno(&e), libc::ECONNREFUSED | libc::EINTR) => continue,
                Err(_) => break,
            };
            if raw == 0 {
                break;
            }
            f.last = Instant::now();
            let mut slots = [(0usize, 0usize); SLOTS];
            for (s, d) in slots.iter_mut().zip(&got) {
                *s = (d.slot, d.len);
            }
            match send_batch(p.fd.as_fd(), &mut bufs, &slots[..got.len()], &f.client) {
                Ok(bytes) => {
                    p.stats.bytes_out.fetch_add(bytes as u64, Ordering::Relaxed);
                }
                Err(_) => p.stats.err(),
            }
            if raw < SLOTS {
                break;
            }
        }
        self.udp.bufs = bufs;
        self.udp.got = got;
    }

    pub(crate) fn udp_tick(&mut self, now: Instant) {
        if now.duration_since(self.udp.last_sweep) < Duration::from_secs(1) {
            return;
        }
        self.udp.last_sweep = now;
        let idle = self.shared.cfg.udp_idle_timeout;
        let mut dead = Vec::new();
        for fk in self.flows.keys() {
            if let Some(f) = self.flows.get_mut(fk) {
                let expired = now.duration_since(f.last) > idle
                    || (f.fd.is_none() && now.duration_since(f.created) > SOCK_WAIT_TIMEOUT);
                if expired {
                    dead.push(fk);
                }
            }
        }
        for fk in dead {
            self.udp.pending.retain(|k| *k != fk);
            self.udp_close_flow(fk);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;

    /// Naps only under sustained load (≥ one datagram per `HOT_GAP`), sized to gather a
    /// batch at the measured arrival rate, capped at `NAP_MAX`.
    #[test]
    fn coalesce_nap_sizes_the_pause_to_the_arrival_rate() {
        let us = Duration::from_micros;
        assert_eq!(coalesce_nap(0, us(10)), None, "nothing read");
        assert_eq!(coalesce_nap(SLOTS, us(10)), None, "a full batch");
        assert_eq!(
            coalesce_nap(1, us(250)),
            None,
            "slower than one per HOT_GAP"
        );
        assert_eq!(
            coalesce_nap(4, us(900)),
            None,
            "slower than one per HOT_GAP"
        );
        // 16 datagrams in 24 µs: 16 more arrive in 24 µs.
        assert_eq!(coalesce_nap(16, us(24)), Some(us(24)));
        assert_eq!(coalesce_nap(1, us(20)), Some(NAP_MAX), "capped");
        assert_eq!(coalesce_nap(4, us(700)), Some(NAP_MAX), "capped");
    }

    /// GSO batches keep datagram boundaries: equal-sized runs, a shorter last one, and mixed
    /// sizes all arrive as the datagrams that were sent.
    #[test]
    fn send_connected_keeps_datagram_boundaries() {
        let rx = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let tx = UdpSocket::bind("127.0.0.1:0").expect("bind");
        tx.connect(rx.local_addr().expect("addr")).expect("connect");
        let mut bufs = vec![0u8; SLOTS * STRIDE];
        let lens = [1400, 1400, 1400, 900, 1400, 1400, 20, 3000, 3000];
        for (i, &l) in lens.iter().enumerate() {
            bufs[i * STRIDE..i * STRIDE + l].fill(i as u8 + 1);
        }
        let slots: Vec<(usize, usize)> = lens.iter().copied().enumerate().collect();
        let (sent, dropped) = send_connected(tx.as_fd(), &mut bufs, &slots);
        assert_eq!(sent, lens.iter().sum::<usize>());
        assert_eq!(dropped, 0);
        assert!(
            GSO_OK.load(Ordering::Relaxed),
            "UDP_SEGMENT works on loopback"
        );
        rx.set_read_timeout(Some(Duration::from_secs(2)))
            .expect("timeout");
        let mut buf = [0u8; 65536];
        for (i, &l) in lens.iter().enumerate() {
            let n = rx.recv(&mut buf).expect("recv");
            assert_eq!(n, l, "datagram {i}");
            assert!(buf[..n].iter().all(|&b| b == i as u8 + 1), "datagram {i}");
        }
    }
}
