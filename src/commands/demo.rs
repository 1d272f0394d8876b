//! `keepmover demo`: the first thing to run. Starts a simulated source cluster (several
//! keepstores, signing on, replication 2) filled with a realistic mix of block sizes and an
//! empty destination, in this process on loopback, copies with the real engine and the real
//! progress display, then checks every block on the destination and prints the throughput.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use super::rsync::{self, RsyncArgs};
use crate::exit::Outcome;
use crate::keep::rendezvous::probe_order_go;
use crate::mover::Control;
use crate::report::human_bytes;

/// What the demo is asked for (built by `cli` from the demo's flags).
pub struct DemoArgs {
    pub size_mib: u64,
    pub keepstores: usize,
    pub tls: bool,
    /// Where the simulated clusters' settings files go ([`work_dir`]).
    pub dir: PathBuf,
    /// The copy to run, as `keepmover -src DIR/srcaa.conf -dst DIR/dstbb.conf ...`.
    pub copy: RsyncArgs,
}

/// The demo's working directory (settings files of the simulated clusters).
pub fn work_dir() -> PathBuf {
    std::env::temp_dir().join(format!("keepmover-demo-{}", std::process::id()))
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

/// Runs the demo; `Err` carries a one-line reason.
pub fn run(demo: DemoArgs) -> Result<Outcome, String> {
    let mut src_config = keepsim::ClusterConfig::new("srcaa", demo.keepstores);
    src_config.tls = demo.tls;
    let mut dst_config = keepsim::ClusterConfig::new("dstbb", demo.keepstores);
    dst_config.tls = demo.tls;
    dst_config.default_replication = 2;
    let src = keepsim::Cluster::start(src_config)?;
    let dst = keepsim::Cluster::start(dst_config)?;
    let dir = demo.dir.clone();
    keepsim::write_cluster_files(&dir, &[&src, &dst]).map_err(|e| e.to_string())?;

    eprintln!(
        "demo: filling the source cluster with {} MiB ...",
        demo.size_mib
    );
    let sizes = block_sizes(demo.size_mib);
    let src_uuids: Vec<String> = (0..src.keepstores.len())
        .map(|i| src.keepstore_uuid(i).to_string())
        .collect();
    let src_uuid_refs: Vec<&str> = src_uuids.iter().map(String::as_str).collect();
    let mut expected: HashMap<String, usize> = HashMap::new();
    let mut total_bytes = 0u64;
    for (n, &size) in sizes.iter().enumerate() {
        let data = keepsim::pseudo_random_bytes(n as u64 + 1, size);
        let hash = crate::keep::BlockHash(crate::hash::md5(&data)).to_string();
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
    let started = Instant::now();
    let copy_result = rsync::run(demo.copy, Arc::new(Control::new()));
    let elapsed = started.elapsed();
    let outcome = copy_result.map_err(|e| e.to_string())?;
    if outcome.code() != 0 {
        let _ = std::fs::remove_dir_all(&dir);
        return Ok(outcome);
    }

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
                let digest = crate::keep::BlockHash(crate::hash::md5(&block)).to_string();
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
    Ok(outcome)
}
