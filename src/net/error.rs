//! The net layer's typed errors. Every variant names the origin it concerns, so a caller can
//! print one clear line; `is_retryable` separates transport trouble (worth another attempt,
//! maybe on another server) from answers that will not change.

use std::fmt;
use std::io;

use crate::net::origin::Origin;

/// Which wait ran out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Phase {
    /// TCP connect plus TLS handshake.
    Connect,
    /// From the request fully sent to the response head received.
    FirstByte,
    /// No byte moved for too long while sending or receiving a body.
    Idle,
    /// A body moved, but below the minimum rate (reported as [`NetError::TooSlow`]).
    TooSlow,
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Phase::Connect => "connect",
            Phase::FirstByte => "waiting for the response head",
            Phase::Idle => "no progress",
            Phase::TooSlow => "below the minimum rate",
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("{origin}: connect failed: {source}")]
    Connect {
        origin: Origin,
        #[source]
        source: io::Error,
    },
    #[error("{origin}: TLS: {detail}")]
    Tls { origin: Origin, detail: String },
    #[error("{origin}: timed out ({phase})")]
    Timeout { origin: Origin, phase: Phase },
    #[error("{origin}: I/O error: {source}")]
    Io {
        origin: Origin,
        #[source]
        source: io::Error,
    },
    #[error("{origin}: bad response: {detail}")]
    BadResponse { origin: Origin, detail: String },
    #[error("{origin}: response head larger than {limit} bytes")]
    HeadTooLarge { origin: Origin, limit: usize },
    #[error("{origin}: response body too short: expected {expected} bytes, got {got}")]
    BodyTooShort {
        origin: Origin,
        expected: u64,
        got: u64,
    },
    #[error("{origin}: response body longer than {limit} bytes")]
    BodyTooLong { origin: Origin, limit: u64 },
    #[error("{origin}: bad chunked encoding: {detail}")]
    BadChunk { origin: Origin, detail: String },
    #[error("{origin}: connection closed {detail}")]
    Closed {
        origin: Origin,
        detail: &'static str,
    },
    #[error("{origin}: invalid request: {detail}")]
    InvalidRequest { origin: Origin, detail: String },
    /// A transfer fell below `ClientConfig::min_rate` (bytes/s) on average.
    #[error("{origin}: transfer too slow (below {min_rate} bytes/s)")]
    TooSlow { origin: Origin, min_rate: u64 },
    /// Chunk framing lines or trailers beyond their budget.
    #[error("{origin}: response framing too large: {detail}")]
    FramingTooLarge { origin: Origin, detail: String },
}

impl NetError {
    /// Transport trouble that another attempt may not meet: connect failures, timeouts, I/O
    /// errors, connections closed early, truncated bodies. Protocol violations, oversize
    /// answers, TLS failures (certificates) and invalid requests are not retryable.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            NetError::Connect { .. }
                | NetError::Timeout { .. }
                | NetError::TooSlow { .. }
                | NetError::Io { .. }
                | NetError::Closed { .. }
                | NetError::BodyTooShort { .. }
        )
    }

    /// The origin the error concerns.
    pub fn origin(&self) -> &Origin {
        match self {
            NetError::Connect { origin, .. }
            | NetError::Tls { origin, .. }
            | NetError::Timeout { origin, .. }
            | NetError::Io { origin, .. }
            | NetError::BadResponse { origin, .. }
            | NetError::HeadTooLarge { origin, .. }
            | NetError::BodyTooShort { origin, .. }
            | NetError::BodyTooLong { origin, .. }
            | NetError::BadChunk { origin, .. }
            | NetError::Closed { origin, .. }
            | NetError::InvalidRequest { origin, .. }
            | NetError::TooSlow { origin, .. }
            | NetError::FramingTooLarge { origin, .. } => origin,
        }
    }

    /// Recovers the `NetError` carried by an `io::Error` from
    /// [`Response::read_body_chunk`](crate::net::Response::read_body_chunk); an `io::Error`
    /// that carries none is returned unchanged.
    pub fn from_io(err: io::Error) -> Result<NetError, io::Error> {
        if err.get_ref().is_some_and(|inner| inner.is::<NetError>()) {
            match err.into_inner().map(|inner| inner.downcast::<NetError>()) {
                Some(Ok(net)) => Ok(*net),
                // Unreachable given the check above; keep a plain error rather than panic.
                _ => Err(io::Error::other("lost network error")),
            }
        } else {
            Err(err)
        }
    }

    /// A copy of a timeout-like error (the variants a timed-out connection keeps
    /// reporting); anything else becomes `Closed`.
    pub(crate) fn clone_kind(&self) -> NetError {
        match self {
            NetError::Timeout { origin, phase } => NetError::Timeout {
                origin: origin.clone(),
                phase: *phase,
            },
            NetError::TooSlow { origin, min_rate } => NetError::TooSlow {
                origin: origin.clone(),
                min_rate: *min_rate,
            },
            other => NetError::Closed {
                origin: other.origin().clone(),
                detail: "after an earlier failure",
            },
        }
    }

    fn io_kind(&self) -> io::ErrorKind {
        match self {
            NetError::Timeout { .. } | NetError::TooSlow { .. } => io::ErrorKind::TimedOut,
            NetError::BodyTooShort { .. } | NetError::Closed { .. } => io::ErrorKind::UnexpectedEof,
            NetError::Io { source, .. } | NetError::Connect { source, .. } => source.kind(),
            _ => io::ErrorKind::InvalidData,
        }
    }
}

impl From<NetError> for io::Error {
    fn from(err: NetError) -> io::Error {
        io::Error::new(err.io_kind(), err)
    }
}
