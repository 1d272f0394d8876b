//! keepsim: a keepstore and Arvados API-server simulator, faithful to the real keepstore's
//! wire behaviour (`shared/keep-protocol.md` §5), for keepmover's tests, benches and demo.
//! Each [`Cluster`] owns a tokio runtime on its own threads, so it can be started from plain
//! synchronous code (tests, the demo) and stops when dropped.

/// The protocol and keepmover's MD5 (its lanes are faster than md-5, so verifying PUT bodies
/// is not what limits a benchmark), from the crate keepmover itself uses.
pub use keep_proto::{hash, keep};

mod body;
mod fetch;
pub mod keepstore;
pub mod pull;
pub mod store;
mod tls;
mod verify;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use md5::{Digest, Md5};

pub use keepstore::{Faults, Keepstore, KeepstorePolicy};
pub use store::{pseudo_random_bytes, Mount, Storage, Synthetic};

use keep::locator::BlockHash;

/// How to build one simulated cluster.
#[derive(Clone, Debug)]
pub struct ClusterConfig {
    /// Five characters, e.g. `zzzzz`.
    pub id: String,
    pub keepstores: usize,
    pub mounts_per_keepstore: usize,
    pub mount_replication: u32,
    pub system_root_token: String,
    pub blob_signing_key: String,
    pub blob_signing: bool,
    pub blob_signing_ttl: u64,
    pub default_replication: u32,
    pub max_concurrent: usize,
    pub max_queued: usize,
    pub tls: bool,
    /// `None` = memory; `Some(dir)` = one subdirectory per mount under `dir`.
    pub data_dir: Option<PathBuf>,
    /// Synthetic blocks per keepstore: (count, size, seed).
    pub synthetic: Option<(u32, u32, u64)>,
    /// `Collections.BlobReplicateConcurrency`: pull workers per keepstore (default 4).
    pub blob_replicate_concurrency: usize,
}

impl ClusterConfig {
    /// Defaults like a small real cluster: signing on, 2 replicas, 64 concurrent requests.
    pub fn new(id: &str, keepstores: usize) -> ClusterConfig {
        ClusterConfig {
            id: id.to_string(),
            keepstores,
            mounts_per_keepstore: 1,
            mount_replication: 1,
            system_root_token: format!("{id}-systemroottoken-{}", random_alnum(20)),
            blob_signing_key: format!("{id}-signingkey-{}", random_alnum(32)),
            blob_signing: true,
            blob_signing_ttl: 1_209_600,
            default_replication: 2,
            max_concurrent: 64,
            max_queued: 128,
            tls: false,
            data_dir: None,
            synthetic: None,
            blob_replicate_concurrency: 4,
        }
    }
}

fn random_alnum(n: usize) -> String {
    (0..n)
        .map(|_| char::from(b"abcdefghijklmnopqrstuvwxyz0123456789"[rand::random_range(0..36)]))
        .collect()
}

/// A running simulated cluster.
pub struct Cluster {
    pub config: ClusterConfig,
    pub keepstores: Vec<Arc<Keepstore>>,
    pub keepstore_ports: Vec<u16>,
    pub api_port: u16,
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

type Acceptor = Option<tokio_rustls::TlsAcceptor>;

async fn serve_connection<F, Fut>(stream: tokio::net::TcpStream, acceptor: Acceptor, handler: F)
where
    F: Fn(hyper::Request<hyper::body::Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = hyper::Response<body::SimBody>> + Send + 'static,
{
    let _ = stream.set_nodelay(true);
    let service = service_fn(move |req| {
        let handler = handler.clone();
        async move { Ok::<_, std::convert::Infallible>(handler(req).await) }
    });
    let builder = hyper::server::conn::http1::Builder::new();
    match acceptor {
        Some(acceptor) => {
            if let Ok(tls) = acceptor.accept(stream).await {
                let _ = builder.serve_connection(TokioIo::new(tls), service).await;
            }
        }
        None => {
            let _ = builder
                .serve_connection(TokioIo::new(stream), service)
                .await;
        }
    }
}

impl Cluster {
    /// Starts the cluster's keepstores and API server on ephemeral loopback ports.
    pub fn start(config: ClusterConfig) -> Result<Cluster, String> {
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
        let policy = KeepstorePolicy {
            system_root_token: config.system_root_token.clone(),
            blob_signing_key: config.blob_signing_key.clone(),
            blob_signing: config.blob_signing,
            blob_signing_ttl: config.blob_signing_ttl,
            max_concurrent: config.max_concurrent,
            max_queued: config.max_queued,
            blob_replicate_concurrency: config.blob_replicate_concurrency,
        };
        let mut keepstores = Vec::new();
        let mut keepstore_ports = Vec::new();
        for k in 0..config.keepstores {
            let mut mounts = Vec::new();
            for m in 0..config.mounts_per_keepstore {
                let uuid = format!("{}-nyw5e-{:015}", config.id, k * 100 + m);
                let storage = match &config.data_dir {
                    Some(dir) => Storage::Directory(dir.join(&uuid)),
                    None => Storage::Memory,
                };
                mounts.push(Arc::new(
                    Mount::new(uuid, config.mount_replication, storage)
                        .map_err(|e| format!("creating mount: {e}"))?,
                ));
            }
            let synthetic = config
                .synthetic
                .map(|(n, size, seed)| Synthetic::new(n, size, seed ^ k as u64));
            let uuid = format!("{}-bi6l4-{:015}", config.id, k);
            let keepstore = Arc::new(Keepstore::new(uuid, mounts, synthetic, policy.clone()));
            let listener = runtime
                .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
                .map_err(|e| format!("binding keepstore port: {e}"))?;
            let port = listener.local_addr().map_err(|e| e.to_string())?.port();
            let scheme = if config.tls { "https" } else { "http" };
            if let Ok(mut url) = keepstore.url.lock() {
                *url = format!("{scheme}://127.0.0.1:{port}");
            }
            let ks = keepstore.clone();
            let acceptor = acceptor.clone();
            runtime.spawn(async move {
                loop {
                    let Ok((stream, _)) = listener.accept().await else {
                        continue;
                    };
                    if ks.faults().down {
                        drop(stream);
                        continue;
                    }
                    let ks = ks.clone();
                    let acceptor = acceptor.clone();
                    tokio::spawn(serve_connection(stream, acceptor, move |req| {
                        ks.clone().handle(req)
                    }));
                }
            });
            keepstores.push(keepstore);
            keepstore_ports.push(port);
        }
        let api_listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .map_err(|e| format!("binding API port: {e}"))?;
        let api_port = api_listener.local_addr().map_err(|e| e.to_string())?.port();
        let mut cluster = Cluster {
            config,
            keepstores,
            keepstore_ports,
            api_port,
            runtime: None,
        };
        let api = Arc::new(ApiDocuments {
            token: cluster.config.system_root_token.clone(),
            services: cluster.keep_services_json(),
            discovery: serde_json::json!({
                "defaultCollectionReplication": cluster.config.default_replication,
                "blobSignatureTtl": cluster.config.blob_signing_ttl,
            })
            .to_string(),
            config: serde_json::json!({"ClusterID": cluster.config.id, "StorageClasses": {"default": {"Default": true}}}).to_string(),
        });
        runtime.spawn(async move {
            loop {
                let Ok((stream, _)) = api_listener.accept().await else {
                    continue;
                };
                let api = api.clone();
                let acceptor = api_acceptor.clone();
                tokio::spawn(serve_connection(stream, acceptor, move |req| {
                    let api = api.clone();
                    async move { api.answer(&req) }
                }));
            }
        });
        cluster.runtime = Some(runtime);
        Ok(cluster)
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
        Ok(serde_json::json!({
            "id": self.config.id,
            "api_host": self.api_host(),
            "tls": self.config.tls,
            "system_root_token": self.config.system_root_token,
            "blob_signing": self.config.blob_signing,
            "blob_signing_key": self.config.blob_signing_key,
            "blob_signing_ttl_secs": self.config.blob_signing_ttl,
            "default_replication": self.config.default_replication,
            "settings_file": settings,
            "keep_services_json_file": services,
            "keepstores": (0..self.keepstores.len()).map(|i| serde_json::json!({
                "uuid": self.keepstores[i].uuid, "url": self.keepstore_url(i),
                "mounts": self.keepstores[i].mounts.iter().map(|m| m.uuid.clone()).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
        }))
    }

    /// Stores `data` directly on keepstore `server` (first mount in its order, or `mount`).
    pub fn put_block(&self, server: usize, data: &[u8]) -> Result<String, String> {
        let hash = BlockHash(Md5::digest(data).into());
        self.keepstores[server]
            .store(hash, Bytes::copy_from_slice(data), None)
            .map_err(|status| format!("store failed with {status}"))?;
        Ok(format!("{hash}+{}", data.len()))
    }

    /// Stores `data` on a given mount of keepstore `server`.
    pub fn put_block_on_mount(
        &self,
        server: usize,
        mount: usize,
        data: &[u8],
    ) -> Result<String, String> {
        let hash = BlockHash(Md5::digest(data).into());
        self.keepstores[server].mounts[mount]
            .put(hash, Bytes::copy_from_slice(data))
            .map_err(|_| "mount put failed".to_string())?;
        Ok(format!("{hash}+{}", data.len()))
    }

    /// Replaces a stored block's bytes with wrong ones (a corrupt replica).
    pub fn corrupt_block(&self, server: usize, hash_hex: &str) -> bool {
        let Ok(hash) = BlockHash::from_hex(&hash_hex[..32.min(hash_hex.len())]) else {
            return false;
        };
        let mut done = false;
        for m in &self.keepstores[server].mounts {
            if let Some(data) = m.get(&hash) {
                let mut bad = data.to_vec();
                if let Some(b) = bad.first_mut() {
                    *b ^= 0xff;
                }
                m.overwrite_unchecked(&hash, Bytes::from(bad));
                done = true;
            }
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

    /// Reads a block back from keepstore `server`, MD5-checked by the caller.
    pub fn get_block(&self, server: usize, hash_hex: &str) -> Option<Bytes> {
        let hash = BlockHash::from_hex(hash_hex.get(..32)?).ok()?;
        self.keepstores[server].find(&hash).map(|(d, _)| d)
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

/// The API server's three documents.
struct ApiDocuments {
    token: String,
    services: String,
    discovery: String,
    config: String,
}

impl ApiDocuments {
    fn answer<B>(&self, req: &hyper::Request<B>) -> hyper::Response<body::SimBody> {
        let path = req.uri().path();
        let json = |status: u16, text: String| {
            let mut r = hyper::Response::new(body::SimBody::full(text));
            *r.status_mut() = hyper::StatusCode::from_u16(status).unwrap_or(hyper::StatusCode::OK);
            r.headers_mut().insert(
                "content-type",
                hyper::header::HeaderValue::from_static("application/json"),
            );
            r
        };
        if path == "/discovery/v1/apis/arvados/v1/rest" {
            return json(200, self.discovery.clone());
        }
        if keepstore::request_token(req).as_deref() != Some(self.token.as_str()) {
            return json(401, r#"{"errors":["Not logged in"]}"#.to_string());
        }
        match path {
            "/arvados/v1/keep_services/accessible" => json(200, self.services.clone()),
            "/arvados/v1/config" => json(200, self.config.clone()),
            _ => json(404, r#"{"errors":["Path not found"]}"#.to_string()),
        }
    }
}

/// Writes `cluster.json` describing `clusters` into `dir`, plus each cluster's files.
pub fn write_cluster_files(dir: &Path, clusters: &[&Cluster]) -> std::io::Result<PathBuf> {
    let entries: Vec<serde_json::Value> = clusters
        .iter()
        .map(|c| c.write_files(dir))
        .collect::<Result<_, _>>()?;
    let path = dir.join("cluster.json");
    std::fs::write(
        &path,
        serde_json::to_string_pretty(&serde_json::json!({"clusters": entries}))?,
    )?;
    Ok(path)
}
