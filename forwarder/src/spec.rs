//! Port specs: the JSON type of the REST API and the string syntax of `-p` / `rootlessctl add-ports`.
//!
//! Owner: API helper. Contract (see ../shared/reference/rootlesskit.md §3.2-3.4):
//! - `PortSpec` serialises exactly like Go's `port.Spec` (field order proto, parentIP, parentPort,
//!   childPort, childIP; every field omitempty).
//! - `PortSpec::parse(s)` implements the string syntax with RootlessKit's error texts.
//! - `PortSpec::validate()` implements `ValidatePortSpec` (proto, IPs, ports) with exact texts.

use serde::{Deserialize, Serialize};

fn is_zero(v: &i64) -> bool {
    *v == 0
}

/// One published port, as in RootlessKit's `port.Spec`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortSpec {
    /// `tcp`, `tcp4`, `tcp6`, `udp`, `udp4`, `udp6` (`sctp*` pass validation, rejected by drivers).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub proto: String,
    /// Host address to listen on; empty means every address (dual-stack for `tcp`/`udp`).
    #[serde(rename = "parentIP", default, skip_serializing_if = "String::is_empty")]
    pub parent_ip: String,
    #[serde(rename = "parentPort", default, skip_serializing_if = "is_zero")]
    pub parent_port: i64,
    #[serde(rename = "childPort", default, skip_serializing_if = "is_zero")]
    pub child_port: i64,
    /// Address inside the namespace; empty means the default rules of §4.1 item 4.
    #[serde(rename = "childIP", default, skip_serializing_if = "String::is_empty")]
    pub child_ip: String,
}

/// Errors of parsing and validation; `Display` is RootlessKit's text, word for word.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SpecError {
    #[error("{0}")]
    Invalid(String),
}
