//! The copy engine: tasks, worker threads, the buffer pool, replica fan-out and checkpoints.
//! It knows neither argv nor terminals: `commands` builds an [`EngineConfig`] and reads the
//! counters in [`crate::report::Progress`].

pub mod checkpoint;
pub mod cluster;
pub mod engine;
pub mod hash_batch;
pub mod pool;
pub mod transfer;

pub use cluster::{Cluster, Service};
pub use engine::{default_http_config, run, EngineConfig, EngineError, RunReport};
pub use transfer::{Signing, TransferContext};
