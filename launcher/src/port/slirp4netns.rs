//! `--port-driver=slirp4netns`: port forwarding done by slirp4netns itself, driven over its API
//! socket (`$STATE/.s4nn.sock`, started with `--api-socket`).
//!
//! One request per connection: write the JSON request, `shutdown(SHUT_WR)`, read the reply to
//! EOF. Ids are slirp4netns's own hostfwd ids. IPv6 is not supported by slirp4netns's hostfwd.

use std::io::{Read, Write};
use std::net::{IpAddr, Shutdown};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::Duration;

use forwarder::PortSpec;
use serde_json::{json, Map, Value};

use super::{Manager, PortBackend, PortDriverInfo, PortError};

/// How long one request to slirp4netns may take.
const TIMEOUT: Duration = Duration::from_secs(10);
/// Replies are tiny; anything larger is not slirp4netns.
const MAX_REPLY: u64 = 1 << 20;

/// Talks to slirp4netns's API socket.
pub struct Slirp4netnsBackend {
    socket: PathBuf,
    /// The network driver's child IP (`10.0.2.100`), the default `guest_addr`.
    child_ip: String,
}

impl Slirp4netnsBackend {
    pub fn new(socket: PathBuf, child_ip: String) -> Self {
        Slirp4netnsBackend { socket, child_ip }
    }

    /// One request/reply round trip; errors in `reply.error` become `reply.Error: map[...]`.
    fn call(&self, req: &Value) -> Result<Map<String, Value>, PortError> {
        let io = |what: &str, e: std::io::Error| {
            PortError::Msg(format!("{what} {}: {e}", self.socket.display()))
        };
        let mut c = UnixStream::connect(&self.socket).map_err(|e| io("dial", e))?;
        c.set_read_timeout(Some(TIMEOUT))
            .map_err(|e| io("set timeout on", e))?;
        c.set_write_timeout(Some(TIMEOUT))
            .map_err(|e| io("set timeout on", e))?;
        let mut b = serde_json::to_vec(req).map_err(|e| PortError::Msg(e.to_string()))?;
        b.push(b'\n');
        c.write_all(&b).map_err(|e| io("write to", e))?;
        c.shutdown(Shutdown::Write).map_err(|e| io("shutdown", e))?;
        let mut reply = Vec::new();
        c.take(MAX_REPLY)
            .read_to_end(&mut reply)
            .map_err(|e| io("read from", e))?;
        let v: Value = serde_json::from_slice(&reply).map_err(|e| {
            PortError::Msg(format!(
                "unexpected reply from slirp4netns: {e}: {:?}",
                String::from_utf8_lossy(&reply)
            ))
        })?;
        if let Some(err) = v.get("error").and_then(Value::as_object) {
            if !err.is_empty() {
                return Err(PortError::Msg(format!(
                    "reply.Error: {}",
                    go_fmt_value(&Value::Object(err.clone()))
                )));
            }
        }
        Ok(v.get("return")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default())
    }
}

/// The driver the parent builds for `--port-driver=slirp4netns`.
pub fn new_driver(socket: PathBuf, child_ip: String) -> Manager<Slirp4netnsBackend> {
    Manager::new(Slirp4netnsBackend::new(socket, child_ip))
}

/// `portDriver` of the API info.
pub fn info() -> PortDriverInfo {
    PortDriverInfo {
        driver: "slirp4netns".into(),
        protos: Some(
            ["tcp", "tcp4", "udp", "udp4"]
                .iter()
                .map(|s| s.to_string())
                .collect(),
        ),
        disallow_loopback_child_ip: true,
    }
}

impl PortBackend for Slirp4netnsBackend {
    fn info(&self) -> PortDriverInfo {
        info()
    }

    fn publish(&self, _next_id: i64, spec: &PortSpec) -> Result<Option<i64>, PortError> {
        if spec.proto.ends_with('6') {
            return Err(PortError::Msg(format!(
                "unsupported protocol {}",
                forwarder::spec::go_quote(&spec.proto)
            )));
        }
        let proto = spec.proto.strip_suffix('4').unwrap_or(&spec.proto);
        let guest_addr = if spec.child_ip.is_empty() {
            self.child_ip.clone()
        } else {
            match forwarder::spec::go_parse_ip(&spec.child_ip) {
                Some(IpAddr::V4(a)) => a.to_string(),
                Some(IpAddr::V6(a)) => match a.to_ipv4_mapped() {
                    Some(a) => a.to_string(),
                    None => {
                        return Err(PortError::Msg(format!(
                            "unsupported IP (v6?): {}",
                            spec.child_ip
                        )))
                    }
                },
                None => {
                    return Err(PortError::Msg(format!(
                        "invalid IP: {}",
                        forwarder::spec::go_quote(&spec.child_ip)
                    )))
                }
            }
        };
        let ret = self.call(&json!({
            "execute": "add_hostfwd",
            "arguments": {
                "proto": proto,
                "host_addr": spec.parent_ip,
                "host_port": spec.parent_port,
                "guest_addr": guest_addr,
                "guest_port": spec.child_port,
            }
        }))?;
        match ret.get("id").and_then(Value::as_f64) {
            // slirp4netns ids are small positive integers.
            #[allow(clippy::cast_possible_truncation)]
            Some(id) if id.fract() == 0.0 && (0.0..9.0e15).contains(&id) => Ok(Some(id as i64)),
            _ => Err(PortError::Msg(format!(
                "unexpected reply: {}",
                go_fmt_value(&Value::Object(ret))
            ))),
        }
    }

    fn unpublish(&self, id: i64) -> Result<(), PortError> {
        self.call(&json!({"execute": "remove_hostfwd", "arguments": {"id": id}}))?;
        Ok(())
    }

    fn forwards_unknown_removals(&self) -> bool {
        true
    }
}

/// Go's `%v` of a decoded JSON value (`map[desc:bad request: ...]`, keys sorted).
fn go_fmt_value(v: &Value) -> String {
    match v {
        Value::Null => "<nil>".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => {
            let f = n.as_f64().unwrap_or(0.0);
            // Go's %v of a float64 is %g: integers print without a fraction.
            if f.fract() == 0.0 && f.abs() < 1e21 {
                format!("{f:.0}")
            } else {
                f.to_string()
            }
        }
        Value::String(s) => s.clone(),
        Value::Array(a) => format!(
            "[{}]",
            a.iter().map(go_fmt_value).collect::<Vec<_>>().join(" ")
        ),
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            format!(
                "map[{}]",
                keys.iter()
                    .map(|k| format!("{k}:{}", go_fmt_value(&m[*k])))
                    .collect::<Vec<_>>()
                    .join(" ")
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_map_formatting() {
        let v: Value =
            serde_json::from_str(r#"{"desc":"bad request: remove_hostfwd: bad arguments.id"}"#)
                .unwrap();
        assert_eq!(
            go_fmt_value(&v),
            "map[desc:bad request: remove_hostfwd: bad arguments.id]"
        );
        let v: Value = serde_json::from_str(r#"{"b":1,"a":[true,null]}"#).unwrap();
        assert_eq!(go_fmt_value(&v), "map[a:[true <nil>] b:1]");
    }

    #[test]
    fn rejects_ipv6_before_talking_to_slirp4netns() {
        let b = Slirp4netnsBackend::new("/nonexistent/.s4nn.sock".into(), "10.0.2.100".into());
        let spec = |proto: &str, cip: &str| PortSpec {
            proto: proto.into(),
            parent_ip: String::new(),
            parent_port: 8080,
            child_port: 80,
            child_ip: cip.into(),
        };
        assert_eq!(
            b.publish(1, &spec("tcp6", "")).unwrap_err().to_string(),
            r#"unsupported protocol "tcp6""#
        );
        assert_eq!(
            b.publish(1, &spec("udp4", "::1")).unwrap_err().to_string(),
            "unsupported IP (v6?): ::1"
        );
        assert!(b
            .publish(1, &spec("tcp", ""))
            .unwrap_err()
            .to_string()
            .starts_with("dial /nonexistent/.s4nn.sock: "));
    }

    /// Processes started for the test, killed (by pid) on drop.
    struct Procs(Vec<std::process::Child>);

    impl Drop for Procs {
        fn drop(&mut self) {
            for c in self.0.iter_mut().rev() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }

    fn as_rktest(cmd: &mut std::process::Command) {
        use std::os::unix::process::CommandExt;
        if nix::unistd::geteuid().is_root() {
            if let Ok(Some(u)) = nix::unistd::User::from_name("rktest") {
                cmd.uid(u.uid.as_raw()).gid(u.gid.as_raw());
            }
        }
    }

    /// The driver against a real `slirp4netns --api-socket` attached to a fresh
    /// `unshare --user --map-root-user --net` namespace (as `rktest` when run as root).
    #[test]
    fn against_real_slirp4netns() {
        use crate::port::PortDriver;
        use std::process::{Command, Stdio};
        use std::time::{Duration, Instant};
        if !std::path::Path::new("/usr/bin/slirp4netns").exists() {
            panic!("slirp4netns is not installed: apt-get install slirp4netns (hack/test.sh does)");
        }
        let dir = std::path::PathBuf::from(format!("/tmp/rkrs-s4nn-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o777))
            .unwrap();
        let mut procs = Procs(Vec::new());
        let mut ns = Command::new("unshare");
        ns.args(["--user", "--map-root-user", "--net", "sleep", "60"])
            .stdin(Stdio::null());
        as_rktest(&mut ns);
        procs.0.push(ns.spawn().unwrap());
        let pid = procs.0[0].id();
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default() != "sleep\n"
        {
            assert!(Instant::now() < deadline, "unshare did not exec sleep");
            std::thread::sleep(Duration::from_millis(20));
        }
        let sock = dir.join(".s4nn.sock");
        let mut s4 = Command::new("slirp4netns");
        s4.args(["--configure", "--mtu=65520", "--api-socket"])
            .arg(&sock)
            .arg(pid.to_string())
            .arg("tap0")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        as_rktest(&mut s4);
        procs.0.push(s4.spawn().unwrap());
        while !sock.exists() {
            assert!(
                Instant::now() < deadline,
                "slirp4netns did not create its API socket"
            );
            std::thread::sleep(Duration::from_millis(20));
        }

        let d = new_driver(sock, "10.0.2.100".into());
        let spec = |proto: &str, pip: &str, pp: i64| PortSpec {
            proto: proto.into(),
            parent_ip: pip.into(),
            parent_port: pp,
            child_port: 80,
            child_ip: String::new(),
        };
        let a = d.add_port(spec("tcp", "127.0.0.1", 19601)).unwrap();
        assert!(a.id >= 1);
        // slirp4netns really listens on the host.
        assert!(std::net::TcpStream::connect("127.0.0.1:19601").is_ok());
        assert_eq!(
            d.add_port(spec("tcp", "127.0.0.1", 19601))
                .unwrap_err()
                .to_string(),
            format!("conflict with ID {}", a.id)
        );
        assert_eq!(
            d.add_port(spec("tcp6", "", 19602)).unwrap_err().to_string(),
            r#"unsupported protocol "tcp6""#
        );
        let b = d.add_port(spec("udp4", "", 19603)).unwrap();
        assert!(b.id > a.id);
        assert_eq!(d.list_ports().len(), 2);
        // Unknown ids go to slirp4netns, whose error is passed through like RootlessKit does.
        assert_eq!(
            d.remove_port(99).unwrap_err().to_string(),
            "reply.Error: map[desc:bad request: remove_hostfwd: bad arguments.id]"
        );
        d.remove_port(a.id).unwrap();
        assert!(std::net::TcpStream::connect("127.0.0.1:19601").is_err());
        let c = d.add_port(spec("tcp", "127.0.0.1", 19601)).unwrap();
        assert_ne!(c.id, a.id);
        d.shutdown();
        assert!(d.list_ports().is_empty());
        drop(procs);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
