//! `--net=lxc-user-nic` (experimental).
use super::*;
pub(crate) struct LxcUserNic;
impl LxcUserNic {
    pub(crate) fn new(_opts: &Options, _ifname: String) -> Result<Self, NetError> {
        Err(NetError::Msg(
            "--net=lxc-user-nic is not implemented yet".into(),
        ))
    }
}
impl NetworkDriver for LxcUserNic {
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
pub(crate) fn child_dhcp(_cfg: &NetworkConfig, _d: Option<&Path>) -> Result<(), NetError> {
    Ok(())
}
