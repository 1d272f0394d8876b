//! Fetches index slices (`GET /index/<prefix>`) from every server of both clusters at once,
//! checks each for keepstore's completion marker, and diffs them with [`super::merge`].

use futures_util::future::join_all;

use super::merge::{self, BlockId, SourceBlock};
use crate::keep::index_format::IndexBodyParser;
use crate::mover::cluster::Cluster;
use crate::net::{HttpClient, Method, Request};

/// Why a slice could not be read. Any of these aborts the run, as in keep-rsync: copying
/// against a partial index could skip blocks the destination lacks.
#[derive(Debug, thiserror::Error)]
pub enum WalkError {
    #[error("Got http status code: {status} from {cluster} index {origin}/index/{prefix}")]
    Status {
        cluster: &'static str,
        origin: String,
        prefix: String,
        status: u16,
    },
    #[error("Got incomplete index from {cluster} {origin}/index/{prefix}: {detail}")]
    Incomplete {
        cluster: &'static str,
        origin: String,
        prefix: String,
        detail: String,
    },
    #[error("reading {cluster} index {origin}/index/{prefix}: {source}")]
    Net {
        cluster: &'static str,
        origin: String,
        prefix: String,
        #[source]
        source: Box<crate::net::NetError>,
    },
    #[error("{cluster} index slice {prefix} from {origin} holds more than {limit} entries; use a longer -prefix-length")]
    TooLarge {
        cluster: &'static str,
        origin: String,
        prefix: String,
        limit: usize,
    },
}

impl WalkError {
    /// The server the error concerns.
    pub fn origin(&self) -> &str {
        match self {
            WalkError::Status { origin, .. }
            | WalkError::Incomplete { origin, .. }
            | WalkError::Net { origin, .. }
            | WalkError::TooLarge { origin, .. } => origin,
        }
    }
}

/// The outcome of diffing one prefix.
#[derive(Debug, Default)]
pub struct SliceDiff {
    pub prefix: String,
    /// Distinct `hash+size` on the source / destination under this prefix.
    pub src_blocks: u64,
    pub dst_blocks: u64,
    /// Source blocks the destination already has.
    pub present: u64,
    /// Blocks to copy, in hash order, with the source servers holding each.
    pub missing: Vec<SourceBlock>,
    /// Destination servers whose slice could not be read (treated as empty).
    pub dst_unreadable: Vec<WalkError>,
}

impl SliceDiff {
    pub fn missing_bytes(&self) -> u64 {
        self.missing.iter().map(|b| b.id.size).sum()
    }
}

/// Hard cap on one server's slice, so a wrong prefix length fails loudly instead of
/// exhausting memory (24 bytes per entry: 64 Mi entries = 1.5 GiB).
pub const MAX_SLICE_ENTRIES: usize = 64 << 20;

/// Reads one server's index slice, sorted and deduplicated.
pub async fn fetch_slice(
    client: &HttpClient,
    cluster: &Cluster,
    server: usize,
    prefix: &str,
) -> Result<Vec<BlockId>, WalkError> {
    let service = &cluster.services[server];
    let origin = service.origin.to_string();
    let net_error = |source| WalkError::Net {
        cluster: cluster.label,
        origin: origin.clone(),
        prefix: prefix.to_string(),
        source: Box::new(source),
    };
    let request = Request {
        method: Method::Get,
        origin: service.origin.clone(),
        path_and_query: format!("/index/{prefix}"),
        headers: vec![(
            "Authorization".to_string(),
            format!("Bearer {}", cluster.token),
        )],
        body: None,
    };
    let mut response = client.send(request).await.map_err(net_error)?;
    if response.status != 200 {
        let status = response.status;
        let _ = response.discard().await;
        return Err(WalkError::Status {
            cluster: cluster.label,
            origin,
            prefix: prefix.to_string(),
            status,
        });
    }
    let mut parser = IndexBodyParser::new(Some(prefix.to_string()));
    let mut entries: Vec<BlockId> = Vec::new();
    let mut buffer: Vec<u8> = Vec::with_capacity(256 << 10);
    let incomplete = |detail: String| WalkError::Incomplete {
        cluster: cluster.label,
        origin: origin.clone(),
        prefix: prefix.to_string(),
        detail,
    };
    loop {
        buffer.clear();
        let compio::BufResult(read, returned) = response.read_body_chunk(buffer).await;
        buffer = returned;
        let read = read.map_err(|e| incomplete(e.to_string()))?;
        if read == 0 {
            break;
        }
        parser
            .feed(&buffer, |entry| {
                entries.push(BlockId {
                    hash: entry.hash,
                    size: entry.size,
                })
            })
            .map_err(|e| incomplete(e.to_string()))?;
        if entries.len() > MAX_SLICE_ENTRIES {
            return Err(WalkError::TooLarge {
                cluster: cluster.label,
                origin,
                prefix: prefix.to_string(),
                limit: MAX_SLICE_ENTRIES,
            });
        }
    }
    parser.finish().map_err(|e| incomplete(e.to_string()))?;
    merge::sort_slice(&mut entries);
    Ok(entries)
}

/// Fetches `prefix` from every server of both clusters concurrently and diffs it.
pub async fn diff_slice(
    client: &HttpClient,
    src: &Cluster,
    dst: &Cluster,
    prefix: &str,
) -> Result<SliceDiff, WalkError> {
    let src_fetches = (0..src.services.len()).map(|i| fetch_slice(client, src, i, prefix));
    let dst_fetches = (0..dst.services.len()).map(|i| fetch_slice(client, dst, i, prefix));
    let (src_results, dst_results) =
        futures_util::join!(join_all(src_fetches), join_all(dst_fetches));
    let mut src_slices = Vec::with_capacity(src_results.len());
    for (server, result) in src_results.into_iter().enumerate() {
        src_slices.push((server as u16, result?));
    }
    // A destination index that cannot be read only means blocks it may hold are copied
    // again (harmless: Keep is content-addressed); a source one could hide blocks, so it
    // aborts the run above.
    let mut dst_slices = Vec::with_capacity(dst_results.len());
    let mut dst_unreadable = Vec::new();
    for result in dst_results {
        match result {
            Ok(slice) => dst_slices.push(slice),
            Err(e) => dst_unreadable.push(e),
        }
    }
    let merged_src = merge::merge_sources(src_slices);
    let merged_dst = merge::merge_destination(dst_slices);
    let src_blocks = merged_src.len() as u64;
    let dst_blocks = merged_dst.len() as u64;
    let (missing, present) = merge::subtract(merged_src, &merged_dst);
    Ok(SliceDiff {
        prefix: prefix.to_string(),
        src_blocks,
        dst_blocks,
        present,
        missing,
        dst_unreadable,
    })
}

/// Estimates the source blocks under `base` by reading one small sub-slice (three more hex
/// digits, 1/4096 of the space) from every source server; MD5 spreads hashes evenly.
pub async fn estimate_source_blocks(
    client: &HttpClient,
    src: &Cluster,
    base: &str,
) -> Result<u64, WalkError> {
    if base.len() >= 29 {
        return Ok(0);
    }
    let probe = format!("{base}000");
    let fetches = (0..src.services.len()).map(|i| fetch_slice(client, src, i, &probe));
    let mut largest = 0u64;
    for result in join_all(fetches).await {
        largest = largest.max(result?.len() as u64);
    }
    Ok(largest
        .saturating_mul(4096)
        .saturating_mul(src.services.len() as u64))
}
