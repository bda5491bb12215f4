//! The declarative flag table: one row per flag of the newest RootlessKit (v3.x, urfave/cli v2).
//!
//! The same table drives the parser (`super::parse`), `--help` (urfave v2 layout with
//! RootlessKit's categories), the man page and the shell completions (`super::gen`).

/// How a flag takes its value (urfave/cli v2 flag types).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlagKind {
    /// `BoolFlag`: `--x`, `--x=true|false` (Go `strconv.ParseBool` spellings); never consumes the next arg.
    Bool,
    /// `StringFlag`: `--x v` or `--x=v`; the last occurrence wins.
    String,
    /// `IntFlag`: parsed like Go's `flag.Int` (base prefixes, `_`, 64-bit).
    Int,
    /// `StringSliceFlag`: repeatable; every value is split on `,` and trimmed.
    StringSlice,
}

/// What a shell should complete for a flag's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Complete {
    /// Free text (or a bool flag).
    Text,
    /// One of [`FlagDef::values`].
    Values,
    /// A file path.
    File,
    /// A directory path.
    Dir,
    /// An executable name or path.
    Command,
}

/// One flag of the `rootlesskit` command line.
#[derive(Debug, Clone, Copy)]
pub struct FlagDef {
    /// Canonical long name (without dashes).
    pub name: &'static str,
    /// Other names (`p`, `h`, `v`).
    pub aliases: &'static [&'static str],
    pub kind: FlagKind,
    /// Help category (urfave groups sorted by name).
    pub category: &'static str,
    /// Help text, word for word.
    pub usage: &'static str,
    /// Default value as a string ("" = none); [`LXC_USER_NIC_DEFAULT`] is computed at run time.
    pub default: &'static str,
    /// Values offered by shell completion.
    pub values: &'static [&'static str],
    pub complete: Complete,
    /// Not listed in `--help` (our own operator flags); documented in the man page.
    pub hidden: bool,
    /// urfave's `DisableDefaultText` (`--help`, `--version`).
    pub no_default_text: bool,
}

/// Placeholder default of `--lxc-user-nic-binary`: resolved by [`lxc_user_nic_bin`].
pub const LXC_USER_NIC_DEFAULT: &str = "@lxc-user-nic@";

pub const CAT_MISC: &str = "Misc";
pub const CAT_STATE: &str = "State";
pub const CAT_NETWORK: &str = "Network";
pub const CAT_PASTA: &str = "Network [pasta]";
pub const CAT_SLIRP4NETNS: &str = "Network [slirp4netns]";
pub const CAT_VPNKIT: &str = "Network [vpnkit]";
pub const CAT_LXC_USER_NIC: &str = "Network [lxc-user-nic]";
pub const CAT_PORT: &str = "Port";
pub const CAT_MOUNT: &str = "Mount";
pub const CAT_PROCESS: &str = "Process";
pub const CAT_SUBID: &str = "SubID";

const fn flag(
    name: &'static str,
    kind: FlagKind,
    category: &'static str,
    usage: &'static str,
    default: &'static str,
) -> FlagDef {
    FlagDef {
        name,
        aliases: &[],
        kind,
        category,
        usage,
        default,
        values: &[],
        complete: Complete::Text,
        hidden: false,
        no_default_text: false,
    }
}

const fn with_values(mut f: FlagDef, values: &'static [&'static str]) -> FlagDef {
    f.values = values;
    f.complete = Complete::Values;
    f
}

const fn completing(mut f: FlagDef, complete: Complete) -> FlagDef {
    f.complete = complete;
    f
}

use FlagKind::{Bool, Int, String as Str, StringSlice};

/// Network drivers accepted by `--net`.
pub const NET_VALUES: &[&str] = &[
    "host",
    "none",
    "pasta",
    "slirp4netns",
    "vpnkit",
    "lxc-user-nic",
    "gvisor-tap-vsock",
];
/// Port drivers accepted by `--port-driver`.
pub const PORT_DRIVER_VALUES: &[&str] = &[
    "none",
    "implicit",
    "builtin",
    "slirp4netns",
    "gvisor-tap-vsock",
];
const AUTO_BOOL: &[&str] = &["auto", "true", "false"];
const BOOL_VALUES: &[&str] = &["true", "false"];

/// Every flag, in the order of RootlessKit's `app.Flags` (help keeps this order inside a
/// category); `--help` and `--version` come last, as urfave appends them.
pub static FLAGS: &[FlagDef] = &[
    flag("debug", Bool, CAT_MISC, "debug mode", "false"),
    with_values(
        flag(
            "print-semver",
            Str,
            CAT_MISC,
            "print a version component as a decimal integer [major, minor, patch]",
            "",
        ),
        &["major", "minor", "patch"],
    ),
    completing(
        flag("state-dir", Str, CAT_STATE, "state directory", ""),
        Complete::Dir,
    ),
    with_values(
        flag(
            "net",
            Str,
            CAT_NETWORK,
            "network driver [host, none, pasta, slirp4netns, vpnkit, lxc-user-nic(experimental), gvisor-tap-vsock(experimental)]",
            "host",
        ),
        NET_VALUES,
    ),
    completing(
        flag(
            "pasta-binary",
            Str,
            CAT_PASTA,
            "path of pasta binary for --net=pasta",
            "pasta",
        ),
        Complete::Command,
    ),
    completing(
        flag(
            "slirp4netns-binary",
            Str,
            CAT_SLIRP4NETNS,
            "path of slirp4netns binary for --net=slirp4netns",
            "slirp4netns",
        ),
        Complete::Command,
    ),
    with_values(
        flag(
            "slirp4netns-sandbox",
            Str,
            CAT_SLIRP4NETNS,
            "enable slirp4netns sandbox (experimental) [auto, true, false] (the default is planned to be \"auto\" in future)",
            "false",
        ),
        AUTO_BOOL,
    ),
    with_values(
        flag(
            "slirp4netns-seccomp",
            Str,
            CAT_SLIRP4NETNS,
            "enable slirp4netns seccomp (experimental) [auto, true, false] (the default is planned to be \"auto\" in future)",
            "false",
        ),
        AUTO_BOOL,
    ),
    completing(
        flag(
            "vpnkit-binary",
            Str,
            CAT_VPNKIT,
            "path of VPNKit binary for --net=vpnkit",
            "vpnkit",
        ),
        Complete::Command,
    ),
    completing(
        flag(
            "lxc-user-nic-binary",
            Str,
            CAT_LXC_USER_NIC,
            "path of lxc-user-nic binary for --net=lxc-user-nic",
            LXC_USER_NIC_DEFAULT,
        ),
        Complete::Command,
    ),
    flag(
        "lxc-user-nic-bridge",
        Str,
        CAT_LXC_USER_NIC,
        "lxc-user-nic bridge name",
        "lxcbr0",
    ),
    flag(
        "mtu",
        Int,
        CAT_NETWORK,
        "MTU for non-host network (default: 65520 for pasta and slirp4netns, 1500 for others)",
        "0",
    ),
    flag(
        "cidr",
        Str,
        CAT_NETWORK,
        "CIDR for pasta, slirp4netns and gvisor-tap-vsock networks (default: 10.0.2.0/24)",
        "",
    ),
    flag(
        "ifname",
        Str,
        CAT_NETWORK,
        "Network interface name (default: tap0 for pasta, slirp4netns, and vpnkit; eth0 for lxc-user-nic)",
        "",
    ),
    flag(
        "disable-host-loopback",
        Bool,
        CAT_NETWORK,
        "prohibit connecting to 127.0.0.1:* on the host namespace",
        "false",
    ),
    flag(
        "ipv6",
        Bool,
        CAT_NETWORK,
        "enable IPv6 routing. Unrelated to port forwarding. Only supported for pasta and slirp4netns. (experimental)",
        "false",
    ),
    completing(
        flag(
            "copy-up",
            StringSlice,
            CAT_MOUNT,
            "mount a filesystem and copy-up the contents. e.g. \"--copy-up=/etc\" (typically required for non-host network)",
            "",
        ),
        Complete::Dir,
    ),
    with_values(
        flag(
            "copy-up-mode",
            Str,
            CAT_MOUNT,
            "copy-up mode [tmpfs+symlink]",
            "tmpfs+symlink",
        ),
        &["tmpfs+symlink"],
    ),
    with_values(
        flag(
            "port-driver",
            Str,
            CAT_PORT,
            "port driver for non-host network. [none, implicit (for pasta), builtin, slirp4netns, gvisor-tap-vsock(experimental)]",
            "none",
        ),
        PORT_DRIVER_VALUES,
    ),
    FlagDef {
        aliases: &["p"],
        ..flag(
            "publish",
            StringSlice,
            CAT_PORT,
            "publish ports. e.g. \"127.0.0.1:8080:80/tcp\"",
            "",
        )
    },
    with_values(
        flag(
            "source-ip-transparent",
            Bool,
            CAT_PORT,
            "preserve the source IP of TCP connections with IP_TRANSPARENT (builtin port driver)",
            "true",
        ),
        BOOL_VALUES,
    ),
    flag("pidns", Bool, CAT_PROCESS, "create a PID namespace", "false"),
    flag(
        "cgroupns",
        Bool,
        CAT_PROCESS,
        "create a cgroup namespace",
        "false",
    ),
    flag("utsns", Bool, CAT_PROCESS, "create a UTS namespace", "false"),
    flag("ipcns", Bool, CAT_PROCESS, "create an IPC namespace", "false"),
    flag(
        "detach-netns",
        Bool,
        CAT_NETWORK,
        "detach network namespaces ",
        "false",
    ),
    with_values(
        flag(
            "propagation",
            Str,
            CAT_MOUNT,
            "mount propagation [rprivate, rslave]",
            "rprivate",
        ),
        &["rprivate", "private", "rslave", "slave", "rshared", "shared"],
    ),
    with_values(
        flag(
            "reaper",
            Str,
            CAT_PROCESS,
            "enable process reaper. Requires --pidns. [auto,true,false]",
            "auto",
        ),
        AUTO_BOOL,
    ),
    flag(
        "evacuate-cgroup2",
        Str,
        CAT_PROCESS,
        "evacuate processes into the specified subgroup. Requires --pidns and --cgroupns",
        "",
    ),
    with_values(
        flag(
            "subid-source",
            Str,
            CAT_SUBID,
            "the source of the subids. \"dynamic\" executes /usr/bin/getsubids. \"static\" reads /etc/{subuid,subgid}. [auto,dynamic,static]",
            "auto",
        ),
        &["auto", "dynamic", "static"],
    ),
    FlagDef {
        hidden: true,
        ..flag(
            "check",
            Bool,
            CAT_MISC,
            "check this host's prerequisites for the given flags, print one line per check and exit (rootlesskit-rs)",
            "false",
        )
    },
    FlagDef {
        aliases: &["h"],
        no_default_text: true,
        ..flag("help", Bool, CAT_MISC, "show help", "false")
    },
    FlagDef {
        aliases: &["v"],
        no_default_text: true,
        ..flag("version", Bool, CAT_MISC, "print the version", "false")
    },
];

/// The flag named `name` (canonical name or alias).
pub fn lookup(name: &str) -> Option<&'static FlagDef> {
    FLAGS
        .iter()
        .find(|f| f.name == name || f.aliases.contains(&name))
}

/// RootlessKit's default for `--lxc-user-nic-binary`: the first existing well-known path, else "".
pub fn lxc_user_nic_bin() -> String {
    let machine = nix::sys::utsname::uname()
        .map(|u| u.machine().to_string_lossy().into_owned())
        .unwrap_or_default();
    let candidates = [
        "/usr/libexec/lxc/lxc-user-nic".to_string(),
        format!("/usr/lib/{machine}-linux-gnu/lxc/lxc-user-nic"),
        "/usr/lib/lxc/lxc-user-nic".to_string(),
    ];
    candidates
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .unwrap_or_default()
}

impl FlagDef {
    /// The effective default (resolving [`LXC_USER_NIC_DEFAULT`]).
    pub fn default_value(&self) -> String {
        if self.default == LXC_USER_NIC_DEFAULT {
            lxc_user_nic_bin()
        } else {
            self.default.to_string()
        }
    }

    /// All names, canonical first.
    pub fn names(&self) -> impl Iterator<Item = &'static str> {
        std::iter::once(self.name).chain(self.aliases.iter().copied())
    }

    /// The left column of `--help`: `--publish value, -p value [ --publish value, -p value ]`.
    pub fn help_names(&self) -> String {
        let placeholder = if self.kind == FlagKind::Bool {
            ""
        } else {
            " value"
        };
        let pn = self
            .names()
            .map(|n| {
                let dash = if n.len() == 1 { "-" } else { "--" };
                format!("{dash}{n}{placeholder}")
            })
            .collect::<Vec<_>>()
            .join(", ");
        if self.kind == FlagKind::StringSlice {
            format!("{pn} [ {pn} ]")
        } else {
            pn
        }
    }

    /// urfave's `GetDefaultText`, with `lxc` resolved: `false`, `0`, `"host"`, or "" (not shown).
    pub fn default_text(&self, resolved_default: &str) -> String {
        if self.no_default_text {
            return String::new();
        }
        match self.kind {
            FlagKind::Bool | FlagKind::Int => resolved_default.to_string(),
            FlagKind::String if resolved_default.is_empty() => String::new(),
            FlagKind::String => format!("{resolved_default:?}"),
            FlagKind::StringSlice => String::new(),
        }
    }

    /// The right column of `--help`: usage plus ` (default: ...)`, trimmed like urfave.
    pub fn help_usage(&self, resolved_default: &str) -> String {
        let d = self.default_text(resolved_default);
        let s = if d.is_empty() {
            self.usage.to_string()
        } else {
            format!("{} (default: {d})", self.usage)
        };
        s.trim().to_string()
    }
}

/// Category names in help order (Go `sort.Strings`).
pub fn categories(include_hidden: bool) -> Vec<&'static str> {
    let mut cats: Vec<&'static str> = FLAGS
        .iter()
        .filter(|f| include_hidden || !f.hidden)
        .map(|f| f.category)
        .collect();
    cats.sort_unstable();
    cats.dedup();
    cats
}

const HELP_HEAD: &str = r#"NAME:
   rootlesskit - Linux-native fakeroot using user namespaces

USAGE:
   rootlesskit [global options] [arguments...]

VERSION:
   @VERSION@

DESCRIPTION:
   RootlessKit is a Linux-native implementation of "fake root" using user_namespaces(7).
   
   Web site: https://github.com/rootless-containers/rootlesskit
   
   Examples:
     # spawn a shell with a new user namespace and a mount namespace
     rootlesskit bash
   
     # make /etc writable
     rootlesskit --copy-up=/etc bash
   
     # set mount propagation to rslave
     rootlesskit --propagation=rslave bash
   
     # create a network namespace with slirp4netns, and expose 80/tcp on the namespace as 8080/tcp on the host
     rootlesskit --copy-up=/etc --net=slirp4netns --disable-host-loopback --port-driver=builtin -p 127.0.0.1:8080:80/tcp bash
   
   Note: RootlessKit requires /etc/subuid and /etc/subgid to be configured by the real root user.
   See https://rootlesscontaine.rs/getting-started/common/ .

OPTIONS:
"#;

/// The description paragraph (shared with the man page).
pub const DESCRIPTION: &str =
    "RootlessKit is a Linux-native implementation of \"fake root\" using user_namespaces(7).";

/// `rootlesskit --help`, byte for byte in urfave v2's layout (tabwriter: min width 1, tab width 8,
/// padding 2, pad with spaces), as RootlessKit's custom template renders it.
pub fn help_text() -> String {
    let mut rows: Vec<(String, String)> = Vec::new();
    for cat in categories(false) {
        rows.push((format!("  {cat}:"), String::new()));
        for f in FLAGS.iter().filter(|f| f.category == cat && !f.hidden) {
            let d = f.default_value();
            rows.push((format!("    {}", f.help_names()), f.help_usage(&d)));
        }
        rows.push(("  ".to_string(), String::new()));
    }
    let width = rows
        .iter()
        .map(|(c, _)| c.chars().count())
        .max()
        .unwrap_or(0)
        + 2;
    let mut out = HELP_HEAD.replace("@VERSION@", crate::VERSION);
    for (cell, rest) in rows {
        let pad = width - cell.chars().count();
        out.push_str(&cell);
        out.push_str(&" ".repeat(pad));
        out.push_str(&rest);
        out.push('\n');
    }
    out
}
