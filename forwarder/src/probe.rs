//! Kernel feature probe: picks the event-loop backend once per process.
//!
//! io_uring may be refused (`kernel.io_uring_disabled`, seccomp profiles of Docker ≥ 25 and
//! containerd, LSMs): `io_uring_setup` then fails with EPERM/ENOSYS. The probe also checks the
//! opcodes the uring backends need (`POLL_ADD`, `POLL_REMOVE`, and `SPLICE` for `UringSplice`)
//! through the probe API. `ROOTLESSKIT_FORWARDER_BACKEND=uring|uring-splice|epoll|copy`
//! overrides the choice; an unavailable uring backend falls back to epoll.
//!
//! Default: see [`DEFAULT`] and the measurements in the crate's benches (numbers in the
//! report of the engine module).

use std::sync::OnceLock;

use crate::engine::Backend;

/// Default backend when io_uring is usable.
pub const DEFAULT: Backend = Backend::Epoll;

/// Result of probing io_uring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UringSupport {
    /// `io_uring_setup` works and POLL_ADD/POLL_REMOVE are supported.
    pub poll: bool,
    /// IORING_OP_SPLICE is supported too.
    pub splice: bool,
}

/// Probe io_uring once (cached).
pub fn uring() -> UringSupport {
    static CACHE: OnceLock<UringSupport> = OnceLock::new();
    *CACHE.get_or_init(|| {
        let none = UringSupport {
            poll: false,
            splice: false,
        };
        let Ok(ring) = io_uring::IoUring::new(4) else {
            return none;
        };
        let mut probe = io_uring::Probe::new();
        if ring.submitter().register_probe(&mut probe).is_err() {
            return none;
        }
        let poll = probe.is_supported(io_uring::opcode::PollAdd::CODE)
            && probe.is_supported(io_uring::opcode::PollRemove::CODE);
        UringSupport {
            poll,
            splice: poll && probe.is_supported(io_uring::opcode::Splice::CODE),
        }
    })
}

/// Pick the backend: explicit config, else the env override, else [`DEFAULT`]; uring backends
/// fall back to epoll when the probe says no.
pub fn choose(requested: Option<Backend>) -> Backend {
    let env = std::env::var("ROOTLESSKIT_FORWARDER_BACKEND")
        .ok()
        .and_then(|v| Backend::from_env_value(&v));
    let want = requested.or(env).unwrap_or(DEFAULT);
    let u = uring();
    match want {
        Backend::UringPoll if !u.poll => Backend::Epoll,
        Backend::UringSplice if !u.splice => Backend::Epoll,
        b => b,
    }
}
