//! What people and programs see of a run: sinks for the engine's events and views of its
//! counters. Nothing here counts for itself; every figure comes from the engine's counters.
//!
//! * [`terminal`]: keep-rsync's log lines when stderr is not a terminal, a live bar when it is.
//! * [`blocks`]: `-report FILE.jsonl`, one line per block, written as the run goes.
//! * [`summary`]: the closing summary line and the `-json FILE` document.
//! * [`merge`]: the `-json` documents of a plan's shards added up (`report merge`).
//! * [`plot`]: SVG pictures for `bench`.
//! * [`validate`]: `validate`'s files (rclone check's lists, `-report`), log lines and summary.
//! * [`status`]: the live state behind `/status`, SIGUSR1 and `keepmover status`.
//! * [`metrics`]: the Prometheus exposition behind `/metrics`.

pub mod blocks;
pub mod merge;
pub mod metrics;
pub mod plot;
pub mod status;
pub mod summary;
pub mod terminal;
pub mod validate;

use std::io::Write as _;

/// Prints one line in Go `log` format to stderr.
pub fn log_line(message: &str) {
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "{} {message}", crate::gocompat::log_timestamp());
}

/// `1.5 GiB`-style sizes for people.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_sizes() {
        assert_eq!(human_bytes(10), "10 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(64 << 20), "64.0 MiB");
    }
}
