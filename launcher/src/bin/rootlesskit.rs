//! `rootlesskit [flags] CMD...`: the launcher's edge. Parses the command line (printing help,
//! version and usage errors exactly like RootlessKit), then hands over to the parent process
//! model, whose exit code is ours.

use launcher::{child, cli, log, parent, warn};

fn main() {
    // The systemd socket-activation helper (see child::reaper): set LISTEN_PID, exec.
    if std::env::var_os(child::reaper::ACTIVATION_HELPER_ENV).is_some() {
        child::reaper::run_activation_helper();
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    let opts = match cli::front(&args) {
        Ok(opts) => opts,
        Err(code) => std::process::exit(code),
    };
    log::set_debug(opts.debug);
    for w in opts.warnings() {
        warn!("{w}");
    }
    std::process::exit(parent::run(*opts));
}
