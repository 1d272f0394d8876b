//! Proves keepmover's index walk flat in memory at a scale no loopback run reaches in
//! reasonable time: the real walk (`keepmover::index::walk`: estimate, slicing, per-prefix
//! fetch, parse, sort, merge and diff, as a dry run does it) over keepsim's index-only
//! generator (`keepsim::KeepstoreListing`, the same lines its keepstores serve), without
//! sockets. A generator thread formats each listing in 256 KiB pieces and hands them over a
//! bounded channel, as a socket would; the walk parses them with keepmover's own
//! `IndexBodyParser`. At the end the totals must equal the universe's exact expected diff.
//!
//! ```sh
//! /usr/bin/time -v cargo run --release --example index_scale -- 1000000000 \
//!     --walk-cpu 1 --gen-cpu 0
//! ```
//!
//! Arguments: source locators (the destination gets 95% as many, 90% of the source in
//! common, 2 replicas on 3 keepstores per cluster), then optionally `--replicas N`,
//! `--keepstores N`, `--walk-cpu C` and `--gen-cpu C` (pin the walk and the generator to a
//! core). It prints the RSS high-water mark as the walk goes, the walk thread's CPU time
//! (from `/proc/thread-self/schedstat`) and index lines per second.

use std::cell::Cell;
use std::time::Instant;

use bytes::Bytes;
use keepmover::cluster::Cluster;
use keepmover::index::merge::choose_extra_digits;
use keepmover::index::shard::walk_prefixes;
use keepmover::index::walk::{
    diff_slice_with, estimate_source_blocks, DiffWants, DstIndexErrors, Layouts,
};
use keepmover::keep::index_format::{IndexBodyParser, IndexEntry};
use keepmover::keepstore::memory;
use keepmover::keepstore::Cause;

#[path = "../benches/support/index_only.rs"]
mod index_only;
use index_only::{IndexLines, IndexOnly};
use keepsim::{IndexSide, IndexUniverse, IndexUniverseSpec, KeepstoreListing, ListingMount};

// The allocator of the keepmover binary, so the RSS is the binary's.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// What the engine aims one slice at (`EngineConfig::slice_target`'s default).
const SLICE_TARGET: u64 = 1_000_000;

struct Job {
    listing: KeepstoreListing,
    prefix: String,
    reply: async_channel::Sender<Bytes>,
}

/// Index lines made by the generator thread.
struct Generated {
    src: Vec<KeepstoreListing>,
    dst: Vec<KeepstoreListing>,
    jobs: crossbeam_channel::Sender<Job>,
    bytes: Cell<u64>,
}

impl IndexLines for Generated {
    async fn index(
        &self,
        cluster: &Cluster,
        server: usize,
        prefix: &str,
        max_entries: usize,
        entries: &mut Vec<IndexEntry>,
    ) -> Result<(), Cause> {
        let listings = if cluster.label == "src" {
            &self.src
        } else {
            &self.dst
        };
        let listing = listings
            .get(server)
            .ok_or_else(|| Cause::BadAnswer(format!("no server {server}")))?
            .clone();
        let (reply, pieces) = async_channel::bounded(4);
        self.jobs
            .send(Job {
                listing,
                prefix: prefix.to_string(),
                reply,
            })
            .map_err(|_| Cause::BadAnswer("generator gone".into()))?;
        let mut parser = IndexBodyParser::new(Some(prefix.to_string()));
        let start = entries.len();
        while let Ok(piece) = pieces.recv().await {
            self.bytes.set(self.bytes.get() + piece.len() as u64);
            parser
                .feed(&piece, |e| entries.push(e))
                .map_err(|e| Cause::BadAnswer(e.to_string()))?;
            if entries.len() - start > max_entries {
                return Err(Cause::BadAnswer("slice too large".into()));
            }
        }
        // keepstore's completion marker.
        parser
            .feed(b"\n", |_| {})
            .and_then(|_| parser.finish())
            .map_err(|e| Cause::BadAnswer(e.to_string()))?;
        Ok(())
    }
}

/// `VmHWM` (peak RSS) of this process, in KiB.
fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1).map(str::to_string))
        })
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// CPU time of the calling thread, in seconds.
fn thread_cpu_s() -> f64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .next()
                .and_then(|n| n.parse::<u64>().ok())
        })
        .map_or(0.0, |ns| ns as f64 / 1e9)
}

fn pin(cpu: Option<usize>) {
    if let Some(cpu) = cpu {
        let mut set = rustix::thread::CpuSet::new();
        set.set(cpu);
        if let Err(e) = rustix::thread::sched_setaffinity(None, &set) {
            eprintln!("index_scale: cannot pin to cpu {cpu}: {e}");
        }
    }
}

struct Args {
    source: u64,
    replicas: usize,
    keepstores: usize,
    walk_cpu: Option<usize>,
    gen_cpu: Option<usize>,
}

fn args() -> Result<Args, String> {
    let mut args = Args {
        source: 1_000_000,
        replicas: 2,
        keepstores: 3,
        walk_cpu: None,
        gen_cpu: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut value = |name: &str| -> Result<u64, String> {
            it.next()
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| format!("{name} wants a number"))
        };
        match a.as_str() {
            "--replicas" => args.replicas = value("--replicas")? as usize,
            "--keepstores" => args.keepstores = value("--keepstores")? as usize,
            "--walk-cpu" => args.walk_cpu = Some(value("--walk-cpu")? as usize),
            "--gen-cpu" => args.gen_cpu = Some(value("--gen-cpu")? as usize),
            n => args.source = n.parse().map_err(|_| format!("bad count {n:?}"))?,
        }
    }
    Ok(args)
}

fn main() -> Result<(), String> {
    let args = args()?;
    let spec =
        IndexUniverseSpec::with_overlap(1, args.source, args.source / 20 * 19, 0.9, args.replicas);
    let universe = std::sync::Arc::new(IndexUniverse::new(&spec));
    let expected = universe.expected();
    let listings = |side: IndexSide, id: &str| -> Vec<KeepstoreListing> {
        (0..args.keepstores)
            .map(|k| {
                let mount = ListingMount::local(format!("{id}-nyw5e-{:015}", k * 100));
                KeepstoreListing::new(
                    universe.clone(),
                    side,
                    k,
                    args.keepstores,
                    vec![mount],
                    false,
                )
            })
            .collect()
    };
    let (jobs, queue) = crossbeam_channel::unbounded::<Job>();
    let gen_cpu = args.gen_cpu;
    let generator = std::thread::spawn(move || {
        pin(gen_cpu);
        for job in queue {
            for piece in job.listing.pieces(vec![0], job.prefix) {
                if job.reply.send_blocking(piece).is_err() {
                    break;
                }
            }
        }
    });
    pin(args.walk_cpu);
    let ks = IndexOnly(Generated {
        src: listings(IndexSide::Source, "srcaa"),
        dst: listings(IndexSide::Destination, "dstbb"),
        jobs,
        bytes: Cell::new(0),
    });
    let src = memory::cluster("src", "srcaa", args.keepstores);
    let dst = memory::cluster("dst", "dstbb", args.keepstores);
    let (runtime, _) = keepmover::net::build_runtime(keepmover::net::IoBackend::Epoll)
        .map_err(|e| format!("runtime: {e}"))?;
    let started = Instant::now();
    let cpu_before = thread_cpu_s();
    let totals = runtime.block_on(async {
        let estimate = estimate_source_blocks(&ks, &src, "")
            .await
            .map_err(|e| e.to_string())?;
        let extra = choose_extra_digits(estimate, 0, SLICE_TARGET);
        let prefixes = walk_prefixes("", extra, None);
        eprintln!(
            "index_scale: {} source / {} destination locators, {} replicas on {} keepstores; \
             estimate {estimate}, {} slices",
            expected.source_locators,
            expected.destination_locators,
            args.replicas,
            args.keepstores,
            prefixes.len()
        );
        let layouts = Layouts::per_server(&src, &dst);
        let (mut src_blocks, mut dst_blocks, mut missing, mut present, mut lines) =
            (0u64, 0u64, 0u64, 0u64, 0u64);
        let tenth = (prefixes.len() / 10).max(1);
        for (i, prefix) in prefixes.iter().enumerate() {
            let diff = diff_slice_with(
                &ks,
                &src,
                &dst,
                &layouts,
                prefix,
                DstIndexErrors::Fail,
                None,
                DiffWants::default(),
            )
            .await
            .map_err(|e| e.to_string())?;
            src_blocks += diff.src_blocks;
            dst_blocks += diff.dst_blocks;
            missing += diff.missing.len() as u64;
            present += diff.present;
            lines += diff.lines;
            if (i + 1) % tenth == 0 || i + 1 == prefixes.len() {
                let secs = started.elapsed().as_secs_f64();
                eprintln!(
                    "index_scale: {:>3}% {lines} lines in {secs:.0}s ({:.2} M lines/s), peak RSS {} MiB",
                    (i + 1) * 100 / prefixes.len(),
                    lines as f64 / secs / 1e6,
                    peak_rss_kib() / 1024
                );
            }
        }
        Ok::<_, String>((src_blocks, dst_blocks, missing, present, lines))
    })?;
    let secs = started.elapsed().as_secs_f64();
    let walk_cpu = thread_cpu_s() - cpu_before;
    drop(ks);
    let _ = generator.join();
    let (src_blocks, dst_blocks, missing, present, lines) = totals;
    let got = (src_blocks, dst_blocks, missing, present);
    let want = (
        expected.source_locators,
        expected.destination_locators,
        expected.source_only,
        expected.common,
    );
    let locators = expected.source_locators + expected.destination_locators;
    println!(
        "index_scale: {lines} index lines ({locators} distinct locators over both sides) in {secs:.1}s: \
         {:.2} M lines/s, {:.2} M locators/s; walk thread {walk_cpu:.1} CPU-s = {:.3} CPU-s per million lines; \
         peak RSS {} MiB; diff {}",
        lines as f64 / secs / 1e6,
        locators as f64 / secs / 1e6,
        walk_cpu / (lines as f64 / 1e6),
        peak_rss_kib() / 1024,
        if got == want { "exact" } else { "WRONG" }
    );
    if got != want {
        return Err(format!(
            "diff (src, dst, missing, present) {got:?}, expected {want:?}"
        ));
    }
    Ok(())
}
