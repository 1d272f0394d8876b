//! The transfer rules over the in-memory keepstores: reading from holders, bad replicas,
//! retry rounds, final answers, fan-out in rendezvous order, replica and class counting,
//! re-signing. The same behaviours run against keepsim over HTTP in `tests/conformance.rs`.

use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;

use super::*;
use crate::index::SourceBlock;
use crate::keep::BlockId;
use crate::keepstore::memory::{self, MemoryKeepstores, Scripted};
use crate::mover::gates::Gates;
use crate::net::{build_runtime, IoBackend};

struct Fixture {
    ks: MemoryKeepstores,
    job: Job,
    pool: BufferPool,
    hasher: HashBatcher,
    gates: Rc<Gates>,
    control: Control,
    counters: Counters,
    retry: RetryPolicy,
    replica_caps: Vec<Option<u32>>,
}

impl Fixture {
    fn new(src: usize, dst: usize, replicas: u32, classes: &[&str]) -> Fixture {
        let job = Job {
            src: memory::cluster("src", "aaaaa", src),
            dst: memory::cluster("dst", "bbbbb", dst),
            signing: None,
            dst_signing: None,
            replicas,
            classes: classes
                .iter()
                .map(|c| c.to_string())
                .collect::<Vec<_>>()
                .into(),
        };
        Fixture {
            ks: MemoryKeepstores::new(),
            gates: Gates::new(src, dst, 8),
            job,
            pool: BufferPool::new(64 << 20),
            hasher: HashBatcher::new(),
            control: Control::new(),
            counters: Counters::default(),
            retry: RetryPolicy {
                retries: 2,
                delay: Duration::from_millis(2),
            },
            replica_caps: Vec::new(),
        }
    }

    fn ctx(&self) -> Ctx<'_, MemoryKeepstores> {
        Ctx {
            keepstores: &self.ks,
            job: &self.job,
            retry: self.retry,
            hasher: &self.hasher,
            pool: &self.pool,
            gates: &self.gates,
            control: &self.control,
            counters: &self.counters,
            replica_caps: &self.replica_caps,
        }
    }

    /// Puts `data` on the given source servers; the block as the walk would hand it out.
    fn source_block(&self, data: &[u8], holders: &[usize]) -> SourceBlock {
        let mut id = BlockId::new(crate::keep::BlockHash(crate::hash::md5(data)), 0);
        for &h in holders {
            id = self.ks.put(&self.job.src, h, data, 1);
        }
        SourceBlock {
            id,
            holders: holders.iter().map(|&h| h as u16).collect(),
        }
    }

    fn gets(&self, server: usize) -> u64 {
        self.ks.with(&self.job.src, server, |s| s.gets)
    }

    fn puts(&self, server: usize) -> u64 {
        self.ks.with(&self.job.dst, server, |s| s.puts)
    }
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    let (runtime, _) = build_runtime(IoBackend::Auto).expect("runtime");
    runtime.block_on(f)
}

fn data(n: u8, len: usize) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(31) ^ n).collect()
}

#[test]
fn reads_a_holder_and_writes_the_replicas_in_rendezvous_order() {
    let f = Fixture::new(3, 3, 2, &[]);
    let block = f.source_block(&data(1, 100_000), &[1]);
    block_on(async {
        let ctx = f.ctx();
        let short = block.id.short();
        let mut outcome = Outcome::default();
        let lease = ctx
            .fetch(&block, &short, &[0, 1, 2], &mut outcome)
            .await
            .expect("fetched");
        assert_eq!(
            outcome.read_from,
            Some(1),
            "the holder, not the rendezvous first"
        );
        assert_eq!(f.gets(0), 0, "no probing when the index names the holder");
        let stored = ctx
            .store(&short, lease.freeze(), &[2, 0, 1], &mut outcome)
            .await
            .expect("stored");
        assert_eq!(stored, 2);
        assert_eq!(outcome.stored_on.len(), 2);
        assert!(f.ks.holds(&f.job.dst, 2, &block.id));
        assert!(f.ks.holds(&f.job.dst, 0, &block.id));
        assert!(!f.ks.holds(&f.job.dst, 1, &block.id), "no third replica");
    });
}

#[test]
fn a_bad_replica_sends_the_read_to_the_next_holder() {
    let f = Fixture::new(2, 1, 1, &[]);
    let block = f.source_block(&data(2, 5000), &[0, 1]);
    let first = source_order(&f.job.src, &block, &[0, 1])[0];
    f.ks.script(&f.job.src, first, &[Scripted::Corrupt]);
    block_on(async {
        let mut outcome = Outcome::default();
        let lease = f
            .ctx()
            .fetch(&block, &block.id.short(), &[0, 1], &mut outcome)
            .await
            .expect("the other holder is good");
        assert_eq!(outcome.bad_replicas, 1);
        assert_eq!(outcome.read_from, Some(1 - first));
        assert_eq!(crate::hash::md5(lease.as_slice()), block.id.hash.0);
    });
}

#[test]
fn transient_answers_are_retried_in_rounds_and_final_ones_are_not() {
    let f = Fixture::new(1, 1, 1, &[]);
    let block = f.source_block(&data(3, 1000), &[0]);
    f.ks.script(
        &f.job.src,
        0,
        &[
            Scripted::Status(503, "busy".into()),
            Scripted::Status(500, "oops".into()),
        ],
    );
    block_on(async {
        let mut outcome = Outcome::default();
        f.ctx()
            .fetch(&block, &block.id.short(), &[0], &mut outcome)
            .await
            .expect("third round succeeds");
        assert_eq!(f.gets(0), 3);
        assert_eq!(outcome.request_errors, 2);
    });
    let f = Fixture::new(1, 1, 1, &[]);
    let block = f.source_block(&data(3, 1000), &[0]);
    f.ks.script(&f.job.src, 0, &[Scripted::Status(400, "bad".into())]);
    block_on(async {
        let mut outcome = Outcome::default();
        let err = f
            .ctx()
            .fetch(&block, &block.id.short(), &[0], &mut outcome)
            .await
            .expect_err("400 is final");
        assert_eq!(f.gets(0), 1, "not retried");
        assert!(err.to_string().contains("400 bad"), "{err}");
    });
}

#[test]
fn a_block_nobody_has_is_not_found() {
    let f = Fixture::new(3, 1, 1, &[]);
    let block = SourceBlock {
        id: BlockId::new(crate::keep::BlockHash([7; 16]), 10),
        holders: vec![],
    };
    block_on(async {
        let mut outcome = Outcome::default();
        let err = f
            .ctx()
            .fetch(&block, &block.id.short(), &[2, 0, 1], &mut outcome)
            .await
            .expect_err("nowhere");
        assert_eq!(err.kind(), ErrorKind::NotFound);
        assert!(err.to_string().ends_with("Block not found"), "{err}");
        assert_eq!(outcome.request_errors, 0, "404s are not errors");
    });
}

#[test]
fn a_stalled_holder_goes_last_and_the_next_holder_goes_first() {
    let mut f = Fixture::new(2, 1, 1, &[]);
    f.retry.retries = 1;
    let block = f.source_block(&data(4, 300_000), &[0, 1]);
    let first = source_order(&f.job.src, &block, &[0, 1])[0];
    f.ks.script(&f.job.src, first, &[Scripted::Stall]);
    block_on(async {
        let mut outcome = Outcome::default();
        f.ctx()
            .fetch(&block, &block.id.short(), &[0, 1], &mut outcome)
            .await
            .expect("the other holder serves it");
        assert_eq!(outcome.read_from, Some(1 - first));
        assert_eq!(outcome.request_errors, 1);
    });
}

#[test]
fn an_expired_signature_is_re_signed_once_at_once() {
    let mut f = Fixture::new(1, 1, 1, &[]);
    f.retry.retries = 0;
    let block = f.source_block(&data(5, 1000), &[0]);
    f.ks.script(
        &f.job.src,
        0,
        &[Scripted::Status(401, "expired signature".into())],
    );
    block_on(async {
        let mut outcome = Outcome::default();
        f.ctx()
            .fetch(&block, &block.id.short(), &[0], &mut outcome)
            .await
            .expect("re-signed and read, even with no retries");
        assert_eq!(f.gets(0), 2);
    });
    f.ks.script(
        &f.job.src,
        0,
        &[
            Scripted::Status(401, "expired signature".into()),
            Scripted::Status(401, "expired signature".into()),
        ],
    );
    block_on(async {
        let mut outcome = Outcome::default();
        f.ctx()
            .fetch(&block, &block.id.short(), &[0], &mut outcome)
            .await
            .expect_err("only one re-sign");
        assert_eq!(f.gets(0), 4);
    });
}

#[test]
fn a_full_server_passes_its_replica_to_the_next_in_order() {
    let f = Fixture::new(1, 3, 2, &[]);
    f.ks.with(&f.job.dst, 0, |s| s.read_only = true);
    let body = Bytes::from(data(6, 2000));
    let id = BlockId::new(crate::keep::BlockHash(crate::hash::md5(&body)), 2000);
    block_on(async {
        let mut outcome = Outcome::default();
        f.ctx()
            .store(&id.short(), body, &[0, 1, 2], &mut outcome)
            .await
            .expect("two others take it");
        let mut on = outcome.stored_on.clone();
        on.sort_unstable();
        assert_eq!(on, vec![1, 2]);
        assert_eq!(f.puts(0), 1, "507 is final: not retried");
    });
}

#[test]
fn replicas_are_counted_from_the_servers_answers() {
    let f = Fixture::new(1, 3, 2, &[]);
    // A mount with Replication 2 (or a server saying so) satisfies two replicas at once.
    f.ks.with(&f.job.dst, 0, |s| s.claim_replicas = Some(2));
    let body = Bytes::from(data(7, 2000));
    let id = BlockId::new(crate::keep::BlockHash(crate::hash::md5(&body)), 2000);
    block_on(async {
        let mut outcome = Outcome::default();
        // Two uploads start at once (two wanted); the second is surplus but harmless.
        let stored = f
            .ctx()
            .store(&id.short(), body, &[0, 1, 2], &mut outcome)
            .await
            .expect("stored");
        assert!(stored >= 2);
        assert_eq!(f.puts(2), 0, "never a third server");
    });
}

#[test]
fn a_server_claiming_more_replicas_than_its_mounts_hold_counts_what_they_hold() {
    // Server 0 has one mount of replication 1 yet says it stored 2; server 1, written at
    // the same time, is full. The lie counts 1, so the second replica goes to server 2.
    let mut f = Fixture::new(1, 3, 2, &[]);
    f.replica_caps = vec![Some(1); 3];
    f.ks.with(&f.job.dst, 0, |s| s.claim_replicas = Some(2));
    f.ks.with(&f.job.dst, 1, |s| s.read_only = true);
    let body = Bytes::from(data(10, 2000));
    let id = BlockId::new(crate::keep::BlockHash(crate::hash::md5(&body)), 2000);
    block_on(async {
        let mut outcome = Outcome::default();
        let mut ctx = f.ctx();
        let stored = ctx
            .store(&id.short(), body.clone(), &[0, 1, 2], &mut outcome)
            .await
            .expect("stored");
        assert_eq!(stored, 2);
        let mut on = outcome.stored_on.clone();
        on.sort_unstable();
        assert_eq!(on, vec![0, 2], "the lie is not trusted");
        // A mount of replication 2 may truly store two at once.
        ctx.replica_caps = &[Some(2), Some(1), Some(1)];
        let puts_on_2 = f.puts(2);
        let mut outcome = Outcome::default();
        let body = Bytes::from(data(11, 2000));
        let id = BlockId::new(crate::keep::BlockHash(crate::hash::md5(&body)), 2000);
        ctx.store(&id.short(), body, &[0, 1, 2], &mut outcome)
            .await
            .expect("stored");
        assert_eq!(f.puts(2), puts_on_2, "two replicas held on 0 (1 is full)");
    });
}

#[test]
fn every_wanted_class_must_confirm_its_replicas() {
    let f = Fixture::new(1, 3, 1, &["hot", "cold"]);
    f.ks.with(&f.job.dst, 0, |s| s.classes = vec!["hot".into()]);
    f.ks.with(&f.job.dst, 1, |s| s.classes = vec!["hot".into()]);
    f.ks.with(&f.job.dst, 2, |s| s.classes = vec!["cold".into()]);
    let body = Bytes::from(data(8, 2000));
    let id = BlockId::new(crate::keep::BlockHash(crate::hash::md5(&body)), 2000);
    block_on(async {
        let mut outcome = Outcome::default();
        f.ctx()
            .store(&id.short(), body, &[0, 1, 2], &mut outcome)
            .await
            .expect("hot on 0, cold on 2");
        let mut on = outcome.stored_on.clone();
        on.sort_unstable();
        assert_eq!(on, vec![0, 2], "server 1 refused: it has no cold mount");
    });
}

#[test]
fn a_class_no_server_stores_fails_the_block_naming_it() {
    let f = Fixture::new(1, 2, 1, &["archive"]);
    let body = Bytes::from(data(9, 100));
    let id = BlockId::new(crate::keep::BlockHash(crate::hash::md5(&body)), 100);
    block_on(async {
        let mut outcome = Outcome::default();
        let err = f
            .ctx()
            .store(&id.short(), body, &[0, 1], &mut outcome)
            .await
            .expect_err("no archive mount anywhere");
        let text = err.to_string();
        assert!(text.contains("classes not confirmed: archive"), "{text}");
        assert!(text.contains("507 insufficient storage"), "{text}");
    });
}

#[test]
fn a_server_that_does_not_confirm_classes_turns_class_tracking_off() {
    let f = Fixture::new(1, 2, 1, &["hot"]);
    f.ks.with(&f.job.dst, 0, |s| {
        s.confirms_classes = false;
        s.classes = vec!["hot".into()];
    });
    let body = Bytes::from(data(10, 100));
    let id = BlockId::new(crate::keep::BlockHash(crate::hash::md5(&body)), 100);
    block_on(async {
        let mut outcome = Outcome::default();
        f.ctx()
            .store(&id.short(), body, &[0, 1], &mut outcome)
            .await
            .expect("one replica counted, as keepclient counts it");
        assert_eq!(outcome.stored_on, vec![0]);
    });
}

#[test]
fn overload_answers_shrink_that_servers_gate() {
    let f = Fixture::new(1, 2, 1, &[]);
    f.ks.script(&f.job.dst, 0, &[Scripted::Status(503, "busy".into())]);
    let body = Bytes::from(data(11, 100));
    let id = BlockId::new(crate::keep::BlockHash(crate::hash::md5(&body)), 100);
    block_on(async {
        let mut outcome = Outcome::default();
        f.ctx()
            .store(&id.short(), body, &[0, 1], &mut outcome)
            .await
            .expect("the next server takes it");
        assert_eq!(f.gates.limit(Key::Dst(0)), 4, "halved from 8");
        assert_eq!(f.gates.limit(Key::Dst(1)), 8);
    });
}

/// `X-Keep-Replicas-Stored` is uncapped when a server's mounts are unknown: two answers whose
/// claims add past u32::MAX saturate instead of overflowing (a panic in debug builds, a
/// wrapped count that asks for more copies in release).
#[test]
fn replica_claims_saturate() {
    let mut need = ClassNeeds::new(2, &std::sync::Arc::from([]));
    need.confirmed(u32::MAX, None);
    need.confirmed(1, None);
    assert_eq!(need.stored, u32::MAX);
    assert!(need.satisfied());
}

/// Storage classes: the wants start as the job's own list (shared, not copied), shrink to the
/// classes still short, and are met when every class has its replicas; a class the server
/// confirms that the job did not ask for changes nothing.
#[test]
fn class_needs_track_each_class() {
    let classes: std::sync::Arc<[String]> = ["hot".to_string(), "cold".to_string()].into();
    let mut need = ClassNeeds::new(2, &classes);
    assert!(std::sync::Arc::ptr_eq(&need.classes_todo(), &classes));
    assert_eq!(need.concurrency(), 2);
    need.confirmed(1, Some(&[("hot".into(), 2), ("other".into(), 5)]));
    assert_eq!(&*need.classes_todo(), ["cold".to_string()]);
    assert_eq!(need.concurrency(), 2);
    assert!(!need.satisfied());
    need.confirmed(1, Some(&[("cold".into(), 1)]));
    assert_eq!(need.concurrency(), 1);
    assert!(!need.satisfied());
    need.confirmed(1, Some(&[("cold".into(), 3)]));
    assert!(need.satisfied());
    assert_eq!(need.concurrency(), 0);
    assert!(need.classes_todo().is_empty());
}

/// A class named twice is one class: one confirmation meets both entries. Regression: the
/// first version of the per-index counters decremented only the first entry, and such a
/// block was PUT until no server was left (found in review, never released).
#[test]
fn a_class_named_twice_is_one_class() {
    let classes: std::sync::Arc<[String]> = ["b".to_string(), "b".to_string()].into();
    let mut need = ClassNeeds::new(1, &classes);
    need.confirmed(1, Some(&[("b".into(), 1)]));
    assert!(need.satisfied());
    assert_eq!(need.concurrency(), 0);
}
