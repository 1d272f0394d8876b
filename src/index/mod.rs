//! Index slices: fetch, parse, sort, merge and diff, one hash prefix at a time, so memory is
//! bounded by one slice and never by the cluster. [`merge`] is the pure half; [`walk`]
//! fetches slices through the keepstore trait; [`shard`] splits the walk across hosts;
//! [`filter`] and [`locators`] narrow it to the blocks a job is about.

pub mod filter;
pub mod layout;
pub mod locators;
pub mod merge;
pub mod shard;
pub mod walk;

pub use merge::{BlockId, SourceBlock};
