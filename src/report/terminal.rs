//! The terminal view of a run. Without a terminal (cron, logs) it prints keep-rsync's lines,
//! byte for byte, so existing log parsers keep working; on a terminal it draws a live bar
//! (indicatif) with the same numbers and prints only problems above it.

use std::fmt::Write as _;
use std::io::{IsTerminal, Write as _};
use std::time::{Duration, Instant};

use crate::gocompat::duration::GoDuration;
use crate::gocompat::fixed::TwoDecimals;
use crate::mover::counters::Counters;
use crate::mover::events::{Action, Event, EventSink, Phase};

/// How progress is shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Display {
    /// keep-rsync's per-block log lines.
    Log,
    /// A live bar.
    Bar,
    /// Nothing but problems (the demo's inner steps, tests).
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

/// The sink behind the log lines and the bar.
pub struct Terminal {
    display: Display,
    started: Instant,
    bar: Option<indicatif::ProgressBar>,
    phase: Phase,
    /// Live limits, shown on the bar.
    limits: Option<Box<dyn Fn() -> String + Send>>,
    /// The phase as the controls know it (a pause shows before the walker's next event).
    live_phase: Option<Box<dyn Fn() -> Phase + Send>>,
    /// Log lines of the batch being handled, written to stderr in one call at its end (one
    /// write per batch, not per block: small blocks come thousands a second).
    pending: String,
}

impl Terminal {
    pub fn new(display: Display) -> Terminal {
        Terminal {
            display,
            started: Instant::now(),
            bar: None,
            phase: Phase::Planning,
            limits: None,
            live_phase: None,
            pending: String::new(),
        }
    }

    /// Reads the phase from `phase` (the controls' view) instead of the events alone.
    pub fn with_phase(mut self, phase: Box<dyn Fn() -> Phase + Send>) -> Terminal {
        self.live_phase = Some(phase);
        self
    }

    /// Shows the current limits (concurrency, bandwidth) on the bar.
    pub fn with_limits(mut self, limits: Box<dyn Fn() -> String + Send>) -> Terminal {
        self.limits = Some(limits);
        self
    }

    /// A log line (Go `log` format): above the bar, or queued for the batch's write.
    fn println(&mut self, message: &str) {
        match &self.bar {
            Some(bar) => bar.println(format!("{} {message}", crate::gocompat::log_timestamp())),
            None => {
                let _ = writeln!(
                    self.pending,
                    "{} {message}",
                    crate::gocompat::log_timestamp()
                );
            }
        }
    }

    /// Writes the batch's queued lines.
    fn flush(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let mut err = std::io::stderr().lock();
        let _ = err.write_all(self.pending.as_bytes());
        let _ = err.flush();
        self.pending.clear();
    }

    fn start_bar(&mut self, length: u64) {
        let bar = indicatif::ProgressBar::new(length);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{elapsed_precise} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} ETA {eta} {msg}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        bar.enable_steady_tick(Duration::from_millis(200));
        self.bar = Some(bar);
    }

    /// keep-rsync's `Copying data block N of M (x% done, ETA): hash+size`.
    #[cfg(test)]
    fn copying_line(&self, number: u64, planned: u64, finished: u64, block: &str) -> String {
        let mut line = String::new();
        write_copying_line(&mut line, self.started, number, planned, finished, block);
        line
    }

    fn refresh_bar(&self, counters: &Counters) {
        let Some(bar) = &self.bar else { return };
        let c = counters.snapshot();
        bar.set_length(c.planned_bytes.max(c.copied_bytes));
        bar.set_position(c.copied_bytes);
        let per_sec = c.copied_blocks as f64 / self.started.elapsed().as_secs_f64().max(1e-3);
        let now = self.live_phase.as_ref().map_or(self.phase, |f| f());
        let phase = match now {
            Phase::Paused => " PAUSED",
            Phase::Stopping => " STOPPING",
            _ => "",
        };
        let limits = self.limits.as_ref().map(|f| f()).unwrap_or_default();
        bar.set_message(format!(
            "{}/{} blocks ({per_sec:.0}/s), {} in flight, {} failed, {} errors, slices {}/{}{limits}{phase}",
            c.copied_blocks,
            c.planned_blocks,
            c.in_flight_blocks,
            c.failed_blocks,
            c.retried_errors,
            c.slices_done,
            c.slices_total,
        ));
    }
}

/// keep-rsync's `Copying data block N of M (x% done, ETA): hash+size`, appended to `out`;
/// the ETA extrapolates the time since `started` over the blocks finished.
fn write_copying_line(
    out: &mut String,
    started: Instant,
    number: u64,
    planned: u64,
    finished: u64,
    block: &str,
) {
    // Pieces pushed one by one rather than `write!`: one line per block, and the formatter's
    // integer and float paths were a few per cent of a 4 KiB block's CPU.
    let total = planned.max(number);
    let mut integer = itoa::Buffer::new();
    out.push_str("Copying data block ");
    out.push_str(integer.format(number));
    out.push_str(" of ");
    out.push_str(integer.format(total));
    out.push_str(" (");
    // Writing into a String cannot fail.
    let _ = TwoDecimals(finished as f64 / total as f64 * 100.0).write_to(out);
    out.push_str("% done");
    if finished > 0 {
        let per_block = started.elapsed().as_secs_f64() / finished as f64;
        let remaining = Duration::from_millis(
            (per_block * total.saturating_sub(finished) as f64 * 1000.0) as u64,
        );
        out.push_str(", ");
        let _ = GoDuration(remaining).write_to(out);
        out.push_str(" est. time remaining");
    }
    out.push_str("): ");
    out.push_str(block);
}

impl EventSink for Terminal {
    fn events(&mut self, batch: &[Event], counters: &Counters) {
        for event in batch {
            match event {
                Event::Planned(plan) => {
                    if self.display == Display::Quiet {
                        continue;
                    }
                    self.println(&format!(
                        "Before keep-rsync, there are {} blocks in src and {} blocks in dst. Start copying {} blocks from src not found in dst.",
                        plan.src_blocks, plan.dst_blocks, plan.to_copy_blocks
                    ));
                    if let Some(slices) = plan.estimated_from_slices {
                        self.println(&format!(
                            "These totals are estimated from the first {slices} of {} index slices (the hash space is uniform); the exact totals are printed at the end.",
                            plan.slices_total
                        ));
                    }
                    if self.display == Display::Bar {
                        self.start_bar(plan.to_copy_bytes);
                    }
                }
                Event::Started {
                    number,
                    planned,
                    finished,
                    block,
                } if self.display == Display::Log => {
                    // One per block: written straight into the batch's text (`println`
                    // without its two intermediate strings; Log mode has no bar).
                    crate::gocompat::push_log_timestamp(&mut self.pending);
                    self.pending.push(' ');
                    write_copying_line(
                        &mut self.pending,
                        self.started,
                        *number,
                        *planned,
                        *finished,
                        block.as_str(),
                    );
                    self.pending.push('\n');
                }
                Event::Done(record) if record.action == Action::Failed => {
                    let why = record.error.as_ref().map_or("", |e| e.text.as_str());
                    self.println(&format!("Error copying data block: {} {why}", record.block));
                }
                Event::Warning(text) | Event::Note(text) if self.display != Display::Quiet => {
                    self.println(text)
                }
                Event::Phase(phase) => self.phase = *phase,
                _ => {}
            }
        }
        self.flush();
        self.refresh_bar(counters);
    }

    fn tick(&mut self, counters: &Counters) {
        self.refresh_bar(counters);
    }

    fn finish(&mut self, _counters: &Counters) {
        self.flush();
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keep_rsync_copying_lines() {
        let t = Terminal::new(Display::Log);
        assert_eq!(
            t.copying_line(1, 900, 0, "0a1f+3"),
            "Copying data block 1 of 900 (0.00% done): 0a1f+3"
        );
        let line = t.copying_line(2, 900, 1, "0a3c+3");
        assert!(
            line.starts_with("Copying data block 2 of 900 (0.11% done, "),
            "{line}"
        );
        assert!(line.ends_with(" est. time remaining): 0a3c+3"), "{line}");
        // Never "N of M" with M < N, whatever an estimate said.
        assert!(t
            .copying_line(5, 3, 0, "x")
            .starts_with("Copying data block 5 of 5 "));
    }
}
