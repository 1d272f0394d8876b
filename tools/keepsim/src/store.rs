//! Block storage for one simulated mount (volume), with keepstore's volume semantics:
//! write, read, touch, mtime, trash (kept for the trash lifetime, then gone), untrash, and
//! the index in keepstore's order. Three kinds of storage:
//!
//! * [`Storage::Memory`]: the bytes in memory.
//! * [`Storage::Directory`]: files in keepstore's layout (`<root>/<first 3 hex>/<hash>`,
//!   trash renamed to `<hash>.trash.<deadline>` as unix_volume.go does).
//! * [`Storage::Digest`]: only hash, size and mtime are kept (the PUT body was MD5-checked
//!   as it streamed in); reads of the data answer an explicit error. For a demo
//!   destination of any size.
//!
//! A mount can also carry a layer of synthetic blocks ([`crate::blockset::BlockSet`]) that
//! it lists and serves without storing them: 4 bytes per block copy, plus a small overlay
//! for the copies that were touched or trashed.
//!
//! Index order: Directory mounts list their 3-hex subdirectories in real readdir order,
//! entries sorted by name inside each (unix_volume.go); memory, digest and synthetic mounts
//! imitate that with a fixed pseudo-random order of the 4096 subdirectories per mount; a
//! shared (S3-like) mount lists in key order, and stores mtimes in whole seconds, as an S3
//! bucket does. The listing is produced one subdirectory at a time, never whole.

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{BufMut, Bytes, BytesMut};

use crate::blockset::BlockSet;
use crate::keep::locator::BlockHash;

pub use crate::blockset::pseudo_random_bytes;

/// The mtime of synthetic blocks (2023-11-14): older than any signing TTL, as blocks of a
/// long-lived cluster are.
pub const SYNTHETIC_MTIME_NS: i64 = 1_700_000_000_000_000_000;

pub fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

/// Where a mount keeps its blocks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Storage {
    Memory,
    Directory(PathBuf),
    /// Hash, size and mtime only.
    Digest,
}

/// What a write stores.
#[derive(Clone, Debug)]
pub enum Payload {
    /// The bytes; `verified` when their MD5 was checked against the hash.
    Bytes { data: Bytes, verified: bool },
    /// Only the size (digest storage).
    Digest { size: u64 },
}

impl Payload {
    pub fn size(&self) -> u64 {
        match self {
            Payload::Bytes { data, .. } => data.len() as u64,
            Payload::Digest { size } => *size,
        }
    }
}

/// A stored copy as read back.
#[derive(Clone)]
pub enum Copy {
    /// The bytes; `verified` when known to match the hash (written after an MD5 check and
    /// never altered), else they must be checked before being trusted.
    Bytes { data: Bytes, verified: bool },
    /// A synthetic block (correct by construction).
    Synthetic { set: Arc<BlockSet>, index: u32 },
    /// Only a digest record: the data are not kept.
    DigestOnly { size: u64 },
}

impl Copy {
    pub fn size(&self) -> u64 {
        match self {
            Copy::Bytes { data, .. } => data.len() as u64,
            Copy::Synthetic { set, index } => set.size_of(*index),
            Copy::DigestOnly { size } => *size,
        }
    }
}

/// Why a write failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteError {
    /// No room (keepstore answers 507 when every mount is full).
    Full,
    /// Any other volume failure (503).
    Other,
}

#[derive(Clone, Debug)]
struct Entry {
    size: u64,
    mtime_ns: i64,
    /// `None` for digest storage.
    data: Option<Bytes>,
    verified: bool,
}

#[derive(Clone, Debug)]
struct Trashed {
    entry: Entry,
    deadline_ns: i64,
}

/// What happened to a synthetic copy since the set was placed.
#[derive(Clone, Copy, Debug)]
enum SynthState {
    Touched(i64),
    Trashed { mtime_ns: i64, deadline_ns: i64 },
    Gone,
}

struct SynthLayer {
    set: Arc<BlockSet>,
    /// Positions (in the set's hash order) of the blocks on this mount, ascending.
    members: Vec<u32>,
    overlay: RwLock<HashMap<u32, SynthState>>,
}

impl SynthLayer {
    fn position(&self, hash: &BlockHash) -> Option<u32> {
        let pos = self.set.position(hash)? as u32;
        self.members.binary_search(&pos).ok().map(|_| pos)
    }

    fn state(&self, pos: u32) -> Option<SynthState> {
        self.overlay.read().ok()?.get(&pos).copied()
    }

    /// (index, mtime) of a live synthetic copy.
    fn live(&self, hash: &BlockHash) -> Option<(u32, u32, i64)> {
        let pos = self.position(hash)?;
        let mtime = match self.state(pos) {
            None => SYNTHETIC_MTIME_NS,
            Some(SynthState::Touched(t)) => t,
            Some(_) => return None,
        };
        Some((pos, self.set.at(pos as usize).1, mtime))
    }

    fn set_state(&self, pos: u32, state: SynthState) {
        if let Ok(mut overlay) = self.overlay.write() {
            overlay.insert(pos, state);
        }
    }
}

/// One mount (volume) of a keepstore.
pub struct Mount {
    pub uuid: String,
    pub replication: u32,
    /// Storage classes this mount belongs to (`default` unless configured).
    pub classes: Vec<String>,
    /// Highest priority of its classes (keepstore orders mounts by it first).
    pub priority: i32,
    pub read_only: RwLock<bool>,
    /// The volume's `AllowTrashWhenReadOnly`: trash lists (and DELETE) still apply to it
    /// while it is read-only (how an operator drains a volume).
    pub allow_trash_when_read_only: RwLock<bool>,
    /// Bytes the mount can hold; `None` = unlimited.
    pub capacity: RwLock<Option<u64>>,
    /// An S3-like mount shared by several keepstores: index in key order, mtimes in whole
    /// seconds.
    pub shared: bool,
    /// Index listings of this mount (through `/index` or `/mounts/<uuid>/blocks`).
    pub index_requests: AtomicU64,
    storage: Storage,
    live: RwLock<BTreeMap<BlockHash, Entry>>,
    trash: RwLock<BTreeMap<BlockHash, Vec<Trashed>>>,
    synthetic: OnceLock<SynthLayer>,
    used: Mutex<u64>,
    bucket_order: OnceLock<Vec<u16>>,
}

impl std::fmt::Debug for Mount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mount")
            .field("uuid", &self.uuid)
            .field("storage", &self.storage)
            .finish()
    }
}

/// Trash and signing rules a volume applies (cluster settings).
#[derive(Clone, Copy, Debug)]
pub struct TrashRules {
    /// `Collections.BlobSigningTTL`: copies younger than this are never trashed.
    pub signing_ttl: Duration,
    /// `Collections.BlobTrashLifetime`: how long trash is kept (0 = delete at once).
    pub lifetime: Duration,
}

/// The first and one-past-last hash of a 3-hex-digit bucket.
fn bucket_bounds(bucket: u16) -> (BlockHash, Option<BlockHash>) {
    let lo = |b: u16| {
        let mut h = [0u8; 16];
        h[0] = (b >> 4) as u8;
        h[1] = ((b & 15) << 4) as u8;
        BlockHash(h)
    };
    (lo(bucket), (bucket < 4095).then(|| lo(bucket + 1)))
}

fn bucket_hex(bucket: u16) -> String {
    format!("{bucket:03x}")
}

/// Whether a prefix can match anything in `bucket_hex` (unix_volume.go's subdir test).
fn bucket_matches(bucket_hex: &str, prefix: &str) -> bool {
    bucket_hex.starts_with(prefix) || prefix.starts_with(bucket_hex)
}

/// One index line, `hash+size mtime\n`, appended without going through `fmt`.
pub fn push_index_line(out: &mut BytesMut, hash: &BlockHash, size: u64, mtime_ns: i64) {
    let mut hex = [0u8; 32];
    hash.write_hex(&mut hex);
    out.put_slice(&hex);
    out.put_u8(b'+');
    push_decimal(out, size);
    out.put_u8(b' ');
    if mtime_ns < 0 {
        out.put_u8(b'-');
    }
    push_decimal(out, mtime_ns.unsigned_abs());
    out.put_u8(b'\n');
}

fn push_decimal(out: &mut BytesMut, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.put_slice(&digits[i..]);
}

/// Index pieces are cut at about this size.
const INDEX_PIECE: usize = 256 << 10;

impl Mount {
    pub fn new(uuid: String, replication: u32, storage: Storage) -> std::io::Result<Mount> {
        Mount::with_classes(uuid, replication, storage, vec!["default".to_string()], 0)
    }

    /// A mount in the given storage classes with the given priority.
    pub fn with_classes(
        uuid: String,
        replication: u32,
        storage: Storage,
        classes: Vec<String>,
        priority: i32,
    ) -> std::io::Result<Mount> {
        if let Storage::Directory(root) = &storage {
            std::fs::create_dir_all(root)?;
        }
        Ok(Mount {
            uuid,
            replication: replication.max(1),
            classes,
            priority,
            read_only: RwLock::new(false),
            allow_trash_when_read_only: RwLock::new(false),
            capacity: RwLock::new(None),
            shared: false,
            index_requests: AtomicU64::new(0),
            storage,
            live: RwLock::new(BTreeMap::new()),
            trash: RwLock::new(BTreeMap::new()),
            synthetic: OnceLock::new(),
            used: Mutex::new(0),
            bucket_order: OnceLock::new(),
        })
    }

    /// Marks the mount as shared by several keepstores (S3-like).
    pub fn shared(mut self) -> Mount {
        self.shared = true;
        self
    }

    pub fn storage(&self) -> &Storage {
        &self.storage
    }

    /// Whether reads give back bytes (memory, directory) rather than a digest record.
    pub fn keeps_bytes(&self) -> bool {
        !matches!(self.storage, Storage::Digest)
    }

    /// Puts the blocks at `members` (positions in `set`'s hash order) on this mount.
    /// Only once per mount.
    pub fn attach_synthetic(&self, set: Arc<BlockSet>, mut members: Vec<u32>) -> bool {
        members.sort_unstable();
        members.dedup();
        self.synthetic
            .set(SynthLayer {
                set,
                members,
                overlay: RwLock::new(HashMap::new()),
            })
            .is_ok()
    }

    /// Synthetic copies on this mount (live or not).
    pub fn synthetic_count(&self) -> usize {
        self.synthetic.get().map_or(0, |s| s.members.len())
    }

    pub fn is_writable(&self) -> bool {
        !self.read_only.read().map(|r| *r).unwrap_or(true)
    }

    /// keepstore's mount `AllowTrash`: writable, or read-only with `AllowTrashWhenReadOnly`.
    pub fn allows_trash(&self) -> bool {
        self.is_writable()
            || self
                .allow_trash_when_read_only
                .read()
                .map(|a| *a)
                .unwrap_or(false)
    }

    fn path_of(root: &Path, hash: &BlockHash) -> PathBuf {
        let hex = hash.to_string();
        root.join(&hex[..3]).join(hex)
    }

    fn stamp(&self, t: i64) -> i64 {
        if self.shared {
            t - t.rem_euclid(1_000_000_000)
        } else {
            t
        }
    }

    /// The stored copy, if any (not trashed).
    pub fn read(&self, hash: &BlockHash) -> Option<Copy> {
        match &self.storage {
            Storage::Directory(root) => {
                if let Ok(data) = std::fs::read(Self::path_of(root, hash)) {
                    return Some(Copy::Bytes {
                        data: Bytes::from(data),
                        verified: false,
                    });
                }
            }
            _ => {
                let live = self.live.read().ok()?;
                if let Some(e) = live.get(hash) {
                    return Some(match &e.data {
                        Some(data) => Copy::Bytes {
                            data: data.clone(),
                            verified: e.verified,
                        },
                        None => Copy::DigestOnly { size: e.size },
                    });
                }
            }
        }
        let layer = self.synthetic.get()?;
        let (_, index, _) = layer.live(hash)?;
        Some(Copy::Synthetic {
            set: layer.set.clone(),
            index,
        })
    }

    /// Size and mtime of the stored copy (keepstore's `Mtime`).
    pub fn stat(&self, hash: &BlockHash) -> Option<(u64, i64)> {
        match &self.storage {
            Storage::Directory(root) => {
                if let Ok(meta) = std::fs::metadata(Self::path_of(root, hash)) {
                    return Some((meta.len(), file_mtime(&meta)));
                }
            }
            _ => {
                if let Some(e) = self.live.read().ok()?.get(hash) {
                    return Some((e.size, e.mtime_ns));
                }
            }
        }
        let layer = self.synthetic.get()?;
        let (_, index, mtime) = layer.live(hash)?;
        Some((layer.set.size_of(index), mtime))
    }

    pub fn contains(&self, hash: &BlockHash) -> bool {
        self.stat(hash).is_some()
    }

    /// Stores a copy (replacing any), mtime now.
    pub fn write(&self, hash: BlockHash, payload: &Payload) -> Result<(), WriteError> {
        let len = payload.size();
        {
            let mut used = self.used.lock().map_err(|_| WriteError::Other)?;
            if let Some(cap) = *self.capacity.read().map_err(|_| WriteError::Other)? {
                if *used + len > cap {
                    return Err(WriteError::Full);
                }
            }
            *used += len;
        }
        let now = self.stamp(now_ns());
        match (&self.storage, payload) {
            (Storage::Directory(root), Payload::Bytes { data, .. }) => {
                let path = Self::path_of(root, &hash);
                let dir = path.parent().ok_or(WriteError::Other)?;
                std::fs::create_dir_all(dir).map_err(|_| WriteError::Other)?;
                let tmp = dir.join(format!("tmp{hash}-{}", rand::random::<u32>()));
                std::fs::write(&tmp, data).map_err(|e| {
                    let _ = std::fs::remove_file(&tmp);
                    if e.raw_os_error() == Some(28) {
                        WriteError::Full
                    } else {
                        WriteError::Other
                    }
                })?;
                std::fs::rename(&tmp, &path).map_err(|_| WriteError::Other)
            }
            (Storage::Directory(_), Payload::Digest { .. }) => Err(WriteError::Other),
            (_, payload) => {
                let entry = match payload {
                    Payload::Bytes { data, verified } if self.keeps_bytes() => Entry {
                        size: len,
                        mtime_ns: now,
                        data: Some(data.clone()),
                        verified: *verified,
                    },
                    _ => Entry {
                        size: len,
                        mtime_ns: now,
                        data: None,
                        verified: true,
                    },
                };
                self.live
                    .write()
                    .map_err(|_| WriteError::Other)?
                    .insert(hash, entry);
                // A written copy replaces a synthetic one.
                if let Some(layer) = self.synthetic.get() {
                    if let Some(pos) = layer.position(&hash) {
                        layer.set_state(pos, SynthState::Gone);
                    }
                }
                Ok(())
            }
        }
    }

    /// Sets the copy's mtime to now; false if there is no copy.
    pub fn touch(&self, hash: &BlockHash) -> bool {
        self.set_mtime(hash, self.stamp(now_ns()))
    }

    /// Sets the copy's mtime (tests age blocks with it); false if there is no copy.
    pub fn set_mtime(&self, hash: &BlockHash, mtime_ns: i64) -> bool {
        match &self.storage {
            Storage::Directory(root) => {
                let path = Self::path_of(root, hash);
                if path.exists() {
                    let when = UNIX_EPOCH + Duration::from_nanos(mtime_ns.max(0) as u64);
                    return std::fs::File::options()
                        .append(true)
                        .open(&path)
                        .and_then(|f| f.set_modified(when))
                        .is_ok();
                }
            }
            _ => {
                if let Ok(mut live) = self.live.write() {
                    if let Some(e) = live.get_mut(hash) {
                        e.mtime_ns = mtime_ns;
                        return true;
                    }
                }
            }
        }
        let Some(layer) = self.synthetic.get() else {
            return false;
        };
        match layer.live(hash) {
            Some((pos, _, _)) => {
                layer.set_state(pos, SynthState::Touched(mtime_ns));
                true
            }
            None => false,
        }
    }

    /// keepstore's volume `BlockTrash`: a copy younger than the signing TTL is left alone
    /// (and that is a success); with a zero lifetime the copy is deleted, else moved to the
    /// trash until now + lifetime. `false` when there is no copy.
    pub fn trash(&self, hash: &BlockHash, rules: &TrashRules) -> bool {
        let Some((_, mtime)) = self.stat(hash) else {
            return false;
        };
        let now = now_ns();
        if (now - mtime) < rules.signing_ttl.as_nanos() as i64 {
            return true;
        }
        let deadline = now + rules.lifetime.as_nanos() as i64;
        let keep = !rules.lifetime.is_zero();
        match &self.storage {
            Storage::Directory(root) => {
                let path = Self::path_of(root, hash);
                if path.exists() {
                    let result = if keep {
                        let name = format!("{hash}.trash.{}", deadline / 1_000_000_000);
                        std::fs::rename(&path, path.with_file_name(name))
                    } else {
                        std::fs::remove_file(&path)
                    };
                    return result.is_ok();
                }
            }
            _ => {
                let removed = self.live.write().ok().and_then(|mut l| l.remove(hash));
                if let Some(entry) = removed {
                    self.release(entry.size);
                    if keep {
                        if let Ok(mut trash) = self.trash.write() {
                            trash.entry(*hash).or_default().push(Trashed {
                                entry,
                                deadline_ns: deadline,
                            });
                        }
                    }
                    return true;
                }
            }
        }
        let Some(layer) = self.synthetic.get() else {
            return false;
        };
        match layer.live(hash) {
            Some((pos, _, mtime_ns)) => {
                let state = if keep {
                    SynthState::Trashed {
                        mtime_ns,
                        deadline_ns: deadline,
                    }
                } else {
                    SynthState::Gone
                };
                layer.set_state(pos, state);
                true
            }
            None => false,
        }
    }

    fn release(&self, size: u64) {
        if let Ok(mut used) = self.used.lock() {
            *used = used.saturating_sub(size);
        }
    }

    /// keepstore's `BlockUntrash`: restores a trashed copy (mtime as it was) whose
    /// lifetime has not run out; false if there is none.
    pub fn untrash(&self, hash: &BlockHash) -> bool {
        let now = now_ns();
        match &self.storage {
            Storage::Directory(root) => {
                let path = Self::path_of(root, hash);
                let Some(dir) = path.parent() else {
                    return false;
                };
                let prefix = format!("{hash}.trash.");
                if let Ok(entries) = std::fs::read_dir(dir) {
                    for entry in entries.flatten() {
                        let name = entry.file_name().to_string_lossy().into_owned();
                        let Some(deadline) = name.strip_prefix(&prefix) else {
                            continue;
                        };
                        let deadline: i64 = deadline.parse().unwrap_or(0);
                        if deadline * 1_000_000_000 < now {
                            let _ = std::fs::remove_file(entry.path());
                            continue;
                        }
                        if std::fs::rename(entry.path(), &path).is_ok() {
                            return true;
                        }
                    }
                }
            }
            _ => {
                let restored = self.trash.write().ok().and_then(|mut trash| {
                    let list = trash.get_mut(hash)?;
                    list.retain(|t| t.deadline_ns >= now);
                    let found = list.pop();
                    if list.is_empty() {
                        trash.remove(hash);
                    }
                    found
                });
                if let Some(t) = restored {
                    if let Ok(mut used) = self.used.lock() {
                        *used += t.entry.size;
                    }
                    if let Ok(mut live) = self.live.write() {
                        live.insert(*hash, t.entry);
                    }
                    return true;
                }
            }
        }
        let Some(layer) = self.synthetic.get() else {
            return false;
        };
        let Some(pos) = layer.position(hash) else {
            return false;
        };
        match layer.state(pos) {
            Some(SynthState::Trashed {
                mtime_ns,
                deadline_ns,
            }) => {
                if deadline_ns < now {
                    layer.set_state(pos, SynthState::Gone);
                    return false;
                }
                let state = if mtime_ns == SYNTHETIC_MTIME_NS {
                    None
                } else {
                    Some(SynthState::Touched(mtime_ns))
                };
                if let Ok(mut overlay) = layer.overlay.write() {
                    match state {
                        Some(s) => overlay.insert(pos, s),
                        None => overlay.remove(&pos),
                    };
                }
                true
            }
            _ => false,
        }
    }

    /// Copies in the trash (not yet expired).
    pub fn trashed_count(&self) -> usize {
        let now = now_ns();
        let mut n = match &self.storage {
            Storage::Directory(root) => walk_files(root)
                .filter(|(name, _)| {
                    name.split_once(".trash.")
                        .and_then(|(_, d)| d.parse::<i64>().ok())
                        .is_some_and(|d| d * 1_000_000_000 >= now)
                })
                .count(),
            _ => self
                .trash
                .read()
                .map(|t| {
                    t.values()
                        .flatten()
                        .filter(|x| x.deadline_ns >= now)
                        .count()
                })
                .unwrap_or(0),
        };
        if let Some(layer) = self.synthetic.get() {
            if let Ok(overlay) = layer.overlay.read() {
                n += overlay
                    .values()
                    .filter(|s| matches!(s, SynthState::Trashed { deadline_ns, .. } if *deadline_ns >= now))
                    .count();
            }
        }
        n
    }

    /// Deletes a copy outright (no trash).
    pub fn remove(&self, hash: &BlockHash) -> bool {
        match &self.storage {
            Storage::Directory(root) => {
                if std::fs::remove_file(Self::path_of(root, hash)).is_ok() {
                    return true;
                }
            }
            _ => {
                let removed = self.live.write().ok().and_then(|mut l| l.remove(hash));
                if let Some(e) = removed {
                    self.release(e.size);
                    return true;
                }
            }
        }
        let Some(layer) = self.synthetic.get() else {
            return false;
        };
        match layer.live(hash) {
            Some((pos, _, _)) => {
                layer.set_state(pos, SynthState::Gone);
                true
            }
            None => false,
        }
    }

    /// Replaces stored bytes without checking them (a corrupt replica). Keeps the mtime.
    pub fn overwrite_unchecked(&self, hash: &BlockHash, data: Bytes) -> bool {
        let Some((_, mtime)) = self.stat(hash) else {
            return false;
        };
        match &self.storage {
            Storage::Directory(root) => {
                let path = Self::path_of(root, hash);
                if std::fs::write(&path, &data).is_err() {
                    return false;
                }
                self.set_mtime(hash, mtime)
            }
            Storage::Memory | Storage::Digest => {
                let size = data.len() as u64;
                if let Ok(mut live) = self.live.write() {
                    live.insert(
                        *hash,
                        Entry {
                            size,
                            mtime_ns: mtime,
                            data: self.keeps_bytes().then_some(data),
                            verified: false,
                        },
                    );
                }
                if let Some(layer) = self.synthetic.get() {
                    if let Some(pos) = layer.position(hash) {
                        layer.set_state(pos, SynthState::Gone);
                    }
                }
                true
            }
        }
    }

    /// The order of the 4096 subdirectories in this mount's listing.
    fn bucket_order(&self) -> &[u16] {
        self.bucket_order.get_or_init(|| {
            let mut order: Vec<u16> = (0..4096).collect();
            if !self.shared {
                // A fixed, unsorted "readdir" order per mount.
                let ranks: Vec<[u8; 16]> = order
                    .iter()
                    .map(|&b| {
                        crate::hash::md5(format!("{}{}", self.uuid, bucket_hex(b)).as_bytes())
                    })
                    .collect();
                order.sort_by(|&a, &b| ranks[a as usize].cmp(&ranks[b as usize]));
            }
            order
        })
    }

    /// Every live (hash, size, mtime) in one bucket, sorted by hash, prefix-filtered.
    fn bucket_entries(&self, bucket: u16, prefix: &str) -> Vec<(BlockHash, u64, i64)> {
        let (lo, hi) = bucket_bounds(bucket);
        let upper = hi.map_or(Bound::Unbounded, Bound::Excluded);
        let mut out: Vec<(BlockHash, u64, i64)> = self
            .live
            .read()
            .map(|live| {
                live.range((Bound::Included(lo), upper))
                    .map(|(h, e)| (*h, e.size, e.mtime_ns))
                    .collect()
            })
            .unwrap_or_default();
        if let Some(layer) = self.synthetic.get() {
            let range = layer.set.range(&lo, hi.as_ref());
            let from = layer
                .members
                .partition_point(|&p| (p as usize) < range.start);
            let to = layer.members.partition_point(|&p| (p as usize) < range.end);
            let overlay = layer.overlay.read().ok();
            let before = out.len();
            for &pos in &layer.members[from..to] {
                let mtime = match overlay.as_ref().and_then(|o| o.get(&pos)) {
                    None => SYNTHETIC_MTIME_NS,
                    Some(SynthState::Touched(t)) => *t,
                    Some(_) => continue,
                };
                let (hash, index) = layer.set.at(pos as usize);
                out.push((hash, layer.set.size_of(index), mtime));
            }
            if before > 0 && out.len() > before {
                out.sort_unstable_by_key(|e| e.0);
            }
        }
        if prefix.len() > 3 {
            out.retain(|(h, _, _)| h.to_string().starts_with(prefix));
        }
        out
    }

    /// This mount's index for `prefix`, streamed one subdirectory at a time in pieces of
    /// about 256 KiB. Counts as one listing of the mount.
    pub fn index_pieces(self: &Arc<Self>, prefix: &str) -> Box<dyn Iterator<Item = Bytes> + Send> {
        self.index_requests.fetch_add(1, Ordering::Relaxed);
        let prefix = prefix.to_string();
        match &self.storage {
            Storage::Directory(root) => Box::new(DirectoryIndex::new(root.clone(), prefix)),
            _ => {
                let mount = self.clone();
                let buckets: Vec<u16> = self
                    .bucket_order()
                    .iter()
                    .copied()
                    .filter(|&b| bucket_matches(&bucket_hex(b), &prefix))
                    .collect();
                let mut next = 0;
                Box::new(std::iter::from_fn(move || {
                    let mut out = BytesMut::new();
                    while next < buckets.len() && out.len() < INDEX_PIECE {
                        for (h, s, t) in mount.bucket_entries(buckets[next], &prefix) {
                            push_index_line(&mut out, &h, s, t);
                        }
                        next += 1;
                    }
                    (!out.is_empty()).then(|| out.freeze())
                }))
            }
        }
    }

    /// Every (hash, size, mtime) on this mount in index order (whole, for tests).
    pub fn index(self: &Arc<Self>, prefix: &str) -> Vec<(BlockHash, u64, i64)> {
        let mut out = Vec::new();
        for piece in self.index_pieces(prefix) {
            for line in piece.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
                if let Ok(entry) = crate::keep::index_format::parse_index_line(line) {
                    out.push((entry.hash, entry.size, entry.mtime_ns));
                }
            }
        }
        // Listing through `index()` is a test's look, not a client's request.
        self.index_requests.fetch_sub(1, Ordering::Relaxed);
        out
    }
}

fn file_mtime(meta: &std::fs::Metadata) -> i64 {
    meta.modified()
        .ok()
        .and_then(|m| m.duration_since(UNIX_EPOCH).ok())
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

/// (file name, path) of every file under the 3-hex subdirectories of `root`.
fn walk_files(root: &Path) -> impl Iterator<Item = (String, PathBuf)> {
    std::fs::read_dir(root)
        .into_iter()
        .flatten()
        .flatten()
        .flat_map(|dir| {
            std::fs::read_dir(dir.path())
                .into_iter()
                .flatten()
                .flatten()
        })
        .map(|f| (f.file_name().to_string_lossy().into_owned(), f.path()))
}

/// unix_volume.go's `Index`: subdirectories in readdir order, entries sorted by name.
struct DirectoryIndex {
    root: PathBuf,
    prefix: String,
    subdirs: Option<std::vec::IntoIter<String>>,
}

impl DirectoryIndex {
    fn new(root: PathBuf, prefix: String) -> DirectoryIndex {
        DirectoryIndex {
            root,
            prefix,
            subdirs: None,
        }
    }
}

impl Iterator for DirectoryIndex {
    type Item = Bytes;

    fn next(&mut self) -> Option<Bytes> {
        let subdirs = self.subdirs.get_or_insert_with(|| {
            let names: Vec<String> = std::fs::read_dir(&self.root)
                .into_iter()
                .flatten()
                .flatten()
                .map(|d| d.file_name().to_string_lossy().into_owned())
                .collect();
            names.into_iter()
        });
        let mut out = BytesMut::new();
        for subdir in subdirs.by_ref() {
            if !bucket_matches(&subdir, &self.prefix)
                || subdir.is_empty()
                || !subdir
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
            {
                continue;
            }
            let mut files: Vec<(String, PathBuf)> = std::fs::read_dir(self.root.join(&subdir))
                .into_iter()
                .flatten()
                .flatten()
                .map(|f| (f.file_name().to_string_lossy().into_owned(), f.path()))
                .collect();
            files.sort();
            for (name, path) in files {
                if !name.starts_with(&self.prefix) {
                    continue;
                }
                let Ok(hash) = BlockHash::from_hex(&name) else {
                    continue;
                };
                if let Ok(meta) = std::fs::metadata(&path) {
                    push_index_line(&mut out, &hash, meta.len(), file_mtime(&meta));
                }
            }
            if out.len() >= INDEX_PIECE {
                break;
            }
        }
        (!out.is_empty()).then(|| out.freeze())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blockset::{BlockSet, BlockSizes};

    fn hash_of(data: &[u8]) -> BlockHash {
        BlockHash(crate::hash::md5(data))
    }

    fn payload(data: &[u8]) -> Payload {
        Payload::Bytes {
            data: Bytes::copy_from_slice(data),
            verified: true,
        }
    }

    fn mounts() -> Vec<Arc<Mount>> {
        let dir = std::env::temp_dir().join(format!("keepsim-store-{}", rand::random::<u64>()));
        vec![
            Arc::new(Mount::new("m-mem".into(), 1, Storage::Memory).expect("mount")),
            Arc::new(Mount::new("m-dig".into(), 1, Storage::Digest).expect("mount")),
            Arc::new(Mount::new("m-dir".into(), 1, Storage::Directory(dir)).expect("mount")),
        ]
    }

    #[test]
    fn index_lines_are_formatted_like_keepstore() {
        let mut out = BytesMut::new();
        let h = BlockHash([0xab; 16]);
        push_index_line(&mut out, &h, 0, 1_700_000_000_000_000_001);
        push_index_line(&mut out, &h, 67_108_864, 7);
        assert_eq!(
            out.as_ref(),
            format!("{h}+0 1700000000000000001\n{h}+67108864 7\n").as_bytes()
        );
    }

    #[test]
    fn trash_rules_on_every_storage() {
        let rules = TrashRules {
            signing_ttl: Duration::from_secs(3600),
            lifetime: Duration::from_secs(3600),
        };
        for m in mounts() {
            let data = b"trash me";
            let h = hash_of(data);
            m.write(h, &payload(data)).expect("written");
            assert!(m.trash(&h, &rules), "young copy: success, kept");
            assert!(m.contains(&h), "{}: too young to trash", m.uuid);
            let old = now_ns() - 7200 * 1_000_000_000;
            assert!(m.set_mtime(&h, old));
            let (_, mtime) = m.stat(&h).expect("stat");
            assert!((mtime - old).abs() < 1_000, "{}: {mtime} vs {old}", m.uuid);
            assert!(m.trash(&h, &rules));
            assert!(!m.contains(&h), "{}: trashed", m.uuid);
            assert!(m.index("").is_empty(), "{}: not listed", m.uuid);
            assert_eq!(m.trashed_count(), 1, "{}", m.uuid);
            assert!(m.untrash(&h), "{}", m.uuid);
            assert!(!m.untrash(&h), "{}: only once", m.uuid);
            let (_, back) = m.stat(&h).expect("restored");
            assert!((back - old).abs() < 1_000, "{}: mtime kept", m.uuid);
            let zero = TrashRules {
                lifetime: Duration::ZERO,
                ..rules
            };
            assert!(m.trash(&h, &zero));
            assert!(!m.untrash(&h), "{}: deleted, not trashed", m.uuid);
        }
    }

    #[test]
    fn digest_storage_keeps_no_bytes() {
        let m = Mount::new("d".into(), 1, Storage::Digest).expect("mount");
        let h = hash_of(b"abc");
        m.write(h, &Payload::Digest { size: 3 }).expect("written");
        assert!(matches!(m.read(&h), Some(Copy::DigestOnly { size: 3 })));
        assert_eq!(m.stat(&h).map(|s| s.0), Some(3));
    }

    #[test]
    fn synthetic_layer_lists_touches_trashes_and_is_replaced_by_writes() {
        let set = Arc::new(BlockSet::new(&BlockSizes::List(vec![10, 20, 30, 40]), 5));
        let m = Arc::new(Mount::new("s".into(), 1, Storage::Memory).expect("mount"));
        assert!(m.attach_synthetic(set.clone(), vec![0, 2, 3]));
        let listed = m.index("");
        assert_eq!(listed.len(), 3);
        assert!(listed.iter().all(|e| e.2 == SYNTHETIC_MTIME_NS));
        let (h0, i0) = set.at(0);
        assert!(matches!(m.read(&h0), Some(Copy::Synthetic { index, .. }) if index == i0));
        assert!(
            m.read(&set.at(1).0).is_none(),
            "position 1 is not on this mount"
        );
        assert!(m.touch(&h0));
        assert!(m.stat(&h0).expect("stat").1 > SYNTHETIC_MTIME_NS);
        let rules = TrashRules {
            signing_ttl: Duration::from_secs(1),
            lifetime: Duration::from_secs(60),
        };
        let (h2, _) = set.at(2);
        assert!(m.trash(&h2, &rules));
        assert_eq!(m.index("").len(), 2);
        assert!(m.untrash(&h2));
        assert_eq!(m.stat(&h2).expect("back").1, SYNTHETIC_MTIME_NS);
        // A corrupted copy hides the synthetic one.
        assert!(m.overwrite_unchecked(&h2, Bytes::from_static(b"bad")));
        assert!(matches!(
            m.read(&h2),
            Some(Copy::Bytes {
                verified: false,
                ..
            })
        ));
        assert_eq!(m.index("").len(), 3, "listed once");
    }

    #[test]
    fn shared_mounts_list_in_key_order_with_whole_seconds() {
        let m = Arc::new(
            Mount::new("sh".into(), 1, Storage::Memory)
                .expect("mount")
                .shared(),
        );
        for n in 0..200 {
            let d = format!("block {n}");
            m.write(hash_of(d.as_bytes()), &payload(d.as_bytes()))
                .expect("written");
        }
        let listed = m.index("");
        assert!(listed.windows(2).all(|w| w[0].0 < w[1].0), "sorted");
        assert!(listed.iter().all(|e| e.2 % 1_000_000_000 == 0));
        let unsorted = Arc::new(Mount::new("un".into(), 1, Storage::Memory).expect("mount"));
        for n in 0..200 {
            let d = format!("block {n}");
            unsorted
                .write(hash_of(d.as_bytes()), &payload(d.as_bytes()))
                .expect("written");
        }
        let listed = unsorted.index("");
        assert!(!listed.windows(2).all(|w| w[0].0 < w[1].0), "readdir order");
        let ab: Vec<_> = unsorted.index("ab");
        assert!(ab.iter().all(|e| e.0.to_string().starts_with("ab")));
        let abc: Vec<_> = unsorted.index(&listed[0].0.to_string()[..5]);
        assert_eq!(abc.len(), 1);
    }
}
