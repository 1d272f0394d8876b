//! The official Arvados Python SDK against keepsim through the SDK's own discovery path:
//! `arvados.api('v1', host=..., token=..., insecure=True)` builds its client from keepsim's
//! discovery document, reads `/arvados/v1/config`, and `KeepClient(api_client=...)` puts and
//! gets blocks (tools/pysdk/api_check.py). Runs when `.venv/bin/python` (at the workspace
//! root) or `$KEEPMOVER_PYTHON` exists, else skips with a message.

use std::path::PathBuf;
use std::process::Command;

use keepsim::{Cluster, ClusterConfig};

fn python() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("KEEPMOVER_PYTHON") {
        return Some(PathBuf::from(p));
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let venv = root.join(".venv/bin/python");
    venv.exists().then_some(venv)
}

fn run(tls: bool) {
    let Some(python) = python() else {
        eprintln!(
            "SKIPPED: no .venv/bin/python with arvados-python-client at the workspace root \
             (python3 -m venv .venv && .venv/bin/pip install arvados-python-client)"
        );
        return;
    };
    let mut config = ClusterConfig::new("pyapi", 3);
    config.tls = tls;
    config.blob_signing_ttl = 7200;
    let cluster = Cluster::start(config).expect("cluster starts");
    let dir = tempfile::tempdir().expect("tempdir");
    let cluster_json = keepsim::write_cluster_files(dir.path(), &[&cluster]).expect("files");
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../pysdk/api_check.py");
    let out = Command::new(&python)
        .arg(&script)
        .arg(format!("{}:pyapi", cluster_json.display()))
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "api_check.py failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("JSON from api_check.py");
    assert_eq!(
        report["root_url"],
        format!("https://{}/", cluster.api_host()).as_str()
    );
    assert_eq!(report["blob_signature_ttl"], 7200);
    assert_eq!(report["default_replication"], 2);
    let collections = &report["config_collections"];
    assert_eq!(collections["BlobSigningTTL"], "2h0m0s");
    assert_eq!(collections["BlobTrash"], true);
    assert_eq!(collections["BlobTrashLifetime"], "336h0m0s");
    assert_eq!(collections["BalanceTrashLimit"], 100_000);
    assert_eq!(report["storage_classes"]["default"]["Default"], true);
    assert_eq!(report["services"].as_array().map(Vec::len), Some(3));
    let blocks = report["blocks"].as_object().expect("blocks");
    assert_eq!(blocks.len(), 4);
    for (hash, size) in blocks {
        let holders = cluster.locate(hash);
        assert!(holders.len() >= 2, "{hash}: {holders:?}");
        assert!(holders.iter().all(|h| Some(h.size) == size.as_u64()));
    }
}

#[test]
fn python_sdk_discovery_and_keep_client() {
    run(false);
}

#[test]
fn python_sdk_discovery_and_keep_client_over_tls() {
    run(true);
}
