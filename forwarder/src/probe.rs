//! Kernel feature probe: picks the event-loop backend once per process.
//!
//! io_uring may be refused (`kernel.io_uring_disabled`, seccomp profiles of Docker ≥ 25 and
//! containerd, LSMs): `io_uring_setup` then fails with EPERM/ENOSYS. The probe also checks the
//! opcodes the uring backends need (`POLL_ADD`, `POLL_REMOVE`, and `SPLICE` for `UringSplice`)
//! through the probe API. `ROOTLESSKIT_FORWARDER_BACKEND=uring|uring-splice|epoll|copy`
//! overrides the choice; an unavailable uring backend falls back to epoll.
//!
//! # Default: `Epoll` (measurements)
//!
//! `cargo bench -p rootlesskit-benches --bench engine -- cpu` (with `FWD_BENCH_CASE=<name>` to run
//! one case) on the 2-vCPU development VM (Linux 6.18), heavily loaded by parallel builds (load
//! average ≈ 10), so single runs are noisy. The figures are the minimum over interleaved runs
//! (3 for bulk, 5 for request/response) of the forwarder's own CPU time (schedstat of its worker
//! and io-wq threads): bulk = 16 × 64 MiB one way; RR = 20 000 round trips of 64 bytes on one
//! connection (direct loopback RR without forwarder: ≈ 9 µs wall).
//!
//! | backend | CPU-s per GB (bulk) | CPU-µs per RR | wall-µs per RR |
//! |---|---|---|---|
//! | epoll (adaptive: copy first, splice for bulk) | 0.24 | 5.9 | 11.5 |
//! | epoll, splice from the first byte | 0.27 | 6.2 | 12.1 |
//! | uring (poll readiness + inline splice, adaptive) | 0.21 | 6.4 | 12.3 |
//! | uring, splice from the first byte | 0.28 | 6.6 | 12.5 |
//! | copy (read/write) | 0.39 | 6.0 | 13.6 |
//! | uring-splice (IORING_OP_SPLICE) | 0.57 | 6.6 | 15.8 |
//!
//! Epoll is the default: per byte it is within noise of io_uring poll (both use the same inline
//! splice), per small message it is slightly cheaper, it needs no per-registration bookkeeping,
//! and it is available everywhere (io_uring is often disabled by seccomp in containers).
//! `IORING_OP_SPLICE` costs about 2.4× the CPU per byte (every splice is punted to io-wq), as the
//! design notes predicted. The adaptive small-message path is on by default: it is as cheap as or
//! cheaper than splice for small messages and keeps small or idle connections from taking pipes
//! out of the per-user pipe budget.
//!
//! Later re-measurement (same VM, load ≈ 2, after non-pacing congestion control on local
//! sockets and 512 KiB pipes; two full runs): CPU-s per GB uring 0.121-0.126, uring-splice
//! 0.20, epoll 0.121-0.122, copy 0.19, epoll-splice-only 0.118-0.127, uring-splice-only
//! 0.123-0.138 (epoll before those changes: 0.156-0.33 in interleaved runs). The RR column
//! of that run (≈ 39 CPU-µs, ≈ 97 wall-µs for every backend, before and after) reflects the
//! nearly idle VM's wake-up cost and is not comparable with the table. Same ranking, same default.

use std::sync::OnceLock;

use crate::engine::Backend;

/// Default backend (see the module docs for the numbers).
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
