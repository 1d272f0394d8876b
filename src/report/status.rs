//! The live state of a run, for `/status`, SIGUSR1 and `keepmover status`. A sink
//! ([`StatusSink`]) follows the engine's events on the pump thread (phase, plan, the slice the
//! walk is on, the checkpoint watermark, the last errors, samples for the rate) into a small
//! board behind a mutex; [`Live`] puts that board together with the engine's counters and
//! controls into one document ([`StatusDoc`]) and one human summary ([`render_human`]). Every
//! figure is read from the same counters the terminal shows: one source, many views.

use std::collections::{BTreeMap, VecDeque};
use std::fmt::Write as _;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::human_bytes;
use crate::mover::counters::{Counters, LatencyHistogram, LATENCY_BUCKETS};
use crate::mover::events::{Action, Event, EventSink, Phase, Plan};
use crate::mover::{Control, Snapshot};

/// Errors kept for the status.
pub const LAST_ERRORS: usize = 10;
/// The window over which rates are measured, in seconds.
const RATE_WINDOW_S: f64 = 10.0;

/// What a job is, for the status (never tokens).
#[derive(Clone, Debug, Default)]
pub struct JobInfo {
    /// `copy`, `validate`, `move`, `bench`...
    pub command: String,
    pub src_api_host: String,
    pub dst_api_host: String,
    /// Blocks in flight per worker as configured (the live value may differ).
    pub concurrency: usize,
    pub workers: usize,
}

/// One recent problem.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RecentError {
    /// Go log timestamp (local time).
    pub at: String,
    /// The block, for a block that failed.
    pub block: Option<String>,
    /// The error kind (`timeout`, `5xx`...), for a block that failed; none for a warning.
    pub kind: Option<String>,
    pub text: String,
}

/// What the events say, kept between them.
#[derive(Debug)]
struct Board {
    phase: Phase,
    plan: Option<Plan>,
    current_prefix: Option<String>,
    watermark: Option<String>,
    errors: VecDeque<RecentError>,
    /// (seconds since start, copied bytes, copied blocks), newest last, over the rate window.
    samples: VecDeque<(f64, u64, u64)>,
    started: Instant,
    started_unix_s: f64,
}

impl Board {
    fn new() -> Board {
        Board {
            phase: Phase::Planning,
            plan: None,
            current_prefix: None,
            watermark: None,
            errors: VecDeque::with_capacity(LAST_ERRORS),
            samples: VecDeque::new(),
            started: Instant::now(),
            started_unix_s: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64()),
        }
    }

    fn error(&mut self, error: RecentError) {
        if self.errors.len() == LAST_ERRORS {
            self.errors.pop_front();
        }
        self.errors.push_back(error);
    }

    fn sample(&mut self, counters: &Counters) {
        let now = self.started.elapsed().as_secs_f64();
        let bytes = counters
            .copied_bytes
            .load(std::sync::atomic::Ordering::Relaxed);
        let blocks = counters
            .copied_blocks
            .load(std::sync::atomic::Ordering::Relaxed);
        self.samples.push_back((now, bytes, blocks));
        while self
            .samples
            .front()
            .is_some_and(|&(t, _, _)| now - t > RATE_WINDOW_S)
        {
            self.samples.pop_front();
        }
    }
}

/// The shared board: the sink writes it, the views read it. Cloning shares it.
#[derive(Clone, Debug)]
pub struct StatusBoard(Arc<Mutex<Board>>);

impl Default for StatusBoard {
    fn default() -> Self {
        StatusBoard::new()
    }
}

impl StatusBoard {
    pub fn new() -> StatusBoard {
        StatusBoard(Arc::new(Mutex::new(Board::new())))
    }

    /// The sink that keeps this board up to date (give it to the engine).
    pub fn sink(&self) -> StatusSink {
        StatusSink {
            board: self.clone(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Board> {
        // A poisoned board only means a panic mid-update of plain fields; still readable.
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The checkpoint watermark: every slice up to and including it is done.
    pub fn watermark(&self) -> Option<String> {
        self.lock().watermark.clone()
    }

    /// When the job started, Unix time in seconds.
    pub fn started_unix_s(&self) -> f64 {
        self.lock().started_unix_s
    }

    /// The phase the events last said.
    pub fn phase(&self) -> Phase {
        self.lock().phase
    }
}

/// The [`EventSink`] behind the board.
pub struct StatusSink {
    board: StatusBoard,
}

impl EventSink for StatusSink {
    fn events(&mut self, batch: &[Event], counters: &Counters) {
        let mut board = self.board.lock();
        for event in batch {
            match event {
                Event::Planned(plan) => board.plan = Some(plan.clone()),
                Event::SliceStarted { prefix } => board.current_prefix = Some(prefix.clone()),
                Event::SliceDone {
                    watermark: Some(mark),
                    ..
                } => board.watermark = Some(mark.clone()),
                Event::Done(record) if record.action == Action::Failed => {
                    let (kind, text) = match &record.error {
                        Some(e) => (Some(e.kind.as_str().to_string()), e.text.clone()),
                        None => (None, "failed".to_string()),
                    };
                    board.error(RecentError {
                        at: crate::gocompat::log_timestamp(),
                        block: Some(record.block.to_string()),
                        kind,
                        text,
                    });
                }
                Event::Warning(text) => board.error(RecentError {
                    at: crate::gocompat::log_timestamp(),
                    block: None,
                    kind: None,
                    text: text.clone(),
                }),
                Event::Phase(phase) => {
                    board.phase = *phase;
                    if *phase == Phase::Copying && board.samples.is_empty() {
                        board.sample(counters);
                    }
                }
                _ => {}
            }
        }
    }

    fn tick(&mut self, counters: &Counters) {
        self.board.lock().sample(counters);
    }

    fn finish(&mut self, counters: &Counters) {
        self.board.lock().sample(counters);
    }
}

/// Rates over the last seconds.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Rates {
    pub bytes_per_s: f64,
    pub blocks_per_s: f64,
    /// Seconds the rates are measured over (up to ten).
    pub window_s: f64,
}

/// The live limits.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Limits {
    /// The ceiling of blocks in flight per worker (`-concurrency`, or `ctl concurrency`).
    pub concurrency_per_worker: usize,
    /// Blocks in flight the adaptive windows allow now, all workers together (at most the
    /// ceiling times the workers; fewer when more would only queue).
    pub window_blocks: u64,
    pub workers: usize,
    /// Bytes per second; 0 = no limit.
    pub bwlimit_down_bytes_per_s: u64,
    pub bwlimit_up_bytes_per_s: u64,
    pub buffer_in_use_bytes: u64,
    pub buffer_budget_bytes: u64,
}

/// One operation's latency at one server.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct OpLatency {
    pub op: String,
    pub requests: u64,
    /// Estimated from the histogram's buckets (linear within a bucket); none without requests.
    pub p50_s: Option<f64>,
    pub p99_s: Option<f64>,
}

/// One server's health.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ServerHealth {
    pub server: String,
    pub errors: BTreeMap<String, u64>,
    pub latency: Vec<OpLatency>,
}

/// The `/status` document.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct StatusDoc {
    pub keepmover_version: String,
    pub command: String,
    pub pid: u32,
    pub src_api_host: String,
    pub dst_api_host: String,
    /// Unix time the job started, in seconds.
    pub started_unix_s: f64,
    pub elapsed_s: f64,
    /// `planning`, `copying`, `paused`, `stopping`, `done`.
    pub phase: String,
    pub plan: Option<Plan>,
    pub counts: Snapshot,
    pub rates: Rates,
    /// Seconds left at the current rate; none before a rate is known.
    pub eta_s: Option<f64>,
    /// The index slice the walk is on.
    pub current_prefix: Option<String>,
    /// Every slice up to and including this prefix is done (the checkpoint's value).
    pub watermark: Option<String>,
    pub limits: Limits,
    pub servers: Vec<ServerHealth>,
    /// Oldest first, at most ten.
    pub last_errors: Vec<RecentError>,
}

/// Everything a view of a running job needs, shared with the control endpoint.
#[derive(Clone, Debug)]
pub struct Live {
    pub job: JobInfo,
    pub board: StatusBoard,
    /// The counters of the engine run going on now (`-watch` starts each pass afresh).
    counters: Arc<Mutex<Arc<Counters>>>,
    pub control: Arc<Control>,
}

impl Live {
    pub fn new(job: JobInfo, counters: Arc<Counters>, control: Arc<Control>) -> Live {
        Live {
            job,
            board: StatusBoard::new(),
            counters: Arc::new(Mutex::new(counters)),
            control,
        }
    }

    /// The counters of the current engine run.
    pub fn counters(&self) -> Arc<Counters> {
        self.counters
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Points every view at a new engine run's counters.
    pub fn set_counters(&self, counters: Arc<Counters>) {
        *self.counters.lock().unwrap_or_else(|p| p.into_inner()) = counters;
    }

    /// The phase, with the controls' word first: a pause or a stop shows at once, before
    /// the engine's next event says so.
    pub fn phase(&self) -> Phase {
        let phase = self.board.phase();
        match phase {
            Phase::Done | Phase::Planning => phase,
            _ if self.control.is_stopping() => Phase::Stopping,
            _ if self.control.is_paused() => Phase::Paused,
            other => other,
        }
    }

    /// The live limits.
    pub fn limits(&self) -> Limits {
        let c = self.counters();
        Limits {
            concurrency_per_worker: self.control.concurrency(self.job.concurrency),
            window_blocks: c.window_blocks.load(std::sync::atomic::Ordering::Relaxed),
            workers: self.job.workers,
            bwlimit_down_bytes_per_s: self.control.bw_in.rate(),
            bwlimit_up_bytes_per_s: self.control.bw_out.rate(),
            buffer_in_use_bytes: c.buffers_in_use.bytes(),
            buffer_budget_bytes: c.buffer_budget.load(std::sync::atomic::Ordering::Relaxed),
        }
    }

    /// The whole document.
    pub fn status(&self) -> StatusDoc {
        let counts = self.counters().snapshot();
        let (plan, current_prefix, watermark, last_errors, rates, started_unix_s, elapsed_s) = {
            let board = self.board.lock();
            let now = board.started.elapsed().as_secs_f64();
            let rates = match board.samples.front() {
                Some(&(t, bytes, blocks)) if now - t > 0.5 => {
                    let dt = now - t;
                    Rates {
                        bytes_per_s: counts.copied_bytes.saturating_sub(bytes) as f64 / dt,
                        blocks_per_s: counts.copied_blocks.saturating_sub(blocks) as f64 / dt,
                        window_s: dt,
                    }
                }
                _ => Rates::default(),
            };
            (
                board.plan.clone(),
                board.current_prefix.clone(),
                board.watermark.clone(),
                board.errors.iter().cloned().collect(),
                rates,
                board.started_unix_s,
                now,
            )
        };
        let phase = self.phase();
        let left = counts
            .planned_bytes
            .saturating_sub(counts.copied_bytes + counts.failed_bytes);
        let eta_s = match phase {
            Phase::Done => Some(0.0),
            _ if rates.bytes_per_s > 0.0 => Some(left as f64 / rates.bytes_per_s),
            _ => None,
        };
        StatusDoc {
            keepmover_version: env!("CARGO_PKG_VERSION").to_string(),
            command: self.job.command.clone(),
            pid: std::process::id(),
            src_api_host: self.job.src_api_host.clone(),
            dst_api_host: self.job.dst_api_host.clone(),
            started_unix_s,
            elapsed_s,
            phase: phase_name(phase).to_string(),
            plan,
            counts,
            rates,
            eta_s,
            current_prefix,
            watermark,
            limits: self.limits(),
            servers: servers(&self.counters()),
            last_errors,
        }
    }
}

/// The phase as the status and the metrics spell it.
pub fn phase_name(phase: Phase) -> &'static str {
    match phase {
        Phase::Planning => "planning",
        Phase::Copying => "copying",
        Phase::Paused => "paused",
        Phase::Stopping => "stopping",
        Phase::Done => "done",
    }
}

/// Per-server errors and latency quantiles.
fn servers(counters: &Counters) -> Vec<ServerHealth> {
    let mut by_server: BTreeMap<String, ServerHealth> = BTreeMap::new();
    for ((server, kind), count) in counters.errors_by() {
        by_server
            .entry(server.clone())
            .or_insert_with(|| ServerHealth {
                server,
                ..ServerHealth::default()
            })
            .errors
            .insert(kind.as_str().to_string(), count);
    }
    for ((op, server), histogram) in counters.latencies() {
        by_server
            .entry(server.clone())
            .or_insert_with(|| ServerHealth {
                server,
                ..ServerHealth::default()
            })
            .latency
            .push(OpLatency {
                op: op.as_str().to_string(),
                requests: histogram.count,
                p50_s: quantile(&histogram, 0.5),
                p99_s: quantile(&histogram, 0.99),
            });
    }
    by_server.into_values().collect()
}

/// A quantile estimated from the buckets as Prometheus' `histogram_quantile` does: find the
/// bucket holding the rank, interpolate linearly inside it. Observations beyond the last
/// bucket answer with the last bound.
pub fn quantile(histogram: &LatencyHistogram, q: f64) -> Option<f64> {
    if histogram.count == 0 {
        return None;
    }
    let rank = q.clamp(0.0, 1.0) * histogram.count as f64;
    let mut below = 0u64;
    let mut lower = 0.0;
    for (i, &upper) in LATENCY_BUCKETS.iter().enumerate() {
        let here = histogram.buckets[i];
        if here > 0 && (below + here) as f64 >= rank {
            let into = (rank - below as f64).max(0.0) / here as f64;
            return Some(lower + (upper - lower) * into);
        }
        below += here;
        lower = upper;
    }
    Some(lower)
}

/// A duration for people: `850 ms`, `42s`, `3m 20s`, `2h 5m`.
fn human_duration(seconds: f64) -> String {
    if seconds < 1.0 {
        return format!("{:.0} ms", seconds * 1000.0);
    }
    let s = seconds.round() as u64;
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m {}s", s / 60, s % 60),
        _ => format!("{}h {}m", s / 3600, (s % 3600) / 60),
    }
}

fn human_rate(bytes_per_s: u64) -> String {
    if bytes_per_s == 0 {
        "off".to_string()
    } else {
        format!("{}/s", human_bytes(bytes_per_s))
    }
}

/// The short form of the live limits, for the bar: `, 32/worker, bw 10.0 MiB/s`.
pub fn limits_brief(limits: &Limits) -> String {
    let (down, up) = (
        limits.bwlimit_down_bytes_per_s,
        limits.bwlimit_up_bytes_per_s,
    );
    let bw = match (down, up) {
        (0, 0) => String::new(),
        _ if down == up => format!(", bw {}", human_rate(down)),
        _ => format!(", bw up {} down {}", human_rate(up), human_rate(down)),
    };
    format!(
        ", window {} (at most {}/worker){bw}",
        limits.window_blocks, limits.concurrency_per_worker
    )
}

/// The human summary of a status document (SIGUSR1, `keepmover status`).
pub fn render_human(doc: &StatusDoc) -> String {
    let c = &doc.counts;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "keepmover {} (pid {}) {} -> {}: {}, running {}",
        doc.command,
        doc.pid,
        doc.src_api_host,
        doc.dst_api_host,
        doc.phase,
        human_duration(doc.elapsed_s)
    );
    if doc.command == "touch" {
        // No block data moves: what a touch run has done is in its own counters.
        let _ = writeln!(
            out,
            "  touch: {} copies touched, {} failed, {} listed blocks not found, {} in flight; {} blocks found so far",
            c.touched_copies,
            c.touch_failed_copies,
            c.touch_not_found_blocks,
            c.in_flight_blocks,
            c.planned_blocks
        );
    } else {
        let _ = writeln!(
            out,
            "  blocks: {} of {} copied ({} of {}), {} skipped, {} failed, {} in flight, {} re-fetched",
            c.copied_blocks,
            c.planned_blocks,
            human_bytes(c.copied_bytes),
            human_bytes(c.planned_bytes),
            c.skipped_blocks,
            c.failed_blocks,
            c.in_flight_blocks,
            c.refetched_blocks
        );
        let eta = doc
            .eta_s
            .map_or_else(|| "unknown".to_string(), human_duration);
        let _ = writeln!(
            out,
            "  rate: {}/s, {:.0} blocks/s (last {:.0}s); ETA {eta}",
            human_bytes(doc.rates.bytes_per_s as u64),
            doc.rates.blocks_per_s,
            doc.rates.window_s
        );
    }
    let _ = writeln!(
        out,
        "  slices: {} of {} done; walking {}; checkpoint through {}",
        c.slices_done,
        c.slices_total,
        doc.current_prefix.as_deref().unwrap_or("-"),
        doc.watermark.as_deref().unwrap_or("-")
    );
    let l = &doc.limits;
    if doc.command == "touch" {
        let _ = writeln!(
            out,
            "  limits: at most {} TOUCH requests in flight",
            l.concurrency_per_worker
        );
    } else {
        let _ = writeln!(
            out,
            "  limits: window {} blocks in flight (at most {} per worker x {} workers); bandwidth down {}, up {}; buffers {} of {}",
            l.window_blocks,
            l.concurrency_per_worker,
            l.workers,
            human_rate(l.bwlimit_down_bytes_per_s),
            human_rate(l.bwlimit_up_bytes_per_s),
            human_bytes(l.buffer_in_use_bytes),
            human_bytes(l.buffer_budget_bytes)
        );
    }
    let _ = writeln!(
        out,
        "  requests: {} retried errors, {} requeued blocks",
        c.retried_errors, c.requeued_blocks
    );
    for server in &doc.servers {
        let mut line = format!("  {}:", server.server);
        for op in &server.latency {
            let ms = |v: Option<f64>| v.map_or("-".to_string(), |s| format!("{:.1}", s * 1000.0));
            let _ = write!(
                line,
                " {} {} (p50 {} ms, p99 {} ms);",
                op.op,
                op.requests,
                ms(op.p50_s),
                ms(op.p99_s)
            );
        }
        if server.errors.is_empty() {
            line.push_str(" no errors");
        } else {
            let errors: Vec<String> = server
                .errors
                .iter()
                .map(|(kind, n)| format!("{kind} {n}"))
                .collect();
            let _ = write!(line, " errors: {}", errors.join(", "));
        }
        let _ = writeln!(out, "{line}");
    }
    if !doc.last_errors.is_empty() {
        let _ = writeln!(out, "  last errors:");
        for e in &doc.last_errors {
            let block = e
                .block
                .as_deref()
                .map_or(String::new(), |b| format!("{b} "));
            let kind = e
                .kind
                .as_deref()
                .map_or(String::new(), |k| format!("[{k}] "));
            let _ = writeln!(out, "    {} {kind}{block}{}", e.at, e.text);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keep::{BlockHash, BlockId};
    use crate::keepstore::ErrorKind;
    use crate::mover::counters::Op;
    use crate::mover::events::{BlockError, BlockRecord};

    fn failed(n: u8) -> Event {
        let mut hash = [0u8; 16];
        hash[0] = n;
        Event::Done(BlockRecord {
            block: BlockId::new(BlockHash(hash), 3).short(),
            action: Action::Failed,
            bytes: 3,
            source: None,
            stored_on: vec![],
            attempts: 3,
            error: Some(BlockError {
                kind: ErrorKind::Timeout,
                text: format!("timeout {n}"),
            }),
        })
    }

    #[test]
    fn quantiles_interpolate_inside_buckets() {
        let mut h = LatencyHistogram::default();
        assert_eq!(quantile(&h, 0.5), None);
        // 100 observations in (0.01, 0.025]: the median is half way through that bucket.
        h.buckets[4] = 100;
        h.count = 100;
        let p50 = quantile(&h, 0.5).expect("some");
        assert!((p50 - 0.0175).abs() < 1e-9, "{p50}");
        // One slow one beyond every bucket: p99 stays inside, p100 answers the last bound.
        h.count = 101;
        assert!(quantile(&h, 0.99).expect("some") <= 0.025);
        assert_eq!(quantile(&h, 1.0), Some(30.0));
    }

    #[test]
    fn the_board_follows_events_and_keeps_ten_errors() {
        let counters = Arc::new(Counters::default());
        let control = Arc::new(Control::new());
        let live = Live::new(
            JobInfo {
                command: "copy".into(),
                src_api_host: "src.example:443".into(),
                dst_api_host: "dst.example:443".into(),
                concurrency: 32,
                workers: 1,
            },
            counters.clone(),
            control.clone(),
        );
        let mut sink = live.board.sink();
        let mut batch = vec![
            Event::Phase(Phase::Copying),
            Event::SliceStarted {
                prefix: "0a".into(),
            },
            Event::SliceDone {
                prefix: "09".into(),
                watermark: Some("09".into()),
            },
            Event::Warning("destination index unreadable".into()),
        ];
        batch.extend((0..12).map(failed));
        sink.events(&batch, &counters);
        counters.observe(Op::Get, "zzzzz-bi6l4-000000000000000", 0.004);
        counters.error("zzzzz-bi6l4-000000000000000", ErrorKind::Timeout);
        let doc = live.status();
        assert_eq!(doc.phase, "copying");
        assert_eq!(doc.current_prefix.as_deref(), Some("0a"));
        assert_eq!(doc.watermark.as_deref(), Some("09"));
        assert_eq!(doc.last_errors.len(), LAST_ERRORS);
        assert_eq!(doc.last_errors[0].text, "timeout 2", "oldest dropped first");
        assert_eq!(doc.last_errors[9].kind.as_deref(), Some("timeout"));
        assert_eq!(doc.servers.len(), 1);
        assert_eq!(doc.servers[0].errors.get("timeout"), Some(&1));
        assert_eq!(doc.servers[0].latency[0].requests, 1);
        // The controls speak first.
        control.pause();
        assert_eq!(live.status().phase, "paused");
        control.set_concurrency(4);
        control.set_bwlimit(10 << 20, 0);
        let doc = live.status();
        assert_eq!(doc.limits.concurrency_per_worker, 4);
        assert_eq!(doc.limits.bwlimit_down_bytes_per_s, 10 << 20);
        control.stop(crate::mover::StopReason::Terminated);
        assert_eq!(live.status().phase, "stopping");
        // The document goes through JSON and back, and renders.
        let text = serde_json::to_string(&doc).expect("serializes");
        let back: StatusDoc = serde_json::from_str(&text).expect("parses");
        assert_eq!(back.counts, doc.counts);
        assert_eq!(back.last_errors, doc.last_errors);
        assert_eq!(back.servers.len(), doc.servers.len());
        let human = render_human(&back);
        assert!(human.contains("keepmover copy (pid "), "{human}");
        assert!(
            human.contains("src.example:443 -> dst.example:443"),
            "{human}"
        );
        assert!(
            human.contains("walking 0a; checkpoint through 09"),
            "{human}"
        );
        assert!(
            human.contains("bandwidth down 10.0 MiB/s, up off"),
            "{human}"
        );
        assert!(human.contains("errors: timeout 1"), "{human}");
        assert!(!human.contains("token"), "{human}");
    }

    #[test]
    fn limits_for_the_bar() {
        let mut l = Limits {
            concurrency_per_worker: 8,
            window_blocks: 6,
            ..Limits::default()
        };
        assert_eq!(limits_brief(&l), ", window 6 (at most 8/worker)");
        l.bwlimit_down_bytes_per_s = 1 << 20;
        l.bwlimit_up_bytes_per_s = 1 << 20;
        assert_eq!(
            limits_brief(&l),
            ", window 6 (at most 8/worker), bw 1.0 MiB/s"
        );
        l.bwlimit_up_bytes_per_s = 0;
        assert_eq!(
            limits_brief(&l),
            ", window 6 (at most 8/worker), bw up off down 1.0 MiB/s"
        );
    }
}
