//! Benchmark-serving mode (off by default): the source's blocks are pregenerated and served
//! by reference, the destination trusts PUT bodies without an MD5 check, and cluster.json
//! says so loudly.

mod common;

use common::{md5_hex, request};
use keepsim::{BlockSetConfig, BlockSizes, Cluster, ClusterConfig};

#[test]
fn bench_serving_pregenerates_and_skips_put_md5() {
    let mut src = ClusterConfig::new("bsrcx", 2);
    src.blob_signing = false;
    src.bench_serving = true;
    src.block_set = Some(BlockSetConfig {
        sizes: BlockSizes::List(vec![300_000, 5000]),
        seed: 4,
        replicas: 1,
    });
    let src = Cluster::start(src).expect("source");
    let set = src.block_set.clone().expect("set");
    assert!(set.is_pregenerated());
    for (hash, size) in set.blocks() {
        let holder = &src.locate(&hash.to_string())[0];
        let r = request(
            src.keepstore_ports[holder.keepstore],
            "GET",
            &format!("/{hash}+{size}"),
            None,
            b"",
        );
        assert_eq!((r.status, md5_hex(&r.body)), (200, hash.to_string()));
    }
    let mut dst = ClusterConfig::new("bdstx", 1);
    dst.bench_serving = true;
    dst.digest_only = true;
    let dst = Cluster::start(dst).expect("destination");
    // The body does not match the hash, and the PUT is accepted anyway: that is the mode.
    let claimed = md5_hex(b"what the client said");
    let r = request(
        dst.keepstore_ports[0],
        "PUT",
        &format!("/{claimed}"),
        None,
        b"other bytes",
    );
    assert_eq!(r.status, 200);
    assert_eq!(dst.locate(&claimed)[0].size, 11);
    let dir = tempfile::tempdir().expect("tempdir");
    let path = keepsim::write_cluster_files(dir.path(), &[&src, &dst]).expect("files");
    let doc: serde_json::Value =
        serde_json::from_slice(&std::fs::read(path).expect("read")).expect("json");
    for c in 0..2 {
        assert_eq!(doc["clusters"][c]["bench_serving"], true);
        assert_eq!(doc["clusters"][c]["put_md5_verified"], false);
        assert!(doc["clusters"][c]["bench_serving_note"]
            .as_str()
            .is_some_and(|n| n.contains("BENCHMARK-ONLY")));
    }
    assert_eq!(doc["clusters"][0]["block_set"]["pregenerated"], true);
    // Off by default.
    assert!(!ClusterConfig::new("plain", 1).bench_serving);
}
