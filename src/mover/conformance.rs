//! The behaviour every [`Keepstores`] implementation must show, as a suite that runs against
//! any of them (in the spirit of rclone's fstests): the in-memory fake runs it in unit tests,
//! keepsim over real HTTP runs it in `tests/conformance.rs`, and a future backend (keepproxy,
//! S3 directly) would run it too. Each check drives the engine's transfer rules through the
//! implementation, so the rules and the backend are checked together.

use std::rc::Rc;
use std::time::Duration;

use crate::cluster::Cluster;
use crate::index::walk::{diff_slice, DstIndexErrors};
use crate::index::SourceBlock;
use crate::keep::{BlockHash, BlockId};
use crate::keepstore::{ErrorKind, Keepstores};
use crate::mover::control::Control;
use crate::mover::counters::Counters;
use crate::mover::gates::Gates;
use crate::mover::hash_batch::HashBatcher;
use crate::mover::pool::BufferPool;
use crate::mover::retry::RetryPolicy;
use crate::mover::transfer::{source_order, Ctx, Job, Outcome};

/// What the suite needs from a backend under test: two clusters of at least three servers
/// each, a way to place blocks and faults, and a way to look at what landed.
pub trait Harness {
    type Keepstores: Keepstores;
    /// A client for the current thread.
    fn keepstores(&self) -> Self::Keepstores;
    /// The job: source, destination, signing as the source wants it.
    fn job(&self, replicas: u32) -> Job;
    /// Stores `data` on source server `server` (directly, not through the trait).
    fn put_source(&self, server: usize, data: &[u8]) -> BlockId;
    /// Whether destination server `server` holds a good copy of `id`.
    fn destination_holds(&self, server: usize, id: &BlockId) -> bool;
    /// From now on, every block GET from source server `server` returns wrong bytes.
    fn corrupt_reads(&self, server: usize);
    /// From now on, destination server `server` answers every PUT with 507.
    fn fill_up(&self, server: usize);
}

fn data(n: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(37) ^ n ^ (i >> 8) as u8)
        .collect()
}

fn rendezvous(cluster: &Cluster, id: &BlockId) -> Vec<usize> {
    crate::keep::rendezvous::probe_order_go(id.short().hash_hex(), &cluster.uuids())
}

struct Parts {
    pool: BufferPool,
    hasher: HashBatcher,
    gates: Rc<Gates>,
    control: Control,
    counters: Counters,
}

impl Parts {
    fn new(job: &Job) -> Parts {
        Parts {
            pool: BufferPool::new(64 << 20),
            hasher: HashBatcher::new(),
            gates: Gates::new(job.src.services.len(), job.dst.services.len(), 8),
            control: Control::new(),
            counters: Counters::default(),
        }
    }

    fn ctx<'a, K: Keepstores>(&'a self, ks: &'a K, job: &'a Job) -> Ctx<'a, K> {
        Ctx {
            keepstores: ks,
            job,
            retry: RetryPolicy {
                retries: 1,
                delay: Duration::from_millis(5),
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

/// Copies one block and returns where it was read from and stored.
async fn copy<K: Keepstores>(
    ks: &K,
    job: &Job,
    block: &SourceBlock,
) -> Result<Outcome, crate::mover::transfer::TransferError> {
    let parts = Parts::new(job);
    let ctx = parts.ctx(ks, job);
    let short = block.id.short();
    let mut outcome = Outcome::default();
    let lease = ctx
        .fetch(
            block,
            &short,
            &rendezvous(&job.src, &block.id),
            &mut outcome,
        )
        .await?;
    let writable = job.dst.writable();
    let order: Vec<usize> = rendezvous(&job.dst, &block.id)
        .into_iter()
        .filter(|s| writable.contains(s))
        .collect();
    ctx.store(&short, lease.freeze(), &order, &mut outcome)
        .await?;
    Ok(outcome)
}

/// A block on one source server lands on the first `replicas` destination servers in
/// rendezvous order, read from its holder.
pub async fn copies_to_rendezvous_order<H: Harness>(h: &H) {
    let job = h.job(2);
    let ks = h.keepstores();
    let id = h.put_source(1, &data(1, 200_000));
    let block = SourceBlock {
        id,
        holders: vec![1],
    };
    let outcome = copy(&ks, &job, &block).await.expect("copied");
    assert_eq!(outcome.read_from, Some(1));
    let order = rendezvous(&job.dst, &id);
    for (rank, &server) in order.iter().enumerate() {
        assert_eq!(
            h.destination_holds(server, &id),
            rank < 2,
            "server {server}, rank {rank} in rendezvous order"
        );
    }
}

/// A holder serving wrong bytes is counted and the next holder is read.
pub async fn bad_replica_reads_the_next_holder<H: Harness>(h: &H) {
    let job = h.job(1);
    let ks = h.keepstores();
    let bytes = data(2, 70_000);
    let id = h.put_source(0, &bytes);
    h.put_source(2, &bytes);
    let block = SourceBlock {
        id,
        holders: vec![0, 2],
    };
    let first = source_order(&job.src, &block, &rendezvous(&job.src, &id))[0];
    h.corrupt_reads(first);
    let outcome = copy(&ks, &job, &block).await.expect("the good holder");
    assert_eq!(outcome.read_from, Some(2 - first));
    assert_eq!(outcome.bad_replicas, 1);
}

/// A full destination server passes its replica to the next in order.
pub async fn full_server_passes_to_the_next<H: Harness>(h: &H) {
    let job = h.job(1);
    let ks = h.keepstores();
    let id = h.put_source(0, &data(3, 5000));
    let first = rendezvous(&job.dst, &id)[0];
    h.fill_up(first);
    let block = SourceBlock {
        id,
        holders: vec![0],
    };
    let outcome = copy(&ks, &job, &block).await.expect("the next server");
    assert_eq!(outcome.stored_on.len(), 1);
    assert_ne!(outcome.stored_on[0], first);
    assert!(!h.destination_holds(first, &id));
}

/// A block no server has fails as not found.
pub async fn missing_everywhere_is_not_found<H: Harness>(h: &H) {
    let job = h.job(1);
    let ks = h.keepstores();
    let block = SourceBlock {
        id: BlockId::new(BlockHash([0x5a; 16]), 3),
        holders: vec![],
    };
    let err = copy(&ks, &job, &block).await.expect_err("nowhere");
    assert_eq!(err.kind(), ErrorKind::NotFound);
}

/// The index walk sees what was put and what was copied, and diffs by `hash+size`.
pub async fn index_diff_sees_copies<H: Harness>(h: &H) {
    let job = h.job(1);
    let ks = h.keepstores();
    let a = h.put_source(0, &data(4, 1000));
    let b = h.put_source(1, &data(5, 1000));
    let copied = SourceBlock {
        id: a,
        holders: vec![0],
    };
    copy(&ks, &job, &copied).await.expect("copied");
    for id in [a, b] {
        let short = id.short();
        let prefix = &short.hash_hex()[..2];
        let diff = diff_slice(&ks, &job.src, &job.dst, prefix, DstIndexErrors::Fail, None)
            .await
            .expect("index readable");
        let missing: Vec<BlockId> = diff.missing.iter().map(|m| m.id).collect();
        assert_eq!(missing.contains(&id), id == b, "{id:?}");
        if id == b {
            let entry = diff.missing.iter().find(|m| m.id == b).expect("listed");
            assert_eq!(entry.holders, vec![1]);
        }
    }
}

/// Runs every check, each on a fresh harness from `make`.
pub async fn run_all<H: Harness>(make: impl Fn() -> H) {
    copies_to_rendezvous_order(&make()).await;
    bad_replica_reads_the_next_holder(&make()).await;
    full_server_passes_to_the_next(&make()).await;
    missing_everywhere_is_not_found(&make()).await;
    index_diff_sees_copies(&make()).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keepstore::memory::{self, MemoryKeepstores, Scripted};

    struct MemoryHarness {
        ks: MemoryKeepstores,
        src: Cluster,
        dst: Cluster,
    }

    impl Harness for MemoryHarness {
        type Keepstores = MemoryKeepstores;
        fn keepstores(&self) -> MemoryKeepstores {
            self.ks.clone()
        }
        fn job(&self, replicas: u32) -> Job {
            Job {
                src: self.src.clone(),
                dst: self.dst.clone(),
                signing: None,
                dst_signing: None,
                replicas,
                classes: std::sync::Arc::from([]),
            }
        }
        fn put_source(&self, server: usize, data: &[u8]) -> BlockId {
            self.ks.put(&self.src, server, data, 1)
        }
        fn destination_holds(&self, server: usize, id: &BlockId) -> bool {
            self.ks.holds(&self.dst, server, id)
        }
        fn corrupt_reads(&self, server: usize) {
            self.ks
                .script(&self.src, server, &vec![Scripted::Corrupt; 100]);
        }
        fn fill_up(&self, server: usize) {
            self.ks.with(&self.dst, server, |s| s.read_only = true);
        }
    }

    #[test]
    fn the_in_memory_keepstores_conform() {
        let (runtime, _) = crate::net::build_runtime(crate::net::IoBackend::Auto).expect("runtime");
        runtime.block_on(run_all(|| MemoryHarness {
            ks: MemoryKeepstores::new(),
            src: memory::cluster("src", "aaaaa", 3),
            dst: memory::cluster("dst", "bbbbb", 4),
        }));
    }
}
