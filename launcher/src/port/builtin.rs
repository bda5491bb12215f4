//! `--port-driver=builtin`: listeners in the parent, connections made inside the namespace by the
//! child (the data plane is `forwarder::Forwarder`; this file is only the driver glue).

use std::sync::Mutex;

use forwarder::{Forwarder, PortSpec};

use super::{Manager, PortBackend, PortDriverInfo, PortError};

/// Protos of the builtin driver, in the order RootlessKit's `Info` lists them.
pub const PROTOS: [&str; 6] = ["tcp", "tcp4", "tcp6", "udp", "udp4", "udp6"];

/// The builtin data plane; `None` after shutdown.
pub struct BuiltinBackend {
    fwd: Mutex<Option<Forwarder>>,
}

impl BuiltinBackend {
    pub fn new(fwd: Forwarder) -> Self {
        BuiltinBackend {
            fwd: Mutex::new(Some(fwd)),
        }
    }

    fn with_fwd<T>(
        &self,
        f: impl FnOnce(&Forwarder) -> Result<T, forwarder::ForwarderError>,
    ) -> Result<T, PortError> {
        let guard = self.fwd.lock().unwrap_or_else(|p| p.into_inner());
        match guard.as_ref() {
            Some(fwd) => f(fwd).map_err(|e| PortError::Msg(e.to_string())),
            None => Err(PortError::Msg("port driver is shut down".into())),
        }
    }
}

impl BuiltinBackend {
    fn publish_with(
        &self,
        next_id: i64,
        spec: &PortSpec,
        deferred: bool,
    ) -> Result<Option<i64>, PortError> {
        // v2.3.2+: sctp passes validation but no driver forwards it (1.1.0 said
        // "spec was not validated?").
        if !PROTOS.contains(&spec.proto.as_str()) {
            return Err(PortError::Msg(format!(
                "unsupported port protocol {}",
                spec.proto
            )));
        }
        let id = u64::try_from(next_id).map_err(|_| PortError::Msg("bad id".into()))?;
        if deferred {
            self.with_fwd(|f| f.add_port_deferred(id, spec))?;
        } else {
            self.with_fwd(|f| f.add_port(id, spec))?;
        }
        Ok(None)
    }
}

/// The driver the parent builds for `--port-driver=builtin` once the forwarder is started.
pub fn new_driver(fwd: Forwarder) -> Manager<BuiltinBackend> {
    Manager::new(BuiltinBackend::new(fwd))
}

/// `portDriver` of the API info.
pub fn info() -> PortDriverInfo {
    PortDriverInfo {
        driver: "builtin".into(),
        protos: Some(PROTOS.iter().map(|s| s.to_string()).collect()),
        disallow_loopback_child_ip: false,
    }
}

impl PortBackend for BuiltinBackend {
    fn info(&self) -> PortDriverInfo {
        info()
    }

    fn publish(&self, next_id: i64, spec: &PortSpec) -> Result<Option<i64>, PortError> {
        self.publish_with(next_id, spec, false)
    }

    fn unpublish(&self, id: i64) -> Result<(), PortError> {
        let id = u64::try_from(id).map_err(|_| PortError::Msg(format!("unknown id: {id}")))?;
        self.with_fwd(|f| f.remove_port(id))
    }

    fn publish_deferred(&self, next_id: i64, spec: &PortSpec) -> Result<Option<i64>, PortError> {
        self.publish_with(next_id, spec, true)
    }

    fn unpublish_deferred(&self, id: i64) -> Result<(), PortError> {
        let id = u64::try_from(id).map_err(|_| PortError::Msg(format!("unknown id: {id}")))?;
        self.with_fwd(|f| f.remove_port_deferred(id))
    }

    fn flush(&self) {
        let _ = self.with_fwd(|f| {
            f.flush();
            Ok(())
        });
    }

    fn prepare_next_publish(&self) {
        let _ = self.with_fwd(|f| {
            f.prepare_listeners();
            Ok(())
        });
    }

    /// bind + listen in this thread; the worker picks the socket up asynchronously.
    fn quick_publish(&self) -> bool {
        true
    }

    /// TCP: `shutdown(2)` of the listener in this thread, the workers clean up asynchronously.
    /// UDP waits for the workers' acknowledgements.
    fn quick_unpublish(&self, spec: &PortSpec) -> bool {
        spec.proto.starts_with("tcp")
    }

    fn stats(&self, id: i64) -> Option<super::PortStats> {
        let uid = u64::try_from(id).ok()?;
        let guard = self.fwd.lock().unwrap_or_else(|p| p.into_inner());
        let s = guard.as_ref()?.stats(uid)?;
        Some(super::PortStats {
            id,
            active: s.active,
            total: s.total,
            bytes_in: s.bytes_in,
            bytes_out: s.bytes_out,
            errors: s.errors,
        })
    }

    fn shutdown(&self) {
        let fwd = self.fwd.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(fwd) = fwd {
            fwd.shutdown();
        }
    }
}
