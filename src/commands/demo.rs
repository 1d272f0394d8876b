//! `keepmover demo`: the first thing to run. Starts a simulated source cluster (several
//! keepstores, signing on, replication 2) filled with a realistic mix of block sizes and an
//! empty destination, in this process on loopback, copies with the real engine and the real
//! progress display, then checks every block on the destination and prints the throughput.

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

/// Runs the demo; `Err` carries a one-line reason.
pub fn run(demo: DemoArgs) -> Result<Outcome, String> {
    // The source serves a synthetic set (generated as it is read, never held), each block
    // on two keepstores where a Keep client would have put it; the destination checks every
    // PUT's MD5 as it streams in and keeps only what it needs to say what it holds. So the
    // demo needs about keepmover's own buffer budget in memory, whatever -size is.
    let mut src_config = keepsim::ClusterConfig::new("srcaa", demo.keepstores);
    src_config.tls = demo.tls;
    src_config.block_set = Some(keepsim::BlockSetConfig {
        sizes: keepsim::BlockSizes::Mix {
            total_bytes: demo.size_mib << 20,
        },
        seed: 1,
        replicas: 2.min(demo.keepstores),
    });
    let mut dst_config = keepsim::ClusterConfig::new("dstbb", demo.keepstores);
    dst_config.tls = demo.tls;
    dst_config.default_replication = 2;
    dst_config.digest_only = true;
    eprintln!(
        "demo: generating the source cluster's {} MiB (hashing every block once) ...",
        demo.size_mib
    );
    let src = keepsim::Cluster::start(src_config)?;
    let dst = keepsim::Cluster::start(dst_config)?;
    let dir = demo.dir.clone();
    keepsim::write_cluster_files(&dir, &[&src, &dst]).map_err(|e| e.to_string())?;
    let set = src
        .block_set
        .clone()
        .ok_or("the simulated source has no block set")?;
    let (blocks, total_bytes) = (set.len(), set.total_bytes());
    eprintln!(
        "demo: source {} has {} blocks ({}) on {} keepstores, two replicas each; destination {} is empty",
        src.config.id,
        blocks,
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

    eprintln!("demo: checking every block on the destination ...");
    let dst_uuids: Vec<String> = (0..dst.keepstores.len())
        .map(|i| dst.keepstore_uuid(i).to_string())
        .collect();
    let dst_uuid_refs: Vec<&str> = dst_uuids.iter().map(String::as_str).collect();
    let mut bad = 0usize;
    for (hash, size) in set.blocks() {
        let hex = hash.to_string();
        // The destination verified each PUT's MD5 as it arrived; here: the right size, on
        // the first two servers in rendezvous order.
        let mut want: Vec<usize> = probe_order_go(&hex, &dst_uuid_refs)
            .into_iter()
            .take(2)
            .collect();
        want.sort_unstable();
        let mut have: Vec<usize> = dst
            .locate(&hex)
            .into_iter()
            .filter(|h| h.size == size)
            .map(|h| h.keepstore)
            .collect();
        have.sort_unstable();
        have.dedup();
        if have != want {
            bad += 1;
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    if bad > 0 {
        return Err(format!(
            "{bad} blocks are missing or misplaced on the destination"
        ));
    }
    let secs = elapsed.as_secs_f64().max(1e-9);
    eprintln!(
        "demo: OK: all {} blocks ({}) are on the destination, 2 replicas each in rendezvous order, MD5 verified by the destination as they arrived. Copy took {:.1}s: {:.0} MB/s, {:.0} blocks/s.",
        blocks,
        human_bytes(total_bytes),
        secs,
        total_bytes as f64 / 1e6 / secs,
        blocks as f64 / secs
    );
    Ok(outcome)
}
