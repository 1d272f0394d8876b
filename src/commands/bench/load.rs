//! The load: keep-exercise's reader and writer "threads" as tasks on the completion-based
//! runtime (many requests in flight per thread with `-concurrency`), `-mix`, `-rate`
//! pacing, random `-block-sizes`, and one experiment's run with its stats rows.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::output::csv_row;
use super::stats::{Row, Stats};
use super::{BenchArgs, BenchError, INTERRUPTED};
use crate::index::merge::{BlockId, SourceBlock};
use crate::index::walk::fetch_slice;
use crate::keep::locator::BlockHash;
use crate::keep::rendezvous::probe_order_go;
use crate::keepstore::http::{HttpFactory, HttpKeepstores};
use crate::keepstore::KeepstoresFactory;
use crate::mover::control::Control;
use crate::mover::counters::Counters;
use crate::mover::gates::Gates;
use crate::mover::hash_batch::HashBatcher;
use crate::mover::pool::BufferPool;
use crate::mover::transfer::{Ctx, Outcome};
use crate::mover::{Job, RetryPolicy};
use crate::net::ClientConfig;
use crate::report::log_line;

/// The block a writer sends: NUL bytes (as keep-exercise), optionally with the thread id
/// (`-vary-thread`) and a random first part per request (`-vary-request`).
pub(super) fn make_block(args: &BenchArgs, thread: usize, size: usize) -> Vec<u8> {
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
pub(super) enum Role {
    Read,
    Write,
    /// Reads with this probability, else writes (`-mix R:W`).
    Mixed(f64),
}

/// Spaces requests out to at most `-rate` per second across all tasks.
pub(super) struct Pacer {
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
pub(super) struct TaskEnv {
    keepstores: HttpKeepstores,
    ctx: Rc<Job>,
    gates: Rc<Gates>,
    control: Arc<Control>,
    counters: Arc<Counters>,
    stats: Rc<RefCell<Stats>>,
    latest: Rc<RefCell<Option<BlockId>>>,
    pool: BufferPool,
    hasher: HashBatcher,
    index_blocks: Rc<Vec<SourceBlock>>,
    args: BenchArgs,
    pace: Pacer,
}

/// The size of the next write: `-block-size`, or one of `-block-sizes`.
pub(super) fn next_block_size(args: &BenchArgs) -> usize {
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
            replica_caps: &[],
        }
    }
}

pub(super) async fn write_once(env: &TaskEnv, thread: usize) {
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

pub(super) async fn read_once(env: &TaskEnv) {
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

/// What every experiment of one `bench` run shares with `-listen`: the request counters and
/// the controls.
#[derive(Default)]
pub(super) struct Shared {
    pub counters: Arc<Counters>,
    pub control: Arc<Control>,
}

pub(super) async fn experiment_run(
    args: &BenchArgs,
    ctx: &Rc<Job>,
    http: &ClientConfig,
    shared: &Shared,
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
    let control = shared.control.clone();
    let running = move || {
        !INTERRUPTED.load(Ordering::Relaxed)
            && !control.is_stopping()
            && deadline.is_none_or(|d| Instant::now() < d)
    };
    let env = Rc::new(TaskEnv {
        keepstores,
        ctx: ctx.clone(),
        gates: Gates::new(ctx.src.services.len(), ctx.dst.services.len(), 1 << 16),
        control: shared.control.clone(),
        counters: shared.counters.clone(),
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
        let running = running.clone();
        tasks.push(compio::runtime::spawn(async move {
            let thread = task / tasks_per_thread;
            while running() {
                // `ctl pause`: no new requests until resumed.
                while env.control.is_paused() && running() {
                    compio::time::sleep(Duration::from_millis(50)).await;
                }
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
