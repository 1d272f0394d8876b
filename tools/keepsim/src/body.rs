//! Response bodies: whole, streamed piece by piece from a generator (synthetic blocks,
//! indexes, so nothing large is ever held), and misbehaving on purpose (fault injection):
//! cut short then closed, reset or stalled forever, trickled at a byte rate, a byte
//! flipped, or followed by endless trailer lines. A body can also carry guards (the
//! limiter's permit) that are released only when the body is finished or dropped, as a
//! keepstore handler holds its request slot until it has written its response.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};

use crate::conn::ConnControl;

/// What happens once the pieces run out (or the byte limit is reached).
pub enum End {
    /// The body ends normally.
    Clean,
    /// The body fails, so hyper closes the connection (FIN) mid-message.
    Close,
    /// Nothing more is ever sent; the connection stays open.
    Stall,
    /// The connection is reset (RST).
    Reset(Arc<ConnControl>),
    /// The body ends normally, then the connection writes trailer lines forever.
    EndlessTrailers(Arc<ConnControl>),
}

/// Where the pieces come from.
enum Source {
    Pieces(VecDeque<Bytes>),
    Generator(Box<dyn Iterator<Item = Bytes> + Send>),
}

impl Source {
    fn next(&mut self) -> Option<Bytes> {
        match self {
            Source::Pieces(p) => p.pop_front(),
            Source::Generator(g) => g.next(),
        }
    }
}

/// Anything held until the body is done (a limiter permit, a counter guard).
pub type Guard = Box<dyn Send + Sync>;

pub struct SimBody {
    source: Source,
    exact_len: Option<u64>,
    /// Bytes still to send before `end` applies regardless of the source (`None`: no cut).
    limit: Option<u64>,
    end: End,
    /// Bytes per second (`None`: full speed).
    trickle: Option<u64>,
    /// Absolute offset of a byte to flip.
    corrupt_at: Option<u64>,
    sent: u64,
    pending: Option<Bytes>,
    pause: Option<Pin<Box<tokio::time::Sleep>>>,
    finished: bool,
    failing: bool,
    guards: Vec<Guard>,
}

impl std::fmt::Debug for SimBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimBody")
            .field("exact_len", &self.exact_len)
            .field("sent", &self.sent)
            .finish()
    }
}

/// A short pause before failing, so hyper flushes what was sent (as a real server's
/// partial response reaches the client before the connection drops).
const FLUSH_PAUSE: Duration = Duration::from_millis(30);

impl SimBody {
    fn new(source: Source, exact_len: Option<u64>) -> SimBody {
        SimBody {
            source,
            exact_len,
            limit: None,
            end: End::Clean,
            trickle: None,
            corrupt_at: None,
            sent: 0,
            pending: None,
            pause: None,
            finished: false,
            failing: false,
            guards: Vec::new(),
        }
    }

    pub fn empty() -> SimBody {
        SimBody::new(Source::Pieces(VecDeque::new()), Some(0))
    }

    /// One piece of known length.
    pub fn full(data: impl Into<Bytes>) -> SimBody {
        let data = data.into();
        let len = data.len() as u64;
        SimBody::new(Source::Pieces(VecDeque::from([data])), Some(len))
    }

    /// Pieces of unknown total length (sent chunked unless a Content-Length is set).
    pub fn pieces(pieces: Vec<Bytes>) -> SimBody {
        SimBody::new(Source::Pieces(pieces.into()), None)
    }

    /// Pieces made on demand; `exact_len` when the total is known.
    pub fn generated(
        generator: impl Iterator<Item = Bytes> + Send + 'static,
        exact_len: Option<u64>,
    ) -> SimBody {
        SimBody::new(Source::Generator(Box::new(generator)), exact_len)
    }

    /// Stop after `bytes` bytes and then apply `end`.
    pub fn cut_after(mut self, bytes: u64, end: End) -> SimBody {
        self.limit = Some(bytes);
        self.end = end;
        self
    }

    /// What to do when the pieces run out.
    pub fn ending(mut self, end: End) -> SimBody {
        self.end = end;
        self
    }

    /// Send at `bytes_per_sec` (0 = full speed).
    pub fn trickle(mut self, bytes_per_sec: u64) -> SimBody {
        self.trickle = (bytes_per_sec > 0).then_some(bytes_per_sec);
        self
    }

    /// Flip the byte at `offset` on the way out.
    pub fn corrupt_at(mut self, offset: u64) -> SimBody {
        self.corrupt_at = Some(offset);
        self
    }

    /// Sent without a known length (chunked), whatever the source knows.
    pub fn chunked(mut self) -> SimBody {
        self.exact_len = None;
        self
    }

    /// The length the body is framed with (its Content-Length).
    pub fn sized(mut self, len: u64) -> SimBody {
        self.exact_len = Some(len);
        self
    }

    /// Keep `guard` alive until the body is done.
    pub fn guard(mut self, guard: Guard) -> SimBody {
        self.guards.push(guard);
        self
    }

    pub fn exact_len(&self) -> Option<u64> {
        self.exact_len
    }

    fn poll_pause(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if let Some(pause) = self.pause.as_mut() {
            if pause.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            self.pause = None;
        }
        Poll::Ready(())
    }

    fn finish(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        match &self.end {
            End::Clean => {
                self.finished = true;
                self.guards.clear();
                Poll::Ready(None)
            }
            End::EndlessTrailers(control) => {
                control.endless_trailers.store(true, Ordering::SeqCst);
                self.finished = true;
                self.guards.clear();
                Poll::Ready(None)
            }
            // Never woken: hyper keeps the connection open and waits for us forever.
            End::Stall => Poll::Pending,
            End::Close | End::Reset(_) => {
                self.failing = true;
                self.pause = Some(Box::pin(tokio::time::sleep(FLUSH_PAUSE)));
                // Polled again at once, which registers the pause with the timer.
                cx.waker().wake_by_ref();
                Poll::Pending
            }
        }
    }
}

impl Body for SimBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        if this.finished {
            return Poll::Ready(None);
        }
        if this.poll_pause(cx).is_pending() {
            return Poll::Pending;
        }
        if this.failing {
            this.failing = false;
            this.finished = true;
            if let End::Reset(control) = &this.end {
                control.reset.store(true, Ordering::SeqCst);
            }
            this.guards.clear();
            return Poll::Ready(Some(Err(std::io::Error::other(
                "keepsim: injected fault: body cut short",
            ))));
        }
        let mut piece = match this.pending.take() {
            // The rest of a trickled piece: already counted against the limit.
            Some(p) => p,
            None => {
                if this.limit == Some(0) {
                    return this.finish(cx);
                }
                let Some(mut piece) = this.source.next() else {
                    return this.finish(cx);
                };
                if let Some(limit) = this.limit.as_mut() {
                    if piece.len() as u64 > *limit {
                        piece.truncate(*limit as usize);
                    }
                    *limit -= piece.len() as u64;
                }
                piece
            }
        };
        if let Some(rate) = this.trickle {
            let slice = (rate / 20).max(1) as usize;
            if piece.len() > slice {
                this.pending = Some(piece.split_off(slice));
            }
            let secs = piece.len() as f64 / rate as f64;
            this.pause = Some(Box::pin(tokio::time::sleep(Duration::from_secs_f64(secs))));
        }
        if let Some(at) = this.corrupt_at {
            if at >= this.sent && at < this.sent + piece.len() as u64 {
                let mut bad = piece.to_vec();
                bad[(at - this.sent) as usize] ^= 0xff;
                piece = Bytes::from(bad);
            }
        }
        this.sent += piece.len() as u64;
        if piece.is_empty() {
            // Nothing to send (an empty generator piece): ask to be polled again.
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        Poll::Ready(Some(Ok(Frame::data(piece))))
    }

    fn is_end_stream(&self) -> bool {
        self.finished || (self.exact_len == Some(0) && self.limit.is_none())
    }

    fn size_hint(&self) -> SizeHint {
        match self.exact_len {
            Some(n) => SizeHint::with_exact(n),
            None => SizeHint::default(),
        }
    }
}
