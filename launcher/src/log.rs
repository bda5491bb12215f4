//! RootlessKit-style log lines on stderr: `[rootlesskit:parent] error: ...`, quiet by default,
//! `--debug` enables debug lines. One process-wide role and level, set once at start.

use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};

static DEBUG: AtomicBool = AtomicBool::new(false);
static ROLE: AtomicU8 = AtomicU8::new(0);

/// Which process is logging.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Parent = 0,
    Child = 1,
}

pub fn set_role(role: Role) {
    ROLE.store(role as u8, Ordering::Relaxed);
}

pub fn set_debug(on: bool) {
    DEBUG.store(on, Ordering::Relaxed);
}

pub fn debug_enabled() -> bool {
    DEBUG.load(Ordering::Relaxed)
}

/// The `[rootlesskit:parent]` / `[rootlesskit:child ]` prefix (padded like RootlessKit's).
pub fn prefix() -> &'static str {
    if ROLE.load(Ordering::Relaxed) == Role::Child as u8 {
        "[rootlesskit:child ]"
    } else {
        "[rootlesskit:parent]"
    }
}

#[doc(hidden)]
pub fn emit(level: &str, msg: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let line = format!("{} {}: {}\n", prefix(), level, msg);
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
}

#[macro_export]
macro_rules! debug {
    ($($arg:tt)*) => { if $crate::log::debug_enabled() { $crate::log::emit("debug", format_args!($($arg)*)) } };
}
#[macro_export]
macro_rules! info {
    ($($arg:tt)*) => { $crate::log::emit("info", format_args!($($arg)*)) };
}
#[macro_export]
macro_rules! warn {
    ($($arg:tt)*) => { $crate::log::emit("warning", format_args!($($arg)*)) };
}
#[macro_export]
macro_rules! error {
    ($($arg:tt)*) => { $crate::log::emit("error", format_args!($($arg)*)) };
}
