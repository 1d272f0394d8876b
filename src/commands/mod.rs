//! One module per subcommand, plus what they share: cluster set-up from settings files and
//! signal handling. Commands orchestrate: they read files and the typed options `cli` built,
//! run the engine with the sinks they want, and print results.

pub mod bench;
#[cfg(feature = "demo")]
pub mod demo;
pub mod moves;
pub mod pull;
pub mod rsync;
pub mod setup;
pub mod signals;
