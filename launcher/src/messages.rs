//! Parent<->child handshake messages: one JSON message per `SOCK_SEQPACKET` packet.
//!
//! The parent creates the socketpair before cloning the child; both ends are `O_CLOEXEC`, so
//! the command never inherits them. Sequence (see docs/internal.md):
//!
//! ```text
//! parent                                   child (new userns + mountns [+ net, pid, ...])
//!   clone ------------------------------>  waits
//!   newuidmap/newgidmap
//!   IdmapDone -------------------------->  re-arm pdeathsig, mount /proc (--pidns),
//!                                          create $STATE/netns (--detach-netns)
//!            <-------------------------- UserNsReady
//!   network driver setup (slirp4netns...)
//!   Setup{network} --------------------->  propagation, copy-up, /sys, network config,
//!                                          port driver child side
//!            <-------------------------- ChildReady
//!   forwarder, -p ports, child_pid, api.sock
//!   Go --------------------------------->  runs the command
//! ```
//! Any failure on either side is sent as `Error{message}` and ends the handshake.

use std::io;
use std::os::fd::{AsFd, AsRawFd};

use serde::{Deserialize, Serialize};

use crate::network::NetworkConfig;

/// Largest message accepted (RootlessKit uses the same bound).
pub const MAX_MESSAGE: usize = 65536;

/// Every message of the handshake.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "Name")]
pub enum Message {
    IdmapDone,
    UserNsReady,
    Setup {
        network: NetworkConfig,
        /// The builtin port driver's child side must be started.
        builtin_port_driver: bool,
        /// Install the fwmark rule + local route for `--source-ip-transparent`.
        source_ip_transparent: bool,
    },
    ChildReady,
    Go,
    Error {
        message: String,
    },
}

/// Errors of the handshake channel.
#[derive(Debug, thiserror::Error)]
pub enum MessageError {
    #[error("handshake: send {msg}: {source}")]
    Send {
        msg: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("handshake receive: {0}")]
    Recv(#[source] io::Error),
    #[error("handshake peer closed the channel")]
    Closed,
    #[error("handshake: malformed message: {0}")]
    Malformed(String),
    #[error("handshake: expected {expected}, got {got}")]
    Unexpected { expected: &'static str, got: String },
}

impl Message {
    /// The message's name, as in the handshake diagram above.
    pub fn name(&self) -> &'static str {
        match self {
            Message::IdmapDone => "IdmapDone",
            Message::UserNsReady => "UserNsReady",
            Message::Setup { .. } => "Setup",
            Message::ChildReady => "ChildReady",
            Message::Go => "Go",
            Message::Error { .. } => "Error",
        }
    }
}

pub fn send(fd: impl AsFd, msg: &Message) -> Result<(), MessageError> {
    let buf = serde_json::to_vec(msg).map_err(|e| MessageError::Malformed(e.to_string()))?;
    crate::debug!(
        "handshake: send msg={} bytes={} json={}",
        msg.name(),
        buf.len(),
        String::from_utf8_lossy(&buf)
    );
    loop {
        match nix::sys::socket::send(
            fd.as_fd().as_raw_fd(),
            &buf,
            nix::sys::socket::MsgFlags::MSG_NOSIGNAL,
        ) {
            Ok(_) => return Ok(()),
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => {
                return Err(MessageError::Send {
                    msg: msg.name(),
                    source: e.into(),
                })
            }
        }
    }
}

pub fn recv(fd: impl AsFd) -> Result<Message, MessageError> {
    let mut buf = vec![0u8; MAX_MESSAGE];
    let n = loop {
        match nix::sys::socket::recv(
            fd.as_fd().as_raw_fd(),
            &mut buf,
            nix::sys::socket::MsgFlags::empty(),
        ) {
            Ok(n) => break n,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(MessageError::Recv(e.into())),
        }
    };
    if n == 0 {
        return Err(MessageError::Closed);
    }
    serde_json::from_slice(&buf[..n]).map_err(|e| MessageError::Malformed(e.to_string()))
}

/// Receive and require a specific message; an `Error` from the peer becomes `Err(text)`.
pub fn expect(fd: impl AsFd, expected: &'static str) -> Result<Message, String> {
    crate::debug!("handshake: waiting msg={expected}");
    match recv(fd) {
        Ok(Message::Error { message }) => {
            crate::debug!(
                "handshake: received msg=Error (expected {expected}) message={message:?}"
            );
            Err(message)
        }
        Ok(m) => {
            let name = m.name();
            crate::debug!("handshake: received msg={name}");
            if name == expected {
                Ok(m)
            } else {
                Err(MessageError::Unexpected {
                    expected,
                    got: name.to_string(),
                }
                .to_string())
            }
        }
        Err(e) => Err(format!("{e} (while waiting for {expected})")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};

    #[test]
    fn roundtrip_over_seqpacket() {
        let (a, b) = socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .unwrap();
        send(
            &a,
            &Message::Error {
                message: "boom".into(),
            },
        )
        .unwrap();
        send(&a, &Message::Go).unwrap();
        assert_eq!(expect(&b, "Go").unwrap_err(), "boom");
        assert!(matches!(recv(&b).unwrap(), Message::Go));
        drop(a);
        assert!(matches!(recv(&b), Err(MessageError::Closed)));
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let (a, b) = socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .unwrap();
        nix::sys::socket::send(
            a.as_raw_fd(),
            b"\xff{not json",
            nix::sys::socket::MsgFlags::empty(),
        )
        .unwrap();
        assert!(matches!(recv(&b), Err(MessageError::Malformed(_))));
    }
}
