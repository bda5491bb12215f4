//! Mounts done by the child inside its own mount namespace (spec §6).
//!
//! - Propagation of `/`: `mount("none", "/", NULL, MS_REC|MS_PRIVATE)` and friends.
//! - Copy-up (`tmpfs+symlink`), per directory `d`:
//!   1. once, `bind0 = mkdtemp("/tmp/rootlesskit-bXXXXXX")` (outside the state dir so `/run`
//!      can be copied up even when the state dir lives below `/run`);
//!   2. rbind `d` on `bind0`;
//!   3. mount a fresh tmpfs on `d` (mode 1777);
//!   4. `bind1 = mkdtemp("d/.roXXXXXXXXXX")`;
//!   5. move `bind0` to `bind1`;
//!   6. for every entry of `bind1`: remove `d/name` if it exists, then create `d/name` as a
//!      symlink: with the same target when the entry is itself a symlink, else relative
//!      `.roNNNN/name`.
//! - `/proc`: a fresh procfs with `--pidns` (read-only fallback).

use std::ffi::OsStr;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::mount::{mount, MsFlags};

/// Errors, each naming the path and the operation.
#[derive(Debug, thiserror::Error)]
pub enum MountError {
    #[error("failed to {op} {path}: {source}")]
    Op {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("/tmp cannot be copied up")]
    TmpCopyUp,
    #[error("propagation {0} does not support copy-up driver tmpfs+symlink")]
    PropagationCopyUp(String),
}

fn op<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(nix::errno::Errno) -> MountError + 'a {
    move |e| MountError::Op {
        op,
        path: path.to_path_buf(),
        source: e.into(),
    }
}

fn io_op<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> MountError + 'a {
    move |source| MountError::Op {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// The mount flags of a `--propagation` value; None for unknown strings (ignored, like
/// RootlessKit).
pub fn propagation_flags(p: &str) -> Option<MsFlags> {
    Some(match p {
        "private" => MsFlags::MS_PRIVATE,
        "rprivate" => MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        "slave" => MsFlags::MS_SLAVE,
        "rslave" => MsFlags::MS_REC | MsFlags::MS_SLAVE,
        "shared" => MsFlags::MS_SHARED,
        "rshared" => MsFlags::MS_REC | MsFlags::MS_SHARED,
        _ => return None,
    })
}

pub fn set_propagation(p: &str) -> Result<(), MountError> {
    if let Some(flags) = propagation_flags(p) {
        mount(None::<&str>, "/", None::<&str>, flags, None::<&str>)
            .map_err(op("set propagation of", Path::new("/")))?;
    }
    Ok(())
}

/// Mount a fresh procfs on /proc (with `--pidns`), read-only as a fallback.
pub fn mount_proc() -> Result<(), MountError> {
    let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    match mount(Some("proc"), "/proc", Some("proc"), flags, None::<&str>) {
        Ok(()) => Ok(()),
        Err(_) => mount(
            Some("proc"),
            "/proc",
            Some("proc"),
            flags | MsFlags::MS_RDONLY,
            None::<&str>,
        )
        .map_err(op("mount proc on", Path::new("/proc"))),
    }
}

fn mkdtemp_in(dir: &Path, prefix: &str) -> Result<PathBuf, MountError> {
    crate::sys::mkdir_temp_go(dir, prefix).map_err(io_op("create a temporary directory in", dir))
}

/// Copy up every directory in `dirs` (already cleaned paths).
pub fn copy_up(dirs: &[PathBuf]) -> Result<(), MountError> {
    if dirs.is_empty() {
        return Ok(());
    }
    for d in dirs {
        if d == Path::new("/tmp") {
            return Err(MountError::TmpCopyUp);
        }
    }
    let bind0 = mkdtemp_in(Path::new("/tmp"), "rootlesskit-b")?;
    let result = (|| {
        for d in dirs {
            copy_up_one(d, &bind0)?;
        }
        Ok(())
    })();
    let _ = fs::remove_dir(&bind0);
    result
}

fn copy_up_one(d: &Path, bind0: &Path) -> Result<(), MountError> {
    mount(
        Some(d),
        bind0,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    )
    .map_err(op("bind-mount", d))?;
    mount(
        Some("none"),
        d,
        Some("tmpfs"),
        MsFlags::empty(),
        None::<&str>,
    )
    .map_err(op("mount tmpfs on", d))?;
    let bind1 = mkdtemp_in(d, ".ro")?;
    mount(
        Some(bind0),
        &bind1,
        None::<&str>,
        MsFlags::MS_MOVE,
        None::<&str>,
    )
    .map_err(op("move mount to", &bind1))?;
    let ro_name = bind1
        .file_name()
        .map(OsStr::to_os_string)
        .unwrap_or_default();
    for entry in fs::read_dir(&bind1).map_err(io_op("read", &bind1))? {
        let entry = entry.map_err(io_op("read", &bind1))?;
        let name = entry.file_name();
        let dst = d.join(&name);
        match fs::symlink_metadata(&dst) {
            Ok(m) if m.is_dir() => fs::remove_dir_all(&dst).map_err(io_op("remove", &dst))?,
            Ok(_) => fs::remove_file(&dst).map_err(io_op("remove", &dst))?,
            Err(_) => {}
        }
        let ft = entry.file_type().map_err(io_op("stat", &entry.path()))?;
        let target = if ft.is_symlink() {
            fs::read_link(entry.path()).map_err(io_op("read link", &entry.path()))?
        } else {
            let mut t = PathBuf::from(&ro_name);
            t.push(Path::new(OsStr::from_bytes(name.as_bytes())));
            t
        };
        std::os::unix::fs::symlink(&target, &dst).map_err(io_op("create symlink", &dst))?;
    }
    Ok(())
}
