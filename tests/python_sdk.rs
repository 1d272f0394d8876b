//! Fidelity of keepsim against the official Arvados Python SDK: `KeepClient` puts, gets and
//! lists blocks on simulated keepstores, and places them where keepmover's rendezvous order
//! says a Keep client will look. Needs `.venv/bin/python` with `arvados-python-client`
//! (`.ci/run` installs it) or `$KEEPMOVER_PYTHON`; skipped loudly without it, but under
//! `CI` a missing SDK is a failure.

use std::path::PathBuf;
use std::process::Command;

use keepsim::{Cluster, ClusterConfig};

fn python() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("KEEPMOVER_PYTHON") {
        return Some(PathBuf::from(p));
    }
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
    venv.exists().then_some(venv)
}

fn run_fidelity(tls: bool) {
    let Some(python) = python() else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI is set but no Python SDK venv: run .ci/run (it creates .venv with arvados-python-client)"
        );
        eprintln!("SKIPPED: no .venv/bin/python with arvados-python-client (run .ci/run)");
        return;
    };
    let mut config = ClusterConfig::new("pysdk", 5);
    config.tls = tls;
    let cluster = Cluster::start(config).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cluster_json = keepsim::write_cluster_files(dir.path(), &[&cluster]).unwrap();
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tools/pysdk/fidelity.py");
    let out = Command::new(&python)
        .arg(&script)
        .arg(format!("{}:pysdk", cluster_json.display()))
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "fidelity.py failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("JSON from fidelity.py");
    let uuids: Vec<String> = (0..cluster.keepstores.len())
        .map(|i| cluster.keepstore_uuid(i).to_string())
        .collect();
    let refs: Vec<&str> = uuids.iter().map(String::as_str).collect();
    let blocks = report["blocks"].as_object().expect("blocks");
    assert_eq!(blocks.len(), 12);
    for (hash, info) in blocks {
        let go_order: Vec<String> = keepmover::keep::rendezvous::probe_order_go(hash, &refs)
            .into_iter()
            .map(|i| uuids[i].clone())
            .collect();
        let python_order: Vec<String> = info["python_order"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_string())
            .collect();
        assert_eq!(python_order, go_order, "probe order of {hash}");
        let holders: Vec<String> = info["holders"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_string())
            .collect();
        // put(copies=2) can store more than 2 (an SDK race): count, and check the first two.
        assert!(holders.len() >= 2, "{hash} stored on {holders:?}");
        for expected in &go_order[..2] {
            assert!(
                holders.contains(expected),
                "{hash}: {expected} should hold it; holders {holders:?}"
            );
        }
    }
}

#[test]
fn python_sdk_puts_gets_and_lists_over_http() {
    run_fidelity(false);
}

#[test]
fn python_sdk_works_over_https_with_insecure() {
    run_fidelity(true);
}
