//! What one experiment measured: bytes and errors, latency histograms per operation,
//! per-server counts, a throughput/p99 timeline for `-plot`, and the knee of a sweep.

use std::time::Duration;

use hdrhistogram::Histogram;

use super::BenchError;

/// Counters of one experiment, shared by its tasks (one thread: `Rc<RefCell>`).
pub(super) struct Stats {
    pub(super) bytes_read: u64,
    pub(super) bytes_written: u64,
    pub(super) errors: u64,
    pub(super) read_latency: Histogram<u64>,
    pub(super) write_latency: Histogram<u64>,
    pub(super) errors_by_kind: std::collections::BTreeMap<String, u64>,
    /// Latencies since the last plot sample (both operations).
    pub(super) interval_latency: Histogram<u64>,
    /// Throughput and p99 over time, for `-plot`.
    pub(super) timeline: Vec<crate::report::plot::PlotPoint>,
    /// Per server: (requests, bytes) read and written.
    pub(super) per_server: std::collections::BTreeMap<usize, ServerCounts>,
}

#[derive(Clone, Copy, Debug, Default)]
pub(super) struct ServerCounts {
    pub(super) reads: u64,
    pub(super) read_bytes: u64,
    pub(super) writes: u64,
    pub(super) written_bytes: u64,
}

impl Stats {
    pub(super) fn new() -> Result<Stats, BenchError> {
        let histogram = || {
            Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3)
                .map_err(|e| BenchError::Io(e.to_string()))
        };
        Ok(Stats {
            bytes_read: 0,
            bytes_written: 0,
            errors: 0,
            read_latency: histogram()?,
            write_latency: histogram()?,
            errors_by_kind: Default::default(),
            per_server: Default::default(),
            interval_latency: histogram()?,
            timeline: Vec::new(),
        })
    }

    pub(super) fn error(&mut self, kind: &str) {
        self.errors += 1;
        *self.errors_by_kind.entry(kind.to_string()).or_default() += 1;
    }
}
/// The row keep-exercise prints.
pub(super) struct Row {
    pub(super) elapsed: Duration,
    pub(super) read: u64,
    pub(super) read_rate: f64,
    pub(super) read_peak: f64,
    pub(super) written: u64,
    pub(super) write_rate: f64,
    pub(super) write_peak: f64,
    pub(super) errors: u64,
}
pub(super) fn percentiles(h: &Histogram<u64>) -> serde_json::Value {
    let ms = |us: u64| us as f64 / 1000.0;
    serde_json::json!({
        "count": h.len(),
        "p50_ms": ms(h.value_at_quantile(0.5)),
        "p90_ms": ms(h.value_at_quantile(0.9)),
        "p99_ms": ms(h.value_at_quantile(0.99)),
        "p999_ms": ms(h.value_at_quantile(0.999)),
        "max_ms": ms(h.max()),
    })
}
/// The knee of a sweep: the last level before throughput stops growing by 10 % while p99
/// latency keeps growing, i.e. where the keepstores saturate.
pub fn knee_line(points: &[(usize, f64, f64, u64)]) -> String {
    for pair in points.windows(2) {
        let (level, rate, p99, _) = pair[0];
        let (_, next_rate, next_p99, _) = pair[1];
        if next_rate < rate * 1.10 && next_p99 > p99 {
            return format!(
                "Knee: concurrency {level} ({rate:.1} MiB/s, p99 {p99:.1} ms): beyond it throughput grows less than 10% while p99 latency grows"
            );
        }
    }
    match points.last() {
        Some((level, rate, p99, _)) => format!(
            "Knee: not reached; throughput still growing at concurrency {level} ({rate:.1} MiB/s, p99 {p99:.1} ms)"
        ),
        None => "Knee: no sweep points".to_string(),
    }
}
