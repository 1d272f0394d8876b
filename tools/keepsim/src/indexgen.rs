//! Index-only synthetic mode: clusters that list up to billions of locators and store
//! nothing, for proving that a client's memory stays flat while it diffs huge indexes.
//!
//! The locators of two clusters (source and destination) come from one *universe* that
//! both build from the same [`IndexUniverseSpec`]. It has three classes of locators:
//! `shared` (listed by both clusters), `source_only` and `destination_only`. Each class's
//! count is spread evenly over the 4096 buckets of the first three hex digits (bucket `b`
//! gets `n / 4096`, plus one for the first `n % 4096` buckets), so the exact expected diff
//! is known without enumerating anything:
//! source-only = `source_locators − shared`, destination = `destination_locators`,
//! common = `shared` (counted as distinct `hash+size`).
//!
//! Inside a bucket the locators are generated lazily and in ascending order: the 116 bits
//! after the bucket's 12 are a running sum of pseudo-random gaps (each ≥ 1 and at most
//! 2^116 / bucket size) from a PRNG seeded with (seed, bucket), so every locator is distinct
//! *by construction* and each bucket comes out sorted, as keepstore lists a 3-hex
//! subdirectory. Classes are interleaved with exact counts (smooth weighted round-robin),
//! sizes (70% 4–64 KiB, 20% 1 MiB, 10% 64 MiB) and mtimes come from the same PRNG, so a
//! shared locator has the same size and mtime in both clusters.
//!
//! Placement: a locator is on `replicas` consecutive keepstores (mod the cluster's count)
//! from a pseudo-random start, on one pseudo-random mount of each. This is NOT rendezvous
//! order (computing that costs an MD5 per keepstore per locator); index-only clusters are
//! for listing and diffing only. A cluster with shared mounts (one bucket behind several
//! keepstores, as S3 is) keeps every locator once, on one pseudo-random shared mount, and
//! its local mounts list nothing: a shared mount lists the same lines from every keepstore
//! that exposes it. Buckets are listed per mount in a fixed pseudo-random ("readdir")
//! order keyed by the mount's uuid; mounts in uuid order (keepstore's `/index`).
//!
//! Cost: generating and formatting a line is a few tens of nanoseconds; a listing is
//! streamed in ~256 KiB pieces and never held whole. Block GETs, HEADs and PUTs on an
//! index-only cluster answer 422 with [`NO_DATA_MESSAGE`].

use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use serde::Serialize;

/// What block requests on an index-only cluster get (with status 422).
pub const NO_DATA_MESSAGE: &str = "keepsim: index-only cluster: it lists synthetic locators but stores no data; block GET, HEAD and PUT are not available";

const BUCKETS: u64 = 4096;
const SOURCE_ONLY: usize = 1;
const DESTINATION_ONLY: usize = 2;

/// The universe both clusters list from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct IndexUniverseSpec {
    pub seed: u64,
    /// Distinct locators the source lists.
    pub source_locators: u64,
    /// Distinct locators the destination lists.
    pub destination_locators: u64,
    /// Of those, listed by both (at most the smaller count).
    pub shared: u64,
    /// Copies of each locator across a cluster's keepstores (capped at the keepstore count).
    pub replicas: usize,
}

impl IndexUniverseSpec {
    /// `overlap`: the fraction of the source's locators the destination also lists.
    pub fn with_overlap(
        seed: u64,
        source_locators: u64,
        destination_locators: u64,
        overlap: f64,
        replicas: usize,
    ) -> IndexUniverseSpec {
        let shared = ((source_locators as f64) * overlap.clamp(0.0, 1.0)).round() as u64;
        IndexUniverseSpec {
            seed,
            source_locators,
            destination_locators,
            shared: shared.min(source_locators).min(destination_locators),
            replicas: replicas.max(1),
        }
    }

    fn class_totals(&self) -> [u64; 3] {
        let shared = self
            .shared
            .min(self.source_locators)
            .min(self.destination_locators);
        [
            shared,
            self.source_locators - shared,
            self.destination_locators - shared,
        ]
    }
}

/// Which cluster of the pair this is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum IndexSide {
    Source,
    Destination,
}

impl IndexSide {
    fn lists(self, class: usize) -> bool {
        match self {
            IndexSide::Source => class != DESTINATION_ONLY,
            IndexSide::Destination => class != SOURCE_ONLY,
        }
    }
}

/// An index-only cluster: the universe and its side.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IndexOnlyConfig {
    pub spec: IndexUniverseSpec,
    pub side: IndexSide,
}

/// The universe, ready to generate.
#[derive(Debug)]
pub struct IndexUniverse {
    pub spec: IndexUniverseSpec,
    totals: [u64; 3],
}

/// The exact expected outcome of diffing source against destination.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ExpectedDiff {
    pub source_locators: u64,
    pub destination_locators: u64,
    /// In both.
    pub common: u64,
    /// In the source, not in the destination (what a copy would move).
    pub source_only: u64,
    pub destination_only: u64,
}

const WY_STEP: u64 = 0xa076_1d64_78bd_642f;

fn wymix(state: u64) -> u64 {
    let t = u128::from(state) * u128::from(state ^ 0xe703_7ed1_a0b4_28db);
    ((t >> 64) as u64) ^ (t as u64)
}

fn wyrand(state: &mut u64) -> u64 {
    *state = state.wrapping_add(WY_STEP);
    wymix(*state)
}

/// One generated locator. Size and mtime come from a third random draw that is only mixed
/// when the line is written ([`Element::size_mtime`]).
#[derive(Clone, Copy, Debug)]
struct Element {
    hash: u128,
    class: usize,
    /// Random bits for the keepstore placement.
    placement: u64,
    /// Random bits for the mount.
    mount: u64,
    /// The PRNG state of the third draw.
    third: u64,
}

impl Element {
    fn size_mtime(&self) -> (u64, u64) {
        let r3 = wymix(self.third);
        let size = match r3 % 100 {
            0..=69 => 4096 + (r3 >> 8) % 61_440,
            70..=89 => 1 << 20,
            _ => 64 << 20,
        };
        (
            size,
            1_600_000_000_000_000_000 + (r3 >> 20) % 100_000_000_000_000_000,
        )
    }
}

/// Resumable generator of one bucket's locators, in ascending order.
struct BucketGen {
    bucket: u64,
    rng: u64,
    value: u128,
    step_hi: u128,
    left: u64,
    counts: [u64; 3],
    current: [i128; 3],
    total: u64,
}

impl BucketGen {
    fn new(universe: &IndexUniverse, bucket: u64) -> BucketGen {
        let counts = universe.bucket_counts(bucket);
        let total: u64 = counts.iter().sum();
        // Largest gap such that `total` of them stay inside the bucket's 2^116 values.
        let max_gap: u128 = (1u128 << 116) / u128::from(total.max(1));
        BucketGen {
            bucket,
            rng: crate::blockset::splitmix(
                universe.spec.seed ^ bucket.wrapping_mul(0x9E37_79B9_7F4A_7C15),
            ),
            value: 0,
            step_hi: max_gap >> 52,
            left: total,
            counts,
            current: [0; 3],
            total,
        }
    }

    fn next(&mut self) -> Option<Element> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let r1 = wyrand(&mut self.rng);
        let r2 = wyrand(&mut self.rng);
        self.rng = self.rng.wrapping_add(WY_STEP);
        let third = self.rng;
        // gap in [1, step_hi << 52]: never 0, and total gaps ≤ 2^116.
        let hi = (u128::from(r1) * self.step_hi) >> 64;
        let gap = (hi << 52) + u128::from(r2 & ((1 << 52) - 1)) + 1;
        self.value += gap;
        // Smooth weighted round-robin: exactly counts[c] picks of class c.
        let mut best = 0;
        for c in 0..3 {
            self.current[c] += i128::from(self.counts[c]);
            if self.current[c] > self.current[best] {
                best = c;
            }
        }
        self.current[best] -= i128::from(self.total);
        Some(Element {
            hash: (u128::from(self.bucket) << 116) | (self.value - 1),
            class: best,
            placement: r1.rotate_left(17) ^ r2,
            mount: r2.rotate_left(29) ^ r1.rotate_left(3),
            third,
        })
    }
}

impl IndexUniverse {
    pub fn new(spec: &IndexUniverseSpec) -> IndexUniverse {
        IndexUniverse {
            totals: spec.class_totals(),
            spec: spec.clone(),
        }
    }

    fn bucket_counts(&self, bucket: u64) -> [u64; 3] {
        self.totals
            .map(|n| n / BUCKETS + u64::from(bucket < n % BUCKETS))
    }

    /// The exact expected diff (computed from the counts, no enumeration).
    pub fn expected(&self) -> ExpectedDiff {
        let [shared, src, dst] = self.totals;
        ExpectedDiff {
            source_locators: shared + src,
            destination_locators: shared + dst,
            common: shared,
            source_only: src,
            destination_only: dst,
        }
    }

    /// Locators listed by `side`.
    pub fn locators(&self, side: IndexSide) -> u64 {
        let e = self.expected();
        match side {
            IndexSide::Source => e.source_locators,
            IndexSide::Destination => e.destination_locators,
        }
    }

    /// For `cluster.json`. `shared_mounts`: the cluster's mounts shared by keepstores (then
    /// every locator is listed once, by one of them).
    pub fn describe(
        &self,
        side: IndexSide,
        keepstores: usize,
        shared_mounts: usize,
    ) -> serde_json::Value {
        let replicas = if shared_mounts > 0 {
            1
        } else {
            self.spec.replicas.min(keepstores).max(1) as u64
        };
        let bytes_once = self.index_bytes(side);
        serde_json::json!({
            "side": side,
            "spec": self.spec,
            "locators": self.locators(side),
            "index_lines_total": self.locators(side) * replicas,
            "replicas_effective": replicas,
            // Every distinct mount's listing read once: the least a client can read.
            "index_bytes_once": bytes_once * replicas,
            "expected_diff": self.expected(),
            "placement": if shared_mounts > 0 {
                "once, on one pseudo-random shared mount"
            } else {
                "pseudo-random consecutive keepstores, not rendezvous order"
            },
        })
    }

    /// Bytes of `side`'s index lines, each locator's line once (`hash+size mtime\n`):
    /// what a client reads to list the cluster once, times the copies of each line.
    /// Enumerates (no formatting): about a second per 10^8 locators.
    pub fn index_bytes(&self, side: IndexSide) -> u64 {
        (0..BUCKETS)
            .map(|b| {
                let mut generator = BucketGen::new(self, b);
                let mut bytes = 0u64;
                while let Some(e) = generator.next() {
                    if side.lists(e.class) {
                        let (size, mtime) = e.size_mtime();
                        bytes += 32 + 1 + decimal_digits(size) + 1 + decimal_digits(mtime) + 1;
                    }
                }
                bytes
            })
            .sum()
    }

    /// Every locator `side` lists, in hash order (`hash`, size), for tests: enumerates.
    pub fn enumerate(&self, side: IndexSide) -> impl Iterator<Item = ([u8; 16], u64)> + '_ {
        (0..BUCKETS).flat_map(move |b| {
            let mut generator = BucketGen::new(self, b);
            std::iter::from_fn(move || generator.next())
                .filter(move |e| side.lists(e.class))
                .map(|e| (e.hash.to_be_bytes(), e.size_mtime().0))
        })
    }
}

/// The expected diff for a pair of index-only clusters (a source and a destination built
/// from the same universe), for `cluster.json`.
pub fn expected_diff(clusters: &[&crate::Cluster]) -> Option<serde_json::Value> {
    let side = |s: IndexSide| {
        clusters
            .iter()
            .find(|c| c.config.index_only.as_ref().is_some_and(|i| i.side == s))
    };
    let (src, dst) = (side(IndexSide::Source)?, side(IndexSide::Destination)?);
    let (a, b) = (
        src.config.index_only.as_ref()?,
        dst.config.index_only.as_ref()?,
    );
    if a.spec != b.spec {
        return None;
    }
    let expected = IndexUniverse::new(&a.spec).expected();
    serde_json::to_value(serde_json::json!({
        "source": src.config.id,
        "destination": dst.config.id,
        "diff": expected,
    }))
    .ok()
}

static HEX: [[u8; 2]; 256] = {
    let digits = b"0123456789abcdef";
    let mut table = [[0u8; 2]; 256];
    let mut i = 0;
    while i < 256 {
        table[i] = [digits[i >> 4], digits[i & 15]];
        i += 1;
    }
    table
};

static DEC2: [[u8; 2]; 100] = {
    let mut table = [[0u8; 2]; 100];
    let mut i = 0;
    while i < 100 {
        table[i] = [b'0' + (i / 10) as u8, b'0' + (i % 10) as u8];
        i += 1;
    }
    table
};

/// How many decimal digits `n` takes.
fn decimal_digits(n: u64) -> u64 {
    u64::from(n.checked_ilog10().unwrap_or(0)) + 1
}

/// Writes `n` in decimal ending just before `end` in `buf`; returns where it starts.
fn write_u64(buf: &mut [u8], end: usize, mut n: u64) -> usize {
    let mut i = end;
    while n >= 100 {
        let d = (n % 100) as usize;
        n /= 100;
        i -= 2;
        buf[i..i + 2].copy_from_slice(&DEC2[d]);
    }
    if n >= 10 {
        i -= 2;
        buf[i..i + 2].copy_from_slice(&DEC2[n as usize]);
    } else {
        i -= 1;
        buf[i] = b'0' + n as u8;
    }
    i
}

/// `hash+size mtime\n`, built on the stack and appended at once.
fn push_line(out: &mut BytesMut, e: &Element) {
    let mut line = [0u8; 96];
    for (i, byte) in e.hash.to_be_bytes().iter().enumerate() {
        line[2 * i..2 * i + 2].copy_from_slice(&HEX[*byte as usize]);
    }
    line[32] = b'+';
    // Size digits go right after the '+': format them at the end of a scratch area.
    let (size, mtime_ns) = e.size_mtime();
    let mut digits = [0u8; 20];
    let start = write_u64(&mut digits, 20, size);
    let len = 20 - start;
    line[33..33 + len].copy_from_slice(&digits[start..]);
    let mut pos = 33 + len;
    line[pos] = b' ';
    pos += 1;
    let start = write_u64(&mut digits, 20, mtime_ns);
    let len = 20 - start;
    line[pos..pos + len].copy_from_slice(&digits[start..]);
    pos += len;
    line[pos] = b'\n';
    out.put_slice(&line[..pos + 1]);
}

/// One mount of a keepstore, for [`KeepstoreListing`].
#[derive(Clone, Debug)]
pub struct ListingMount {
    pub uuid: String,
    /// `Some((j, n))`: the cluster's shared mount `j` of `n` (the same lines from every
    /// keepstore exposing it).
    pub shared: Option<(usize, usize)>,
}

impl ListingMount {
    pub fn local(uuid: impl Into<String>) -> ListingMount {
        ListingMount {
            uuid: uuid.into(),
            shared: None,
        }
    }
}

/// Where a mount's locators come from.
#[derive(Clone, Copy, Debug)]
enum Place {
    /// The keepstore's local mount `i` of `n`.
    Local(u64, u64),
    /// The cluster's shared mount `j` of `n`.
    Shared(u64, u64),
}

/// One keepstore's view of the universe.
#[derive(Clone)]
pub struct KeepstoreListing {
    universe: Arc<IndexUniverse>,
    side: IndexSide,
    keepstore: u64,
    keepstores: u64,
    replicas: u64,
    /// Per mount (by index in uuid order).
    places: Arc<Vec<Place>>,
    /// The cluster keeps its locators on shared mounts only.
    shared_cluster: bool,
    /// Bucket order per mount (by index in uuid order).
    bucket_orders: Arc<Vec<Vec<u16>>>,
}

impl KeepstoreListing {
    /// `mounts` in uuid order; `cluster_has_shared`: the cluster has shared mounts (on this
    /// keepstore or not), so its local mounts list nothing.
    pub fn new(
        universe: Arc<IndexUniverse>,
        side: IndexSide,
        keepstore: usize,
        keepstores: usize,
        mounts: Vec<ListingMount>,
        cluster_has_shared: bool,
    ) -> KeepstoreListing {
        let locals = mounts.iter().filter(|m| m.shared.is_none()).count() as u64;
        let mut local = 0;
        let places = mounts
            .iter()
            .map(|m| match m.shared {
                Some((j, n)) => Place::Shared(j as u64, n.max(1) as u64),
                None => {
                    local += 1;
                    Place::Local(local - 1, locals.max(1))
                }
            })
            .collect();
        let orders = mounts
            .iter()
            .map(|m| &m.uuid)
            .map(|uuid| {
                let mut order: Vec<u16> = (0..BUCKETS as u16).collect();
                let ranks: Vec<[u8; 16]> = order
                    .iter()
                    .map(|b| crate::hash::md5(format!("{uuid}{b:03x}").as_bytes()))
                    .collect();
                order.sort_by(|&a, &b| ranks[a as usize].cmp(&ranks[b as usize]));
                order
            })
            .collect();
        let keepstores = keepstores.max(1) as u64;
        KeepstoreListing {
            replicas: (universe.spec.replicas as u64).clamp(1, keepstores),
            universe,
            side,
            keepstore: keepstore as u64,
            keepstores,
            places: Arc::new(places),
            shared_cluster: cluster_has_shared,
            bucket_orders: Arc::new(orders),
        }
    }

    fn holds(&self, e: &Element, mount: u64) -> bool {
        if !self.side.lists(e.class) {
            return false;
        }
        // Multiply-high instead of `%` (a division by a run-time value per line).
        let pick = |bits: u64, n: u64| ((u128::from(bits) * u128::from(n)) >> 64) as u64;
        match self.places.get(mount as usize) {
            Some(&Place::Shared(j, n)) => pick(e.mount, n) == j,
            Some(&Place::Local(i, n)) if !self.shared_cluster => {
                let start = pick(e.placement, self.keepstores);
                let offset = if self.keepstore >= start {
                    self.keepstore - start
                } else {
                    self.keepstore + self.keepstores - start
                };
                offset < self.replicas && pick(e.mount, n) == i
            }
            _ => false,
        }
    }

    /// The listing of the given mounts (indexes in uuid order), concatenated, for a hex
    /// `prefix`, in pieces of about 256 KiB.
    pub fn pieces(
        &self,
        mounts: Vec<usize>,
        prefix: String,
    ) -> Box<dyn Iterator<Item = Bytes> + Send> {
        let bits = 4 * prefix.len() as u32;
        let value =
            u128::from_str_radix(if prefix.is_empty() { "0" } else { &prefix }, 16).unwrap_or(0);
        let (lo, hi) = if bits == 0 {
            (0, None)
        } else {
            let lo = value << (128 - bits);
            (lo, lo.checked_add(1u128 << (128 - bits)))
        };
        let in_range = move |h: u128| h >= lo && hi.is_none_or(|hi| h < hi);
        let mut work: Vec<(u64, u16)> = Vec::new();
        for m in mounts {
            if let Some(order) = self.bucket_orders.get(m) {
                for &b in order {
                    let first = u128::from(b) << 116;
                    let last = first | ((1u128 << 116) - 1);
                    if last >= lo && hi.is_none_or(|hi| first < hi) {
                        work.push((m as u64, b));
                    }
                }
            }
        }
        let me = self.clone();
        let mut next = 0;
        let mut current: Option<(u64, BucketGen)> = None;
        Box::new(std::iter::from_fn(move || {
            let mut out = BytesMut::with_capacity(300 << 10);
            loop {
                if current.is_none() {
                    let (m, b) = *work.get(next)?;
                    next += 1;
                    current = Some((m, BucketGen::new(&me.universe, u64::from(b))));
                }
                let (mount, generator) = current.as_mut()?;
                let mut finished = true;
                while let Some(e) = generator.next() {
                    if me.holds(&e, *mount) && in_range(e.hash) {
                        push_line(&mut out, &e);
                        if out.len() >= 256 << 10 {
                            finished = false;
                            break;
                        }
                    }
                }
                if finished {
                    current = None;
                }
                if out.len() >= 256 << 10 || (current.is_none() && next >= work.len()) {
                    return (!out.is_empty()).then(|| out.freeze());
                }
            }
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    fn spec() -> IndexUniverseSpec {
        IndexUniverseSpec::with_overlap(42, 10_000, 7_000, 0.3, 2)
    }

    fn lines(listing: &KeepstoreListing, mounts: Vec<usize>, prefix: &str) -> Vec<String> {
        listing
            .pieces(mounts, prefix.to_string())
            .flat_map(|p| {
                String::from_utf8(p.to_vec())
                    .expect("ascii")
                    .lines()
                    .map(str::to_string)
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    #[test]
    fn counts_are_exact_and_locators_distinct() {
        let universe = Arc::new(IndexUniverse::new(&spec()));
        let e = universe.expected();
        assert_eq!(
            e,
            ExpectedDiff {
                source_locators: 10_000,
                destination_locators: 7_000,
                common: 3_000,
                source_only: 7_000,
                destination_only: 4_000,
            }
        );
        let src: Vec<_> = universe.enumerate(IndexSide::Source).collect();
        let dst: Vec<_> = universe.enumerate(IndexSide::Destination).collect();
        assert_eq!((src.len(), dst.len()), (10_000, 7_000));
        assert!(
            src.windows(2).all(|w| w[0].0 < w[1].0),
            "ascending, so distinct"
        );
        let a: HashSet<_> = src.iter().collect();
        let b: HashSet<_> = dst.iter().collect();
        assert_eq!(
            a.intersection(&b).count(),
            3_000,
            "same hash+size when shared"
        );
    }

    #[test]
    fn keepstores_list_every_locator_replicas_times() {
        let universe = Arc::new(IndexUniverse::new(&spec()));
        let k = 3;
        let mut seen: std::collections::HashMap<String, usize> = Default::default();
        let mut total = 0;
        for ks in 0..k {
            let uuids = vec![
                ListingMount::local(format!("m{ks}a")),
                ListingMount::local(format!("m{ks}b")),
            ];
            let listing =
                KeepstoreListing::new(universe.clone(), IndexSide::Source, ks, k, uuids, false);
            let all = lines(&listing, vec![0, 1], "");
            let per_mount: usize = (0..2).map(|m| lines(&listing, vec![m], "").len()).sum();
            assert_eq!(all.len(), per_mount, "index = mounts concatenated");
            // Unsorted across buckets, sorted inside each.
            let buckets: Vec<&str> = all.iter().map(|l| &l[..3]).collect();
            let mut sorted = buckets.clone();
            sorted.sort();
            assert_ne!(buckets, sorted);
            for line in &all {
                let (loc, mtime) = line.split_once(' ').expect("two fields");
                assert_eq!(mtime.len(), 19);
                *seen.entry(loc.to_string()).or_default() += 1;
            }
            total += all.len();
            let prefixed = lines(&listing, vec![0, 1], "a1");
            assert!(prefixed.iter().all(|l| l.starts_with("a1")));
            assert_eq!(
                prefixed.len(),
                all.iter().filter(|l| l.starts_with("a1")).count()
            );
            let long = &all[0][..7];
            assert_eq!(
                lines(&listing, vec![0, 1], long).len(),
                all.iter().filter(|l| l.starts_with(long)).count()
            );
        }
        assert_eq!(total, 20_000);
        assert_eq!(seen.len(), 10_000);
        assert!(seen.values().all(|&n| n == 2));
        let bytes: u64 = seen.keys().map(|l| l.len() as u64 + 21).sum();
        assert_eq!(universe.index_bytes(IndexSide::Source), bytes, "lines once");
    }

    #[test]
    fn a_shared_mount_lists_the_same_lines_from_every_keepstore() {
        let universe = Arc::new(IndexUniverse::new(&spec()));
        let k = 3;
        let listing = |ks: usize| {
            let mounts = vec![
                ListingMount::local(format!("m{ks}")),
                ListingMount {
                    uuid: "shared-a".into(),
                    shared: Some((0, 2)),
                },
                ListingMount {
                    uuid: "shared-b".into(),
                    shared: Some((1, 2)),
                },
            ];
            KeepstoreListing::new(universe.clone(), IndexSide::Source, ks, k, mounts, true)
        };
        let first = listing(0);
        let (a, b) = (lines(&first, vec![1], ""), lines(&first, vec![2], ""));
        assert!(lines(&first, vec![0], "").is_empty(), "locals hold nothing");
        assert_eq!(a.len() + b.len(), 10_000, "every locator once");
        for ks in 1..k {
            let other = listing(ks);
            assert_eq!(lines(&other, vec![1], ""), a);
            assert_eq!(lines(&other, vec![2], ""), b);
        }
    }
}

#[cfg(test)]
mod speed {
    use super::*;

    /// Generation speed, without the network: `cargo test --release -p keepsim
    /// index_generation_speed -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn index_generation_speed() {
        let spec = IndexUniverseSpec::with_overlap(1, 20_000_000, 20_000_000, 0.9, 2);
        let universe = Arc::new(IndexUniverse::new(&spec));
        let listing = KeepstoreListing::new(
            universe,
            IndexSide::Source,
            0,
            3,
            vec![ListingMount::local("m")],
            false,
        );
        let started = std::time::Instant::now();
        let (mut lines, mut bytes) = (0usize, 0usize);
        for piece in listing.pieces(vec![0], String::new()) {
            lines += piece.iter().filter(|&&b| b == b'\n').count();
            bytes += piece.len();
        }
        let secs = started.elapsed().as_secs_f64();
        eprintln!(
            "{lines} lines, {bytes} bytes in {secs:.2}s: {:.1} M lines/s, {:.0} MB/s (universe {:.1} M elements/s)",
            lines as f64 / secs / 1e6,
            bytes as f64 / secs / 1e6,
            22e6 / secs / 1e6
        );
    }
}
