//! Services the parent starts once the child is ready: the port driver (the forwarder for
//! `builtin`), the `-p` ports, and the REST API on `api.sock`. Each registers its cleanup.

use std::os::fd::OwnedFd;
use std::path::Path;

use super::Cleanups;
use crate::cli::{Options, PortDriverKind};
use crate::network::NetworkDriverInfo;

pub fn start(
    opts: &Options,
    _state_dir: &Path,
    _child_pid: i32,
    _port_channel: Option<OwnedFd>,
    _net_info: Option<NetworkDriverInfo>,
    _cleanups: &mut Cleanups,
) -> Result<(), String> {
    match opts.port_driver {
        PortDriverKind::None | PortDriverKind::Implicit => Ok(()),
        _ => Err("port drivers are not built yet".into()),
    }
}

pub fn start_api(state_dir: &Path, cleanups: &mut Cleanups) -> Result<(), String> {
    let path = state_dir.join("api.sock");
    let l = std::os::unix::net::UnixListener::bind(&path)
        .map_err(|e| format!("failed to listen on {}: {e}", path.display()))?;
    cleanups.push("api server", move || {
        drop(l);
        Ok(())
    });
    Ok(())
}
