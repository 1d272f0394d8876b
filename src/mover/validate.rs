//! The validation engine behind `keepmover validate`: it never writes. A walker streams
//! both clusters' indexes slice by slice, as the copy does (memory bounded by one slice;
//! the copy's [`Selection`]: prefix, shard, filters and locator list, so a plan's shards
//! and a filtered copy are validated exactly as they were copied), joins every source block
//! with every destination copy of its hash ([`crate::index::join`]) and classifies it
//! ([`crate::index::placement`]). Blocks chosen for re-reading (`-deep`: all; `-sample`: a
//! deterministic share) go to worker threads that GET each destination copy from each
//! server holding it with the copy's own read path, [`Ctx::fetch`] with a one-server order:
//! pooled buffers, MD5 in SIMD lanes as chunks land, keepclient's retry rounds, many blocks
//! in flight. Every block ends as one [`Event::Checked`]; the reports are sinks outside the
//! engine.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::atomic::{AtomicI64, AtomicU64};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use serde::Serialize;

use super::control::{Control, StopReason};
use super::counters::Counters;
use super::engine::{default_workers, EngineConfig, Selection, WorkerError};
use super::events::{Emitter, Event, EventSink, Phase, Pump};
use super::gates::Gates;
use super::hash_batch::HashBatcher;
use super::pool::BufferPool;
use super::transfer::{Ctx, Job, Outcome, Signing, TransferError};
use crate::cluster::Cluster;
use crate::index::join::{self, Joined};
use crate::index::layout::Layout;
use crate::index::locators::{retain_wanted, LocatorCursor, Wanted as Listed};
use crate::index::merge::{self, choose_extra_digits};
use crate::index::placement::{self, Finding, FindingKind, Verdict, Wanted};
use crate::index::shard::walk_prefixes;
use crate::index::walk::{estimate_source_blocks, fetch_slice, EntryFilter, WalkError};
use crate::index::SourceBlock;
use crate::keep::index_format::IndexEntry;
use crate::keep::rendezvous::probe_orders_go;
use crate::keepstore::{BadReplica, Cause, Keepstores, KeepstoresFactory};
use crate::net::{build_runtime, IoBackend};

/// Which destination copies are read back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reread {
    /// None: indexes only.
    Off,
    /// Every copy of every block (`-deep`).
    All,
    /// Every copy of the blocks [`placement::sampled`] picks.
    Sample { ppm: u32, seed: u64 },
}

impl Reread {
    fn picks(&self, verdict: &Verdict) -> bool {
        match *self {
            Reread::Off => false,
            Reread::All => true,
            Reread::Sample { ppm, seed } => placement::sampled(seed, &verdict.id.hash, ppm),
        }
    }
}

/// What to validate, and how.
#[derive(Debug)]
pub struct ValidateJob {
    pub src: Cluster,
    pub dst: Cluster,
    /// How destination GETs are signed for re-reads (the destination's key and TTL).
    pub dst_signing: Option<Signing>,
    pub layout: Layout,
    pub wanted: Wanted,
    /// Which blocks: the copy's selection (prefix, shard, `-size`/`-mtime` on the source
    /// index lines, the `-locators` list read alongside the walk), applied as the copy
    /// applies it. Its order is not used: blocks are classified in hash order.
    pub select: Selection,
    pub reread: Reread,
    /// Emit a [`Event::Checked`] for blocks without findings too (`-combined`, `-report`
    /// list every block); without, only problems and destination-only blocks are events.
    pub every_block: bool,
    /// Workers, concurrency, memory, I/O, retries and slicing (the copy's tuning).
    pub config: EngineConfig,
}

/// One block's result: one line of every report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckRecord {
    pub verdict: Verdict,
    /// Whether the block was chosen for re-reading.
    pub reread: bool,
    /// Destination servers whose copy was read back intact.
    pub verified_on: Vec<usize>,
    /// GETs made for it.
    pub attempts: u32,
}

/// Validation totals (blocks, not copies), shared by the walker and the workers.
#[derive(Debug)]
pub struct ValidateTotals {
    src_blocks: AtomicU64,
    checked_blocks: AtomicU64,
    ok_blocks: AtomicU64,
    problem_blocks: AtomicU64,
    extra_blocks: AtomicU64,
    by_kind: [AtomicU64; 6],
    reread_blocks: AtomicU64,
    verified_copies: AtomicU64,
    verified_bytes: AtomicU64,
    oldest_mtime_ns: AtomicI64,
}

impl Default for ValidateTotals {
    fn default() -> Self {
        ValidateTotals {
            src_blocks: AtomicU64::new(0),
            checked_blocks: AtomicU64::new(0),
            ok_blocks: AtomicU64::new(0),
            problem_blocks: AtomicU64::new(0),
            extra_blocks: AtomicU64::new(0),
            by_kind: Default::default(),
            reread_blocks: AtomicU64::new(0),
            verified_copies: AtomicU64::new(0),
            verified_bytes: AtomicU64::new(0),
            oldest_mtime_ns: AtomicI64::new(i64::MAX),
        }
    }
}

/// A copy of [`ValidateTotals`] for reports.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ValidateCounts {
    /// Distinct `hash+size` on the source under the prefix.
    pub src_blocks: u64,
    /// Source blocks classified so far (= `src_blocks` at the end of a full run).
    pub checked_blocks: u64,
    pub ok_blocks: u64,
    /// Source blocks with at least one finding.
    pub problem_blocks: u64,
    /// `hash+size` only the destination has (not a problem).
    pub extra_blocks: u64,
    pub missing: u64,
    pub size_mismatch: u64,
    pub under_replicated: u64,
    pub misplaced: u64,
    pub corrupt: u64,
    pub unreadable: u64,
    /// Blocks chosen for re-reading, copies read back intact, and their bytes.
    pub reread_blocks: u64,
    pub verified_copies: u64,
    pub verified_bytes: u64,
    /// The oldest mtime of a good destination copy of a source block (ns since the epoch).
    pub oldest_copy_mtime_ns: Option<i64>,
}

impl ValidateCounts {
    /// Blocks with a finding of `kind`.
    pub fn of(&self, kind: FindingKind) -> u64 {
        match kind {
            FindingKind::Missing => self.missing,
            FindingKind::SizeMismatch => self.size_mismatch,
            FindingKind::UnderReplicated => self.under_replicated,
            FindingKind::Misplaced => self.misplaced,
            FindingKind::Corrupt => self.corrupt,
            FindingKind::Unreadable => self.unreadable,
        }
    }
}

fn kind_slot(kind: FindingKind) -> usize {
    FindingKind::ALL
        .iter()
        .position(|k| *k == kind)
        .unwrap_or_default()
}

impl ValidateTotals {
    fn record(&self, record: &CheckRecord) {
        let verdict = &record.verdict;
        if verdict.extra {
            self.extra_blocks.fetch_add(1, Relaxed);
            return;
        }
        self.checked_blocks.fetch_add(1, Relaxed);
        if record.reread {
            self.reread_blocks.fetch_add(1, Relaxed);
        }
        self.verified_copies
            .fetch_add(record.verified_on.len() as u64, Relaxed);
        self.verified_bytes
            .fetch_add(record.verified_on.len() as u64 * verdict.id.size, Relaxed);
        if let Some(mtime) = verdict.oldest_mtime_ns {
            self.oldest_mtime_ns.fetch_min(mtime, Relaxed);
        }
        if verdict.is_problem() {
            self.problem_blocks.fetch_add(1, Relaxed);
            for kind in FindingKind::ALL {
                if verdict.findings.iter().any(|f| f.kind() == kind) {
                    self.by_kind[kind_slot(kind)].fetch_add(1, Relaxed);
                }
            }
        } else {
            self.ok_blocks.fetch_add(1, Relaxed);
        }
    }

    pub fn snapshot(&self) -> ValidateCounts {
        let kind = |k: FindingKind| self.by_kind[kind_slot(k)].load(Relaxed);
        let oldest = self.oldest_mtime_ns.load(Relaxed);
        ValidateCounts {
            src_blocks: self.src_blocks.load(Relaxed),
            checked_blocks: self.checked_blocks.load(Relaxed),
            ok_blocks: self.ok_blocks.load(Relaxed),
            problem_blocks: self.problem_blocks.load(Relaxed),
            extra_blocks: self.extra_blocks.load(Relaxed),
            missing: kind(FindingKind::Missing),
            size_mismatch: kind(FindingKind::SizeMismatch),
            under_replicated: kind(FindingKind::UnderReplicated),
            misplaced: kind(FindingKind::Misplaced),
            corrupt: kind(FindingKind::Corrupt),
            unreadable: kind(FindingKind::Unreadable),
            reread_blocks: self.reread_blocks.load(Relaxed),
            verified_copies: self.verified_copies.load(Relaxed),
            verified_bytes: self.verified_bytes.load(Relaxed),
            oldest_copy_mtime_ns: (oldest != i64::MAX).then_some(oldest),
        }
    }
}

/// What a finished validation reports; the totals and counters hold the rest.
#[derive(Debug, Clone)]
pub struct ValidateReport {
    pub counts: ValidateCounts,
    pub slices: u64,
    pub elapsed: Duration,
    pub io_backend: IoBackend,
    pub stopped: Option<StopReason>,
    pub peak_buffer_bytes: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum ValidateError {
    #[error("Error while validating: {0}")]
    Walk(Box<WalkError>),
    #[error(transparent)]
    Workers(#[from] WorkerError),
    #[error("reading the -locators list: {0}")]
    Locators(String),
}

impl From<WalkError> for ValidateError {
    fn from(e: WalkError) -> Self {
        ValidateError::Walk(Box::new(e))
    }
}

/// A block waiting to be re-read.
struct Task {
    verdict: Verdict,
}

/// Blocks whose rendezvous orders are computed together (one SIMD batch).
const ORDER_BATCH: usize = 1024;
const CONTROL_POLL: Duration = Duration::from_millis(50);

/// Runs a validation. Findings are results, not errors: `Err` only when it could not run
/// (an unreadable index on either side, a runtime that would not start).
pub fn run<F: KeepstoresFactory>(
    job: ValidateJob,
    factory: F,
    control: Arc<Control>,
    counters: Arc<Counters>,
    totals: Arc<ValidateTotals>,
    sinks: Vec<Box<dyn EventSink>>,
) -> Result<ValidateReport, ValidateError> {
    let (pump, emitter) = Pump::start(sinks, counters.clone()).map_err(WorkerError::Thread)?;
    let started = Instant::now();
    let result = (|| {
        let (runtime, backend) =
            build_runtime(job.config.io).map_err(|source| WorkerError::Runtime {
                backend: job.config.io,
                source,
            })?;
        let walker = Walker {
            job: Arc::new(job),
            factory: Arc::new(factory),
            control,
            counters,
            totals: totals.clone(),
        };
        let (slices, peak) = runtime.block_on(walker.go(emitter))?;
        Ok(ValidateReport {
            counts: totals.snapshot(),
            slices,
            elapsed: started.elapsed(),
            io_backend: backend,
            stopped: walker.control.stop_reason(),
            peak_buffer_bytes: peak,
        })
    })();
    pump.join();
    result
}

struct Walker<F: KeepstoresFactory> {
    job: Arc<ValidateJob>,
    factory: Arc<F>,
    control: Arc<Control>,
    counters: Arc<Counters>,
    totals: Arc<ValidateTotals>,
}

impl<F: KeepstoresFactory> Walker<F> {
    /// Walks every slice; returns the slices walked and the buffer pool's peak.
    async fn go(&self, mut emitter: Emitter) -> Result<(u64, usize), ValidateError> {
        let keepstores = self.factory.client();
        let job = &self.job;
        let prefix = &job.select.prefix;
        let extra_digits = match job.config.prefix_length {
            0 => {
                let estimate = estimate_source_blocks(&keepstores, &job.src, prefix).await?;
                choose_extra_digits(estimate, prefix.len(), job.config.slice_target)
            }
            wanted => wanted.saturating_sub(prefix.len()).min(8),
        };
        // The copy's slicing: a shard walks exactly the prefixes the copy's shard walks.
        let pending = walk_prefixes(prefix, extra_digits, job.select.shard);
        self.counters
            .slices_total
            .store(pending.len() as u64, Relaxed);
        let pool = BufferPool::new(job.config.memory_budget);
        let (sender, receiver) = async_channel::bounded::<Task>(
            job.config.concurrency.max(1) * workers(&job.config) * 2,
        );
        let mut handles = Vec::new();
        if job.reread != Reread::Off {
            for worker in 0..workers(&job.config) {
                let state = WorkerState {
                    job: job.clone(),
                    factory: self.factory.clone(),
                    control: self.control.clone(),
                    counters: self.counters.clone(),
                    totals: self.totals.clone(),
                    pool: pool.clone(),
                    receiver: receiver.clone(),
                    emitter: emitter.fork(),
                };
                let handle = std::thread::Builder::new()
                    .name(format!("keepmover-validate-{worker}"))
                    .spawn(move || worker_main(state))
                    .map_err(WorkerError::Thread)?;
                handles.push(handle);
            }
        }
        drop(receiver);
        // The phases a -listen status and the bar show (validation's "copying" is the walk
        // and its re-reads).
        emitter.emit(Event::Phase(Phase::Copying));
        let walked = self
            .walk(&keepstores, &pending, &sender, &mut emitter)
            .await;
        sender.close();
        drop(sender);
        let mut result = walked;
        for handle in handles {
            match handle.join() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => result = result.and(Err(e)),
                Err(_) => result = result.and(Err(WorkerError::Worker("panicked".into()).into())),
            }
        }
        emitter.emit(Event::Phase(Phase::Done));
        emitter.flush();
        result.map(|slices| (slices, pool.peak_allocated()))
    }

    async fn walk(
        &self,
        keepstores: &F::Client,
        pending: &[String],
        sender: &async_channel::Sender<Task>,
        emitter: &mut Emitter,
    ) -> Result<u64, ValidateError> {
        let job = &self.job;
        let dst_uuids = job.dst.uuids();
        let select = &job.select;
        let accepts = |e: &IndexEntry| select.filter.accepts(e);
        let filter: Option<&EntryFilter<'_>> = (!select.filter.is_empty()).then_some(&accepts);
        let mut wanted: Option<LocatorCursor> = select
            .locators
            .as_ref()
            .map(|list| list.cursor())
            .transpose()
            .map_err(|e| ValidateError::Locators(e.to_string()))?;
        let mut walked = 0u64;
        for prefix in pending {
            if self.control.is_stopping() {
                break;
            }
            let listed: Option<Vec<Listed>> = match &mut wanted {
                Some(cursor) => Some(
                    cursor
                        .take_prefix(prefix)
                        .map_err(|e| ValidateError::Locators(e.to_string()))?,
                ),
                None => None,
            };
            let src_fetches = (0..job.src.services.len())
                .map(|i| fetch_slice(keepstores, &job.src, i, prefix, filter));
            let (src_results, dst_result) = futures_util::join!(
                join_all(src_fetches),
                join::fetch_listings(keepstores, &job.dst, &job.layout, prefix)
            );
            let mut src_slices = Vec::with_capacity(src_results.len());
            let mut lines = 0u64;
            for (server, result) in src_results.into_iter().enumerate() {
                let (slice, n) = result?;
                lines += n;
                src_slices.push((server as u16, slice));
            }
            let (listings, dst_lines) = dst_result?;
            lines += dst_lines;
            let c = &self.counters;
            c.index_lines.fetch_add(lines, Relaxed);
            let mut source: Vec<SourceBlock> = merge::merge_sources(src_slices);
            if let Some(listed) = &listed {
                retain_wanted(&mut source, listed, |b| b.id);
            }
            c.src_blocks.fetch_add(source.len() as u64, Relaxed);
            self.totals
                .src_blocks
                .fetch_add(source.len() as u64, Relaxed);
            let mut joined = join::join(source, listings);
            if filter.is_some() || listed.is_some() {
                // The filters and the list select by source index lines: a block only the
                // destination lists is outside what they can say (and a source block they
                // left out would otherwise show up as one).
                joined.retain(|item| matches!(item, Joined::Source { .. }));
            }
            let mut items = joined.into_iter().peekable();
            while items.peek().is_some() {
                let batch: Vec<Joined> = items.by_ref().take(ORDER_BATCH).collect();
                let shorts: Vec<_> = batch
                    .iter()
                    .map(|j| match j {
                        Joined::Source { block, .. } => block.id.short(),
                        Joined::DstOnly { id, .. } => id.short(),
                    })
                    .collect();
                let hashes: Vec<&str> = shorts.iter().map(|s| s.hash_hex()).collect();
                let orders = probe_orders_go(&hashes, &dst_uuids);
                for (item, order) in batch.into_iter().zip(orders) {
                    let verdict = match &item {
                        Joined::Source { block, replicas } => placement::classify(
                            block.id,
                            replicas,
                            &job.layout,
                            &job.dst,
                            &order,
                            &job.wanted,
                        ),
                        Joined::DstOnly { id, replicas } => {
                            placement::extra(*id, replicas, &job.layout)
                        }
                    };
                    if !verdict.extra && !verdict.holders.is_empty() && job.reread.picks(&verdict) {
                        if self.control.is_stopping() {
                            return Ok(walked);
                        }
                        if sender.send(Task { verdict }).await.is_err() {
                            return Ok(walked);
                        }
                        continue;
                    }
                    let record = CheckRecord {
                        verdict,
                        reread: false,
                        verified_on: Vec::new(),
                        attempts: 0,
                    };
                    self.totals.record(&record);
                    if job.every_block || record.verdict.is_problem() {
                        emitter.emit(Event::Checked(Box::new(record)));
                    }
                }
            }
            walked += 1;
            self.counters.slices_done.fetch_add(1, Relaxed);
        }
        Ok(walked)
    }
}

fn workers(config: &EngineConfig) -> usize {
    match config.workers {
        0 => default_workers(),
        n => n,
    }
}

struct WorkerState<F: KeepstoresFactory> {
    job: Arc<ValidateJob>,
    factory: Arc<F>,
    control: Arc<Control>,
    counters: Arc<Counters>,
    totals: Arc<ValidateTotals>,
    pool: BufferPool,
    receiver: async_channel::Receiver<Task>,
    emitter: Emitter,
}

fn worker_main<F: KeepstoresFactory>(state: WorkerState<F>) -> Result<(), ValidateError> {
    let io = state.job.config.io;
    let (runtime, _) = build_runtime(io).map_err(|source| WorkerError::Runtime {
        backend: io,
        source,
    })?;
    let WorkerState {
        job,
        factory,
        control,
        counters,
        totals,
        pool,
        receiver,
        emitter,
    } = state;
    runtime.block_on(async move {
        let keepstores = Rc::new(factory.client());
        let hasher = HashBatcher::new();
        let dst_count = job.dst.services.len();
        // Each worker's share of the per-keepstore limit (it is for all workers together).
        let per_server = job
            .config
            .per_server_requests
            .div_ceil(workers(&job.config));
        let gates = Gates::new(dst_count, dst_count, per_server);
        // The copy's read path reads "the source": here the source is the destination.
        let read_job = Rc::new(Job {
            src: job.dst.clone(),
            dst: job.dst.clone(),
            signing: job.dst_signing.clone(),
            dst_signing: job.dst_signing.clone(),
            replicas: job.wanted.replicas,
            classes: job.wanted.classes.as_slice().into(),
        });
        let emitter = Rc::new(RefCell::new(emitter));
        let flusher = {
            let emitter = emitter.clone();
            compio::runtime::spawn(async move {
                loop {
                    compio::time::sleep(super::events::FLUSH_EVERY).await;
                    emitter.borrow_mut().flush();
                }
            })
        };
        let lanes: Vec<_> = (0..job.config.concurrency.max(1))
            .map(|_| {
                let lane = Lane {
                    job: job.clone(),
                    read_job: read_job.clone(),
                    control: control.clone(),
                    counters: counters.clone(),
                    totals: totals.clone(),
                    pool: pool.clone(),
                    receiver: receiver.clone(),
                    emitter: emitter.clone(),
                    keepstores: keepstores.clone(),
                    hasher: hasher.clone(),
                    gates: gates.clone(),
                };
                compio::runtime::spawn(lane.go())
            })
            .collect();
        let all = join_all(lanes);
        let hard_stop = async {
            while !control.is_stopped_now() {
                compio::time::sleep(CONTROL_POLL).await;
            }
        };
        futures_util::pin_mut!(all);
        futures_util::pin_mut!(hard_stop);
        let outcome = futures_util::future::select(all, hard_stop).await;
        drop(flusher);
        emitter.borrow_mut().flush();
        if let futures_util::future::Either::Left((results, _)) = outcome {
            for result in results {
                if let Err(e) = result {
                    return Err(WorkerError::Worker(format!("a re-read task failed: {e:?}")).into());
                }
            }
        }
        Ok(())
    })
}

struct Lane<K: Keepstores> {
    job: Arc<ValidateJob>,
    read_job: Rc<Job>,
    control: Arc<Control>,
    counters: Arc<Counters>,
    totals: Arc<ValidateTotals>,
    pool: BufferPool,
    receiver: async_channel::Receiver<Task>,
    emitter: Rc<RefCell<Emitter>>,
    keepstores: Rc<K>,
    hasher: HashBatcher,
    gates: Rc<Gates>,
}

impl<K: Keepstores> Lane<K> {
    async fn go(self) {
        while let Ok(task) = self.receiver.recv().await {
            if self.control.is_stopping() {
                // Not started: left out of the reports (the summary says the run stopped).
                continue;
            }
            let ctx = Ctx {
                keepstores: &*self.keepstores,
                job: &self.read_job,
                retry: self.job.config.retry,
                hasher: &self.hasher,
                pool: &self.pool,
                gates: &self.gates,
                control: &self.control,
                counters: &self.counters,
                replica_caps: &[],
            };
            let record = reread(&ctx, task.verdict).await;
            self.totals.record(&record);
            if self.job.every_block || record.verdict.is_problem() {
                self.emitter
                    .borrow_mut()
                    .emit(Event::Checked(Box::new(record)));
            }
        }
    }
}

/// Reads back every copy of a block, one server at a time, and adds what went wrong.
pub async fn reread<K: Keepstores>(ctx: &Ctx<'_, K>, mut verdict: Verdict) -> CheckRecord {
    let short = verdict.id.short();
    let mut verified_on = Vec::new();
    let mut attempts = 0;
    for server in verdict.holders.clone() {
        let block = SourceBlock {
            id: verdict.id,
            holders: vec![server as u16],
        };
        let mut outcome = Outcome::default();
        let result = ctx.fetch(&block, &short, &[], &mut outcome).await;
        attempts += outcome.attempts;
        match result {
            Ok(lease) => {
                drop(lease);
                verified_on.push(server);
            }
            Err(error) => verdict.findings.push(reread_finding(server, &error)),
        }
    }
    CheckRecord {
        verdict,
        reread: true,
        verified_on,
        attempts,
    }
}

/// What a failed read of one copy means: a wrong length or MD5 (or keepstore's own
/// `checksum mismatch in stored data`) is a corrupt copy; anything else is unreadable.
pub fn reread_finding(server: usize, error: &TransferError) -> Finding {
    let attempts = match error {
        TransferError::Get { attempts, .. } | TransferError::Put { attempts, .. } => attempts,
    };
    let corrupt = attempts.iter().find(|a| match &a.cause {
        Cause::BadReplica(_) => true,
        Cause::Status { status, body } => *status == 502 && body.contains("checksum mismatch"),
        _ => false,
    });
    if let Some(attempt) = corrupt {
        let detail = match &attempt.cause {
            Cause::BadReplica(BadReplica::Checksum { got }) => {
                format!("content MD5 is {got}")
            }
            other => other.to_string(),
        };
        return Finding::Corrupt { server, detail };
    }
    let detail = match attempts.last() {
        Some(attempt) => attempt.cause.to_string(),
        // fetch() drops the attempts when every server said 404.
        None => "listed by the index, but GET answers 404 (trashed since?)".to_string(),
    };
    Finding::Unreadable { server, detail }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::layout;
    use crate::keep::{BlockHash, BlockId};
    use crate::keepstore::memory::{self, MemoryKeepstores, Scripted};
    use crate::mover::retry::RetryPolicy;

    struct Collect(Arc<std::sync::Mutex<Vec<CheckRecord>>>);

    impl EventSink for Collect {
        fn events(&mut self, batch: &[Event], _: &Counters) {
            for event in batch {
                if let Event::Checked(record) = event {
                    if let Ok(mut seen) = self.0.lock() {
                        seen.push((**record).clone());
                    }
                }
            }
        }
    }

    fn data(n: u8, len: usize) -> Vec<u8> {
        (0..len).map(|i| (i as u8).wrapping_mul(31) ^ n).collect()
    }

    fn order(cluster: &Cluster, id: &BlockId) -> Vec<usize> {
        crate::keep::rendezvous::probe_order_go(id.short().hash_hex(), &cluster.uuids())
    }

    struct Setup {
        ks: MemoryKeepstores,
        src: Cluster,
        dst: Cluster,
        /// 0: one slice for these few blocks (one index read per server).
        prefix_length: usize,
    }

    fn setup() -> Setup {
        Setup {
            ks: MemoryKeepstores::new(),
            src: memory::cluster("src", "aaaaa", 2),
            dst: memory::cluster("dst", "bbbbb", 4),
            prefix_length: 1,
        }
    }

    impl Setup {
        /// A block on source server 0 and on the given destination servers.
        fn block(&self, n: u8, dst_servers: &[usize]) -> BlockId {
            let bytes = data(n, 3000 + n as usize);
            let id = self.ks.put(&self.src, 0, &bytes, 1);
            for &s in dst_servers {
                self.ks.put(&self.dst, s, &bytes, 5);
            }
            id
        }

        fn run(&self, reread: Reread) -> (Vec<CheckRecord>, ValidateReport) {
            let layout = {
                let (runtime, _) = build_runtime(IoBackend::Auto).expect("runtime");
                runtime.block_on(layout::discover(&self.ks, &self.dst))
            };
            let job = ValidateJob {
                src: self.src.clone(),
                dst: self.dst.clone(),
                dst_signing: None,
                layout,
                wanted: Wanted {
                    replicas: 2,
                    classes: vec!["default".into()],
                },
                select: Selection::default(),
                reread,
                every_block: true,
                config: EngineConfig {
                    workers: 1,
                    concurrency: 4,
                    memory_budget: 64 << 20,
                    prefix_length: self.prefix_length,
                    retry: RetryPolicy {
                        retries: 1,
                        delay: Duration::from_millis(2),
                    },
                    ..EngineConfig::default()
                },
            };
            let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
            let report = run(
                job,
                self.ks.clone(),
                Arc::new(Control::new()),
                Arc::new(Counters::default()),
                Arc::new(ValidateTotals::default()),
                vec![Box::new(Collect(seen.clone()))],
            )
            .expect("validation runs");
            let mut records = seen.lock().expect("lock").clone();
            records.sort_by_key(|r| r.verdict.id);
            (records, report)
        }
    }

    fn kinds(records: &[CheckRecord], id: &BlockId) -> Vec<FindingKind> {
        records
            .iter()
            .find(|r| r.verdict.id == *id)
            .map(|r| r.verdict.findings.iter().map(Finding::kind).collect())
            .unwrap_or_default()
    }

    #[test]
    fn findings_over_the_fake_and_deep_finds_the_corrupt_copy() {
        let s = setup();
        let probe = |n: u8| {
            let bytes = data(n, 3000 + n as usize);
            BlockId::new(BlockHash(crate::hash::md5(&bytes)), bytes.len() as u64)
        };
        let place = |n: u8, take: &[usize]| {
            let id = probe(n);
            let order = order(&s.dst, &id);
            let servers: Vec<usize> = take.iter().map(|&i| order[i]).collect();
            s.block(n, &servers)
        };
        let good = place(1, &[0, 1]);
        let short = place(2, &[0]);
        let misplaced = place(3, &[0, 3]);
        let missing = place(4, &[]);
        let corrupt = place(5, &[0, 1]);
        // Corrupt one copy of block 5 in place.
        let bad_server = order(&s.dst, &corrupt)[1];
        s.ks.with(&s.dst, bad_server, |server| {
            if let Some(b) = server.blocks.get_mut(&corrupt.hash) {
                let mut bytes = b.data.to_vec();
                bytes[10] ^= 1;
                b.data = bytes::Bytes::from(bytes);
            }
        });
        // And one only the destination has.
        let extra = BlockId::new(BlockHash(crate::hash::md5(b"extra")), 5);
        s.ks.put(&s.dst, 2, b"extra", 9);

        let (records, report) = s.run(Reread::Off);
        assert_eq!(kinds(&records, &good), vec![]);
        assert_eq!(kinds(&records, &short), vec![FindingKind::UnderReplicated]);
        assert_eq!(kinds(&records, &misplaced), vec![FindingKind::Misplaced]);
        assert_eq!(kinds(&records, &missing), vec![FindingKind::Missing]);
        assert_eq!(kinds(&records, &corrupt), vec![], "indexes cannot see it");
        let extra_record = records.iter().find(|r| r.verdict.id == extra);
        assert!(extra_record.is_some_and(|r| r.verdict.extra));
        let c = &report.counts;
        assert_eq!(
            (c.src_blocks, c.checked_blocks, c.problem_blocks),
            (5, 5, 3)
        );
        assert_eq!((c.missing, c.under_replicated, c.misplaced), (1, 1, 1));
        assert_eq!(c.extra_blocks, 1);
        assert_eq!(c.oldest_copy_mtime_ns, Some(5));

        let gets_before: u64 = (0..4).map(|i| s.ks.with(&s.dst, i, |x| x.gets)).sum();
        assert_eq!(gets_before, 0, "no re-reads without -deep");
        let (records, report) = s.run(Reread::All);
        let corrupt_record = records.iter().find(|r| r.verdict.id == corrupt);
        let findings = corrupt_record.map(|r| r.verdict.findings.clone());
        assert!(
            matches!(findings.as_deref(), Some([Finding::Corrupt { server, .. }]) if *server == bad_server),
            "{findings:?}"
        );
        assert_eq!(report.counts.corrupt, 1);
        // Every copy of every present block was read once: 2+1+2+1 intact, 1 corrupt.
        assert_eq!(report.counts.verified_copies, 6);
        assert_eq!(report.counts.reread_blocks, 4);
        for server in 0..4 {
            assert_eq!(s.ks.with(&s.dst, server, |x| x.puts), 0, "never writes");
        }
    }

    #[test]
    fn a_copy_that_cannot_be_read_is_unreadable() {
        let mut s = setup();
        s.prefix_length = 0;
        let bytes = data(9, 3009);
        let id = BlockId::new(BlockHash(crate::hash::md5(&bytes)), bytes.len() as u64);
        let order = order(&s.dst, &id);
        s.block(9, &[order[0], order[1]]);
        s.ks.script(
            &s.dst,
            order[0],
            &[
                // Scripts play to block requests only: the GETs take these.
                Scripted::Status(500, "boom".into()),
                Scripted::Status(500, "boom".into()),
            ],
        );
        let (records, _) = s.run(Reread::All);
        let record = records.iter().find(|r| r.verdict.id == id).expect("record");
        assert_eq!(record.verified_on, vec![order[1]]);
        assert!(
            matches!(&record.verdict.findings[..], [Finding::Unreadable { server, detail }] if *server == order[0] && detail.contains("500")),
            "{:?}",
            record.verdict.findings
        );
        assert_eq!(record.verdict.status().char(), '!');
    }

    #[test]
    fn the_sample_rereads_only_the_blocks_it_picks() {
        let s = setup();
        let mut ids = Vec::new();
        for n in 0..40u8 {
            let bytes = data(n, 3000 + n as usize);
            let id = BlockId::new(BlockHash(crate::hash::md5(&bytes)), bytes.len() as u64);
            let order = order(&s.dst, &id);
            ids.push(s.block(n, &[order[0], order[1]]));
        }
        let reread = Reread::Sample {
            ppm: 300_000,
            seed: 42,
        };
        let (records, _) = s.run(reread);
        let picked: Vec<BlockId> = records
            .iter()
            .filter(|r| r.reread)
            .map(|r| r.verdict.id)
            .collect();
        let want: Vec<BlockId> = {
            let mut w: Vec<BlockId> = ids
                .iter()
                .copied()
                .filter(|id| placement::sampled(42, &id.hash, 300_000))
                .collect();
            w.sort();
            w
        };
        assert_eq!(picked, want);
        assert!(!picked.is_empty() && picked.len() < ids.len());
        let (again, _) = s.run(reread);
        let again: Vec<BlockId> = again
            .iter()
            .filter(|r| r.reread)
            .map(|r| r.verdict.id)
            .collect();
        assert_eq!(again, picked, "same seed, same blocks");
    }
}
