//! Host-side listeners with Go's `net.Listen`/`net.ListenUDP` semantics and error texts, and the
//! child target address rules of RootlessKit's builtin driver (§4.1 item 4).
//!
//! # Spare sockets
//!
//! Of the five system calls that open a TCP listener (`socket`, two `setsockopt`, `bind`,
//! `listen`), only the last two depend on the port. `socket(2)` alone costs 2.7-3.4 us here
//! (inode, file and socket allocation with memcg accounting), more than `bind` and `listen`
//! together. [`Spares`] keeps one socket per kind (family, type, `IPV6_V6ONLY`) already made
//! with its options set: [`bind_listener`] takes it when there is one, and
//! [`Spares::refill`] makes the next one for each kind taken since the last refill. The API
//! server calls that after it has written its response, while the client is still reading it,
//! so a burst of adds pays only `bind` + `listen` on its critical path. A kind is only kept
//! once it was used, so at most a handful of unbound sockets are ever open, and they are
//! closed with the forwarder.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Mutex;

use super::sys;
use crate::spec::PortSpec;

/// Protocol of a published port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Proto {
    Tcp,
    Udp,
}

/// `[host]:port` as Go's `JoinHostPort`.
fn join_host_port(host: &str, port: i64) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// What a listener socket is before `bind`: family, type and `IPV6_V6ONLY`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Kind {
    domain: libc::c_int,
    ty: libc::c_int,
    v6only: bool,
}

/// A new socket of `kind` with the options every listener of ours gets; errors name the call.
fn new_socket(kind: Kind) -> Result<OwnedFd, (&'static str, std::io::Error)> {
    let s = sys::socket(kind.domain, kind.ty).map_err(|e| ("socket", e))?;
    if kind.domain == libc::AF_INET6 {
        sys::setsockopt_int(
            s.as_fd(),
            libc::IPPROTO_IPV6,
            libc::IPV6_V6ONLY,
            i32::from(kind.v6only),
        )
        .map_err(|e| ("setsockopt", e))?;
    }
    if kind.ty == libc::SOCK_STREAM {
        sys::setsockopt_int(s.as_fd(), libc::SOL_SOCKET, libc::SO_REUSEADDR, 1)
            .map_err(|e| ("setsockopt", e))?;
        // Accepted sockets inherit TCP_NODELAY from the listener: one call per port instead of
        // one per connection.
        let _ = sys::setsockopt_int(s.as_fd(), libc::IPPROTO_TCP, libc::TCP_NODELAY, 1);
    }
    Ok(s)
}

/// Unbound listener sockets made ahead of time, one per kind in use (module docs).
#[derive(Default)]
pub(crate) struct Spares {
    /// Each kind used so far, with its spare when there is one.
    slots: Mutex<Vec<(Kind, Option<OwnedFd>)>>,
}

impl Spares {
    /// The spare of `kind`, if any; either way the kind is marked as in use.
    fn take(&self, kind: Kind) -> Option<OwnedFd> {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        match slots.iter_mut().find(|(k, _)| *k == kind) {
            Some((_, fd)) => fd.take(),
            None => {
                slots.push((kind, None));
                None
            }
        }
    }

    /// Make a spare for every kind in use that has none. Failures (EMFILE, ...) are left for
    /// the next `bind_listener` to report.
    pub(crate) fn refill(&self) {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        for (kind, fd) in slots.iter_mut().filter(|(_, fd)| fd.is_none()) {
            *fd = new_socket(*kind).ok();
        }
    }

    /// Whether every kind in use has its spare.
    #[cfg(test)]
    fn full(&self) -> bool {
        let slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        slots.iter().all(|(_, fd)| fd.is_some())
    }
}

/// A bound (and for TCP listening) host socket.
pub(crate) struct Listening {
    pub fd: OwnedFd,
    pub proto: Proto,
    /// Bound to a loopback address (so its worker need not ask with `getsockname`).
    pub loopback: bool,
}

/// Open the host listener for `spec`, with a socket from `spares` when one of the right kind is
/// there. Errors are RootlessKit's texts.
pub(crate) fn bind_listener(
    spec: &PortSpec,
    argv0_is_rootlesskit: bool,
    spares: Option<&Spares>,
) -> Result<Listening, String> {
    let net = spec.proto.as_str();
    let (proto, suffix) = match net {
        "tcp" => (Proto::Tcp, None),
        "tcp4" => (Proto::Tcp, Some('4')),
        "tcp6" => (Proto::Tcp, Some('6')),
        "udp" => (Proto::Udp, None),
        "udp4" => (Proto::Udp, Some('4')),
        "udp6" => (Proto::Udp, Some('6')),
        p if p.starts_with("sctp") => return Err("unsupported port protocol sctp".into()),
        p => return Err(format!("unknown proto: {p:?}")),
    };
    let port = spec.parent_port;
    let Ok(port16) = u16::try_from(port) else {
        return Err(format!("invalid ParentPort: {port}"));
    };
    let host = spec.parent_ip.as_str();
    let ip: Option<IpAddr> = if host.is_empty() {
        None
    } else {
        match host.parse::<IpAddr>() {
            Ok(ip) => Some(ip),
            Err(_) => return Err(format!("invalid ParentIP: {host:?}")),
        }
    };
    // Go's address filter for the "4"/"6" networks.
    if let Some(ip) = ip {
        let is4 = match ip {
            IpAddr::V4(_) => true,
            IpAddr::V6(v6) => v6.to_ipv4_mapped().is_some(),
        };
        let bad = match suffix {
            Some('4') => !is4,
            Some('6') => is4,
            _ => false,
        };
        if bad {
            return Err(format!(
                "listen {net}: address {host}: no suitable address found"
            ));
        }
    }
    // Go's favoriteAddrFamily.
    let wildcard = ip.map(|i| i.is_unspecified()).unwrap_or(true);
    let (domain, v6only, addr): (libc::c_int, bool, SocketAddr) = match suffix {
        Some('4') => {
            let a = match ip {
                Some(IpAddr::V4(v4)) => v4,
                Some(IpAddr::V6(v6)) => v6.to_ipv4_mapped().unwrap_or(Ipv4Addr::UNSPECIFIED),
                None => Ipv4Addr::UNSPECIFIED,
            };
            (libc::AF_INET, false, SocketAddr::new(IpAddr::V4(a), port16))
        }
        Some(_) => {
            let a = match ip {
                Some(IpAddr::V6(v6)) => v6,
                _ => std::net::Ipv6Addr::UNSPECIFIED,
            };
            (libc::AF_INET6, true, SocketAddr::new(IpAddr::V6(a), port16))
        }
        None if wildcard => (
            libc::AF_INET6,
            false,
            SocketAddr::new(IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED), port16),
        ),
        None => match ip {
            Some(IpAddr::V4(v4)) => (
                libc::AF_INET,
                false,
                SocketAddr::new(IpAddr::V4(v4), port16),
            ),
            Some(IpAddr::V6(v6)) => (
                libc::AF_INET6,
                false,
                SocketAddr::new(IpAddr::V6(v6), port16),
            ),
            None => (
                libc::AF_INET,
                false,
                SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port16),
            ),
        },
    };
    let op_err = |call: &str, e: std::io::Error| -> String {
        // Go's OpError address: the resolved address, empty host for an empty parentIP.
        let shown = join_host_port(&ip.map(|i| i.to_string()).unwrap_or_default(), port);
        let errno = sys::errno(&e);
        let base = format!(
            "listen {net} {shown}: {call}: {}",
            sys::go_errno_text(errno)
        );
        if errno == libc::EACCES {
            let start =
                sys::read_proc_int("/proc/sys/net/ipv4/ip_unprivileged_port_start").unwrap_or(1024);
            if port < start {
                let cap = if argv0_is_rootlesskit {
                    "or set CAP_NET_BIND_SERVICE on rootlesskit binary, "
                } else {
                    ""
                };
                return format!(
                    "cannot expose privileged port {port}, you can add 'net.ipv4.ip_unprivileged_port_start={port}' to /etc/sysctl.conf (currently {start}), {cap}or choose a larger port number (>= {start}): {base}"
                );
            }
        }
        base
    };
    let kind = Kind {
        domain,
        ty: match proto {
            Proto::Tcp => libc::SOCK_STREAM,
            Proto::Udp => libc::SOCK_DGRAM,
        },
        v6only,
    };
    let s = match spares.and_then(|sp| sp.take(kind)) {
        Some(s) => s,
        None => new_socket(kind).map_err(|(call, e)| op_err(call, e))?,
    };
    sys::bind(s.as_fd(), &addr).map_err(|e| op_err("bind", e))?;
    if proto == Proto::Tcp {
        sys::listen(s.as_fd(), listen_backlog()).map_err(|e| op_err("listen", e))?;
    }
    let loopback = sys::unmap(addr).ip().is_loopback();
    Ok(Listening {
        fd: s,
        proto,
        loopback,
    })
}

/// `net.core.somaxconn`, read once like Go's `maxListenerBacklog` (5 syscalls per add saved).
fn listen_backlog() -> i32 {
    static BACKLOG: std::sync::OnceLock<i32> = std::sync::OnceLock::new();
    *BACKLOG.get_or_init(|| {
        sys::read_proc_int("/proc/sys/net/core/somaxconn")
            .and_then(|v| i32::try_from(v).ok())
            .unwrap_or(4096)
    })
}

/// Target inside the namespace (spec §4.1 item 4).
pub(crate) fn child_target(
    spec: &PortSpec,
    host_gateway_ip: Option<IpAddr>,
) -> Result<SocketAddr, String> {
    let port = u16::try_from(spec.child_port)
        .map_err(|_| format!("invalid ChildPort: {}", spec.child_port))?;
    let ip: IpAddr = if !spec.child_ip.is_empty() {
        spec.child_ip
            .parse()
            .map_err(|_| format!("invalid ChildIP: {:?}", spec.child_ip))?
    } else if !spec.parent_ip.is_empty() && spec.parent_ip != "0.0.0.0" {
        match spec.parent_ip.parse::<IpAddr>() {
            Ok(p) if Some(p) == host_gateway_ip => IpAddr::V4(Ipv4Addr::LOCALHOST),
            Ok(p) => p,
            Err(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
        }
    } else {
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    };
    let ip = match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        v4 => v4,
    };
    Ok(SocketAddr::new(ip, port))
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsRawFd;

    use super::*;

    fn spec(proto: &str, ip: &str, port: i64) -> PortSpec {
        PortSpec {
            proto: proto.into(),
            parent_ip: ip.into(),
            parent_port: port,
            child_port: 80,
            child_ip: String::new(),
        }
    }

    fn opt(fd: &OwnedFd, level: libc::c_int, name: libc::c_int) -> libc::c_int {
        sys::getsockopt_int(fd.as_fd(), level, name).expect("getsockopt")
    }

    /// The raw fd of the spare kept for `kind`, if any.
    fn spare_fd(sp: &Spares, kind: Kind) -> Option<i32> {
        let slots = sp.slots.lock().unwrap();
        slots
            .iter()
            .find(|(k, _)| *k == kind)
            .and_then(|(_, fd)| fd.as_ref().map(|f| f.as_raw_fd()))
    }

    #[test]
    fn spare_socket_becomes_the_next_listener_with_its_options() {
        let sp = Spares::default();
        let tcp4 = Kind {
            domain: libc::AF_INET,
            ty: libc::SOCK_STREAM,
            v6only: false,
        };
        // Nothing kept for a kind never used.
        sp.refill();
        assert!(sp.full());
        assert_eq!(spare_fd(&sp, tcp4), None);

        let first = bind_listener(&spec("tcp", "127.0.0.1", 0), false, Some(&sp)).expect("bind");
        assert!(first.loopback);
        assert!(!sp.full(), "the kind is in use now, with no spare yet");
        sp.refill();
        let want = spare_fd(&sp, tcp4).expect("a spare after refill");
        let second = bind_listener(&spec("tcp", "127.0.0.1", 0), false, Some(&sp)).expect("bind");
        assert_eq!(second.fd.as_raw_fd(), want, "the spare was not used");
        assert_eq!(spare_fd(&sp, tcp4), None, "a spare is used once");
        for l in [&first, &second] {
            assert_eq!(opt(&l.fd, libc::SOL_SOCKET, libc::SO_REUSEADDR), 1);
            assert_eq!(opt(&l.fd, libc::IPPROTO_TCP, libc::TCP_NODELAY), 1);
            assert_eq!(opt(&l.fd, libc::SOL_SOCKET, libc::SO_ACCEPTCONN), 1);
        }
        // It really listens: a connection completes against the spare-made socket.
        let l = std::net::TcpListener::from(second.fd);
        let addr = l.local_addr().expect("addr");
        std::net::TcpStream::connect(addr).expect("connect to the spare-made listener");
        l.accept().expect("accept");
    }

    #[test]
    fn spares_are_kept_per_family_type_and_v6only() {
        let sp = Spares::default();
        // One add of each kind marks them; the refill makes one spare each.
        for (proto, ip) in [("tcp6", "::1"), ("tcp", ""), ("udp4", "127.0.0.1")] {
            bind_listener(&spec(proto, ip, 0), false, Some(&sp)).expect("bind");
        }
        sp.refill();
        assert!(sp.full());
        let v6only = bind_listener(&spec("tcp6", "::1", 0), false, Some(&sp)).expect("bind");
        assert_eq!(opt(&v6only.fd, libc::IPPROTO_IPV6, libc::IPV6_V6ONLY), 1);
        let dual = bind_listener(&spec("tcp", "", 0), false, Some(&sp)).expect("bind");
        assert_eq!(opt(&dual.fd, libc::IPPROTO_IPV6, libc::IPV6_V6ONLY), 0);
        assert!(!dual.loopback);
        let udp = bind_listener(&spec("udp4", "127.0.0.1", 0), false, Some(&sp)).expect("bind");
        assert_eq!(udp.proto, Proto::Udp);
        assert_eq!(
            opt(&udp.fd, libc::SOL_SOCKET, libc::SO_TYPE),
            libc::SOCK_DGRAM
        );
        assert!(!sp.full(), "all three spares were used");
    }

    #[test]
    fn bind_error_is_the_same_with_a_spare() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = i64::from(taken.local_addr().expect("addr").port());
        let sp = Spares::default();
        let plain = bind_listener(&spec("tcp", "127.0.0.1", port), false, None)
            .err()
            .expect("port in use");
        // The failed attempt marked the kind; the next one gets (and loses) a spare.
        let _ = bind_listener(&spec("tcp", "127.0.0.1", port), false, Some(&sp));
        sp.refill();
        assert!(sp.full());
        let spared = bind_listener(&spec("tcp", "127.0.0.1", port), false, Some(&sp))
            .err()
            .expect("port in use");
        assert_eq!(plain, spared);
        assert_eq!(
            plain,
            format!("listen tcp 127.0.0.1:{port}: bind: address already in use")
        );
        assert!(!sp.full(), "the spare went with the failed bind");
    }
}
