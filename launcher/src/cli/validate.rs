//! Parent-side validation of the `rootlesskit` flags in RootlessKit's order and texts
//! (`createParentOpt`), plus the checks of later stages on typed [`Options`].

use std::path::PathBuf;

use super::*;

fn check_evacuate(evac: Option<&str>, cgroupns: bool, pidns: bool) -> Result<(), CliError> {
    if evac.is_some_and(|e| !e.is_empty()) {
        if !cgroupns {
            return Err(invalid("evacuate-cgroup2 requires --cgroupns"));
        }
        if !pidns {
            return Err(invalid("evacuate-cgroup2 requires --pidns"));
        }
    }
    Ok(())
}

fn check_mtu(mtu: i64) -> Result<(), CliError> {
    if !(0..=65521).contains(&mtu) {
        return Err(invalid(format!("mtu must be <= 65521, got {mtu}")));
    }
    Ok(())
}

/// Go's `net.ParseCIDR` plus RootlessKit's "network address" rule.
fn check_cidr(s: &str) -> Result<(), CliError> {
    if s.is_empty() {
        return Ok(());
    }
    let bad = || invalid(format!("invalid CIDR address: {s}"));
    let (ip, len) = s.split_once('/').ok_or_else(bad)?;
    let ip: std::net::IpAddr = goparse::parse_ip(ip).ok_or_else(bad)?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    if len.is_empty() || !len.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let len: u32 = len.parse().map_err(|_| bad())?;
    if len > max {
        return Err(bad());
    }
    let is_network = match ip {
        std::net::IpAddr::V4(v4) => {
            let bits = u32::from(v4);
            let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
            bits & !mask == 0
        }
        std::net::IpAddr::V6(v6) => {
            let bits = u128::from(v6);
            let mask = if len == 0 {
                0
            } else {
                u128::MAX << (128 - len)
            };
            bits & !mask == 0
        }
    };
    if !is_network {
        return Err(invalid(
            "cidr must be like 10.0.2.0/24, not like 10.0.2.100/24",
        ));
    }
    Ok(())
}

fn check_ifname(ifname: Option<&str>) -> Result<(), CliError> {
    if ifname.is_some_and(|i| i.contains('/')) {
        return Err(invalid("ifname must not contain \"/\""));
    }
    Ok(())
}

/// The per-network checks of RootlessKit's `switch net` (binaries are looked up later).
#[allow(clippy::too_many_arguments)]
fn check_net(
    net: NetDriver,
    cidr: Option<&str>,
    ifname: Option<&str>,
    port_driver: &str,
    ipv6: bool,
    sandbox: &str,
    seccomp: &str,
    detach_netns: bool,
) -> Result<(), CliError> {
    let has_cidr = cidr.is_some_and(|c| !c.is_empty());
    let has_ifname = ifname.is_some_and(|c| !c.is_empty());
    let n = net.name();
    match net {
        NetDriver::Host | NetDriver::None => {
            if has_cidr {
                return Err(invalid(format!(
                    "custom cidr is not supported for --net={n}"
                )));
            }
            if has_ifname {
                return Err(invalid(format!("ifname cannot be specified for --net={n}")));
            }
            if net == NetDriver::None && !matches!(port_driver, "none" | "builtin") {
                return Err(invalid(
                    "network \"none\" requires either port driver \"none\" or \"builtin\"",
                ));
            }
        }
        NetDriver::Pasta => {
            if !matches!(port_driver, "none" | "implicit" | "pesto") {
                return Err(invalid(
                    "network \"pasta\" requires port driver \"none\" or \"implicit\"",
                ));
            }
        }
        NetDriver::Slirp4netns => {
            match sandbox {
                "auto" | "false" | "" => {}
                "true" => {
                    if detach_netns {
                        return Err(invalid("--slirp4netns-sandbox conflicts with --detach-netns (https://github.com/rootless-containers/slirp4netns/issues/317)"));
                    }
                }
                s => {
                    return Err(invalid(format!(
                        "unsupported slirp4netns-sandbox mode: {}",
                        goparse::quote(s)
                    )))
                }
            }
            if !matches!(seccomp, "auto" | "true" | "false" | "") {
                return Err(invalid(format!(
                    "unsupported slirp4netns-seccomp mode: {}",
                    goparse::quote(seccomp)
                )));
            }
        }
        NetDriver::Vpnkit | NetDriver::LxcUserNic => {
            if has_cidr {
                return Err(invalid(format!(
                    "custom cidr is not supported for --net={n}"
                )));
            }
        }
        NetDriver::GvisorTapVsock => {
            if ipv6 {
                return Err(invalid("--ipv6 is not supported for gvisor-tap-vsock"));
            }
        }
    }
    Ok(())
}

/// RootlessKit's `switch port-driver`.
fn check_port(port: PortDriverKind, net: NetDriver, publishing: bool) -> Result<(), CliError> {
    match port {
        PortDriverKind::None => {
            if publishing {
                return Err(invalid(
                    "port driver \"none\" does not support publishing ports",
                ));
            }
        }
        PortDriverKind::Implicit | PortDriverKind::Pesto => {
            if net != NetDriver::Pasta {
                return Err(invalid("port driver requires pasta network"));
            }
        }
        PortDriverKind::Slirp4netns => {
            if net != NetDriver::Slirp4netns {
                return Err(invalid("port driver requires slirp4netns network"));
            }
        }
        PortDriverKind::Builtin => {
            if net == NetDriver::Host {
                return Err(invalid("port driver requires non-host network"));
            }
        }
        PortDriverKind::GvisorTapVsock => {
            if net == NetDriver::Host {
                return Err(invalid("port driver requires non-host network"));
            }
            if net != NetDriver::GvisorTapVsock {
                // rootlesskit-rs text: upstream fails later, when the port driver starts.
                return Err(invalid("port driver requires gvisor-tap-vsock network"));
            }
        }
    }
    Ok(())
}

/// Builds [`Options`] from the raw flags, failing like RootlessKit's `createParentOpt`
/// (same checks, same order, same texts).
pub(super) fn build(raw: &Raw) -> Result<Options, CliError> {
    let non_empty = |s: String| if s.is_empty() { None } else { Some(s) };
    let evac = non_empty(raw.string("evacuate-cgroup2"));
    let pidns = raw.bool("pidns");
    let cgroupns = raw.bool("cgroupns");
    check_evacuate(evac.as_deref(), cgroupns, pidns)?;
    let mtu = raw.int("mtu");
    check_mtu(mtu)?;
    let cidr = non_empty(raw.string("cidr"));
    check_cidr(cidr.as_deref().unwrap_or(""))?;
    let ifname = non_empty(raw.string("ifname"));
    check_ifname(ifname.as_deref())?;
    let net_s = raw.string("net");
    let net = NetDriver::from_name(&net_s)
        .ok_or_else(|| invalid(format!("unknown network mode: {net_s}")))?;
    let port_s = raw.string("port-driver");
    let sandbox_s = raw.string("slirp4netns-sandbox");
    let seccomp_s = raw.string("slirp4netns-seccomp");
    let ipv6 = raw.bool("ipv6");
    let detach_netns = raw.bool("detach-netns");
    check_net(
        net,
        cidr.as_deref(),
        ifname.as_deref(),
        &port_s,
        ipv6,
        &sandbox_s,
        &seccomp_s,
        detach_netns,
    )?;
    let port_driver = PortDriverKind::from_name(&port_s)
        .ok_or_else(|| invalid(format!("unknown port driver: {port_s}")))?;
    let publish_raw = raw.list("publish");
    check_port(port_driver, net, !publish_raw.is_empty())?;
    let publish = publish_raw
        .iter()
        .map(|s| parse_publish(s))
        .collect::<Result<Vec<_>, _>>()?;

    // Values RootlessKit only looks at later (child / id map) or only for one network driver.
    let mut deferred = Deferred::default();
    let reaper_s = raw.string("reaper");
    let reaper = match reaper_s.as_str() {
        "auto" => AutoBool::Auto,
        "true" => AutoBool::True,
        "false" => AutoBool::False,
        other => {
            deferred.child = Some(format!("unknown reaper mode: {other}"));
            AutoBool::Auto
        }
    };
    let subid_s = raw.string("subid-source");
    let subid_source = match subid_s.as_str() {
        "auto" | "" => SubidSource::Auto,
        "dynamic" => SubidSource::Dynamic,
        "static" => SubidSource::Static,
        other => {
            deferred.idmap = Some(format!("unknown subid source {}", goparse::quote(other)));
            SubidSource::Auto
        }
    };
    let state_dir = non_empty(raw.string("state-dir")).map(PathBuf::from);
    Ok(Options {
        debug: raw.bool("debug"),
        state_dir,
        net,
        // check_mtu guarantees 0..=65521.
        mtu: u32::try_from(mtu).unwrap_or(0),
        cidr,
        ifname,
        disable_host_loopback: raw.bool("disable-host-loopback"),
        ipv6,
        detach_netns,
        pasta_binary: raw.string("pasta-binary"),
        slirp4netns_binary: raw.string("slirp4netns-binary"),
        slirp4netns_sandbox: AutoBool::from_name(&sandbox_s).unwrap_or(AutoBool::False),
        slirp4netns_seccomp: AutoBool::from_name(&seccomp_s).unwrap_or(AutoBool::False),
        vpnkit_binary: raw.string("vpnkit-binary"),
        lxc_user_nic_binary: raw.string("lxc-user-nic-binary"),
        lxc_user_nic_bridge: raw.string("lxc-user-nic-bridge"),
        port_driver,
        publish,
        source_ip_transparent: raw.bool("source-ip-transparent"),
        copy_up: raw.list("copy-up").into_iter().map(PathBuf::from).collect(),
        copy_up_mode: raw.string("copy-up-mode"),
        propagation: raw.string("propagation"),
        pidns,
        cgroupns,
        utsns: raw.bool("utsns"),
        ipcns: raw.bool("ipcns"),
        reaper,
        evacuate_cgroup2: evac,
        subid_source,
        command: Vec::new(),
        check: false,
        deferred,
        socket_activation: SocketActivation::from_env(),
    })
}

/// Go's `filepath.Clean` for absolute and relative paths.
pub fn clean_path(p: &str) -> String {
    let rooted = p.starts_with('/');
    let mut out: Vec<&str> = Vec::new();
    for part in p.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if out.last().is_some_and(|l| *l != "..") {
                    out.pop();
                } else if !rooted {
                    out.push("..");
                }
            }
            x => out.push(x),
        }
    }
    let joined = out.join("/");
    match (rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".to_string(),
        (false, false) => joined,
    }
}

/// A feature of RootlessKit that rootlesskit-rs may not have built yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Feature {
    Net(NetDriver),
    Port(PortDriverKind),
    DetachNetns,
    SourceIpTransparent,
    EvacuateCgroup2,
    Ipv6,
}

/// Features not built yet; the lead lists them here and `unsupported_features()` reports them.
/// Everything is assumed built for now.
pub const UNBUILT_FEATURES: &[Feature] = &[];

impl Options {
    /// RootlessKit's parent-side validation on typed options (same texts and order as `parse`).
    pub fn validate(&self) -> Result<(), CliError> {
        check_evacuate(self.evacuate_cgroup2.as_deref(), self.cgroupns, self.pidns)?;
        check_mtu(i64::from(self.mtu))?;
        check_cidr(self.cidr.as_deref().unwrap_or(""))?;
        check_ifname(self.ifname.as_deref())?;
        let ab = |a: AutoBool| match a {
            AutoBool::Auto => "auto",
            AutoBool::True => "true",
            AutoBool::False => "false",
        };
        check_net(
            self.net,
            self.cidr.as_deref(),
            self.ifname.as_deref(),
            self.port_driver.name(),
            self.ipv6,
            ab(self.slirp4netns_sandbox),
            ab(self.slirp4netns_seccomp),
            self.detach_netns,
        )?;
        check_port(self.port_driver, self.net, !self.publish.is_empty())?;
        for spec in &self.publish {
            spec.validate()
                .map_err(|e| CliError::Invalid(e.to_string()))?;
        }
        if self.command.is_empty() && !self.check {
            return Err(invalid("no command specified"));
        }
        Ok(())
    }

    /// The checks RootlessKit makes in the child (it prints them as `[rootlesskit:child ] error: ...`
    /// and the parent then fails with `child exited: exit status 1`): reaper, copy-up mode,
    /// propagation vs copy-up, `/tmp`.
    pub fn validate_child(&self) -> Result<(), CliError> {
        if let Some(e) = &self.deferred.child {
            return Err(invalid(e.clone()));
        }
        if self.reaper == AutoBool::True && !self.pidns {
            return Err(invalid("reaper requires --pidns"));
        }
        if self.copy_up_mode != "tmpfs+symlink" {
            return Err(invalid(format!(
                "unknown copy-up mode: {}",
                self.copy_up_mode
            )));
        }
        if !self.copy_up.is_empty() && matches!(self.propagation.as_str(), "rshared" | "shared") {
            return Err(invalid(format!(
                "propagation {} does not support copy-up driver {}",
                self.propagation, self.copy_up_mode
            )));
        }
        for d in &self.copy_up {
            if clean_path(&d.to_string_lossy()) == "/tmp" {
                return Err(invalid("/tmp cannot be copied up"));
            }
        }
        Ok(())
    }

    /// The error RootlessKit reports while writing the id maps for a bad `--subid-source`
    /// (full text: `failed to setup UID/GID map: failed to compute uid/gid map: unknown subid source "x"`).
    pub fn idmap_error(&self) -> Option<CliError> {
        self.deferred.idmap.as_ref().map(|e| {
            invalid(format!(
                "failed to setup UID/GID map: failed to compute uid/gid map: {e}"
            ))
        })
    }

    /// RootlessKit's `exec.LookPath` of the network driver's binary (pasta, slirp4netns, vpnkit,
    /// lxc-user-nic), done while creating the parent options; `Ok(None)` for drivers without one.
    /// Error text as Go's: `exec: "vpnkit": executable file not found in $PATH`.
    pub fn lookup_driver_binary(&self) -> Result<Option<PathBuf>, CliError> {
        let bin = match self.net {
            NetDriver::Pasta => &self.pasta_binary,
            NetDriver::Slirp4netns => &self.slirp4netns_binary,
            NetDriver::Vpnkit => &self.vpnkit_binary,
            NetDriver::LxcUserNic => &self.lxc_user_nic_binary,
            NetDriver::Host | NetDriver::None | NetDriver::GvisorTapVsock => return Ok(None),
        };
        crate::check::look_path_go(bin)
            .map(Some)
            .map_err(CliError::Invalid)
    }

    /// Whether the reaper runs (`auto` = `--pidns`).
    pub fn reaper_enabled(&self) -> bool {
        match self.reaper {
            AutoBool::Auto => self.pidns,
            AutoBool::True => true,
            AutoBool::False => false,
        }
    }

    /// The effective MTU (0 = driver default).
    pub fn effective_mtu(&self) -> u32 {
        if self.mtu != 0 {
            return self.mtu;
        }
        match self.net {
            NetDriver::Slirp4netns | NetDriver::Pasta | NetDriver::GvisorTapVsock => 65520,
            NetDriver::Vpnkit | NetDriver::LxcUserNic => 1500,
            NetDriver::Host | NetDriver::None => 0,
        }
    }

    /// The warnings RootlessKit prints while creating the parent options (without prefix).
    pub fn warnings(&self) -> Vec<String> {
        let mut w = Vec::new();
        let n = self.net.name();
        if self.ipv6 {
            w.push("ipv6 is experimental".to_string());
            if !matches!(self.net, NetDriver::Pasta | NetDriver::Slirp4netns) {
                w.push(format!("--ipv6 is discarded for --net={n}"));
            }
        }
        if !self.disable_host_loopback && !matches!(self.net, NetDriver::Host | NetDriver::None) {
            w.push("specifying --disable-host-loopback is highly recommended to prohibit connecting to 127.0.0.1:* on the host namespace (requires pasta, slirp4netns, or VPNKit)".to_string());
        }
        match self.net {
            NetDriver::Host | NetDriver::None if self.mtu != 0 => {
                w.push(format!("unsupported mtu for --net={n}: {}", self.mtu));
            }
            NetDriver::Pasta => w.push("\"pasta\" network driver is experimental. Needs very recent version of pasta (see docs/network.md).".to_string()),
            NetDriver::LxcUserNic => {
                w.push("\"lxc-user-nic\" network driver is experimental".to_string());
                if !self.disable_host_loopback {
                    w.push("--disable-host-loopback is implicitly set for lxc-user-nic".to_string());
                }
            }
            NetDriver::GvisorTapVsock => {
                w.push("\"gvisor-tap-vsock\" network driver is experimental".to_string());
                if self.disable_host_loopback {
                    w.push("\"--disable-host-loopback\" is not yet supported for gvisor-tap-vsock".to_string());
                }
            }
            _ => {}
        }
        w
    }

    /// The features these options need that rootlesskit-rs has not built ([`UNBUILT_FEATURES`]),
    /// each as an error naming the flag (exit 1 before anything starts).
    pub fn unsupported_features(&self) -> Vec<CliError> {
        self.unsupported_features_in(UNBUILT_FEATURES)
    }

    /// [`Self::unsupported_features`] against an explicit list (for tests).
    pub fn unsupported_features_in(&self, unbuilt: &[Feature]) -> Vec<CliError> {
        let mut needed: Vec<(Feature, String)> = vec![
            (Feature::Net(self.net), format!("--net={}", self.net.name())),
            (
                Feature::Port(self.port_driver),
                format!("--port-driver={}", self.port_driver.name()),
            ),
        ];
        if self.detach_netns {
            needed.push((Feature::DetachNetns, "--detach-netns".into()));
        }
        if self.source_ip_transparent && self.port_driver == PortDriverKind::Builtin {
            needed.push((
                Feature::SourceIpTransparent,
                "--source-ip-transparent".into(),
            ));
        }
        if self.evacuate_cgroup2.is_some() {
            needed.push((Feature::EvacuateCgroup2, "--evacuate-cgroup2".into()));
        }
        if self.ipv6 {
            needed.push((Feature::Ipv6, "--ipv6".into()));
        }
        needed
            .into_iter()
            .filter(|(f, _)| unbuilt.contains(f))
            .map(|(_, flag)| invalid(format!("{flag} is not supported by rootlesskit-rs yet")))
            .collect()
    }
}
