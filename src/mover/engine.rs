//! The engine: a walker that diffs the clusters prefix by prefix and feeds blocks through a
//! bounded channel, and one worker thread per core, each with its own completion-based
//! runtime (io_uring, or epoll where the kernel refuses io_uring), its own connection pools
//! and many blocks in flight. Back-pressure from the channel and the buffer budget, not
//! buffering, is what keeps memory flat.
//!
//! The channel is `async-channel` rather than crossbeam: a worker's tasks must wait for work
//! without blocking the thread that also drives their I/O, and crossbeam's `recv` blocks.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::checkpoint::{self, CheckpointError, CheckpointState, CHECKPOINT_VERSION};
use super::hash_batch::HashBatcher;
use super::pool::BufferPool;
use super::transfer::{self, TransferContext, TransferOutcome};
use crate::index::merge::{choose_extra_digits, prefixes};
use crate::index::walk::{diff_slice, estimate_source_blocks, SliceDiff, WalkError};
use crate::index::SourceBlock;
use crate::net::{build_runtime, ClientConfig, HttpClient, IoBackend, TlsPolicy};
use crate::report::Progress;

/// How to run a copy. Built by `commands` from flags; nothing here knows about argv.
#[derive(Debug)]
pub struct EngineConfig {
    pub transfer: TransferContext,
    /// Only hashes starting with this (keep-rsync's `-prefix`).
    pub prefix: String,
    /// Total hex digits per slice; 0 = choose from an estimate of the block count.
    pub prefix_length: usize,
    pub workers: usize,
    pub concurrency: usize,
    pub memory_budget: usize,
    pub io: IoBackend,
    pub http: ClientConfig,
    pub checkpoint: Option<PathBuf>,
    pub dry_run: bool,
    /// Walk the indexes once to count before copying (keep-rsync's opening line needs the
    /// totals); `false` = copy as the walk finds blocks, with totals growing as it goes.
    pub count_first: bool,
    /// Locators per slice to aim for when choosing the slice length.
    pub slice_target: u64,
}

/// What a finished run reports besides the progress counters.
#[derive(Debug, Clone)]
pub struct RunReport {
    pub src_blocks: u64,
    pub dst_blocks: u64,
    pub to_copy: u64,
    pub to_copy_bytes: u64,
    pub copied: u64,
    pub failed: u64,
    pub io_backend: IoBackend,
    pub peak_buffer_bytes: usize,
    pub slices: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("Error while syncing data: {0}")]
    Walk(#[from] WalkError),
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    #[error("starting the I/O runtime ({backend}): {source}")]
    Runtime {
        backend: IoBackend,
        source: std::io::Error,
    },
    #[error("worker thread failed: {0}")]
    Worker(String),
}

struct Task {
    block: SourceBlock,
    slice: u64,
    /// Destination servers in rendezvous order (computed in batches by the walker).
    write_order: Vec<usize>,
}

/// Blocks whose write orders are computed together (one SIMD batch).
const ORDER_BATCH: usize = 1024;

/// Tracks which slices are fully confirmed, to advance the checkpoint watermark in order.
struct SliceTracker {
    state: Mutex<TrackerState>,
    checkpoint: Option<(PathBuf, CheckpointState)>,
}

struct TrackerState {
    /// Slices registered and not yet passed by the watermark: (seq, prefix, remaining, failed).
    open: std::collections::VecDeque<(u64, String, u64, bool)>,
    stuck: bool,
    write_error: Option<CheckpointError>,
}

impl SliceTracker {
    fn register(&self, seq: u64, prefix: &str, blocks: u64) {
        let mut state = self.lock();
        state
            .open
            .push_back((seq, prefix.to_string(), blocks, false));
        self.advance(&mut state);
    }

    fn complete(&self, seq: u64, ok: bool) {
        let mut state = self.lock();
        if let Some(entry) = state.open.iter_mut().find(|e| e.0 == seq) {
            entry.2 = entry.2.saturating_sub(1);
            entry.3 |= !ok;
        }
        self.advance(&mut state);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, TrackerState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn advance(&self, state: &mut TrackerState) {
        let mut done_through = None;
        while let Some(front) = state.open.front() {
            if state.stuck || front.2 > 0 {
                break;
            }
            if front.3 {
                state.stuck = true;
                break;
            }
            done_through = state.open.pop_front().map(|e| e.1);
        }
        if let (Some(done), Some((path, base))) = (done_through, &self.checkpoint) {
            let mut saved = base.clone();
            saved.done_through = Some(done);
            if let Err(e) = checkpoint::save(path, &saved) {
                state.write_error.get_or_insert(e);
            }
        }
    }
}

fn client_for(config: &EngineConfig) -> HttpClient {
    let client = HttpClient::new(config.http.clone());
    for cluster in [&config.transfer.src, &config.transfer.dst] {
        if cluster.insecure_tls {
            for service in &cluster.services {
                client.set_tls_policy(&service.origin, TlsPolicy::Insecure);
            }
        }
    }
    client
}

/// Runs a whole copy (or a dry run) and returns what happened. Blocks that fail are counted
/// in `progress` and the run goes on; an unreadable index aborts it.
pub fn run(config: EngineConfig, progress: Arc<Progress>) -> Result<RunReport, EngineError> {
    let config = Arc::new(config);
    let (runtime, backend) = build_runtime(config.io).map_err(|source| EngineError::Runtime {
        backend: config.io,
        source,
    })?;
    let walker_config = config.clone();
    runtime.block_on(async move { walk_and_copy(walker_config, progress, backend).await })
}

async fn walk_and_copy(
    config: Arc<EngineConfig>,
    progress: Arc<Progress>,
    backend: IoBackend,
) -> Result<RunReport, EngineError> {
    let client = client_for(&config);
    let src = &config.transfer.src;
    let dst = &config.transfer.dst;

    let resume = match &config.checkpoint {
        Some(path) => checkpoint::load(path, &config.prefix)?,
        None => None,
    };
    let extra_digits = match (&resume, config.prefix_length) {
        (Some(state), _) => state.extra_digits,
        (None, 0) => {
            let estimate = estimate_source_blocks(&client, src, &config.prefix).await?;
            choose_extra_digits(estimate, config.prefix.len(), config.slice_target)
        }
        (None, wanted) => wanted.saturating_sub(config.prefix.len()).min(8),
    };
    let done_through = resume.as_ref().and_then(|s| s.done_through.clone());
    let pending_prefixes = || {
        let done_through = done_through.clone();
        prefixes(&config.prefix, extra_digits)
            .filter(move |p| done_through.as_ref().is_none_or(|done| p > done))
    };

    // Counting pass: keep-rsync opens with the totals, so walk once without copying. Only
    // counts are kept; when everything fits in one slice, its diff is reused.
    let mut report = RunReport {
        src_blocks: 0,
        dst_blocks: 0,
        to_copy: 0,
        to_copy_bytes: 0,
        copied: 0,
        failed: 0,
        io_backend: backend,
        peak_buffer_bytes: 0,
        slices: 0,
    };
    let single_slice = extra_digits == 0;
    let mut reused: Option<SliceDiff> = None;
    let mut warned_servers = std::collections::HashSet::new();
    // Adds one slice's counts to the report and the progress, and warns once per
    // destination server whose index could not be read.
    let mut account = |diff: &SliceDiff, report: &mut RunReport| {
        for problem in &diff.dst_unreadable {
            if warned_servers.insert(problem.origin().to_string()) {
                progress.warn(&format!(
                    "{problem} (treating that server's index as empty: its blocks may be copied again)"
                ));
            }
        }
        report.src_blocks += diff.src_blocks;
        report.dst_blocks += diff.dst_blocks;
        report.to_copy += diff.missing.len() as u64;
        report.to_copy_bytes += diff.missing_bytes();
        report.slices += 1;
        progress
            .skipped_blocks
            .fetch_add(diff.present, std::sync::atomic::Ordering::Relaxed);
    };
    if config.count_first {
        for prefix in pending_prefixes() {
            let diff = diff_slice(&client, src, dst, &prefix).await?;
            account(&diff, &mut report);
            if single_slice {
                reused = Some(diff);
            }
        }
        progress.announce(
            report.src_blocks,
            report.dst_blocks,
            report.to_copy,
            report.to_copy_bytes,
        );
    } else {
        progress.announce_uncounted();
    }
    if config.dry_run {
        return Ok(report);
    }

    let tracker = Arc::new(SliceTracker {
        state: Mutex::new(TrackerState {
            open: Default::default(),
            stuck: false,
            write_error: None,
        }),
        checkpoint: config.checkpoint.as_ref().map(|path| {
            (
                path.clone(),
                CheckpointState {
                    version: CHECKPOINT_VERSION,
                    base_prefix: config.prefix.clone(),
                    extra_digits,
                    done_through: done_through.clone(),
                },
            )
        }),
    });
    let pool = BufferPool::new(config.memory_budget);
    let workers = if config.workers == 0 {
        default_workers()
    } else {
        config.workers
    };
    // Enough queued tasks to keep every worker busy while the next slice is fetched.
    let (sender, receiver) = async_channel::bounded::<Task>(workers * config.concurrency * 2);
    let mut handles = Vec::with_capacity(workers);
    for worker in 0..workers {
        let receiver = receiver.clone();
        let config = config.clone();
        let progress = progress.clone();
        let tracker = tracker.clone();
        let pool = pool.clone();
        let handle = std::thread::Builder::new()
            .name(format!("keepmover-worker-{worker}"))
            .spawn(move || worker_main(config, receiver, progress, tracker, pool))
            .map_err(|e| EngineError::Worker(e.to_string()))?;
        handles.push(handle);
    }
    drop(receiver);

    let mut walk_result: Result<(), EngineError> = Ok(());
    for (seq, prefix) in pending_prefixes().enumerate() {
        let diff = match reused.take() {
            Some(d) => d,
            None => match diff_slice(&client, src, dst, &prefix).await {
                Ok(d) => d,
                Err(e) => {
                    walk_result = Err(e.into());
                    break;
                }
            },
        };
        if !config.count_first {
            account(&diff, &mut report);
            progress.found_more(diff.missing.len() as u64, diff.missing_bytes());
        }
        tracker.register(seq as u64, &prefix, diff.missing.len() as u64);
        let mut blocks = diff.missing.into_iter().peekable();
        'slice: while blocks.peek().is_some() {
            let batch: Vec<SourceBlock> = blocks.by_ref().take(ORDER_BATCH).collect();
            let hashes: Vec<_> = batch.iter().map(|b| b.id.hash).collect();
            let orders = transfer::write_orders(dst, &hashes);
            for (block, write_order) in batch.into_iter().zip(orders) {
                let task = Task {
                    block,
                    slice: seq as u64,
                    write_order,
                };
                if sender.send(task).await.is_err() {
                    break 'slice;
                }
            }
        }
    }
    if walk_result.is_err() {
        // Stop the workers taking new blocks; the ones in flight finish.
        sender.close();
    }
    drop(sender);
    for handle in handles {
        match handle.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => walk_result = walk_result.and(Err(e)),
            Err(_) => walk_result = walk_result.and(Err(EngineError::Worker("panicked".into()))),
        }
    }
    walk_result?;
    if let Some(e) = tracker.lock().write_error.take() {
        return Err(e.into());
    }
    let summary = progress.finish();
    report.copied = summary.copied_blocks;
    report.failed = summary.failed_blocks;
    report.peak_buffer_bytes = pool.peak_allocated();
    Ok(report)
}

fn worker_main(
    config: Arc<EngineConfig>,
    receiver: async_channel::Receiver<Task>,
    progress: Arc<Progress>,
    tracker: Arc<SliceTracker>,
    pool: BufferPool,
) -> Result<(), EngineError> {
    let (runtime, _) = build_runtime(config.io).map_err(|source| EngineError::Runtime {
        backend: config.io,
        source,
    })?;
    runtime.block_on(async move {
        let client = std::rc::Rc::new(client_for(&config));
        let hasher = HashBatcher::new();
        let mut lanes = Vec::with_capacity(config.concurrency);
        for _ in 0..config.concurrency {
            let receiver = receiver.clone();
            let client = client.clone();
            let hasher = hasher.clone();
            let config = config.clone();
            let progress = progress.clone();
            let tracker = tracker.clone();
            let pool = pool.clone();
            lanes.push(compio::runtime::spawn(async move {
                while let Ok(task) = receiver.recv().await {
                    let ok =
                        copy_one(&client, &hasher, &config.transfer, &pool, &task, &progress).await;
                    tracker.complete(task.slice, ok);
                }
            }));
        }
        let mut failed = None;
        for lane in lanes {
            if let Err(e) = lane.await {
                failed = Some(EngineError::Worker(format!("a copy task failed: {e}")));
            }
        }
        failed.map_or(Ok(()), Err)
    })
}

async fn copy_one(
    client: &HttpClient,
    hasher: &HashBatcher,
    ctx: &TransferContext,
    pool: &BufferPool,
    task: &Task,
    progress: &Progress,
) -> bool {
    let block = &task.block;
    let short = format!("{}+{}", block.id.hash, block.id.size);
    progress.block_started(&short);
    let mut outcome = TransferOutcome::default();
    let result = async {
        let lease = transfer::fetch(client, hasher, ctx, pool, block, &mut outcome).await?;
        transfer::store(
            client,
            ctx,
            &block.id.hash,
            lease.freeze(),
            &task.write_order,
            &mut outcome,
        )
        .await
    }
    .await;
    use std::sync::atomic::Ordering::Relaxed;
    progress
        .refetched
        .fetch_add(u64::from(outcome.bad_replicas), Relaxed);
    progress
        .errors
        .fetch_add(u64::from(outcome.request_errors), Relaxed);
    match result {
        Ok(_) => {
            progress.block_copied(block.id.size);
            true
        }
        Err(e) => {
            progress.block_failed(&short, &e.to_string());
            false
        }
    }
}

/// One worker per two cores. A worker's SIMD MD5 hashes 5–7 GB/s, more than a NIC brings
/// in, and the more blocks one worker has in flight, the more chunks land together and the
/// fuller its lanes (measured: with 1 MiB blocks one worker spent 2.7× less CPU hashing than
/// the scalar path, two workers on two cores only 1.3×); the other cores are left to the
/// kernel's network copies and TLS.
pub fn default_workers() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().div_ceil(2))
}

/// Default timeouts and pool sizes for the HTTP client.
pub fn default_http_config() -> ClientConfig {
    ClientConfig {
        connect_timeout: Duration::from_secs(10),
        first_byte_timeout: Duration::from_secs(60),
        idle_timeout: Duration::from_secs(60),
        max_idle_per_origin: 64,
        pool_idle_expiry: Duration::from_secs(90),
        max_head_bytes: 64 << 10,
        ..ClientConfig::default()
    }
}
