//! REST API on `$STATE/api.sock` (owner: API helper): server, client, wire types.

pub mod gojson;
