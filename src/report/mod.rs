//! What the user sees: keep-rsync's log lines when stderr is not a terminal, a live progress
//! bar when it is, and the final summary. The engine only bumps counters in [`Progress`];
//! this module decides how to show them.

pub mod plot;

use std::io::{IsTerminal, Write as _};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::gocompat::duration::format_go_duration;

/// Prints one line in Go `log` format to stderr.
pub fn log_line(message: &str) {
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "{} {message}", crate::gocompat::log_timestamp());
}

/// How progress is shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Display {
    /// keep-rsync's per-block log lines.
    Log,
    /// A live bar (indicatif).
    Bar,
    /// Nothing but errors and the summary (used by the demo's inner steps and tests).
    Quiet,
}

impl Display {
    /// `Bar` on a terminal, `Log` otherwise.
    pub fn auto() -> Display {
        if std::io::stderr().is_terminal() {
            Display::Bar
        } else {
            Display::Log
        }
    }
}

/// Counters shared by the engine's threads; everything the display and summary need.
#[derive(Debug)]
pub struct Progress {
    pub display: Display,
    started: Instant,
    /// Blocks to copy, when known (after the counting pass).
    pub total_blocks: AtomicU64,
    pub total_bytes: AtomicU64,
    pub dispatched: AtomicU64,
    pub copied_blocks: AtomicU64,
    pub copied_bytes: AtomicU64,
    pub failed_blocks: AtomicU64,
    /// Blocks fetched again after a bad source replica (wrong length or MD5).
    pub refetched: AtomicU64,
    /// Request-level errors that were retried or worked around.
    pub errors: AtomicU64,
    pub in_flight: AtomicU64,
    /// Blocks already present on the destination.
    pub skipped_blocks: AtomicU64,
    finished: AtomicBool,
    bar: Mutex<Option<indicatif::ProgressBar>>,
}

impl Progress {
    pub fn new(display: Display) -> Arc<Progress> {
        Arc::new(Progress {
            display,
            started: Instant::now(),
            total_blocks: AtomicU64::new(0),
            total_bytes: AtomicU64::new(0),
            dispatched: AtomicU64::new(0),
            copied_blocks: AtomicU64::new(0),
            copied_bytes: AtomicU64::new(0),
            failed_blocks: AtomicU64::new(0),
            refetched: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            in_flight: AtomicU64::new(0),
            skipped_blocks: AtomicU64::new(0),
            finished: AtomicBool::new(false),
            bar: Mutex::new(None),
        })
    }

    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// keep-rsync's opening line, then the bar if one is wanted.
    pub fn announce(&self, src_blocks: u64, dst_blocks: u64, to_copy: u64, to_copy_bytes: u64) {
        self.total_blocks.store(to_copy, Relaxed);
        self.total_bytes.store(to_copy_bytes, Relaxed);
        if self.display == Display::Quiet {
            return;
        }
        log_line(&format!(
            "Before keep-rsync, there are {src_blocks} blocks in src and {dst_blocks} blocks in dst. Start copying {to_copy} blocks from src not found in dst."
        ));
        if self.display == Display::Bar {
            self.start_bar(to_copy_bytes);
        }
    }

    fn start_bar(&self, length: u64) {
        let bar = indicatif::ProgressBar::new(length);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{elapsed_precise} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} ETA {eta} {msg}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        bar.enable_steady_tick(Duration::from_millis(200));
        if let Ok(mut slot) = self.bar.lock() {
            *slot = Some(bar);
        }
    }

    /// `-skip-count`: no totals yet; they grow as the walk finds blocks.
    pub fn announce_uncounted(&self) {
        if self.display == Display::Quiet {
            return;
        }
        log_line("Before keep-rsync, counting skipped (-skip-count): copying blocks from src not found in dst as the walk finds them; totals below are those found so far.");
        if self.display == Display::Bar {
            self.start_bar(0);
        }
    }

    /// `-skip-count`: the walk found `blocks` more to copy.
    pub fn found_more(&self, blocks: u64, bytes: u64) {
        self.total_blocks.fetch_add(blocks, Relaxed);
        self.total_bytes.fetch_add(bytes, Relaxed);
        self.update_bar();
    }

    /// Called when a worker starts a block: keep-rsync's `Copying data block` line.
    pub fn block_started(&self, locator_short: &str) {
        let number = self.dispatched.fetch_add(1, Relaxed) + 1;
        self.in_flight.fetch_add(1, Relaxed);
        if self.display != Display::Log {
            return;
        }
        let total = self.total_blocks.load(Relaxed).max(number);
        let done = self.copied_blocks.load(Relaxed) + self.failed_blocks.load(Relaxed);
        let percent = done as f64 / total as f64 * 100.0;
        if done == 0 {
            log_line(&format!(
                "Copying data block {number} of {total} ({percent:.2}% done): {locator_short}"
            ));
        } else {
            let per_block = self.elapsed().as_secs_f64() / done as f64;
            let remaining = Duration::from_millis(
                (per_block * total.saturating_sub(done) as f64 * 1000.0) as u64,
            );
            log_line(&format!(
                "Copying data block {number} of {total} ({percent:.2}% done, {} est. time remaining): {locator_short}",
                format_go_duration(remaining)
            ));
        }
    }

    pub fn block_copied(&self, bytes: u64) {
        self.copied_blocks.fetch_add(1, Relaxed);
        self.copied_bytes.fetch_add(bytes, Relaxed);
        self.in_flight.fetch_sub(1, Relaxed);
        self.update_bar();
    }

    pub fn block_failed(&self, locator_short: &str, error: &str) {
        self.failed_blocks.fetch_add(1, Relaxed);
        self.in_flight.fetch_sub(1, Relaxed);
        let message = format!("Error copying data block: {locator_short} {error}");
        self.println(&message);
        self.update_bar();
    }

    /// A recoverable problem worth a line (a bad replica, a retried server).
    pub fn warn(&self, message: &str) {
        self.errors.fetch_add(1, Relaxed);
        if self.display != Display::Quiet {
            self.println(message);
        }
    }

    fn println(&self, message: &str) {
        let guard = self.bar.lock().ok();
        match guard.as_ref().and_then(|g| g.as_ref()) {
            Some(bar) => bar.println(format!("{} {message}", crate::gocompat::log_timestamp())),
            None => log_line(message),
        }
    }

    fn update_bar(&self) {
        if let Ok(guard) = self.bar.lock() {
            if let Some(bar) = guard.as_ref() {
                bar.set_length(self.total_bytes.load(Relaxed));
                bar.set_position(self.copied_bytes.load(Relaxed));
                let copied = self.copied_blocks.load(Relaxed);
                let per_sec = copied as f64 / self.elapsed().as_secs_f64().max(1e-3);
                bar.set_message(format!(
                    "{}/{} blocks ({per_sec:.0}/s), {} in flight, {} failed, {} errors",
                    copied,
                    self.total_blocks.load(Relaxed),
                    self.in_flight.load(Relaxed),
                    self.failed_blocks.load(Relaxed),
                    self.errors.load(Relaxed)
                ));
            }
        }
    }

    /// Stops the bar and returns the summary of the run.
    pub fn finish(&self) -> Summary {
        if !self.finished.swap(true, Relaxed) {
            if let Ok(mut guard) = self.bar.lock() {
                if let Some(bar) = guard.take() {
                    bar.finish_and_clear();
                }
            }
        }
        Summary {
            copied_blocks: self.copied_blocks.load(Relaxed),
            copied_bytes: self.copied_bytes.load(Relaxed),
            skipped_blocks: self.skipped_blocks.load(Relaxed),
            failed_blocks: self.failed_blocks.load(Relaxed),
            refetched: self.refetched.load(Relaxed),
            errors: self.errors.load(Relaxed),
            elapsed: self.elapsed(),
        }
    }
}

/// The end-of-run figures.
#[derive(Clone, Debug, PartialEq)]
pub struct Summary {
    pub copied_blocks: u64,
    pub copied_bytes: u64,
    pub skipped_blocks: u64,
    pub failed_blocks: u64,
    pub refetched: u64,
    pub errors: u64,
    pub elapsed: Duration,
}

impl Summary {
    pub fn throughput_mb_s(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64().max(1e-9);
        self.copied_bytes as f64 / 1e6 / secs
    }

    /// The human summary printed after keep-rsync's closing line.
    pub fn render(&self) -> String {
        let secs = self.elapsed.as_secs_f64().max(1e-9);
        format!(
            "Summary: copied {} blocks ({}), skipped {} already present, failed {}, re-fetched {} after bad replicas, {} retried errors; {:.1}s, {:.1} MB/s, {:.0} blocks/s",
            self.copied_blocks,
            human_bytes(self.copied_bytes),
            self.skipped_blocks,
            self.failed_blocks,
            self.refetched,
            self.errors,
            secs,
            self.throughput_mb_s(),
            self.copied_blocks as f64 / secs
        )
    }
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
