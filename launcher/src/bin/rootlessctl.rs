//! `rootlessctl`: RootlessKit API client, output byte-identical to RootlessKit's (urfave/cli v2
//! help and usage texts, Go `flag` parsing, tabwriter table, `json.Marshal(Indent)` output).

use std::io::Write;

use anyhow::{anyhow, Result};
use launcher::api::client::Client;
use launcher::api::gojson;
use launcher::api::Info;

const NAME_USAGE: &str = "rootlessctl - RootlessKit API client";

fn app_help() -> String {
    format!(
        "NAME:\n   {NAME_USAGE}\n\nUSAGE:\n   rootlessctl [global options] command [command options] [arguments...]\n\nVERSION:\n   {}\n\nCOMMANDS:\n   list-ports    List ports\n   add-ports     Add ports\n   remove-ports  Remove ports\n   info          Show info\n   help, h       Shows a list of commands or help for one command\n\nGLOBAL OPTIONS:\n   --debug         debug mode (default: false)\n   --socket value  Path to api.sock (under the \"rootlesskit --state-dir\" directory), defaults to $ROOTLESSKIT_STATE_DIR/api.sock\n   --help, -h      show help (default: false)\n   --version, -v   print the version (default: false)\n",
        launcher::VERSION
    )
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Cmd {
    ListPorts,
    AddPorts,
    RemovePorts,
    Info,
    Help,
}

impl Cmd {
    fn lookup(name: &str) -> Option<Cmd> {
        Some(match name {
            "list-ports" => Cmd::ListPorts,
            "add-ports" => Cmd::AddPorts,
            "remove-ports" => Cmd::RemovePorts,
            "info" => Cmd::Info,
            "help" | "h" => Cmd::Help,
            _ => return None,
        })
    }
    fn has_json(self) -> bool {
        matches!(self, Cmd::ListPorts | Cmd::AddPorts | Cmd::Info)
    }
    /// Help of a command; `with_help_flag` is true for `cmd --help` (urfave lists its own
    /// `--help` flag then) and false for `help cmd`.
    fn help(self, with_help_flag: bool) -> String {
        let json = if with_help_flag {
            "   --json      Prints as JSON (default: false)\n   --help, -h  show help (default: false)\n   \n"
        } else {
            "   --json  Prints as JSON (default: false)\n   \n"
        };
        let simple = |name: &str, usage: &str, args: &str| {
            format!(
                "NAME:\n   rootlessctl {name} - {usage}\n\nUSAGE:\n   rootlessctl {name} [command options] {args}\n\nOPTIONS:\n{json}"
            )
        };
        match self {
            Cmd::ListPorts => simple("list-ports", "List ports", "[flags]"),
            Cmd::Info => simple("info", "Show info", "[flags]"),
            Cmd::AddPorts => format!(
                "NAME:\n   rootlessctl add-ports - Add ports\n\nUSAGE:\n   rootlessctl add-ports [command options] [flags] PARENTIP:PARENTPORT:CHILDPORT/PROTO [PARENTIP:PARENTPORT:CHILDPORT/PROTO...]\n\nDESCRIPTION:\n   Add exposed ports. The port spec is similar to `docker run -p`. e.g. \"127.0.0.1:8080:80/tcp\".\n\nOPTIONS:\n{json}"
            ),
            Cmd::RemovePorts if with_help_flag => "NAME:\n   rootlessctl remove-ports - Remove ports\n\nUSAGE:\n   rootlessctl remove-ports [command options] [flags] ID [ID...]\n\nOPTIONS:\n   --help, -h  show help (default: false)\n   \n".into(),
            Cmd::RemovePorts => "NAME:\n   rootlessctl remove-ports - Remove ports\n\nUSAGE:\n   rootlessctl remove-ports [flags] ID [ID...]\n".into(),
            Cmd::Help => "NAME:\n    - Shows a list of commands or help for one command\n\nUSAGE:\n    [command options] [command]\n\nOPTIONS:\n   --help, -h  show help (default: false)\n   \n".into(),
        }
    }
}

/// Outcome of Go's `flag.FlagSet.Parse` for our small flag sets.
#[derive(Default)]
struct Flags {
    debug: bool,
    socket: Option<String>,
    help: bool,
    version: bool,
    json: bool,
    rest: Vec<String>,
}

fn parse_bool(v: &str, name: &str) -> Result<bool, String> {
    match v {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(false),
        _ => Err(format!(
            "invalid boolean value {} for -{name}: parse error",
            forwarder::spec::go_quote(v)
        )),
    }
}

/// Go's `flag` parsing: `-f`, `--f`, `-f=v`, `-f v` (non-bool), stops at the first non-flag or
/// after `--`. `global` selects the app's flag set, else a command's (`--json` if `json`).
fn parse_flags(args: &[String], global: bool, json: bool) -> Result<Flags, String> {
    let mut f = Flags::default();
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        if a.len() < 2 || !a.starts_with('-') {
            break;
        }
        if a == "--" {
            i += 1;
            break;
        }
        let name_val = a
            .strip_prefix("--")
            .unwrap_or_else(|| a.strip_prefix('-').unwrap_or(a));
        if name_val.is_empty() || name_val.starts_with('-') || name_val.starts_with('=') {
            return Err(format!("bad flag syntax: {a}"));
        }
        let (name, value) = match name_val.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (name_val, None),
        };
        i += 1;
        let bool_flag = |v: Option<&str>| v.map_or(Ok(true), |v| parse_bool(v, name));
        match name {
            "help" | "h" => f.help = bool_flag(value)?,
            "debug" if global => f.debug = bool_flag(value)?,
            "version" | "v" if global => f.version = bool_flag(value)?,
            "json" if json => f.json = bool_flag(value)?,
            "socket" if global => {
                let v = match value {
                    Some(v) => v.to_string(),
                    None => {
                        let v = args
                            .get(i)
                            .ok_or_else(|| format!("flag needs an argument: -{name}"))?;
                        i += 1;
                        v.clone()
                    }
                };
                f.socket = Some(v);
            }
            _ => return Err(format!("flag provided but not defined: -{name}")),
        }
    }
    f.rest = args[i..].to_vec();
    Ok(f)
}

enum Exit {
    Ok,
    Code(i32),
}

fn client(socket: &Option<String>) -> Result<Client> {
    let path = match socket {
        Some(s) if !s.is_empty() => s.clone(),
        _ => match std::env::var("ROOTLESSKIT_STATE_DIR") {
            Ok(d) if !d.is_empty() => format!("{d}/api.sock"),
            _ => {
                return Err(anyhow!(
                    "please specify --socket or set $ROOTLESSKIT_STATE_DIR"
                ))
            }
        },
    };
    Ok(Client::new(path)?)
}

/// Go's tabwriter with minwidth 4, tabwidth 8, padding 4, padchar ' ', flags 0, for lines
/// whose cells are all tab-terminated.
fn tabwrite(rows: &[Vec<String>]) -> String {
    let ncols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..ncols)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count() + 4)
                .max()
                .unwrap_or(0)
                .max(4)
        })
        .collect();
    let mut out = String::new();
    for r in rows {
        for (c, cell) in r.iter().enumerate() {
            out.push_str(cell);
            for _ in cell.chars().count()..widths[c] {
                out.push(' ');
            }
        }
        out.push('\n');
    }
    out
}

fn print_info(info: &Info, json: bool, out: &mut String) {
    if json {
        out.push_str(&gojson::marshal_indent(info));
        out.push('\n');
        return;
    }
    out.push_str(&format!("- REST API version: {}\n", info.api_version));
    out.push_str(&format!("- Implementation version: {}\n", info.version));
    out.push_str(&format!("- State Directory: {}\n", info.state_dir));
    out.push_str(&format!("- Child PID: {}\n", info.child_pid));
    if let Some(n) = &info.network_driver {
        out.push_str(&format!("- Network Driver: {}\n", n.driver));
        out.push_str(&format!("  - DNS: [{}]\n", n.dns.join(" ")));
        if !n.child_ip.is_empty() {
            out.push_str(&format!("  - IP: {}\n", n.child_ip));
        }
    }
    if let Some(p) = &info.port_driver {
        out.push_str(&format!("- Port Driver: {}\n", p.driver));
        out.push_str(&format!(
            "  - Supported protocols: [{}]\n",
            p.protos.as_deref().unwrap_or_default().join(" ")
        ));
    }
}

/// Runs a command; output goes to `out` as it is produced (printed even when a later step
/// fails, like Go's per-line prints).
fn run_cmd(cmd: Cmd, g: &Flags, f: &Flags, out: &mut dyn Write) -> Result<()> {
    match cmd {
        Cmd::Info => {
            let info = client(&g.socket)?.info()?;
            let mut s = String::new();
            print_info(&info, f.json, &mut s);
            out.write_all(s.as_bytes())?;
        }
        Cmd::ListPorts => {
            let ports = client(&g.socket)?.list_ports()?;
            let mut s = String::new();
            if f.json {
                for p in &ports {
                    s.push_str(&gojson::marshal(p));
                    s.push('\n');
                }
            } else {
                let mut rows = vec![[
                    "ID",
                    "PROTO",
                    "PARENTIP",
                    "PARENTPORT",
                    "CHILDIP",
                    "CHILDPORT",
                ]
                .iter()
                .map(|s| s.to_string())
                .collect::<Vec<_>>()];
                for p in &ports {
                    rows.push(vec![
                        p.id.to_string(),
                        p.spec.proto.clone(),
                        p.spec.parent_ip.clone(),
                        p.spec.parent_port.to_string(),
                        p.spec.child_ip.clone(),
                        p.spec.child_port.to_string(),
                    ]);
                }
                s = tabwrite(&rows);
            }
            out.write_all(s.as_bytes())?;
        }
        Cmd::AddPorts => {
            if f.rest.is_empty() {
                return Err(anyhow!("no port specified"));
            }
            let specs = f
                .rest
                .iter()
                .map(|s| forwarder::PortSpec::parse(s))
                .collect::<Result<Vec<_>, _>>()?;
            let c = client(&g.socket)?;
            for sp in &specs {
                let st = c.add_port(sp)?;
                if f.json {
                    writeln!(out, "{}", gojson::marshal(&st))?;
                } else {
                    writeln!(out, "{}", st.id)?;
                }
            }
        }
        Cmd::RemovePorts => {
            if f.rest.is_empty() {
                return Err(anyhow!("no ID specified"));
            }
            let ids = f
                .rest
                .iter()
                .map(|s| forwarder::spec::go_atoi(s))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| anyhow!(e))?;
            let c = client(&g.socket)?;
            for id in ids {
                c.remove_port(id)?;
                writeln!(out, "{id}")?;
            }
        }
        Cmd::Help => {}
    }
    Ok(())
}

fn main() {
    // Like a Go program, die quietly of SIGPIPE when stdout goes away (`| head`) instead of
    // reporting EPIPE as an error (Rust ignores SIGPIPE by default).
    // SAFETY: restoring the default disposition of SIGPIPE before any thread exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    let code = match real_main(&args) {
        Exit::Ok => 0,
        Exit::Code(c) => c,
    };
    let _ = std::io::stdout().flush();
    std::process::exit(code);
}

fn real_main(args: &[String]) -> Exit {
    let mut stdout = std::io::stdout().lock();
    let usage_err = |out: &mut dyn Write, sep: &str, e: &str, help: &str| {
        let _ = write!(out, "Incorrect Usage{sep} {e}\n\n{help}");
        eprintln!("error: {e}");
        Exit::Code(1)
    };
    let g = match parse_flags(args, true, false) {
        Ok(g) => g,
        Err(e) => return usage_err(&mut stdout, ".", &e, &app_help()),
    };
    if g.help {
        let _ = stdout.write_all(app_help().as_bytes());
        return Exit::Ok;
    }
    if g.version {
        let _ = writeln!(stdout, "rootlessctl version {}", launcher::VERSION);
        return Exit::Ok;
    }
    let Some(name) = g.rest.first() else {
        let _ = stdout.write_all(app_help().as_bytes());
        return Exit::Ok;
    };
    let Some(cmd) = Cmd::lookup(name) else {
        eprintln!("No help topic for '{name}'");
        return Exit::Code(3);
    };
    let f = match parse_flags(&g.rest[1..], false, cmd.has_json()) {
        Ok(f) => f,
        Err(e) => return usage_err(&mut stdout, ":", &e, &cmd.help(true)),
    };
    if f.help {
        let _ = stdout.write_all(cmd.help(true).as_bytes());
        return Exit::Ok;
    }
    if cmd == Cmd::Help {
        let text = match f.rest.first() {
            None => app_help(),
            Some(t) => match Cmd::lookup(t) {
                Some(c) => c.help(false),
                None => {
                    eprintln!("No help topic for '{t}'");
                    return Exit::Code(3);
                }
            },
        };
        let _ = stdout.write_all(text.as_bytes());
        return Exit::Ok;
    }
    match run_cmd(cmd, &g, &f, &mut stdout) {
        Ok(()) => Exit::Ok,
        Err(e) => {
            let _ = stdout.flush();
            eprintln!("error: {e}");
            Exit::Code(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tabwriter_layout() {
        let rows: Vec<Vec<String>> = [
            vec![
                "ID",
                "PROTO",
                "PARENTIP",
                "PARENTPORT",
                "CHILDIP",
                "CHILDPORT",
            ],
            vec!["3", "tcp", "", "18003", "", "2"],
            vec!["4", "tcp", "127.0.0.1", "18123", "", "80"],
        ]
        .iter()
        .map(|r| r.iter().map(|s| s.to_string()).collect())
        .collect();
        // Observed from rootlessctl 1.1.0.
        assert_eq!(
            tabwrite(&rows),
            "ID    PROTO    PARENTIP     PARENTPORT    CHILDIP    CHILDPORT    \n\
             3     tcp                   18003                    2            \n\
             4     tcp      127.0.0.1    18123                    80           \n"
        );
    }

    #[test]
    fn go_flag_parsing() {
        let a = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let f = parse_flags(
            &a(&["-socket", "/x", "--debug", "list-ports", "--json"]),
            true,
            false,
        )
        .unwrap();
        assert_eq!(f.socket.as_deref(), Some("/x"));
        assert!(f.debug);
        assert_eq!(f.rest, a(&["list-ports", "--json"]));
        assert_eq!(
            parse_flags(&a(&["-x"]), true, false).err().unwrap(),
            "flag provided but not defined: -x"
        );
        assert_eq!(
            parse_flags(&a(&["--socket"]), true, false).err().unwrap(),
            "flag needs an argument: -socket"
        );
        assert_eq!(
            parse_flags(&a(&["--json=maybe"]), false, true)
                .err()
                .unwrap(),
            "invalid boolean value \"maybe\" for -json: parse error"
        );
        let f = parse_flags(&a(&["--json=false", "--", "-5"]), false, true).unwrap();
        assert!(!f.json);
        assert_eq!(f.rest, a(&["-5"]));
    }
}
