//! A response whose head has been read, and its body: [`Response`] drives the sans-IO
//! [`BodyDecoder`](crate::net::framing::BodyDecoder) over the connection, reading body data
//! straight into the caller's buffer and framing through the connection's small buffer,
//! under the idle timeout, the minimum-rate rule and an optional overall body limit.

use std::rc::Rc;
use std::time::Instant;

use compio::BufResult;

use crate::net::conn::{Conn, Pace, MAX_READ};
use crate::net::error::{NetError, Phase};
use crate::net::framing::{BodyDecoder, FramingError, FramingLimits, Want};
use crate::net::head::{BodyFraming, HeaderFields, ResponseHead};
use crate::net::origin::Origin;
use crate::net::pool::Inner;

/// `Response::discard` drains at most this much to save the connection.
const DISCARD_LIMIT: u64 = 1 << 20;

/// A response whose head has been read. The body is read with
/// [`read_body_chunk`](Response::read_body_chunk) (into the caller's buffer),
/// [`read_to_end`](Response::read_to_end), [`read_error_body`](Response::read_error_body) or
/// [`discard`](Response::discard). When the body has been fully read the connection returns
/// to the pool by itself; a `Response` dropped mid-body closes its connection.
pub struct Response {
    pub status: u16,
    pub headers: HeaderFields,
    trailers: Vec<(String, String)>,
    origin: Origin,
    pub(crate) conn: Option<Box<Conn>>,
    decoder: BodyDecoder,
    pub(crate) keep_alive: bool,
    /// When the body started (the head was received): the minimum-rate rule's origin.
    started: Instant,
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
            .field("body", &self.decoder)
            .finish()
    }
}

impl Response {
    pub(crate) fn new(
        head: ResponseHead,
        framing: BodyFraming,
        conn: Box<Conn>,
        client: Rc<Inner>,
        pool_on_finish: bool,
    ) -> Response {
        let mut keep_alive = head.keep_alive();
        if framing == BodyFraming::UntilEof {
            keep_alive = false;
        }
        // Both Transfer-Encoding and Content-Length: framed by TE, but the message was
        // suspicious (RFC 9112 §6.3): do not reuse the connection.
        if framing == BodyFraming::Chunked && head.headers.get("content-length").is_some() {
            keep_alive = false;
        }
        let config = &client.config;
        let limits = FramingLimits {
            max_line: config.max_framing_line,
            max_trailer_bytes: config.max_trailer_bytes,
            max_trailers: config.max_trailers,
            max_body: None,
        };
        let mut response = Response {
            status: head.status,
            headers: head.headers,
            trailers: Vec::new(),
            origin: conn.origin.clone(),
            conn: Some(conn),
            decoder: BodyDecoder::new(framing, limits),
            keep_alive,
            started: Instant::now(),
            pool_on_finish,
            client,
        };
        if response.decoder.is_done() {
            response.finish();
        }
        response
    }

    /// First value of a header, by case-insensitive name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name)
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
        self.decoder.received()
    }

    /// Whether the whole body has been read.
    pub fn is_complete(&self) -> bool {
        self.decoder.is_done()
    }

    /// Caps the body at `bytes` whatever its framing (Content-Length, chunked or until EOF):
    /// a longer body fails [`NetError::BodyTooLong`] — at once for a declared length, else
    /// as soon as the limit is passed. A later, larger limit does not raise an earlier one.
    pub fn limit_body(&mut self, bytes: u64) -> Result<(), NetError> {
        self.decoder
            .limit_body(bytes)
            .map_err(|e| self.framing_error(e))
            .map_err(|e| self.fail(e))
    }

    /// The body is complete: give the connection back to the pool when it can carry another
    /// request (keep-alive, and no unexpected bytes after this response).
    fn finish(&mut self) {
        self.trailers = self.decoder.take_trailers();
        if !self.keep_alive {
            self.conn = None;
            return;
        }
        if self.pool_on_finish {
            if let Some(mut conn) = self.conn.take() {
                conn.set_pace(None);
                if conn.buffered().is_empty() {
                    self.client.put_back(conn);
                }
            }
        }
    }

    pub(crate) fn fail(&mut self, err: NetError) -> NetError {
        self.conn = None;
        // A failed body is over: later reads say so instead of touching the connection.
        let _ = self.decoder.eof();
        err
    }

    fn framing_error(&self, err: FramingError) -> NetError {
        let origin = self.origin.clone();
        match err {
            FramingError::BodyTooLong { limit } => NetError::BodyTooLong { origin, limit },
            FramingError::Truncated { expected, got } => NetError::BodyTooShort {
                origin,
                expected,
                got,
            },
            FramingError::Closed(detail) => NetError::Closed { origin, detail },
            e @ (FramingError::LineTooLong { .. }
            | FramingError::TrailersTooLarge { .. }
            | FramingError::TooManyTrailers { .. }) => NetError::FramingTooLarge {
                origin,
                detail: e.to_string(),
            },
            e @ (FramingError::BadChunkSize(_)
            | FramingError::ChunkOverrun
            | FramingError::BadTrailer(_)) => NetError::BadChunk {
                origin,
                detail: e.to_string(),
            },
        }
    }

    /// Reads the next piece of the body into the spare capacity of `buf` (appending after
    /// `buf.len()`, at most `buf.capacity() - buf.len()` bytes; up to 4 MiB per call),
    /// decoding chunked transfer-encoding transparently. `Ok(0)` = body complete. Errors
    /// (truncated body, bad chunk, body longer than Content-Length or the body limit, idle
    /// timeout, below the minimum rate…) are `io::Error`s carrying a [`NetError`]; get it
    /// back with [`NetError::from_io`]. A buffer without spare capacity is an `InvalidInput`
    /// error.
    pub async fn read_body_chunk(&mut self, buf: Vec<u8>) -> BufResult<usize, Vec<u8>> {
        if !self.decoder.is_done() && buf.capacity() == buf.len() {
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

    pub(crate) async fn next_body_piece(
        &mut self,
        buf: Vec<u8>,
    ) -> (Result<usize, NetError>, Vec<u8>) {
        let config = &self.client.config;
        let idle = config.idle_timeout;
        let min_rate = config.min_rate;
        loop {
            let want = self.decoder.want();
            if want == Want::Done {
                return (Ok(0), buf);
            }
            let Some(conn) = self.conn.as_mut() else {
                let err = NetError::Closed {
                    origin: self.origin.clone(),
                    detail: "before the end of the body",
                };
                return (Err(err), buf);
            };
            conn.set_pace(Pace::new(
                self.started,
                idle,
                self.decoder.received(),
                min_rate,
            ));
            match want {
                Want::Done => return (Ok(0), buf),
                Want::Body(max) => {
                    let max = usize::try_from(max.min(MAX_READ as u64)).unwrap_or(MAX_READ);
                    let (result, buf) = conn.read_into(buf, max, idle, Phase::Idle).await;
                    let step = match result {
                        Ok(0) => self.decoder.eof().map(|()| 0),
                        Ok(n) => self.decoder.body_read(n as u64).map(|()| n),
                        Err(e) => return (Err(self.fail(e)), buf),
                    };
                    return match step {
                        Ok(n) => {
                            if self.decoder.is_done() {
                                self.finish();
                            }
                            (Ok(n), buf)
                        }
                        Err(e) => {
                            let err = self.framing_error(e);
                            (Err(self.fail(err)), buf)
                        }
                    };
                }
                Want::Framing => {
                    let decoded = self.decoder.decode_framing(conn.buffered());
                    match decoded {
                        Ok(0) => match conn.fill(idle, Phase::Idle).await {
                            Ok(0) => {
                                let err = match self.decoder.eof() {
                                    Err(e) => self.framing_error(e),
                                    Ok(()) => NetError::Closed {
                                        origin: self.origin.clone(),
                                        detail: "before the end of the chunked body",
                                    },
                                };
                                return (Err(self.fail(err)), buf);
                            }
                            Ok(_) => {}
                            Err(e) => return (Err(self.fail(e)), buf),
                        },
                        Ok(used) => {
                            conn.consume(used);
                            if self.decoder.is_done() {
                                self.finish();
                                return (Ok(0), buf);
                            }
                        }
                        Err(e) => {
                            let err = self.framing_error(e);
                            return (Err(self.fail(err)), buf);
                        }
                    }
                }
            }
        }
    }

    /// Reads the whole body (for small bodies: errors, PUT replies, listings). A body
    /// longer than `limit` fails with [`NetError::BodyTooLong`].
    pub async fn read_to_end(mut self, limit: usize) -> Result<Vec<u8>, NetError> {
        self.read_all(limit).await
    }

    /// Reads at most `ClientConfig::max_error_body` bytes of the body, for an error message:
    /// a longer body is cut there (and its connection closed) instead of failing.
    pub async fn read_error_body(mut self) -> Result<Vec<u8>, NetError> {
        let cap = self.client.config.max_error_body;
        let mut body = Vec::new();
        while body.len() < cap {
            let piece = Vec::with_capacity((cap - body.len()).min(64 << 10));
            let (result, piece) = self.next_body_piece(piece).await;
            if result? == 0 {
                return Ok(body);
            }
            body.extend_from_slice(&piece);
        }
        if !self.decoder.is_done() {
            // Cut: the rest of the body is not read; the connection is not reused.
            self.conn = None;
        }
        Ok(body)
    }

    pub(crate) async fn read_all(&mut self, limit: usize) -> Result<Vec<u8>, NetError> {
        self.limit_body(limit as u64)?;
        let first = self
            .content_length()
            .map_or(8 << 10, |l| usize::try_from(l).unwrap_or(usize::MAX))
            .min(limit)
            + 1;
        let mut buf = Vec::with_capacity(first.min(1 << 20));
        loop {
            if buf.len() == buf.capacity() {
                buf.reserve((buf.len()).clamp(8 << 10, 1 << 20));
            }
            let (result, returned) = self.next_body_piece(buf).await;
            buf = returned;
            if result? == 0 {
                return Ok(buf);
            }
        }
    }

    /// Reads and drops the rest of the body (up to 1 MiB) so the connection can be reused;
    /// a longer body just closes the connection.
    pub async fn discard(mut self) -> Result<(), NetError> {
        if let Want::Body(remaining) = self.decoder.want() {
            if remaining > DISCARD_LIMIT && !self.decoder.until_eof() {
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
