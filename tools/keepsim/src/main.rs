//! The `keepsim` binary: starts simulated clusters from the command line, writes
//! `cluster.json`, settings files and keep-services JSON, and runs until interrupted.

use std::path::PathBuf;

use clap::Parser;

#[derive(Parser)]
#[command(
    name = "keepsim",
    version,
    about = "Simulated Arvados keepstores and API servers on loopback"
)]
struct Args {
    /// Cluster ids to start (5 characters each), e.g. --cluster srcaa --cluster dstbb.
    #[arg(long = "cluster", default_values_t = vec!["srcaa".to_string(), "dstbb".to_string()])]
    clusters: Vec<String>,
    /// Keepstores per cluster.
    #[arg(long, default_value_t = 3)]
    keepstores: usize,
    /// Mounts (volumes) per keepstore.
    #[arg(long, default_value_t = 1)]
    mounts: usize,
    /// Serve HTTPS with a self-signed certificate.
    #[arg(long)]
    tls: bool,
    /// Turn permission-signature enforcement off.
    #[arg(long)]
    no_signing: bool,
    /// Store blocks under this directory (keepstore layout) instead of memory.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Where to write cluster.json, <id>.conf and <id>-keep-services.json.
    #[arg(long, default_value = "keepsim-out")]
    dir: PathBuf,
    /// Synthetic blocks per keepstore of the FIRST cluster (listed, served, not stored).
    #[arg(long, default_value_t = 0)]
    synthetic: u32,
    /// Size of each synthetic block in bytes.
    #[arg(long, default_value_t = 4096)]
    synthetic_size: u32,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Concurrent requests per keepstore before queueing (keepstore's MaxConcurrentRequests).
    #[arg(long, default_value_t = 64)]
    max_concurrent: usize,
    /// Queued requests before answering 503 (MaxQueuedRequests).
    #[arg(long, default_value_t = 128)]
    max_queued: usize,
    /// Give every cluster the first cluster's blob signing key (and the same TTL), so their
    /// keepstores accept each other's pulls (keepmover pull).
    #[arg(long)]
    shared_signing_key: bool,
    /// Pull workers per keepstore (Collections.BlobReplicateConcurrency).
    #[arg(long, default_value_t = 4)]
    blob_replicate_concurrency: usize,
}

fn main() {
    let args = Args::parse();
    let mut clusters = Vec::new();
    for (i, id) in args.clusters.iter().enumerate() {
        if id.len() != 5 || !id.bytes().all(|b| b.is_ascii_alphanumeric()) {
            eprintln!("keepsim: cluster id {id:?} must be 5 letters or digits");
            std::process::exit(2);
        }
        let mut config = keepsim::ClusterConfig::new(id, args.keepstores);
        config.mounts_per_keepstore = args.mounts;
        config.tls = args.tls;
        config.blob_signing = !args.no_signing;
        config.max_concurrent = args.max_concurrent;
        config.max_queued = args.max_queued;
        config.blob_replicate_concurrency = args.blob_replicate_concurrency;
        if args.shared_signing_key {
            if let Some(first) = clusters.first() {
                let first: &keepsim::Cluster = first;
                config.blob_signing_key = first.config.blob_signing_key.clone();
                config.blob_signing_ttl = first.config.blob_signing_ttl;
            }
        }
        config.data_dir = args.data_dir.as_ref().map(|d| d.join(id));
        if i == 0 && args.synthetic > 0 {
            config.synthetic = Some((args.synthetic, args.synthetic_size, args.seed));
        }
        match keepsim::Cluster::start(config) {
            Ok(c) => clusters.push(c),
            Err(e) => {
                eprintln!("keepsim: {e}");
                std::process::exit(1);
            }
        }
    }
    let refs: Vec<&keepsim::Cluster> = clusters.iter().collect();
    match keepsim::write_cluster_files(&args.dir, &refs) {
        Ok(path) => eprintln!("keepsim: wrote {}", path.display()),
        Err(e) => {
            eprintln!("keepsim: writing files into {}: {e}", args.dir.display());
            std::process::exit(1);
        }
    }
    for c in &clusters {
        eprintln!(
            "keepsim: cluster {} API {} ({} keepstores, settings {}/{}.conf)",
            c.config.id,
            c.api_host(),
            c.keepstores.len(),
            args.dir.display(),
            c.config.id
        );
        for i in 0..c.keepstores.len() {
            eprintln!("keepsim:   {} {}", c.keepstore_uuid(i), c.keepstore_url(i));
        }
    }
    eprintln!("keepsim: ready (Ctrl-C to stop)");
    loop {
        std::thread::park();
    }
}
