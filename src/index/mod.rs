//! Index slices: fetch, parse, sort, merge and diff, one hash prefix at a time, so memory is
//! bounded by one slice and never by the cluster. [`merge`] is the pure half; [`walk`]
//! fetches slices over the network.

pub mod merge;
pub mod walk;

pub use merge::{BlockId, SourceBlock};
