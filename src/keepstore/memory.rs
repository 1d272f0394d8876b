//! An in-memory [`Keepstores`]: servers keyed by origin, blocks in maps, and a script of
//! answers to play back (statuses, corrupt or short bodies, timeouts, lying reply headers).
//! It exists so the engine's rules can be unit-tested without sockets; the same behaviour
//! tests then run against keepsim over real HTTP (`mover::conformance`). It follows
//! keepstore's answers where it models them (§5) and models nothing else.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;

use super::{BlockBody, Cause, IndexSource, Keepstores, KeepstoresFactory, PutReply, PutWants};
use crate::cluster::{Cluster, Service};
use crate::keep::index_format::IndexEntry;
use crate::keep::locator::parse_keepstore;
use crate::keep::wire::{Bearer, MountInfo, PullItem, TrashItem};
use crate::keep::{BlockHash, BlockId, ShortLocator};
use crate::net::{NetError, Origin, Phase};

/// What a scripted request answers instead of the normal behaviour.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scripted {
    /// An error status with this body.
    Status(u16, String),
    /// The right head, then the body with one byte flipped.
    Corrupt,
    /// The right head, then half the body, then the connection closes.
    Truncated,
    /// The right head, then half the body, then no progress (an idle timeout).
    Stall,
    /// Nothing: the connection is refused.
    Refused,
}

/// One stored copy.
#[derive(Clone, Debug)]
pub struct MemBlock {
    pub data: Bytes,
    pub mtime_ns: i64,
}

/// One simulated server.
#[derive(Clone, Debug)]
pub struct MemServer {
    pub blocks: BTreeMap<BlockHash, MemBlock>,
    /// Answers for the next block requests (GET, HEAD, PUT; not index listings), in order.
    pub script: VecDeque<Scripted>,
    pub read_only: bool,
    /// Replicas one stored copy counts for (a mount's `Replication`).
    pub replication: u32,
    /// What `X-Keep-Replicas-Stored` claims instead of the truth (a lying server).
    pub claim_replicas: Option<u32>,
    /// The classes this server's mount stores.
    pub classes: Vec<String>,
    /// Whether PUT replies confirm classes at all (an old keepstore does not).
    pub confirms_classes: bool,
    /// Every index request fails with this status and body.
    pub index_fails: Option<(u16, String)>,
    /// The next this many index requests answer 503 (a keepstore restarting or busy).
    pub index_503_next: u32,
    /// The uuid of this server's one mount (default: derived from the server's uuid); give
    /// two servers the same one to model a volume they share.
    pub mount_uuid: Option<String>,
    pub gets: u64,
    pub heads: u64,
    pub puts: u64,
    pub index_reads: u64,
    /// The last pull list received (after `pull_drop_second_half_once`).
    pub pull_list: Vec<PullItem>,
    /// Pull lists received.
    pub pull_lists: u64,
    /// Pulls are carried out at once when the list arrives (keepstore's workers, without
    /// the wait): each item's block is copied from the first listed server holding a good
    /// copy. With `pull_ignore` lists are recorded and nothing is pulled.
    pub pull_ignore: bool,
    /// The next list of two or more items loses its second half (then the flag clears).
    pub pull_drop_second_half_once: bool,
    /// Pulls of these blocks always fail (keepstore's MD5 check of what it fetched).
    pub pull_fail: Vec<BlockHash>,
    pub trash_list: Vec<TrashItem>,
}

impl Default for MemServer {
    fn default() -> Self {
        MemServer {
            blocks: BTreeMap::new(),
            script: VecDeque::new(),
            read_only: false,
            replication: 1,
            claim_replicas: None,
            classes: vec!["default".to_string()],
            confirms_classes: true,
            index_fails: None,
            index_503_next: 0,
            mount_uuid: None,
            gets: 0,
            heads: 0,
            puts: 0,
            index_reads: 0,
            pull_list: Vec::new(),
            pull_lists: 0,
            pull_ignore: false,
            pull_drop_second_half_once: false,
            pull_fail: Vec::new(),
            trash_list: Vec::new(),
        }
    }
}

/// The shared state of every simulated server; clones share it.
#[derive(Clone, Default)]
pub struct MemoryKeepstores {
    servers: Arc<Mutex<HashMap<Origin, MemServer>>>,
}

/// A cluster of `n` in-memory servers: uuids `<id>-bi6l4-00000000000000<i>`, origins
/// `http://<label><i>.invalid:1` (never dialled).
pub fn cluster(label: &'static str, id: &str, n: usize) -> Cluster {
    Cluster {
        label,
        bearer: Bearer::new(&format!("{id}-token")),
        services: (0..n)
            .map(|i| Service {
                uuid: format!("{id}-bi6l4-{i:015}"),
                origin: Origin::new(false, &format!("{label}{i}.invalid"), 1),
                read_only: false,
                is_disk: true,
            })
            .collect(),
        insecure_tls: false,
    }
}

impl MemoryKeepstores {
    pub fn new() -> MemoryKeepstores {
        MemoryKeepstores::default()
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<Origin, MemServer>> {
        self.servers.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `f` on the server at `cluster.services[server]` (created on first use).
    pub fn with<R>(
        &self,
        cluster: &Cluster,
        server: usize,
        f: impl FnOnce(&mut MemServer) -> R,
    ) -> R {
        let origin = cluster.services[server].origin.clone();
        f(self.lock().entry(origin).or_default())
    }

    /// Stores `data` on one server with the given mtime; returns its `hash+size`.
    pub fn put(&self, cluster: &Cluster, server: usize, data: &[u8], mtime_ns: i64) -> BlockId {
        let hash = BlockHash(crate::hash::md5(data));
        self.with(cluster, server, |s| {
            s.blocks.insert(
                hash,
                MemBlock {
                    data: Bytes::copy_from_slice(data),
                    mtime_ns,
                },
            );
        });
        BlockId::new(hash, data.len() as u64)
    }

    /// Whether the server holds a good copy of `id`.
    pub fn holds(&self, cluster: &Cluster, server: usize, id: &BlockId) -> bool {
        self.with(cluster, server, |s| {
            s.blocks.get(&id.hash).is_some_and(|b| {
                b.data.len() as u64 == id.size && crate::hash::md5(&b.data) == id.hash.0
            })
        })
    }

    /// Queues scripted answers on a server.
    pub fn script(&self, cluster: &Cluster, server: usize, answers: &[Scripted]) {
        self.with(cluster, server, |s| {
            s.script.extend(answers.iter().cloned())
        });
    }
}

impl KeepstoresFactory for MemoryKeepstores {
    type Client = MemoryKeepstores;
    fn client(&self) -> MemoryKeepstores {
        self.clone()
    }
}

fn origin_of(cluster: &Cluster, server: usize) -> Result<Origin, Cause> {
    cluster
        .services
        .get(server)
        .map(|s| s.origin.clone())
        .ok_or_else(|| Cause::BadAnswer(format!("no server {server}")))
}

fn status(code: u16, body: &str) -> Cause {
    Cause::Status {
        status: code,
        body: body.to_string(),
    }
}

/// A body played back from memory, in 64 KiB pieces.
pub struct MemBody {
    data: Bytes,
    pos: usize,
    /// Stop after this many bytes with this failure.
    fail_at: Option<(usize, Cause)>,
    declared: u64,
}

const MEM_PIECE: usize = 64 << 10;

impl BlockBody for MemBody {
    fn content_length(&self) -> Option<u64> {
        Some(self.declared)
    }

    async fn read_chunk(&mut self, mut buf: Vec<u8>) -> (Result<usize, Cause>, Vec<u8>) {
        let limit = match &self.fail_at {
            Some((at, _)) => *at,
            None => self.data.len(),
        };
        if self.pos >= limit {
            if let Some((_, cause)) = self.fail_at.take() {
                return (Err(cause), buf);
            }
            return (Ok(0), buf);
        }
        let spare = buf.capacity() - buf.len();
        let n = (limit - self.pos).min(MEM_PIECE).min(spare);
        buf.extend_from_slice(&self.data[self.pos..self.pos + n]);
        self.pos += n;
        (Ok(n), buf)
    }
}

impl MemoryKeepstores {
    /// The next scripted answer, counting the request.
    fn take_script(&self, origin: &Origin, count: impl FnOnce(&mut MemServer)) -> Option<Scripted> {
        let mut servers = self.lock();
        let server = servers.entry(origin.clone()).or_default();
        count(server);
        server.script.pop_front()
    }

    fn refused(origin: &Origin) -> Cause {
        Cause::Net(NetError::Connect {
            origin: origin.clone(),
            source: std::io::Error::from(std::io::ErrorKind::ConnectionRefused),
        })
    }
}

impl Keepstores for MemoryKeepstores {
    type Body = MemBody;

    async fn get_block(
        &self,
        cluster: &Cluster,
        server: usize,
        locator: &str,
    ) -> Result<MemBody, Cause> {
        let origin = origin_of(cluster, server)?;
        let scripted = self.take_script(&origin, |s| s.gets += 1);
        let loc = parse_keepstore(locator).map_err(|_| status(400, "invalid locator"))?;
        if let Some(Scripted::Status(code, body)) = &scripted {
            return Err(status(*code, body));
        }
        if scripted == Some(Scripted::Refused) {
            return Err(Self::refused(&origin));
        }
        let stored = self
            .lock()
            .get(&origin)
            .and_then(|s| s.blocks.get(&loc.hash).cloned());
        let Some(stored) = stored else {
            return Err(status(404, "file does not exist"));
        };
        let declared = stored.data.len() as u64;
        let mut body = MemBody {
            data: stored.data.clone(),
            pos: 0,
            fail_at: None,
            declared,
        };
        match scripted {
            Some(Scripted::Corrupt) if !stored.data.is_empty() => {
                let mut bad = stored.data.to_vec();
                let middle = bad.len() / 2;
                bad[middle] ^= 0xff;
                body.data = Bytes::from(bad);
            }
            Some(Scripted::Truncated) => {
                body.fail_at = Some((
                    stored.data.len() / 2,
                    Cause::Net(NetError::Closed {
                        origin,
                        detail: "in the middle of the body",
                    }),
                ));
            }
            Some(Scripted::Stall) => {
                body.fail_at = Some((
                    stored.data.len() / 2,
                    Cause::Net(NetError::Timeout {
                        origin,
                        phase: Phase::Idle,
                    }),
                ));
            }
            _ => {}
        }
        Ok(body)
    }

    async fn head_block(
        &self,
        cluster: &Cluster,
        server: usize,
        locator: &str,
    ) -> Result<(), Cause> {
        let origin = origin_of(cluster, server)?;
        let scripted = self.take_script(&origin, |s| s.heads += 1);
        if let Some(Scripted::Status(code, body)) = scripted {
            return Err(status(code, &body));
        }
        let loc = parse_keepstore(locator).map_err(|_| status(400, "invalid locator"))?;
        let servers = self.lock();
        match servers.get(&origin).and_then(|s| s.blocks.get(&loc.hash)) {
            None => Err(status(404, "file does not exist")),
            Some(b) if crate::hash::md5(&b.data) != loc.hash.0 => {
                Err(status(502, "checksum mismatch in stored data"))
            }
            Some(_) => Ok(()),
        }
    }

    async fn put_block(
        &self,
        cluster: &Cluster,
        server: usize,
        block: &ShortLocator,
        body: Bytes,
        wants: &PutWants,
    ) -> Result<PutReply, Cause> {
        let origin = origin_of(cluster, server)?;
        let hash =
            &BlockHash::from_hex(block.hash_hex()).map_err(|_| status(400, "invalid locator"))?;
        let scripted = self.take_script(&origin, |s| s.puts += 1);
        match scripted {
            Some(Scripted::Status(code, text)) => return Err(status(code, &text)),
            Some(Scripted::Refused) => return Err(Self::refused(&origin)),
            _ => {}
        }
        if crate::hash::md5(&body) != hash.0 {
            return Err(status(400, "content hash did not match specified locator"));
        }
        let mut servers = self.lock();
        let s = servers.entry(origin).or_default();
        if s.read_only {
            return Err(status(507, "insufficient storage"));
        }
        if !wants.classes.is_empty() && !wants.classes.iter().any(|c| s.classes.contains(c)) {
            return Err(status(507, "insufficient storage"));
        }
        match s.blocks.get(hash) {
            Some(existing) if existing.data != body => {
                return Err(status(500, "hash collision"));
            }
            _ => {
                s.blocks.insert(
                    *hash,
                    MemBlock {
                        data: body,
                        mtime_ns: 1,
                    },
                );
            }
        }
        let replicas = s.claim_replicas.unwrap_or(s.replication);
        let classes = s.confirms_classes.then(|| {
            s.classes
                .iter()
                .map(|c| (c.clone(), s.replication))
                .collect()
        });
        Ok(PutReply {
            replicas,
            classes,
            locator: block.as_str().to_string(),
        })
    }

    async fn index(
        &self,
        cluster: &Cluster,
        server: usize,
        _source: IndexSource<'_>,
        prefix: &str,
        max_entries: usize,
        entries: &mut Vec<IndexEntry>,
    ) -> Result<(), Cause> {
        let origin = origin_of(cluster, server)?;
        let mut servers = self.lock();
        let s = servers.entry(origin.clone()).or_default();
        s.index_reads += 1;
        if let Some((code, text)) = &s.index_fails {
            return Err(status(*code, text));
        }
        if s.index_503_next > 0 {
            s.index_503_next -= 1;
            return Err(status(503, "busy"));
        }
        let start = entries.len();
        // Listed backwards: callers must not rely on index order (keepstore's is unsorted).
        for (hash, block) in s.blocks.iter().rev() {
            if hash.to_string().starts_with(prefix) {
                entries.push(IndexEntry {
                    hash: *hash,
                    size: block.data.len() as u64,
                    mtime_ns: block.mtime_ns,
                });
                if entries.len() - start > max_entries {
                    return Err(Cause::BadAnswer("index slice too large".into()));
                }
            }
        }
        Ok(())
    }

    async fn mounts(&self, cluster: &Cluster, server: usize) -> Result<Vec<MountInfo>, Cause> {
        let derived = cluster.services[server].uuid.replace("-bi6l4-", "-nyw5e-");
        self.with(cluster, server, |s| {
            Ok(vec![MountInfo {
                uuid: s.mount_uuid.clone().unwrap_or(derived),
                device_id: "memory".into(),
                allow_write: !s.read_only,
                allow_trash: true,
                replication: s.replication,
                storage_classes: s.classes.iter().map(|c| (c.clone(), true)).collect(),
            }])
        })
    }

    async fn send_pull(
        &self,
        cluster: &Cluster,
        server: usize,
        items: &[PullItem],
    ) -> Result<(), Cause> {
        if items.first().is_some_and(|i| i.locator.len() == 32) {
            return Err(status(
                400,
                "rejecting pull list containing a locator without a size hint",
            ));
        }
        let origin = origin_of(cluster, server)?;
        let mount = cluster.services[server].uuid.replace("-bi6l4-", "-nyw5e-");
        let mut servers = self.lock();
        let me = servers.entry(origin.clone()).or_default();
        let mut items = items.to_vec();
        if items.len() >= 2 && std::mem::take(&mut me.pull_drop_second_half_once) {
            items.truncate(items.len().div_ceil(2));
        }
        me.pull_lists += 1;
        me.pull_list = items.clone();
        if me.pull_ignore || me.read_only {
            return Ok(());
        }
        let failing = me.pull_fail.clone();
        for item in &items {
            let Ok(loc) = parse_keepstore(&item.locator) else {
                continue;
            };
            if failing.contains(&loc.hash)
                || !(item.mount_uuid.is_empty() || item.mount_uuid == mount)
            {
                continue;
            }
            let good = |b: &MemBlock| {
                loc.size.is_none_or(|s| s == b.data.len() as u64)
                    && crate::hash::md5(&b.data) == loc.hash.0
            };
            let found = item.servers.iter().find_map(|url| {
                let from: Origin = url.parse().ok()?;
                servers
                    .get(&from)?
                    .blocks
                    .get(&loc.hash)
                    .filter(|b| good(b))
                    .map(|b| b.data.clone())
            });
            if let (Some(data), Some(me)) = (found, servers.get_mut(&origin)) {
                me.blocks.insert(loc.hash, MemBlock { data, mtime_ns: 1 });
            }
        }
        Ok(())
    }

    async fn send_trash(
        &self,
        cluster: &Cluster,
        server: usize,
        items: &[TrashItem],
    ) -> Result<(), Cause> {
        self.with(cluster, server, |s| {
            s.trash_list = items.to_vec();
            for item in items {
                if let Ok(loc) = parse_keepstore(&item.locator) {
                    if s.blocks
                        .get(&loc.hash)
                        .is_some_and(|b| b.mtime_ns == item.block_mtime)
                    {
                        s.blocks.remove(&loc.hash);
                    }
                }
            }
        });
        Ok(())
    }

    async fn touch(
        &self,
        cluster: &Cluster,
        server: usize,
        short_locator: &str,
    ) -> Result<(), Cause> {
        let origin = origin_of(cluster, server)?;
        if let Some(Scripted::Status(code, body)) = self.take_script(&origin, |_| {}) {
            return Err(status(code, &body));
        }
        let loc = parse_keepstore(short_locator).map_err(|_| status(400, "invalid locator"))?;
        self.with(cluster, server, |s| match s.blocks.get_mut(&loc.hash) {
            Some(b) => {
                b.mtime_ns += 1;
                Ok(())
            }
            None => Err(status(404, "file does not exist")),
        })
    }
}
