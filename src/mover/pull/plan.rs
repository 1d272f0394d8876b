//! Pull mode's pure half: which destination keepstore (and, when storage classes call for
//! it, which mount) should pull each missing block, and whether what the destination
//! indexes list satisfies the job. No I/O, so the rules are unit-tested directly.
//!
//! Placement follows the copy: the destination servers are the writable ones in Go
//! rendezvous order, taken until the wanted replicas are reached, counting each server for
//! the replication of the mount its pull will land on (`/mounts`), and per wanted storage
//! class when classes are wanted. Where every writable mount of a server carries the wanted
//! classes the item names no mount (keepstore then writes to its first writable mount in
//! its own order); otherwise one item per class names the first writable mount carrying
//! that class. Confirmation counts, on the wanted servers only, the replication of every
//! mount whose listing has the block, in total and per wanted class.

use std::collections::HashMap;

use crate::index::SourceBlock;
use crate::keep::rendezvous::mount_order_keepstore;
use crate::keep::wire::MountInfo;
use crate::keep::BlockId;

/// The destination keepstores a pull can target: writable services with a writable mount.
#[derive(Clone, Debug, Default)]
pub struct Destination {
    /// Indexes into the destination cluster's services.
    pub servers: Vec<usize>,
    /// Their service uuids (for rendezvous), parallel to `servers`.
    pub uuids: Vec<String>,
    /// Their mounts as `/mounts` lists them, parallel to `servers`.
    pub mounts: Vec<Vec<MountInfo>>,
}

impl Destination {
    /// The mounts of server slot `slot` a pull may write to.
    fn writable(&self, slot: usize) -> impl Iterator<Item = (usize, &MountInfo)> {
        self.mounts[slot]
            .iter()
            .enumerate()
            .filter(|(_, m)| m.allow_write)
    }
}

/// One pull-list entry: a server slot of the [`Destination`], and the mount to name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Target {
    pub slot: u16,
    /// Index into that server's mounts; `None` = keepstore chooses.
    pub mount: Option<u16>,
}

/// A missing block, its source holders and where it should be pulled to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PullBlock {
    pub id: BlockId,
    /// Indexes into the source cluster's services.
    pub holders: Vec<u16>,
    pub targets: Vec<Target>,
}

impl PullBlock {
    /// The distinct server slots among the targets.
    pub fn slots(&self) -> Vec<u16> {
        let mut slots: Vec<u16> = self.targets.iter().map(|t| t.slot).collect();
        slots.sort_unstable();
        slots.dedup();
        slots
    }
}

/// What one job wants of every block.
#[derive(Clone, Debug)]
pub struct Wants {
    pub replicas: u32,
    /// Storage classes, each needing `replicas`; empty = replicas only.
    pub classes: Vec<String>,
}

/// Replicas still needed, in total or per class.
struct Needs {
    total: u32,
    classes: Vec<(String, u32)>,
}

impl Needs {
    fn new(wants: &Wants) -> Needs {
        Needs {
            total: wants.replicas,
            classes: wants
                .classes
                .iter()
                .map(|c| (c.clone(), wants.replicas))
                .collect(),
        }
    }

    fn met(&self) -> bool {
        if self.classes.is_empty() {
            self.total == 0
        } else {
            self.classes.iter().all(|(_, n)| *n == 0)
        }
    }

    /// Whether a mount carrying `classes` with `replication` would help; counts it if so.
    fn add(&mut self, mount: &MountInfo) -> bool {
        let carried = mount.classes();
        let mut helped = false;
        if self.classes.is_empty() {
            helped = self.total > 0;
        }
        for (class, need) in &mut self.classes {
            if *need > 0 && carried.contains(&class.as_str()) {
                *need = need.saturating_sub(mount.replication);
                helped = true;
            }
        }
        self.total = self.total.saturating_sub(mount.replication);
        helped
    }
}

/// The targets on one server for `hash`: one unnamed item when every writable mount carries
/// every wanted class (it counts as the least replicated of them), else one item per
/// wanted class naming its first writable mount in keepstore's order.
fn server_targets(
    dest: &Destination,
    slot: usize,
    hash_hex: &str,
    wants: &Wants,
) -> Vec<(Target, MountInfo)> {
    let writable: Vec<(usize, &MountInfo)> = dest.writable(slot).collect();
    if writable.is_empty() {
        return Vec::new();
    }
    let carries_all = |m: &MountInfo| {
        let carried = m.classes();
        wants.classes.iter().all(|c| carried.contains(&c.as_str()))
    };
    if writable.iter().all(|(_, m)| carries_all(m)) {
        // Counted as the weakest mount the pull could land on, with the wanted classes.
        let weakest = writable
            .iter()
            .min_by_key(|(_, m)| m.replication)
            .map(|(_, m)| (*m).clone());
        return weakest
            .map(|m| {
                (
                    Target {
                        slot: slot as u16,
                        mount: None,
                    },
                    m,
                )
            })
            .into_iter()
            .collect();
    }
    let uuids: Vec<&str> = writable.iter().map(|(_, m)| m.uuid.as_str()).collect();
    let order = mount_order_keepstore(hash_hex, &uuids);
    let mut targets: Vec<(Target, MountInfo)> = Vec::new();
    for class in &wants.classes {
        let chosen = order
            .iter()
            .map(|&i| writable[i])
            .find(|(_, m)| m.classes().contains(&class.as_str()));
        // A mount past the 65 536th of one keepstore cannot be named in a pull list entry
        // here; it is left out (the block's shortfall then falls back to a copy).
        if let Some((Ok(index), mount)) = chosen.map(|(i, m)| (u16::try_from(i), m)) {
            if !targets.iter().any(|(t, _)| t.mount == Some(index)) {
                targets.push((
                    Target {
                        slot: slot as u16,
                        mount: Some(index),
                    },
                    mount.clone(),
                ));
            }
        }
    }
    targets
}

/// Where each missing block of a slice should be pulled to. `orders` holds, per block, the
/// destination slots in rendezvous order (computed in batches by the caller).
pub fn place(
    missing: Vec<SourceBlock>,
    orders: Vec<Vec<usize>>,
    dest: &Destination,
    wants: &Wants,
) -> Vec<PullBlock> {
    missing
        .into_iter()
        .zip(orders)
        .map(|(block, order)| {
            let hash_hex = block.id.hash.to_string();
            let mut needs = Needs::new(wants);
            let mut targets = Vec::new();
            for slot in order {
                if needs.met() {
                    break;
                }
                let mut useful = Vec::new();
                for (target, mount) in server_targets(dest, slot, &hash_hex, wants) {
                    if needs.add(&mount) {
                        useful.push(target);
                    }
                }
                targets.extend(useful);
            }
            PullBlock {
                id: block.id,
                holders: block.holders,
                targets,
            }
        })
        .collect()
}

/// Which mounts of one server list which blocks of a slice: block index → mount indexes.
pub type Holdings = HashMap<u32, Vec<u16>>;

/// Whether server slot `target.slot`'s listing (`holdings`) shows the target carried out.
pub fn target_done(target: &Target, block: u32, holdings: &Holdings) -> bool {
    holdings
        .get(&block)
        .is_some_and(|mounts| match target.mount {
            Some(m) => mounts.contains(&m),
            None => !mounts.is_empty(),
        })
}

/// Replicas a block has on its wanted servers: (total, per wanted class), counted by the
/// replication of every mount listing it.
pub fn count(
    block: &PullBlock,
    index: u32,
    dest: &Destination,
    holdings: &[Holdings],
    wants: &Wants,
) -> (u32, Vec<u32>) {
    let mut total = 0u32;
    let mut per_class = vec![0u32; wants.classes.len()];
    for slot in block.slots() {
        let slot = slot as usize;
        let Some(mounts) = holdings.get(slot).and_then(|h| h.get(&index)) else {
            continue;
        };
        for &m in mounts {
            let Some(mount) = dest.mounts[slot].get(m as usize) else {
                continue;
            };
            // Saturating: replication comes from the server's `/mounts` answer.
            total = total.saturating_add(mount.replication);
            let carried = mount.classes();
            for (i, class) in wants.classes.iter().enumerate() {
                if carried.contains(&class.as_str()) {
                    per_class[i] = per_class[i].saturating_add(mount.replication);
                }
            }
        }
    }
    (total, per_class)
}

/// Why a block is not (yet) where the job wants it, or `None` when it is.
pub fn shortfall(
    block: &PullBlock,
    index: u32,
    dest: &Destination,
    holdings: &[Holdings],
    wants: &Wants,
) -> Option<String> {
    let (total, per_class) = count(block, index, dest, holdings, wants);
    let mut missing = Vec::new();
    if total < wants.replicas {
        missing.push(format!("{total} of {} replicas", wants.replicas));
    }
    for (class, have) in wants.classes.iter().zip(per_class) {
        if have < wants.replicas {
            missing.push(format!("class {class}: {have} of {}", wants.replicas));
        }
    }
    (!missing.is_empty()).then(|| missing.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keep::rendezvous::probe_order_go;
    use crate::keep::BlockHash;

    fn mount(uuid: &str, replication: u32, classes: &[&str], write: bool) -> MountInfo {
        MountInfo {
            uuid: uuid.into(),
            device_id: String::new(),
            allow_write: write,
            allow_trash: true,
            replication,
            storage_classes: classes.iter().map(|c| (c.to_string(), true)).collect(),
        }
    }

    fn dest(mounts: Vec<Vec<MountInfo>>) -> Destination {
        Destination {
            servers: (0..mounts.len()).collect(),
            uuids: (0..mounts.len())
                .map(|i| format!("zzzzz-bi6l4-{i:015}"))
                .collect(),
            mounts,
        }
    }

    fn block(byte: u8) -> SourceBlock {
        SourceBlock {
            id: BlockId::new(BlockHash([byte; 16]), 100),
            holders: vec![0, 2],
        }
    }

    fn orders(d: &Destination, blocks: &[SourceBlock]) -> Vec<Vec<usize>> {
        let uuids: Vec<&str> = d.uuids.iter().map(String::as_str).collect();
        blocks
            .iter()
            .map(|b| probe_order_go(&b.id.hash.to_string(), &uuids))
            .collect()
    }

    fn plain(n: usize) -> Destination {
        dest(
            (0..n)
                .map(|i| {
                    vec![mount(
                        &format!("zzzzz-nyw5e-{i:015}"),
                        1,
                        &["default"],
                        true,
                    )]
                })
                .collect(),
        )
    }

    #[test]
    fn first_writable_servers_in_rendezvous_order_as_many_as_replicas() {
        let d = plain(4);
        let blocks: Vec<SourceBlock> = (0..20).map(block).collect();
        let o = orders(&d, &blocks);
        let wants = Wants {
            replicas: 2,
            classes: vec!["default".into()],
        };
        let placed = place(blocks, o.clone(), &d, &wants);
        for (p, order) in placed.iter().zip(o) {
            let slots: Vec<usize> = p.targets.iter().map(|t| t.slot as usize).collect();
            assert_eq!(slots, order[..2].to_vec());
            assert!(p.targets.iter().all(|t| t.mount.is_none()));
            assert_eq!(p.holders, vec![0, 2]);
        }
    }

    /// Replication is the server's word: counting two mounts of huge replication saturates
    /// instead of overflowing.
    #[test]
    fn count_saturates_on_huge_replication() {
        let d = dest(vec![vec![
            mount("zzzzz-nyw5e-00000000000000a", u32::MAX, &["default"], true),
            mount("zzzzz-nyw5e-00000000000000b", 2, &["default"], true),
        ]]);
        let wants = Wants {
            replicas: 2,
            classes: vec!["default".to_string()],
        };
        let placed = PullBlock {
            id: block(1).id,
            holders: vec![0],
            targets: vec![Target {
                slot: 0,
                mount: None,
            }],
        };
        let holdings: Vec<Holdings> = vec![[(0u32, vec![0u16, 1])].into()];
        assert_eq!(
            count(&placed, 0, &d, &holdings, &wants),
            (u32::MAX, vec![u32::MAX])
        );
        assert_eq!(shortfall(&placed, 0, &d, &holdings, &wants), None);
    }

    #[test]
    fn mount_replication_counts_and_read_only_servers_are_passed_over() {
        // Server 0 has a mount of replication 2; server 1 is read-only.
        let d = dest(vec![
            vec![mount("zzzzz-nyw5e-000000000000000", 2, &["default"], true)],
            vec![mount("zzzzz-nyw5e-000000000000001", 1, &["default"], false)],
            vec![mount("zzzzz-nyw5e-000000000000002", 1, &["default"], true)],
        ]);
        let wants = Wants {
            replicas: 2,
            classes: Vec::new(),
        };
        for b in 0..20 {
            let order = orders(&d, &[block(b)]).remove(0);
            let placed = place(vec![block(b)], vec![order.clone()], &d, &wants).remove(0);
            let slots: Vec<usize> = placed.targets.iter().map(|t| t.slot as usize).collect();
            assert!(!slots.contains(&1));
            let first_writable = *order.iter().find(|&&s| s != 1).expect("one");
            if first_writable == 0 {
                assert_eq!(slots, vec![0], "replication 2 is enough");
            } else {
                assert_eq!(slots, vec![2, 0]);
            }
        }
    }

    #[test]
    fn classes_name_the_mount_that_carries_them() {
        let d = dest(vec![vec![
            mount("zzzzz-nyw5e-00000000000000a", 1, &["default"], true),
            mount("zzzzz-nyw5e-00000000000000b", 1, &["archive"], true),
        ]]);
        let wants = Wants {
            replicas: 1,
            classes: vec!["archive".into()],
        };
        let placed = place(vec![block(1)], vec![vec![0]], &d, &wants).remove(0);
        assert_eq!(
            placed.targets,
            vec![Target {
                slot: 0,
                mount: Some(1)
            }]
        );
        // Confirmation counts only mounts carrying the class.
        let mut holdings = vec![Holdings::new()];
        holdings[0].insert(0, vec![0]);
        assert!(shortfall(&placed, 0, &d, &holdings, &wants).is_some());
        assert!(!target_done(&placed.targets[0], 0, &holdings[0]));
        holdings[0].insert(0, vec![0, 1]);
        assert_eq!(shortfall(&placed, 0, &d, &holdings, &wants), None);
        assert!(target_done(&placed.targets[0], 0, &holdings[0]));
    }

    #[test]
    fn shortfall_counts_only_the_wanted_servers() {
        let d = plain(3);
        let wants = Wants {
            replicas: 2,
            classes: vec!["default".into()],
        };
        let placed = place(vec![block(7)], vec![vec![2, 0, 1]], &d, &wants).remove(0);
        let mut holdings = vec![Holdings::new(), Holdings::new(), Holdings::new()];
        holdings[1].insert(0, vec![0]);
        holdings[2].insert(0, vec![0]);
        let why = shortfall(&placed, 0, &d, &holdings, &wants).expect("short");
        assert!(why.contains("1 of 2 replicas"), "{why}");
        holdings[0].insert(0, vec![0]);
        assert_eq!(shortfall(&placed, 0, &d, &holdings, &wants), None);
    }
}
