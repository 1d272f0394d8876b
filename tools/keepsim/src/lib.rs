//! keepsim: a keepstore and Arvados API-server simulator, faithful to the real keepstore's
//! wire behaviour (`shared/keep-protocol.md` §5), for keepmover's tests, benches and demo.
//! Each [`Cluster`] owns a tokio runtime on its own threads, so it can be started from plain
//! synchronous code (tests, the demo) and stops when dropped.
//!
//! What a cluster can be made of ([`ClusterConfig`]):
//! * keepstores with local mounts in memory, in directories (keepstore's layout) or
//!   digest-only (hash, size, mtime: a demo destination of any size), plus optional mounts
//!   shared by several keepstores (an S3 bucket behind every keepstore);
//! * storage classes per mount, with priorities, honoured by PUT;
//! * a synthetic block set ([`BlockSetConfig`]) placed where a Keep client would have
//!   written it, served by generating the data on demand ([`blockset`]);
//! * an index-only universe ([`IndexOnlyConfig`]): up to billions of locators listed, nothing
//!   stored, with the exact expected diff between two clusters ([`indexgen`]);
//! * keepstore's trash and pull machinery, faults ([`Faults`]) and restarts.
//!
//! Benchmark-serving mode ([`ClusterConfig::bench_serving`], off by default) takes keepsim
//! out of the way of CPU measurements: synthetic blocks are generated once into memory and
//! served by reference, and PUT bodies are not MD5-checked.

/// The protocol and keepmover's MD5 (its lanes are faster than md-5, so verifying PUT bodies
/// is not what limits a benchmark), from the crate keepmover itself uses.
pub use keep_proto::{hash, keep};

pub mod api;
pub mod blockset;
mod body;
mod conn;
pub mod faults;
mod fetch;
pub mod keepstore;
pub mod store;
mod tls;
mod verify;
pub mod workers;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

pub use api::StorageClass;
pub use blockset::{BlockSet, BlockSetConfig, BlockSizes};
pub use faults::{Faults, LieReplicas};
pub use keepstore::{Keepstore, KeepstorePolicy, KeepstoreStats};
pub use store::{pseudo_random_bytes, Copy, Mount, Storage};
pub use workers::WorkerStats;

use keep::locator::BlockHash;

/// A mount shared by several keepstores (one store behind them all, like an S3 bucket).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SharedMount {
    /// Indexes of the keepstores that expose it.
    pub keepstores: Vec<usize>,
    pub replication: u32,
    /// Storage classes (empty: `default`).
    pub classes: Vec<String>,
}

/// How to build one simulated cluster. Start from [`ClusterConfig::new`] and change fields.
#[derive(Clone, Debug)]
pub struct ClusterConfig {
    /// Five characters, e.g. `zzzzz`.
    pub id: String,
    pub keepstores: usize,
    /// Local mounts per keepstore (uuid `<id>-nyw5e-<k*100+m, 15 digits>`).
    pub mounts_per_keepstore: usize,
    pub mount_replication: u32,
    /// Storage classes of local mount `m` of every keepstore: `mount_classes[m % len]`
    /// (empty list or empty entry: `default`).
    pub mount_classes: Vec<Vec<String>>,
    /// Mounts shared by several keepstores (uuid `<id>-nyw5e-999<12 digits>`).
    pub shared_mounts: Vec<SharedMount>,
    /// The cluster's `StorageClasses` (default: `default`, Default true, priority 0).
    pub storage_classes: Vec<StorageClass>,
    pub system_root_token: String,
    pub blob_signing_key: String,
    pub blob_signing: bool,
    /// `Collections.BlobSigningTTL`, seconds (default 336 h).
    pub blob_signing_ttl: u64,
    /// `Collections.BlobTrash` (default true, as Arvados).
    pub blob_trash: bool,
    /// `Collections.BlobTrashLifetime`, seconds (default 336 h).
    pub blob_trash_lifetime: u64,
    /// `Collections.BlobTrashConcurrency` (default 4).
    pub blob_trash_concurrency: usize,
    /// `Collections.BlobReplicateConcurrency`: pull workers (default 4).
    pub blob_replicate_concurrency: usize,
    /// `Collections.BalanceTrashLimit` (only exported in the config, default 100000).
    pub balance_trash_limit: u64,
    /// `/arvados/v1/config` also carries keys a real API server does not export
    /// (`BlobTrash`, `BlobTrashLifetime`, `BalanceTrashLimit`, ...). Default true; false
    /// gives exactly what lib/config/export.go lets through.
    pub config_exports_private: bool,
    pub default_replication: u32,
    pub max_concurrent: usize,
    pub max_queued: usize,
    pub tls: bool,
    /// `None` = memory; `Some(dir)` = one subdirectory per mount under `dir`.
    pub data_dir: Option<PathBuf>,
    /// Keep only hash, size and mtime of written blocks (PUT bodies MD5-checked as they
    /// stream in, never collected; GETs of them answer 422). Overrides `data_dir`.
    pub digest_only: bool,
    /// Synthetic blocks per keepstore: (count, size, seed): keepstore `k` holds `count`
    /// blocks of `size` bytes made from `seed ^ k`, on its first mount (listed, served,
    /// not stored). Kept for the `--synthetic` flag; see `block_set` for a cluster-wide set.
    pub synthetic: Option<(u32, u32, u64)>,
    /// A cluster-wide synthetic block set placed in rendezvous order.
    pub block_set: Option<BlockSetConfig>,
    /// An index-only universe: listings only, nothing stored.
    pub index_only: Option<IndexOnlyConfig>,
    /// BENCHMARK ONLY (off by default): synthetic blocks are pregenerated into memory and
    /// served by reference, and PUT bodies are trusted without an MD5 check (digest-only
    /// storage then just counts bytes). Makes the cluster cheap to serve, and unable to
    /// catch a client that sends wrong data.
    pub bench_serving: bool,
}

pub use indexgen::{
    ExpectedDiff, IndexOnlyConfig, IndexSide, IndexUniverse, IndexUniverseSpec, KeepstoreListing,
    ListingMount,
};

mod indexgen;

impl ClusterConfig {
    /// Defaults like a small real cluster: signing on, 2 replicas, 64 concurrent requests.
    pub fn new(id: &str, keepstores: usize) -> ClusterConfig {
        ClusterConfig {
            id: id.to_string(),
            keepstores,
            mounts_per_keepstore: 1,
            mount_replication: 1,
            mount_classes: Vec::new(),
            shared_mounts: Vec::new(),
            storage_classes: vec![StorageClass::new("default", true, 0)],
            system_root_token: format!("{id}-systemroottoken-{}", random_alnum(20)),
            blob_signing_key: format!("{id}-signingkey-{}", random_alnum(32)),
            blob_signing: true,
            blob_signing_ttl: 1_209_600,
            blob_trash: true,
            blob_trash_lifetime: 1_209_600,
            blob_trash_concurrency: 4,
            blob_replicate_concurrency: 4,
            balance_trash_limit: 100_000,
            config_exports_private: true,
            default_replication: 2,
            max_concurrent: 64,
            max_queued: 128,
            tls: false,
            data_dir: None,
            digest_only: false,
            synthetic: None,
            block_set: None,
            index_only: None,
            bench_serving: false,
        }
    }

    fn policy(&self) -> KeepstorePolicy {
        KeepstorePolicy {
            system_root_token: self.system_root_token.clone(),
            blob_signing_key: self.blob_signing_key.clone(),
            blob_signing: self.blob_signing,
            blob_signing_ttl: self.blob_signing_ttl,
            max_concurrent: self.max_concurrent,
            max_queued: self.max_queued,
            blob_trash: self.blob_trash,
            blob_trash_lifetime: self.blob_trash_lifetime,
            blob_trash_concurrency: self.blob_trash_concurrency,
            blob_replicate_concurrency: self.blob_replicate_concurrency,
            put_md5: !self.bench_serving,
        }
    }

    fn storage_for(&self, uuid: &str) -> Storage {
        if self.digest_only {
            return Storage::Digest;
        }
        match &self.data_dir {
            Some(dir) => Storage::Directory(dir.join(uuid)),
            None => Storage::Memory,
        }
    }

    /// A mount's priority: the highest of its classes' priorities above 0 (keepstore.go).
    fn priority_of(&self, classes: &[String]) -> i32 {
        classes
            .iter()
            .filter_map(|c| self.storage_classes.iter().find(|s| &s.name == c))
            .map(|s| s.priority)
            .fold(0, i32::max)
    }
}

fn random_alnum(n: usize) -> String {
    (0..n)
        .map(|_| char::from(b"abcdefghijklmnopqrstuvwxyz0123456789"[rand::random_range(0..36)]))
        .collect()
}

fn classes_or_default(classes: &[String]) -> Vec<String> {
    if classes.is_empty() {
        vec!["default".to_string()]
    } else {
        classes.to_vec()
    }
}

/// One copy of a block, as [`Cluster::locate`] finds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Holder {
    /// Index of the keepstore (a block on a shared mount is held by every keepstore that
    /// exposes the mount).
    pub keepstore: usize,
    pub mount: String,
    pub size: u64,
    pub mtime_ns: i64,
}

/// A running simulated cluster.
pub struct Cluster {
    pub config: ClusterConfig,
    pub keepstores: Vec<Arc<Keepstore>>,
    pub keepstore_ports: Vec<u16>,
    pub api_port: u16,
    /// The cluster-wide synthetic block set, if any.
    pub block_set: Option<Arc<BlockSet>>,
    /// The index-only universe, if any.
    pub index_universe: Option<Arc<IndexUniverse>>,
    listeners: Vec<Arc<conn::Listener>>,
    acceptors: Vec<conn::Acceptor>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("id", &self.config.id)
            .field("api_port", &self.api_port)
            .finish()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

/// What a keepstore's listener does with each connection: the `down` fault resets it at
/// once, otherwise it is served until it ends or the keepstore restarts.
fn keepstore_acceptor(
    ks: Arc<Keepstore>,
    tls: Option<tokio_rustls::TlsAcceptor>,
) -> conn::Acceptor {
    Arc::new(move |stream, shutdown| {
        if ks.faults().down {
            conn::set_reset_on_close(&stream);
            drop(stream);
            return;
        }
        let ks = ks.clone();
        tokio::spawn(conn::serve(
            stream,
            tls.clone(),
            shutdown,
            move |req, control| ks.clone().handle(req, control),
        ));
    })
}

/// Builds every keepstore's mounts: local ones, then the shared ones it exposes.
/// The uuid of the cluster's shared mount `j`.
fn shared_mount_uuid(config: &ClusterConfig, j: usize) -> String {
    format!("{}-nyw5e-999{:012}", config.id, j)
}

fn build_mounts(config: &ClusterConfig) -> Result<Vec<Vec<Arc<Mount>>>, String> {
    let mut shared = Vec::new();
    for (j, s) in config.shared_mounts.iter().enumerate() {
        let uuid = shared_mount_uuid(config, j);
        let classes = classes_or_default(&s.classes);
        let priority = config.priority_of(&classes);
        let mount = Mount::with_classes(
            uuid.clone(),
            s.replication,
            config.storage_for(&uuid),
            classes,
            priority,
        )
        .map_err(|e| format!("creating mount {uuid}: {e}"))?;
        shared.push(Arc::new(mount.shared()));
    }
    let mut all = Vec::new();
    for k in 0..config.keepstores {
        let mut mounts = Vec::new();
        for m in 0..config.mounts_per_keepstore {
            let uuid = format!("{}-nyw5e-{:015}", config.id, k * 100 + m);
            let classes = match config.mount_classes.len() {
                0 => classes_or_default(&[]),
                n => classes_or_default(&config.mount_classes[m % n]),
            };
            let priority = config.priority_of(&classes);
            let mount = Mount::with_classes(
                uuid.clone(),
                config.mount_replication,
                config.storage_for(&uuid),
                classes,
                priority,
            )
            .map_err(|e| format!("creating mount {uuid}: {e}"))?;
            mounts.push(Arc::new(mount));
        }
        for (j, s) in config.shared_mounts.iter().enumerate() {
            if s.keepstores.contains(&k) {
                mounts.push(shared[j].clone());
            }
        }
        if mounts.is_empty() {
            return Err(format!("keepstore {k} has no mounts"));
        }
        all.push(mounts);
    }
    Ok(all)
}

/// Places every block of `set` on the first `replicas` keepstores of its Go rendezvous
/// order, on the first writable mount of each in keepstore order.
fn place_block_set(set: &Arc<BlockSet>, keepstores: &[Arc<Keepstore>], replicas: usize) {
    let uuids: Vec<&str> = keepstores.iter().map(|k| k.uuid.as_str()).collect();
    let mut members: HashMap<*const Mount, (Arc<Mount>, Vec<u32>)> = HashMap::new();
    const BATCH: usize = 1 << 14;
    let mut pos = 0;
    while pos < set.len() {
        let end = (pos + BATCH).min(set.len());
        let hexes: Vec<String> = (pos..end).map(|p| set.at(p).0.to_string()).collect();
        let refs: Vec<&str> = hexes.iter().map(String::as_str).collect();
        let orders = keep::rendezvous::probe_orders_go(&refs, &uuids);
        for (offset, order) in orders.into_iter().enumerate() {
            let p = pos + offset;
            let (hash, _) = set.at(p);
            for &k in order.iter().take(replicas) {
                if let Some(mount) = keepstores[k]
                    .mount_order(&hash)
                    .into_iter()
                    .find(|m| m.is_writable())
                {
                    members
                        .entry(Arc::as_ptr(mount))
                        .or_insert_with(|| (mount.clone(), Vec::new()))
                        .1
                        .push(p as u32);
                }
            }
        }
        pos = end;
    }
    for (_, (mount, list)) in members {
        mount.attach_synthetic(set.clone(), list);
    }
}

impl Cluster {
    /// Starts the cluster's keepstores and API server on ephemeral loopback ports. With a
    /// block set, this first hashes every block (one MD5 pass over the set, all cores).
    pub fn start(config: ClusterConfig) -> Result<Cluster, String> {
        if config.id.len() != 5 {
            return Err(format!("cluster id {:?} must be 5 characters", config.id));
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name(format!("keepsim-{}", config.id))
            .enable_all()
            .build()
            .map_err(|e| format!("starting keepsim runtime: {e}"))?;
        // The API server is always HTTPS, as Arvados' is (clients build https:// URLs from
        // ARVADOS_API_HOST); keepstores use TLS only when asked.
        let api_acceptor = Some(tls::acceptor()?);
        let acceptor = if config.tls {
            api_acceptor.clone()
        } else {
            None
        };
        let policy = config.policy();
        let mounts = build_mounts(&config)?;
        let universe = config
            .index_only
            .as_ref()
            .map(|c| Arc::new(IndexUniverse::new(&c.spec)));
        let mut keepstores = Vec::new();
        for (k, mounts) in mounts.into_iter().enumerate() {
            let uuid = format!("{}-bi6l4-{:015}", config.id, k);
            let mut keepstore = Keepstore::new(uuid, mounts, policy.clone());
            if let (Some(universe), Some(c)) = (&universe, &config.index_only) {
                let shared = config.shared_mounts.len();
                let mounts = keepstore
                    .mounts
                    .iter()
                    .map(|m| indexgen::ListingMount {
                        uuid: m.uuid.clone(),
                        shared: (0..shared)
                            .find(|&j| shared_mount_uuid(&config, j) == m.uuid)
                            .map(|j| (j, shared)),
                    })
                    .collect();
                keepstore.index_only = Some(indexgen::KeepstoreListing::new(
                    universe.clone(),
                    c.side,
                    k,
                    config.keepstores,
                    mounts,
                    shared > 0,
                ));
            }
            if let Some((n, size, seed)) = config.synthetic {
                let set = Arc::new(BlockSet::new(
                    &BlockSizes::List(vec![size; n as usize]),
                    seed ^ k as u64,
                ));
                if config.bench_serving {
                    set.pregenerate();
                }
                let all: Vec<u32> = (0..set.len() as u32).collect();
                keepstore.mounts[0].attach_synthetic(set, all);
            }
            keepstores.push(Arc::new(keepstore));
        }
        let block_set = config.block_set.as_ref().map(|c| {
            let set = Arc::new(BlockSet::new(&c.sizes, c.seed));
            if config.bench_serving {
                set.pregenerate();
            }
            place_block_set(&set, &keepstores, c.replicas.max(1));
            set
        });
        let mut keepstore_ports = Vec::new();
        let mut listeners = Vec::new();
        let mut acceptors = Vec::new();
        for keepstore in &keepstores {
            let (listener, socket) = runtime
                .block_on(conn::Listener::bind(0))
                .map_err(|e| format!("binding keepstore port: {e}"))?;
            let scheme = if config.tls { "https" } else { "http" };
            if let Ok(mut url) = keepstore.url.lock() {
                *url = format!("{scheme}://127.0.0.1:{}", listener.port);
            }
            let on_accept = keepstore_acceptor(keepstore.clone(), acceptor.clone());
            {
                let _guard = runtime.enter();
                listener.accept_on(socket, on_accept.clone());
                workers::start(keepstore);
            }
            let restart = {
                let listener = listener.clone();
                let handle = runtime.handle().clone();
                let on_accept = on_accept.clone();
                let ks = keepstore.clone();
                Arc::new(move |pause: Duration| {
                    listener.stop();
                    ks.on_restart();
                    listener.restart_after(&handle, pause, on_accept.clone());
                })
            };
            let _ = keepstore.restarter.set(restart);
            keepstore_ports.push(listener.port);
            listeners.push(listener);
            acceptors.push(on_accept);
        }
        let (api_listener, api_socket) = runtime
            .block_on(conn::Listener::bind(0))
            .map_err(|e| format!("binding API port: {e}"))?;
        let mut cluster = Cluster {
            config,
            keepstores,
            keepstore_ports,
            api_port: api_listener.port,
            block_set,
            index_universe: universe,
            listeners,
            acceptors,
            runtime: None,
        };
        let api = Arc::new(api::ApiServer::new(&cluster.api_settings()));
        let api_accept: conn::Acceptor = Arc::new(move |stream, shutdown| {
            let api = api.clone();
            tokio::spawn(conn::serve(
                stream,
                api_acceptor.clone(),
                shutdown,
                move |req, _control| {
                    let api = api.clone();
                    async move { Ok(api.answer(&req)) }
                },
            ));
        });
        {
            let _guard = runtime.enter();
            api_listener.accept_on(api_socket, api_accept);
        }
        cluster.listeners.push(api_listener);
        cluster.runtime = Some(runtime);
        Ok(cluster)
    }

    fn api_settings(&self) -> api::ApiSettings {
        let c = &self.config;
        api::ApiSettings {
            cluster_id: c.id.clone(),
            system_root_token: c.system_root_token.clone(),
            port: self.api_port,
            default_replication: c.default_replication,
            blob_signing: c.blob_signing,
            blob_signing_ttl: c.blob_signing_ttl,
            blob_trash: c.blob_trash,
            blob_trash_lifetime: c.blob_trash_lifetime,
            balance_trash_limit: c.balance_trash_limit,
            blob_replicate_concurrency: c.blob_replicate_concurrency,
            blob_trash_concurrency: c.blob_trash_concurrency,
            storage_classes: c.storage_classes.clone(),
            export_private: c.config_exports_private,
            services_json: self.keep_services_json(),
        }
    }

    /// Restarts keepstore `i` as a crashed and restarted keepstore process would: its
    /// listening socket is closed and every open connection to it is cut (FIN) before this
    /// returns; its pull and trash queues are emptied (pulls in flight are abandoned);
    /// after `pause` it listens again on the same port. Storage, faults and counters are
    /// kept. Returns at once (see [`Cluster::wait_keepstore_up`]). Also reachable as
    /// `PUT /_keepsim/restart?pause_ms=N` on the keepstore.
    pub fn restart_keepstore(&self, i: usize, pause: Duration) {
        let Some(runtime) = self.runtime.as_ref() else {
            return;
        };
        let listener = &self.listeners[i];
        listener.stop();
        self.keepstores[i].on_restart();
        listener.restart_after(runtime.handle(), pause, self.acceptors[i].clone());
    }

    /// True while keepstore `i` accepts connections (false during a restart's pause).
    pub fn keepstore_is_up(&self, i: usize) -> bool {
        self.listeners[i].is_up()
    }

    /// Waits until keepstore `i` accepts connections again; false after `timeout`.
    pub fn wait_keepstore_up(&self, i: usize, timeout: Duration) -> bool {
        let deadline = std::time::Instant::now() + timeout;
        while std::time::Instant::now() < deadline {
            if self.keepstore_is_up(i) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        self.keepstore_is_up(i)
    }

    fn scheme(&self) -> &'static str {
        if self.config.tls {
            "https"
        } else {
            "http"
        }
    }

    /// `http[s]://127.0.0.1:<port>` of keepstore `i`.
    pub fn keepstore_url(&self, i: usize) -> String {
        format!("{}://127.0.0.1:{}", self.scheme(), self.keepstore_ports[i])
    }

    pub fn keepstore_uuid(&self, i: usize) -> &str {
        &self.keepstores[i].uuid
    }

    /// `127.0.0.1:<port>` (ARVADOS_API_HOST form).
    pub fn api_host(&self) -> String {
        format!("127.0.0.1:{}", self.api_port)
    }

    /// The keep_services list, as `/arvados/v1/keep_services/accessible` returns it.
    pub fn keep_services_json(&self) -> String {
        let items: Vec<serde_json::Value> = (0..self.keepstores.len())
            .map(|i| {
                serde_json::json!({
                    "kind": "arvados#keepService", "uuid": self.keepstores[i].uuid,
                    "owner_uuid": format!("{}-tpzed-000000000000000", self.config.id),
                    "service_host": "127.0.0.1", "service_port": self.keepstore_ports[i],
                    "service_ssl_flag": self.config.tls, "service_type": "disk", "read_only": false,
                })
            })
            .collect();
        serde_json::json!({"kind": "arvados#keepServiceList", "etag": "", "self_link": "", "offset": 0, "limit": items.len(),
            "items_available": items.len(), "items": items})
        .to_string()
    }

    /// A keep-rsync settings file for this cluster (admin token, signing key).
    pub fn settings_file_text(&self) -> String {
        let mut text = format!(
            "ARVADOS_API_HOST={}\nARVADOS_API_TOKEN={}\n",
            self.api_host(),
            self.config.system_root_token
        );
        // keepsim's certificates are self-signed.
        text.push_str("ARVADOS_API_HOST_INSECURE=true\n");
        if self.config.blob_signing {
            text.push_str(&format!(
                "ARVADOS_BLOB_SIGNING_KEY={}\n",
                self.config.blob_signing_key
            ));
        }
        text
    }

    /// Writes `<id>.conf`, `<id>-keep-services.json` into `dir` and returns this cluster's
    /// entry for `cluster.json`.
    pub fn write_files(&self, dir: &Path) -> std::io::Result<serde_json::Value> {
        std::fs::create_dir_all(dir)?;
        let settings = dir.join(format!("{}.conf", self.config.id));
        let services = dir.join(format!("{}-keep-services.json", self.config.id));
        std::fs::write(&settings, self.settings_file_text())?;
        std::fs::write(&services, self.keep_services_json())?;
        let c = &self.config;
        let mut entry = serde_json::json!({
            "id": c.id,
            "api_host": self.api_host(),
            "tls": c.tls,
            "system_root_token": c.system_root_token,
            "blob_signing": c.blob_signing,
            "blob_signing_key": c.blob_signing_key,
            "blob_signing_ttl_secs": c.blob_signing_ttl,
            "blob_trash": c.blob_trash,
            "blob_trash_lifetime_secs": c.blob_trash_lifetime,
            "default_replication": c.default_replication,
            "storage": if c.digest_only { "digest" } else if c.data_dir.is_some() { "directory" } else { "memory" },
            "bench_serving": c.bench_serving,
            "put_md5_verified": !c.bench_serving,
            "settings_file": settings,
            "keep_services_json_file": services,
            "keepstores": (0..self.keepstores.len()).map(|i| serde_json::json!({
                "uuid": self.keepstores[i].uuid, "url": self.keepstore_url(i),
                "mounts": self.keepstores[i].mounts.iter().map(|m| m.uuid.clone()).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
        });
        if c.bench_serving {
            entry["bench_serving_note"] = serde_json::json!(
                "BENCHMARK-ONLY MODE: blocks served from memory by reference, PUT bodies NOT MD5-checked; not a correctness test"
            );
        }
        if let Some(set) = &self.block_set {
            entry["block_set"] = serde_json::json!({
                "blocks": set.len(),
                "bytes": set.total_bytes(),
                "replicas": c.block_set.as_ref().map_or(0, |b| b.replicas),
                "seed": c.block_set.as_ref().map_or(0, |b| b.seed),
                "pregenerated": set.is_pregenerated(),
            });
        }
        if let (Some(universe), Some(ic)) = (&self.index_universe, &c.index_only) {
            entry["index_only"] =
                universe.describe(ic.side, self.keepstores.len(), c.shared_mounts.len());
        }
        Ok(entry)
    }

    /// Stores `data` directly on keepstore `server` as an unclassed PUT would.
    pub fn put_block(&self, server: usize, data: &[u8]) -> Result<String, String> {
        let hash = BlockHash(hash::md5(data));
        self.keepstores[server]
            .store(hash, Bytes::copy_from_slice(data), None)
            .map_err(|status| format!("store failed with {status}"))?;
        Ok(format!("{hash}+{}", data.len()))
    }

    /// Stores `data` on mount `mount` (index in the keepstore's uuid-sorted mounts).
    pub fn put_block_on_mount(
        &self,
        server: usize,
        mount: usize,
        data: &[u8],
    ) -> Result<String, String> {
        let hash = BlockHash(hash::md5(data));
        let payload = store::Payload::Bytes {
            data: Bytes::copy_from_slice(data),
            verified: true,
        };
        self.keepstores[server].mounts[mount]
            .write(hash, &payload)
            .map_err(|e| format!("mount write failed: {e:?}"))?;
        Ok(format!("{hash}+{}", data.len()))
    }

    /// Replaces every stored copy of a block on keepstore `server` with wrong bytes (a
    /// corrupt replica: first byte flipped; a synthetic copy becomes a corrupt stored one).
    pub fn corrupt_block(&self, server: usize, hash_hex: &str) -> bool {
        let Some(hash) = hash_hex.get(..32).and_then(|h| BlockHash::from_hex(h).ok()) else {
            return false;
        };
        let mut done = false;
        for m in &self.keepstores[server].mounts {
            let data = match m.read(&hash) {
                Some(Copy::Bytes { data, .. }) => data,
                Some(Copy::Synthetic { set, index }) => set
                    .pieces(index)
                    .flat_map(|p| p.to_vec())
                    .collect::<Vec<u8>>()
                    .into(),
                _ => continue,
            };
            let mut bad = data.to_vec();
            match bad.first_mut() {
                Some(b) => *b ^= 0xff,
                None => bad.push(0),
            }
            done |= m.overwrite_unchecked(&hash, Bytes::from(bad));
        }
        done
    }

    /// `hash+size` of every block on keepstore `server` (all mounts, duplicates kept).
    pub fn blocks_on(&self, server: usize) -> Vec<String> {
        self.keepstores[server]
            .mounts
            .iter()
            .flat_map(|m| m.index(""))
            .map(|(h, s, _)| format!("{h}+{s}"))
            .collect()
    }

    /// Reads a block back from keepstore `server` (the first copy in keepstore order),
    /// unchecked; `None` if absent or digest-only.
    pub fn get_block(&self, server: usize, hash_hex: &str) -> Option<Bytes> {
        let hash = BlockHash::from_hex(hash_hex.get(..32)?).ok()?;
        match self.keepstores[server].find(&hash)?.0 {
            Copy::Bytes { data, .. } => Some(data),
            Copy::Synthetic { set, index } => Some(
                set.pieces(index)
                    .flat_map(|p| p.to_vec())
                    .collect::<Vec<u8>>()
                    .into(),
            ),
            Copy::DigestOnly { .. } => None,
        }
    }

    /// Every copy of block `hash_hex` in the cluster: which keepstores (and mounts) hold
    /// it, with what size and mtime. Works for every kind of storage (the demo verifies a
    /// digest-only destination with it).
    pub fn locate(&self, hash_hex: &str) -> Vec<Holder> {
        let Some(hash) = hash_hex.get(..32).and_then(|h| BlockHash::from_hex(h).ok()) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for (k, ks) in self.keepstores.iter().enumerate() {
            for m in &ks.mounts {
                if let Some((size, mtime_ns)) = m.stat(&hash) {
                    out.push(Holder {
                        keepstore: k,
                        mount: m.uuid.clone(),
                        size,
                        mtime_ns,
                    });
                }
            }
        }
        out
    }

    /// Sets the mtime of every copy of `hash_hex` on keepstore `server` to now − `age`
    /// (so trash tests need not wait for a TTL). Returns the copies changed.
    pub fn age_block(&self, server: usize, hash_hex: &str, age: Duration) -> usize {
        match hash_hex.get(..32).and_then(|h| BlockHash::from_hex(h).ok()) {
            Some(hash) => self.keepstores[server].age(&hash, age),
            None => 0,
        }
    }

    /// Pull queue counters of keepstore `server`.
    pub fn pull_stats(&self, server: usize) -> WorkerStats {
        self.keepstores[server].pull_stats()
    }

    /// Trash queue counters of keepstore `server`.
    pub fn trash_stats(&self, server: usize) -> WorkerStats {
        self.keepstores[server].trash_stats()
    }

    /// Requests all keepstores of the cluster have counted (when each was handled).
    pub fn requests(&self) -> usize {
        self.keepstores
            .iter()
            .map(|k| k.requests.load(std::sync::atomic::Ordering::Relaxed))
            .sum()
    }

    /// Of those, the ones that write (PUT, POST, DELETE).
    pub fn writes(&self) -> usize {
        self.keepstores
            .iter()
            .map(|k| k.writes.load(std::sync::atomic::Ordering::Relaxed))
            .sum()
    }

    /// Index listings all keepstores have served, every mount together.
    pub fn index_listings(&self) -> u64 {
        self.keepstores
            .iter()
            .flat_map(|k| k.mounts.iter())
            .map(|m| m.index_requests.load(std::sync::atomic::Ordering::Relaxed))
            .sum()
    }

    /// How many times mount `uuid` was listed (by any keepstore exposing it).
    pub fn mount_index_requests(&self, uuid: &str) -> u64 {
        self.keepstores
            .iter()
            .flat_map(|k| k.mounts.iter())
            .find(|m| m.uuid == uuid)
            .map_or(0, |m| {
                m.index_requests.load(std::sync::atomic::Ordering::Relaxed)
            })
    }

    pub fn set_faults(&self, server: usize, faults: Faults) {
        if let Ok(mut slot) = self.keepstores[server].faults.lock() {
            *slot = faults;
        }
    }

    pub fn set_read_only(&self, server: usize, read_only: bool) {
        for m in &self.keepstores[server].mounts {
            if let Ok(mut r) = m.read_only.write() {
                *r = read_only;
            }
        }
    }

    /// Sets one mount's `ReadOnly` and `AllowTrashWhenReadOnly` (on every keepstore that
    /// exposes it), as an operator draining a volume would; false if no keepstore has it.
    pub fn set_mount_read_only(&self, uuid: &str, read_only: bool, allow_trash: bool) -> bool {
        let mut found = false;
        for m in self.keepstores.iter().flat_map(|k| k.mounts.iter()) {
            if m.uuid == uuid {
                found = true;
                if let Ok(mut r) = m.read_only.write() {
                    *r = read_only;
                }
                if let Ok(mut a) = m.allow_trash_when_read_only.write() {
                    *a = allow_trash;
                }
            }
        }
        found
    }

    /// Limits each mount of `server` to `bytes` (then PUT answers 507).
    pub fn set_capacity(&self, server: usize, bytes: Option<u64>) {
        for m in &self.keepstores[server].mounts {
            if let Ok(mut c) = m.capacity.write() {
                *c = bytes;
            }
        }
    }

    pub fn api_addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.api_port))
    }
}

/// Writes `cluster.json` describing `clusters` into `dir`, plus each cluster's files.
pub fn write_cluster_files(dir: &Path, clusters: &[&Cluster]) -> std::io::Result<PathBuf> {
    let entries: Vec<serde_json::Value> = clusters
        .iter()
        .map(|c| c.write_files(dir))
        .collect::<Result<_, _>>()?;
    let mut doc = serde_json::json!({"clusters": entries});
    if let Some(expected) = indexgen::expected_diff(clusters) {
        doc["index_only_expected"] = expected;
    }
    let path = dir.join("cluster.json");
    std::fs::write(&path, serde_json::to_string_pretty(&doc)?)?;
    Ok(path)
}
