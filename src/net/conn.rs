//! One HTTP/1.1 connection: a compio TCP stream, optionally with a TLS session, plus the
//! plaintext received but not yet consumed. It offers the few primitives the client needs,
//! each bounded by a timeout that is *progress based* (it limits one read or one write, not a
//! whole transfer) and that cancels the operation rather than dropping it, so a buffer lent to
//! the kernel always comes back to its owner.
//!
//! Body reads go straight into the caller's buffer (plain TCP: the kernel writes there).
//! Bytes that arrived together with a head are copied once from the connection's small read
//! buffer.
//!
//! TLS: rustls's *unbuffered* client does the handshake, then keepmover's own record layer
//! seals and opens TLS 1.3 AES-GCM records (`tls_records.rs`; TLS 1.2 and other suites stay
//! with rustls). `tls_session.rs` holds the session and its two buffers and says what to do
//! next; this file does the I/O under the same timeouts as plain TCP. Sending: the request
//! head and the body `Bytes` are sealed straight from the caller's memory into the
//! connection's send buffer, 256 KiB of plaintext per batch, and each batch goes to the
//! kernel in one write. Receiving: ciphertext is read into the connection's receive buffer
//! (256 KiB; a record cut by a read stays there and is completed by the next one), is
//! decrypted there in place, and each record's plaintext is copied into the caller's buffer
//! (for heads and framing, into the read buffer; what does not fit the caller's buffer goes
//! there too). Under rustls (TLS 1.2) there are more copies inside: each record's plaintext
//! into a scratch before sealing, each decrypted record into a `Vec` it hands out.
//! close_notify, or the TCP end, is the end of the stream (the body framing decides whether
//! that was early). Records that reach an idle pooled connection (session tickets, a key
//! update) are absorbed by [`Conn::still_usable`]; plaintext or a close there retires it.

use std::future::Future;
use std::io;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use compio::buf::{IntoInner, IoBuf};
use compio::io::{AsyncRead, AsyncWrite};
use compio::net::TcpStream;
use compio::BufResult;

use crate::net::error::{NetError, Phase};
use crate::net::origin::Origin;
use crate::net::tls_session::{Event, TlsSession, SEAL_BATCH};
use crate::net::watchdog::Watch;

/// Largest single read into a caller's buffer (keeps syscalls few for 64 MiB bodies).
pub(crate) const MAX_READ: usize = 4 << 20;
/// Largest single write. The idle timeout bounds each write, and an io_uring send does not
/// complete until all of it is sent, so a write must take well under the idle timeout even
/// to a peer reading at the minimum rate (1 MiB at 64 KiB/s: 16 s).
const MAX_WRITE: usize = 1 << 20;
/// Read size for heads, chunk-size lines and other framing.
const FRAMING_READ: usize = 16 << 10;
/// What an idle TLS connection may receive (session tickets) before it is judged unusable.
const IDLE_RECEIVE_LIMIT: usize = 64 << 10;
/// Longest wait to hand the peer the fatal alert that ends a failed TLS connection (best
/// effort: the error is reported either way).
const ALERT_PATIENCE: Duration = Duration::from_secs(1);
/// Bodies up to this size are sent in the same write as the head (one copy, one syscall).
pub(crate) const COALESCE_BODY: usize = 16 << 10;

/// Runs an I/O future on `stream`; if `timeout` passes first, makes the operation end and
/// keeps polling until it does, so its buffer is handed back. Returns the output and
/// whether the deadline fired (the connection is then unusable). The deadline is kept by
/// the runtime's watchdog (`net::watchdog`), not a timer per operation.
///
/// # Why the socket is shut down (the mid-body stall hang)
///
/// This used to rely on compio's `CancelToken` alone: the future ran inside
/// `with_cancel(token)`, and on timeout `token.cancel()` was to cancel the registered
/// operation. But compio-runtime 0.12 finds the token through the task's `Waker`: `Submit`
/// registers its operation only if `get_ext(waker)` recognises compio's `ExtWaker` by
/// comparing `waker.vtable()` with `ExtWaker::VTABLE`, a `const`. `RawWakerVTable`'s
/// equality compares function pointers, and in optimized builds the vtable and its
/// functions are instantiated in more than one crate/codegen unit (the generic `with_cancel`
/// poll path is monomorphised in *our* crate), so the comparison fails, the operation is
/// never registered, `cancel()` cancels nothing, and this function then waited forever for
/// an operation that only the peer could complete. Debug builds compare equal, which is why
/// every test passed while release builds hung: on io_uring the worker sat in
/// `io_uring_enter` (no timer left, the read still armed), on epoll in `epoll_wait`. A server
/// that stalls mid-body with the connection open hit it on every body read.
///
/// The fix does not depend on that lookup: when the deadline passes, the socket is
/// `shutdown(2)` (both directions). The kernel then completes any pending `recv` (0 bytes) or
/// `send` (EPIPE) at once, on io_uring and epoll alike, and the operation returns its buffer.
/// The connection is dropped afterwards anyway (a timed-out exchange is never reused). No
/// cancel token is armed any more: in release builds it never cancelled anything.
///
/// The deadline is an instant, not a timeout: the callers have read the clock already (a
/// read costs about 50 ns on this VM, and a 4 KiB block made two dozen).
pub(crate) async fn run_until<F: Future>(
    stream: &TcpStream,
    deadline: Instant,
    fut: F,
) -> (F::Output, bool) {
    let watch = Watch::until(stream, deadline);
    let out = fut.await;
    (out, watch.fired())
}

pub(crate) struct Conn {
    pub(crate) origin: Origin,
    stream: TcpStream,
    tls: Option<Box<TlsSession>>,
    /// Plaintext received but not consumed: `rbuf[rpos..]`.
    rbuf: Vec<u8>,
    rpos: usize,
    /// When the connection last went idle (into the pool).
    pub(crate) idle_since: Instant,
    /// Set when a timeout shut the socket down: every later operation fails with it.
    aborted: Option<NetError>,
    /// This connection's place under its origin's cap (freed on drop).
    pub(crate) slot: Option<crate::net::pool::Slot>,
    /// The minimum-rate deadline of the transfer in progress, if any.
    pace: Option<Pace>,
}

/// The minimum-progress rule of one transfer: by `deadline` the next byte must have moved
/// (the owner pushes the deadline on as bytes move). Failing it is [`NetError::TooSlow`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct Pace {
    pub(crate) deadline: Instant,
    pub(crate) min_rate: u64,
}

impl Pace {
    /// The rule for a transfer that started at `start`, has moved `moved` bytes, at
    /// `min_rate` bytes/s, with a grace of `grace`: `start + grace + moved / min_rate`.
    ///
    /// Why this form rather than a sliding window: it needs no per-read bookkeeping, one
    /// formula serves every framing (Content-Length, chunked, until EOF, request bodies), and
    /// it bounds the whole transfer by `grace + size / min_rate` — a server sending a byte
    /// every 59 s fails after one grace period (the average is far below the floor), while a
    /// transfer that stays above the average rate never trips it, however its bytes bunch.
    /// A fast start earns credit for a later slow patch, but never more than the average
    /// allows. `min_rate == 0` disables the rule (None).
    pub(crate) fn new(start: Instant, grace: Duration, moved: u64, min_rate: u64) -> Option<Pace> {
        if min_rate == 0 {
            return None;
        }
        let credit = Duration::from_secs_f64(moved as f64 / min_rate as f64);
        Some(Pace {
            deadline: start + grace + credit,
            min_rate,
        })
    }
}

impl Conn {
    /// Opens a TCP connection (and TLS session when `tls_config` is given) within `timeout`.
    pub(crate) async fn connect(
        origin: &Origin,
        tls_config: Option<Arc<rustls::ClientConfig>>,
        timeout: Duration,
    ) -> Result<Box<Conn>, NetError> {
        let setup = async {
            let stream = TcpStream::connect((&*origin.host, origin.port))
                .await
                .map_err(|source| NetError::Connect {
                    origin: origin.clone(),
                    source,
                })?;
            // Small requests must not wait for Nagle; failure only costs latency.
            let _ = stream.set_nodelay(true);
            // Boxed: a connection moves between the pool and each response, several times
            // per request, and moving 280 bytes each time showed on small blocks.
            let mut conn = Box::new(Conn {
                origin: origin.clone(),
                stream,
                tls: None,
                rbuf: Vec::with_capacity(FRAMING_READ),
                rpos: 0,
                idle_since: Instant::now(),
                aborted: None,
                slot: None,
                pace: None,
            });
            if let Some(config) = tls_config {
                let tls_error = |detail: String| NetError::Tls {
                    origin: origin.clone(),
                    detail,
                };
                let name = rustls::pki_types::ServerName::try_from(origin.host.to_string())
                    .map_err(|e| tls_error(format!("bad server name: {e}")))?;
                let session = rustls::client::UnbufferedClientConnection::new(config, name)
                    .map_err(|e| tls_error(e.to_string()))?;
                conn.tls = Some(Box::new(TlsSession::new(session)));
                conn.handshake(timeout).await?;
            }
            Ok(conn)
        };
        match compio::time::timeout(timeout, setup).await {
            Ok(result) => result,
            Err(_) => Err(NetError::Timeout {
                origin: origin.clone(),
                phase: Phase::Connect,
            }),
        }
    }

    fn tls_error(&self, err: impl std::fmt::Display) -> NetError {
        NetError::Tls {
            origin: self.origin.clone(),
            detail: err.to_string(),
        }
    }

    fn io_error(&self, source: io::Error) -> NetError {
        NetError::Io {
            origin: self.origin.clone(),
            source,
        }
    }

    /// Runs the TLS handshake: rustls says what to send and when it needs more input.
    async fn handshake(&mut self, timeout: Duration) -> Result<(), NetError> {
        loop {
            let Conn { tls, rbuf, .. } = &mut *self;
            let Some(tls) = tls.as_mut() else {
                return Ok(());
            };
            // No application data can come before our request; kept if it does.
            let event = tls.advance(&mut |plain| rbuf.extend_from_slice(plain));
            match event {
                Ok(Event::Send) => self.flush_tls(timeout, Phase::Connect).await?,
                Ok(Event::NeedInput) => {
                    if self.read_ciphertext(timeout, Phase::Connect).await? == 0 {
                        return Err(NetError::Closed {
                            origin: self.origin.clone(),
                            detail: "during the TLS handshake",
                        });
                    }
                }
                Ok(Event::Idle) => return self.flush_tls(timeout, Phase::Connect).await,
                Ok(Event::Data | Event::Sealed) => {}
                Ok(Event::PeerClosed) => {
                    return Err(NetError::Closed {
                        origin: self.origin.clone(),
                        detail: "during the TLS handshake",
                    })
                }
                Err(e) => {
                    let err = self.tls_error(&e);
                    // Tell the server why (best effort).
                    if let Some(tls) = self.tls.as_mut() {
                        tls.queue_fatal_alert(&e);
                    }
                    let _ = self
                        .flush_tls(timeout.min(ALERT_PATIENCE), Phase::Connect)
                        .await;
                    return Err(err);
                }
            }
        }
    }

    /// Reads ciphertext from the socket into the TLS receive buffer, after the part rustls
    /// has not discarded yet (a partial record).
    async fn read_ciphertext(
        &mut self,
        timeout: Duration,
        phase: Phase,
    ) -> Result<usize, NetError> {
        let Some(tls) = self.tls.as_mut() else {
            return Ok(0);
        };
        let (cin, kept) = tls.take_cin_for_read();
        let (start, end) = (cin.len(), cin.capacity());
        let (result, slice) = self
            .socket_read(cin.slice(start..end), timeout, phase)
            .await;
        if let Some(tls) = self.tls.as_mut() {
            tls.restore_cin(slice.into_inner(), kept);
        }
        result
    }

    /// Sends the sealed bytes waiting in the TLS send buffer (handshake messages, alerts,
    /// records), in one socket write (split only by `MAX_WRITE`).
    async fn flush_tls(&mut self, timeout: Duration, phase: Phase) -> Result<(), NetError> {
        let Some(tls) = self.tls.as_mut() else {
            return Ok(());
        };
        if tls.outgoing() == 0 {
            return Ok(());
        }
        let (out, len) = tls.take_out();
        let (result, slice) = self
            .socket_write_all(out.slice(0..len), timeout, phase)
            .await;
        if let Some(tls) = self.tls.as_mut() {
            tls.restore_out(slice.into_inner());
        }
        result
    }

    async fn socket_read<B: compio::buf::IoBufMut>(
        &mut self,
        buf: B,
        timeout: Duration,
        phase: Phase,
    ) -> (Result<usize, NetError>, B) {
        if let Some(err) = &self.aborted {
            return (Err(err.clone_kind()), buf);
        }
        let (deadline, phase) = self.deadline(timeout, phase);
        let mut reader = &self.stream;
        let (BufResult(result, buf), fired) =
            run_until(&self.stream, deadline, reader.read(buf)).await;
        if fired {
            self.aborted = Some(self.timeout_error(phase));
        }
        let result = match result {
            // Bytes that raced the timer are delivered; the next read reports the timeout.
            Ok(n) if n > 0 || !fired => Ok(n),
            Ok(_) => Err(self.timeout_error(phase)),
            Err(_) if fired => Err(self.timeout_error(phase)),
            Err(source) => Err(self.io_error(source)),
        };
        (result, buf)
    }

    fn timeout_error(&self, phase: Phase) -> NetError {
        match (phase, self.pace) {
            (Phase::TooSlow, Some(pace)) => NetError::TooSlow {
                origin: self.origin.clone(),
                min_rate: pace.min_rate,
            },
            _ => NetError::Timeout {
                origin: self.origin.clone(),
                phase,
            },
        }
    }

    /// Sets (or clears) the minimum-rate deadline for the following reads and writes.
    pub(crate) fn set_pace(&mut self, pace: Option<Pace>) {
        self.pace = pace;
    }

    /// The deadline of one operation: the idle timeout from now, or sooner if the
    /// minimum-rate deadline comes first (then missing it means too slow). One clock read.
    fn deadline(&self, timeout: Duration, phase: Phase) -> (Instant, Phase) {
        let now = Instant::now();
        let idle_deadline = now + timeout;
        match self.pace {
            Some(pace) if phase == Phase::Idle && pace.deadline.max(now) < idle_deadline => {
                (pace.deadline.max(now), Phase::TooSlow)
            }
            _ => (idle_deadline, phase),
        }
    }

    /// Writes all of `buf`; each write (at most `MAX_WRITE` bytes) must make progress within
    /// `timeout`.
    async fn socket_write_all<B: IoBuf>(
        &mut self,
        mut buf: B,
        timeout: Duration,
        phase: Phase,
    ) -> (Result<(), NetError>, B) {
        let len = buf.buf_len();
        let mut pos = 0;
        while pos < len {
            if let Some(err) = &self.aborted {
                return (Err(err.clone_kind()), buf);
            }
            let end = (pos + MAX_WRITE).min(len);
            let (deadline, phase) = self.deadline(timeout, phase);
            let mut writer = &self.stream;
            let (BufResult(result, slice), fired) =
                run_until(&self.stream, deadline, writer.write(buf.slice(pos..end))).await;
            buf = slice.into_inner();
            if fired {
                self.aborted = Some(self.timeout_error(phase));
            }
            match result {
                Ok(0) if fired => return (Err(self.timeout_error(phase)), buf),
                Ok(0) => {
                    return (
                        Err(NetError::Closed {
                            origin: self.origin.clone(),
                            detail: "while sending",
                        }),
                        buf,
                    )
                }
                Ok(n) => pos += n,
                Err(_) if fired => return (Err(self.timeout_error(phase)), buf),
                Err(source) => return (Err(self.io_error(source)), buf),
            }
        }
        (Ok(()), buf)
    }

    /// Sends `parts` over TLS: sealed straight from the caller's bytes into the connection's
    /// send buffer, `SEAL_BATCH` bytes of plaintext at a time, one socket write per batch
    /// (the head rides with the first batch of the body).
    async fn tls_send(&mut self, parts: [&[u8]; 2], timeout: Duration) -> Result<(), NetError> {
        for part in parts {
            let mut pos = 0;
            while pos < part.len() {
                let Conn { tls, rbuf, .. } = &mut *self;
                let Some(tls) = tls.as_mut() else {
                    return Ok(());
                };
                let n = (part.len() - pos).min(SEAL_BATCH.saturating_sub(tls.outgoing()));
                if n == 0 {
                    self.flush_tls(timeout, Phase::Idle).await?;
                    continue;
                }
                // Plaintext that arrives meanwhile (an early response) is kept for the reader.
                let sealed = tls.seal(&part[pos..pos + n], &mut |plain| {
                    rbuf.extend_from_slice(plain)
                });
                let full = tls.outgoing() >= SEAL_BATCH;
                match sealed {
                    Ok(Event::PeerClosed) => {
                        return Err(NetError::Closed {
                            origin: self.origin.clone(),
                            detail: "while sending",
                        })
                    }
                    Ok(_) => pos += n,
                    Err(e) => return Err(self.tls_error(e)),
                }
                if full {
                    self.flush_tls(timeout, Phase::Idle).await?;
                }
            }
        }
        self.flush_tls(timeout, Phase::Idle).await
    }

    /// Sends a request head and its body. The body `Bytes` goes to the kernel as is on plain
    /// connections (no copy) unless it is small enough to ride with the head.
    pub(crate) async fn write_request(
        &mut self,
        head: Vec<u8>,
        body: Option<Bytes>,
        timeout: Duration,
        min_rate: u64,
    ) -> Result<(), NetError> {
        // The whole request must move at `min_rate` (its size is known up front).
        let size = head.len() as u64 + body.as_ref().map_or(0, |b| b.len() as u64);
        self.pace = Pace::new(Instant::now(), timeout, size, min_rate);
        let result = self.write_request_inner(head, body, timeout).await;
        self.pace = None;
        result
    }

    async fn write_request_inner(
        &mut self,
        mut head: Vec<u8>,
        body: Option<Bytes>,
        timeout: Duration,
    ) -> Result<(), NetError> {
        if self.tls.is_some() {
            let body = body.unwrap_or_default();
            return self.tls_send([&head, &body], timeout).await;
        }
        match body {
            Some(body) if body.len() > COALESCE_BODY => {
                self.socket_write_all(head, timeout, Phase::Idle).await.0?;
                self.socket_write_all(body, timeout, Phase::Idle).await.0
            }
            Some(body) => {
                head.extend_from_slice(&body);
                self.socket_write_all(head, timeout, Phase::Idle).await.0
            }
            None => self.socket_write_all(head, timeout, Phase::Idle).await.0,
        }
    }

    /// Received bytes not consumed yet.
    pub(crate) fn buffered(&self) -> &[u8] {
        &self.rbuf[self.rpos..]
    }

    pub(crate) fn consume(&mut self, n: usize) {
        self.rpos = (self.rpos + n).min(self.rbuf.len());
        if self.rpos == self.rbuf.len() {
            self.rbuf.clear();
            self.rpos = 0;
        }
    }

    /// Receives more bytes into the connection's buffer. Ok(0) = end of stream.
    pub(crate) async fn fill(
        &mut self,
        timeout: Duration,
        phase: Phase,
    ) -> Result<usize, NetError> {
        if self.rpos > 0 {
            self.rbuf.drain(..self.rpos);
            self.rpos = 0;
        }
        let mut buf = std::mem::take(&mut self.rbuf);
        buf.reserve(FRAMING_READ);
        let (result, mut buf) = if self.tls.is_some() {
            // One record at most (16 KiB): body bytes decrypted here cost one more copy.
            self.tls_read(buf, usize::MAX, true, timeout, phase).await
        } else {
            let start = buf.len();
            let (result, slice) = self
                .socket_read(buf.slice(start..start + FRAMING_READ), timeout, phase)
                .await;
            (result, slice.into_inner())
        };
        // What did not fit in `buf`'s capacity went to `self.rbuf` (empty while `buf` was
        // out): it follows `buf`'s bytes. One record fits in FRAMING_READ, so this stays
        // empty today; it is kept rather than lost should either change.
        buf.append(&mut self.rbuf);
        self.rbuf = buf;
        result
    }

    /// Appends at most `max` body bytes to `dest` (within its spare capacity): buffered bytes
    /// first, else one read straight into `dest`. Ok(0) = end of stream.
    pub(crate) async fn read_into(
        &mut self,
        mut dest: Vec<u8>,
        max: usize,
        timeout: Duration,
        phase: Phase,
    ) -> (Result<usize, NetError>, Vec<u8>) {
        let max = max.min(dest.capacity() - dest.len()).min(MAX_READ);
        if max == 0 {
            return (Ok(0), dest);
        }
        let available = self.buffered().len();
        if available > 0 {
            let n = available.min(max);
            dest.extend_from_slice(&self.rbuf[self.rpos..self.rpos + n]);
            self.consume(n);
            return (Ok(n), dest);
        }
        if self.tls.is_some() {
            return self.tls_read(dest, max, false, timeout, phase).await;
        }
        let start = dest.len();
        let (result, slice) = self
            .socket_read(dest.slice(start..start + max), timeout, phase)
            .await;
        (result, slice.into_inner())
    }

    /// Decrypts up to `max` plaintext bytes into `dest`, reading ciphertext as needed: every
    /// complete record already received (or only the first, with `one_record`), at least one
    /// byte unless the stream ended. Records are opened straight into `dest` where they fit
    /// in its spare capacity; plaintext past `max` or past that capacity (`dest` is never
    /// reallocated) goes on into `rbuf`.
    async fn tls_read(
        &mut self,
        mut dest: Vec<u8>,
        max: usize,
        one_record: bool,
        timeout: Duration,
        phase: Phase,
    ) -> (Result<usize, NetError>, Vec<u8>) {
        let mut got = 0;
        loop {
            let Conn { tls, rbuf, .. } = &mut *self;
            let Some(tls) = tls.as_mut() else {
                return (Ok(got), dest);
            };
            if tls.peer_closed() {
                return (Ok(got), dest);
            }
            let before = dest.len();
            let event = tls.advance_into(&mut dest, max - got, rbuf);
            got += dest.len() - before;
            match event {
                Ok(Event::Data) => {
                    if got == max || (one_record && got > 0) {
                        return (Ok(got), dest);
                    }
                }
                // A post-handshake answer rustls owes the server (a key update, an alert).
                Ok(Event::Send) => {
                    if let Err(e) = self.flush_tls(timeout, phase).await {
                        return (Err(e), dest);
                    }
                }
                // close_notify: the end of the stream (after what was already delivered).
                Ok(Event::PeerClosed) => return (Ok(got), dest),
                Ok(Event::Idle | Event::NeedInput | Event::Sealed) => {
                    if got > 0 {
                        return (Ok(got), dest);
                    }
                    match self.read_ciphertext(timeout, phase).await {
                        // TCP end without close_notify: also the end (framing judges it).
                        Ok(0) => return (Ok(0), dest),
                        Ok(_) => {}
                        Err(e) => return (Err(e), dest),
                    }
                }
                Err(e) => {
                    let err = self.tls_error(&e);
                    // Tell the server why (best effort: the connection is not reused).
                    if let Some(tls) = self.tls.as_mut() {
                        tls.queue_fatal_alert(&e);
                    }
                    let _ = self.flush_tls(timeout.min(ALERT_PATIENCE), phase).await;
                    return (Err(err), dest);
                }
            }
        }
    }

    /// Whether an idle pooled connection still looks usable: nothing unread, not closed by
    /// the peer. On TLS connections, records that arrived while idle (session tickets) are
    /// absorbed; any plaintext, close_notify, alert or anything rustls wants to answer means
    /// the connection is not reused, and so does a partial record left over.
    pub(crate) fn still_usable(&mut self) -> bool {
        if !self.buffered().is_empty() {
            return false;
        }
        let fd = self.stream.as_raw_fd();
        let Some(tls) = self.tls.as_mut() else {
            let mut peek = [0u8; 1];
            return matches!(recv_nonblocking(fd, &mut peek, true), Err(e) if e.kind() == io::ErrorKind::WouldBlock);
        };
        let mut scratch = [0u8; 4096];
        if tls.peer_closed() || tls.outgoing() > 0 {
            return false;
        }
        let mut received = 0;
        loop {
            match recv_nonblocking(fd, &mut scratch, false) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(_) | Ok(0) => return false,
                Ok(n) => {
                    tls.push_ciphertext(&scratch[..n]);
                    received += n;
                    // Tickets are a few hundred bytes; this much is something else.
                    if received > IDLE_RECEIVE_LIMIT {
                        return false;
                    }
                }
            }
        }
        let mut plaintext = false;
        loop {
            match tls.advance(&mut |plain| plaintext |= !plain.is_empty()) {
                Ok(Event::Data) if !plaintext => {}
                Ok(Event::Idle | Event::NeedInput) => return tls.undiscarded() == 0,
                _ => return false,
            }
        }
    }
}

/// One non-blocking `recv` (optionally `MSG_PEEK`) on a socket whose blocking mode we must not
/// change (io_uring would then see EAGAIN).
#[allow(unsafe_code)]
fn recv_nonblocking(fd: std::os::fd::RawFd, buf: &mut [u8], peek: bool) -> io::Result<usize> {
    let flags = libc::MSG_DONTWAIT | if peek { libc::MSG_PEEK } else { 0 };
    // SAFETY: `fd` is an open socket owned by the caller's `TcpStream`, which outlives this
    // call, and no other operation is in flight on it (it is idle in the pool); `buf` is a
    // valid, initialised, exclusively borrowed slice of `buf.len()` bytes.
    let n = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), flags) };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::task::{Context, Wake, Waker};

    use super::*;

    /// Forwards wake-ups to the task's waker but hides compio's waker extension, so a
    /// `CancelToken` cannot be found from inside: what happens in optimized builds (see
    /// `run_until`), reproduced in any build.
    struct Forward(Waker);

    impl Wake for Forward {
        fn wake(self: Arc<Self>) {
            self.0.wake_by_ref();
        }
    }

    fn hide_cancel_token<F: Future>(fut: F) -> impl Future<Output = F::Output> {
        let mut fut = Box::pin(fut);
        std::future::poll_fn(move |cx| {
            let waker = Waker::from(Arc::new(Forward(cx.waker().clone())));
            fut.as_mut().poll(&mut Context::from_waker(&waker))
        })
    }

    #[test]
    fn timeout_ends_a_read_even_when_the_cancel_token_is_not_seen() {
        for backend in [crate::net::IoBackend::Uring, crate::net::IoBackend::Epoll] {
            if backend == crate::net::IoBackend::Uring && !crate::net::io_uring_available() {
                continue;
            }
            let (runtime, _) = crate::net::build_runtime(backend).expect("runtime");
            let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            let addr = listener.local_addr().expect("addr");
            runtime.block_on(async move {
                let stream = TcpStream::connect(addr).await.expect("connect");
                // Keep the peer open and silent.
                let _peer = listener.accept().expect("accept");
                let started = Instant::now();
                let mut reader = &stream;
                let buf = Vec::with_capacity(64 << 20);
                let (BufResult(result, buf), fired) = run_until(
                    &stream,
                    started + Duration::from_millis(100),
                    hide_cancel_token(reader.read(buf)),
                )
                .await;
                assert!(fired, "{backend}: the timer fired");
                assert!(!matches!(result, Ok(n) if n > 0), "{backend}: {result:?}");
                assert_eq!(buf.capacity(), 64 << 20, "{backend}: the buffer came back");
                assert!(started.elapsed() < Duration::from_secs(2), "{backend}");
            });
        }
    }

    /// A TLS 1.3 server that finishes the handshake, then (once `go` says so) sends its
    /// session tickets to a client that is not reading, then `after_tickets`, then answers
    /// one request line with "hello".
    fn ticket_server(
        after_tickets: fn(&mut rustls::ServerConnection),
    ) -> (u16, std::sync::mpsc::Receiver<()>) {
        use std::io::{Read as _, Write as _};
        let config = crate::net::tls_session::tests::test_server_config(
            "127.0.0.1",
            &rustls::version::TLS13,
        );
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let (sent, told) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let (mut tcp, _) = listener.accept().expect("accept");
            let mut server = rustls::ServerConnection::new(Arc::new(config)).expect("server");
            while server.is_handshaking() {
                server.complete_io(&mut tcp).expect("handshake");
            }
            // The client is idle now: the tickets (and whatever follows) reach it unasked.
            std::thread::sleep(Duration::from_millis(50));
            after_tickets(&mut server);
            while server.wants_write() {
                server.write_tls(&mut tcp).expect("tickets");
            }
            let _ = sent.send(());
            let mut stream = rustls::StreamOwned::new(server, tcp);
            let mut line = [0u8; 4];
            if stream.read_exact(&mut line).is_ok() {
                let _ = stream.write_all(b"hello");
                let _ = stream.flush();
            }
            std::thread::sleep(Duration::from_millis(200));
        });
        (port, told)
    }

    async fn idle_client(port: u16, told: std::sync::mpsc::Receiver<()>) -> Box<Conn> {
        let origin = Origin::parse(&format!("https://127.0.0.1:{port}")).expect("origin");
        let config = crate::net::tls::client_config(crate::net::TlsPolicy::Insecure).expect("tls");
        let conn = Conn::connect(&origin, Some(config), Duration::from_secs(5))
            .await
            .expect("connect");
        told.recv_timeout(Duration::from_secs(5))
            .expect("server sent");
        compio::time::sleep(Duration::from_millis(50)).await;
        // Something is waiting in the socket, unread.
        let mut peek = [0u8; 1];
        assert_eq!(
            recv_nonblocking(conn.stream.as_raw_fd(), &mut peek, true).ok(),
            Some(1)
        );
        conn
    }

    fn on_both_backends(test: impl Fn() -> std::pin::Pin<Box<dyn Future<Output = ()>>>) {
        for backend in [crate::net::IoBackend::Uring, crate::net::IoBackend::Epoll] {
            if backend == crate::net::IoBackend::Uring && !crate::net::io_uring_available() {
                continue;
            }
            let (runtime, _) = crate::net::build_runtime(backend).expect("runtime");
            runtime.block_on(test());
        }
    }

    /// A request whose head and small body do not fit in the socket's buffers: the first send
    /// takes part of it (within the head, or within the body), and the rest follows, every
    /// byte in order.
    #[test]
    fn a_short_send_of_head_and_body_sends_the_rest() {
        for head_len in [200, 12_000] {
            on_both_backends(|| {
                Box::pin(async move {
                    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
                    let _ = socket2::SockRef::from(&listener).set_recv_buffer_size(2048);
                    let port = listener.local_addr().expect("addr").port();
                    let head: Vec<u8> = (0..head_len).map(|i| b'a' + (i % 26) as u8).collect();
                    let body = Bytes::from((0..COALESCE_BODY).map(|i| i as u8).collect::<Vec<_>>());
                    let mut expected = head.clone();
                    expected.extend_from_slice(&body);
                    let reader = std::thread::spawn(move || {
                        let (mut peer, _) = listener.accept().expect("accept");
                        // Not reading yet: the client's buffers fill up first.
                        std::thread::sleep(Duration::from_millis(200));
                        let mut got = Vec::new();
                        std::io::Read::read_to_end(&mut peer, &mut got).expect("read");
                        got
                    });
                    let origin =
                        Origin::parse(&format!("http://127.0.0.1:{port}")).expect("origin");
                    let mut conn = Conn::connect(&origin, None, Duration::from_secs(5))
                        .await
                        .expect("connect");
                    let _ = socket2::SockRef::from(&conn.stream).set_send_buffer_size(2048);
                    conn.write_request(head, Some(body), Duration::from_secs(5), 0)
                        .await
                        .expect("sent");
                    drop(conn);
                    assert_eq!(reader.join().expect("reader"), expected);
                })
            });
        }
    }

    #[test]
    fn session_tickets_reaching_an_idle_tls_connection_are_absorbed() {
        on_both_backends(|| {
            Box::pin(async {
                let (port, told) = ticket_server(|_| {});
                let mut conn = idle_client(port, told).await;
                assert!(
                    conn.still_usable(),
                    "tickets alone keep the connection usable"
                );
                let timeout = Duration::from_secs(5);
                conn.write_request(b"GET\n".to_vec(), None, timeout, 0)
                    .await
                    .expect("request");
                let mut got = Vec::new();
                while got.len() < 5 {
                    let (n, buf) = conn
                        .read_into(Vec::with_capacity(64), 64, timeout, Phase::Idle)
                        .await;
                    assert!(n.expect("read") > 0, "early end after {got:?}");
                    got.extend_from_slice(&buf);
                }
                assert_eq!(got, b"hello");
            })
        });
    }

    #[test]
    fn close_notify_or_data_reaching_an_idle_tls_connection_retire_it() {
        on_both_backends(|| {
            Box::pin(async {
                let (port, told) = ticket_server(|server| server.send_close_notify());
                let mut conn = idle_client(port, told).await;
                assert!(!conn.still_usable(), "close_notify while idle");
                let (port, told) = ticket_server(|server| {
                    let _ = std::io::Write::write_all(&mut server.writer(), b"HTTP/1.1 408\r\n");
                });
                let mut conn = idle_client(port, told).await;
                assert!(!conn.still_usable(), "plaintext while idle");
            })
        });
    }
}
