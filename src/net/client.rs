//! The HTTP/1.1 client: keep-alive pools per origin (one client per worker thread, so no
//! locks), owned-buffer I/O on compio, response bodies read straight into the caller's
//! buffer, and progress-based timeouts: a transfer may take as long as it needs while bytes
//! keep moving, unlike a whole-request cap that fails 64 MiB blocks on slow links.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use compio::buf::{IntoInner, IoBuf, IoBufMut};
use compio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use compio::net::TcpStream;
use compio::BufResult;

use super::error::{NetError, Phase};
use super::head::{self, BodyKind, ChunkState, ChunkStep, HeadParse};
use super::origin::Origin;
use super::tls::{self, TlsPolicy};

/// Timeouts and pool limits. Every field is a user-facing flag.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// TCP connect plus TLS handshake.
    pub connect_timeout: Duration,
    /// From the request being sent to the response head arriving.
    pub first_byte_timeout: Duration,
    /// Longest time without a byte moving while sending or receiving a body.
    pub idle_timeout: Duration,
    pub max_idle_per_origin: usize,
    pub pool_idle_expiry: Duration,
    pub max_head_bytes: usize,
}

/// Request methods keepmover uses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
    Put,
    Delete,
    Other(String),
}

impl Method {
    fn as_str(&self) -> &str {
        match self {
            Method::Get => "GET",
            Method::Head => "HEAD",
            Method::Put => "PUT",
            Method::Delete => "DELETE",
            Method::Other(m) => m,
        }
    }
}

/// One request. `body` is sent without copying (one `Bytes` can feed many requests).
#[derive(Clone, Debug)]
pub struct Request {
    pub method: Method,
    pub origin: Origin,
    pub path_and_query: String,
    pub headers: Vec<(String, String)>,
    pub body: Option<Bytes>,
}

/// Bodies up to this size are sent in the same write as the head.
const COALESCE_BODY: usize = 64 << 10;
const READ_BUFFER: usize = 64 << 10;

enum Stream {
    Plain(TcpStream),
    Tls(Box<compio::tls::TlsStream<TcpStream>>),
}

impl Stream {
    async fn read<B: IoBufMut>(&mut self, buf: B) -> BufResult<usize, B> {
        match self {
            Stream::Plain(s) => s.read(buf).await,
            Stream::Tls(s) => s.read(buf).await,
        }
    }

    async fn write_all<B: IoBuf>(&mut self, buf: B) -> BufResult<(), B> {
        match self {
            Stream::Plain(s) => s.write_all(buf).await,
            Stream::Tls(s) => s.write_all(buf).await,
        }
    }

    async fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Stream::Plain(_) => Ok(()),
            Stream::Tls(s) => s.flush().await,
        }
    }
}

/// A connection and the bytes received on it but not yet consumed (`rbuf[rstart..]`).
struct Conn {
    stream: Stream,
    rbuf: Vec<u8>,
    rstart: usize,
    /// The TCP socket under `stream` (valid while `stream` lives), for the idle check.
    fd: std::os::fd::RawFd,
}

impl Conn {
    /// Whether an idle pooled connection is still fit to carry a request: nothing may have
    /// arrived on it since its last response. Bytes here are either an EOF (the server
    /// closed it) or bytes past the end of the last body (a server that sent more than its
    /// Content-Length), which must never be parsed as the next response.
    fn idle_and_open(&self) -> bool {
        let mut byte = 0u8;
        // SAFETY: `fd` is the socket owned by `self.stream`, open while `self` lives; the
        // buffer is one valid byte; MSG_PEEK leaves the data in place, MSG_DONTWAIT never
        // blocks.
        let n = unsafe {
            libc::recv(
                self.fd,
                (&mut byte as *mut u8).cast(),
                1,
                libc::MSG_PEEK | libc::MSG_DONTWAIT,
            )
        };
        n < 0 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::WouldBlock
    }

    fn buffered(&self) -> &[u8] {
        self.rbuf.get(self.rstart..).unwrap_or(&[])
    }

    fn consume(&mut self, n: usize) {
        self.rstart += n;
        if self.rstart >= self.rbuf.len() {
            self.rbuf.clear();
            self.rstart = 0;
        }
    }

    /// Reads more bytes into `rbuf`. Returns how many (0 = closed).
    async fn fill(&mut self) -> std::io::Result<usize> {
        if self.rstart > 0 {
            self.rbuf.drain(..self.rstart);
            self.rstart = 0;
        }
        if self.rbuf.capacity() - self.rbuf.len() < READ_BUFFER / 4 {
            self.rbuf.reserve(READ_BUFFER);
        }
        // compio reads into a buffer from its start; a slice from `len` appends.
        let buf = std::mem::take(&mut self.rbuf);
        let len = buf.len();
        let BufResult(result, slice) = self.stream.read(buf.slice(len..)).await;
        self.rbuf = slice.into_inner();
        result
    }
}

struct ClientInner {
    config: ClientConfig,
    pools: RefCell<HashMap<Origin, Vec<(Conn, Instant)>>>,
    policies: RefCell<HashMap<Origin, TlsPolicy>>,
    verified: RefCell<Option<Arc<rustls::ClientConfig>>>,
    insecure: RefCell<Option<Arc<rustls::ClientConfig>>>,
}

/// One per worker thread; cheap to clone (shared pools).
#[derive(Clone)]
pub struct HttpClient {
    inner: Rc<ClientInner>,
}

impl HttpClient {
    pub fn new(config: ClientConfig) -> HttpClient {
        HttpClient {
            inner: Rc::new(ClientInner {
                config,
                pools: RefCell::default(),
                policies: RefCell::default(),
                verified: RefCell::default(),
                insecure: RefCell::default(),
            }),
        }
    }

    pub fn config(&self) -> &ClientConfig {
        &self.inner.config
    }

    /// Sets certificate verification for one origin (default: verified).
    pub fn set_tls_policy(&self, origin: &Origin, policy: TlsPolicy) {
        self.inner
            .policies
            .borrow_mut()
            .insert(origin.clone(), policy);
    }

    fn tls_config(&self, origin: &Origin) -> Result<Arc<rustls::ClientConfig>, NetError> {
        let policy = self
            .inner
            .policies
            .borrow()
            .get(origin)
            .copied()
            .unwrap_or(TlsPolicy::Verified);
        let slot = match policy {
            TlsPolicy::Verified => &self.inner.verified,
            TlsPolicy::Insecure => &self.inner.insecure,
        };
        if let Some(config) = slot.borrow().as_ref() {
            return Ok(config.clone());
        }
        let built = match policy {
            TlsPolicy::Verified => tls::verified_config(),
            TlsPolicy::Insecure => tls::insecure_config(),
        }
        .map_err(|e| NetError::Tls {
            origin: origin.to_string(),
            source: std::io::Error::other(e),
        })?;
        *slot.borrow_mut() = Some(built.clone());
        Ok(built)
    }

    fn take_pooled(&self, origin: &Origin) -> Option<Conn> {
        let mut pools = self.inner.pools.borrow_mut();
        let pool = pools.get_mut(origin)?;
        while let Some((conn, since)) = pool.pop() {
            if since.elapsed() < self.inner.config.pool_idle_expiry && conn.idle_and_open() {
                return Some(conn);
            }
        }
        None
    }

    fn give_back(&self, origin: &Origin, conn: Conn) {
        let mut pools = self.inner.pools.borrow_mut();
        let pool = pools.entry(origin.clone()).or_default();
        if pool.len() < self.inner.config.max_idle_per_origin {
            pool.push((conn, Instant::now()));
        }
    }

    async fn connect(&self, origin: &Origin) -> Result<Conn, NetError> {
        let timeout = self.inner.config.connect_timeout;
        let connecting = async {
            let tcp = TcpStream::connect(origin.authority())
                .await
                .map_err(|source| NetError::Connect {
                    origin: origin.to_string(),
                    source,
                })?;
            let _ = tcp.set_nodelay(true);
            let fd = std::os::fd::AsRawFd::as_raw_fd(&tcp);
            let stream = if origin.tls {
                let connector = compio::tls::TlsConnector::from(self.tls_config(origin)?);
                let tls = connector
                    .connect(&origin.host, tcp)
                    .await
                    .map_err(|source| NetError::Tls {
                        origin: origin.to_string(),
                        source,
                    })?;
                Stream::Tls(Box::new(tls))
            } else {
                Stream::Plain(tcp)
            };
            Ok(Conn {
                stream,
                rbuf: Vec::with_capacity(READ_BUFFER),
                rstart: 0,
                fd,
            })
        };
        compio::time::timeout(timeout, connecting)
            .await
            .map_err(|_| NetError::Timeout {
                origin: origin.to_string(),
                phase: Phase::Connect,
            })?
    }

    /// Sends `request` and returns once the response head has arrived. A pooled connection
    /// that turns out to be dead before any response byte is replaced once by a fresh one.
    pub async fn send(&self, request: Request) -> Result<Response, NetError> {
        let mut retried_stale = false;
        loop {
            let (conn, reused) = match self.take_pooled(&request.origin) {
                Some(conn) => (conn, true),
                None => (self.connect(&request.origin).await?, false),
            };
            match self.exchange(conn, &request).await {
                Ok(response) => return Ok(response),
                Err((error, nothing_received)) => {
                    if reused && nothing_received && !retried_stale {
                        retried_stale = true;
                        continue;
                    }
                    return Err(error);
                }
            }
        }
    }

    /// Writes the request and reads the final response head. On error, says whether any
    /// response byte had arrived (if not, a reused connection was probably stale).
    async fn exchange(
        &self,
        mut conn: Conn,
        request: &Request,
    ) -> Result<Response, (NetError, bool)> {
        let origin = request.origin.to_string();
        let config = &self.inner.config;
        let io_error = |source: std::io::Error| NetError::Io {
            origin: origin.clone(),
            source,
        };
        let body_len = request.body.as_ref().map(Bytes::len);
        let mut head_bytes =
            Vec::with_capacity(256 + body_len.filter(|&l| l <= COALESCE_BODY).unwrap_or(0));
        let needs_length = body_len.is_some() || matches!(request.method, Method::Put);
        head::write_request_head(
            &mut head_bytes,
            request.method.as_str(),
            &request.origin.authority(),
            &request.path_and_query,
            &request.headers,
            if needs_length {
                Some(body_len.unwrap_or(0))
            } else {
                None
            },
        );
        let separate_body = match &request.body {
            Some(body) if body.len() <= COALESCE_BODY => {
                head_bytes.extend_from_slice(body);
                None
            }
            other => other.clone(),
        };
        let sending = async {
            let BufResult(result, _) = conn.stream.write_all(head_bytes).await;
            result.map_err(io_error)?;
            if let Some(body) = separate_body {
                let BufResult(result, _) = conn.stream.write_all(body).await;
                result.map_err(io_error)?;
            }
            conn.stream.flush().await.map_err(io_error)
        };
        // Sending a body is a transfer like any other: bounded by the idle timeout per
        // megabyte-scale write, generous enough for slow links.
        let send_budget =
            config.idle_timeout + config.idle_timeout * ((body_len.unwrap_or(0) >> 20) as u32);
        match compio::time::timeout(send_budget, sending).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err((e, true)),
            Err(_) => {
                return Err((
                    NetError::Timeout {
                        origin,
                        phase: Phase::Idle,
                    },
                    true,
                ))
            }
        }
        let is_head = matches!(request.method, Method::Head);
        let reading = async {
            let mut received_any = false;
            loop {
                match head::parse_response_head(conn.buffered()) {
                    Ok(HeadParse::Complete(parsed)) if parsed.length > config.max_head_bytes => {
                        return Err((
                            NetError::HeadTooLarge {
                                origin: origin.clone(),
                                limit: config.max_head_bytes,
                            },
                            false,
                        ));
                    }
                    Ok(HeadParse::Complete(parsed)) => {
                        conn.consume(parsed.length);
                        if (100..200).contains(&parsed.status) && parsed.status != 101 {
                            continue; // interim response (100 Continue etc.)
                        }
                        return Ok(parsed);
                    }
                    Ok(HeadParse::Partial) => {}
                    Err(detail) => {
                        return Err((
                            NetError::BadResponse {
                                origin: origin.clone(),
                                detail,
                            },
                            false,
                        ))
                    }
                }
                if conn.buffered().len() > config.max_head_bytes {
                    return Err((
                        NetError::HeadTooLarge {
                            origin: origin.clone(),
                            limit: config.max_head_bytes,
                        },
                        false,
                    ));
                }
                match conn.fill().await {
                    Ok(0) => {
                        return Err((
                            NetError::Closed {
                                origin: origin.clone(),
                            },
                            !received_any && conn.buffered().is_empty(),
                        ))
                    }
                    Ok(_) => received_any = true,
                    Err(source) => {
                        return Err((
                            NetError::Io {
                                origin: origin.clone(),
                                source,
                            },
                            !received_any,
                        ))
                    }
                }
            }
        };
        let parsed = match compio::time::timeout(config.first_byte_timeout, reading).await {
            Ok(result) => result?,
            Err(_) => {
                return Err((
                    NetError::Timeout {
                        origin,
                        phase: Phase::FirstByte,
                    },
                    false,
                ))
            }
        };
        let kind = head::body_kind(&parsed, is_head).map_err(|detail| {
            (
                NetError::BadResponse {
                    origin: origin.clone(),
                    detail,
                },
                false,
            )
        })?;
        let keep_alive = head::keeps_alive(&parsed) && kind != BodyKind::UntilClose;
        let body = match kind {
            BodyKind::None => BodyState::Done,
            BodyKind::Length(0) => BodyState::Done,
            BodyKind::Length(n) => BodyState::Length {
                remaining: n,
                total: n,
            },
            BodyKind::Chunked => BodyState::Chunked(ChunkState::Size),
            BodyKind::UntilClose => BodyState::UntilClose,
        };
        let content_length = match kind {
            BodyKind::Length(n) => Some(n),
            BodyKind::None => parsed.header("Content-Length").and_then(|v| v.parse().ok()),
            _ => None,
        };
        let mut response = Response {
            status: parsed.status,
            headers: parsed.headers,
            content_length,
            client: self.clone(),
            origin: request.origin.clone(),
            conn: Some(conn),
            body,
            keep_alive,
        };
        if matches!(response.body, BodyState::Done) {
            response.finish();
        }
        Ok(response)
    }
}

enum BodyState {
    Length { remaining: u64, total: u64 },
    Chunked(ChunkState),
    UntilClose,
    Done,
}

/// A response whose head has arrived; the body is read on demand.
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    content_length: Option<u64>,
    client: HttpClient,
    origin: Origin,
    conn: Option<Conn>,
    body: BodyState,
    keep_alive: bool,
}

impl Response {
    /// Case-insensitive header lookup.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn content_length(&self) -> Option<u64> {
        self.content_length
    }

    /// Returns the connection to the pool if it can be reused.
    fn finish(&mut self) {
        self.body = BodyState::Done;
        if let Some(conn) = self.conn.take() {
            if self.keep_alive && conn.buffered().is_empty() {
                self.client.give_back(&self.origin, conn);
            }
        }
    }

    fn fail(&mut self) {
        self.body = BodyState::Done;
        self.conn = None;
    }

    /// Gives up on the body after an idle timeout; the caller's buffer was lost with the
    /// cancelled read, so an empty one goes back.
    fn idle_timeout(&mut self, origin: String) -> BufResult<usize, Vec<u8>> {
        self.fail();
        let error = NetError::Timeout {
            origin,
            phase: Phase::Idle,
        };
        BufResult(Err(std::io::Error::other(error)), Vec::new())
    }

    fn idle(&self) -> Duration {
        self.client.inner.config.idle_timeout
    }

    /// Reads the next piece of the body into the spare capacity of `buf` (appending after
    /// `buf.len()`), decoding chunked encoding. `Ok(0)` means the body is complete. On a
    /// timeout the buffer is lost (it was handed to the kernel) and an empty one comes back.
    pub async fn read_body_chunk(&mut self, mut buf: Vec<u8>) -> BufResult<usize, Vec<u8>> {
        let origin = self.origin.to_string();
        let idle = self.idle();
        let spare = buf.capacity() - buf.len();
        let Some(conn) = self.conn.as_mut() else {
            return BufResult(Ok(0), buf);
        };
        let result: Result<usize, NetError> = match &mut self.body {
            BodyState::Done => Ok(0),
            BodyState::Length { remaining, total } => {
                if spare == 0 {
                    let limit = buf.capacity() as u64;
                    self.fail();
                    return BufResult(
                        Err(std::io::Error::other(NetError::BodyTooLong {
                            origin,
                            limit,
                        })),
                        buf,
                    );
                }
                let buffered = conn.buffered();
                if !buffered.is_empty() {
                    let n = (buffered.len() as u64).min(*remaining).min(spare as u64) as usize;
                    buf.extend_from_slice(&buffered[..n]);
                    conn.consume(n);
                    *remaining -= n as u64;
                    Ok(n)
                } else {
                    let before = buf.len();
                    // Read at most the rest of the body, appended after what is there.
                    let end = before + (spare as u64).min(*remaining) as usize;
                    let Some(BufResult(read, returned)) =
                        timed_read(&mut conn.stream, buf, before..end, idle).await
                    else {
                        return self.idle_timeout(origin);
                    };
                    buf = returned;
                    match read {
                        Err(source) => Err(NetError::Io { origin, source }),
                        Ok(0) => Err(NetError::BodyTooShort {
                            origin,
                            expected: *total,
                            got: *total - *remaining,
                        }),
                        Ok(n) => {
                            let n = if n as u64 > *remaining {
                                // The server sent more than it announced: keep the body, drop
                                // the rest, and never reuse this connection.
                                buf.truncate(before + *remaining as usize);
                                self.keep_alive = false;
                                *remaining as usize
                            } else {
                                n
                            };
                            *remaining -= n as u64;
                            Ok(n)
                        }
                    }
                }
            }
            BodyState::Chunked(state) => {
                let mut produced = 0usize;
                loop {
                    let step = state.step(conn.buffered(), spare - produced);
                    match step {
                        Err(detail) => break Err(NetError::BadChunk { origin, detail }),
                        Ok(ChunkStep::Data {
                            consumed,
                            start,
                            len,
                        }) => {
                            buf.extend_from_slice(&conn.buffered()[start..start + len]);
                            conn.consume(consumed);
                            produced += len;
                            if produced == spare {
                                break Ok(produced);
                            }
                        }
                        Ok(ChunkStep::Advanced { consumed }) => conn.consume(consumed),
                        Ok(ChunkStep::Done { consumed }) => {
                            conn.consume(consumed);
                            break Ok(produced);
                        }
                        Ok(ChunkStep::NeedMore) => {
                            if produced > 0 {
                                break Ok(produced);
                            }
                            match compio::time::timeout(idle, conn.fill()).await {
                                Err(_) => {
                                    break Err(NetError::Timeout {
                                        origin,
                                        phase: Phase::Idle,
                                    })
                                }
                                Ok(Err(source)) => break Err(NetError::Io { origin, source }),
                                Ok(Ok(0)) => {
                                    break Err(NetError::BadChunk {
                                        origin,
                                        detail: "connection closed mid-body".into(),
                                    })
                                }
                                Ok(Ok(_)) => {}
                            }
                        }
                    }
                }
            }
            BodyState::UntilClose => {
                let buffered = conn.buffered();
                if !buffered.is_empty() {
                    let n = buffered.len().min(spare);
                    buf.extend_from_slice(&buffered[..n]);
                    conn.consume(n);
                    Ok(n)
                } else if spare == 0 {
                    Err(NetError::BodyTooLong {
                        origin,
                        limit: buf.capacity() as u64,
                    })
                } else {
                    let before = buf.len();
                    let end = buf.capacity();
                    let Some(BufResult(read, returned)) =
                        timed_read(&mut conn.stream, buf, before..end, idle).await
                    else {
                        return self.idle_timeout(origin);
                    };
                    buf = returned;
                    read.map_err(|source| NetError::Io { origin, source })
                }
            }
        };
        match result {
            Ok(n) => {
                let complete = match &self.body {
                    BodyState::Length { remaining, .. } => *remaining == 0,
                    BodyState::Chunked(state) => *state == ChunkState::Done,
                    BodyState::UntilClose => n == 0,
                    BodyState::Done => true,
                };
                if complete {
                    self.finish();
                }
                BufResult(Ok(n), buf)
            }
            Err(e) => {
                self.fail();
                BufResult(Err(std::io::Error::other(e)), buf)
            }
        }
    }

    /// Reads the whole body (for small bodies: errors, PUT replies, API documents).
    pub async fn read_to_end(mut self, limit: usize) -> Result<Vec<u8>, NetError> {
        let origin = self.origin.to_string();
        let first = self
            .content_length
            .map_or(8 << 10, |l| l as usize)
            .clamp(1, limit.max(1));
        let mut buf = Vec::with_capacity(first);
        loop {
            if buf.len() == buf.capacity() {
                if buf.len() >= limit {
                    // One more byte would exceed the limit: is the body really over?
                    if matches!(self.body, BodyState::Done) {
                        return Ok(buf);
                    }
                    let mut probe = Vec::with_capacity(1);
                    let BufResult(r, _) = self.read_body_chunk(std::mem::take(&mut probe)).await;
                    return match r {
                        Ok(0) => Ok(buf),
                        _ => Err(NetError::BodyTooLong {
                            origin,
                            limit: limit as u64,
                        }),
                    };
                }
                buf.reserve(buf.len().max(8 << 10).min(limit - buf.len()));
            }
            let BufResult(result, returned) = self.read_body_chunk(buf).await;
            buf = returned;
            match result {
                Ok(0) => return Ok(buf),
                Ok(_) => {}
                Err(e) => return Err(into_net_error(e, &origin)),
            }
        }
    }

    /// Reads and drops the body so the connection can be reused (up to 1 MiB; beyond that
    /// the connection is simply closed).
    pub async fn discard(mut self) -> Result<(), NetError> {
        if let BodyState::Length { remaining, .. } = self.body {
            if remaining > 1 << 20 {
                self.fail();
                return Ok(());
            }
        }
        self.read_to_end(1 << 20).await.map(|_| ())
    }
}

/// [`read_into`] bounded by the idle timeout; `None` when it ran out (the buffer is then
/// gone: it belonged to the cancelled kernel operation).
async fn timed_read(
    stream: &mut Stream,
    buf: Vec<u8>,
    range: std::ops::Range<usize>,
    idle: Duration,
) -> Option<BufResult<usize, Vec<u8>>> {
    compio::time::timeout(idle, read_into(stream, buf, range))
        .await
        .ok()
}

/// Reads into `buf[range]` (appending when `range.start == buf.len()`); compio's reads
/// otherwise write from the start of the buffer.
async fn read_into(
    stream: &mut Stream,
    buf: Vec<u8>,
    range: std::ops::Range<usize>,
) -> BufResult<usize, Vec<u8>> {
    let BufResult(result, slice) = stream.read(buf.slice(range)).await;
    BufResult(result, slice.into_inner())
}

/// Recovers the `NetError` carried inside an `io::Error` from `read_body_chunk`.
pub fn into_net_error(error: std::io::Error, origin: &str) -> NetError {
    match error.into_inner() {
        Some(inner) => match inner.downcast::<NetError>() {
            Ok(net) => *net,
            Err(other) => NetError::Io {
                origin: origin.to_string(),
                source: std::io::Error::other(other),
            },
        },
        None => NetError::Io {
            origin: origin.to_string(),
            source: std::io::Error::other("I/O error"),
        },
    }
}
