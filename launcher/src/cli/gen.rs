//! Man pages and shell completions generated from the flag table ([`super::flags::FLAGS`]).
//!
//! The files are committed (`docs/man/*.1`, `completions/{bash,zsh,fish}/...`); the unit test
//! `generated_files_are_up_to_date` fails when they drift from the table. To regenerate:
//! `ROOTLESSKIT_UPDATE_GENERATED=1 cargo test -p rootlesskit-launcher --lib cli::gen`.

use std::path::{Path, PathBuf};

use super::flags::{self, Complete, FlagDef, FlagKind, FLAGS};

/// Every generated file: (path relative to the repository root, content).
pub fn generate_all() -> Vec<(PathBuf, String)> {
    vec![
        ("docs/man/rootlesskit.1".into(), man_rootlesskit()),
        ("docs/man/rootlessctl.1".into(), man_rootlessctl()),
        (
            "docs/man/rootlesskit-docker-proxy.1".into(),
            man_docker_proxy(),
        ),
        ("completions/bash/rootlesskit".into(), bash_completion()),
        ("completions/zsh/_rootlesskit".into(), zsh_completion()),
        (
            "completions/fish/rootlesskit.fish".into(),
            fish_completion(),
        ),
    ]
}

/// Writes every generated file under `root` (the repository root).
pub fn write_all(root: &Path) -> std::io::Result<()> {
    for (rel, content) in generate_all() {
        let path = root.join(rel);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(path, content)?;
    }
    Ok(())
}

/// Escapes text for roff: backslashes, leading dots/quotes, dashes.
fn roff(s: &str) -> String {
    let s = s.replace('\\', "\\e").replace('-', "\\-");
    if s.starts_with('.') || s.starts_with('\'') {
        format!("\\&{s}")
    } else {
        s
    }
}

fn man_header(name: &str, summary: &str) -> String {
    format!(
        ".\\\" Generated from launcher/src/cli/flags.rs by launcher/src/cli/gen.rs; do not edit.\n\
         .TH {} 1 \"\" \"rootlesskit-rs {}\" \"User Commands\"\n\
         .SH NAME\n{} \\- {}\n",
        name.to_uppercase(),
        crate::VERSION,
        roff(name),
        roff(summary)
    )
}

fn man_flag(f: &FlagDef) -> String {
    let value = if f.kind == FlagKind::Bool {
        String::new()
    } else {
        " \\fIvalue\\fR".to_string()
    };
    let names = f
        .names()
        .map(|n| {
            let dash = if n.len() == 1 { "-" } else { "--" };
            format!("\\fB{}\\fR{value}", roff(&format!("{dash}{n}")))
        })
        .collect::<Vec<_>>()
        .join(", ");
    let default = match f.default {
        flags::LXC_USER_NIC_DEFAULT => " (default: the first existing of /usr/libexec/lxc/lxc-user-nic, /usr/lib/<arch>-linux-gnu/lxc/lxc-user-nic, /usr/lib/lxc/lxc-user-nic)".to_string(),
        d => {
            let t = f.default_text(d);
            if t.is_empty() {
                String::new()
            } else {
                format!(" (default: {t})")
            }
        }
    };
    let repeat = if f.kind == FlagKind::StringSlice {
        " May be repeated; a value is split on commas."
    } else {
        ""
    };
    format!(
        ".TP\n{names}\n{}\n",
        roff(&format!("{}{default}.{repeat}", f.usage.trim()))
    )
}

/// `rootlesskit(1)`.
pub fn man_rootlesskit() -> String {
    let mut m = man_header("rootlesskit", "Linux-native fakeroot using user namespaces");
    m.push_str(".SH SYNOPSIS\n\\fBrootlesskit\\fR [\\fIoptions\\fR] \\fIcommand\\fR [\\fIargs\\fR...]\n.br\n\\fBrootlesskit \\-\\-check\\fR [\\fIoptions\\fR]\n");
    m.push_str(".SH DESCRIPTION\n");
    m.push_str(&roff(flags::DESCRIPTION));
    m.push_str("\nIt creates a user namespace and a mount namespace (and optionally network, PID, cgroup, UTS and IPC namespaces), maps the invoking user to root and the sub\\-IDs of /etc/subuid and /etc/subgid to the rest, and runs \\fIcommand\\fR inside.\n.PP\nFlags are parsed like urfave/cli v2: \\fB\\-\\-flag=value\\fR, \\fB\\-\\-flag value\\fR and \\fB\\-flag\\fR forms are accepted; parsing stops at the first argument that is not a flag, or after \\fB\\-\\-\\fR.\n");
    m.push_str(".SH OPTIONS\n");
    for cat in flags::categories(true) {
        m.push_str(&format!(".SS {}\n", roff(cat)));
        for f in FLAGS.iter().filter(|f| f.category == cat) {
            m.push_str(&man_flag(f));
        }
    }
    m.push_str(
        ".SH CHECK MODE\n\
         \\fBrootlesskit \\-\\-check\\fR [\\fIoptions\\fR] inspects this host for exactly the given options and prints one line per prerequisite, \\fBok\\fR or \\fBFAIL\\fR, followed by the command that fixes each failure: sub\\-ID ranges, newuidmap/newgidmap, user namespace sysctls, AppArmor, /dev/net/tun, the network driver binary, ip_unprivileged_port_start against the \\fB\\-p\\fR ports, io_uring and the forwarding backend, and the pipe budget. The exit status is 0 when every check passes, 1 otherwise. This mode is specific to rootlesskit\\-rs.\n",
    );
    m.push_str(
        ".SH ENVIRONMENT\n\
         Set for the command: \\fBROOTLESSKIT_STATE_DIR\\fR (absolute state directory), \\fBROOTLESSKIT_PARENT_EUID\\fR, \\fBROOTLESSKIT_PARENT_EGID\\fR.\n\
         .PP\nRead: \\fBLISTEN_PID\\fR, \\fBLISTEN_FDS\\fR (systemd socket activation; the sockets are passed on to the command), \\fBGETSUBIDS\\fR (name of the getsubids binary), \\fBTMPDIR\\fR (where the default state directory is created), \\fBPATH\\fR.\n",
    );
    m.push_str(
        ".SH EXIT STATUS\n\
         The exit status of \\fIcommand\\fR; 255 if it was killed by a signal; 1 for an error of rootlesskit itself (bad flag, setup failure). \\fB\\-\\-help\\fR, \\fB\\-\\-version\\fR and \\fB\\-\\-print\\-semver\\fR exit 0.\n",
    );
    m.push_str(
        ".SH FILES\n\
         \\fI/etc/subuid\\fR, \\fI/etc/subgid\\fR: sub\\-ID ranges (see \\fBsubuid\\fR(5)).\n\
         .br\n\
         \\fI$ROOTLESSKIT_STATE_DIR/api.sock\\fR: the REST API (see \\fBrootlessctl\\fR(1)); \\fIchild_pid\\fR, \\fIlock\\fR, \\fInetns\\fR (with \\-\\-detach\\-netns).\n",
    );
    m.push_str(
        ".SH EXAMPLES\n\
         .nf\n\
         rootlesskit bash\n\
         rootlesskit \\-\\-copy\\-up=/etc bash\n\
         rootlesskit \\-\\-copy\\-up=/etc \\-\\-net=slirp4netns \\-\\-disable\\-host\\-loopback \\-\\-port\\-driver=builtin \\-p 127.0.0.1:8080:80/tcp bash\n\
         rootlesskit \\-\\-check \\-\\-net=slirp4netns \\-\\-port\\-driver=builtin \\-p 0.0.0.0:80:80/tcp\n\
         .fi\n",
    );
    m.push_str(
        ".SH SEE ALSO\n\\fBrootlessctl\\fR(1), \\fBrootlesskit\\-docker\\-proxy\\fR(1), \\fBuser_namespaces\\fR(7), \\fBnewuidmap\\fR(1), \\fBsubuid\\fR(5)\n",
    );
    m
}

/// `rootlessctl(1)`.
pub fn man_rootlessctl() -> String {
    let mut m = man_header("rootlessctl", "RootlessKit API client");
    m.push_str(
        ".SH SYNOPSIS\n\\fBrootlessctl\\fR [\\fIglobal options\\fR] \\fIcommand\\fR [\\fIcommand options\\fR] [\\fIarguments\\fR...]\n\
         .SH DESCRIPTION\n\
         Talks to the REST API of a running \\fBrootlesskit\\fR(1) over its unix socket.\n\
         .SH GLOBAL OPTIONS\n\
         .TP\n\\fB\\-\\-debug\\fR\ndebug mode (default: false)\n\
         .TP\n\\fB\\-\\-socket\\fR \\fIvalue\\fR\nPath to api.sock (under the \"rootlesskit \\-\\-state\\-dir\" directory), defaults to $ROOTLESSKIT_STATE_DIR/api.sock\n\
         .TP\n\\fB\\-\\-help\\fR, \\fB\\-h\\fR\nshow help\n\
         .TP\n\\fB\\-\\-version\\fR, \\fB\\-v\\fR\nprint the version\n\
         .SH COMMANDS\n\
         .TP\n\\fBlist\\-ports\\fR [\\fB\\-\\-json\\fR]\nList ports.\n\
         .TP\n\\fBadd\\-ports\\fR [\\fB\\-\\-json\\fR] \\fISPEC\\fR...\nAdd ports; \\fISPEC\\fR is [\\fIPARENTIP\\fR]:\\fIPARENTPORT\\fR:[\\fICHILDIP\\fR:]\\fICHILDPORT\\fR/\\fIPROTO\\fR. Prints the ID of each port.\n\
         .TP\n\\fBremove\\-ports\\fR \\fIID\\fR...\nRemove ports.\n\
         .TP\n\\fBinfo\\fR [\\fB\\-\\-json\\fR]\nShow info.\n\
         .TP\n\\fBstats\\fR [\\fB\\-\\-json\\fR] [\\fB\\-\\-watch\\fR[=\\fIINTERVAL\\fR]] [\\fIID\\fR...]\nTraffic statistics of published ports (rootlesskit\\-rs extension; builtin port driver only; not listed by \\fBrootlessctl help\\fR, whose output matches RootlessKit's): active and total TCP connections or UDP flows, bytes in (host to namespace) and out in IEC units, errors. \\fB\\-\\-json\\fR prints the API object of each port on its own line. \\fB\\-\\-watch\\fR clears the screen and redraws every \\fIINTERVAL\\fR (default 1s; \\fB500ms\\fR, \\fB2s\\fR, \\fB1m\\fR or bare seconds) with new connections, bytes in and bytes out per second, until interrupted; with \\fB\\-\\-json\\fR it appends one batch of lines per interval with \\fBconnsPerSec\\fR, \\fBbytesInPerSec\\fR and \\fBbytesOutPerSec\\fR.\n\
         .TP\n\\fBhelp\\fR, \\fBh\\fR\nShows a list of commands or help for one command.\n\
         .SH EXIT STATUS\n0 on success, 1 on error (\\fBerror: ...\\fR on stderr), 3 for an unknown command.\n\
         .SH SEE ALSO\n\\fBrootlesskit\\fR(1)\n",
    );
    m
}

/// `rootlesskit-docker-proxy(1)`.
pub fn man_docker_proxy() -> String {
    let mut m = man_header(
        "rootlesskit-docker-proxy",
        "userland proxy for Docker (27 and older) under RootlessKit",
    );
    m.push_str(
        ".SH SYNOPSIS\n\\fBrootlesskit\\-docker\\-proxy\\fR \\fB\\-container\\-ip\\fR \\fIip\\fR \\fB\\-container\\-port\\fR \\fIport\\fR \\fB\\-host\\-ip\\fR \\fIip\\fR \\fB\\-host\\-port\\fR \\fIport\\fR \\fB\\-proto\\fR \\fIproto\\fR\n\
         .SH DESCRIPTION\n\
         Deprecated. Docker 27 and older runs it instead of \\fBdocker\\-proxy\\fR when \\fBROOTLESSKIT_STATE_DIR\\fR is set. It asks RootlessKit (through $ROOTLESSKIT_STATE_DIR/api.sock) to publish the host port, then runs the real \\fBdocker\\-proxy\\fR inside the namespace, and removes the port on SIGINT. With the port driver \\fBnone\\fR or \\fBimplicit\\fR it executes \\fBdocker\\-proxy\\fR directly. Docker 28 and later do not use it.\n\
         .SH OPTIONS\n\
         .TP\n\\fB\\-container\\-ip\\fR \\fIstring\\fR\ncontainer ip\n\
         .TP\n\\fB\\-container\\-port\\fR \\fIint\\fR\ncontainer port (default \\-1)\n\
         .TP\n\\fB\\-host\\-ip\\fR \\fIstring\\fR\nhost ip\n\
         .TP\n\\fB\\-host\\-port\\fR \\fIint\\fR\nhost port (default \\-1)\n\
         .TP\n\\fB\\-proto\\fR \\fIstring\\fR\nproxy protocol (default \"tcp\")\n\
         .SH SEE ALSO\n\\fBrootlesskit\\fR(1), \\fBrootlessctl\\fR(1)\n",
    );
    m
}

fn visible() -> impl Iterator<Item = &'static FlagDef> {
    FLAGS.iter()
}

/// bash completion for `rootlesskit` (flags, flag values, then the command).
pub fn bash_completion() -> String {
    let mut all = Vec::new();
    let mut takes_value = Vec::new();
    for f in visible() {
        for n in f.names() {
            let dash = if n.len() == 1 { "-" } else { "--" };
            all.push(format!("{dash}{n}"));
            if f.kind != FlagKind::Bool {
                takes_value.push(format!("{dash}{n}"));
            }
        }
    }
    let mut cases = String::new();
    for f in visible().filter(|f| f.kind != FlagKind::Bool) {
        let pats = f
            .names()
            .map(|n| {
                if n.len() == 1 {
                    format!("-{n}")
                } else {
                    format!("--{n}|-{n}")
                }
            })
            .collect::<Vec<_>>()
            .join("|");
        let action = match f.complete {
            Complete::Values => format!(
                "COMPREPLY=($(compgen -W \"{}\" -- \"$cur\"))",
                f.values.join(" ")
            ),
            Complete::Dir => "COMPREPLY=($(compgen -d -- \"$cur\"))".to_string(),
            Complete::File => "COMPREPLY=($(compgen -f -- \"$cur\"))".to_string(),
            Complete::Command => "COMPREPLY=($(compgen -c -- \"$cur\"))".to_string(),
            Complete::Text => "COMPREPLY=()".to_string(),
        };
        cases.push_str(&format!(
            "        {pats})\n            {action}\n            return ;;\n"
        ));
    }
    format!(
        "# bash completion for rootlesskit (generated by rootlesskit-rs; do not edit)\n\
         _rootlesskit() {{\n\
         \x20   local cur prev i\n\
         \x20   cur=\"${{COMP_WORDS[COMP_CWORD]}}\"\n\
         \x20   prev=\"${{COMP_WORDS[COMP_CWORD-1]}}\"\n\
         \x20   # With '=' in COMP_WORDBREAKS, \"--net=s\" arrives as \"--net\" \"=\" \"s\".\n\
         \x20   if [[ \"$cur\" == \"=\" ]]; then cur=\"\"; elif [[ \"$prev\" == \"=\" ]]; then prev=\"${{COMP_WORDS[COMP_CWORD-2]}}\"; fi\n\
         \x20   # Once the command has started, complete its words like a normal command line.\n\
         \x20   for ((i = 1; i < COMP_CWORD; i++)); do\n\
         \x20       case \"${{COMP_WORDS[i]}}\" in\n\
         \x20           --) _command_offset $((i + 1)); return ;;\n\
         \x20           {value_pats}) ((i++)) ;;\n\
         \x20           -*) ;;\n\
         \x20           *) _command_offset $i; return ;;\n\
         \x20       esac\n\
         \x20   done\n\
         \x20   case \"$prev\" in\n\
         {cases}\
         \x20   esac\n\
         \x20   case \"$cur\" in\n\
         \x20       --*=*)\n\
         \x20           local flag=\"${{cur%%=*}}\" val=\"${{cur#*=}}\"\n\
         \x20           case \"$flag\" in\n\
         {eq_cases}\
         \x20           esac\n\
         \x20           return ;;\n\
         \x20       -*)\n\
         \x20           COMPREPLY=($(compgen -W \"{all}\" -- \"$cur\"))\n\
         \x20           return ;;\n\
         \x20   esac\n\
         \x20   COMPREPLY=($(compgen -c -- \"$cur\"))\n\
         }}\n\
         complete -F _rootlesskit rootlesskit\n",
        value_pats = takes_value.join("|"),
        all = all.join(" "),
        eq_cases = bash_eq_cases(),
    )
}

fn bash_eq_cases() -> String {
    let mut s = String::new();
    for f in visible().filter(|f| f.kind != FlagKind::Bool && f.complete == Complete::Values) {
        s.push_str(&format!(
            "                --{n}) COMPREPLY=($(compgen -P \"$flag=\" -W \"{v}\" -- \"$val\")) ;;\n",
            n = f.name,
            v = f.values.join(" ")
        ));
    }
    s
}

fn zsh_escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('\'', "'\\''")
        .replace('[', "\\[")
        .replace(']', "\\]")
        .replace(':', "\\:")
}

/// zsh completion for `rootlesskit`.
pub fn zsh_completion() -> String {
    let mut specs = Vec::new();
    for f in visible() {
        let action = match (f.kind, f.complete) {
            (FlagKind::Bool, _) => String::new(),
            (_, Complete::Values) => format!(":value:({})", f.values.join(" ")),
            (_, Complete::Dir) => ":directory:_files -/".to_string(),
            (_, Complete::File) => ":file:_files".to_string(),
            (_, Complete::Command) => ":command:_command_names -e".to_string(),
            (_, Complete::Text) => ":value: ".to_string(),
        };
        let repeat = if f.kind == FlagKind::StringSlice {
            "*"
        } else {
            ""
        };
        let desc = zsh_escape(f.usage.trim());
        for n in f.names() {
            let dash = if n.len() == 1 { "-" } else { "--" };
            let eq = if f.kind == FlagKind::Bool { "" } else { "=" };
            specs.push(format!("    '{repeat}{dash}{n}{eq}[{desc}]{action}' \\"));
        }
    }
    format!(
        "#compdef rootlesskit\n# zsh completion for rootlesskit (generated by rootlesskit-rs; do not edit)\n\n\
         _arguments -s -S \\\n{}\n    '(-)1:command:_command_names -e' \\\n    '(-)*::arguments:_normal'\n",
        specs.join("\n")
    )
}

/// fish completion for `rootlesskit`.
pub fn fish_completion() -> String {
    let mut out = String::from(
        "# fish completion for rootlesskit (generated by rootlesskit-rs; do not edit)\n\
         complete -c rootlesskit -f\n",
    );
    for f in visible() {
        let mut line = format!("complete -c rootlesskit -l {}", f.name);
        for a in f.aliases {
            if a.len() == 1 {
                line.push_str(&format!(" -s {a}"));
            } else {
                line.push_str(&format!(" -l {a}"));
            }
        }
        match (f.kind, f.complete) {
            (FlagKind::Bool, _) => {}
            (_, Complete::Values) => line.push_str(&format!(" -x -a '{}'", f.values.join(" "))),
            (_, Complete::Dir) => line.push_str(" -r -a '(__fish_complete_directories)'"),
            (_, Complete::File) => line.push_str(" -r -F"),
            (_, Complete::Command) => line.push_str(" -x -a '(__fish_complete_command)'"),
            (_, Complete::Text) => line.push_str(" -x"),
        }
        line.push_str(&format!(" -d '{}'", f.usage.trim().replace('\'', "\\'")));
        out.push_str(&line);
        out.push('\n');
    }
    out.push_str("complete -c rootlesskit -n 'not string match -q -- \"-*\" (commandline -ct)' -a '(__fish_complete_subcommand)'\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo_root() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default()
    }

    /// The committed man pages and completions match the flag table. Regenerate with
    /// `ROOTLESSKIT_UPDATE_GENERATED=1 cargo test -p rootlesskit-launcher --lib cli::gen`.
    #[test]
    fn generated_files_are_up_to_date() {
        let root = repo_root();
        if std::env::var_os("ROOTLESSKIT_UPDATE_GENERATED").is_some() {
            write_all(&root).expect("write generated files");
        }
        for (rel, content) in generate_all() {
            let on_disk = std::fs::read_to_string(root.join(&rel)).unwrap_or_default();
            assert!(
                on_disk == content,
                "{} is out of date; run ROOTLESSKIT_UPDATE_GENERATED=1 cargo test -p rootlesskit-launcher --lib cli::gen",
                rel.display()
            );
        }
    }

    #[test]
    fn every_flag_is_documented_and_completed() {
        let man = man_rootlesskit();
        let (bash, zsh, fish) = (bash_completion(), zsh_completion(), fish_completion());
        for f in FLAGS {
            assert!(
                man.contains(&roff(&format!("--{}", f.name))),
                "man: {}",
                f.name
            );
            assert!(bash.contains(&format!("--{}", f.name)), "bash: {}", f.name);
            assert!(zsh.contains(&format!("--{}", f.name)), "zsh: {}", f.name);
            assert!(
                fish.contains(&format!("-l {} ", f.name)),
                "fish: {}",
                f.name
            );
        }
        assert!(fish.contains("-s p") && fish.contains("-s h") && fish.contains("-s v"));
    }

    #[test]
    fn bash_completion_is_valid_shell() {
        let Ok(out) = std::process::Command::new("bash")
            .arg("-n")
            .arg("-c")
            .arg(bash_completion())
            .output()
        else {
            return;
        };
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
