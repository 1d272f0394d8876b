//! `keepmover validate`, `keepmover preflight` and `keepmover touch`: the real binary against
//! simulated clusters (keepsim, in this process, on loopback), after a real copy.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::process::{Command, Output, Stdio};

use keepsim::{Cluster, ClusterConfig};
use md5::{Digest, Md5};

struct Env {
    src: Cluster,
    dst: Cluster,
    dir: tempfile::TempDir,
}

fn start(src: ClusterConfig, dst: ClusterConfig) -> Env {
    let src = Cluster::start(src).expect("start src");
    let dst = Cluster::start(dst).expect("start dst");
    let dir = tempfile::tempdir().expect("tempdir");
    keepsim::write_cluster_files(dir.path(), &[&src, &dst]).expect("cluster files");
    Env { src, dst, dir }
}

fn default_env() -> Env {
    start(
        ClusterConfig::new("srcaa", 3),
        ClusterConfig::new("dstbb", 4),
    )
}

fn hash_of(data: &[u8]) -> String {
    Md5::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn block(n: usize, size: usize) -> Vec<u8> {
    keepsim::pseudo_random_bytes(n as u64 + 1000, size)
}

fn order(cluster: &Cluster, hash: &str) -> Vec<usize> {
    let uuids: Vec<String> = (0..cluster.keepstores.len())
        .map(|i| cluster.keepstore_uuid(i).to_string())
        .collect();
    let refs: Vec<&str> = uuids.iter().map(String::as_str).collect();
    keepmover::keep::rendezvous::probe_order_go(hash, &refs)
}

/// `count` blocks on the source, each on its first two servers; returns `hash+size`.
fn fill(env: &Env, count: usize) -> Vec<String> {
    (0..count)
        .map(|n| {
            let data = block(n, 2000 + 37 * n);
            let hash = hash_of(&data);
            for &server in order(&env.src, &hash).iter().take(2) {
                env.src.put_block(server, &data).expect("put");
            }
            format!("{hash}+{}", data.len())
        })
        .collect()
}

fn conf(env: &Env, id: &str) -> String {
    env.dir
        .path()
        .join(format!("{id}.conf"))
        .display()
        .to_string()
}

fn keepmover(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_keepmover"))
        .args(args)
        .output()
        .expect("run keepmover")
}

fn copy(env: &Env) {
    let out = keepmover(&[
        "-src",
        &conf(env, "srcaa"),
        "-dst",
        &conf(env, "dstbb"),
        "-replications",
        "2",
        "-progress",
        "log",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

fn validate(env: &Env, extra: &[&str]) -> Output {
    let src = conf(env, "srcaa");
    let dst = conf(env, "dstbb");
    let mut args = vec![
        "validate",
        "-src",
        &src,
        "-dst",
        &dst,
        "-replications",
        "2",
        "-retry-delay",
        "20ms",
    ];
    args.extend_from_slice(extra);
    keepmover(&args)
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn path(env: &Env, name: &str) -> String {
    env.dir.path().join(name).display().to_string()
}

fn read(env: &Env, name: &str) -> String {
    std::fs::read_to_string(env.dir.path().join(name)).expect("output file")
}

/// `-combined` as locator → status letter.
fn combined(env: &Env, name: &str) -> BTreeMap<String, char> {
    read(env, name)
        .lines()
        .map(|l| {
            let (status, locator) = l.split_once(' ').expect("`<status> hash+size`");
            (locator.to_string(), status.chars().next().unwrap_or('?'))
        })
        .collect()
}

fn remove(cluster: &Cluster, server: usize, hash: &str) {
    let hash = keepsim::keep::locator::BlockHash::from_hex(hash).expect("hash");
    for mount in &cluster.keepstores[server].mounts {
        mount.remove(&hash);
    }
}

#[test]
fn a_perfect_copy_validates_and_validation_never_writes() {
    let env = default_env();
    let blocks = fill(&env, 30);
    copy(&env);
    let (src_writes, dst_writes) = (env.src.writes(), env.dst.writes());
    let combined_path = path(&env, "combined");
    let json = path(&env, "summary.json");
    let out = validate(&env, &["-combined", &combined_path, "-json", &json]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(
        err.contains("Validation passed: all 30 source blocks"),
        "{err}"
    );
    let statuses = combined(&env, "combined");
    assert_eq!(statuses.len(), 30);
    assert!(statuses.values().all(|&c| c == '='), "{statuses:?}");
    for b in &blocks {
        assert_eq!(statuses.get(b), Some(&'='), "{b}");
    }
    let summary: serde_json::Value =
        serde_json::from_str(&read(&env, "summary.json")).expect("json");
    assert_eq!(summary["exit_code"], 0);
    assert_eq!(summary["totals"]["src_blocks"], 30);
    assert_eq!(summary["findings"]["missing"], 0);
    // keepsim exports Collections.BlobSigningTTL: the window is worked out from it.
    assert_eq!(
        summary["garbage_collection"]["blob_signing_ttl_s"],
        1_209_600
    );
    let deep = validate(&env, &["-deep"]);
    let err = stderr(&deep);
    assert_eq!(deep.status.code(), Some(0), "{err}");
    assert!(err.contains("re-read 60 copies of 30 blocks"), "{err}");
    assert!(
        err.contains("every copy read back with the right MD5"),
        "{err}"
    );
    assert_eq!(env.src.writes(), src_writes, "validate wrote to the source");
    assert_eq!(
        env.dst.writes(),
        dst_writes,
        "validate wrote to the destination"
    );
    assert!(
        !err.contains(&env.dst.config.system_root_token),
        "token leaked"
    );
    assert!(
        !err.contains(&env.dst.config.blob_signing_key),
        "key leaked"
    );
}

#[test]
fn a_deleted_a_corrupt_and_a_misplaced_replica_are_named_with_their_kinds() {
    let env = default_env();
    let blocks = fill(&env, 24);
    copy(&env);
    let hash = |b: &String| b[..32].to_string();
    let (short, corrupt, misplaced) = (&blocks[3], &blocks[11], &blocks[17]);
    // One replica deleted.
    let o = order(&env.dst, &hash(short));
    remove(&env.dst, o[1], &hash(short));
    // One replica corrupted in place.
    let o = order(&env.dst, &hash(corrupt));
    assert!(env.dst.corrupt_block(o[0], &hash(corrupt)));
    // One moved: a copy on the third server in rendezvous order, none on the first.
    let o = order(&env.dst, &hash(misplaced));
    let data = env.dst.get_block(o[0], &hash(misplaced)).expect("copied");
    env.dst.put_block(o[2], &data).expect("put");
    remove(&env.dst, o[0], &hash(misplaced));
    let dst_writes = env.dst.writes();

    let files = |tag: &str| {
        ["missing", "differ", "error", "combined", "report", "json"]
            .iter()
            .map(|n| path(&env, &format!("{tag}-{n}")))
            .collect::<Vec<_>>()
    };
    let f = files("index");
    let out = validate(
        &env,
        &[
            "-missing",
            &f[0],
            "-differ",
            &f[1],
            "-error",
            &f[2],
            "-combined",
            &f[3],
            "-report",
            &f[4],
            "-json",
            &f[5],
        ],
    );
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let statuses = combined(&env, "index-combined");
    let problems: BTreeMap<&String, &char> = statuses.iter().filter(|(_, c)| **c != '=').collect();
    assert_eq!(
        problems,
        BTreeMap::from([(short, &'<'), (misplaced, &'~')]),
        "without -deep the corrupt copy is invisible: {err}"
    );
    assert_eq!(statuses.len(), 24);
    assert!(
        err.contains(&format!("{short}: under-replicated: 1 of 2 replicas")),
        "{err}"
    );
    assert!(
        err.contains(&format!("{misplaced}: misplaced: on [")),
        "{err}"
    );
    assert_eq!(read(&env, "index-missing"), "");
    assert_eq!(read(&env, "index-differ"), "");
    // -report: one line per block, with the right action.
    let report: Vec<serde_json::Value> = read(&env, "index-report")
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    assert_eq!(report.len(), 24);
    let action = |b: &String| {
        report
            .iter()
            .find(|l| l["locator"] == b.as_str())
            .map(|l| l["action"].as_str().unwrap_or("").to_string())
    };
    assert_eq!(action(short).as_deref(), Some("under_replicated"));
    assert_eq!(action(misplaced).as_deref(), Some("misplaced"));
    assert_eq!(action(corrupt).as_deref(), Some("checked"));
    assert_eq!(action(&blocks[0]).as_deref(), Some("checked"));
    let summary: serde_json::Value = serde_json::from_str(&read(&env, "index-json")).expect("json");
    assert_eq!(summary["findings"]["under_replicated"], 1);
    assert_eq!(summary["findings"]["misplaced"], 1);
    assert_eq!(summary["findings"]["corrupt"], 0);
    assert_eq!(summary["exit_code"], 1);

    let f = files("deep");
    let out = validate(
        &env,
        &[
            "-deep",
            "-differ",
            &f[1],
            "-combined",
            &f[3],
            "-report",
            &f[4],
        ],
    );
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let statuses = combined(&env, "deep-combined");
    let problems: BTreeMap<&String, &char> = statuses.iter().filter(|(_, c)| **c != '=').collect();
    assert_eq!(
        problems,
        BTreeMap::from([(short, &'<'), (corrupt, &'*'), (misplaced, &'~')]),
        "{err}"
    );
    assert_eq!(read(&env, "deep-differ"), format!("{corrupt}\n"));
    assert!(
        err.contains(&format!("{corrupt}: corrupt copy on ")),
        "{err}"
    );
    let report: Vec<serde_json::Value> = read(&env, "deep-report")
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    let corrupt_line = report
        .iter()
        .find(|l| l["locator"] == corrupt.as_str())
        .expect("line");
    assert_eq!(corrupt_line["action"], "corrupt");
    assert_eq!(corrupt_line["findings"][0]["kind"], "corrupt");
    let good_line = report
        .iter()
        .find(|l| l["locator"] == blocks[0].as_str())
        .expect("line");
    assert_eq!(good_line["action"], "verified");
    assert_eq!(env.dst.writes(), dst_writes, "validate wrote");
}

#[test]
fn the_same_seed_samples_the_same_blocks() {
    let env = default_env();
    fill(&env, 60);
    copy(&env);
    let sampled = |seed: &str, name: &str| -> Vec<String> {
        let report = path(&env, name);
        let out = validate(&env, &["-sample", "25%", "-seed", seed, "-report", &report]);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        let mut picked: Vec<String> = read(&env, name)
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("json"))
            .filter(|l| l["action"] == "verified")
            .map(|l| l["locator"].as_str().unwrap_or("").to_string())
            .collect();
        picked.sort();
        picked
    };
    let first = sampled("7", "a.jsonl");
    assert!(
        (5..=25).contains(&first.len()),
        "about a quarter of 60: {}",
        first.len()
    );
    assert_eq!(sampled("7", "b.jsonl"), first, "same seed, same blocks");
    assert_ne!(
        sampled("8", "c.jsonl"),
        first,
        "another seed, another sample"
    );
}

#[test]
fn preflight_catches_a_wrong_key_a_read_only_destination_and_a_self_copy() {
    let env = default_env();
    fill(&env, 20);
    let (src, dst) = (conf(&env, "srcaa"), conf(&env, "dstbb"));
    let ok = keepmover(&["preflight", "-src", &src, "-dst", &dst]);
    let err = stderr(&ok);
    assert_eq!(ok.status.code(), Some(0), "{err}");
    assert!(err.contains("the signing key works"), "{err}");
    assert!(
        err.contains("336h0m0s, Collections.BlobSigningTTL in the destination's exported config"),
        "{err}"
    );
    assert!(err.contains("Collections.BalanceTrashLimit"), "{err}");

    // A wrong signing key: keepstore's 400 invalid signature.
    let good = std::fs::read_to_string(&src).expect("settings");
    let wrong: String = good
        .lines()
        .map(|l| {
            if l.starts_with("ARVADOS_BLOB_SIGNING_KEY=") {
                "ARVADOS_BLOB_SIGNING_KEY=not-the-key\n".to_string()
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    std::fs::write(&src, &wrong).expect("write");
    let out = keepmover(&["preflight", "-src", &src, "-dst", &dst]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("400 invalid signature"), "{err}");
    assert!(!err.contains("not-the-key"), "key leaked: {err}");
    // ... and the copy refuses to start, unless told to skip the checks.
    let out = keepmover(&["-src", &src, "-dst", &dst, "-progress", "log"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("refusing to start"), "{err}");
    assert!(!err.contains("Copying data block"), "{err}");
    let out = keepmover(&[
        "-src",
        &src,
        "-dst",
        &dst,
        "-progress",
        "log",
        "-preflight=false",
        "-retries",
        "0",
    ]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        !err.contains("preflight"),
        "-preflight=false runs no checks: {err}"
    );
    assert!(err.contains("Copying data block"), "{err}");
    std::fs::write(&src, &good).expect("write");

    // A read-only destination.
    for server in 0..env.dst.keepstores.len() {
        env.dst.set_read_only(server, true);
    }
    let out = keepmover(&["preflight", "-src", &src, "-dst", &dst]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("2 replicas wanted, but the destination's writable servers can take only 0"),
        "{err}"
    );
    assert!(err.contains("accepts no writes"), "{err}");
    for server in 0..env.dst.keepstores.len() {
        env.dst.set_read_only(server, false);
    }

    // A copy, a validation or a preflight of a cluster onto itself.
    for command in [vec!["preflight"], vec!["validate"], vec![]] {
        let mut args = command.clone();
        args.extend(["-src", &src, "-dst", &src]);
        let out = keepmover(&args);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{command:?}: {err}");
        assert!(err.contains("same cluster"), "{command:?}: {err}");
    }
    // The same servers under another API host (a services JSON naming the source's).
    let services = env.src.keep_services_json();
    let out = keepmover(&[
        "validate",
        "-src",
        &src,
        "-dst",
        &dst,
        "-dst-keep-services-json",
        &services,
    ]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("same cluster"), "{err}");
}

/// Each copy's (server, mtime) on the destination, by hash.
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

#[test]
fn touch_renews_the_mtimes_the_index_shows() {
    let env = default_env();
    let blocks = fill(&env, 6);
    copy(&env);
    let before = mtimes(&env.dst);
    std::thread::sleep(std::time::Duration::from_millis(20));
    let dst = conf(&env, "dstbb");
    // Two listed blocks: one by hash, one by hash+size.
    let list = path(&env, "locators.txt");
    std::fs::write(&list, format!("{}\n\n{}\n", &blocks[0][..32], blocks[1])).expect("list");
    let report = path(&env, "touch.jsonl");
    let out = keepmover(&[
        "touch",
        "-dst",
        &dst,
        "-locators",
        &list,
        "-report",
        &report,
    ]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(
        err.contains("touched 4 copies of 2 blocks, 0 failed"),
        "{err}"
    );
    let after = mtimes(&env.dst);
    assert_eq!(before.len(), after.len());
    for ((hash, server), mtime) in &after {
        let was = before[&(hash.clone(), *server)];
        let listed = blocks[..2].iter().any(|b| b.starts_with(hash.as_str()));
        if listed {
            assert!(*mtime > was, "{hash} on {server} not renewed");
        } else {
            assert_eq!(*mtime, was, "{hash} on {server} touched");
        }
    }
    assert_eq!(read(&env, "touch.jsonl").lines().count(), 4);

    // From standard input, by prefix of a third block; and a malformed line names the line.
    let mut child = Command::new(env!("CARGO_BIN_EXE_keepmover"))
        .args(["touch", "-dst", &dst, "-locators", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(format!("{}\nnot a locator\n", blocks[2]).as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("wait");
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("standard input line 2: \"not a locator\" is not a block hash or hash+size"),
        "{err}"
    );
    assert_eq!(mtimes(&env.dst), after, "a bad list touches nothing");

    let prefix = &blocks[2][..2];
    let out = keepmover(&["touch", "-dst", &dst, "-prefix", prefix]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    let renewed = mtimes(&env.dst);
    for ((hash, server), mtime) in &renewed {
        let was = after[&(hash.clone(), *server)];
        assert_eq!(*mtime > was, hash.starts_with(prefix), "{hash} on {server}");
    }
    // A block no server has: reported, exit 1.
    std::fs::write(&list, format!("{}\n", "0".repeat(32))).expect("list");
    let out = keepmover(&["touch", "-dst", &dst, "-locators", &list]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("no destination server lists it"), "{err}");
}
