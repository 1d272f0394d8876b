//! How the engine and the index walk reach keepstores: one small trait, [`Keepstores`], with
//! one operation per keepstore endpoint keepmover uses (block GET, HEAD and PUT, index,
//! mounts, pull and trash lists, touch). The engine's rules (retries, next holder, fan-out,
//! replica and class counting) are written against this trait only, so they can be
//! unit-tested over the in-memory [`memory::MemoryKeepstores`] and run for real over
//! [`http::HttpKeepstores`]; the conformance suite (`mover::conformance`) holds both to the
//! same behaviour.
//!
//! One client per worker thread: implementations need not be `Send` (the HTTP one shares a
//! thread-local connection pool); a [`KeepstoresFactory`] makes one for each thread.

pub mod http;
pub mod memory;

use std::sync::Arc;

use bytes::Bytes;

use crate::cluster::Cluster;
use crate::keep::index_format::IndexEntry;
use crate::keep::wire::{self, Answer, MountInfo, PullItem, TrashItem};
use crate::keep::{BlockHash, ShortLocator};
use crate::net::NetError;

/// What went wrong with one request to one server.
#[derive(Debug, thiserror::Error)]
pub enum Cause {
    /// The server answered with a status other than the one wanted.
    #[error("{status} {body}")]
    Status { status: u16, body: String },
    /// The exchange failed in transport (timeouts, resets, bad framing, TLS).
    #[error(transparent)]
    Net(#[from] NetError),
    /// The server sent a block, but not the block: wrong length or MD5.
    #[error("{0}")]
    BadReplica(BadReplica),
    /// The server answered 200 with a body keepmover cannot read (bad index line, JSON).
    #[error("bad answer: {0}")]
    BadAnswer(String),
}

/// How a replica was wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadReplica {
    #[error("Content-Length {got:?} does not match size hint {want}")]
    ContentLength { got: Option<u64>, want: u64 },
    #[error("got {got} bytes, want {want}")]
    Length { got: u64, want: u64 },
    #[error("checksum mismatch: content MD5 is {got}")]
    Checksum { got: BlockHash },
    /// keepstore found its stored copy wrong before sending a byte (502).
    #[error("the server's stored copy is corrupt (502 checksum mismatch in stored data)")]
    Stored,
}

/// The kinds of trouble, for counters, reports and `bench`'s error table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    Timeout,
    Connection,
    Tls,
    Protocol,
    Checksum,
    NotFound,
    Status4xx,
    Status5xx,
    Overload,
    Full,
}

impl ErrorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Timeout => "timeout",
            ErrorKind::Connection => "connection",
            ErrorKind::Tls => "tls",
            ErrorKind::Protocol => "protocol",
            ErrorKind::Checksum => "checksum",
            ErrorKind::NotFound => "not_found",
            ErrorKind::Status4xx => "4xx",
            ErrorKind::Status5xx => "5xx",
            ErrorKind::Overload => "overload",
            ErrorKind::Full => "full",
        }
    }
}

impl std::fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Cause {
    /// keepclient's rule for this server (§6.1 step 6, §6.2): another round, or not.
    pub fn answer(&self) -> Answer {
        match self {
            Cause::Status { status, .. } => wire::classify(*status),
            Cause::Net(e) if e.is_retryable() => Answer::Retry,
            Cause::Net(_) | Cause::BadReplica(_) | Cause::BadAnswer(_) => Answer::Final,
        }
    }

    /// The server is overloaded (503, 429, 408): send it less for a while.
    pub fn is_overload(&self) -> bool {
        matches!(self, Cause::Status { status, .. } if wire::is_overload_status(*status))
    }

    /// The transfer stalled or trickled: try this server last for the rest of the block.
    pub fn is_slow(&self) -> bool {
        matches!(
            self,
            Cause::Net(NetError::Timeout { .. } | NetError::TooSlow { .. })
        )
    }

    /// A signature that expired before the server checked it.
    pub fn is_expired_signature(&self) -> bool {
        matches!(self, Cause::Status { status, body } if wire::is_expired_signature(*status, body.as_bytes()))
    }

    pub fn kind(&self) -> ErrorKind {
        match self {
            Cause::Status { status, .. } => match *status {
                404 | 403 | 410 => ErrorKind::NotFound,
                507 => ErrorKind::Full,
                s if wire::is_overload_status(s) => ErrorKind::Overload,
                s if s >= 500 => ErrorKind::Status5xx,
                _ => ErrorKind::Status4xx,
            },
            Cause::Net(NetError::Timeout { .. } | NetError::TooSlow { .. }) => ErrorKind::Timeout,
            Cause::Net(NetError::Tls { .. }) => ErrorKind::Tls,
            Cause::Net(
                NetError::Connect { .. }
                | NetError::Io { .. }
                | NetError::Closed { .. }
                | NetError::BodyTooShort { .. },
            ) => ErrorKind::Connection,
            Cause::Net(_) | Cause::BadAnswer(_) => ErrorKind::Protocol,
            Cause::BadReplica(_) => ErrorKind::Checksum,
        }
    }
}

/// One failed request: which server, and why.
#[derive(Debug, thiserror::Error)]
#[error("{server} {cause}")]
pub struct Attempt {
    /// The server's origin, as text (`http://host:port`).
    pub server: String,
    pub cause: Cause,
}

impl Attempt {
    pub fn new(cluster: &Cluster, server: usize, cause: Cause) -> Attempt {
        Attempt {
            server: cluster
                .services
                .get(server)
                .map(|s| s.origin.to_string())
                .unwrap_or_default(),
            cause,
        }
    }
}

/// What a PUT's reply confirmed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PutReply {
    /// `X-Keep-Replicas-Stored` (1 when absent).
    pub replicas: u32,
    /// `X-Keep-Storage-Classes-Confirmed`, when the server sent a usable one.
    pub classes: Option<Vec<(String, u32)>>,
    /// The locator the server answered with (signed by it when it has a key): what a
    /// read-back of this replica can use.
    pub locator: String,
}

/// What a PUT asks for.
#[derive(Clone, Debug, Default)]
pub struct PutWants {
    pub replicas: u32,
    /// Storage classes still wanted; shared (usually the job's own list).
    pub classes: Arc<[String]>,
}

/// Where an index listing comes from: a whole server (`/index/`) or one mount.
#[derive(Clone, Copy, Debug)]
pub enum IndexSource<'a> {
    Server,
    Mount(&'a str),
}

/// A block body being received: read chunk by chunk straight into the caller's buffer.
#[allow(async_fn_in_trait)]
pub trait BlockBody {
    /// The declared length, when the server sent one.
    fn content_length(&self) -> Option<u64>;
    /// Appends the next piece to `buf`'s spare capacity. `Ok(0)` = the body is complete.
    async fn read_chunk(&mut self, buf: Vec<u8>) -> (Result<usize, Cause>, Vec<u8>);
}

/// The keepstore operations keepmover uses. `server` indexes `cluster.services`.
#[allow(async_fn_in_trait)]
pub trait Keepstores {
    type Body: BlockBody;

    /// `GET /<locator>`: `Ok` once a 200 head arrived; the body is then read by the caller.
    async fn get_block(
        &self,
        cluster: &Cluster,
        server: usize,
        locator: &str,
    ) -> Result<Self::Body, Cause>;

    /// `HEAD /<locator>`: keepstore reads the block and checks its MD5 before answering 200.
    async fn head_block(
        &self,
        cluster: &Cluster,
        server: usize,
        locator: &str,
    ) -> Result<(), Cause>;

    /// `PUT /<hash>` with `body` (shared, never copied per replica).
    async fn put_block(
        &self,
        cluster: &Cluster,
        server: usize,
        block: &ShortLocator,
        body: Bytes,
        wants: &PutWants,
    ) -> Result<PutReply, Cause>;

    /// An index listing under `prefix`, complete (with keepstore's completion marker) and
    /// checked line by line, appended to `entries`; more than `max_entries` is an error.
    async fn index(
        &self,
        cluster: &Cluster,
        server: usize,
        source: IndexSource<'_>,
        prefix: &str,
        max_entries: usize,
        entries: &mut Vec<IndexEntry>,
    ) -> Result<(), Cause>;

    /// `GET /mounts`.
    async fn mounts(&self, cluster: &Cluster, server: usize) -> Result<Vec<MountInfo>, Cause>;

    /// `PUT /pull`: replaces the server's pull queue.
    async fn send_pull(
        &self,
        cluster: &Cluster,
        server: usize,
        items: &[PullItem],
    ) -> Result<(), Cause>;

    /// `PUT /trash`: replaces the server's trash queue.
    async fn send_trash(
        &self,
        cluster: &Cluster,
        server: usize,
        items: &[TrashItem],
    ) -> Result<(), Cause>;

    /// `TOUCH /<hash+size>`.
    async fn touch(
        &self,
        cluster: &Cluster,
        server: usize,
        short_locator: &str,
    ) -> Result<(), Cause>;
}

/// Makes one [`Keepstores`] client per worker thread.
pub trait KeepstoresFactory: Send + Sync + 'static {
    type Client: Keepstores + 'static;
    fn client(&self) -> Self::Client;
}
