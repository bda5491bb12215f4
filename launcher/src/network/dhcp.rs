//! A minimal DHCPv4 client for `--net=lxc-user-nic`: DISCOVER -> OFFER -> REQUEST -> ACK over
//! an `AF_PACKET`/`SOCK_DGRAM` socket bound to the device (the device has no address yet, so
//! the IPv4/UDP headers are built here and the replies are asked to be broadcast), retransmitting
//! every 2 s up to a deadline. [`renew_loop`] repeats the exchange at 0.9 x the lease time.
//!
//! Message building and parsing are pure functions, unit-tested without a socket.

use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use super::NetError;

const CLIENT_PORT: u16 = 68;
const SERVER_PORT: u16 = 67;
const MAGIC: [u8; 4] = [99, 130, 83, 99];
const ETH_P_IP: u16 = 0x0800;

pub const DISCOVER: u8 = 1;
pub const OFFER: u8 = 2;
pub const REQUEST: u8 = 3;
pub const ACK: u8 = 5;
pub const NAK: u8 = 6;

/// What the server handed out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub ip: Ipv4Addr,
    pub prefix: u8,
    pub router: Option<Ipv4Addr>,
    pub dns: Vec<Ipv4Addr>,
    pub lease_secs: u32,
    pub server: Option<Ipv4Addr>,
}

/// A parsed server reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub msg_type: u8,
    pub xid: u32,
    pub lease: Lease,
}

/// The BOOTP/DHCP payload of a client message.
pub fn build_message(
    msg_type: u8,
    xid: u32,
    mac: [u8; 6],
    requested: Option<Ipv4Addr>,
    server: Option<Ipv4Addr>,
) -> Vec<u8> {
    let mut m = vec![0u8; 236];
    m[0] = 1; // BOOTREQUEST
    m[1] = 1; // ethernet
    m[2] = 6;
    m[4..8].copy_from_slice(&xid.to_be_bytes());
    m[10..12].copy_from_slice(&0x8000u16.to_be_bytes()); // broadcast replies
    m[28..34].copy_from_slice(&mac);
    m.extend_from_slice(&MAGIC);
    m.extend_from_slice(&[53, 1, msg_type]);
    let mut cid = vec![61, 7, 1];
    cid.extend_from_slice(&mac);
    m.extend_from_slice(&cid);
    if let Some(ip) = requested {
        m.extend_from_slice(&[50, 4]);
        m.extend_from_slice(&ip.octets());
    }
    if let Some(s) = server {
        m.extend_from_slice(&[54, 4]);
        m.extend_from_slice(&s.octets());
    }
    m.extend_from_slice(&[55, 5, 1, 3, 6, 51, 54]);
    m.push(255);
    if m.len() < 300 {
        m.resize(300, 0);
    }
    m
}

fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    for c in data.chunks(2) {
        let w = if c.len() == 2 {
            u16::from_be_bytes([c[0], c[1]])
        } else {
            u16::from_be_bytes([c[0], 0])
        };
        sum += u32::from(w);
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// IPv4 + UDP headers (0.0.0.0:68 -> 255.255.255.255:67) around `payload`.
pub fn wrap_ip_udp(payload: &[u8]) -> Vec<u8> {
    let udp_len = 8 + payload.len();
    let total = 20 + udp_len;
    let mut p = vec![0u8; 20];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    p[8] = 64; // TTL
    p[9] = 17; // UDP
    p[16..20].copy_from_slice(&[255, 255, 255, 255]);
    let c = checksum(&p);
    p[10..12].copy_from_slice(&c.to_be_bytes());
    p.extend_from_slice(&CLIENT_PORT.to_be_bytes());
    p.extend_from_slice(&SERVER_PORT.to_be_bytes());
    p.extend_from_slice(&(udp_len as u16).to_be_bytes());
    p.extend_from_slice(&[0, 0]); // UDP checksum optional over IPv4
    p.extend_from_slice(payload);
    p
}

/// Parse an IPv4 packet; `Some` for a DHCP server reply to port 68.
pub fn parse_packet(pkt: &[u8]) -> Option<Reply> {
    if pkt.len() < 20 || pkt[0] >> 4 != 4 || pkt[9] != 17 {
        return None;
    }
    let ihl = usize::from(pkt[0] & 0xf) * 4;
    let udp = pkt.get(ihl..)?;
    if udp.len() < 8 || u16::from_be_bytes([udp[2], udp[3]]) != CLIENT_PORT {
        return None;
    }
    parse_message(&udp[8..])
}

/// Parse a BOOTP/DHCP payload from a server.
pub fn parse_message(m: &[u8]) -> Option<Reply> {
    if m.len() < 240 || m[0] != 2 || m[236..240] != MAGIC {
        return None;
    }
    let xid = u32::from_be_bytes([m[4], m[5], m[6], m[7]]);
    let yiaddr = Ipv4Addr::new(m[16], m[17], m[18], m[19]);
    let mut lease = Lease {
        ip: yiaddr,
        prefix: 24,
        router: None,
        dns: Vec::new(),
        lease_secs: 3600,
        server: None,
    };
    let mut msg_type = 0;
    let mut i = 240;
    let ip_at = |b: &[u8], o: usize| Ipv4Addr::new(b[o], b[o + 1], b[o + 2], b[o + 3]);
    while i < m.len() {
        let code = m[i];
        if code == 255 {
            break;
        }
        if code == 0 {
            i += 1;
            continue;
        }
        let len = usize::from(*m.get(i + 1)?);
        let v = m.get(i + 2..i + 2 + len)?;
        match code {
            53 if len == 1 => msg_type = v[0],
            1 if len == 4 => lease.prefix = u32::from(ip_at(v, 0)).count_ones() as u8,
            3 if len >= 4 => lease.router = Some(ip_at(v, 0)),
            6 => lease.dns = v.chunks_exact(4).map(|c| ip_at(c, 0)).collect(),
            51 if len == 4 => lease.lease_secs = u32::from_be_bytes([v[0], v[1], v[2], v[3]]),
            54 if len == 4 => lease.server = Some(ip_at(v, 0)),
            _ => {}
        }
        i += 2 + len;
    }
    Some(Reply {
        msg_type,
        xid,
        lease,
    })
}

/// A packet socket bound to one device.
struct PacketSock {
    fd: OwnedFd,
    ifindex: i32,
    mac: [u8; 6],
}

impl PacketSock {
    fn open(dev: &str, ifindex: i32) -> Result<Self, NetError> {
        // SAFETY: plain socket(2) call; the result is checked and owned right away.
        let raw = unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
                i32::from(ETH_P_IP.to_be()),
            )
        };
        if raw < 0 {
            return Err(NetError::io(
                format!("opening a packet socket for DHCP on {dev}"),
                std::io::Error::last_os_error(),
            ));
        }
        // SAFETY: raw is a fresh, valid descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: sockaddr_ll is plain old data; all-zero is a valid value.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = ETH_P_IP.to_be();
        sll.sll_ifindex = ifindex;
        let len = std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
        // SAFETY: sll is a valid sockaddr_ll of the length passed.
        let r = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                &sll as *const libc::sockaddr_ll as *const libc::sockaddr,
                len,
            )
        };
        if r < 0 {
            return Err(NetError::io(
                format!("binding the DHCP packet socket to {dev}"),
                std::io::Error::last_os_error(),
            ));
        }
        let mut got = sll;
        let mut glen = len;
        // SAFETY: got/glen are valid for writing a sockaddr_ll.
        let r = unsafe {
            libc::getsockname(
                fd.as_raw_fd(),
                &mut got as *mut libc::sockaddr_ll as *mut libc::sockaddr,
                &mut glen,
            )
        };
        if r < 0 || got.sll_halen != 6 {
            return Err(NetError::Msg(format!(
                "could not read the MAC address of {dev} (getsockname on a packet socket)"
            )));
        }
        let mut mac = [0u8; 6];
        mac.copy_from_slice(&got.sll_addr[..6]);
        Ok(PacketSock { fd, ifindex, mac })
    }

    fn send(&self, pkt: &[u8]) -> Result<(), NetError> {
        // SAFETY: sockaddr_ll is plain old data; all-zero is a valid value.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = ETH_P_IP.to_be();
        sll.sll_ifindex = self.ifindex;
        sll.sll_halen = 6;
        sll.sll_addr[..6].copy_from_slice(&[0xff; 6]);
        // SAFETY: pkt and sll are valid for the lengths passed.
        let r = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                pkt.as_ptr().cast(),
                pkt.len(),
                0,
                &sll as *const libc::sockaddr_ll as *const libc::sockaddr,
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if r < 0 {
            return Err(NetError::io(
                "sending a DHCP packet",
                std::io::Error::last_os_error(),
            ));
        }
        Ok(())
    }

    /// Wait for a reply of `want` type with `xid` until `until`.
    fn recv(&self, xid: u32, want: &[u8], until: Instant) -> Result<Option<Reply>, NetError> {
        use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
        use std::os::fd::AsFd;
        let mut buf = vec![0u8; 4096];
        loop {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            let ms = u16::try_from(left.as_millis()).unwrap_or(u16::MAX);
            let mut fds = [PollFd::new(self.fd.as_fd(), PollFlags::POLLIN)];
            match poll(&mut fds, PollTimeout::from(ms)) {
                Ok(0) => return Ok(None),
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(NetError::sys("waiting for a DHCP reply", e)),
                Ok(_) => {}
            }
            let n = match nix::unistd::read(self.fd.as_raw_fd(), &mut buf) {
                Ok(n) => n,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(NetError::sys("reading a DHCP reply", e)),
            };
            if let Some(r) = parse_packet(&buf[..n]) {
                if r.xid == xid && want.contains(&r.msg_type) {
                    return Ok(Some(r));
                }
            }
        }
    }
}

fn random_u32() -> u32 {
    let mut b = [0u8; 4];
    if std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut b))
        .is_err()
    {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        return t ^ std::process::id();
    }
    u32::from_ne_bytes(b)
}

/// Run DISCOVER/OFFER/REQUEST/ACK on `dev` (already up) in the calling thread's netns.
pub fn exchange(dev: &str, ifindex: i32, timeout: Duration) -> Result<Lease, NetError> {
    let s = PacketSock::open(dev, ifindex)?;
    let deadline = Instant::now() + timeout;
    let xid = random_u32();
    let offer = loop {
        s.send(&wrap_ip_udp(&build_message(
            DISCOVER, xid, s.mac, None, None,
        )))?;
        let until = (Instant::now() + Duration::from_secs(2)).min(deadline);
        if let Some(r) = s.recv(xid, &[OFFER], until)? {
            break r;
        }
        if Instant::now() >= deadline {
            return Err(NetError::Msg(format!(
                "could not exchange DHCP with {dev}: no DHCPOFFER within {}s (is a DHCP server running on the bridge?)",
                timeout.as_secs()
            )));
        }
    };
    loop {
        s.send(&wrap_ip_udp(&build_message(
            REQUEST,
            xid,
            s.mac,
            Some(offer.lease.ip),
            offer.lease.server,
        )))?;
        let until = (Instant::now() + Duration::from_secs(2)).min(deadline);
        match s.recv(xid, &[ACK, NAK], until)? {
            Some(r) if r.msg_type == ACK => {
                let mut l = r.lease;
                if l.ip.is_unspecified() {
                    return Err(NetError::Msg("DHCP: got zero YourIPAddr".into()));
                }
                if l.router.is_none() {
                    l.router = offer.lease.router;
                }
                if l.dns.is_empty() {
                    l.dns = offer.lease.dns.clone();
                }
                return Ok(l);
            }
            Some(_) => {
                return Err(NetError::Msg(format!(
                    "could not exchange DHCP with {dev}: got DHCPNAK for {}",
                    offer.lease.ip
                )))
            }
            None if Instant::now() >= deadline => {
                return Err(NetError::Msg(format!(
                    "could not exchange DHCP with {dev}: did not get DHCPACK"
                )))
            }
            None => {}
        }
    }
}

/// Keep the lease: sleep 0.9 x lease, exchange again (in `netns` if given). Runs forever on its
/// own thread; a changed address is logged as an error.
pub fn renew_loop(dev: String, ifindex: i32, first: Lease, netns: Option<std::path::PathBuf>) {
    let spawn = std::thread::Builder::new()
        .name("dhcp-renew".into())
        .spawn(move || {
            if let Some(p) = &netns {
                if let Err(e) = super::child::enter_netns(p) {
                    crate::error!("DHCP renewal disabled: {e}");
                    return;
                }
            }
            let mut lease = first.lease_secs;
            loop {
                if lease == 0 {
                    return;
                }
                std::thread::sleep(Duration::from_secs_f64(f64::from(lease) * 0.9));
                match exchange(&dev, ifindex, Duration::from_secs(30)) {
                    Ok(l) => {
                        if l.ip != first.ip {
                            crate::error!(
                                "DHCP renewal on {dev}: expected to retain {}, got {}",
                                first.ip,
                                l.ip
                            );
                        }
                        lease = l.lease_secs;
                    }
                    Err(e) => {
                        crate::error!("DHCP renewal on {dev}: {e}");
                        lease = 60;
                    }
                }
            }
        });
    if let Err(e) = spawn {
        crate::error!("starting the DHCP renewal thread: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server_reply(msg_type: u8, xid: u32) -> Vec<u8> {
        let mut m = vec![0u8; 236];
        m[0] = 2;
        m[4..8].copy_from_slice(&xid.to_be_bytes());
        m[16..20].copy_from_slice(&[10, 0, 3, 57]);
        m.extend_from_slice(&MAGIC);
        m.extend_from_slice(&[53, 1, msg_type]);
        m.extend_from_slice(&[1, 4, 255, 255, 255, 0]);
        m.extend_from_slice(&[3, 4, 10, 0, 3, 1]);
        m.extend_from_slice(&[6, 8, 10, 0, 3, 1, 1, 1, 1, 1]);
        m.extend_from_slice(&[51, 4, 0, 0, 14, 16]);
        m.extend_from_slice(&[54, 4, 10, 0, 3, 1]);
        m.push(255);
        m
    }

    #[test]
    fn discover_encoding() {
        let mac = [2, 0, 0, 0, 0, 9];
        let m = build_message(DISCOVER, 0x01020304, mac, None, None);
        assert_eq!(m.len(), 300);
        assert_eq!(&m[0..3], &[1, 1, 6]);
        assert_eq!(&m[4..8], &[1, 2, 3, 4]);
        assert_eq!(&m[10..12], &[0x80, 0]);
        assert_eq!(&m[28..34], &mac);
        assert_eq!(&m[236..240], &MAGIC);
        assert_eq!(&m[240..243], &[53, 1, DISCOVER]);
        let r = build_message(
            REQUEST,
            7,
            mac,
            Some(Ipv4Addr::new(10, 0, 3, 57)),
            Some(Ipv4Addr::new(10, 0, 3, 1)),
        );
        let opts = &r[240..];
        assert!(opts.windows(6).any(|w| w == [50, 4, 10, 0, 3, 57]));
        assert!(opts.windows(6).any(|w| w == [54, 4, 10, 0, 3, 1]));
    }

    #[test]
    fn ip_udp_wrapping() {
        let p = wrap_ip_udp(&[1, 2, 3]);
        assert_eq!(p.len(), 31);
        assert_eq!(p[0], 0x45);
        assert_eq!(u16::from_be_bytes([p[2], p[3]]), 31);
        assert_eq!(checksum(&p[..20]), 0, "header checksum must verify");
        assert_eq!(&p[20..24], &[0, 68, 0, 67]);
        assert_eq!(u16::from_be_bytes([p[24], p[25]]), 11);
    }

    #[test]
    fn reply_parsing() {
        let m = server_reply(ACK, 99);
        let mut pkt = wrap_ip_udp(&m);
        // turn it into a server -> client packet (67 -> 68)
        pkt[20..24].copy_from_slice(&[0, 67, 0, 68]);
        let r = parse_packet(&pkt).unwrap();
        assert_eq!(r.msg_type, ACK);
        assert_eq!(r.xid, 99);
        assert_eq!(r.lease.ip, Ipv4Addr::new(10, 0, 3, 57));
        assert_eq!(r.lease.prefix, 24);
        assert_eq!(r.lease.router, Some(Ipv4Addr::new(10, 0, 3, 1)));
        assert_eq!(
            r.lease.dns,
            vec![Ipv4Addr::new(10, 0, 3, 1), Ipv4Addr::new(1, 1, 1, 1)]
        );
        assert_eq!(r.lease.lease_secs, 3600);
        assert_eq!(r.lease.server, Some(Ipv4Addr::new(10, 0, 3, 1)));
        // client -> server packets are ignored
        assert!(parse_packet(&wrap_ip_udp(&m)).is_none());
    }
}
