//! Port drivers and the port manager (builtin wraps `forwarder::Forwarder`).
//!
//! [`PortDriver`] is what the API server and the parent's `-p` publishing call. [`Manager`]
//! implements it on top of a [`PortBackend`] (the data plane): ids start at 1, grow by one per
//! successful add and are never reused; conflict detection uses (proto, parentIP string,
//! parentPort) exactly like RootlessKit. All writes are serialised by one mutex so concurrent
//! POSTs can never interleave a conflict check with another add.
//!
//! Drivers: [`builtin::BuiltinBackend`] (`--port-driver=builtin`), [`slirp4netns::Slirp4netnsBackend`]
//! (`--port-driver=slirp4netns`). `implicit` and `none` have no driver at all: the API answers
//! `no PortDriver is available`.

pub mod builtin;
pub mod slirp4netns;

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

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
    #[error(transparent)]
    Spec(#[from] forwarder::SpecError),
}

/// A port driver as seen by the API server and `-p` publishing.
///
/// Methods may block (bind, a round trip to slirp4netns); async callers use `spawn_blocking`.
pub trait PortDriver: Send + Sync {
    fn info(&self) -> PortDriverInfo;
    /// Validate, check conflicts, publish; returns the new status (with its id).
    fn add_port(&self, spec: PortSpec) -> Result<PortStatus, PortError>;
    fn remove_port(&self, id: i64) -> Result<(), PortError>;
    /// Ports sorted by id (RootlessKit returns Go map order, i.e. random).
    fn list_ports(&self) -> Vec<PortStatus>;
    /// Remove every port and stop the data plane; called once at exit.
    fn shutdown(&self);
    /// Whether `add_port` returns without waiting for another thread or process (a few
    /// syscalls at most), so an async caller may run it inline instead of on a blocking thread.
    fn quick_add(&self) -> bool {
        false
    }
    /// The same for `remove_port(id)`.
    fn quick_remove(&self, _id: i64) -> bool {
        false
    }
    /// [`PortDriver::add_port`] that may leave part of the work queued until
    /// [`PortDriver::flush_deferred`]; the caller must call that soon (the API server does
    /// within about a millisecond). Default: `add_port`.
    fn add_port_deferred(&self, spec: PortSpec) -> Result<PortStatus, PortError> {
        self.add_port(spec)
    }
    /// The same for `remove_port`; what is guaranteed on return (nothing new accepted) holds.
    fn remove_port_deferred(&self, id: i64) -> Result<(), PortError> {
        self.remove_port(id)
    }
    /// Finish what the `_deferred` calls queued.
    fn flush_deferred(&self) {}
    /// Do ahead of time what the next `add_port` would do first (builtin: make its socket);
    /// the API server calls this when a connection that added a port ends, off every
    /// request's path.
    fn prepare_next_add(&self) {}
    /// Traffic counters of one port (API extension `GET /v1/ports/{id}/stats`).
    fn stats(&self, id: i64) -> Result<PortStats, PortError> {
        Err(PortError::Msg(format!(
            "port driver {} does not provide statistics (id {id})",
            self.info().driver
        )))
    }
}

/// Traffic counters of one port (rootlesskit-rs extension, not in RootlessKit).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortStats {
    pub id: i64,
    /// Live TCP connections or UDP flows.
    pub active: u64,
    /// TCP connections accepted / UDP flows created since the port was added.
    pub total: u64,
    /// Bytes from host clients towards the namespace.
    #[serde(rename = "bytesIn")]
    pub bytes_in: u64,
    /// Bytes from the namespace back to host clients.
    #[serde(rename = "bytesOut")]
    pub bytes_out: u64,
    /// Resets, refused targets, accept errors, dropped datagrams.
    pub errors: u64,
}

/// The data plane behind a [`Manager`].
pub trait PortBackend: Send + Sync {
    fn info(&self) -> PortDriverInfo;
    /// Publish `spec` (already validated and conflict-free). `next_id` is the id the manager
    /// would give; a backend that allocates its own ids (slirp4netns) returns `Some(its id)`.
    fn publish(&self, next_id: i64, spec: &PortSpec) -> Result<Option<i64>, PortError>;
    /// Stop publishing `id`. Only called for ids the manager knows.
    fn unpublish(&self, id: i64) -> Result<(), PortError>;
    /// Whether `remove_port` of an id unknown to the manager is forwarded to the backend
    /// (slirp4netns: yes, so its own error text reaches the client like RootlessKit's).
    fn forwards_unknown_removals(&self) -> bool {
        false
    }
    /// `publish` never waits for another thread or process (see [`PortDriver::quick_add`]).
    fn quick_publish(&self) -> bool {
        false
    }
    /// `unpublish` of a port with this spec never waits (see [`PortDriver::quick_remove`]).
    fn quick_unpublish(&self, _spec: &PortSpec) -> bool {
        false
    }
    /// `publish` that may leave work queued until `flush` (see
    /// [`PortDriver::add_port_deferred`]).
    fn publish_deferred(&self, next_id: i64, spec: &PortSpec) -> Result<Option<i64>, PortError> {
        self.publish(next_id, spec)
    }
    /// `unpublish` that may leave work queued until `flush`.
    fn unpublish_deferred(&self, id: i64) -> Result<(), PortError> {
        self.unpublish(id)
    }
    /// Finish what the `_deferred` calls queued.
    fn flush(&self) {}
    /// See [`PortDriver::prepare_next_add`].
    fn prepare_next_publish(&self) {}
    /// Stop the data plane after every port was unpublished.
    fn shutdown(&self) {}
    /// Counters of a published port; None when the backend keeps none.
    fn stats(&self, _id: i64) -> Option<PortStats> {
        None
    }
}

#[derive(Debug)]
struct State {
    next_id: i64,
    ports: BTreeMap<i64, PortSpec>,
    /// The ids in `ports` by parent port, ascending: the conflict check looks at the ports
    /// with the same parent port only (a scan of every port was ~2 % of the API thread with
    /// 1,000 ports, more with more).
    by_port: HashMap<i64, Vec<i64>>,
    shut_down: bool,
}

impl State {
    fn insert(&mut self, id: i64, spec: PortSpec) {
        // Ids are unique; this only keeps the index exact if one were reused.
        self.remove(id);
        let ids = self.by_port.entry(spec.parent_port).or_default();
        let at = ids.partition_point(|&i| i < id);
        ids.insert(at, id);
        self.ports.insert(id, spec);
    }

    fn remove(&mut self, id: i64) {
        if let Some(spec) = self.ports.remove(&id) {
            self.unindex(id, spec.parent_port);
        }
    }

    fn unindex(&mut self, id: i64, parent_port: i64) {
        if let Some(ids) = self.by_port.get_mut(&parent_port) {
            ids.retain(|&i| i != id);
            if ids.is_empty() {
                self.by_port.remove(&parent_port);
            }
        }
    }

    /// The ports with `spec`'s parent port, in id order (what the conflict check compares).
    fn same_port<'a>(&'a self, spec: &PortSpec) -> impl Iterator<Item = (i64, &'a PortSpec)> {
        self.by_port
            .get(&spec.parent_port)
            .into_iter()
            .flatten()
            .filter_map(|id| self.ports.get(id).map(|s| (*id, s)))
    }
}

/// Id allocation, conflict detection and serialisation on top of a [`PortBackend`].
pub struct Manager<B: PortBackend> {
    backend: B,
    state: Mutex<State>,
}

impl<B: PortBackend> Manager<B> {
    pub fn new(backend: B) -> Self {
        Manager {
            backend,
            state: Mutex::new(State {
                next_id: 1,
                ports: BTreeMap::new(),
                by_port: HashMap::new(),
                shut_down: false,
            }),
        }
    }

    pub fn backend(&self) -> &B {
        &self.backend
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the map half-updated (single inserts and
        // removes), so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn add(&self, spec: PortSpec, deferred: bool) -> Result<PortStatus, PortError> {
        let mut st = self.lock();
        if st.shut_down {
            return Err(PortError::Msg("port driver is shut down".into()));
        }
        spec.validate()?;
        // Same (proto, parentIP, parentPort) triple, first id wins.
        forwarder::spec::check_conflicts(&spec, st.same_port(&spec))?;
        let published = if deferred {
            self.backend.publish_deferred(st.next_id, &spec)?
        } else {
            self.backend.publish(st.next_id, &spec)?
        };
        let id = published.unwrap_or(st.next_id);
        if id >= st.next_id {
            st.next_id = id + 1;
        }
        st.insert(id, spec.clone());
        Ok(PortStatus { id, spec })
    }

    fn remove(&self, id: i64, deferred: bool) -> Result<(), PortError> {
        let mut st = self.lock();
        if !st.ports.contains_key(&id) {
            if self.backend.forwards_unknown_removals() {
                return self.backend.unpublish(id);
            }
            return Err(PortError::Msg(format!("unknown id: {id}")));
        }
        if deferred {
            self.backend.unpublish_deferred(id)?;
        } else {
            self.backend.unpublish(id)?;
        }
        st.remove(id);
        Ok(())
    }
}

impl<B: PortBackend> PortDriver for Manager<B> {
    fn info(&self) -> PortDriverInfo {
        self.backend.info()
    }

    fn add_port(&self, spec: PortSpec) -> Result<PortStatus, PortError> {
        self.add(spec, false)
    }

    fn add_port_deferred(&self, spec: PortSpec) -> Result<PortStatus, PortError> {
        self.add(spec, true)
    }

    fn remove_port(&self, id: i64) -> Result<(), PortError> {
        self.remove(id, false)
    }

    fn remove_port_deferred(&self, id: i64) -> Result<(), PortError> {
        self.remove(id, true)
    }

    fn flush_deferred(&self) {
        self.backend.flush();
    }

    fn prepare_next_add(&self) {
        self.backend.prepare_next_publish();
    }

    fn list_ports(&self) -> Vec<PortStatus> {
        self.lock()
            .ports
            .iter()
            .map(|(id, spec)| PortStatus {
                id: *id,
                spec: spec.clone(),
            })
            .collect()
    }

    fn quick_add(&self) -> bool {
        self.backend.quick_publish()
    }

    fn quick_remove(&self, id: i64) -> bool {
        match self.lock().ports.get(&id) {
            Some(spec) => self.backend.quick_unpublish(spec),
            // Answered from the map, unless the backend is asked.
            None => !self.backend.forwards_unknown_removals(),
        }
    }

    fn stats(&self, id: i64) -> Result<PortStats, PortError> {
        if !self.lock().ports.contains_key(&id) {
            return Err(PortError::Msg(format!("unknown id: {id}")));
        }
        self.backend.stats(id).ok_or_else(|| {
            PortError::Msg(format!(
                "port driver {} does not provide statistics",
                self.backend.info().driver
            ))
        })
    }

    fn shutdown(&self) {
        let mut st = self.lock();
        if st.shut_down {
            return;
        }
        st.shut_down = true;
        let ids: Vec<i64> = st.ports.keys().copied().collect();
        for id in ids {
            if let Err(e) = self.backend.unpublish(id) {
                crate::warn!("removing port {id}: {e}");
            }
            st.remove(id);
        }
        self.backend.shutdown();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    /// Records calls; fails publishing port 1 (like a bind error).
    #[derive(Default)]
    struct Fake {
        published: Mutex<Vec<i64>>,
        unpublished: AtomicUsize,
    }

    impl PortBackend for Fake {
        fn info(&self) -> PortDriverInfo {
            PortDriverInfo {
                driver: "fake".into(),
                protos: None,
                disallow_loopback_child_ip: false,
            }
        }
        fn publish(&self, next_id: i64, spec: &PortSpec) -> Result<Option<i64>, PortError> {
            if spec.parent_port == 1 {
                return Err(PortError::Msg(
                    "listen tcp :1: bind: permission denied".into(),
                ));
            }
            self.published.lock().unwrap().push(next_id);
            Ok(None)
        }
        fn unpublish(&self, _id: i64) -> Result<(), PortError> {
            self.unpublished.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
    }

    fn spec(pip: &str, pp: i64) -> PortSpec {
        PortSpec {
            proto: "tcp".into(),
            parent_ip: pip.into(),
            parent_port: pp,
            child_port: 80,
            child_ip: String::new(),
        }
    }

    #[test]
    fn ids_conflicts_and_removal() {
        let m = Manager::new(Fake::default());
        assert_eq!(m.add_port(spec("127.0.0.1", 8080)).unwrap().id, 1);
        // A failed add does not consume an id.
        assert!(m.add_port(spec("", 1)).is_err());
        assert_eq!(m.add_port(spec("", 8080)).unwrap().id, 2);
        assert_eq!(
            m.add_port(spec("", 8080)).unwrap_err().to_string(),
            "conflict with ID 2"
        );
        assert_eq!(
            m.add_port(spec("", 0)).unwrap_err().to_string(),
            r"invalid ParentPort: '\x00'"
        );
        m.remove_port(2).unwrap();
        assert_eq!(m.remove_port(2).unwrap_err().to_string(), "unknown id: 2");
        assert_eq!(m.remove_port(99).unwrap_err().to_string(), "unknown id: 99");
        // Ids are never reused.
        assert_eq!(m.add_port(spec("", 8080)).unwrap().id, 3);
        let ids: Vec<i64> = m.list_ports().iter().map(|p| p.id).collect();
        assert_eq!(ids, vec![1, 3]);
        m.shutdown();
        assert!(m.list_ports().is_empty());
        assert_eq!(m.backend().unpublished.load(Ordering::SeqCst), 3);
    }

    #[test]
    fn conflict_index_follows_adds_and_removals() {
        let m = Manager::new(Fake::default());
        assert_eq!(m.add_port(spec("127.0.0.1", 8080)).unwrap().id, 1);
        assert_eq!(m.add_port(spec("", 8080)).unwrap().id, 2);
        assert_eq!(m.add_port(spec("127.0.0.1", 8081)).unwrap().id, 3);
        let err = |ip, port| m.add_port(spec(ip, port)).unwrap_err().to_string();
        assert_eq!(err("127.0.0.1", 8080), "conflict with ID 1");
        assert_eq!(err("", 8080), "conflict with ID 2");
        assert_eq!(err("127.0.0.1", 8081), "conflict with ID 3");
        m.remove_port(1).unwrap();
        assert_eq!(m.add_port(spec("127.0.0.1", 8080)).unwrap().id, 4);
        assert_eq!(err("127.0.0.1", 8080), "conflict with ID 4");
        m.shutdown();
        let st = m.lock();
        assert!(st.ports.is_empty() && st.by_port.is_empty(), "{st:?}");
    }

    #[test]
    fn concurrent_adds_are_serialised() {
        let m = Arc::new(Manager::new(Fake::default()));
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let m = m.clone();
                std::thread::spawn(move || {
                    (0..50)
                        .filter(|i| m.add_port(spec("", 10000 + (t * 50 + i) % 100)).is_ok())
                        .count()
                })
            })
            .collect();
        let ok: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
        assert_eq!(ok, 100);
        let ids: Vec<i64> = m.list_ports().iter().map(|p| p.id).collect();
        assert_eq!(ids, (1..=100).collect::<Vec<_>>());
    }
}
