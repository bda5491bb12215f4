//! Go `encoding/json` compatibility for the API: the request decoder of `POST /v1/ports`
//! (`json.NewDecoder(body).Decode(&spec)`) with Go's exact error texts and semantics, and the
//! HTML-safe escaping Go's encoder applies to every response.
//!
//! Decoder semantics reproduced: only the first JSON value is read (trailing bytes ignored), an
//! empty body is `EOF`, a truncated one `unexpected EOF`, syntax errors name the offending
//! character and context, object keys match field names case-insensitively, the last duplicate
//! wins, `null` leaves a field untouched, type mismatches report the first offending field
//! (`json: cannot unmarshal string into Go struct field Spec.parentPort of type int`), invalid
//! UTF-8 in strings becomes U+FFFD. Nesting is limited to 10000 levels like Go's scanner; the
//! syntax check is iterative, so a deep body cannot overflow the stack.

use forwarder::PortSpec;

/// Go's `maxNestingDepth`.
const MAX_DEPTH: usize = 10000;

/// Go's `quoteChar` for syntax errors.
fn quote_char(c: u8) -> String {
    match c {
        b'\'' => r"'\''".into(),
        b'"' => "'\"'".into(),
        c => {
            let q = forwarder::spec::go_quote(&char::from(c).to_string());
            format!("'{}'", &q[1..q.len() - 1])
        }
    }
}

fn invalid(c: u8, ctx: &str) -> String {
    format!("invalid character {} {ctx}", quote_char(c))
}

const UNEXPECTED_EOF: &str = "unexpected EOF";

fn is_ws(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\n' | b'\r')
}

struct Scan<'a> {
    b: &'a [u8],
    i: usize,
}

impl Scan<'_> {
    fn skip_ws(&mut self) {
        while self.i < self.b.len() && is_ws(self.b[self.i]) {
            self.i += 1;
        }
    }
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }
    fn next_or_eof(&mut self) -> Result<u8, String> {
        let c = self.peek().ok_or_else(|| UNEXPECTED_EOF.to_string())?;
        self.i += 1;
        Ok(c)
    }

    /// After the opening quote.
    fn string(&mut self) -> Result<(), String> {
        loop {
            match self.next_or_eof()? {
                b'"' => return Ok(()),
                b'\\' => match self.next_or_eof()? {
                    b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => {}
                    b'u' => {
                        for _ in 0..4 {
                            let h = self.next_or_eof()?;
                            if !h.is_ascii_hexdigit() {
                                return Err(invalid(h, "in \\u hexadecimal character escape"));
                            }
                        }
                    }
                    c => return Err(invalid(c, "in string escape code")),
                },
                c if c < 0x20 => return Err(invalid(c, "in string literal")),
                _ => {}
            }
        }
    }

    /// At the first character of a number. At the top level the number ends at EOF.
    fn number(&mut self) -> Result<(), String> {
        if self.peek() == Some(b'-') {
            self.i += 1;
            let c = self.next_or_eof()?;
            if !c.is_ascii_digit() {
                return Err(invalid(c, "in numeric literal"));
            }
            self.i -= 1;
        }
        let first = self.b[self.i];
        self.i += 1;
        if first != b'0' {
            while self.peek().is_some_and(|c| c.is_ascii_digit()) {
                self.i += 1;
            }
        }
        if self.peek() == Some(b'.') {
            self.i += 1;
            let c = self.next_or_eof()?;
            if !c.is_ascii_digit() {
                return Err(invalid(c, "after decimal point in numeric literal"));
            }
            while self.peek().is_some_and(|c| c.is_ascii_digit()) {
                self.i += 1;
            }
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.i += 1;
            let mut c = self.next_or_eof()?;
            if c == b'+' || c == b'-' {
                c = self.next_or_eof()?;
            }
            if !c.is_ascii_digit() {
                return Err(invalid(c, "in exponent of numeric literal"));
            }
            while self.peek().is_some_and(|c| c.is_ascii_digit()) {
                self.i += 1;
            }
        }
        Ok(())
    }

    fn literal(&mut self, word: &str) -> Result<(), String> {
        // The first byte was already matched by the caller.
        for want in word.bytes().skip(1) {
            let c = self.next_or_eof()?;
            if c != want {
                return Err(invalid(
                    c,
                    &format!("in literal {word} (expecting {})", quote_char(want)),
                ));
            }
        }
        Ok(())
    }

    /// Object key (at the opening quote) followed by ':'.
    fn key_colon(&mut self) -> Result<(), String> {
        self.i += 1;
        self.string()?;
        self.skip_ws();
        match self.next_or_eof()? {
            b':' => Ok(()),
            c => Err(invalid(c, "after object key")),
        }
    }

    /// Syntax-check the first value; returns the end offset (exclusive).
    fn first_value(mut self) -> Result<(usize, usize), String> {
        self.skip_ws();
        if self.i >= self.b.len() {
            return Err("EOF".into());
        }
        let start = self.i;
        let mut stack: Vec<u8> = Vec::new();
        'value: loop {
            self.skip_ws();
            let c = self.next_or_eof()?;
            match c {
                b'{' => {
                    stack.push(b'{');
                    if stack.len() > MAX_DEPTH {
                        return Err("exceeded max depth".into());
                    }
                    self.skip_ws();
                    match self.peek() {
                        None => return Err(UNEXPECTED_EOF.into()),
                        Some(b'}') => {
                            self.i += 1;
                            stack.pop();
                        }
                        Some(b'"') => {
                            self.key_colon()?;
                            continue 'value;
                        }
                        Some(c) => {
                            return Err(invalid(c, "looking for beginning of object key string"))
                        }
                    }
                }
                b'[' => {
                    stack.push(b'[');
                    if stack.len() > MAX_DEPTH {
                        return Err("exceeded max depth".into());
                    }
                    self.skip_ws();
                    match self.peek() {
                        None => return Err(UNEXPECTED_EOF.into()),
                        Some(b']') => {
                            self.i += 1;
                            stack.pop();
                        }
                        Some(_) => continue 'value,
                    }
                }
                b'"' => self.string()?,
                b'-' | b'0'..=b'9' => {
                    self.i -= 1;
                    self.number()?;
                }
                b't' => self.literal("true")?,
                b'f' => self.literal("false")?,
                b'n' => self.literal("null")?,
                c => return Err(invalid(c, "looking for beginning of value")),
            }
            // After a complete value.
            loop {
                let Some(&top) = stack.last() else {
                    return Ok((start, self.i));
                };
                self.skip_ws();
                let c = self.next_or_eof()?;
                match (top, c) {
                    (b'{', b',') => {
                        self.skip_ws();
                        match self.peek() {
                            None => return Err(UNEXPECTED_EOF.into()),
                            Some(b'"') => {
                                self.key_colon()?;
                                continue 'value;
                            }
                            Some(c) => {
                                return Err(invalid(
                                    c,
                                    "looking for beginning of object key string",
                                ))
                            }
                        }
                    }
                    (b'{', b'}') | (b'[', b']') => {
                        stack.pop();
                    }
                    (b'{', c) => return Err(invalid(c, "after object key:value pair")),
                    (_, b',') => continue 'value,
                    (_, c) => return Err(invalid(c, "after array element")),
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Decoding a syntactically valid value into a PortSpec.

struct Dec<'a> {
    b: &'a [u8],
    i: usize,
}

enum Kind {
    Object,
    Array,
    String,
    Number,
    Bool,
    Null,
}

impl Kind {
    fn go_name(&self) -> &'static str {
        match self {
            Kind::Object => "object",
            Kind::Array => "array",
            Kind::String => "string",
            Kind::Number => "number",
            Kind::Bool => "bool",
            Kind::Null => "null",
        }
    }
}

impl Dec<'_> {
    fn ws(&mut self) {
        while self.i < self.b.len() && is_ws(self.b[self.i]) {
            self.i += 1;
        }
    }
    fn kind(&self) -> Kind {
        match self.b[self.i] {
            b'{' => Kind::Object,
            b'[' => Kind::Array,
            b'"' => Kind::String,
            b't' | b'f' => Kind::Bool,
            b'n' => Kind::Null,
            _ => Kind::Number,
        }
    }
    /// Skip one valid value; returns its raw bytes.
    fn skip(&mut self) -> &[u8] {
        let start = self.i;
        let mut depth = 0usize;
        loop {
            let c = self.b[self.i];
            match c {
                b'"' => {
                    self.i += 1;
                    while self.b[self.i] != b'"' {
                        if self.b[self.i] == b'\\' {
                            self.i += 1;
                        }
                        self.i += 1;
                    }
                    self.i += 1;
                }
                b'{' | b'[' => {
                    depth += 1;
                    self.i += 1;
                }
                b'}' | b']' => {
                    depth -= 1;
                    self.i += 1;
                }
                _ if depth > 0 => self.i += 1,
                _ => {
                    while self.i < self.b.len()
                        && !matches!(self.b[self.i], b',' | b'}' | b']')
                        && !is_ws(self.b[self.i])
                    {
                        self.i += 1;
                    }
                }
            }
            if depth == 0 {
                return &self.b[start..self.i];
            }
        }
    }
    /// Decode a string value at the opening quote (Go's `unquote`).
    fn string(&mut self) -> String {
        let raw = self.skip();
        unquote(&raw[1..raw.len() - 1])
    }
}

fn hex4(b: &[u8]) -> u32 {
    b.iter().fold(0, |acc, &h| {
        acc * 16 + char::from(h).to_digit(16).unwrap_or(0)
    })
}

/// Go's string unquoting: escapes, surrogate pairs, invalid UTF-8 -> U+FFFD per byte.
fn unquote(s: &[u8]) -> String {
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        match s[i] {
            b'\\' => {
                let e = s[i + 1];
                i += 2;
                match e {
                    b'b' => out.push('\u{8}'),
                    b'f' => out.push('\u{c}'),
                    b'n' => out.push('\n'),
                    b'r' => out.push('\r'),
                    b't' => out.push('\t'),
                    b'u' => {
                        let r = hex4(&s[i..i + 4]);
                        i += 4;
                        if (0xD800..0xDC00).contains(&r)
                            && s.get(i) == Some(&b'\\')
                            && s.get(i + 1) == Some(&b'u')
                        {
                            let r2 = hex4(&s[i + 2..i + 6]);
                            if (0xDC00..0xE000).contains(&r2) {
                                i += 6;
                                let c = 0x10000 + ((r - 0xD800) << 10) + (r2 - 0xDC00);
                                out.push(char::from_u32(c).unwrap_or('\u{fffd}'));
                                continue;
                            }
                        }
                        out.push(char::from_u32(r).unwrap_or('\u{fffd}'));
                    }
                    c => out.push(char::from(c)),
                }
            }
            _ => {
                let rest = &s[i..];
                let end = rest.iter().position(|&c| c == b'\\').unwrap_or(rest.len());
                let chunk = &rest[..end];
                let mut j = 0;
                while j < chunk.len() {
                    match std::str::from_utf8(&chunk[j..]) {
                        Ok(v) => {
                            out.push_str(v);
                            j = chunk.len();
                        }
                        Err(e) => {
                            let good = e.valid_up_to();
                            // The prefix is valid UTF-8 by the definition of valid_up_to.
                            out.push_str(std::str::from_utf8(&chunk[j..j + good]).unwrap_or(""));
                            let bad = e.error_len().unwrap_or(chunk.len() - j - good);
                            for _ in 0..bad {
                                out.push('\u{fffd}');
                            }
                            j += good + bad;
                        }
                    }
                }
                i += end;
            }
        }
    }
    out
}

enum Field {
    Str(fn(&mut PortSpec) -> &mut String, &'static str),
    Int(fn(&mut PortSpec) -> &mut i64, &'static str),
}

fn field(key: &str) -> Option<Field> {
    const FIELDS: [&str; 5] = ["proto", "parentIP", "parentPort", "childPort", "childIP"];
    let name = FIELDS
        .iter()
        .find(|f| **f == key)
        .or_else(|| FIELDS.iter().find(|f| f.eq_ignore_ascii_case(key)))?;
    Some(match *name {
        "proto" => Field::Str(|s| &mut s.proto, "proto"),
        "parentIP" => Field::Str(|s| &mut s.parent_ip, "parentIP"),
        "childIP" => Field::Str(|s| &mut s.child_ip, "childIP"),
        "parentPort" => Field::Int(|s| &mut s.parent_port, "parentPort"),
        _ => Field::Int(|s| &mut s.child_port, "childPort"),
    })
}

/// `json.NewDecoder(body).Decode(&spec)` of Go, for `port.Spec`.
pub fn decode_port_spec(body: &[u8]) -> Result<PortSpec, String> {
    let (start, end) = Scan { b: body, i: 0 }.first_value()?;
    let mut d = Dec {
        b: &body[..end],
        i: start,
    };
    let mut spec = PortSpec::default();
    match d.kind() {
        Kind::Null => return Ok(spec),
        Kind::Object => {}
        k => {
            return Err(format!(
                "json: cannot unmarshal {} into Go value of type port.Spec",
                k.go_name()
            ))
        }
    }
    let mut first_err: Option<String> = None;
    d.i += 1;
    loop {
        d.ws();
        match d.b[d.i] {
            b'}' => break,
            b',' => {
                d.i += 1;
                continue;
            }
            _ => {}
        }
        let key = d.string();
        d.ws();
        d.i += 1; // ':'
        d.ws();
        let kind = d.kind();
        let type_err = |name: &str, what: String, ty: &str| {
            format!("json: cannot unmarshal {what} into Go struct field Spec.{name} of type {ty}")
        };
        match (field(&key), kind) {
            (None, _) | (Some(_), Kind::Null) => {
                d.skip();
            }
            (Some(Field::Str(get, _)), Kind::String) => {
                *get(&mut spec) = d.string();
            }
            (Some(Field::Int(get, name)), Kind::Number) => {
                let lit = String::from_utf8_lossy(d.skip()).into_owned();
                match lit.parse::<i64>() {
                    Ok(v) => *get(&mut spec) = v,
                    Err(_) => {
                        first_err
                            .get_or_insert_with(|| type_err(name, format!("number {lit}"), "int"));
                    }
                }
            }
            (Some(Field::Str(_, name)), k) => {
                d.skip();
                first_err.get_or_insert_with(|| type_err(name, k.go_name().into(), "string"));
            }
            (Some(Field::Int(_, name)), k) => {
                d.skip();
                first_err.get_or_insert_with(|| type_err(name, k.go_name().into(), "int"));
            }
        }
    }
    match first_err {
        Some(e) => Err(e),
        None => Ok(spec),
    }
}

/// Go's encoder escapes `<`, `>`, `&`, U+2028 and U+2029 in strings (HTML-safe by default).
/// Applied to serde_json output; those characters can only occur inside JSON strings.
pub fn go_escape(json: String) -> String {
    if !json.contains(['<', '>', '&', '\u{2028}', '\u{2029}']) {
        return json;
    }
    let mut out = String::with_capacity(json.len() + 16);
    for c in json.chars() {
        match c {
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c => out.push(c),
        }
    }
    out
}

/// `json.Marshal` of a value, Go-escaped.
pub fn marshal<T: serde::Serialize>(v: &T) -> String {
    // Serialising plain structs of strings and ints cannot fail.
    go_escape(serde_json::to_string(v).unwrap_or_default())
}

/// `json.MarshalIndent(v, "", "    ")`, Go-escaped.
pub fn marshal_indent<T: serde::Serialize>(v: &T) -> String {
    let mut buf = Vec::new();
    let fmt = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut ser = serde_json::Serializer::with_formatter(&mut buf, fmt);
    if v.serialize(&mut ser).is_err() {
        return String::new();
    }
    go_escape(String::from_utf8(buf).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(b: &str) -> String {
        decode_port_spec(b.as_bytes()).unwrap_err()
    }

    #[test]
    fn errors_observed_on_go() {
        // Every expectation below was observed against RootlessKit 1.1.0's API.
        assert_eq!(e(""), "EOF");
        assert_eq!(e("  \n"), "EOF");
        assert_eq!(e(r#"{"proto":"tcp","parentIP":"#), "unexpected EOF");
        assert_eq!(e(r#"  {"a"#), "unexpected EOF");
        assert_eq!(
            e("abc"),
            "invalid character 'a' looking for beginning of value"
        );
        assert_eq!(
            e("[]"),
            "json: cannot unmarshal array into Go value of type port.Spec"
        );
        assert_eq!(
            e(r#""str""#),
            "json: cannot unmarshal string into Go value of type port.Spec"
        );
        assert_eq!(
            e(r#"{"proto":"tcp","parentPort":"1"}"#),
            "json: cannot unmarshal string into Go struct field Spec.parentPort of type int"
        );
        assert_eq!(
            e(r#"{"proto":1}"#),
            "json: cannot unmarshal number into Go struct field Spec.proto of type string"
        );
        assert_eq!(
            e(r#"{"parentPort":18001.0}"#),
            "json: cannot unmarshal number 18001.0 into Go struct field Spec.parentPort of type int"
        );
        assert_eq!(
            e(r#"{"parentPort":1e2}"#),
            "json: cannot unmarshal number 1e2 into Go struct field Spec.parentPort of type int"
        );
        assert_eq!(
            e(r#"{"parentPort":99999999999999999999}"#),
            "json: cannot unmarshal number 99999999999999999999 into Go struct field Spec.parentPort of type int"
        );
        assert_eq!(
            e(r#"{"parentPort":true}"#),
            "json: cannot unmarshal bool into Go struct field Spec.parentPort of type int"
        );
        assert_eq!(
            e(r#"{"proto":"tcp","parentPort":null,"childPort":{}}"#),
            "json: cannot unmarshal object into Go struct field Spec.childPort of type int"
        );
    }

    #[test]
    fn syntax_errors() {
        assert_eq!(
            e("{x"),
            "invalid character 'x' looking for beginning of object key string"
        );
        assert_eq!(e(r#"{"a" 1}"#), "invalid character '1' after object key");
        assert_eq!(
            e(r#"{"a":1 2}"#),
            "invalid character '2' after object key:value pair"
        );
        assert_eq!(
            e(r#"{"a":[1 2]}"#),
            "invalid character '2' after array element"
        );
        assert_eq!(e(r#"{"a":-x}"#), "invalid character 'x' in numeric literal");
        assert_eq!(
            e(r#"{"a":1.x}"#),
            "invalid character 'x' after decimal point in numeric literal"
        );
        assert_eq!(
            e(r#"{"a":1ex}"#),
            "invalid character 'x' in exponent of numeric literal"
        );
        assert_eq!(
            e(r#"{"a":tx}"#),
            "invalid character 'x' in literal true (expecting 'r')"
        );
        assert_eq!(
            e("{\"a\":\"\n\"}"),
            r"invalid character '\n' in string literal"
        );
        assert_eq!(
            e(r#"{"a":"\x"}"#),
            "invalid character 'x' in string escape code"
        );
        assert_eq!(
            e(r#"{"a":"\u12g4"}"#),
            "invalid character 'g' in \\u hexadecimal character escape"
        );
        assert_eq!(
            e(r#"{"a":[1,]}"#),
            "invalid character ']' looking for beginning of value"
        );
        assert_eq!(
            e(r#"{"a":1,}"#),
            "invalid character '}' looking for beginning of object key string"
        );
        assert_eq!(e("-"), "unexpected EOF");
        assert_eq!(e(&"[".repeat(20000)), "exceeded max depth");
    }

    #[test]
    fn decoding_semantics() {
        let d = |b: &str| decode_port_spec(b.as_bytes()).unwrap();
        // Case-insensitive keys, trailing garbage ignored, last duplicate wins, null ignored.
        let s = d(r#"{"Proto":"udp","PARENTPORT":18002,"childport":5,"x":[{"y":"}"}]} xx"#);
        assert_eq!(
            (s.proto.as_str(), s.parent_port, s.child_port),
            ("udp", 18002, 5)
        );
        let s = d(r#"{"proto":"a","proto":"b","childIP":null,"parentIP":"\u003c\ud83d\ude00"}"#);
        assert_eq!((s.proto.as_str(), s.parent_ip.as_str()), ("b", "<😀"));
        assert_eq!(d("null"), PortSpec::default());
        assert_eq!(d(r#"{"parentPort":-0}"#).parent_port, 0);
        assert_eq!(d("{}5").proto, "");
        let s = decode_port_spec(b"{\"proto\":\"a\xffb\"}").unwrap();
        assert_eq!(s.proto, "a\u{fffd}b");
    }

    /// Random bytes over a JSON-heavy alphabet: the decoder must never panic (it indexes the
    /// body after its own syntax check, so this guards that check).
    #[test]
    fn no_panic_on_random_input() {
        const ALPHA: &[u8] = b"{}[]:,\" \\/ubfnrt0123456789-+.eEaxlsTNUL\n\t\x00\x7f\xc3\xa9\xff";
        let mut seed: u64 = 42;
        let mut next = || {
            seed = seed
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (seed >> 33) as usize
        };
        for _ in 0..200_000 {
            let len = next() % 24;
            let mut b: Vec<u8> = (0..len).map(|_| ALPHA[next() % ALPHA.len()]).collect();
            if next() % 2 == 0 {
                b.insert(0, b'{');
            }
            let _ = decode_port_spec(&b);
        }
    }

    #[test]
    fn go_escaping() {
        assert_eq!(
            marshal(&serde_json::json!({"message": "a<b>&c\u{2028}"})),
            r#"{"message":"a\u003cb\u003e\u0026c\u2028"}"#
        );
        assert_eq!(
            marshal_indent(&serde_json::json!({"a": [1]})),
            "{\n    \"a\": [\n        1\n    ]\n}"
        );
    }
}
