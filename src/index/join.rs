//! Joining one slice of the source with the destination's listings, by hash, keeping where
//! each destination copy is and when it was written. The copy's diff ([`super::merge`])
//! only needs "present or not"; validation and `touch` need every copy: on which mount or
//! server, with which size (the same hash with another size is a finding), and its mtime
//! (for the garbage-collection window). Memory is one slice, as in the copy.
//!
//! [`fetch_listings`] reads the slice from every [`Location`] at once; [`join`] is pure.

use futures_util::future::join_all;

use super::layout::{Layout, Location};
use super::merge::{BlockId, SourceBlock};
use super::walk::{WalkError, MAX_SLICE_ENTRIES};
use crate::cluster::Cluster;
use crate::keep::BlockHash;
use crate::keepstore::{IndexSource, Keepstores};

/// One location's entries under a prefix: (block, mtime ns), sorted, one per block (the
/// oldest mtime when a whole-server listing names a block on two mounts).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Listing {
    /// Index into [`Layout::locations`].
    pub location: u16,
    pub entries: Vec<(BlockId, i64)>,
}

/// One destination copy of a hash.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Replica {
    /// Index into [`Layout::locations`].
    pub location: u16,
    pub size: u64,
    pub mtime_ns: i64,
}

/// A block of the joined slice.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Joined {
    /// A source block and every destination copy of its hash (whatever their size).
    Source {
        block: SourceBlock,
        replicas: Vec<Replica>,
    },
    /// A `hash+size` only the destination has.
    DstOnly { id: BlockId, replicas: Vec<Replica> },
}

/// Reads `prefix` from one location.
pub async fn fetch_listing<K: Keepstores>(
    keepstores: &K,
    cluster: &Cluster,
    location: &Location,
    index: u16,
    prefix: &str,
) -> Result<Listing, WalkError> {
    let source = match &location.mount {
        Some(uuid) => IndexSource::Mount(uuid),
        None => IndexSource::Server,
    };
    let mut raw = Vec::new();
    keepstores
        .index(
            cluster,
            location.server,
            source,
            prefix,
            MAX_SLICE_ENTRIES,
            &mut raw,
        )
        .await
        .map_err(|cause| WalkError {
            cluster: cluster.label,
            origin: cluster
                .services
                .get(location.server)
                .map(|s| match &location.mount {
                    Some(uuid) => format!("{} (mount {uuid})", s.origin),
                    None => s.origin.to_string(),
                })
                .unwrap_or_default(),
            prefix: prefix.to_string(),
            cause,
        })?;
    let mut entries: Vec<(BlockId, i64)> = raw
        .into_iter()
        .map(|e| (BlockId::new(e.hash, e.size), e.mtime_ns))
        .collect();
    entries.sort_unstable();
    // Sorted by (block, mtime): the first of equal blocks has the oldest mtime.
    entries.dedup_by(|later, first| later.0 == first.0);
    Ok(Listing {
        location: index,
        entries,
    })
}

/// Reads `prefix` from every location of `layout` at once; also returns the lines read.
pub async fn fetch_listings<K: Keepstores>(
    keepstores: &K,
    cluster: &Cluster,
    layout: &Layout,
    prefix: &str,
) -> Result<(Vec<Listing>, u64), WalkError> {
    let fetches = layout
        .locations
        .iter()
        .enumerate()
        .map(|(i, location)| fetch_listing(keepstores, cluster, location, i as u16, prefix));
    let mut listings = Vec::with_capacity(layout.locations.len());
    let mut lines = 0u64;
    for result in join_all(fetches).await {
        let listing = result?;
        lines += listing.entries.len() as u64;
        listings.push(listing);
    }
    Ok((listings, lines))
}

/// Joins sorted source blocks with the destination listings by hash: every source block
/// with every copy of its hash, then the destination-only `hash+size`s, all in hash order.
pub fn join(source: Vec<SourceBlock>, listings: Vec<Listing>) -> Vec<Joined> {
    let mut copies: Vec<(BlockHash, u64, u16, i64)> = listings
        .into_iter()
        .flat_map(|l| {
            let location = l.location;
            l.entries
                .into_iter()
                .map(move |(id, mtime)| (id.hash, id.size, location, mtime))
        })
        .collect();
    copies.sort_unstable();
    let mut out = Vec::with_capacity(source.len());
    let mut src = source.into_iter().peekable();
    let mut at = 0usize;
    loop {
        let group_hash = copies.get(at).map(|c| c.0);
        let src_hash = src.peek().map(|b| b.id.hash);
        match (src_hash, group_hash) {
            (None, None) => break,
            (Some(s), g) if g.is_none_or(|g| s < g) => {
                if let Some(block) = src.next() {
                    out.push(Joined::Source {
                        block,
                        replicas: Vec::new(),
                    });
                }
            }
            (s, Some(g)) => {
                let end = at + copies[at..].iter().take_while(|c| c.0 == g).count();
                let group: Vec<Replica> = copies[at..end]
                    .iter()
                    .map(|&(_, size, location, mtime_ns)| Replica {
                        location,
                        size,
                        mtime_ns,
                    })
                    .collect();
                if s == Some(g) {
                    // Usually one source block per hash: the group moves into it.
                    let mut same: Vec<SourceBlock> = Vec::with_capacity(1);
                    while let Some(block) = src.next_if(|b| b.id.hash == g) {
                        same.push(block);
                    }
                    let last = same.len().saturating_sub(1);
                    let mut group = Some(group);
                    for (i, block) in same.into_iter().enumerate() {
                        let replicas = if i == last {
                            group.take().unwrap_or_default()
                        } else {
                            group.clone().unwrap_or_default()
                        };
                        out.push(Joined::Source { block, replicas });
                    }
                } else {
                    // Destination only: one entry per size.
                    let mut sizes: Vec<u64> = group.iter().map(|r| r.size).collect();
                    sizes.dedup();
                    for size in sizes {
                        out.push(Joined::DstOnly {
                            id: BlockId::new(g, size),
                            replicas: group.iter().filter(|r| r.size == size).copied().collect(),
                        });
                    }
                }
                at = end;
            }
            // Covered by the source arm's guard; the compiler cannot see it.
            (Some(_), None) => break,
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(byte: u8, size: u64) -> BlockId {
        BlockId::new(BlockHash([byte; 16]), size)
    }

    fn src(byte: u8, size: u64) -> SourceBlock {
        SourceBlock {
            id: id(byte, size),
            holders: vec![0],
        }
    }

    fn listing(location: u16, entries: &[(u8, u64, i64)]) -> Listing {
        let mut entries: Vec<(BlockId, i64)> =
            entries.iter().map(|&(b, s, t)| (id(b, s), t)).collect();
        entries.sort_unstable();
        Listing { location, entries }
    }

    #[test]
    fn every_copy_of_a_hash_joins_its_source_block_whatever_its_size() {
        let source = vec![src(1, 10), src(2, 10), src(4, 10)];
        let listings = vec![
            listing(0, &[(1, 10, 100), (2, 11, 200), (3, 5, 300)]),
            listing(1, &[(1, 10, 150), (3, 5, 50), (3, 6, 60)]),
        ];
        let joined = join(source, listings);
        let summary: Vec<String> = joined
            .iter()
            .map(|j| match j {
                Joined::Source { block, replicas } => format!(
                    "S{}:{:?}",
                    block.id.hash.0[0],
                    replicas
                        .iter()
                        .map(|r| (r.location, r.size))
                        .collect::<Vec<_>>()
                ),
                Joined::DstOnly { id, replicas } => {
                    format!("D{}+{}x{}", id.hash.0[0], id.size, replicas.len())
                }
            })
            .collect();
        assert_eq!(
            summary,
            vec![
                "S1:[(0, 10), (1, 10)]",
                "S2:[(0, 11)]",
                "D3+5x2",
                "D3+6x1",
                "S4:[]",
            ]
        );
    }

    #[test]
    fn nothing_joins_to_nothing() {
        assert!(join(Vec::new(), Vec::new()).is_empty());
        let joined = join(vec![src(9, 1)], vec![Listing::default()]);
        assert_eq!(joined.len(), 1);
    }
}
