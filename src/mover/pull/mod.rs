//! Pull mode: the destination keepstores move the bytes themselves, from keepstore pull
//! lists (`PUT /pull`, `keep-protocol.md` §5.5), and keepmover plans, sends, watches and
//! confirms. Its own CPU then goes to index listings, not to block bodies.
//!
//! The walk is the copy's (slice by slice, memory bounded by one slice). For each slice:
//!
//! 1. the missing blocks are placed ([`plan`]): destination servers in rendezvous order,
//!    source servers = the holders the source index names;
//! 2. before a destination keepstore gets its first list, one *trial pull* (a real block, a
//!    one-item list, confirmed in that server's index within a timeout) proves that it can
//!    pull from the source at all — keepstore signs its pull GETs with its own key, its own
//!    BlobSigningTTL and a fixed token, so it works only between servers that accept each
//!    other's signatures — and a failed trial stops the run with the likely cause;
//! 3. each server gets its items as lists of at most `list_limit` (keep-balance's 100 000).
//!    A list *replaces* the server's queue and has no reply per item, so keepmover sends a
//!    server its next list only once the previous one is carried out, as its per-mount
//!    index shows. keepstore works through a list in order, so keepmover watches the
//!    list's tail (a listing of its sub-prefix, 1/256 of the slice) and reads the whole
//!    slice only when the tail shows done, or every half patience; a list that stops making
//!    progress for `patience` (doubling each time) is sent again with what is still
//!    missing, up to `rounds` times;
//! 4. every block is confirmed from the destination's per-mount listings: the wanted
//!    replicas on the wanted servers counted by mount replication, and each wanted storage
//!    class by the mounts carrying it;
//! 5. blocks whose pulls kept failing are copied through keepmover (the copy engine, run on
//!    a locator list of just those blocks, [`crate::mover::run`]) and counted separately.
//!
//! The checkpoint, `-report` lines (action `pulled`, and `copied` for the fallback), the
//! summary, shards, filters and `-dry-run` behave as for the copy.

pub mod plan;
#[cfg(test)]
mod tests;

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::future::join_all;

use self::plan::{Destination, Holdings, PullBlock, Target, Wants};
use super::checkpoint::{
    self, CheckpointError, CheckpointLock, CheckpointState, CheckpointWriter, CHECKPOINT_VERSION,
};
use super::control::{Control, StopReason};
use super::counters::{Counters, Op};
use super::engine::{Counting, EngineError, Mode, Order, Run, RunReport, Selection};
use super::events::{
    Action, BlockError, BlockRecord, Emitter, Event, EventSink, Phase, Plan, Pump,
};
use crate::index::filter::BlockFilter;
use crate::index::locators::{retain_wanted, LocatorCursor, LocatorList, DEFAULT_RUN_ENTRIES};
use crate::index::merge::choose_extra_digits;
use crate::index::shard::walk_prefixes;
use crate::index::walk::{
    diff_slice_with, estimate_source_blocks, DiffWants, SliceDiff, WalkError, MAX_SLICE_ENTRIES,
};
use crate::index::SourceBlock;
use crate::keep::rendezvous::probe_orders_go;
use crate::keep::wire::{PullItem, LIST_LIMIT};
use crate::keep::BlockId;
use crate::keepstore::{Cause, ErrorKind, IndexSource, Keepstores, KeepstoresFactory};
use crate::net::{build_runtime, IoBackend};

/// How pull lists are sent and watched. Defaults match the flag table.
#[derive(Clone, Debug)]
pub struct PullPolicy {
    /// How long a list may go without any of its items appearing in the destination index
    /// before what is still missing is sent again; doubles with each send.
    pub patience: Duration,
    /// Times a list's items are sent before they are given up (and copied instead).
    pub rounds: u32,
    /// How long a trial pull may take to show in the destination index.
    pub trial_timeout: Duration,
    /// Most items in one list (keep-balance's `BalancePullLimit`).
    pub list_limit: usize,
    /// Copy blocks whose pulls kept failing through keepmover (else report them failed).
    pub fallback: bool,
    /// Bounds of the interval between index readings while lists are carried out.
    pub poll_min: Duration,
    pub poll_max: Duration,
}

impl Default for PullPolicy {
    fn default() -> Self {
        PullPolicy {
            patience: Duration::from_secs(30),
            rounds: 3,
            trial_timeout: Duration::from_secs(60),
            list_limit: LIST_LIMIT,
            fallback: true,
            poll_min: Duration::from_millis(100),
            poll_max: Duration::from_secs(2),
        }
    }
}

/// What is known about the two clusters' signing, to name the likely cause when a trial
/// pull fails. Never holds a key.
#[derive(Clone, Debug, Default)]
pub struct Diagnosis {
    /// Both sides are one cluster (its servers split by -src-services/-dst-services).
    pub single_cluster: bool,
    /// The source's and the destination's BlobSigningTTL (discovery documents).
    pub src_ttl: Option<u64>,
    pub dst_ttl: Option<u64>,
    /// Whether the settings files' ARVADOS_BLOB_SIGNING_KEY are equal; `None` when either
    /// file has none.
    pub same_key: Option<bool>,
}

/// Finds the [`Diagnosis`] when it is needed (a trial failed): it costs API requests.
pub type Diagnose = Box<dyn Fn() -> Diagnosis>;

/// A whole pull run.
pub struct PullRun {
    /// The job, selection and engine settings (the fallback copy uses them; `mode` is
    /// ignored).
    pub run: Run,
    pub policy: PullPolicy,
    pub diagnose: Diagnose,
}

impl std::fmt::Debug for PullRun {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PullRun")
            .field("run", &self.run)
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

/// What a dry run would have sent.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DryRunLists {
    /// Pull-list items (a block counts once per server, and per mount when classes ask).
    pub items: u64,
    /// Lists, counting each server's items in lists of at most the list limit.
    pub lists: u64,
    /// Destination servers that would get a list.
    pub servers: u64,
}

/// A finished pull run.
#[derive(Debug, Clone)]
pub struct PullReport {
    pub report: RunReport,
    /// A dry run's lists.
    pub dry_run: Option<DryRunLists>,
}

#[derive(Debug, thiserror::Error)]
pub enum PullError {
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
    #[error("reading the -locators list: {0}")]
    Locators(std::io::Error),
    #[error("reading {origin}/mounts on the destination: {cause}")]
    Mounts { origin: String, cause: Cause },
    #[error("no destination keepstore has a writable mount: nothing can pull")]
    NoWritable,
    /// A trial pull failed: the explanation, with the likely cause.
    #[error("{0}")]
    Preflight(String),
    #[error("copying the blocks whose pulls failed: {0}")]
    Fallback(#[from] EngineError),
}

impl From<WalkError> for PullError {
    fn from(e: WalkError) -> Self {
        PullError::Walk(Box::new(e))
    }
}

/// Runs a pull job (or its dry run). Events go to `sinks` on a thread of their own.
pub fn run<F: KeepstoresFactory>(
    pull: PullRun,
    factory: F,
    control: Arc<Control>,
    counters: Arc<Counters>,
    sinks: Vec<Box<dyn EventSink>>,
) -> Result<PullReport, PullError> {
    let (pump, emitter) = Pump::start(sinks, counters.clone()).map_err(PullError::Thread)?;
    let puller = Puller {
        pull,
        factory: Arc::new(factory),
        control,
        counters,
        started: Instant::now(),
    };
    let result = puller.go(emitter);
    pump.join();
    result
}

/// Blocks whose placement is computed together (one SIMD batch).
const ORDER_BATCH: usize = 1024;
/// The trial looks at the index after this, then after an eighth of the time it has waited,
/// at most every second.
const TRIAL_POLL: Duration = Duration::from_millis(100);
const TRIAL_POLL_MAX: Duration = Duration::from_secs(1);

struct Puller<F: KeepstoresFactory> {
    pull: PullRun,
    factory: Arc<F>,
    control: Arc<Control>,
    counters: Arc<Counters>,
    started: Instant,
}

/// One pull-list entry of a slice: a block (index into the slice's blocks) and a target.
#[derive(Clone, Copy, Debug)]
struct Item {
    block: u32,
    target: Target,
}

/// One destination server's progress through a slice.
struct ServerState {
    slot: usize,
    /// Items not yet sent in this slice.
    queue: VecDeque<Item>,
    /// The list the server holds now, less what its index already shows.
    current: Vec<Item>,
    /// Times the current items were sent.
    sends: u32,
    sent_at: Instant,
    progress_at: Instant,
    /// The last full reading of its listing (or the last send).
    full_at: Instant,
    /// Whether its full listing was read since the last list went out.
    read_since_send: bool,
}

/// The sub-prefix a cheap look lists: two hex digits below the slice's prefix.
fn tail_prefix(prefix: &str, id: &BlockId) -> String {
    let hex = id.hash.to_string();
    hex[..(prefix.len() + 2).min(hex.len())].to_string()
}

/// How a slice's pulls ended.
enum SliceEnd {
    /// Each unconfirmed block (index into the slice's blocks) and why.
    Finished(Vec<(u32, String)>),
    /// A stop was asked; the lists were cleared.
    Stopped,
}

/// What a trial pull found.
enum TrialFailure {
    /// `PUT /pull` itself failed.
    Refused(Cause),
    /// The block did not show in the index within the timeout.
    NotPulled,
}

impl<F: KeepstoresFactory> Puller<F> {
    fn config(&self) -> &super::EngineConfig {
        &self.pull.run.config
    }

    fn wants(&self) -> Wants {
        Wants {
            replicas: self.pull.run.job.replicas,
            classes: self.pull.run.job.classes.to_vec(),
        }
    }

    fn go(self, mut emitter: Emitter) -> Result<PullReport, PullError> {
        let io = self.config().io;
        let (runtime, backend) = build_runtime(io).map_err(|source| PullError::Runtime {
            backend: io,
            source,
        })?;
        emitter.emit(Event::Phase(Phase::Planning));
        let keepstores = self.factory.client();
        let _lock = match &self.config().checkpoint {
            Some(path) => Some(CheckpointLock::acquire(path)?),
            None => None,
        };
        let report = |plan: Plan, slices: u64, dry: bool| RunReport {
            plan,
            totals: self.counters.snapshot(),
            stopped: self.control.stop_reason(),
            io_backend: backend,
            peak_buffer_bytes: 0,
            slices,
            elapsed: self.started.elapsed(),
            dry_run: dry,
        };
        let Some((extra_digits, done_through)) =
            runtime.block_on(self.unless_stopping(self.slicing(&keepstores)))?
        else {
            return Ok(PullReport {
                report: report(Plan::default(), 0, false),
                dry_run: None,
            });
        };
        let dest = runtime.block_on(self.destination(&keepstores))?;
        let select = &self.pull.run.select;
        let all = walk_prefixes(&select.prefix, extra_digits, select.shard);
        let total_slices = all.len() as u64;
        let pending: Vec<String> = all
            .into_iter()
            .filter(|p| done_through.as_ref().is_none_or(|done| p > done))
            .collect();
        self.counters
            .slices_total
            .store(pending.len() as u64, Relaxed);
        let Some((plan, first, dry)) = runtime.block_on(self.unless_stopping(self.count(
            &keepstores,
            &dest,
            &pending,
            total_slices,
            &mut emitter,
        )))?
        else {
            return Ok(PullReport {
                report: report(Plan::default(), 0, false),
                dry_run: None,
            });
        };
        if self.config().dry_run {
            emitter.emit(Event::Phase(Phase::Done));
            return Ok(PullReport {
                report: report(plan, pending.len() as u64, true),
                dry_run: Some(dry),
            });
        }
        emitter.emit(Event::Note(format!(
            "Pull mode: {} destination keepstores will pull; each gets lists of at most {} items, one at a time; a list making no progress for {} is sent again, up to {} times{}.",
            dest.servers.len(),
            self.pull.policy.list_limit,
            crate::gocompat::duration::format_go_duration(self.pull.policy.patience),
            self.pull.policy.rounds,
            if self.pull.policy.fallback {
                ", then the block is copied through keepmover"
            } else {
                ""
            }
        )));
        let writer = match &self.config().checkpoint {
            Some(path) => Some(
                CheckpointWriter::start(
                    path.clone(),
                    CheckpointState {
                        version: CHECKPOINT_VERSION,
                        job: self.pull.run.identity.clone(),
                        extra_digits,
                        done_through: done_through.clone(),
                    },
                )
                .map_err(PullError::Thread)?,
            ),
            None => None,
        };
        emitter.emit(Event::Phase(Phase::Copying));
        let walked = self.walk(
            &runtime,
            &keepstores,
            &dest,
            &pending,
            first,
            &plan,
            writer.as_ref(),
            &mut emitter,
        );
        if let Some(writer) = writer {
            writer.finish()?;
        }
        walked?;
        emitter.emit(Event::Phase(if self.control.is_stopping() {
            Phase::Stopping
        } else {
            Phase::Done
        }));
        let mut plan = plan;
        plan.src_blocks = self.counters.src_blocks.load(Relaxed);
        plan.dst_blocks = self.counters.dst_blocks.load(Relaxed);
        Ok(PullReport {
            report: report(plan, pending.len() as u64, false),
            dry_run: None,
        })
    }

    /// The slices, one after the other: diff, place, trial, pull, confirm, fall back.
    #[allow(clippy::too_many_arguments)]
    fn walk(
        &self,
        runtime: &compio::runtime::Runtime,
        keepstores: &F::Client,
        dest: &Destination,
        pending: &[String],
        mut first: Option<SliceDiff>,
        plan: &Plan,
        writer: Option<&CheckpointWriter>,
        emitter: &mut Emitter,
    ) -> Result<(), PullError> {
        let estimated = plan.estimated_from_slices.is_some();
        let (mut found_blocks, mut found_bytes) = (0u64, 0u64);
        let mut wanted = self.wanted()?;
        if first.is_some() {
            if let (Some(cursor), Some(prefix)) = (&mut wanted, pending.first()) {
                cursor.take_prefix(prefix).map_err(PullError::Locators)?;
            }
        }
        let mut trialed: HashSet<usize> = HashSet::new();
        let mut stuck = false;
        for (seq, prefix) in pending.iter().enumerate() {
            self.check_limits();
            if !self.wait_while_paused(runtime, emitter) {
                break;
            }
            let diff = match first.take() {
                Some(d) => d,
                None => match runtime.block_on(self.unless_stopping(self.diff(
                    keepstores,
                    prefix,
                    &mut wanted,
                )))? {
                    Some(d) => d,
                    None => break,
                },
            };
            self.account(&diff, emitter);
            let blocks = self.place(diff.missing, dest);
            found_blocks += blocks.len() as u64;
            found_bytes += blocks.iter().map(|b| b.id.size).sum::<u64>();
            if estimated {
                let (walked, all) = (seq as u64 + 1, pending.len() as u64);
                let scale = |v: u64| v.saturating_mul(all) / walked;
                self.counters
                    .planned_blocks
                    .store(scale(found_blocks), Relaxed);
                self.counters
                    .planned_bytes
                    .store(scale(found_bytes), Relaxed);
            }
            let ok = if blocks.is_empty() {
                true
            } else {
                let began = Instant::now();
                let pre_done = runtime.block_on(self.trials(
                    keepstores,
                    dest,
                    &blocks,
                    &mut trialed,
                    emitter,
                ))?;
                let resent_before = self.counters.pull_items_resent.load(Relaxed);
                let end = runtime.block_on(
                    self.pull_slice(keepstores, dest, prefix, &blocks, &pre_done, emitter),
                );
                let unconfirmed = match end {
                    SliceEnd::Stopped => break,
                    SliceEnd::Finished(u) => u,
                };
                emitter.emit(Event::Note(format!(
                    "Slice {}: {} of {} blocks pulled and confirmed in {:.1}s ({} list items re-sent){}.",
                    if prefix.is_empty() { "(all)" } else { prefix },
                    blocks.len() - unconfirmed.len(),
                    blocks.len(),
                    began.elapsed().as_secs_f64(),
                    self.counters.pull_items_resent.load(Relaxed) - resent_before,
                    if unconfirmed.is_empty() {
                        String::new()
                    } else if self.pull.policy.fallback {
                        format!("; {} to copy through keepmover", unconfirmed.len())
                    } else {
                        format!("; {} not confirmed", unconfirmed.len())
                    }
                )));
                if unconfirmed.is_empty() {
                    true
                } else if self.pull.policy.fallback && !self.control.is_stopping() {
                    self.fallback(prefix, &blocks, &unconfirmed, emitter)?
                } else {
                    for (index, why) in &unconfirmed {
                        self.fail(&blocks[*index as usize], why.clone(), emitter);
                    }
                    false
                }
            };
            if self.control.is_stopping() && !ok {
                // A stop during the fallback: the slice stays open.
                break;
            }
            self.counters.slices_done.fetch_add(1, Relaxed);
            let watermark = if ok && !stuck {
                if let Some(w) = writer {
                    w.set(prefix.clone());
                }
                Some(prefix.clone())
            } else {
                stuck = true;
                None
            };
            emitter.emit(Event::SliceDone {
                prefix: prefix.clone(),
                watermark,
            });
        }
        if estimated && !self.control.is_stopping() {
            self.counters.planned_blocks.store(found_blocks, Relaxed);
            self.counters.planned_bytes.store(found_bytes, Relaxed);
        }
        Ok(())
    }

    /// Runs `step` unless a stop is asked first (`None` then).
    async fn unless_stopping<T>(
        &self,
        step: impl std::future::Future<Output = Result<T, PullError>>,
    ) -> Result<Option<T>, PullError> {
        let stop = async {
            while !self.control.is_stopping() {
                compio::time::sleep(self.pull.policy.poll_min).await;
            }
        };
        futures_util::pin_mut!(step);
        futures_util::pin_mut!(stop);
        match futures_util::future::select(step, stop).await {
            futures_util::future::Either::Left((result, _)) => result.map(Some),
            futures_util::future::Either::Right(_) => Ok(None),
        }
    }

    /// `-max-duration` and `-max-transfer` (bytes pulled and copied), as stops.
    fn check_limits(&self) {
        let config = self.config();
        if config
            .max_duration
            .is_some_and(|d| self.started.elapsed() >= d)
        {
            self.control.stop(StopReason::MaxDuration);
        }
        if config
            .max_transfer
            .is_some_and(|limit| self.counters.copied_bytes.load(Relaxed) >= limit)
        {
            self.control.stop(StopReason::MaxTransfer);
        }
    }

    /// Waits while paused; `false` when a stop was asked.
    fn wait_while_paused(&self, runtime: &compio::runtime::Runtime, emitter: &mut Emitter) -> bool {
        if self.control.is_paused() {
            emitter.emit(Event::Phase(Phase::Paused));
            emitter.flush();
            while self.control.is_paused() && !self.control.is_stopping() {
                runtime.block_on(compio::time::sleep(self.pull.policy.poll_max));
            }
            if !self.control.is_stopping() {
                emitter.emit(Event::Phase(Phase::Copying));
            }
        }
        !self.control.is_stopping()
    }

    /// The checkpoint (if any) and the slicing: slices of about a hundred thousand source
    /// blocks by default, so that one server's share of a slice fits in one list and each
    /// index reading while watching stays small.
    async fn slicing(&self, keepstores: &F::Client) -> Result<(usize, Option<String>), PullError> {
        let config = self.config();
        let resume = match &config.checkpoint {
            Some(path) => checkpoint::load(path, &self.pull.run.identity)?,
            None => None,
        };
        let prefix = &self.pull.run.select.prefix;
        let extra = match (&resume, config.prefix_length) {
            (Some(state), _) => state.extra_digits,
            (None, 0) => {
                let estimate =
                    estimate_source_blocks(keepstores, &self.pull.run.job.src, prefix).await?;
                let target = (self.pull.policy.list_limit as u64).min(config.slice_target);
                choose_extra_digits(estimate, prefix.len(), target.max(1))
            }
            (None, wanted) => wanted.saturating_sub(prefix.len()).min(8),
        };
        let extra = match self.pull.run.select.shard {
            Some(shard) => extra.max(shard.digits()),
            None => extra,
        };
        Ok((extra, resume.and_then(|s| s.done_through)))
    }

    /// The destination keepstores a pull can target, with their mounts.
    async fn destination(&self, keepstores: &F::Client) -> Result<Destination, PullError> {
        let dst = &self.pull.run.job.dst;
        let writable = dst.writable();
        let reads = writable.iter().map(|&i| keepstores.mounts(dst, i));
        let mut dest = Destination::default();
        for (&server, result) in writable.iter().zip(join_all(reads).await) {
            let mounts = result.map_err(|cause| PullError::Mounts {
                origin: dst.services[server].origin.to_string(),
                cause,
            })?;
            if !mounts.iter().any(|m| m.allow_write) {
                continue;
            }
            dest.servers.push(server);
            dest.uuids.push(dst.services[server].uuid.clone());
            dest.mounts.push(mounts);
        }
        if dest.servers.is_empty() {
            return Err(PullError::NoWritable);
        }
        Ok(dest)
    }

    /// A fresh reading of the locator list, when the run has one.
    fn wanted(&self) -> Result<Option<LocatorCursor>, PullError> {
        self.pull
            .run
            .select
            .locators
            .as_ref()
            .map(|list| {
                list.cursor()
                    .map_err(|e| PullError::Locators(std::io::Error::other(e.to_string())))
            })
            .transpose()
    }

    /// One slice's diff, narrowed to the selection (filters, the locator list).
    async fn diff(
        &self,
        keepstores: &F::Client,
        prefix: &str,
        wanted: &mut Option<LocatorCursor>,
    ) -> Result<SliceDiff, PullError> {
        let job = &self.pull.run.job;
        let select = &self.pull.run.select;
        let accepts = |e: &crate::keep::index_format::IndexEntry| select.filter.accepts(e);
        let filter: Option<&crate::index::walk::EntryFilter<'_>> =
            (!select.filter.is_empty()).then_some(&accepts);
        // Per server, not per mount: pull lists and their confirmation speak of servers.
        let layouts = crate::index::walk::Layouts::per_server(&job.src, &job.dst);
        let mut diff = diff_slice_with(
            keepstores,
            &job.src,
            &job.dst,
            &layouts,
            prefix,
            self.config().dst_index_errors,
            filter,
            DiffWants::default(),
        )
        .await?;
        if let Some(cursor) = wanted {
            let listed = cursor.take_prefix(prefix).map_err(PullError::Locators)?;
            retain_wanted(&mut diff.missing, &listed, |b| b.id);
        }
        Ok(diff)
    }

    /// One slice's figures into the counters.
    fn account(&self, diff: &SliceDiff, emitter: &mut Emitter) {
        for problem in &diff.dst_unreadable {
            emitter.emit(Event::Warning(format!(
                "{problem} (-dst-index-errors copy: treating that server's index as empty; its blocks may be pulled again)"
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

    /// Places a slice's missing blocks (rendezvous orders computed in SIMD batches).
    fn place(&self, missing: Vec<SourceBlock>, dest: &Destination) -> Vec<PullBlock> {
        let uuids: Vec<&str> = dest.uuids.iter().map(String::as_str).collect();
        let wants = self.wants();
        let mut placed = Vec::with_capacity(missing.len());
        let mut blocks = missing.into_iter().peekable();
        while blocks.peek().is_some() {
            let batch: Vec<SourceBlock> = blocks.by_ref().take(ORDER_BATCH).collect();
            let hexes: Vec<String> = batch.iter().map(|b| b.id.hash.to_string()).collect();
            let refs: Vec<&str> = hexes.iter().map(String::as_str).collect();
            let orders = probe_orders_go(&refs, &uuids);
            placed.extend(plan::place(batch, orders, dest, &wants));
        }
        placed
    }

    /// The totals for the opening line: exact (every slice diffed first: `-count-first`,
    /// `-dry-run`, or a single slice) or estimated from the first slice. Returns the first
    /// slice's diff when it can be reused, and what a dry run would send.
    async fn count(
        &self,
        keepstores: &F::Client,
        dest: &Destination,
        pending: &[String],
        total_slices: u64,
        emitter: &mut Emitter,
    ) -> Result<(Plan, Option<SliceDiff>, DryRunLists), PullError> {
        let config = self.config();
        let exact = config.counting == Counting::Exact || config.dry_run || pending.len() <= 1;
        let mut plan = Plan {
            slices_total: total_slices,
            ..Plan::default()
        };
        let mut first = None;
        let mut wanted = self.wanted()?;
        // Per server: (items, lists).
        let mut per_server = vec![(0u64, 0u64); dest.servers.len()];
        if exact {
            for prefix in pending {
                let diff = self.diff(keepstores, prefix, &mut wanted).await?;
                plan.src_blocks += diff.src_blocks;
                plan.dst_blocks += diff.dst_blocks;
                plan.to_copy_blocks += diff.missing.len() as u64;
                plan.to_copy_bytes += diff.missing_bytes();
                plan.present_blocks += diff.present;
                plan.present_bytes += diff.present_bytes;
                if config.dry_run {
                    let mut slice_items = vec![0u64; dest.servers.len()];
                    for block in self.place(diff.missing.clone(), dest) {
                        for target in block.targets {
                            slice_items[target.slot as usize] += 1;
                        }
                    }
                    for (total, items) in per_server.iter_mut().zip(slice_items) {
                        // Lists are per slice and per server.
                        total.0 += items;
                        total.1 += items.div_ceil(self.pull.policy.list_limit as u64);
                    }
                }
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
        let dry = DryRunLists {
            items: per_server.iter().map(|v| v.0).sum(),
            lists: per_server.iter().map(|v| v.1).sum(),
            servers: per_server.iter().filter(|v| v.0 != 0).count() as u64,
        };
        self.counters
            .planned_blocks
            .store(plan.to_copy_blocks, Relaxed);
        self.counters
            .planned_bytes
            .store(plan.to_copy_bytes, Relaxed);
        emitter.emit(Event::Planned(plan.clone()));
        Ok((plan, first, dry))
    }

    /// The pull-list entry for one item.
    fn item(&self, dest: &Destination, block: &PullBlock, target: Target) -> PullItem {
        let src = &self.pull.run.job.src;
        let mount_uuid = target
            .mount
            .and_then(|m| dest.mounts[target.slot as usize].get(m as usize))
            .map(|m| m.uuid.clone())
            .unwrap_or_default();
        PullItem {
            locator: block.id.short().to_string(),
            servers: block
                .holders
                .iter()
                .filter_map(|&h| src.services.get(h as usize))
                .map(|s| s.origin.to_string())
                .collect(),
            mount_uuid,
        }
    }

    fn origin(&self, dest: &Destination, slot: usize) -> String {
        self.pull.run.job.dst.services[dest.servers[slot]]
            .origin
            .to_string()
    }

    /// Sends one list; counts it, or says why it could not be sent.
    async fn send(
        &self,
        keepstores: &F::Client,
        dest: &Destination,
        slot: usize,
        items: &[PullItem],
    ) -> Result<(), Cause> {
        let result = keepstores
            .send_pull(&self.pull.run.job.dst, dest.servers[slot], items)
            .await;
        match &result {
            Ok(()) => {
                self.counters.pull_lists.fetch_add(1, Relaxed);
            }
            Err(e) => self.counters.error(&self.origin(dest, slot), e.kind()),
        }
        result
    }

    /// Trial pulls for the servers of this slice that have not had one: each gets one real
    /// item (its smallest block) as a one-item list, which must show in its index within
    /// the timeout. Returns the (slot, block) pairs the trials carried out; refuses the run
    /// with the likely cause when any trial fails.
    async fn trials(
        &self,
        keepstores: &F::Client,
        dest: &Destination,
        blocks: &[PullBlock],
        trialed: &mut HashSet<usize>,
        emitter: &mut Emitter,
    ) -> Result<Vec<(usize, u32)>, PullError> {
        // Per server, its two smallest blocks: the second is tried only when the first does
        // not arrive, so one damaged block cannot refuse the whole run.
        let mut picks: HashMap<usize, Vec<(u32, Target)>> = HashMap::new();
        for (index, block) in blocks.iter().enumerate() {
            for &target in &block.targets {
                let slot = target.slot as usize;
                if trialed.contains(&slot) {
                    continue;
                }
                let list = picks.entry(slot).or_default();
                list.push((index as u32, target));
                list.sort_by_key(|(b, _)| blocks[*b as usize].id.size);
                list.truncate(2);
            }
        }
        if picks.is_empty() {
            return Ok(Vec::new());
        }
        let mut picks: Vec<(usize, Vec<(u32, Target)>)> = picks.into_iter().collect();
        picks.sort_by_key(|(slot, _)| *slot);
        let tried = picks.len();
        let trials = picks.into_iter().map(|(slot, candidates)| async move {
            let mut attempts = Vec::new();
            for (block, target) in candidates {
                let item = self.item(dest, &blocks[block as usize], target);
                let began = Instant::now();
                let result = self.trial(keepstores, dest, slot, item.clone()).await;
                let again =
                    matches!(result, Err(TrialFailure::NotPulled)) && !self.control.is_stopping();
                attempts.push((block, item, result, began.elapsed()));
                if !again {
                    break;
                }
            }
            (slot, attempts)
        });
        let results = join_all(trials).await;
        let mut done = Vec::new();
        let mut failures = Vec::new();
        for (slot, attempts) in results {
            trialed.insert(slot);
            let origin = self.origin(dest, slot);
            let passed = attempts
                .iter()
                .find(|(_, _, result, _)| result.is_ok())
                .map(|(block, item, _, took)| (*block, item.clone(), *took));
            match passed {
                Some((block, item, took)) => {
                    if attempts.len() > 1 {
                        emitter.emit(Event::Warning(format!(
                            "Trial pull: {origin} did not pull {} within {}, but pulled another block: the first may be damaged at its source; it stays in the list.",
                            attempts[0].1.locator,
                            crate::gocompat::duration::format_go_duration(self.pull.policy.trial_timeout)
                        )));
                    }
                    emitter.emit(Event::Note(format!(
                        "Trial pull: {origin} pulled {} from {} in {:.1}s.",
                        item.locator,
                        item.servers.join(", "),
                        took.as_secs_f64()
                    )));
                    done.push((slot, block));
                }
                None => {
                    // Leave nothing of ours queued there.
                    let _ = self.send(keepstores, dest, slot, &[]).await;
                    for (_, item, result, _) in attempts {
                        if let Err(why) = result {
                            failures.push((slot, item, why));
                        }
                    }
                }
            }
        }
        // A stop during the trials is not a failed trial: the walk sees the stop next.
        if failures.is_empty() || self.control.is_stopping() {
            return Ok(done);
        }
        let servers: HashSet<usize> = failures.iter().map(|(slot, _, _)| *slot).collect();
        Err(PullError::Preflight(self.explain(
            dest,
            servers.len(),
            tried,
            &failures,
        )))
    }

    /// One trial: a one-item list, then the server's index for that hash until it shows.
    async fn trial(
        &self,
        keepstores: &F::Client,
        dest: &Destination,
        slot: usize,
        item: PullItem,
    ) -> Result<(), TrialFailure> {
        let dst = &self.pull.run.job.dst;
        let server = dest.servers[slot];
        self.send(keepstores, dest, slot, std::slice::from_ref(&item))
            .await
            .map_err(TrialFailure::Refused)?;
        let hash = item.locator.get(..32).unwrap_or_default().to_string();
        let began = Instant::now();
        loop {
            if self.control.is_stopping() {
                return Err(TrialFailure::NotPulled);
            }
            compio::time::sleep((began.elapsed() / 8).clamp(TRIAL_POLL, TRIAL_POLL_MAX)).await;
            let mut entries = Vec::new();
            let listed = keepstores
                .index(dst, server, IndexSource::Server, &hash, 16, &mut entries)
                .await;
            if listed.is_ok() && entries.iter().any(|e| e.hash.to_string() == hash) {
                return Ok(());
            }
            if began.elapsed() >= self.pull.policy.trial_timeout {
                return Err(TrialFailure::NotPulled);
            }
        }
    }

    /// The refusal, naming the likely cause.
    fn explain(
        &self,
        dest: &Destination,
        failed: usize,
        tried: usize,
        failures: &[(usize, PullItem, TrialFailure)],
    ) -> String {
        let timeout = crate::gocompat::duration::format_go_duration(self.pull.policy.trial_timeout);
        let mut text = format!(
            "Pull mode refused: the trial pull failed on {failed} of {tried} destination keepstores:"
        );
        let mut sources: Vec<String> = Vec::new();
        let mut refused_auth = false;
        for (slot, item, why) in failures {
            let what = match why {
                TrialFailure::Refused(cause) => {
                    if matches!(
                        cause,
                        Cause::Status {
                            status: 401 | 403,
                            ..
                        }
                    ) {
                        refused_auth = true;
                    }
                    format!("PUT /pull failed: {cause}")
                }
                TrialFailure::NotPulled => {
                    format!("not in its index {timeout} after the list was sent")
                }
            };
            text.push_str(&format!(
                "\n  {} pulling {} from {}: {what}",
                self.origin(dest, *slot),
                item.locator,
                item.servers.join(", ")
            ));
            for s in &item.servers {
                if !sources.contains(s) {
                    sources.push(s.clone());
                }
            }
        }
        if refused_auth {
            text.push_str("\nThe destination keepstores refused the pull list: pull lists are admin requests, so the destination settings file's ARVADOS_API_TOKEN must be the destination cluster's SystemRootToken.");
        }
        text.push_str("\nA keepstore signs the GETs of its pulls with its own blob signing key, its own BlobSigningTTL and a fixed token, so it can pull only from servers that accept its signatures: the same cluster, or a cluster with the same BlobSigningKey and the same BlobSigningTTL (or with BlobSigning off).");
        let d = &(self.pull.diagnose)();
        let reach = format!(
            "the destination keepstores cannot reach the source addresses in the list ({}: the source's keep_services addresses as keepmover sees them)",
            sources.join(", ")
        );
        let likely = if d.single_cluster {
            format!("this is one cluster, so signatures match: most likely {reach}, or their pull workers are not running (no writable volume)")
        } else {
            let mut causes = Vec::new();
            if let (Some(s), Some(t)) = (d.src_ttl, d.dst_ttl) {
                if s != t {
                    causes.push(format!(
                        "the BlobSigningTTLs differ (source {s}s, destination {t}s)"
                    ));
                }
            }
            match d.same_key {
                Some(false) => causes.push(
                    "the settings files' ARVADOS_BLOB_SIGNING_KEY differ, so the clusters' signing keys most likely do"
                        .to_string(),
                ),
                None if causes.is_empty() => causes.push(
                    "different signing keys or TTLs (keepmover cannot compare the keys unless both settings files carry ARVADOS_BLOB_SIGNING_KEY)"
                        .to_string(),
                ),
                _ => {}
            }
            if causes.is_empty() {
                format!("the signing keys and TTLs match, so most likely {reach}")
            } else {
                format!("{}; or {reach}", causes.join("; "))
            }
        };
        text.push_str(&format!("\nLikely cause: {likely}."));
        text.push_str("\nCopy through keepmover instead (the same command without `pull`), which signs with the source's key.");
        text
    }

    /// Sends, watches and confirms one slice's lists.
    async fn pull_slice(
        &self,
        keepstores: &F::Client,
        dest: &Destination,
        prefix: &str,
        blocks: &[PullBlock],
        pre_done: &[(usize, u32)],
        emitter: &mut Emitter,
    ) -> SliceEnd {
        let policy = &self.pull.policy;
        let index_of: HashMap<BlockId, u32> = blocks
            .iter()
            .enumerate()
            .map(|(i, b)| (b.id, i as u32))
            .collect();
        let now = Instant::now();
        let mut states: Vec<ServerState> = (0..dest.servers.len())
            .map(|slot| ServerState {
                slot,
                queue: VecDeque::new(),
                current: Vec::new(),
                sends: 0,
                sent_at: now,
                progress_at: now,
                full_at: now,
                read_since_send: false,
            })
            .collect();
        for (index, block) in blocks.iter().enumerate() {
            for &target in &block.targets {
                let slot = target.slot as usize;
                if pre_done.contains(&(slot, index as u32)) {
                    continue;
                }
                states[slot].queue.push_back(Item {
                    block: index as u32,
                    target,
                });
            }
        }
        let mut holdings: Vec<Holdings> = vec![Holdings::new(); dest.servers.len()];
        let mut given_up: HashSet<u32> = HashSet::new();
        loop {
            self.check_limits();
            if self.control.is_stopping() {
                let clear = states
                    .iter()
                    .filter(|s| !s.current.is_empty())
                    .map(|s| self.send(keepstores, dest, s.slot, &[]));
                join_all(clear).await;
                return SliceEnd::Stopped;
            }
            // A server whose list is carried out gets its next one.
            let mut sends = Vec::new();
            for state in states.iter_mut() {
                if state.current.is_empty() && !state.queue.is_empty() {
                    let take = state.queue.len().min(policy.list_limit);
                    state.current = state.queue.drain(..take).collect();
                    state.sends = 1;
                    state.sent_at = Instant::now();
                    state.progress_at = state.sent_at;
                    state.full_at = state.sent_at;
                    state.read_since_send = false;
                    let items: Vec<PullItem> = state
                        .current
                        .iter()
                        .map(|i| self.item(dest, &blocks[i.block as usize], i.target))
                        .collect();
                    sends.push((state.slot, items));
                }
            }
            self.send_lists(keepstores, dest, sends, emitter).await;
            let active: Vec<usize> = states
                .iter()
                .filter(|s| !s.current.is_empty())
                .map(|s| s.slot)
                .collect();
            if active.is_empty() {
                break;
            }
            // Cheap looks at each list's tail (keepstore works through a list in order, so
            // its last item is carried out last): a listing of the tail's sub-prefix, a
            // 256th of the slice. A full reading follows when the tail shows done, and every
            // half patience anyway, to see progress and stalls.
            let wait = active
                .iter()
                .map(|&s| states[s].sent_at.elapsed() / 8)
                .min()
                .unwrap_or_default();
            // What was said so far goes out now, not after the wait.
            emitter.flush();
            compio::time::sleep(wait.clamp(policy.poll_min, policy.poll_max)).await;
            let half = policy.patience / 2;
            let mut full: Vec<usize> = active
                .iter()
                .copied()
                .filter(|&s| states[s].full_at.elapsed() >= half)
                .collect();
            let tails: Vec<(usize, Item)> = active
                .iter()
                .filter(|s| !full.contains(s))
                .filter_map(|&s| states[s].current.last().map(|&i| (s, i)))
                .collect();
            let subs: Vec<String> = tails
                .iter()
                .map(|(_, i)| tail_prefix(prefix, &blocks[i.block as usize].id))
                .collect();
            let reads = tails
                .iter()
                .zip(&subs)
                .map(|((slot, _), sub)| self.holdings(keepstores, dest, *slot, sub, &index_of));
            for ((slot, tail), read) in tails.iter().zip(join_all(reads).await) {
                match read {
                    Ok(h) => {
                        holdings[*slot].extend(h);
                        if plan::target_done(&tail.target, tail.block, &holdings[*slot]) {
                            full.push(*slot);
                        }
                    }
                    Err(why) => emitter.emit(Event::Warning(why)),
                }
            }
            let reads = full
                .iter()
                .map(|&slot| self.holdings(keepstores, dest, slot, prefix, &index_of));
            for (slot, read) in full.iter().zip(join_all(reads).await) {
                states[*slot].full_at = Instant::now();
                match read {
                    Ok(h) => {
                        holdings[*slot] = h;
                        states[*slot].read_since_send = true;
                    }
                    Err(why) => emitter.emit(Event::Warning(why)),
                }
            }
            let mut resends = Vec::new();
            for &slot in &full {
                let state = &mut states[slot];
                let before = state.current.len();
                state
                    .current
                    .retain(|i| !plan::target_done(&i.target, i.block, &holdings[slot]));
                if state.current.len() < before {
                    state.progress_at = Instant::now();
                    continue;
                }
                let patience = policy.patience * 2u32.saturating_pow(state.sends.saturating_sub(1));
                if state.progress_at.elapsed() < patience {
                    continue;
                }
                let origin = self.origin(dest, slot);
                if state.sends < policy.rounds {
                    state.sends += 1;
                    state.progress_at = Instant::now();
                    state.read_since_send = false;
                    self.counters
                        .pull_items_resent
                        .fetch_add(state.current.len() as u64, Relaxed);
                    emitter.emit(Event::Warning(format!(
                        "{origin} has not carried out {} items of its pull list for {}: sending them again (send {} of {}).",
                        state.current.len(),
                        crate::gocompat::duration::format_go_duration(patience),
                        state.sends,
                        policy.rounds
                    )));
                    let items: Vec<PullItem> = state
                        .current
                        .iter()
                        .map(|i| self.item(dest, &blocks[i.block as usize], i.target))
                        .collect();
                    resends.push((slot, items));
                } else {
                    emitter.emit(Event::Warning(format!(
                        "{origin} did not carry out {} items of its pull list after {} sends; giving them up{}.",
                        state.current.len(),
                        policy.rounds,
                        if policy.fallback {
                            " (they will be copied through keepmover)"
                        } else {
                            ""
                        }
                    )));
                    given_up.extend(state.current.drain(..).map(|i| i.block));
                }
            }
            self.send_lists(keepstores, dest, resends, emitter).await;
        }
        // Confirmation: every server the slice's blocks were meant for, read after its last
        // list (the reading that showed that list carried out counts).
        let targeted: Vec<usize> = (0..dest.servers.len())
            .filter(|&slot| {
                !states[slot].read_since_send
                    && blocks
                        .iter()
                        .any(|b| b.targets.iter().any(|t| t.slot as usize == slot))
            })
            .collect();
        let reads = targeted
            .iter()
            .map(|&slot| self.holdings(keepstores, dest, slot, prefix, &index_of));
        for (slot, read) in targeted.iter().zip(join_all(reads).await) {
            match read {
                Ok(h) => holdings[*slot] = h,
                Err(why) => emitter.emit(Event::Warning(why)),
            }
        }
        let wants = self.wants();
        let dst = &self.pull.run.job.dst;
        let mut unconfirmed = Vec::new();
        for (index, block) in blocks.iter().enumerate() {
            let index = index as u32;
            match plan::shortfall(block, index, dest, &holdings, &wants) {
                None => {
                    let c = &self.counters;
                    c.pulled_blocks.fetch_add(1, Relaxed);
                    c.pulled_bytes.fetch_add(block.id.size, Relaxed);
                    c.copied_blocks.fetch_add(1, Relaxed);
                    c.copied_bytes.fetch_add(block.id.size, Relaxed);
                    let stored_on = block
                        .slots()
                        .into_iter()
                        .filter(|&s| holdings[s as usize].contains_key(&index))
                        .map(|s| dest.servers[s as usize] as u16)
                        .collect();
                    emitter.emit(Event::Done(BlockRecord {
                        block: block.id.short(),
                        action: Action::Pulled,
                        bytes: block.id.size,
                        source: block.holders.first().copied(),
                        stored_on,
                        attempts: 0,
                        error: None,
                    }));
                }
                Some(short) => {
                    let servers: Vec<String> = block
                        .slots()
                        .iter()
                        .map(|&s| dst.services[dest.servers[s as usize]].origin.to_string())
                        .collect();
                    let why = if block.targets.is_empty() {
                        format!("no destination keepstore can take it ({short})")
                    } else if given_up.contains(&index) {
                        format!(
                            "not pulled by {} after {} sends of its list ({short})",
                            servers.join(", "),
                            policy.rounds
                        )
                    } else {
                        format!("pulled, but short on {}: {short}", servers.join(", "))
                    };
                    unconfirmed.push((index, why));
                }
            }
        }
        SliceEnd::Finished(unconfirmed)
    }

    /// Sends lists to several servers at once; a failed send is a warning (the list is sent
    /// again when patience runs out).
    async fn send_lists(
        &self,
        keepstores: &F::Client,
        dest: &Destination,
        lists: Vec<(usize, Vec<PullItem>)>,
        emitter: &mut Emitter,
    ) {
        let sends = lists
            .iter()
            .map(|(slot, items)| self.send(keepstores, dest, *slot, items));
        for ((slot, _), result) in lists.iter().zip(join_all(sends).await) {
            if let Err(e) = result {
                emitter.emit(Event::Warning(format!(
                    "PUT /pull to {} failed: {e}",
                    self.origin(dest, *slot)
                )));
            }
        }
    }

    /// Which of the slice's blocks each mount of one server lists now.
    async fn holdings(
        &self,
        keepstores: &F::Client,
        dest: &Destination,
        slot: usize,
        prefix: &str,
        index_of: &HashMap<BlockId, u32>,
    ) -> Result<Holdings, String> {
        let dst = &self.pull.run.job.dst;
        let server = dest.servers[slot];
        let reads = dest.mounts[slot].iter().map(|mount| async move {
            let began = Instant::now();
            let mut entries = Vec::new();
            let result = keepstores
                .index(
                    dst,
                    server,
                    IndexSource::Mount(&mount.uuid),
                    prefix,
                    MAX_SLICE_ENTRIES,
                    &mut entries,
                )
                .await;
            (result, entries, began.elapsed())
        });
        let mut holdings = Holdings::new();
        let origin = self.origin(dest, slot);
        for (m, (result, entries, took)) in join_all(reads).await.into_iter().enumerate() {
            if let Err(cause) = result {
                self.counters.error(&origin, cause.kind());
                return Err(format!(
                    "reading {origin}/mounts/{}/blocks?prefix={prefix}: {cause}",
                    dest.mounts[slot][m].uuid
                ));
            }
            self.counters
                .observe(Op::Index, &dest.uuids[slot], took.as_secs_f64());
            for entry in entries {
                if let Some(&i) = index_of.get(&BlockId::new(entry.hash, entry.size)) {
                    let mounts = holdings.entry(i).or_default();
                    if !mounts.contains(&(m as u16)) {
                        mounts.push(m as u16);
                    }
                }
            }
        }
        Ok(holdings)
    }

    /// A block that will not be where the job wants it.
    fn fail(&self, block: &PullBlock, why: String, emitter: &mut Emitter) {
        self.counters.failed_blocks.fetch_add(1, Relaxed);
        self.counters.failed_bytes.fetch_add(block.id.size, Relaxed);
        emitter.emit(Event::Done(BlockRecord {
            block: block.id.short(),
            action: Action::Failed,
            bytes: block.id.size,
            source: None,
            stored_on: Vec::new(),
            attempts: 0,
            error: Some(BlockError {
                kind: ErrorKind::NotFound,
                text: why,
            }),
        }));
    }

    /// Copies the blocks whose pulls failed through keepmover: the copy engine on a locator
    /// list of just them, walking this slice only. Their outcomes join this run's report
    /// (action `copied` or `failed`); returns whether all were copied.
    fn fallback(
        &self,
        prefix: &str,
        blocks: &[PullBlock],
        unconfirmed: &[(u32, String)],
        emitter: &mut Emitter,
    ) -> Result<bool, PullError> {
        let mut text = String::new();
        for (index, _) in unconfirmed {
            text.push_str(blocks[*index as usize].id.short().as_str());
            text.push('\n');
        }
        let list = LocatorList::load(text.as_bytes(), DEFAULT_RUN_ENTRIES, &std::env::temp_dir())
            .map_err(|e| PullError::Locators(std::io::Error::other(e.to_string())))?;
        let config = self.config();
        let remaining = config.max_duration.map(|d| {
            d.saturating_sub(self.started.elapsed())
                .max(Duration::from_millis(1))
        });
        let run = Run {
            job: self.pull.run.job.clone(),
            bad_copies: Default::default(),
            identity: Default::default(),
            select: Selection {
                prefix: prefix.to_string(),
                shard: None,
                filter: BlockFilter::default(),
                locators: Some(list),
                order: Order::Prefix,
                include_present: true,
                mounts: Vec::new(),
            },
            config: super::EngineConfig {
                prefix_length: prefix.len().max(1),
                checkpoint: None,
                dry_run: false,
                counting: Counting::Exact,
                max_transfer: None,
                max_duration: remaining,
                ..config.clone()
            },
            mode: Mode::Copy,
        };
        let seen = Arc::new(Mutex::new(HashSet::new()));
        let forward = Forward {
            emitter: emitter.fork(),
            seen: seen.clone(),
        };
        let fallback_counters = Arc::new(Counters::default());
        let report = super::engine::run(
            run,
            SharedFactory(self.factory.clone()),
            self.control.clone(),
            fallback_counters.clone(),
            vec![Box::new(forward)],
        )?;
        let t = &report.totals;
        let c = &self.counters;
        c.copied_blocks.fetch_add(t.copied_blocks, Relaxed);
        c.copied_bytes.fetch_add(t.copied_bytes, Relaxed);
        c.fallback_blocks.fetch_add(t.copied_blocks, Relaxed);
        c.fallback_bytes.fetch_add(t.copied_bytes, Relaxed);
        c.failed_blocks.fetch_add(t.failed_blocks, Relaxed);
        c.failed_bytes.fetch_add(t.failed_bytes, Relaxed);
        c.bytes_in.fetch_add(t.bytes_in, Relaxed);
        c.bytes_out.fetch_add(t.bytes_out, Relaxed);
        c.refetched_blocks.fetch_add(t.refetched_blocks, Relaxed);
        c.retried_errors.fetch_add(t.retried_errors, Relaxed);
        c.requeued_blocks.fetch_add(t.requeued_blocks, Relaxed);
        if report.stopped.is_some() {
            return Ok(false);
        }
        let seen = seen.lock().map(|s| s.clone()).unwrap_or_default();
        let mut all_copied = t.failed_blocks == 0;
        for (index, why) in unconfirmed {
            let block = &blocks[*index as usize];
            if !seen.contains(&block.id) {
                all_copied = false;
                self.fail(
                    block,
                    format!("{why}; the copy through keepmover no longer found it on the source"),
                    emitter,
                );
            }
        }
        Ok(all_copied)
    }
}

/// The fallback copy's events, passed on to the pull run's sinks (its per-block lines and
/// warnings; not its own planning and phases). Records which blocks it settled.
struct Forward {
    emitter: Emitter,
    seen: Arc<Mutex<HashSet<BlockId>>>,
}

impl EventSink for Forward {
    fn events(&mut self, batch: &[Event], _counters: &Counters) {
        for event in batch {
            match event {
                Event::Done(record) => {
                    if let (Ok(mut seen), Some(id)) = (self.seen.lock(), id_of(record)) {
                        seen.insert(id);
                    }
                    self.emitter.emit(event.clone());
                }
                Event::Started { .. } | Event::Warning(_) => self.emitter.emit(event.clone()),
                _ => {}
            }
        }
    }

    fn finish(&mut self, _counters: &Counters) {
        self.emitter.flush();
    }
}

fn id_of(record: &BlockRecord) -> Option<BlockId> {
    let loc = crate::keep::locator::parse_keepstore(record.block.as_str()).ok()?;
    Some(BlockId::new(loc.hash, loc.size?))
}

/// One factory shared by the pull run and its fallback copies.
struct SharedFactory<F>(Arc<F>);

impl<F: KeepstoresFactory> KeepstoresFactory for SharedFactory<F> {
    type Client = F::Client;
    fn client(&self) -> F::Client {
        self.0.client()
    }
}
