//! One module per subcommand, plus the shared cluster set-up. Commands orchestrate: they
//! read files and flags' values, build engine configurations, and print results.

pub mod bench;
pub mod demo;
pub mod rsync;
pub mod setup;
