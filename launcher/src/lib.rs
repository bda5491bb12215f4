//! rootlesskit-rs launcher: the `rootlesskit`, `rootlessctl` and `rootlesskit-docker-proxy` binaries.
//!
//! # Layout
//! - [`cli`]: every flag of RootlessKit with its defaults, value syntax and validation texts.
//! - [`parent`]: runs in the host namespaces: state dir, clone of the child, id maps, network and
//!   port drivers, the API server, signal forwarding, teardown.
//! - [`child`]: runs in the new namespaces: mounts (propagation, copy-up, /proc, /sys), network
//!   configuration, the port driver's child side, the command, the reaper.
//! - [`messages`]: the parent<->child handshake (one serde enum, one message per SEQPACKET packet).
//! - [`network`]: network drivers behind [`network::NetworkDriver`] + netlink helpers.
//! - [`port`]: port drivers behind [`port::PortDriver`] and the id/conflict manager.
//! - [`api`]: the REST API server, its client (rootlessctl, docker-proxy) and wire types.
//! - [`sys`]: the raw syscalls that nix/rustix do not cover; every `unsafe` lives there.
//! - [`log`]: RootlessKit-style log lines (`[rootlesskit:parent] ...`).

pub mod api;
pub mod check;
pub mod child;
pub mod cli;
pub mod log;
pub mod messages;
pub mod network;
pub mod parent;
pub mod port;
pub mod sys;

/// Implementation version reported by `--version` and the API (`version`).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// REST API version (`apiVersion`), RootlessKit v3.1.0+.
pub const API_VERSION: &str = "1.1.2";
