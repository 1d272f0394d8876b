//! The copy engine: the walk, worker threads, the buffer pool, MD5 in lanes, replica fan-out,
//! retries, per-server manners, checkpoints and live control. It knows neither argv nor
//! terminals: `commands` builds a [`Run`]; the engine reports through [`events`] and
//! [`counters`] only, and reaches keepstores through [`crate::keepstore::Keepstores`].
//! [`validate`] is the read-only twin of the copy: the same walk and read path, no writes.

pub mod checkpoint;
pub mod conformance;
pub mod control;
pub mod counters;
pub mod engine;
pub mod events;
pub mod gates;
pub mod hash_batch;
pub mod pool;
pub mod pull;
pub mod retry;
pub mod slices;
pub mod transfer;
pub mod trash;
pub mod validate;
pub mod window;

pub use control::{Control, StopReason};
pub use counters::{Counters, Snapshot};
pub use engine::{
    default_workers, run, run_with, Counting, EngineConfig, EngineError, Run, RunReport,
    WorkerError,
};
pub use events::{Event, EventSink};
pub use retry::RetryPolicy;
pub use transfer::{Job, Signing};
