//! Whether one block is where it should be on the destination, as pure code over the joined
//! slice ([`super::join`]) and the destination's [`Layout`]: what `keepmover validate`
//! reports per block. The rules, in order:
//!
//! * **missing**: no destination copy of the hash at all;
//! * **size mismatch**: the destination lists the hash with another size (alone, or next to
//!   good copies); a copy would send the block again;
//! * **under-replicated**: fewer replicas than wanted, counted as keep-balance counts them
//!   (the sum of `replication` over the distinct mounts listing `hash+size`; one per server
//!   whose mounts are unknown), per wanted storage class when every server's mounts are known;
//! * **misplaced** (only when enough replicas exist): a server among the first ones in
//!   rendezvous order that together take the wanted replicas does not hold the block. With
//!   mounts of replication 1 those are the first N writable servers, N = wanted replicas;
//!   a server counts for the replication of the mount that holds the block, else for its best
//!   writable mount (in the class), as keep-balance's first, distinct-server pass ranks them;
//! * **corrupt** / **unreadable** come from re-reading (`-deep`, `-sample`), not from here.
//!
//! Also here: the deterministic sample ([`sampled`]) that `-sample` and `-seed` choose by.

use super::join::Replica;
use super::layout::Layout;
use super::merge::BlockId;
use crate::cluster::Cluster;
use crate::keep::BlockHash;

/// What the destination should hold of every block.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Wanted {
    pub replicas: u32,
    /// Storage classes each wanting `replicas` (empty: any class).
    pub classes: Vec<String>,
}

/// One thing wrong with a block. Servers are indexes into the destination's services.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Finding {
    Missing,
    SizeMismatch {
        /// The other sizes the destination lists for this hash.
        sizes: Vec<u64>,
    },
    UnderReplicated {
        have: u32,
        want: u32,
        /// The class short of replicas; `None` = the total.
        class: Option<String>,
    },
    Misplaced {
        /// The servers that should hold it, in rendezvous order.
        expected: Vec<usize>,
        /// The servers that do.
        holders: Vec<usize>,
    },
    Corrupt {
        server: usize,
        detail: String,
    },
    Unreadable {
        server: usize,
        detail: String,
    },
}

/// The kinds of finding, for totals, file names and the JSON report.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FindingKind {
    Missing,
    SizeMismatch,
    UnderReplicated,
    Misplaced,
    Corrupt,
    Unreadable,
}

impl FindingKind {
    pub const ALL: [FindingKind; 6] = [
        FindingKind::Missing,
        FindingKind::SizeMismatch,
        FindingKind::UnderReplicated,
        FindingKind::Misplaced,
        FindingKind::Corrupt,
        FindingKind::Unreadable,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            FindingKind::Missing => "missing",
            FindingKind::SizeMismatch => "size_mismatch",
            FindingKind::UnderReplicated => "under_replicated",
            FindingKind::Misplaced => "misplaced",
            FindingKind::Corrupt => "corrupt",
            FindingKind::Unreadable => "unreadable",
        }
    }
}

impl Finding {
    pub fn kind(&self) -> FindingKind {
        match self {
            Finding::Missing => FindingKind::Missing,
            Finding::SizeMismatch { .. } => FindingKind::SizeMismatch,
            Finding::UnderReplicated { .. } => FindingKind::UnderReplicated,
            Finding::Misplaced { .. } => FindingKind::Misplaced,
            Finding::Corrupt { .. } => FindingKind::Corrupt,
            Finding::Unreadable { .. } => FindingKind::Unreadable,
        }
    }
}

/// A block's one-character status in `-combined` (rclone check's letters, plus two of
/// keepmover's own for what rclone has no word for).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// `=`: on the destination, fully replicated, in place (and, if re-read, intact).
    Ok,
    /// `-`: not on the destination.
    Missing,
    /// `*`: differs: another size on the destination, or a re-read copy with the wrong MD5.
    Differ,
    /// `!`: a copy could not be read.
    Error,
    /// `<`: fewer replicas than wanted.
    UnderReplicated,
    /// `~`: enough replicas, not where rendezvous puts them.
    Misplaced,
    /// `+`: only on the destination (not a problem).
    Extra,
}

impl Status {
    pub fn char(self) -> char {
        match self {
            Status::Ok => '=',
            Status::Missing => '-',
            Status::Differ => '*',
            Status::Error => '!',
            Status::UnderReplicated => '<',
            Status::Misplaced => '~',
            Status::Extra => '+',
        }
    }
}

/// What validation found for one block.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    pub id: BlockId,
    /// Only on the destination.
    pub extra: bool,
    /// Destination servers listing `hash+size`, ascending.
    pub holders: Vec<usize>,
    /// Replicas as keep-balance counts them.
    pub replicas: u32,
    pub wanted: u32,
    pub findings: Vec<Finding>,
    /// The oldest mtime of a good copy (ns): when keep-balance may first trash it.
    pub oldest_mtime_ns: Option<i64>,
}

impl Verdict {
    /// The status letter: the most serious finding wins (`*` > `!` > `-` > `<` > `~`).
    pub fn status(&self) -> Status {
        if self.extra {
            return Status::Extra;
        }
        let has = |k: FindingKind| self.findings.iter().any(|f| f.kind() == k);
        if has(FindingKind::Corrupt) || has(FindingKind::SizeMismatch) {
            Status::Differ
        } else if has(FindingKind::Unreadable) {
            Status::Error
        } else if has(FindingKind::Missing) {
            Status::Missing
        } else if has(FindingKind::UnderReplicated) {
            Status::UnderReplicated
        } else if has(FindingKind::Misplaced) {
            Status::Misplaced
        } else {
            Status::Ok
        }
    }

    /// Whether anything is wrong (a destination-only block is not).
    pub fn is_problem(&self) -> bool {
        !self.extra && !self.findings.is_empty()
    }

    /// The kind of the finding that decides the status, if any.
    pub fn primary(&self) -> Option<FindingKind> {
        let order = [
            FindingKind::Corrupt,
            FindingKind::SizeMismatch,
            FindingKind::Unreadable,
            FindingKind::Missing,
            FindingKind::UnderReplicated,
            FindingKind::Misplaced,
        ];
        order
            .into_iter()
            .find(|k| self.findings.iter().any(|f| f.kind() == *k))
    }
}

/// Classifies one source block from its destination copies. `order` is every destination
/// server in rendezvous order for the block (indexes into `cluster.services`).
pub fn classify(
    id: BlockId,
    replicas: &[Replica],
    layout: &Layout,
    cluster: &Cluster,
    order: &[usize],
    wanted: &Wanted,
) -> Verdict {
    let want = wanted.replicas.max(1);
    let mut verdict = Verdict {
        id,
        extra: false,
        holders: Vec::new(),
        replicas: 0,
        wanted: want,
        findings: Vec::new(),
        oldest_mtime_ns: None,
    };
    let mut other_sizes: Vec<u64> = replicas
        .iter()
        .filter(|r| r.size != id.size)
        .map(|r| r.size)
        .collect();
    other_sizes.sort_unstable();
    other_sizes.dedup();
    let mut locations: Vec<u16> = replicas
        .iter()
        .filter(|r| r.size == id.size)
        .map(|r| r.location)
        .collect();
    locations.sort_unstable();
    locations.dedup();
    verdict.oldest_mtime_ns = replicas
        .iter()
        .filter(|r| r.size == id.size)
        .map(|r| r.mtime_ns)
        .min();
    fill_holders(&mut verdict, &locations, layout);
    if locations.is_empty() {
        verdict.findings.push(if other_sizes.is_empty() {
            Finding::Missing
        } else {
            Finding::SizeMismatch { sizes: other_sizes }
        });
        return verdict;
    }
    if !other_sizes.is_empty() {
        verdict
            .findings
            .push(Finding::SizeMismatch { sizes: other_sizes });
    }
    let count = |class: Option<&str>| -> u32 {
        locations
            .iter()
            .filter_map(|&l| layout.locations.get(l as usize))
            .filter(|l| {
                class.is_none_or(|c| l.classes.is_empty() || l.classes.iter().any(|h| h == c))
            })
            .map(|l| l.replication)
            .fold(0u32, u32::saturating_add)
    };
    verdict.replicas = count(None);
    // Classes count only when every server's mounts (and so their classes) are known.
    let classes: Vec<Option<&str>> = if wanted.classes.is_empty() || !layout.all_known() {
        vec![None]
    } else {
        wanted.classes.iter().map(|c| Some(c.as_str())).collect()
    };
    if verdict.replicas < want {
        verdict.findings.push(Finding::UnderReplicated {
            have: verdict.replicas,
            want,
            class: None,
        });
        return verdict;
    }
    for &class in &classes {
        let have = count(class);
        if class.is_some() && have < want {
            verdict.findings.push(Finding::UnderReplicated {
                have,
                want,
                class: class.map(str::to_string),
            });
            return verdict;
        }
    }
    for &class in &classes {
        let expected = expected_servers(&locations, layout, cluster, order, want, class);
        if expected.iter().any(|s| !verdict.holders.contains(s)) {
            verdict.findings.push(Finding::Misplaced {
                expected,
                holders: verdict.holders.clone(),
            });
            break;
        }
    }
    verdict
}

fn fill_holders(verdict: &mut Verdict, locations: &[u16], layout: &Layout) {
    let mut holders: Vec<usize> = locations
        .iter()
        .filter_map(|&l| layout.locations.get(l as usize))
        .flat_map(|l| l.servers.iter().copied())
        .collect();
    holders.sort_unstable();
    holders.dedup();
    verdict.holders = holders;
}

/// The first servers in rendezvous order that together take `want` replicas (of `class`).
fn expected_servers(
    locations: &[u16],
    layout: &Layout,
    cluster: &Cluster,
    order: &[usize],
    want: u32,
    class: Option<&str>,
) -> Vec<usize> {
    let mut expected = Vec::new();
    let mut planned = 0u32;
    for &server in order {
        let held: u32 = locations
            .iter()
            .filter_map(|&l| layout.locations.get(l as usize))
            .filter(|l| l.servers.contains(&server))
            .filter(|l| {
                class.is_none_or(|c| l.classes.is_empty() || l.classes.iter().any(|h| h == c))
            })
            .map(|l| l.replication)
            .max()
            .unwrap_or(0);
        let counts = if held > 0 {
            held
        } else {
            layout.write_capacity(cluster, server, class)
        };
        if counts == 0 {
            continue;
        }
        expected.push(server);
        planned += counts;
        if planned >= want {
            break;
        }
    }
    expected
}

/// A block only the destination has (listed in `-combined` as `+`, never a problem).
pub fn extra(id: BlockId, replicas: &[Replica], layout: &Layout) -> Verdict {
    let mut locations: Vec<u16> = replicas.iter().map(|r| r.location).collect();
    locations.sort_unstable();
    locations.dedup();
    let mut verdict = Verdict {
        id,
        extra: true,
        holders: Vec::new(),
        replicas: locations
            .iter()
            .filter_map(|&l| layout.locations.get(l as usize))
            .map(|l| l.replication)
            .fold(0u32, u32::saturating_add),
        wanted: 0,
        findings: Vec::new(),
        oldest_mtime_ns: replicas.iter().map(|r| r.mtime_ns).min(),
    };
    fill_holders(&mut verdict, &locations, layout);
    verdict
}

/// splitmix64's finaliser: a bijection on u64 whose output bits each depend on every input bit.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Parts per million: 100% is [`PPM_ALL`].
pub const PPM_ALL: u32 = 1_000_000;

/// Whether `-sample` (in parts per million) with `-seed` picks this block: a hash of (seed,
/// block hash), so the same seed picks the same blocks on every run and on every machine, and
/// another seed an unrelated sample. Key = mix(mix(seed ^ h[0..8]) ^ h[8..16]) (big-endian
/// halves of the MD5); picked when key mod 10⁶ < ppm.
pub fn sampled(seed: u64, hash: &BlockHash, ppm: u32) -> bool {
    if ppm >= PPM_ALL {
        return true;
    }
    let (high, low) = hash.0.split_at(8);
    let word = |b: &[u8]| b.iter().fold(0u64, |acc, &x| (acc << 8) | u64::from(x));
    let key = mix(mix(seed ^ word(high)) ^ word(low));
    key % u64::from(PPM_ALL) < u64::from(ppm)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::layout::{MountsProblem, ServerMounts};
    use crate::keep::wire::MountInfo;
    use crate::keepstore::memory;
    use crate::keepstore::ErrorKind;

    fn mount(uuid: &str, replication: u32, classes: &[&str]) -> MountInfo {
        MountInfo {
            uuid: uuid.to_string(),
            device_id: String::new(),
            allow_write: true,
            allow_trash: true,
            replication,
            storage_classes: classes.iter().map(|c| (c.to_string(), true)).collect(),
        }
    }

    /// Four servers, one mount each of replication 1, class default.
    fn four() -> (Cluster, Layout) {
        let cluster = memory::cluster("dst", "bbbbb", 4);
        let answers = (0..4)
            .map(|i| ServerMounts::Known(vec![mount(&format!("m{i}"), 1, &["default"])]))
            .collect();
        let layout = Layout::from_answers(&cluster, answers);
        (cluster, layout)
    }

    fn id() -> BlockId {
        BlockId::new(BlockHash([7; 16]), 100)
    }

    fn copies(at: &[(u16, u64)]) -> Vec<Replica> {
        at.iter()
            .map(|&(location, size)| Replica {
                location,
                size,
                mtime_ns: 1000 + location as i64,
            })
            .collect()
    }

    fn wanted(n: u32) -> Wanted {
        Wanted {
            replicas: n,
            classes: vec!["default".into()],
        }
    }

    const ORDER: [usize; 4] = [2, 0, 3, 1];

    #[test]
    fn in_place_is_ok() {
        let (cluster, layout) = four();
        let v = classify(
            id(),
            &copies(&[(2, 100), (0, 100)]),
            &layout,
            &cluster,
            &ORDER,
            &wanted(2),
        );
        assert_eq!(v.findings, vec![]);
        assert_eq!(v.status(), Status::Ok);
        assert_eq!(v.holders, vec![0, 2]);
        assert_eq!(v.replicas, 2);
        assert_eq!(v.oldest_mtime_ns, Some(1000));
    }

    #[test]
    fn missing_and_size_mismatch() {
        let (cluster, layout) = four();
        let v = classify(id(), &[], &layout, &cluster, &ORDER, &wanted(2));
        assert_eq!(v.findings, vec![Finding::Missing]);
        assert_eq!(v.status().char(), '-');
        let v = classify(
            id(),
            &copies(&[(2, 99)]),
            &layout,
            &cluster,
            &ORDER,
            &wanted(2),
        );
        assert_eq!(v.findings, vec![Finding::SizeMismatch { sizes: vec![99] }]);
        assert_eq!(v.status().char(), '*');
    }

    #[test]
    fn one_replica_short_is_under_replicated_not_misplaced() {
        let (cluster, layout) = four();
        let v = classify(
            id(),
            &copies(&[(2, 100)]),
            &layout,
            &cluster,
            &ORDER,
            &wanted(2),
        );
        assert_eq!(
            v.findings,
            vec![Finding::UnderReplicated {
                have: 1,
                want: 2,
                class: None
            }]
        );
        assert_eq!(v.status().char(), '<');
    }

    #[test]
    fn enough_replicas_in_the_wrong_place_are_misplaced() {
        let (cluster, layout) = four();
        let v = classify(
            id(),
            &copies(&[(2, 100), (3, 100)]),
            &layout,
            &cluster,
            &ORDER,
            &wanted(2),
        );
        assert_eq!(
            v.findings,
            vec![Finding::Misplaced {
                expected: vec![2, 0],
                holders: vec![2, 3]
            }]
        );
        assert_eq!(v.status().char(), '~');
        // More replicas than wanted, including the right ones: fine.
        let v = classify(
            id(),
            &copies(&[(2, 100), (3, 100), (0, 100)]),
            &layout,
            &cluster,
            &ORDER,
            &wanted(2),
        );
        assert_eq!(v.findings, vec![]);
    }

    #[test]
    fn read_only_servers_are_skipped_when_placing() {
        let (mut cluster, _) = four();
        cluster.services[0].read_only = true;
        let answers = (0..4)
            .map(|i| ServerMounts::Known(vec![mount(&format!("m{i}"), 1, &["default"])]))
            .collect();
        let layout = Layout::from_answers(&cluster, answers);
        let v = classify(
            id(),
            &copies(&[(2, 100), (3, 100)]),
            &layout,
            &cluster,
            &ORDER,
            &wanted(2),
        );
        assert_eq!(v.findings, vec![], "server 0 cannot take a copy: 2 then 3");
    }

    #[test]
    fn replication_is_summed_over_distinct_mounts() {
        let cluster = memory::cluster("dst", "bbbbb", 3);
        let answers = vec![
            ServerMounts::Known(vec![mount("m0", 2, &["default"])]),
            ServerMounts::Known(vec![mount("m0", 2, &["default"])]),
            ServerMounts::Known(vec![mount("m2", 1, &["archive"])]),
        ];
        let layout = Layout::from_answers(&cluster, answers);
        // The shared mount is listed once (location 0) and counts 2, on both servers.
        let v = classify(
            id(),
            &copies(&[(0, 100)]),
            &layout,
            &cluster,
            &[0, 1, 2],
            &Wanted {
                replicas: 2,
                classes: vec![],
            },
        );
        assert_eq!(v.replicas, 2);
        assert_eq!(v.holders, vec![0, 1]);
        assert_eq!(v.findings, vec![]);
        // Wanted in class archive: only one replica there.
        let v = classify(
            id(),
            &copies(&[(0, 100), (1, 100)]),
            &layout,
            &cluster,
            &[0, 1, 2],
            &Wanted {
                replicas: 2,
                classes: vec!["archive".into()],
            },
        );
        assert_eq!(
            v.findings,
            vec![Finding::UnderReplicated {
                have: 1,
                want: 2,
                class: Some("archive".into())
            }]
        );
    }

    #[test]
    fn unknown_mounts_count_one_per_server() {
        let cluster = memory::cluster("dst", "bbbbb", 2);
        let problem = ServerMounts::Unknown(MountsProblem {
            kind: ErrorKind::NotFound,
            status: Some(404),
            text: "404".into(),
        });
        let layout = Layout::from_answers(&cluster, vec![problem.clone(), problem]);
        let v = classify(
            id(),
            &copies(&[(0, 100), (1, 100)]),
            &layout,
            &cluster,
            &[1, 0],
            &wanted(2),
        );
        assert_eq!(v.replicas, 2);
        assert_eq!(v.findings, vec![]);
    }

    #[test]
    fn status_precedence() {
        let (cluster, layout) = four();
        let mut v = classify(
            id(),
            &copies(&[(2, 100)]),
            &layout,
            &cluster,
            &ORDER,
            &wanted(2),
        );
        v.findings.push(Finding::Unreadable {
            server: 2,
            detail: "x".into(),
        });
        assert_eq!(v.status(), Status::Error);
        v.findings.push(Finding::Corrupt {
            server: 2,
            detail: "x".into(),
        });
        assert_eq!(v.status(), Status::Differ);
        assert_eq!(v.primary(), Some(FindingKind::Corrupt));
        let e = extra(id(), &copies(&[(1, 100)]), &layout);
        assert_eq!(e.status().char(), '+');
        assert!(!e.is_problem());
    }

    #[test]
    fn the_sample_is_a_function_of_seed_and_hash() {
        let hashes: Vec<BlockHash> = (0..20_000u32)
            .map(|i| BlockHash(crate::hash::md5(&i.to_le_bytes())))
            .collect();
        let pick = |seed: u64| -> Vec<bool> {
            hashes
                .iter()
                .map(|h| sampled(seed, h, 100_000)) // 10 %
                .collect()
        };
        let a = pick(7);
        assert_eq!(a, pick(7), "same seed, same blocks");
        let b = pick(8);
        assert_ne!(a, b, "another seed, another sample");
        let share = a.iter().filter(|&&x| x).count() as f64 / hashes.len() as f64;
        assert!((0.09..0.11).contains(&share), "{share}");
        let both = a.iter().zip(&b).filter(|(x, y)| **x && **y).count() as f64;
        assert!(both / (hashes.len() as f64) < 0.02, "samples are unrelated");
        assert!(hashes.iter().all(|h| sampled(1, h, PPM_ALL)));
        assert!(hashes.iter().all(|h| !sampled(1, h, 0)));
    }
}
