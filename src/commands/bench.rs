//! `keepmover bench`: keep-exercise's job (how fast are these keepstores?) on keepmover's
//! engine. Same flags, same CSV on stdout, same log lines; writers PUT a block repeatedly,
//! readers GET (MD5-verified) the latest one or random blocks from the indexes. Each
//! keep-exercise "thread" is a task on the completion-based runtime, so one process can keep
//! many requests in flight. Adds latency percentiles and a JSON report.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hdrhistogram::Histogram;

use super::setup::{build_cluster, ApiClient, SetupError};
use crate::cluster::{Cluster, Service};
use crate::gocompat::duration::format_go_duration;
use crate::gocompat::log_timestamp as go_log_timestamp;
use crate::index::merge::{BlockId, SourceBlock};
use crate::index::walk::fetch_slice;
use crate::keep::locator::BlockHash;
use crate::keep::rendezvous::probe_order_go;
use crate::keep::settings::Settings;
use crate::keepstore::http::{HttpFactory, HttpKeepstores};
use crate::keepstore::KeepstoresFactory;
use crate::mover::control::Control;
use crate::mover::counters::Counters;
use crate::mover::gates::Gates;
use crate::mover::hash_batch::HashBatcher;
use crate::mover::pool::BufferPool;
use crate::mover::transfer::{Ctx, Outcome};
use crate::mover::{Job, RetryPolicy, Signing};
use crate::net::{build_runtime, ClientConfig, IoBackend, Origin};
use crate::report::log_line;

/// keep-exercise's CSV header, column for column.
pub const CSV_HEADER: &str = "Timestamp,Elapsed,Read (bytes),Avg Read Speed (MiB/s),Peak Read Speed (MiB/s),Written (bytes),Avg Write Speed (MiB/s),Peak Write Speed (MiB/s),Errors,ReadThreads,WriteThreads,VaryRequest,VaryThread,BlockSize,Replicas,StatsInterval,ServiceURL,ServiceUUID,UseIndex,RunTime,Repeat";

/// Every option, typed (built by `cli`).
#[derive(Clone, Debug)]
pub struct BenchArgs {
    pub block_size: usize,
    pub read_threads: usize,
    pub write_threads: usize,
    pub vary_request: bool,
    pub vary_thread: bool,
    pub replicas: u32,
    pub stats_interval: Duration,
    pub service_url: String,
    pub service_uuid: String,
    pub run_time: Duration,
    pub repeat: u32,
    pub use_index: bool,
    /// Settings file or NAME; empty = the ARVADOS_* environment, as keep-exercise does.
    pub config: String,
    pub io: IoBackend,
    pub json: Option<std::path::PathBuf>,
    /// Tasks (requests in flight) per keep-exercise thread.
    pub concurrency: usize,
    /// Write sizes to choose from at random (`-block-sizes`); empty = `-block-size`.
    pub block_sizes: Vec<usize>,
    /// `-mix R:W`: every task reads or writes in this ratio.
    pub mix: Option<(u32, u32)>,
    /// Requests per second across all tasks (`-rate`); `None` = as fast as possible.
    pub rate: Option<f64>,
    /// Concurrency levels to sweep (`-sweep 1,4,16,64`).
    pub sweep: Vec<usize>,
    /// Draw throughput and p99 (over time, or against concurrency for a sweep) into this SVG.
    pub plot: Option<std::path::PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("{0}")]
    Setup(#[from] SetupError),
    #[error("{0}")]
    Usage(String),
    #[error("{0}")]
    Io(String),
}

/// Set by SIGINT: finish the experiment and print the summary so far.
static INTERRUPTED: std::sync::LazyLock<Arc<AtomicBool>> =
    std::sync::LazyLock::new(|| Arc::new(AtomicBool::new(false)));

fn settings_from_env() -> Settings {
    let get = |k: &str| std::env::var(k).unwrap_or_default();
    Settings {
        api_token: get("ARVADOS_API_TOKEN"),
        api_host: get("ARVADOS_API_HOST"),
        api_host_insecure: crate::keep::settings::insecure_flag(&get("ARVADOS_API_HOST_INSECURE")),
        blob_signing_key: std::env::var("ARVADOS_BLOB_SIGNING_KEY").ok(),
    }
}

/// Counters of one experiment, shared by its tasks (one thread: `Rc<RefCell>`).
struct Stats {
    bytes_read: u64,
    bytes_written: u64,
    errors: u64,
    read_latency: Histogram<u64>,
    write_latency: Histogram<u64>,
    errors_by_kind: std::collections::BTreeMap<String, u64>,
    /// Latencies since the last plot sample (both operations).
    interval_latency: Histogram<u64>,
    /// Throughput and p99 over time, for `-plot`.
    timeline: Vec<crate::report::plot::PlotPoint>,
    /// Per server: (requests, bytes) read and written.
    per_server: std::collections::BTreeMap<usize, ServerCounts>,
}

#[derive(Clone, Copy, Debug, Default)]
struct ServerCounts {
    reads: u64,
    read_bytes: u64,
    writes: u64,
    written_bytes: u64,
}

impl Stats {
    fn new() -> Result<Stats, BenchError> {
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

    fn error(&mut self, kind: &str) {
        self.errors += 1;
        *self.errors_by_kind.entry(kind.to_string()).or_default() += 1;
    }
}

/// The row keep-exercise prints.
struct Row {
    elapsed: Duration,
    read: u64,
    read_rate: f64,
    read_peak: f64,
    written: u64,
    write_rate: f64,
    write_peak: f64,
    errors: u64,
}

fn csv_row(args: &BenchArgs, row: &Row) -> String {
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

fn percentiles(h: &Histogram<u64>) -> serde_json::Value {
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

/// Runs the benchmark; prints CSV on stdout and log lines on stderr.
pub fn run(args: BenchArgs) -> Result<(), BenchError> {
    if args.read_threads > 0 && args.write_threads == 0 && !args.use_index {
        return Err(BenchError::Usage(
            "At least one write thread is required if rthreads is non-zero and -use-index is not enabled".into(),
        ));
    }
    if args.read_threads == 0 && args.write_threads == 0 {
        return Err(BenchError::Usage("Nothing to do!".into()));
    }
    if args.vary_request {
        log_line("WARNING: -vary-request writes distinct random blocks: every write consumes disk space on the keepstores");
    }
    let settings = if args.config.is_empty() {
        settings_from_env()
    } else {
        super::setup::load_settings("bench", &args.config)?
    };
    let http = ClientConfig::default();
    let api = ApiClient::new(&settings, args.io, http.clone())?;
    let mut cluster = if args.service_url.is_empty() {
        build_cluster("dst", &settings, None, &api)?.cluster
    } else {
        let origin = Origin::parse(&args.service_url).map_err(BenchError::Usage)?;
        Cluster {
            label: "dst",
            token: settings.api_token.clone(),
            services: vec![Service {
                uuid: "zzzzz-bi6l4-000000000000000".to_string(),
                origin,
                read_only: false,
                is_disk: true,
            }],
            insecure_tls: settings.api_host_insecure,
        }
    };
    if !args.service_uuid.is_empty() {
        cluster.services.retain(|s| s.uuid == args.service_uuid);
        if cluster.services.is_empty() {
            return Err(BenchError::Usage(format!(
                "no keep service with uuid {}",
                args.service_uuid
            )));
        }
    }
    // Signed reads when the settings carry the key (TTL from discovery, else Arvados' default).
    let signing = settings
        .blob_signing_key
        .as_deref()
        .filter(|k| !k.is_empty())
        .map(|key| Signing {
            key: key.as_bytes().to_vec(),
            ttl_secs: api
                .discovery()
                .ok()
                .and_then(|d| d.blob_signature_ttl)
                .unwrap_or(1_209_600),
        });
    let ctx = Rc::new(Job {
        src: cluster.clone(),
        dst: cluster,
        signing,
        dst_signing: None,
        replicas: args.replicas.max(1),
        classes: Vec::new(),
    });
    // A failed registration only loses the Ctrl-C summary (the default action still ends
    // the run).
    let _ = signal_hook::flag::register(signal_hook::consts::SIGINT, INTERRUPTED.clone());
    let (runtime, _) = build_runtime(args.io).map_err(|e| BenchError::Io(e.to_string()))?;
    println!();
    println!("{CSV_HEADER}");
    let mut last_rows = Vec::new();
    let mut report = Vec::new();
    let levels: Vec<Option<usize>> = if args.sweep.is_empty() {
        (0..args.repeat.max(1)).map(|_| None).collect()
    } else {
        args.sweep.iter().map(|&level| Some(level)).collect()
    };
    let mut sweep_points: Vec<(usize, f64, f64, u64)> = Vec::new();
    let mut timeline: Vec<crate::report::plot::PlotPoint> = Vec::new();
    for (index, level) in levels.into_iter().enumerate() {
        let experiment = index + 1;
        let mut run_args = args.clone();
        if let Some(level) = level {
            run_args.concurrency = level;
            if run_args.run_time.is_zero() {
                run_args.run_time = Duration::from_secs(5);
            }
        }
        let (row, stats) = runtime.block_on(experiment_run(&run_args, &ctx, &http))?;
        log_line(&format!("*** experiment {experiment} complete ***"));
        log_line(&summary_line(&row, &stats));
        let offset = timeline.last().map_or(0.0, |p| p.x);
        timeline.extend(
            stats
                .timeline
                .iter()
                .map(|p| crate::report::plot::PlotPoint {
                    x: p.x + offset,
                    ..*p
                }),
        );
        if let Some(level) = level {
            let latency = if stats.read_latency.is_empty() {
                &stats.write_latency
            } else {
                &stats.read_latency
            };
            sweep_points.push((
                level,
                row.read_rate + row.write_rate,
                latency.value_at_quantile(0.99) as f64 / 1000.0,
                row.errors,
            ));
        }
        let secs = row.elapsed.as_secs_f64().max(1e-9);
        let per_server: Vec<serde_json::Value> = stats
            .per_server
            .iter()
            .map(|(&server, c)| {
                let uuid = ctx
                    .dst
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
        report.push(serde_json::json!({
            "servers": per_server,
            "experiment": experiment,
            "concurrency": run_args.concurrency,
            "elapsed_s": row.elapsed.as_secs_f64(),
            "read_bytes": row.read, "read_mib_s": row.read_rate,
            "written_bytes": row.written, "write_mib_s": row.write_rate,
            "errors": row.errors, "errors_by_kind": stats.errors_by_kind,
            "read_latency": percentiles(&stats.read_latency),
            "write_latency": percentiles(&stats.write_latency),
        }));
        last_rows.push(csv_row(&run_args, &row));
        if INTERRUPTED.load(Ordering::Relaxed) {
            break;
        }
    }
    if !sweep_points.is_empty() {
        log_line("Sweep: concurrency, MiB/s, p99 ms, errors");
        for (level, rate, p99, errors) in &sweep_points {
            log_line(&format!("Sweep: {level}, {rate:.1}, {p99:.1}, {errors}"));
        }
        log_line(&knee_line(&sweep_points));
    }
    println!();
    println!("{CSV_HEADER},Experiment");
    for (i, row) in last_rows.iter().enumerate() {
        println!("{row},{}", i + 1);
    }
    if let Some(path) = &args.plot {
        let result = if sweep_points.is_empty() {
            crate::report::plot::draw(path, "keepmover bench", "seconds", &timeline)
        } else {
            let points: Vec<_> = sweep_points
                .iter()
                .map(|&(level, rate, p99, _)| crate::report::plot::PlotPoint {
                    x: level as f64,
                    mib_s: rate,
                    p99_ms: p99,
                })
                .collect();
            crate::report::plot::draw(path, "keepmover bench sweep", "requests in flight", &points)
        };
        result.map_err(BenchError::Io)?;
    }
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&serde_json::json!({ "experiments": report }))
            .map_err(|e| BenchError::Io(e.to_string()))?;
        std::fs::write(path, text)
            .map_err(|e| BenchError::Io(format!("writing {}: {e}", path.display())))?;
    }
    Ok(())
}

fn summary_line(row: &Row, stats: &Stats) -> String {
    let ms = |h: &Histogram<u64>, q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    format!(
        "Summary: read {} bytes ({:.1} MiB/s), wrote {} bytes ({:.1} MiB/s), {} errors {:?}; read latency p50/p90/p99/p99.9/max {:.1}/{:.1}/{:.1}/{:.1}/{:.1} ms, write latency p50/p90/p99/p99.9/max {:.1}/{:.1}/{:.1}/{:.1}/{:.1} ms",
        row.read, row.read_rate, row.written, row.write_rate, row.errors, stats.errors_by_kind,
        ms(&stats.read_latency, 0.5), ms(&stats.read_latency, 0.9), ms(&stats.read_latency, 0.99), ms(&stats.read_latency, 0.999), stats.read_latency.max() as f64 / 1000.0,
        ms(&stats.write_latency, 0.5), ms(&stats.write_latency, 0.9), ms(&stats.write_latency, 0.99), ms(&stats.write_latency, 0.999), stats.write_latency.max() as f64 / 1000.0,
    )
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

/// The block a writer sends: NUL bytes (as keep-exercise), optionally with the thread id
/// (`-vary-thread`) and a random first part per request (`-vary-request`).
fn make_block(args: &BenchArgs, thread: usize, size: usize) -> Vec<u8> {
    let mut block = vec![0u8; size];
    if args.vary_thread {
        let mut id = thread as u64;
        for slot in block.iter_mut().take(10) {
            *slot = (id & 0x7f) as u8 | if id > 0x7f { 0x80 } else { 0 };
            id >>= 7;
            if id == 0 {
                break;
            }
        }
    }
    if args.vary_request {
        let n = size.min(512 << 10);
        let offset = if args.vary_thread { 10.min(n) } else { 0 };
        rand::fill(&mut block[offset..n]);
    }
    block
}

/// What one benchmark task does.
#[derive(Clone, Copy)]
enum Role {
    Read,
    Write,
    /// Reads with this probability, else writes (`-mix R:W`).
    Mixed(f64),
}

/// Spaces requests out to at most `-rate` per second across all tasks.
struct Pacer {
    interval: Option<Duration>,
    next: std::cell::Cell<Instant>,
}

impl Pacer {
    fn new(rate: Option<f64>) -> Pacer {
        Pacer {
            interval: rate
                .filter(|r| *r > 0.0)
                .map(|r| Duration::from_secs_f64(1.0 / r)),
            next: std::cell::Cell::new(Instant::now()),
        }
    }

    async fn wait(&self) {
        let Some(interval) = self.interval else {
            return;
        };
        let now = Instant::now();
        let slot = self.next.get().max(now);
        self.next.set(slot + interval);
        if slot > now {
            compio::time::sleep(slot - now).await;
        }
    }
}

/// Everything the tasks of one experiment share.
struct TaskEnv {
    keepstores: HttpKeepstores,
    ctx: Rc<Job>,
    gates: Rc<Gates>,
    control: Control,
    counters: Counters,
    stats: Rc<RefCell<Stats>>,
    latest: Rc<RefCell<Option<BlockId>>>,
    pool: BufferPool,
    hasher: HashBatcher,
    index_blocks: Rc<Vec<SourceBlock>>,
    args: BenchArgs,
    pace: Pacer,
}

/// The size of the next write: `-block-size`, or one of `-block-sizes`.
fn next_block_size(args: &BenchArgs) -> usize {
    match args.block_sizes.as_slice() {
        [] => args.block_size,
        sizes => sizes[rand::random_range(0..sizes.len())],
    }
}

impl TaskEnv {
    fn transfer(&self) -> Ctx<'_, HttpKeepstores> {
        Ctx {
            keepstores: &self.keepstores,
            job: &self.ctx,
            retry: RetryPolicy {
                retries: 0,
                delay: Duration::from_millis(100),
            },
            hasher: &self.hasher,
            pool: &self.pool,
            gates: &self.gates,
            control: &self.control,
            counters: &self.counters,
        }
    }
}

async fn write_once(env: &TaskEnv, thread: usize) {
    let args = &env.args;
    let block = make_block(args, thread, next_block_size(args));
    let hash = BlockHash(crate::hash::md5(&block));
    let dst = &env.ctx.dst;
    let writable = dst.writable();
    let uuids: Vec<&str> = writable
        .iter()
        .map(|&i| dst.services[i].uuid.as_str())
        .collect();
    let order: Vec<usize> = probe_order_go(&hash.to_string(), &uuids)
        .into_iter()
        .map(|i| writable[i])
        .collect();
    let begin = Instant::now();
    let mut outcome = Outcome::default();
    let size = block.len() as u64;
    let short = BlockId::new(hash, size).short();
    let result = env
        .transfer()
        .store(&short, Bytes::from(block), &order, &mut outcome)
        .await;
    let mut s = env.stats.borrow_mut();
    match result {
        Ok(_) => {
            s.bytes_written += size;
            for &server in &outcome.stored_on {
                let c = s.per_server.entry(server).or_default();
                c.writes += 1;
                c.written_bytes += size;
            }
            let _ = s
                .write_latency
                .record(begin.elapsed().as_micros().max(1) as u64);
            *env.latest.borrow_mut() = Some(BlockId { hash, size });
        }
        Err(e) => s.error(e.kind().as_str()),
    }
}

async fn read_once(env: &TaskEnv) {
    let block = if env.index_blocks.is_empty() {
        let current = *env.latest.borrow();
        match current {
            Some(id) => SourceBlock {
                id,
                holders: Vec::new(),
            },
            None => {
                compio::time::sleep(Duration::from_millis(5)).await;
                return;
            }
        }
    } else {
        env.index_blocks[rand::random_range(0..env.index_blocks.len())].clone()
    };
    let begin = Instant::now();
    let mut outcome = Outcome::default();
    let short = block.id.short();
    let read_order = probe_order_go(short.hash_hex(), &env.ctx.src.uuids());
    let result = env
        .transfer()
        .fetch(&block, &short, &read_order, &mut outcome)
        .await;
    let mut s = env.stats.borrow_mut();
    match result {
        Ok(_) => {
            s.bytes_read += block.id.size;
            if let Some(server) = outcome.read_from {
                let c = s.per_server.entry(server).or_default();
                c.reads += 1;
                c.read_bytes += block.id.size;
            }
            let _ = s
                .read_latency
                .record(begin.elapsed().as_micros().max(1) as u64);
        }
        Err(e) => {
            let kind = if outcome.bad_replicas > 0 {
                "checksum"
            } else {
                e.kind().as_str()
            };
            s.error(kind);
        }
    }
}

async fn experiment_run(
    args: &BenchArgs,
    ctx: &Rc<Job>,
    http: &ClientConfig,
) -> Result<(Row, Stats), BenchError> {
    let keepstores = HttpFactory::new(http.clone(), &[&ctx.dst]).client();
    let stats = Rc::new(RefCell::new(Stats::new()?));
    let latest: Rc<RefCell<Option<BlockId>>> = Rc::new(RefCell::new(None));
    let largest = args
        .block_sizes
        .iter()
        .copied()
        .max()
        .unwrap_or(args.block_size)
        .max(64 << 10);
    let readers = (args.read_threads + args.write_threads).max(1) * args.concurrency.max(1);
    let pool = BufferPool::new((readers * largest * 2).clamp(64 << 20, 4 << 30));
    let hasher = HashBatcher::new();
    let mut index_blocks: Vec<SourceBlock> = Vec::new();
    if args.use_index && args.read_threads > 0 {
        for server in 0..ctx.src.services.len() {
            let (slice, _) = fetch_slice(&keepstores, &ctx.src, server, "", None)
                .await
                .map_err(|e| BenchError::Io(e.to_string()))?;
            index_blocks.extend(slice.into_iter().map(|id| SourceBlock {
                id,
                holders: vec![server as u16],
            }));
        }
        if index_blocks.is_empty() {
            return Err(BenchError::Io(
                "-use-index: the indexes list no blocks".into(),
            ));
        }
    }
    let index_blocks = Rc::new(index_blocks);
    log_line("Start warmup phase, waiting for 1 available block before reading starts");
    let started = Instant::now();
    let deadline = (!args.run_time.is_zero()).then(|| started + args.run_time);
    let running =
        move || !INTERRUPTED.load(Ordering::Relaxed) && deadline.is_none_or(|d| Instant::now() < d);
    let env = Rc::new(TaskEnv {
        keepstores,
        ctx: ctx.clone(),
        gates: Gates::new(ctx.src.services.len(), ctx.dst.services.len(), 1 << 16),
        control: Control::new(),
        counters: Counters::default(),
        stats: stats.clone(),
        latest: latest.clone(),
        pool,
        hasher,
        index_blocks,
        args: args.clone(),
        pace: Pacer::new(args.rate),
    });
    let tasks_per_thread = args.concurrency.max(1);
    let roles: Vec<Role> = match args.mix {
        Some((r, w)) => {
            let read_share = f64::from(r) / f64::from((r + w).max(1));
            let threads = (args.read_threads + args.write_threads).max(1);
            vec![Role::Mixed(read_share); threads * tasks_per_thread]
        }
        None => std::iter::repeat_n(Role::Write, args.write_threads * tasks_per_thread)
            .chain(std::iter::repeat_n(
                Role::Read,
                args.read_threads * tasks_per_thread,
            ))
            .collect(),
    };
    let mut tasks = Vec::new();
    for (task, role) in roles.into_iter().enumerate() {
        let env = env.clone();
        tasks.push(compio::runtime::spawn(async move {
            let thread = task / tasks_per_thread;
            while running() {
                env.pace.wait().await;
                if !running() {
                    break;
                }
                let read = match role {
                    Role::Read => true,
                    Role::Write => false,
                    Role::Mixed(share) => {
                        (env.latest.borrow().is_some() || !env.index_blocks.is_empty())
                            && rand::random::<f64>() < share
                    }
                };
                if read {
                    read_once(&env).await;
                } else {
                    write_once(&env, thread).await;
                }
            }
        }));
    }
    // Stats rows while the tasks run.
    let mut read_peak = 0f64;
    let mut write_peak = 0f64;
    let mut warm = false;
    let mut printed = 0u128;
    let row_now = |read_peak: &mut f64, write_peak: &mut f64| {
        let s = stats.borrow();
        let elapsed = started.elapsed();
        let secs = elapsed.as_secs_f64().max(1e-9);
        let read_rate = s.bytes_read as f64 / secs / 1_048_576.0;
        let write_rate = s.bytes_written as f64 / secs / 1_048_576.0;
        *read_peak = read_peak.max(read_rate);
        *write_peak = write_peak.max(write_rate);
        Row {
            elapsed,
            read: s.bytes_read,
            read_rate,
            read_peak: *read_peak,
            written: s.bytes_written,
            write_rate,
            write_peak: *write_peak,
            errors: s.errors,
        }
    };
    let tick = if args.stats_interval.is_zero() {
        Duration::from_millis(100)
    } else {
        args.stats_interval
    };
    let mut last_sample = (Instant::now(), 0u64);
    while running() {
        compio::time::sleep(tick.min(Duration::from_millis(100))).await;
        if last_sample.0.elapsed() >= Duration::from_millis(500) {
            let mut st = stats.borrow_mut();
            let total = st.bytes_read + st.bytes_written;
            let secs = last_sample.0.elapsed().as_secs_f64();
            let point = crate::report::plot::PlotPoint {
                x: started.elapsed().as_secs_f64(),
                mib_s: (total - last_sample.1) as f64 / secs / 1_048_576.0,
                p99_ms: st.interval_latency.value_at_quantile(0.99) as f64 / 1000.0,
            };
            st.timeline.push(point);
            st.interval_latency.reset();
            last_sample = (Instant::now(), total);
        }
        if !warm && (latest.borrow().is_some() || args.write_threads == 0) {
            warm = true;
            log_line("Warmup complete!");
        }
        if !args.stats_interval.is_zero() {
            let due = started.elapsed().as_millis() / args.stats_interval.as_millis().max(1);
            if printed < due {
                printed = due;
                println!(
                    "{}",
                    csv_row(args, &row_now(&mut read_peak, &mut write_peak))
                );
            }
        }
    }
    for task in tasks {
        let _ = task.await;
    }
    drop(env);
    let row = row_now(&mut read_peak, &mut write_peak);
    let stats = Rc::try_unwrap(stats)
        .map(RefCell::into_inner)
        .map_err(|_| BenchError::Io("stats still shared".into()))?;
    Ok((row, stats))
}
