//! Sending one request: the client's configuration ([`ClientConfig`], the one place HTTP
//! defaults live), [`Request`], and [`HttpClient::send`] — check a connection out of the pool
//! (`pool.rs`), write the request, read the final response head (`read_final_head`, 1xx
//! skipped within a budget) and hand back a [`Response`] (`response.rs`); one retry of an
//! idempotent request on a stale pooled connection. One client per worker thread (`!Send`,
//! `Rc`/`RefCell` inside); clones share the pools. Pipelining lives in `pipeline.rs`.

use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;
// Generic HTTP text; it lives in keep-proto only because that crate builds the requests.
pub use keep_proto::header_value::HeaderValue;

use crate::net::conn::{Conn, COALESCE_BODY};
use crate::net::error::{NetError, Phase};
use crate::net::head::{
    head_step, write_request_head, HeadError, HeadStep, Method, ResponseHead, MAX_INTERIM_FACTOR,
};
use crate::net::origin::Origin;
use crate::net::pool::Inner;
use crate::net::response::Response;
use crate::net::tls::TlsPolicy;

/// Timeouts and limits of an [`HttpClient`]. `Default` is the one place HTTP defaults live;
/// build configurations as `ClientConfig { field: value, ..ClientConfig::default() }`.
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
    /// Minimum average rate (bytes/s) of response bodies, request bodies and index streams,
    /// after a grace of one `idle_timeout`: a transfer must have moved
    /// `(elapsed - idle_timeout) * min_rate` bytes at all times, so one of `size` bytes
    /// takes at most `idle_timeout + size / min_rate`. Slower fails with
    /// [`NetError::TooSlow`] (retryable). `0` disables the rule.
    pub min_rate: u64,
    /// Live connections per origin (busy, idle or connecting); a request to an origin at
    /// its cap waits for one to come back or close. `0` = unlimited.
    pub max_conns_per_origin: usize,
    /// Longest chunk-size or trailer line.
    pub max_framing_line: usize,
    /// Raw bytes of all trailers of a chunked body together.
    pub max_trailer_bytes: usize,
    /// Number of trailer lines of a chunked body.
    pub max_trailers: usize,
    /// Bytes of an error body kept by [`Response::read_error_body`].
    pub max_error_body: usize,
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
            min_rate: 64 << 10,
            max_conns_per_origin: 0,
            max_framing_line: 4096,
            max_trailer_bytes: 16 << 10,
            max_trailers: 64,
            max_error_body: 4 << 10,
        }
    }
}

/// One request. `body` is sent without copying on plain connections.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: Method,
    pub origin: Origin,
    pub path_and_query: String,
    /// Names are constants (a protocol's header names; no allocation per request); values
    /// are static or shared where they can be, made per request where they must.
    pub headers: Vec<(&'static str, HeaderValue)>,
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
    pub fn header(mut self, name: &'static str, value: impl Into<HeaderValue>) -> Request {
        self.headers.push((name, value.into()));
        self
    }

    /// Sets the body.
    pub fn body(mut self, body: Bytes) -> Request {
        self.body = Some(body);
        self
    }

    /// The serialised head, or why the request cannot be sent.
    pub(crate) fn head_bytes(&self) -> Result<Vec<u8>, NetError> {
        let content_length = match (&self.body, &self.method) {
            (Some(body), _) => Some(body.len() as u64),
            (None, Method::Put) => Some(0),
            (None, _) => None,
        };
        // A block PUT's head (token, request id, replicas) runs past 256 bytes. On plain HTTP a
        // small body goes out in the same write, appended to the head (`Conn`): room for it
        // now spares a reallocation per small PUT.
        let coalesced = match &self.body {
            Some(body) if !self.origin.tls && body.len() <= COALESCE_BODY => body.len(),
            _ => 0,
        };
        let mut head = Vec::with_capacity(512 + coalesced);
        write_request_head(
            &mut head,
            &self.method,
            self.origin.host_header(),
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

/// Reads response heads until a final (non-1xx) one, skipping interim ones (at most
/// `MAX_INTERIM_FACTOR * max_head_bytes` of them). The error flag says whether any byte of
/// a response had been received (if not, the request may be replayed elsewhere).
pub(crate) async fn read_final_head(
    conn: &mut Conn,
    config: &ClientConfig,
    first_byte_timeout: Duration,
) -> Result<ResponseHead, (NetError, bool)> {
    let deadline = Instant::now() + first_byte_timeout;
    let mut any_byte = !conn.buffered().is_empty();
    let mut interim_bytes = 0usize;
    let mut first_fill = true;
    let origin = conn.origin.clone();
    let too_large = || NetError::HeadTooLarge {
        origin: origin.clone(),
        limit: config.max_head_bytes,
    };
    loop {
        let buffered = conn.buffered();
        if !buffered.is_empty() {
            match head_step(buffered, config.max_head_bytes) {
                Ok(HeadStep::Final(head)) => {
                    conn.consume(head.head_len);
                    return Ok(head);
                }
                Ok(HeadStep::Interim(len)) => {
                    conn.consume(len);
                    interim_bytes += len;
                    if interim_bytes > MAX_INTERIM_FACTOR * config.max_head_bytes {
                        return Err((too_large(), true));
                    }
                    continue;
                }
                Ok(HeadStep::Partial) => {}
                Err(HeadError::TooLarge { .. }) => return Err((too_large(), true)),
                Err(HeadError::Bad(detail)) => {
                    return Err((
                        NetError::BadResponse {
                            origin: origin.clone(),
                            detail,
                        },
                        true,
                    ))
                }
            }
        }
        // Nothing awaited since the deadline was set before the first fill, so its wait is
        // the whole timeout: one clock read fewer per request (about 50 ns here).
        let remaining = if std::mem::take(&mut first_fill) {
            first_byte_timeout
        } else {
            deadline.saturating_duration_since(Instant::now())
        };
        if remaining.is_zero() {
            return Err((
                NetError::Timeout {
                    origin: origin.clone(),
                    phase: Phase::FirstByte,
                },
                any_byte,
            ));
        }
        match conn.fill(remaining, Phase::FirstByte).await {
            Ok(0) => {
                return Err((
                    NetError::Closed {
                        origin: origin.clone(),
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
            inner: Inner::new(config),
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
        self.inner.forget_pool(origin);
    }

    /// Connections opened so far (TCP connects that succeeded, including TLS).
    pub fn connections_opened(&self) -> u64 {
        self.inner.connections_opened.get()
    }

    /// Idle pooled connections to `origin` right now.
    pub fn idle_connections(&self, origin: &Origin) -> usize {
        self.inner.idle_connections(origin)
    }

    /// Live connections to `origin` right now (busy, idle or connecting): what
    /// `max_conns_per_origin` caps.
    pub fn open_connections(&self, origin: &Origin) -> usize {
        self.inner.open_connections(origin)
    }

    pub(crate) fn inner(&self) -> &Rc<Inner> {
        &self.inner
    }

    /// Sends a request and reads the response head. A pooled connection that fails before
    /// any response byte is retried once on a fresh connection (idempotent methods only).
    pub async fn send(&self, req: Request) -> Result<Response, NetError> {
        // Made again for the (rare) replay rather than copied for every request.
        let mut head = req.head_bytes()?;
        let mut fresh = false;
        loop {
            let (conn, reused) = self.inner.checkout(&req.origin, fresh).await?;
            match self.exchange(conn, std::mem::take(&mut head), &req).await {
                Ok(response) => return Ok(response),
                Err(failure)
                    if failure.replayable && reused && !fresh && req.method.is_idempotent() =>
                {
                    fresh = true;
                    head = req.head_bytes()?;
                }
                Err(failure) => return Err(failure.err),
            }
        }
    }

    async fn exchange(
        &self,
        mut conn: Box<Conn>,
        head: Vec<u8>,
        req: &Request,
    ) -> Result<Response, Failure> {
        let config = &self.inner.config;
        if let Err(err) = conn
            .write_request(head, req.body.clone(), config.idle_timeout, config.min_rate)
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
}
