//! Block storage for one simulated mount: memory or a directory in keepstore's layout
//! (`<root>/<first 3 hex>/<hash>`), plus the synthetic mode that lists N deterministic blocks
//! without storing them. Also produces the real keepstore's *unsorted* index order.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use md5::{Digest, Md5};

use crate::keep::locator::BlockHash;

pub fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

/// Where a mount keeps its blocks.
#[derive(Clone, Debug)]
pub enum Storage {
    Memory,
    Directory(PathBuf),
}

#[derive(Clone, Debug)]
struct Stored {
    data: Bytes,
    mtime_ns: i64,
}

/// One mount (volume) of a keepstore.
#[derive(Debug)]
pub struct Mount {
    pub uuid: String,
    pub replication: u32,
    pub read_only: RwLock<bool>,
    /// Bytes the mount can hold; `None` = unlimited.
    pub capacity: RwLock<Option<u64>>,
    storage: Storage,
    memory: RwLock<HashMap<BlockHash, Stored>>,
    used: Mutex<u64>,
}

impl Mount {
    pub fn new(uuid: String, replication: u32, storage: Storage) -> std::io::Result<Mount> {
        if let Storage::Directory(root) = &storage {
            std::fs::create_dir_all(root)?;
        }
        Ok(Mount {
            uuid,
            replication,
            read_only: RwLock::new(false),
            capacity: RwLock::new(None),
            storage,
            memory: RwLock::new(HashMap::new()),
            used: Mutex::new(0),
        })
    }

    fn path_of(root: &std::path::Path, hash: &BlockHash) -> PathBuf {
        let hex = hash.to_string();
        root.join(&hex[..3]).join(hex)
    }

    pub fn get(&self, hash: &BlockHash) -> Option<Bytes> {
        match &self.storage {
            Storage::Memory => self.memory.read().ok()?.get(hash).map(|s| s.data.clone()),
            Storage::Directory(root) => std::fs::read(Self::path_of(root, hash))
                .ok()
                .map(Bytes::from),
        }
    }

    pub fn contains(&self, hash: &BlockHash) -> bool {
        match &self.storage {
            Storage::Memory => self
                .memory
                .read()
                .map(|m| m.contains_key(hash))
                .unwrap_or(false),
            Storage::Directory(root) => Self::path_of(root, hash).exists(),
        }
    }

    pub fn is_writable(&self) -> bool {
        !self.read_only.read().map(|r| *r).unwrap_or(true)
    }

    /// Stores `data`; `Err(true)` when full, `Err(false)` on another failure.
    pub fn put(&self, hash: BlockHash, data: Bytes) -> Result<(), bool> {
        let len = data.len() as u64;
        {
            let mut used = self.used.lock().map_err(|_| false)?;
            if let Some(cap) = *self.capacity.read().map_err(|_| false)? {
                if *used + len > cap {
                    return Err(true);
                }
            }
            *used += len;
        }
        match &self.storage {
            Storage::Memory => {
                let mut map = self.memory.write().map_err(|_| false)?;
                map.insert(
                    hash,
                    Stored {
                        data,
                        mtime_ns: now_ns(),
                    },
                );
                Ok(())
            }
            Storage::Directory(root) => {
                let path = Self::path_of(root, &hash);
                let dir = path.parent().ok_or(false)?;
                std::fs::create_dir_all(dir).map_err(|_| false)?;
                let tmp = path.with_extension("tmp");
                std::fs::write(&tmp, &data).map_err(|e| e.raw_os_error() == Some(28))?;
                std::fs::rename(&tmp, &path).map_err(|_| false)
            }
        }
    }

    pub fn touch(&self, hash: &BlockHash) -> bool {
        match &self.storage {
            Storage::Memory => match self.memory.write() {
                Ok(mut map) => map.get_mut(hash).map(|s| s.mtime_ns = now_ns()).is_some(),
                Err(_) => false,
            },
            Storage::Directory(root) => {
                let path = Self::path_of(root, hash);
                std::fs::File::options()
                    .append(true)
                    .open(&path)
                    .and_then(|f| f.set_modified(SystemTime::now()))
                    .is_ok()
            }
        }
    }

    pub fn remove(&self, hash: &BlockHash) -> bool {
        match &self.storage {
            Storage::Memory => self
                .memory
                .write()
                .map(|mut m| m.remove(hash).is_some())
                .unwrap_or(false),
            Storage::Directory(root) => std::fs::remove_file(Self::path_of(root, hash)).is_ok(),
        }
    }

    /// Replaces stored bytes without checking them (fault injection: a corrupt replica).
    pub fn overwrite_unchecked(&self, hash: &BlockHash, data: Bytes) {
        match &self.storage {
            Storage::Memory => {
                if let Ok(mut map) = self.memory.write() {
                    map.insert(
                        *hash,
                        Stored {
                            data,
                            mtime_ns: now_ns(),
                        },
                    );
                }
            }
            Storage::Directory(root) => {
                let _ = std::fs::write(Self::path_of(root, hash), &data);
            }
        }
    }

    /// Every (hash, size, mtime) on this mount in keepstore's order: top-level 3-hex
    /// directories in a deterministic but unsorted "readdir" order, sorted inside each.
    pub fn index(&self, prefix: &str) -> Vec<(BlockHash, u64, i64)> {
        let mut entries: Vec<(BlockHash, u64, i64)> = match &self.storage {
            Storage::Memory => self
                .memory
                .read()
                .map(|m| {
                    m.iter()
                        .map(|(h, s)| (*h, s.data.len() as u64, s.mtime_ns))
                        .collect()
                })
                .unwrap_or_default(),
            Storage::Directory(root) => {
                let mut out = Vec::new();
                if let Ok(dirs) = std::fs::read_dir(root) {
                    for dir in dirs.flatten() {
                        if let Ok(files) = std::fs::read_dir(dir.path()) {
                            for file in files.flatten() {
                                let name = file.file_name();
                                let Some(hash) =
                                    name.to_str().and_then(|n| BlockHash::from_hex(n).ok())
                                else {
                                    continue;
                                };
                                if let Ok(meta) = file.metadata() {
                                    let mtime = meta
                                        .modified()
                                        .ok()
                                        .and_then(|m| m.duration_since(UNIX_EPOCH).ok())
                                        .map(|d| d.as_nanos() as i64)
                                        .unwrap_or(0);
                                    out.push((hash, meta.len(), mtime));
                                }
                            }
                        }
                    }
                }
                out
            }
        };
        entries.retain(|(h, _, _)| h.to_string().starts_with(prefix));
        let dir_rank = |h: &BlockHash| -> [u8; 16] {
            let hex = h.to_string();
            Md5::digest(format!("{}{}", self.uuid, &hex[..3]).as_bytes()).into()
        };
        entries.sort_by(|a, b| dir_rank(&a.0).cmp(&dir_rank(&b.0)).then(a.0.cmp(&b.0)));
        entries
    }
}

/// `len` deterministic bytes from `seed` (xorshift64): block contents for the synthetic
/// mode, the demo and tests. Fast (several GB/s) so generating data is never the bottleneck.
pub fn pseudo_random_bytes(seed: u64, len: usize) -> Vec<u8> {
    // splitmix64 of the seed: distinct seeds give distinct, never-zero xorshift states.
    let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    let mut state = (z ^ (z >> 31)).max(1);
    let mut out = vec![0u8; len];
    for chunk in out.chunks_mut(8) {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        chunk.copy_from_slice(&state.to_le_bytes()[..chunk.len()]);
    }
    out
}

/// N deterministic blocks listed without being stored. Block i has `size` bytes generated
/// from (seed, i); its hash is computed once, on first use, for all N blocks (MD5 of
/// N × size bytes of CPU, then 20 bytes of memory per block for the hash → i table).
#[derive(Debug)]
pub struct Synthetic {
    pub count: u32,
    pub size: u32,
    pub seed: u64,
    table: OnceLock<Arc<Vec<(BlockHash, u32)>>>,
}

impl Synthetic {
    pub fn new(count: u32, size: u32, seed: u64) -> Synthetic {
        Synthetic {
            count,
            size,
            seed,
            table: OnceLock::new(),
        }
    }

    /// The content of block `i`.
    pub fn content(&self, i: u32) -> Bytes {
        // A 64 KiB pseudo-random pattern from (seed, i), repeated: generated at memcpy speed
        // so serving synthetic blocks never limits a benchmark; the block index in the first
        // bytes keeps every block distinct.
        const PATTERN: usize = 64 << 10;
        let seed =
            self.seed ^ u64::from(i).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0x5DEE_CE66_D1CE_4E5B;
        let size = self.size as usize;
        let pattern = pseudo_random_bytes(seed, PATTERN.min(size));
        let mut out = Vec::with_capacity(size);
        while out.len() < size {
            let take = (size - out.len()).min(pattern.len());
            out.extend_from_slice(&pattern[..take]);
        }
        if let Some(first) = out.get_mut(..4) {
            first.copy_from_slice(&i.to_le_bytes());
        }
        Bytes::from(out)
    }

    /// (hash, i) for every block, sorted by hash.
    pub fn table(&self) -> Arc<Vec<(BlockHash, u32)>> {
        self.table
            .get_or_init(|| {
                let mut table: Vec<(BlockHash, u32)> = (0..self.count)
                    .map(|i| (BlockHash(Md5::digest(self.content(i)).into()), i))
                    .collect();
                table.sort_unstable();
                Arc::new(table)
            })
            .clone()
    }

    pub fn get(&self, hash: &BlockHash) -> Option<Bytes> {
        let table = self.table();
        let pos = table.binary_search_by(|(h, _)| h.cmp(hash)).ok()?;
        Some(self.content(table[pos].1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn neighbouring_seeds_give_different_blocks() {
        // Regression: `seed | 1` made seeds 2k and 2k+1 identical, so the demo and the
        // synthetic keepstores silently held duplicate blocks.
        for seed in 0..64u64 {
            assert_ne!(
                pseudo_random_bytes(seed, 64),
                pseudo_random_bytes(seed + 1, 64),
                "{seed}"
            );
        }
        let a = Synthetic::new(4, 100, 0);
        let b = Synthetic::new(4, 100, 1);
        assert_ne!(a.table()[0].0, b.table()[0].0);
    }

    #[test]
    fn synthetic_blocks_match_their_hashes() {
        let synthetic = Synthetic::new(50, 1000, 9);
        for (hash, _) in synthetic.table().iter() {
            let data = synthetic.get(hash).expect("listed block is served");
            assert_eq!(BlockHash(Md5::digest(&data).into()), *hash);
        }
    }
}
