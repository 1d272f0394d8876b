//! keepmover moves Arvados Keep blocks between clusters, or between the keepstores of one
//! cluster, as fast as the wire and MD5 allow, with memory that stays flat however many
//! blocks there are. The binary (`src/main.rs`) is a thin layer over these modules:
//!
//! * [`keep`]: the Keep protocol as pure code (locators, signatures, rendezvous, settings).
//! * [`hash`]: MD5, scalar and multi-lane SIMD, chosen at run time.
//! * [`net`]: the completion-based HTTP/1.1 client; it knows HTTP, not Keep.
//! * [`index`]: fetching, sorting, merging and diffing index slices.
//! * [`mover`]: the copy engine (tasks, workers, buffer pool, fan-out, checkpoint).
//! * [`cluster`]: a discovered cluster (services, token), below both `index` and `mover`.
//! * [`keepstore`]: the trait through which the walk and the engine reach keepstores, with
//!   its HTTP implementation and an in-memory fake.
//! * [`gocompat`]: Go's flag parser, durations and log timestamps (keep-rsync compatibility).
//! * [`cli`], [`commands`], [`report`], [`exit`]: argv, subcommands, what the user sees, and
//!   the one exit-code table.

pub mod cli;
pub mod cluster;
pub mod commands;
pub mod exit;
pub mod gocompat;
pub mod index;
pub mod keepstore;
pub mod mover;
pub mod net;
pub mod report;
pub mod units;

pub use keep_proto::{hash, keep};
