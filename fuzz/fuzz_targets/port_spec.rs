//! `forwarder::spec`: the `-p` / `add-ports` string parser, the validator, the JSON form of the
//! REST API and comma splitting. Invariants: no panic; a spec that parses and validates
//! survives a JSON round trip unchanged; validation of a decoded JSON spec never panics.
#![no_main]

use forwarder::spec::{split_comma_values, PortSpec};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        for part in split_comma_values(s) {
            if let Ok(spec) = PortSpec::parse(&part) {
                let valid = spec.validate().is_ok();
                let json = serde_json::to_vec(&spec).expect("serialise PortSpec");
                let back: PortSpec = serde_json::from_slice(&json).expect("decode own JSON");
                assert_eq!(back, spec, "JSON round trip changed the spec");
                assert_eq!(back.validate().is_ok(), valid);
                let _ = spec.base_proto();
                let _ = spec.conflicts_with(&back);
            }
        }
    }
    // The same bytes as an API request body.
    if let Ok(spec) = serde_json::from_slice::<PortSpec>(data) {
        let _ = spec.validate();
        let _ = forwarder::spec::check_conflicts(&spec, [(1, &spec)]);
    }
});
