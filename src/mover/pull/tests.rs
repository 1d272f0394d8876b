//! Pull runs over the in-memory keepstores, whose `send_pull` carries lists out at once
//! (or drops half a list, fails chosen blocks, or ignores lists): placement, re-sends, the
//! trial pull, the fallback copy, dry runs and list sizes. (Against keepsim over HTTP in
//! `tests/pull_e2e.rs`.)

use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::*;
use crate::keep::rendezvous::probe_order_go;
use crate::keepstore::memory::{self, MemoryKeepstores};
use crate::mover::checkpoint::JobIdentity;
use crate::mover::{EngineConfig, Job, RetryPolicy};

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

/// `n` blocks on source server i % 3; an empty destination of three servers.
fn world(n: usize) -> World {
    let ks = MemoryKeepstores::new();
    let src = memory::cluster("src", "aaaaa", 3);
    let dst = memory::cluster("dst", "bbbbb", 3);
    let blocks = (0..n)
        .map(|i| {
            let data: Vec<u8> = (0..500 + 10 * i).map(|j| (j * 3 + i * 11) as u8).collect();
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
            classes: Arc::from(["default".to_string()]),
        },
        blocks,
    }
}

fn policy() -> PullPolicy {
    PullPolicy {
        patience: Duration::from_millis(100),
        rounds: 3,
        trial_timeout: Duration::from_millis(400),
        list_limit: LIST_LIMIT,
        fallback: true,
        poll_min: Duration::from_millis(5),
        poll_max: Duration::from_millis(50),
    }
}

fn config() -> EngineConfig {
    EngineConfig {
        workers: 1,
        concurrency: 4,
        memory_budget: 64 << 20,
        retry: RetryPolicy {
            retries: 0,
            delay: Duration::from_millis(1),
        },
        prefix_length: 1,
        ..EngineConfig::default()
    }
}

fn go(
    w: &World,
    policy: PullPolicy,
    config: EngineConfig,
) -> (Result<PullReport, PullError>, Vec<Event>, Arc<Counters>) {
    let events = Arc::new(Mutex::new(Vec::new()));
    let counters = Arc::new(Counters::default());
    let result = run(
        PullRun {
            run: Run {
                job: w.job.clone(),
                identity: JobIdentity::default(),
                select: Selection::default(),
                config,
                mode: Mode::Copy,
                bad_copies: Default::default(),
            },
            policy,
            diagnose: Box::new(Diagnosis::default),
        },
        w.ks.clone(),
        Arc::new(Control::new()),
        counters.clone(),
        vec![Box::new(Collect(events.clone()))],
    );
    let events = events.lock().map(|e| e.clone()).unwrap_or_default();
    (result, events, counters)
}

/// The destination servers holding `id`.
fn holders(w: &World, id: &BlockId) -> Vec<usize> {
    (0..3).filter(|&s| w.ks.holds(&w.job.dst, s, id)).collect()
}

fn rendezvous(w: &World, id: &BlockId, n: usize) -> Vec<usize> {
    let mut want: Vec<usize> = probe_order_go(&id.hash.to_string(), &w.job.dst.uuids())
        .into_iter()
        .take(n)
        .collect();
    want.sort_unstable();
    want
}

fn actions(events: &[Event], action: Action) -> usize {
    events
        .iter()
        .filter(|e| matches!(e, Event::Done(r) if r.action == action))
        .count()
}

#[test]
fn every_block_is_pulled_to_its_rendezvous_places_and_confirmed() {
    let w = world(40);
    let (result, events, counters) = go(&w, policy(), config());
    let report = result.expect("runs").report;
    let t = &report.totals;
    assert_eq!(t.pulled_blocks, 40);
    assert_eq!(t.copied_blocks, 40);
    assert_eq!(t.fallback_blocks, 0);
    assert_eq!(t.failed_blocks, 0);
    assert_eq!(t.pull_items_resent, 0);
    assert_eq!(actions(&events, Action::Pulled), 40);
    for id in &w.blocks {
        assert_eq!(holders(&w, id), rendezvous(&w, id, 2), "{id:?}");
    }
    // Each list names the source holders, by origin, and no mount (one mount per server).
    let list = w.ks.with(&w.job.dst, 0, |s| s.pull_list.clone());
    assert!(list
        .iter()
        .all(|i| i.mount_uuid.is_empty() && i.servers[0].starts_with("http://src")));
    assert!(
        counters.pull_lists.load(Relaxed) >= 3,
        "trial lists at least"
    );
    // A second run finds nothing to pull.
    let (again, _, _) = go(&w, policy(), config());
    let again = again.expect("runs").report;
    assert_eq!(again.totals.pulled_blocks, 0);
    assert_eq!(again.totals.skipped_blocks, 40);
}

#[test]
fn a_list_half_dropped_is_sent_again() {
    let w = world(60);
    for s in 0..3 {
        w.ks.with(&w.job.dst, s, |m| m.pull_drop_second_half_once = true);
    }
    // One slice, so each server's first real list (after its trial) loses half.
    let mut c = config();
    c.prefix_length = 0;
    c.slice_target = u64::MAX;
    let mut p = policy();
    p.list_limit = 1000;
    let (result, events, _) = go(
        &w,
        p.clone(),
        EngineConfig {
            prefix_length: 0,
            ..c
        },
    );
    let t = result.expect("runs").report.totals;
    assert!(t.pull_items_resent > 0, "{t:?}");
    assert_eq!(t.pulled_blocks, 60);
    assert_eq!(t.fallback_blocks, 0);
    assert!(events.iter().any(
        |e| matches!(e, Event::Warning(text) if text.contains("sending them again (send 2 of 3)"))
    ));
}

#[test]
fn a_block_whose_pulls_always_fail_is_copied_through_keepmover() {
    let w = world(30);
    let bad = w.blocks[7];
    for s in 0..3 {
        w.ks.with(&w.job.dst, s, |m| m.pull_fail.push(bad.hash));
    }
    let (result, events, _) = go(&w, policy(), config());
    let t = result.expect("runs").report.totals;
    assert_eq!(t.pulled_blocks, 29);
    assert_eq!(t.fallback_blocks, 1);
    assert_eq!(t.copied_blocks, 30);
    assert_eq!(t.failed_blocks, 0);
    assert_eq!(actions(&events, Action::Copied), 1);
    assert_eq!(holders(&w, &bad), rendezvous(&w, &bad, 2));
    // Without the fallback it is reported failed.
    let w = world(30);
    let bad = w.blocks[3];
    for s in 0..3 {
        w.ks.with(&w.job.dst, s, |m| m.pull_fail.push(bad.hash));
    }
    let mut p = policy();
    p.fallback = false;
    let (result, events, _) = go(&w, p, config());
    let t = result.expect("runs").report.totals;
    assert_eq!(
        (t.pulled_blocks, t.failed_blocks, t.fallback_blocks),
        (29, 1, 0)
    );
    assert!(events.iter().any(|e| matches!(e, Event::Done(r)
        if r.action == Action::Failed
            && r.error.as_ref().is_some_and(|e| e.text.contains("after 3 sends")))));
}

#[test]
fn a_keepstore_that_never_pulls_fails_the_trial_and_nothing_else_is_sent() {
    let w = world(20);
    w.ks.with(&w.job.dst, 1, |m| m.pull_ignore = true);
    let mut c = config();
    c.prefix_length = 0;
    let (result, _, _) = go(&w, policy(), c);
    let Err(PullError::Preflight(text)) = result else {
        panic!("the trial must refuse the run");
    };
    assert!(text.contains("trial pull failed on 1 of 3"), "{text}");
    assert!(text.contains("its own blob signing key"), "{text}");
    assert!(text.contains("Likely cause"), "{text}");
    // Two trial blocks were tried, then the list was cleared; no real list followed.
    let (lists, queued) =
        w.ks.with(&w.job.dst, 1, |m| (m.pull_lists, m.pull_list.len()));
    assert_eq!((lists, queued), (3, 0), "{text}");
}

#[test]
fn a_dry_run_sends_nothing_and_counts_lists() {
    let w = world(50);
    let mut c = config();
    c.dry_run = true;
    let mut p = policy();
    p.list_limit = 4;
    let (result, _, counters) = go(&w, p, c);
    let report = result.expect("runs");
    let dry = report.dry_run.expect("dry-run figures");
    assert_eq!(dry.items, 100, "two servers per block");
    assert_eq!(dry.servers, 3);
    assert!(dry.lists >= 100 / 4, "{dry:?}");
    assert_eq!(counters.pull_lists.load(Relaxed), 0);
    for id in &w.blocks {
        assert!(holders(&w, id).is_empty());
    }
}

#[test]
fn lists_are_no_longer_than_the_limit_and_sent_one_after_the_other() {
    let w = world(40);
    let mut p = policy();
    p.list_limit = 3;
    let mut c = config();
    c.prefix_length = 0;
    let (result, _, counters) = go(&w, p, c);
    let t = result.expect("runs").report.totals;
    assert_eq!(t.pulled_blocks, 40);
    // 80 items in lists of 3 (less the three trial items), plus three trials.
    assert!(counters.pull_lists.load(Relaxed) >= 77 / 3 + 3);
    for s in 0..3 {
        assert!(w.ks.with(&w.job.dst, s, |m| m.pull_list.len()) <= 3);
    }
}

#[test]
fn a_damaged_trial_block_does_not_refuse_the_run() {
    let w = world(30);
    // The smallest block (the first trial pick of the servers it targets) never pulls.
    let bad = w.blocks[0];
    for s in 0..3 {
        w.ks.with(&w.job.dst, s, |m| m.pull_fail.push(bad.hash));
    }
    let mut c = config();
    c.prefix_length = 0;
    let (result, events, _) = go(&w, policy(), c);
    let t = result.expect("runs").report.totals;
    assert_eq!((t.pulled_blocks, t.fallback_blocks), (29, 1));
    assert!(events
        .iter()
        .any(|e| matches!(e, Event::Warning(text) if text.contains("but pulled another block"))));
}
