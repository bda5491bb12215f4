//! `--net=vpnkit`: VPNKit (moby/vpnkit, not packaged by Debian) is started as
//! `vpnkit --ethernet $STATE/vpnkit-ethernet.sock --mtu N [--host-ip 0.0.0.0]`.
//!
//! Wire protocol on the ethernet socket (unix stream, little endian), as in vpnkit's Go `vmnet`
//! client:
//! 1. both sides send an init message: magic `VMN3T` (5 bytes), version u32 (22), commit
//!    (40 bytes);
//! 2. the client sends an ethernet request: type u8 (1), the VIF UUID as 36 ASCII bytes, a
//!    preferred IPv4 u32 (0 = any);
//! 3. the server answers with a 258-byte block: response type u8 (1 = VIF, else an error:
//!    length u8 + text), MTU u16, max packet size u16, the VIF's MAC (6 bytes), padding;
//! 4. then Ethernet frames, each prefixed by its length as u16.
//!
//! The parent connects once with a random UUID to learn the MAC and, by a DHCP DISCOVER over
//! the VIF, the address VPNKit assigns (192.168.65.x, gateway/DNS 192.168.65.1). The child
//! creates the tap with that MAC, connects again with the same UUID and copies frames between
//! the tap and the socket on two threads. Tested against a VPNKit-compatible peer written for
//! the tests (tests/tests/network.rs), not against vpnkit itself.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::helper::{Helper, Spawn};
use super::{
    driver_info, look_path, NetError, NetworkConfig, NetworkDriver, NetworkDriverInfo, SetupContext,
};
use crate::cli::Options;

pub const MAGIC: &[u8; 5] = b"VMN3T";
pub const VERSION: u32 = 22;
pub const INIT_LEN: usize = 5 + 4 + 40;
pub const REQUEST_LEN: usize = 1 + 36 + 4;
pub const RESPONSE_LEN: usize = 1 + 1 + 256;
pub const GATEWAY: Ipv4Addr = Ipv4Addr::new(192, 168, 65, 1);

const OPAQUE_MAC: &str = "vpnkit.mac";
const OPAQUE_SOCKET: &str = "vpnkit.socket";
const OPAQUE_UUID: &str = "vpnkit.uuid";

/// What the server says about a VIF.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Vif {
    pub mtu: u16,
    pub max_packet_size: u16,
    pub mac: [u8; 6],
}

pub fn init_message() -> [u8; INIT_LEN] {
    let mut m = [0u8; INIT_LEN];
    m[..5].copy_from_slice(MAGIC);
    m[5..9].copy_from_slice(&VERSION.to_le_bytes());
    m[9..].copy_from_slice(b"0123456789012345678901234567890123456789");
    m
}

pub fn ethernet_request(uuid: &str) -> Result<[u8; REQUEST_LEN], NetError> {
    if uuid.len() != 36 {
        return Err(NetError::Msg(format!("invalid VIF uuid {uuid:?}")));
    }
    let mut m = [0u8; REQUEST_LEN];
    m[0] = 1;
    m[1..37].copy_from_slice(uuid.as_bytes());
    Ok(m)
}

pub fn parse_response(b: &[u8; RESPONSE_LEN]) -> Result<Vif, NetError> {
    if b[0] != 1 {
        let len = usize::from(b[1]).min(256);
        return Err(NetError::Msg(format!(
            "vpnkit refused the VIF: {}",
            String::from_utf8_lossy(&b[2..2 + len])
        )));
    }
    let mut mac = [0u8; 6];
    mac.copy_from_slice(&b[5..11]);
    Ok(Vif {
        mtu: u16::from_le_bytes([b[1], b[2]]),
        max_packet_size: u16::from_le_bytes([b[3], b[4]]),
        mac,
    })
}

/// Handshake and VIF request on a connected stream.
pub fn connect_vif(s: &mut UnixStream, uuid: &str) -> Result<Vif, NetError> {
    let io = |what: &str, e: std::io::Error| NetError::io(format!("vpnkit: {what}"), e);
    s.write_all(&init_message())
        .map_err(|e| io("sending the init message", e))?;
    let mut peer = [0u8; INIT_LEN];
    s.read_exact(&mut peer)
        .map_err(|e| io("reading the init message", e))?;
    if &peer[..5] != MAGIC {
        return Err(NetError::Msg(format!(
            "vpnkit: unexpected init magic {:?}",
            String::from_utf8_lossy(&peer[..5])
        )));
    }
    s.write_all(&ethernet_request(uuid)?)
        .map_err(|e| io("sending the ethernet request", e))?;
    let mut resp = [0u8; RESPONSE_LEN];
    s.read_exact(&mut resp)
        .map_err(|e| io("reading the VIF response", e))?;
    parse_response(&resp)
}

pub fn write_frame(w: &mut impl Write, frame: &[u8]) -> std::io::Result<()> {
    let len = u16::try_from(frame.len())
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "frame too large"))?;
    let mut buf = Vec::with_capacity(2 + frame.len());
    buf.extend_from_slice(&len.to_le_bytes());
    buf.extend_from_slice(frame);
    w.write_all(&buf)
}

pub fn read_frame(r: &mut impl Read, buf: &mut Vec<u8>) -> std::io::Result<()> {
    let mut l = [0u8; 2];
    r.read_exact(&mut l)?;
    buf.resize(usize::from(u16::from_le_bytes(l)), 0);
    r.read_exact(buf)
}

fn mac_string(m: &[u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

pub fn parse_mac(s: &str) -> Result<[u8; 6], NetError> {
    let parts: Vec<&str> = s.split(':').collect();
    let mut m = [0u8; 6];
    if parts.len() != 6 {
        return Err(NetError::Msg(format!("invalid MAC address {s:?}")));
    }
    for (i, p) in parts.iter().enumerate() {
        m[i] = u8::from_str_radix(p, 16)
            .map_err(|_| NetError::Msg(format!("invalid MAC address {s:?}")))?;
    }
    Ok(m)
}

fn random_uuid() -> String {
    let mut b = [0u8; 16];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        let _ = f.read_exact(&mut b);
    }
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// DHCP DISCOVER over the VIF; the OFFER's address is the one VPNKit reserved for the UUID.
fn discover_ip(s: &mut UnixStream, mac: [u8; 6], timeout: Duration) -> Result<Ipv4Addr, NetError> {
    use super::dhcp;
    let xid = u32::from_be_bytes([mac[2], mac[3], mac[4], mac[5]]);
    let mut frame = vec![0xff; 6];
    frame.extend_from_slice(&mac);
    frame.extend_from_slice(&[0x08, 0x00]);
    frame.extend_from_slice(&dhcp::wrap_ip_udp(&dhcp::build_message(
        dhcp::DISCOVER,
        xid,
        mac,
        None,
        None,
    )));
    let deadline = Instant::now() + timeout;
    s.set_read_timeout(Some(Duration::from_secs(1)))
        .map_err(|e| NetError::io("vpnkit: setting a read timeout", e))?;
    let mut buf = Vec::new();
    'send: while Instant::now() < deadline {
        write_frame(s, &frame).map_err(|e| NetError::io("vpnkit: sending DHCPDISCOVER", e))?;
        let until = Instant::now() + Duration::from_secs(2);
        while Instant::now() < until {
            match read_frame(s, &mut buf) {
                Ok(()) => {
                    if buf.len() > 14 && buf[12..14] == [0x08, 0x00] {
                        if let Some(r) = dhcp::parse_packet(&buf[14..]) {
                            if r.xid == xid && r.msg_type == dhcp::OFFER {
                                s.set_read_timeout(None).ok();
                                return Ok(r.lease.ip);
                            }
                        }
                    }
                }
                Err(e)
                    if e.kind() == std::io::ErrorKind::WouldBlock
                        || e.kind() == std::io::ErrorKind::TimedOut =>
                {
                    continue 'send
                }
                Err(e) => return Err(NetError::io("vpnkit: reading a frame", e)),
            }
        }
    }
    Err(NetError::Msg(
        "vpnkit: no DHCP offer for the VIF within 10s".into(),
    ))
}

pub(crate) struct Vpnkit {
    binary: PathBuf,
    mtu: u32,
    ifname: String,
    disable_host_loopback: bool,
    helper: Option<Helper>,
    conn: Option<UnixStream>,
    config: Option<NetworkConfig>,
}

impl Vpnkit {
    pub(crate) fn new(opts: &Options, ifname: String) -> Result<Self, NetError> {
        if opts.mtu != 0 && opts.mtu != 1500 {
            crate::warn!("vpnkit is known to have issues with non-1500 MTU (current: {}), see https://github.com/rootless-containers/rootlesskit/issues/6#issuecomment-403531453", opts.mtu);
        }
        Ok(Vpnkit {
            binary: look_path(&opts.vpnkit_binary)?,
            mtu: if opts.mtu == 0 { 1500 } else { opts.mtu },
            ifname,
            disable_host_loopback: opts.disable_host_loopback,
            helper: None,
            conn: None,
            config: None,
        })
    }
}

/// argv after the program name.
pub fn build_args(socket: &Path, mtu: u32, disable_host_loopback: bool) -> Vec<String> {
    let mut v = vec![
        "--ethernet".to_string(),
        socket.display().to_string(),
        "--mtu".into(),
        mtu.to_string(),
    ];
    if disable_host_loopback {
        v.push("--host-ip".into());
        v.push("0.0.0.0".into());
    }
    v
}

impl NetworkDriver for Vpnkit {
    fn setup(&mut self, ctx: &SetupContext) -> Result<NetworkConfig, NetError> {
        let socket = ctx.state_dir.join("vpnkit-ethernet.sock");
        let argv = build_args(&socket, self.mtu, self.disable_host_loopback);
        crate::debug!("executing {} {}", self.binary.display(), argv.join(" "));
        let helper = Spawn {
            name: "vpnkit",
            binary: &self.binary,
            args: &argv,
            fd3: None,
            setns: Vec::new(),
        }
        .spawn()?;
        let helper = self.helper.insert(helper);
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut conn = loop {
            match UnixStream::connect(&socket) {
                Ok(c) => break c,
                Err(e) => {
                    if let Ok(Some(st)) = helper.child.try_wait() {
                        return Err(helper.died(Some(st)));
                    }
                    if Instant::now() >= deadline {
                        return Err(NetError::io(
                            format!(
                                "connecting to {} (vpnkit did not listen within 10s)",
                                socket.display()
                            ),
                            e,
                        ));
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        };
        conn.set_read_timeout(Some(Duration::from_secs(10)))
            .map_err(|e| NetError::io("vpnkit: setting a read timeout", e))?;
        let uuid = random_uuid();
        crate::debug!(
            "connecting to VPNKit vmnet at {} as {uuid}",
            socket.display()
        );
        let vif = connect_vif(&mut conn, &uuid)?;
        let ip = discover_ip(&mut conn, vif.mac, Duration::from_secs(10))?;
        self.conn = Some(conn);
        let mut opaque = std::collections::BTreeMap::new();
        opaque.insert(OPAQUE_MAC.to_string(), mac_string(&vif.mac));
        opaque.insert(OPAQUE_SOCKET.to_string(), socket.display().to_string());
        opaque.insert(OPAQUE_UUID.to_string(), uuid);
        let cfg = NetworkConfig {
            driver: "vpnkit".into(),
            dev: self.ifname.clone(),
            ip: Some(IpAddr::V4(ip)),
            netmask: 24,
            gateway: Some(IpAddr::V4(GATEWAY)),
            dns: vec![IpAddr::V4(GATEWAY)],
            mtu: self.mtu,
            configure_dev: true,
            write_resolv_and_hosts: true,
            opaque,
        };
        self.config = Some(cfg.clone());
        Ok(cfg)
    }

    fn info(&self) -> Option<NetworkDriverInfo> {
        Some(driver_info(self.config.as_ref(), "vpnkit", false))
    }

    fn cleanup(&mut self) -> Result<(), NetError> {
        self.conn = None;
        match self.helper.take() {
            Some(mut h) => h.kill(),
            None => Ok(()),
        }
    }
}

impl Drop for Vpnkit {
    fn drop(&mut self) {
        let _ = self.cleanup();
    }
}

/// Child side: create the tap with VPNKit's MAC (in the detached netns if any), connect the VIF
/// again with the same UUID and start the two frame-copying threads.
pub(crate) fn child_start(cfg: &NetworkConfig, detached: Option<&Path>) -> Result<(), NetError> {
    let get = |k: &str| {
        cfg.opaque
            .get(k)
            .cloned()
            .ok_or_else(|| NetError::Msg(format!("vpnkit: no {k} in the network configuration")))
    };
    let mac = parse_mac(&get(OPAQUE_MAC)?)?;
    let socket = get(OPAQUE_SOCKET)?;
    let uuid = get(OPAQUE_UUID)?;
    let dev = cfg.dev.clone();
    let tap = super::child::in_netns(detached, || {
        let f = super::tap::open_tap(&dev, false)?;
        super::netlink::Netlink::open()?.set_mac(&dev, mac)?;
        Ok(f)
    })?;
    let mut conn = UnixStream::connect(&socket)
        .map_err(|e| NetError::io(format!("vpnkit: connecting to {socket}"), e))?;
    connect_vif(&mut conn, &uuid)?;
    let mut tap_r = tap
        .try_clone()
        .map_err(|e| NetError::io("duplicating the tap fd", e))?;
    let mut tap_w = tap;
    let mut conn_r = conn
        .try_clone()
        .map_err(|e| NetError::io("duplicating the vpnkit socket", e))?;
    let mut conn_w = conn;
    let spawn = |name: &str, f: Box<dyn FnOnce() + Send>| {
        std::thread::Builder::new()
            .name(name.into())
            .spawn(f)
            .map(|_| ())
            .map_err(|e| NetError::io("starting a vpnkit copy thread", e))
    };
    spawn(
        "vpnkit-tap2vif",
        Box::new(move || {
            let mut b = vec![0u8; 65536];
            loop {
                match tap_r.read(&mut b) {
                    Ok(0) => return,
                    Ok(n) => {
                        if let Err(e) = write_frame(&mut conn_w, &b[..n]) {
                            crate::error!("vpnkit: tap2vif: write: {e}");
                            return;
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        crate::error!("vpnkit: tap2vif: read: {e}");
                        return;
                    }
                }
            }
        }),
    )?;
    spawn(
        "vpnkit-vif2tap",
        Box::new(move || {
            let mut b = Vec::new();
            loop {
                if let Err(e) = read_frame(&mut conn_r, &mut b) {
                    if e.kind() != std::io::ErrorKind::UnexpectedEof {
                        crate::error!("vpnkit: vif2tap: read: {e}");
                    }
                    return;
                }
                if let Err(e) = tap_w.write_all(&b) {
                    crate::error!("vpnkit: vif2tap: write: {e}");
                    return;
                }
            }
        }),
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_format() {
        let m = init_message();
        assert_eq!(&m[..5], b"VMN3T");
        assert_eq!(&m[5..9], &[22, 0, 0, 0]);
        let r = ethernet_request("0f7b5a0e-6a4f-4b1e-9b8a-3c2d1e0f9a8b").unwrap();
        assert_eq!(r[0], 1);
        assert_eq!(&r[1..37], b"0f7b5a0e-6a4f-4b1e-9b8a-3c2d1e0f9a8b");
        assert_eq!(&r[37..], &[0, 0, 0, 0]);
        let mut resp = [0u8; RESPONSE_LEN];
        resp[0] = 1;
        resp[1..3].copy_from_slice(&1500u16.to_le_bytes());
        resp[3..5].copy_from_slice(&1550u16.to_le_bytes());
        resp[5..11].copy_from_slice(&[2, 0x50, 0, 0, 0, 3]);
        assert_eq!(
            parse_response(&resp).unwrap(),
            Vif {
                mtu: 1500,
                max_packet_size: 1550,
                mac: [2, 0x50, 0, 0, 0, 3]
            }
        );
        resp[0] = 2;
        resp[1] = 4;
        resp[2..6].copy_from_slice(b"busy");
        assert_eq!(
            parse_response(&resp).unwrap_err().to_string(),
            "vpnkit refused the VIF: busy"
        );
        let mut out = Vec::new();
        write_frame(&mut out, &[9, 8, 7]).unwrap();
        assert_eq!(out, vec![3, 0, 9, 8, 7]);
        let mut b = Vec::new();
        read_frame(&mut &out[..], &mut b).unwrap();
        assert_eq!(b, vec![9, 8, 7]);
        assert_eq!(
            parse_mac("02:50:00:00:00:03").unwrap(),
            [2, 0x50, 0, 0, 0, 3]
        );
        assert_eq!(mac_string(&[2, 0x50, 0, 0, 0, 3]), "02:50:00:00:00:03");
        assert_eq!(random_uuid().len(), 36);
        assert_eq!(
            build_args(Path::new("/s/vpnkit-ethernet.sock"), 1500, true).join(" "),
            "--ethernet /s/vpnkit-ethernet.sock --mtu 1500 --host-ip 0.0.0.0"
        );
    }
}
