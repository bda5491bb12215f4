//! `--evacuate-cgroup2=NAME` (spec §7.2): move every process of our cgroup into the subgroup
//! NAME and enable the controllers on our group, so the child can create sub-cgroups.
//! Failures are warnings, like RootlessKit.

use std::fs;
use std::path::PathBuf;

use crate::warn;

fn cgroup2_mount() -> Option<PathBuf> {
    let mi = fs::read_to_string("/proc/self/mountinfo").ok()?;
    for line in mi.lines() {
        let (pre, post) = line.split_once(" - ")?;
        if post.split_whitespace().next() == Some("cgroup2") {
            return pre.split_whitespace().nth(4).map(PathBuf::from);
        }
    }
    None
}

fn own_group() -> Option<String> {
    let c = fs::read_to_string("/proc/self/cgroup").ok()?;
    c.lines()
        .find_map(|l| l.strip_prefix("0::").map(|s| s.to_string()))
}

pub fn evacuate(name: &str) {
    let (Some(mnt), Some(group)) = (cgroup2_mount(), own_group()) else {
        warn!("--evacuate-cgroup2: cgroup2 is not mounted, skipping");
        return;
    };
    let dir = mnt.join(group.trim_start_matches('/'));
    let sub = dir.join(name);
    if let Err(e) = fs::create_dir_all(&sub) {
        warn!(
            "--evacuate-cgroup2: failed to create {}: {e}",
            sub.display()
        );
        return;
    }
    crate::debug!(
        "--evacuate-cgroup2: moving processes from={} to={}",
        dir.display(),
        sub.display()
    );
    if let Ok(procs) = fs::read_to_string(dir.join("cgroup.procs")) {
        for pid in procs.lines() {
            if let Err(e) = fs::write(sub.join("cgroup.procs"), pid) {
                warn!(
                    "--evacuate-cgroup2: failed to move pid {pid} to {}: {e}",
                    sub.display()
                );
            }
        }
    }
    if let Ok(ctrls) = fs::read_to_string(dir.join("cgroup.controllers")) {
        for c in ctrls.split_whitespace() {
            match fs::write(dir.join("cgroup.subtree_control"), format!("+{c}")) {
                Ok(()) => crate::debug!("--evacuate-cgroup2: enabled controller={c}"),
                Err(e) => warn!(
                    "--evacuate-cgroup2: failed to enable controller {c} in {}: {e}",
                    dir.join("cgroup.subtree_control").display()
                ),
            }
        }
    }
}
