//! `/metrics`: a running job's counters in the Prometheus/OpenMetrics text format, through
//! the `prometheus-client` crate's encoder (names, escaping, `_total` suffixes, histogram
//! buckets and `# EOF` are its business, not ours). Nothing is counted here: each scrape
//! reads the engine's [`Counters`](crate::mover::Counters), the status board (phase,
//! watermark) and the live [`Control`](crate::mover::Control) limits through [`Live`], so
//! `/metrics`, `/status`, the bar and the `-json` summary always agree. Every name starts
//! with `keepmover_` and carries its unit.

use std::fmt::Error as FmtError;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use super::status::{phase_name, Live};
use crate::mover::counters::{LatencyHistogram, Op, LATENCY_BUCKETS};
use crate::mover::events::Phase;
use crate::mover::Snapshot;

/// The content type of what [`render`] returns.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Everything one scrape shows, read once at the start of the scrape.
#[derive(Debug)]
struct Scrape {
    counts: Snapshot,
    phase: Phase,
    watermark: Option<String>,
    concurrency: u64,
    window: u64,
    workers: u64,
    bw_down: u64,
    bw_up: u64,
    buffer_in_use: u64,
    buffer_budget: u64,
    started_unix_s: f64,
    errors: Vec<(String, &'static str, u64)>,
    latencies: Vec<(Op, String, LatencyHistogram)>,
    kernels: Vec<(&'static str, u64, u64)>,
}

type Labels = Vec<(&'static str, String)>;

/// One family with one unlabelled sample.
fn single(
    e: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    kind: MetricType,
    value: f64,
) -> Result<(), FmtError> {
    family(e, name, help, kind, &[(Vec::new(), value)])
}

/// One family with a sample per label set.
fn family(
    e: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    kind: MetricType,
    samples: &[(Labels, f64)],
) -> Result<(), FmtError> {
    let mut metric = e.encode_descriptor(name, help, None, kind)?;
    for (labels, value) in samples {
        let mut sample = metric.encode_family(labels)?;
        match kind {
            MetricType::Counter => {
                // Counters are whole numbers here; u64 keeps them exact past 2^53.
                sample.encode_counter::<NoLabelSet, _, u64>(&(*value as u64), None)?
            }
            _ => sample.encode_gauge(value)?,
        }
    }
    Ok(())
}

/// Exact counters (u64) without going through f64.
fn counter(e: &mut DescriptorEncoder, name: &str, help: &str, value: u64) -> Result<(), FmtError> {
    let mut metric = e.encode_descriptor(name, help, None, MetricType::Counter)?;
    metric.encode_counter::<NoLabelSet, _, u64>(&value, None)
}

fn gauge(e: &mut DescriptorEncoder, name: &str, help: &str, value: u64) -> Result<(), FmtError> {
    let mut metric = e.encode_descriptor(name, help, None, MetricType::Gauge)?;
    metric.encode_gauge(&value)
}

/// How far through the hash space a watermark prefix is: `(value + 1) / 16^len`.
fn watermark_ratio(prefix: &str) -> f64 {
    if prefix.is_empty() {
        return 0.0;
    }
    let digits = prefix.len().min(12);
    match u64::from_str_radix(&prefix[..digits], 16) {
        Ok(v) => (v + 1) as f64 / 16f64.powi(digits as i32),
        Err(_) => 0.0,
    }
}

impl Collector for Scrape {
    fn encode(&self, mut e: DescriptorEncoder) -> Result<(), FmtError> {
        let c = &self.counts;
        let e = &mut e;
        counter(
            e,
            "keepmover_copied_blocks",
            "Blocks copied and confirmed.",
            c.copied_blocks,
        )?;
        counter(
            e,
            "keepmover_copied_bytes",
            "Bytes of blocks copied and confirmed.",
            c.copied_bytes,
        )?;
        counter(
            e,
            "keepmover_skipped_blocks",
            "Blocks the destination already had.",
            c.skipped_blocks,
        )?;
        counter(
            e,
            "keepmover_skipped_bytes",
            "Bytes of blocks the destination already had.",
            c.skipped_bytes,
        )?;
        counter(
            e,
            "keepmover_failed_blocks",
            "Blocks that could not be copied.",
            c.failed_blocks,
        )?;
        counter(
            e,
            "keepmover_failed_bytes",
            "Bytes of blocks that could not be copied.",
            c.failed_bytes,
        )?;
        counter(
            e,
            "keepmover_refetched_blocks",
            "Source replicas read but found wrong (length or MD5), so another holder was read.",
            c.refetched_blocks,
        )?;
        counter(
            e,
            "keepmover_retried_errors",
            "Request errors that were retried or routed around.",
            c.retried_errors,
        )?;
        counter(
            e,
            "keepmover_requeued_blocks",
            "Blocks put back at the end of the queue after failing every retry.",
            c.requeued_blocks,
        )?;
        counter(
            e,
            "keepmover_requeue_successes_blocks",
            "Requeued blocks that then succeeded.",
            c.requeue_successes,
        )?;
        counter(
            e,
            "keepmover_received_bytes",
            "Bytes received in block bodies (GET).",
            c.bytes_in,
        )?;
        counter(
            e,
            "keepmover_sent_bytes",
            "Bytes sent in block bodies (PUT).",
            c.bytes_out,
        )?;
        counter(
            e,
            "keepmover_started_blocks",
            "Blocks handed to a worker.",
            c.started_blocks,
        )?;
        counter(
            e,
            "keepmover_index_lines",
            "Index lines read from both clusters.",
            c.index_lines,
        )?;
        counter(
            e,
            "keepmover_src_walked_blocks",
            "Distinct source blocks walked so far.",
            c.src_blocks,
        )?;
        counter(
            e,
            "keepmover_dst_walked_blocks",
            "Distinct destination blocks walked so far.",
            c.dst_blocks,
        )?;
        counter(
            e,
            "keepmover_touched_copies",
            "touch: destination copies whose mtime was renewed.",
            c.touched_copies,
        )?;
        counter(
            e,
            "keepmover_touch_failed_copies",
            "touch: destination copies that could not be touched after every retry.",
            c.touch_failed_copies,
        )?;
        counter(
            e,
            "keepmover_touch_not_found_blocks",
            "touch: listed blocks that no destination server has.",
            c.touch_not_found_blocks,
        )?;
        counter(
            e,
            "keepmover_slices_done",
            "Index slices whose blocks are all settled.",
            c.slices_done,
        )?;
        gauge(
            e,
            "keepmover_slices",
            "Index slices this run walks in all.",
            c.slices_total,
        )?;
        gauge(
            e,
            "keepmover_planned_blocks",
            "Blocks to copy (estimated until the walk ends).",
            c.planned_blocks,
        )?;
        gauge(
            e,
            "keepmover_planned_bytes",
            "Bytes to copy (estimated until the walk ends).",
            c.planned_bytes,
        )?;
        gauge(
            e,
            "keepmover_blocks_in_flight",
            "Blocks being copied now (touch: TOUCH requests in flight).",
            c.in_flight_blocks,
        )?;
        gauge(
            e,
            "keepmover_buffer_in_use_bytes",
            "Block buffer bytes leased now.",
            self.buffer_in_use,
        )?;
        gauge(
            e,
            "keepmover_buffer_budget_bytes",
            "The block buffer budget (-memory).",
            self.buffer_budget,
        )?;
        gauge(
            e,
            "keepmover_concurrency_per_worker_blocks",
            "Live limit of blocks in flight per worker.",
            self.concurrency,
        )?;
        gauge(
            e,
            "keepmover_in_flight_window_blocks",
            "Blocks the adaptive windows allow in flight now, all workers together.",
            self.window,
        )?;
        gauge(e, "keepmover_workers", "Worker threads.", self.workers)?;
        gauge(
            e,
            "keepmover_bwlimit_down_bytes_per_second",
            "Live limit on bytes received per second (0 = none).",
            self.bw_down,
        )?;
        gauge(
            e,
            "keepmover_bwlimit_up_bytes_per_second",
            "Live limit on bytes sent per second (0 = none).",
            self.bw_up,
        )?;
        single(
            e,
            "keepmover_start_time_seconds",
            "When the job started, Unix time.",
            MetricType::Gauge,
            self.started_unix_s,
        )?;
        let ratio = self.watermark.as_deref().map_or(0.0, watermark_ratio);
        single(e, "keepmover_checkpoint_watermark_ratio", "Fraction of the hash space up to the checkpoint watermark (every slice through it is done).", MetricType::Gauge, ratio)?;
        let phases = [
            Phase::Planning,
            Phase::Copying,
            Phase::Paused,
            Phase::Stopping,
            Phase::Done,
        ];
        let samples: Vec<(Labels, f64)> = phases
            .iter()
            .map(|&p| {
                (
                    vec![("phase", phase_name(p).to_string())],
                    f64::from(u8::from(p == self.phase)),
                )
            })
            .collect();
        family(
            e,
            "keepmover_phase",
            "1 for the phase the job is in.",
            MetricType::Gauge,
            &samples,
        )?;
        if let Some(mark) = &self.watermark {
            let samples = [(vec![("prefix", mark.clone())], 1.0)];
            family(
                e,
                "keepmover_checkpoint_watermark_info",
                "The checkpoint watermark prefix, as a label.",
                MetricType::Gauge,
                &samples,
            )?;
        }
        let samples: Vec<(Labels, f64)> = self
            .errors
            .iter()
            .map(|(server, kind, n)| {
                (
                    vec![("server", server.clone()), ("kind", kind.to_string())],
                    *n as f64,
                )
            })
            .collect();
        family(
            e,
            "keepmover_request_errors",
            "Request errors by server and kind.",
            MetricType::Counter,
            &samples,
        )?;
        let samples: Vec<(Labels, f64)> = self
            .kernels
            .iter()
            .map(|(kernel, bytes, _)| (vec![("kernel", kernel.to_string())], *bytes as f64))
            .collect();
        family(
            e,
            "keepmover_md5_hashed_bytes",
            "Bytes hashed, by MD5 kernel.",
            MetricType::Counter,
            &samples,
        )?;
        let samples: Vec<(Labels, f64)> = self
            .kernels
            .iter()
            .map(|(kernel, _, calls)| (vec![("kernel", kernel.to_string())], *calls as f64))
            .collect();
        family(
            e,
            "keepmover_md5_kernel_calls",
            "MD5 kernel calls (bytes per call shows lane occupancy).",
            MetricType::Counter,
            &samples,
        )?;
        let mut metric = e.encode_descriptor(
            "keepmover_request_duration_seconds",
            "Request latency by server and operation (get, put, head, index).",
            None,
            MetricType::Histogram,
        )?;
        for (op, server, h) in &self.latencies {
            let labels: Labels = vec![("server", server.clone()), ("op", op.as_str().to_string())];
            let mut buckets: Vec<(f64, u64)> = LATENCY_BUCKETS
                .iter()
                .copied()
                .zip(h.buckets.iter().copied())
                .collect();
            let counted: u64 = h.buckets.iter().sum();
            buckets.push((f64::INFINITY, h.count.saturating_sub(counted)));
            metric
                .encode_family(&labels)?
                .encode_histogram::<NoLabelSet>(h.sum_seconds, h.count, &buckets, None)?;
        }
        Ok(())
    }
}

/// The exposition of a running job, in the OpenMetrics text format ([`CONTENT_TYPE`]).
pub fn render(live: &Live) -> String {
    let limits = live.limits();
    let status_board = &live.board;
    let counters = live.counters();
    let scrape = Scrape {
        counts: counters.snapshot(),
        phase: live.phase(),
        watermark: status_board.watermark(),
        concurrency: limits.concurrency_per_worker as u64,
        window: limits.window_blocks,
        workers: limits.workers as u64,
        bw_down: limits.bwlimit_down_bytes_per_s,
        bw_up: limits.bwlimit_up_bytes_per_s,
        buffer_in_use: limits.buffer_in_use_bytes,
        buffer_budget: limits.buffer_budget_bytes,
        started_unix_s: status_board.started_unix_s(),
        errors: counters
            .errors_by()
            .into_iter()
            .map(|((server, kind), n)| (server, kind.as_str(), n))
            .collect(),
        latencies: counters
            .latencies()
            .into_iter()
            .map(|((op, server), h)| (op, server, h))
            .collect(),
        kernels: counters
            .hashed_by_kernel()
            .into_iter()
            .map(|(k, (bytes, calls))| (k, bytes, calls))
            .collect(),
    };
    let mut registry = Registry::default();
    registry.register_collector(Box::new(scrape));
    let mut out = String::with_capacity(16 << 10);
    // Writing into a String cannot fail; an encoder error would be a bug in a name.
    if prometheus_client::encoding::text::encode(&mut out, &registry).is_err() {
        out.clear();
        out.push_str("# EOF\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keepstore::ErrorKind;
    use crate::mover::{Control, Counters};
    use crate::report::status::JobInfo;
    use std::sync::atomic::Ordering::Relaxed;
    use std::sync::Arc;

    #[test]
    fn watermark_ratios() {
        assert_eq!(watermark_ratio(""), 0.0);
        assert_eq!(watermark_ratio("f"), 1.0);
        assert_eq!(watermark_ratio("7f"), 0.5);
        assert_eq!(watermark_ratio("zz"), 0.0);
    }

    #[test]
    fn exposition_has_the_counters_and_well_formed_histograms() {
        let counters = Arc::new(Counters::default());
        counters.copied_blocks.store(7, Relaxed);
        counters.copied_bytes.store(u64::MAX - 1, Relaxed);
        counters.observe(Op::Get, "srv-\"1\"", 0.003);
        counters.observe(Op::Get, "srv-\"1\"", 99.0);
        counters.error("srv-\"1\"", ErrorKind::Status5xx);
        let live = Live::new(JobInfo::default(), counters, Arc::new(Control::new()));
        let text = render(&live);
        assert!(text.contains("keepmover_copied_blocks_total 7\n"), "{text}");
        assert!(text.contains(&format!("keepmover_copied_bytes_total {}\n", u64::MAX - 1)));
        assert!(text.contains("# TYPE keepmover_request_duration_seconds histogram"));
        // Cumulative buckets, +Inf holds the slow one, the label value escaped.
        assert!(text.contains(r#"keepmover_request_duration_seconds_bucket{le="0.005",server="srv-\"1\"",op="get"} 1"#), "{text}");
        assert!(text.contains(r#"keepmover_request_duration_seconds_bucket{le="+Inf",server="srv-\"1\"",op="get"} 2"#), "{text}");
        assert!(
            text.contains(r#"keepmover_request_errors_total{server="srv-\"1\"",kind="5xx"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"keepmover_phase{phase="planning"} 1"#),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"));
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            assert!(line.starts_with("keepmover_"), "{line}");
        }
    }
}
