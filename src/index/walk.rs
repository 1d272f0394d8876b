//! Reads index slices from every server of both clusters at once (through the [`Keepstores`]
//! trait), checks each for keepstore's completion marker, and diffs them with
//! [`super::merge`]. An unreadable source slice aborts the walk, as in keep-rsync (copying
//! against a partial source index could miss blocks); so does an unreadable destination
//! slice unless the job accepts re-copying what that server may hold.

use futures_util::future::join_all;

use super::layout::{Layout, Location};
use super::merge::{self, BlockId, PresentBlock, SourceBlock};
use crate::cluster::Cluster;
use crate::keep::index_format::IndexEntry;
use crate::keepstore::{Cause, IndexSource, Keepstores};

/// Why a slice could not be read, naming the cluster, server and prefix.
#[derive(Debug, thiserror::Error)]
#[error("{}", self.describe())]
pub struct WalkError {
    pub cluster: &'static str,
    pub origin: String,
    pub prefix: String,
    pub cause: Cause,
}

impl WalkError {
    fn describe(&self) -> String {
        let (cluster, origin, prefix) = (self.cluster, &self.origin, &self.prefix);
        match &self.cause {
            Cause::Status { status, .. } => format!(
                "Got http status code: {status} from {cluster} index {origin}/index/{prefix}"
            ),
            Cause::BadAnswer(detail) => {
                format!("Got incomplete index from {cluster} {origin}/index/{prefix}: {detail}")
            }
            other => format!("reading {cluster} index {origin}/index/{prefix}: {other}"),
        }
    }

    /// The server the error concerns.
    pub fn origin(&self) -> &str {
        &self.origin
    }
}

/// What to do when a destination server's index cannot be read (`-dst-index-errors`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum DstIndexErrors {
    /// Stop, as keep-rsync does (a destination token without admin rights would otherwise
    /// re-send the whole source).
    #[default]
    Fail,
    /// Treat that server's slice as empty: what it holds may be copied again.
    Copy,
}

/// The outcome of diffing one prefix.
#[derive(Debug, Default)]
pub struct SliceDiff {
    pub prefix: String,
    /// Distinct `hash+size` on the source / destination under this prefix.
    pub src_blocks: u64,
    pub dst_blocks: u64,
    /// Source blocks the destination already has, and their bytes.
    pub present: u64,
    pub present_bytes: u64,
    /// Blocks to copy, in hash order, with the source servers holding each.
    pub missing: Vec<SourceBlock>,
    /// With [`DiffWants::present`]: the blocks the destination has, with their holders.
    pub present_blocks: Vec<PresentBlock>,
    /// Destination servers whose slice could not be read (with `DstIndexErrors::Copy`).
    pub dst_unreadable: Vec<WalkError>,
    /// Index lines read from both clusters.
    pub lines: u64,
    /// How long each server's listing took: (cluster label, service uuid, duration).
    pub timings: Vec<(&'static str, String, std::time::Duration)>,
}

impl SliceDiff {
    pub fn missing_bytes(&self) -> u64 {
        self.missing.iter().map(|b| b.id.size).sum()
    }
}

/// Hard cap on one server's slice, so a wrong prefix length fails loudly instead of
/// exhausting memory (24 bytes per entry: 64 Mi entries = 1.5 GiB).
pub const MAX_SLICE_ENTRIES: usize = 64 << 20;

/// Which index entries a job wants (size and mtime filters); everything by default.
pub type EntryFilter<'a> = dyn Fn(&IndexEntry) -> bool + 'a;

/// Reads one server's index slice, filtered, sorted and deduplicated.
pub async fn fetch_slice<K: Keepstores>(
    keepstores: &K,
    cluster: &Cluster,
    server: usize,
    prefix: &str,
    filter: Option<&EntryFilter<'_>>,
) -> Result<(Vec<BlockId>, u64), WalkError> {
    let (ids, lines, _) = fetch_slice_timed(keepstores, cluster, server, prefix, filter).await?;
    Ok((ids, lines))
}

/// [`fetch_slice`], with how long the listing took.
async fn fetch_slice_timed<K: Keepstores>(
    keepstores: &K,
    cluster: &Cluster,
    server: usize,
    prefix: &str,
    filter: Option<&EntryFilter<'_>>,
) -> Result<(Vec<BlockId>, u64, std::time::Duration), WalkError> {
    fetch_source_timed(
        keepstores,
        cluster,
        server,
        IndexSource::Server,
        prefix,
        filter,
    )
    .await
}

/// One listing (a server's `/index/` or one mount's), filtered, sorted, deduplicated, timed.
async fn fetch_source_timed<K: Keepstores>(
    keepstores: &K,
    cluster: &Cluster,
    server: usize,
    source: IndexSource<'_>,
    prefix: &str,
    filter: Option<&EntryFilter<'_>>,
) -> Result<(Vec<BlockId>, u64, std::time::Duration), WalkError> {
    let began = std::time::Instant::now();
    let mut entries = Vec::new();
    keepstores
        .index(
            cluster,
            server,
            source,
            prefix,
            MAX_SLICE_ENTRIES,
            &mut entries,
        )
        .await
        .map_err(|cause| WalkError {
            cluster: cluster.label,
            origin: cluster
                .services
                .get(server)
                .map(|s| s.origin.to_string())
                .unwrap_or_default(),
            prefix: prefix.to_string(),
            cause,
        })?;
    let lines = entries.len() as u64;
    let mut ids: Vec<BlockId> = entries
        .iter()
        .filter(|e| filter.is_none_or(|f| f(e)))
        .map(|e| BlockId::new(e.hash, e.size))
        .collect();
    drop(entries);
    let took = began.elapsed();
    merge::sort_slice(&mut ids);
    Ok((ids, lines, took))
}

/// One location's listing: from its server, else from another server that mounts it.
async fn fetch_unit<K: Keepstores>(
    keepstores: &K,
    cluster: &Cluster,
    unit: &Location,
    prefix: &str,
    filter: Option<&EntryFilter<'_>>,
) -> Result<(Vec<BlockId>, u64, std::time::Duration, usize), WalkError> {
    let mut last = None;
    let others = unit.servers.iter().copied().filter(|&s| s != unit.server);
    for server in std::iter::once(unit.server).chain(others) {
        let source = match &unit.mount {
            Some(uuid) => IndexSource::Mount(uuid),
            None => IndexSource::Server,
        };
        match fetch_source_timed(keepstores, cluster, server, source, prefix, filter).await {
            Ok((ids, lines, took)) => return Ok((ids, lines, took, server)),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| WalkError {
        cluster: cluster.label,
        origin: String::new(),
        prefix: prefix.to_string(),
        cause: Cause::BadAnswer("an index unit without a server".into()),
    }))
}

/// Replaces location numbers by the servers that hold each location's blocks (every
/// server mounting it).
fn units_to_servers(blocks: &mut [SourceBlock], layout: &Layout) {
    // Usually every location is one server's (its `/index/`, or a mount only it exposes):
    // then holders are renamed in place, with no allocation per block, or not at all.
    let single: Option<Vec<u16>> = layout
        .locations
        .iter()
        .map(|l| match l.servers.as_slice() {
            [only] => Some(*only as u16),
            _ => None,
        })
        .collect();
    if let Some(map) = single {
        if map.iter().enumerate().all(|(u, &s)| usize::from(s) == u) {
            return;
        }
        for block in blocks {
            block.holders.retain(|&u| usize::from(u) < map.len());
            for holder in &mut block.holders {
                *holder = map[usize::from(*holder)];
            }
            block.holders.sort_unstable();
            block.holders.dedup();
        }
        return;
    }
    for block in blocks {
        let mut servers: Vec<u16> = block
            .holders
            .iter()
            .filter_map(|&u| layout.locations.get(u as usize))
            .flat_map(|l| l.servers.iter().map(|&s| s as u16))
            .collect();
        servers.sort_unstable();
        servers.dedup();
        block.holders = servers;
    }
}

/// What a diff is asked to keep besides the missing blocks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DiffWants {
    /// The present blocks with their destination holders (move, vacate).
    pub present: bool,
}

/// What the walk lists on both clusters.
#[derive(Clone, Debug)]
pub struct Layouts {
    pub src: Layout,
    pub dst: Layout,
}

impl Layouts {
    /// One listing per server on both sides (keep-rsync's way).
    pub fn per_server(src: &Cluster, dst: &Cluster) -> Layouts {
        Layouts {
            src: Layout::whole_servers(src),
            dst: Layout::whole_servers(dst),
        }
    }
}

/// Fetches `prefix` from every server of both clusters concurrently and diffs it.
pub async fn diff_slice<K: Keepstores>(
    keepstores: &K,
    src: &Cluster,
    dst: &Cluster,
    prefix: &str,
    dst_errors: DstIndexErrors,
    filter: Option<&EntryFilter<'_>>,
) -> Result<SliceDiff, WalkError> {
    let layouts = Layouts::per_server(src, dst);
    diff_slice_with(
        keepstores,
        src,
        dst,
        &layouts,
        prefix,
        dst_errors,
        filter,
        DiffWants::default(),
    )
    .await
}

/// [`diff_slice`] over the given index units, keeping what `wants` asks for.
#[allow(clippy::too_many_arguments)]
pub async fn diff_slice_with<K: Keepstores>(
    keepstores: &K,
    src: &Cluster,
    dst: &Cluster,
    layouts: &Layouts,
    prefix: &str,
    dst_errors: DstIndexErrors,
    filter: Option<&EntryFilter<'_>>,
    wants: DiffWants,
) -> Result<SliceDiff, WalkError> {
    let src_fetches = layouts
        .src
        .locations
        .iter()
        .map(|u| fetch_unit(keepstores, src, u, prefix, filter));
    let dst_fetches = layouts
        .dst
        .locations
        .iter()
        .map(|u| fetch_unit(keepstores, dst, u, prefix, None));
    let (src_results, dst_results) =
        futures_util::join!(join_all(src_fetches), join_all(dst_fetches));
    let mut lines = 0;
    let mut timings = Vec::new();
    let mut src_slices = Vec::with_capacity(src_results.len());
    for (unit, result) in src_results.into_iter().enumerate() {
        let (slice, n, took, server) = result?;
        lines += n;
        timings.push((src.label, src.services[server].uuid.clone(), took));
        src_slices.push((unit as u16, slice));
    }
    let mut dst_slices = Vec::with_capacity(dst_results.len());
    let mut dst_unreadable = Vec::new();
    for (unit, result) in dst_results.into_iter().enumerate() {
        match result {
            Ok((slice, n, took, server)) => {
                lines += n;
                timings.push((dst.label, dst.services[server].uuid.clone(), took));
                dst_slices.push((unit as u16, slice));
            }
            Err(e) if dst_errors == DstIndexErrors::Copy => dst_unreadable.push(e),
            Err(e) => return Err(e),
        }
    }
    let mut merged_src = merge::merge_sources(src_slices);
    units_to_servers(&mut merged_src, &layouts.src);
    let src_blocks = merged_src.len() as u64;
    let (dst_blocks, missing, present, present_bytes, present_blocks) = if wants.present {
        let mut merged_dst = merge::merge_sources(dst_slices);
        units_to_servers(&mut merged_dst, &layouts.dst);
        let dst_blocks = merged_dst.len() as u64;
        let (missing, present) = merge::split(merged_src, &merged_dst);
        let bytes = present.iter().map(|p| p.block.id.size).sum();
        (dst_blocks, missing, present.len() as u64, bytes, present)
    } else {
        let merged_dst = merge::merge_destination(dst_slices.into_iter().map(|(_, s)| s).collect());
        let dst_blocks = merged_dst.len() as u64;
        let (missing, present, bytes) = merge::subtract(merged_src, &merged_dst);
        (dst_blocks, missing, present, bytes, Vec::new())
    };
    Ok(SliceDiff {
        prefix: prefix.to_string(),
        src_blocks,
        dst_blocks,
        present,
        present_bytes,
        missing,
        present_blocks,
        dst_unreadable,
        lines,
        timings,
    })
}

/// Estimates the source blocks under `base` by reading one small sub-slice (three more hex
/// digits, 1/4096 of the space) from every source server; MD5 spreads hashes evenly.
pub async fn estimate_source_blocks<K: Keepstores>(
    keepstores: &K,
    src: &Cluster,
    base: &str,
) -> Result<u64, WalkError> {
    if base.len() >= 29 {
        return Ok(0);
    }
    let probe = format!("{base}000");
    let fetches = (0..src.services.len()).map(|i| fetch_slice(keepstores, src, i, &probe, None));
    let mut largest = 0u64;
    for result in join_all(fetches).await {
        largest = largest.max(result?.0.len() as u64);
    }
    Ok(largest
        .saturating_mul(4096)
        .saturating_mul(src.services.len() as u64))
}
