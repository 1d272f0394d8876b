//! The engine: a walker that diffs the clusters prefix by prefix and feeds blocks through a
//! bounded channel, and worker threads, each with its own completion-based runtime
//! (io_uring, or epoll where the kernel refuses io_uring), its own keepstore client and many
//! blocks in flight. Back-pressure from the channel and the buffer budget, not buffering, is
//! what keeps memory flat. It reports only through events and counters.
//!
//! A run, in named steps: [`Engine::plan`] (checkpoint, slicing), [`Engine::count`] (exact
//! or estimated totals), [`Engine::dispatch`] (walk and hand out blocks), and the workers'
//! [`copy_block`]; then the report.
//!
//! The channel is `async-channel` rather than crossbeam: a worker's tasks must wait for work
//! without blocking the thread that also drives their I/O, and crossbeam's `recv` blocks.

use std::cell::RefCell;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::checkpoint::{
    self, CheckpointError, CheckpointLock, CheckpointState, CheckpointWriter, JobIdentity,
    CHECKPOINT_VERSION,
};
use super::control::{Control, StopReason};
use super::counters::{Counters, Op, Snapshot};
use super::events::{
    Action, BlockError, BlockRecord, Emitter, Event, EventSink, Phase, Plan, Pump,
};
use super::gates::Gates;
use super::hash_batch::HashBatcher;
use super::pool::BufferPool;
use super::retry::RetryPolicy;
use super::slices::{Settled, SliceTracker};
use super::transfer::{Ctx, Job, Outcome};
use crate::index::merge::{choose_extra_digits, prefixes};
use crate::index::walk::{
    diff_slice, estimate_source_blocks, DstIndexErrors, SliceDiff, WalkError,
};
use crate::index::SourceBlock;
use crate::keep::rendezvous::probe_orders_go;
use crate::keep::ShortLocator;
use crate::keepstore::{Keepstores, KeepstoresFactory};
use crate::net::{build_runtime, IoBackend};

/// How totals are found before copying.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Counting {
    /// Walk every index once to count, then again to copy (`-count-first`; exact totals).
    Exact,
    /// Extrapolate from the first slice (the hash space is uniform) and refine as the walk
    /// goes; the exact totals come at the end. No second index walk.
    Estimate,
}

/// Tuning of a run: every default in one place (the flag table shows the same values; a
/// test holds them together).
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// Worker threads; 0 = one per two cores.
    pub workers: usize,
    /// Most blocks in flight per worker.
    pub concurrency: usize,
    /// Bytes of block buffers.
    pub memory_budget: usize,
    pub io: IoBackend,
    pub retry: RetryPolicy,
    /// Total hex digits per slice; 0 = chosen from an estimate of the block count.
    pub prefix_length: usize,
    /// Locators per slice to aim for when choosing the slice length.
    pub slice_target: u64,
    pub counting: Counting,
    pub dry_run: bool,
    pub checkpoint: Option<PathBuf>,
    /// How long blocks in flight may take to finish after a stop was asked.
    pub grace: Duration,
    pub dst_index_errors: DstIndexErrors,
    /// Most requests in flight to one server from one worker.
    pub per_server_requests: usize,
    /// Stop cleanly once this many bytes are copied (`-max-transfer`).
    pub max_transfer: Option<u64>,
    /// Stop cleanly after this long (`-max-duration`).
    pub max_duration: Option<Duration>,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            workers: 0,
            concurrency: 32,
            memory_budget: 1 << 30,
            io: IoBackend::Auto,
            retry: RetryPolicy {
                retries: 2,
                delay: Duration::from_secs(2),
            },
            prefix_length: 0,
            slice_target: 1_000_000,
            counting: Counting::Estimate,
            dry_run: false,
            checkpoint: None,
            grace: Duration::from_secs(30),
            dst_index_errors: DstIndexErrors::Fail,
            per_server_requests: 32,
            max_transfer: None,
            max_duration: None,
        }
    }
}

/// One whole run: what to move, where, and how.
#[derive(Debug)]
pub struct Run {
    pub job: Job,
    /// What the checkpoint records about the job.
    pub identity: JobIdentity,
    /// Only hashes starting with this (keep-rsync's `-prefix`).
    pub prefix: String,
    pub config: EngineConfig,
}

/// What a finished run reports; the counters hold the rest.
#[derive(Debug, Clone)]
pub struct RunReport {
    pub plan: Plan,
    pub totals: Snapshot,
    pub stopped: Option<StopReason>,
    pub io_backend: IoBackend,
    pub peak_buffer_bytes: usize,
    pub slices: u64,
    pub elapsed: Duration,
    pub dry_run: bool,
}

impl RunReport {
    /// Planned blocks that were neither copied nor failed (a stop abandoned them).
    pub fn unsettled(&self) -> u64 {
        self.totals
            .planned_blocks
            .saturating_sub(self.totals.copied_blocks + self.totals.failed_blocks)
    }
}

impl From<WalkError> for EngineError {
    fn from(e: WalkError) -> Self {
        EngineError::Walk(Box::new(e))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("Error while syncing data: {0}")]
    Walk(Box<WalkError>),
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    #[error("starting the I/O runtime ({backend}): {source}")]
    Runtime {
        backend: IoBackend,
        source: std::io::Error,
    },
    #[error("starting a thread: {0}")]
    Thread(std::io::Error),
    #[error("worker thread failed: {0}")]
    Worker(String),
}

/// Runs a whole copy (or a dry run) and returns what happened. Blocks that fail are counted
/// and the run goes on; an unreadable index aborts it. Events go to `sinks` on a thread of
/// their own; `control` steers the run while it goes.
pub fn run<F: KeepstoresFactory>(
    run: Run,
    factory: F,
    control: Arc<Control>,
    counters: Arc<Counters>,
    sinks: Vec<Box<dyn EventSink>>,
) -> Result<RunReport, EngineError> {
    let (pump, emitter) = Pump::start(sinks, counters.clone()).map_err(EngineError::Thread)?;
    let result = (|| {
        let (runtime, backend) =
            build_runtime(run.config.io).map_err(|source| EngineError::Runtime {
                backend: run.config.io,
                source,
            })?;
        let engine = Engine {
            run: Arc::new(run),
            factory: Arc::new(factory),
            control,
            counters,
            backend,
            started: Instant::now(),
        };
        runtime.block_on(engine.go(emitter))
    })();
    pump.join();
    result
}

/// The settled-slice bookkeeping shared by the walker and the workers.
struct Ledger {
    tracker: Mutex<SliceTracker>,
    writer: Option<CheckpointWriter>,
}

impl Ledger {
    fn apply(&self, settled: Settled, counters: &Counters, emitter: &mut Emitter) {
        if settled.slices.is_empty() {
            return;
        }
        if let (Some(writer), Some(mark)) = (&self.writer, &settled.watermark) {
            writer.set(mark.clone());
        }
        let count = settled.slices.len();
        for (i, prefix) in settled.slices.into_iter().enumerate() {
            let watermark = if i + 1 == count {
                settled.watermark.clone()
            } else {
                None
            };
            emitter.emit(Event::SliceDone { prefix, watermark });
        }
        counters.slices_done.fetch_add(count as u64, Relaxed);
    }

    fn register(&self, seq: u64, prefix: &str, blocks: u64, counters: &Counters, e: &mut Emitter) {
        let settled = self
            .tracker
            .lock()
            .map(|mut t| t.register(seq, prefix, blocks))
            .unwrap_or_default();
        self.apply(settled, counters, e);
    }

    fn complete(&self, seq: u64, ok: bool, counters: &Counters, e: &mut Emitter) {
        let settled = self
            .tracker
            .lock()
            .map(|mut t| t.complete(seq, ok))
            .unwrap_or_default();
        self.apply(settled, counters, e);
    }
}

/// A block handed to a worker.
struct Task {
    block: SourceBlock,
    /// `hash+size`, made once: the hash's hex is needed for rendezvous, the request paths,
    /// events and reports.
    short: ShortLocator,
    slice: u64,
    /// Source servers in rendezvous order, and writable destination servers in rendezvous
    /// order (computed by the walker in SIMD batches).
    read_order: Vec<usize>,
    write_order: Vec<usize>,
}

/// Blocks whose orders are computed together (one SIMD batch).
const ORDER_BATCH: usize = 1024;
/// How often a waiting lane or walker looks at the controls again.
const CONTROL_POLL: Duration = Duration::from_millis(50);

struct Engine<F: KeepstoresFactory> {
    run: Arc<Run>,
    factory: Arc<F>,
    control: Arc<Control>,
    counters: Arc<Counters>,
    backend: IoBackend,
    started: Instant,
}

/// Where the walk starts: its slicing and the prefixes still to do.
struct Slicing {
    extra_digits: usize,
    done_through: Option<String>,
}

impl<F: KeepstoresFactory> Engine<F> {
    async fn go(self, mut emitter: Emitter) -> Result<RunReport, EngineError> {
        emitter.emit(Event::Phase(Phase::Planning));
        let keepstores = self.factory.client();
        let _lock = match &self.run.config.checkpoint {
            Some(path) => Some(CheckpointLock::acquire(path)?),
            None => None,
        };
        let slicing = self.plan(&keepstores).await?;
        let total_slices = 16u64.pow(slicing.extra_digits as u32);
        let pending: Vec<String> = prefixes(&self.run.prefix, slicing.extra_digits)
            .filter(|p| slicing.done_through.as_ref().is_none_or(|done| p > done))
            .collect();
        self.counters
            .slices_total
            .store(pending.len() as u64, Relaxed);
        let (plan, first) = self
            .count(&keepstores, &pending, total_slices, &mut emitter)
            .await?;
        if self.run.config.dry_run {
            emitter.emit(Event::Phase(Phase::Done));
            return Ok(self.report(plan, 0, pending.len() as u64, true));
        }
        let writer = match &self.run.config.checkpoint {
            Some(path) => Some(
                CheckpointWriter::start(
                    path.clone(),
                    CheckpointState {
                        version: CHECKPOINT_VERSION,
                        job: self.run.identity.clone(),
                        extra_digits: slicing.extra_digits,
                        done_through: slicing.done_through.clone(),
                    },
                )
                .map_err(EngineError::Thread)?,
            ),
            None => None,
        };
        let ledger = Arc::new(Ledger {
            tracker: Mutex::new(SliceTracker::new()),
            writer,
        });
        let pool = BufferPool::with_gauge(
            self.run.config.memory_budget,
            self.counters.buffers_in_use.clone(),
        );
        self.counters
            .buffer_budget
            .store(self.run.config.memory_budget as u64, Relaxed);
        let workers = match self.run.config.workers {
            0 => default_workers(),
            n => n,
        };
        let queue = workers * self.run.config.concurrency * 2;
        let (sender, receiver) = async_channel::bounded::<Task>(queue);
        let mut handles = Vec::with_capacity(workers);
        for worker in 0..workers {
            let state = WorkerState {
                run: self.run.clone(),
                factory: self.factory.clone(),
                control: self.control.clone(),
                counters: self.counters.clone(),
                ledger: ledger.clone(),
                pool: pool.clone(),
                receiver: receiver.clone(),
                emitter: emitter.fork(),
            };
            let handle = std::thread::Builder::new()
                .name(format!("keepmover-worker-{worker}"))
                .spawn(move || worker_main(state))
                .map_err(EngineError::Thread)?;
            handles.push(handle);
        }
        drop(receiver);
        let watchdog = self.start_watchdog();
        emitter.emit(Event::Phase(Phase::Copying));
        // The walker may now wait on a full queue for long: phase changes go out at once.
        emitter.flush();
        let walked = self
            .dispatch(
                &keepstores,
                &pending,
                first,
                &plan,
                &sender,
                &ledger,
                &mut emitter,
            )
            .await;
        // No more blocks: the workers finish what they hold (or abandon it on a stop).
        sender.close();
        drop(sender);
        if self.control.is_stopping() {
            emitter.emit(Event::Phase(Phase::Stopping));
            emitter.flush();
        }
        let mut result: Result<(), EngineError> = walked;
        for handle in handles {
            match handle.join() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => result = result.and(Err(e)),
                Err(_) => result = result.and(Err(EngineError::Worker("panicked".into()))),
            }
        }
        watchdog.finish();
        let ledger = Arc::try_unwrap(ledger).ok();
        if let Some(writer) = ledger.and_then(|l| l.writer) {
            writer.finish()?;
        }
        result?;
        emitter.emit(Event::Phase(Phase::Done));
        let mut report = self.report(plan, pool.peak_allocated(), pending.len() as u64, false);
        report.plan.src_blocks = report.totals.src_blocks;
        report.plan.dst_blocks = report.totals.dst_blocks;
        Ok(report)
    }

    fn report(&self, plan: Plan, peak: usize, slices: u64, dry_run: bool) -> RunReport {
        RunReport {
            plan,
            totals: self.counters.snapshot(),
            stopped: self.control.stop_reason(),
            io_backend: self.backend,
            peak_buffer_bytes: peak,
            slices,
            elapsed: self.started.elapsed(),
            dry_run,
        }
    }

    /// Step 1: the checkpoint (if any) and the slicing of the hash space.
    async fn plan(&self, keepstores: &F::Client) -> Result<Slicing, EngineError> {
        let config = &self.run.config;
        let resume = match &config.checkpoint {
            Some(path) => checkpoint::load(path, &self.run.identity)?,
            None => None,
        };
        let prefix = &self.run.prefix;
        let extra_digits = match (&resume, config.prefix_length) {
            (Some(state), _) => state.extra_digits,
            (None, 0) => {
                let estimate =
                    estimate_source_blocks(keepstores, &self.run.job.src, prefix).await?;
                choose_extra_digits(estimate, prefix.len(), config.slice_target)
            }
            (None, wanted) => wanted.saturating_sub(prefix.len()).min(8),
        };
        Ok(Slicing {
            extra_digits,
            done_through: resume.and_then(|s| s.done_through),
        })
    }

    /// Adds one slice's figures to the counters.
    fn account(&self, diff: &SliceDiff, emitter: &mut Emitter) {
        for problem in &diff.dst_unreadable {
            emitter.emit(Event::Warning(format!(
                "{problem} (-dst-index-errors copy: treating that server's index as empty; its blocks may be copied again)"
            )));
        }
        let c = &self.counters;
        c.src_blocks.fetch_add(diff.src_blocks, Relaxed);
        c.dst_blocks.fetch_add(diff.dst_blocks, Relaxed);
        c.skipped_blocks.fetch_add(diff.present, Relaxed);
        c.skipped_bytes.fetch_add(diff.present_bytes, Relaxed);
        c.index_lines.fetch_add(diff.lines, Relaxed);
        for (_, server, took) in &diff.timings {
            c.observe(Op::Index, server, took.as_secs_f64());
        }
    }

    async fn diff(&self, keepstores: &F::Client, prefix: &str) -> Result<SliceDiff, WalkError> {
        let job = &self.run.job;
        diff_slice(
            keepstores,
            &job.src,
            &job.dst,
            prefix,
            self.run.config.dst_index_errors,
            None,
        )
        .await
    }

    /// Step 2: the totals for keep-rsync's opening line, exact (a counting walk) or
    /// estimated from the first slice. Returns the first slice's diff when it can be reused.
    async fn count(
        &self,
        keepstores: &F::Client,
        pending: &[String],
        total_slices: u64,
        emitter: &mut Emitter,
    ) -> Result<(Plan, Option<SliceDiff>), EngineError> {
        let exact = self.run.config.counting == Counting::Exact
            || self.run.config.dry_run
            || pending.len() <= 1;
        let mut plan = Plan {
            slices_total: total_slices,
            ..Plan::default()
        };
        let mut first = None;
        if exact {
            for prefix in pending {
                let diff = self.diff(keepstores, prefix).await?;
                plan.src_blocks += diff.src_blocks;
                plan.dst_blocks += diff.dst_blocks;
                plan.to_copy_blocks += diff.missing.len() as u64;
                plan.to_copy_bytes += diff.missing_bytes();
                if pending.len() == 1 {
                    first = Some(diff);
                }
            }
        } else if let Some(prefix) = pending.first() {
            let diff = self.diff(keepstores, prefix).await?;
            let scale = pending.len() as u64;
            plan.src_blocks = diff.src_blocks * scale;
            plan.dst_blocks = diff.dst_blocks * scale;
            plan.to_copy_blocks = diff.missing.len() as u64 * scale;
            plan.to_copy_bytes = diff.missing_bytes() * scale;
            plan.estimated_from_slices = Some(1);
            first = Some(diff);
        }
        self.counters
            .planned_blocks
            .store(plan.to_copy_blocks, Relaxed);
        self.counters
            .planned_bytes
            .store(plan.to_copy_bytes, Relaxed);
        emitter.emit(Event::Planned(plan.clone()));
        Ok((plan, first))
    }

    /// Refines estimated totals from the slices walked so far (the hash space is uniform).
    fn refine_estimate(&self, found_blocks: u64, found_bytes: u64, walked: u64, pending: u64) {
        if walked == 0 {
            return;
        }
        let scale = |v: u64| v.saturating_mul(pending) / walked;
        self.counters
            .planned_blocks
            .store(scale(found_blocks), Relaxed);
        self.counters
            .planned_bytes
            .store(scale(found_bytes), Relaxed);
    }

    /// Waits while paused; `false` when a stop was asked.
    async fn wait_while_paused(&self, emitter: &mut Emitter) -> bool {
        if self.control.is_paused() {
            emitter.emit(Event::Phase(Phase::Paused));
            emitter.flush();
            while self.control.is_paused() && !self.control.is_stopping() {
                compio::time::sleep(CONTROL_POLL).await;
            }
            if !self.control.is_stopping() {
                emitter.emit(Event::Phase(Phase::Copying));
                emitter.flush();
            }
        }
        !self.control.is_stopping()
    }

    /// Step 3: walks the pending slices in order and hands their missing blocks out.
    #[allow(clippy::too_many_arguments)]
    async fn dispatch(
        &self,
        keepstores: &F::Client,
        pending: &[String],
        mut first: Option<SliceDiff>,
        plan: &Plan,
        sender: &async_channel::Sender<Task>,
        ledger: &Ledger,
        emitter: &mut Emitter,
    ) -> Result<(), EngineError> {
        let job = &self.run.job;
        let estimated = plan.estimated_from_slices.is_some();
        let (mut found_blocks, mut found_bytes) = (0u64, 0u64);
        let src_uuids = job.src.uuids();
        let dst_writable = job.dst.writable();
        let dst_uuids: Vec<&str> = dst_writable
            .iter()
            .map(|&i| job.dst.services[i].uuid.as_str())
            .collect();
        for (seq, prefix) in pending.iter().enumerate() {
            if !self.wait_while_paused(emitter).await {
                break;
            }
            emitter.emit(Event::SliceStarted {
                prefix: prefix.clone(),
            });
            emitter.flush();
            let diff = match first.take() {
                Some(d) => d,
                None => self.diff(keepstores, prefix).await?,
            };
            self.account(&diff, emitter);
            found_blocks += diff.missing.len() as u64;
            found_bytes += diff.missing_bytes();
            if estimated {
                self.refine_estimate(
                    found_blocks,
                    found_bytes,
                    seq as u64 + 1,
                    pending.len() as u64,
                );
            }
            ledger.register(
                seq as u64,
                prefix,
                diff.missing.len() as u64,
                &self.counters,
                emitter,
            );
            let mut blocks = diff.missing.into_iter().peekable();
            while blocks.peek().is_some() {
                let batch: Vec<SourceBlock> = blocks.by_ref().take(ORDER_BATCH).collect();
                let shorts: Vec<ShortLocator> = batch.iter().map(|b| b.id.short()).collect();
                let refs: Vec<&str> = shorts.iter().map(ShortLocator::hash_hex).collect();
                let reads = probe_orders_go(&refs, &src_uuids);
                let writes = probe_orders_go(&refs, &dst_uuids);
                let batch = batch.into_iter().zip(shorts);
                for (((block, short), read_order), write_order) in batch.zip(reads).zip(writes) {
                    if self.over_limits() || !self.wait_while_paused(emitter).await {
                        return Ok(());
                    }
                    let task = Task {
                        block,
                        short,
                        slice: seq as u64,
                        read_order,
                        write_order: write_order.into_iter().map(|i| dst_writable[i]).collect(),
                    };
                    if sender.send(task).await.is_err() {
                        return Ok(());
                    }
                }
            }
        }
        // Exact totals at the end, whatever was estimated on the way.
        if estimated && !self.control.is_stopping() {
            self.counters.planned_blocks.store(found_blocks, Relaxed);
            self.counters.planned_bytes.store(found_bytes, Relaxed);
        }
        Ok(())
    }

    /// `-max-transfer`: stop handing out blocks once the bytes copied and in flight reach it.
    fn over_limits(&self) -> bool {
        if let Some(limit) = self.run.config.max_transfer {
            let c = &self.counters;
            if c.copied_bytes.load(Relaxed) >= limit {
                self.control.stop(StopReason::MaxTransfer);
            }
        }
        self.control.is_stopping()
    }

    /// A thread that turns the clock into stops: `-max-duration`, and the grace period
    /// after a stop was asked.
    fn start_watchdog(&self) -> Watchdog {
        let control = self.control.clone();
        let grace = self.run.config.grace;
        let max_duration = self.run.config.max_duration;
        let started = self.started;
        let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = done.clone();
        let handle = std::thread::Builder::new()
            .name("keepmover-watchdog".into())
            .spawn(move || {
                let mut stop_seen: Option<Instant> = None;
                while !flag.load(Relaxed) {
                    if max_duration.is_some_and(|d| started.elapsed() >= d) {
                        control.stop(StopReason::MaxDuration);
                    }
                    if control.is_stopping() {
                        let since = *stop_seen.get_or_insert_with(Instant::now);
                        if since.elapsed() >= grace {
                            control.stop_now();
                        }
                    }
                    std::thread::sleep(CONTROL_POLL);
                }
            })
            .ok();
        Watchdog { done, handle }
    }
}

struct Watchdog {
    done: Arc<std::sync::atomic::AtomicBool>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl Watchdog {
    fn finish(self) {
        self.done.store(true, Relaxed);
        if let Some(h) = self.handle {
            let _ = h.join();
        }
    }
}

/// What a worker thread takes with it.
struct WorkerState<F: KeepstoresFactory> {
    run: Arc<Run>,
    factory: Arc<F>,
    control: Arc<Control>,
    counters: Arc<Counters>,
    ledger: Arc<Ledger>,
    pool: BufferPool,
    receiver: async_channel::Receiver<Task>,
    emitter: Emitter,
}

fn worker_main<F: KeepstoresFactory>(state: WorkerState<F>) -> Result<(), EngineError> {
    let io = state.run.config.io;
    let (runtime, _) = build_runtime(io).map_err(|source| EngineError::Runtime {
        backend: io,
        source,
    })?;
    let WorkerState {
        run,
        factory,
        control,
        counters,
        ledger,
        pool,
        receiver,
        emitter,
    } = state;
    runtime.block_on(async move {
        let keepstores = Rc::new(factory.client());
        let hasher = HashBatcher::new();
        let gates = Gates::new(
            run.job.src.services.len(),
            run.job.dst.services.len(),
            run.config.per_server_requests,
        );
        let emitter = Rc::new(RefCell::new(emitter));
        // Held events go out at least every FLUSH_EVERY even when no block finishes.
        let flusher = {
            let emitter = emitter.clone();
            compio::runtime::spawn(async move {
                loop {
                    compio::time::sleep(super::events::FLUSH_EVERY).await;
                    emitter.borrow_mut().flush();
                }
            })
        };
        let lanes: Vec<_> = (0..run.config.concurrency)
            .map(|lane| {
                let lane_state = Lane {
                    index: lane,
                    run: run.clone(),
                    control: control.clone(),
                    counters: counters.clone(),
                    ledger: ledger.clone(),
                    pool: pool.clone(),
                    receiver: receiver.clone(),
                    emitter: emitter.clone(),
                    keepstores: keepstores.clone(),
                    hasher: hasher.clone(),
                    gates: gates.clone(),
                };
                compio::runtime::spawn(lane_state.go())
            })
            .collect();
        let all_lanes = futures_util::future::join_all(lanes);
        let hard_stop = async {
            while !control.is_stopped_now() {
                compio::time::sleep(CONTROL_POLL).await;
            }
        };
        futures_util::pin_mut!(all_lanes);
        futures_util::pin_mut!(hard_stop);
        let outcome = futures_util::future::select(all_lanes, hard_stop).await;
        drop(flusher);
        emitter.borrow_mut().flush();
        match outcome {
            futures_util::future::Either::Left((results, _)) => {
                for result in results {
                    if let Err(e) = result {
                        return Err(EngineError::Worker(format!("a copy task failed: {e:?}")));
                    }
                }
                Ok(())
            }
            // Blocks still in flight are abandoned: their slices stay open, so the checkpoint
            // does not pass them and a rerun copies them.
            futures_util::future::Either::Right(_) => Ok(()),
        }
    })
}

/// One of a worker's block slots.
struct Lane<K: Keepstores> {
    index: usize,
    run: Arc<Run>,
    control: Arc<Control>,
    counters: Arc<Counters>,
    ledger: Arc<Ledger>,
    pool: BufferPool,
    receiver: async_channel::Receiver<Task>,
    emitter: Rc<RefCell<Emitter>>,
    keepstores: Rc<K>,
    hasher: HashBatcher,
    gates: Rc<Gates>,
}

impl<K: Keepstores> Lane<K> {
    async fn go(self) {
        loop {
            // A lane above the live concurrency, or any lane while paused, waits.
            while (self.control.is_paused()
                || self.index >= self.control.concurrency(self.run.config.concurrency))
                && !self.control.is_stopping()
            {
                // The walk is over and the other lanes took the last blocks: nothing left
                // for this lane (without this, a lane parked by a lowered concurrency
                // would keep the run from ending).
                if self.receiver.is_closed() && self.receiver.is_empty() {
                    return;
                }
                compio::time::sleep(CONTROL_POLL).await;
            }
            let Ok(task) = self.receiver.recv().await else {
                return;
            };
            if self.control.is_stopping() {
                // Not started: abandoned (its slice stays open; a rerun copies it).
                continue;
            }
            let ctx = Ctx {
                keepstores: &*self.keepstores,
                job: &self.run.job,
                retry: self.run.config.retry,
                hasher: &self.hasher,
                pool: &self.pool,
                gates: &self.gates,
                control: &self.control,
                counters: &self.counters,
            };
            let ok = copy_block(&ctx, &task, &self.counters, &self.emitter).await;
            let mut emitter = self.emitter.borrow_mut();
            self.ledger
                .complete(task.slice, ok, &self.counters, &mut emitter);
        }
    }
}

/// One block, GET then PUT, with its events. `true` when confirmed.
async fn copy_block<K: Keepstores>(
    ctx: &Ctx<'_, K>,
    task: &Task,
    counters: &Counters,
    emitter: &RefCell<Emitter>,
) -> bool {
    let block = &task.block;
    let short = task.short;
    let number = counters.started_blocks.fetch_add(1, Relaxed) + 1;
    counters.in_flight_blocks.fetch_add(1, Relaxed);
    emitter.borrow_mut().emit(Event::Started {
        number,
        planned: counters.planned_blocks.load(Relaxed),
        finished: counters.copied_blocks.load(Relaxed) + counters.failed_blocks.load(Relaxed),
        block: short,
    });
    let mut outcome = Outcome::default();
    let result = async {
        let lease = ctx
            .fetch(block, &short, &task.read_order, &mut outcome)
            .await?;
        ctx.store(&short, lease.freeze(), &task.write_order, &mut outcome)
            .await
    }
    .await;
    counters.in_flight_blocks.fetch_sub(1, Relaxed);
    counters
        .refetched_blocks
        .fetch_add(u64::from(outcome.bad_replicas), Relaxed);
    let (action, error) = match &result {
        Ok(_) => {
            counters.copied_blocks.fetch_add(1, Relaxed);
            counters.copied_bytes.fetch_add(block.id.size, Relaxed);
            (Action::Copied, None)
        }
        Err(e) => {
            counters.failed_blocks.fetch_add(1, Relaxed);
            counters.failed_bytes.fetch_add(block.id.size, Relaxed);
            (
                Action::Failed,
                Some(BlockError {
                    kind: e.kind(),
                    text: e.to_string(),
                }),
            )
        }
    };
    emitter.borrow_mut().emit(Event::Done(BlockRecord {
        block: short,
        action,
        bytes: block.id.size,
        source: outcome.read_from.map(|s| s as u16),
        stored_on: outcome.stored_on.iter().map(|&s| s as u16).collect(),
        attempts: outcome.attempts,
        error,
    }));
    result.is_ok()
}

/// One worker per two cores. A worker's SIMD MD5 hashes 5–7 GB/s, more than a NIC brings
/// in, and the more blocks one worker has in flight, the more chunks land together and the
/// fuller its lanes (measured: with 1 MiB blocks one worker spent 2.7× less CPU hashing than
/// the scalar path, two workers on two cores only 1.3×); the other cores are left to the
/// kernel's network copies and TLS.
pub fn default_workers() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().div_ceil(2))
}
