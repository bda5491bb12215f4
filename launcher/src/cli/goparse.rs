//! Go's value syntaxes as RootlessKit's flags see them: `strconv.ParseBool`, `flag.Int`
//! (`strconv.ParseInt(s, 0, 64)`), `%q` quoting and `net.ParseIP`.

/// `strconv.ParseBool`.
pub fn parse_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// `strconv.ParseInt(s, 0, 64)` with Go flag's error texts (`parse error`, `value out of range`).
pub fn parse_int(s: &str) -> Result<i64, &'static str> {
    const SYNTAX: &str = "parse error";
    const RANGE: &str = "value out of range";
    let (neg, body) = match s.as_bytes().first() {
        Some(b'+') => (false, &s[1..]),
        Some(b'-') => (true, &s[1..]),
        _ => (false, s),
    };
    if body.is_empty() {
        return Err(SYNTAX);
    }
    let lower = body.to_ascii_lowercase();
    let (radix, digits, prefixed) = if let Some(d) = lower.strip_prefix("0x") {
        (16, d.to_string(), true)
    } else if let Some(d) = lower.strip_prefix("0b") {
        (2, d.to_string(), true)
    } else if let Some(d) = lower.strip_prefix("0o") {
        (8, d.to_string(), true)
    } else if lower.len() > 1 && lower.starts_with('0') {
        (8, lower[1..].to_string(), true)
    } else {
        (10, lower.clone(), false)
    };
    // Go's underscoreOK: `_` only between digits (or right after a base prefix).
    if digits.contains('_') {
        let b = digits.as_bytes();
        let bad_start = b[0] == b'_' && !prefixed;
        if bad_start || b[b.len() - 1] == b'_' || digits.contains("__") {
            return Err(SYNTAX);
        }
    }
    let digits: String = digits.chars().filter(|c| *c != '_').collect();
    if digits.is_empty() {
        return Err(SYNTAX);
    }
    if !digits.chars().all(|c| c.is_digit(radix)) {
        return Err(SYNTAX);
    }
    let mag = u128::from_str_radix(&digits, radix).map_err(|_| RANGE)?;
    if neg {
        if mag > (i64::MAX as u128) + 1 {
            return Err(RANGE);
        }
        Ok((mag as i128).wrapping_neg() as i64)
    } else {
        i64::try_from(mag).map_err(|_| RANGE)
    }
}

/// Go's `%q` for a string (`strconv.Quote`); one implementation for the whole project.
pub fn quote(s: &str) -> String {
    forwarder::spec::go_quote(s)
}

/// Go's `net.ParseIP` (dotted IPv4 or IPv6, no zone).
pub fn parse_ip(s: &str) -> Option<std::net::IpAddr> {
    if s.contains('%') {
        return None;
    }
    s.parse().ok()
}
