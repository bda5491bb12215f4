//! The REST API server (`$STATE/api.sock`), byte-compatible with RootlessKit's Go server.
//!
//! What "byte-compatible" means here (spec §3.1-3.3, checked against 1.1.0):
//! - headers are written title-case in the order Go's `net/http` writes them: the handler's own
//!   headers first (sorted), then `Date`, `Content-Length`, then a sniffed `Content-Type`. Error
//!   replies set the status before the Content-Type, so the wire shows
//!   `Date, Content-Length, Content-Type: text/plain; charset=utf-8` with a JSON body;
//! - bodies over 2048 bytes are sent chunked (Go's `bufferBeforeChunkingSize`) without
//!   `Content-Length` (hyper writes chunk sizes in upper-case hex where Go uses lower case);
//! - gorilla/mux routing: unclean paths (`//v1/info`) -> 301 to the cleaned path, unknown paths
//!   -> `404 page not found\n` with `X-Content-Type-Options: nosniff`, a known path with the wrong
//!   method -> 405 with an empty body (`HEAD` without `Content-Length`), query strings ignored,
//!   paths matched percent-decoded;
//! - HTTP/1.1 without `Host` -> `400 Bad Request: missing required Host header` (Go sends
//!   the body close-delimited; hyper adds `Content-Length`, the only header difference);
//! - requests hyper cannot parse: hyper's bare `400`/`431` replies are swapped for Go's bytes on
//!   their way to the socket ([`GO_PARSE_ERRORS`]), as hyper has no hook for them.
//!
//! Limits that Go does not have (clear 4xx instead of unbounded memory): request heads are
//! capped by hyper's buffer (64 KiB -> 431), bodies at 1 MiB (400 `http: request body too
//! large`), open connections at [`MAX_CONNECTIONS`] (the rest wait in the listen backlog).
//!
//! Slow clients (slowloris): RootlessKit runs `net/http` with no timeouts at all. Here a
//! request must arrive completely (head and body) within [`REQUEST_READ_TIMEOUT`] of its
//! first byte, else the connection is closed without a reply (what `net/http` does when a read
//! deadline hits). The clock starts at the first byte, not when the connection goes idle:
//! hyper's own `header_read_timeout` (1.12) also runs while a keep-alive connection waits for
//! its next request (it starts on every head read, hyper PR #3828), which would close the idle
//! pooled connections of dockerd / rootlesskit-docker-proxy (Go's `http.Transport` keeps them
//! 90 s) and make a POST racing that close fail. So hyper's timer is off and [`Deadline`]
//! wraps the socket instead. An idle or silent connection is kept, as by Go.

use std::borrow::Cow;
use std::convert::Infallible;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::header::{
    HeaderName, HeaderValue, CONNECTION, CONTENT_LENGTH, CONTENT_TYPE, DATE, LOCATION,
    TRANSFER_ENCODING, X_CONTENT_TYPE_OPTIONS,
};
use hyper::{Method, Request, Response, StatusCode, Version};
use hyper_util::rt::TokioIo;
use tokio::net::UnixListener;

use super::gojson;
use super::types::{ErrorJson, Info};
use crate::network::NetworkDriverInfo;
use crate::port::PortDriver;

/// Go's `bufferBeforeChunkingSize`: larger bodies are sent chunked.
const CHUNKING_THRESHOLD: usize = 2048;
/// Maximum request body (Go has none; we answer 400 like `http.MaxBytesReader`).
pub const MAX_BODY: usize = 1 << 20;
/// hyper's read buffer, i.e. the maximum request head.
const MAX_HEAD: usize = 64 * 1024;
/// Connections served at once (each may buffer up to [`MAX_BODY`]); Go has no limit.
pub const MAX_CONNECTIONS: usize = 256;
/// Quick port writes use the driver's `_deferred` calls (builtin: the worker that gets a new
/// listener is not woken per request) and one `flush_deferred` this long after the first of a
/// burst, so 1,000 POSTs cost a few dozen worker wake-ups instead of 1,000. A connection to a
/// port added meanwhile waits in the listen backlog for at most about this long.
const FLUSH_DELAY: Duration = Duration::from_millis(1);
/// From the first byte of a request until all of it is read (see the module doc).
pub const REQUEST_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// How long `run` waits for open connections after the shutdown signal.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// Everything the API serves.
pub struct ApiState {
    /// Implementation version (`version`).
    pub version: String,
    /// REST API version (`apiVersion`).
    pub api_version: String,
    pub state_dir: String,
    pub child_pid: i32,
    pub network_driver: Option<NetworkDriverInfo>,
    pub port_driver: Option<Arc<dyn PortDriver>>,
    /// Serialises port writes; the drivers serialise too, this keeps blocking threads bounded.
    writes: tokio::sync::Mutex<()>,
    /// Runs the port driver's `flush_deferred` (see [`FLUSH_DELAY`]).
    flusher: Flusher,
    /// An add was answered since the driver last prepared the next one ([`prepare_next_add`]).
    prepare_pending: AtomicBool,
}

impl ApiState {
    /// `state_dir` is the absolute state directory as shown by `info`; `child_pid` the host PID
    /// of the rootlesskit child; `network_driver` None for `--net=host`; `port_driver` None for
    /// `none` and `implicit`.
    pub fn new(
        state_dir: impl Into<PathBuf>,
        child_pid: i32,
        network_driver: Option<NetworkDriverInfo>,
        port_driver: Option<Arc<dyn PortDriver>>,
    ) -> Self {
        ApiState {
            version: crate::VERSION.to_string(),
            api_version: crate::API_VERSION.to_string(),
            state_dir: state_dir.into().to_string_lossy().into_owned(),
            child_pid,
            network_driver,
            port_driver,
            writes: tokio::sync::Mutex::new(()),
            flusher: Flusher::default(),
            prepare_pending: AtomicBool::new(false),
        }
    }

    pub fn info(&self) -> Info {
        Info {
            api_version: self.api_version.clone(),
            version: self.version.clone(),
            state_dir: self.state_dir.clone(),
            child_pid: i64::from(self.child_pid),
            network_driver: self.network_driver.clone(),
            port_driver: self.port_driver.as_ref().map(|d| d.info()),
        }
    }
}

/// Let the port driver do ahead of time what the next add starts with (builtin: make its socket,
/// `socket(2)` being the costliest call of an add) if an add was answered since it last did.
/// Called when a connection ends: the client is gone, so this is off every request's path.
/// A keep-alive burst gains nothing from it (this machine serialises client and server on
/// one vCPU), one connection per add does (1,000 adds: 62-65 -> 47-52 ms).
fn prepare_next_add(st: &ApiState) {
    if st.prepare_pending.swap(false, Ordering::Relaxed) {
        if let Some(d) = &st.port_driver {
            d.prepare_next_add();
        }
    }
}

/// Serve the API on `listener` until `shutdown` completes; then stop accepting, let open
/// connections finish their current request (up to 5 s) and return.
pub async fn run(listener: UnixListener, state: Arc<ApiState>, shutdown: impl Future<Output = ()>) {
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut conns = tokio::task::JoinSet::new();
    let limit = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            // At most MAX_CONNECTIONS served at once; more wait in the listen backlog.
            permit = limit.clone().acquire_owned() => {
                let Ok(permit) = permit else { break };
                let accepted = tokio::select! {
                    _ = &mut shutdown => break,
                    a = listener.accept() => a,
                };
                let stream = match accepted {
                    Ok((s, _)) => s,
                    Err(e) => {
                        // EMFILE and friends: back off instead of spinning or dying (unlike
                        // RootlessKit's builtin listener, issue #536, the API keeps serving).
                        crate::debug!("api: accept: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let state = state.clone();
                let state2 = state.clone();
                let mut stop_rx = stop_rx.clone();
                conns.spawn(async move {
                    let _permit = permit;
                    let svc = hyper::service::service_fn(move |req| handle(req, state.clone()));
                    let conn = hyper::server::conn::http1::Builder::new()
                        .title_case_headers(true)
                        // Date is inserted by hand, in Go's position.
                        .auto_date_header(false)
                        .max_buf_size(MAX_HEAD)
                        // Off: it would also close idle keep-alive connections (see `Deadline`).
                        .header_read_timeout(None)
                        // No read for EOF while a request is being answered. Go answers a
                        // request whose client shut down its write side after sending it, and
                        // so does this; without it, that read would find the socket empty and
                        // arm the request deadline's timer on every connection (a tokio timer
                        // registration, an eventfd wake-up, and a timed `epoll_wait` per request
                        // for the connection's lifetime).
                        .half_close(true)
                        .serve_connection(TokioIo::new(Deadline::new(stream)), svc);
                    tokio::pin!(conn);
                    tokio::select! {
                        _ = conn.as_mut() => {}
                        _ = stop_rx.changed() => {
                            conn.as_mut().graceful_shutdown();
                            let _ = conn.await;
                        }
                    }
                    prepare_next_add(&state2);
                });
            }
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
    drop(listener);
    let _ = stop_tx.send(true);
    let _ = tokio::time::timeout(DRAIN_TIMEOUT, async {
        while conns.join_next().await.is_some() {}
    })
    .await;
    conns.abort_all();
    state.flusher.stop();
    // Whatever the last writes queued (the flush thread is gone).
    if let Some(d) = &state.port_driver {
        d.flush_deferred();
    }
}

/// The socket of one API connection with the request read deadline: armed by the first byte
/// read after a response was written (or on a new connection), disarmed when the next
/// response starts; while armed, a read that would block fails with `TimedOut` once
/// [`REQUEST_READ_TIMEOUT`] has passed (hyper then closes the connection). The timer is only
/// created (and registered) when a read would block while armed, which a request that arrives
/// in one piece never does.
struct Deadline<S> {
    io: S,
    /// When the request being read must be complete; None while disarmed.
    due: Option<tokio::time::Instant>,
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
    /// The unwritten rest of a reply put in place of one of hyper's ([`GO_PARSE_ERRORS`]).
    substitute: &'static [u8],
}

impl<S> Deadline<S> {
    fn new(io: S) -> Self {
        Deadline {
            io,
            due: None,
            timer: None,
            substitute: &[],
        }
    }

    /// A response is being written: no deadline until the next request's first byte. The
    /// timer goes too, so an idle connection leaves no timer registered (with one, every
    /// `epoll_wait` of the API thread would be a timed wait).
    fn disarm(&mut self) {
        self.due = None;
        self.timer = None;
    }
}

impl<S: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for Deadline<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.io).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if self.due.is_none() && buf.filled().len() > before {
                    self.due = Some(tokio::time::Instant::now() + REQUEST_READ_TIMEOUT);
                }
                Poll::Ready(Ok(()))
            }
            Poll::Pending => {
                let Some(due) = self.due else {
                    return Poll::Pending;
                };
                let timer = match &mut self.timer {
                    Some(t) => {
                        if t.deadline() != due {
                            t.as_mut().reset(due);
                        }
                        t
                    }
                    t @ None => t.insert(Box::pin(tokio::time::sleep_until(due))),
                };
                if timer.as_mut().poll(cx).is_ready() {
                    crate::debug!(
                        "api: request not complete after {REQUEST_READ_TIMEOUT:?}, closing"
                    );
                    return Poll::Ready(Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "request read timeout",
                    )));
                }
                Poll::Pending
            }
            other => other,
        }
    }
}

/// hyper's own replies to requests it cannot parse (it has no hook for them), each with Go's
/// `net/http` reply to the same requests (`server.go`: the status line, `Content-Type:
/// text/plain; charset=utf-8`, `Connection: close`, and the status text again as the body).
/// Checked against 1.1.0 by `unparseable_requests_match_go` (tests/tests/api_hostile.rs).
const GO_PARSE_ERRORS: [(&[u8], &[u8]); 2] = [
    (
        b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\n\
          Connection: close\r\n\r\n400 Bad Request",
    ),
    (
        b"HTTP/1.1 431 Request Header Fields Too Large\r\nConnection: close\r\n\
          Content-Length: 0\r\n\r\n",
        b"HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Type: text/plain; \
          charset=utf-8\r\nConnection: close\r\n\r\n431 Request Header Fields Too Large",
    ),
];

/// Go's bytes for `data` when `data` (all of one write) is one of hyper's parse-error replies.
fn go_parse_error(bufs: &[std::io::IoSlice<'_>]) -> Option<&'static [u8]> {
    let len: usize = bufs.iter().map(|b| b.len()).sum();
    GO_PARSE_ERRORS.iter().find_map(|(hyper, go)| {
        if hyper.len() != len {
            return None;
        }
        let mut rest: &[u8] = hyper;
        for b in bufs {
            let (head, tail) = rest.split_at(b.len());
            if head != &b[..] {
                return None;
            }
            rest = tail;
        }
        Some(*go)
    })
}

impl<S: tokio::io::AsyncWrite + Unpin> Deadline<S> {
    /// Write what is left of a substituted reply ([`GO_PARSE_ERRORS`]).
    fn poll_substitute(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        while !self.substitute.is_empty() {
            match Pin::new(&mut self.io).poll_write(cx, self.substitute) {
                Poll::Ready(Ok(0)) => {
                    return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into()));
                }
                Poll::Ready(Ok(n)) => self.substitute = &self.substitute[n..],
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
        Poll::Ready(Ok(()))
    }

    /// One write of hyper's: replaced by Go's bytes when it is a parse-error reply (reported as
    /// written whole; the rest goes out before anything else, at the latest on flush).
    fn poll_write_bufs(
        &mut self,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        self.disarm();
        std::task::ready!(self.poll_substitute(cx))?;
        if let Some(go) = go_parse_error(bufs) {
            self.substitute = go;
            if let Poll::Ready(Err(e)) = self.poll_substitute(cx) {
                return Poll::Ready(Err(e));
            }
            return Poll::Ready(Ok(bufs.iter().map(|b| b.len()).sum()));
        }
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }
}

impl<S: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for Deadline<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.poll_write_bufs(cx, &[std::io::IoSlice::new(buf)])
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        self.poll_write_bufs(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        std::task::ready!(self.poll_substitute(cx))?;
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        std::task::ready!(self.poll_substitute(cx))?;
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// A running API server on its own thread (see [`spawn`]).
pub struct ApiServerHandle {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ApiServerHandle {
    /// Stop accepting, drain open connections (up to 5 s) and join the thread.
    pub fn shutdown(mut self) {
        self.stop_and_join();
    }

    fn stop_and_join(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for ApiServerHandle {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}

/// Serve the API from a dedicated thread with its own current-thread tokio runtime, for a
/// parent that has no runtime of its own. `listener` is the bound `$STATE/api.sock`.
pub fn spawn(
    listener: std::os::unix::net::UnixListener,
    state: Arc<ApiState>,
) -> std::io::Result<ApiServerHandle> {
    listener.set_nonblocking(true)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::Builder::new()
        .name("api".into())
        .spawn(move || {
            rt.block_on(async move {
                match UnixListener::from_std(listener) {
                    Ok(l) => {
                        run(l, state, async {
                            let _ = rx.await;
                        })
                        .await
                    }
                    Err(e) => crate::error!("api: {e}"),
                }
            });
        })?;
    Ok(ApiServerHandle {
        stop: Some(tx),
        thread: Some(thread),
    })
}

/// Response body: either sized (`Content-Length`) or one chunk of unknown size (chunked).
pub struct Body {
    data: Option<Bytes>,
    sized: bool,
}

impl http_body::Body for Body {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Ready(self.data.take().map(|d| Ok(Frame::data(d))))
    }

    fn is_end_stream(&self) -> bool {
        self.sized && self.data.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        if self.sized {
            SizeHint::with_exact(self.data.as_ref().map_or(0, |d| d.len() as u64))
        } else {
            SizeHint::default()
        }
    }
}

/// The `Date` header value (Go's `http.TimeFormat`), formatted once per second per thread.
fn date() -> HeaderValue {
    thread_local! {
        static CACHE: std::cell::RefCell<Option<(u64, HeaderValue)>> =
            const { std::cell::RefCell::new(None) };
    }
    let now = SystemTime::now();
    let secs = now
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    CACHE.with_borrow_mut(|c| match c {
        Some((s, v)) if *s == secs => v.clone(),
        _ => {
            let v = HeaderValue::from_str(&httpdate::fmt_http_date(now))
                .unwrap_or_else(|_| HeaderValue::from_static(""));
            *c = Some((secs, v.clone()));
            v
        }
    })
}

/// A header value for [`Reply::header`]; None (header left out) for text that is not a
/// valid header value, as before.
trait IntoValue {
    fn into_value(self) -> Option<HeaderValue>;
}

impl IntoValue for &'static str {
    fn into_value(self) -> Option<HeaderValue> {
        // Only literals are passed (all valid header text).
        Some(HeaderValue::from_static(self))
    }
}

impl IntoValue for String {
    fn into_value(self) -> Option<HeaderValue> {
        HeaderValue::from_maybe_shared(Bytes::from(self)).ok()
    }
}

impl IntoValue for HeaderValue {
    fn into_value(self) -> Option<HeaderValue> {
        Some(self)
    }
}

impl IntoValue for usize {
    fn into_value(self) -> Option<HeaderValue> {
        Some(HeaderValue::from(self))
    }
}

/// Builds a response with headers in exactly the given order (hyper keeps map order).
struct Reply {
    status: StatusCode,
    headers: Vec<(HeaderName, HeaderValue)>,
    body: Option<Bytes>,
    chunked: bool,
}

impl Reply {
    fn new(status: StatusCode) -> Self {
        Reply {
            status,
            headers: Vec::new(),
            body: None,
            chunked: false,
        }
    }
    fn header(mut self, name: HeaderName, value: impl IntoValue) -> Self {
        if let Some(v) = value.into_value() {
            self.headers.push((name, v));
        }
        self
    }
    /// Go's tail: `Date`, then `Content-Length` (or `Transfer-Encoding: chunked` for big
    /// bodies), then the sniffed `Content-Type` if the handler set none.
    fn go_tail(
        mut self,
        body: Option<Bytes>,
        sniffed_type: Option<&'static str>,
        http10: bool,
    ) -> Self {
        self = self.header(DATE, date());
        let len = body.as_ref().map_or(0, |b| b.len());
        let big = len > CHUNKING_THRESHOLD;
        if !big {
            self = self.header(CONTENT_LENGTH, len);
        }
        if let Some(ct) = sniffed_type {
            self = self.header(CONTENT_TYPE, ct);
        }
        if big && http10 {
            // HTTP/1.0 cannot chunk: the body is delimited by closing the connection.
            self.chunked = true;
        } else if big {
            self = self.header(TRANSFER_ENCODING, "chunked");
            self.chunked = true;
        }
        self.body = body;
        self
    }
    fn build(self, version: Version) -> Response<Body> {
        let mut resp = Response::new(Body {
            data: self.body.filter(|b| !b.is_empty()),
            sized: !self.chunked,
        });
        *resp.status_mut() = self.status;
        *resp.version_mut() = version;
        let h = resp.headers_mut();
        h.reserve(self.headers.len());
        for (name, value) in self.headers {
            h.append(name, value);
        }
        resp
    }
}

/// A handler error: status first, then a JSON body that Go sniffs as text/plain.
fn error_reply(status: StatusCode, message: &str, http10: bool) -> Reply {
    let mut body = gojson::marshal(&ErrorJson {
        message: message.to_string(),
    });
    body.push('\n');
    Reply::new(status).go_tail(
        Some(Bytes::from(body)),
        Some("text/plain; charset=utf-8"),
        http10,
    )
}

fn json_reply(status: StatusCode, json: String, http10: bool) -> Reply {
    Reply::new(status)
        .header(CONTENT_TYPE, "application/json")
        .go_tail(Some(Bytes::from(json)), None, http10)
}

/// Whether [`clean_path`] would return `p` unchanged (checked without allocating; a false
/// "not clean" only costs the slow check).
fn is_clean_path(p: &str) -> bool {
    p.starts_with('/')
        && !p.contains("//")
        && !p.contains("/./")
        && !p.contains("/../")
        && !p.ends_with("/.")
        && !p.ends_with("/..")
}

/// gorilla/mux's `cleanPath`: `path.Clean` keeping a trailing slash.
fn clean_path(p: &str) -> String {
    if p.is_empty() {
        return "/".into();
    }
    let rooted = if p.starts_with('/') {
        p.to_string()
    } else {
        format!("/{p}")
    };
    let mut out: Vec<&str> = Vec::new();
    for seg in rooted.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            s => out.push(s),
        }
    }
    let mut np = format!("/{}", out.join("/"));
    if rooted.ends_with('/') && np != "/" {
        np.push('/');
    }
    np
}

/// Go's `url.PathEscape`-like escaping of a path for `URL.String()` (mode `encodePath`):
/// unreserved characters and `$&+,/:;=@` stay, everything else becomes `%XX`.
fn go_escape_path(p: &str) -> String {
    let mut out = String::with_capacity(p.len());
    for b in p.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~$&+,/:;=@".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Percent-decode a request path like Go's `url.PathUnescape`; None on a bad escape. The
/// result may be invalid UTF-8 (`%ff`), as in Go.
fn unescape_path_bytes(p: &str) -> Option<Vec<u8>> {
    let b = p.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = b.get(i + 1..i + 3)?;
            let s = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(s, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    Some(out)
}

/// [`unescape_path_bytes`] as text (invalid UTF-8 replaced; only ids can contain any).
#[cfg(test)]
fn unescape_path(p: &str) -> Option<String> {
    unescape_path_bytes(p).map(|b| String::from_utf8_lossy(&b).into_owned())
}

/// The raw bytes of the `{id}` of `/v1/ports/{id}[/stats]` in a decoded path.
fn raw_port_id(path: &[u8]) -> &[u8] {
    let rest = path.strip_prefix(b"/v1/ports/").unwrap_or(path);
    rest.strip_suffix(b"/stats").unwrap_or(rest)
}

/// Go's `bad id %s: strconv.Atoi: parsing %q: invalid syntax` reply for an id that is not
/// UTF-8 (`DELETE /v1/ports/%ff`): Go's `%q` writes `\xff`, and its JSON encoder replaces
/// each invalid byte with `\ufffd`.
fn bad_raw_id_reply(id: &[u8], http10: bool) -> Reply {
    let mut quoted = String::from("\"");
    for chunk in id.utf8_chunks() {
        let q = forwarder::spec::go_quote(chunk.valid());
        quoted.push_str(&q[1..q.len() - 1]);
        for b in chunk.invalid() {
            quoted.push_str(&format!("\\x{b:02x}"));
        }
    }
    quoted.push('"');
    let mut msg: Vec<u8> = b"bad id ".to_vec();
    msg.extend_from_slice(id);
    msg.extend_from_slice(format!(": strconv.Atoi: parsing {quoted}: invalid syntax").as_bytes());
    let mut body = String::from("{\"message\":\"");
    for chunk in msg.utf8_chunks() {
        let enc = gojson::marshal(&chunk.valid());
        body.push_str(&enc[1..enc.len() - 1]);
        for _ in chunk.invalid() {
            body.push_str("\\ufffd");
        }
    }
    body.push_str("\"}\n");
    Reply::new(StatusCode::BAD_REQUEST).go_tail(
        Some(Bytes::from(body)),
        Some("text/plain; charset=utf-8"),
        http10,
    )
}

enum Route {
    Info,
    Ports,
    Port(String),
    /// rootlesskit-rs extension: `GET /v1/ports/{id}/stats`.
    PortStats(String),
}

fn route(path: &str) -> Option<Route> {
    match path {
        "/v1/info" => Some(Route::Info),
        "/v1/ports" => Some(Route::Ports),
        p => {
            let rest = p.strip_prefix("/v1/ports/")?;
            if let Some(id) = rest.strip_suffix("/stats") {
                if !id.is_empty() && !id.contains('/') {
                    return Some(Route::PortStats(id.to_string()));
                }
            }
            if rest.is_empty() || rest.contains('/') {
                None
            } else {
                Some(Route::Port(rest.to_string()))
            }
        }
    }
}

/// Runs the port driver's `flush_deferred` [`FLUSH_DELAY`] after the first deferred write of a
/// burst, on a thread of its own (`api-flush`, started on first use). Not a tokio timer on the
/// API thread: with a timer pending, every `epoll_wait` of that thread between two requests
/// arms and cancels a 1 ms kernel timer (1,000 keep-alive adds: 22.1 -> 20.7 ms in an A/B).
#[derive(Default)]
struct Flusher {
    scheduled: Arc<AtomicBool>,
    thread: std::sync::Mutex<Option<(mpsc::Sender<()>, std::thread::JoinHandle<()>)>>,
}

impl Flusher {
    /// Flush within [`FLUSH_DELAY`] unless a flush is already due.
    fn schedule(&self, d: &Arc<dyn PortDriver>) {
        if self.scheduled.swap(true, Ordering::AcqRel) {
            return;
        }
        let mut t = self.thread.lock().unwrap_or_else(|p| p.into_inner());
        if t.is_none() {
            let (tx, rx) = mpsc::channel::<()>();
            let scheduled = self.scheduled.clone();
            let d2 = d.clone();
            let spawned = std::thread::Builder::new()
                .name("api-flush".into())
                .spawn(move || {
                    while rx.recv().is_ok() {
                        std::thread::sleep(FLUSH_DELAY);
                        // Cleared first: a write after this point schedules the next flush.
                        scheduled.store(false, Ordering::Release);
                        d2.flush_deferred();
                    }
                });
            match spawned {
                Ok(h) => *t = Some((tx, h)),
                Err(e) => crate::debug!("api: flush thread: {e}"),
            }
        }
        let sent = t.as_ref().is_some_and(|(tx, _)| tx.send(()).is_ok());
        if !sent {
            // No thread: flush now (correct, only without the batching).
            self.scheduled.store(false, Ordering::Release);
            d.flush_deferred();
        }
    }

    /// Stop the thread after the flush it may have pending.
    fn stop(&self) {
        let t = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some((tx, h)) = t {
            drop(tx);
            let _ = h.join();
        }
    }
}

/// Collect at most [`MAX_BODY`] bytes; None when the body is larger.
async fn read_body(body: Incoming) -> Result<Option<Bytes>, hyper::Error> {
    match http_body_util::Limited::new(body, MAX_BODY).collect().await {
        Ok(c) => Ok(Some(c.to_bytes())),
        Err(e) => match e.downcast::<hyper::Error>() {
            Ok(e) => Err(*e),
            Err(_) => Ok(None),
        },
    }
}

async fn handle(req: Request<Incoming>, st: Arc<ApiState>) -> Result<Response<Body>, Infallible> {
    let (parts, req_body) = req.into_parts();
    let version = parts.version;
    let http10 = version == Version::HTTP_10;
    if version == Version::HTTP_11 && !parts.headers.contains_key(hyper::header::HOST) {
        let mut resp = Reply::new(StatusCode::BAD_REQUEST)
            .header(CONTENT_TYPE, "text/plain; charset=utf-8")
            .header(CONNECTION, "close");
        let body: &'static [u8] = b"400 Bad Request: missing required Host header";
        resp = resp.header(CONTENT_LENGTH, body.len());
        resp.body = Some(Bytes::from_static(body));
        let mut resp = resp.build(version);
        resp.extensions_mut()
            .insert(hyper::ext::ReasonPhrase::from_static(
                b"Bad Request: missing required Host header",
            ));
        return Ok(resp);
    }
    if parts.headers.get_all(hyper::header::HOST).iter().count() > 1 {
        // Go rejects repeated Host headers before routing.
        let body: &'static [u8] = b"400 Bad Request";
        let mut r = Reply::new(StatusCode::BAD_REQUEST)
            .header(CONTENT_TYPE, "text/plain; charset=utf-8")
            .header(CONNECTION, "close")
            .header(CONTENT_LENGTH, body.len());
        r.body = Some(Bytes::from_static(body));
        return Ok(r.build(version));
    }
    let raw_path = parts.uri.path();
    // Usual case: nothing escaped, nothing to clean, no copies.
    let path_bytes: Option<Cow<'_, [u8]>> = if raw_path.contains('%') {
        unescape_path_bytes(raw_path).map(Cow::Owned)
    } else {
        Some(Cow::Borrowed(raw_path.as_bytes()))
    };
    let Some(path_bytes) = path_bytes else {
        let mut r = Reply::new(StatusCode::BAD_REQUEST)
            .header(CONTENT_TYPE, "text/plain; charset=utf-8")
            .header(CONNECTION, "close");
        let body: &'static [u8] = b"400 Bad Request";
        r = r.header(CONTENT_LENGTH, body.len());
        r.body = Some(Bytes::from_static(body));
        return Ok(r.build(version));
    };
    let path = String::from_utf8_lossy(&path_bytes);
    let unclean = if is_clean_path(&path) {
        None
    } else {
        Some(clean_path(&path)).filter(|c| *c != path)
    };
    if let Some(cleaned) = unclean {
        let cleaned = go_escape_path(&cleaned);
        let location = match parts.uri.query() {
            Some(q) => format!("{cleaned}?{q}"),
            None => cleaned,
        };
        let r = Reply::new(StatusCode::MOVED_PERMANENTLY)
            .header(LOCATION, location)
            .go_tail(None, None, http10);
        return Ok(r.build(version));
    }
    let Some(route) = route(&path) else {
        let r = Reply::new(StatusCode::NOT_FOUND)
            .header(CONTENT_TYPE, "text/plain; charset=utf-8")
            .header(X_CONTENT_TYPE_OPTIONS, "nosniff")
            .go_tail(
                Some(Bytes::from_static(b"404 page not found\n")),
                None,
                http10,
            );
        return Ok(r.build(version));
    };
    let method = parts.method;
    let reply = match (route, &method) {
        (Route::Info, &Method::GET) => {
            json_reply(StatusCode::OK, gojson::marshal(&st.info()), http10)
        }
        (Route::Ports, &Method::GET) => match &st.port_driver {
            None => error_reply(
                StatusCode::BAD_REQUEST,
                "no PortDriver is available",
                http10,
            ),
            Some(d) => {
                let ports = d.list_ports();
                // Go marshals a nil slice as `null`.
                let json = if ports.is_empty() {
                    "null".to_string()
                } else {
                    gojson::marshal(&ports)
                };
                json_reply(StatusCode::OK, json, http10)
            }
        },
        (Route::Ports, &Method::POST) => match &st.port_driver {
            None => error_reply(
                StatusCode::BAD_REQUEST,
                "no PortDriver is available",
                http10,
            ),
            Some(d) => match read_body(req_body).await {
                Err(_) => error_reply(StatusCode::BAD_REQUEST, "unexpected EOF", http10),
                Ok(None) => error_reply(
                    StatusCode::BAD_REQUEST,
                    "http: request body too large",
                    http10,
                ),
                Ok(Some(body)) => match gojson::decode_port_spec(&body) {
                    Err(e) => error_reply(StatusCode::BAD_REQUEST, &e, http10),
                    Ok(spec) => {
                        let res = if d.quick_add() {
                            // builtin: bind + listen, no thread hop (issue #5).
                            let r = d.add_port_deferred(spec);
                            st.flusher.schedule(d);
                            st.prepare_pending.store(true, Ordering::Relaxed);
                            Ok(r)
                        } else {
                            let _w = st.writes.lock().await;
                            let d = d.clone();
                            tokio::task::spawn_blocking(move || d.add_port(spec)).await
                        };
                        match res {
                            Ok(Ok(status)) => {
                                json_reply(StatusCode::CREATED, gojson::marshal(&status), http10)
                            }
                            Ok(Err(e)) => {
                                error_reply(StatusCode::BAD_REQUEST, &e.to_string(), http10)
                            }
                            Err(e) => error_reply(
                                StatusCode::INTERNAL_SERVER_ERROR,
                                &format!("add port: {e}"),
                                http10,
                            ),
                        }
                    }
                },
            },
        },
        (Route::Port(id), &Method::DELETE) => match &st.port_driver {
            None => error_reply(
                StatusCode::BAD_REQUEST,
                "no PortDriver is available",
                http10,
            ),
            Some(_) if std::str::from_utf8(raw_port_id(&path_bytes)).is_err() => {
                bad_raw_id_reply(raw_port_id(&path_bytes), http10)
            }
            Some(d) => match forwarder::spec::go_atoi(&id) {
                Err(e) => error_reply(
                    StatusCode::BAD_REQUEST,
                    &format!("bad id {id}: {e}"),
                    http10,
                ),
                Ok(id) => {
                    let res = if d.quick_remove(id) {
                        let r = d.remove_port_deferred(id);
                        st.flusher.schedule(d);
                        Ok(r)
                    } else {
                        let _w = st.writes.lock().await;
                        let d = d.clone();
                        tokio::task::spawn_blocking(move || d.remove_port(id)).await
                    };
                    match res {
                        Ok(Ok(())) => Reply::new(StatusCode::OK).go_tail(None, None, http10),
                        Ok(Err(e)) => error_reply(StatusCode::BAD_REQUEST, &e.to_string(), http10),
                        Err(e) => error_reply(
                            StatusCode::INTERNAL_SERVER_ERROR,
                            &format!("remove port: {e}"),
                            http10,
                        ),
                    }
                }
            },
        },
        (Route::PortStats(id), &Method::GET) => match &st.port_driver {
            None => error_reply(
                StatusCode::BAD_REQUEST,
                "no PortDriver is available",
                http10,
            ),
            Some(_) if std::str::from_utf8(raw_port_id(&path_bytes)).is_err() => {
                bad_raw_id_reply(raw_port_id(&path_bytes), http10)
            }
            Some(d) => match forwarder::spec::go_atoi(&id) {
                Err(e) => error_reply(
                    StatusCode::BAD_REQUEST,
                    &format!("bad id {id}: {e}"),
                    http10,
                ),
                Ok(id) => match d.stats(id) {
                    Ok(s) => json_reply(StatusCode::OK, gojson::marshal(&s), http10),
                    Err(e) => error_reply(StatusCode::BAD_REQUEST, &e.to_string(), http10),
                },
            },
        },
        // gorilla/mux: the path exists but not for this method -> 405, empty body. Go sends
        // no Content-Length for HEAD.
        (_, m) if m == Method::HEAD => {
            Reply::new(StatusCode::METHOD_NOT_ALLOWED).header(DATE, date())
        }
        _ => Reply::new(StatusCode::METHOD_NOT_ALLOWED).go_tail(None, None, http10),
    };
    Ok(reply.build(version))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One `poll_read` of `d`: None when it would block.
    async fn try_read(d: &mut Deadline<tokio::net::UnixStream>) -> Option<std::io::Result<usize>> {
        use tokio::io::AsyncRead;
        let mut buf = [0u8; 64];
        std::future::poll_fn(|cx| {
            let mut rb = tokio::io::ReadBuf::new(&mut buf);
            Poll::Ready(match Pin::new(&mut *d).poll_read(cx, &mut rb) {
                Poll::Ready(r) => Some(r.map(|()| rb.filled().len())),
                Poll::Pending => None,
            })
        })
        .await
    }

    /// A request that arrives in pieces arms the read deadline's timer; writing the response
    /// disarms it and drops the timer, so an idle keep-alive connection leaves no timer
    /// registered (with one, every `epoll_wait` of the API thread would be a timed wait).
    #[test]
    fn response_drops_the_request_timer() {
        use tokio::io::AsyncWrite;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let (a, mut client) = tokio::net::UnixStream::pair().expect("pair");
            let mut d = Deadline::new(a);
            tokio::io::AsyncWriteExt::write_all(&mut client, b"GET /v1/in")
                .await
                .expect("write");
            // Give the runtime's reactor a chance to see the bytes.
            tokio::task::yield_now().await;
            let mut got = None;
            for _ in 0..100 {
                got = try_read(&mut d).await;
                if got.is_some() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            assert_eq!(got.expect("first bytes").expect("read"), 10);
            assert!(d.due.is_some(), "armed by the first byte");
            assert!(try_read(&mut d).await.is_none(), "the rest has not come");
            assert!(
                d.timer.is_some(),
                "a read that would block created the timer"
            );
            let n = std::future::poll_fn(|cx| Pin::new(&mut d).poll_write(cx, b"HTTP/1.1 ..."))
                .await
                .expect("write");
            assert_eq!(n, 12);
            assert!(
                d.due.is_none() && d.timer.is_none(),
                "the response disarmed it"
            );
        });
    }

    #[test]
    fn mux_clean_path() {
        assert_eq!(clean_path("//v1/info"), "/v1/info");
        assert_eq!(clean_path("/v1/./info"), "/v1/info");
        assert_eq!(clean_path("/v1/x/../info"), "/v1/info");
        assert_eq!(clean_path("/v1/info/"), "/v1/info/");
        assert_eq!(clean_path("/"), "/");
        assert_eq!(clean_path("/.."), "/");
        assert_eq!(unescape_path("/v1/%69nfo").as_deref(), Some("/v1/info"));
        assert_eq!(unescape_path("/v1/%zz"), None);
        assert_eq!(go_escape_path("/*"), "/%2A");
        assert_eq!(go_escape_path("/v1/a b?é"), "/v1/a%20b%3F%C3%A9");
        assert!(matches!(route("/v1/ports/7"), Some(Route::Port(id)) if id == "7"));
        assert!(route("/v1/ports/").is_none());
        assert!(matches!(route("/v1/ports/3/stats"), Some(Route::PortStats(id)) if id == "3"));
        assert!(route("/v1/ports//stats").is_none());
        assert!(route("/v1/info/").is_none());
        assert!(route("/v2/info").is_none());
        // The allocation-free check never calls a path clean that `clean_path` would change.
        for p in [
            "/",
            "/v1/info",
            "/v1/info/",
            "//v1/info",
            "/v1/./info",
            "/v1/../info",
            "/v1/.",
            "/v1/..",
            "/.",
            "/..",
            "",
            "v1/info",
            "/v1/.hidden",
            "/v1/..x/",
            "/a/b.c/",
        ] {
            if is_clean_path(p) {
                assert_eq!(clean_path(p), p, "{p:?}");
            }
        }
        assert!(is_clean_path("/v1/ports/12"));
        assert!(is_clean_path("/v1/..x/"));
        assert!(!is_clean_path("/v1/./info"));
    }
}
