//! `keepmover demo`: the first thing to run. Starts a simulated source cluster (several
//! keepstores, signing on, replication 2) filled with a realistic mix of block sizes and an
//! empty destination, in this process on loopback, copies with the real engine and the real
//! progress display, then checks every block on the destination and prints the throughput.

use std::collections::HashMap;
use std::time::Instant;

use clap::Parser;
use md5::{Digest, Md5};

use super::rsync::{self, ProgressStyle, RsyncArgs};
use crate::keep::rendezvous::probe_order_go;
use crate::net::IoBackend;
use crate::report::human_bytes;

#[derive(Parser, Debug)]
#[command(
    name = "keepmover demo",
    about = "Copy between two simulated clusters started in this process"
)]
struct DemoArgs {
    /// Total data in the source cluster, in MiB (a mix of 64 MiB, 1 MiB and small blocks).
    #[arg(long, default_value_t = 1024)]
    size: u64,
    /// I/O backend: auto, uring or epoll.
    #[arg(long, default_value = "auto")]
    io: String,
    /// Keepstores per cluster.
    #[arg(long, default_value_t = 3)]
    keepstores: usize,
    /// Serve both clusters over HTTPS (self-signed; the settings say ARVADOS_API_HOST_INSECURE).
    #[arg(long)]
    tls: bool,
    /// Memory budget for block buffers.
    #[arg(long, default_value = "1GiB")]
    memory: String,
}

/// The block sizes of the demo: most bytes in 64 MiB blocks, most blocks small.
fn block_sizes(total_mib: u64) -> Vec<usize> {
    let total = total_mib << 20;
    let mut sizes = Vec::new();
    let big = (total * 3 / 4) >> 26;
    sizes.extend(std::iter::repeat_n(64 << 20, big as usize));
    let medium = (total / 5) >> 20;
    sizes.extend(std::iter::repeat_n(1 << 20, medium as usize));
    let mut small_bytes = total.saturating_sub(big << 26).saturating_sub(medium << 20);
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    while small_bytes > 4096 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let size = (4096 + (seed % (60 << 10))) as usize;
        sizes.push(size);
        small_bytes = small_bytes.saturating_sub(size as u64);
    }
    sizes
}

pub fn run_cli(program: &str, args: &[String]) -> i32 {
    let argv = std::iter::once(format!("{program} demo")).chain(args.iter().cloned());
    let demo = match DemoArgs::try_parse_from(argv) {
        Ok(d) => d,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                crate::cli::EXIT_USAGE
            } else {
                0
            };
        }
    };
    match run(demo) {
        Ok(()) => 0,
        Err(message) => {
            eprintln!("demo failed: {message}");
            crate::cli::EXIT_FAILURE
        }
    }
}

fn run(demo: DemoArgs) -> Result<(), String> {
    let io: IoBackend = demo.io.parse()?;
    let memory_budget = crate::cli::parse_byte_size(&demo.memory).ok_or("bad --memory")?;
    let mut src_config = keepsim::ClusterConfig::new("srcaa", demo.keepstores);
    src_config.tls = demo.tls;
    let mut dst_config = keepsim::ClusterConfig::new("dstbb", demo.keepstores);
    dst_config.tls = demo.tls;
    dst_config.default_replication = 2;
    let src = keepsim::Cluster::start(src_config)?;
    let dst = keepsim::Cluster::start(dst_config)?;
    let dir = std::env::temp_dir().join(format!("keepmover-demo-{}", std::process::id()));
    keepsim::write_cluster_files(&dir, &[&src, &dst]).map_err(|e| e.to_string())?;

    eprintln!(
        "demo: filling the source cluster with {} MiB ...",
        demo.size
    );
    let sizes = block_sizes(demo.size);
    let src_uuids: Vec<String> = (0..src.keepstores.len())
        .map(|i| src.keepstore_uuid(i).to_string())
        .collect();
    let src_uuid_refs: Vec<&str> = src_uuids.iter().map(String::as_str).collect();
    let mut expected: HashMap<String, usize> = HashMap::new();
    let mut total_bytes = 0u64;
    for (n, &size) in sizes.iter().enumerate() {
        let data = keepsim::pseudo_random_bytes(n as u64 + 1, size);
        let hash = crate::keep::locator::BlockHash(Md5::digest(&data).into()).to_string();
        // Two replicas, where a Keep client would have put them.
        for &server in probe_order_go(&hash, &src_uuid_refs).iter().take(2) {
            src.put_block(server, &data)?;
        }
        expected.insert(hash, size);
        total_bytes += size as u64;
    }
    eprintln!(
        "demo: source {} has {} blocks ({}) on {} keepstores; destination {} is empty",
        src.config.id,
        expected.len(),
        human_bytes(total_bytes),
        src.keepstores.len(),
        dst.config.id
    );
    eprintln!(
        "demo: running: keepmover -src {}/srcaa.conf -dst {}/dstbb.conf -replications 2",
        dir.display(),
        dir.display()
    );
    let args = RsyncArgs {
        src: dir.join("srcaa.conf").display().to_string(),
        dst: dir.join("dstbb.conf").display().to_string(),
        src_keep_services_json: None,
        dst_keep_services_json: None,
        replications: 2,
        prefix: String::new(),
        src_blob_signature_ttl: std::time::Duration::ZERO,
        workers: 0,
        concurrency: 32,
        memory_budget,
        io,
        checkpoint: None,
        connect_timeout: std::time::Duration::from_secs(10),
        first_byte_timeout: std::time::Duration::from_secs(60),
        idle_timeout: std::time::Duration::from_secs(60),
        retries: 2,
        retry_delay: std::time::Duration::from_millis(200),
        prefix_length: 0,
        progress: ProgressStyle::Auto,
        dry_run: false,
        skip_count: false,
    };
    let started = Instant::now();
    let copy_result = rsync::run(args);
    let elapsed = started.elapsed();
    copy_result.map_err(|e| e.to_string())?;

    eprintln!("demo: verifying every block on the destination ...");
    let dst_uuids: Vec<String> = (0..dst.keepstores.len())
        .map(|i| dst.keepstore_uuid(i).to_string())
        .collect();
    let dst_uuid_refs: Vec<&str> = dst_uuids.iter().map(String::as_str).collect();
    let mut bad = 0usize;
    for (hash, size) in &expected {
        let order = probe_order_go(hash, &dst_uuid_refs);
        let mut good_replicas = 0;
        for &server in order.iter().take(2) {
            if let Some(block) = dst.get_block(server, hash) {
                let digest =
                    crate::keep::locator::BlockHash(Md5::digest(&block).into()).to_string();
                if &digest == hash && block.len() == *size {
                    good_replicas += 1;
                }
            }
        }
        if good_replicas < 2 {
            bad += 1;
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    if bad > 0 {
        return Err(format!(
            "{bad} blocks are missing or wrong on the destination"
        ));
    }
    let secs = elapsed.as_secs_f64().max(1e-9);
    eprintln!(
        "demo: OK: all {} blocks ({}) are on the destination, 2 replicas each in rendezvous order, MD5 verified. Copy took {:.1}s: {:.0} MB/s, {:.0} blocks/s.",
        expected.len(),
        human_bytes(total_bytes),
        secs,
        total_bytes as f64 / 1e6 / secs,
        expected.len() as f64 / secs
    );
    Ok(())
}
