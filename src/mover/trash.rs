//! Removing moved blocks from the source, keepstore's way, and proving it (`move`,
//! `vacate`). A slice's blocks reach the trasher only once every one of them has settled and
//! each movable one has its wanted replicas confirmed on the destination and one replica
//! read back (dCache's rule: the source is touched only after the target is confirmed).
//!
//! Removal goes through keepstore's own trash API, so keepstore's rules apply: `PUT /trash`
//! with `block_mtime` equal to the index mtime (a copy rewritten since is left alone);
//! nothing happens unless `Collections.BlobTrash` is on; copies younger than
//! `BlobSigningTTL` are skipped; trashed copies can be untrashed for `BlobTrashLifetime`.
//! `PUT /trash` answers at once and *replaces* the server's queue (and a running keep-balance
//! replaces it again), so the trasher sends one list per server at a time, at most
//! keep-balance's 100 000 entries, and confirms each by reading the source index again,
//! with growing patience. Every block it could not remove is reported with the reason when
//! it can tell.
//!
//! `vacate` adds two things. Before any trash list, the rest of the cluster's listings of
//! the slice are read again, and a block is trashed only if they show its replicas (summed
//! over distinct mounts, as keep-balance counts): never the last replica, whatever a PUT
//! reply said. And when mounts rather than keepstores are vacated, the vacated mount is
//! listed on its own and every trash item names it (`mount_uuid`), so keepstore trashes
//! that copy only and leaves the server's other mounts alone.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::counters::Counters;
use super::events::{Action, BlockError, BlockRecord, Emitter, Event};
use crate::cluster::Cluster;
use crate::index::join::fetch_listings;
use crate::index::layout::Layout;
use crate::index::walk::MAX_SLICE_ENTRIES;
use crate::keep::index_format::IndexEntry;
use crate::keep::wire::{TrashItem, LIST_LIMIT};
use crate::keep::BlockId;
use crate::keepstore::{ErrorKind, IndexSource, Keepstores, KeepstoresFactory};
use crate::net::{build_runtime, IoBackend};

/// A block whose destination replicas are confirmed and verified: it may leave the source.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MovedBlock {
    pub id: BlockId,
    /// The source servers (indexes into the source cluster) whose index listed it.
    pub holders: Vec<u16>,
    /// Replicas it must keep on the destination (vacate: its own count).
    pub replicas: u32,
}

/// A settled slice's movable blocks.
#[derive(Clone, Debug)]
pub struct MovedSlice {
    pub prefix: String,
    pub blocks: Vec<MovedBlock>,
}

/// How the trasher works.
#[derive(Clone, Debug)]
pub struct TrashPolicy {
    /// The source's `BlobSigningTTL`: keepstore skips copies younger than this.
    pub blob_signing_ttl: Duration,
    /// How long to keep re-reading the index for one list before giving up on what is
    /// still listed.
    pub patience: Duration,
    pub io: IoBackend,
    /// Vacate by mount: per source server (index into the source cluster), the mounts to
    /// empty on it. Those servers are listed per mount and their trash items name the mount;
    /// the others are listed and trashed whole.
    pub mounts_by_server: BTreeMap<usize, Vec<String>>,
    /// Vacate: where the replicas must be (the rest of the cluster) before a block may be
    /// trashed.
    pub confirm: Option<Elsewhere>,
}

/// The rest of the cluster, as `vacate` counts a block's replicas there.
#[derive(Clone, Debug)]
pub struct Elsewhere {
    pub cluster: Cluster,
    /// Its listings: every mount but the vacated ones.
    pub layout: Layout,
}

impl Elsewhere {
    /// Per block listed under `prefix`: its replicas, the sum of `replication` over the
    /// distinct locations listing it.
    async fn replicas<K: Keepstores>(
        &self,
        keepstores: &K,
        prefix: &str,
    ) -> Result<BTreeMap<BlockId, u32>, String> {
        let (listings, _) = fetch_listings(keepstores, &self.cluster, &self.layout, prefix)
            .await
            .map_err(|e| e.to_string())?;
        let mut count: BTreeMap<BlockId, u32> = BTreeMap::new();
        for listing in listings {
            let replication = self
                .layout
                .locations
                .get(listing.location as usize)
                .map_or(1, |l| l.replication);
            for (id, _) in listing.entries {
                let n = count.entry(id).or_default();
                *n = n.saturating_add(replication);
            }
        }
        Ok(count)
    }
}

/// The trasher thread: removes each slice's moved blocks from the source servers.
pub struct Trasher {
    handle: Option<std::thread::JoinHandle<()>>,
}

impl Trasher {
    /// Starts the thread; it works until `slices` is closed (the engine's run ended).
    pub fn start<F: KeepstoresFactory>(
        factory: Arc<F>,
        src: Cluster,
        policy: TrashPolicy,
        slices: crossbeam_channel::Receiver<MovedSlice>,
        counters: Arc<Counters>,
        emitter: Emitter,
    ) -> std::io::Result<Trasher> {
        let handle = std::thread::Builder::new()
            .name("keepmover-trash".into())
            .spawn(move || {
                let Ok((runtime, _)) = build_runtime(policy.io) else {
                    return;
                };
                runtime.block_on(async move {
                    let keepstores = factory.client();
                    let mut emitter = emitter;
                    while let Ok(slice) = slices.recv() {
                        trash_slice(&keepstores, &src, &policy, &slice, &counters, &mut emitter)
                            .await;
                        emitter.flush();
                    }
                });
            })?;
        Ok(Trasher {
            handle: Some(handle),
        })
    }

    /// Waits until every slice sent has been dealt with.
    pub fn finish(mut self) {
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

/// What one trash list covers: a whole server, or one mount of it (vacate by mount).
#[derive(Clone, Debug, PartialEq, Eq)]
struct Unit {
    server: usize,
    mount: Option<String>,
}

impl Unit {
    fn source(&self) -> IndexSource<'_> {
        match &self.mount {
            Some(uuid) => IndexSource::Mount(uuid),
            None => IndexSource::Server,
        }
    }

    fn name(&self, src: &Cluster) -> String {
        let origin = src.services[self.server].origin.to_string();
        match &self.mount {
            Some(uuid) => format!("{origin} (mount {uuid})"),
            None => origin,
        }
    }
}

/// The trash lists a slice needs: one per holding server, or, on a server whose mounts are
/// vacated, one per vacated mount (a mount several servers expose, once).
fn units(holders: &std::collections::BTreeSet<usize>, policy: &TrashPolicy) -> Vec<Unit> {
    let mut out: Vec<Unit> = Vec::new();
    for &server in holders {
        match policy.mounts_by_server.get(&server) {
            None => out.push(Unit {
                server,
                mount: None,
            }),
            Some(mounts) => {
                for mount in mounts {
                    if !out.iter().any(|u| u.mount.as_ref() == Some(mount)) {
                        out.push(Unit {
                            server,
                            mount: Some(mount.clone()),
                        });
                    }
                }
            }
        }
    }
    out
}

/// One unit's listing of `prefix`, or why not.
async fn listing<K: Keepstores>(
    keepstores: &K,
    src: &Cluster,
    unit: &Unit,
    prefix: &str,
) -> Result<Vec<IndexEntry>, String> {
    let mut entries = Vec::new();
    keepstores
        .index(
            src,
            unit.server,
            unit.source(),
            prefix,
            MAX_SLICE_ENTRIES,
            &mut entries,
        )
        .await
        .map_err(|e| e.to_string())?;
    Ok(entries)
}

/// Why a block stayed on the source.
fn report_kept(emitter: &mut Emitter, counters: &Counters, block: &BlockId, reason: &str) {
    counters.not_removed_blocks.fetch_add(1, Relaxed);
    emitter.emit(Event::Done(BlockRecord {
        block: block.short(),
        action: Action::Failed,
        bytes: block.size,
        source: None,
        stored_on: Vec::new(),
        attempts: 0,
        error: Some(BlockError {
            kind: ErrorKind::Protocol,
            text: format!("not removed from the source: {reason}"),
        }),
    }));
}

async fn trash_slice<K: Keepstores>(
    keepstores: &K,
    src: &Cluster,
    policy: &TrashPolicy,
    slice: &MovedSlice,
    counters: &Counters,
    emitter: &mut Emitter,
) {
    if slice.blocks.is_empty() {
        return;
    }
    // Per block: still listed somewhere (after the lists), and why if known.
    let mut kept: BTreeMap<BlockId, String> = BTreeMap::new();
    if let Some(elsewhere) = &policy.confirm {
        match elsewhere.replicas(keepstores, &slice.prefix).await {
            Ok(count) => {
                for b in &slice.blocks {
                    let have = count.get(&b.id).copied().unwrap_or(0);
                    if have < b.replicas {
                        kept.insert(
                            b.id,
                            format!("the rest of the cluster lists {have} replicas of it, not the {} it must keep; not trashed", b.replicas),
                        );
                    }
                }
            }
            Err(why) => {
                for b in &slice.blocks {
                    kept.insert(
                        b.id,
                        format!("its replicas elsewhere could not be counted ({why}); not trashed"),
                    );
                }
            }
        }
    }
    let wanted: HashSet<BlockId> = slice
        .blocks
        .iter()
        .map(|b| b.id)
        .filter(|id| !kept.contains_key(id))
        .collect();
    let servers: std::collections::BTreeSet<usize> = slice
        .blocks
        .iter()
        .filter(|b| wanted.contains(&b.id))
        .flat_map(|b| b.holders.iter().map(|&h| h as usize))
        .collect();
    let cutoff = now_ns().saturating_sub(policy.blob_signing_ttl.as_nanos() as i64);
    for unit in units(&servers, policy) {
        let origin = unit.name(src);
        let entries = match listing(keepstores, src, &unit, &slice.prefix).await {
            Ok(e) => e,
            Err(why) => {
                for b in slice
                    .blocks
                    .iter()
                    .filter(|b| wanted.contains(&b.id))
                    .filter(|b| b.holders.contains(&(unit.server as u16)))
                {
                    kept.insert(b.id, format!("{origin}: index unreadable: {why}"));
                }
                continue;
            }
        };
        let mut items: Vec<TrashItem> = Vec::new();
        for e in entries {
            let id = BlockId::new(e.hash, e.size);
            if !wanted.contains(&id) {
                continue;
            }
            if e.mtime_ns > cutoff {
                kept.insert(
                    id,
                    format!(
                        "{origin}: younger than the source's BlobSigningTTL ({}s); keepstore will not trash it yet",
                        policy.blob_signing_ttl.as_secs()
                    ),
                );
                continue;
            }
            items.push(TrashItem {
                locator: id.short().to_string(),
                block_mtime: e.mtime_ns,
                mount_uuid: unit.mount.clone().unwrap_or_default(),
            });
        }
        for chunk in items.chunks(LIST_LIMIT) {
            let left = send_and_confirm(keepstores, src, &unit, &slice.prefix, chunk, policy).await;
            match left {
                Ok(still) => {
                    for id in still {
                        kept.entry(id).or_insert_with(|| {
                            format!("{origin}: still listed after {}s (is Collections.BlobTrash on? a running keep-balance replaces trash lists: pause it)", policy.patience.as_secs())
                        });
                    }
                }
                Err(why) => {
                    for item in chunk {
                        if let Some(id) = short_to_id(&item.locator) {
                            kept.insert(id, format!("{origin}: {why}"));
                        }
                    }
                }
            }
        }
    }
    for block in &slice.blocks {
        match kept.get(&block.id) {
            Some(reason) => report_kept(emitter, counters, &block.id, reason),
            None => {
                counters.trashed_blocks.fetch_add(1, Relaxed);
                counters.trashed_bytes.fetch_add(block.id.size, Relaxed);
                emitter.emit(Event::Done(BlockRecord {
                    block: block.id.short(),
                    action: Action::Trashed,
                    bytes: block.id.size,
                    source: block.holders.first().copied(),
                    stored_on: Vec::new(),
                    attempts: 0,
                    error: None,
                }));
            }
        }
    }
}

fn short_to_id(locator: &str) -> Option<BlockId> {
    let loc = crate::keep::locator::parse_keepstore(locator).ok()?;
    Some(BlockId::new(loc.hash, loc.size?))
}

/// Sends one trash list and re-reads the index until its blocks are gone or patience runs
/// out; returns the blocks still listed.
async fn send_and_confirm<K: Keepstores>(
    keepstores: &K,
    src: &Cluster,
    unit: &Unit,
    prefix: &str,
    items: &[TrashItem],
    policy: &TrashPolicy,
) -> Result<Vec<BlockId>, String> {
    keepstores
        .send_trash(src, unit.server, items)
        .await
        .map_err(|e| format!("PUT /trash failed: {e}"))?;
    let targets: HashSet<(BlockId, i64)> = items
        .iter()
        .filter_map(|i| short_to_id(&i.locator).map(|id| (id, i.block_mtime)))
        .collect();
    let began = Instant::now();
    let mut wait = Duration::from_millis(100);
    loop {
        compio::time::sleep(wait).await;
        let entries = listing(keepstores, src, unit, prefix).await?;
        let still: Vec<BlockId> = entries
            .iter()
            .map(|e| (BlockId::new(e.hash, e.size), e.mtime_ns))
            .filter(|t| targets.contains(t))
            .map(|(id, _)| id)
            .collect();
        if still.is_empty() || began.elapsed() >= policy.patience {
            return Ok(still);
        }
        wait = (wait * 2).min(Duration::from_secs(5));
    }
}
