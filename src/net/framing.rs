//! Response body framing as a sans-IO decoder: it is told how the body is delimited
//! (Content-Length, chunked, until EOF), is fed bytes and says what they are (body data,
//! chunk framing, trailers, the end), without touching a socket. `Response` drives it over a
//! connection; unit tests and the `body_decoder` fuzz target drive it over byte slices split
//! anywhere.
//!
//! Every framing line is bounded (`max_line`), and so are the trailers as a whole: their
//! raw bytes (names, values, separators, blank padding and line ends all count) and their
//! number. A server that sends `:\r\n` forever after the last chunk therefore fails after
//! `max_trailer_bytes` bytes instead of holding the request and growing memory. An optional
//! overall body limit makes every framing fail the same typed way when a body runs long.

use crate::net::head::{parse_chunk_size, BodyFraming};

/// Limits of one body's framing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FramingLimits {
    /// Longest chunk-size, chunk-end or trailer line, line end included.
    pub max_line: usize,
    /// All trailer lines together, raw bytes, the final blank line included.
    pub max_trailer_bytes: usize,
    /// Number of trailer lines (blank or not, the final one excluded).
    pub max_trailers: usize,
    /// Body bytes accepted in total (None = no limit beyond the framing).
    pub max_body: Option<u64>,
}

impl Default for FramingLimits {
    fn default() -> Self {
        FramingLimits {
            max_line: 4096,
            max_trailer_bytes: 16 << 10,
            max_trailers: 64,
            max_body: None,
        }
    }
}

/// Why a body's framing is wrong or too large.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FramingError {
    #[error("bad chunk size line: {0}")]
    BadChunkSize(String),
    #[error("chunk data longer than its size")]
    ChunkOverrun,
    #[error("bad trailer line {0:?}")]
    BadTrailer(String),
    #[error("framing line longer than {limit} bytes")]
    LineTooLong { limit: usize },
    #[error("trailers larger than {limit} bytes")]
    TrailersTooLarge { limit: usize },
    #[error("more than {limit} trailer lines")]
    TooManyTrailers { limit: usize },
    #[error("body longer than {limit} bytes")]
    BodyTooLong { limit: u64 },
    #[error("body ended after {got} of {expected} bytes")]
    Truncated { expected: u64, got: u64 },
    #[error("connection closed {0}")]
    Closed(&'static str),
}

/// What the decoder needs next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Want {
    /// Up to this many bytes are body data and may be read straight into the caller's
    /// buffer; report them with [`BodyDecoder::body_read`].
    Body(u64),
    /// Framing bytes: give buffered input to [`BodyDecoder::decode_framing`].
    Framing,
    /// The body is complete.
    Done,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Done,
    Length(u64),
    UntilEof,
    ChunkSize,
    ChunkData(u64),
    ChunkEnd,
    Trailers,
}

/// The framing state of one response body.
#[derive(Debug, Clone)]
pub struct BodyDecoder {
    state: State,
    limits: FramingLimits,
    received: u64,
    declared: Option<u64>,
    trailers: Vec<(String, String)>,
    trailer_bytes: usize,
    trailer_lines: usize,
}

/// Progress of [`BodyDecoder::feed`] over a byte slice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fed {
    /// Input bytes used (framing and data); the rest belongs to whatever follows.
    pub consumed: usize,
    /// The body is complete.
    pub done: bool,
}

impl BodyDecoder {
    pub fn new(framing: BodyFraming, limits: FramingLimits) -> BodyDecoder {
        let (state, declared) = match framing {
            BodyFraming::Empty => (State::Done, None),
            BodyFraming::Length(n) => (State::Length(n), Some(n)),
            BodyFraming::Chunked => (State::ChunkSize, None),
            BodyFraming::UntilEof => (State::UntilEof, None),
        };
        BodyDecoder {
            state,
            limits,
            received: 0,
            declared,
            trailers: Vec::new(),
            trailer_bytes: 0,
            trailer_lines: 0,
        }
    }

    /// Sets (or lowers) the overall body limit. A Content-Length above it fails at once.
    pub fn limit_body(&mut self, limit: u64) -> Result<(), FramingError> {
        let limit = self.limits.max_body.map_or(limit, |l| l.min(limit));
        self.limits.max_body = Some(limit);
        if let State::Length(remaining) = self.state {
            if self.received + remaining > limit {
                self.state = State::Done;
                return Err(FramingError::BodyTooLong { limit });
            }
        }
        if self.received > limit {
            return Err(FramingError::BodyTooLong { limit });
        }
        Ok(())
    }

    pub fn limits(&self) -> &FramingLimits {
        &self.limits
    }

    /// Body bytes delivered so far.
    pub fn received(&self) -> u64 {
        self.received
    }

    /// Trailer fields (complete once the body is).
    pub fn trailers(&self) -> &[(String, String)] {
        &self.trailers
    }

    pub fn take_trailers(&mut self) -> Vec<(String, String)> {
        std::mem::take(&mut self.trailers)
    }

    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Whether the body runs until the connection closes.
    pub fn until_eof(&self) -> bool {
        self.state == State::UntilEof
    }

    /// What comes next. Body reads are capped so a body past its limit is noticed after at
    /// most one byte too many.
    pub fn want(&self) -> Want {
        let room = self.limits.max_body.map_or(u64::MAX, |l| {
            l.saturating_sub(self.received).saturating_add(1)
        });
        match self.state {
            State::Done => Want::Done,
            State::Length(n) | State::ChunkData(n) => Want::Body(n.min(room)),
            State::UntilEof => Want::Body(room),
            State::ChunkSize | State::ChunkEnd | State::Trailers => Want::Framing,
        }
    }

    /// Records `n` body bytes delivered (at most what [`want`](Self::want) allowed).
    pub fn body_read(&mut self, n: u64) -> Result<(), FramingError> {
        self.received += n;
        match &mut self.state {
            State::Length(remaining) => {
                *remaining = remaining.saturating_sub(n);
                if *remaining == 0 {
                    self.state = State::Done;
                }
            }
            State::ChunkData(remaining) => {
                *remaining = remaining.saturating_sub(n);
                if *remaining == 0 {
                    self.state = State::ChunkEnd;
                }
            }
            _ => {}
        }
        if let Some(limit) = self.limits.max_body {
            if self.received > limit {
                self.state = State::Done;
                return Err(FramingError::BodyTooLong { limit });
            }
        }
        Ok(())
    }

    /// The peer closed the connection. Fine only for a body delimited by EOF (or one that
    /// was already complete).
    pub fn eof(&mut self) -> Result<(), FramingError> {
        let state = std::mem::replace(&mut self.state, State::Done);
        match state {
            State::Done | State::UntilEof => Ok(()),
            State::Length(remaining) => Err(FramingError::Truncated {
                expected: self.declared.unwrap_or(0).max(self.received + remaining),
                got: self.received,
            }),
            State::ChunkData(_) => Err(FramingError::Closed("in the middle of a chunk")),
            _ => Err(FramingError::Closed("before the end of the chunked body")),
        }
    }

    /// Consumes complete framing lines from the start of `input` until the decoder wants
    /// body data, is done, or needs more bytes. Returns the bytes consumed (0 = feed more,
    /// after checking that `input` is not already longer than a line may be).
    pub fn decode_framing(&mut self, input: &[u8]) -> Result<usize, FramingError> {
        let mut consumed = 0;
        while matches!(
            self.state,
            State::ChunkSize | State::ChunkEnd | State::Trailers
        ) {
            let rest = &input[consumed..];
            let Some(lf) = rest.iter().position(|&b| b == b'\n') else {
                if rest.len() >= self.limits.max_line {
                    return Err(FramingError::LineTooLong {
                        limit: self.limits.max_line,
                    });
                }
                self.check_trailer_budget(rest.len())?;
                break;
            };
            if lf + 1 > self.limits.max_line {
                return Err(FramingError::LineTooLong {
                    limit: self.limits.max_line,
                });
            }
            let raw = &rest[..lf];
            let line = raw.strip_suffix(b"\r").unwrap_or(raw);
            self.line(line, lf + 1)?;
            consumed += lf + 1;
        }
        Ok(consumed)
    }

    /// A pending partial trailer line must fit the budget too (it is buffered).
    fn check_trailer_budget(&self, pending: usize) -> Result<(), FramingError> {
        if self.state == State::Trailers
            && self.trailer_bytes + pending > self.limits.max_trailer_bytes
        {
            return Err(FramingError::TrailersTooLarge {
                limit: self.limits.max_trailer_bytes,
            });
        }
        Ok(())
    }

    fn line(&mut self, line: &[u8], raw_len: usize) -> Result<(), FramingError> {
        match self.state {
            State::ChunkSize => {
                let size = parse_chunk_size(line).map_err(FramingError::BadChunkSize)?;
                self.state = if size == 0 {
                    State::Trailers
                } else {
                    State::ChunkData(size)
                };
            }
            State::ChunkEnd => {
                if !line.is_empty() {
                    return Err(FramingError::ChunkOverrun);
                }
                self.state = State::ChunkSize;
            }
            State::Trailers => {
                self.trailer_bytes += raw_len;
                if self.trailer_bytes > self.limits.max_trailer_bytes {
                    return Err(FramingError::TrailersTooLarge {
                        limit: self.limits.max_trailer_bytes,
                    });
                }
                if line.is_empty() {
                    self.state = State::Done;
                    return Ok(());
                }
                self.trailer_lines += 1;
                if self.trailer_lines > self.limits.max_trailers {
                    return Err(FramingError::TooManyTrailers {
                        limit: self.limits.max_trailers,
                    });
                }
                let text = String::from_utf8_lossy(line);
                let (name, value) = text
                    .split_once(':')
                    .ok_or_else(|| FramingError::BadTrailer(text.to_string()))?;
                let name = name.trim();
                // An empty name (`:\r\n`) is no field: counted, not kept.
                if !name.is_empty() {
                    self.trailers
                        .push((name.to_string(), value.trim().to_string()));
                }
            }
            State::Done | State::Length(_) | State::UntilEof | State::ChunkData(_) => {}
        }
        Ok(())
    }

    /// Decodes as much of `input` as possible, appending body data to `out`: the whole
    /// decoder over an in-memory stream. Call again with the unconsumed rest plus more bytes.
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<Fed, FramingError> {
        let mut pos = 0;
        loop {
            match self.want() {
                Want::Done => {
                    return Ok(Fed {
                        consumed: pos,
                        done: true,
                    })
                }
                Want::Body(max) => {
                    let n = (input.len() - pos).min(usize::try_from(max).unwrap_or(usize::MAX));
                    if n == 0 {
                        return Ok(Fed {
                            consumed: pos,
                            done: false,
                        });
                    }
                    out.extend_from_slice(&input[pos..pos + n]);
                    pos += n;
                    self.body_read(n as u64)?;
                }
                Want::Framing => {
                    let used = self.decode_framing(&input[pos..])?;
                    if used == 0 {
                        return Ok(Fed {
                            consumed: pos,
                            done: false,
                        });
                    }
                    pos += used;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_split(framing: BodyFraming, wire: &[u8], splits: &[usize]) -> (Vec<u8>, usize) {
        let mut decoder = BodyDecoder::new(framing, FramingLimits::default());
        let mut out = Vec::new();
        let mut pending: Vec<u8> = Vec::new();
        let mut fed = 0;
        let mut consumed_total = 0;
        let mut cuts: Vec<usize> = splits.to_vec();
        cuts.push(wire.len());
        for cut in cuts {
            pending.extend_from_slice(&wire[fed..cut]);
            fed = cut;
            let step = decoder.feed(&pending, &mut out).expect("valid body");
            pending.drain(..step.consumed);
            consumed_total += step.consumed;
            if step.done {
                return (out, consumed_total);
            }
        }
        panic!("not complete");
    }

    const CHUNKED: &[u8] = b"4\r\n0123\r\na;x=y\r\n456789abcd\r\n0\r\nX-T: t\r\n\r\nNEXT";

    #[test]
    fn chunked_at_every_split() {
        for a in 0..CHUNKED.len() {
            for b in a..CHUNKED.len() {
                let (body, used) = decode_split(BodyFraming::Chunked, CHUNKED, &[a, b]);
                assert_eq!(body, b"0123456789abcd", "split {a},{b}");
                assert_eq!(used, CHUNKED.len() - 4, "the next response is left alone");
            }
        }
    }

    #[test]
    fn content_length_stops_at_its_length() {
        let (body, used) = decode_split(BodyFraming::Length(5), b"helloHTTP/1.1", &[2]);
        assert_eq!((body.as_slice(), used), (&b"hello"[..], 5));
    }

    #[test]
    fn endless_trailers_fail_within_the_budget() {
        let mut decoder = BodyDecoder::new(BodyFraming::Chunked, FramingLimits::default());
        let mut out = Vec::new();
        let step = decoder.feed(b"0\r\n", &mut out).expect("last chunk");
        assert!(!step.done);
        let mut total = 0usize;
        let err = loop {
            match decoder.feed(b":\r\n:\r\n:\r\n:\r\n", &mut out) {
                Ok(step) => total += step.consumed,
                Err(e) => break e,
            }
            assert!(total < 1 << 20, "never failed");
        };
        assert!(
            matches!(
                err,
                FramingError::TooManyTrailers { .. } | FramingError::TrailersTooLarge { .. }
            ),
            "{err:?}"
        );
        assert!(decoder.trailers().is_empty(), "empty names are not kept");
        // Raw bytes count, not trimmed names: padding alone exhausts the byte budget.
        let mut decoder = BodyDecoder::new(
            BodyFraming::Chunked,
            FramingLimits {
                max_trailers: usize::MAX,
                ..FramingLimits::default()
            },
        );
        decoder.feed(b"0\r\n", &mut out).expect("last chunk");
        let line = format!("a:{}\r\n", " ".repeat(1000));
        let err = loop {
            if let Err(e) = decoder.feed(line.as_bytes(), &mut out) {
                break e;
            }
        };
        assert_eq!(err, FramingError::TrailersTooLarge { limit: 16 << 10 });
        // A partial trailer line that never ends is bounded by the line limit.
        let mut decoder = BodyDecoder::new(BodyFraming::Chunked, FramingLimits::default());
        decoder.feed(b"0\r\n", &mut out).expect("last chunk");
        let long = vec![b'x'; 5000];
        assert_eq!(
            decoder.feed(&long, &mut out),
            Err(FramingError::LineTooLong { limit: 4096 })
        );
    }

    #[test]
    fn long_size_lines_fail() {
        let mut decoder = BodyDecoder::new(BodyFraming::Chunked, FramingLimits::default());
        let mut line = vec![b'0'; 5000];
        line.extend_from_slice(b"\r\n");
        assert_eq!(
            decoder.feed(&line, &mut Vec::new()),
            Err(FramingError::LineTooLong { limit: 4096 })
        );
    }

    #[test]
    fn body_limit_applies_to_every_framing() {
        let limits = FramingLimits {
            max_body: Some(4),
            ..FramingLimits::default()
        };
        for (framing, wire) in [
            (
                BodyFraming::Chunked,
                &b"3\r\nabc\r\n3\r\ndef\r\n0\r\n\r\n"[..],
            ),
            (BodyFraming::UntilEof, &b"abcdef"[..]),
        ] {
            let mut decoder = BodyDecoder::new(framing, limits);
            let mut out = Vec::new();
            assert_eq!(
                decoder.feed(wire, &mut out),
                Err(FramingError::BodyTooLong { limit: 4 })
            );
            assert!(out.len() <= 5, "{framing:?}: at most one byte over");
        }
        let mut decoder = BodyDecoder::new(BodyFraming::Length(10), FramingLimits::default());
        assert_eq!(
            decoder.limit_body(4),
            Err(FramingError::BodyTooLong { limit: 4 })
        );
        let mut decoder = BodyDecoder::new(BodyFraming::Length(4), FramingLimits::default());
        assert_eq!(decoder.limit_body(4), Ok(()));
    }

    #[test]
    fn eof_rules() {
        let mut d = BodyDecoder::new(BodyFraming::Length(10), FramingLimits::default());
        d.body_read(4).expect("read");
        assert_eq!(
            d.eof(),
            Err(FramingError::Truncated {
                expected: 10,
                got: 4
            })
        );
        let mut d = BodyDecoder::new(BodyFraming::UntilEof, FramingLimits::default());
        assert_eq!(d.eof(), Ok(()));
        assert!(d.is_done());
    }
}
