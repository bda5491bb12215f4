//! Port specs: the JSON type of the REST API and the string syntax of `-p` / `rootlessctl add-ports`.
//!
//! Contract (see ../shared/reference/rootlesskit.md §3.2-3.4):
//! - [`PortSpec`] serialises exactly like Go's `port.Spec` (field order proto, parentIP, parentPort,
//!   childPort, childIP; every field omitempty).
//! - [`PortSpec::parse`] implements `portutil.ParsePortSpec` with RootlessKit's error texts,
//!   including its quirks: the parse-error texts for the two ports are swapped, a bad child IP is
//!   reported as "unexpected ParentIP", whitespace is skipped like Go's `text/scanner` does.
//! - [`PortSpec::validate`] implements `portutil.ValidatePortSpec` (proto, IPs, ports, in that
//!   order) with the exact texts; ports are formatted like Go's `%q` of an int (a quoted rune).
//! - [`PortSpec::conflicts_with`] is the conflict rule of the port manager.
//! - [`split_comma_values`] is the newest urfave/cli's splitting of `-p a,b`.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

fn is_zero(v: &i64) -> bool {
    *v == 0
}

/// One published port, as in RootlessKit's `port.Spec`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortSpec {
    /// `tcp`, `tcp4`, `tcp6`, `udp`, `udp4`, `udp6` (`sctp*` pass validation, rejected by drivers).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub proto: String,
    /// Host address to listen on; empty means every address (dual-stack for `tcp`/`udp`).
    #[serde(rename = "parentIP", default, skip_serializing_if = "String::is_empty")]
    pub parent_ip: String,
    #[serde(rename = "parentPort", default, skip_serializing_if = "is_zero")]
    pub parent_port: i64,
    #[serde(rename = "childPort", default, skip_serializing_if = "is_zero")]
    pub child_port: i64,
    /// Address inside the namespace; empty means the default rules of §4.1 item 4.
    #[serde(rename = "childIP", default, skip_serializing_if = "String::is_empty")]
    pub child_ip: String,
}

/// Errors of parsing and validation; `Display` is RootlessKit's text, word for word.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SpecError {
    #[error("{0}")]
    Invalid(String),
}

/// Every proto accepted by parsing and validation (the drivers reject `sctp*` later).
pub const KNOWN_PROTOS: [&str; 9] = [
    "tcp", "tcp4", "tcp6", "udp", "udp4", "udp6", "sctp", "sctp4", "sctp6",
];

fn validate_proto(proto: &str) -> Result<(), SpecError> {
    if KNOWN_PROTOS.contains(&proto) {
        Ok(())
    } else {
        Err(SpecError::Invalid(format!(
            "unknown proto: {}",
            go_quote(proto)
        )))
    }
}

/// Go's `net.ParseIP(s) != nil` (no zones, no leading zeros in IPv4 octets).
pub fn go_parse_ip(s: &str) -> Option<IpAddr> {
    s.parse::<IpAddr>().ok()
}

impl PortSpec {
    /// `portutil.ParsePortSpec`: `<parentIP>:<parentPort>[:<childIP>]:<childPort>/<proto>`,
    /// IPv6 addresses in brackets (`[::1]:8080:[::2]:80/udp`).
    pub fn parse(s: &str) -> Result<PortSpec, SpecError> {
        const PARENT_IP: usize = 0;
        const PARENT_PORT: usize = 1;
        const CHILD_IP: usize = 2;
        const CHILD_PORT: usize = 3;

        let proto_pos = s.rfind('/').ok_or_else(|| {
            SpecError::Invalid(format!("missing proto in PortSpec string: {}", go_quote(s)))
        })?;
        let proto = &s[proto_pos + 1..];
        validate_proto(proto).map_err(|e| {
            SpecError::Invalid(format!("invalid PortSpec string: {}: {e}", go_quote(s)))
        })?;
        let unexpected =
            || SpecError::Invalid(format!("unexpected PortSpec string: {}", go_quote(s)));
        // Go slices `portSpec[portPos+1 : protoPos]`; a ':' after the '/' would make that slice
        // panic in Go (runtime error, connection reset). We report it as unexpected instead.
        let port_pos = s[..proto_pos].rfind(':').ok_or_else(unexpected)?;
        let mut parts: [String; 4] = Default::default();
        parts[CHILD_PORT] = s[port_pos + 1..proto_pos].to_string();

        let mut index = PARENT_IP;
        let mut delimiter = ':';
        let mut tokens = scan_tokens(&s[..port_pos]).into_iter();
        while let Some(tok) = tokens.next() {
            if index > CHILD_PORT {
                return Err(unexpected());
            }
            match tok {
                Token::Char('[') => {
                    delimiter = ']';
                    continue;
                }
                Token::Char(c) if c == delimiter => {
                    if delimiter == ']' {
                        delimiter = ':';
                        // Skip the next token, which should be the ':' delimiter.
                        tokens.next();
                    }
                    index += 1;
                    continue;
                }
                Token::Char(c) => parts[index].push(c),
                Token::Text(t) => parts[index].push_str(&t),
            }
        }

        if !parts[PARENT_IP].is_empty() && go_parse_ip(&parts[PARENT_IP]).is_none() {
            return Err(SpecError::Invalid(format!(
                "unexpected ParentIP in PortSpec string: {}",
                go_quote(s)
            )));
        }
        // RootlessKit reports a bad child IP with the ParentIP text.
        if !parts[CHILD_IP].is_empty() && go_parse_ip(&parts[CHILD_IP]).is_none() {
            return Err(SpecError::Invalid(format!(
                "unexpected ParentIP in PortSpec string: {}",
                go_quote(s)
            )));
        }
        // The two port texts are swapped in RootlessKit; kept for byte compatibility.
        let parent_port = go_atoi(&parts[PARENT_PORT]).map_err(|e| {
            SpecError::Invalid(format!(
                "unexpected ChildPort in PortSpec string: {}: {e}",
                go_quote(s)
            ))
        })?;
        let child_port = go_atoi(&parts[CHILD_PORT]).map_err(|e| {
            SpecError::Invalid(format!(
                "unexpected ParentPort in PortSpec string: {}: {e}",
                go_quote(s)
            ))
        })?;
        Ok(PortSpec {
            proto: proto.to_string(),
            parent_ip: std::mem::take(&mut parts[PARENT_IP]),
            parent_port,
            child_port,
            child_ip: std::mem::take(&mut parts[CHILD_IP]),
        })
    }

    /// `portutil.ValidatePortSpec` without the conflict check (see [`PortSpec::conflicts_with`]).
    pub fn validate(&self) -> Result<(), SpecError> {
        validate_proto(&self.proto)?;
        if !self.parent_ip.is_empty() && go_parse_ip(&self.parent_ip).is_none() {
            return Err(SpecError::Invalid(format!(
                "invalid ParentIP: {}",
                go_quote(&self.parent_ip)
            )));
        }
        if !self.child_ip.is_empty() && go_parse_ip(&self.child_ip).is_none() {
            return Err(SpecError::Invalid(format!(
                "invalid ChildIP: {}",
                go_quote(&self.child_ip)
            )));
        }
        if self.parent_port <= 0 || self.parent_port > 65535 {
            return Err(SpecError::Invalid(format!(
                "invalid ParentPort: {}",
                go_quote_int(self.parent_port)
            )));
        }
        if self.child_port <= 0 || self.child_port > 65535 {
            return Err(SpecError::Invalid(format!(
                "invalid ChildPort: {}",
                go_quote_int(self.child_port)
            )));
        }
        Ok(())
    }

    /// RootlessKit's conflict rule: same proto, same parentIP *string*, same parentPort
    /// (`0.0.0.0` and `""` do not conflict here; the second one fails at bind).
    pub fn conflicts_with(&self, other: &PortSpec) -> bool {
        self.proto == other.proto
            && self.parent_ip == other.parent_ip
            && self.parent_port == other.parent_port
    }

    /// The proto without its `4`/`6` suffix (`tcp6` -> `tcp`).
    pub fn base_proto(&self) -> &str {
        self.proto.trim_end_matches(['4', '6'])
    }
}

/// The first existing id whose spec conflicts with `spec`, formatted as RootlessKit does.
pub fn check_conflicts<'a, I>(spec: &PortSpec, existing: I) -> Result<(), SpecError>
where
    I: IntoIterator<Item = (i64, &'a PortSpec)>,
{
    for (id, sp) in existing {
        if sp.conflicts_with(spec) {
            return Err(SpecError::Invalid(format!("conflict with ID {id}")));
        }
    }
    Ok(())
}

/// The newest urfave/cli (v2.27) splits string-slice flag values on commas and trims spaces:
/// `-p 127.0.0.1:8080:80/tcp,127.0.0.1:8443:443/tcp` is two specs.
pub fn split_comma_values(value: &str) -> Vec<String> {
    value.split(',').map(|s| s.trim().to_string()).collect()
}

// ---------------------------------------------------------------------------------------------
// Go's text/scanner, reduced to what ParsePortSpec depends on: whitespace and comments are
// skipped, string/char/raw-string literals are one token (a ':' inside does not delimit), every
// other character is either part of a run of "word" characters or a token of its own.

enum Token {
    Char(char),
    Text(String),
}

fn scan_tokens(s: &str) -> Vec<Token> {
    let chars: Vec<char> = s.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            ' ' | '\t' | '\n' | '\r' => i += 1,
            '/' if chars.get(i + 1) == Some(&'/') => {
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
            }
            '/' if chars.get(i + 1) == Some(&'*') => {
                i += 2;
                while i < chars.len() && !(chars[i] == '*' && chars.get(i + 1) == Some(&'/')) {
                    i += 1;
                }
                i = (i + 2).min(chars.len());
            }
            '"' | '\'' | '`' => {
                let start = i;
                i += 1;
                while i < chars.len() && chars[i] != c {
                    if chars[i] == '\\' && c != '`' {
                        i += 1;
                    }
                    if chars.get(i) == Some(&'\n') && c != '`' {
                        break;
                    }
                    i += 1;
                }
                i = (i + 1).min(chars.len());
                out.push(Token::Text(chars[start..i].iter().collect()));
            }
            c if c.is_alphanumeric() || c == '_' || c == '.' => {
                let start = i;
                while i < chars.len()
                    && (chars[i].is_alphanumeric() || chars[i] == '_' || chars[i] == '.')
                {
                    i += 1;
                }
                out.push(Token::Text(chars[start..i].iter().collect()));
            }
            c => {
                out.push(Token::Char(c));
                i += 1;
            }
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Go formatting helpers.

/// Go's `strconv.Atoi` with its error text (`strconv.Atoi: parsing "x": invalid syntax`).
pub fn go_atoi(s: &str) -> Result<i64, String> {
    let syntax = || format!("strconv.Atoi: parsing {}: invalid syntax", go_quote(s));
    let range = || format!("strconv.Atoi: parsing {}: value out of range", go_quote(s));
    let digits = s.strip_prefix(['+', '-']).unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(syntax());
    }
    s.parse::<i64>().map_err(|_| range())
}

/// Go's `unicode.IsPrint` (letters, marks, numbers, punctuation, symbols and U+0020).
/// Rust's `Debug` escaping uses the complementary table (Cc, Cf, Cs, Co, Cn, Z* except ' ').
fn go_is_print(c: char) -> bool {
    if c.is_ascii() {
        return (' '..='~').contains(&c);
    }
    // `str::escape_debug` only escapes grapheme extenders at the start of the string, so the
    // leading 'a' leaves just the printability table in play.
    let probe: String = ['a', c].iter().collect();
    probe.escape_debug().to_string() == probe
}

fn push_escaped(out: &mut String, c: char, quote: char) {
    if c == quote || c == '\\' {
        out.push('\\');
        out.push(c);
        return;
    }
    if go_is_print(c) {
        out.push(c);
        return;
    }
    match c {
        '\x07' => out.push_str("\\a"),
        '\x08' => out.push_str("\\b"),
        '\x0c' => out.push_str("\\f"),
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        '\x0b' => out.push_str("\\v"),
        c if (c as u32) < 0x20 || c as u32 == 0x7f => {
            out.push_str(&format!("\\x{:02x}", c as u32));
        }
        c if (c as u32) < 0x10000 => out.push_str(&format!("\\u{:04x}", c as u32)),
        c => out.push_str(&format!("\\U{:08x}", c as u32)),
    }
}

/// Go's `%q` of a string (`strconv.Quote`).
pub fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        push_escaped(&mut out, c, '"');
    }
    out.push('"');
    out
}

/// Go's `%q` of a rune (`strconv.QuoteRune`).
pub fn go_quote_rune(c: char) -> String {
    let mut out = String::from('\'');
    push_escaped(&mut out, c, '\'');
    out.push('\'');
    out
}

/// Go's `%q` of an int: the value as a quoted rune; negative, surrogate and > U+10FFFF values
/// become U+FFFD (which is printable, so it is written as the character itself).
pub fn go_quote_int(v: i64) -> String {
    let c = u32::try_from(v)
        .ok()
        .and_then(char::from_u32)
        .unwrap_or(char::REPLACEMENT_CHARACTER);
    go_quote_rune(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(proto: &str, pip: &str, pp: i64, cip: &str, cp: i64) -> PortSpec {
        PortSpec {
            proto: proto.into(),
            parent_ip: pip.into(),
            parent_port: pp,
            child_port: cp,
            child_ip: cip.into(),
        }
    }

    fn err(s: &str) -> String {
        PortSpec::parse(s).unwrap_err().to_string()
    }

    #[test]
    fn parse_valid_upstream_cases() {
        // portutil_test.go TestParsePortSpec valid cases.
        assert_eq!(
            PortSpec::parse("127.0.0.1:8080:80/tcp").unwrap(),
            spec("tcp", "127.0.0.1", 8080, "", 80)
        );
        assert_eq!(
            PortSpec::parse("127.0.0.1:8080:10.0.2.100:80/tcp").unwrap(),
            spec("tcp", "127.0.0.1", 8080, "10.0.2.100", 80)
        );
        assert_eq!(
            PortSpec::parse("[::1]:8080:80/tcp").unwrap(),
            spec("tcp", "::1", 8080, "", 80)
        );
        assert_eq!(
            PortSpec::parse("[::1]:8080:[::2]:80/udp").unwrap(),
            spec("udp", "::1", 8080, "::2", 80)
        );
        assert_eq!(
            PortSpec::parse("[::1]:8080:10.0.2.100:80/tcp6").unwrap(),
            spec("tcp6", "::1", 8080, "10.0.2.100", 80)
        );
        assert_eq!(
            PortSpec::parse("0.0.0.0:8080:[::1]:80/tcp4").unwrap(),
            spec("tcp4", "0.0.0.0", 8080, "::1", 80)
        );
    }

    #[test]
    fn parse_quirks() {
        // Empty parent IP is allowed (observed on 1.1.0).
        assert_eq!(
            PortSpec::parse(":18600:80/tcp").unwrap(),
            spec("tcp", "", 18600, "", 80)
        );
        // Leading and inner whitespace is skipped by text/scanner.
        assert_eq!(
            PortSpec::parse("  127.0.0.1:8080:80/tcp").unwrap(),
            spec("tcp", "127.0.0.1", 8080, "", 80)
        );
        assert_eq!(
            PortSpec::parse("127.0.0.1 : 8080:80/sctp").unwrap(),
            spec("sctp", "127.0.0.1", 8080, "", 80)
        );
    }

    #[test]
    fn parse_errors_exact_texts() {
        assert_eq!(err("bad"), r#"missing proto in PortSpec string: "bad""#);
        assert_eq!(err("8080"), r#"missing proto in PortSpec string: "8080""#);
        assert_eq!(err("8080/tcp"), r#"unexpected PortSpec string: "8080/tcp""#);
        assert_eq!(
            err("18093:93/tcp"),
            r#"unexpected ParentIP in PortSpec string: "18093:93/tcp""#
        );
        assert_eq!(
            err("localhost:8080:80/tcp"),
            r#"unexpected ParentIP in PortSpec string: "localhost:8080:80/tcp""#
        );
        assert_eq!(
            err("127.0.0.1:8080:80/TCP"),
            r#"invalid PortSpec string: "127.0.0.1:8080:80/TCP": unknown proto: "TCP""#
        );
        assert_eq!(
            err("127.0.0.1:8080:80/"),
            r#"invalid PortSpec string: "127.0.0.1:8080:80/": unknown proto: """#
        );
        // Two specs joined with a comma (portutil_test.go).
        assert_eq!(
            err("127.0.0.1:8080:80/tcp,127.0.0.1:8081:81/tcp"),
            r#"unexpected ParentIP in PortSpec string: "127.0.0.1:8080:80/tcp,127.0.0.1:8081:81/tcp""#
        );
        // Bad child IP says ParentIP (upstream bug kept).
        assert_eq!(
            err("127.0.0.1:8080:zz:80/tcp"),
            r#"unexpected ParentIP in PortSpec string: "127.0.0.1:8080:zz:80/tcp""#
        );
        // Swapped port texts: a bad *parent* port says ChildPort and vice versa.
        assert_eq!(
            err("127.0.0.1:x:80/tcp"),
            r#"unexpected ChildPort in PortSpec string: "127.0.0.1:x:80/tcp": strconv.Atoi: parsing "x": invalid syntax"#
        );
        assert_eq!(
            err("127.0.0.1:8080:y/tcp"),
            r#"unexpected ParentPort in PortSpec string: "127.0.0.1:8080:y/tcp": strconv.Atoi: parsing "y": invalid syntax"#
        );
        assert_eq!(
            err("127.0.0.1:8080:99999999999999999999/tcp"),
            r#"unexpected ParentPort in PortSpec string: "127.0.0.1:8080:99999999999999999999/tcp": strconv.Atoi: parsing "99999999999999999999": value out of range"#
        );
        assert_eq!(
            err("1.2.3.4:1:2.3.4.5:6:7:8/tcp"),
            r#"unexpected PortSpec string: "1.2.3.4:1:2.3.4.5:6:7:8/tcp""#
        );
        // Checked against rootlessctl 1.1.0: a fourth ':' appends to the child port.
        assert_eq!(
            PortSpec::parse("1.2.3.4:1:2.3.4.5:6:7/tcp").unwrap(),
            spec("tcp", "1.2.3.4", 1, "2.3.4.5", 76)
        );
        assert_eq!(
            err("[::1]8080:80/tcp"),
            r#"unexpected ChildPort in PortSpec string: "[::1]8080:80/tcp": strconv.Atoi: parsing "": invalid syntax"#
        );
        assert_eq!(
            err("\"a:b\":1:2/tcp"),
            r#"unexpected ParentIP in PortSpec string: "\"a:b\":1:2/tcp""#
        );
    }

    #[test]
    fn validate_exact_texts() {
        let v = |s: PortSpec| s.validate().unwrap_err().to_string();
        assert_eq!(v(spec("xx", "", 1, "", 1)), r#"unknown proto: "xx""#);
        assert_eq!(v(spec("", "", 1, "", 1)), r#"unknown proto: """#);
        assert_eq!(
            v(spec("tcp", "bogus", 0, "zz", 0)),
            r#"invalid ParentIP: "bogus""#
        );
        assert_eq!(v(spec("tcp4", "", 0, "zz", 0)), r#"invalid ChildIP: "zz""#);
        assert_eq!(
            v(spec("tcp", "", 0, "", 0)),
            r#"invalid ParentPort: '\x00'"#
        );
        assert_eq!(v(spec("tcp", "", 1, "", 0)), r#"invalid ChildPort: '\x00'"#);
        // Observed on 1.1.0: 70000 -> '𑅰', 65536 -> '𐀀', 131070 -> '\U0001fffe',
        // 1114111 -> '\U0010ffff', negative / > U+10FFFF -> U+FFFD written raw.
        assert_eq!(
            v(spec("tcp", "", 70000, "", 1)),
            "invalid ParentPort: '\u{11170}'"
        );
        assert_eq!(
            v(spec("tcp", "", 65536, "", 1)),
            "invalid ParentPort: '\u{10000}'"
        );
        assert_eq!(
            v(spec("tcp", "", 1, "", 131070)),
            r#"invalid ChildPort: '\U0001fffe'"#
        );
        assert_eq!(
            v(spec("tcp", "", 1, "", 1114111)),
            r#"invalid ChildPort: '\U0010ffff'"#
        );
        assert_eq!(
            v(spec("tcp", "", 1, "", -200)),
            "invalid ChildPort: '\u{fffd}'"
        );
        assert_eq!(
            v(spec("tcp", "", 1, "", 1114112)),
            "invalid ChildPort: '\u{fffd}'"
        );
        assert_eq!(
            v(spec("tcp", "", -1, "", 1)),
            "invalid ParentPort: '\u{fffd}'"
        );
        for p in KNOWN_PROTOS {
            assert!(spec(p, "::1", 1, "10.0.2.100", 65535).validate().is_ok());
        }
    }

    /// portutil_test.go TestValidatePortSpec, case by case.
    #[test]
    fn upstream_validate_port_spec_cases() {
        let existing = [
            (1, spec("tcp", "", 80, "", 80)),
            (2, spec("tcp", "10.10.10.10", 8080, "", 8080)),
        ];
        let check = |s: &PortSpec| -> Result<(), SpecError> {
            s.validate()?;
            check_conflicts(s, existing.iter().map(|(i, s)| (*i, s)))
        };
        let base = spec("tcp", "127.0.0.1", 1001, "", 1001);
        for p in ["", "NaN", "TCP"] {
            assert!(
                check(&PortSpec {
                    proto: p.into(),
                    ..base.clone()
                })
                .is_err(),
                "{p}"
            );
        }
        for p in ["udp", "tcp", "sctp"] {
            assert!(
                check(&PortSpec {
                    proto: p.into(),
                    ..base.clone()
                })
                .is_ok(),
                "{p}"
            );
        }
        assert!(check(&spec("tcp", "invalid", 80, "", 80)).is_err());
        assert!(check(&spec("tcp", "", 80, "invalid", 80)).is_err());
        for p in [-200, 0, 1000000] {
            assert!(check(&PortSpec {
                parent_port: p,
                ..base.clone()
            })
            .is_err());
            assert!(check(&PortSpec {
                child_port: p,
                ..base.clone()
            })
            .is_err());
        }
        for p in [20, 500, 1337, 65000] {
            assert!(check(&PortSpec {
                parent_port: p,
                ..base.clone()
            })
            .is_ok());
            assert!(check(&PortSpec {
                child_port: p,
                ..base.clone()
            })
            .is_ok());
        }
        assert!(check(&spec("udp", "", 80, "", 80)).is_ok());
        assert!(check(&spec("tcp", "10.10.10.11", 8080, "", 8080)).is_ok());
        assert!(check(&spec("tcp", "10.10.10.10", 8081, "", 8080)).is_ok());
        assert_eq!(
            check(&spec("tcp", "", 80, "", 90)).unwrap_err().to_string(),
            "conflict with ID 1"
        );
        assert_eq!(
            check(&spec("tcp", "10.10.10.10", 8080, "", 8080))
                .unwrap_err()
                .to_string(),
            "conflict with ID 2"
        );
    }

    #[test]
    fn go_quoting() {
        assert_eq!(go_quote_rune('\0'), r"'\x00'");
        assert_eq!(go_quote_rune('\''), r"'\''");
        assert_eq!(go_quote_rune('"'), "'\"'");
        assert_eq!(go_quote_rune('\\'), r"'\\'");
        assert_eq!(go_quote_rune('\n'), r"'\n'");
        assert_eq!(go_quote_rune('\x7f'), r"'\x7f'");
        assert_eq!(go_quote_rune('\u{a0}'), r"'\u00a0'");
        assert_eq!(go_quote_rune('\u{ad}'), r"'\u00ad'");
        assert_eq!(go_quote_rune('\u{300}'), "'\u{300}'");
        assert_eq!(go_quote_rune('é'), "'é'");
        assert_eq!(go_quote("a\"b\\c\u{1}"), r#""a\"b\\c\x01""#);
        assert_eq!(go_quote("'"), r#""'""#);
    }

    #[test]
    fn conflicts_and_helpers() {
        let a = spec("tcp", "127.0.0.1", 8080, "", 80);
        assert!(a.conflicts_with(&spec("tcp", "127.0.0.1", 8080, "", 81)));
        assert!(!a.conflicts_with(&spec("tcp4", "127.0.0.1", 8080, "", 80)));
        assert!(!spec("tcp", "0.0.0.0", 1, "", 1).conflicts_with(&spec("tcp", "", 1, "", 1)));
        let existing = [(2, a.clone())];
        assert_eq!(
            check_conflicts(&a, existing.iter().map(|(i, s)| (*i, s)))
                .unwrap_err()
                .to_string(),
            "conflict with ID 2"
        );
        assert_eq!(spec("udp6", "", 1, "", 1).base_proto(), "udp");
        assert_eq!(
            split_comma_values("1.2.3.4:1:1/tcp, :2:2/udp"),
            vec!["1.2.3.4:1:1/tcp".to_string(), ":2:2/udp".to_string()]
        );
        assert_eq!(go_atoi("+5"), Ok(5));
        assert_eq!(go_atoi("-0"), Ok(0));
        assert!(go_atoi("1_0").is_err());
    }
}
