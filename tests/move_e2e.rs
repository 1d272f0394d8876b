//! `move` and `vacate` end to end against keepsim: blocks leave the source only after the
//! destination holds and has read back their replicas; nothing leaves when the destination
//! refuses; vacating a keepstore keeps every block's replica count without it.

mod e2e_support;

use e2e_support::*;
use keepsim::ClusterConfig;

/// Clusters whose BlobSigningTTL is one second, so blocks written now may be trashed soon.
fn short_ttl_env() -> Env {
    let mut src = ClusterConfig::new("srcaa", 3);
    src.blob_signing_ttl = 1;
    let mut dst = ClusterConfig::new("dstbb", 3);
    dst.blob_signing_ttl = 1;
    start(src, dst)
}

fn on_source(env: &Env, hash: &str) -> usize {
    (0..env.src.keepstores.len())
        .filter(|&i| env.src.blocks_on(i).iter().any(|b| b.starts_with(hash)))
        .count()
}

fn run(env: &Env, command: &str, extra: &[&str]) -> std::process::Output {
    let mut argv = vec![command.to_string()];
    argv.extend(args(env, extra));
    std::process::Command::new(env!("CARGO_BIN_EXE_keepmover"))
        .args(&argv)
        .output()
        .expect("runs")
}

#[test]
fn move_leaves_every_block_on_the_destination_and_none_on_the_source() {
    let env = short_ttl_env();
    let hashes = fill(&env.src, 25, 5000);
    // One is on the destination already: it is read back, then trashed too.
    let first = block(0, 5000);
    env.dst
        .put_block(order(&env.dst, &hashes[0])[0], &first)
        .expect("put");
    env.dst
        .put_block(order(&env.dst, &hashes[0])[1], &first)
        .expect("put");
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let report = env.dir.path().join("report.jsonl");
    let report_arg = report.display().to_string();
    let out = run(&env, "move", &["-report", &report_arg]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("pause keep-balance on the source"), "{err}");
    assert!(err.contains("Removed from the source: 25 blocks"), "{err}");
    assert_placed(&env, &hashes, 2);
    for hash in &hashes {
        assert_eq!(on_source(&env, hash), 0, "{hash} left the source");
    }
    let lines = std::fs::read_to_string(&report).expect("report");
    let trashed = lines
        .lines()
        .filter(|l| l.contains("\"action\":\"trashed\""))
        .count();
    assert_eq!(trashed, 25, "{lines}");
    assert!(
        lines.contains("\"action\":\"verified\""),
        "the present block was read back"
    );
}

#[test]
fn a_move_whose_destination_puts_fail_trashes_nothing() {
    let env = short_ttl_env();
    let hashes = fill(&env.src, 10, 3000);
    for server in 0..3 {
        env.dst.set_read_only(server, true);
    }
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let out = run(&env, "move", &["-retries", "0"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("Removed from the source: 0 blocks"), "{err}");
    for hash in &hashes {
        assert_eq!(
            on_source(&env, hash),
            2,
            "{hash} still on both source replicas"
        );
    }
}

#[test]
fn blocks_younger_than_the_signing_ttl_stay_and_are_reported() {
    // The default TTL (two weeks): keepstore would skip every trash item.
    let env = default_env();
    let hashes = fill(&env.src, 5, 3000);
    let out = run(&env, "move", &["-trash-patience", "1s"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("younger than the source's BlobSigningTTL"),
        "{err}"
    );
    assert_placed(&env, &hashes, 2);
    for hash in &hashes {
        assert_eq!(on_source(&env, hash), 2);
    }
}

#[test]
fn vacate_one_keepstore_keeps_every_replica_count_without_it() {
    let mut config = ClusterConfig::new("srcaa", 4);
    config.blob_signing_ttl = 1;
    let env = start(config, ClusterConfig::new("dstbb", 1));
    let hashes = fill(&env.src, 30, 4000);
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let vacated = env.src.keepstore_uuid(0).to_string();
    let before: Vec<usize> = hashes.iter().map(|h| on_source(&env, h)).collect();
    let src = env.dir.path().join("srcaa.conf").display().to_string();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_keepmover"))
        .args([
            "vacate",
            "-src",
            &src,
            "-src-services",
            &vacated,
            "-progress",
            "log",
        ])
        .output()
        .expect("runs");
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("Single-cluster job"), "{err}");
    assert!(
        env.src.blocks_on(0).is_empty(),
        "keepstore 0 is empty: {err}"
    );
    for (hash, count) in hashes.iter().zip(before) {
        let now = (1..4)
            .filter(|&i| {
                env.src
                    .blocks_on(i)
                    .iter()
                    .any(|b| b.starts_with(hash.as_str()))
            })
            .count();
        assert!(now >= count, "{hash}: {now} replicas, had {count}");
    }
}
