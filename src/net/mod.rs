//! The completion-based HTTP/1.1 client. It knows HTTP, not Keep: no locators, no tokens, no
//! services; callers build requests and read bodies.
//!
//! Shape (one of everything per worker thread; nothing here is `Send`):
//! * [`backend`]: which compio driver a worker runs on (`io_uring`, or `epoll` through the
//!   `polling` crate), forced explicitly, and a real io_uring probe.
//! * [`HttpClient`] (`client.rs`): sending a request, one retry of idempotent requests on a
//!   stale pooled connection; `pool.rs`: keep-alive pools per [`Origin`] and the per-origin
//!   connection cap; `pipeline.rs`: opt-in pipelining for small requests.
//! * [`Response`] (`response.rs`): the body is read straight into the caller's buffer
//!   (`read_body_chunk`), in reads of up to 4 MiB, under the idle timeout, the minimum rate
//!   and an optional body limit; the connection goes back to the pool when the body is
//!   complete and is closed if the response is dropped early.
//! * [`framing`]: the sans-IO body decoder (Content-Length, chunked with bounded trailers,
//!   until EOF) that `Response` drives; `limits.rs`: raising RLIMIT_NOFILE.
//! * `conn.rs`: one connection, plain or TLS, with progress-based timeouts that cancel I/O
//!   instead of dropping it; `tls_session.rs`: the TLS session without I/O (rustls's
//!   unbuffered API over the connection's own receive and send buffers, for the handshake);
//!   `tls_records.rs`: TLS 1.3 AES-GCM records sealed and opened by keepmover after it;
//!   `gcm_open.rs`: AES-GCM opened straight into a block buffer's spare capacity (aws-lc's
//!   C AEAD; the TLS code's only `unsafe`).
//! * `head.rs`: request head writing and response head parsing (httparse), pure code.
//! * [`TlsPolicy`] (`tls.rs`): verified against the system roots, or insecure.
//! * [`NetError`]: typed errors naming the origin, with `is_retryable`.

mod backend;
mod client;
mod conn;
mod error;
pub mod framing;
mod gcm_open;
mod head;
mod limits;
mod origin;
mod pipeline;
mod pool;
mod response;
mod tls;
/// Public for the fuzz target only.
#[doc(hidden)]
pub mod tls_records;
mod tls_session;
mod watchdog;

pub use backend::{build_runtime, io_uring_available, IoBackend};
pub use client::{ClientConfig, HeaderValue, HttpClient, Request};
pub use error::{NetError, Phase};
pub use framing::{BodyDecoder, FramingError, FramingLimits, Want};
pub use head::{
    head_step, parse_chunk_size, parse_response_head, write_request_head, BodyFraming, HeadError,
    HeadStep, Method, ParseOutcome, ResponseHead, MAX_INTERIM_FACTOR,
};
pub use limits::{raise_nofile_limit, NofileError};
pub use origin::Origin;
pub use pipeline::PipelinedResponse;
pub use response::Response;
pub use tls::TlsPolicy;
