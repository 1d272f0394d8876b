//! The `keepsim` binary: starts simulated clusters from the command line, writes
//! `cluster.json`, settings files and keep-services JSON, and runs until interrupted.
//! Every option of [`keepsim::ClusterConfig`] that a benchmark or soak test needs from a
//! separate process has a flag; faults and restarts are switched at run time through each
//! keepstore's `/_keepsim/` endpoints (see `keepsim::keepstore`).

use std::path::PathBuf;

use clap::Parser;
use keepsim::{BlockSetConfig, BlockSizes, IndexOnlyConfig, IndexSide, SharedMount, StorageClass};

#[derive(Parser)]
#[command(
    name = "keepsim",
    version,
    about = "Simulated Arvados keepstores and API servers on loopback",
    after_help = "Run-time controls on every keepstore (SystemRootToken from cluster.json):\n  \
        PUT /_keepsim/faults   JSON, e.g. {\"stall_mid_body\":true} (fields: error_500, error_503, error_503_next,\n                         delay_ms, close_mid_body, corrupt_body, truncate_index, down, stall_mid_body,\n                         trickle_bytes_per_sec, body_fault_probability, endless_trailers,\n                         lie_replicas (off|extra|store_nothing), reset, expired_401)\n  \
        GET /_keepsim/faults, GET /_keepsim/stats\n  \
        PUT /_keepsim/restart?pause_ms=N   restart the keepstore on the same port after N ms\n  \
        PUT /_keepsim/age/<hash>?secs=N    set that block's mtime to now - N s"
)]
struct Args {
    /// Cluster ids to start (5 characters each), e.g. --cluster srcaa --cluster dstbb.
    #[arg(long = "cluster", default_values_t = vec!["srcaa".to_string(), "dstbb".to_string()])]
    clusters: Vec<String>,
    /// Keepstores per cluster.
    #[arg(long, default_value_t = 3)]
    keepstores: usize,
    /// Local mounts (volumes) per keepstore.
    #[arg(long, default_value_t = 1)]
    mounts: usize,
    /// Mounts shared by every keepstore of a cluster (one store behind all, like S3).
    #[arg(long, default_value_t = 0)]
    shared_mounts: usize,
    /// Serve HTTPS with a self-signed certificate.
    #[arg(long)]
    tls: bool,
    /// Turn permission-signature enforcement off.
    #[arg(long)]
    no_signing: bool,
    /// Store blocks under this directory (keepstore layout) instead of memory.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Clusters after the first keep only digests (hash, size, mtime) of written blocks:
    /// PUTs are MD5-checked as they stream in, GETs of them answer 422. For big demos.
    #[arg(long)]
    digest_only: bool,
    /// Where to write cluster.json, <id>.conf and <id>-keep-services.json.
    #[arg(long, default_value = "keepsim-out")]
    dir: PathBuf,
    /// Synthetic blocks per keepstore of the FIRST cluster (listed, served, not stored).
    #[arg(long, default_value_t = 0)]
    synthetic: u32,
    /// How many of the clusters, from the first, get the synthetic blocks (2: the second
    /// cluster's keepstore k holds exactly the first's keepstore k's blocks, so both sides
    /// of a validation are big without copying).
    #[arg(long, default_value_t = 1)]
    synthetic_clusters: usize,
    /// Size of each synthetic block in bytes.
    #[arg(long, default_value_t = 4096)]
    synthetic_size: u32,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// A synthetic block set on the FIRST cluster with the demo's mix totalling SIZE
    /// (e.g. 10GiB: 3/4 in 64 MiB blocks, 1/5 in 1 MiB, the rest 4-64 KiB), placed in
    /// rendezvous order, generated on demand. Hashing it costs one MD5 pass at start.
    #[arg(long, value_name = "SIZE")]
    source_mix: Option<String>,
    /// A synthetic block set on the FIRST cluster with these sizes: comma list of SIZE or
    /// SIZExCOUNT, e.g. 64MiBx10,1MiBx100,4096x5000.
    #[arg(long, value_name = "LIST")]
    source_sizes: Option<String>,
    /// Replicas of each block of the synthetic set (first N keepstores in rendezvous order).
    #[arg(long, default_value_t = 2)]
    source_replicas: usize,
    /// BENCHMARK ONLY, off by default: synthetic blocks are generated into memory once and
    /// served by reference, and PUT bodies are NOT MD5-checked (digest storage just counts
    /// them). keepsim then cannot catch a client sending wrong data. Marked in cluster.json.
    #[arg(long)]
    bench_serving: bool,
    /// Collections.BlobSigningTTL (Go duration like 336h, 90s, or seconds).
    #[arg(long, default_value = "336h")]
    blob_signing_ttl: String,
    /// Collections.BlobTrashLifetime (0 = trash deletes at once).
    #[arg(long, default_value = "336h")]
    blob_trash_lifetime: String,
    /// Collections.BlobTrash off: DELETE answers 405, trash lists are never processed.
    #[arg(long)]
    no_blob_trash: bool,
    /// Collections.BlobReplicateConcurrency (pull workers per keepstore).
    #[arg(long, alias = "blob-replicate-concurrency", default_value_t = 4)]
    replicate_concurrency: usize,
    /// Collections.BlobTrashConcurrency (trash workers per keepstore).
    #[arg(long, default_value_t = 4)]
    trash_concurrency: usize,
    /// A storage class: NAME[:default][:priority=N]; repeat for several. Default: one
    /// class `default`, Default true.
    #[arg(long = "storage-class", value_name = "CLASS")]
    storage_classes: Vec<String>,
    /// Classes of local mount number i of every keepstore (i-th use of the flag): a comma
    /// list, e.g. --mount-classes default --mount-classes hot,cold.
    #[arg(long = "mount-classes", value_name = "LIST")]
    mount_classes: Vec<String>,
    /// /arvados/v1/config exactly as Arvados exports it (without BlobTrash,
    /// BlobTrashLifetime, BalanceTrashLimit, which keepsim otherwise adds).
    #[arg(long)]
    real_config_export: bool,
    /// Index-only mode: the first cluster lists this many synthetic locators and stores
    /// nothing (block requests answer 422). Needs --index-only-destination. With
    /// --shared-mounts, each locator is listed once, by one shared mount (the same lines from
    /// every keepstore), and local mounts list nothing.
    #[arg(long, value_name = "N")]
    index_only_source: Option<u64>,
    /// Index-only mode: locators the second cluster lists.
    #[arg(long, value_name = "N")]
    index_only_destination: Option<u64>,
    /// Index-only mode: fraction of the source's locators the destination also lists.
    #[arg(long, default_value_t = 0.5)]
    index_only_overlap: f64,
    /// Index-only mode: copies of each locator across a cluster's keepstores.
    #[arg(long, default_value_t = 2)]
    index_only_replicas: usize,
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
}

/// `123`, `4096`, `64MiB`, `1GiB`, `10G`, `5M`, `4KiB`, `4k`.
fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let n: u64 = digits.parse().map_err(|_| format!("bad size {text:?}"))?;
    let factor: u64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" | "kb" => 1 << 10,
        "m" | "mib" | "mb" => 1 << 20,
        "g" | "gib" | "gb" => 1 << 30,
        "t" | "tib" | "tb" => 1 << 40,
        _ => return Err(format!("bad size unit in {text:?}")),
    };
    n.checked_mul(factor)
        .ok_or_else(|| format!("size {text:?} too large"))
}

/// Go-style duration (`336h`, `1h30m`, `90s`, `0`) or plain seconds, to seconds.
fn parse_duration(text: &str) -> Result<u64, String> {
    let t = text.trim();
    if let Ok(secs) = t.parse::<u64>() {
        return Ok(secs);
    }
    let mut total = 0u64;
    let mut number = String::new();
    for c in t.chars() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let n: u64 = number
            .parse()
            .map_err(|_| format!("bad duration {text:?}"))?;
        number.clear();
        total += n * match c {
            'h' => 3600,
            'm' => 60,
            's' => 1,
            _ => return Err(format!("bad duration unit in {text:?}")),
        };
    }
    if !number.is_empty() {
        return Err(format!("bad duration {text:?} (missing unit)"));
    }
    Ok(total)
}

fn parse_sizes(text: &str) -> Result<Vec<u32>, String> {
    let mut sizes = Vec::new();
    for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (size, count) = match item.split_once('x') {
            Some((s, c)) => (
                s,
                c.parse::<usize>()
                    .map_err(|_| format!("bad count in {item:?}"))?,
            ),
            None => (item, 1),
        };
        let size = parse_size(size)?;
        if size > 64 << 20 {
            return Err(format!("block size {size} over 64 MiB"));
        }
        sizes.extend(std::iter::repeat_n(size as u32, count));
    }
    Ok(sizes)
}

fn parse_class(text: &str) -> Result<StorageClass, String> {
    let mut parts = text.split(':');
    let name = parts.next().unwrap_or("").trim();
    if name.is_empty() {
        return Err(format!("bad storage class {text:?}"));
    }
    let mut class = StorageClass::new(name, false, 0);
    for part in parts {
        if part == "default" {
            class.default = true;
        } else if let Some(p) = part.strip_prefix("priority=") {
            class.priority = p.parse().map_err(|_| format!("bad priority in {text:?}"))?;
        } else {
            return Err(format!("bad storage class option {part:?}"));
        }
    }
    Ok(class)
}

fn configs(args: &Args) -> Result<Vec<keepsim::ClusterConfig>, String> {
    let ttl = parse_duration(&args.blob_signing_ttl)?;
    let trash_lifetime = parse_duration(&args.blob_trash_lifetime)?;
    let classes: Vec<StorageClass> = args
        .storage_classes
        .iter()
        .map(|c| parse_class(c))
        .collect::<Result<_, _>>()?;
    let block_set = match (&args.source_mix, &args.source_sizes) {
        (Some(_), Some(_)) => {
            return Err("--source-mix and --source-sizes exclude each other".into())
        }
        (Some(total), None) => Some(BlockSizes::Mix {
            total_bytes: parse_size(total)?,
        }),
        (None, Some(list)) => Some(BlockSizes::List(parse_sizes(list)?)),
        (None, None) => None,
    };
    let index_only = match (args.index_only_source, args.index_only_destination) {
        (Some(src), Some(dst)) => Some(keepsim::IndexUniverseSpec::with_overlap(
            args.seed,
            src,
            dst,
            args.index_only_overlap,
            args.index_only_replicas,
        )),
        (None, None) => None,
        _ => return Err("--index-only-source and --index-only-destination go together".into()),
    };
    if index_only.is_some() && args.clusters.len() != 2 {
        return Err("index-only mode needs exactly two clusters".into());
    }
    let mut out = Vec::new();
    for (i, id) in args.clusters.iter().enumerate() {
        if id.len() != 5 || !id.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(format!("cluster id {id:?} must be 5 letters or digits"));
        }
        let mut config = keepsim::ClusterConfig::new(id, args.keepstores);
        config.mounts_per_keepstore = args.mounts;
        config.shared_mounts = (0..args.shared_mounts)
            .map(|_| SharedMount {
                keepstores: (0..args.keepstores).collect(),
                replication: 1,
                classes: Vec::new(),
            })
            .collect();
        config.tls = args.tls;
        config.blob_signing = !args.no_signing;
        config.blob_signing_ttl = ttl;
        config.blob_trash = !args.no_blob_trash;
        config.blob_trash_lifetime = trash_lifetime;
        config.blob_replicate_concurrency = args.replicate_concurrency;
        config.blob_trash_concurrency = args.trash_concurrency;
        if !classes.is_empty() {
            config.storage_classes = classes.clone();
        }
        config.mount_classes = args
            .mount_classes
            .iter()
            .map(|l| {
                l.split(',')
                    .map(|c| c.trim().to_string())
                    .filter(|c| !c.is_empty())
                    .collect()
            })
            .collect();
        config.config_exports_private = !args.real_config_export;
        config.max_concurrent = args.max_concurrent;
        config.max_queued = args.max_queued;
        if args.shared_signing_key {
            if let Some(first) = out.first() {
                let first: &keepsim::ClusterConfig = first;
                config.blob_signing_key = first.blob_signing_key.clone();
                config.blob_signing_ttl = first.blob_signing_ttl;
            }
        }
        config.data_dir = args.data_dir.as_ref().map(|d| d.join(id));
        config.digest_only = args.digest_only && i > 0;
        config.bench_serving = args.bench_serving;
        if i < args.synthetic_clusters && args.synthetic > 0 {
            config.synthetic = Some((args.synthetic, args.synthetic_size, args.seed));
        }
        if i == 0 {
            config.block_set = block_set.clone().map(|sizes| BlockSetConfig {
                sizes,
                seed: args.seed,
                replicas: args.source_replicas,
            });
        }
        if let Some(spec) = &index_only {
            config.index_only = Some(IndexOnlyConfig {
                spec: spec.clone(),
                side: if i == 0 {
                    IndexSide::Source
                } else {
                    IndexSide::Destination
                },
            });
        }
        out.push(config);
    }
    Ok(out)
}

fn main() {
    let args = Args::parse();
    let configs = match configs(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("keepsim: {e}");
            std::process::exit(2);
        }
    };
    if args.bench_serving {
        eprintln!("keepsim: BENCHMARK-SERVING MODE: blocks served from memory, PUT bodies not MD5-checked");
    }
    let mut clusters = Vec::new();
    for config in configs {
        let started = std::time::Instant::now();
        match keepsim::Cluster::start(config) {
            Ok(c) => {
                if let Some(set) = &c.block_set {
                    eprintln!(
                        "keepsim: cluster {}: {} synthetic blocks, {} bytes, hashed in {:.1}s",
                        c.config.id,
                        set.len(),
                        set.total_bytes(),
                        started.elapsed().as_secs_f64()
                    );
                }
                clusters.push(c);
            }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parsers() {
        assert_eq!(parse_size("64MiB"), Ok(64 << 20));
        assert_eq!(parse_size("10G"), Ok(10 << 30));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert!(parse_size("3 parsecs").is_err());
        assert_eq!(parse_duration("336h"), Ok(1_209_600));
        assert_eq!(parse_duration("1h30m"), Ok(5400));
        assert_eq!(parse_duration("90"), Ok(90));
        assert!(parse_duration("5d").is_err());
        assert_eq!(parse_sizes("1MiBx2,10"), Ok(vec![1 << 20, 1 << 20, 10]));
        let c = parse_class("hot:default:priority=5").expect("class");
        assert_eq!(c, StorageClass::new("hot", true, 5));
    }
}
