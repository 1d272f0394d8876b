//! End-to-end runs of the keep-rsync job: the real `keepmover` binary against simulated
//! clusters (keepsim, in this process, on real loopback sockets), checking what landed where.

use std::process::{Command, Output};

use keepsim::{Cluster, ClusterConfig, Faults};
use md5::{Digest, Md5};

struct Env {
    src: Cluster,
    dst: Cluster,
    dir: tempfile::TempDir,
}

fn start(src: ClusterConfig, dst: ClusterConfig) -> Env {
    let src = Cluster::start(src).expect("start src");
    let dst = Cluster::start(dst).expect("start dst");
    let dir = tempfile::tempdir().unwrap();
    keepsim::write_cluster_files(dir.path(), &[&src, &dst]).unwrap();
    Env { src, dst, dir }
}

fn default_env() -> Env {
    start(
        ClusterConfig::new("srcaa", 3),
        ClusterConfig::new("dstbb", 3),
    )
}

fn hash_of(data: &[u8]) -> String {
    Md5::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn block(n: usize, size: usize) -> Vec<u8> {
    keepsim::pseudo_random_bytes(n as u64 + 7, size)
}

fn uuids(cluster: &Cluster) -> Vec<String> {
    (0..cluster.keepstores.len())
        .map(|i| cluster.keepstore_uuid(i).to_string())
        .collect()
}

fn order(cluster: &Cluster, hash: &str) -> Vec<usize> {
    let list = uuids(cluster);
    let refs: Vec<&str> = list.iter().map(String::as_str).collect();
    keepmover::keep::rendezvous::probe_order_go(hash, &refs)
}

/// Puts `count` blocks on the source, each on its first two servers in rendezvous order.
fn fill(cluster: &Cluster, count: usize, size: usize) -> Vec<String> {
    let mut hashes = Vec::new();
    for n in 0..count {
        let data = block(n, size + n);
        let hash = hash_of(&data);
        for &server in order(cluster, &hash).iter().take(2) {
            cluster.put_block(server, &data).unwrap();
        }
        hashes.push(hash);
    }
    hashes
}

fn keepmover(env: &Env, extra: &[&str]) -> Output {
    let src = env.dir.path().join("srcaa.conf");
    let dst = env.dir.path().join("dstbb.conf");
    let mut args: Vec<String> = vec![
        "-src".into(),
        src.display().to_string(),
        "-dst".into(),
        dst.display().to_string(),
        "-progress".into(),
        "log".into(),
        "-retry-delay".into(),
        "20ms".into(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    Command::new(env!("CARGO_BIN_EXE_keepmover"))
        .args(&args)
        .output()
        .expect("run keepmover")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The destination servers holding `hash`.
fn holders(cluster: &Cluster, hash: &str) -> Vec<usize> {
    (0..cluster.keepstores.len())
        .filter(|&i| cluster.blocks_on(i).iter().any(|b| b.starts_with(hash)))
        .collect()
}

fn assert_placed(env: &Env, hashes: &[String], replicas: usize) {
    for hash in hashes {
        let mut want: Vec<usize> = order(&env.dst, hash).into_iter().take(replicas).collect();
        want.sort_unstable();
        assert_eq!(holders(&env.dst, hash), want, "placement of {hash}");
        for &server in &want {
            let data = env.dst.get_block(server, hash).unwrap();
            assert_eq!(&hash_of(&data), hash);
        }
    }
}

#[test]
fn copies_signed_blocks_over_discovery_then_second_run_copies_nothing() {
    let env = default_env();
    let hashes = fill(&env.src, 40, 3000);
    let out = keepmover(&env, &[]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(
        err.contains("Before keep-rsync, there are 40 blocks in src and 0 blocks in dst. Start copying 40 blocks from src not found in dst."),
        "{err}"
    );
    assert!(
        err.contains("Copying data block 1 of 40 (0.00% done): "),
        "{err}"
    );
    assert!(
        err.contains("Successfully copied to destination 40 blocks."),
        "{err}"
    );
    // Replication 2 comes from the destination's discovery document.
    assert_placed(&env, &hashes, 2);

    let again = keepmover(&env, &[]);
    let err = stderr(&again);
    assert_eq!(again.status.code(), Some(0), "{err}");
    assert!(
        err.contains("there are 40 blocks in src and 40 blocks in dst. Start copying 0 blocks"),
        "{err}"
    );
    assert!(!err.contains("Copying data block"), "{err}");
}

#[test]
fn keep_services_json_as_text_and_as_file_with_https_keepstores() {
    let mut src = ClusterConfig::new("srcaa", 2);
    src.tls = true;
    let mut dst = ClusterConfig::new("dstbb", 4);
    dst.tls = true;
    let env = start(src, dst);
    let hashes = fill(&env.src, 10, 70_000);
    let src_json = env.src.keep_services_json();
    let dst_file = env.dir.path().join("dstbb-keep-services.json");
    let out = keepmover(
        &env,
        &[
            "-src-keep-services-json",
            &src_json,
            "-dst-keep-services-json",
            dst_file.to_str().unwrap(),
            "-replications",
            "3",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_placed(&env, &hashes, 3);
}

#[test]
fn prefix_limits_the_copy() {
    let env = default_env();
    let hashes = fill(&env.src, 60, 100);
    let prefix = &hashes[0][..1];
    let out = keepmover(&env, &["-prefix", prefix, "-replications", "1"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    for hash in &hashes {
        let copied = !holders(&env.dst, hash).is_empty();
        assert_eq!(copied, hash.starts_with(prefix), "{hash}");
    }
}

#[test]
fn a_block_on_two_mounts_is_copied_once() {
    let mut src = ClusterConfig::new("srcaa", 1);
    src.mounts_per_keepstore = 2;
    let env = start(src, ClusterConfig::new("dstbb", 2));
    let data = block(1, 5000);
    env.src.put_block_on_mount(0, 0, &data).unwrap();
    env.src.put_block_on_mount(0, 1, &data).unwrap();
    assert_eq!(env.src.blocks_on(0).len(), 2, "listed twice by the index");
    let out = keepmover(&env, &["-replications", "1"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("there are 1 blocks in src"), "{err}");
    assert!(
        err.contains("Successfully copied to destination 1 blocks."),
        "{err}"
    );
}

#[test]
fn a_down_destination_server_passes_its_replica_to_the_next_in_order() {
    let env = default_env();
    let hashes = fill(&env.src, 12, 2000);
    // Take down the first-choice server of the first block.
    let down = order(&env.dst, &hashes[0])[0];
    env.dst.set_faults(
        down,
        Faults {
            down: true,
            ..Faults::default()
        },
    );
    // keep-rsync's rule: an unreadable destination index stops the run, naming the server.
    let json = env.dir.path().join("refused.json");
    let json_arg = json.to_str().expect("utf-8");
    let refused = keepmover(
        &env,
        &["-replications", "2", "-retries", "1", "-json", json_arg],
    );
    let err = stderr(&refused);
    assert_eq!(refused.status.code(), Some(1), "{err}");
    // Regression: a run that ended in an error wrote no -json summary at all.
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&json).expect("a -json summary")).expect("JSON");
    assert_eq!(summary["outcome"], "error", "{summary}");
    assert_eq!(summary["exit_code"], 1, "{summary}");
    assert!(
        summary["extra"]["error"]
            .as_str()
            .is_some_and(|e| e.contains(&env.dst.keepstore_url(down))),
        "{summary}"
    );
    let down_url = env.dst.keepstore_url(down);
    assert!(
        err.contains("Error while syncing data: ") && err.contains(&down_url),
        "{err}"
    );
    assert!(!err.contains("Copying data block"), "{err}");
    // Accepting re-copies, the run goes on around the down server.
    let out = keepmover(
        &env,
        &[
            "-replications",
            "2",
            "-retries",
            "1",
            "-dst-index-errors",
            "copy",
        ],
    );
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(
        err.contains("treating that server's index as empty"),
        "{err}"
    );
    for hash in &hashes {
        let mut want: Vec<usize> = order(&env.dst, hash)
            .into_iter()
            .filter(|&s| s != down)
            .take(2)
            .collect();
        want.sort_unstable();
        assert_eq!(holders(&env.dst, hash), want, "{hash}");
    }
}

#[test]
fn a_corrupt_source_replica_is_fetched_again_from_another_holder() {
    let env = default_env();
    let hashes = fill(&env.src, 1, 4096);
    let hash = &hashes[0];
    // keepmover starts at holder (last hash byte mod holders); corrupt exactly that one.
    let mut src_holders: Vec<usize> = order(&env.src, hash).into_iter().take(2).collect();
    src_holders.sort_unstable();
    let last_byte = u8::from_str_radix(&hash[30..32], 16).unwrap() as usize;
    let first_tried = src_holders[last_byte % src_holders.len()];
    assert!(env.src.corrupt_block(first_tried, hash));
    let out = keepmover(&env, &["-replications", "1"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("re-fetched 1 after bad replicas"), "{err}");
    assert_placed(&env, &hashes, 1);
}

#[test]
fn an_incomplete_index_fails_the_run() {
    let env = default_env();
    fill(&env.src, 5, 100);
    env.src.set_faults(
        1,
        Faults {
            truncate_index: true,
            ..Faults::default()
        },
    );
    let out = keepmover(&env, &[]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("Error while syncing data: "), "{err}");
    assert!(
        err.contains("src index") || err.contains("incomplete index"),
        "{err}"
    );
}

#[test]
fn a_full_destination_fails_blocks_without_losing_any() {
    let env = default_env();
    let hashes = fill(&env.src, 6, 10_000);
    for server in 0..3 {
        env.dst.set_capacity(server, Some(15_000));
    }
    let out = keepmover(&env, &["-replications", "1", "-retries", "0"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("insufficient storage"), "{err}");
    assert!(err.contains("could not be copied"), "{err}");
    // What did land is intact; the source still has everything.
    for hash in &hashes {
        for server in holders(&env.dst, hash) {
            assert_eq!(&hash_of(&env.dst.get_block(server, hash).unwrap()), hash);
        }
        assert!(!holders(&env.src, hash).is_empty());
    }
}

#[test]
fn without_the_signing_key_an_enforcing_source_refuses_every_block() {
    let env = default_env();
    fill(&env.src, 3, 100);
    let conf = env.dir.path().join("srcaa.conf");
    let text = std::fs::read_to_string(&conf).unwrap();
    let stripped: String = text
        .lines()
        .filter(|l| !l.starts_with("ARVADOS_BLOB_SIGNING_KEY"))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&conf, stripped).unwrap();
    let out = keepmover(&env, &["-replications", "1"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("400 invalid signature"), "{err}");
    assert!(
        !err.contains(&env.src.config.system_root_token),
        "token leaked: {err}"
    );
}

#[test]
fn checkpoint_records_progress_and_resume_skips_done_prefixes() {
    let env = default_env();
    let hashes = fill(&env.src, 30, 200);
    let checkpoint = env.dir.path().join("run.ckpt");
    let out = keepmover(
        &env,
        &[
            "-replications",
            "1",
            "-prefix-length",
            "1",
            "-checkpoint",
            checkpoint.to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let state = keepmover::mover::checkpoint::parse(&std::fs::read_to_string(&checkpoint).unwrap())
        .unwrap();
    assert_eq!(state.done_through.as_deref(), Some("f"));
    // A block that appears later is not looked at by a resumed run: every prefix is done.
    let late = block(999, 300);
    env.src.put_block(0, &late).unwrap();
    let out = keepmover(
        &env,
        &[
            "-replications",
            "1",
            "-prefix-length",
            "1",
            "-checkpoint",
            checkpoint.to_str().unwrap(),
        ],
    );
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("there are 0 blocks in src"), "{err}");
    assert_placed(&env, &hashes, 1);
}

#[test]
fn epoll_backend_copies_the_same() {
    let env = default_env();
    let hashes = fill(&env.src, 20, 50_000);
    let out = keepmover(&env, &["-io", "epoll"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("(io: epoll)"), "{err}");
    assert_placed(&env, &hashes, 2);
}

#[test]
fn totals_are_estimated_from_the_first_slice_unless_counted_first() {
    let env = default_env();
    let hashes = fill(&env.src, 25, 900);
    // -skip-count is accepted (and does nothing): estimation is the default.
    let out = keepmover(&env, &["-skip-count", "-prefix-length", "1"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(
        err.contains("These totals are estimated from the first 1 of 16 index slices"),
        "{err}"
    );
    assert!(
        err.contains("Exact totals: 25 blocks in src and 0 blocks in dst; 25 blocks"),
        "{err}"
    );
    assert!(
        err.contains("Successfully copied to destination 25 blocks."),
        "{err}"
    );
    assert_placed(&env, &hashes, 2);
    // -count-first walks the indexes first: exact totals in keep-rsync's first line.
    let env = default_env();
    fill(&env.src, 25, 900);
    let out = keepmover(&env, &["-count-first", "-prefix-length", "1"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(
        err.contains("there are 25 blocks in src and 0 blocks in dst. Start copying 25 blocks"),
        "{err}"
    );
    assert!(!err.contains("estimated"), "{err}");
}
