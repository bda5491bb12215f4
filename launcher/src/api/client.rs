//! Blocking HTTP/1.1 client for the API socket (used by `rootlessctl` and
//! `rootlesskit-docker-proxy`); behaves like RootlessKit's `pkg/api/client`.
//!
//! One connection per request. Responses are parsed with httparse; bodies may be sized,
//! chunked or close-delimited. Error replies: the `message` of a `{"message":...}` body, else
//! `unexpected HTTP status <text>, body="<body>"` (Go `%q`).

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use forwarder::PortSpec;

use super::gojson;
use super::types::{ErrorJson, Info, PortStatus};

/// Largest response head / body the client accepts.
const MAX_HEAD: usize = 64 * 1024;
const MAX_BODY: u64 = 64 << 20;
/// Go's client shows at most this much of an error body.
const MAX_ERROR_BODY: usize = 64 * 1024;
/// Per-request I/O timeout (a wedged server must not hang `rootlessctl` forever).
const TIMEOUT: Duration = Duration::from_secs(60);

/// Client errors; `Display` is what `rootlessctl` prints after `error: `.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// `os.Stat` of the socket failed (`stat /x: no such file or directory`).
    #[error("stat {path}: {msg}")]
    Stat { path: String, msg: String },
    #[error("{0}")]
    Io(String),
    /// The server's `message`, verbatim.
    #[error("{0}")]
    Api(String),
    #[error("unexpected HTTP status {status}, body={body}")]
    Status { status: String, body: String },
    #[error("{0}")]
    Decode(String),
}

/// Go's `os.PathError` texts for the common errnos.
pub fn go_errno_text(e: &std::io::Error) -> String {
    match e.raw_os_error() {
        Some(libc::ENOENT) => "no such file or directory".into(),
        Some(libc::EACCES) => "permission denied".into(),
        Some(libc::ENOTDIR) => "not a directory".into(),
        Some(libc::ECONNREFUSED) => "connection refused".into(),
        _ => {
            // Rust appends " (os error N)"; Go prints the bare strerror in lower case.
            let s = e.to_string();
            let s = s.split(" (os error").next().unwrap_or(&s).to_string();
            let mut c = s.chars();
            match c.next() {
                Some(f) => f.to_lowercase().collect::<String>() + c.as_str(),
                None => s,
            }
        }
    }
}

/// Go's `http.StatusText` for the codes the API can produce.
pub fn status_text(code: u16) -> Option<&'static str> {
    Some(match code {
        200 => "OK",
        201 => "Created",
        301 => "Moved Permanently",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        413 => "Request Entity Too Large",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => return None,
    })
}

/// A parsed response.
pub struct HttpResponse {
    pub status: u16,
    pub reason: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// Called once per request with the method, the path and the outcome: `Ok((status, reason))`
/// or the error text (`rootlessctl --debug` logs it).
pub type TraceFn = fn(method: &str, path: &str, outcome: Result<(u16, &str), &str>);

/// API client bound to one socket path.
#[derive(Debug, Clone)]
pub struct Client {
    socket: PathBuf,
    trace: Option<TraceFn>,
}

impl Client {
    /// Like Go's `client.New`: fails when the socket path cannot be stat'ed.
    pub fn new(socket: impl AsRef<Path>) -> Result<Client, ClientError> {
        let socket = socket.as_ref().to_path_buf();
        std::fs::metadata(&socket).map_err(|e| ClientError::Stat {
            path: socket.display().to_string(),
            msg: go_errno_text(&e),
        })?;
        Ok(Client {
            socket,
            trace: None,
        })
    }

    /// Reports every request and its outcome to `trace`.
    pub fn with_trace(mut self, trace: TraceFn) -> Client {
        self.trace = Some(trace);
        self
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Send one request; returns the raw response.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
    ) -> Result<HttpResponse, ClientError> {
        let r = self.send(method, path, body);
        if let Some(trace) = self.trace {
            match &r {
                Ok(resp) => trace(method, path, Ok((resp.status, &resp.reason))),
                Err(e) => trace(method, path, Err(&e.to_string())),
            }
        }
        r
    }

    fn send(
        &self,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
    ) -> Result<HttpResponse, ClientError> {
        // Go's url.Error: `Get "http://rootlesskit/v1/info": dial unix /x: connect: ...`.
        let op = format!("{}{}", &method[..1], method[1..].to_ascii_lowercase());
        let mut s = UnixStream::connect(&self.socket).map_err(|e| {
            ClientError::Io(format!(
                "{op} \"http://rootlesskit{path}\": dial unix {}: connect: {}",
                self.socket.display(),
                go_errno_text(&e)
            ))
        })?;
        let io = |e: std::io::Error| ClientError::Io(format!("{method} {path}: {e}"));
        s.set_read_timeout(Some(TIMEOUT)).map_err(io)?;
        s.set_write_timeout(Some(TIMEOUT)).map_err(io)?;
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nHost: rootlesskit\r\nUser-Agent: Go-http-client/1.1\r\n"
        );
        if let Some(b) = body {
            req.push_str(&format!(
                "Content-Length: {}\r\nContent-Type: application/json\r\n",
                b.len()
            ));
        }
        req.push_str("Connection: close\r\n\r\n");
        let mut out = req.into_bytes();
        if let Some(b) = body {
            out.extend_from_slice(b);
        }
        s.write_all(&out).map_err(io)?;
        read_response(BufReader::new(s), method == "HEAD").map_err(io)
    }

    /// Turn a non-2xx response into RootlessKit's client error.
    fn check(resp: &HttpResponse) -> Result<(), ClientError> {
        if resp.status / 100 == 2 {
            return Ok(());
        }
        let body = &resp.body[..resp.body.len().min(MAX_ERROR_BODY)];
        if let Ok(e) = serde_json::from_slice::<ErrorJson>(body) {
            if !e.message.is_empty() {
                return Err(ClientError::Api(e.message));
            }
        }
        Err(ClientError::Status {
            status: status_text(resp.status).unwrap_or(&resp.reason).to_string(),
            body: forwarder::spec::go_quote(&String::from_utf8_lossy(body)),
        })
    }

    fn decode<T: serde::de::DeserializeOwned>(resp: &HttpResponse) -> Result<T, ClientError> {
        serde_json::from_slice(&resp.body).map_err(|e| ClientError::Decode(e.to_string()))
    }

    pub fn info(&self) -> Result<Info, ClientError> {
        let r = self.request("GET", "/v1/info", None)?;
        Self::check(&r)?;
        Self::decode(&r)
    }

    pub fn list_ports(&self) -> Result<Vec<PortStatus>, ClientError> {
        let r = self.request("GET", "/v1/ports", None)?;
        Self::check(&r)?;
        let v: Option<Vec<PortStatus>> = Self::decode(&r)?;
        Ok(v.unwrap_or_default())
    }

    pub fn add_port(&self, spec: &PortSpec) -> Result<PortStatus, ClientError> {
        let body = gojson::marshal(spec);
        let r = self.request("POST", "/v1/ports", Some(body.as_bytes()))?;
        Self::check(&r)?;
        Self::decode(&r)
    }

    pub fn remove_port(&self, id: i64) -> Result<(), ClientError> {
        let r = self.request("DELETE", &format!("/v1/ports/{id}"), None)?;
        Self::check(&r)
    }

    /// rootlesskit-rs extension `GET /v1/ports/{id}/stats` (RootlessKit answers 404 there).
    pub fn port_stats(&self, id: i64) -> Result<crate::port::PortStats, ClientError> {
        let r = self.request("GET", &format!("/v1/ports/{id}/stats"), None)?;
        Self::check(&r)?;
        Self::decode(&r)
    }
}

/// Read one HTTP/1.x response (head with httparse, then a sized, chunked or close-delimited
/// body).
pub fn read_response<R: Read>(
    mut r: BufReader<R>,
    head_request: bool,
) -> std::io::Result<HttpResponse> {
    let bad = |m: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, m.to_string());
    let mut head = Vec::new();
    loop {
        let n = r.read_until(b'\n', &mut head)?;
        if n == 0 {
            return Err(bad("unexpected EOF reading the response head"));
        }
        if head.ends_with(b"\r\n\r\n") || head.ends_with(b"\n\n") {
            break;
        }
        if head.len() > MAX_HEAD {
            return Err(bad("response head too large"));
        }
    }
    let mut hdrs = [httparse::EMPTY_HEADER; 64];
    let mut resp = httparse::Response::new(&mut hdrs);
    match resp.parse(&head) {
        Ok(httparse::Status::Complete(_)) => {}
        _ => return Err(bad("malformed HTTP response")),
    }
    let status = resp.code.unwrap_or(0);
    let reason = resp.reason.unwrap_or("").to_string();
    let headers: Vec<(String, String)> = resp
        .headers
        .iter()
        .map(|h| {
            (
                h.name.to_string(),
                String::from_utf8_lossy(h.value).into_owned(),
            )
        })
        .collect();
    let get = |n: &str| {
        headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(n))
            .map(|(_, v)| v.trim().to_string())
    };
    let mut body = Vec::new();
    if head_request || status == 204 || status == 304 || (100..200).contains(&status) {
    } else if get("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        loop {
            let mut line = String::new();
            r.read_line(&mut line)?;
            let size = line.trim().split(';').next().unwrap_or("");
            let size = usize::from_str_radix(size, 16).map_err(|_| bad("bad chunk size"))?;
            if size == 0 {
                break;
            }
            if (body.len() + size) as u64 > MAX_BODY {
                return Err(bad("response body too large"));
            }
            let start = body.len();
            body.resize(start + size, 0);
            r.read_exact(&mut body[start..])?;
            let mut crlf = [0u8; 2];
            r.read_exact(&mut crlf)?;
        }
    } else if let Some(len) = get("content-length") {
        let len: u64 = len.parse().map_err(|_| bad("bad Content-Length"))?;
        if len > MAX_BODY {
            return Err(bad("response body too large"));
        }
        r.take(len).read_to_end(&mut body)?;
        if body.len() as u64 != len {
            return Err(bad("unexpected EOF"));
        }
    } else {
        r.take(MAX_BODY).read_to_end(&mut body)?;
    }
    Ok(HttpResponse {
        status,
        reason,
        headers,
        body,
    })
}
