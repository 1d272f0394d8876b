//! Errors of the HTTP layer. Each names the origin it concerns; none carries request headers
//! (they hold tokens).

/// Which wait ran out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    Connect,
    FirstByte,
    Idle,
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Phase::Connect => "connect",
            Phase::FirstByte => "first byte",
            Phase::Idle => "idle",
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("connecting to {origin}: {source}")]
    Connect {
        origin: String,
        source: std::io::Error,
    },
    #[error("TLS with {origin}: {source}")]
    Tls {
        origin: String,
        source: std::io::Error,
    },
    #[error("{origin}: timed out ({phase} timeout)")]
    Timeout { origin: String, phase: Phase },
    #[error("{origin}: {source}")]
    Io {
        origin: String,
        source: std::io::Error,
    },
    #[error("{origin}: bad response: {detail}")]
    BadResponse { origin: String, detail: String },
    #[error("{origin}: response head larger than {limit} bytes")]
    HeadTooLarge { origin: String, limit: usize },
    #[error("{origin}: body ended after {got} of {expected} bytes")]
    BodyTooShort {
        origin: String,
        expected: u64,
        got: u64,
    },
    #[error("{origin}: body larger than {limit} bytes")]
    BodyTooLong { origin: String, limit: u64 },
    #[error("{origin}: bad chunked encoding: {detail}")]
    BadChunk { origin: String, detail: String },
    #[error("{origin}: connection closed before a response")]
    Closed { origin: String },
}

impl NetError {
    /// Whether trying again (on a fresh connection, or later) could help.
    pub fn is_retryable(&self) -> bool {
        !matches!(
            self,
            NetError::HeadTooLarge { .. } | NetError::BodyTooLong { .. }
        )
    }
}
