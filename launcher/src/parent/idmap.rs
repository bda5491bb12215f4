//! Sub-ID ranges and the uid/gid maps (spec §7.3).
//!
//! Sources: `static` parses /etc/subuid and /etc/subgid (lines `name_or_uid:start:count`, every
//! matching line by user name or uid), `dynamic` runs `getsubids` (`GETSUBIDS` overrides the
//! binary) for the name and the uid and merges the ranges without duplicates, `auto` tries
//! dynamic then static. The maps are written by the setuid helpers with the exact argument
//! layout of RootlessKit: `newuidmap PID 0 UID 1 1 START1 COUNT1 1+COUNT1 START2 COUNT2 ...`.

use std::io;
use std::path::Path;
use std::process::Command;

use crate::cli::SubidSource;

/// One contiguous sub-ID range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubIdRange {
    pub start: u64,
    pub count: u64,
}

/// Errors, each naming the user, file or helper and the fix.
#[derive(Debug, thiserror::Error)]
pub enum IdMapError {
    #[error("failed to setup UID/GID map: failed to compute uid/gid map: No sub{kind} ranges found for user {uid} (\"{user}\"); add a line like \"{user}:100000:65536\" to /etc/sub{kind} (as root: usermod --add-sub{kind}s 100000-165535 {user})")]
    NoRanges {
        kind: &'static str,
        uid: u32,
        user: String,
    },
    #[error("failed to read {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: io::Error,
    },
    #[error("{helper} not found in $PATH: install the \"uidmap\" package (apt-get install uidmap) or put {helper} in $PATH")]
    HelperMissing { helper: &'static str },
    #[error("{helper} {pid} {args} failed: {output}: {status}")]
    HelperFailed {
        helper: &'static str,
        pid: i32,
        args: String,
        output: String,
        status: String,
    },
    #[error("getsubids failed: {0}")]
    Getsubids(String),
}

/// A range is usable when it is non-empty and ends within the 32-bit id space.
fn valid_range(start: u64, count: u64) -> bool {
    count > 0 && start.checked_add(count).is_some_and(|e| e <= 1u64 << 32)
}

/// Parse /etc/subuid-style content: every range of lines matching `user` or `uid`.
pub fn parse_subid_file(content: &str, user: &str, uid: u32) -> Vec<SubIdRange> {
    let uid_s = uid.to_string();
    let mut out = Vec::new();
    for line in content.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut parts = line.split(':');
        let (Some(name), Some(start), Some(count)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        if name != user && name != uid_s {
            continue;
        }
        if let (Ok(start), Ok(count)) = (start.trim().parse(), count.trim().parse()) {
            if valid_range(start, count) {
                out.push(SubIdRange { start, count });
            }
        }
    }
    out
}

/// Parse `getsubids` output lines `N: name start count`.
pub fn parse_getsubids(output: &str) -> Vec<SubIdRange> {
    let mut out = Vec::new();
    for line in output.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() != 4 || !f[0].ends_with(':') {
            continue;
        }
        if let (Ok(start), Ok(count)) = (f[2].parse(), f[3].parse()) {
            if valid_range(start, count) {
                out.push(SubIdRange { start, count });
            }
        }
    }
    out
}

fn dedup(ranges: Vec<SubIdRange>) -> Vec<SubIdRange> {
    let mut out: Vec<SubIdRange> = Vec::new();
    for r in ranges {
        if !out.contains(&r) {
            out.push(r);
        }
    }
    out
}

fn getsubids(group: bool, user: &str, uid: u32) -> Result<Vec<SubIdRange>, IdMapError> {
    let bin = std::env::var("GETSUBIDS")
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "getsubids".to_string());
    let mut all = Vec::new();
    let mut errors = Vec::new();
    for who in [user.to_string(), uid.to_string()] {
        let mut cmd = Command::new(&bin);
        if group {
            cmd.arg("-g");
        }
        cmd.arg(&who);
        match cmd.output() {
            Ok(o) if o.status.success() => {
                all.extend(parse_getsubids(&String::from_utf8_lossy(&o.stdout)))
            }
            Ok(o) => errors.push(format!(
                "{bin} {}{who}: {} {}",
                if group { "-g " } else { "" },
                o.status,
                String::from_utf8_lossy(&o.stderr).trim()
            )),
            Err(e) => errors.push(format!("{bin}: {e}")),
        }
    }
    if errors.len() == 2 {
        return Err(IdMapError::Getsubids(errors.join("; ")));
    }
    Ok(dedup(all))
}

/// Resolve the ranges for the user from the chosen source.
pub fn ranges(
    source: SubidSource,
    group: bool,
    user: &str,
    uid: u32,
    etc: &Path,
) -> Result<Vec<SubIdRange>, IdMapError> {
    let kind = if group { "gid" } else { "uid" };
    let static_ranges = || -> Result<Vec<SubIdRange>, IdMapError> {
        let path = etc.join(format!("sub{kind}"));
        match std::fs::read_to_string(&path) {
            Ok(c) => Ok(parse_subid_file(&c, user, uid)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(source) => Err(IdMapError::Read {
                path: path.display().to_string(),
                source,
            }),
        }
    };
    let r = match source {
        SubidSource::Static => static_ranges()?,
        SubidSource::Dynamic => getsubids(group, user, uid)?,
        // libsubid only consults something other than /etc/sub[ug]id when nsswitch.conf
        // names a `subid:` service; without one, `getsubids` would read the same files, so the
        // four helper runs (~10 ms) are skipped.
        SubidSource::Auto if !nsswitch_has_subid_service(Path::new("/etc/nsswitch.conf")) => {
            static_ranges()?
        }
        SubidSource::Auto => match getsubids(group, user, uid) {
            Ok(r) if !r.is_empty() => r,
            _ => static_ranges()?,
        },
    };
    if r.is_empty() {
        return Err(IdMapError::NoRanges {
            kind,
            uid,
            user: user.to_string(),
        });
    }
    Ok(r)
}

/// Whether nsswitch.conf configures a sub-id service other than plain files.
pub fn nsswitch_has_subid_service(path: &Path) -> bool {
    let Ok(c) = std::fs::read_to_string(path) else {
        return false;
    };
    c.lines().any(|l| {
        let l = l.split('#').next().unwrap_or("").trim();
        match l.strip_prefix("subid:") {
            Some(rest) => rest.split_whitespace().any(|s| s != "files"),
            None => false,
        }
    })
}

/// The mapping arguments after the PID: `0 ID 1 1 START1 COUNT1 1+COUNT1 START2 COUNT2 ...`.
pub fn map_args(id: u32, ranges: &[SubIdRange]) -> Vec<String> {
    let mut args = vec!["0".to_string(), id.to_string(), "1".to_string()];
    let mut next = 1u64;
    for r in ranges {
        // ids are 32-bit: a range that would run past 2^32 inside the namespace is dropped
        // (the parsers already refuse ranges that run past 2^32 on the host).
        let Some(end) = next.checked_add(r.count).filter(|e| *e <= 1u64 << 32) else {
            break;
        };
        args.push(next.to_string());
        args.push(r.start.to_string());
        args.push(r.count.to_string());
        next = end;
    }
    args
}

fn find_in_path(name: &str) -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// Run `newuidmap` and `newgidmap` for `pid` concurrently (each is a setuid exec).
pub fn write_maps(pid: i32, uid_args: &[String], gid_args: &[String]) -> Result<(), IdMapError> {
    let spawn =
        |helper: &'static str, args: &[String]| -> Result<std::process::Child, IdMapError> {
            let bin = find_in_path(helper).ok_or(IdMapError::HelperMissing { helper })?;
            crate::debug!(
                "{helper} pid={pid} args=\"{}\" binary={}",
                args.join(" "),
                bin.display()
            );
            let mut cmd = Command::new(bin);
            cmd.arg(pid.to_string())
                .args(args)
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped());
            crate::sys::prepare_command(&mut cmd, false);
            cmd.spawn().map_err(|e| IdMapError::HelperFailed {
                helper,
                pid,
                args: format!("{args:?}"),
                output: String::new(),
                status: e.to_string(),
            })
        };
    let u = spawn("newuidmap", uid_args)?;
    let g = spawn("newgidmap", gid_args);
    let ru = finish("newuidmap", pid, uid_args, u);
    let rg = g.and_then(|g| finish("newgidmap", pid, gid_args, g));
    ru.and(rg)
}

fn finish(
    helper: &'static str,
    pid: i32,
    args: &[String],
    child: std::process::Child,
) -> Result<(), IdMapError> {
    let out = child
        .wait_with_output()
        .map_err(|e| IdMapError::HelperFailed {
            helper,
            pid,
            args: format!("{args:?}"),
            output: String::new(),
            status: e.to_string(),
        })?;
    if !out.status.success() {
        let mut output = String::from_utf8_lossy(&out.stdout).to_string();
        output.push_str(&String::from_utf8_lossy(&out.stderr));
        return Err(IdMapError::HelperFailed {
            helper,
            pid,
            args: format!("{args:?}"),
            output: output.trim().to_string(),
            status: out.status.to_string(),
        });
    }
    crate::debug!("{helper} done pid={pid}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_ranges_like_upstream_parent_test() {
        let r = [
            SubIdRange {
                start: 100000,
                count: 65536,
            },
            SubIdRange {
                start: 200000,
                count: 65536,
            },
        ];
        assert_eq!(
            map_args(1001, &r).join(" "),
            "0 1001 1 1 100000 65536 65537 200000 65536"
        );
    }

    #[test]
    fn huge_ranges_are_refused_not_overflowed() {
        // fuzz/regressions/subid/map_args-overflow
        let c =
            "rktest:18446744073709551615:18446744073709551615\nrktest:1:1\nrktest:4294967295:2\n";
        let r = parse_subid_file(c, "rktest", 1001);
        assert_eq!(r, vec![SubIdRange { start: 1, count: 1 }]);
        let big = [
            SubIdRange {
                start: 0,
                count: 1u64 << 32,
            },
            SubIdRange { start: 1, count: 1 },
        ];
        assert_eq!(map_args(1001, &big).join(" "), "0 1001 1");
    }

    #[test]
    fn subid_file_by_name_and_uid_with_comments() {
        let c = "# comment\nalice:100000:65536\n1001:300000:10\nbob:1:2\nbad line\nalice:x:1\n";
        assert_eq!(
            parse_subid_file(c, "alice", 1001),
            vec![
                SubIdRange {
                    start: 100000,
                    count: 65536
                },
                SubIdRange {
                    start: 300000,
                    count: 10
                }
            ]
        );
        assert!(parse_subid_file(c, "carol", 5).is_empty());
    }

    #[test]
    fn nsswitch_subid_detection() {
        let dir = std::env::temp_dir().join(format!("rk-nss-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("nsswitch.conf");
        std::fs::write(&f, "passwd: files\n# subid: sss\n").unwrap();
        assert!(!nsswitch_has_subid_service(&f));
        std::fs::write(&f, "subid: files\n").unwrap();
        assert!(!nsswitch_has_subid_service(&f));
        std::fs::write(&f, "subid:   sss\n").unwrap();
        assert!(nsswitch_has_subid_service(&f));
        assert!(!nsswitch_has_subid_service(&dir.join("missing")));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn getsubids_output_and_dedup() {
        let out = "0: rktest 100000 65536\n1: rktest 200000 10\n";
        let mut all = parse_getsubids(out);
        all.extend(parse_getsubids("0: 1001 100000 65536\n"));
        assert_eq!(
            dedup(all),
            vec![
                SubIdRange {
                    start: 100000,
                    count: 65536
                },
                SubIdRange {
                    start: 200000,
                    count: 10
                }
            ]
        );
        assert!(parse_getsubids("Error fetching ranges\n").is_empty());
    }

    #[test]
    fn no_ranges_error_names_user_and_fix() {
        let dir = std::env::temp_dir().join(format!("rk-idmap-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("subuid"), "other:1:2\n").unwrap();
        let e = ranges(SubidSource::Static, false, "nobody", 65534, &dir)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("failed to setup UID/GID map: failed to compute uid/gid map: No subuid ranges found for user 65534 (\"nobody\")"), "{e}");
        assert!(e.contains("nobody:100000:65536"), "{e}");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
