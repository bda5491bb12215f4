//! The state directory (spec §2): creation, locks, `child_pid`, removal.
//!
//! - Default: `$TMPDIR/rootlesskitNNNNNNNNN` (mode 0700), like Go's `os.MkdirTemp("", "rootlesskit")`.
//! - `--state-dir`: made absolute, created with parents (0755), then every entry except `lock`
//!   is removed (recovery after a crash, RootlessKit #220).
//! - A shared flock on the directory fd (keeps systemd-tmpfiles away) and an exclusive
//!   non-blocking flock on `lock`, held for the life of the parent.
//! - `child_pid` (0444, decimal, no newline) once the child is ready; the whole directory is
//!   removed at exit.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};

/// Errors; each names the path and the failing operation.
#[derive(Debug, thiserror::Error)]
pub enum StateDirError {
    #[error("failed to create state dir {path}: {source}")]
    Create {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("failed to clean up stale files in state dir {path}: {source}")]
    Clean {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("failed to lock {0}")]
    LockDir(PathBuf),
    #[error("failed to lock {0}, another RootlessKit is running with the same state directory?")]
    Locked(PathBuf),
    #[error("failed to write {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot determine the current directory for --state-dir {path}: {source}")]
    Cwd {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// A locked state directory; dropping it does NOT remove it (call [`StateDir::remove`]).
pub struct StateDir {
    path: PathBuf,
    _dir_lock: Flock<File>,
    _lock: Flock<File>,
}

impl StateDir {
    /// Create (or clean) and lock the state dir.
    pub fn open(requested: Option<&Path>) -> Result<StateDir, StateDirError> {
        let path = match requested {
            Some(p) => {
                let abs = if p.is_absolute() {
                    p.to_path_buf()
                } else {
                    std::env::current_dir()
                        .map_err(|source| StateDirError::Cwd {
                            path: p.to_path_buf(),
                            source,
                        })?
                        .join(p)
                };
                fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o755)
                    .create(&abs)
                    .map_err(|source| StateDirError::Create {
                        path: abs.clone(),
                        source,
                    })?;
                abs
            }
            None => make_temp_dir()?,
        };
        let dir = File::open(&path).map_err(|source| StateDirError::Create {
            path: path.clone(),
            source,
        })?;
        let dir_lock = Flock::lock(dir, FlockArg::LockSharedNonblock)
            .map_err(|_| StateDirError::LockDir(path.clone()))?;
        let lock_path = path.join("lock");
        let lock_file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .custom_flags(libc::O_CLOEXEC)
            .open(&lock_path)
            .map_err(|source| StateDirError::Create {
                path: lock_path.clone(),
                source,
            })?;
        let lock = Flock::lock(lock_file, FlockArg::LockExclusiveNonblock)
            .map_err(|_| StateDirError::Locked(lock_path.clone()))?;
        // Only the lock holder may remove stale files (a second instance must fail first and
        // leave the running one's files alone).
        if requested.is_some() {
            clean_except_lock(&path)?;
        }
        Ok(StateDir {
            path,
            _dir_lock: dir_lock,
            _lock: lock,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Write `child_pid` (0444, no trailing newline).
    pub fn write_child_pid(&self, pid: i32) -> Result<(), StateDirError> {
        let p = self.path.join("child_pid");
        let _ = fs::remove_file(&p);
        let mut f = OpenOptions::new()
            .create_new(true)
            .write(true)
            .mode(0o444)
            .open(&p)
            .map_err(|source| StateDirError::Write {
                path: p.clone(),
                source,
            })?;
        f.write_all(pid.to_string().as_bytes())
            .map_err(|source| StateDirError::Write { path: p, source })
    }

    /// Remove the whole directory (RootlessKit removes even a user-supplied one).
    pub fn remove(self) -> io::Result<()> {
        let path = self.path.clone();
        drop(self);
        match fs::remove_dir_all(&path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            r => r,
        }
    }
}

fn clean_except_lock(dir: &Path) -> Result<(), StateDirError> {
    let err = |source| StateDirError::Clean {
        path: dir.to_path_buf(),
        source,
    };
    for entry in fs::read_dir(dir).map_err(err)? {
        let entry = entry.map_err(err)?;
        if entry.file_name() == "lock" {
            continue;
        }
        let p = entry.path();
        let ft = entry.file_type().map_err(err)?;
        let r = if ft.is_dir() {
            fs::remove_dir_all(&p)
        } else {
            fs::remove_file(&p)
        };
        if let Err(e) = r {
            if e.kind() != io::ErrorKind::NotFound {
                return Err(err(e));
            }
        }
    }
    Ok(())
}

fn make_temp_dir() -> Result<PathBuf, StateDirError> {
    let base = std::env::var_os("TMPDIR")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/tmp"));
    crate::sys::mkdir_temp_go(&base, "rootlesskit")
        .map_err(|source| StateDirError::Create { path: base, source })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_dir_is_cleaned_except_lock_and_locked() {
        let base = std::env::temp_dir().join(format!("rk-sd-test-{}", std::process::id()));
        let _ = fs::remove_dir_all(&base);
        fs::create_dir_all(base.join("sub")).unwrap();
        fs::write(base.join("child_pid"), "1").unwrap();
        fs::write(base.join("lock"), "").unwrap();
        let sd = StateDir::open(Some(&base)).unwrap();
        sd.write_child_pid(99).unwrap();
        // A second instance fails on the lock and leaves the first one's files alone.
        assert!(StateDir::open(Some(&base)).is_err());
        assert!(base.join("child_pid").exists());
        std::fs::remove_file(base.join("child_pid")).unwrap();
        let mut names: Vec<_> = fs::read_dir(&base)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, vec!["lock"]);
        // A second open must fail with RootlessKit's text.
        let err = StateDir::open(Some(&base)).err().unwrap().to_string();
        assert_eq!(
            err,
            format!(
                "failed to lock {}/lock, another RootlessKit is running with the same state directory?",
                base.display()
            )
        );
        sd.write_child_pid(1234).unwrap();
        assert_eq!(fs::read_to_string(base.join("child_pid")).unwrap(), "1234");
        sd.remove().unwrap();
        assert!(!base.exists());
    }

    #[test]
    fn temp_dir_name_and_mode() {
        let sd = StateDir::open(None).unwrap();
        let name = sd.path().file_name().unwrap().to_str().unwrap().to_string();
        assert!(name.starts_with("rootlesskit"));
        assert!(name["rootlesskit".len()..]
            .chars()
            .all(|c| c.is_ascii_digit()));
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(sd.path()).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        sd.remove().unwrap();
    }
}
