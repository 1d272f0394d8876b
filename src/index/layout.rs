//! A cluster's storage as keep-balance sees it: every server's mounts (`GET /mounts`), and
//! from them the listings to read per slice. keep-balance indexes each distinct mount once
//! (`/mounts/<uuid>/blocks?prefix=`), even when two servers mount the same volume, and counts
//! a block's replicas as the sum of `replication` over the distinct mounts holding it
//! (services/keep-balance/balance.go). A server whose mounts cannot be read (an old
//! keepstore, a proxy, a refusal) is listed whole (`/index/<prefix>`) and counts one replica.
//!
//! [`discover`] asks the servers; [`Layout::from_answers`] is the pure half, unit-tested.

use futures_util::future::join_all;

use crate::cluster::Cluster;
use crate::keep::wire::MountInfo;
use crate::keepstore::{Cause, ErrorKind, Keepstores};

/// Why a server's mounts are not known.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MountsProblem {
    pub kind: ErrorKind,
    /// The HTTP status, when the server answered one.
    pub status: Option<u16>,
    /// One line, for people.
    pub text: String,
}

impl MountsProblem {
    fn from_cause(cause: &Cause) -> MountsProblem {
        MountsProblem {
            kind: cause.kind(),
            status: match cause {
                Cause::Status { status, .. } => Some(*status),
                _ => None,
            },
            text: cause.to_string(),
        }
    }

    /// 401/403: the token is not the cluster's SystemRootToken.
    pub fn is_denied(&self) -> bool {
        matches!(self.status, Some(401 | 403))
    }

    /// The server did not answer at all (down, refused, timed out).
    pub fn is_unreachable(&self) -> bool {
        self.status.is_none()
    }
}

/// One server's mounts, or why they are unknown.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ServerMounts {
    Known(Vec<MountInfo>),
    Unknown(MountsProblem),
}

/// One listing to read per slice: a mount (listed once, whichever servers mount it) or a
/// whole server whose mounts are unknown.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Location {
    /// The server the listing is read from.
    pub server: usize,
    /// The mount's uuid; `None` = the server's whole `/index`.
    pub mount: Option<String>,
    /// Every server that mounts it (one, unless a volume is shared).
    pub servers: Vec<usize>,
    /// Replicas one stored copy counts for (keep-balance takes 1 for a value ≤ 0).
    pub replication: u32,
    /// The storage classes the mount serves; empty = unknown (a whole-server listing).
    pub classes: Vec<String>,
    /// Whether new copies can land here (mount `allow_write`, service not read-only).
    pub writable: bool,
}

/// A cluster's servers and mounts, and the listings a slice needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    /// Per service (same index as `cluster.services`).
    pub servers: Vec<ServerMounts>,
    pub locations: Vec<Location>,
}

impl Layout {
    /// Builds the layout from each server's `/mounts` answer (same order as the services).
    pub fn from_answers(cluster: &Cluster, answers: Vec<ServerMounts>) -> Layout {
        let mut locations: Vec<Location> = Vec::new();
        for (server, answer) in answers.iter().enumerate() {
            let service_writable = cluster.services.get(server).is_some_and(|s| !s.read_only);
            match answer {
                ServerMounts::Known(mounts) => {
                    for mount in mounts {
                        if let Some(shared) = locations
                            .iter_mut()
                            .find(|l| l.mount.as_deref() == Some(mount.uuid.as_str()))
                        {
                            if !shared.servers.contains(&server) {
                                shared.servers.push(server);
                            }
                            shared.writable |= mount.allow_write && service_writable;
                            continue;
                        }
                        locations.push(Location {
                            server,
                            mount: Some(mount.uuid.clone()),
                            servers: vec![server],
                            replication: mount.replication.max(1),
                            classes: mount.classes().into_iter().map(str::to_string).collect(),
                            writable: mount.allow_write && service_writable,
                        });
                    }
                }
                ServerMounts::Unknown(_) => locations.push(Location {
                    server,
                    mount: None,
                    servers: vec![server],
                    replication: 1,
                    classes: Vec::new(),
                    writable: service_writable,
                }),
            }
        }
        Layout {
            servers: answers,
            locations,
        }
    }

    /// Per server, the most replicas one PUT to it can truly store: the replication of all
    /// its mounts together (keepstore writes a block at most once per mount). A larger
    /// `X-Keep-Replicas-Stored` is a lie and counts only this much. `None` where the mounts
    /// are unknown: that server's answer is taken as it is.
    pub fn replica_caps(&self) -> Vec<Option<u32>> {
        self.servers
            .iter()
            .map(|answer| match answer {
                // Saturating: a mount's replication is the server's word, up to u32::MAX.
                ServerMounts::Known(mounts) if !mounts.is_empty() => Some(
                    mounts
                        .iter()
                        .fold(0u32, |cap, m| cap.saturating_add(m.replication.max(1))),
                ),
                _ => None,
            })
            .collect()
    }

    /// Whether every server's mounts are known (so replicas and classes count exactly).
    pub fn all_known(&self) -> bool {
        self.servers
            .iter()
            .all(|s| matches!(s, ServerMounts::Known(_)))
    }

    /// The locations on `server` (a shared mount counts on every server that mounts it).
    pub fn locations_on(&self, server: usize) -> impl Iterator<Item = (usize, &Location)> {
        self.locations
            .iter()
            .enumerate()
            .filter(move |(_, l)| l.servers.contains(&server))
    }

    /// What one new copy on `server` would count for, per keepclient (a keepstore writes one
    /// copy to one mount): the largest replication among its writable mounts serving
    /// `class` (any class when `None`); 1 when its mounts are unknown and the service is
    /// writable; 0 when it cannot take a copy.
    pub fn write_capacity(&self, cluster: &Cluster, server: usize, class: Option<&str>) -> u32 {
        if cluster.services.get(server).is_none_or(|s| s.read_only) {
            return 0;
        }
        match self.servers.get(server) {
            Some(ServerMounts::Known(_)) => self
                .locations_on(server)
                .filter(|(_, l)| l.writable)
                .filter(|(_, l)| class.is_none_or(|c| l.classes.iter().any(|have| have == c)))
                .map(|(_, l)| l.replication)
                .max()
                .unwrap_or(0),
            Some(ServerMounts::Unknown(problem)) if problem.is_unreachable() => 0,
            Some(ServerMounts::Unknown(_)) => 1,
            None => 0,
        }
    }
}

impl Layout {
    /// The servers that expose one of `mounts`.
    pub fn servers_exposing(&self, mounts: &[String]) -> Vec<usize> {
        let mut servers: Vec<usize> = self
            .locations
            .iter()
            .filter(|l| l.mount.as_ref().is_some_and(|m| mounts.contains(m)))
            .flat_map(|l| l.servers.iter().copied())
            .collect();
        servers.sort_unstable();
        servers.dedup();
        servers
    }

    /// The source side of a job that empties `mounts` (vacate by mount): on the servers
    /// exposing one of them only those mounts are listed; other servers stay whole.
    pub fn keep_only_mounts(&mut self, mounts: &[String]) {
        if mounts.is_empty() {
            return;
        }
        let scoped = self.servers_exposing(mounts);
        self.locations.retain(|l| {
            l.mount.as_ref().is_some_and(|m| mounts.contains(m))
                || l.servers.iter().all(|s| !scoped.contains(s))
        });
    }

    /// The destination side of that job: every location but `mounts` (the rest of the
    /// cluster, including the other mounts of the servers exposing them).
    pub fn without_mounts(&mut self, mounts: &[String]) {
        self.locations
            .retain(|l| l.mount.as_ref().is_none_or(|m| !mounts.contains(m)));
    }
}

impl Layout {
    /// One whole-server listing (`/index/<prefix>`) per server, keep-rsync's way.
    pub fn whole_servers(cluster: &Cluster) -> Layout {
        Layout {
            servers: (0..cluster.services.len())
                .map(|_| {
                    ServerMounts::Unknown(MountsProblem {
                        kind: ErrorKind::Protocol,
                        status: None,
                        text: "listed per server (-index-by server)".to_string(),
                    })
                })
                .collect(),
            locations: (0..cluster.services.len())
                .map(|server| Location {
                    server,
                    mount: None,
                    servers: vec![server],
                    replication: 1,
                    classes: Vec::new(),
                    writable: cluster.services.get(server).is_some_and(|s| !s.read_only),
                })
                .collect(),
        }
    }
}

/// Asks every server of `cluster` for its mounts, all at once.
pub async fn discover<K: Keepstores>(keepstores: &K, cluster: &Cluster) -> Layout {
    let asks = (0..cluster.services.len()).map(|server| keepstores.mounts(cluster, server));
    let answers = join_all(asks)
        .await
        .into_iter()
        .map(|answer| match answer {
            Ok(mounts) => ServerMounts::Known(mounts),
            Err(cause) => ServerMounts::Unknown(MountsProblem::from_cause(&cause)),
        })
        .collect();
    Layout::from_answers(cluster, answers)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keepstore::memory;

    fn mount(uuid: &str, replication: u32, write: bool, classes: &[&str]) -> MountInfo {
        MountInfo {
            uuid: uuid.to_string(),
            device_id: String::new(),
            allow_write: write,
            allow_trash: true,
            replication,
            storage_classes: classes.iter().map(|c| (c.to_string(), true)).collect(),
        }
    }

    /// A `/mounts` answer may claim any u32 replication; the cap saturates instead of
    /// overflowing (a panic in debug builds, a wrapped tiny cap in release). Found with the
    /// `mounts` fuzz target's logic.
    #[test]
    fn replica_caps_saturate_on_huge_replication() {
        let cluster = memory::cluster("dst", "bbbbb", 1);
        let body = br#"[{"uuid":"a","replication":4294967295},{"uuid":"b","replication":1}]"#;
        let mounts = crate::keep::wire::parse_mounts(body).expect("valid mounts");
        let layout = Layout::from_answers(&cluster, vec![ServerMounts::Known(mounts)]);
        assert_eq!(layout.replica_caps(), vec![Some(u32::MAX)]);
    }

    #[test]
    fn a_shared_mount_is_listed_once_and_held_by_both_servers() {
        let cluster = memory::cluster("dst", "bbbbb", 3);
        let answers = vec![
            ServerMounts::Known(vec![
                mount("m-a", 1, true, &["default"]),
                mount("m-s", 2, true, &["archive"]),
            ]),
            ServerMounts::Known(vec![mount("m-s", 2, true, &["archive"])]),
            ServerMounts::Unknown(MountsProblem {
                kind: ErrorKind::NotFound,
                status: Some(404),
                text: "404".into(),
            }),
        ];
        let layout = Layout::from_answers(&cluster, answers);
        assert_eq!(layout.locations.len(), 3);
        assert_eq!(layout.locations[1].servers, vec![0, 1]);
        assert_eq!(
            layout.locations[2].mount, None,
            "unknown mounts: whole server"
        );
        assert!(!layout.all_known());
        assert_eq!(layout.write_capacity(&cluster, 0, None), 2);
        assert_eq!(layout.write_capacity(&cluster, 0, Some("default")), 1);
        assert_eq!(layout.write_capacity(&cluster, 1, Some("default")), 0);
        assert_eq!(layout.write_capacity(&cluster, 2, Some("default")), 1);
    }

    #[test]
    fn vacating_a_mount_lists_only_it_on_its_server_and_everything_else_on_the_rest() {
        let cluster = memory::cluster("src", "aaaaa", 3);
        let answers = vec![
            ServerMounts::Known(vec![
                mount("m-0a", 1, true, &[]),
                mount("m-0b", 1, true, &[]),
            ]),
            ServerMounts::Known(vec![
                mount("m-1a", 1, true, &[]),
                mount("m-s", 1, true, &[]),
            ]),
            ServerMounts::Known(vec![mount("m-s", 1, true, &[])]),
        ];
        let layout = Layout::from_answers(&cluster, answers);
        let vacated = vec!["m-0a".to_string(), "m-s".to_string()];
        assert_eq!(layout.servers_exposing(&vacated), vec![0, 1, 2]);
        let mut src = layout.clone();
        src.keep_only_mounts(&vacated);
        let listed: Vec<_> = src
            .locations
            .iter()
            .filter_map(|l| l.mount.clone())
            .collect();
        assert_eq!(listed, vec!["m-0a", "m-s"]);
        let mut dst = layout.clone();
        dst.without_mounts(&vacated);
        let listed: Vec<_> = dst
            .locations
            .iter()
            .filter_map(|l| l.mount.clone())
            .collect();
        assert_eq!(listed, vec!["m-0b", "m-1a"]);
        // A server exposing none of them stays whole on the source side.
        let mut src = layout.clone();
        src.keep_only_mounts(&["m-0a".to_string()]);
        assert_eq!(
            src.locations.len(),
            3,
            "m-0a, and servers 1 and 2 whole: {src:?}"
        );
        let mut unchanged = layout.clone();
        unchanged.keep_only_mounts(&[]);
        assert_eq!(unchanged, layout);
    }

    #[test]
    fn read_only_services_and_mounts_take_no_copies() {
        let mut cluster = memory::cluster("dst", "bbbbb", 2);
        cluster.services[1].read_only = true;
        let answers = vec![
            ServerMounts::Known(vec![mount("m-a", 1, false, &[])]),
            ServerMounts::Known(vec![mount("m-b", 1, true, &[])]),
        ];
        let layout = Layout::from_answers(&cluster, answers);
        assert_eq!(layout.write_capacity(&cluster, 0, None), 0);
        assert_eq!(layout.write_capacity(&cluster, 1, None), 0);
        assert_eq!(layout.locations[0].classes, vec!["default"]);
    }

    #[test]
    fn the_walk_lists_a_shared_mount_once_and_every_exposing_server_holds_its_blocks() {
        use crate::index::walk::{diff_slice_with, DiffWants, DstIndexErrors, Layouts};
        use crate::keepstore::memory::MemoryKeepstores;
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
                src: discover(&ks, &src).await,
                dst: discover(&ks, &dst).await,
            };
            assert_eq!(layouts.src.locations.len(), 2, "three servers, two volumes");
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
