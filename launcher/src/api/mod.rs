//! REST API on `$STATE/api.sock`: server, client, wire types.
//!
//! - [`server::run`] serves the API (hyper 1, HTTP/1.1) with RootlessKit's byte-level behaviour
//!   (header order, status codes, gorilla/mux routing quirks, Go's JSON texts).
//! - [`client::Client`] is the blocking client used by `rootlessctl` and
//!   `rootlesskit-docker-proxy`.
//! - [`gojson`] reproduces Go's `encoding/json` decoder errors and encoder escaping.

pub mod client;
pub mod gojson;
pub mod server;
pub mod types;

pub use server::{run, spawn, ApiServerHandle, ApiState};
pub use types::{ErrorJson, Info};

#[cfg(test)]
mod compat_tests;
