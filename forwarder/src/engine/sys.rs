//! Thin syscall helpers used by the engine and the channel: socket options, socket addresses,
//! splice(2), pipes and read/write on `BorrowedFd`s. Everything returns `io::Result`; nothing
//! panics. Raw `libc` lives here so the rest of the crate stays on safe types.

use std::io;
use std::mem::{size_of, MaybeUninit};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

/// `-1` → `Err(last_os_error)`, else the value.
fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

fn cvt_size(r: libc::ssize_t) -> io::Result<usize> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r as usize)
    }
}

pub(crate) fn errno(e: &io::Error) -> i32 {
    e.raw_os_error().unwrap_or(0)
}

pub(crate) fn setsockopt_int(
    fd: BorrowedFd<'_>,
    level: libc::c_int,
    name: libc::c_int,
    val: libc::c_int,
) -> io::Result<()> {
    // SAFETY: `val` is a live c_int and the length passed matches its size; the fd is borrowed
    // and therefore open for the duration of the call.
    cvt(unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (&val as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    })
    .map(|_| ())
}

pub(crate) fn getsockopt_int(
    fd: BorrowedFd<'_>,
    level: libc::c_int,
    name: libc::c_int,
) -> io::Result<libc::c_int> {
    let mut val: libc::c_int = 0;
    let mut len = size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `val`/`len` are valid for writes of the advertised size; fd is borrowed (open).
    cvt(unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (&mut val as *mut libc::c_int).cast(),
            &mut len,
        )
    })?;
    Ok(val)
}

pub(crate) fn getsockopt_u64(
    fd: BorrowedFd<'_>,
    level: libc::c_int,
    name: libc::c_int,
) -> io::Result<u64> {
    let mut val: u64 = 0;
    let mut len = size_of::<u64>() as libc::socklen_t;
    // SAFETY: `val`/`len` are valid for writes of the advertised size; fd is borrowed (open).
    cvt(unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (&mut val as *mut u64).cast(),
            &mut len,
        )
    })?;
    Ok(val)
}

/// `SO_LINGER {1, 0}`: the next close sends RST instead of FIN.
pub(crate) fn set_linger_zero(fd: BorrowedFd<'_>) {
    let l = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: `l` is a valid linger struct of the passed size; fd is borrowed (open). Failure is
    // harmless (the peer sees FIN instead of RST), so the result is ignored.
    unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&l as *const libc::linger).cast(),
            size_of::<libc::linger>() as libc::socklen_t,
        );
    }
}

/// `SO_ERROR` (pending socket error), 0 if none.
pub(crate) fn take_socket_error(fd: BorrowedFd<'_>) -> i32 {
    getsockopt_int(fd, libc::SOL_SOCKET, libc::SO_ERROR).unwrap_or(libc::EIO)
}

pub(crate) fn socket(domain: libc::c_int, ty: libc::c_int) -> io::Result<OwnedFd> {
    // SAFETY: plain syscall; on success the returned fd is new and owned by nobody else.
    let fd =
        cvt(unsafe { libc::socket(domain, ty | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC, 0) })?;
    // SAFETY: `fd` was just returned by socket(2) and is not owned elsewhere.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

pub(crate) fn to_sockaddr(addr: &SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: sockaddr_storage is plain old data; all-zero is a valid value.
    let mut ss: libc::sockaddr_storage = unsafe { MaybeUninit::zeroed().assume_init() };
    match addr {
        SocketAddr::V4(a) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(a.ip().octets()),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is larger than and suitably aligned for sockaddr_in.
            unsafe { std::ptr::write((&mut ss as *mut libc::sockaddr_storage).cast(), sin) };
            (ss, size_of::<libc::sockaddr_in>() as libc::socklen_t)
        }
        SocketAddr::V6(a) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: a.flowinfo(),
                sin6_addr: libc::in6_addr {
                    s6_addr: a.ip().octets(),
                },
                sin6_scope_id: a.scope_id(),
            };
            // SAFETY: sockaddr_storage is larger than and suitably aligned for sockaddr_in6.
            unsafe { std::ptr::write((&mut ss as *mut libc::sockaddr_storage).cast(), sin6) };
            (ss, size_of::<libc::sockaddr_in6>() as libc::socklen_t)
        }
    }
}

pub(crate) fn from_sockaddr(ss: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match libc::c_int::from(ss.ss_family) {
        libc::AF_INET => {
            // SAFETY: family says this storage holds a sockaddr_in; storage is large enough.
            let sin: libc::sockaddr_in =
                unsafe { std::ptr::read((ss as *const libc::sockaddr_storage).cast()) };
            Some(SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::from(sin.sin_addr.s_addr.to_ne_bytes()),
                u16::from_be(sin.sin_port),
            )))
        }
        libc::AF_INET6 => {
            // SAFETY: family says this storage holds a sockaddr_in6; storage is large enough.
            let sin6: libc::sockaddr_in6 =
                unsafe { std::ptr::read((ss as *const libc::sockaddr_storage).cast()) };
            Some(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(sin6.sin6_addr.s6_addr),
                u16::from_be(sin6.sin6_port),
                sin6.sin6_flowinfo,
                sin6.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

/// v4-mapped IPv6 (`::ffff:a.b.c.d`) → plain IPv4; anything else unchanged.
pub(crate) fn unmap(addr: SocketAddr) -> SocketAddr {
    if let SocketAddr::V6(a) = addr {
        if let Some(v4) = a.ip().to_ipv4_mapped() {
            return SocketAddr::new(IpAddr::V4(v4), a.port());
        }
    }
    addr
}

pub(crate) fn bind(fd: BorrowedFd<'_>, addr: &SocketAddr) -> io::Result<()> {
    let (ss, len) = to_sockaddr(addr);
    // SAFETY: `ss` holds a valid sockaddr of length `len`; fd is borrowed (open).
    cvt(unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&ss as *const libc::sockaddr_storage).cast(),
            len,
        )
    })
    .map(|_| ())
}

pub(crate) fn connect(fd: BorrowedFd<'_>, addr: &SocketAddr) -> io::Result<()> {
    let (ss, len) = to_sockaddr(addr);
    // SAFETY: `ss` holds a valid sockaddr of length `len`; fd is borrowed (open).
    cvt(unsafe {
        libc::connect(
            fd.as_raw_fd(),
            (&ss as *const libc::sockaddr_storage).cast(),
            len,
        )
    })
    .map(|_| ())
}

pub(crate) fn listen(fd: BorrowedFd<'_>, backlog: i32) -> io::Result<()> {
    // SAFETY: plain syscall on a borrowed (open) fd.
    cvt(unsafe { libc::listen(fd.as_raw_fd(), backlog) }).map(|_| ())
}

/// `accept4(NONBLOCK|CLOEXEC)` returning the peer address.
pub(crate) fn accept(fd: BorrowedFd<'_>) -> io::Result<(OwnedFd, Option<SocketAddr>)> {
    // SAFETY: sockaddr_storage is plain old data; all-zero is valid.
    let mut ss: libc::sockaddr_storage = unsafe { MaybeUninit::zeroed().assume_init() };
    let mut len = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: `ss`/`len` are valid for writes; fd is borrowed (open).
    let nfd = cvt(unsafe {
        libc::accept4(
            fd.as_raw_fd(),
            (&mut ss as *mut libc::sockaddr_storage).cast(),
            &mut len,
            libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
        )
    })?;
    // SAFETY: accept4 returned a new fd that nobody else owns.
    let owned = unsafe { OwnedFd::from_raw_fd(nfd) };
    Ok((owned, from_sockaddr(&ss)))
}

pub(crate) fn shutdown_write(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: plain syscall on a borrowed (open) fd.
    cvt(unsafe { libc::shutdown(fd.as_raw_fd(), libc::SHUT_WR) }).map(|_| ())
}

pub(crate) fn shutdown_both(fd: BorrowedFd<'_>) {
    // SAFETY: plain syscall on a borrowed (open) fd; errors (not connected) are irrelevant.
    unsafe { libc::shutdown(fd.as_raw_fd(), libc::SHUT_RDWR) };
}

pub(crate) fn read(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: `buf` is valid for writes of `buf.len()` bytes; fd is borrowed (open).
    cvt_size(unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) })
}

/// `send(MSG_NOSIGNAL)`: a closed peer gives EPIPE instead of SIGPIPE.
pub(crate) fn send(fd: BorrowedFd<'_>, buf: &[u8]) -> io::Result<usize> {
    send_flags(fd, buf, 0)
}

/// `send` with extra flags (`MSG_MORE`: the caller sends a FIN right after, which the kernel
/// then carries in the same segment as these bytes).
pub(crate) fn send_flags(fd: BorrowedFd<'_>, buf: &[u8], flags: i32) -> io::Result<usize> {
    // SAFETY: `buf` is valid for reads of `buf.len()` bytes; fd is borrowed (open).
    cvt_size(unsafe {
        libc::send(
            fd.as_raw_fd(),
            buf.as_ptr().cast(),
            buf.len(),
            libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT | flags,
        )
    })
}

/// Transmit bytes held back by `MSG_MORE` now (setting `TCP_NODELAY` pushes pending frames).
pub(crate) fn push(fd: BorrowedFd<'_>) {
    let _ = setsockopt_int(fd, libc::IPPROTO_TCP, libc::TCP_NODELAY, 1);
}

/// splice(2) with no offsets (both ends are sockets or pipes).
pub(crate) fn splice(
    fd_in: BorrowedFd<'_>,
    fd_out: BorrowedFd<'_>,
    len: usize,
    flags: libc::c_uint,
) -> io::Result<usize> {
    // SAFETY: null offsets are valid for pipes/sockets; both fds are borrowed (open).
    cvt_size(unsafe {
        libc::splice(
            fd_in.as_raw_fd(),
            std::ptr::null_mut(),
            fd_out.as_raw_fd(),
            std::ptr::null_mut(),
            len,
            flags,
        )
    })
}

/// Non-blocking, close-on-exec pipe: (read end, write end).
pub(crate) fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds: [RawFd; 2] = [-1, -1];
    // SAFETY: `fds` is valid for writes of two ints.
    cvt(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) })?;
    // SAFETY: pipe2 succeeded, both fds are new and owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

pub(crate) fn pipe_size(fd: BorrowedFd<'_>) -> io::Result<usize> {
    // SAFETY: F_GETPIPE_SZ takes no argument; fd is borrowed (open).
    cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETPIPE_SZ) }).map(|v| v as usize)
}

pub(crate) fn set_pipe_size(fd: BorrowedFd<'_>, size: usize) -> io::Result<usize> {
    let size =
        libc::c_int::try_from(size).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: F_SETPIPE_SZ takes an int argument; fd is borrowed (open).
    cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETPIPE_SZ, size) }).map(|v| v as usize)
}

pub(crate) fn eventfd() -> io::Result<OwnedFd> {
    // SAFETY: plain syscall; returns a new fd owned by nobody else.
    let fd = cvt(unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) })?;
    // SAFETY: eventfd returned a new fd owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

pub(crate) fn eventfd_signal(fd: BorrowedFd<'_>) {
    let one: u64 = 1;
    // SAFETY: writes 8 bytes from a live u64; fd borrowed (open). EAGAIN (counter saturated)
    // still leaves the eventfd readable, so the result is irrelevant.
    unsafe { libc::write(fd.as_raw_fd(), (&one as *const u64).cast(), 8) };
}

pub(crate) fn eventfd_drain(fd: BorrowedFd<'_>) {
    let mut v: u64 = 0;
    // SAFETY: reads 8 bytes into a live u64; fd borrowed (open).
    unsafe { libc::read(fd.as_raw_fd(), (&mut v as *mut u64).cast(), 8) };
}

/// Raise RLIMIT_NOFILE's soft limit to the hard limit.
pub(crate) fn raise_nofile() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        if soft < hard {
            let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
        }
    }
}

/// Go's rendering of an errno (`syscall.Errno.Error()`): the C message with a lower-case initial.
pub(crate) fn go_errno_text(errno: i32) -> String {
    let s = nix::errno::Errno::from_raw(errno).desc().to_string();
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_lowercase().collect::<String>() + c.as_str(),
        None => s,
    }
}

pub(crate) fn read_proc_int(path: &str) -> Option<i64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// splice(2) has no MSG_NOSIGNAL: writing into a socket whose peer is gone would raise SIGPIPE.
/// Ignore it process-wide (as Go's runtime does for sockets); EPIPE is handled as a reset.
pub(crate) fn ignore_sigpipe() {
    use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
    let act = SigAction::new(SigHandler::SigIgn, SaFlags::empty(), SigSet::empty());
    // SAFETY: installing SIG_IGN runs no handler code, so no async-signal-safety concerns.
    let _ = unsafe { sigaction(Signal::SIGPIPE, &act) };
}

/// Congestion control of a TCP socket (`TCP_CONGESTION`), e.g. `b"bbr"`.
fn congestion(fd: BorrowedFd<'_>) -> Option<[u8; 16]> {
    let mut name = [0u8; 16];
    let mut len = name.len() as libc::socklen_t;
    // SAFETY: `name`/`len` are valid for writes of the advertised size; fd is borrowed (open).
    let r = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_CONGESTION,
            name.as_mut_ptr().cast(),
            &mut len,
        )
    };
    (r == 0).then_some(name)
}

fn set_congestion(fd: BorrowedFd<'_>, name: &[u8]) -> bool {
    // SAFETY: `name` is a live byte slice of the advertised length; fd is borrowed (open).
    unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_CONGESTION,
            name.as_ptr().cast(),
            name.len() as libc::socklen_t,
        ) == 0
    }
}

/// Local (loopback / namespace-internal) TCP socket: if its congestion control is BBR, switch
/// it to cubic (or reno, always permitted). BBR needs pacing, and without the `fq` qdisc the
/// kernel paces with an hrtimer per burst: pure CPU overhead on a link that never drops.
/// `cache` remembers the per-namespace outcome (0 unknown, 1 switch to cubic, 2 switch to reno,
/// 3 leave alone) so the common case costs one setsockopt (or none).
///
/// Returns true if the socket now uses a non-pacing congestion control set by us.
pub(crate) fn unpace_local(fd: BorrowedFd<'_>, cache: &std::sync::atomic::AtomicU8) -> bool {
    use std::sync::atomic::Ordering;
    match cache.load(Ordering::Relaxed) {
        1 if set_congestion(fd, b"cubic") => return true,
        2 if set_congestion(fd, b"reno") => return true,
        3 => return false,
        _ => {}
    }
    let verdict = match congestion(fd) {
        Some(n) if n.starts_with(b"bbr") => {
            if set_congestion(fd, b"cubic") {
                1
            } else if set_congestion(fd, b"reno") {
                2
            } else {
                3
            }
        }
        _ => 3,
    };
    cache.store(verdict, Ordering::Relaxed);
    verdict != 3
}
