//! `pull` end to end: the real binary against keepsim clusters whose keepstores carry out
//! pull lists the way keepstore does (own key, own TTL, fixed token; lists replace lists).
//! Pulls between clusters sharing a signing key copy everything (and a copy afterwards finds
//! nothing missing); different keys are refused by the trial pull with the reason; a list
//! cut in half is sent again; a block whose pulls always fail is copied through keepmover;
//! one cluster rebalances onto rendezvous places.

mod e2e_support;

use e2e_support::*;
use keepsim::{ClusterConfig, Faults};

/// Two clusters with the same blob signing key (and the default, equal, TTL).
fn shared_key_env() -> Env {
    let src = ClusterConfig::new("srcaa", 3);
    let mut dst = ClusterConfig::new("dstbb", 3);
    dst.blob_signing_key = src.blob_signing_key.clone();
    start(src, dst)
}

fn run(env: &Env, extra: &[&str]) -> std::process::Output {
    let mut argv = vec!["pull".to_string()];
    argv.extend(args(env, extra));
    std::process::Command::new(env!("CARGO_BIN_EXE_keepmover"))
        .args(&argv)
        .output()
        .expect("runs")
}

fn json(path: &std::path::Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).expect("json written")).expect("json")
}

fn report_lines(path: &std::path::Path, action: &str) -> Vec<String> {
    std::fs::read_to_string(path)
        .expect("report written")
        .lines()
        .filter(|l| l.contains(&format!("\"action\":\"{action}\"")))
        .map(str::to_string)
        .collect()
}

#[test]
fn pull_between_clusters_sharing_a_key_copies_everything() {
    let env = shared_key_env();
    let hashes = fill(&env.src, 40, 3000);
    let report = env.dir.path().join("report.jsonl");
    let summary = env.dir.path().join("summary.json");
    let checkpoint = env.dir.path().join("pull.ckpt");
    let (r, s, c) = (
        report.display().to_string(),
        summary.display().to_string(),
        checkpoint.display().to_string(),
    );
    let out = run(
        &env,
        &[
            "-report",
            &r,
            "-json",
            &s,
            "-checkpoint",
            &c,
            "-prefix-length",
            "1",
        ],
    );
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(
        err.contains("pause keep-balance on the destination"),
        "{err}"
    );
    assert!(err.contains("Trial pull:"), "{err}");
    assert!(err.contains("Pull: 40 blocks"), "{err}");
    assert_placed(&env, &hashes, 2);
    assert_eq!(report_lines(&report, "pulled").len(), 40);
    let totals = &json(&summary)["totals"];
    assert_eq!(totals["pulled_blocks"], 40);
    assert_eq!(totals["fallback_blocks"], 0);
    assert_eq!(totals["bytes_in"], 0, "keepmover moved no block bodies");
    let state = std::fs::read_to_string(&checkpoint).expect("checkpoint");
    assert!(
        state.contains("\"action\": \"pull\"") || state.contains("\"action\":\"pull\""),
        "{state}"
    );
    assert!(
        state.contains("\"done_through\": \"f\"") || state.contains("\"done_through\":\"f\""),
        "{state}"
    );
    // The copy finds nothing missing afterwards.
    let copy = keepmover(&env, &[]);
    let err = stderr(&copy);
    assert_eq!(copy.status.code(), Some(0), "{err}");
    assert!(err.contains("Start copying 0 blocks"), "{err}");
}

#[test]
fn a_dry_run_pulls_nothing() {
    let env = shared_key_env();
    let hashes = fill(&env.src, 12, 2000);
    let out = run(&env, &["-dry-run"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(
        err.contains("Dry run (pull): would pull 12 blocks"),
        "{err}"
    );
    assert!(err.contains("as 24 list items"), "{err}");
    assert_eq!(copied(&env, &hashes), 0);
}

#[test]
fn different_signing_keys_are_refused_by_the_trial_pull() {
    let env = default_env();
    let hashes = fill(&env.src, 10, 2000);
    let out = run(&env, &["-pull-trial-timeout", "2s"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("Pull mode refused: the trial pull failed on 3 of 3"),
        "{err}"
    );
    assert!(
        err.contains("its own blob signing key, its own BlobSigningTTL"),
        "{err}"
    );
    assert!(err.contains("ARVADOS_BLOB_SIGNING_KEY differ"), "{err}");
    assert!(err.contains("without `pull`"), "{err}");
    assert_eq!(copied(&env, &hashes), 0);
    for server in 0..3 {
        assert_eq!(
            env.dst.keepstores[server].pull.stats().queued,
            0,
            "trial lists cleared"
        );
    }
}

#[test]
fn a_list_half_dropped_by_a_keepstore_is_sent_again() {
    let env = shared_key_env();
    let hashes = fill(&env.src, 60, 2000);
    for server in 0..3 {
        env.dst.set_faults(
            server,
            Faults {
                pull_drop_second_half_once: true,
                ..Faults::default()
            },
        );
    }
    let summary = env.dir.path().join("summary.json");
    let s = summary.display().to_string();
    let out = run(&env, &["-pull-patience", "500ms", "-json", &s]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("sending them again (send 2 of 3)"), "{err}");
    assert_placed(&env, &hashes, 2);
    let totals = &json(&summary)["totals"];
    assert_eq!(totals["pulled_blocks"], 60);
    assert!(
        totals["pull_items_resent"].as_u64().unwrap_or(0) > 0,
        "{totals}"
    );
    assert_eq!(totals["fallback_blocks"], 0);
}

#[test]
fn a_block_whose_pulls_always_fail_is_copied_through_keepmover() {
    let env = shared_key_env();
    let hashes = fill(&env.src, 30, 2000);
    // The largest block: never a trial pick (each trial takes its server's smallest).
    let bad = hashes[29].clone();
    for server in 0..3 {
        env.dst.set_faults(
            server,
            Faults {
                pull_corrupt: vec![bad.clone()],
                ..Faults::default()
            },
        );
    }
    let report = env.dir.path().join("report.jsonl");
    let summary = env.dir.path().join("summary.json");
    let (r, s) = (report.display().to_string(), summary.display().to_string());
    let out = run(
        &env,
        &[
            "-pull-patience",
            "300ms",
            "-pull-rounds",
            "2",
            "-report",
            &r,
            "-json",
            &s,
        ],
    );
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("copied through keepmover"), "{err}");
    assert_placed(&env, &hashes, 2);
    let totals = &json(&summary)["totals"];
    assert_eq!(totals["pulled_blocks"], 29);
    assert_eq!(totals["fallback_blocks"], 1);
    assert_eq!(totals["copied_blocks"], 30);
    let copied_lines = report_lines(&report, "copied");
    assert_eq!(copied_lines.len(), 1);
    assert!(copied_lines[0].contains(&bad), "{copied_lines:?}");
    assert_eq!(report_lines(&report, "pulled").len(), 29);
}

#[test]
fn a_block_corrupt_on_every_source_copy_fails_both_ways() {
    let env = shared_key_env();
    let hashes = fill(&env.src, 20, 2000);
    let bad = hashes[19].clone();
    for &server in order(&env.src, &bad).iter().take(2) {
        assert!(env.src.corrupt_block(server, &bad));
    }
    let summary = env.dir.path().join("summary.json");
    let s = summary.display().to_string();
    let out = run(
        &env,
        &[
            "-pull-patience",
            "300ms",
            "-pull-rounds",
            "1",
            "-retries",
            "0",
            "-json",
            &s,
        ],
    );
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let totals = &json(&summary)["totals"];
    assert_eq!(totals["pulled_blocks"], 19);
    assert_eq!(totals["fallback_blocks"], 0);
    assert_eq!(totals["failed_blocks"], 1);
    assert_eq!(copied(&env, &[bad]), 0);
}

#[test]
fn one_cluster_rebalances_onto_rendezvous_places() {
    let env = start(
        ClusterConfig::new("srcaa", 4),
        ClusterConfig::new("dstbb", 1),
    );
    // Every block on keepstore 0 only.
    let mut hashes = Vec::new();
    for n in 0..30 {
        let data = block(n, 1500 + n);
        env.src.put_block(0, &data).expect("put");
        hashes.push(hash_of(&data));
    }
    let conf = env.dir.path().join("srcaa.conf").display().to_string();
    let from = env.src.keepstore_uuid(0).to_string();
    let to: Vec<String> = (1..4)
        .map(|i| env.src.keepstore_uuid(i).to_string())
        .collect();
    let to = to.join(",");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_keepmover"))
        .args([
            "pull",
            "-src",
            &conf,
            "-dst",
            &conf,
            "-src-services",
            &from,
            "-dst-services",
            &to,
            "-replications",
            "2",
            "-progress",
            "log",
        ])
        .output()
        .expect("runs");
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("Single-cluster job"), "{err}");
    assert!(err.contains("Pull: 30 blocks"), "{err}");
    let uuids: Vec<String> = (1..4)
        .map(|i| env.src.keepstore_uuid(i).to_string())
        .collect();
    let refs: Vec<&str> = uuids.iter().map(String::as_str).collect();
    for hash in &hashes {
        let mut want: Vec<usize> = keepmover::keep::rendezvous::probe_order_go(hash, &refs)
            .into_iter()
            .take(2)
            .map(|i| i + 1)
            .collect();
        want.sort_unstable();
        let have: Vec<usize> = (1..4)
            .filter(|&i| {
                env.src
                    .blocks_on(i)
                    .iter()
                    .any(|b| b.starts_with(hash.as_str()))
            })
            .collect();
        assert_eq!(have, want, "{hash}");
        assert!(
            env.src
                .blocks_on(0)
                .iter()
                .any(|b| b.starts_with(hash.as_str())),
            "still on 0"
        );
    }
}

#[test]
fn max_transfer_stops_between_slices_and_the_checkpoint_resumes() {
    let env = shared_key_env();
    let hashes = fill(&env.src, 48, 2000);
    let checkpoint = env.dir.path().join("pull.ckpt");
    let c = checkpoint.display().to_string();
    let out = run(
        &env,
        &[
            "-checkpoint",
            &c,
            "-prefix-length",
            "1",
            "-max-transfer",
            "1",
        ],
    );
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(8), "{err}");
    let first = copied(&env, &hashes);
    assert!(
        first > 0 && first < 48,
        "{first} pulled before the stop: {err}"
    );
    let out = run(&env, &["-checkpoint", &c, "-prefix-length", "1"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert_placed(&env, &hashes, 2);
    // The resumed run skipped the slices already done.
    let pulled: u64 = err
        .lines()
        .find_map(|l| l.split("Pull: ").nth(1))
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .expect("the pull line");
    assert_eq!(pulled as usize + first, 48, "{err}");
}

#[test]
fn sigterm_clears_the_lists_and_exits_143() {
    let src = ClusterConfig::new("srcaa", 3);
    let mut dst = ClusterConfig::new("dstbb", 3);
    dst.blob_signing_key = src.blob_signing_key.clone();
    dst.blob_replicate_concurrency = 1;
    let env = start(src, dst);
    let hashes = fill(&env.src, 150, 2000);
    // Slow source answers: every pull takes a while.
    for server in 0..3 {
        env.src.set_faults(
            server,
            Faults {
                delay_ms: 60,
                ..Faults::default()
            },
        );
    }
    let mut argv = vec!["pull".to_string()];
    argv.extend(args(&env, &[]));
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_keepmover"))
        .args(&argv)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("starts");
    std::thread::sleep(std::time::Duration::from_millis(2500));
    signal(&child, "TERM");
    let out = child.wait_with_output().expect("ends");
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(143), "{err}");
    assert!(copied(&env, &hashes) < 150, "{err}");
    for server in 0..3 {
        assert_eq!(
            env.dst.keepstores[server].pull.stats().queued,
            0,
            "list cleared: {err}"
        );
    }
}
