//! The fault soak (issue 9, item 8): the real binary copies a few thousand blocks between
//! keepsim clusters while the faults of issue 9 strike at once (503 storms, expired
//! signatures, 500s, resets, mid-body stalls with the connection kept open, trickles below
//! `-min-rate`, corrupt bodies, a destination lying in `X-Keep-Replicas-Stored`, a full
//! and a read-only destination, a source and a destination keepstore restarted mid-run),
//! spread so that every block keeps at least one healthy path. It checks the promises of
//! the README's "What keepmover promises" against keepsim's own view of what is stored:
//!
//! * the run ends within the README's time bound, computed from the flags passed (and, for
//!   CI, well within a fixed budget: a hang fails the test instead of stalling CI);
//! * every block is either on the destination, bytes equal to the source's (so its MD5 is
//!   the locator's) on as many keepstores as wanted, or listed as failed in the `-report`
//!   file and the `-json` summary, and no block is counted copied where it is not held;
//! * the exit code tells the truth: 1 while blocks whose only source copy is rotten cannot
//!   be copied, 0 on the rerun once a good copy is back.
//!
//! Left out: the faults that make an index unreadable for good (`down`, `truncate_index`,
//! endless trailers, which keepsim also sends on index listings): an unreadable source
//! index ends a run by design, and other tests cover each. keepsim's `store_nothing` lie
//! cannot be told from a true write without reading back (`keepmover validate`), so the soak lies
//! with `extra` only.
//!
//! One soak per I/O backend (`-io uring`, `-io epoll`). Focused tests check the promise
//! that a holder which stalled or trickled is tried last for the rest of that block.

mod e2e_support;

use std::collections::{HashMap, HashSet};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use e2e_support::{hash_of, order, Env};
use keepsim::{Cluster, ClusterConfig, Faults, LieReplicas};

/// Source keepstores (every block on the first two in rendezvous order, as a Keep client
/// writes it) and destination keepstores.
const SRC_KEEPSTORES: usize = 5;
const DST_KEEPSTORES: usize = 5;
const REPLICAS: usize = 2;
/// Blocks of 200 B to 16 KiB, with every 40th one between 64 KiB and 256 KiB.
const SMALL_BLOCKS: usize = 2400;
/// Blocks of 1.5 MiB to 2.5 MiB.
const LARGE_BLOCKS: usize = 4;
/// Blocks whose only source copy is rotten: they cannot be copied until it is restored.
const ORPHANS: usize = 24;

/// What the soak tells keepmover, and what the time bound is computed from.
#[derive(Clone, Copy, Debug)]
struct Timing {
    connect: Duration,
    first_byte: Duration,
    idle: Duration,
    /// `-min-rate`, bytes/s.
    min_rate: u64,
    retries: u32,
    retry_delay: Duration,
    grace: Duration,
    workers: usize,
    concurrency: usize,
}

const SOAK: Timing = Timing {
    connect: Duration::from_secs(2),
    first_byte: Duration::from_secs(3),
    idle: Duration::from_secs(1),
    min_rate: 256 << 10,
    retries: 3,
    retry_delay: Duration::from_millis(200),
    grace: Duration::from_secs(5),
    workers: 1,
    concurrency: 32,
};

/// How long a restarted keepstore is down. An index read that meets it is read again in
/// keepclient's rounds (`-retries` 3 after delays under 200, 400 and 800 ms): a restart
/// this short is almost always outlasted; a longer one may end the run, as documented.
const RESTART_PAUSE_MS: u64 = 100;

/// How long CI gives one run before calling it a hang (the README bound is far looser).
const CI_BUDGET: Duration = Duration::from_secs(120);

/// Requeue rounds after a block's first try (the engine's `MAX_REQUEUES`: "at most two
/// requeue rounds of the same").
const REQUEUES: u32 = 2;

impl Timing {
    fn flags(&self) -> Vec<String> {
        let ms = |d: Duration| format!("{}ms", d.as_millis());
        [
            ("-connect-timeout", ms(self.connect)),
            ("-first-byte-timeout", ms(self.first_byte)),
            ("-idle-timeout", ms(self.idle)),
            ("-min-rate", self.min_rate.to_string()),
            ("-retries", self.retries.to_string()),
            ("-retry-delay", ms(self.retry_delay)),
            ("-grace", ms(self.grace)),
            ("-workers", self.workers.to_string()),
            ("-concurrency", self.concurrency.to_string()),
        ]
        .into_iter()
        .flat_map(|(f, v)| [f.to_string(), v])
        .collect()
    }

    /// One request moving `size` body bytes, by the README: a connect within
    /// `-connect-timeout`, a response head within `-first-byte-timeout`, and a body (sent or
    /// received) done within `-idle-timeout` plus its size at `-min-rate`.
    fn request(&self, size: u64) -> Duration {
        self.connect
            + self.first_byte
            + self.idle
            + Duration::from_secs_f64(size as f64 / self.min_rate as f64)
    }

    /// One block, by the README: `(1 + -retries)` rounds over its servers (the GET's over
    /// the source servers, one more GET for a re-signed expired signature, then the PUT's
    /// over the writable destination servers), each request bounded as above, plus
    /// keepclient's delays between rounds (under 10 × `-retry-delay` each, for the GET and
    /// for the PUT), and then at most two requeue rounds of the same.
    fn block(&self, size: u64, src: usize, dst: usize) -> Duration {
        let rounds = 1 + self.retries;
        let requests = rounds * (src + dst) as u32 + 1;
        let delays = 2 * self.retries * 10;
        (self.request(size) * requests + self.retry_delay * delays) * (1 + REQUEUES)
    }

    /// A run: the walk (each slice lists every mount of both clusters at once, so a slice
    /// takes one listing request, read again in keepclient's rounds when it fails
    /// transiently; plus discovery and `/mounts` before it), then the bound per block
    /// divided by the blocks in flight (`-workers` × `-concurrency`).
    fn run(&self, sizes: &[u64], src: usize, dst: usize, slices: u32, listing: u64) -> Duration {
        let setup = self.request(64 << 10) * 4;
        let listing_rounds =
            self.request(listing) * (1 + self.retries) + self.retry_delay * (10 * self.retries);
        let walk = listing_rounds * slices;
        let blocks: Duration = sizes.iter().map(|&s| self.block(s, src, dst)).sum();
        setup + walk + blocks / (self.workers * self.concurrency) as u32
    }
}

/// One source block and where it was put.
struct Block {
    hash: String,
    data: Bytes,
}

fn pseudo_block(seed: u64, size: usize) -> Bytes {
    Bytes::from(keepsim::pseudo_random_bytes(seed, size))
}

/// Stores `data` on source keepstore `server` without hashing it again.
fn put(cluster: &Cluster, server: usize, block: &Block) {
    let hash = keepsim::keep::BlockHash::from_hex(&block.hash).expect("hash");
    cluster.keepstores[server]
        .store(hash, block.data.clone(), None)
        .expect("stored on the source");
}

fn soak_sizes() -> Vec<usize> {
    let mut sizes: Vec<usize> = (0..SMALL_BLOCKS)
        .map(|n| {
            if n % 40 == 39 {
                (64 << 10) + (n * 7919) % (192 << 10)
            } else {
                200 + (n * 104_729) % (16 << 10)
            }
        })
        .collect();
    sizes.extend((0..LARGE_BLOCKS).map(|n| (3 << 19) + n * (1 << 18)));
    sizes
}

/// A soak's clusters, blocks, and the flags every run of it gets.
struct Soak {
    env: Env,
    /// Blocks with two healthy-enough source holders.
    good: Vec<Block>,
    /// Blocks on one source keepstore only, whose copy there is rotten.
    orphans: Vec<Block>,
    io: &'static str,
}

impl Soak {
    fn start(io: &'static str) -> Soak {
        let mut dst = ClusterConfig::new("dstbb", DST_KEEPSTORES);
        dst.default_replication = REPLICAS as u32;
        let env = e2e_support::start(ClusterConfig::new("srcaa", SRC_KEEPSTORES), dst);
        let seed = if io == "uring" { 1_000_000 } else { 2_000_000 };
        let good: Vec<Block> = soak_sizes()
            .into_iter()
            .enumerate()
            .map(|(n, size)| {
                let data = pseudo_block(seed + n as u64, size);
                Block {
                    hash: hash_of(&data),
                    data,
                }
            })
            .collect();
        for block in &good {
            for &server in order(&env.src, &block.hash).iter().take(REPLICAS) {
                put(&env.src, server, block);
            }
        }
        let orphans: Vec<Block> = (0..ORPHANS)
            .map(|n| {
                let data = pseudo_block(seed + 500_000 + n as u64, 3000 + n * 100);
                Block {
                    hash: hash_of(&data),
                    data,
                }
            })
            .collect();
        for block in &orphans {
            let only = order(&env.src, &block.hash)[0];
            put(&env.src, only, block);
            assert!(env.src.corrupt_block(only, &block.hash), "rotten copy");
        }
        Soak {
            env,
            good,
            orphans,
            io,
        }
    }

    /// Every fault at once, spread so that each block keeps a healthy path: each source
    /// keepstore misbehaves in its own way on a share of its reads (a block's two holders
    /// rarely fail it together, and retries and requeues try again), and two of the five
    /// destination keepstores take no writes (one fills up during the run, one is
    /// read-only), leaving three writable for two replicas.
    fn set_faults(&self) {
        let src = &self.env.src;
        let sometimes = |p: f64| Some(p);
        // A 503 storm and expired signatures.
        src.set_faults(
            0,
            Faults {
                error_503: 0.3,
                expired_401: 0.1,
                ..Faults::default()
            },
        );
        // Mid-body stalls with the connection kept open.
        src.set_faults(
            1,
            Faults {
                stall_mid_body: true,
                body_fault_probability: sometimes(0.04),
                ..Faults::default()
            },
        );
        // Corrupt bodies (right status and length, one byte flipped).
        src.set_faults(
            2,
            Faults {
                corrupt_body: true,
                body_fault_probability: sometimes(0.05),
                error_500: 0.05,
                ..Faults::default()
            },
        );
        // Connection resets halfway through a body, and closes.
        src.set_faults(
            3,
            Faults {
                reset: true,
                body_fault_probability: sometimes(0.05),
                ..Faults::default()
            },
        );
        // Trickles, far below -min-rate (this keepstore is also restarted mid-run).
        src.set_faults(
            4,
            Faults {
                trickle_bytes_per_sec: 16 << 10,
                body_fault_probability: sometimes(0.05),
                ..Faults::default()
            },
        );
        let dst = &self.env.dst;
        // Full: its mount fills up about a third of the way through the run (507 after).
        let per_keepstore: usize =
            self.all().map(|b| b.data.len()).sum::<usize>() * REPLICAS / DST_KEEPSTORES;
        dst.set_capacity(0, Some(per_keepstore as u64 / 3));
        // Read-only mount (507).
        dst.set_read_only(1, true);
        // Lies about X-Keep-Replicas-Stored, and a 503 storm.
        dst.set_faults(
            2,
            Faults {
                lie_replicas: LieReplicas::Extra,
                error_503: 0.2,
                ..Faults::default()
            },
        );
        // 503s (and a restart mid-run).
        dst.set_faults(
            3,
            Faults {
                error_503: 0.1,
                ..Faults::default()
            },
        );
    }

    fn all(&self) -> impl Iterator<Item = &Block> {
        self.good.iter().chain(&self.orphans)
    }

    fn args(&self, report: &str, json: &str) -> Vec<String> {
        let conf = |id: &str| self.env.dir.path().join(format!("{id}.conf"));
        let mut args: Vec<String> = vec![
            "-src".into(),
            conf("srcaa").display().to_string(),
            "-dst".into(),
            conf("dstbb").display().to_string(),
            "-replications".into(),
            REPLICAS.to_string(),
            "-progress".into(),
            "log".into(),
            "-io".into(),
            self.io.into(),
            "-prefix-length".into(),
            "2".into(),
            "-memory".into(),
            "128MiB".into(),
            "-report".into(),
            report.into(),
            "-json".into(),
            json.into(),
        ];
        args.extend(SOAK.flags());
        args
    }

    /// The README's bound for a run over `blocks` with the soak's flags.
    fn bound(&self, blocks: &[&Block]) -> Duration {
        let sizes: Vec<u64> = blocks.iter().map(|b| b.data.len() as u64).collect();
        // 256 slices (-prefix-length 2); a slice's listing of one mount holds its share of
        // the blocks, 50 bytes a line.
        let listing = (self.all().count() as u64 * 50).div_ceil(256) * 4;
        SOAK.run(&sizes, SRC_KEEPSTORES, DST_KEEPSTORES, 256, listing)
    }
}

/// Runs keepmover until it exits, or kills it (it is our child, killed by its pid through
/// `Child::kill`) once `limit` has passed. Returns the output and the wall time.
fn run_bounded(args: &[String], limit: Duration) -> (Output, Duration) {
    let began = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_keepmover"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start keepmover");
    // Drain stderr on a thread so a chatty run never blocks on a full pipe.
    let mut err_pipe = child.stderr.take().expect("stderr piped");
    let err_reader = std::thread::spawn(move || {
        let mut text = Vec::new();
        let _ = err_pipe.read_to_end(&mut text);
        text
    });
    loop {
        if child.try_wait().expect("wait").is_some() {
            break;
        }
        if began.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            let err = err_reader.join().unwrap_or_default();
            panic!(
                "keepmover still running after {limit:?}: a hang\n{}",
                String::from_utf8_lossy(&err)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let elapsed = began.elapsed();
    let mut out = child.wait_with_output().expect("exits");
    out.stderr = err_reader.join().unwrap_or_default();
    (out, elapsed)
}

/// `PUT /_keepsim/restart?pause_ms=N` on a keepstore (keepsim's control endpoint, with the
/// cluster's SystemRootToken), as an operator restarting a keepstore process would.
fn restart_over_http(cluster: &Cluster, keepstore: usize, pause_ms: u64) {
    let port = cluster.keepstore_ports[keepstore];
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect to keepstore");
    let request = format!(
        "PUT /_keepsim/restart?pause_ms={pause_ms} HTTP/1.1\r\nHost: 127.0.0.1\r\n\
         Authorization: Bearer {}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        cluster.config.system_root_token
    );
    stream.write_all(request.as_bytes()).expect("send");
    let mut reply = String::new();
    let _ = stream.read_to_string(&mut reply);
    assert!(
        reply.starts_with("HTTP/1.1 200"),
        "restart refused: {reply}"
    );
}

/// Hashes present on each destination keepstore (keepsim's own view: every mount listed).
fn destination_holdings(dst: &Cluster) -> Vec<HashSet<String>> {
    (0..dst.keepstores.len())
        .map(|k| {
            dst.blocks_on(k)
                .into_iter()
                .map(|b| b.get(..32).unwrap_or("").to_string())
                .collect()
        })
        .collect()
}

/// One `-report` line.
#[derive(Debug)]
struct Line {
    action: String,
    destinations: Vec<String>,
    error: String,
}

fn read_report(path: &str) -> HashMap<String, Line> {
    let text = std::fs::read_to_string(path).expect("report file");
    let mut lines = HashMap::new();
    for raw in text.lines() {
        let v: serde_json::Value = serde_json::from_str(raw).expect("report line is JSON");
        let locator = v["locator"].as_str().expect("locator").to_string();
        let hash = locator.get(..32).expect("hash+size").to_string();
        let line = Line {
            action: v["action"].as_str().expect("action").to_string(),
            destinations: v["destinations"]
                .as_array()
                .expect("destinations")
                .iter()
                .map(|d| d.as_str().unwrap_or("").to_string())
                .collect(),
            error: v["error"].as_str().unwrap_or("").to_string(),
        };
        assert!(
            lines.insert(hash, line).is_none(),
            "{locator} reported twice"
        );
    }
    lines
}

fn read_summary(path: &str) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).expect("-json file")).expect("JSON")
}

/// Checks one finished run against keepsim's view: every block of `expected_copied` is
/// reported copied, held on `REPLICAS` destination keepstores with the source's bytes, and
/// held on every keepstore the report names; every block of `expected_failed` is reported
/// failed and held nowhere; the summary's counts match the report.
fn check_outcome(
    soak: &Soak,
    report: &str,
    json: &str,
    expected_copied: &[&Block],
    expected_failed: &[&Block],
) -> serde_json::Value {
    let dst = &soak.env.dst;
    let lines = read_report(report);
    let summary = read_summary(json);
    let held = destination_holdings(dst);
    let uuid_index: HashMap<String, usize> = (0..dst.keepstores.len())
        .map(|k| (dst.keepstore_uuid(k).to_string(), k))
        .collect();
    let mut short_of_replicas = Vec::new();
    for block in expected_copied {
        let line = lines
            .get(&block.hash)
            .unwrap_or_else(|| panic!("{} has no report line", block.hash));
        assert_eq!(line.action, "copied", "{}: {line:?}", block.hash);
        let holders: Vec<usize> = (0..held.len())
            .filter(|&k| held[k].contains(&block.hash))
            .collect();
        // Never counted copied on a keepstore that does not hold it.
        for d in &line.destinations {
            let k = uuid_index[d];
            assert!(
                held[k].contains(&block.hash),
                "{} reported stored on {d}, which does not hold it",
                block.hash
            );
        }
        for &k in &holders {
            let stored = dst.get_block(k, &block.hash).expect("readable");
            assert!(
                stored == block.data,
                "{} on destination keepstore {k}: wrong bytes",
                block.hash
            );
        }
        if holders.len() < REPLICAS {
            short_of_replicas.push((block.hash.clone(), holders, line.destinations.clone()));
        }
    }
    assert!(
        short_of_replicas.is_empty(),
        "{} blocks counted copied with fewer than {REPLICAS} replicas held, e.g. {:?}",
        short_of_replicas.len(),
        &short_of_replicas[..short_of_replicas.len().min(3)]
    );
    for block in expected_failed {
        let line = lines
            .get(&block.hash)
            .unwrap_or_else(|| panic!("{} has no report line", block.hash));
        assert_eq!(line.action, "failed", "{}: {line:?}", block.hash);
        assert!(
            !line.error.is_empty(),
            "{}: failed without a reason",
            block.hash
        );
        assert!(
            held.iter().all(|h| !h.contains(&block.hash)),
            "{} failed yet on the destination",
            block.hash
        );
    }
    assert_eq!(
        lines.len(),
        expected_copied.len() + expected_failed.len(),
        "one report line per block, and none for others"
    );
    let totals = &summary["totals"];
    assert_eq!(
        totals["copied_blocks"].as_u64(),
        Some(expected_copied.len() as u64),
        "{summary:#}"
    );
    assert_eq!(
        totals["failed_blocks"].as_u64(),
        Some(expected_failed.len() as u64),
        "{summary:#}"
    );
    assert_eq!(summary["unsettled_blocks"].as_u64(), Some(0), "{summary:#}");
    summary
}

/// Restarts, once the destination holds a fifth of the blocks, source keepstore 4, and at
/// two fifths destination keepstore 3, each down for `pause_ms`; stops looking once `done`.
fn restart_mid_run(env: &Env, total: usize, pause_ms: u64, done: &AtomicBool) -> usize {
    let mut restarted = 0;
    while !done.load(Ordering::SeqCst) && restarted < 2 {
        let on_dst: HashSet<String> = destination_holdings(&env.dst)
            .into_iter()
            .flatten()
            .collect();
        if restarted == 0 && on_dst.len() * 5 >= total {
            restart_over_http(&env.src, 4, pause_ms);
            restarted += 1;
        } else if restarted == 1 && on_dst.len() * 5 >= total * 2 {
            restart_over_http(&env.dst, 3, pause_ms);
            restarted += 1;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    restarted
}

/// The soak on one I/O backend: a first run with every fault (the orphans must fail: exit
/// 1), then, the rotten copies replaced by good ones on another keepstore, a rerun that
/// copies them under the same faults (exit 0).
fn soak(io: &'static str) {
    let prepared = Instant::now();
    let soak = Soak::start(io);
    soak.set_faults();
    let dir = soak.env.dir.path();
    let path = |name: &str| dir.join(name).display().to_string();
    let (report, json) = (path("first.jsonl"), path("first.json"));
    let blocks: Vec<&Block> = soak.all().collect();
    let bound = soak.bound(&blocks);
    eprintln!(
        "soak {io}: {} blocks ({} MB) ready in {:.1?}; README bound for the run {:.0?}",
        blocks.len(),
        blocks.iter().map(|b| b.data.len()).sum::<usize>() / 1_000_000,
        prepared.elapsed(),
        bound
    );
    let done = AtomicBool::new(false);
    let (out, took, restarts) = std::thread::scope(|scope| {
        let chaos =
            scope.spawn(|| restart_mid_run(&soak.env, soak.good.len(), RESTART_PAUSE_MS, &done));
        let (out, took) = run_bounded(&soak.args(&report, &json), CI_BUDGET.min(bound));
        done.store(true, Ordering::SeqCst);
        (out, took, chaos.join().expect("chaos thread"))
    });
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    eprintln!(
        "soak {io}: first run {took:.1?}, exit {:?}, {restarts} restarts",
        out.status.code()
    );
    assert!(took < bound, "run took {took:?}, README bound {bound:?}");
    assert_eq!(restarts, 2, "both keepstores restarted mid-run\n{err}");
    assert_eq!(out.status.code(), Some(1), "blocks failed: exit 1\n{err}");
    assert!(
        std::path::Path::new(&json).exists(),
        "no -json summary: the run ended early\n{err}"
    );
    let good: Vec<&Block> = soak.good.iter().collect();
    let orphans: Vec<&Block> = soak.orphans.iter().collect();
    let summary = check_outcome(&soak, &report, &json, &good, &orphans);
    assert_eq!(summary["exit_code"].as_i64(), Some(1), "{summary:#}");
    eprintln!("soak {io}: errors seen {}", summary["errors"]);

    // A good copy of each orphan is restored on its second rendezvous keepstore; the
    // rerun (same faults) copies exactly those, and says all is done.
    for block in &soak.orphans {
        put(&soak.env.src, order(&soak.env.src, &block.hash)[1], block);
    }
    let (report, json) = (path("rerun.jsonl"), path("rerun.json"));
    let bound = soak.bound(&orphans);
    let (out, took) = run_bounded(&soak.args(&report, &json), CI_BUDGET.min(bound));
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    eprintln!("soak {io}: rerun {took:.1?}, exit {:?}", out.status.code());
    assert!(took < bound, "rerun took {took:?}, README bound {bound:?}");
    assert_eq!(out.status.code(), Some(0), "all copied: exit 0\n{err}");
    let summary = check_outcome(&soak, &report, &json, &orphans, &[]);
    assert_eq!(summary["exit_code"].as_i64(), Some(0), "{summary:#}");
    assert_eq!(
        summary["totals"]["skipped_blocks"].as_u64(),
        Some(soak.good.len() as u64),
        "the rerun finds the first run's blocks present: {summary:#}"
    );
}

#[test]
fn soak_uring() {
    soak("uring");
}

#[test]
fn soak_epoll() {
    soak("epoll");
}

/// The promise "a holder that stalled or trickled is tried last for the rest of that block,
/// and the next holder goes first", for each kind of slowness: the block's first holder is
/// slow, its second answers one 503 and then serves it. The second round must start with
/// the second holder, so the block is read in three GETs (slow, 503, served) and the slow
/// holder is asked once, not four (slow, 503, slow again, served).
fn slow_holder_goes_last(slow: Faults, kind: &str, io: &str) {
    let env = e2e_support::start(
        ClusterConfig::new("srcaa", 2),
        ClusterConfig::new("dstbb", 2),
    );
    let data = pseudo_block(77, 64 << 10);
    let hash = hash_of(&data);
    let holders = order(&env.src, &hash);
    for &server in &holders {
        env.src.put_block(server, &data).expect("put");
    }
    let (first, second) = (holders[0], holders[1]);
    env.src.set_faults(first, slow);
    env.src.set_faults(
        second,
        Faults {
            error_503_next: 1,
            ..Faults::default()
        },
    );
    let report = env.dir.path().join("report.jsonl").display().to_string();
    let mut args = e2e_support::args(
        &env,
        &[
            "-replications",
            "2",
            "-preflight=false",
            "-idle-timeout",
            "1s",
            "-min-rate",
            "256KiB",
            "-retries",
            "2",
            "-report",
            &report,
        ],
    );
    args.push("-io".into());
    args.push(io.into());
    let (out, took) = run_bounded(&args, Duration::from_secs(60));
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(0), "{kind}: copied\n{err}");
    let line = &read_report(&report)[&hash];
    assert_eq!(line.action, "copied", "{kind}: {line:?}");
    let text = std::fs::read_to_string(&report).expect("report");
    let v: serde_json::Value = serde_json::from_str(text.trim()).expect("one line");
    // Three GETs (slow, 503, served) and two PUTs (one per destination keepstore).
    assert_eq!(
        v["attempts"].as_u64(),
        Some(5),
        "{kind}: the slow holder was asked again before the next holder: {v}\n{err}"
    );
    assert_eq!(
        v["source"].as_str(),
        Some(env.src.keepstore_uuid(second)),
        "{kind}: read from the second holder"
    );
    assert!(took < Duration::from_secs(30), "{kind}: took {took:?}");
}

#[test]
fn a_stalled_holder_is_tried_last() {
    for io in ["uring", "epoll"] {
        let stall = Faults {
            stall_mid_body: true,
            ..Faults::default()
        };
        slow_holder_goes_last(stall, "stall", io);
    }
}

#[test]
fn a_trickling_holder_is_tried_last() {
    for io in ["uring", "epoll"] {
        let trickle = Faults {
            trickle_bytes_per_sec: 4 << 10,
            ..Faults::default()
        };
        slow_holder_goes_last(trickle, "trickle", io);
    }
}
