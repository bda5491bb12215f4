//! Host-side listeners with Go's `net.Listen`/`net.ListenUDP` semantics and error texts, and the
//! child target address rules of RootlessKit's builtin driver (§4.1 item 4).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::fd::{AsFd, OwnedFd};

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

/// Open the host listener for `spec`. Errors are RootlessKit's texts.
pub(crate) fn bind_listener(
    spec: &PortSpec,
    argv0_is_rootlesskit: bool,
) -> Result<(OwnedFd, Proto), String> {
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
    let ty = match proto {
        Proto::Tcp => libc::SOCK_STREAM,
        Proto::Udp => libc::SOCK_DGRAM,
    };
    let s = sys::socket(domain, ty).map_err(|e| op_err("socket", e))?;
    if domain == libc::AF_INET6 {
        sys::setsockopt_int(
            s.as_fd(),
            libc::IPPROTO_IPV6,
            libc::IPV6_V6ONLY,
            i32::from(v6only),
        )
        .map_err(|e| op_err("setsockopt", e))?;
    }
    if proto == Proto::Tcp {
        sys::setsockopt_int(s.as_fd(), libc::SOL_SOCKET, libc::SO_REUSEADDR, 1)
            .map_err(|e| op_err("setsockopt", e))?;
        // Accepted sockets inherit TCP_NODELAY from the listener: one call per port instead of
        // one per connection.
        let _ = sys::setsockopt_int(s.as_fd(), libc::IPPROTO_TCP, libc::TCP_NODELAY, 1);
    }
    sys::bind(s.as_fd(), &addr).map_err(|e| op_err("bind", e))?;
    if proto == Proto::Tcp {
        sys::listen(s.as_fd(), listen_backlog()).map_err(|e| op_err("listen", e))?;
    }
    Ok((s, proto))
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
