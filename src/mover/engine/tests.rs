//! Whole runs of the engine over the in-memory keepstores: what a run copies, skips,
//! requeues and records, with shards, filters, lists and stops. (The same engine runs over
//! HTTP against keepsim in `tests/rsync_e2e.rs`.)

use std::sync::{Arc, Mutex};

use super::*;
use crate::cluster::Cluster;
use crate::index::filter::BlockFilter;
use crate::index::locators::LocatorList;
use crate::index::shard::Shard;
use crate::keep::BlockId;
use crate::keepstore::memory::{self, MemoryKeepstores, Scripted};
use crate::mover::events::{Event, EventSink, Pump};
use crate::net::IoBackend;

struct Collect(Arc<Mutex<Vec<Event>>>);

impl EventSink for Collect {
    fn events(&mut self, batch: &[Event], _: &Counters) {
        if let Ok(mut all) = self.0.lock() {
            all.extend_from_slice(batch);
        }
    }
}

struct World {
    ks: MemoryKeepstores,
    job: Job,
    blocks: Vec<BlockId>,
}

/// A source of `n` blocks of sizes 1000 + 100 i (each on source server i % 3) and an empty
/// destination of three servers.
fn world(n: usize) -> World {
    let ks = MemoryKeepstores::new();
    let src = memory::cluster("src", "aaaaa", 3);
    let dst = memory::cluster("dst", "bbbbb", 3);
    let blocks = (0..n)
        .map(|i| {
            let data: Vec<u8> = (0..1000 + 100 * i)
                .map(|j| (j * 7 + i * 13) as u8)
                .collect();
            ks.put(&src, i % 3, &data, 1_000_000 + i as i64)
        })
        .collect();
    World {
        ks,
        job: Job {
            src,
            dst,
            signing: None,
            dst_signing: None,
            replicas: 2,
            classes: Arc::from([]),
        },
        blocks,
    }
}

fn config() -> EngineConfig {
    EngineConfig {
        workers: 1,
        concurrency: 4,
        memory_budget: 64 << 20,
        retry: RetryPolicy {
            retries: 1,
            delay: Duration::from_millis(1),
        },
        prefix_length: 1,
        ..EngineConfig::default()
    }
}

/// A copy of `w`'s job.
fn copy_run(w: &World, select: Selection, config: EngineConfig) -> Run {
    Run {
        job: w.job.clone(),
        identity: JobIdentity::default(),
        select,
        config,
        mode: Mode::Copy,
        bad_copies: Default::default(),
    }
}

fn go(
    w: &World,
    select: Selection,
    config: EngineConfig,
    control: Arc<Control>,
) -> (RunReport, Vec<Event>) {
    let events = Arc::new(Mutex::new(Vec::new()));
    let report = run(
        copy_run(w, select, config),
        w.ks.clone(),
        control,
        Arc::new(Counters::default()),
        vec![Box::new(Collect(events.clone()))],
    )
    .expect("the run runs");
    let events = events.lock().map(|e| e.clone()).unwrap_or_default();
    (report, events)
}

fn on_destination(w: &World, id: &BlockId) -> usize {
    (0..3).filter(|&s| w.ks.holds(&w.job.dst, s, id)).count()
}

#[test]
fn copies_what_is_missing_and_skips_what_is_there() {
    let w = world(30);
    let (report, events) = go(&w, Selection::default(), config(), Arc::new(Control::new()));
    assert_eq!(report.totals.copied_blocks, 30);
    assert_eq!(report.totals.failed_blocks, 0);
    for id in &w.blocks {
        assert_eq!(on_destination(&w, id), 2, "{id:?}");
    }
    let done = events
        .iter()
        .filter(|e| matches!(e, Event::Done(r) if r.action == Action::Copied))
        .count();
    assert_eq!(done, 30);
    let (again, _) = go(&w, Selection::default(), config(), Arc::new(Control::new()));
    assert_eq!(again.totals.copied_blocks, 0);
    assert_eq!(again.totals.skipped_blocks, 30);
}

#[test]
fn a_block_that_fails_every_retry_is_requeued_and_then_copied() {
    let w = world(6);
    let victim = w.blocks[0];
    // Its only holder fails every try of the first round (1 + 1 retry), then recovers.
    w.ks.script(
        &w.job.src,
        0,
        &[
            Scripted::Status(503, "busy".into()),
            Scripted::Status(503, "busy".into()),
        ],
    );
    let mut cfg = config();
    cfg.concurrency = 1;
    cfg.prefix_length = 0;
    let (report, events) = go(&w, Selection::default(), cfg, Arc::new(Control::new()));
    assert_eq!(report.totals.copied_blocks, 6, "{:?}", report.totals);
    assert_eq!(report.totals.failed_blocks, 0);
    assert!(report.totals.requeued_blocks >= 1);
    assert_eq!(
        report.totals.requeue_successes,
        report.totals.requeued_blocks
    );
    assert_eq!(on_destination(&w, &victim), 2);
    let started = events
        .iter()
        .filter(|e| matches!(e, Event::Started { .. }))
        .count();
    assert_eq!(
        started, 6,
        "a requeued block is started (and numbered) once"
    );
}

#[test]
fn a_slice_index_that_fails_transiently_is_read_again() {
    // A source and a destination server each answer their next index request 503 (a
    // keepstore restarting): the slice is read again in the next round, and all is copied.
    let w = world(6);
    w.ks.with(&w.job.src, 1, |s| s.index_503_next = 1);
    w.ks.with(&w.job.dst, 2, |s| s.index_503_next = 1);
    let mut cfg = config();
    cfg.prefix_length = 0;
    let (report, _) = go(
        &w,
        Selection::default(),
        cfg.clone(),
        Arc::new(Control::new()),
    );
    assert_eq!(report.totals.copied_blocks, 6, "{:?}", report.totals);
    // One more 503 than the rounds (1 + 1 retry) can absorb ends the run, as before.
    w.ks.with(&w.job.src, 0, |s| s.index_503_next = 2);
    let events = Arc::new(Mutex::new(Vec::new()));
    let result = run(
        Run {
            job: w.job.clone(),
            identity: JobIdentity::default(),
            select: Selection::default(),
            config: cfg,
            mode: Mode::Copy,
            bad_copies: Default::default(),
        },
        w.ks.clone(),
        Arc::new(Control::new()),
        Arc::new(Counters::default()),
        vec![Box::new(Collect(events))],
    );
    assert!(
        matches!(result, Err(EngineError::Walk(_))),
        "{:?}",
        result.map(|r| r.totals)
    );
}

#[test]
fn a_block_that_never_copies_fails_after_its_requeues() {
    let w = world(2);
    let mut cfg = config();
    cfg.prefix_length = 0;
    let victim = w.blocks[1];
    let holder = 1;
    w.ks.script(
        &w.job.src,
        holder,
        &vec![Scripted::Status(500, "broken".into()); 100],
    );
    let (report, events) = go(&w, Selection::default(), cfg, Arc::new(Control::new()));
    assert_eq!(report.totals.failed_blocks, 1);
    assert_eq!(
        report.totals.requeued_blocks, 2,
        "end of slice, then end of run"
    );
    // 2 tries per round (1 + 1 retry) × 3 rounds on the only holder.
    assert_eq!(w.ks.with(&w.job.src, holder, |s| s.gets), 6);
    let failed: Vec<&Event> = events
        .iter()
        .filter(|e| matches!(e, Event::Done(r) if r.action == Action::Failed))
        .collect();
    assert_eq!(failed.len(), 1);
    assert_eq!(on_destination(&w, &victim), 0);
}

#[test]
fn shards_together_copy_everything_once() {
    let w = world(40);
    let mut copied = 0;
    for index in 0..3 {
        let select = Selection {
            shard: Some(Shard { index, count: 3 }),
            ..Selection::default()
        };
        let (report, _) = go(&w, select, config(), Arc::new(Control::new()));
        copied += report.totals.copied_blocks;
    }
    assert_eq!(copied, 40);
    for id in &w.blocks {
        assert_eq!(on_destination(&w, id), 2);
    }
}

#[test]
fn filters_and_lists_select_exactly_their_blocks() {
    let w = world(20);
    // Sizes 1000 + 100 i: 2000..=2500 are blocks 10..=15.
    let select = Selection {
        filter: BlockFilter::parse("2000..2500", "", 0).expect("valid"),
        ..Selection::default()
    };
    let (report, _) = go(&w, select, config(), Arc::new(Control::new()));
    assert_eq!(report.totals.copied_blocks, 6);
    for (i, id) in w.blocks.iter().enumerate() {
        assert_eq!(
            on_destination(&w, id) > 0,
            (10..=15).contains(&i),
            "block {i}"
        );
    }
    // mtimes are 1_000_000 + i ns: the first five.
    let w = world(20);
    let select = Selection {
        filter: BlockFilter::parse("", "..1970-01-01T00:00:00.001000004Z", 0).expect("valid"),
        ..Selection::default()
    };
    let (report, _) = go(&w, select, config(), Arc::new(Control::new()));
    assert_eq!(report.totals.copied_blocks, 5);
    // A list: blocks 3 and 7, one by hash alone.
    let w = world(20);
    let text = format!(
        "{}\n{}\n",
        w.blocks[3].short().hash_hex(),
        w.blocks[7].short()
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let select = Selection {
        locators: Some(LocatorList::load(text.as_bytes(), 1, dir.path()).expect("list")),
        ..Selection::default()
    };
    let (report, _) = go(&w, select, config(), Arc::new(Control::new()));
    assert_eq!(report.totals.copied_blocks, 2);
    assert!(on_destination(&w, &w.blocks[3]) == 2 && on_destination(&w, &w.blocks[7]) == 2);
}

#[test]
fn a_stop_before_the_walk_copies_nothing_and_says_why() {
    let w = world(10);
    let control = Arc::new(Control::new());
    control.stop(StopReason::Terminated);
    let (report, _) = go(&w, Selection::default(), config(), control);
    assert_eq!(report.totals.copied_blocks, 0);
    assert_eq!(report.stopped, Some(StopReason::Terminated));
}

#[test]
fn max_transfer_stops_handing_out_blocks() {
    let w = world(30);
    let mut cfg = config();
    cfg.concurrency = 1;
    cfg.max_transfer = Some(5000);
    let (report, _) = go(&w, Selection::default(), cfg, Arc::new(Control::new()));
    assert_eq!(report.stopped, Some(StopReason::MaxTransfer));
    assert!(report.totals.copied_blocks < 30);
    assert!(report.totals.copied_bytes >= 5000);
}

#[test]
fn the_checkpoint_records_settled_slices_and_a_rerun_skips_them() {
    let w = world(25);
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = config();
    cfg.checkpoint = Some(dir.path().join("ck"));
    let (first, _) = go(
        &w,
        Selection::default(),
        cfg.clone(),
        Arc::new(Control::new()),
    );
    assert_eq!(first.totals.copied_blocks, 25);
    let saved = checkpoint::load(&dir.path().join("ck"), &JobIdentity::default())
        .expect("readable")
        .expect("written");
    assert_eq!(saved.done_through.as_deref(), Some("f"));
    let (again, _) = go(&w, Selection::default(), cfg, Arc::new(Control::new()));
    assert_eq!(again.slices, 0, "every slice was done");
}

/// Runs a move (or vacate) with the trasher attached, as the `move` command does.
fn go_move(w: &World, vacate: bool) -> (RunReport, Arc<Counters>) {
    let (sender, receiver) = crossbeam_channel::unbounded();
    let counters = Arc::new(Counters::default());
    let (pump, emitter) = Pump::start(Vec::new(), counters.clone()).expect("pump");
    let trasher = crate::mover::trash::Trasher::start(
        Arc::new(w.ks.clone()),
        w.job.src.clone(),
        crate::mover::trash::TrashPolicy {
            blob_signing_ttl: Duration::ZERO,
            patience: Duration::from_secs(2),
            io: IoBackend::Auto,
            mounts_by_server: Default::default(),
            confirm: None,
        },
        receiver,
        counters.clone(),
        emitter,
    )
    .expect("trasher");
    let mode = if vacate {
        Mode::Vacate { trash: sender }
    } else {
        Mode::Move { trash: sender }
    };
    let report = run(
        Run {
            job: w.job.clone(),
            identity: JobIdentity::default(),
            select: Selection::default(),
            config: config(),
            mode,
            bad_copies: Default::default(),
        },
        w.ks.clone(),
        Arc::new(Control::new()),
        counters.clone(),
        Vec::new(),
    )
    .expect("the run runs");
    trasher.finish();
    pump.join();
    (report, counters)
}

fn on_source(w: &World, id: &BlockId) -> usize {
    (0..3).filter(|&s| w.ks.holds(&w.job.src, s, id)).count()
}

#[test]
fn move_copies_verifies_then_trashes_the_source() {
    let w = world(20);
    // Two blocks are on the destination already: read back, then trashed too.
    for id in &w.blocks[..2] {
        let data = w.ks.with(
            &w.job.src,
            w.blocks.iter().position(|b| b == id).unwrap_or(0) % 3,
            |s| s.blocks.get(&id.hash).map(|b| b.data.clone()),
        );
        let data = data.expect("on its source server");
        w.ks.put(&w.job.dst, 0, &data, 5);
        w.ks.put(&w.job.dst, 1, &data, 5);
    }
    let (report, counters) = go_move(&w, false);
    let totals = counters.snapshot();
    assert_eq!(report.totals.failed_blocks, 0);
    assert_eq!(totals.trashed_blocks, 20, "{totals:?}");
    assert_eq!(totals.verified_blocks, 20);
    for id in &w.blocks {
        assert_eq!(on_source(&w, id), 0, "{id:?} left the source");
        assert!(on_destination(&w, id) >= 2, "{id:?} on the destination");
    }
}

#[test]
fn a_move_whose_destination_refuses_trashes_nothing() {
    let w = world(10);
    for server in 0..3 {
        w.ks.with(&w.job.dst, server, |s| s.read_only = true);
    }
    let (report, counters) = go_move(&w, false);
    assert_eq!(report.totals.failed_blocks, 10);
    assert_eq!(counters.snapshot().trashed_blocks, 0);
    for id in &w.blocks {
        assert_eq!(on_source(&w, id), 1, "still on the source");
    }
}

#[test]
fn vacate_keeps_each_blocks_replica_count_without_the_vacated_server() {
    // One cluster of four servers: vacate server 0 into servers 1..3.
    let ks = MemoryKeepstores::new();
    let cluster = memory::cluster("one", "ccccc", 4);
    let mut blocks = Vec::new();
    for i in 0..12usize {
        let data: Vec<u8> = (0..2000 + i).map(|j| (j * 3 + i) as u8).collect();
        // Two replicas: server 0 and one other.
        blocks.push(ks.put(&cluster, 0, &data, 9));
        ks.put(&cluster, 1 + i % 3, &data, 9);
    }
    let mut src = cluster.clone();
    src.services.truncate(1);
    let mut dst = cluster.clone();
    dst.services.remove(0);
    let w = World {
        ks,
        job: Job {
            src,
            dst,
            signing: None,
            dst_signing: None,
            replicas: 0,
            classes: Arc::from([]),
        },
        blocks: blocks.clone(),
    };
    let (report, counters) = go_move(&w, true);
    assert_eq!(report.totals.failed_blocks, 0);
    assert_eq!(counters.snapshot().trashed_blocks, 12);
    for id in &blocks {
        assert!(!w.ks.holds(&cluster, 0, id), "vacated");
        let count = (1..4).filter(|&s| w.ks.holds(&cluster, s, id)).count();
        assert!(count >= 2, "{id:?} keeps two replicas, has {count}");
    }
}

#[test]
fn after_one_percent_of_the_walk_the_estimate_is_within_five_percent() {
    // A million real MD5 hashes (blocks of sizes 1..=64 KiB) walked in 4096 slices of three
    // hex digits, as a large run walks them.
    let n = 1_000_000u32;
    let messages: Vec<[u8; 4]> = (0..n).map(|i| i.to_le_bytes()).collect();
    let refs: Vec<&[u8]> = messages.iter().map(|m| &m[..]).collect();
    let digests = crate::hash::digest_many(&refs);
    let mut per_slice_blocks = vec![0u64; 4096];
    let mut per_slice_bytes = vec![0u64; 4096];
    for (i, d) in digests.iter().enumerate() {
        let slice = (usize::from(d[0]) << 4) | usize::from(d[1] >> 4);
        per_slice_blocks[slice] += 1;
        per_slice_bytes[slice] += 1 + (i as u64 * 7919) % 65_536;
    }
    let walked = 41; // 1% of 4096
    let found: u64 = per_slice_blocks[..walked].iter().sum();
    let found_bytes: u64 = per_slice_bytes[..walked].iter().sum();
    let exact: u64 = per_slice_blocks.iter().sum();
    let exact_bytes: u64 = per_slice_bytes.iter().sum();
    let estimate = extrapolate(found, walked as u64, 4096);
    let estimate_bytes = extrapolate(found_bytes, walked as u64, 4096);
    let off = |e: u64, x: u64| (e as f64 - x as f64).abs() / x as f64;
    assert!(off(estimate, exact) < 0.05, "{estimate} vs {exact}");
    assert!(
        off(estimate_bytes, exact_bytes) < 0.05,
        "{estimate_bytes} vs {exact_bytes}"
    );
}

/// The in-memory keepstores, recording when each index listing starts and ends; with a
/// [`PauseOnPut`], also pausing the run from inside one block's PUT.
#[derive(Clone)]
struct Watched {
    inner: MemoryKeepstores,
    /// (prefix, true at the start / false at the end), in order.
    log: Arc<Mutex<Vec<(String, bool)>>>,
    pause_on_put: Option<Arc<PauseOnPut>>,
}

/// The victim's first PUT pauses the run (as `keepmover ctl pause` would); its PUTs fail
/// while the run is paused, so it is requeued; the block GETs that begin while paused are
/// counted.
struct PauseOnPut {
    victim: crate::keep::ShortLocator,
    control: Arc<Control>,
    paused_once: std::sync::atomic::AtomicBool,
    gets_while_paused: std::sync::atomic::AtomicUsize,
}

impl Watched {
    fn new(inner: MemoryKeepstores, pause_on_put: Option<Arc<PauseOnPut>>) -> Watched {
        Watched {
            inner,
            log: Arc::new(Mutex::new(Vec::new())),
            pause_on_put,
        }
    }

    fn note(&self, prefix: &str, start: bool) {
        if let Ok(mut log) = self.log.lock() {
            log.push((prefix.to_string(), start));
        }
    }
}

impl crate::keepstore::KeepstoresFactory for Watched {
    type Client = Watched;
    fn client(&self) -> Watched {
        self.clone()
    }
}

impl Keepstores for Watched {
    type Body = <MemoryKeepstores as Keepstores>::Body;

    async fn get_block(&self, c: &Cluster, s: usize, l: &str) -> Result<Self::Body, Cause> {
        if let Some(hook) = &self.pause_on_put {
            if hook.control.is_paused() {
                hook.gets_while_paused.fetch_add(1, Relaxed);
            }
        }
        self.inner.get_block(c, s, l).await
    }

    async fn head_block(&self, c: &Cluster, s: usize, l: &str) -> Result<(), Cause> {
        self.inner.head_block(c, s, l).await
    }

    async fn put_block(
        &self,
        c: &Cluster,
        s: usize,
        b: &crate::keep::ShortLocator,
        body: bytes::Bytes,
        wants: &crate::keepstore::PutWants,
    ) -> Result<crate::keepstore::PutReply, Cause> {
        if let Some(hook) = self.pause_on_put.as_ref().filter(|h| h.victim == *b) {
            if !hook.paused_once.swap(true, Relaxed) {
                // Time for the other lanes to finish their blocks and wait for more.
                compio::time::sleep(Duration::from_millis(50)).await;
                hook.control.pause();
            }
            if hook.control.is_paused() {
                return Err(Cause::Status {
                    status: 503,
                    body: "busy".into(),
                });
            }
        }
        self.inner.put_block(c, s, b, body, wants).await
    }

    async fn index(
        &self,
        c: &Cluster,
        s: usize,
        source: crate::keepstore::IndexSource<'_>,
        prefix: &str,
        max: usize,
        entries: &mut Vec<crate::keep::index_format::IndexEntry>,
    ) -> Result<(), Cause> {
        self.note(prefix, true);
        // Let the other listings of the walk start meanwhile, if the walk would start them.
        compio::time::sleep(Duration::from_millis(1)).await;
        let result = self.inner.index(c, s, source, prefix, max, entries).await;
        self.note(prefix, false);
        result
    }

    async fn mounts(
        &self,
        c: &Cluster,
        s: usize,
    ) -> Result<Vec<crate::keep::wire::MountInfo>, Cause> {
        self.inner.mounts(c, s).await
    }

    async fn send_pull(
        &self,
        c: &Cluster,
        s: usize,
        items: &[crate::keep::wire::PullItem],
    ) -> Result<(), Cause> {
        self.inner.send_pull(c, s, items).await
    }

    async fn send_trash(
        &self,
        c: &Cluster,
        s: usize,
        items: &[crate::keep::wire::TrashItem],
    ) -> Result<(), Cause> {
        self.inner.send_trash(c, s, items).await
    }

    async fn touch(&self, c: &Cluster, s: usize, l: &str) -> Result<(), Cause> {
        self.inner.touch(c, s, l).await
    }
}

/// The walk's memory bound, checked on the order of its listings: a slice's listings (every
/// server of both clusters, concurrently) all end before the next slice's begin, so the
/// walk never holds more than one prefix's slices while the next is fetched; each prefix
/// is listed once per server, in order (the estimate's probe, `000`, aside).
#[test]
fn the_walk_lists_one_prefix_at_a_time_in_order() {
    for dry_run in [false, true] {
        let w = world(200);
        let watched = Watched::new(w.ks.clone(), None);
        let mut config = config();
        config.prefix_length = 2;
        config.dry_run = dry_run;
        let report = run(
            copy_run(&w, Selection::default(), config),
            watched.clone(),
            Arc::new(Control::new()),
            Arc::new(Counters::default()),
            Vec::new(),
        )
        .expect("the run runs");
        if dry_run {
            assert_eq!(report.plan.to_copy_blocks, 200);
            // The dry run's only walk is accounted (it reported 0 index lines before).
            assert_eq!(report.totals.index_lines, 200);
        } else {
            assert_eq!(report.totals.copied_blocks, 200);
        }
        let log = watched.log.lock().map(|l| l.clone()).unwrap_or_default();
        let mut open: Vec<String> = Vec::new();
        let mut walked: Vec<String> = Vec::new();
        let mut most = 0;
        for (prefix, start) in &log {
            if *start {
                open.push(prefix.clone());
                if walked.last() != Some(prefix) {
                    walked.push(prefix.clone());
                }
            } else if let Some(i) = open.iter().position(|p| p == prefix) {
                open.remove(i);
            }
            let mut distinct = open.clone();
            distinct.dedup();
            most = most.max(distinct.len());
        }
        assert_eq!(most, 1, "listings of two prefixes overlapped: {log:?}");
        let expected: Vec<String> = (0..256).map(|n| format!("{n:02x}")).collect();
        assert_eq!(walked, expected, "each prefix once, in order");
        let per_prefix = log.iter().filter(|(p, s)| *s && p == "00").count();
        assert_eq!(per_prefix, 6, "three servers per cluster, once each");
    }
}

/// No block starts while paused, not even one handed out after the walk: a lane already
/// waiting for a task when the pause came holds the task it then gets until the resume.
/// (The requeue rounds hand tasks out without looking at the pause; the lanes used to check
/// it only before waiting for a task.)
#[test]
fn no_block_starts_while_paused_not_even_a_requeued_one() {
    let w = world(8);
    let control = Arc::new(Control::new());
    // The last block of the walk: when its PUT pauses the run, the other lanes have
    // finished theirs and are waiting for tasks.
    let victim = w.blocks.iter().max().map(|b| b.short()).expect("blocks");
    let hook = Arc::new(PauseOnPut {
        victim,
        control: control.clone(),
        paused_once: Default::default(),
        gets_while_paused: Default::default(),
    });
    let watched = Watched::new(w.ks.clone(), Some(hook.clone()));
    let counters = Arc::new(Counters::default());
    let resumer = {
        let (control, counters) = (control.clone(), counters.clone());
        std::thread::spawn(move || {
            // Once the victim has been requeued (its tries while paused all failed)...
            let deadline = std::time::Instant::now() + Duration::from_secs(20);
            while counters.requeued_blocks.load(Relaxed) == 0
                && std::time::Instant::now() < deadline
            {
                std::thread::sleep(Duration::from_millis(5));
            }
            // ...and the requeue round, which looks every 50 ms, has handed it out.
            std::thread::sleep(Duration::from_millis(300));
            control.resume();
        })
    };
    let mut config = config();
    config.prefix_length = 0;
    let report = run(
        copy_run(&w, Selection::default(), config),
        watched,
        control,
        counters,
        Vec::new(),
    )
    .expect("the run runs");
    resumer.join().expect("resumer");
    assert!(hook.paused_once.load(Relaxed), "the victim was never PUT");
    assert!(report.totals.requeued_blocks >= 1, "{:?}", report.totals);
    assert_eq!(report.totals.copied_blocks, 8, "{:?}", report.totals);
    assert_eq!(
        hook.gets_while_paused.load(Relaxed),
        0,
        "a block started while paused"
    );
}
