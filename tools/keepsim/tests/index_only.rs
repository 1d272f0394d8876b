//! Index-only clusters over real sockets: every keepstore's streamed listing, taken
//! together, holds exactly the universe's locators with the configured replicas; diffing
//! the two clusters gives exactly the expected numbers written into cluster.json; block
//! requests answer 422.

mod common;

use std::collections::{HashMap, HashSet};

use common::request;
use keepsim::{Cluster, ClusterConfig, IndexOnlyConfig, IndexSide, IndexUniverseSpec};

fn pair(spec: &IndexUniverseSpec) -> (Cluster, Cluster) {
    let start = |id: &str, side| {
        let mut config = ClusterConfig::new(id, 3);
        config.mounts_per_keepstore = 2;
        config.index_only = Some(IndexOnlyConfig {
            spec: spec.clone(),
            side,
        });
        Cluster::start(config).expect("starts")
    };
    (
        start("idxsr", IndexSide::Source),
        start("idxds", IndexSide::Destination),
    )
}

/// `hash+size` → number of listings it appeared in, over all keepstores of a cluster.
fn listed(c: &Cluster, path: &str) -> HashMap<String, usize> {
    let token = c.config.system_root_token.clone();
    let mut seen = HashMap::new();
    for port in &c.keepstore_ports {
        let r = request(*port, "GET", path, Some(&token), b"");
        assert_eq!(r.status, 200);
        assert!(r.header("transfer-encoding").is_some(), "streamed");
        let text = r.text();
        assert!(text.ends_with("\n\n") || text == "\n", "completion marker");
        for line in text.lines().filter(|l| !l.is_empty()) {
            let (locator, mtime) = line.split_once(' ').expect("two fields");
            assert!(mtime.parse::<i64>().is_ok());
            *seen.entry(locator.to_string()).or_default() += 1;
        }
    }
    seen
}

#[test]
fn two_clusters_list_the_exact_expected_diff() {
    let spec = IndexUniverseSpec::with_overlap(11, 30_000, 20_000, 0.25, 2);
    let (src, dst) = pair(&spec);
    let a = listed(&src, "/index");
    let b = listed(&dst, "/index");
    assert!(
        a.values().chain(b.values()).all(|&n| n == 2),
        "2 replicas each"
    );
    let a: HashSet<&String> = a.keys().collect();
    let b: HashSet<&String> = b.keys().collect();
    let expected = src.index_universe.as_ref().expect("universe").expected();
    assert_eq!(a.len() as u64, expected.source_locators);
    assert_eq!(b.len() as u64, expected.destination_locators);
    assert_eq!(a.intersection(&b).count() as u64, expected.common);
    assert_eq!(a.difference(&b).count() as u64, expected.source_only);
    assert_eq!(
        (
            expected.common,
            expected.source_only,
            expected.destination_only
        ),
        (7_500, 22_500, 12_500)
    );
    // cluster.json carries it.
    let dir = tempfile::tempdir().expect("tempdir");
    let path = keepsim::write_cluster_files(dir.path(), &[&src, &dst]).expect("files");
    let doc: serde_json::Value =
        serde_json::from_slice(&std::fs::read(path).expect("read")).expect("json");
    assert_eq!(doc["index_only_expected"]["diff"]["source_only"], 22_500);
    assert_eq!(doc["index_only_expected"]["diff"]["common"], 7_500);
    assert_eq!(
        doc["clusters"][0]["index_only"]["index_lines_total"],
        60_000
    );
    // Per-mount listings and prefixes agree with the whole.
    let token = src.config.system_root_token.clone();
    let port = src.keepstore_ports[0];
    let whole = request(port, "GET", "/index", Some(&token), b"").text();
    let mounts: String = src.keepstores[0]
        .mounts
        .iter()
        .map(|m| {
            let t = request(
                port,
                "GET",
                &format!("/mounts/{}/blocks", m.uuid),
                Some(&token),
                b"",
            )
            .text();
            t[..t.len() - 1].to_string()
        })
        .collect();
    assert_eq!(format!("{mounts}\n"), whole);
    let pre = request(port, "GET", "/index/ab", Some(&token), b"").text();
    assert_eq!(
        pre.lines().filter(|l| !l.is_empty()).count(),
        whole.lines().filter(|l| l.starts_with("ab")).count()
    );
    // No data.
    let some = whole
        .lines()
        .next()
        .expect("a line")
        .split(' ')
        .next()
        .expect("locator");
    let signed = keepsim::keep::signature::sign_locator(
        some,
        &token,
        src.config.blob_signing_key.as_bytes(),
        u64::MAX >> 33,
        src.config.blob_signing_ttl,
    );
    let r = request(port, "GET", &format!("/{signed}"), Some(&token), b"");
    assert_eq!(r.status, 422, "{}", r.text());
    assert!(r.text().contains("index-only"));
}
