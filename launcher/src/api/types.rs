//! Wire types of the REST API (field order and omitempty exactly as Go's `api.Info`).

use serde::{Deserialize, Serialize};

use crate::network::NetworkDriverInfo;
use crate::port::PortDriverInfo;

pub use crate::port::PortStatus;
pub use forwarder::PortSpec;

/// `GET /v1/info`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Info {
    /// REST API version (`1.1.2` since RootlessKit v3.1.0: adds `networkDriver.ipv6`).
    #[serde(rename = "apiVersion", default)]
    pub api_version: String,
    /// Implementation version.
    #[serde(default)]
    pub version: String,
    #[serde(rename = "stateDir", default)]
    pub state_dir: String,
    #[serde(rename = "childPID", default)]
    pub child_pid: i64,
    #[serde(
        rename = "networkDriver",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub network_driver: Option<NetworkDriverInfo>,
    #[serde(
        rename = "portDriver",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub port_driver: Option<PortDriverInfo>,
}

/// Error body: `{"message":"..."}` followed by a newline (Go's `json.Encoder`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorJson {
    #[serde(default)]
    pub message: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_field_order_and_omitempty() {
        let mut info = Info {
            api_version: "1.1.2".into(),
            version: "3.0.1".into(),
            state_dir: "/tmp/rk".into(),
            child_pid: 7198,
            network_driver: None,
            port_driver: None,
        };
        assert_eq!(
            serde_json::to_string(&info).unwrap(),
            r#"{"apiVersion":"1.1.2","version":"3.0.1","stateDir":"/tmp/rk","childPID":7198}"#
        );
        info.network_driver = Some(NetworkDriverInfo {
            driver: "slirp4netns".into(),
            dns: vec!["10.0.2.3".into()],
            child_ip: "10.0.2.100".into(),
            dynamic_child_ip: false,
            ipv6: false,
        });
        info.port_driver = Some(crate::port::builtin::info());
        assert_eq!(
            serde_json::to_string(&info).unwrap(),
            r#"{"apiVersion":"1.1.2","version":"3.0.1","stateDir":"/tmp/rk","childPID":7198,"networkDriver":{"driver":"slirp4netns","dns":["10.0.2.3"],"childIP":"10.0.2.100"},"portDriver":{"driver":"builtin","protos":["tcp","tcp4","tcp6","udp","udp4","udp6"]}}"#
        );
        info.port_driver = Some(crate::port::slirp4netns::info());
        assert!(serde_json::to_string(&info).unwrap().ends_with(
            r#""portDriver":{"driver":"slirp4netns","protos":["tcp","tcp4","udp","udp4"],"disallowLoopbackChildIP":true}}"#
        ));
    }
}
