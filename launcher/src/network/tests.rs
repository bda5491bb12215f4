//! Unit tests of the network drivers (argv, CIDR math, validation texts, file contents), plus an
//! end-to-end self test that runs a driver against a forked child in fresh namespaces without
//! the rest of the launcher (`RK_NET_SELFTEST=1`, run the test binary as a non-root user with
//! `--ignored selftest`).

use super::*;
use crate::cli::{AutoBool, PortDriverKind};

pub(crate) fn test_opts(net: NetDriver) -> Options {
    Options {
        net,
        lxc_user_nic_binary: "/usr/libexec/lxc/lxc-user-nic".into(),
        command: vec!["true".into()],
        ..Default::default()
    }
}

fn err_text<T>(r: Result<T, NetError>) -> String {
    match r {
        Ok(_) => panic!("expected an error"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn cidr_math() {
    let c = Cidr::parse("10.0.2.0/24").unwrap();
    assert_eq!(c.nth(100).unwrap().to_string(), "10.0.2.100");
    assert_eq!(c.nth(2).unwrap().to_string(), "10.0.2.2");
    assert_eq!(c.nth(3).unwrap().to_string(), "10.0.2.3");
    let c = Cidr::parse("10.8.0.0/16").unwrap();
    assert_eq!(c.nth(100).unwrap().to_string(), "10.8.0.100");
    assert_eq!(c.to_string(), "10.8.0.0/16");
    assert_eq!(
        err_text(Cidr::parse("10.0.2.100/24")),
        "cidr must be like 10.0.2.0/24, not like 10.0.2.100/24"
    );
    assert_eq!(err_text(Cidr::parse("foo")), "invalid CIDR address: foo");
    assert_eq!(
        err_text(Cidr::parse("10.0.2.0/33")),
        "invalid CIDR address: 10.0.2.0/33"
    );
    assert!(Cidr::parse("10.0.2.0/30").unwrap().nth(100).is_err());
    let cfg = cidr_config(
        "slirp4netns",
        &Cidr::parse("192.168.5.0/24").unwrap(),
        "tap0",
        65520,
    )
    .unwrap();
    assert_eq!(cfg.ip.unwrap().to_string(), "192.168.5.100");
    assert_eq!(cfg.netmask, 24);
    assert_eq!(cfg.gateway.unwrap().to_string(), "192.168.5.2");
    assert_eq!(cfg.dns[0].to_string(), "192.168.5.3");
}

#[test]
fn slirp4netns_argv() {
    use slirp4netns::{build_args, Args};
    let mut a = Args {
        mtu: 65520,
        disable_host_loopback: true,
        cidr: None,
        api_socket: Some("/tmp/rk-t4/s4/.s4nn.sock".into()),
        sandbox: true,
        seccomp: true,
        ipv6: false,
        ifname: "tap0".into(),
    };
    assert_eq!(
        build_args(&a, 8800, None).join(" "),
        "--mtu 65520 -r 3 --disable-host-loopback --api-socket /tmp/rk-t4/s4/.s4nn.sock --enable-sandbox --enable-seccomp 8800 tap0"
    );
    a.disable_host_loopback = false;
    a.api_socket = None;
    a.sandbox = false;
    a.seccomp = false;
    a.ipv6 = true;
    a.cidr = Some(Cidr::parse("10.9.0.0/24").unwrap());
    assert_eq!(
        build_args(&a, 42, Some(Path::new("/proc/42/root/tmp/s/netns"))).join(" "),
        "--mtu 65520 -r 3 --cidr 10.9.0.0/24 --enable-ipv6 --userns-path=/proc/42/ns/user --netns-type=path /proc/42/root/tmp/s/netns tap0"
    );
}

#[test]
fn slirp4netns_features_and_modes() {
    use slirp4netns::{parse_features, resolve_sandbox_seccomp};
    assert!(parse_features("usage: slirp4netns --mtu", "slirp4netns").is_err());
    let mut f = parse_features(
        "--netns-type --cidr --disable-host-loopback --api-socket --enable-sandbox --enable-seccomp --enable-ipv6",
        "slirp4netns",
    )
    .unwrap();
    f.kernel_seccomp = true;
    assert_eq!(
        resolve_sandbox_seccomp(AutoBool::Auto, AutoBool::Auto, false, &f).unwrap(),
        (true, true)
    );
    assert_eq!(
        resolve_sandbox_seccomp(AutoBool::Auto, AutoBool::False, true, &f).unwrap(),
        (false, false)
    );
    assert_eq!(
        err_text(resolve_sandbox_seccomp(AutoBool::True, AutoBool::False, true, &f)),
        "--slirp4netns-sandbox conflicts with --detach-netns (https://github.com/rootless-containers/slirp4netns/issues/317)"
    );
    f.kernel_seccomp = false;
    assert_eq!(
        resolve_sandbox_seccomp(AutoBool::False, AutoBool::Auto, false, &f).unwrap(),
        (false, false)
    );
    assert_eq!(
        err_text(resolve_sandbox_seccomp(
            AutoBool::False,
            AutoBool::True,
            false,
            &f
        )),
        "kernel doesn't support seccomp"
    );
}

#[test]
fn pasta_argv() {
    use pasta::{build_args, Args};
    let mut a = Args {
        ifname: "tap0".into(),
        mtu: 65520,
        cidr: Cidr::parse("10.0.2.0/24").unwrap(),
        disable_host_loopback: false,
        ipv6: false,
        implicit_ports: false,
        host_lo_to_ns_lo: false,
        pid_file: None,
    };
    assert_eq!(
        build_args(&a, 77, None).unwrap().join(" "),
        "--stderr --ns-ifname=tap0 --mtu=65520 --config-net --address=10.0.2.100 --netmask=24 --gateway=10.0.2.2 --dns-forward=10.0.2.3 --ipv4-only --tcp-ports=none --udp-ports=none 77"
    );
    a.disable_host_loopback = true;
    a.ipv6 = true;
    a.implicit_ports = true;
    a.host_lo_to_ns_lo = true;
    a.pid_file = Some("/s/.pasta.pid".into());
    assert_eq!(
        build_args(&a, 77, Some(Path::new("/proc/77/root/s/netns"))).unwrap().join(" "),
        "--stderr --ns-ifname=tap0 --mtu=65520 --config-net --address=10.0.2.100 --netmask=24 --gateway=10.0.2.2 --dns-forward=10.0.2.3 --no-map-gw --tcp-ns=none --udp-ns=none --tcp-ports=auto --udp-ports=auto --host-lo-to-ns-lo --foreground --pid /s/.pasta.pid --userns=/proc/77/ns/user --netns=/proc/77/root/s/netns"
    );
}

#[test]
fn resolv_and_hosts() {
    let dns: Vec<IpAddr> = vec!["10.0.2.3".parse().unwrap(), "fd00::3".parse().unwrap()];
    assert_eq!(
        child::resolv_conf(&dns),
        "nameserver 10.0.2.3\nnameserver fd00::3\n"
    );
    assert_eq!(
        child::hosts_file("127.0.0.1 localhost\n", "vm"),
        "127.0.0.1 localhost\n\n127.0.0.1 vm\n::1 vm\n"
    );
}

#[test]
fn missing_binaries() {
    let mut o = test_opts(NetDriver::Slirp4netns);
    o.slirp4netns_binary = "rk-no-such-slirp4netns".into();
    assert_eq!(
        err_text(new_driver_quiet(&o)),
        "exec: \"rk-no-such-slirp4netns\": executable file not found in $PATH"
    );
    let mut o = test_opts(NetDriver::Pasta);
    o.pasta_binary = "/nonexistent/pasta".into();
    assert!(err_text(new_driver_quiet(&o)).contains("/nonexistent/pasta"));
    let o = test_opts(NetDriver::GvisorTapVsock);
    let e = err_text(new_driver_quiet(&o));
    assert!(e.contains("slirp4netns") && e.contains("passt"), "{e}");
}

#[test]
fn info_json() {
    let cfg = cidr_config(
        "slirp4netns",
        &Cidr::parse(DEFAULT_CIDR).unwrap(),
        "tap0",
        65520,
    )
    .unwrap();
    let j = serde_json::to_string(&info_from_config(&cfg)).unwrap();
    assert_eq!(
        j,
        r#"{"driver":"slirp4netns","dns":["10.0.2.3"],"childIP":"10.0.2.100"}"#
    );
    let none = NoneDriver.info().unwrap();
    assert_eq!(
        serde_json::to_string(&none).unwrap(),
        r#"{"driver":"none"}"#
    );
}

#[path = "selftest.rs"]
mod selftest;
