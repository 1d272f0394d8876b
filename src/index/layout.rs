//! What to list, once: a cluster's index units. A keepstore volume can be shared by several
//! keepstores (an S3 bucket behind every keepstore of a cluster is the common case), and
//! listing `/index/` on each of them reads the same bucket once per keepstore. keep-balance
//! lists each distinct mount once (`GET /mounts`, then `/mounts/<uuid>/blocks?prefix=`) and
//! treats every keepstore exposing a mount as a holder of its blocks; so does keepmover. When
//! `/mounts` cannot be read on some server, the cluster is listed per server (`/index/`), as
//! keep-rsync does.

use std::collections::BTreeMap;

use crate::cluster::Cluster;
use crate::keepstore::Keepstores;

/// One listing the walk reads per slice.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IndexUnit {
    /// `Some(mount uuid)` for a per-mount listing, `None` for a server's whole `/index/`.
    pub mount: Option<String>,
    /// Servers that can list it, in order of preference (the first that answers is used).
    pub listed_by: Vec<usize>,
    /// Servers that hold its blocks (every server exposing the mount).
    pub holders: Vec<u16>,
    /// The mount's `replication` (1 for a whole server).
    pub replication: u32,
}

/// A cluster's index units.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterLayout {
    pub units: Vec<IndexUnit>,
    /// Listed per mount (`true`) or per server.
    pub by_mount: bool,
}

impl ClusterLayout {
    /// One unit per server (keep-rsync's way).
    pub fn per_server(cluster: &Cluster) -> ClusterLayout {
        ClusterLayout {
            units: (0..cluster.services.len())
                .map(|i| IndexUnit {
                    mount: None,
                    listed_by: vec![i],
                    holders: vec![i as u16],
                    replication: 1,
                })
                .collect(),
            by_mount: false,
        }
    }

    /// One unit per distinct mount, from every server's `GET /mounts`; per server when any
    /// server's mounts cannot be read.
    pub async fn discover<K: Keepstores>(keepstores: &K, cluster: &Cluster) -> ClusterLayout {
        let mut by_uuid: BTreeMap<String, IndexUnit> = BTreeMap::new();
        for server in 0..cluster.services.len() {
            let Ok(mounts) = keepstores.mounts(cluster, server).await else {
                return ClusterLayout::per_server(cluster);
            };
            if mounts.is_empty() {
                return ClusterLayout::per_server(cluster);
            }
            for mount in mounts {
                let unit = by_uuid.entry(mount.uuid.clone()).or_insert(IndexUnit {
                    mount: Some(mount.uuid.clone()),
                    listed_by: Vec::new(),
                    holders: Vec::new(),
                    replication: mount.replication.max(1),
                });
                unit.listed_by.push(server);
                unit.holders.push(server as u16);
            }
        }
        ClusterLayout {
            units: by_uuid.into_values().collect(),
            by_mount: true,
        }
    }

    /// Listings per slice with this layout, against one per server.
    pub fn listings(&self) -> usize {
        self.units.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::walk::{diff_slice_with, DiffWants, DstIndexErrors, Layouts};
    use crate::keepstore::memory::{self, MemoryKeepstores};

    #[test]
    fn a_shared_mount_is_listed_once_and_every_exposing_server_holds_its_blocks() {
        let ks = MemoryKeepstores::new();
        let src = memory::cluster("src", "aaaaa", 3);
        let dst = memory::cluster("dst", "bbbbb", 2);
        // Servers 0 and 1 expose one shared volume (its blocks are stored on server 0 here);
        // server 2 has its own.
        for server in [0, 1] {
            ks.with(&src, server, |s| {
                s.mount_uuid = Some("aaaaa-nyw5e-shared000000000".into())
            });
        }
        let shared = ks.put(&src, 0, b"on the shared volume", 1);
        let own = ks.put(&src, 2, b"on server 2 only", 1);
        let (runtime, _) = crate::net::build_runtime(crate::net::IoBackend::Auto).expect("runtime");
        runtime.block_on(async {
            let layouts = Layouts {
                src: ClusterLayout::discover(&ks, &src).await,
                dst: ClusterLayout::discover(&ks, &dst).await,
            };
            assert!(layouts.src.by_mount);
            assert_eq!(layouts.src.listings(), 2, "three servers, two volumes");
            let diff = diff_slice_with(
                &ks,
                &src,
                &dst,
                &layouts,
                "",
                DstIndexErrors::Fail,
                None,
                DiffWants::default(),
            )
            .await
            .expect("readable");
            let holders = |id| {
                diff.missing
                    .iter()
                    .find(|b| b.id == id)
                    .map(|b| b.holders.clone())
            };
            assert_eq!(holders(shared), Some(vec![0, 1]));
            assert_eq!(holders(own), Some(vec![2]));
        });
        let reads: Vec<u64> = (0..3)
            .map(|s| ks.with(&src, s, |m| m.index_reads))
            .collect();
        assert_eq!(
            reads.iter().sum::<u64>(),
            2,
            "one listing per volume: {reads:?}"
        );
    }
}
