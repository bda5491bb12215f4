//! `launcher::cli::parse`: the urfave/cli-compatible command line parser and the option
//! validation that follows it. Input: NUL-separated arguments (argv[1..]). Invariant: no
//! panic; parsing has no side effects on the host (no state dir is created by `parse`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let args: Vec<String> = s.split('\0').map(str::to_string).collect();
    if args.len() > 64 {
        return;
    }
    let _ = launcher::cli::parse(&args);
});
