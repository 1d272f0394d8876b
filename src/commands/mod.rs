//! One module per subcommand, plus what they share: cluster set-up from settings files and
//! signal handling, and the `-listen` endpoint with its clients (`status`, `ctl`). Commands orchestrate: they read files and the typed options `cli` built,
//! run the engine with the sinks they want, and print results.

pub mod bench;
#[cfg(feature = "demo")]
pub mod demo;
pub mod listen;
pub mod moves;
pub mod plan;
pub mod preflight;
pub mod pull;
pub mod report;
pub mod rsync;
pub mod setup;
pub mod signals;
pub mod status;
pub mod touch;
pub mod validate;
