//! Tap devices: open `/dev/net/tun`, `TUNSETIFF` with `IFF_TAP|IFF_NO_PI` and optionally
//! `TUNSETPERSIST`, in the calling thread's network namespace.

use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;

use super::NetError;

const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
const TUNSETPERSIST: libc::c_ulong = 0x4004_54cb;
const IFF_TAP: libc::c_short = 0x0002;
const IFF_NO_PI: libc::c_short = 0x1000;

/// `struct ifreq` with the name and the flags union member (40 bytes on 64-bit).
#[repr(C)]
struct IfReq {
    name: [u8; libc::IFNAMSIZ],
    flags: libc::c_short,
    _pad: [u8; 22],
}

/// Open (creating if needed) tap `name`; the returned file reads/writes whole frames.
pub fn open_tap(name: &str, persist: bool) -> Result<File, NetError> {
    if name.is_empty() || name.len() >= libc::IFNAMSIZ {
        return Err(NetError::Msg(format!(
            "invalid tap name {name:?}: must be 1..{} bytes",
            libc::IFNAMSIZ - 1
        )));
    }
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/net/tun")
        .map_err(|e| NetError::io("opening /dev/net/tun", e))?;
    let mut req = IfReq {
        name: [0; libc::IFNAMSIZ],
        flags: IFF_TAP | IFF_NO_PI,
        _pad: [0; 22],
    };
    req.name[..name.len()].copy_from_slice(name.as_bytes());
    // SAFETY: TUNSETIFF reads and writes a `struct ifreq`, which `IfReq` matches in layout and
    // size; the pointer is valid for the duration of the call.
    let r = unsafe { libc::ioctl(f.as_raw_fd(), TUNSETIFF as _, &mut req as *mut IfReq) };
    if r < 0 {
        return Err(NetError::io(
            format!("TUNSETIFF {name} (IFF_TAP|IFF_NO_PI)"),
            std::io::Error::last_os_error(),
        ));
    }
    if persist {
        // SAFETY: TUNSETPERSIST takes an integer argument, no pointer.
        let r = unsafe { libc::ioctl(f.as_raw_fd(), TUNSETPERSIST as _, 1 as libc::c_ulong) };
        if r < 0 {
            return Err(NetError::io(
                format!("TUNSETPERSIST {name}"),
                std::io::Error::last_os_error(),
            ));
        }
    }
    Ok(f)
}
