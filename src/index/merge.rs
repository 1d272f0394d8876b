//! The pure half of the streaming diff: sort each server's index slice, k-way merge the
//! source slices (remembering which servers hold each block), and subtract the destination.
//! Memory is one prefix's slices; nothing here grows with the cluster.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

#[cfg(test)]
use crate::keep::locator::BlockHash;
pub use crate::keep::BlockId;

/// A source block with the indexes of the source servers that listed it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourceBlock {
    pub id: BlockId,
    pub holders: Vec<u16>,
}

/// Sorts one server's slice and removes duplicates (a block on two mounts is listed twice).
/// A stable sort, because it merges sorted runs as they come: keepstores list sorted stretches
/// (an S3 bucket entirely in key order, one 3-hex subdirectory at a time in keepsim).
pub fn sort_slice(slice: &mut Vec<BlockId>) {
    slice.sort();
    slice.dedup();
}

/// K-way merges sorted, deduplicated source slices (`(server index, slice)`) into one sorted
/// list of distinct blocks, each with its holders in ascending server order.
pub fn merge_sources(mut slices: Vec<(u16, Vec<BlockId>)>) -> Vec<SourceBlock> {
    if slices.len() <= LINEAR_MERGE {
        return merge_sources_linear(&mut slices);
    }
    let total: usize = slices.iter().map(|(_, s)| s.len()).sum();
    let mut merged: Vec<SourceBlock> = Vec::with_capacity(total);
    // Most blocks have a few replicas: room for them at once, not a reallocation per push.
    let room = slices.len().min(4);
    let mut heap: BinaryHeap<Reverse<(BlockId, u16, usize)>> = BinaryHeap::new();
    for (slot, (server, slice)) in slices.iter().enumerate() {
        if let Some(first) = slice.first() {
            heap.push(Reverse((*first, *server, slot)));
        }
    }
    let mut cursors = vec![0usize; slices.len()];
    // The heap orders equal blocks by server, so each block's holders come out ascending.
    while let Some(Reverse((id, server, slot))) = heap.pop() {
        match merged.last_mut() {
            Some(last) if last.id == id => {
                if last.holders.last() != Some(&server) {
                    last.holders.push(server);
                }
            }
            _ => {
                let mut holders = Vec::with_capacity(room);
                holders.push(server);
                merged.push(SourceBlock { id, holders });
            }
        }
        cursors[slot] += 1;
        if let Some(next) = slices[slot].1.get(cursors[slot]) {
            heap.push(Reverse((*next, server, slot)));
        }
    }
    merged
}

/// Up to this many slices, [`merge_sources`] scans their heads instead of keeping a heap
/// (fewer moves for the usual few servers).
const LINEAR_MERGE: usize = 8;

/// [`merge_sources`] by scanning every slice's head for the least block.
fn merge_sources_linear(slices: &mut [(u16, Vec<BlockId>)]) -> Vec<SourceBlock> {
    // In server order, so each block's holders come out ascending.
    slices.sort_by_key(|(server, _)| *server);
    let total: usize = slices.iter().map(|(_, s)| s.len()).sum();
    let mut merged: Vec<SourceBlock> = Vec::with_capacity(total);
    let room = slices.len().min(4);
    let mut cursors = vec![0usize; slices.len()];
    loop {
        let mut least: Option<BlockId> = None;
        for (slot, (_, slice)) in slices.iter().enumerate() {
            if let Some(head) = slice.get(cursors[slot]) {
                if least.is_none_or(|l| *head < l) {
                    least = Some(*head);
                }
            }
        }
        let Some(id) = least else { break };
        let mut holders: Vec<u16> = Vec::with_capacity(room);
        for (slot, (server, slice)) in slices.iter().enumerate() {
            if slice.get(cursors[slot]) == Some(&id) {
                cursors[slot] += 1;
                if holders.last() != Some(server) {
                    holders.push(*server);
                }
            }
        }
        merged.push(SourceBlock { id, holders });
    }
    merged
}

/// Merges sorted, deduplicated destination slices into one sorted distinct list, pairwise
/// (linear in the entries; sorting them again would cost as much as the rest of the diff).
pub fn merge_destination(slices: Vec<Vec<BlockId>>) -> Vec<BlockId> {
    let mut slices: Vec<Vec<BlockId>> = slices.into_iter().filter(|s| !s.is_empty()).collect();
    while slices.len() > 1 {
        let mut next = Vec::with_capacity(slices.len().div_ceil(2));
        let mut pairs = slices.into_iter();
        while let Some(a) = pairs.next() {
            next.push(match pairs.next() {
                Some(b) => merge_two(&a, &b),
                None => a,
            });
        }
        slices = next;
    }
    slices.pop().unwrap_or_default()
}

/// The sorted union of two sorted, deduplicated lists.
fn merge_two(a: &[BlockId], b: &[BlockId]) -> Vec<BlockId> {
    use std::cmp::Ordering;
    let mut out = Vec::with_capacity(a.len() + b.len());
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            Ordering::Less => {
                out.push(a[i]);
                i += 1;
            }
            Ordering::Greater => {
                out.push(b[j]);
                j += 1;
            }
            Ordering::Equal => {
                out.push(a[i]);
                i += 1;
                j += 1;
            }
        }
    }
    out.extend_from_slice(&a[i..]);
    out.extend_from_slice(&b[j..]);
    out
}

/// Removes from `source` every block the destination already has (same hash and size).
/// Returns the blocks to copy, in hash order, and how many (and how many bytes) were
/// already present.
pub fn subtract(source: Vec<SourceBlock>, destination: &[BlockId]) -> (Vec<SourceBlock>, u64, u64) {
    let mut present = 0u64;
    let mut present_bytes = 0u64;
    let mut cursor = 0usize;
    let mut missing = Vec::with_capacity(source.len());
    for block in source {
        while cursor < destination.len() && destination[cursor] < block.id {
            cursor += 1;
        }
        if destination.get(cursor) == Some(&block.id) {
            present += 1;
            present_bytes += block.id.size;
        } else {
            missing.push(block);
        }
    }
    (missing, present, present_bytes)
}

/// A block the destination already has, with the source servers and the destination
/// servers holding it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PresentBlock {
    pub block: SourceBlock,
    pub dst_holders: Vec<u16>,
}

/// Like [`subtract`], keeping the present blocks with their destination holders
/// (`destination` merged with [`merge_sources`]).
pub fn split(
    source: Vec<SourceBlock>,
    destination: &[SourceBlock],
) -> (Vec<SourceBlock>, Vec<PresentBlock>) {
    let mut cursor = 0usize;
    let mut missing = Vec::new();
    let mut present = Vec::new();
    for block in source {
        while cursor < destination.len() && destination[cursor].id < block.id {
            cursor += 1;
        }
        match destination.get(cursor) {
            Some(d) if d.id == block.id => present.push(PresentBlock {
                dst_holders: d.holders.clone(),
                block,
            }),
            _ => missing.push(block),
        }
    }
    (missing, present)
}

/// The hash prefixes to walk, in order: `base` followed by every combination of `extra`
/// hex digits (`extra == 0` gives just `base`).
pub fn prefixes(base: &str, extra: usize) -> impl Iterator<Item = String> + '_ {
    let count = 16u64.pow(extra as u32);
    (0..count).map(move |n| {
        if extra == 0 {
            base.to_string()
        } else {
            format!("{base}{n:0width$x}", width = extra)
        }
    })
}

/// Picks how many hex digits to add to the user's prefix so that one slice holds at most
/// `target` locators, given an estimate of the blocks under that prefix.
pub fn choose_extra_digits(estimated_blocks: u64, base_len: usize, target: u64) -> usize {
    let mut extra = 0usize;
    let mut per_slice = estimated_blocks;
    while per_slice > target && base_len + extra < 8 {
        extra += 1;
        per_slice /= 16;
    }
    extra
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn id(byte: u8, size: u64) -> BlockId {
        BlockId {
            hash: BlockHash([byte; 16]),
            size,
        }
    }

    #[test]
    fn merge_records_holders_and_dedups() {
        let a = vec![id(1, 3), id(2, 3), id(5, 1)];
        let b = vec![id(2, 3), id(4, 9)];
        let c = vec![id(2, 3), id(2, 4)];
        let merged = merge_sources(vec![(0, a), (1, b), (2, c)]);
        let got: Vec<(u8, u64, Vec<u16>)> = merged
            .iter()
            .map(|m| (m.id.hash.0[0], m.id.size, m.holders.clone()))
            .collect();
        assert_eq!(
            got,
            vec![
                (1, 3, vec![0]),
                (2, 3, vec![0, 1, 2]),
                (2, 4, vec![2]),
                (4, 9, vec![1]),
                (5, 1, vec![0]),
            ]
        );
    }

    #[test]
    fn the_heap_merge_and_the_linear_merge_agree() {
        let slices: Vec<(u16, Vec<BlockId>)> = (0..12u16)
            .rev()
            .map(|server| {
                let mut s: Vec<BlockId> = (0..40u8)
                    .filter(|b| (u16::from(*b) + server) % 3 != 0)
                    .map(|b| id(b, u64::from(b % 2)))
                    .collect();
                sort_slice(&mut s);
                (server, s)
            })
            .collect();
        let heap = merge_sources(slices.clone());
        let linear = merge_sources_linear(&mut slices.clone());
        assert_eq!(heap, linear);
        assert!(heap
            .iter()
            .all(|b| b.holders.windows(2).all(|w| w[0] < w[1])));
    }

    #[test]
    fn subtract_compares_hash_and_size() {
        let src = merge_sources(vec![(0, vec![id(1, 3), id(2, 3), id(3, 3)])]);
        let dst = vec![id(2, 3), id(3, 4)];
        let (missing, present, _) = subtract(src, &dst);
        assert_eq!(present, 1);
        let ids: Vec<BlockId> = missing.iter().map(|m| m.id).collect();
        assert_eq!(ids, vec![id(1, 3), id(3, 3)]);
    }

    #[test]
    fn split_keeps_destination_holders() {
        let src = merge_sources(vec![(0, vec![id(1, 3), id(2, 3)])]);
        let dst = merge_sources(vec![(0, vec![id(2, 3)]), (2, vec![id(2, 3), id(9, 1)])]);
        let (missing, present) = split(src, &dst);
        assert_eq!(missing.len(), 1);
        assert_eq!(present.len(), 1);
        assert_eq!(present[0].dst_holders, vec![0, 2]);
    }

    #[test]
    fn prefix_walk_is_ordered() {
        let p: Vec<String> = prefixes("a", 1).collect();
        assert_eq!(p.len(), 16);
        assert_eq!(p[0], "a0");
        assert_eq!(p[15], "af");
        assert_eq!(prefixes("", 0).collect::<Vec<_>>(), vec![""]);
        assert_eq!(prefixes("", 2).nth(255).as_deref(), Some("ff"));
    }

    #[test]
    fn slice_size_choice() {
        assert_eq!(choose_extra_digits(10, 0, 1_000_000), 0);
        assert_eq!(choose_extra_digits(2_000_000, 0, 1_000_000), 1);
        assert_eq!(choose_extra_digits(1_000_000_000, 0, 1_000_000), 3);
        assert_eq!(choose_extra_digits(u64::MAX, 6, 1), 2);
    }

    proptest! {
        #[test]
        fn merging_destination_slices_is_their_sorted_union(
            servers in proptest::collection::vec(proptest::collection::vec((0u8..30, 0u64..3), 0..50), 0..6),
        ) {
            let mut slices = Vec::new();
            let mut all = Vec::new();
            for entries in &servers {
                let mut slice: Vec<BlockId> = entries.iter().map(|&(b, s)| id(b, s)).collect();
                all.extend(slice.iter().copied());
                sort_slice(&mut slice);
                slices.push(slice);
            }
            sort_slice(&mut all);
            prop_assert_eq!(merge_destination(slices), all);
        }

        #[test]
        fn merge_then_subtract_equals_set_difference(
            servers in proptest::collection::vec(proptest::collection::vec((0u8..20, 0u64..3), 0..40), 1..5),
            dst in proptest::collection::vec((0u8..20, 0u64..3), 0..40),
        ) {
            use std::collections::{BTreeMap, BTreeSet};
            let mut expected: BTreeMap<BlockId, BTreeSet<u16>> = BTreeMap::new();
            let mut slices = Vec::new();
            for (server, entries) in servers.iter().enumerate() {
                let mut slice: Vec<BlockId> = entries.iter().map(|&(b, s)| id(b, s)).collect();
                for e in &slice { expected.entry(*e).or_default().insert(server as u16); }
                sort_slice(&mut slice);
                slices.push((server as u16, slice));
            }
            let dst_set: BTreeSet<BlockId> = dst.iter().map(|&(b, s)| id(b, s)).collect();
            let mut dst_slice: Vec<BlockId> = dst.iter().map(|&(b, s)| id(b, s)).collect();
            sort_slice(&mut dst_slice);
            let (missing, present, _) = subtract(merge_sources(slices), &dst_slice);
            let want: Vec<(BlockId, Vec<u16>)> = expected.iter()
                .filter(|(k, _)| !dst_set.contains(k))
                .map(|(k, v)| (*k, v.iter().copied().collect()))
                .collect();
            let got: Vec<(BlockId, Vec<u16>)> = missing.into_iter().map(|m| (m.id, m.holders)).collect();
            prop_assert_eq!(got, want);
            prop_assert_eq!(present as usize, expected.keys().filter(|k| dst_set.contains(k)).count());
        }
    }
}
