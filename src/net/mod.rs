//! The completion-based HTTP/1.1 client. It knows HTTP, not Keep: connections, pools,
//! framing, timeouts and TLS. Built on compio (io_uring, or epoll where io_uring is
//! unavailable) with owned buffers: a body is read straight into the caller's buffer.

pub mod client;
pub mod error;
pub mod head;
pub mod origin;
pub mod runtime;
pub mod tls;

pub use client::{into_net_error, ClientConfig, HttpClient, Method, Request, Response};
pub use error::{NetError, Phase};
pub use origin::Origin;
pub use runtime::{build_runtime, io_uring_available, IoBackend};
pub use tls::TlsPolicy;
