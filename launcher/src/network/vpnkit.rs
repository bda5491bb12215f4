//! `--net=vpnkit`.
use super::*;
pub(crate) struct Vpnkit;
impl Vpnkit {
    pub(crate) fn new(_opts: &Options, _ifname: String) -> Result<Self, NetError> {
        Err(NetError::Msg("--net=vpnkit is not implemented yet".into()))
    }
}
impl NetworkDriver for Vpnkit {
    fn setup(&mut self, _ctx: &SetupContext) -> Result<NetworkConfig, NetError> {
        unreachable!()
    }
    fn info(&self) -> Option<NetworkDriverInfo> {
        None
    }
    fn cleanup(&mut self) -> Result<(), NetError> {
        Ok(())
    }
}
pub(crate) fn child_start(_cfg: &NetworkConfig, _d: Option<&Path>) -> Result<(), NetError> {
    Ok(())
}
