//! The Keep protocol as pure code: no sockets, no files, no clocks read here (callers pass
//! "now" in). Everything in this module is checked against `shared/keep-protocol.md`.

pub mod block;
pub mod discovery;
pub mod index_format;
pub mod locator;
pub mod rendezvous;
pub mod services;
pub mod settings;
pub mod signature;
pub mod wire;

pub use block::{BlockId, ShortLocator};
pub use locator::{BlockHash, Locator};

#[cfg(test)]
mod tests;
