//! Synthetic blocks: a set of N deterministic blocks that a cluster lists and serves without
//! storing them, so a demo or benchmark of any size runs in little memory.
//!
//! * Content of block `i` is a function of (seed, i): a 64 KiB pseudo-random pattern made
//!   from (seed, i), repeated, with every 64 KiB segment stamped in its first 16 bytes with
//!   (i, segment number). Stamping makes every segment of every block distinct, so a client
//!   that reorders, drops or duplicates pieces of a block fails its MD5 check.
//! * Bodies are generated on demand in 1 MiB pieces ([`BlockSet::pieces`]): a GET of a
//!   64 MiB block never allocates more than the 64 KiB pattern and one piece at a time.
//! * Hashes are computed once, eagerly, when the set is built: one MD5 pass over every byte
//!   of the set (blocks of similar size hashed side by side in SIMD lanes, on all cores),
//!   then 24 bytes of memory per block (hash, index, size). Eager because placement
//!   (rendezvous order) and every index listing need the hashes anyway.
//! * In benchmark-serving mode ([`BlockSet::pregenerate`]) every block is generated into
//!   memory once and served by reference, so serving costs nothing per request.

use std::ops::Range;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use bytes::{Bytes, BytesMut};

use crate::hash::Md5State;
use crate::keep::locator::BlockHash;

/// Blocks are generated and served in pieces of this size.
pub const PIECE: usize = 1 << 20;
/// The period of a block's content (and of its stamps).
pub const SEGMENT: usize = 64 << 10;

/// The sizes of the blocks of a set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BlockSizes {
    /// Exactly these sizes, block `i` having `sizes[i]` bytes (each at most 64 MiB).
    List(Vec<u32>),
    /// The demo's recipe for a total of `total_bytes`: 3/4 of the bytes in 64 MiB blocks,
    /// 1/5 in 1 MiB blocks, the rest in small blocks of 4–64 KiB (sizes pseudo-random from
    /// the seed). Most bytes are in big blocks, most blocks are small.
    Mix { total_bytes: u64 },
}

impl BlockSizes {
    /// The list of sizes this describes.
    pub fn sizes(&self, seed: u64) -> Vec<u32> {
        match self {
            BlockSizes::List(sizes) => sizes
                .iter()
                .map(|&s| s.min(crate::keep::locator::MAX_BLOCK_SIZE as u32))
                .collect(),
            BlockSizes::Mix { total_bytes } => {
                let total = *total_bytes;
                let mut sizes = Vec::new();
                let big = (total * 3 / 4) >> 26;
                sizes.extend(std::iter::repeat_n(64u32 << 20, big as usize));
                let medium = (total / 5) >> 20;
                sizes.extend(std::iter::repeat_n(1u32 << 20, medium as usize));
                let mut small_bytes = total.saturating_sub(big << 26).saturating_sub(medium << 20);
                let mut rng = splitmix(seed ^ 0x5eed_5a11);
                while small_bytes >= 4096 {
                    rng = xorshift(rng);
                    let size = (4096 + rng % (60 << 10)).min(small_bytes);
                    sizes.push(size as u32);
                    small_bytes -= size;
                }
                sizes
            }
        }
    }
}

/// How to build a cluster's synthetic block set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlockSetConfig {
    pub sizes: BlockSizes,
    pub seed: u64,
    /// Each block is placed on the first `replicas` keepstores of its Go rendezvous order
    /// (over the cluster's keepstore uuids), on the first writable mount of each in
    /// keepstore order: where a Keep client writing `replicas` copies would have put it.
    pub replicas: usize,
}

/// splitmix64: turns any seed into a well-mixed, never-zero xorshift state.
pub fn splitmix(seed: u64) -> u64 {
    let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    (z ^ (z >> 31)).max(1)
}

fn xorshift(mut state: u64) -> u64 {
    state ^= state << 13;
    state ^= state >> 7;
    state ^= state << 17;
    state
}

/// `len` deterministic bytes from `seed` (xorshift64), several GB/s.
pub fn pseudo_random_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut state = splitmix(seed);
    let mut out = vec![0u8; len];
    for chunk in out.chunks_mut(8) {
        state = xorshift(state);
        chunk.copy_from_slice(&state.to_le_bytes()[..chunk.len()]);
    }
    out
}

/// A set of synthetic blocks with their hashes.
pub struct BlockSet {
    seed: u64,
    sizes: Vec<u32>,
    /// (hash, block index), sorted by hash, duplicates removed.
    table: Vec<(BlockHash, u32)>,
    /// Whole blocks by index (benchmark-serving mode only).
    pregenerated: OnceLock<Vec<Bytes>>,
    /// Blocks whose content turned out identical to another's (only possible for sizes
    /// under 16 bytes); they are not part of the set.
    pub duplicates_dropped: usize,
}

impl std::fmt::Debug for BlockSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlockSet")
            .field("blocks", &self.table.len())
            .field("bytes", &self.total_bytes())
            .finish()
    }
}

/// The generator of one block's content.
#[derive(Clone)]
pub struct Content {
    index: u32,
    size: u64,
    pattern: Arc<Vec<u8>>,
}

impl Content {
    pub fn len(&self) -> u64 {
        self.size
    }

    pub fn is_empty(&self) -> bool {
        self.size == 0
    }

    /// The bytes `range` of the block (a piece), stamped.
    pub fn bytes(&self, range: Range<u64>) -> Bytes {
        let start = range.start.min(self.size) as usize;
        let end = range.end.min(self.size) as usize;
        let mut out = BytesMut::with_capacity(end - start);
        let pattern = self.pattern.as_slice();
        let mut pos = start;
        while pos < end {
            let in_seg = pos % SEGMENT;
            let take = (SEGMENT - in_seg).min(end - pos);
            out.extend_from_slice(&pattern[in_seg..in_seg + take]);
            pos += take;
        }
        // Stamps: 16 bytes at the start of every segment that begins inside the range.
        let first_seg = start.div_ceil(SEGMENT);
        let mut seg = first_seg;
        while seg * SEGMENT < end {
            let at = seg * SEGMENT;
            let mut stamp = [0u8; 16];
            stamp[..8].copy_from_slice(&u64::from(self.index).to_le_bytes());
            stamp[8..].copy_from_slice(&(seg as u64).to_le_bytes());
            let n = 16.min(end - at);
            out[at - start..at - start + n].copy_from_slice(&stamp[..n]);
            seg += 1;
        }
        out.freeze()
    }

    /// The whole block in [`PIECE`]-sized pieces, made one at a time as they are taken.
    pub fn pieces(self) -> impl Iterator<Item = Bytes> + Send + 'static {
        let size = self.size;
        (0..size.div_ceil(PIECE as u64)).map(move |p| {
            let start = p * PIECE as u64;
            self.bytes(start..(start + PIECE as u64).min(size))
        })
    }
}

impl BlockSet {
    /// Builds the set and hashes every block (on all cores).
    pub fn new(sizes: &BlockSizes, seed: u64) -> BlockSet {
        let sizes = sizes.sizes(seed);
        let hashes = hash_all(seed, &sizes);
        let mut table: Vec<(BlockHash, u32)> = hashes
            .into_iter()
            .enumerate()
            .map(|(i, h)| (BlockHash(h), i as u32))
            .collect();
        table.sort_unstable();
        let before = table.len();
        table.dedup_by(|a, b| a.0 == b.0);
        BlockSet {
            seed,
            sizes,
            duplicates_dropped: before - table.len(),
            table,
            pregenerated: OnceLock::new(),
        }
    }

    /// Generates every block into memory once (benchmark-serving mode): GETs are then
    /// answered with references to these bytes. Costs the set's total size in memory.
    pub fn pregenerate(&self) {
        self.pregenerated.get_or_init(|| {
            (0..self.sizes.len() as u32)
                .map(|i| {
                    let content = self.content(i);
                    content.bytes(0..content.len())
                })
                .collect()
        });
    }

    pub fn is_pregenerated(&self) -> bool {
        self.pregenerated.get().is_some()
    }

    /// The whole block, if pregenerated.
    pub fn pregenerated(&self, index: u32) -> Option<Bytes> {
        self.pregenerated.get()?.get(index as usize).cloned()
    }

    /// Blocks in the set.
    pub fn len(&self) -> usize {
        self.table.len()
    }

    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    pub fn total_bytes(&self) -> u64 {
        self.table
            .iter()
            .map(|&(_, i)| u64::from(self.sizes[i as usize]))
            .sum()
    }

    /// (hash, size) of every block, in hash order.
    pub fn blocks(&self) -> impl Iterator<Item = (BlockHash, u64)> + '_ {
        self.table
            .iter()
            .map(|&(h, i)| (h, u64::from(self.sizes[i as usize])))
    }

    /// The hash and block index at `pos` in hash order.
    pub fn at(&self, pos: usize) -> (BlockHash, u32) {
        self.table[pos]
    }

    pub fn size_of(&self, index: u32) -> u64 {
        u64::from(self.sizes[index as usize])
    }

    /// The position of `hash` in hash order.
    pub fn position(&self, hash: &BlockHash) -> Option<usize> {
        self.table.binary_search_by(|(h, _)| h.cmp(hash)).ok()
    }

    /// Positions whose hash is in `[lo, hi)` (`hi` = `None`: to the end).
    pub fn range(&self, lo: &BlockHash, hi: Option<&BlockHash>) -> Range<usize> {
        let start = self.table.partition_point(|(h, _)| h < lo);
        let end = match hi {
            Some(hi) => self.table.partition_point(|(h, _)| h < hi),
            None => self.table.len(),
        };
        start..end.max(start)
    }

    /// The content generator of block `index`.
    pub fn content(&self, index: u32) -> Content {
        let size = self.size_of(index);
        let seed = self.seed ^ u64::from(index).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        Content {
            index,
            size,
            pattern: Arc::new(pseudo_random_bytes(seed, SEGMENT.min(size as usize))),
        }
    }

    /// The block's pieces: references to the pregenerated bytes, or made on demand.
    pub fn pieces(&self, index: u32) -> Box<dyn Iterator<Item = Bytes> + Send> {
        match self.pregenerated(index) {
            Some(whole) => Box::new(std::iter::once(whole)),
            None => Box::new(self.content(index).pieces()),
        }
    }
}

/// MD5 of every block: blocks sorted by size, hashed 16 at a time in SIMD lanes, piece by
/// piece, on every core.
fn hash_all(seed: u64, sizes: &[u32]) -> Vec<[u8; 16]> {
    const GROUP: usize = 16;
    let mut order: Vec<u32> = (0..sizes.len() as u32).collect();
    order.sort_by_key(|&i| sizes[i as usize]);
    let groups: Vec<&[u32]> = order.chunks(GROUP).collect();
    let next = AtomicUsize::new(0);
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(groups.len().max(1));
    let probe = BlockSet {
        seed,
        sizes: sizes.to_vec(),
        table: Vec::new(),
        pregenerated: OnceLock::new(),
        duplicates_dropped: 0,
    };
    let results: Vec<Vec<(u32, [u8; 16])>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut out = Vec::new();
                    loop {
                        let g = next.fetch_add(1, Ordering::Relaxed);
                        let Some(group) = groups.get(g) else {
                            return out;
                        };
                        let contents: Vec<Content> =
                            group.iter().map(|&i| probe.content(i)).collect();
                        let mut states: Vec<Md5State> =
                            group.iter().map(|_| Md5State::new()).collect();
                        let longest = contents.iter().map(Content::len).max().unwrap_or(0);
                        let mut start = 0u64;
                        while start < longest {
                            let end = start + PIECE as u64;
                            let pieces: Vec<Bytes> =
                                contents.iter().map(|c| c.bytes(start..end)).collect();
                            let chunks: Vec<&[u8]> = pieces.iter().map(|p| p.as_ref()).collect();
                            let mut refs: Vec<&mut Md5State> = states.iter_mut().collect();
                            crate::hash::update_many(&mut refs, &chunks);
                            start = end;
                        }
                        let refs: Vec<&Md5State> = states.iter().collect();
                        let digests = crate::hash::finalize_many(&refs);
                        out.extend(group.iter().copied().zip(digests));
                    }
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_default())
            .collect()
    });
    let mut hashes = vec![[0u8; 16]; sizes.len()];
    for (i, digest) in results.into_iter().flatten() {
        hashes[i as usize] = digest;
    }
    hashes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn md5(data: &[u8]) -> BlockHash {
        BlockHash(crate::hash::md5(data))
    }

    #[test]
    fn neighbouring_seeds_give_different_bytes() {
        // Regression: `seed | 1` made seeds 2k and 2k+1 identical.
        for seed in 0..64u64 {
            assert_ne!(
                pseudo_random_bytes(seed, 64),
                pseudo_random_bytes(seed + 1, 64),
                "{seed}"
            );
        }
    }

    #[test]
    fn pieces_match_the_hashes_and_every_segment_differs() {
        let sizes = vec![
            0,
            1,
            15,
            16,
            17,
            4096,
            SEGMENT as u32,
            3 * SEGMENT as u32 + 5,
        ];
        let set = BlockSet::new(&BlockSizes::List(sizes.clone()), 7);
        assert_eq!(set.len(), sizes.len());
        for (hash, size) in set.blocks() {
            let pos = set.position(&hash).expect("listed");
            let (_, index) = set.at(pos);
            let whole: Vec<u8> = set.pieces(index).flat_map(|p| p.to_vec()).collect();
            assert_eq!(whole.len() as u64, size);
            assert_eq!(md5(&whole), hash);
        }
        // Segments of one block are not copies of each other.
        let content = set.content(7);
        let seg = |k: u64| content.bytes(k * SEGMENT as u64..(k + 1) * SEGMENT as u64);
        assert_ne!(seg(0), seg(1));
        assert_ne!(seg(1), seg(2));
        // A piece boundary inside a segment gives the same bytes.
        let a = content.bytes(100..70_000);
        let whole = content.bytes(0..content.len());
        assert_eq!(a, whole.slice(100..70_000));
    }

    #[test]
    fn big_blocks_stream_in_pieces() {
        let set = BlockSet::new(&BlockSizes::List(vec![3 * PIECE as u32 + 1]), 1);
        let pieces: Vec<usize> = set.pieces(0).map(|p| p.len()).collect();
        assert_eq!(pieces, vec![PIECE, PIECE, PIECE, 1]);
    }

    #[test]
    fn mix_recipe() {
        let sizes = BlockSizes::Mix {
            total_bytes: 1 << 30,
        }
        .sizes(3);
        let total: u64 = sizes.iter().map(|&s| u64::from(s)).sum();
        assert!(total <= 1 << 30 && total > (1 << 30) - 4096, "{total}");
        assert_eq!(sizes.iter().filter(|&&s| s == 64 << 20).count(), 12);
        assert_eq!(sizes.iter().filter(|&&s| s == 1 << 20).count(), 204);
        assert!(sizes
            .iter()
            .filter(|&&s| s < 1 << 20)
            .all(|&s| (4096..=64 << 10).contains(&s)));
    }

    #[test]
    fn pregenerated_blocks_are_the_same_bytes() {
        let set = BlockSet::new(&BlockSizes::List(vec![100_000, 10]), 2);
        let before: Vec<Vec<u8>> = (0..2)
            .map(|i| set.pieces(i).flat_map(|p| p.to_vec()).collect())
            .collect();
        set.pregenerate();
        for (i, b) in before.iter().enumerate() {
            assert_eq!(set.pregenerated(i as u32).as_deref(), Some(b.as_slice()));
        }
    }
}
