//! The HTTP/1.1 client a worker thread uses: keep-alive pools per origin, request sending
//! with one retry on a stale pooled connection, responses whose bodies are read straight
//! into the caller's buffer, and opt-in pipelining. One client per worker thread (`!Send`,
//! `Rc`/`RefCell` inside); clones share the pools.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use compio::BufResult;

use crate::net::conn::{Conn, MAX_READ};
use crate::net::error::{NetError, Phase};
use crate::net::head::{
    header_value, parse_chunk_size, parse_response_head, write_request_head, BodyFraming, Method,
    ParseOutcome, ResponseHead, TOO_MANY_HEADERS,
};
use crate::net::origin::Origin;
use crate::net::tls::{client_config, TlsPolicy};

/// Timeouts and limits of an [`HttpClient`].
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// TCP connect + TLS handshake.
    pub connect_timeout: Duration,
    /// From the request fully sent to the response head received.
    pub first_byte_timeout: Duration,
    /// Progress based: the longest time without any byte moving while sending or receiving a
    /// body (not a cap on the whole request).
    pub idle_timeout: Duration,
    /// Pooled keep-alive connections kept per origin.
    pub max_idle_per_origin: usize,
    /// Pooled connections idle longer than this are closed instead of reused.
    pub pool_idle_expiry: Duration,
    /// Response head size limit; larger heads fail with [`NetError::HeadTooLarge`].
    pub max_head_bytes: usize,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            connect_timeout: Duration::from_secs(10),
            first_byte_timeout: Duration::from_secs(60),
            idle_timeout: Duration::from_secs(60),
            max_idle_per_origin: 64,
            // Servers and proxies close idle connections after their own limit (often 60 s
            // or more); stay below it so a pooled connection is rarely stale.
            pool_idle_expiry: Duration::from_secs(50),
            max_head_bytes: 64 << 10,
        }
    }
}

/// One request. `body` is sent without copying on plain connections.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: Method,
    pub origin: Origin,
    pub path_and_query: String,
    pub headers: Vec<(String, String)>,
    pub body: Option<Bytes>,
}

impl Request {
    /// A request without headers or body.
    pub fn new(method: Method, origin: Origin, path_and_query: impl Into<String>) -> Request {
        Request {
            method,
            origin,
            path_and_query: path_and_query.into(),
            headers: Vec::new(),
            body: None,
        }
    }

    /// Adds a header.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Request {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Sets the body.
    pub fn body(mut self, body: Bytes) -> Request {
        self.body = Some(body);
        self
    }

    /// The serialised head, or why the request cannot be sent.
    fn head_bytes(&self) -> Result<Vec<u8>, NetError> {
        let content_length = match (&self.body, &self.method) {
            (Some(body), _) => Some(body.len() as u64),
            (None, Method::Put) => Some(0),
            (None, _) => None,
        };
        let mut head = Vec::with_capacity(256);
        write_request_head(
            &mut head,
            &self.method,
            &self.origin.host_header(),
            &self.path_and_query,
            &self.headers,
            content_length,
        )
        .map_err(|detail| NetError::InvalidRequest {
            origin: self.origin.clone(),
            detail,
        })?;
        Ok(head)
    }
}

/// A fully read response to a pipelined request.
#[derive(Debug, Clone)]
pub struct PipelinedResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl PipelinedResponse {
    /// First value of a header, by case-insensitive name.
    pub fn header(&self, name: &str) -> Option<&str> {
        header_value(&self.headers, name)
    }
}

struct Inner {
    config: ClientConfig,
    pools: RefCell<HashMap<Origin, Vec<Conn>>>,
    tls_policies: RefCell<HashMap<Origin, TlsPolicy>>,
    connections_opened: Cell<u64>,
}

impl Inner {
    /// A pooled connection that still looks alive, newest first; expired or dead ones are
    /// closed on the way.
    fn take_pooled(&self, origin: &Origin) -> Option<Conn> {
        let mut pools = self.pools.borrow_mut();
        let pool = pools.get_mut(origin)?;
        while let Some(mut conn) = pool.pop() {
            if conn.idle_since.elapsed() <= self.config.pool_idle_expiry && conn.still_usable() {
                return Some(conn);
            }
        }
        None
    }

    fn put_back(&self, mut conn: Conn) {
        if self.config.max_idle_per_origin == 0 {
            return;
        }
        conn.idle_since = Instant::now();
        let mut pools = self.pools.borrow_mut();
        let pool = pools.entry(conn.origin.clone()).or_default();
        let expiry = self.config.pool_idle_expiry;
        pool.retain(|c| c.idle_since.elapsed() <= expiry);
        if pool.len() >= self.config.max_idle_per_origin {
            // Drop the oldest.
            pool.remove(0);
        }
        pool.push(conn);
    }

    async fn connect(&self, origin: &Origin) -> Result<Conn, NetError> {
        let tls_config = if origin.tls {
            let policy = self
                .tls_policies
                .borrow()
                .get(origin)
                .copied()
                .unwrap_or_default();
            Some(client_config(policy).map_err(|detail| NetError::Tls {
                origin: origin.clone(),
                detail,
            })?)
        } else {
            None
        };
        let conn = Conn::connect(origin, tls_config, self.config.connect_timeout).await?;
        self.connections_opened
            .set(self.connections_opened.get() + 1);
        Ok(conn)
    }

    /// A pooled connection if there is one (`true` = reused), else a new one.
    async fn checkout(&self, origin: &Origin, fresh: bool) -> Result<(Conn, bool), NetError> {
        if !fresh {
            if let Some(conn) = self.take_pooled(origin) {
                return Ok((conn, true));
            }
        }
        Ok((self.connect(origin).await?, false))
    }
}

/// Reads response heads until a final (non-1xx) one. The error flag says whether any byte
/// of a response had been received (if not, the request may be replayed elsewhere).
async fn read_final_head(
    conn: &mut Conn,
    config: &ClientConfig,
    first_byte_timeout: Duration,
) -> Result<ResponseHead, (NetError, bool)> {
    let deadline = Instant::now() + first_byte_timeout;
    let mut any_byte = !conn.buffered().is_empty();
    let origin = conn.origin.clone();
    let bad = |detail: String| NetError::BadResponse {
        origin: origin.clone(),
        detail,
    };
    loop {
        let buffered = conn.buffered();
        if !buffered.is_empty() {
            match parse_response_head(buffered) {
                Ok(ParseOutcome::Complete(head)) => {
                    if head.head_len > config.max_head_bytes {
                        return Err((
                            NetError::HeadTooLarge {
                                origin: conn.origin.clone(),
                                limit: config.max_head_bytes,
                            },
                            true,
                        ));
                    }
                    conn.consume(head.head_len);
                    match head.status {
                        101 => {
                            return Err((bad("unexpected 101 Switching Protocols".into()), true))
                        }
                        100..=199 => continue,
                        _ => return Ok(head),
                    }
                }
                Ok(ParseOutcome::Partial) if buffered.len() >= config.max_head_bytes => {
                    return Err((
                        NetError::HeadTooLarge {
                            origin: conn.origin.clone(),
                            limit: config.max_head_bytes,
                        },
                        true,
                    ));
                }
                Ok(ParseOutcome::Partial) => {}
                Err(detail) if detail == TOO_MANY_HEADERS => {
                    return Err((
                        NetError::HeadTooLarge {
                            origin: conn.origin.clone(),
                            limit: config.max_head_bytes,
                        },
                        true,
                    ));
                }
                Err(detail) => return Err((bad(detail), true)),
            }
        }
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return Err((
                NetError::Timeout {
                    origin: conn.origin.clone(),
                    phase: Phase::FirstByte,
                },
                any_byte,
            ));
        }
        match conn.fill(remaining, Phase::FirstByte).await {
            Ok(0) => {
                return Err((
                    NetError::Closed {
                        origin: conn.origin.clone(),
                        detail: if any_byte {
                            "in the middle of the response head"
                        } else {
                            "before the response head"
                        },
                    },
                    any_byte,
                ))
            }
            Ok(_) => any_byte = true,
            Err(e) => return Err((e, any_byte)),
        }
    }
}

/// Progress through a chunked body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChunkPhase {
    SizeLine,
    Data(u64),
    DataEnd,
    Trailers,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BodyState {
    Done,
    Length(u64),
    Chunked(ChunkPhase),
    UntilEof,
}

/// Longest chunk-size or trailer line accepted.
const MAX_CHUNK_LINE: usize = 4096;
/// `Response::discard` drains at most this much to save the connection.
const DISCARD_LIMIT: u64 = 1 << 20;

/// A response whose head has been read. The body is read with
/// [`read_body_chunk`](Response::read_body_chunk) (into the caller's buffer),
/// [`read_to_end`](Response::read_to_end) or [`discard`](Response::discard). When the body
/// has been fully read the connection returns to the pool by itself; a `Response` dropped
/// mid-body closes its connection.
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    trailers: Vec<(String, String)>,
    origin: Origin,
    conn: Option<Conn>,
    body: BodyState,
    keep_alive: bool,
    received: u64,
    /// false while pipelining: the caller takes the connection back itself.
    pool_on_finish: bool,
    client: Rc<Inner>,
}

impl std::fmt::Debug for Response {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Response")
            .field("origin", &self.origin)
            .field("status", &self.status)
            .field("headers", &self.headers)
            .field("body", &self.body)
            .finish()
    }
}

impl Response {
    fn new(
        head: ResponseHead,
        framing: BodyFraming,
        conn: Conn,
        client: Rc<Inner>,
        pool_on_finish: bool,
    ) -> Response {
        let mut keep_alive = head.keep_alive();
        let body = match framing {
            BodyFraming::Empty => BodyState::Done,
            BodyFraming::Length(n) => BodyState::Length(n),
            BodyFraming::Chunked => BodyState::Chunked(ChunkPhase::SizeLine),
            BodyFraming::UntilEof => {
                keep_alive = false;
                BodyState::UntilEof
            }
        };
        // Both Transfer-Encoding and Content-Length: framed by TE, but the message was
        // suspicious (RFC 9112 §6.3): do not reuse the connection.
        if framing == BodyFraming::Chunked
            && header_value(&head.headers, "content-length").is_some()
        {
            keep_alive = false;
        }
        let mut response = Response {
            status: head.status,
            headers: head.headers,
            trailers: Vec::new(),
            origin: conn.origin.clone(),
            conn: Some(conn),
            body,
            keep_alive,
            received: 0,
            pool_on_finish,
            client,
        };
        if response.body == BodyState::Done {
            response.finish();
        }
        response
    }

    /// First value of a header, by case-insensitive name.
    pub fn header(&self, name: &str) -> Option<&str> {
        header_value(&self.headers, name)
    }

    /// The declared `Content-Length`, if any (and valid).
    pub fn content_length(&self) -> Option<u64> {
        self.header("content-length")
            .and_then(|v| v.trim().parse().ok())
    }

    /// Trailer fields of a chunked body (available once the body has been read).
    pub fn trailers(&self) -> &[(String, String)] {
        &self.trailers
    }

    /// The origin that answered.
    pub fn origin(&self) -> &Origin {
        &self.origin
    }

    /// Body bytes delivered so far.
    pub fn body_bytes_read(&self) -> u64 {
        self.received
    }

    /// Whether the whole body has been read.
    pub fn is_complete(&self) -> bool {
        self.body == BodyState::Done
    }

    /// The body is complete: give the connection back to the pool when it can carry another
    /// request (keep-alive, and no unexpected bytes after this response).
    fn finish(&mut self) {
        self.body = BodyState::Done;
        if !self.keep_alive {
            self.conn = None;
            return;
        }
        if self.pool_on_finish {
            if let Some(conn) = self.conn.take() {
                if conn.buffered().is_empty() {
                    self.client.put_back(conn);
                }
            }
        }
    }

    fn fail(&mut self, err: NetError) -> NetError {
        self.conn = None;
        self.body = BodyState::Done;
        err
    }

    /// Reads the next piece of the body into the spare capacity of `buf` (appending after
    /// `buf.len()`, at most `buf.capacity() - buf.len()` bytes; up to 4 MiB per call),
    /// decoding chunked transfer-encoding transparently. `Ok(0)` = body complete. Errors
    /// (truncated body, bad chunk, body longer than Content-Length, idle timeout…) are
    /// `io::Error`s carrying a [`NetError`]; get it back with [`NetError::from_io`]. A buffer
    /// without spare capacity is an `InvalidInput` error.
    pub async fn read_body_chunk(&mut self, buf: Vec<u8>) -> BufResult<usize, Vec<u8>> {
        if self.body != BodyState::Done && buf.capacity() == buf.len() {
            return BufResult(
                Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    "read_body_chunk: buffer has no spare capacity",
                )),
                buf,
            );
        }
        let (result, buf) = self.next_body_piece(buf).await;
        BufResult(result.map_err(std::io::Error::from), buf)
    }

    async fn next_body_piece(&mut self, buf: Vec<u8>) -> (Result<usize, NetError>, Vec<u8>) {
        let idle = self.client.config.idle_timeout;
        loop {
            let Some(conn) = self.conn.as_mut() else {
                return match self.body {
                    BodyState::Done => (Ok(0), buf),
                    _ => (
                        Err(NetError::Closed {
                            origin: self.origin.clone(),
                            detail: "before the end of the body",
                        }),
                        buf,
                    ),
                };
            };
            match self.body {
                BodyState::Done => return (Ok(0), buf),
                BodyState::Length(remaining) => {
                    let max = remaining.min(MAX_READ as u64) as usize;
                    let (result, buf) = conn.read_into(buf, max, idle, Phase::Idle).await;
                    return match result {
                        Ok(0) => {
                            let err = NetError::BodyTooShort {
                                origin: self.origin.clone(),
                                expected: self.received + remaining,
                                got: self.received,
                            };
                            (Err(self.fail(err)), buf)
                        }
                        Ok(n) => {
                            self.received += n as u64;
                            self.body = BodyState::Length(remaining - n as u64);
                            if remaining == n as u64 {
                                self.finish();
                            }
                            (Ok(n), buf)
                        }
                        Err(e) => (Err(self.fail(e)), buf),
                    };
                }
                BodyState::UntilEof => {
                    let (result, buf) = conn.read_into(buf, MAX_READ, idle, Phase::Idle).await;
                    return match result {
                        Ok(0) => {
                            self.finish();
                            (Ok(0), buf)
                        }
                        Ok(n) => {
                            self.received += n as u64;
                            (Ok(n), buf)
                        }
                        Err(e) => (Err(self.fail(e)), buf),
                    };
                }
                BodyState::Chunked(ChunkPhase::Data(remaining)) => {
                    let max = remaining.min(MAX_READ as u64) as usize;
                    let (result, buf) = conn.read_into(buf, max, idle, Phase::Idle).await;
                    return match result {
                        Ok(0) => {
                            let err = NetError::Closed {
                                origin: self.origin.clone(),
                                detail: "in the middle of a chunk",
                            };
                            (Err(self.fail(err)), buf)
                        }
                        Ok(n) => {
                            self.received += n as u64;
                            let left = remaining - n as u64;
                            self.body = BodyState::Chunked(if left == 0 {
                                ChunkPhase::DataEnd
                            } else {
                                ChunkPhase::Data(left)
                            });
                            (Ok(n), buf)
                        }
                        Err(e) => (Err(self.fail(e)), buf),
                    };
                }
                BodyState::Chunked(phase) => {
                    if let Err(e) = self.advance_chunk_framing(phase).await {
                        return (Err(self.fail(e)), buf);
                    }
                    if self.body == BodyState::Done {
                        return (Ok(0), buf);
                    }
                }
            }
        }
    }

    /// Consumes one framing line of a chunked body (size line, the CRLF after data, or a
    /// trailer line) and moves the state on.
    async fn advance_chunk_framing(&mut self, phase: ChunkPhase) -> Result<(), NetError> {
        let idle = self.client.config.idle_timeout;
        let max_head = self.client.config.max_head_bytes;
        let origin = self.origin.clone();
        let bad = |detail: String| NetError::BadChunk {
            origin: origin.clone(),
            detail,
        };
        let Some(conn) = self.conn.as_mut() else {
            return Err(NetError::Closed {
                origin: origin.clone(),
                detail: "before the end of the body",
            });
        };
        // Get one line (up to LF) into the connection buffer.
        let line_end = loop {
            if let Some(i) = conn.buffered().iter().position(|b| *b == b'\n') {
                break i;
            }
            if conn.buffered().len() > MAX_CHUNK_LINE {
                return Err(bad("chunk framing line too long".into()));
            }
            if conn.fill(idle, Phase::Idle).await? == 0 {
                return Err(NetError::Closed {
                    origin: origin.clone(),
                    detail: "before the end of the chunked body",
                });
            }
        };
        if line_end > MAX_CHUNK_LINE {
            return Err(bad("chunk framing line too long".into()));
        }
        let raw = &conn.buffered()[..line_end];
        let line = raw.strip_suffix(b"\r").unwrap_or(raw).to_vec();
        conn.consume(line_end + 1);
        match phase {
            ChunkPhase::SizeLine => {
                let size = parse_chunk_size(&line).map_err(bad)?;
                self.body = BodyState::Chunked(if size == 0 {
                    ChunkPhase::Trailers
                } else {
                    ChunkPhase::Data(size)
                });
            }
            ChunkPhase::DataEnd => {
                if !line.is_empty() {
                    return Err(bad("chunk data longer than its size".into()));
                }
                self.body = BodyState::Chunked(ChunkPhase::SizeLine);
            }
            ChunkPhase::Trailers => {
                if line.is_empty() {
                    self.finish();
                } else {
                    let text = String::from_utf8_lossy(&line);
                    let (name, value) = text
                        .split_once(':')
                        .ok_or_else(|| bad(format!("bad trailer line {text:?}")))?;
                    let size: usize = self.trailers.iter().map(|(n, v)| n.len() + v.len()).sum();
                    if size + line.len() > max_head {
                        return Err(bad("trailers too large".into()));
                    }
                    self.trailers
                        .push((name.trim().to_string(), value.trim().to_string()));
                }
            }
            ChunkPhase::Data(_) => {}
        }
        Ok(())
    }

    /// Reads the whole body (for small bodies: errors, PUT replies, listings). A body
    /// longer than `limit` fails with [`NetError::BodyTooLong`].
    pub async fn read_to_end(mut self, limit: usize) -> Result<Vec<u8>, NetError> {
        self.read_all(limit).await
    }

    async fn read_all(&mut self, limit: usize) -> Result<Vec<u8>, NetError> {
        if let Some(declared) = self.content_length() {
            if declared > limit as u64 && self.body != BodyState::Done {
                let err = NetError::BodyTooLong {
                    origin: self.origin.clone(),
                    limit: limit as u64,
                };
                return Err(self.fail(err));
            }
        }
        let first = self
            .content_length()
            .map_or(8 << 10, |l| l as usize)
            .min(limit)
            + 1;
        let mut buf = Vec::with_capacity(first.min(1 << 20));
        loop {
            if buf.len() == buf.capacity() {
                buf.reserve((buf.len()).clamp(8 << 10, 1 << 20));
            }
            let (result, returned) = self.next_body_piece(buf).await;
            buf = returned;
            match result {
                Ok(0) => return Ok(buf),
                Ok(_) if buf.len() > limit => {
                    let err = NetError::BodyTooLong {
                        origin: self.origin.clone(),
                        limit: limit as u64,
                    };
                    return Err(self.fail(err));
                }
                Ok(_) => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Reads and drops the rest of the body (up to 1 MiB) so the connection can be reused;
    /// a longer body just closes the connection.
    pub async fn discard(mut self) -> Result<(), NetError> {
        if let BodyState::Length(remaining) = self.body {
            if remaining > DISCARD_LIMIT {
                self.conn = None;
                return Ok(());
            }
        }
        let mut scratch = Vec::with_capacity(64 << 10);
        let mut drained = 0u64;
        loop {
            scratch.clear();
            let (result, returned) = self.next_body_piece(scratch).await;
            scratch = returned;
            match result? {
                0 => return Ok(()),
                n => drained += n as u64,
            }
            if drained > DISCARD_LIMIT {
                self.conn = None;
                return Ok(());
            }
        }
    }
}

/// Why an exchange failed, and whether the request can be replayed on another connection.
struct Failure {
    err: NetError,
    /// No byte of a response was received, and the whole request may have been lost with a
    /// stale connection.
    replayable: bool,
}

/// A keep-alive HTTP/1.1 client with per-origin connection pools. One per worker thread.
#[derive(Clone)]
pub struct HttpClient {
    inner: Rc<Inner>,
}

impl HttpClient {
    pub fn new(config: ClientConfig) -> Self {
        HttpClient {
            inner: Rc::new(Inner {
                config,
                pools: RefCell::new(HashMap::new()),
                tls_policies: RefCell::new(HashMap::new()),
                connections_opened: Cell::new(0),
            }),
        }
    }

    pub fn config(&self) -> &ClientConfig {
        &self.inner.config
    }

    /// How this origin's certificates are checked (default: `Verified`). Pooled connections
    /// to it are dropped so the policy applies from the next request.
    pub fn set_tls_policy(&self, origin: &Origin, policy: TlsPolicy) {
        self.inner
            .tls_policies
            .borrow_mut()
            .insert(origin.clone(), policy);
        self.inner.pools.borrow_mut().remove(origin);
    }

    /// Connections opened so far (TCP connects that succeeded, including TLS).
    pub fn connections_opened(&self) -> u64 {
        self.inner.connections_opened.get()
    }

    /// Idle pooled connections to `origin` right now.
    pub fn idle_connections(&self, origin: &Origin) -> usize {
        self.inner
            .pools
            .borrow()
            .get(origin)
            .map_or(0, |pool| pool.len())
    }

    /// Sends a request and reads the response head. A pooled connection that fails before
    /// any response byte is retried once on a fresh connection (idempotent methods only).
    pub async fn send(&self, req: Request) -> Result<Response, NetError> {
        let head = req.head_bytes()?;
        let mut fresh = false;
        loop {
            let (conn, reused) = self.inner.checkout(&req.origin, fresh).await?;
            match self.exchange(conn, head.clone(), &req).await {
                Ok(response) => return Ok(response),
                Err(failure)
                    if failure.replayable && reused && !fresh && req.method.is_idempotent() =>
                {
                    fresh = true;
                }
                Err(failure) => return Err(failure.err),
            }
        }
    }

    async fn exchange(
        &self,
        mut conn: Conn,
        head: Vec<u8>,
        req: &Request,
    ) -> Result<Response, Failure> {
        let config = &self.inner.config;
        if let Err(err) = conn
            .write_request(head, req.body.clone(), config.idle_timeout)
            .await
        {
            // The server may have answered early (say 503 without reading a large body) and
            // closed: prefer its answer to our write error.
            if req.body.is_some() {
                let grace = config.first_byte_timeout.min(Duration::from_secs(1));
                if let Ok(head) = read_final_head(&mut conn, config, grace).await {
                    if let Ok(framing) = head.framing(&req.method) {
                        let mut response =
                            Response::new(head, framing, conn, self.inner.clone(), true);
                        response.keep_alive = false;
                        return Ok(response);
                    }
                }
            }
            let replayable = !matches!(err, NetError::Timeout { .. });
            return Err(Failure { err, replayable });
        }
        let head = read_final_head(&mut conn, config, config.first_byte_timeout)
            .await
            .map_err(|(err, any_byte)| Failure {
                replayable: !any_byte && !matches!(err, NetError::Timeout { .. }),
                err,
            })?;
        let framing = head.framing(&req.method).map_err(|detail| Failure {
            err: NetError::BadResponse {
                origin: req.origin.clone(),
                detail,
            },
            replayable: false,
        })?;
        Ok(Response::new(head, framing, conn, self.inner.clone(), true))
    }

    /// Sends several requests to one origin on one connection before reading their
    /// responses (HTTP/1.1 pipelining), then reads each response in order, bodies of at
    /// most `max_body` bytes. Results are in request order. If the server closes the
    /// connection part way (e.g. `Connection: close`, or Go closing after an unread body), the
    /// unanswered idempotent requests are sent once more on a fresh connection. Meant for
    /// many small requests to a server that handles one request at a time per connection.
    pub async fn send_pipelined(
        &self,
        reqs: Vec<Request>,
        max_body: usize,
    ) -> Vec<Result<PipelinedResponse, NetError>> {
        let mut results: Vec<Option<Result<PipelinedResponse, NetError>>> =
            (0..reqs.len()).map(|_| None).collect();
        let Some(origin) = reqs.first().map(|r| r.origin.clone()) else {
            return Vec::new();
        };
        let mut pending: Vec<(usize, Vec<u8>)> = Vec::new();
        for (i, req) in reqs.iter().enumerate() {
            if req.origin != origin {
                results[i] = Some(Err(NetError::InvalidRequest {
                    origin: req.origin.clone(),
                    detail: format!("pipelined requests must all go to {origin}"),
                }));
                continue;
            }
            match req.head_bytes() {
                Ok(mut head) => {
                    if let Some(body) = &req.body {
                        head.extend_from_slice(body);
                    }
                    pending.push((i, head));
                }
                Err(e) => results[i] = Some(Err(e)),
            }
        }
        let mut retried = false;
        while !pending.is_empty() {
            let outcome = self
                .pipeline_once(&origin, &reqs, &pending, max_body, retried, &mut results)
                .await;
            match outcome {
                Ok(answered) if answered == pending.len() => break,
                Ok(answered) => {
                    // Connection ended early; the rest go again once.
                    pending.drain(..answered);
                    let all_idempotent =
                        pending.iter().all(|(i, _)| reqs[*i].method.is_idempotent());
                    if retried || !all_idempotent {
                        for (i, _) in &pending {
                            results[*i] = Some(Err(NetError::Closed {
                                origin: origin.clone(),
                                detail: "before answering this pipelined request",
                            }));
                        }
                        break;
                    }
                    retried = true;
                }
                Err((answered, err)) => {
                    pending.drain(..answered);
                    let mut err = Some(err);
                    for (i, _) in &pending {
                        results[*i] = Some(Err(err.take().unwrap_or_else(|| NetError::Closed {
                            origin: origin.clone(),
                            detail: "after an earlier pipelined request failed",
                        })));
                    }
                    break;
                }
            }
        }
        results
            .into_iter()
            .map(|r| {
                r.unwrap_or_else(|| {
                    Err(NetError::Closed {
                        origin: origin.clone(),
                        detail: "before answering this pipelined request",
                    })
                })
            })
            .collect()
    }

    /// One pipelined round on one connection. Ok(n) = the first n pending requests were
    /// answered (results filled) and the connection then ended cleanly (n < len) or all
    /// were answered; Err((n, e)) = failure after n answers.
    async fn pipeline_once(
        &self,
        origin: &Origin,
        reqs: &[Request],
        pending: &[(usize, Vec<u8>)],
        max_body: usize,
        fresh: bool,
        results: &mut [Option<Result<PipelinedResponse, NetError>>],
    ) -> Result<usize, (usize, NetError)> {
        let config = &self.inner.config;
        let (mut conn, reused) = self
            .inner
            .checkout(origin, fresh)
            .await
            .map_err(|e| (0, e))?;
        let total: usize = pending.iter().map(|(_, h)| h.len()).sum();
        let mut batch = Vec::with_capacity(total);
        for (_, head) in pending {
            batch.extend_from_slice(head);
        }
        if let Err(err) = conn.write_request(batch, None, config.idle_timeout).await {
            return if reused && !fresh && !matches!(err, NetError::Timeout { .. }) {
                Ok(0)
            } else {
                Err((0, err))
            };
        }
        for (answered, (index, _)) in pending.iter().enumerate() {
            let method = &reqs[*index].method;
            let head = match read_final_head(&mut conn, config, config.first_byte_timeout).await {
                Ok(head) => head,
                Err((err, any_byte)) => {
                    let stale = !any_byte && !matches!(err, NetError::Timeout { .. });
                    // A clean close between responses: the server stopped here.
                    return if stale && (answered > 0 || reused) {
                        Ok(answered)
                    } else {
                        Err((answered, err))
                    };
                }
            };
            let framing = match head.framing(method) {
                Ok(f) => f,
                Err(detail) => {
                    return Err((
                        answered,
                        NetError::BadResponse {
                            origin: origin.clone(),
                            detail,
                        },
                    ))
                }
            };
            let mut response = Response::new(head, framing, conn, self.inner.clone(), false);
            let body = match response.read_all(max_body).await {
                Ok(body) => body,
                Err(err) => {
                    results[*index] = Some(Err(err));
                    return Err((
                        answered + 1,
                        NetError::Closed {
                            origin: origin.clone(),
                            detail: "after an earlier pipelined response failed",
                        },
                    ));
                }
            };
            let keep_alive = response.keep_alive;
            let next_conn = response.conn.take();
            results[*index] = Some(Ok(PipelinedResponse {
                status: response.status,
                headers: std::mem::take(&mut response.headers),
                body,
            }));
            match next_conn {
                Some(c) if keep_alive => conn = c,
                _ => return Ok(answered + 1),
            }
        }
        if conn.buffered().is_empty() {
            self.inner.put_back(conn);
        }
        Ok(pending.len())
    }
}
