//! What `bench` prints and writes: keep-exercise's CSV rows (column for column, so existing
//! spreadsheets keep working), keepmover's summary and per-server lines, the `-json`
//! report and the `-plot` SVG.

use hdrhistogram::Histogram;

use super::stats::{percentiles, Row, Stats};
use super::{BenchArgs, BenchError};
use crate::cluster::Cluster;
use crate::gocompat::duration::format_go_duration;
use crate::gocompat::log_timestamp as go_log_timestamp;
use crate::report::log_line;
use crate::report::plot::{draw, PlotPoint};

/// keep-exercise's CSV header, column for column.
pub const CSV_HEADER: &str = "Timestamp,Elapsed,Read (bytes),Avg Read Speed (MiB/s),Peak Read Speed (MiB/s),Written (bytes),Avg Write Speed (MiB/s),Peak Write Speed (MiB/s),Errors,ReadThreads,WriteThreads,VaryRequest,VaryThread,BlockSize,Replicas,StatsInterval,ServiceURL,ServiceUUID,UseIndex,RunTime,Repeat";
pub(super) fn csv_row(args: &BenchArgs, row: &Row) -> String {
    format!(
        "{},{},{},{:.1},{:.1},{},{:.1},{:.1},{},{},{},{},{},{},{},{},{},{},{},{},{}",
        go_log_timestamp(),
        format_go_duration(row.elapsed),
        row.read,
        row.read_rate,
        row.read_peak,
        row.written,
        row.write_rate,
        row.write_peak,
        row.errors,
        args.read_threads,
        args.write_threads,
        args.vary_request,
        args.vary_thread,
        args.block_size,
        args.replicas,
        format_go_duration(args.stats_interval),
        args.service_url,
        args.service_uuid,
        args.use_index,
        format_go_duration(args.run_time),
        args.repeat
    )
}
pub(super) fn summary_line(row: &Row, stats: &Stats) -> String {
    let ms = |h: &Histogram<u64>, q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    format!(
        "Summary: read {} bytes ({:.1} MiB/s), wrote {} bytes ({:.1} MiB/s), {} errors {:?}; read latency p50/p90/p99/p99.9/max {:.1}/{:.1}/{:.1}/{:.1}/{:.1} ms, write latency p50/p90/p99/p99.9/max {:.1}/{:.1}/{:.1}/{:.1}/{:.1} ms",
        row.read, row.read_rate, row.written, row.write_rate, row.errors, stats.errors_by_kind,
        ms(&stats.read_latency, 0.5), ms(&stats.read_latency, 0.9), ms(&stats.read_latency, 0.99), ms(&stats.read_latency, 0.999), stats.read_latency.max() as f64 / 1000.0,
        ms(&stats.write_latency, 0.5), ms(&stats.write_latency, 0.9), ms(&stats.write_latency, 0.99), ms(&stats.write_latency, 0.999), stats.write_latency.max() as f64 / 1000.0,
    )
}

/// One experiment in the `-json` report; logs its per-server rates on the way.
pub(super) fn experiment_json(
    experiment: usize,
    args: &BenchArgs,
    row: &Row,
    stats: &Stats,
    cluster: &Cluster,
) -> serde_json::Value {
    let secs = row.elapsed.as_secs_f64().max(1e-9);
    let per_server: Vec<serde_json::Value> = stats
        .per_server
        .iter()
        .map(|(&server, c)| {
            let uuid = cluster
                .services
                .get(server)
                .map(|s| s.uuid.as_str())
                .unwrap_or("?");
            log_line(&format!(
                "Server {uuid}: {:.1} reads/s {:.1} MiB/s, {:.1} writes/s {:.1} MiB/s",
                c.reads as f64 / secs,
                c.read_bytes as f64 / secs / 1_048_576.0,
                c.writes as f64 / secs,
                c.written_bytes as f64 / secs / 1_048_576.0
            ));
            serde_json::json!({
                "uuid": uuid,
                "reads_per_s": c.reads as f64 / secs,
                "read_mib_s": c.read_bytes as f64 / secs / 1_048_576.0,
                "writes_per_s": c.writes as f64 / secs,
                "write_mib_s": c.written_bytes as f64 / secs / 1_048_576.0,
            })
        })
        .collect();
    serde_json::json!({
        "servers": per_server,
        "experiment": experiment,
        "concurrency": args.concurrency,
        "elapsed_s": row.elapsed.as_secs_f64(),
        "read_bytes": row.read, "read_mib_s": row.read_rate,
        "written_bytes": row.written, "write_mib_s": row.write_rate,
        "errors": row.errors, "errors_by_kind": stats.errors_by_kind,
        "read_latency": percentiles(&stats.read_latency),
        "write_latency": percentiles(&stats.write_latency),
    })
}

/// `-plot`: throughput and p99 over time, or against concurrency for a sweep.
pub(super) fn plot(
    path: &std::path::Path,
    timeline: &[PlotPoint],
    sweep: &[(usize, f64, f64, u64)],
) -> Result<(), String> {
    if sweep.is_empty() {
        return draw(path, "keepmover bench", "seconds", timeline);
    }
    let points: Vec<PlotPoint> = sweep
        .iter()
        .map(|&(level, rate, p99, _)| PlotPoint {
            x: level as f64,
            mib_s: rate,
            p99_ms: p99,
        })
        .collect();
    draw(path, "keepmover bench sweep", "requests in flight", &points)
}

/// `-json FILE`: every experiment.
pub(super) fn write_json(
    path: &std::path::Path,
    experiments: Vec<serde_json::Value>,
) -> Result<(), BenchError> {
    let text = serde_json::to_string_pretty(&serde_json::json!({ "experiments": experiments }))
        .map_err(|e| BenchError::Io(e.to_string()))?;
    std::fs::write(path, text)
        .map_err(|e| BenchError::Io(format!("writing {}: {e}", path.display())))
}
