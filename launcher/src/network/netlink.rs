//! A small hand-written rtnetlink client (`NETLINK_ROUTE`), enough for what the child needs:
//! link lookup, link up, MTU, IPv4/IPv6 addresses, default routes, the `local default dev lo
//! table 100` routes and the `fwmark 100 lookup 100` rules of the builtin port driver's
//! source-IP preservation. Every request is sent with `NLM_F_ACK` and the kernel's answer is
//! turned into an error naming the operation and the errno.
//!
//! Messages are built by [`Msg`] (header, fixed part, attributes, 4-byte aligned) so that the
//! encoding can be unit-tested without a socket.

use std::net::IpAddr;
use std::os::fd::{AsRawFd, OwnedFd};

use nix::errno::Errno;
use nix::sys::socket::{
    bind, recv, sendto, socket, AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol,
    SockType,
};

use super::NetError;

const NLMSG_HDRLEN: usize = 16;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;

const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_EXCL: u16 = 0x200;
const NLM_F_CREATE: u16 = 0x400;

const RTM_NEWLINK: u16 = 16;
const RTM_GETLINK: u16 = 18;
const RTM_NEWADDR: u16 = 20;
const RTM_NEWROUTE: u16 = 24;
const RTM_NEWRULE: u16 = 32;

const IFLA_ADDRESS: u16 = 1;
const IFLA_IFNAME: u16 = 3;
const IFLA_MTU: u16 = 4;
const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
const RTA_DST: u16 = 1;
const RTA_OIF: u16 = 4;
const RTA_GATEWAY: u16 = 5;
const RTA_TABLE: u16 = 15;
const FRA_PRIORITY: u16 = 6;
const FRA_FWMARK: u16 = 10;
const FRA_TABLE: u16 = 15;

const IFF_UP: u32 = 0x1;
const RT_TABLE_MAIN: u8 = 254;
const RTPROT_BOOT: u8 = 3;
const RT_SCOPE_UNIVERSE: u8 = 0;
const RT_SCOPE_HOST: u8 = 254;
const RTN_UNICAST: u8 = 1;
const RTN_LOCAL: u8 = 2;
const FR_ACT_TO_TBL: u8 = 1;

const AF_INET: u8 = libc::AF_INET as u8;
const AF_INET6: u8 = libc::AF_INET6 as u8;

/// Table and mark used by the builtin port driver's transparent (source-IP preserving) dial.
pub const TRANSPARENT_TABLE: u32 = 100;

/// One netlink request under construction.
#[derive(Debug, Clone)]
pub(crate) struct Msg {
    buf: Vec<u8>,
}

fn align4(n: usize) -> usize {
    (n + 3) & !3
}

impl Msg {
    fn new(ty: u16, flags: u16) -> Self {
        let mut buf = vec![0u8; NLMSG_HDRLEN];
        buf[4..6].copy_from_slice(&ty.to_ne_bytes());
        buf[6..8].copy_from_slice(&(flags | NLM_F_REQUEST).to_ne_bytes());
        Msg { buf }
    }

    fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
        let aligned = align4(self.buf.len());
        self.buf.resize(aligned, 0);
    }

    fn attr(&mut self, ty: u16, data: &[u8]) {
        let len = u16::try_from(4 + data.len()).unwrap_or(u16::MAX);
        let mut hdr = [0u8; 4];
        hdr[0..2].copy_from_slice(&len.to_ne_bytes());
        hdr[2..4].copy_from_slice(&ty.to_ne_bytes());
        self.buf.extend_from_slice(&hdr);
        self.push(data);
    }

    fn attr_u32(&mut self, ty: u16, v: u32) {
        self.attr(ty, &v.to_ne_bytes());
    }

    /// Finish: fill length and sequence number.
    fn finish(mut self, seq: u32) -> Vec<u8> {
        let len = u32::try_from(self.buf.len()).unwrap_or(u32::MAX);
        self.buf[0..4].copy_from_slice(&len.to_ne_bytes());
        self.buf[8..12].copy_from_slice(&seq.to_ne_bytes());
        self.buf
    }
}

fn ifinfomsg(index: i32, flags: u32, change: u32) -> [u8; 16] {
    let mut b = [0u8; 16];
    // family (u8), pad (u8), type (u16) stay 0
    b[4..8].copy_from_slice(&index.to_ne_bytes());
    b[8..12].copy_from_slice(&flags.to_ne_bytes());
    b[12..16].copy_from_slice(&change.to_ne_bytes());
    b
}

fn ip_bytes(ip: &IpAddr) -> Vec<u8> {
    match ip {
        IpAddr::V4(v4) => v4.octets().to_vec(),
        IpAddr::V6(v6) => v6.octets().to_vec(),
    }
}

fn family_of(ip: &IpAddr) -> u8 {
    if ip.is_ipv4() {
        AF_INET
    } else {
        AF_INET6
    }
}

pub(crate) fn msg_get_link(name: &str) -> Msg {
    let mut m = Msg::new(RTM_GETLINK, NLM_F_ACK);
    m.push(&ifinfomsg(0, 0, 0));
    let mut n = name.as_bytes().to_vec();
    n.push(0);
    m.attr(IFLA_IFNAME, &n);
    m
}

pub(crate) fn msg_link_up(index: i32) -> Msg {
    let mut m = Msg::new(RTM_NEWLINK, NLM_F_ACK);
    m.push(&ifinfomsg(index, IFF_UP, IFF_UP));
    m
}

pub(crate) fn msg_link_mtu(index: i32, mtu: u32) -> Msg {
    let mut m = Msg::new(RTM_NEWLINK, NLM_F_ACK);
    m.push(&ifinfomsg(index, 0, 0));
    m.attr_u32(IFLA_MTU, mtu);
    m
}

pub(crate) fn msg_link_mac(index: i32, mac: [u8; 6]) -> Msg {
    let mut m = Msg::new(RTM_NEWLINK, NLM_F_ACK);
    m.push(&ifinfomsg(index, 0, 0));
    m.attr(IFLA_ADDRESS, &mac);
    m
}

pub(crate) fn msg_add_addr(index: i32, ip: &IpAddr, prefix: u8) -> Msg {
    let mut m = Msg::new(RTM_NEWADDR, NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL);
    let mut ifa = [0u8; 8];
    ifa[0] = family_of(ip);
    ifa[1] = prefix;
    ifa[3] = RT_SCOPE_UNIVERSE;
    ifa[4..8].copy_from_slice(&index.to_ne_bytes());
    m.push(&ifa);
    let b = ip_bytes(ip);
    m.attr(IFA_LOCAL, &b);
    m.attr(IFA_ADDRESS, &b);
    m
}

fn rtmsg(family: u8, table: u8, scope: u8, ty: u8) -> [u8; 12] {
    // family, dst_len, src_len, tos, table, protocol, scope, type, flags(u32)
    [family, 0, 0, 0, table, RTPROT_BOOT, scope, ty, 0, 0, 0, 0]
}

pub(crate) fn msg_default_route(index: i32, gw: &IpAddr) -> Msg {
    let mut m = Msg::new(RTM_NEWROUTE, NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL);
    m.push(&rtmsg(
        family_of(gw),
        RT_TABLE_MAIN,
        RT_SCOPE_UNIVERSE,
        RTN_UNICAST,
    ));
    m.attr(RTA_GATEWAY, &ip_bytes(gw));
    m.attr_u32(RTA_OIF, u32::try_from(index).unwrap_or(0));
    m
}

pub(crate) fn msg_local_default_route(lo_index: i32, v6: bool, table: u32) -> Msg {
    let family = if v6 { AF_INET6 } else { AF_INET };
    let mut m = Msg::new(RTM_NEWROUTE, NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL);
    let t8 = u8::try_from(table).unwrap_or(0);
    m.push(&rtmsg(family, t8, RT_SCOPE_HOST, RTN_LOCAL));
    let zero: &[u8] = if v6 { &[0u8; 16] } else { &[0u8; 4] };
    m.attr(RTA_DST, zero);
    m.attr_u32(RTA_TABLE, table);
    m.attr_u32(RTA_OIF, u32::try_from(lo_index).unwrap_or(0));
    m
}

pub(crate) fn msg_fwmark_rule(v6: bool, mark: u32, table: u32, priority: u32) -> Msg {
    let family = if v6 { AF_INET6 } else { AF_INET };
    let mut m = Msg::new(RTM_NEWRULE, NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL);
    let t8 = u8::try_from(table).unwrap_or(0);
    // fib_rule_hdr: family, dst_len, src_len, tos, table, res1, res2, action, flags(u32)
    m.push(&[family, 0, 0, 0, t8, 0, 0, FR_ACT_TO_TBL, 0, 0, 0, 0]);
    m.attr_u32(FRA_FWMARK, mark);
    m.attr_u32(FRA_PRIORITY, priority);
    m.attr_u32(FRA_TABLE, table);
    m
}

/// Parse one answer buffer: `Ok(Some(index))` for a RTM_NEWLINK reply, `Ok(None)` for an ack,
/// `Err(errno)` for a netlink error.
pub(crate) fn parse_reply(buf: &[u8]) -> Result<Option<i32>, Errno> {
    let mut off = 0;
    let mut found = None;
    while off + NLMSG_HDRLEN <= buf.len() {
        let len = u32::from_ne_bytes([buf[off], buf[off + 1], buf[off + 2], buf[off + 3]]) as usize;
        let ty = u16::from_ne_bytes([buf[off + 4], buf[off + 5]]);
        if len < NLMSG_HDRLEN || off + len > buf.len() {
            break;
        }
        let body = &buf[off + NLMSG_HDRLEN..off + len];
        match ty {
            NLMSG_ERROR if body.len() >= 4 => {
                let code = i32::from_ne_bytes([body[0], body[1], body[2], body[3]]);
                if code != 0 {
                    return Err(Errno::from_raw(-code));
                }
                return Ok(found);
            }
            NLMSG_DONE => return Ok(found),
            RTM_NEWLINK if body.len() >= 8 => {
                found = Some(i32::from_ne_bytes([body[4], body[5], body[6], body[7]]));
            }
            _ => {}
        }
        off += align4(len);
    }
    Ok(found)
}

/// An open `NETLINK_ROUTE` socket in the calling thread's network namespace.
pub struct Netlink {
    fd: OwnedFd,
    seq: u32,
}

fn nl_err(what: String, errno: Errno) -> NetError {
    NetError::Netlink { what, errno }
}

impl Netlink {
    pub fn open() -> Result<Self, NetError> {
        let fd = socket(
            AddressFamily::Netlink,
            SockType::Raw,
            SockFlag::SOCK_CLOEXEC,
            SockProtocol::NetlinkRoute,
        )
        .map_err(|e| nl_err("opening a NETLINK_ROUTE socket".into(), e))?;
        bind(fd.as_raw_fd(), &NetlinkAddr::new(0, 0))
            .map_err(|e| nl_err("binding the NETLINK_ROUTE socket".into(), e))?;
        Ok(Netlink { fd, seq: 1 })
    }

    fn request(&mut self, what: &str, m: Msg) -> Result<Option<i32>, NetError> {
        self.seq = self.seq.wrapping_add(1);
        let bytes = m.finish(self.seq);
        sendto(
            self.fd.as_raw_fd(),
            &bytes,
            &NetlinkAddr::new(0, 0),
            MsgFlags::empty(),
        )
        .map_err(|e| nl_err(what.to_string(), e))?;
        let mut buf = vec![0u8; 32768];
        let mut found = None;
        loop {
            let n = loop {
                match recv(self.fd.as_raw_fd(), &mut buf, MsgFlags::empty()) {
                    Err(Errno::EINTR) => continue,
                    r => break r.map_err(|e| nl_err(what.to_string(), e))?,
                }
            };
            // The ack (NLMSG_ERROR with 0) always ends a request sent with NLM_F_ACK.
            let has_end =
                contains_type(&buf[..n], NLMSG_ERROR) || contains_type(&buf[..n], NLMSG_DONE);
            match parse_reply(&buf[..n]) {
                Ok(Some(i)) => found = Some(i),
                Ok(None) => {}
                Err(e) => return Err(nl_err(what.to_string(), e)),
            }
            if has_end {
                return Ok(found);
            }
        }
    }

    /// Interface index of `name`.
    pub fn link_index(&mut self, name: &str) -> Result<i32, NetError> {
        let what = format!("looking up link {name:?}");
        match self.request(&what, msg_get_link(name))? {
            Some(i) => Ok(i),
            None => Err(nl_err(what, Errno::ENODEV)),
        }
    }

    pub fn link_up(&mut self, name: &str) -> Result<(), NetError> {
        let i = self.link_index(name)?;
        self.request(&format!("setting link {name} up"), msg_link_up(i))
            .map(|_| ())
    }

    pub fn set_mtu(&mut self, name: &str, mtu: u32) -> Result<(), NetError> {
        let i = self.link_index(name)?;
        self.request(
            &format!("setting mtu {mtu} on link {name}"),
            msg_link_mtu(i, mtu),
        )
        .map(|_| ())
    }

    /// `ip link set NAME address MAC`.
    pub fn set_mac(&mut self, name: &str, mac: [u8; 6]) -> Result<(), NetError> {
        let i = self.link_index(name)?;
        self.request(
            &format!("setting the MAC address of link {name}"),
            msg_link_mac(i, mac),
        )
        .map(|_| ())
    }

    /// `ip addr add IP/PREFIX dev NAME`; an existing identical address is not an error.
    pub fn add_addr(&mut self, name: &str, ip: &IpAddr, prefix: u8) -> Result<(), NetError> {
        let i = self.link_index(name)?;
        match self.request(
            &format!("adding address {ip}/{prefix} to link {name}"),
            msg_add_addr(i, ip, prefix),
        ) {
            Err(NetError::Netlink {
                errno: Errno::EEXIST,
                ..
            }) => Ok(()),
            r => r.map(|_| ()),
        }
    }

    /// `ip route add default via GW dev NAME`.
    pub fn add_default_route(&mut self, name: &str, gw: &IpAddr) -> Result<(), NetError> {
        let i = self.link_index(name)?;
        self.request(
            &format!("adding default route via {gw} dev {name}"),
            msg_default_route(i, gw),
        )
        .map(|_| ())
    }

    /// `ip [-6] route add local default dev lo table TABLE`; EEXIST is fine.
    pub fn add_local_default_route(&mut self, v6: bool, table: u32) -> Result<(), NetError> {
        let lo = self.link_index("lo")?;
        let what = format!(
            "adding {} route \"local default dev lo table {table}\"",
            if v6 { "IPv6" } else { "IPv4" }
        );
        match self.request(&what, msg_local_default_route(lo, v6, table)) {
            Err(NetError::Netlink {
                errno: Errno::EEXIST,
                ..
            }) => Ok(()),
            r => r.map(|_| ()),
        }
    }

    /// `ip [-6] rule add fwmark MARK lookup TABLE priority PRIO`; EEXIST is fine.
    pub fn add_fwmark_rule(
        &mut self,
        v6: bool,
        mark: u32,
        table: u32,
        priority: u32,
    ) -> Result<(), NetError> {
        let what = format!(
            "adding {} rule \"fwmark {mark} lookup {table} priority {priority}\"",
            if v6 { "IPv6" } else { "IPv4" }
        );
        match self.request(&what, msg_fwmark_rule(v6, mark, table, priority)) {
            Err(NetError::Netlink {
                errno: Errno::EEXIST,
                ..
            }) => Ok(()),
            r => r.map(|_| ()),
        }
    }
}

fn contains_type(buf: &[u8], want: u16) -> bool {
    let mut off = 0;
    while off + NLMSG_HDRLEN <= buf.len() {
        let len = u32::from_ne_bytes([buf[off], buf[off + 1], buf[off + 2], buf[off + 3]]) as usize;
        let ty = u16::from_ne_bytes([buf[off + 4], buf[off + 5]]);
        if ty == want {
            return true;
        }
        if len < NLMSG_HDRLEN {
            return false;
        }
        off += align4(len);
    }
    false
}

/// Write `/proc/sys/net/ipv4/tcp_fwmark_accept` (per network namespace).
pub fn set_tcp_fwmark_accept(on: bool) -> Result<(), NetError> {
    let path = "/proc/sys/net/ipv4/tcp_fwmark_accept";
    std::fs::write(path, if on { "1\n" } else { "0\n" }).map_err(|source| NetError::Io {
        what: format!("writing {path}"),
        source,
    })
}

/// Routing needed by the builtin port driver's source-IP preservation (SO_MARK 100 +
/// IP_TRANSPARENT): `local default dev lo table 100` (v4+v6), `fwmark 100 lookup 100 priority
/// 100` (v4+v6), `net.ipv4.tcp_fwmark_accept=1`. Call it inside the network namespace (root in
/// the user namespace); IPv6 failures (IPv6 disabled) are ignored.
pub fn setup_transparent_routing() -> Result<(), NetError> {
    let mut nl = Netlink::open()?;
    nl.add_local_default_route(false, TRANSPARENT_TABLE)?;
    nl.add_fwmark_rule(
        false,
        TRANSPARENT_TABLE,
        TRANSPARENT_TABLE,
        TRANSPARENT_TABLE,
    )?;
    if let Err(e) = nl
        .add_local_default_route(true, TRANSPARENT_TABLE)
        .and_then(|_| {
            nl.add_fwmark_rule(
                true,
                TRANSPARENT_TABLE,
                TRANSPARENT_TABLE,
                TRANSPARENT_TABLE,
            )
        })
    {
        crate::debug!("ignoring IPv6 transparent routing failure: {e}");
    }
    set_tcp_fwmark_accept(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u16_at(b: &[u8], o: usize) -> u16 {
        u16::from_ne_bytes([b[o], b[o + 1]])
    }
    fn u32_at(b: &[u8], o: usize) -> u32 {
        u32::from_ne_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]])
    }

    #[test]
    fn get_link_encoding() {
        let b = msg_get_link("tap0").finish(7);
        assert_eq!(u32_at(&b, 0) as usize, b.len());
        assert_eq!(u16_at(&b, 4), RTM_GETLINK);
        assert_eq!(u16_at(&b, 6), NLM_F_REQUEST | NLM_F_ACK);
        assert_eq!(u32_at(&b, 8), 7);
        // header 16 + ifinfomsg 16 + attr (4 + "tap0\0" = 9 -> 12)
        assert_eq!(b.len(), 44);
        assert_eq!(u16_at(&b, 32), 9);
        assert_eq!(u16_at(&b, 34), IFLA_IFNAME);
        assert_eq!(&b[36..41], b"tap0\0");
    }

    #[test]
    fn addr_encoding() {
        let ip: IpAddr = "10.0.2.100".parse().unwrap();
        let b = msg_add_addr(3, &ip, 24).finish(1);
        assert_eq!(u16_at(&b, 4), RTM_NEWADDR);
        assert_eq!(b[16], AF_INET);
        assert_eq!(b[17], 24);
        assert_eq!(u32_at(&b, 20), 3);
        assert_eq!(u16_at(&b, 24), 8);
        assert_eq!(u16_at(&b, 26), IFA_LOCAL);
        assert_eq!(&b[28..32], &[10, 0, 2, 100]);
        assert_eq!(u16_at(&b, 34), IFA_ADDRESS);
        assert_eq!(b.len(), 40);
    }

    #[test]
    fn route_and_rule_encoding() {
        let gw: IpAddr = "10.0.2.2".parse().unwrap();
        let b = msg_default_route(2, &gw).finish(1);
        assert_eq!(
            &b[16..24],
            &[AF_INET, 0, 0, 0, RT_TABLE_MAIN, RTPROT_BOOT, 0, RTN_UNICAST]
        );
        assert_eq!(u16_at(&b, 30), RTA_GATEWAY);
        assert_eq!(&b[32..36], &[10, 0, 2, 2]);
        assert_eq!(u16_at(&b, 38), RTA_OIF);
        assert_eq!(u32_at(&b, 40), 2);

        let b = msg_local_default_route(1, true, 100).finish(1);
        assert_eq!(b[16], AF_INET6);
        assert_eq!(b[20], 100);
        assert_eq!(b[22], RT_SCOPE_HOST);
        assert_eq!(b[23], RTN_LOCAL);
        assert_eq!(u16_at(&b, 28), 20);
        assert_eq!(u16_at(&b, 30), RTA_DST);

        let b = msg_fwmark_rule(false, 100, 100, 100).finish(1);
        assert_eq!(u16_at(&b, 4), RTM_NEWRULE);
        assert_eq!(b[23], FR_ACT_TO_TBL);
        assert_eq!(u16_at(&b, 30), FRA_FWMARK);
        assert_eq!(u32_at(&b, 32), 100);
        assert_eq!(u16_at(&b, 38), FRA_PRIORITY);
        assert_eq!(u16_at(&b, 46), FRA_TABLE);
    }

    #[test]
    fn reply_parsing() {
        let mut ack = vec![0u8; 36];
        ack[0..4].copy_from_slice(&36u32.to_ne_bytes());
        ack[4..6].copy_from_slice(&NLMSG_ERROR.to_ne_bytes());
        assert_eq!(parse_reply(&ack), Ok(None));
        ack[16..20].copy_from_slice(&(-libc::EEXIST).to_ne_bytes());
        assert_eq!(parse_reply(&ack), Err(Errno::EEXIST));
    }
}
