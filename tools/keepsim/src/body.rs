//! A response body that can be whole, streamed in pieces (chunked, like keepstore's index),
//! or cut short with an error so hyper drops the connection mid-body (fault injection).

use std::collections::VecDeque;

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};

#[derive(Debug)]
pub struct SimBody {
    pieces: VecDeque<Bytes>,
    /// After the pieces, fail instead of ending cleanly.
    fail_at_end: bool,
    exact_len: Option<u64>,
    /// A short pause before failing, so hyper flushes what was sent (as a real server's
    /// partial response reaches the client before the connection drops).
    pause: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl SimBody {
    pub fn empty() -> SimBody {
        SimBody {
            pieces: VecDeque::new(),
            fail_at_end: false,
            exact_len: Some(0),
            pause: None,
        }
    }

    pub fn full(data: impl Into<Bytes>) -> SimBody {
        let data = data.into();
        let len = data.len() as u64;
        SimBody {
            pieces: VecDeque::from([data]),
            fail_at_end: false,
            exact_len: Some(len),
            pause: None,
        }
    }

    /// Streamed without a known length (sent chunked).
    pub fn pieces(pieces: Vec<Bytes>, fail_at_end: bool) -> SimBody {
        SimBody {
            pieces: pieces.into(),
            fail_at_end,
            exact_len: None,
            pause: None,
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
        match self.pieces.pop_front() {
            Some(piece) => Poll::Ready(Some(Ok(Frame::data(piece)))),
            None if self.fail_at_end => {
                let pause = self.pause.get_or_insert_with(|| {
                    Box::pin(tokio::time::sleep(std::time::Duration::from_millis(30)))
                });
                if pause.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                self.fail_at_end = false;
                Poll::Ready(Some(Err(std::io::Error::other(
                    "keepsim: injected fault: body cut short",
                ))))
            }
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.pieces.is_empty() && !self.fail_at_end
    }

    fn size_hint(&self) -> SizeHint {
        match self.exact_len {
            Some(n) => SizeHint::with_exact(n),
            None => SizeHint::default(),
        }
    }
}
