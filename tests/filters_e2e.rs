//! The job filters end to end, on the real binary against keepsim: `-mtime` on the copy,
//! and the copy's selection (`-size`, `-mtime`, `-locators`, `-shard`) on `validate` and
//! `touch`, which must pick exactly the blocks the copy picks.

mod e2e_support;

use std::collections::BTreeMap;
use std::process::{Command, Output};
use std::time::Duration;

use e2e_support::*;
use keepsim::Cluster;

/// Runs `keepmover <command> ...` with the environment's settings files for `sides`.
fn sub(env: &Env, command: &str, sides: &[&str], extra: &[&str]) -> Output {
    let mut argv: Vec<String> = vec![command.to_string()];
    for side in sides {
        let id = if *side == "src" { "srcaa" } else { "dstbb" };
        argv.push(format!("-{side}"));
        argv.push(
            env.dir
                .path()
                .join(format!("{id}.conf"))
                .display()
                .to_string(),
        );
    }
    argv.extend(extra.iter().map(|s| s.to_string()));
    Command::new(env!("CARGO_BIN_EXE_keepmover"))
        .args(&argv)
        .output()
        .expect("run keepmover")
}

fn path(env: &Env, name: &str) -> String {
    env.dir.path().join(name).display().to_string()
}

/// The lines of an output file, sorted.
fn lines(path: &str) -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_to_string(path)
        .expect("output file")
        .lines()
        .map(str::to_string)
        .collect();
    out.sort();
    out
}

/// Ages every copy of `hash` in `cluster` by `age`.
fn age(cluster: &Cluster, hash: &str, age: Duration) {
    for server in 0..cluster.keepstores.len() {
        cluster.age_block(server, hash, age);
    }
}

/// Each copy's mtime in `cluster`, by (hash, server).
fn mtimes(cluster: &Cluster) -> BTreeMap<(String, usize), i64> {
    let mut out = BTreeMap::new();
    for (server, keepstore) in cluster.keepstores.iter().enumerate() {
        for mount in &keepstore.mounts {
            for (hash, _, mtime) in mount.index("") {
                out.insert((hash.to_string(), server), mtime);
            }
        }
    }
    out
}

/// Shard 0 of 2 holds the hashes whose first hex digit is below 8.
fn in_first_half(hash: &str) -> bool {
    hash.as_bytes()[0] < b'8'
}

#[test]
fn mtime_selects_by_the_source_index_age() {
    let env = default_env();
    let hashes = fill(&env.src, 12, 1000);
    for hash in &hashes[..5] {
        age(&env.src, hash, Duration::from_secs(48 * 3600));
    }
    // Written more than a day ago: the five aged blocks only.
    let out = keepmover(&env, &["-mtime", "..24h"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    for (n, hash) in hashes.iter().enumerate() {
        assert_eq!(!holders(&env.dst, hash).is_empty(), n < 5, "block {n}");
    }
    // Written in the last hour: the rest. An RFC 3339 bound says the same as an age.
    let out = keepmover(&env, &["-mtime", "1h.."]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_placed(&env, &hashes, 2);
    let out = keepmover(
        &env,
        &["-mtime", "2000-01-01T00:00:00Z..2001-01-01T00:00:00Z"],
    );
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
}

#[test]
fn validate_checks_exactly_what_the_same_filters_copied() {
    let env = default_env();
    // Sizes 1000 + n.
    let hashes = fill(&env.src, 24, 1000);
    let locator = |n: usize| format!("{}+{}", hashes[n], 1000 + n);
    let out = keepmover(&env, &["-size", "1005..1009"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));

    // The same filter: everything it selects holds.
    let combined = path(&env, "size.combined");
    let out = sub(
        &env,
        "validate",
        &["src", "dst"],
        &["-size", "1005..1009", "-combined", &combined],
    );
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    let mut want: Vec<String> = (5..=9).map(|n| format!("= {}", locator(n))).collect();
    want.sort();
    assert_eq!(lines(&combined), want, "{err}");

    // Without it, the other nineteen are missing.
    let missing = path(&env, "all.missing");
    let out = sub(&env, "validate", &["src", "dst"], &["-missing", &missing]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let mut want: Vec<String> = (0..24)
        .filter(|n| !(5..=9).contains(n))
        .map(locator)
        .collect();
    want.sort();
    assert_eq!(lines(&missing), want);

    // A list: one copied block, one not (by hash alone).
    let list = path(&env, "list");
    std::fs::write(&list, format!("{}\n{}\n", locator(6), hashes[0])).expect("list");
    let missing = path(&env, "list.missing");
    let combined = path(&env, "list.combined");
    let out = sub(
        &env,
        "validate",
        &["src", "dst"],
        &[
            "-locators",
            &list,
            "-missing",
            &missing,
            "-combined",
            &combined,
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_eq!(lines(&missing), vec![locator(0)]);
    assert_eq!(lines(&combined).len(), 2);

    // -mtime: nothing on the source is a day old, so nothing is selected and all holds.
    let out = sub(&env, "validate", &["src", "dst"], &["-mtime", "..24h"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));

    // Shards: copy shard 0 of 2; validating shard 0 holds, shard 1 names its own blocks.
    let out = keepmover(&env, &["-shard", "0/2"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let out = sub(&env, "validate", &["src", "dst"], &["-shard", "0/2"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let missing = path(&env, "shard.missing");
    let out = sub(
        &env,
        "validate",
        &["src", "dst"],
        &["-shard", "1/2", "-missing", &missing],
    );
    let mut want: Vec<String> = (0..24)
        .filter(|&n| !in_first_half(&hashes[n]) && !(5..=9).contains(&n))
        .map(locator)
        .collect();
    want.sort();
    assert!(!want.is_empty(), "some blocks fall in shard 1");
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_eq!(lines(&missing), want);
    let json = path(&env, "shard.json");
    let out = sub(
        &env,
        "validate",
        &["src", "dst"],
        &["-shard", "1/2", "-size", "1005..", "-json", &json],
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).expect("json")).expect("parses");
    assert_eq!(doc["shard"], "1/2");
    assert!(
        doc["filters"].as_str().unwrap_or("").contains("1005"),
        "{doc}"
    );
}

#[test]
fn touch_renews_only_the_copies_the_filters_take() {
    let env = default_env();
    let hashes = fill(&env.src, 12, 1000);
    let out = keepmover(&env, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    for hash in &hashes[..4] {
        age(&env.dst, hash, Duration::from_secs(48 * 3600));
    }
    let before = mtimes(&env.dst);
    // Only copies written more than a day ago: the four aged blocks.
    let out = sub(&env, "touch", &["dst"], &["-all", "-mtime", "..24h"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    let after = mtimes(&env.dst);
    for ((hash, server), mtime) in &after {
        let aged = hashes[..4].contains(hash);
        let was = before[&(hash.clone(), *server)];
        assert_eq!(*mtime > was, aged, "{hash} on {server}: {err}");
    }
    // -size and -shard narrow -all; a list narrowed by -size leaves the others alone.
    std::thread::sleep(Duration::from_millis(20));
    let out = sub(
        &env,
        "touch",
        &["dst"],
        &["-all", "-size", "1008..", "-shard", "0/2"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let renewed = mtimes(&env.dst);
    for ((hash, server), mtime) in &renewed {
        let n = hashes.iter().position(|h| h == hash).expect("one of ours");
        let want = n >= 8 && in_first_half(hash);
        assert_eq!(*mtime > after[&(hash.clone(), *server)], want, "block {n}");
    }
    std::thread::sleep(Duration::from_millis(20));
    let list = path(&env, "list");
    std::fs::write(&list, format!("{}\n{}\n", hashes[1], hashes[10])).expect("list");
    let out = sub(
        &env,
        "touch",
        &["dst"],
        &["-locators", &list, "-size", "..1005"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let last = mtimes(&env.dst);
    for ((hash, server), mtime) in &last {
        let want = hash == &hashes[1];
        assert_eq!(*mtime > renewed[&(hash.clone(), *server)], want, "{hash}");
    }
}
