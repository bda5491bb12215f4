//! Port drivers and the port manager (owner: API helper; builtin wraps `forwarder::Forwarder`).
//!
//! [`PortDriver`] is what the API server and the parent's `-p` publishing call. Ids start at 1,
//! grow by one per successful add and are never reused; conflict detection uses (proto,
//! parentIP string, parentPort) exactly like RootlessKit.

use forwarder::PortSpec;
use serde::{Deserialize, Serialize};

/// `PortStatus` of the API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortStatus {
    pub id: i64,
    pub spec: PortSpec,
}

/// `portDriver` object of `GET /v1/info`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortDriverInfo {
    pub driver: String,
    /// Always present; `null` when None (Go nil slice).
    pub protos: Option<Vec<String>>,
    #[serde(
        rename = "disallowLoopbackChildIP",
        default,
        skip_serializing_if = "std::ops::Not::not"
    )]
    pub disallow_loopback_child_ip: bool,
}

/// Port-driver errors; `Display` is the API `message` text.
#[derive(Debug, thiserror::Error)]
pub enum PortError {
    #[error("{0}")]
    Msg(String),
}

/// A port driver as seen by the API server and `-p` publishing.
pub trait PortDriver: Send + Sync {
    fn info(&self) -> PortDriverInfo;
    /// Validate, check conflicts, publish; returns the new status (with its id).
    fn add_port(&self, spec: PortSpec) -> Result<PortStatus, PortError>;
    fn remove_port(&self, id: i64) -> Result<(), PortError>;
    fn list_ports(&self) -> Vec<PortStatus>;
    /// Remove every port and stop the data plane; called once at exit.
    fn shutdown(&self);
}
