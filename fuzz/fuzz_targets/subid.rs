//! `launcher::parent::idmap`: /etc/subuid parsing, `getsubids` output parsing, and the
//! newuidmap argument builder fed with whatever the parsers accept. Invariant: no panic
//! (including arithmetic overflow: fuzz builds keep debug assertions).
#![no_main]

use launcher::parent::idmap::{map_args, parse_getsubids, parse_subid_file};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let a = parse_subid_file(s, "rktest", 1001);
    let _ = map_args(1001, &a);
    let b = parse_getsubids(s);
    let _ = map_args(1001, &b);
});
