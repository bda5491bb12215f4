//! Engine: worker threads and event loops (owner: forwarder helper).
//!
//! Parent-side API used by the launcher (contract; keep these signatures):
//! ```ignore
//! let fwd = Forwarder::start(channel_fd, ForwarderConfig { .. })?;   // after fork/clone + id maps
//! fwd.add_port(id, &spec)?;      // listen on the host; errors carry RootlessKit's exact text
//! fwd.remove_port(id)?;          // close listener + every live connection / UDP flow of that port
//! fwd.shutdown();                // stop workers, close everything
//! ```

use std::net::IpAddr;

use crate::spec::PortSpec;

/// Event-loop backend; `ROOTLESSKIT_FORWARDER_BACKEND` overrides the probed default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// io_uring multishot poll readiness + inline splice(2).
    UringPoll,
    /// io_uring IORING_OP_SPLICE (selectable, measured, not default).
    UringSplice,
    /// epoll readiness + inline splice(2).
    Epoll,
    /// epoll readiness + read/write copy (no splice).
    Copy,
}

/// Configuration of the parent side.
#[derive(Debug, Clone)]
pub struct ForwarderConfig {
    /// `None` = probe the kernel (or read the env override).
    pub backend: Option<Backend>,
    /// Number of worker threads; 0 = `min(ncpu, 4)`.
    pub workers: usize,
    /// `--source-ip-transparent`: bind namespace sockets to the client address (TCP, non-loopback).
    pub source_ip_transparent: bool,
    /// First non-loopback IPv4 of the host (child-IP default rule, spec §4.1 item 4).
    pub host_gateway_ip: Option<IpAddr>,
    /// `basename(argv[0]) == "rootlesskit"` (privileged-port message clause).
    pub argv0_is_rootlesskit: bool,
}

/// Errors of the parent side; `Display` of add_port errors is RootlessKit's text.
#[derive(Debug, thiserror::Error)]
pub enum ForwarderError {
    #[error("{0}")]
    Port(String),
    #[error("forwarder channel: {0}")]
    Channel(#[source] std::io::Error),
}

/// Parent side of the builtin port driver.
pub struct Forwarder {
    _private: (),
}

impl Forwarder {
    pub fn start(
        _channel: std::os::fd::OwnedFd,
        _cfg: ForwarderConfig,
    ) -> Result<Forwarder, ForwarderError> {
        Err(ForwarderError::Port(
            "builtin port driver not implemented yet".into(),
        ))
    }
    pub fn add_port(&self, _id: u64, _spec: &PortSpec) -> Result<(), ForwarderError> {
        Err(ForwarderError::Port("not implemented".into()))
    }
    pub fn remove_port(&self, _id: u64) -> Result<(), ForwarderError> {
        Err(ForwarderError::Port("not implemented".into()))
    }
    pub fn shutdown(self) {}
}
