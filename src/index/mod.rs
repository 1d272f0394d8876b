//! Index slices: fetch, parse, sort, merge and diff, one hash prefix at a time, so memory is
//! bounded by one slice and never by the cluster. [`merge`] is the pure half; [`walk`]
//! fetches slices through the keepstore trait; [`layout`] says what to list (each distinct
//! mount once, as keep-balance reads them); [`shard`] splits the walk across hosts;
//! [`filter`] and [`locators`] narrow it to the blocks a job is about. For validation and
//! `touch`: [`join`] (every destination copy of a slice's blocks) and [`placement`] (what is
//! wrong with a block, pure).

pub mod filter;
pub mod join;
pub mod layout;
pub mod locators;
pub mod merge;
pub mod placement;
pub mod shard;
pub mod walk;

pub use merge::{BlockId, SourceBlock};
