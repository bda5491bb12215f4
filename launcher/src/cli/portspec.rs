//! Minimal `-p` parser with RootlessKit's texts, until `forwarder::PortSpec::parse` lands
//! (TODO(lead): replace `super::parse_publish` by `PortSpec::parse` + `PortSpec::validate`).

use super::goparse::{parse_ip, quote, quote_rune};
use forwarder::PortSpec;

const PROTOS: &[&str] = &[
    "tcp", "tcp4", "tcp6", "udp", "udp4", "udp6", "sctp", "sctp4", "sctp6",
];

/// `[PARENTIP]:PARENTPORT:[CHILDIP:]CHILDPORT/PROTO`, IPv6 in brackets.
pub fn parse(s: &str) -> Result<PortSpec, String> {
    let trimmed = s.trim_start();
    let Some((addr, proto)) = trimmed.rsplit_once('/') else {
        return Err(format!("missing proto in PortSpec string: {}", quote(s)));
    };
    if !PROTOS.contains(&proto) {
        return Err(format!(
            "invalid PortSpec string: {}: unknown proto: {}",
            quote(s),
            quote(proto)
        ));
    }
    // Split on ':' outside brackets.
    let mut fields: Vec<String> = Vec::new();
    let mut cur = String::new();
    let mut depth = 0;
    for c in addr.chars() {
        match c {
            '[' => depth += 1,
            ']' => depth -= 1,
            ':' if depth == 0 => {
                fields.push(std::mem::take(&mut cur));
                continue;
            }
            _ => {}
        }
        cur.push(c);
    }
    fields.push(cur);
    let unbracket = |f: &str| f.trim_start_matches('[').trim_end_matches(']').to_string();
    let bad_parent_ip = || format!("unexpected ParentIP in PortSpec string: {}", quote(s));
    let port = |f: &str, which: &str| {
        f.parse::<i64>()
            .map_err(|_| format!("unexpected {which} in PortSpec string: {}", quote(s)))
    };
    let (parent_ip, parent_port, child_ip, child_port) = match fields.as_slice() {
        [pip, pport, cport] => (
            unbracket(pip),
            port(pport, "ParentPort")?,
            String::new(),
            port(cport, "ChildPort")?,
        ),
        [pip, pport, cip, cport] => (
            unbracket(pip),
            port(pport, "ParentPort")?,
            unbracket(cip),
            port(cport, "ChildPort")?,
        ),
        _ => return Err(bad_parent_ip()),
    };
    if !parent_ip.is_empty() && parse_ip(&parent_ip).is_none() {
        return Err(bad_parent_ip());
    }
    Ok(PortSpec {
        proto: proto.to_string(),
        parent_ip,
        parent_port,
        child_port,
        child_ip,
    })
}

/// RootlessKit's `ValidatePortSpec(spec, nil)`.
pub fn validate(spec: &PortSpec) -> Result<(), String> {
    if !PROTOS.contains(&spec.proto.as_str()) {
        return Err(format!("unknown proto: {}", quote(&spec.proto)));
    }
    if !spec.parent_ip.is_empty() && parse_ip(&spec.parent_ip).is_none() {
        return Err(format!("invalid ParentIP: {}", quote(&spec.parent_ip)));
    }
    if !spec.child_ip.is_empty() && parse_ip(&spec.child_ip).is_none() {
        return Err(format!("invalid ChildIP: {}", quote(&spec.child_ip)));
    }
    if spec.parent_port <= 0 || spec.parent_port > 65535 {
        return Err(format!(
            "invalid ParentPort: {}",
            quote_rune(spec.parent_port)
        ));
    }
    if spec.child_port <= 0 || spec.child_port > 65535 {
        return Err(format!(
            "invalid ChildPort: {}",
            quote_rune(spec.child_port)
        ));
    }
    Ok(())
}
