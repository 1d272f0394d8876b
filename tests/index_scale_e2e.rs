//! The real `keepmover` binary's dry-run diff against keepsim's index-only clusters
//! (synthetic locators listed in keepstore's unsorted order, nothing stored): the plan must
//! be exactly the universe's expected diff, and the index bytes read must be the clusters'
//! indexes once each (each shared mount listed once, whatever the number of keepstores
//! exposing it). 10^6 locators per side here; the 10^7 run is `#[ignore]`d (see
//! BENCHMARKS.md, "Scale: a billion locators", for the figures and the larger runs).

use std::process::Command;

use keepsim::{Cluster, ClusterConfig, IndexOnlyConfig, IndexSide, IndexUniverseSpec, SharedMount};

struct Outcome {
    plan: serde_json::Value,
    totals: serde_json::Value,
    expected: keepsim::ExpectedDiff,
    /// Index bytes keepsim served, per cluster (source, destination).
    served: [u64; 2],
    /// Bytes of each cluster's index, every distinct mount once.
    once: [u64; 2],
    /// Listings of each mount, per cluster (a shared mount's count is kept once, by the
    /// mount, whichever keepstore served it).
    mount_listings: Vec<std::collections::BTreeMap<String, u64>>,
    spec: IndexUniverseSpec,
}

fn start(id: &str, spec: &IndexUniverseSpec, side: IndexSide, shared: usize) -> Cluster {
    let mut config = ClusterConfig::new(id, 3);
    config.index_only = Some(IndexOnlyConfig {
        spec: spec.clone(),
        side,
    });
    config.shared_mounts = (0..shared)
        .map(|_| SharedMount {
            keepstores: vec![0, 1, 2],
            replication: 1,
            classes: Vec::new(),
        })
        .collect();
    Cluster::start(config).expect("starts")
}

/// Starts the pair, runs `keepmover -dry-run -json`, and gathers what both sides saw.
fn dry_run(spec: IndexUniverseSpec, shared_mounts: usize, extra: &[&str]) -> Outcome {
    let src = start("scsrc", &spec, IndexSide::Source, shared_mounts);
    let dst = start("scdst", &spec, IndexSide::Destination, shared_mounts);
    let dir = tempfile::tempdir().expect("tempdir");
    let doc_path = keepsim::write_cluster_files(dir.path(), &[&src, &dst]).expect("files");
    let doc: serde_json::Value =
        serde_json::from_slice(&std::fs::read(doc_path).expect("read")).expect("json");
    let summary = dir.path().join("summary.json");
    let out = Command::new(env!("CARGO_BIN_EXE_keepmover"))
        .arg("-src")
        .arg(dir.path().join("scsrc.conf"))
        .arg("-dst")
        .arg(dir.path().join("scdst.conf"))
        .args(["-dry-run", "-progress", "log", "-json"])
        .arg(&summary)
        .args(extra)
        .output()
        .expect("runs keepmover");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "keepmover failed: {stderr}");
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&summary).expect("summary")).expect("json");
    let served = |c: &Cluster| -> u64 { c.keepstores.iter().map(|k| k.stats().index_bytes).sum() };
    let once = |i: usize| {
        doc["clusters"][i]["index_only"]["index_bytes_once"]
            .as_u64()
            .expect("index_bytes_once")
    };
    let listings = |c: &Cluster| {
        let mut all = std::collections::BTreeMap::new();
        for k in &c.keepstores {
            for (uuid, n) in k.stats().mount_index_requests {
                let seen = all.entry(uuid.clone()).or_insert(0);
                *seen = if uuid.contains("-nyw5e-999") {
                    n
                } else {
                    *seen + n
                };
            }
        }
        all
    };
    Outcome {
        plan: report["plan"].clone(),
        totals: report["totals"].clone(),
        expected: src.index_universe.as_ref().expect("universe").expected(),
        served: [served(&src), served(&dst)],
        once: [once(0), once(1)],
        mount_listings: vec![listings(&src), listings(&dst)],
        spec,
    }
}

/// The plan is the expected diff, count for count.
fn assert_exact(o: &Outcome) {
    let e = &o.expected;
    let plan = &o.plan;
    assert_eq!(plan["src_blocks"], e.source_locators, "{plan}");
    assert_eq!(plan["dst_blocks"], e.destination_locators, "{plan}");
    assert_eq!(plan["to_copy_blocks"], e.source_only, "{plan}");
    assert_eq!(plan["present_blocks"], e.common, "{plan}");
    assert_eq!(plan["estimated_from_slices"], serde_json::Value::Null);
}

/// The bytes to copy, from enumerating both sides (a streaming merge of two sorted lists).
fn source_only_bytes(spec: &IndexUniverseSpec) -> u64 {
    let universe = keepsim::IndexUniverse::new(spec);
    let mut dst = universe.enumerate(IndexSide::Destination).peekable();
    let mut bytes = 0;
    for (hash, size) in universe.enumerate(IndexSide::Source) {
        while dst.peek().is_some_and(|(h, _)| *h < hash) {
            dst.next();
        }
        if dst.peek().map(|(h, s)| (*h, *s)) != Some((hash, size)) {
            bytes += size;
        }
    }
    bytes
}

/// How far the bytes read go beyond both indexes once each.
fn read_ratio(o: &Outcome) -> f64 {
    (o.served[0] + o.served[1]) as f64 / (o.once[0] + o.once[1]) as f64
}

#[test]
fn a_million_locator_dry_run_is_exactly_the_expected_diff() {
    let spec = IndexUniverseSpec::with_overlap(7, 1_000_000, 950_000, 0.9, 2);
    let o = dry_run(spec, 0, &[]);
    assert_exact(&o);
    assert_eq!(o.expected.source_only, 100_000);
    assert_eq!(o.plan["to_copy_bytes"], source_only_bytes(&o.spec));
    // Two replicas on three keepstores: every line read once, plus the estimate's probe.
    assert_eq!(
        o.totals["index_lines"],
        2 * (o.expected.source_locators + o.expected.destination_locators)
    );
    let ratio = read_ratio(&o);
    assert!((1.0..=1.05).contains(&ratio), "read {ratio}x the indexes");
}

#[test]
fn a_shared_mount_behind_three_keepstores_is_read_once() {
    let spec = IndexUniverseSpec::with_overlap(8, 200_000, 150_000, 0.5, 2);
    let o = dry_run(spec, 1, &["-index-by", "mount"]);
    assert_exact(&o);
    assert_eq!(o.plan["to_copy_bytes"], source_only_bytes(&o.spec));
    let ratio = read_ratio(&o);
    assert!((1.0..=1.05).contains(&ratio), "read {ratio}x the indexes");
    // The shared mount is listed once per slice, not once per keepstore; besides, each of
    // the three keepstores lists a small prefix of it twice (the preflight's permission
    // check, the estimate's probe).
    let slices = o.plan["slices_total"].as_u64().expect("slices");
    for listings in &o.mount_listings {
        let shared: Vec<u64> = listings
            .iter()
            .filter(|(uuid, _)| uuid.contains("-nyw5e-999"))
            .map(|(_, &n)| n)
            .collect();
        assert_eq!(shared.len(), 1);
        assert!(
            shared[0] <= slices + 2 * 3,
            "{} listings for {slices} slices",
            shared[0]
        );
    }
}

/// `cargo test --release --test index_scale_e2e -- --ignored --nocapture` (5 s on two
/// cores; BENCHMARKS.md has the figures).
#[test]
#[ignore]
fn ten_million_locator_dry_run_is_exactly_the_expected_diff() {
    let started = std::time::Instant::now();
    let spec = IndexUniverseSpec::with_overlap(7, 10_000_000, 9_500_000, 0.9, 2);
    let o = dry_run(spec, 0, &[]);
    assert_exact(&o);
    assert_eq!(o.expected.source_only, 1_000_000);
    assert_eq!(o.plan["to_copy_bytes"], source_only_bytes(&o.spec));
    let ratio = read_ratio(&o);
    assert!((1.0..=1.05).contains(&ratio), "read {ratio}x the indexes");
    eprintln!(
        "1e7: plan {} in {:.1}s, index bytes read {:.4}x both indexes once",
        o.plan,
        started.elapsed().as_secs_f64(),
        ratio
    );
}
