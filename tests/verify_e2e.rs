//! `-verify-existing` end to end against keepsim: a corrupt destination replica is found
//! by re-reading, good replicas are written elsewhere in rendezvous order, the bad one is
//! reported (and trashed with `-trash-bad`), and the official Python SDK then reads every
//! block back.

mod e2e_support;

use std::path::PathBuf;
use std::process::Command;

use e2e_support::*;
use keepsim::ClusterConfig;

fn python() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("KEEPMOVER_PYTHON") {
        return Some(PathBuf::from(p));
    }
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
    venv.exists().then_some(venv)
}

#[test]
fn verify_existing_replaces_a_corrupt_replica_and_reports_it() {
    let mut src = ClusterConfig::new("srcaa", 3);
    src.blob_signing_ttl = 1;
    let mut dst = ClusterConfig::new("dstbb", 4);
    dst.blob_signing_ttl = 1;
    let env = start(src, dst);
    let hashes = fill(&env.src, 12, 6000);
    let out = keepmover(&env, &["-replications", "2"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let victim = &hashes[3];
    let bad_server = order(&env.dst, victim)[0];
    assert!(env.dst.corrupt_block(bad_server, victim), "corrupted");
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let out = keepmover(
        &env,
        &["-replications", "2", "-verify-existing", "-trash-bad"],
    );
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    let bad_uuid = env.dst.keepstore_uuid(bad_server).to_string();
    assert!(
        err.contains(&format!("Bad replica of {victim}")) && err.contains(&bad_uuid),
        "{err}"
    );
    assert!(err.contains("-trash-bad: trashed the bad replica"), "{err}");
    // Every block has two good replicas on the destination.
    for hash in &hashes {
        let good = (0..4)
            .filter(|&s| {
                env.dst
                    .get_block(s, hash)
                    .is_some_and(|d| &hash_of(&d) == hash)
            })
            .count();
        assert!(good >= 2, "{hash}: {good} good replicas\n{err}");
    }
    // The official SDK reads every block back.
    let Some(python) = python() else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI without the Python SDK venv"
        );
        eprintln!("SKIPPED the Python SDK read-back: no .venv (run .ci/run)");
        return;
    };
    let locators: Vec<String> = hashes
        .iter()
        .enumerate()
        .map(|(n, h)| format!("{h}+{}", 6000 + n))
        .collect();
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tools/pysdk/readback.py");
    let cluster_json = env.dir.path().join("cluster.json");
    let out = Command::new(python)
        .arg(script)
        .arg(format!("{}:dstbb", cluster_json.display()))
        .args(&locators)
        .output()
        .expect("python runs");
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
