//! Unit tests of the command line. Expected texts were checked against Debian's RootlessKit
//! 1.1.0 (`/usr/bin/rootlesskit`) where it has the flag; v2+ flags follow the newest code.

use super::*;

fn args(s: &[&str]) -> Vec<String> {
    s.iter().map(|x| x.to_string()).collect()
}

fn run(s: &[&str]) -> Options {
    match parse(&args(s)) {
        Ok(Parsed::Run(o)) => *o,
        other => panic!("expected Run for {s:?}, got {other:?}"),
    }
}

fn err(s: &[&str]) -> String {
    match parse(&args(s)) {
        Err(e) => e.to_string(),
        other => panic!("expected an error for {s:?}, got {other:?}"),
    }
}

fn usage_err(s: &[&str]) -> (String, String) {
    match parse(&args(s)) {
        Err(CliError::Usage { message, usage }) => (message, usage),
        other => panic!("expected a usage error for {s:?}, got {other:?}"),
    }
}

#[test]
fn defaults() {
    let o = run(&["true"]);
    assert_eq!(o.net, NetDriver::Host);
    assert_eq!(o.port_driver, PortDriverKind::None);
    assert_eq!(o.mtu, 0);
    assert!(o.source_ip_transparent);
    assert_eq!(o.copy_up_mode, "tmpfs+symlink");
    assert_eq!(o.propagation, "rprivate");
    assert_eq!(o.reaper, AutoBool::Auto);
    assert_eq!(o.subid_source, SubidSource::Auto);
    assert_eq!(o.slirp4netns_sandbox, AutoBool::False);
    assert_eq!(o.slirp4netns_binary, "slirp4netns");
    assert_eq!(o.pasta_binary, "pasta");
    assert_eq!(o.vpnkit_binary, "vpnkit");
    assert_eq!(o.lxc_user_nic_bridge, "lxcbr0");
    assert_eq!(o.command, vec!["true"]);
    assert!(o.state_dir.is_none() && o.cidr.is_none() && o.ifname.is_none());
    assert!(!o.check);
    assert!(o.validate().is_ok());
}

#[test]
fn value_forms() {
    for form in [
        &["--net=slirp4netns", "true"][..],
        &["--net", "slirp4netns", "true"],
        &["-net=slirp4netns", "true"],
        &["-net", "slirp4netns", "true"],
    ] {
        assert_eq!(run(form).net, NetDriver::Slirp4netns, "{form:?}");
    }
    // The last occurrence of a scalar flag wins.
    assert_eq!(run(&["--mtu=1500", "--mtu", "9000", "t"]).mtu, 9000);
    // A value may start with a dash.
    assert_eq!(
        run(&["--state-dir", "-x", "t"]).state_dir,
        Some(PathBuf::from("-x"))
    );
}

#[test]
fn bool_forms() {
    assert!(run(&["--pidns", "t"]).pidns);
    assert!(run(&["-pidns", "t"]).pidns);
    for v in ["1", "t", "T", "TRUE", "true", "True"] {
        assert!(run(&[&format!("--pidns={v}"), "t"]).pidns, "{v}");
    }
    for v in ["0", "f", "F", "FALSE", "false", "False"] {
        assert!(!run(&[&format!("--pidns={v}"), "t"]).pidns, "{v}");
    }
    // `--x false` does not consume the next arg: "false" is the command.
    let o = run(&["--pidns", "false", "true"]);
    assert!(o.pidns);
    assert_eq!(o.command, vec!["false", "true"]);
    assert!(!run(&["--source-ip-transparent=false", "t"]).source_ip_transparent);
    assert_eq!(
        usage_err(&["--debug=x", "t"]).0,
        "invalid boolean value \"x\" for -debug: parse error"
    );
    assert_eq!(
        usage_err(&["--help=x"]).0,
        "invalid boolean value \"x\" for -help: parse error"
    );
}

#[test]
fn int_forms() {
    assert_eq!(run(&["--mtu=1500", "t"]).mtu, 1500);
    assert_eq!(run(&["--mtu=0x10", "t"]).mtu, 16);
    assert_eq!(run(&["--mtu=010", "t"]).mtu, 8);
    assert_eq!(run(&["--mtu=1_000", "t"]).mtu, 1000);
    assert_eq!(run(&["--mtu=+5", "t"]).mtu, 5);
    assert_eq!(
        usage_err(&["--mtu=abc", "t"]).0,
        "invalid value \"abc\" for flag -mtu: parse error"
    );
    assert_eq!(
        usage_err(&["--mtu=", "t"]).0,
        "invalid value \"\" for flag -mtu: parse error"
    );
    assert_eq!(
        usage_err(&["--mtu=99999999999999999999", "t"]).0,
        "invalid value \"99999999999999999999\" for flag -mtu: value out of range"
    );
    assert_eq!(
        err(&["--mtu=70000", "t"]),
        "mtu must be <= 65521, got 70000"
    );
    assert_eq!(
        err(&["--mtu", "70000", "t"]),
        "mtu must be <= 65521, got 70000"
    );
    assert_eq!(err(&["--mtu=-1", "t"]), "mtu must be <= 65521, got -1");
    assert_eq!(run(&["--mtu=65521", "t"]).mtu, 65521);
}

#[test]
fn slices_repeat_split_and_trim() {
    let o = run(&["--copy-up=/etc", "--copy-up", "/run, /var/lib ,/opt", "t"]);
    let got: Vec<String> = o.copy_up.iter().map(|p| p.display().to_string()).collect();
    assert_eq!(got, vec!["/etc", "/run", "/var/lib", "/opt"]);
    let o = run(&[
        "--net=slirp4netns",
        "--port-driver=builtin",
        "-p",
        "127.0.0.1:8080:80/tcp, :8443:443/tcp",
        "-p=[::1]:8081:81/tcp",
        "t",
    ]);
    assert_eq!(o.publish.len(), 3);
    assert_eq!(o.publish[0].parent_ip, "127.0.0.1");
    assert_eq!(o.publish[0].parent_port, 8080);
    assert_eq!(o.publish[0].child_port, 80);
    assert_eq!(o.publish[1].parent_ip, "");
    assert_eq!(o.publish[2].parent_ip, "::1");
    let o = run(&[
        "--net=slirp4netns",
        "--port-driver=builtin",
        "--publish=127.0.0.1:8080:10.0.2.100:80/udp",
        "t",
    ]);
    assert_eq!(o.publish[0].child_ip, "10.0.2.100");
    assert_eq!(o.publish[0].proto, "udp");
}

#[test]
fn two_forms_of_publish() {
    let (m, u) = usage_err(&["--publish=x", "-p", "y", "t"]);
    assert_eq!(m, "Cannot use two forms of the same flag: p publish");
    assert!(u.starts_with("Incorrect Usage. Cannot use two forms"));
}

#[test]
fn positional_and_double_dash() {
    let o = run(&["--pidns", "sh", "-c", "--net=x"]);
    assert_eq!(o.command, vec!["sh", "-c", "--net=x"]);
    assert_eq!(o.net, NetDriver::Host);
    let o = run(&["--", "--pidns", "x"]);
    assert!(!o.pidns);
    assert_eq!(o.command, vec!["--pidns", "x"]);
    // A lone "-" is a positional argument.
    assert_eq!(run(&["-", "x"]).command, vec!["-", "x"]);
    // --version after the command belongs to the command.
    assert_eq!(
        run(&["true", "--version"]).command,
        vec!["true", "--version"]
    );
    assert_eq!(err(&[]), "no command specified");
    assert_eq!(err(&["--"]), "no command specified");
    assert_eq!(err(&["--pidns"]), "no command specified");
}

#[test]
fn unknown_and_bad_flags() {
    let (m, u) = usage_err(&["--bogus-flag"]);
    assert_eq!(m, "flag provided but not defined: -bogus-flag");
    assert!(u.starts_with("Incorrect Usage. flag provided but not defined: -bogus-flag\n\nNAME:\n"));
    assert!(u.ends_with(&flags::help_text()));
    // The error wins over --version (urfave parses everything first).
    assert_eq!(
        usage_err(&["--version", "--bogus"]).0,
        "flag provided but not defined: -bogus"
    );
    assert_eq!(usage_err(&["---debug", "t"]).0, "bad flag syntax: ---debug");
    assert_eq!(usage_err(&["--=x", "t"]).0, "bad flag syntax: --=x");
    assert_eq!(usage_err(&["-=x", "t"]).0, "bad flag syntax: -=x");
    assert_eq!(usage_err(&["--net"]).0, "flag needs an argument: -net");
    assert_eq!(
        usage_err(&["--copy-up"]).0,
        "flag needs an argument: -copy-up"
    );
    assert_eq!(usage_err(&["-p"]).0, "flag needs an argument: -p");
}

#[test]
fn help_version_semver() {
    for a in [
        &["--help"][..],
        &["-h"],
        &["--h"],
        &["-help"],
        &["-h=1"],
        &["--version", "--help"],
    ] {
        match parse(&args(a)) {
            Ok(Parsed::Help(t)) => assert_eq!(t, flags::help_text()),
            other => panic!("{a:?}: {other:?}"),
        }
    }
    assert_eq!(err(&["--help=false"]), "no command specified");
    for a in [&["--version"][..], &["-v"], &["--version", "true"]] {
        match parse(&args(a)) {
            Ok(Parsed::Version(t)) => {
                assert_eq!(t, format!("rootlesskit version {}\n", crate::VERSION))
            }
            other => panic!("{a:?}: {other:?}"),
        }
    }
    assert_eq!(err(&["--version=false"]), "no command specified");
    let v: Vec<&str> = crate::VERSION
        .split(['-', '+'])
        .next()
        .unwrap()
        .split('.')
        .collect();
    for (which, want) in [("major", v[0]), ("minor", v[1]), ("patch", v[2])] {
        match parse(&args(&[&format!("--print-semver={which}")])) {
            Ok(Parsed::PrintSemver(t)) => assert_eq!(t, format!("{want}\n")),
            other => panic!("{which}: {other:?}"),
        }
    }
    assert_eq!(
        err(&["--print-semver=x"]),
        "expected --print-semver=(major|minor|patch), got \"x\""
    );
    assert_eq!(semver_component("3.1.0-beta.0+dev", "minor"), Some(1));
}

#[test]
fn help_layout() {
    let h = flags::help_text();
    assert!(h.starts_with("NAME:\n   rootlesskit - Linux-native fakeroot using user namespaces\n"));
    assert!(h.contains(&format!("VERSION:\n   {}\n", crate::VERSION)));
    let cats: Vec<&str> = h
        .lines()
        .filter(|l| l.starts_with("  ") && !l.starts_with("   ") && l.trim_end().ends_with(':'))
        .map(|l| l.trim())
        .collect();
    assert_eq!(
        cats,
        vec![
            "Misc:",
            "Mount:",
            "Network:",
            "Network [lxc-user-nic]:",
            "Network [pasta]:",
            "Network [slirp4netns]:",
            "Network [vpnkit]:",
            "Port:",
            "Process:",
            "State:",
            "SubID:"
        ]
    );
    // tabwriter: every option line has the description at the same column; group and
    // blank lines are padded to it (trailing spaces, as urfave prints them).
    let opts = &h[h.find("OPTIONS:\n").unwrap() + 9..];
    let width = opts.lines().next().unwrap().len();
    assert!(opts.lines().all(|l| l.len() >= width));
    assert!(opts.contains("    --help, -h"));
    assert!(opts.contains("show help\n"));
    assert!(opts.contains("--publish value, -p value [ --publish value, -p value ]"));
    assert!(opts.contains("(default: true)\n")); // --source-ip-transparent
    assert!(opts.contains("--detach-netns"));
    assert!(opts.contains("--pasta-binary value"));
    assert!(!opts.contains("--check"));
}

/// 1.1.0's help header (everything before OPTIONS) is byte-identical apart from the version.
#[test]
fn help_head_matches_reference_when_available() {
    let Ok(out) = std::process::Command::new("/usr/bin/rootlesskit")
        .arg("--help")
        .output()
    else {
        return;
    };
    let reference = String::from_utf8_lossy(&out.stdout).into_owned();
    let Some(cut) = reference.find("OPTIONS:\n") else {
        return;
    };
    let ours = flags::help_text();
    let ref_head = reference[..cut].replace("   1.1.0\n", &format!("   {}\n", crate::VERSION));
    assert_eq!(&ours[..cut - 5 + crate::VERSION.len()], ref_head);
}

#[test]
fn network_and_port_rules() {
    let e = |a: &[&str]| err(a);
    assert_eq!(e(&["--net=bogus", "t"]), "unknown network mode: bogus");
    assert_eq!(
        e(&["--port-driver=bogus", "t"]),
        "unknown port driver: bogus"
    );
    assert_eq!(
        e(&["--net=bogus", "--port-driver=bogus", "t"]),
        "unknown network mode: bogus"
    );
    assert_eq!(
        e(&["-p", "1", "t"]),
        "port driver \"none\" does not support publishing ports"
    );
    assert_eq!(
        e(&["--port-driver=builtin", "t"]),
        "port driver requires non-host network"
    );
    assert_eq!(
        e(&["--port-driver=gvisor-tap-vsock", "t"]),
        "port driver requires non-host network"
    );
    assert_eq!(
        e(&["--port-driver=slirp4netns", "t"]),
        "port driver requires slirp4netns network"
    );
    assert_eq!(
        e(&["--net=vpnkit", "--port-driver=slirp4netns", "t"]),
        "port driver requires slirp4netns network"
    );
    assert_eq!(
        e(&["--port-driver=implicit", "t"]),
        "port driver requires pasta network"
    );
    assert_eq!(
        e(&["--net=none", "--port-driver=slirp4netns", "t"]),
        "network \"none\" requires either port driver \"none\" or \"builtin\""
    );
    assert_eq!(
        e(&["--net=none", "--port-driver=bogus", "t"]),
        "network \"none\" requires either port driver \"none\" or \"builtin\""
    );
    assert_eq!(
        e(&["--net=pasta", "--port-driver=builtin", "t"]),
        "network \"pasta\" requires port driver \"none\" or \"implicit\""
    );
    assert_eq!(
        e(&["--net=slirp4netns", "--port-driver=gvisor-tap-vsock", "t"]),
        "port driver requires gvisor-tap-vsock network"
    );
    // Accepted combinations.
    for (n, p) in [
        ("none", "builtin"),
        ("pasta", "implicit"),
        ("slirp4netns", "slirp4netns"),
        ("slirp4netns", "builtin"),
        ("vpnkit", "builtin"),
        ("lxc-user-nic", "builtin"),
        ("gvisor-tap-vsock", "gvisor-tap-vsock"),
        ("gvisor-tap-vsock", "builtin"),
    ] {
        let o = run(&[
            &format!("--net={n}"),
            &format!("--port-driver={p}"),
            "-p",
            "127.0.0.1:8080:80/tcp",
            "t",
        ]);
        assert_eq!(o.net.name(), n);
        assert_eq!(o.port_driver.name(), p);
        assert!(o.validate().is_ok(), "{n} {p}");
    }
    // implicit: -p parsed/validated but otherwise ignored.
    assert_eq!(
        e(&["--net=pasta", "--port-driver=implicit", "-p", "bad", "t"]),
        "missing proto in PortSpec string: \"bad\""
    );
}

#[test]
fn cidr_ifname_and_friends() {
    let e = |a: &[&str]| err(a);
    assert_eq!(
        e(&["--net=slirp4netns", "--cidr=10.0.2.1/24", "t"]),
        "cidr must be like 10.0.2.0/24, not like 10.0.2.100/24"
    );
    assert_eq!(e(&["--cidr=bogus", "t"]), "invalid CIDR address: bogus");
    assert_eq!(
        e(&["--cidr=10.0.2.0/33", "t"]),
        "invalid CIDR address: 10.0.2.0/33"
    );
    assert_eq!(
        e(&["--cidr=10.0.2.0/24", "t"]),
        "custom cidr is not supported for --net=host"
    );
    assert_eq!(
        e(&["--net=none", "--cidr=10.0.2.0/24", "t"]),
        "custom cidr is not supported for --net=none"
    );
    assert_eq!(
        e(&["--net=vpnkit", "--cidr=10.0.2.0/24", "t"]),
        "custom cidr is not supported for --net=vpnkit"
    );
    assert_eq!(
        e(&["--net=lxc-user-nic", "--cidr=10.0.2.0/24", "t"]),
        "custom cidr is not supported for --net=lxc-user-nic"
    );
    for n in ["slirp4netns", "pasta", "gvisor-tap-vsock"] {
        let o = run(&[&format!("--net={n}"), "--cidr=10.0.3.0/24", "t"]);
        assert_eq!(o.cidr.as_deref(), Some("10.0.3.0/24"));
    }
    assert_eq!(e(&["--ifname=a/b", "t"]), "ifname must not contain \"/\"");
    assert_eq!(
        e(&["--ifname=x", "t"]),
        "ifname cannot be specified for --net=host"
    );
    assert_eq!(
        e(&["--net=none", "--ifname=x", "t"]),
        "ifname cannot be specified for --net=none"
    );
    assert_eq!(
        e(&["--net=gvisor-tap-vsock", "--ipv6", "t"]),
        "--ipv6 is not supported for gvisor-tap-vsock"
    );
    // mtu is checked before cidr, cidr before ifname, those before the network.
    assert_eq!(
        e(&["--mtu=70000", "--cidr=x", "--net=bogus", "t"]),
        "mtu must be <= 65521, got 70000"
    );
    assert_eq!(
        e(&["--cidr=x", "--ifname=a/b", "t"]),
        "invalid CIDR address: x"
    );
}

#[test]
fn slirp4netns_modes() {
    let e = |a: &[&str]| err(a);
    assert_eq!(
        e(&["--net=slirp4netns", "--slirp4netns-sandbox=x", "t"]),
        "unsupported slirp4netns-sandbox mode: \"x\""
    );
    assert_eq!(
        e(&["--net=slirp4netns", "--slirp4netns-seccomp=x", "t"]),
        "unsupported slirp4netns-seccomp mode: \"x\""
    );
    // Only looked at for --net=slirp4netns.
    assert_eq!(
        run(&["--slirp4netns-sandbox=x", "t"]).slirp4netns_sandbox,
        AutoBool::False
    );
    assert_eq!(
        e(&[
            "--net=slirp4netns",
            "--detach-netns",
            "--slirp4netns-sandbox=true",
            "t"
        ]),
        "--slirp4netns-sandbox conflicts with --detach-netns (https://github.com/rootless-containers/slirp4netns/issues/317)"
    );
    let o = run(&[
        "--net=slirp4netns",
        "--slirp4netns-sandbox=auto",
        "--slirp4netns-seccomp=true",
        "t",
    ]);
    assert_eq!(o.slirp4netns_sandbox, AutoBool::Auto);
    assert_eq!(o.slirp4netns_seccomp, AutoBool::True);
}

#[test]
fn process_flags_and_evacuate() {
    let e = |a: &[&str]| err(a);
    assert_eq!(
        e(&["--evacuate-cgroup2=x", "t"]),
        "evacuate-cgroup2 requires --cgroupns"
    );
    assert_eq!(
        e(&["--evacuate-cgroup2=x", "--pidns", "t"]),
        "evacuate-cgroup2 requires --cgroupns"
    );
    assert_eq!(
        e(&["--evacuate-cgroup2=x", "--cgroupns", "t"]),
        "evacuate-cgroup2 requires --pidns"
    );
    // evacuate is the very first check.
    assert_eq!(
        e(&["--evacuate-cgroup2=x", "--mtu=70000", "t"]),
        "evacuate-cgroup2 requires --cgroupns"
    );
    let o = run(&[
        "--evacuate-cgroup2=evac",
        "--cgroupns",
        "--pidns",
        "--utsns",
        "--ipcns",
        "t",
    ]);
    assert_eq!(o.evacuate_cgroup2.as_deref(), Some("evac"));
    assert!(o.cgroupns && o.pidns && o.utsns && o.ipcns);
    assert!(o.reaper_enabled());
    assert!(!run(&["t"]).reaper_enabled());
}

#[test]
fn child_side_checks() {
    let child = |a: &[&str]| run(a).validate_child().map_err(|e| e.to_string());
    assert_eq!(child(&["t"]), Ok(()));
    assert_eq!(
        child(&["--reaper=x", "t"]),
        Err("unknown reaper mode: x".into())
    );
    assert_eq!(
        child(&["--reaper=true", "t"]),
        Err("reaper requires --pidns".into())
    );
    assert_eq!(child(&["--reaper=true", "--pidns", "t"]), Ok(()));
    assert_eq!(
        child(&["--copy-up-mode=x", "t"]),
        Err("unknown copy-up mode: x".into())
    );
    assert_eq!(
        child(&["--propagation=rshared", "--copy-up=/etc", "t"]),
        Err("propagation rshared does not support copy-up driver tmpfs+symlink".into())
    );
    assert_eq!(
        child(&["--propagation=shared", "--copy-up=/etc", "t"]),
        Err("propagation shared does not support copy-up driver tmpfs+symlink".into())
    );
    assert_eq!(child(&["--propagation=rshared", "t"]), Ok(()));
    for d in ["/tmp", "/tmp/", "//tmp", "/tmp/../tmp", "/./tmp"] {
        assert_eq!(
            child(&[&format!("--copy-up={d}"), "t"]),
            Err("/tmp cannot be copied up".into()),
            "{d}"
        );
    }
    assert_eq!(child(&["--copy-up=/tmp/x", "t"]), Ok(()));
}

#[test]
fn subid_source() {
    assert_eq!(
        run(&["--subid-source=static", "t"]).subid_source,
        SubidSource::Static
    );
    assert_eq!(
        run(&["--subid-source=dynamic", "t"]).subid_source,
        SubidSource::Dynamic
    );
    let o = run(&["--subid-source=x", "t"]);
    assert_eq!(
        o.idmap_error().map(|e| e.to_string()),
        Some(
            "failed to setup UID/GID map: failed to compute uid/gid map: unknown subid source \"x\""
                .into()
        )
    );
    assert!(run(&["t"]).idmap_error().is_none());
}

#[test]
fn publish_texts() {
    let p = |s: &str| parse_publish(s).map_err(|e| e.to_string());
    assert_eq!(
        p("bad"),
        Err("missing proto in PortSpec string: \"bad\"".into())
    );
    assert_eq!(
        p("18093:93/tcp"),
        Err("unexpected ParentIP in PortSpec string: \"18093:93/tcp\"".into())
    );
    assert_eq!(
        p("localhost:8080:80/tcp"),
        Err("unexpected ParentIP in PortSpec string: \"localhost:8080:80/tcp\"".into())
    );
    assert_eq!(
        p("127.0.0.1:8080:80/TCP"),
        Err("invalid PortSpec string: \"127.0.0.1:8080:80/TCP\": unknown proto: \"TCP\"".into())
    );
    assert_eq!(
        p("127.0.0.1:0:80/tcp"),
        Err("invalid ParentPort: '\\x00'".into())
    );
    assert!(p("  :18600:80/tcp").is_ok());
    assert!(p("[::1]:8080:[::2]:80/udp").is_ok());
}

#[test]
fn check_flag_needs_no_command() {
    let o = run(&["--check", "--net=slirp4netns"]);
    assert!(o.check);
    assert!(o.command.is_empty());
    assert!(o.validate().is_ok());
    // Validation still applies.
    assert_eq!(
        err(&["--check", "--net=bogus"]),
        "unknown network mode: bogus"
    );
}

#[test]
fn unsupported_features_hook() {
    let o = run(&[
        "--net=slirp4netns",
        "--port-driver=builtin",
        "--detach-netns",
        "t",
    ]);
    assert!(o.unsupported_features().is_empty());
    let errs: Vec<String> = o
        .unsupported_features_in(&[
            Feature::Net(NetDriver::Slirp4netns),
            Feature::DetachNetns,
            Feature::Net(NetDriver::Vpnkit),
        ])
        .iter()
        .map(|e| e.to_string())
        .collect();
    assert_eq!(
        errs,
        vec![
            "--net=slirp4netns is not supported by rootlesskit-rs yet",
            "--detach-netns is not supported by rootlesskit-rs yet"
        ]
    );
}

#[test]
fn warnings_text() {
    let w = run(&["--net=slirp4netns", "--ipv6", "t"]).warnings();
    assert!(w.contains(&"ipv6 is experimental".to_string()));
    assert!(w
        .iter()
        .any(|x| x.starts_with("specifying --disable-host-loopback")));
    let w = run(&["--mtu=1500", "t"]).warnings();
    assert_eq!(w, vec!["unsupported mtu for --net=host: 1500"]);
    let w = run(&["--net=vpnkit", "--ipv6", "--disable-host-loopback", "t"]).warnings();
    assert_eq!(
        w,
        vec![
            "ipv6 is experimental",
            "--ipv6 is discarded for --net=vpnkit"
        ]
    );
}

#[test]
fn go_helpers() {
    use super::goparse::*;
    assert_eq!(parse_int("0b101"), Ok(5));
    assert_eq!(parse_int("0o17"), Ok(15));
    assert_eq!(parse_int("-0x10"), Ok(-16));
    assert_eq!(parse_int("-9223372036854775808"), Ok(i64::MIN));
    assert_eq!(parse_int("9223372036854775808"), Err("value out of range"));
    assert_eq!(parse_int("08"), Err("parse error"));
    assert_eq!(parse_int("_1"), Err("parse error"));
    assert_eq!(parse_int("1__0"), Err("parse error"));
    assert_eq!(parse_int("-"), Err("parse error"));
    assert_eq!(quote("a\"b\\c\n\x01"), "\"a\\\"b\\\\c\\n\\x01\"");
    assert_eq!(forwarder::spec::go_quote_int(0), "'\\x00'");
    assert_eq!(forwarder::spec::go_quote_int(-200), "'\u{fffd}'");
    assert_eq!(forwarder::spec::go_quote_int(65), "'A'");
    assert_eq!(clean_path("a/../../b/./c/"), "../b/c");
    assert_eq!(clean_path(""), ".");
}

/// Side-by-side against Debian's 1.1.0 binary for flags 1.1.0 has: same stdout, same stderr
/// (error line) for parse errors. Skipped when the binary is absent.
#[test]
fn usage_errors_match_reference_binary() {
    let bin = "/usr/bin/rootlesskit";
    if !std::path::Path::new(bin).exists() {
        return;
    }
    let cases: &[&[&str]] = &[
        &["--bogus-flag"],
        &["--mtu=abc", "true"],
        &["--mtu=99999999999999999999", "true"],
        &["--debug=x", "true"],
        &["--net"],
        &["---debug", "true"],
        &["--=x", "true"],
    ];
    for c in cases {
        let out = std::process::Command::new(bin)
            .args(*c)
            .env_remove("_ROOTLESSKIT_PIPEFD_UNDOCUMENTED")
            .output()
            .expect("run reference");
        let ref_stdout = String::from_utf8_lossy(&out.stdout).replace("   1.1.0\n", "");
        let ref_stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        let (message, usage) = usage_err(c);
        assert_eq!(out.status.code(), Some(1));
        assert_eq!(
            ref_stderr,
            format!("[rootlesskit:parent] error: {message}\n")
        );
        // The first line (Incorrect Usage. ...) and the blank line match exactly; the help
        // that follows is the newest one (checked in help_layout).
        let ours_first: Vec<&str> = usage.splitn(3, '\n').take(2).collect();
        let ref_first: Vec<&str> = ref_stdout.splitn(3, '\n').take(2).collect();
        assert_eq!(ours_first, ref_first, "{c:?}");
    }
}

#[test]
fn socket_activation_vars() {
    let f = SocketActivation::from_vars;
    assert_eq!(f(None, Some("2"), 10), None);
    assert_eq!(f(Some("10"), Some("0"), 10), None);
    assert_eq!(f(Some("x"), Some("1"), 10), None);
    assert_eq!(
        f(Some("10"), Some("2"), 10),
        Some(SocketActivation {
            fds: 2,
            listen_pid: 10,
            pid_is_parent: true
        })
    );
    assert!(!f(Some("11"), Some("1"), 10).unwrap().pid_is_parent);
}
