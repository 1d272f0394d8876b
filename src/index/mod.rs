//! Index slices: fetch, parse, sort, merge and diff, one hash prefix at a time, so memory is
//! bounded by one slice and never by the cluster. [`merge`] is the pure half; [`walk`]
//! fetches slices over the network. For validation and `touch`: [`layout`] (a cluster's
//! mounts, as keep-balance reads them), [`join`] (every destination copy of a slice's blocks)
//! and [`placement`] (what is wrong with a block, pure).

pub mod join;
pub mod layout;
pub mod merge;
pub mod placement;
pub mod walk;

pub use merge::{BlockId, SourceBlock};
