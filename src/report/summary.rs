//! The end of a run in two forms, from the same figures: keepmover's closing summary line
//! (after keep-rsync's own closing line) and the `-json FILE` document that scripts and
//! `report merge` read.

use std::path::Path;

use serde::Serialize;

use super::human_bytes;
use crate::mover::counters::Counters;
use crate::mover::RunReport;

/// The one-line human summary.
pub fn render(report: &RunReport) -> String {
    let t = &report.totals;
    let secs = report.elapsed.as_secs_f64().max(1e-9);
    format!(
        "Summary: copied {} blocks ({}), skipped {} already present, failed {}, re-fetched {} after bad replicas, {} retried errors; {:.1}s, {:.1} MB/s, {:.0} blocks/s (io: {})",
        t.copied_blocks,
        human_bytes(t.copied_bytes),
        t.skipped_blocks,
        t.failed_blocks,
        t.refetched_blocks,
        t.retried_errors,
        secs,
        t.copied_bytes as f64 / 1e6 / secs,
        t.copied_blocks as f64 / secs,
        report.io_backend,
    )
}

#[derive(Serialize)]
struct ErrorCount {
    server: String,
    kind: &'static str,
    count: u64,
}

#[derive(Serialize)]
struct KernelBytes {
    kernel: &'static str,
    bytes: u64,
    calls: u64,
    /// Mean share of the kernel's SIMD lanes that were busy.
    lane_occupancy: f64,
}

/// The `-json` document.
#[derive(Serialize)]
pub struct JsonSummary<'a> {
    pub keepmover_version: &'static str,
    pub command: &'a str,
    /// The shard this run copied (`I/N`), or null for the whole job: `report merge` tells
    /// shards apart, finds missing ones and checks they belong to one split.
    pub shard: Option<String>,
    /// `done`, or why the run stopped early (`interrupted`, `terminated`, `max_duration`,
    /// `max_transfer`).
    pub outcome: String,
    pub exit_code: i32,
    pub elapsed_s: f64,
    pub io_backend: String,
    pub plan: &'a crate::mover::events::Plan,
    pub totals: &'a crate::mover::Snapshot,
    /// Planned blocks neither copied nor failed (abandoned by a stop).
    pub unsettled_blocks: u64,
    pub throughput_mb_s: f64,
    pub peak_buffer_bytes: usize,
    errors: Vec<ErrorCount>,
    md5_kernels: Vec<KernelBytes>,
    /// Anything a command adds (shard, pass number, validation findings...).
    pub extra: serde_json::Value,
}

impl<'a> JsonSummary<'a> {
    pub fn new(
        command: &'a str,
        report: &'a RunReport,
        counters: &Counters,
        exit_code: i32,
    ) -> JsonSummary<'a> {
        let secs = report.elapsed.as_secs_f64().max(1e-9);
        JsonSummary {
            keepmover_version: env!("CARGO_PKG_VERSION"),
            command,
            shard: None,
            outcome: report.stopped.map_or("done", |r| r.name()).to_string(),
            exit_code,
            elapsed_s: report.elapsed.as_secs_f64(),
            io_backend: report.io_backend.to_string(),
            plan: &report.plan,
            totals: &report.totals,
            unsettled_blocks: report.unsettled(),
            throughput_mb_s: report.totals.copied_bytes as f64 / 1e6 / secs,
            peak_buffer_bytes: report.peak_buffer_bytes,
            errors: counters
                .errors_by()
                .into_iter()
                .map(|((server, kind), count)| ErrorCount {
                    server,
                    kind: kind.as_str(),
                    count,
                })
                .collect(),
            md5_kernels: crate::hash::kernel_use()
                .into_iter()
                .map(|k| KernelBytes {
                    kernel: k.backend.name(),
                    bytes: k.bytes,
                    calls: k.calls,
                    lane_occupancy: k.occupancy,
                })
                .collect(),
            extra: serde_json::Value::Null,
        }
    }

    /// Writes the document (pretty JSON) to `path`.
    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        let text = serde_json::to_string_pretty(self).map_err(std::io::Error::other)?;
        std::fs::write(path, text + "\n")
    }
}
