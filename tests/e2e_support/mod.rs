//! Shared set-up for end-to-end tests of the real `keepmover` binary against keepsim
//! clusters started in this process on loopback: start clusters, fill the source the way a
//! Keep client would (two replicas in rendezvous order), run the binary (to completion or
//! in the background), and look at what landed where.
#![allow(dead_code)]

use std::process::{Child, Command, Output, Stdio};

use keepsim::{Cluster, ClusterConfig};

pub struct Env {
    pub src: Cluster,
    pub dst: Cluster,
    pub dir: tempfile::TempDir,
}

pub fn start(src: ClusterConfig, dst: ClusterConfig) -> Env {
    let src = Cluster::start(src).expect("start src");
    let dst = Cluster::start(dst).expect("start dst");
    let dir = tempfile::tempdir().expect("tempdir");
    keepsim::write_cluster_files(dir.path(), &[&src, &dst]).expect("cluster files");
    Env { src, dst, dir }
}

pub fn default_env() -> Env {
    start(
        ClusterConfig::new("srcaa", 3),
        ClusterConfig::new("dstbb", 3),
    )
}

pub fn hash_of(data: &[u8]) -> String {
    keepmover::keep::BlockHash(keepmover::hash::md5(data)).to_string()
}

pub fn block(n: usize, size: usize) -> Vec<u8> {
    keepsim::pseudo_random_bytes(n as u64 + 7, size)
}

pub fn order(cluster: &Cluster, hash: &str) -> Vec<usize> {
    let uuids: Vec<String> = (0..cluster.keepstores.len())
        .map(|i| cluster.keepstore_uuid(i).to_string())
        .collect();
    let refs: Vec<&str> = uuids.iter().map(String::as_str).collect();
    keepmover::keep::rendezvous::probe_order_go(hash, &refs)
}

/// Puts `count` blocks of `size + n` bytes (seeded from `seed + n`) on the source, each on
/// its first two servers in rendezvous order. Returns their hashes.
pub fn fill_from(cluster: &Cluster, seed: usize, count: usize, size: usize) -> Vec<String> {
    let mut hashes = Vec::new();
    for n in seed..seed + count {
        let data = block(n, size + n);
        let hash = hash_of(&data);
        for &server in order(cluster, &hash).iter().take(2) {
            cluster.put_block(server, &data).expect("put");
        }
        hashes.push(hash);
    }
    hashes
}

pub fn fill(cluster: &Cluster, count: usize, size: usize) -> Vec<String> {
    fill_from(cluster, 0, count, size)
}

pub fn args(env: &Env, extra: &[&str]) -> Vec<String> {
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
    args
}

/// Runs keepmover to the end.
pub fn keepmover(env: &Env, extra: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_keepmover"))
        .args(args(env, extra))
        .output()
        .expect("run keepmover")
}

/// Starts keepmover in the background (stderr piped).
pub fn spawn(env: &Env, extra: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_keepmover"))
        .args(args(env, extra))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start keepmover")
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The destination servers holding `hash`.
pub fn holders(cluster: &Cluster, hash: &str) -> Vec<usize> {
    (0..cluster.keepstores.len())
        .filter(|&i| cluster.blocks_on(i).iter().any(|b| b.starts_with(hash)))
        .collect()
}

/// How many of `hashes` the destination holds at least once (one listing per server).
pub fn copied(env: &Env, hashes: &[String]) -> usize {
    let mut present = std::collections::HashSet::new();
    for server in 0..env.dst.keepstores.len() {
        for block in env.dst.blocks_on(server) {
            present.insert(block.get(..32).unwrap_or("").to_string());
        }
    }
    hashes
        .iter()
        .filter(|h| present.contains(h.as_str()))
        .count()
}

/// Every hash on its first `replicas` destination servers in rendezvous order, MD5 right.
pub fn assert_placed(env: &Env, hashes: &[String], replicas: usize) {
    for hash in hashes {
        let mut want: Vec<usize> = order(&env.dst, hash).into_iter().take(replicas).collect();
        want.sort_unstable();
        assert_eq!(holders(&env.dst, hash), want, "placement of {hash}");
        for &server in &want {
            let data = env.dst.get_block(server, hash).expect("stored");
            assert_eq!(&hash_of(&data), hash);
        }
    }
}

/// Sends a signal (`TERM`, `INT`, `KILL`, ...) to a child process, with kill(1).
pub fn signal(child: &Child, name: &str) {
    let status = Command::new("kill")
        .args([format!("-{name}"), child.id().to_string()])
        .status()
        .expect("kill(1) runs");
    assert!(status.success(), "kill -{name} failed");
}
