//! Pipes for splice(2): lazily created, pooled per worker only when empty, process-wide budget.
//!
//! Pipe capacity is charged to the UID when a pipe is sized (`fs.pipe-user-pages-soft`, shared
//! with the containers of a rootless user), so the engine keeps a budget of at most 25% of the
//! soft limit. Pipes start at the kernel default (64 KiB) and grow to 512 KiB only for flows that
//! repeatedly fill them. If `F_SETPIPE_SZ` fails with EPERM, or a new pipe comes back smaller
//! than 64 KiB (the user is over the soft limit), growth/creation stops for the whole process and
//! connections use the copy path instead.

use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use super::sys;

pub(crate) const PIPE_MIN: usize = 64 * 1024;
pub(crate) const PIPE_GROWN: usize = 512 * 1024;
const PAGE: usize = 4096;
const POOL_MAX: usize = 32;

/// Process-wide pipe accounting.
pub(crate) struct PipeBudget {
    limit_pages: usize,
    used_pages: AtomicUsize,
    no_grow: AtomicBool,
    no_create: AtomicBool,
}

impl PipeBudget {
    pub(crate) fn new() -> Arc<PipeBudget> {
        let soft = sys::read_proc_int("/proc/sys/fs/pipe-user-pages-soft").unwrap_or(16384);
        // 0 = no soft limit.
        let limit_pages = if soft <= 0 {
            usize::MAX / 2
        } else {
            (soft as usize) / 4
        };
        Self::with_limit_pages(limit_pages)
    }

    pub(crate) fn with_limit_pages(limit_pages: usize) -> Arc<PipeBudget> {
        Arc::new(PipeBudget {
            limit_pages,
            used_pages: AtomicUsize::new(0),
            no_grow: AtomicBool::new(false),
            no_create: AtomicBool::new(false),
        })
    }

    fn charge(&self, bytes: usize) -> bool {
        let pages = bytes / PAGE;
        let prev = self.used_pages.fetch_add(pages, Ordering::Relaxed);
        if prev + pages > self.limit_pages {
            self.used_pages.fetch_sub(pages, Ordering::Relaxed);
            return false;
        }
        true
    }

    fn uncharge(&self, bytes: usize) {
        self.used_pages.fetch_sub(bytes / PAGE, Ordering::Relaxed);
    }
}

pub(crate) struct Pipe {
    pub r: OwnedFd,
    pub w: OwnedFd,
    pub cap: usize,
    budget: Arc<PipeBudget>,
}

impl Drop for Pipe {
    fn drop(&mut self) {
        self.budget.uncharge(self.cap);
    }
}

impl Pipe {
    /// Try to grow to [`PIPE_GROWN`]; false if the budget or the kernel says no.
    pub(crate) fn grow(&mut self) -> bool {
        if self.cap >= PIPE_GROWN || self.budget.no_grow.load(Ordering::Relaxed) {
            return false;
        }
        let extra = PIPE_GROWN - self.cap;
        if !self.budget.charge(extra) {
            return false;
        }
        match sys::set_pipe_size(self.w.as_fd(), PIPE_GROWN) {
            Ok(n) if n >= PIPE_GROWN => {
                self.budget.uncharge(extra);
                let more = n - self.cap;
                self.budget.charge(more);
                self.cap = n;
                true
            }
            Ok(_) => {
                self.budget.uncharge(extra);
                false
            }
            Err(e) => {
                self.budget.uncharge(extra);
                if e.raw_os_error() == Some(libc::EPERM) {
                    self.budget.no_grow.store(true, Ordering::Relaxed);
                }
                false
            }
        }
    }
}

/// Per-worker pool of empty pipes.
pub(crate) struct PipePool {
    budget: Arc<PipeBudget>,
    free: Vec<Pipe>,
}

impl PipePool {
    pub(crate) fn new(budget: Arc<PipeBudget>) -> PipePool {
        PipePool {
            budget,
            free: Vec::new(),
        }
    }

    /// An empty pipe, or `None` (budget exhausted: use the copy path).
    pub(crate) fn get(&mut self) -> Option<Pipe> {
        if let Some(p) = self.free.pop() {
            return Some(p);
        }
        if self.budget.no_create.load(Ordering::Relaxed) {
            return None;
        }
        if !self.budget.charge(PIPE_MIN) {
            return None;
        }
        let (r, w) = match sys::pipe() {
            Ok(p) => p,
            Err(_) => {
                self.budget.uncharge(PIPE_MIN);
                return None;
            }
        };
        let cap = sys::pipe_size(w.as_fd()).unwrap_or(0);
        if cap < PIPE_MIN {
            // Over the per-user soft limit: the kernel hands out 8 KiB pipes. Stop creating.
            self.budget.uncharge(PIPE_MIN);
            self.budget.no_create.store(true, Ordering::Relaxed);
            return None;
        }
        if cap > PIPE_MIN {
            self.budget.charge(cap - PIPE_MIN);
        }
        Some(Pipe {
            r,
            w,
            cap,
            budget: self.budget.clone(),
        })
    }

    /// Return a pipe; callers must only return empty pipes.
    pub(crate) fn put(&mut self, p: Pipe) {
        if self.free.len() < POOL_MAX {
            self.free.push(p);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_limits_pipes_and_growth() {
        // Room for exactly one 64 KiB pipe.
        let b = PipeBudget::with_limit_pages(PIPE_MIN / PAGE);
        let mut pool = PipePool::new(b.clone());
        let mut p = pool.get().expect("first pipe");
        assert!(p.cap >= PIPE_MIN);
        assert!(pool.get().is_none(), "budget exceeded");
        assert!(!p.grow(), "growth beyond the budget");
        pool.put(p);
        let p = pool.get().expect("pooled pipe comes back");
        drop(p);
        assert_eq!(b.used_pages.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn growth_to_grown_size_within_budget() {
        let b = PipeBudget::with_limit_pages(1024);
        let mut pool = PipePool::new(b.clone());
        let mut p = pool.get().expect("pipe");
        assert!(p.grow());
        assert_eq!(p.cap, PIPE_GROWN);
        assert_eq!(b.used_pages.load(Ordering::Relaxed), PIPE_GROWN / PAGE);
        assert!(!p.grow(), "already grown");
        drop(p);
        assert_eq!(b.used_pages.load(Ordering::Relaxed), 0);
    }
}
