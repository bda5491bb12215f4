//! `launcher::api`: decoding of a `POST /v1/ports` request body (Go `encoding/json`
//! semantics, `gojson::decode_port_spec`) and the client's HTTP response reader
//! (`client::read_response`, used by rootlessctl on whatever answers on api.sock).
//! Invariants: no panic; an accepted body validates or is rejected without panicking.
#![no_main]

use std::io::BufReader;

use launcher::api::{client::read_response, gojson::decode_port_spec};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(spec) = decode_port_spec(data) {
        let _ = spec.validate();
        let _ = launcher::api::gojson::marshal(&spec);
    }
    let _ = read_response(BufReader::new(data), false);
    let _ = read_response(BufReader::new(data), true);
});
