//! `rootlesskit --check [flags]` (rootlesskit-rs only): inspects this host for exactly the given
//! flags and prints one line per prerequisite:
//!
//! ```text
//! ok    subuid: 65536 sub-IDs for rktest (100000-165535)
//! FAIL  newuidmap: /usr/bin/newuidmap is neither setuid root nor has file capabilities; fix: sudo chmod u+s /usr/bin/newuidmap
//! ```
//!
//! Exit status 0 when every check passes, 1 otherwise. Nothing is changed on the host; the
//! only side effects are reading files, running `<driver> --version`/`--help`, `getsubids`,
//! `getcap`, opening `/dev/net/tun` and creating (and closing) one io_uring instance.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::cli::{NetDriver, Options, PortDriverKind, SubidSource};

/// One prerequisite.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckResult {
    /// Short name (`subuid`, `newuidmap`, `/dev/net/tun`, ...).
    pub name: String,
    pub ok: bool,
    /// What was found.
    pub detail: String,
    /// The command that fixes a failure.
    pub fix: Option<String>,
}

impl CheckResult {
    fn ok(name: &str, detail: impl Into<String>) -> Self {
        CheckResult {
            name: name.into(),
            ok: true,
            detail: detail.into(),
            fix: None,
        }
    }

    fn fail(name: &str, detail: impl Into<String>, fix: impl Into<String>) -> Self {
        CheckResult {
            name: name.into(),
            ok: false,
            detail: detail.into(),
            fix: Some(fix.into()),
        }
    }

    /// `ok    name: detail` or `FAIL  name: detail; fix: command`.
    pub fn line(&self) -> String {
        let mut s = format!(
            "{:<5} {}: {}",
            if self.ok { "ok" } else { "FAIL" },
            self.name,
            self.detail
        );
        if let Some(fix) = &self.fix {
            let _ = write!(s, "; fix: {fix}");
        }
        s
    }
}

/// Runs every check relevant to `opts`, prints one line each to stdout, returns the exit code.
pub fn run_check(opts: &Options) -> i32 {
    let results = checks(opts);
    let mut out = String::new();
    for r in &results {
        out.push_str(&r.line());
        out.push('\n');
    }
    let failed = results.iter().filter(|r| !r.ok).count();
    if failed == 0 {
        out.push_str("all checks passed\n");
    } else {
        let _ = writeln!(out, "{failed} check(s) failed");
    }
    print!("{out}");
    i32::from(failed != 0)
}

/// The checks for `opts`, in a fixed order.
pub fn checks(opts: &Options) -> Vec<CheckResult> {
    let user = current_user();
    let mut r = Vec::new();
    if user.uid == 0 {
        r.push(CheckResult::fail(
            "user",
            "running as root; RootlessKit is meant for an unprivileged user",
            "run rootlesskit as the unprivileged user (e.g. runuser -u USER -- rootlesskit ...)",
        ));
    } else {
        r.push(CheckResult::ok(
            "user",
            format!("{} (uid {}, gid {})", user.name, user.uid, user.gid),
        ));
    }
    r.push(check_max_user_namespaces());
    if let Some(c) = check_unprivileged_userns_clone() {
        r.push(c);
    }
    if let Some(c) = check_apparmor() {
        r.push(c);
    }
    r.push(check_subids(
        &user,
        opts.subid_source,
        "subuid",
        "/etc/subuid",
        false,
    ));
    r.push(check_subids(
        &user,
        opts.subid_source,
        "subgid",
        "/etc/subgid",
        true,
    ));
    r.push(check_idmap_binary("newuidmap", "cap_setuid"));
    r.push(check_idmap_binary("newgidmap", "cap_setgid"));
    r.extend(check_network(opts, &user));
    r.extend(check_ports(opts));
    if let Some(evac) = &opts.evacuate_cgroup2 {
        r.push(check_cgroup2(evac));
    }
    for d in &opts.copy_up {
        r.push(if d.is_dir() {
            CheckResult::ok("copy-up", format!("{} is a directory", d.display()))
        } else {
            CheckResult::fail(
                "copy-up",
                format!("{} is not a directory", d.display()),
                format!("remove --copy-up={}", d.display()),
            )
        });
    }
    r
}

/// The invoking user.
#[derive(Debug, Clone)]
pub struct User {
    pub uid: u32,
    pub gid: u32,
    pub name: String,
}

fn current_user() -> User {
    let uid = nix::unistd::getuid();
    let gid = nix::unistd::getgid();
    let name = nix::unistd::User::from_uid(uid)
        .ok()
        .flatten()
        .map(|u| u.name)
        .unwrap_or_else(|| uid.to_string());
    User {
        uid: uid.as_raw(),
        gid: gid.as_raw(),
        name,
    }
}

fn read_trim(path: &str) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_string())
}

fn read_num(path: &str) -> Option<i64> {
    read_trim(path).and_then(|s| s.parse().ok())
}

fn check_max_user_namespaces() -> CheckResult {
    const P: &str = "/proc/sys/user/max_user_namespaces";
    let name = "max_user_namespaces";
    match read_num(P) {
        None => CheckResult::fail(
            name,
            format!("{P} is missing (kernel without user namespaces?)"),
            "use a kernel built with CONFIG_USER_NS=y",
        ),
        Some(0) => CheckResult::fail(
            name,
            format!("{P} is 0: user namespaces are disabled"),
            "sudo sysctl -w user.max_user_namespaces=28633",
        ),
        Some(n) if n < 1024 => CheckResult::ok(
            name,
            format!("{n} (low; RootlessKit warns below 1024: sudo sysctl -w user.max_user_namespaces=28633)"),
        ),
        Some(n) => CheckResult::ok(name, n.to_string()),
    }
}

fn check_unprivileged_userns_clone() -> Option<CheckResult> {
    const P: &str = "/proc/sys/kernel/unprivileged_userns_clone";
    let v = read_num(P)?;
    let name = "unprivileged_userns_clone";
    Some(if v == 1 {
        CheckResult::ok(name, "1")
    } else {
        CheckResult::fail(
            name,
            format!("{P} is {v}"),
            "sudo sysctl -w kernel.unprivileged_userns_clone=1",
        )
    })
}

fn check_apparmor() -> Option<CheckResult> {
    const P: &str = "/proc/sys/kernel/apparmor_restrict_unprivileged_userns";
    let v = read_num(P)?;
    let name = "apparmor_restrict_unprivileged_userns";
    if v == 0 {
        return Some(CheckResult::ok(name, "0"));
    }
    let exe = std::env::current_exe()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| "/usr/local/bin/rootlesskit".into());
    let profile_name = exe.trim_start_matches('/').replace('/', ".");
    Some(CheckResult::fail(
        name,
        format!("{P} is {v}: unprivileged user namespaces need an AppArmor profile"),
        format!(
            "printf 'abi <abi/4.0>,\\ninclude <tunables/global>\\n\"{exe}\" flags=(unconfined) {{\\n  userns,\\n}}\\n' | sudo tee /etc/apparmor.d/{profile_name} && sudo systemctl reload apparmor"
        ),
    ))
}

/// Lines `name_or_uid:start:count` of a subid file that belong to `user`.
pub fn parse_subid_file(content: &str, user: &User) -> Vec<(u64, u64)> {
    let uid = user.uid.to_string();
    content
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| {
            let mut it = l.split(':');
            let (who, start, count) = (it.next()?, it.next()?, it.next()?);
            if who != user.name && who != uid {
                return None;
            }
            Some((start.trim().parse().ok()?, count.trim().parse().ok()?))
        })
        .collect()
}

/// The first free 65536-aligned block after every range of a subid file (for the fix command).
fn next_free_block(content: &str) -> u64 {
    let end = content
        .lines()
        .filter_map(|l| {
            let mut it = l.trim().split(':');
            let _ = it.next()?;
            let start: u64 = it.next()?.trim().parse().ok()?;
            let count: u64 = it.next()?.trim().parse().ok()?;
            Some(start + count)
        })
        .max()
        .unwrap_or(100_000);
    end.max(100_000).div_ceil(65536) * 65536
}

/// `getsubids [-g] USER` (shadow-utils); `N: name start count` lines.
fn getsubids(user: &User, group: bool) -> Option<Vec<(u64, u64)>> {
    let bin = std::env::var("GETSUBIDS").unwrap_or_else(|_| "getsubids".into());
    let mut cmd = Command::new(bin);
    if group {
        cmd.arg("-g");
    }
    let out = cmd.arg(&user.name).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let ranges: Vec<(u64, u64)> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            if f.len() < 4 {
                return None;
            }
            Some((f[2].parse().ok()?, f[3].parse().ok()?))
        })
        .collect();
    (!ranges.is_empty()).then_some(ranges)
}

fn check_subids(
    user: &User,
    source: SubidSource,
    name: &str,
    file: &str,
    group: bool,
) -> CheckResult {
    let content = std::fs::read_to_string(file).unwrap_or_default();
    let (ranges, from) = match source {
        SubidSource::Static => (parse_subid_file(&content, user), file.to_string()),
        SubidSource::Dynamic => (
            getsubids(user, group).unwrap_or_default(),
            "getsubids".to_string(),
        ),
        SubidSource::Auto => match getsubids(user, group) {
            Some(r) => (r, "getsubids".to_string()),
            None => (parse_subid_file(&content, user), file.to_string()),
        },
    };
    let total: u64 = ranges.iter().map(|(_, c)| c).sum();
    let start = next_free_block(&content);
    let fix = format!(
        "sudo usermod --add-sub{}s {start}-{} {}",
        if group { "gid" } else { "uid" },
        start + 65535,
        user.name
    );
    if ranges.is_empty() {
        return CheckResult::fail(
            name,
            format!(
                "no sub{}s for user {} in {from}",
                if group { "gid" } else { "uid" },
                user.name
            ),
            fix,
        );
    }
    let list = ranges
        .iter()
        .map(|(s, c)| format!("{s}-{}", s + c.saturating_sub(1)))
        .collect::<Vec<_>>()
        .join(", ");
    if total < 65536 {
        return CheckResult::fail(
            name,
            format!(
                "only {total} sub-IDs for {} ({list}) in {from}; 65536 are needed for most images",
                user.name
            ),
            fix,
        );
    }
    CheckResult::ok(
        name,
        format!("{total} sub-IDs for {} ({list}) from {from}", user.name),
    )
}

/// `PATH` lookup like Go's `exec.LookPath`.
pub fn look_path(bin: &str) -> Option<PathBuf> {
    look_path_go(bin).ok()
}

/// Go's `exec.LookPath` with its error texts:
/// `exec: "x": executable file not found in $PATH`, `exec: "/a/x": stat /a/x: no such file or directory`,
/// `exec: "/a/x": permission denied`.
pub fn look_path_go(bin: &str) -> Result<PathBuf, String> {
    use std::os::unix::fs::PermissionsExt;
    let q = crate::cli::quote_go(bin);
    let check = |p: &Path| -> Result<(), String> {
        let m = std::fs::metadata(p).map_err(|e| {
            let msg = match e.kind() {
                std::io::ErrorKind::NotFound => "no such file or directory".to_string(),
                std::io::ErrorKind::PermissionDenied => "permission denied".to_string(),
                _ => e.to_string(),
            };
            format!("stat {}: {msg}", p.display())
        })?;
        if !m.is_dir() && m.permissions().mode() & 0o111 != 0 {
            Ok(())
        } else {
            Err("permission denied".to_string())
        }
    };
    if bin.contains('/') {
        let p = PathBuf::from(bin);
        return check(&p).map(|_| p).map_err(|e| format!("exec: {q}: {e}"));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| {
            if d.as_os_str().is_empty() {
                PathBuf::from(".")
            } else {
                d
            }
            .join(bin)
        })
        .find(|p| check(p).is_ok())
        .ok_or_else(|| format!("exec: {q}: executable file not found in $PATH"))
}

fn check_idmap_binary(bin: &str, cap: &str) -> CheckResult {
    use std::os::unix::fs::MetadataExt;
    let Some(path) = look_path(bin) else {
        return CheckResult::fail(
            bin,
            "not found in PATH",
            "sudo apt-get install uidmap  (Fedora/RHEL: sudo dnf install shadow-utils)",
        );
    };
    let md = match std::fs::metadata(&path) {
        Ok(m) => m,
        Err(e) => {
            return CheckResult::fail(
                bin,
                format!("{}: {e}", path.display()),
                "sudo apt-get install --reinstall uidmap",
            )
        }
    };
    if md.mode() & 0o4000 != 0 && md.uid() == 0 {
        return CheckResult::ok(bin, format!("{} (setuid root)", path.display()));
    }
    let caps = Command::new("getcap")
        .arg(&path)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    if caps.contains(cap) {
        return CheckResult::ok(
            bin,
            format!("{} (file capabilities: {})", path.display(), caps.trim()),
        );
    }
    CheckResult::fail(
        bin,
        format!(
            "{} is neither setuid root nor has {cap} file capabilities",
            path.display()
        ),
        format!("sudo chmod u+s {}", path.display()),
    )
}

fn check_tun() -> CheckResult {
    const P: &str = "/dev/net/tun";
    match std::fs::OpenOptions::new().read(true).write(true).open(P) {
        Ok(_) => CheckResult::ok(P, "can be opened read-write"),
        Err(e) => CheckResult::fail(
            P,
            format!("cannot open: {e}"),
            "sudo modprobe tun && sudo chmod 0666 /dev/net/tun",
        ),
    }
}

fn run_output(bin: &Path, args: &[&str]) -> Option<(bool, String)> {
    let out = Command::new(bin).args(args).output().ok()?;
    let mut s = String::from_utf8_lossy(&out.stdout).into_owned();
    s.push_str(&String::from_utf8_lossy(&out.stderr));
    Some((out.status.success(), s))
}

fn check_driver_binary(
    name: &str,
    bin: &str,
    install: &str,
) -> Result<(PathBuf, String), CheckResult> {
    let path = look_path_go(bin).map_err(|e| CheckResult::fail(name, e, install))?;
    let version = run_output(&path, &["--version"])
        .map(|(_, s)| s.lines().next().unwrap_or("").trim().to_string())
        .unwrap_or_default();
    Ok((path, version))
}

fn check_network(opts: &Options, user: &User) -> Vec<CheckResult> {
    let mut r = Vec::new();
    let net = opts.net;
    let needs_tun = matches!(
        net,
        NetDriver::Slirp4netns | NetDriver::Pasta | NetDriver::Vpnkit | NetDriver::GvisorTapVsock
    );
    if needs_tun {
        r.push(check_tun());
    }
    if !matches!(net, NetDriver::Host) {
        for (bin, why) in [("nsenter", "util-linux"), ("ip", "iproute2")] {
            r.push(match look_path(bin) {
                Some(p) => CheckResult::ok(bin, p.display().to_string()),
                None => CheckResult::fail(
                    bin,
                    format!("not found in PATH (needed by --net={})", net.name()),
                    format!("sudo apt-get install {why}"),
                ),
            });
        }
    }
    match net {
        NetDriver::Host | NetDriver::None | NetDriver::GvisorTapVsock => {
            r.push(CheckResult::ok(
                "network driver",
                format!("--net={} needs no external binary", net.name()),
            ));
        }
        NetDriver::Slirp4netns => {
            match check_driver_binary(
                "slirp4netns",
                &opts.slirp4netns_binary,
                "sudo apt-get install slirp4netns",
            ) {
                Err(e) => r.push(e),
                Ok((path, version)) => {
                    let help = run_output(&path, &["--help"])
                        .map(|x| x.1)
                        .unwrap_or_default();
                    let feats: Vec<&str> = [
                        "--enable-sandbox",
                        "--enable-seccomp",
                        "--disable-host-loopback",
                        "--api-socket",
                        "--cidr",
                        "--enable-ipv6",
                    ]
                    .into_iter()
                    .filter(|f| help.contains(f))
                    .collect();
                    let detail = format!(
                        "{} ({version}; features: {})",
                        path.display(),
                        feats.join(" ")
                    );
                    if !help.contains("--netns-type") {
                        r.push(CheckResult::fail(
                            "slirp4netns",
                            format!("{detail}: slirp4netns >= 0.4.0 is required (no --netns-type)"),
                            "install slirp4netns >= 0.4.0 (sudo apt-get install slirp4netns)",
                        ));
                    } else if opts.ipv6 && !help.contains("--enable-ipv6") {
                        r.push(CheckResult::fail(
                            "slirp4netns",
                            format!("{detail}: --ipv6 needs --enable-ipv6"),
                            "install a newer slirp4netns",
                        ));
                    } else if opts.port_driver == PortDriverKind::Slirp4netns
                        && !help.contains("--api-socket")
                    {
                        r.push(CheckResult::fail(
                            "slirp4netns",
                            format!("{detail}: --port-driver=slirp4netns needs --api-socket"),
                            "install a newer slirp4netns",
                        ));
                    } else {
                        r.push(CheckResult::ok("slirp4netns", detail));
                    }
                }
            }
        }
        NetDriver::Pasta => {
            match check_driver_binary("pasta", &opts.pasta_binary, "sudo apt-get install passt") {
                Err(e) => r.push(e),
                Ok((path, version)) => {
                    let lo = run_output(&path, &["--host-lo-to-ns-lo", "--version"])
                        .is_some_and(|(ok, _)| ok);
                    r.push(CheckResult::ok(
                        "pasta",
                        format!(
                            "{} ({version}; --host-lo-to-ns-lo: {})",
                            path.display(),
                            if lo {
                                "yes"
                            } else {
                                "no, needs passt >= 2024_10_30"
                            }
                        ),
                    ));
                }
            }
        }
        NetDriver::Vpnkit => {
            match check_driver_binary(
                "vpnkit",
                &opts.vpnkit_binary,
                "install vpnkit from https://github.com/moby/vpnkit/releases",
            ) {
                Err(e) => r.push(e),
                Ok((path, version)) => r.push(CheckResult::ok(
                    "vpnkit",
                    format!("{} ({version})", path.display()),
                )),
            }
        }
        NetDriver::LxcUserNic => {
            use std::os::unix::fs::MetadataExt;
            let bin = &opts.lxc_user_nic_binary;
            match look_path(bin).and_then(|p| std::fs::metadata(&p).ok().map(|m| (p, m))) {
                None => r.push(CheckResult::fail(
                    "lxc-user-nic",
                    format!(
                        "{} not found",
                        if bin.is_empty() { "lxc-user-nic" } else { bin }
                    ),
                    "sudo apt-get install lxc",
                )),
                Some((p, m)) if m.mode() & 0o4000 == 0 || m.uid() != 0 => {
                    r.push(CheckResult::fail(
                        "lxc-user-nic",
                        format!("{} is not setuid root", p.display()),
                        format!("sudo chmod u+s {}", p.display()),
                    ))
                }
                Some((p, _)) => r.push(CheckResult::ok(
                    "lxc-user-nic",
                    format!("{} (setuid root)", p.display()),
                )),
            }
            let usernet = std::fs::read_to_string("/etc/lxc/lxc-usernet").unwrap_or_default();
            let bridge = &opts.lxc_user_nic_bridge;
            let allowed = usernet.lines().any(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                f.len() >= 3 && f[0] == user.name && f[2] == bridge
            });
            r.push(if allowed {
                CheckResult::ok(
                    "lxc-usernet",
                    format!("{} may create veth on {bridge}", user.name),
                )
            } else {
                CheckResult::fail(
                    "lxc-usernet",
                    format!(
                        "/etc/lxc/lxc-usernet has no entry for {} on {bridge}",
                        user.name
                    ),
                    format!(
                        "echo '{} veth {bridge} 1' | sudo tee -a /etc/lxc/lxc-usernet",
                        user.name
                    ),
                )
            });
        }
    }
    r
}

fn check_ports(opts: &Options) -> Vec<CheckResult> {
    let mut r = Vec::new();
    let binds_on_host = matches!(
        opts.port_driver,
        PortDriverKind::Builtin | PortDriverKind::Slirp4netns | PortDriverKind::GvisorTapVsock
    );
    if binds_on_host && !opts.publish.is_empty() {
        const P: &str = "/proc/sys/net/ipv4/ip_unprivileged_port_start";
        let start = read_num(P).unwrap_or(1024);
        let low: Vec<i64> = opts
            .publish
            .iter()
            .map(|p| p.parent_port)
            .filter(|p| *p < start)
            .collect();
        r.push(match low.iter().min() {
            None => CheckResult::ok(
                "ip_unprivileged_port_start",
                format!("{start}; every -p port can be bound"),
            ),
            Some(min) => CheckResult::fail(
                "ip_unprivileged_port_start",
                format!(
                    "{start}; port(s) {} need privileges",
                    low.iter()
                        .map(|p| p.to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                format!("sudo sysctl -w net.ipv4.ip_unprivileged_port_start={min}"),
            ),
        });
    }
    if opts.port_driver == PortDriverKind::Builtin {
        r.push(check_io_uring());
        r.push(check_pipe_budget());
    }
    r
}

/// Why io_uring cannot be used, or `None` if it works.
pub fn io_uring_unavailable() -> Option<String> {
    const P: &str = "/proc/sys/kernel/io_uring_disabled";
    match read_num(P) {
        Some(2) => return Some(format!("disabled by {P}=2")),
        Some(1) => {
            // Only members of kernel.io_uring_group may create rings; try it.
        }
        _ => {}
    }
    // TODO(lead): use forwarder::probe once it lands, so that --check and the forwarder agree.
    match io_uring::IoUring::new(8) {
        Ok(_) => None,
        Err(e) => Some(format!("io_uring_setup failed: {e}")),
    }
}

fn check_io_uring() -> CheckResult {
    match io_uring_unavailable() {
        None => CheckResult::ok(
            "forwarding backend",
            "io_uring (io_uring_setup works; kernel.io_uring_disabled allows it)",
        ),
        Some(why) => CheckResult::ok(
            "forwarding backend",
            format!("epoll fallback (io_uring unavailable: {why}); to enable io_uring: sudo sysctl -w kernel.io_uring_disabled=0"),
        ),
    }
}

fn check_pipe_budget() -> CheckResult {
    const P: &str = "/proc/sys/fs/pipe-user-pages-soft";
    let name = "pipe budget";
    // Each forwarded TCP connection uses two 16-page (64 KiB) splice pipes.
    match read_num(P) {
        None => CheckResult::ok(name, format!("{P} not present")),
        Some(0) => CheckResult::ok(name, "unlimited (fs.pipe-user-pages-soft=0)"),
        Some(n) => {
            let conns = n / 32;
            if n < 4096 {
                CheckResult::fail(
                    name,
                    format!("fs.pipe-user-pages-soft={n}: about {conns} TCP connections get full-size splice pipes, later ones fall back to 4 KiB pipes"),
                    "sudo sysctl -w fs.pipe-user-pages-soft=16384",
                )
            } else {
                CheckResult::ok(
                    name,
                    format!("fs.pipe-user-pages-soft={n}: about {conns} concurrent TCP connections with full-size splice pipes"),
                )
            }
        }
    }
}

fn check_cgroup2(evac: &str) -> CheckResult {
    let name = "cgroup2";
    if Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        CheckResult::ok(
            name,
            format!("/sys/fs/cgroup is cgroup2 (--evacuate-cgroup2={evac})"),
        )
    } else {
        CheckResult::fail(
            name,
            "/sys/fs/cgroup is not a cgroup2 mount",
            "boot with systemd.unified_cgroup_hierarchy=1",
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subid_parsing() {
        let u = User {
            uid: 1001,
            gid: 1001,
            name: "rktest".into(),
        };
        let c = "# c\nother:1:2\nrktest:100000:65536\n1001:200000:10\n";
        assert_eq!(parse_subid_file(c, &u), vec![(100000, 65536), (200000, 10)]);
        assert_eq!(next_free_block(c), 262144);
        assert_eq!(next_free_block(""), 131072);
    }

    #[test]
    fn line_format() {
        assert_eq!(CheckResult::ok("a", "b").line(), "ok    a: b");
        assert_eq!(
            CheckResult::fail("a", "b", "c").line(),
            "FAIL  a: b; fix: c"
        );
    }
}
