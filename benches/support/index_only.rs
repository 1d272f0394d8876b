//! Keepstores that answer index requests and nothing else, for the index-walk benchmarks
//! (`benches/index_walk.rs`, `examples/index_scale.rs`): each supplies only where its index
//! lines come from, and every block, mount, pull, trash or touch request fails loudly.

use bytes::Bytes;
use keepmover::cluster::Cluster;
use keepmover::keep::index_format::IndexEntry;
use keepmover::keep::wire::{MountInfo, PullItem, TrashItem};
use keepmover::keep::ShortLocator;
use keepmover::keepstore::{BlockBody, Cause, IndexSource, Keepstores, PutReply, PutWants};

/// Where the index lines come from.
pub trait IndexLines {
    /// Appends `server`'s entries under `prefix` (at most `max_entries`) to `entries`.
    async fn index(
        &self,
        cluster: &Cluster,
        server: usize,
        prefix: &str,
        max_entries: usize,
        entries: &mut Vec<IndexEntry>,
    ) -> Result<(), Cause>;
}

/// [`Keepstores`] over an [`IndexLines`]: the index only.
pub struct IndexOnly<T>(pub T);

const NO_DATA: &str = "index-only keepstores: no block data";

fn no_data() -> Cause {
    Cause::BadAnswer(NO_DATA.into())
}

pub struct NoBody;

impl BlockBody for NoBody {
    fn content_length(&self) -> Option<u64> {
        None
    }
    async fn read_chunk(&mut self, buf: Vec<u8>) -> (Result<usize, Cause>, Vec<u8>) {
        (Err(no_data()), buf)
    }
}

impl<T: IndexLines> Keepstores for IndexOnly<T> {
    type Body = NoBody;

    async fn get_block(&self, _: &Cluster, _: usize, _: &str) -> Result<NoBody, Cause> {
        Err(no_data())
    }

    async fn head_block(&self, _: &Cluster, _: usize, _: &str) -> Result<(), Cause> {
        Err(no_data())
    }

    async fn put_block(
        &self,
        _: &Cluster,
        _: usize,
        _: &ShortLocator,
        _: Bytes,
        _: &PutWants,
    ) -> Result<PutReply, Cause> {
        Err(no_data())
    }

    async fn index(
        &self,
        cluster: &Cluster,
        server: usize,
        _: IndexSource<'_>,
        prefix: &str,
        max_entries: usize,
        entries: &mut Vec<IndexEntry>,
    ) -> Result<(), Cause> {
        self.0
            .index(cluster, server, prefix, max_entries, entries)
            .await
    }

    async fn mounts(&self, _: &Cluster, _: usize) -> Result<Vec<MountInfo>, Cause> {
        Err(no_data())
    }

    async fn send_pull(&self, _: &Cluster, _: usize, _: &[PullItem]) -> Result<(), Cause> {
        Err(no_data())
    }

    async fn send_trash(&self, _: &Cluster, _: usize, _: &[TrashItem]) -> Result<(), Cause> {
        Err(no_data())
    }

    async fn touch(&self, _: &Cluster, _: usize, _: &str) -> Result<(), Cause> {
        Err(no_data())
    }
}
