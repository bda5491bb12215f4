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
        ("completions/bash/rootlessctl".into(), ctl_bash_completion()),
        ("completions/zsh/_rootlessctl".into(), ctl_zsh_completion()),
        (
            "completions/fish/rootlessctl.fish".into(),
            ctl_fish_completion(),
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
         .TP\n\\fB\\-\\-debug\\fR\ndebug mode (default: false): one line on stderr per API request with its method, path and HTTP status (or error), in the format of logrus (RootlessKit\\(aqs logging library), e.g. \\fBtime=\"2026\\-11\\-29T13:30:18Z\" level=debug msg=\"GET /v1/info: 200 OK\"\\fR.\n\
         .TP\n\\fB\\-\\-socket\\fR \\fIvalue\\fR\nPath to api.sock (under the \"rootlesskit \\-\\-state\\-dir\" directory), defaults to $ROOTLESSKIT_STATE_DIR/api.sock\n\
         .TP\n\\fB\\-\\-help\\fR, \\fB\\-h\\fR\nshow help\n\
         .TP\n\\fB\\-\\-version\\fR, \\fB\\-v\\fR\nprint the version\n\
         .SH COMMANDS\n\
         .TP\n\\fBlist\\-ports\\fR [\\fB\\-\\-json\\fR]\nList ports.\n\
         .TP\n\\fBadd\\-ports\\fR [\\fB\\-\\-json\\fR] \\fISPEC\\fR...\nAdd ports; \\fISPEC\\fR is [\\fIPARENTIP\\fR]:\\fIPARENTPORT\\fR:[\\fICHILDIP\\fR:]\\fICHILDPORT\\fR/\\fIPROTO\\fR. Prints the ID of each port.\n\
         .TP\n\\fBremove\\-ports\\fR \\fIID\\fR...\nRemove ports.\n\
         .TP\n\\fBinfo\\fR [\\fB\\-\\-json\\fR]\nShow info.\n\
         .TP\n\\fBstats\\fR [\\fB\\-\\-json\\fR] [\\fB\\-\\-watch\\fR[=\\fIINTERVAL\\fR]] [\\fIID\\fR...]\nTraffic statistics of published ports (rootlesskit\\-rs extension; builtin port driver only; not listed by \\fBrootlessctl help\\fR, whose output matches RootlessKit's): active and total TCP connections or UDP flows, bytes in (host to namespace) and out in IEC units, errors. \\fB\\-\\-json\\fR prints the API object of each port on its own line. \\fB\\-\\-watch\\fR prints a batch every \\fIINTERVAL\\fR (default 1s; \\fB500ms\\fR, \\fB2s\\fR, \\fB1m\\fR or bare seconds) with new connections, bytes in and bytes out per second: on a terminal it clears the screen and redraws the table under a title line; to a pipe or file it prints the plain table followed by an empty line each time (no escape codes); with \\fB\\-\\-json\\fR it appends one batch of lines per interval with \\fBconnsPerSec\\fR, \\fBbytesInPerSec\\fR and \\fBbytesOutPerSec\\fR (from the second batch on). SIGINT, SIGTERM and SIGHUP end it between two batches (never in the middle of a line) with status 0. If the rootlesskit being watched exits, it stops with \\fBerror: rootlesskit stopped answering on\\fR \\fISOCKET\\fR \\fB(did it exit?): ...\\fR and status 1.\n\
         .TP\n\\fBhelp\\fR, \\fBh\\fR\nShows a list of commands or help for one command.\n\
         .SH EXIT STATUS\n0 on success (also when \\fBstats \\-\\-watch\\fR is ended by SIGINT, SIGTERM or SIGHUP), 1 on error (\\fBerror: ...\\fR on stderr), 3 for an unknown command.\n\
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
         \x20           -*)\n\
         \x20               # \"--flag=value\" is three words; \"--flag value\" two for flags with values.\n\
         \x20               if [[ \"${{COMP_WORDS[i+1]}}\" == \"=\" ]]; then ((i += 2)); continue; fi\n\
         \x20               case \"${{COMP_WORDS[i]}}\" in {value_pats}) ((i++)) ;; esac ;;\n\
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

/// Flags of `rootlesskit` that take their value as the next word (`--net host`, `-p SPEC`,
/// also Go's single-dash long form `-net host`).
fn separate_value_forms() -> Vec<String> {
    let mut v = Vec::new();
    for f in visible().filter(|f| f.kind != FlagKind::Bool) {
        for n in f.names() {
            if n.len() == 1 {
                v.push(format!("-{n}"));
            } else {
                v.push(format!("--{n}"));
                v.push(format!("-{n}"));
            }
        }
    }
    v
}

/// fish completion for `rootlesskit`: its flags until the wrapped command starts (after the
/// first non-flag word, or after `--`), then that command's own completions.
pub fn fish_completion() -> String {
    let mut out = format!(
        "# fish completion for rootlesskit (generated by rootlesskit-rs; do not edit)\n\
         \n\
         # Where the wrapped command starts among the words before the cursor: prints its index\n\
         # and returns 0; returns 1 if none yet (rootlesskit flags), 2 right after `--` (command\n\
         # name expected), 3 when the word under the cursor is the value of a flag.\n\
         function __rootlesskit_command_index\n\
         \x20   set -l toks (commandline -opc)\n\
         \x20   set -l i 2\n\
         \x20   while test $i -le (count $toks)\n\
         \x20       switch $toks[$i]\n\
         \x20           case '--'\n\
         \x20               if test $i -lt (count $toks)\n\
         \x20                   math $i + 1\n\
         \x20                   return 0\n\
         \x20               end\n\
         \x20               return 2\n\
         \x20           case {values}\n\
         \x20               if test $i -eq (count $toks)\n\
         \x20                   return 3\n\
         \x20               end\n\
         \x20               set i (math $i + 1)\n\
         \x20           case '-*'\n\
         \x20           case '*'\n\
         \x20               echo $i\n\
         \x20               return 0\n\
         \x20       end\n\
         \x20       set i (math $i + 1)\n\
         \x20   end\n\
         \x20   return 1\n\
         end\n\
         \n\
         function __rootlesskit_before_command\n\
         \x20   __rootlesskit_command_index >/dev/null\n\
         \x20   set -l st $status\n\
         \x20   test $st -eq 1; or test $st -eq 3\n\
         end\n\
         \n\
         function __rootlesskit_wants_command\n\
         \x20   __rootlesskit_command_index >/dev/null\n\
         \x20   switch $status\n\
         \x20       case 2\n\
         \x20           return 0\n\
         \x20       case 1\n\
         \x20           not string match -q -- '-*' (commandline -ct)\n\
         \x20       case '*'\n\
         \x20           return 1\n\
         \x20   end\n\
         end\n\
         \n\
         # The wrapped command's own completions.\n\
         function __rootlesskit_complete_command\n\
         \x20   set -l i (__rootlesskit_command_index); or return\n\
         \x20   set -l toks (commandline -opc)\n\
         \x20   complete -C (string join -- ' ' (string escape -- $toks[$i..-1]) (commandline -ct))\n\
         end\n\
         \n\
         complete -c rootlesskit -f\n",
        values = separate_value_forms()
            .iter()
            .map(|v| format!("'{v}'"))
            .collect::<Vec<_>>()
            .join(" ")
    );
    for f in visible() {
        let mut line = format!(
            "complete -c rootlesskit -n __rootlesskit_before_command -l {}",
            f.name
        );
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
            (_, Complete::Dir) => line.push_str(" -x -a '(__fish_complete_directories)'"),
            (_, Complete::File) => line.push_str(" -r -F"),
            (_, Complete::Command) => line.push_str(" -x -a '(__fish_complete_command)'"),
            (_, Complete::Text) => line.push_str(" -x"),
        }
        line.push_str(&format!(" -d '{}'", fish_quote(f.usage.trim())));
        out.push_str(&line);
        out.push('\n');
    }
    out.push_str(
        "complete -c rootlesskit -n __rootlesskit_wants_command -a '(__fish_complete_command)'\n",
    );
    out.push_str(
        "complete -c rootlesskit -n '__rootlesskit_command_index >/dev/null' -a '(__rootlesskit_complete_command)'\n",
    );
    out
}

/// Text inside fish single quotes.
fn fish_quote(s: &str) -> String {
    s.replace('\\', "\\\\").replace('\'', "\\'")
}

/// `rootlessctl` commands for completion: (name, description, flags). `stats` is the
/// rootlesskit-rs extension (hidden from `rootlessctl help`, completed anyway).
const CTL_COMMANDS: &[(&str, &str, &[&str])] = &[
    ("list-ports", "List ports", &["--json"]),
    ("add-ports", "Add ports", &["--json"]),
    ("remove-ports", "Remove ports", &[]),
    ("info", "Show info", &["--json"]),
    (
        "stats",
        "Show traffic statistics of ports (rootlesskit-rs extension)",
        &["--json", "--watch"],
    ),
    (
        "help",
        "Shows a list of commands or help for one command",
        &[],
    ),
];

const CTL_SOCKET_USAGE: &str = "Path to api.sock (under the \"rootlesskit --state-dir\" directory), defaults to $ROOTLESSKIT_STATE_DIR/api.sock";

/// bash completion for `rootlessctl`: global flags, commands, their flags, and the IDs of the
/// published ports (asked from the running rootlesskit) for `remove-ports` and `stats`.
pub fn ctl_bash_completion() -> String {
    let names = CTL_COMMANDS
        .iter()
        .map(|c| c.0)
        .chain(["h"])
        .collect::<Vec<_>>()
        .join(" ");
    let mut cases = String::new();
    for (name, _, flags) in CTL_COMMANDS {
        let pats = if *name == "help" { "help|h" } else { name };
        let action = match *name {
            "help" => format!("COMPREPLY=($(compgen -W \"{names}\" -- \"$cur\"))"),
            "remove-ports" | "stats" => format!(
                "if [[ \"$cur\" == -* ]]; then COMPREPLY=($(compgen -W \"{}\" -- \"$cur\")); else COMPREPLY=($(compgen -W \"$(__rootlessctl_ids)\" -- \"$cur\")); fi",
                flags.join(" ")
            ),
            _ => format!(
                "[[ \"$cur\" == -* ]] && COMPREPLY=($(compgen -W \"{}\" -- \"$cur\"))",
                flags.join(" ")
            ),
        };
        cases.push_str(&format!("        {pats}) {action} ;;\n"));
    }
    format!(
        "# bash completion for rootlessctl (generated by rootlesskit-rs; do not edit)\n\
         # IDs of the published ports, from `rootlessctl list-ports` on the socket being completed.\n\
         __rootlessctl_ids() {{\n\
         \x20   rootlessctl ${{__rootlessctl_socket:+--socket=\"$__rootlessctl_socket\"}} list-ports 2>/dev/null | awk 'NR > 1 {{ print $1 }}'\n\
         }}\n\
         _rootlessctl() {{\n\
         \x20   local cur prev cmd= i __rootlessctl_socket=\n\
         \x20   cur=\"${{COMP_WORDS[COMP_CWORD]}}\"\n\
         \x20   prev=\"${{COMP_WORDS[COMP_CWORD-1]}}\"\n\
         \x20   # With '=' in COMP_WORDBREAKS, \"--socket=/x\" arrives as \"--socket\" \"=\" \"/x\".\n\
         \x20   if [[ \"$cur\" == \"=\" ]]; then cur=\"\"; elif [[ \"$prev\" == \"=\" ]]; then prev=\"${{COMP_WORDS[COMP_CWORD-2]}}\"; fi\n\
         \x20   for ((i = 1; i < COMP_CWORD; i++)); do\n\
         \x20       case \"${{COMP_WORDS[i]}}\" in\n\
         \x20           --socket|-socket)\n\
         \x20               if [[ \"${{COMP_WORDS[i+1]}}\" == \"=\" ]]; then ((i++)); fi\n\
         \x20               ((i + 1 < COMP_CWORD)) && __rootlessctl_socket=\"${{COMP_WORDS[i+1]}}\"\n\
         \x20               ((i++)) ;;\n\
         \x20           --socket=*|-socket=*) __rootlessctl_socket=\"${{COMP_WORDS[i]#*=}}\" ;;\n\
         \x20           -*) [[ \"${{COMP_WORDS[i+1]}}\" == \"=\" ]] && ((i += 2)) ;;\n\
         \x20           *) cmd=\"${{COMP_WORDS[i]}}\"; break ;;\n\
         \x20       esac\n\
         \x20   done\n\
         \x20   if [[ -z \"$cmd\" ]]; then\n\
         \x20       case \"$prev\" in\n\
         \x20           --socket|-socket) COMPREPLY=($(compgen -f -- \"$cur\")); return ;;\n\
         \x20       esac\n\
         \x20       if [[ \"$cur\" == -* ]]; then\n\
         \x20           COMPREPLY=($(compgen -W \"--debug --socket --help -h --version -v\" -- \"$cur\"))\n\
         \x20       else\n\
         \x20           COMPREPLY=($(compgen -W \"{names}\" -- \"$cur\"))\n\
         \x20       fi\n\
         \x20       return\n\
         \x20   fi\n\
         \x20   case \"$cmd\" in\n\
         {cases}\
         \x20   esac\n\
         }}\n\
         complete -F _rootlessctl rootlessctl\n"
    )
}

/// zsh completion for `rootlessctl`.
pub fn ctl_zsh_completion() -> String {
    let cmds = CTL_COMMANDS
        .iter()
        .map(|(n, d, _)| format!("        '{n}:{}'", zsh_escape(d)))
        .collect::<Vec<_>>()
        .join("\n");
    let mut cases = String::new();
    for (name, _, flags) in CTL_COMMANDS {
        let mut specs: Vec<String> = flags
            .iter()
            .map(|f| match *f {
                "--json" => "'--json[Prints as JSON]'".to_string(),
                "--watch" => "'--watch=-[redraw every INTERVAL (default 1s) with rates per second]:interval:(500ms 1s 2s 5s)'".to_string(),
                other => format!("'{other}'"),
            })
            .collect();
        match *name {
            "add-ports" => {
                specs.push("'*:port spec (PARENTIP\\:PARENTPORT\\:CHILDPORT/PROTO):'".to_string())
            }
            "remove-ports" | "stats" => specs.push("'*:port ID:__rootlessctl_ids'".to_string()),
            _ => {}
        }
        let action = if *name == "help" {
            "_describe -t commands 'rootlessctl command' cmds && ret=0".to_string()
        } else if specs.is_empty() {
            "_message 'no more arguments'".to_string()
        } else {
            format!("_arguments -s {} && ret=0", specs.join(" "))
        };
        let pats = if *name == "help" { "help|h" } else { name };
        cases.push_str(&format!("        ({pats}) {action} ;;\n"));
    }
    format!(
        "#compdef rootlessctl\n# zsh completion for rootlessctl (generated by rootlesskit-rs; do not edit)\n\n\
         # IDs of the published ports, from the rootlesskit whose socket is being completed.\n\
         __rootlessctl_ids() {{\n\
         \x20   local -a ids sock\n\
         \x20   [[ -n $__rootlessctl_socket ]] && sock=(--socket=$__rootlessctl_socket)\n\
         \x20   ids=(${{${{(f)\"$(_call_program ports rootlessctl $sock list-ports 2>/dev/null)\"}}[2,-1]%% *}})\n\
         \x20   _describe -t ports 'port ID' ids\n\
         }}\n\n\
         _rootlessctl() {{\n\
         \x20   local curcontext=$curcontext state line ret=1\n\
         \x20   typeset -A opt_args\n\
         \x20   local -a cmds\n\
         \x20   cmds=(\n\
         {cmds}\n\
         \x20   )\n\
         \x20   _arguments -C -s \\\n\
         \x20       '--debug[debug mode]' \\\n\
         \x20       '--socket=[{socket}]:api.sock:_files' \\\n\
         \x20       '(- *)'{{--help,-h}}'[show help]' \\\n\
         \x20       '(- *)'{{--version,-v}}'[print the version]' \\\n\
         \x20       '1:command:->command' \\\n\
         \x20       '*::argument:->argument' && ret=0\n\
         \x20   # The inner _arguments below resets opt_args; __rootlessctl_ids reads this.\n\
         \x20   local __rootlessctl_socket=${{(Q)opt_args[--socket]}}\n\
         \x20   case $state in\n\
         \x20   (command) _describe -t commands 'rootlessctl command' cmds && ret=0 ;;\n\
         \x20   (argument)\n\
         \x20       case $words[1] in\n\
         {cases}\
         \x20       esac ;;\n\
         \x20   esac\n\
         \x20   return ret\n\
         }}\n\n\
         _rootlessctl \"$@\"\n",
        socket = zsh_escape(CTL_SOCKET_USAGE),
    )
}

/// fish completion for `rootlessctl`.
pub fn ctl_fish_completion() -> String {
    let mut out = String::from(
        "# fish completion for rootlessctl (generated by rootlesskit-rs; do not edit)\n\
         \n\
         # The command word (list-ports, ...) if one is typed; with arguments, succeeds only when it\n\
         # is one of them.\n\
         function __rootlessctl_command\n\
         \x20   set -l toks (commandline -opc)\n\
         \x20   set -l i 2\n\
         \x20   while test $i -le (count $toks)\n\
         \x20       switch $toks[$i]\n\
         \x20           case --socket -socket\n\
         \x20               set i (math $i + 1)\n\
         \x20           case '-*'\n\
         \x20           case '*'\n\
         \x20               if test (count $argv) -eq 0; or contains -- $toks[$i] $argv\n\
         \x20                   echo $toks[$i]\n\
         \x20                   return 0\n\
         \x20               end\n\
         \x20               return 1\n\
         \x20       end\n\
         \x20       set i (math $i + 1)\n\
         \x20   end\n\
         \x20   return 1\n\
         end\n\
         \n\
         # IDs of the published ports (with proto and ports as description), from the rootlesskit\n\
         # whose socket is on the command line (else $ROOTLESSKIT_STATE_DIR).\n\
         function __rootlessctl_ids\n\
         \x20   set -l toks (commandline -opc)\n\
         \x20   set -l sock\n\
         \x20   for i in (seq 2 (count $toks))\n\
         \x20       switch $toks[$i]\n\
         \x20           case --socket -socket\n\
         \x20               set -q toks[(math $i + 1)]; and set sock --socket=$toks[(math $i + 1)]\n\
         \x20           case '--socket=*' '-socket=*'\n\
         \x20               set sock $toks[$i]\n\
         \x20       end\n\
         \x20   end\n\
         \x20   rootlessctl $sock list-ports 2>/dev/null | string match -r '^\\d+\\s.*' | string replace -r '^(\\d+)\\s+(\\S+)\\s+(.*\\S)\\s*$' '$1\\t$2 $3'\n\
         end\n\
         \n\
         complete -c rootlessctl -f\n\
         complete -c rootlessctl -n 'not __rootlessctl_command' -l debug -d 'debug mode'\n",
    );
    out.push_str(&format!(
        "complete -c rootlessctl -n 'not __rootlessctl_command' -l socket -r -F -d '{}'\n",
        fish_quote(CTL_SOCKET_USAGE)
    ));
    out.push_str(
        "complete -c rootlessctl -n 'not __rootlessctl_command' -l help -s h -d 'show help'\n\
         complete -c rootlessctl -n 'not __rootlessctl_command' -l version -s v -d 'print the version'\n",
    );
    for (name, desc, flags) in CTL_COMMANDS {
        out.push_str(&format!(
            "complete -c rootlessctl -n 'not __rootlessctl_command' -a {name} -d '{}'\n",
            fish_quote(desc)
        ));
        for f in *flags {
            let (flag, rest) = match *f {
                "--json" => ("json", " -d 'Prints as JSON'"),
                "--watch" => (
                    "watch",
                    " -d 'Redraw every INTERVAL (--watch=500ms; default 1s) with rates per second'",
                ),
                other => (other.trim_start_matches('-'), ""),
            };
            out.push_str(&format!(
                "complete -c rootlessctl -n '__rootlessctl_command {name}' -l {flag}{rest}\n"
            ));
        }
        match *name {
            "remove-ports" | "stats" => out.push_str(&format!(
                "complete -c rootlessctl -n '__rootlessctl_command {name}' -a '(__rootlessctl_ids)'\n"
            )),
            "help" => {
                for (n, d, _) in CTL_COMMANDS {
                    out.push_str(&format!(
                        "complete -c rootlessctl -n '__rootlessctl_command help h' -a {n} -d '{}'\n",
                        fish_quote(d)
                    ));
                }
            }
            _ => {}
        }
    }
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
