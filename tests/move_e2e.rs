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

/// A source of three keepstores with two mounts each (TTL one second); `count` blocks,
/// each on its first two keepstores in rendezvous order, on mount `n % 2` of each.
/// Returns the hashes.
fn two_mount_env(count: usize) -> (Env, Vec<String>) {
    let mut config = ClusterConfig::new("srcaa", 3);
    config.mounts_per_keepstore = 2;
    config.blob_signing_ttl = 1;
    let env = start(config, ClusterConfig::new("dstbb", 1));
    let mut hashes = Vec::new();
    for n in 0..count {
        let data = block(n, 3000 + n);
        let hash = hash_of(&data);
        for &server in order(&env.src, &hash).iter().take(2) {
            env.src
                .put_block_on_mount(server, n % 2, &data)
                .expect("put");
        }
        hashes.push(hash);
    }
    std::thread::sleep(std::time::Duration::from_millis(1500));
    (env, hashes)
}

/// Replicas of `hash` in the source: copies on distinct mounts (replication 1 each).
fn replicas(env: &Env, hash: &str) -> usize {
    env.src.locate(hash).len()
}

/// The hashes on one mount of the source.
fn on_mount(env: &Env, uuid: &str) -> Vec<String> {
    let mut out: Vec<String> = env
        .src
        .keepstores
        .iter()
        .flat_map(|k| k.mounts.iter())
        .filter(|m| m.uuid == uuid)
        .flat_map(|m| m.index(""))
        .map(|(h, _, _)| h.to_string())
        .collect();
    out.sort();
    out.dedup();
    out
}

fn vacate(env: &Env, uuid: &str) -> std::process::Output {
    vacate_with(env, uuid, &[])
}

fn vacate_with(env: &Env, uuid: &str, extra: &[&str]) -> std::process::Output {
    let src = env.dir.path().join("srcaa.conf").display().to_string();
    std::process::Command::new(env!("CARGO_BIN_EXE_keepmover"))
        .args([
            "vacate",
            "-src",
            &src,
            "-src-services",
            uuid,
            "-progress",
            "log",
        ])
        .args(extra)
        .output()
        .expect("runs")
}

/// Vacating mount `vacated` emptied it, left the keepstore's other mount as it was (but
/// for new copies) and kept every block's replica count.
fn assert_vacated(env: &Env, hashes: &[String], vacated: &str, before: &[usize], err: &str) {
    assert!(
        on_mount(env, vacated).is_empty(),
        "{vacated} is empty: {err}"
    );
    for (hash, had) in hashes.iter().zip(before) {
        let now = replicas(env, hash);
        assert!(now >= *had, "{hash}: {now} replicas, had {had}: {err}");
    }
}

/// The summary line's copied and skipped block counts.
fn summary_counts(err: &str) -> (u64, u64) {
    let line = err
        .lines()
        .find(|l| l.contains("Summary: copied "))
        .expect("a summary line");
    let number_after = |what: &str| -> u64 {
        let rest = &line[line.find(what).expect(what) + what.len()..];
        rest.split_whitespace()
            .next()
            .and_then(|n| n.parse().ok())
            .expect("a count")
    };
    (number_after("copied "), number_after("skipped "))
}

#[test]
fn vacate_a_writable_mount_empties_it_alone() {
    let (env, hashes) = two_mount_env(30);
    let vacated = env.src.keepstores[0].mounts[0].uuid.clone();
    let kept = env.src.keepstores[0].mounts[1].uuid.clone();
    let kept_before = on_mount(&env, &kept);
    assert!(!on_mount(&env, &vacated).is_empty(), "something to vacate");
    let before: Vec<usize> = hashes.iter().map(|h| replicas(&env, h)).collect();
    // -dry-run: the plan, and nothing moves.
    let planned = on_mount(&env, &vacated).len();
    let out = vacate_with(&env, &vacated, &["-dry-run"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(
        err.contains(&format!("; {planned} blocks (")) && err.contains("would leave the source"),
        "{err}"
    );
    assert_eq!(on_mount(&env, &vacated).len(), planned, "{err}");
    let out = vacate(&env, &vacated);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(err.contains(&format!("Vacating mounts {vacated}")), "{err}");
    assert!(err.contains("take no new copies in this run"), "{err}");
    assert_vacated(&env, &hashes, &vacated, &before, &err);
    // Regression: a block already elsewhere but short of replicas was counted both
    // "skipped already present" and "copied". Each block is counted once.
    let (copied, skipped) = summary_counts(&err);
    assert_eq!(copied + skipped, planned as u64, "{err}");
    // A writable vacated mount's keepstore takes no new copies: its other mount is as it was.
    assert_eq!(on_mount(&env, &kept), kept_before, "{err}");
}

#[test]
fn vacate_a_read_only_mount_may_copy_onto_its_keepstores_other_mount() {
    let (env, hashes) = two_mount_env(30);
    let vacated = env.src.keepstores[0].mounts[0].uuid.clone();
    let kept = env.src.keepstores[0].mounts[1].uuid.clone();
    let kept_before = on_mount(&env, &kept);
    let before: Vec<usize> = hashes.iter().map(|h| replicas(&env, h)).collect();

    // Read-only without AllowTrashWhenReadOnly: keepstore would ignore the trash lists.
    assert!(env.src.set_mount_read_only(&vacated, true, false));
    let out = vacate(&env, &vacated);
    let err = stderr(&out);
    assert_ne!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("AllowTrashWhenReadOnly"), "{err}");
    assert_eq!(
        hashes.iter().map(|h| replicas(&env, h)).collect::<Vec<_>>(),
        before,
        "nothing moved: {err}"
    );

    assert!(env.src.set_mount_read_only(&vacated, true, true));
    let out = vacate(&env, &vacated);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(!err.contains("take no new copies"), "{err}");
    assert_vacated(&env, &hashes, &vacated, &before, &err);
    // The keepstore stayed a destination: its other mount kept what it had.
    let kept_after = on_mount(&env, &kept);
    assert!(kept_before.iter().all(|h| kept_after.contains(h)), "{err}");
}

#[test]
fn a_filtered_move_removes_only_the_blocks_it_selects() {
    let env = short_ttl_env();
    // Sizes 3000 + n.
    let hashes = fill(&env.src, 12, 3000);
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let out = run(&env, "move", &["-size", "3006.."]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("Removed from the source: 6 blocks"), "{err}");
    for (n, hash) in hashes.iter().enumerate() {
        let moved = n >= 6;
        assert_eq!(
            on_source(&env, hash),
            if moved { 0 } else { 2 },
            "block {n}"
        );
        assert_eq!(!holders(&env.dst, hash).is_empty(), moved, "block {n}");
    }
}
