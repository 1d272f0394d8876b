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
use std::collections::BTreeMap;
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
use super::gates::Key;
use super::hash_batch::HashBatcher;
use super::pool::BufferPool;
use super::retry::{next_for, RetryPolicy, Rounds};
use super::slices::{Settled, SliceTracker};
use super::transfer::{source_locator, Ctx, Job, Outcome};
use super::trash::{MovedBlock, MovedSlice};
use super::window::{self, Window};
use crate::index::filter::BlockFilter;
use crate::index::layout;
use crate::index::locators::{retain_wanted, LocatorCursor, LocatorList};
use crate::index::merge::choose_extra_digits;
use crate::index::shard::{walk_prefixes, Shard};
use crate::index::walk::{
    diff_slice_with, estimate_source_blocks, DiffWants, DstIndexErrors, Layouts, SliceDiff,
    WalkError,
};
use crate::index::SourceBlock;
use crate::keep::rendezvous::probe_orders_go;
use crate::keep::{BlockId, ShortLocator};
use crate::keepstore::Cause;
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
    /// Most blocks in flight per worker: a ceiling. The memory budget (big blocks) and the
    /// per-keepstore limits with their 503 back-off (small blocks on a slow network) bind
    /// first, so the blocks in flight follow block size and server latency.
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
    /// Most requests in flight to one keepstore, all workers together (each worker gets its
    /// share); fewer while it answers 503/429/408. Keepstore's own default limit is 64
    /// concurrent requests (`API.MaxConcurrentRequests`), then it queues.
    pub per_server_requests: usize,
    /// Stop cleanly once this many bytes are copied (`-max-transfer`).
    pub max_transfer: Option<u64>,
    /// Stop cleanly after this long (`-max-duration`).
    pub max_duration: Option<Duration>,
    /// Re-read the blocks the destination already lists, and replace bad replicas
    /// (`-verify-existing`).
    pub verify_existing: bool,
    /// List each distinct mount once (`/mounts/<uuid>/blocks`), or each server (`/index/`).
    pub index_by_mount: bool,
    /// The HTTP client's minimum transfer rate (its `min_rate`): a bandwidth limit never
    /// spreads itself over so many blocks that each would fall under it.
    pub min_rate: u64,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            workers: 0,
            concurrency: 512,
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
            per_server_requests: 64,
            max_transfer: None,
            max_duration: None,
            verify_existing: false,
            index_by_mount: true,
            min_rate: crate::net::ClientConfig::default().min_rate,
        }
    }
}

/// The order blocks of one slice are handed out in (`-order-by`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Order {
    /// Hash order, as the walk finds them.
    #[default]
    Prefix,
    SizeAsc,
    SizeDesc,
    /// Small blocks (up to [`SMALL_BLOCK`]) get their own share of the slots and of the
    /// buffer budget, so a run of 64 MiB blocks does not starve them (rclone's `mixed`).
    Mixed,
}

impl std::str::FromStr for Order {
    type Err = String;
    fn from_str(s: &str) -> Result<Order, String> {
        match s {
            "prefix" => Ok(Order::Prefix),
            "size-asc" => Ok(Order::SizeAsc),
            "size-desc" => Ok(Order::SizeDesc),
            "mixed" => Ok(Order::Mixed),
            _ => Err("expected prefix, size-asc, size-desc or mixed".to_string()),
        }
    }
}

/// Blocks this size or smaller are "small" for `-order-by mixed`.
pub const SMALL_BLOCK: u64 = 1 << 20;

/// Which blocks a run is about: the walk's range and filters.
#[derive(Debug, Default)]
pub struct Selection {
    /// Only hashes starting with this (keep-rsync's `-prefix`).
    pub prefix: String,
    pub shard: Option<Shard>,
    /// `-size`, `-mtime`.
    pub filter: BlockFilter,
    /// `-locators FILE`.
    pub locators: Option<LocatorList>,
    pub order: Order,
    /// Hand out the selected blocks the destination already lists too, to be copied again
    /// (pull's fallback: a block a pull left short of replicas or classes is topped up by
    /// PUTs, which keepstore counts for the copies it already holds).
    pub include_present: bool,
    /// Vacate by mount: on the source servers exposing one of these mounts only they are
    /// listed, and the destination lists every mount but them ([`layout::Layout::keep_only_mounts`],
    /// [`layout::Layout::without_mounts`]). Needs per-mount listings.
    pub mounts: Vec<String>,
}

/// What a run does with the blocks it walks.
#[derive(Debug, Default)]
pub enum Mode {
    /// Copy what the destination lacks.
    #[default]
    Copy,
    /// Copy, read one destination replica back, and hand each settled slice's verified
    /// blocks to the trasher (`trash`) for removal from the source. Blocks the destination
    /// already has are read back in place (signed with the job's `dst_signing` when known),
    /// else copied again (the PUT confirms them).
    Move {
        trash: crossbeam_channel::Sender<MovedSlice>,
    },
    /// One cluster: move every block off the source services onto the destination services
    /// (the rest of the cluster), keeping each block's replica count. The source's signing
    /// key reads replicas back.
    Vacate {
        trash: crossbeam_channel::Sender<MovedSlice>,
    },
}

impl Mode {
    fn trash(&self) -> Option<&crossbeam_channel::Sender<MovedSlice>> {
        match self {
            Mode::Copy => None,
            Mode::Move { trash } | Mode::Vacate { trash } => Some(trash),
        }
    }
}

/// One whole run: what to move, where, and how.
#[derive(Debug)]
pub struct Run {
    pub job: Job,
    /// What the checkpoint records about the job.
    pub identity: JobIdentity,
    pub select: Selection,
    pub config: EngineConfig,
    pub mode: Mode,
    /// Bad destination replicas found by `-verify-existing`, for the command to report (and
    /// trash with `-trash-bad`).
    pub bad_copies: Arc<Mutex<Vec<BadCopy>>>,
}

/// A destination replica whose bytes are wrong (found by `-verify-existing`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BadCopy {
    pub block: BlockId,
    /// Index into the destination's services.
    pub server: usize,
    /// The mount holding it and its index mtime, when the server's mounts could be listed.
    pub mount: Option<(String, i64)>,
    pub reason: String,
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
    #[error(transparent)]
    Workers(#[from] WorkerError),
    #[error("reading the -locators list: {0}")]
    Locators(std::io::Error),
}

/// Why the threads and runtimes of a run (copy, validate) could not be started or ended
/// badly: the same for every kind of run.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
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
    run_with(run, factory, control, counters, sinks, |_| {})
}

/// [`run`], with `companion` given an emitter on the same sinks before the engine starts
/// (the trasher of `move` and `vacate` reports through it). The sinks finish only once the
/// companion has dropped its emitter, so this returns after the companion's last event.
pub fn run_with<F: KeepstoresFactory>(
    run: Run,
    factory: F,
    control: Arc<Control>,
    counters: Arc<Counters>,
    sinks: Vec<Box<dyn EventSink>>,
    companion: impl FnOnce(Emitter),
) -> Result<RunReport, EngineError> {
    let (pump, emitter) = Pump::start(sinks, counters.clone()).map_err(WorkerError::Thread)?;
    companion(emitter.fork());
    let result = (|| {
        let (runtime, backend) =
            build_runtime(run.config.io).map_err(|source| WorkerError::Runtime {
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
            layouts: std::cell::OnceCell::new(),
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
    /// Move and vacate: each open slice's blocks ready to leave the source, sent to the
    /// trasher when the slice settles.
    movable: Mutex<BTreeMap<String, Vec<MovedBlock>>>,
    trash: Option<crossbeam_channel::Sender<MovedSlice>>,
}

impl Ledger {
    fn apply(&self, settled: Settled, counters: &Counters, emitter: &mut Emitter) {
        if settled.slices.is_empty() {
            return;
        }
        if let Some(trash) = &self.trash {
            for prefix in &settled.slices {
                let blocks = self
                    .movable
                    .lock()
                    .ok()
                    .and_then(|mut m| m.remove(prefix))
                    .unwrap_or_default();
                if !blocks.is_empty() {
                    let _ = trash.send(MovedSlice {
                        prefix: prefix.clone(),
                        blocks,
                    });
                }
            }
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

    /// A block of slice `seq` (`prefix`) is settled; `moved` when it may leave the source.
    fn complete(
        &self,
        seq: u64,
        prefix: &str,
        ok: bool,
        moved: Option<MovedBlock>,
        counters: &Counters,
        e: &mut Emitter,
    ) {
        if let (Some(block), Ok(mut movable)) = (moved, self.movable.lock()) {
            movable.entry(prefix.to_string()).or_default().push(block);
        }
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
    /// Times the block went back to the queue after failing every retry.
    requeues: u8,
    slice: u64,
    /// The slice's prefix (move and vacate hand settled slices on by prefix).
    prefix: Arc<str>,
    /// Replicas wanted (the job's; vacate: the block's own count).
    replicas: u32,
    /// The destination already lists it (move, vacate): read it back before copying.
    present_on: Vec<u16>,
    /// Source servers in rendezvous order, and writable destination servers in rendezvous
    /// order (computed by the walker in SIMD batches).
    read_order: Vec<usize>,
    write_order: Vec<usize>,
}

/// Blocks cross from the walker to a worker thread in batches, so a small block costs no
/// cross-thread hand-off of its own: at most this many blocks per batch ...
const TASK_BATCH: usize = 64;
/// ... and at most this many bytes of blocks (a batch of big blocks would tie them all to
/// one worker).
const TASK_BATCH_BYTES: u64 = 16 << 20;

/// The walker gave up sending: the run is ending.
#[derive(Debug)]
struct Closed;

/// One channel of batches and the batch being filled for it.
struct Lane2Worker {
    sender: async_channel::Sender<Vec<Task>>,
    filling: RefCell<(Vec<Task>, u64)>,
}

impl Lane2Worker {
    fn new(sender: async_channel::Sender<Vec<Task>>) -> Lane2Worker {
        Lane2Worker {
            sender,
            filling: RefCell::new((Vec::new(), 0)),
        }
    }

    async fn push(&self, task: Task) -> Result<(), Closed> {
        let full = {
            let mut filling = self.filling.borrow_mut();
            filling.1 += task.block.id.size;
            filling.0.push(task);
            filling.0.len() >= TASK_BATCH || filling.1 >= TASK_BATCH_BYTES
        };
        if full {
            self.flush().await?;
        }
        Ok(())
    }

    async fn flush(&self) -> Result<(), Closed> {
        let batch = std::mem::take(&mut *self.filling.borrow_mut()).0;
        if batch.is_empty() {
            return Ok(());
        }
        self.sender.send(batch).await.map_err(|_| Closed)
    }
}

/// The channels blocks go out on: one, or (`-order-by mixed`) a second one for small blocks
/// served by a quarter of the lanes. Used by the walker's task only.
struct Queues {
    main: Lane2Worker,
    small: Option<Lane2Worker>,
    /// Tasks sent and not yet settled or requeued by a lane.
    outstanding: Arc<std::sync::atomic::AtomicU64>,
}

impl Queues {
    async fn send(&self, task: Task) -> Result<(), Closed> {
        self.outstanding.fetch_add(1, Relaxed);
        match &self.small {
            Some(small) if task.block.id.size <= SMALL_BLOCK => small.push(task).await,
            _ => self.main.push(task).await,
        }
    }

    /// Sends the batches being filled (before the walker waits for anything).
    async fn flush(&self) -> Result<(), Closed> {
        self.main.flush().await?;
        if let Some(small) = &self.small {
            small.flush().await?;
        }
        Ok(())
    }

    fn close(&self) {
        self.main.sender.close();
        if let Some(small) = &self.small {
            small.sender.close();
        }
    }
}

/// Moves batches from the walker's channel into a worker-local channel the lanes share
/// (a hand-off within the thread costs no wake-up of another thread).
fn spawn_feeder(
    remote: async_channel::Receiver<Vec<Task>>,
    capacity: usize,
) -> (
    compio::runtime::JoinHandle<()>,
    async_channel::Receiver<Task>,
) {
    let (local_sender, local_receiver) = async_channel::bounded(capacity.max(1));
    let handle = compio::runtime::spawn(async move {
        while let Ok(batch) = remote.recv().await {
            for task in batch {
                if local_sender.send(task).await.is_err() {
                    return;
                }
            }
        }
    });
    (handle, local_receiver)
}

/// With `-order-by mixed`, one lane in this many serves small blocks only, and this share
/// of the buffer budget is kept for them.
const MIXED_SMALL_SHARE: usize = 4;

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
    /// What the walk lists per slice (set once, when planning).
    layouts: std::cell::OnceCell<Layouts>,
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
        // Planning and counting read indexes, not blocks: a stop asked meanwhile ends the
        // run without waiting for them.
        let Some(slicing) = self.unless_stopping(self.plan(&keepstores)).await? else {
            return Ok(self.report(Plan::default(), 0, 0, false));
        };
        let select = &self.run.select;
        let all = walk_prefixes(&select.prefix, slicing.extra_digits, select.shard);
        let total_slices = all.len() as u64;
        let pending: Vec<String> = all
            .into_iter()
            .filter(|p| slicing.done_through.as_ref().is_none_or(|done| p > done))
            .collect();
        self.counters
            .slices_total
            .store(pending.len() as u64, Relaxed);
        let Some((plan, first)) = self
            .unless_stopping(self.count(&keepstores, &pending, total_slices, &mut emitter))
            .await?
        else {
            return Ok(self.report(Plan::default(), 0, 0, false));
        };
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
                .map_err(WorkerError::Thread)?,
            ),
            None => None,
        };
        let ledger = Arc::new(Ledger {
            tracker: Mutex::new(SliceTracker::new()),
            writer,
            movable: Mutex::new(BTreeMap::new()),
            trash: self.run.mode.trash().cloned(),
        });
        let mixed = self.run.select.order == Order::Mixed;
        let small_reserve = if mixed {
            self.run.config.memory_budget / MIXED_SMALL_SHARE
        } else {
            0
        };
        let pool = BufferPool::with_options(
            self.run.config.memory_budget,
            small_reserve,
            self.counters.buffers_in_use.clone(),
        );
        self.counters
            .buffer_budget
            .store(self.run.config.memory_budget as u64, Relaxed);
        let workers = match self.run.config.workers {
            0 => default_workers(),
            n => n,
        };
        // Every block in flight may hold a connection to its source and one per replica.
        let sockets = workers * self.run.config.concurrency * (1 + self.run.job.replicas as usize);
        if let Err(e) = crate::net::raise_nofile_limit(sockets as u64 + 256) {
            emitter.emit(Event::Warning(format!(
                "{e}; connections beyond it fail with \"too many open files\" and are retried"
            )));
        }
        let queue = workers * self.run.config.concurrency * 2;
        let batches = (queue / TASK_BATCH).max(4);
        let (sender, receiver) = async_channel::bounded::<Vec<Task>>(batches);
        let (small_sender, small_receiver) = async_channel::bounded::<Vec<Task>>(batches);
        let outstanding = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let queues = Queues {
            main: Lane2Worker::new(sender),
            small: mixed.then(|| Lane2Worker::new(small_sender)),
            outstanding: outstanding.clone(),
        };
        let requeued = Arc::new(Requeued::default());
        let replica_caps = Arc::new(
            self.layouts
                .get()
                .map(|l| l.dst.replica_caps())
                .unwrap_or_default(),
        );
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
                small_receiver: mixed.then(|| small_receiver.clone()),
                requeued: requeued.clone(),
                outstanding: outstanding.clone(),
                emitter: emitter.fork(),
                per_server_requests: self.run.config.per_server_requests.div_ceil(workers),
                workers,
                replica_caps: replica_caps.clone(),
            };
            let handle = std::thread::Builder::new()
                .name(format!("keepmover-worker-{worker}"))
                .spawn(move || worker_main(state))
                .map_err(WorkerError::Thread)?;
            handles.push(handle);
        }
        drop(receiver);
        drop(small_receiver);
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
                &queues,
                &ledger,
                &requeued,
                &mut emitter,
            )
            .await;
        let walked = match walked {
            Ok(()) => self.requeue_rounds(&queues, &requeued).await,
            Err(e) => Err(e),
        };
        // No more blocks: the workers finish what they hold (or abandon it on a stop).
        queues.close();
        drop(queues);
        if self.control.is_stopping() {
            emitter.emit(Event::Phase(Phase::Stopping));
            emitter.flush();
        }
        let mut result: Result<(), EngineError> = walked;
        for handle in handles {
            match handle.join() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => result = result.and(Err(e)),
                Err(_) => result = result.and(Err(WorkerError::Worker("panicked".into()).into())),
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

    /// Runs `step` unless a stop is asked first (`None` then).
    async fn unless_stopping<T>(
        &self,
        step: impl std::future::Future<Output = Result<T, EngineError>>,
    ) -> Result<Option<T>, EngineError> {
        let stop = async {
            while !self.control.is_stopping() {
                compio::time::sleep(CONTROL_POLL).await;
            }
        };
        futures_util::pin_mut!(step);
        futures_util::pin_mut!(stop);
        match futures_util::future::select(step, stop).await {
            futures_util::future::Either::Left((result, _)) => result.map(Some),
            futures_util::future::Either::Right(_) => Ok(None),
        }
    }

    /// Step 1: the checkpoint (if any), the index units to list, and the slicing of the
    /// hash space.
    async fn plan(&self, keepstores: &F::Client) -> Result<Slicing, EngineError> {
        let config = &self.run.config;
        let job = &self.run.job;
        let mut layouts = if config.index_by_mount {
            Layouts {
                src: layout::discover(keepstores, &job.src).await,
                dst: layout::discover(keepstores, &job.dst).await,
            }
        } else {
            Layouts::per_server(&job.src, &job.dst)
        };
        layouts.src.keep_only_mounts(&self.run.select.mounts);
        layouts.dst.without_mounts(&self.run.select.mounts);
        let _ = self.layouts.set(layouts);
        let resume = match &config.checkpoint {
            Some(path) => checkpoint::load(path, &self.run.identity)?,
            None => None,
        };
        let prefix = &self.run.select.prefix;
        let extra_digits = match (&resume, config.prefix_length) {
            (Some(state), _) => state.extra_digits,
            (None, 0) => {
                let estimate = read_index_in_rounds(config.retry, || {
                    estimate_source_blocks(keepstores, &self.run.job.src, prefix)
                })
                .await?;
                choose_extra_digits(estimate, prefix.len(), config.slice_target)
            }
            (None, wanted) => wanted.saturating_sub(prefix.len()).min(8),
        };
        // A sharded walk slices at least as finely as the shard's ranges.
        let extra_digits = match self.run.select.shard {
            Some(shard) => extra_digits.max(shard.digits()),
            None => extra_digits,
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
        // Present blocks that are read back here (move, vacate, -verify-existing) count as
        // skipped only once confirmed: one that must be topped up is counted copied instead.
        let checked_bytes: u64 = diff.present_blocks.iter().map(|p| p.block.id.size).sum();
        c.skipped_blocks.fetch_add(
            diff.present
                .saturating_sub(diff.present_blocks.len() as u64),
            Relaxed,
        );
        c.skipped_bytes
            .fetch_add(diff.present_bytes.saturating_sub(checked_bytes), Relaxed);
        c.index_lines.fetch_add(diff.lines, Relaxed);
        for (_, server, took) in &diff.timings {
            c.observe(Op::Index, server, took.as_secs_f64());
        }
    }

    /// One slice's diff, narrowed to the run's selection (filters, the locator list read
    /// alongside through `wanted`) and put in the run's order.
    async fn diff(
        &self,
        keepstores: &F::Client,
        prefix: &str,
        wanted: &mut Option<LocatorCursor>,
    ) -> Result<SliceDiff, EngineError> {
        let job = &self.run.job;
        let select = &self.run.select;
        let accepts = |e: &crate::keep::index_format::IndexEntry| select.filter.accepts(e);
        let filter: Option<&crate::index::walk::EntryFilter<'_>> =
            (!select.filter.is_empty()).then_some(&accepts);
        let wants = DiffWants {
            present: !matches!(self.run.mode, Mode::Copy)
                || self.run.config.verify_existing
                || select.include_present,
        };
        let per_server;
        let layouts = match self.layouts.get() {
            Some(l) => l,
            None => {
                per_server = Layouts::per_server(&job.src, &job.dst);
                &per_server
            }
        };
        let mut diff = read_index_in_rounds(self.run.config.retry, || {
            diff_slice_with(
                keepstores,
                &job.src,
                &job.dst,
                layouts,
                prefix,
                self.run.config.dst_index_errors,
                filter,
                wants,
            )
        })
        .await?;
        if let Some(cursor) = wanted {
            let listed = cursor.take_prefix(prefix).map_err(EngineError::Locators)?;
            retain_wanted(&mut diff.missing, &listed, |b| b.id);
            retain_wanted(&mut diff.present_blocks, &listed, |p| p.block.id);
        }
        match select.order {
            Order::SizeAsc => diff.missing.sort_by_key(|b| b.id.size),
            Order::SizeDesc => diff.missing.sort_by_key(|b| std::cmp::Reverse(b.id.size)),
            Order::Prefix | Order::Mixed => {}
        }
        Ok(diff)
    }

    /// A fresh reading of the locator list, when the run has one.
    fn wanted(&self) -> Result<Option<LocatorCursor>, EngineError> {
        self.run
            .select
            .locators
            .as_ref()
            .map(|list| {
                list.cursor()
                    .map_err(|e| EngineError::Locators(std::io::Error::other(e.to_string())))
            })
            .transpose()
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
        let mut wanted = self.wanted()?;
        if exact {
            for prefix in pending {
                let diff = self.diff(keepstores, prefix, &mut wanted).await?;
                if self.run.config.dry_run {
                    // The only walk of a dry run: its figures (index lines, listing times)
                    // and warnings go into the report here.
                    self.account(&diff, emitter);
                }
                plan.src_blocks += diff.src_blocks;
                plan.dst_blocks += diff.dst_blocks;
                plan.to_copy_blocks += diff.missing.len() as u64;
                plan.to_copy_bytes += diff.missing_bytes();
                plan.present_blocks += diff.present;
                plan.present_bytes += diff.present_bytes;
                if pending.len() == 1 {
                    first = Some(diff);
                }
            }
        } else if let Some(prefix) = pending.first() {
            let diff = self.diff(keepstores, prefix, &mut wanted).await?;
            let scale = pending.len() as u64;
            plan.src_blocks = diff.src_blocks * scale;
            plan.dst_blocks = diff.dst_blocks * scale;
            plan.to_copy_blocks = diff.missing.len() as u64 * scale;
            plan.to_copy_bytes = diff.missing_bytes() * scale;
            plan.present_blocks = diff.present * scale;
            plan.present_bytes = diff.present_bytes * scale;
            plan.estimated_from_slices = Some(1);
            first = Some(diff);
        }
        // Move, vacate and -verify-existing handle the blocks already there too.
        let (blocks, bytes) = match self.run.mode {
            Mode::Copy if !self.run.config.verify_existing && !self.run.select.include_present => {
                (plan.to_copy_blocks, plan.to_copy_bytes)
            }
            _ => (
                plan.to_copy_blocks + plan.present_blocks,
                plan.to_copy_bytes + plan.present_bytes,
            ),
        };
        self.counters.planned_blocks.store(blocks, Relaxed);
        self.counters.planned_bytes.store(bytes, Relaxed);
        emitter.emit(Event::Planned(plan.clone()));
        Ok((plan, first))
    }

    /// Refines estimated totals from the slices walked so far (the hash space is uniform).
    fn refine_estimate(&self, found_blocks: u64, found_bytes: u64, walked: u64, pending: u64) {
        if walked == 0 {
            return;
        }
        self.counters
            .planned_blocks
            .store(extrapolate(found_blocks, walked, pending), Relaxed);
        self.counters
            .planned_bytes
            .store(extrapolate(found_bytes, walked, pending), Relaxed);
    }

    /// Waits while paused; `false` when a stop was asked.
    async fn wait_while_paused(&self, emitter: &mut Emitter) -> bool {
        if self.control.is_paused() {
            emitter.emit(Event::Phase(Phase::Paused));
            emitter.flush();
            sleep_while_paused(&self.control).await;
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
        queues: &Queues,
        ledger: &Ledger,
        requeued: &Requeued,
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
        let mut wanted = self.wanted()?;
        if first.is_some() {
            // The first slice was read (and its part of the list taken) while counting.
            if let (Some(cursor), Some(prefix)) = (&mut wanted, pending.first()) {
                cursor.take_prefix(prefix).map_err(EngineError::Locators)?;
            }
        }
        for (seq, prefix) in pending.iter().enumerate() {
            if !self.wait_while_paused(emitter).await {
                break;
            }
            emitter.emit(Event::SliceStarted {
                prefix: prefix.clone(),
            });
            emitter.flush();
            // Blocks of the previous slices that failed every retry go to the end of the
            // queue now, behind that slice's other blocks.
            for task in Requeued::take(&requeued.next_slice) {
                if queues.send(task).await.is_err() {
                    return Ok(());
                }
            }
            let diff = match first.take() {
                Some(d) => d,
                None => match self
                    .unless_stopping(self.diff(keepstores, prefix, &mut wanted))
                    .await?
                {
                    Some(d) => d,
                    None => break,
                },
            };
            self.account(&diff, emitter);
            // Move and vacate also handle what the destination already has: it is read
            // back, then leaves the source.
            let mut work: Vec<(SourceBlock, Vec<u16>)> =
                diff.missing.into_iter().map(|b| (b, Vec::new())).collect();
            if !diff.present_blocks.is_empty() {
                work.extend(
                    diff.present_blocks
                        .into_iter()
                        .map(|p| (p.block, p.dst_holders)),
                );
                work.sort_by_key(|(b, _)| b.id);
            }
            found_blocks += work.len() as u64;
            found_bytes += work.iter().map(|(b, _)| b.id.size).sum::<u64>();
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
                work.len() as u64,
                &self.counters,
                emitter,
            );
            let slice_prefix: Arc<str> = Arc::from(prefix.as_str());
            let mut blocks = work.into_iter().peekable();
            while blocks.peek().is_some() {
                let batch: Vec<(SourceBlock, Vec<u16>)> =
                    blocks.by_ref().take(ORDER_BATCH).collect();
                let shorts: Vec<ShortLocator> = batch.iter().map(|(b, _)| b.id.short()).collect();
                let refs: Vec<&str> = shorts.iter().map(ShortLocator::hash_hex).collect();
                let reads = probe_orders_go(&refs, &src_uuids);
                let writes = probe_orders_go(&refs, &dst_uuids);
                let batch = batch.into_iter().zip(shorts);
                for ((((block, present_on), short), read_order), write_order) in
                    batch.zip(reads).zip(writes)
                {
                    if self.over_limits() || !self.wait_while_paused(emitter).await {
                        return Ok(());
                    }
                    let replicas = match self.run.mode {
                        // Keep the block's own count: its copies on both sides.
                        Mode::Vacate { .. } => (block.holders.len() + present_on.len()) as u32,
                        _ => job.replicas,
                    };
                    let task = Task {
                        block,
                        short,
                        requeues: 0,
                        slice: seq as u64,
                        prefix: slice_prefix.clone(),
                        replicas,
                        present_on,
                        read_order,
                        write_order: write_order.into_iter().map(|i| dst_writable[i]).collect(),
                    };
                    if queues.send(task).await.is_err() {
                        return Ok(());
                    }
                }
            }
            // The next slice's index read may take a while: the filled batches go now.
            if queues.flush().await.is_err() {
                return Ok(());
            }
        }
        // Exact totals at the end, whatever was estimated on the way.
        if estimated && !self.control.is_stopping() {
            self.counters.planned_blocks.store(found_blocks, Relaxed);
            self.counters.planned_bytes.store(found_bytes, Relaxed);
        }
        Ok(())
    }

    /// After the walk: the blocks requeued while it went are tried again once every block
    /// handed out so far has settled, and those failing again get one last round.
    async fn requeue_rounds(
        &self,
        queues: &Queues,
        requeued: &Requeued,
    ) -> Result<(), EngineError> {
        for _ in 0..MAX_REQUEUES {
            if queues.flush().await.is_err() {
                return Ok(());
            }
            // Wait for the blocks in flight: their failures join the requeue lists.
            loop {
                if self.control.is_stopping() {
                    return Ok(());
                }
                if queues.outstanding.load(Relaxed) == 0 {
                    break;
                }
                compio::time::sleep(CONTROL_POLL).await;
            }
            let mut round = Requeued::take(&requeued.next_slice);
            round.extend(Requeued::take(&requeued.end_of_run));
            if round.is_empty() {
                return Ok(());
            }
            for task in round {
                if queues.send(task).await.is_err() {
                    return Ok(());
                }
            }
        }
        let _ = queues.flush().await;
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

/// Runs `read`, an index read, again in keepclient's rounds (as a block is read) while it
/// fails transiently: a keepstore restarting, a 503, a reset. One restarted keepstore must
/// not end a week-long run. What is still unreadable after the rounds ends the run, as in
/// keep-rsync.
async fn read_index_in_rounds<T, Fut>(
    policy: RetryPolicy,
    mut read: impl FnMut() -> Fut,
) -> Result<T, WalkError>
where
    Fut: std::future::Future<Output = Result<T, WalkError>>,
{
    let mut rounds = Rounds::new(policy, vec![0]);
    let _first = rounds.next().await;
    loop {
        match read().await {
            Ok(value) => return Ok(value),
            Err(e) => {
                rounds.mark(0, next_for(&e.cause));
                if rounds.next().await.is_none() {
                    return Err(e);
                }
            }
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
    receiver: async_channel::Receiver<Vec<Task>>,
    small_receiver: Option<async_channel::Receiver<Vec<Task>>>,
    requeued: Arc<Requeued>,
    outstanding: Arc<std::sync::atomic::AtomicU64>,
    emitter: Emitter,
    /// This worker's share of `per_server_requests`.
    per_server_requests: usize,
    /// How many workers share the run (for their share of a bandwidth limit).
    workers: usize,
    /// Per destination server, the most replicas one PUT can store there.
    replica_caps: Arc<Vec<Option<u32>>>,
}

fn worker_main<F: KeepstoresFactory>(state: WorkerState<F>) -> Result<(), EngineError> {
    let io = state.run.config.io;
    let (runtime, _) = build_runtime(io).map_err(|source| WorkerError::Runtime {
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
        small_receiver,
        requeued,
        outstanding,
        emitter,
        per_server_requests,
        workers,
        replica_caps,
    } = state;
    runtime.block_on(async move {
        let keepstores = Rc::new(factory.client());
        let hasher = HashBatcher::new();
        let gates = Gates::new(
            run.job.src.services.len(),
            run.job.dst.services.len(),
            per_server_requests,
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
        let (main_feeder, receiver) = spawn_feeder(receiver, run.config.concurrency);
        let small = small_receiver.map(|remote| spawn_feeder(remote, run.config.concurrency));
        let (small_feeder, small_receiver) = match small {
            Some((feeder, local)) => (Some(feeder), Some(local)),
            None => (None, None),
        };
        let window = Window::new(window::FLOOR.min(run.config.concurrency));
        let steering = compio::runtime::spawn(steer_window(
            window.clone(),
            gates.clone(),
            control.clone(),
            counters.clone(),
            run.config.concurrency,
            run.config.min_rate,
            workers,
        ));
        let lanes: Vec<_> = (0..run.config.concurrency)
            .map(|lane| {
                let lane_state = Lane {
                    window: window.clone(),
                    run: run.clone(),
                    control: control.clone(),
                    counters: counters.clone(),
                    ledger: ledger.clone(),
                    pool: pool.clone(),
                    receiver: match &small_receiver {
                        Some(small) if lane % MIXED_SMALL_SHARE == MIXED_SMALL_SHARE - 1 => {
                            small.clone()
                        }
                        _ => receiver.clone(),
                    },
                    requeued: requeued.clone(),
                    outstanding: outstanding.clone(),
                    emitter: emitter.clone(),
                    keepstores: keepstores.clone(),
                    hasher: hasher.clone(),
                    gates: gates.clone(),
                    replica_caps: replica_caps.clone(),
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
        drop(steering);
        drop(flusher);
        drop(main_feeder);
        drop(small_feeder);
        emitter.borrow_mut().flush();
        match outcome {
            futures_util::future::Either::Left((results, _)) => {
                for result in results {
                    if let Err(e) = result {
                        return Err(
                            WorkerError::Worker(format!("a copy task failed: {e:?}")).into()
                        );
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
    /// The worker's adaptive number of blocks in flight (see [`window`]).
    window: Rc<Window>,
    run: Arc<Run>,
    control: Arc<Control>,
    counters: Arc<Counters>,
    ledger: Arc<Ledger>,
    pool: BufferPool,
    receiver: async_channel::Receiver<Task>,
    requeued: Arc<Requeued>,
    outstanding: Arc<std::sync::atomic::AtomicU64>,
    emitter: Rc<RefCell<Emitter>>,
    keepstores: Rc<K>,
    hasher: HashBatcher,
    gates: Rc<Gates>,
    replica_caps: Arc<Vec<Option<u32>>>,
}

/// Sleeps in `CONTROL_POLL` steps while the run is paused and no stop was asked.
async fn sleep_while_paused(control: &Control) {
    while control.is_paused() && !control.is_stopping() {
        compio::time::sleep(CONTROL_POLL).await;
    }
}

impl<K: Keepstores> Lane<K> {
    async fn go(self) {
        loop {
            // While paused, every lane waits.
            while self.control.is_paused() && !self.control.is_stopping() {
                if self.receiver.is_closed() && self.receiver.is_empty() {
                    self.window.close();
                    return;
                }
                compio::time::sleep(CONTROL_POLL).await;
            }
            // Lanes beyond the window (adaptive, and at most the live concurrency) wait here
            // without polling; a closed window means the walk is over and the queue empty.
            let Some(slot) = self.window.enter().await else {
                return;
            };
            let Ok(task) = self.receiver.recv().await else {
                // Nothing left: release the lanes still waiting for a slot.
                self.window.close();
                return;
            };
            // A pause that came while this lane waited for a task holds the task too: the
            // requeue rounds hand tasks out without looking at the pause, and a block tried
            // while paused could fail its last round for nothing.
            sleep_while_paused(&self.control).await;
            let _working = slot.working();
            if self.control.is_stopping() {
                // Not started: abandoned (its slice stays open; a rerun copies it).
                self.outstanding.fetch_sub(1, Relaxed);
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
                replica_caps: &self.replica_caps,
            };
            if task.requeues == 0 {
                announce(&task, &self.counters, &self.emitter);
            }
            let tried = match &self.run.mode {
                Mode::Copy if !task.present_on.is_empty() => {
                    verify_existing(
                        &ctx,
                        &task,
                        &self.run.bad_copies,
                        &self.counters,
                        &self.emitter,
                    )
                    .await
                }
                Mode::Copy => copy_block(&ctx, &task, false, &self.counters, &self.emitter).await,
                mode => move_block(&ctx, &task, mode, &self.counters, &self.emitter).await,
            };
            match tried {
                Tried::Settled { ok, movable } => {
                    let moved = movable.then(|| MovedBlock {
                        id: task.block.id,
                        holders: task.block.holders.clone(),
                        replicas: task.replicas,
                    });
                    let mut emitter = self.emitter.borrow_mut();
                    self.ledger.complete(
                        task.slice,
                        &task.prefix,
                        ok,
                        moved,
                        &self.counters,
                        &mut emitter,
                    );
                }
                Tried::Requeue => self.requeued.push(task),
            }
            self.outstanding.fetch_sub(1, Relaxed);
        }
    }
}

/// A worker's window controller: every [`window::TICK`], the adaptive rule, bounded by the
/// live concurrency (`ctl concurrency`) and by what the bandwidth limit allows.
async fn steer_window(
    window: Rc<Window>,
    gates: Rc<Gates>,
    control: Arc<Control>,
    counters: Arc<Counters>,
    ceiling: usize,
    min_rate: u64,
    workers: usize,
) {
    let mut controller = window::Controller::new(ceiling);
    let mut shown = 0u64;
    // The wall clock's (not the monotonic clock's): every process re-measures at once.
    let period_now = || {
        let since_epoch = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        window::remeasure_period(since_epoch)
    };
    let mut period = period_now();
    loop {
        compio::time::sleep(window::TICK).await;
        let (heads, head_latency) = gates.take_heads();
        let now = period_now();
        let adaptive = controller.tick(window::Sample {
            heads,
            head_latency,
            puts: gates.take_puts(),
            peak_busy: window.take_peak(),
            remeasure: std::mem::replace(&mut period, now) != now,
        });
        let mut limit = adaptive.min(control.concurrency(ceiling));
        if let Some(cap) = window::bandwidth_cap(control.bw_in.rate(), min_rate, workers) {
            limit = limit.min(cap);
        }
        window.set_limit(limit);
        // The sum over workers, for the status and /metrics.
        let now = limit as u64;
        if now != shown {
            counters
                .window_blocks
                .fetch_add(now.wrapping_sub(shown), Relaxed);
            shown = now;
        }
    }
}

/// What became of one try at a block.
enum Tried {
    /// Confirmed (`ok`), or failed for good: its slice can count it. `movable`: its
    /// destination replicas are confirmed and one was read back, so it may leave the source.
    Settled { ok: bool, movable: bool },
    /// Failed every retry; it goes back to the queue.
    Requeue,
}

/// keep-rsync's "Copying data block N of M" moment, once per block.
fn announce(task: &Task, counters: &Counters, emitter: &RefCell<Emitter>) {
    let number = counters.started_blocks.fetch_add(1, Relaxed) + 1;
    emitter.borrow_mut().emit(Event::Started {
        number,
        planned: counters.planned_blocks.load(Relaxed),
        finished: counters.copied_blocks.load(Relaxed) + counters.failed_blocks.load(Relaxed),
        block: task.short,
    });
}

/// Move and vacate: a block the destination already lists is read back where it is (as
/// many replicas as wanted), signed with the destination's key when there is one (bare is
/// enough where signatures are not enforced); otherwise, or when that fails, it is copied
/// and one stored replica read back.
async fn move_block<K: Keepstores>(
    ctx: &Ctx<'_, K>,
    task: &Task,
    mode: &Mode,
    counters: &Counters,
    emitter: &RefCell<Emitter>,
) -> Tried {
    if !task.present_on.is_empty() && task.present_on.len() as u32 >= task.replicas {
        let key = match mode {
            Mode::Vacate { .. } => ctx.job.signing.as_ref(),
            _ => ctx.job.dst_signing.as_ref(),
        };
        let locator = source_locator(&ctx.job.dst, key, &task.short);
        let mut verified = Vec::new();
        for &server in &task.present_on {
            if ctx
                .read_back(Key::Dst(server as usize), &locator)
                .await
                .is_ok()
            {
                verified.push(server);
                if verified.len() as u32 >= task.replicas {
                    break;
                }
            }
        }
        if verified.len() as u32 >= task.replicas {
            counters.verified_blocks.fetch_add(1, Relaxed);
            counters.skipped_blocks.fetch_add(1, Relaxed);
            counters
                .skipped_bytes
                .fetch_add(task.block.id.size, Relaxed);
            emitter.borrow_mut().emit(Event::Done(BlockRecord {
                block: task.short,
                action: Action::Verified,
                bytes: task.block.id.size,
                source: None,
                stored_on: verified,
                attempts: task.replicas,
                error: None,
            }));
            return Tried::Settled {
                ok: true,
                movable: true,
            };
        }
    }
    copy_block(ctx, task, true, counters, emitter).await
}

/// `-verify-existing`: a block the destination lists is re-read from every destination
/// server that lists it and hashed. A keepstore holding different bytes under a hash
/// answers a PUT of the right bytes with 500 "hash collision", so a bad replica cannot be
/// overwritten in place: good replicas are written to the next writable servers in
/// rendezvous order instead (read from the source, read back), and each bad one is
/// reported with its server and mount (and trashed afterwards with `-trash-bad`).
async fn verify_existing<K: Keepstores>(
    ctx: &Ctx<'_, K>,
    task: &Task,
    bad_copies: &Mutex<Vec<BadCopy>>,
    counters: &Counters,
    emitter: &RefCell<Emitter>,
) -> Tried {
    let dst = &ctx.job.dst;
    let id = task.block.id;
    let locator = source_locator(dst, ctx.job.dst_signing.as_ref(), &task.short);
    let mut good: Vec<usize> = Vec::new();
    let mut bad: Vec<usize> = Vec::new();
    for &server in &task.present_on {
        let server = server as usize;
        match ctx.check_replica(Key::Dst(server), &locator, &id).await {
            Ok(()) => good.push(server),
            Err(Cause::BadReplica(why)) => {
                bad.push(server);
                let mount = find_mount(ctx.keepstores, dst, server, &id).await;
                let uuid = dst.services.get(server).map_or("", |s| s.uuid.as_str());
                emitter.borrow_mut().emit(Event::Warning(format!(
                    "Bad replica of {} on {uuid}{}: {why}",
                    task.short,
                    mount
                        .as_ref()
                        .map(|(m, _)| format!(" (mount {m})"))
                        .unwrap_or_default()
                )));
                if let Ok(mut list) = bad_copies.lock() {
                    list.push(BadCopy {
                        block: id,
                        server,
                        mount,
                        reason: why.to_string(),
                    });
                }
            }
            // Unreadable (not found after all, a network error): not counted as good.
            Err(_) => {}
        }
    }
    if bad.is_empty() && good.len() as u32 >= task.replicas.max(1) {
        counters.verified_blocks.fetch_add(1, Relaxed);
        counters.skipped_blocks.fetch_add(1, Relaxed);
        counters.skipped_bytes.fetch_add(id.size, Relaxed);
        emitter.borrow_mut().emit(Event::Done(BlockRecord {
            block: task.short,
            action: Action::Verified,
            bytes: id.size,
            source: None,
            stored_on: good.iter().map(|&g| g as u16).collect(),
            attempts: task.present_on.len() as u32,
            error: None,
        }));
        return Tried::Settled {
            ok: true,
            movable: false,
        };
    }
    // Write the missing good replicas elsewhere, in rendezvous order.
    let need = task.replicas.max(1).saturating_sub(good.len() as u32);
    let order: Vec<usize> = task
        .write_order
        .iter()
        .copied()
        .filter(|s| !good.contains(s) && !bad.contains(s))
        .collect();
    let replacement = Task {
        block: task.block.clone(),
        short: task.short,
        requeues: task.requeues,
        slice: task.slice,
        prefix: task.prefix.clone(),
        replicas: need,
        present_on: Vec::new(),
        read_order: task.read_order.clone(),
        write_order: order,
    };
    let tried = if need == 0 {
        Tried::Settled {
            ok: true,
            movable: false,
        }
    } else {
        copy_block(ctx, &replacement, true, counters, emitter).await
    };
    if let Tried::Settled { ok: true, .. } = tried {
        emitter.borrow_mut().emit(Event::Done(BlockRecord {
            block: task.short,
            action: Action::Replaced,
            bytes: id.size,
            source: None,
            stored_on: bad.iter().map(|&b| b as u16).collect(),
            attempts: 0,
            error: (!bad.is_empty()).then(|| BlockError {
                kind: crate::keepstore::ErrorKind::Checksum,
                text: format!(
                    "{} bad replica(s) found; good replicas written elsewhere",
                    bad.len()
                ),
            }),
        }));
    }
    tried
}

/// The mount of `server` that lists `id`, with its index mtime (for naming a bad replica
/// and trashing exactly that copy).
async fn find_mount<K: Keepstores>(
    keepstores: &K,
    cluster: &crate::cluster::Cluster,
    server: usize,
    id: &BlockId,
) -> Option<(String, i64)> {
    let mounts = keepstores.mounts(cluster, server).await.ok()?;
    let short = id.short();
    for mount in mounts {
        let mut entries = Vec::new();
        let source = crate::keepstore::IndexSource::Mount(&mount.uuid);
        if keepstores
            .index(cluster, server, source, short.hash_hex(), 16, &mut entries)
            .await
            .is_ok()
        {
            if let Some(e) = entries
                .iter()
                .find(|e| e.hash == id.hash && e.size == id.size)
            {
                return Some((mount.uuid.clone(), e.mtime_ns));
            }
        }
    }
    None
}

/// One try at a block, GET then PUT, with its events and counters; with `read_back`, one
/// stored replica is then read back (move, vacate). A failure before the last requeue round
/// is not final: the block goes back to the end of the queue (dCache's requeue), and only
/// its final outcome is reported.
async fn copy_block<K: Keepstores>(
    ctx: &Ctx<'_, K>,
    task: &Task,
    read_back: bool,
    counters: &Counters,
    emitter: &RefCell<Emitter>,
) -> Tried {
    let block = &task.block;
    let short = task.short;
    counters.in_flight_blocks.fetch_add(1, Relaxed);
    let mut outcome = Outcome::default();
    let result = async {
        let lease = ctx
            .fetch(block, &short, &task.read_order, &mut outcome)
            .await?;
        ctx.store_replicas(
            &short,
            lease.freeze(),
            &task.write_order,
            task.replicas,
            &mut outcome,
        )
        .await
    }
    .await;
    // Read one stored replica back before the block may leave the source.
    let mut read_back_error = None;
    let movable = if read_back && result.is_ok() {
        let mut verified = false;
        for (server, locator) in outcome.stored_on.iter().zip(&outcome.stored_locators) {
            match ctx.read_back(Key::Dst(*server), locator).await {
                Ok(()) => {
                    verified = true;
                    break;
                }
                Err(e) => read_back_error = Some(e),
            }
        }
        if verified {
            counters.verified_blocks.fetch_add(1, Relaxed);
        }
        verified
    } else {
        false
    };
    counters.in_flight_blocks.fetch_sub(1, Relaxed);
    counters
        .refetched_blocks
        .fetch_add(u64::from(outcome.bad_replicas), Relaxed);
    let (action, error) = match &result {
        Ok(_) => {
            counters.copied_blocks.fetch_add(1, Relaxed);
            counters.copied_bytes.fetch_add(block.id.size, Relaxed);
            if task.requeues > 0 {
                counters.requeue_successes.fetch_add(1, Relaxed);
            }
            (Action::Copied, None)
        }
        Err(_) if task.requeues < MAX_REQUEUES => {
            counters.requeued_blocks.fetch_add(1, Relaxed);
            return Tried::Requeue;
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
        error: error.or_else(|| {
            read_back_error.map(|e| BlockError {
                kind: e.kind(),
                text: format!("copied, but the read-back failed, so it stays on the source: {e}"),
            })
        }),
    }));
    Tried::Settled {
        ok: result.is_ok(),
        movable,
    }
}

/// Requeue rounds: at the end of the block's slice, then at the end of the run.
const MAX_REQUEUES: u8 = 2;

/// Blocks that failed every retry, waiting to be tried again.
#[derive(Default)]
struct Requeued {
    /// Tried again after the current slice.
    next_slice: Mutex<Vec<Task>>,
    /// Tried again once the walk is over.
    end_of_run: Mutex<Vec<Task>>,
}

impl Requeued {
    fn push(&self, mut task: Task) {
        task.requeues += 1;
        let queue = if task.requeues == 1 {
            &self.next_slice
        } else {
            &self.end_of_run
        };
        if let Ok(mut q) = queue.lock() {
            q.push(task);
        }
    }

    fn take(queue: &Mutex<Vec<Task>>) -> Vec<Task> {
        queue
            .lock()
            .map(|mut q| std::mem::take(&mut *q))
            .unwrap_or_default()
    }
}

/// The whole walk's total from what `walked` of its `slices` slices held: the hash space
/// is uniform (MD5), so every slice of a walk holds about the same share.
pub fn extrapolate(found: u64, walked: u64, slices: u64) -> u64 {
    if walked == 0 {
        return 0;
    }
    (u128::from(found) * u128::from(slices) / u128::from(walked)) as u64
}

/// One worker per two cores. A worker's SIMD MD5 hashes 5–7 GB/s, more than a NIC brings
/// in, and the more blocks one worker has in flight, the more chunks land together and the
/// fuller its lanes (measured: with 1 MiB blocks one worker spent 2.7× less CPU hashing than
/// the scalar path, two workers on two cores only 1.3×); the other cores are left to the
/// kernel's network copies and TLS.
pub fn default_workers() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().div_ceil(2))
}

#[cfg(test)]
mod tests;
