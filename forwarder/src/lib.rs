//! rootlesskit-rs forwarder: the data plane of the builtin port driver.
//!
//! # Layout
//! - [`spec`]: port specs (`PARENTIP:PARENTPORT[:CHILDIP]:CHILDPORT/PROTO`), parsing and the exact
//!   validation error texts of RootlessKit. Shared by the CLI, the REST API and rootlessctl.
//! - [`channel`]: the parent<->child protocol over one persistent `SOCK_SEQPACKET` socket with
//!   `SCM_RIGHTS`; the child side creates sockets inside the namespace in batches, the parent keeps
//!   pools of them so no connection waits for a round trip to the child.
//! - [`engine`]: worker threads, one event loop each (io_uring readiness or epoll), the TCP
//!   connection state machine (inline non-blocking splice with a copy fallback) and the UDP flow
//!   table.
//! - [`probe`]: one kernel probe at start-up that picks the backend.
//!
//! The launcher (`launcher/src/port/builtin.rs`) is the only user of the parent-side API
//! ([`Forwarder`]); the child side is [`channel::serve_child`].

pub mod channel;
pub mod engine;
pub mod probe;
pub mod spec;

pub use engine::{Backend, Forwarder, ForwarderConfig, ForwarderError};
pub use spec::{PortSpec, SpecError};
