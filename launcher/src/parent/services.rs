//! Services the parent starts once the child is ready: the port driver (the forwarder for
//! `builtin`, slirp4netns's API for `slirp4netns`), the `-p` ports, and the REST API on
//! `api.sock`. Each registers its cleanup with [`Cleanups`].

use std::os::fd::OwnedFd;
use std::path::Path;
use std::sync::Arc;

use super::Cleanups;
use crate::cli::{Options, PortDriverKind};
use crate::network::NetworkDriverInfo;
use crate::port::PortDriver;

/// Start the port driver and publish every `-p` port; returns the driver for the API.
pub fn start(
    opts: &Options,
    state_dir: &Path,
    _child_pid: i32,
    port_channel: Option<OwnedFd>,
    net_info: Option<&NetworkDriverInfo>,
    cleanups: &mut Cleanups,
) -> Result<Option<Arc<dyn PortDriver>>, String> {
    let driver: Arc<dyn PortDriver> = match opts.port_driver {
        PortDriverKind::None | PortDriverKind::Implicit => return Ok(None),
        PortDriverKind::Builtin => {
            let channel = port_channel.ok_or("builtin port driver: missing channel")?;
            let cfg = forwarder::ForwarderConfig {
                backend: None,
                workers: 0,
                source_ip_transparent: opts.source_ip_transparent,
                host_gateway_ip: host_gateway_ip(),
                argv0_is_rootlesskit: argv0_is_rootlesskit(),
                require_foreign_netns: true,
                ..Default::default()
            };
            let fwd = forwarder::Forwarder::start(channel, cfg)
                .map_err(|e| format!("failed to start the builtin port driver: {e}"))?;
            Arc::new(crate::port::builtin::new_driver(fwd))
        }
        PortDriverKind::Slirp4netns => {
            let child_ip = net_info.map(|i| i.child_ip.clone()).unwrap_or_default();
            Arc::new(crate::port::slirp4netns::new_driver(
                state_dir.join(".s4nn.sock"),
                child_ip,
            ))
        }
        PortDriverKind::GvisorTapVsock | PortDriverKind::Pesto => {
            return Err(format!(
                "port driver {:?} is not supported by this build",
                opts.port_driver
            ))
        }
    };
    crate::debug!(
        "port driver started driver={} protos={:?}",
        opts.port_driver.name(),
        driver.info().protos.unwrap_or_default()
    );
    let d = driver.clone();
    cleanups.push("port driver", move || {
        d.shutdown();
        Ok(())
    });
    for spec in &opts.publish {
        let st = driver.add_port(spec.clone()).map_err(|e| {
            format!(
                "failed to expose port {}: {e}",
                serde_json::to_string(spec).unwrap_or_default()
            )
        })?;
        crate::debug!(
            "port published id={} spec={}",
            st.id,
            serde_json::to_string(&st.spec).unwrap_or_default()
        );
    }
    Ok(Some(driver))
}

/// First non-loopback IPv4 address of the host (RootlessKit's `HostGatewayIP`).
fn host_gateway_ip() -> Option<std::net::IpAddr> {
    let addrs = nix::ifaddrs::getifaddrs().ok()?;
    for a in addrs {
        if let Some(sin) = a.address.as_ref().and_then(|s| s.as_sockaddr_in()) {
            let ip = sin.ip();
            if !ip.is_loopback() {
                return Some(std::net::IpAddr::V4(ip));
            }
        }
    }
    None
}

fn argv0_is_rootlesskit() -> bool {
    std::env::args_os()
        .next()
        .map(|a| Path::new(&a).file_name() == Some(std::ffi::OsStr::new("rootlesskit")))
        .unwrap_or(false)
}

/// Serve the REST API on `$STATE/api.sock` from a dedicated thread running a current-thread
/// tokio runtime. The socket is bound before returning, so it exists when the command starts.
pub fn start_api(
    state_dir: &Path,
    child_pid: i32,
    net_info: Option<NetworkDriverInfo>,
    port_driver: Option<Arc<dyn PortDriver>>,
    cleanups: &mut Cleanups,
) -> Result<(), String> {
    let path = state_dir.join("api.sock");
    let std_listener = std::os::unix::net::UnixListener::bind(&path)
        .map_err(|e| format!("failed to listen on {}: {e}", path.display()))?;
    std_listener
        .set_nonblocking(true)
        .map_err(|e| format!("failed to listen on {}: {e}", path.display()))?;
    crate::debug!("api listening path={}", path.display());
    let state = Arc::new(crate::api::server::ApiState::new(
        state_dir,
        child_pid,
        net_info,
        port_driver,
    ));
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let path_for_thread = path.clone();
    let thread = std::thread::Builder::new()
        .name("api".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    crate::error!(
                        "api server on {}: failed to build the tokio runtime: {e}",
                        path_for_thread.display()
                    );
                    return;
                }
            };
            rt.block_on(async move {
                let listener = match tokio::net::UnixListener::from_std(std_listener) {
                    Ok(l) => l,
                    Err(e) => {
                        crate::error!(
                            "api server on {}: failed to register the listener with tokio: {e}",
                            path_for_thread.display()
                        );
                        return;
                    }
                };
                crate::api::server::run(listener, state, async {
                    let _ = stop_rx.await;
                })
                .await;
            });
        })
        .map_err(|e| {
            format!(
                "api server on {}: failed to spawn its thread: {e}",
                path.display()
            )
        })?;
    cleanups.push("api server", move || {
        let _ = stop_tx.send(());
        thread
            .join()
            .map_err(|_| "api server thread panicked".to_string())
    });
    Ok(())
}
