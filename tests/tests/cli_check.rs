//! `rootlesskit --check`: every check is made to fail on purpose and the message asserted.
//!
//! Needs root and the unprivileged user `rktest` (skipped otherwise). The host is never
//! modified: each case runs in a private mount namespace (`unshare --mount`) in which a
//! changed copy of the file (a sysctl under /proc/sys, /etc/subuid, /dev/net/tun,
//! /usr/bin/newuidmap, ...) is bind-mounted over the real one; the check then runs there as
//! `rktest`. The namespace, and with it every change, disappears when the case ends, even if
//! it fails, so engineers sharing the machine are not disturbed. Temporary files are removed
//! by a drop guard.
//!
//! Run: `cargo test -p rootlesskit-tests --test cli_check` (as root).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

const USER: &str = "rktest";

/// The `rootlesskit` binary of this workspace, built once.
fn bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(p) = std::env::var_os("ROOTLESSKIT_BIN") {
            return PathBuf::from(p);
        }
        // hack/test.sh stages the built binaries and names their directory.
        if let Some(d) = std::env::var_os("RK_BIN_DIR") {
            return PathBuf::from(d).join("rootlesskit");
        }
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let st = Command::new(cargo)
            .args([
                "build",
                "-p",
                "rootlesskit-launcher",
                "--bin",
                "rootlesskit",
            ])
            .current_dir(root)
            .status()
            .expect("cargo build");
        assert!(st.success(), "building rootlesskit failed");
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| root.join("target"));
        target.join("debug/rootlesskit")
    })
}

fn can_run() -> bool {
    let root = nix::unistd::geteuid().is_root();
    let user = nix::unistd::User::from_name(USER).ok().flatten().is_some();
    assert!(
        root && user,
        "needs root and the user {USER}: these tests belong to the as_root phase of hack/test.sh"
    );
    true
}

/// A temporary directory removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        let p = std::env::temp_dir().join(format!(
            "rk-cli-check-{tag}-{}-{}",
            std::process::id(),
            rand::random::<u32>()
        ));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// What to put over a path inside the private mount namespace.
enum Over {
    /// A regular file with this content (mode 0644).
    Content(String),
    /// A root-owned regular file with this mode (e.g. 0600: unreadable for the user).
    Mode(u32),
    /// A copy of the original file with this mode (e.g. 0755: setuid bit dropped).
    CopyWithMode(u32),
}

struct Outcome {
    code: i32,
    stdout: String,
}

impl Outcome {
    fn line(&self, name: &str) -> &str {
        self.stdout
            .lines()
            .find(|l| l[6.min(l.len())..].starts_with(&format!("{name}:")))
            .unwrap_or_else(|| panic!("no line for {name:?} in:\n{}", self.stdout))
    }
}

/// Runs `rootlesskit --check ARGS` as `rktest` with `overrides` bind-mounted in a private
/// mount namespace.
fn check(overrides: &[(&str, Over)], args: &[&str]) -> Outcome {
    use std::os::unix::fs::PermissionsExt;
    let tmp = TempDir::new("ovl");
    let mut script = String::from("set -e\n");
    for (i, (target, over)) in overrides.iter().enumerate() {
        let src = tmp.0.join(format!("f{i}"));
        match over {
            Over::Content(c) => std::fs::write(&src, c).unwrap(),
            Over::Mode(_) => std::fs::write(&src, "").unwrap(),
            Over::CopyWithMode(_) => {
                std::fs::copy(target, &src).unwrap();
            }
        }
        let mode = match over {
            Over::Content(_) => 0o644,
            Over::Mode(m) | Over::CopyWithMode(m) => *m,
        };
        std::fs::set_permissions(&src, std::fs::Permissions::from_mode(mode)).unwrap();
        script.push_str(&format!("mount --bind '{}' '{target}'\n", src.display()));
    }
    script.push_str("cd /tmp\nexec runuser -u \"$RKUSER\" -- \"$@\"\n");
    let out = Command::new("unshare")
        .args([
            "--mount",
            "--propagation",
            "private",
            "--",
            "sh",
            "-c",
            &script,
            "sh",
        ])
        .arg(bin())
        .arg("--check")
        .args(args)
        .env("RKUSER", USER)
        .output()
        .expect("unshare");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.is_empty(),
        "unexpected stderr: {stderr}\nstdout: {stdout}"
    );
    Outcome {
        code: out.status.code().unwrap_or(-1),
        stdout,
    }
}

fn passing_subid_file(path: &str) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

#[test]
fn host_passes_for_default_flags_as_root() {
    if !can_run() {
        return;
    }
    let o = check(&[], &[]);
    assert_eq!(o.code, 0, "{}", o.stdout);
    assert!(o.stdout.ends_with("all checks passed\n"));
    assert!(o.line("user").starts_with("ok "));
    assert!(o.line("newuidmap").contains("setuid root"));
}

#[test]
fn max_user_namespaces_zero_as_root() {
    if !can_run() {
        return;
    }
    let o = check(
        &[(
            "/proc/sys/user/max_user_namespaces",
            Over::Content("0\n".into()),
        )],
        &[],
    );
    assert_eq!(o.code, 1);
    assert_eq!(
        o.line("max_user_namespaces"),
        "FAIL  max_user_namespaces: /proc/sys/user/max_user_namespaces is 0: user namespaces are disabled; fix: sudo sysctl -w user.max_user_namespaces=28633"
    );
    assert!(o.stdout.ends_with("1 check(s) failed\n"));
}

#[test]
fn subuid_line_moved_away_as_root() {
    if !can_run() {
        return;
    }
    // The user's line is renamed (as if it belonged to someone else); getsubids reads the
    // same file, so both --subid-source=auto and static see it.
    let moved = passing_subid_file("/etc/subuid").replace(&format!("{USER}:"), "someoneelse:");
    for source in ["--subid-source=auto", "--subid-source=static"] {
        let o = check(&[("/etc/subuid", Over::Content(moved.clone()))], &[source]);
        assert_eq!(o.code, 1, "{source}: {}", o.stdout);
        let l = o.line("subuid");
        assert!(
            l.starts_with(&format!("FAIL  subuid: no subuids for user {USER} in ")),
            "{l}"
        );
        assert!(l.contains("; fix: sudo usermod --add-subuids "), "{l}");
        assert!(l.ends_with(&format!(" {USER}")), "{l}");
        assert!(o.line("subgid").starts_with("ok "));
    }
}

#[test]
fn subgid_range_too_small_as_root() {
    if !can_run() {
        return;
    }
    let o = check(
        &[("/etc/subgid", Over::Content(format!("{USER}:100000:10\n")))],
        &["--subid-source=static"],
    );
    assert_eq!(o.code, 1);
    let l = o.line("subgid");
    assert!(
        l.starts_with(&format!(
            "FAIL  subgid: only 10 sub-IDs for {USER} (100000-100009) in /etc/subgid"
        )),
        "{l}"
    );
    assert!(
        l.contains("fix: sudo usermod --add-subgids 131072-196607 rktest"),
        "{l}"
    );
}

#[test]
fn newuidmap_without_setuid_as_root() {
    if !can_run() {
        return;
    }
    let Some(path) = which("newuidmap") else {
        return;
    };
    let p = path.to_string_lossy().into_owned();
    let o = check(&[(p.as_str(), Over::CopyWithMode(0o755))], &[]);
    assert_eq!(o.code, 1);
    assert_eq!(
        o.line("newuidmap"),
        format!("FAIL  newuidmap: {p} is neither setuid root nor has cap_setuid file capabilities; fix: sudo chmod u+s {p}")
    );
    assert!(o.line("newgidmap").starts_with("ok "));
}

#[test]
fn dev_net_tun_not_accessible_as_root() {
    if !can_run() {
        return;
    }
    let o = check(
        &[("/dev/net/tun", Over::Mode(0o600))],
        &["--net=slirp4netns"],
    );
    assert_eq!(o.code, 1);
    assert_eq!(
        o.line("/dev/net/tun"),
        "FAIL  /dev/net/tun: cannot open: Permission denied (os error 13); fix: sudo modprobe tun && sudo chmod 0666 /dev/net/tun"
    );
    // Not checked at all for the host network.
    let o = check(&[("/dev/net/tun", Over::Mode(0o600))], &[]);
    assert!(!o.stdout.contains("/dev/net/tun"));
}

#[test]
fn network_driver_binary_missing_and_present_as_root() {
    if !can_run() {
        return;
    }
    let o = check(
        &[],
        &[
            "--net=slirp4netns",
            "--slirp4netns-binary=/nonexistent/slirp4netns",
        ],
    );
    assert_eq!(o.code, 1);
    assert_eq!(
        o.line("slirp4netns"),
        "FAIL  slirp4netns: exec: \"/nonexistent/slirp4netns\": stat /nonexistent/slirp4netns: no such file or directory; fix: sudo apt-get install slirp4netns"
    );
    if which("slirp4netns").is_some() {
        let o = check(&[], &["--net=slirp4netns"]);
        let l = o.line("slirp4netns");
        assert!(l.starts_with("ok    slirp4netns: "), "{l}");
        assert!(
            l.contains("slirp4netns version") && l.contains("--api-socket"),
            "{l}"
        );
    }
    let o = check(&[], &["--net=pasta", "--pasta-binary=nonexistent-pasta"]);
    assert!(o
        .line("pasta")
        .starts_with("FAIL  pasta: exec: \"nonexistent-pasta\": executable file not found in $PATH; fix: sudo apt-get install passt"));
}

#[test]
fn privileged_publish_port_as_root() {
    if !can_run() {
        return;
    }
    let args = [
        "--net=slirp4netns",
        "--port-driver=builtin",
        "-p",
        "0.0.0.0:80:80/tcp",
        "-p",
        "127.0.0.1:8080:80/tcp",
    ];
    let sysctl = "/proc/sys/net/ipv4/ip_unprivileged_port_start";
    let o = check(&[(sysctl, Over::Content("1024\n".into()))], &args);
    assert_eq!(o.code, 1);
    assert_eq!(
        o.line("ip_unprivileged_port_start"),
        "FAIL  ip_unprivileged_port_start: 1024; port(s) 80 need privileges; fix: sudo sysctl -w net.ipv4.ip_unprivileged_port_start=80"
    );
    let o = check(&[(sysctl, Over::Content("0\n".into()))], &args);
    assert_eq!(
        o.line("ip_unprivileged_port_start"),
        "ok    ip_unprivileged_port_start: 0; every -p port can be bound"
    );
}

#[test]
fn io_uring_disabled_selects_epoll_as_root() {
    if !can_run() {
        return;
    }
    let args = ["--net=slirp4netns", "--port-driver=builtin"];
    let sysctl = "/proc/sys/kernel/io_uring_disabled";
    if !Path::new(sysctl).exists() {
        return;
    }
    let o = check(&[(sysctl, Over::Content("2\n".into()))], &args);
    assert_eq!(
        o.line("forwarding backend"),
        "ok    forwarding backend: epoll fallback (io_uring unavailable: disabled by /proc/sys/kernel/io_uring_disabled=2); to enable io_uring: sudo sysctl -w kernel.io_uring_disabled=0"
    );
    let o = check(&[(sysctl, Over::Content("0\n".into()))], &args);
    assert!(o.line("forwarding backend").contains("io_uring"));
}

#[test]
fn pipe_budget_too_small_as_root() {
    if !can_run() {
        return;
    }
    let args = ["--net=slirp4netns", "--port-driver=builtin"];
    let sysctl = "/proc/sys/fs/pipe-user-pages-soft";
    let o = check(&[(sysctl, Over::Content("1024\n".into()))], &args);
    assert_eq!(o.code, 1);
    assert_eq!(
        o.line("pipe budget"),
        "FAIL  pipe budget: fs.pipe-user-pages-soft=1024: about 32 TCP connections get full-size splice pipes, later ones fall back to 4 KiB pipes; fix: sudo sysctl -w fs.pipe-user-pages-soft=16384"
    );
    let o = check(&[(sysctl, Over::Content("0\n".into()))], &args);
    assert_eq!(
        o.line("pipe budget"),
        "ok    pipe budget: unlimited (fs.pipe-user-pages-soft=0)"
    );
}

#[test]
fn invalid_flags_fail_before_checking_as_root() {
    if !can_run() {
        return;
    }
    let out = Command::new(bin())
        .args(["--check", "--net=bogus"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "[rootlesskit:parent] error: unknown network mode: bogus\n"
    );
}

fn which(bin: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(bin))
        .find(|p| p.is_file())
}
