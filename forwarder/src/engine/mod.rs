//! Engine: worker threads and event loops, parent-side API of the builtin port driver.
//!
//! ```text
//! let fwd = Forwarder::start(channel_fd, ForwarderConfig { .. })?;   // after fork/clone + id maps
//! fwd.add_port(id, &spec)?;      // listen on the host; errors carry RootlessKit's exact text
//! fwd.remove_port(id)?;          // close listener + every live connection / UDP flow of that port
//! fwd.stats(id);                 // per-port counters
//! fwd.shutdown();                // stop workers, close everything
//! ```
//!
//! # Theory of operation
//!
//! `start` raises `RLIMIT_NOFILE`, wraps the channel in [`crate::channel`]'s socket pools (a
//! reader thread fills them), probes the backend ([`crate::probe`]) and starts N workers
//! (default `min(ncpu, 4)`), each with its own [`poller::Poller`] (epoll or io_uring).
//! `add_port` binds the host socket in the caller's thread (so bind errors are returned with
//! Go's text) and hands it to one worker (round robin). That worker accepts TCP connections and
//! keeps them while it is busy less than half of the time (no hand-off, fuller event batches);
//! a saturated worker hands new connections round robin to the others. UDP ports keep all their
//! flows in the worker that owns the port. The per-connection state machine is in [`worker`]
//! (TCP) and the UDP flow table in [`udp`]. `add_port` does not wait for the worker: the socket
//! already listens, so connections made before the worker registers it just wait in the
//! backlog.
//!
//! `remove_port` of a TCP port does not wait for the workers either. The listener fd is shared
//! (`Arc<OwnedFd>`) between the port table and the owning worker; the caller's thread calls
//! `shutdown(2)` on it, which takes a listening socket out of `LISTEN` at once (the kernel
//! resets connections still in the accept queue and answers new SYNs with RST) while the fd
//! stays open, so the worker's epoll/io_uring registration stays valid. Before that, the port's
//! `removed` flag is set and every worker is told to drop the listener and reset the port's
//! live connections, which they do on their next wake-up (microseconds). The deferred variant
//! (the API's `DELETE`) on an epoll backend first takes the listener out of its owning worker's
//! epoll itself, through a duplicate of that epoll fd kept in `WorkerRemote`: then nothing
//! polls the shut-down socket, no worker is woken, and the workers act on the next flush (if
//! the owner has not registered the listener yet, `ENOENT`, it is woken as before). The fd is
//! closed when the last `Arc` goes. So when `remove_port` returns, no new connection can be accepted. A UDP
//! socket cannot be taken out of service that way (`shutdown` does not unbind it), so UDP
//! removal still waits (up to 5 s) until every worker has closed the socket and its flows.

pub(crate) mod listen;
pub(crate) mod pipes;
pub(crate) mod poller;
pub(crate) mod slab;
pub(crate) mod sys;
mod udp;
mod worker;

use std::collections::HashMap;
use std::net::IpAddr;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::channel::SocketPools;
use crate::spec::PortSpec;

/// Event-loop backend; `ROOTLESSKIT_FORWARDER_BACKEND` overrides the probed default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// io_uring poll readiness + inline splice(2).
    UringPoll,
    /// io_uring IORING_OP_SPLICE (selectable, measured, not default).
    UringSplice,
    /// epoll readiness + inline splice(2).
    Epoll,
    /// epoll readiness + read/write copy (no splice).
    Copy,
}

impl Backend {
    /// Every backend, for tests and benchmarks.
    pub const ALL: [Backend; 4] = [
        Backend::UringPoll,
        Backend::UringSplice,
        Backend::Epoll,
        Backend::Copy,
    ];

    /// Parse the `ROOTLESSKIT_FORWARDER_BACKEND` value.
    pub fn from_env_value(v: &str) -> Option<Backend> {
        match v {
            "uring" | "uring-poll" => Some(Backend::UringPoll),
            "uring-splice" => Some(Backend::UringSplice),
            "epoll" => Some(Backend::Epoll),
            "copy" => Some(Backend::Copy),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Backend::UringPoll => "uring",
            Backend::UringSplice => "uring-splice",
            Backend::Epoll => "epoll",
            Backend::Copy => "copy",
        }
    }

    pub(crate) fn uses_uring(self) -> bool {
        matches!(self, Backend::UringPoll | Backend::UringSplice)
    }
}

/// Fd-table slots reserved at start (see [`reserve_fd_table`]).
const FD_TABLE_RESERVE: i32 = 4096;

/// Make the kernel grow this process's fd table to `n` slots now. The table doubles when an
/// fd beyond its size is allocated, and in a multi-threaded process each doubling waits for an
/// RCU grace period (`expand_fdtable` -> `synchronize_rcu`): measured 7-20 ms on the 2-vCPU
/// test machine, stalling whichever `POST /v1/ports` (bind) or `accept` crossed 256, 512,
/// 1024, ... fds. Allocating fd `n - 1` once (and closing it) pays that at start-up, in a
/// thread of its own; the table never shrinks. Costs about `n * 8.25` bytes.
fn reserve_fd_table(n: i32) {
    let limit = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        .map(|(soft, _)| soft)
        .unwrap_or(1024);
    let top = i32::try_from(limit).unwrap_or(i32::MAX).min(n) - 1;
    if top < 3 {
        return;
    }
    let Ok(null) = std::fs::File::open("/dev/null") else {
        return;
    };
    if let Ok(fd) = nix::fcntl::fcntl(
        std::os::fd::AsRawFd::as_raw_fd(&null),
        nix::fcntl::FcntlArg::F_DUPFD_CLOEXEC(top),
    ) {
        // SAFETY: `fd` was just returned by F_DUPFD_CLOEXEC and is owned by nobody else.
        drop(unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) });
    }
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
    /// Reject sockets from the child that live in the parent's own network namespace
    /// (`SO_NETNS_COOKIE`). Default true; in-process tests set it to false.
    pub require_foreign_netns: bool,
    /// Idle timeout of a UDP flow (RootlessKit: 90 s).
    pub udp_idle_timeout: Duration,
    /// Maximum UDP flows per port.
    pub udp_max_flows: usize,
    /// Small-message path: start each direction with read/write and switch to splice once a
    /// read fills the 64 KiB buffer (bulk flow). Default true (see `probe` for the numbers).
    pub adaptive_copy: bool,
}

impl Default for ForwarderConfig {
    fn default() -> Self {
        ForwarderConfig {
            backend: None,
            workers: 0,
            source_ip_transparent: true,
            host_gateway_ip: None,
            argv0_is_rootlesskit: false,
            require_foreign_netns: true,
            udp_idle_timeout: Duration::from_secs(90),
            udp_max_flows: 4096,
            adaptive_copy: true,
        }
    }
}

/// Errors of the parent side; `Display` of add_port errors is RootlessKit's text.
#[derive(Debug, thiserror::Error)]
pub enum ForwarderError {
    #[error("{0}")]
    Port(String),
    #[error("forwarder channel: {0}")]
    Channel(#[source] std::io::Error),
    #[error("start forwarder worker")]
    Worker(#[source] std::io::Error),
}

/// Per-port counters (snapshot).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PortStats {
    /// Live TCP connections or UDP flows.
    pub active: u64,
    /// TCP connections accepted / UDP flows created since the port was added.
    pub total: u64,
    /// Bytes from host clients towards the namespace.
    pub bytes_in: u64,
    /// Bytes from the namespace back to host clients.
    pub bytes_out: u64,
    /// Resets, refused targets, accept errors, dropped datagrams.
    pub errors: u64,
}

/// One live counter: a relaxed `AtomicU64` with the same `fetch_add`/`fetch_sub`/`load` calls,
/// so the data path increments it exactly like an atomic (no branch, no indirection).
///
/// With the cargo feature `no-stats` it is a zero-sized no-op (every counter reads 0): that
/// build exists only to measure what the counters cost (`benches/benches/stats.rs`, the
/// "Cost of port statistics" section of docs/performance.md); it is never the default.
#[cfg(not(feature = "no-stats"))]
#[derive(Debug, Default)]
pub(crate) struct Counter(std::sync::atomic::AtomicU64);

#[cfg(not(feature = "no-stats"))]
impl Counter {
    #[inline(always)]
    pub(crate) fn fetch_add(&self, v: u64, o: Ordering) -> u64 {
        self.0.fetch_add(v, o)
    }
    #[inline(always)]
    pub(crate) fn fetch_sub(&self, v: u64, o: Ordering) -> u64 {
        self.0.fetch_sub(v, o)
    }
    #[inline(always)]
    pub(crate) fn load(&self, o: Ordering) -> u64 {
        self.0.load(o)
    }
}

#[cfg(feature = "no-stats")]
#[derive(Debug, Default)]
pub(crate) struct Counter;

#[cfg(feature = "no-stats")]
impl Counter {
    #[inline(always)]
    pub(crate) fn fetch_add(&self, _: u64, _: Ordering) -> u64 {
        0
    }
    #[inline(always)]
    pub(crate) fn fetch_sub(&self, _: u64, _: Ordering) -> u64 {
        0
    }
    #[inline(always)]
    pub(crate) fn load(&self, _: Ordering) -> u64 {
        0
    }
}

/// `true` when this build keeps per-port counters (the default; `false` with the
/// measurement-only feature `no-stats`).
pub const STATS_ENABLED: bool = cfg!(not(feature = "no-stats"));

/// Live counters, updated with relaxed atomics (once per wake-up and direction).
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub active: Counter,
    pub total: Counter,
    pub bytes_in: Counter,
    pub bytes_out: Counter,
    pub errors: Counter,
    /// Set by `remove_port` before it broadcasts: a connection handed between workers after a
    /// worker already processed the removal is reset instead of started.
    pub removed: std::sync::atomic::AtomicBool,
}

impl Counters {
    fn snapshot(&self) -> PortStats {
        PortStats {
            active: self.active.load(Ordering::Relaxed),
            total: self.total.load(Ordering::Relaxed),
            bytes_in: self.bytes_in.load(Ordering::Relaxed),
            bytes_out: self.bytes_out.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
        }
    }
    pub(crate) fn err(&self) {
        self.errors.fetch_add(1, Ordering::Relaxed);
    }
}

/// Messages to a worker.
pub(crate) enum Cmd {
    AddTcp {
        id: u64,
        /// Shared with the port table, which shuts it down on removal.
        listener: Arc<OwnedFd>,
        /// Bound to a loopback address.
        loopback: bool,
        target: std::net::SocketAddr,
        stats: Arc<Counters>,
    },
    AddUdp {
        id: u64,
        sock: OwnedFd,
        target: std::net::SocketAddr,
        stats: Arc<Counters>,
    },
    NewConn {
        id: u64,
        client: OwnedFd,
        peer: Option<std::net::SocketAddr>,
        target: std::net::SocketAddr,
        stats: Arc<Counters>,
    },
    /// Close the port's listener / UDP socket and reset its connections and flows; `ack`
    /// (UDP only) is signalled when done.
    Remove {
        id: u64,
        ack: Option<mpsc::SyncSender<()>>,
    },
    Shutdown,
}

pub(crate) struct WorkerRemote {
    tx: mpsc::Sender<Cmd>,
    wake: Arc<OwnedFd>,
    /// A command was queued by `send_quiet` and the worker not signalled yet.
    pending: std::sync::atomic::AtomicBool,
    /// The worker's epoll instance (epoll backends), for [`poller::remote_delete`].
    epoll: Option<OwnedFd>,
    /// The worker's returns from waiting for events ([`Forwarder::wakeups`]).
    wakeups: Arc<LineCounter>,
}

impl WorkerRemote {
    pub(crate) fn send(&self, c: Cmd) -> bool {
        let ok = self.tx.send(c).is_ok();
        self.pending.store(false, Ordering::Release);
        sys::eventfd_signal(self.wake.as_fd());
        ok
    }

    /// Queue without waking the worker; [`WorkerRemote::wake_if_pending`] signals later.
    fn send_quiet(&self, c: Cmd) -> bool {
        let ok = self.tx.send(c).is_ok();
        self.pending.store(true, Ordering::Release);
        ok
    }

    fn wake_if_pending(&self) {
        if self.pending.swap(false, Ordering::AcqRel) {
            sys::eventfd_signal(self.wake.as_fd());
        }
    }
}

/// State shared by all workers.
pub(crate) struct Shared {
    pub backend: Backend,
    pub cfg: ForwarderConfig,
    pub pools: Arc<SocketPools>,
    pub budget: Arc<pipes::PipeBudget>,
    pub workers: std::sync::OnceLock<Vec<WorkerRemote>>,
    pub rr: AtomicUsize,
}

/// A counter on a cache line of its own (each worker bumps its own on every wake-up).
#[repr(align(64))]
#[derive(Default)]
pub(crate) struct LineCounter(pub std::sync::atomic::AtomicU64);

struct PortEntry {
    stats: Arc<Counters>,
    /// Index of the worker that owns the listener / UDP socket.
    worker: usize,
    /// The TCP listener (shared with its worker); None for UDP.
    listener: Option<Arc<OwnedFd>>,
}

/// Parent side of the builtin port driver.
pub struct Forwarder {
    shared: Arc<Shared>,
    ports: Mutex<HashMap<u64, PortEntry>>,
    next_worker: AtomicUsize,
    threads: Mutex<Vec<JoinHandle<()>>>,
    reader: Mutex<Option<JoinHandle<()>>>,
    /// Listener sockets made ahead of the next `add_port` ([`listen`] module docs).
    spares: listen::Spares,
}

impl Forwarder {
    /// Start the workers on the parent end of the channel.
    pub fn start(channel: OwnedFd, cfg: ForwarderConfig) -> Result<Forwarder, ForwarderError> {
        sys::raise_nofile();
        sys::ignore_sigpipe();
        // Grow the fd table off the critical path (see `reserve_fd_table`); a failure only
        // means the growth happens later, in `add_port` or `accept`.
        let _ = std::thread::Builder::new()
            .name("fwd-fdtable".into())
            .spawn(|| reserve_fd_table(FD_TABLE_RESERVE));
        let backend = crate::probe::choose(cfg.backend);
        let pools = SocketPools::new(channel, cfg.require_foreign_netns);
        let reader = {
            let p = pools.clone();
            std::thread::Builder::new()
                .name("fwd-channel".into())
                .spawn(move || p.run_reader())
                .map_err(ForwarderError::Channel)?
        };
        pools.init(cfg.source_ip_transparent);
        let n = if cfg.workers == 0 {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
                .min(4)
        } else {
            cfg.workers
        };
        let shared = Arc::new(Shared {
            backend,
            cfg,
            pools: pools.clone(),
            budget: pipes::PipeBudget::new(),
            workers: std::sync::OnceLock::new(),
            rr: AtomicUsize::new(0),
        });
        // Workers (and their pollers) first: each remote keeps a handle on its worker's epoll.
        let mut built = Vec::with_capacity(n);
        let mut remotes = Vec::with_capacity(n);
        for i in 0..n {
            let (tx, rx) = mpsc::channel();
            let wake = Arc::new(sys::eventfd().map_err(ForwarderError::Worker)?);
            let w2 = wake.clone();
            pools.add_waker(Box::new(move || sys::eventfd_signal(w2.as_fd())));
            let w = worker::Worker::new(i, shared.clone(), rx, wake.clone())
                .map_err(ForwarderError::Worker)?;
            remotes.push(WorkerRemote {
                tx,
                wake,
                pending: std::sync::atomic::AtomicBool::new(false),
                epoll: w.remote_handle(),
                wakeups: w.wakeups(),
            });
            built.push((i, w));
        }
        let _ = shared.workers.set(remotes);
        let mut threads = Vec::with_capacity(n);
        for (i, w) in built {
            let t = std::thread::Builder::new()
                .name(format!("fwd-worker-{i}"))
                .spawn(move || w.run())
                .map_err(ForwarderError::Worker)?;
            threads.push(t);
        }
        Ok(Forwarder {
            shared,
            ports: Mutex::new(HashMap::new()),
            next_worker: AtomicUsize::new(0),
            threads: Mutex::new(threads),
            reader: Mutex::new(Some(reader)),
            spares: listen::Spares::default(),
        })
    }

    /// The backend in use.
    pub fn backend(&self) -> Backend {
        self.shared.backend
    }

    /// Publish a port (the spec was validated by the caller).
    pub fn add_port(&self, id: u64, spec: &PortSpec) -> Result<(), ForwarderError> {
        self.add(id, spec, false)
    }

    /// [`Forwarder::add_port`] without waking the owning worker: the socket listens when this
    /// returns, but connections wait in the backlog until [`Forwarder::flush`] is called,
    /// which the caller must do soon (the API server does within about a millisecond, so a
    /// burst of POSTs costs one worker wake-up instead of one each).
    pub fn add_port_deferred(&self, id: u64, spec: &PortSpec) -> Result<(), ForwarderError> {
        self.add(id, spec, true)
    }

    /// Make the sockets the next `add_port` of each kind used so far will bind, so it only
    /// pays `bind` + `listen` (call it when idle, e.g. after answering an add). Cheap when they
    /// are all there.
    pub fn prepare_listeners(&self) {
        self.spares.refill();
    }

    /// Wake the workers that have commands queued by the `_deferred` calls.
    pub fn flush(&self) {
        for w in self.shared.workers.get().into_iter().flatten() {
            w.wake_if_pending();
        }
    }

    fn add(&self, id: u64, spec: &PortSpec, deferred: bool) -> Result<(), ForwarderError> {
        let mut ports = self
            .ports
            .lock()
            .map_err(|_| ForwarderError::Port("forwarder state poisoned".into()))?;
        if ports.contains_key(&id) {
            return Err(ForwarderError::Port(format!("conflict with ID {id}")));
        }
        let listen::Listening {
            fd,
            proto,
            loopback,
        } = listen::bind_listener(
            spec,
            self.shared.cfg.argv0_is_rootlesskit,
            Some(&self.spares),
        )
        .map_err(ForwarderError::Port)?;
        let target = listen::child_target(spec, self.shared.cfg.host_gateway_ip)
            .map_err(ForwarderError::Port)?;
        let stats = Arc::new(Counters::default());
        let Some(workers) = self.shared.workers.get() else {
            return Err(ForwarderError::Port("forwarder not running".into()));
        };
        let w = self.next_worker.fetch_add(1, Ordering::Relaxed) % workers.len().max(1);
        let mut tcp_listener = None;
        let cmd = match proto {
            listen::Proto::Tcp => {
                let fd = Arc::new(fd);
                tcp_listener = Some(fd.clone());
                Cmd::AddTcp {
                    id,
                    listener: fd,
                    loopback,
                    target,
                    stats: stats.clone(),
                }
            }
            listen::Proto::Udp => {
                // Make sure the UDP pool of the target family gets filled.
                let kind = crate::channel::SockKind::for_target(false, target.is_ipv6(), false);
                if let Some(s) = self.shared.pools.take(kind) {
                    drop(s);
                }
                Cmd::AddUdp {
                    id,
                    sock: fd,
                    target,
                    stats: stats.clone(),
                }
            }
        };
        let sent = if deferred {
            workers[w].send_quiet(cmd)
        } else {
            workers[w].send(cmd)
        };
        if !sent {
            return Err(ForwarderError::Port("forwarder not running".into()));
        }
        ports.insert(
            id,
            PortEntry {
                stats,
                worker: w,
                listener: tcp_listener,
            },
        );
        Ok(())
    }

    /// Unpublish a port: close its listener and reset every live connection / flow.
    pub fn remove_port(&self, id: u64) -> Result<(), ForwarderError> {
        self.remove(id, false)
    }

    /// [`Forwarder::remove_port`] that wakes only the worker owning the listener; the others
    /// (which may hold live connections of the port) act on the next [`Forwarder::flush`].
    /// No new connection is accepted either way once this returns.
    pub fn remove_port_deferred(&self, id: u64) -> Result<(), ForwarderError> {
        self.remove(id, true)
    }

    fn remove(&self, id: u64, deferred: bool) -> Result<(), ForwarderError> {
        let mut ports = self
            .ports
            .lock()
            .map_err(|_| ForwarderError::Port("forwarder state poisoned".into()))?;
        let Some(entry) = ports.remove(&id) else {
            return Err(ForwarderError::Port(format!("unknown id: {id}")));
        };
        drop(ports);
        entry.stats.removed.store(true, Ordering::SeqCst);
        let workers = self.shared.workers.get();
        if let Some(l) = &entry.listener {
            // Tell the workers first, then take the socket out of LISTEN: a shut-down
            // listener polls as HUP for ever (even with no interest), so the owning worker
            // must already have the Remove queued (and its eventfd signalled) when it sees
            // that, or it would spin until this thread got the CPU back. Deferred, on an epoll
            // worker that has registered the listener, this thread drops it from that epoll
            // instead: then nothing polls it and nobody needs waking (the worker closes it on
            // the next flush). ENOENT (the worker has not read its AddTcp yet, or is reading
            // it right now) keeps the wake-up.
            let owner_quiet = deferred
                && workers
                    .and_then(|ws| ws.get(entry.worker))
                    .and_then(|w| w.epoll.as_ref())
                    .is_some_and(|ep| poller::remote_delete(ep.as_fd(), l.as_fd()).is_ok());
            for (i, w) in workers.into_iter().flatten().enumerate() {
                if deferred && (i != entry.worker || owner_quiet) {
                    w.send_quiet(Cmd::Remove { id, ack: None });
                } else {
                    w.send(Cmd::Remove { id, ack: None });
                }
            }
            sys::shutdown_both(l.as_fd());
            return Ok(());
        }
        let Some(workers) = workers else {
            return Ok(());
        };
        let mut acks = Vec::new();
        for w in workers {
            let (tx, rx) = mpsc::sync_channel(1);
            if w.send(Cmd::Remove { id, ack: Some(tx) }) {
                acks.push(rx);
            }
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        for rx in acks {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let _ = rx.recv_timeout(left);
        }
        Ok(())
    }

    /// How many times the workers have returned from waiting for events, all together: a
    /// worker that spins shows here (tests), as does the wake-up cost of an operation.
    pub fn wakeups(&self) -> u64 {
        self.shared
            .workers
            .get()
            .into_iter()
            .flatten()
            .map(|w| w.wakeups.0.load(Ordering::Relaxed))
            .sum()
    }

    /// Counters of a port, `None` for an unknown id.
    pub fn stats(&self, id: u64) -> Option<PortStats> {
        let ports = self.ports.lock().ok()?;
        ports.get(&id).map(|p| p.stats.snapshot())
    }

    /// Stop the workers and close everything (also tells the child to stop serving).
    pub fn shutdown(self) {
        // Drop does the work.
    }

    fn stop(&self) {
        if let Some(workers) = self.shared.workers.get() {
            for w in workers {
                w.send(Cmd::Shutdown);
            }
        }
        if let Ok(mut t) = self.threads.lock() {
            for h in t.drain(..) {
                let _ = h.join();
            }
        }
        self.shared.pools.close();
        if let Ok(mut r) = self.reader.lock() {
            if let Some(h) = r.take() {
                let _ = h.join();
            }
        }
    }
}

// The API server calls add/remove from other threads.
const _: fn() = || {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Forwarder>();
};

impl Drop for Forwarder {
    fn drop(&mut self) {
        self.stop();
    }
}
