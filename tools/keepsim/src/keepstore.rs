//! One simulated keepstore: the HTTP API of `keep-protocol.md` §5 with the real statuses,
//! bodies and rules of services/keepstore (router.go, keepstore.go, putprogress.go), the
//! request limiter (503 beyond max concurrent + queued), pull and trash queues with their
//! workers ([`crate::workers`]), switchable faults, and keepsim's own control endpoints
//! under `/_keepsim/`.
//!
//! Fidelity notes (what keepstore does, and keepsim with it):
//! * GET with a size hint sends `Content-Length: <hint>` and the stored data in 64 KiB
//!   parts through keepstore's hash-check writer: a copy whose MD5 or length is wrong is
//!   cut short (the part that would complete the block is withheld, then the connection
//!   closes); if not one byte was sent, the answer is 502 `checksum mismatch in stored
//!   data`. Copies known to be good (written after an MD5 check, synthetic) skip the check.
//! * HEAD reads the copy and checks its MD5 (502 on mismatch), except synthetic copies
//!   (correct by construction) and digest-only ones (their MD5 was checked on PUT).
//! * PUT writes by keepstore's rules: mounts in keepstore order (class priority, then
//!   rendezvous); a wanted mount already holding the block is touched and counted;
//!   further mounts are written until every requested class is confirmed on at least one
//!   mount (no classes: one copy); 507 when nothing could be written because every
//!   eligible mount is full or none is in the requested classes, 503 on other failures.
//! * Digest-only keepstores answer block GETs with 422 and an explanation.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use serde::Serialize;
use tokio::sync::Semaphore;

use crate::body::{End, SimBody};
use crate::conn::{Abort, ConnControl};
pub use crate::faults::Faults;
use crate::faults::LieReplicas;
use crate::keep::locator::{parse_keepstore, BlockHash, EMPTY_BLOCK_HASH, MAX_BLOCK_SIZE};
use crate::keep::rendezvous::{go_suffix, weight};
use crate::keep::signature::{sign_locator, verify_locator};
use crate::keep::wire::{header, MountInfo, PullItem, TrashItem};
use crate::store::{now_ns, Copy, Mount, Payload, TrashRules, WriteError};
use crate::workers::{WorkQueue, WorkerStats};

/// Settings shared by all keepstores of a cluster.
#[derive(Clone, Debug)]
pub struct KeepstorePolicy {
    pub system_root_token: String,
    pub blob_signing_key: String,
    pub blob_signing: bool,
    /// `Collections.BlobSigningTTL`, seconds.
    pub blob_signing_ttl: u64,
    pub max_concurrent: usize,
    pub max_queued: usize,
    /// `Collections.BlobTrash`: DELETE and trash lists work (else DELETE is 405 and trash
    /// lists are accepted but never processed).
    pub blob_trash: bool,
    /// `Collections.BlobTrashLifetime`, seconds (0: trashing deletes at once).
    pub blob_trash_lifetime: u64,
    /// `Collections.BlobTrashConcurrency`.
    pub blob_trash_concurrency: usize,
    /// `Collections.BlobReplicateConcurrency` (pull workers).
    pub blob_replicate_concurrency: usize,
    /// Check each PUT body's MD5 against its hash (off only in benchmark-serving mode:
    /// the body is then trusted and, on digest storage, merely counted).
    pub put_md5: bool,
}

impl KeepstorePolicy {
    /// Arvados' defaults with the given token and key.
    pub fn new(system_root_token: &str, blob_signing_key: &str) -> KeepstorePolicy {
        KeepstorePolicy {
            system_root_token: system_root_token.to_string(),
            blob_signing_key: blob_signing_key.to_string(),
            blob_signing: true,
            blob_signing_ttl: 1_209_600,
            max_concurrent: 64,
            max_queued: 128,
            blob_trash: true,
            blob_trash_lifetime: 1_209_600,
            blob_trash_concurrency: 4,
            blob_replicate_concurrency: 4,
            put_md5: true,
        }
    }
}

pub struct Keepstore {
    pub uuid: String,
    /// Sorted by uuid (keepstore's mountsR).
    pub mounts: Vec<Arc<Mount>>,
    pub policy: KeepstorePolicy,
    pub faults: Mutex<Faults>,
    limiter: Arc<Semaphore>,
    waiting_or_running: Arc<AtomicUsize>,
    /// Requests received (for tests).
    pub requests: AtomicUsize,
    /// Requests that could change what is stored (any method but GET, HEAD and OPTIONS:
    /// PUT, DELETE, TOUCH, pull, trash, untrash), so a test can prove a tool only read.
    pub writes: AtomicUsize,
    pub url: Mutex<String>,
    /// Set by the cluster: restarts this keepstore (for `PUT /_keepsim/restart`).
    pub(crate) restarter: std::sync::OnceLock<Restarter>,
    /// How many times this keepstore was restarted.
    pub restarts: AtomicUsize,
    /// The pull queue and its workers' counters.
    pub pull: WorkQueue<PullItem>,
    pub(crate) trash: WorkQueue<TrashItem>,
    /// Index-only synthetic listing (nothing stored; see [`crate::indexgen`]).
    pub(crate) index_only: Option<crate::indexgen::KeepstoreListing>,
    /// Bytes of index lines served (`/index` and `/mounts/*/blocks`), for measuring how
    /// much of the clusters' indexes a client reads.
    pub index_bytes: Arc<AtomicU64>,
}

pub(crate) type Restarter = Arc<dyn Fn(Duration) + Send + Sync>;

type Reply = Response<SimBody>;

fn text(status: u16, body: &str) -> Reply {
    let mut r = Response::new(SimBody::full(Bytes::from(format!("{body}\n"))));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    r.headers_mut().insert(
        "content-type",
        hyper::header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

fn bare(status: u16) -> Reply {
    let mut r = Response::new(SimBody::empty());
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
    r
}

/// keepstore's answer for a GET of a copy it only knows by digest.
pub const DIGEST_ONLY_MESSAGE: &str = "keepsim: this keepstore keeps only the digest (hash, size, mtime) of its blocks, not their data; it cannot serve a block GET";

/// Tokens as keepstore reads them: `Bearer`/`OAuth2` Authorization, or `?api_token=`.
pub fn request_token<B>(req: &Request<B>) -> Option<String> {
    if let Some(value) = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        for scheme in ["Bearer ", "OAuth2 "] {
            if let Some(t) = value.strip_prefix(scheme) {
                let t = t.trim();
                if !t.is_empty() {
                    return Some(t.to_string());
                }
            }
        }
    }
    req.uri()
        .query()
        .and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("api_token=")))
        .map(str::to_string)
}

fn query_param<B>(req: &Request<B>, name: &str) -> Option<String> {
    req.uri().query().and_then(|q| {
        q.split('&').find_map(|kv| {
            kv.split_once('=')
                .filter(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        })
    })
}

/// Comma list, items trimmed, empties dropped (router.go `trimSplit`).
fn trim_split(value: Option<&str>) -> Vec<String> {
    value
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// keepstore's `putProgress`: which mounts are still wanted and what was confirmed.
struct PutProgress {
    class_todo: Vec<String>,
    used: Vec<String>,
    total: u32,
    classes: BTreeMap<String, u32>,
}

impl PutProgress {
    fn new(classes: &[String]) -> PutProgress {
        let mut todo: Vec<String> = classes.to_vec();
        todo.sort();
        todo.dedup();
        PutProgress {
            class_todo: todo,
            used: Vec::new(),
            total: 0,
            classes: BTreeMap::new(),
        }
    }

    fn done(&self) -> bool {
        self.class_todo.is_empty() && self.total > 0
    }

    fn want(&self, m: &Mount) -> bool {
        if self.done() || self.used.contains(&m.uuid) {
            return false;
        }
        self.class_todo.is_empty() || m.classes.iter().any(|c| self.class_todo.contains(c))
    }

    fn add(&mut self, m: &Mount) {
        self.used.push(m.uuid.clone());
        self.total += m.replication;
        for c in &m.classes {
            *self.classes.entry(c.clone()).or_default() += m.replication;
            self.class_todo.retain(|t| t != c);
        }
    }
}

/// What a PUT reports.
struct Written {
    replicas: u32,
    classes: BTreeMap<String, u32>,
}

/// Bytes of a stored copy keepstore sends for a GET with size hint `hint`: the copy goes
/// out in 64 KiB parts through a writer that withholds the part reaching `hint` unless the
/// MD5 of the first `hint` bytes is right (`prefix_ok`), and refuses parts going beyond
/// `hint` (hashcheckwriter.go, streamwriterat.go).
pub fn keepstore_send_len(stored_len: u64, hint: u64, prefix_ok: impl FnOnce() -> bool) -> u64 {
    const PART: u64 = 65536;
    let mut offset = 0;
    while offset < stored_len {
        let end = (offset + PART).min(stored_len);
        if end > hint {
            return offset;
        }
        if end == hint {
            return if prefix_ok() { end } else { offset };
        }
        offset = end;
    }
    offset
}

/// keepsim's counters for one keepstore (`GET /_keepsim/stats`).
#[derive(Clone, Debug, Serialize)]
pub struct KeepstoreStats {
    pub requests: usize,
    pub restarts: usize,
    pub pull: WorkerStats,
    pub trash: WorkerStats,
    /// Listings per mount uuid.
    pub mount_index_requests: BTreeMap<String, u64>,
    /// Bytes of index lines served.
    pub index_bytes: u64,
}

impl Keepstore {
    pub fn new(uuid: String, mut mounts: Vec<Arc<Mount>>, policy: KeepstorePolicy) -> Keepstore {
        mounts.sort_by(|a, b| a.uuid.cmp(&b.uuid));
        Keepstore {
            uuid,
            mounts,
            limiter: Arc::new(Semaphore::new(policy.max_concurrent.max(1))),
            policy,
            faults: Mutex::new(Faults::default()),
            waiting_or_running: Arc::new(AtomicUsize::new(0)),
            requests: AtomicUsize::new(0),
            writes: AtomicUsize::new(0),
            url: Mutex::new(String::new()),
            restarter: std::sync::OnceLock::new(),
            restarts: AtomicUsize::new(0),
            pull: WorkQueue::default(),
            trash: WorkQueue::default(),
            index_only: None,
            index_bytes: Arc::new(AtomicU64::new(0)),
        }
    }

    /// What a restart does to the keepstore's state: its queues are lost, storage kept.
    pub(crate) fn on_restart(&self) {
        self.restarts.fetch_add(1, Ordering::SeqCst);
        self.pull.clear();
        self.trash.clear();
    }

    pub fn faults(&self) -> Faults {
        self.faults.lock().map(|f| f.clone()).unwrap_or_default()
    }

    pub fn pull_stats(&self) -> WorkerStats {
        self.pull.stats()
    }

    pub fn trash_stats(&self) -> WorkerStats {
        self.trash.stats()
    }

    pub fn stats(&self) -> KeepstoreStats {
        KeepstoreStats {
            requests: self.requests.load(Ordering::Relaxed),
            restarts: self.restarts.load(Ordering::SeqCst),
            pull: self.pull_stats(),
            trash: self.trash_stats(),
            mount_index_requests: self
                .mounts
                .iter()
                .map(|m| (m.uuid.clone(), m.index_requests.load(Ordering::Relaxed)))
                .collect(),
            index_bytes: self.index_bytes.load(Ordering::Relaxed),
        }
    }

    pub(crate) fn trash_rules(&self) -> TrashRules {
        TrashRules {
            signing_ttl: Duration::from_secs(self.policy.blob_signing_ttl),
            lifetime: Duration::from_secs(self.policy.blob_trash_lifetime),
        }
    }

    /// Mounts in keepstore order for `hash`: class priority (higher first), then
    /// ascending MD5(hash + mount uuid suffix) (keepstore.go `rendezvous`).
    pub fn mount_order(&self, hash: &BlockHash) -> Vec<&Arc<Mount>> {
        if self.mounts.len() <= 1 {
            return self.mounts.iter().collect();
        }
        let hex = hash.to_string();
        let mut weighted: Vec<(i32, [u8; 16], &Arc<Mount>)> = self
            .mounts
            .iter()
            .map(|m| (m.priority, weight(&hex, go_suffix(&m.uuid)), m))
            .collect();
        weighted.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        weighted.into_iter().map(|(_, _, m)| m).collect()
    }

    /// The first copy in keepstore order, with its mount.
    pub fn find(&self, hash: &BlockHash) -> Option<(Copy, &Arc<Mount>)> {
        self.mount_order(hash)
            .into_iter()
            .find_map(|m| m.read(hash).map(|c| (c, m)))
    }

    /// Whether PUT bodies are kept as bytes (else only digests).
    fn keeps_bytes(&self) -> bool {
        self.mounts.iter().any(|m| m.keeps_bytes())
    }

    /// Writes a verified block by keepstore's rules (see the module notes). `Err` is the
    /// status: 500 hash collision, 507 insufficient storage, 503 volume unavailable.
    fn write_block(
        &self,
        hash: BlockHash,
        payload: &Payload,
        classes: &[String],
    ) -> Result<Written, u16> {
        let order: Vec<&Arc<Mount>> = self
            .mount_order(&hash)
            .into_iter()
            .filter(|m| m.is_writable())
            .collect();
        let mut progress = PutProgress::new(classes);
        for m in &order {
            if !progress.want(m) {
                continue;
            }
            let Some(existing) = m.read(&hash) else {
                continue;
            };
            let equal = match (&existing, payload) {
                (Copy::Bytes { data, .. }, Payload::Bytes { data: new, .. }) => data == new,
                (existing, payload) => existing.size() == payload.size(),
            };
            if !equal {
                return Err(500);
            }
            if m.touch(&hash) {
                progress.add(m);
            }
        }
        let mut all_full = true;
        for m in &order {
            if progress.done() {
                break;
            }
            if !progress.want(m) {
                continue;
            }
            match m.write(hash, payload) {
                Ok(()) => progress.add(m),
                Err(WriteError::Full) => {}
                Err(WriteError::Other) => all_full = false,
            }
        }
        if progress.total > 0 {
            return Ok(Written {
                replicas: progress.total,
                classes: progress.classes,
            });
        }
        Err(if all_full { 507 } else { 503 })
    }

    /// What [`Keepstore::write_block`] would report if every write succeeded, without
    /// writing (the `store_nothing` lie).
    fn pretend_write(&self, hash: &BlockHash, classes: &[String]) -> Result<Written, u16> {
        let mut progress = PutProgress::new(classes);
        for m in self.mount_order(hash) {
            if m.is_writable() && progress.want(m) {
                progress.add(m);
            }
        }
        if progress.total == 0 {
            return Err(507);
        }
        Ok(Written {
            replicas: progress.total,
            classes: progress.classes,
        })
    }

    /// Stores a block directly (tests, the demo's source), as a PUT without classes would.
    pub fn store(
        &self,
        hash: BlockHash,
        data: Bytes,
        mount_uuid: Option<&str>,
    ) -> Result<u32, u16> {
        let payload = Payload::Bytes {
            data,
            verified: true,
        };
        match mount_uuid.filter(|u| !u.is_empty()) {
            Some(uuid) => {
                let m = self.mounts.iter().find(|m| m.uuid == uuid).ok_or(404u16)?;
                m.write(hash, &payload).map_err(|e| match e {
                    WriteError::Full => 507u16,
                    WriteError::Other => 503u16,
                })?;
                Ok(m.replication)
            }
            None => self.write_block(hash, &payload, &[]).map(|w| w.replicas),
        }
    }

    /// Handles one request (the limiter and faults included). `Err(Abort)` closes the
    /// connection without an answer (the `down` fault).
    pub async fn handle(
        self: Arc<Self>,
        req: Request<Incoming>,
        control: Arc<ConnControl>,
    ) -> Result<Reply, Abort> {
        self.requests.fetch_add(1, Ordering::Relaxed);
        if !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS) {
            self.writes.fetch_add(1, Ordering::Relaxed);
        }
        if self.faults().down {
            control.reset.store(true, Ordering::SeqCst);
            return Err(Abort);
        }
        let waiting = WaitingGuard::enter(&self.waiting_or_running);
        let reply = if waiting.count > self.policy.max_concurrent + self.policy.max_queued {
            text(503, "Service Unavailable")
        } else {
            match self.limiter.clone().acquire_owned().await {
                // The slot is held until the response body is finished, as keepstore's
                // handler holds it until it has written the response.
                Ok(permit) => {
                    let reply = self.clone().route(req, &control).await;
                    reply.map(|b| b.guard(Box::new(permit)).guard(Box::new(waiting)))
                }
                Err(_) => text(503, "Service Unavailable"),
            }
        };
        Ok(decorate(reply))
    }

    fn check_admin<B>(&self, req: &Request<B>) -> Option<Reply> {
        if self.policy.system_root_token.is_empty() {
            return None;
        }
        match request_token(req) {
            None => Some(text(401, "Unauthorized")),
            Some(t) if t != self.policy.system_root_token => Some(text(403, "Forbidden")),
            _ => None,
        }
    }

    async fn route(self: Arc<Self>, req: Request<Incoming>, control: &Arc<ConnControl>) -> Reply {
        let faults = self.faults();
        if faults.delay_ms > 0 {
            tokio::time::sleep(Duration::from_millis(faults.delay_ms)).await;
        }
        let path = req.uri().path().to_string();
        let method = req.method().clone();
        if method == Method::OPTIONS {
            return bare(200);
        }
        let admin_path = path == "/index"
            || path.starts_with("/index/")
            || path.starts_with("/mounts")
            || path == "/pull"
            || path == "/trash"
            || path.starts_with("/untrash/")
            || path.starts_with("/_keepsim/");
        let admin_method = method == Method::DELETE || method.as_str() == "TOUCH";
        if admin_path || admin_method {
            if let Some(refusal) = self.check_admin(&req) {
                return refusal;
            }
        }
        if let Some(what) = path.strip_prefix("/_keepsim/") {
            return self.control_endpoint(what, req).await;
        }
        if method == Method::GET {
            if let Some(tail) = path.strip_prefix("/index") {
                if !tail.is_empty() && !tail.starts_with('/') {
                    return text(400, "Bad Request");
                }
                let prefix = query_param(&req, "prefix")
                    .filter(|p| !p.is_empty())
                    .unwrap_or_else(|| tail.trim_start_matches('/').to_string());
                return self.index(None, &prefix, &faults, control);
            }
            if path == "/mounts" {
                return self.mounts_json();
            }
            if let Some(rest) = path.strip_prefix("/mounts/") {
                let Some((mount, tail)) = rest.split_once("/blocks") else {
                    return text(400, "Bad Request");
                };
                if !tail.is_empty() && !tail.starts_with('/') {
                    return text(400, "Bad Request");
                }
                let prefix = query_param(&req, "prefix")
                    .filter(|p| !p.is_empty())
                    .unwrap_or_else(|| tail.trim_start_matches('/').to_string());
                return self.index(Some(mount), &prefix, &faults, control);
            }
        }
        if method == Method::PUT && path == "/pull" {
            return self.pull_list(req).await;
        }
        if method == Method::PUT && path == "/trash" {
            return self.trash_list(req).await;
        }
        if method == Method::PUT {
            if let Some(loc) = path.strip_prefix("/untrash/") {
                return self.untrash(loc);
            }
        }
        let locator = path.trim_start_matches('/');
        if path.starts_with("//") && path.len() > 2 && locator.len() < 32 {
            return text(400, "Bad Request");
        }
        let is_block_path = locator.len() >= 32
            && locator.as_bytes()[..32]
                .iter()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b));
        let double_slash_ok = matches!(method, Method::GET | Method::HEAD);
        if !is_block_path || (path.starts_with("//") && !double_slash_ok) {
            return text(400, "Bad Request");
        }
        if Faults::roll(faults.error_500) {
            return text(500, "injected fault");
        }
        if Faults::roll(faults.error_503) || (faults.error_503_next > 0 && self.take_503_next()) {
            return text(503, "injected fault");
        }
        match method {
            Method::GET | Method::HEAD => {
                let token = request_token(&req);
                self.get(token, locator, method == Method::HEAD, &faults, control)
                    .await
            }
            Method::PUT => self.put(req, locator.to_string(), &faults).await,
            Method::DELETE => self.delete(locator),
            m if m.as_str() == "TOUCH" => self.touch(locator),
            _ => text(400, "Bad Request"),
        }
    }

    /// keepsim's own admin endpoints under `/_keepsim/` (SystemRootToken):
    /// `GET|PUT /_keepsim/faults` (the [`Faults`] JSON), `PUT /_keepsim/restart?pause_ms=N`
    /// (answers 200, then restarts this keepstore as [`crate::Cluster::restart_keepstore`]),
    /// `GET /_keepsim/stats` ([`KeepstoreStats`]), `PUT /_keepsim/age/<hash>?secs=N` (sets
    /// the mtime of every copy on this keepstore to now − N seconds).
    async fn control_endpoint(&self, what: &str, req: Request<Incoming>) -> Reply {
        let method = req.method().clone();
        match (what, method) {
            ("faults", Method::GET) => json_reply(&self.faults()),
            ("stats", Method::GET) => json_reply(&self.stats()),
            ("faults", Method::PUT) => {
                let body = match req.into_body().collect().await {
                    Ok(b) => b.to_bytes(),
                    Err(_) => return text(500, "reading body"),
                };
                match serde_json::from_slice::<Faults>(&body) {
                    Ok(f) => {
                        if let Ok(mut slot) = self.faults.lock() {
                            *slot = f;
                        }
                        bare(200)
                    }
                    Err(e) => text(400, &format!("bad faults JSON: {e}")),
                }
            }
            ("restart", Method::PUT) => {
                let pause_ms = query_param(&req, "pause_ms")
                    .and_then(|p| p.parse::<u64>().ok())
                    .unwrap_or(0);
                let Some(restart) = self.restarter.get().cloned() else {
                    return text(500, "restart not available");
                };
                // Answer first; the restart cuts this connection too.
                std::thread::spawn(move || {
                    std::thread::sleep(Duration::from_millis(50));
                    restart(Duration::from_millis(pause_ms));
                });
                bare(200)
            }
            (what, Method::PUT) if what.starts_with("age/") => {
                let Ok(hash) = BlockHash::from_hex(&what[4..]) else {
                    return text(400, "invalid locator");
                };
                let secs = query_param(&req, "secs")
                    .and_then(|p| p.parse::<i64>().ok())
                    .unwrap_or(0);
                let n = self.age(&hash, Duration::from_secs(secs.max(0) as u64));
                if n == 0 {
                    text(404, "file does not exist")
                } else {
                    bare(200)
                }
            }
            _ => text(400, "Bad Request"),
        }
    }

    /// Counts one answer off the `error_503_next` storm; false once it is over (another
    /// request may have taken the last one since the faults were read).
    fn take_503_next(&self) -> bool {
        match self.faults.lock() {
            Ok(mut f) if f.error_503_next > 0 => {
                f.error_503_next -= 1;
                true
            }
            _ => false,
        }
    }

    /// Sets the mtime of every copy of `hash` on this keepstore to now − `age`.
    pub fn age(&self, hash: &BlockHash, age: Duration) -> usize {
        let mtime = now_ns() - age.as_nanos() as i64;
        self.mounts
            .iter()
            .filter(|m| m.set_mtime(hash, mtime))
            .count()
    }

    async fn get(
        &self,
        token: Option<String>,
        locator: &str,
        head: bool,
        faults: &Faults,
        control: &Arc<ConnControl>,
    ) -> Reply {
        let loc = match parse_keepstore(locator) {
            Ok(l) => l,
            Err(_) => return text(400, "invalid locator"),
        };
        let hint = loc.size.filter(|&s| s > 0);
        if !head && hint.is_none() && loc.hash.to_string() != EMPTY_BLOCK_HASH {
            return text(405, "method not allowed");
        }
        if !head && Faults::roll(faults.expired_401) {
            return text(401, "expired signature");
        }
        if self.policy.blob_signing {
            let Some(token) = token else {
                return text(401, "no token provided in Authorization header");
            };
            let now = (now_ns() / 1_000_000_000) as u64;
            if let Err(e) = verify_locator(
                locator,
                &token,
                self.policy.blob_signing_key.as_bytes(),
                self.policy.blob_signing_ttl,
                now,
            ) {
                return text(e.http_status(), &e.to_string());
            }
        }
        if self.index_only.is_some() {
            return text(422, crate::indexgen::NO_DATA_MESSAGE);
        }
        let Some((copy, _)) = self.find(&loc.hash) else {
            return text(404, "file does not exist");
        };
        let stored_len = copy.size();
        // MD5s run on the batching hash thread, not on the runtime's workers.
        let md5_ok =
            |data: Bytes| async move { BlockHash(crate::verify::md5_of(data).await) == loc.hash };
        if head {
            let good = match &copy {
                Copy::Bytes { data, .. } => md5_ok(data.clone()).await,
                _ => true,
            } && hint.is_none_or(|h| h == stored_len);
            if !good {
                return text(502, crate::keep::wire::STORED_CHECKSUM_MISMATCH);
            }
            let mut r = bare(200);
            r.headers_mut()
                .insert("content-length", hint.unwrap_or(stored_len).into());
            return r;
        }
        let (source, trusted) = match copy {
            Copy::DigestOnly { .. } => return text(422, DIGEST_ONLY_MESSAGE),
            Copy::Synthetic { set, index } => (
                SimBody::generated(set.pieces(index), Some(stored_len)),
                CopyCheck::Trusted,
            ),
            Copy::Bytes { data, verified } => {
                let check = if verified {
                    CopyCheck::Trusted
                } else {
                    CopyCheck::Bytes(data.clone())
                };
                (SimBody::full(data), check)
            }
        };
        // Without a size hint (only the empty block): sent whole, checked at the end.
        let hint = hint.unwrap_or(stored_len);
        // Whether the first `hint` bytes of an unverified copy hash right (what decides
        // whether the part reaching `hint` goes out).
        let prefix_ok = match &trusted {
            CopyCheck::Bytes(data) if hint <= stored_len => {
                md5_ok(data.slice(..hint as usize)).await
            }
            _ => false,
        };
        let sent = if hint == stored_len && matches!(trusted, CopyCheck::Trusted) {
            hint
        } else {
            keepstore_send_len(stored_len, hint, || match &trusted {
                CopyCheck::Trusted => hint == stored_len,
                CopyCheck::Bytes(_) => prefix_ok,
            })
        };
        if sent == 0 && hint > 0 {
            return text(502, crate::keep::wire::STORED_CHECKSUM_MISMATCH);
        }
        let body = if sent < hint {
            source.cut_after(sent, End::Close)
        } else {
            source.cut_after(hint, End::Clean)
        }
        .sized(hint);
        // Whether this GET meets the body faults (`body_fault_probability`).
        let faults = &faults.for_one_body();
        let body = fault_body(body, hint, faults, control);
        let mut r = Response::new(body);
        if !faults.endless_trailers {
            r.headers_mut().insert("content-length", hint.into());
        }
        r.headers_mut().insert(
            "vary",
            hyper::header::HeaderValue::from_static("X-Keep-Signature"),
        );
        r
    }

    async fn put(&self, req: Request<Incoming>, locator: String, faults: &Faults) -> Reply {
        let token = request_token(&req);
        let classes = trim_split(
            req.headers()
                .get(header::STORAGE_CLASSES)
                .and_then(|v| v.to_str().ok()),
        );
        let declared = req
            .headers()
            .get("content-length")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|l| l > MAX_BLOCK_SIZE) {
            return text(413, "request entity too large");
        }
        if self.index_only.is_some() {
            return text(422, crate::indexgen::NO_DATA_MESSAGE);
        }
        let Ok(expected) = BlockHash::from_hex(&locator[..32]) else {
            return text(400, "invalid locator");
        };
        let (actual, payload) = if self.keeps_bytes() {
            let body = match http_body_util::Limited::new(req.into_body(), MAX_BLOCK_SIZE as usize)
                .collect()
                .await
            {
                Ok(b) => b.to_bytes(),
                Err(_) => return text(413, "request entity too large"),
            };
            let actual = if self.policy.put_md5 {
                BlockHash(crate::verify::md5_of(body.clone()).await)
            } else {
                expected
            };
            let payload = Payload::Bytes {
                data: body,
                verified: self.policy.put_md5,
            };
            (actual, payload)
        } else {
            match crate::verify::md5_stream(req.into_body(), MAX_BLOCK_SIZE, self.policy.put_md5)
                .await
            {
                Ok((digest, size)) => {
                    (digest.map_or(expected, BlockHash), Payload::Digest { size })
                }
                Err(crate::verify::StreamError::TooLarge) => {
                    return text(413, "request entity too large")
                }
                Err(crate::verify::StreamError::Read) => return text(500, "reading body"),
            }
        };
        if actual != expected {
            return text(
                400,
                &format!("content hash {actual} did not match specified locator {locator}"),
            );
        }
        let outcome = match faults.lie_replicas {
            LieReplicas::StoreNothing => self.pretend_write(&actual, &classes),
            LieReplicas::Extra => self.write_block(actual, &payload, &classes).map(|mut w| {
                w.replicas += 1;
                for n in w.classes.values_mut() {
                    *n += 1;
                }
                w
            }),
            LieReplicas::Off => self.write_block(actual, &payload, &classes),
        };
        match outcome {
            Ok(written) => {
                let short = format!("{actual}+{}", payload.size());
                let signed = match token {
                    Some(t) if !self.policy.blob_signing_key.is_empty() => {
                        let expiry =
                            (now_ns() / 1_000_000_000) as u64 + self.policy.blob_signing_ttl;
                        sign_locator(
                            &short,
                            &t,
                            self.policy.blob_signing_key.as_bytes(),
                            expiry,
                            self.policy.blob_signing_ttl,
                        )
                    }
                    _ => short,
                };
                let mut r = text(200, &signed);
                r.headers_mut()
                    .insert(header::REPLICAS_STORED, written.replicas.into());
                let confirmed: Vec<String> = written
                    .classes
                    .iter()
                    .filter(|(_, &n)| n > 0)
                    .map(|(c, n)| format!("{c}={n}"))
                    .collect();
                if let Ok(v) = hyper::header::HeaderValue::from_str(&confirmed.join(", ")) {
                    r.headers_mut().insert(header::CLASSES_CONFIRMED, v);
                }
                r
            }
            Err(507) => text(507, "insufficient storage"),
            Err(500) => text(500, "hash collision"),
            Err(_) => text(503, "volume unavailable"),
        }
    }

    fn delete(&self, locator: &str) -> Reply {
        if !self.policy.blob_trash {
            return text(405, "method not allowed");
        }
        let Ok(loc) = parse_keepstore(locator) else {
            return text(400, "invalid locator");
        };
        // keepstore.go `BlockTrash`: every trash-allowed mount; a copy younger than the
        // signing TTL is left alone yet counts as success.
        let rules = self.trash_rules();
        let mut found = false;
        for m in self.mounts.iter().filter(|m| m.allows_trash()) {
            if let Some((_, mtime)) = m.stat(&loc.hash) {
                found = true;
                if now_ns() - mtime > rules.signing_ttl.as_nanos() as i64 {
                    m.trash(&loc.hash, &rules);
                }
            }
        }
        if found {
            bare(200)
        } else {
            text(404, "file does not exist")
        }
    }

    fn untrash(&self, locator: &str) -> Reply {
        let Ok(loc) = parse_keepstore(locator) else {
            return text(400, "Bad Request");
        };
        let mut restored = false;
        for m in self.mounts.iter().filter(|m| m.is_writable()) {
            restored |= m.untrash(&loc.hash);
        }
        if restored {
            bare(200)
        } else {
            text(404, "file does not exist")
        }
    }

    fn touch(&self, locator: &str) -> Reply {
        let Ok(loc) = parse_keepstore(locator) else {
            return text(400, "invalid locator");
        };
        if self
            .mounts
            .iter()
            .filter(|m| m.is_writable())
            .any(|m| m.touch(&loc.hash))
        {
            bare(200)
        } else {
            text(404, "file does not exist")
        }
    }

    fn index(
        &self,
        mount: Option<&str>,
        prefix: &str,
        faults: &Faults,
        control: &Arc<ConnControl>,
    ) -> Reply {
        if prefix.len() > 32
            || !prefix
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return text(400, "Bad Request");
        }
        let mounts: Vec<Arc<Mount>> = match mount {
            Some(uuid) => match self.mounts.iter().find(|m| m.uuid == uuid) {
                Some(m) => vec![m.clone()],
                None => return text(404, "file does not exist"),
            },
            None => self.mounts.clone(),
        };
        let prefix = prefix.to_string();
        let listing: Box<dyn Iterator<Item = Bytes> + Send> = match &self.index_only {
            Some(listing) => {
                let indexes: Vec<usize> = mounts
                    .iter()
                    .filter_map(|m| self.mounts.iter().position(|x| x.uuid == m.uuid))
                    .collect();
                for m in &mounts {
                    m.index_requests.fetch_add(1, Ordering::Relaxed);
                }
                listing.pieces(indexes, prefix)
            }
            None => Box::new(
                mounts
                    .into_iter()
                    .flat_map(move |m| m.index_pieces(&prefix)),
            ),
        };
        let served = self.index_bytes.clone();
        let listing = Box::new(listing.inspect(move |piece| {
            served.fetch_add(piece.len() as u64, Ordering::Relaxed);
        }));
        let body = if faults.truncate_index {
            SimBody::generated(listing, None).ending(End::Close)
        } else {
            let whole = listing.chain(std::iter::once(Bytes::from_static(b"\n")));
            let body = SimBody::generated(whole, None);
            if faults.endless_trailers {
                body.ending(End::EndlessTrailers(control.clone()))
            } else {
                body
            }
        };
        Response::new(body)
    }

    fn mounts_json(&self) -> Reply {
        let list: Vec<MountInfo> = self
            .mounts
            .iter()
            .map(|m| MountInfo {
                uuid: m.uuid.clone(),
                device_id: format!("keepsim:{}", m.uuid),
                allow_write: m.is_writable(),
                allow_trash: m.allows_trash(),
                replication: m.replication,
                storage_classes: m.classes.iter().map(|c| (c.clone(), true)).collect(),
            })
            .collect();
        let mut r = Response::new(SimBody::full(serde_json::to_vec(&list).unwrap_or_default()));
        r.headers_mut().insert(
            "content-type",
            hyper::header::HeaderValue::from_static("application/json"),
        );
        r
    }

    async fn pull_list(&self, req: Request<Incoming>) -> Reply {
        let body = match req.into_body().collect().await {
            Ok(b) => b.to_bytes(),
            Err(_) => return text(500, "reading body"),
        };
        let mut items: Vec<PullItem> = match serde_json::from_slice(&body) {
            Ok(i) => i,
            Err(e) => return text(500, &e.to_string()),
        };
        if items.first().is_some_and(|i| i.locator.len() == 32) {
            return text(
                400,
                "rejecting pull list containing a locator without a size hint -- this probably means keep-balance needs to be upgraded",
            );
        }
        let drop_half = items.len() >= 2
            && self
                .faults
                .lock()
                .map(|mut f| std::mem::take(&mut f.pull_drop_second_half_once))
                .unwrap_or(false);
        if drop_half {
            items.truncate(items.len().div_ceil(2));
        }
        self.pull.replace(items);
        bare(200)
    }

    async fn trash_list(&self, req: Request<Incoming>) -> Reply {
        let body = match req.into_body().collect().await {
            Ok(b) => b.to_bytes(),
            Err(_) => return text(500, "reading body"),
        };
        match serde_json::from_slice::<Vec<TrashItem>>(&body) {
            Ok(items) => {
                self.trash.replace(items);
                bare(200)
            }
            Err(e) => text(500, &e.to_string()),
        }
    }
}

/// Whether a copy's bytes must be checked before they are trusted.
enum CopyCheck {
    Trusted,
    Bytes(Bytes),
}

/// A block GET body with the configured faults applied: trickled, corrupted, and cut short
/// (stalled, reset or closed) halfway, or chunked with endless trailers.
pub(crate) fn fault_body(
    body: SimBody,
    len: u64,
    faults: &Faults,
    control: &Arc<ConnControl>,
) -> SimBody {
    let mut body = body.trickle(faults.trickle_bytes_per_sec);
    if faults.corrupt_body && len > 0 {
        body = body.corrupt_at(len / 2);
    }
    if faults.stall_mid_body {
        body.cut_after(len / 2, End::Stall)
    } else if faults.reset {
        body.cut_after(len / 2, End::Reset(control.clone()))
    } else if faults.close_mid_body {
        body.cut_after(len / 2, End::Close)
    } else if faults.endless_trailers {
        body.chunked().ending(End::EndlessTrailers(control.clone()))
    } else {
        body
    }
}

fn json_reply<T: serde::Serialize>(value: &T) -> Reply {
    let mut r = Response::new(SimBody::full(
        serde_json::to_vec_pretty(value).unwrap_or_default(),
    ));
    r.headers_mut().insert(
        "content-type",
        hyper::header::HeaderValue::from_static("application/json"),
    );
    r
}

/// Headers every keepstore response carries.
pub fn decorate(mut reply: Reply) -> Reply {
    let headers = reply.headers_mut();
    headers.insert(
        "access-control-allow-origin",
        hyper::header::HeaderValue::from_static("*"),
    );
    headers.insert(
        "access-control-allow-methods",
        hyper::header::HeaderValue::from_static("GET, HEAD, PUT, OPTIONS"),
    );
    headers.insert(
        "access-control-expose-headers",
        hyper::header::HeaderValue::from_static(
            "X-Keep-Locator, X-Keep-Replicas-Stored, X-Keep-Storage-Classes-Confirmed",
        ),
    );
    let id: String = (0..20)
        .map(|_| char::from(b"0123456789abcdefghijklmnopqrstuvwxyz"[rand::random_range(0..36)]))
        .collect();
    if let Ok(v) = hyper::header::HeaderValue::from_str(&format!("req-{id}")) {
        headers.insert(header::REQUEST_ID, v);
    }
    reply
}

/// Counts a request as waiting or running until dropped (with the response body).
struct WaitingGuard {
    counter: Arc<AtomicUsize>,
    count: usize,
}

impl WaitingGuard {
    fn enter(counter: &Arc<AtomicUsize>) -> WaitingGuard {
        let count = counter.fetch_add(1, Ordering::AcqRel) + 1;
        WaitingGuard {
            counter: counter.clone(),
            count,
        }
    }
}

impl Drop for WaitingGuard {
    fn drop(&mut self) {
        self.counter.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn send_len_follows_the_hash_check_writer() {
        const P: u64 = 65536;
        // Right length, wrong MD5: the last part is withheld.
        assert_eq!(keepstore_send_len(3 * P + 10, 3 * P + 10, || false), 3 * P);
        assert_eq!(keepstore_send_len(2 * P, 2 * P, || false), P);
        // Small blocks: nothing sent (then 502).
        assert_eq!(keepstore_send_len(1000, 1000, || false), 0);
        // Right: everything.
        assert_eq!(keepstore_send_len(2 * P + 1, 2 * P + 1, || true), 2 * P + 1);
        // Stored shorter than the hint: all of it.
        assert_eq!(keepstore_send_len(P + 5, 2 * P, || true), P + 5);
        // Stored longer: parts that fit, the one crossing the hint refused.
        assert_eq!(keepstore_send_len(2 * P, P + 5, || true), P);
        assert_eq!(keepstore_send_len(1001, 1000, || true), 0);
    }

    #[test]
    fn put_progress_wants_classes() {
        let m = |uuid: &str, classes: &[&str]| {
            Mount::with_classes(
                uuid.into(),
                1,
                crate::store::Storage::Memory,
                classes.iter().map(|c| c.to_string()).collect(),
                0,
            )
            .expect("mount")
        };
        let (a, b, c) = (
            m("a", &["default"]),
            m("b", &["hot"]),
            m("c", &["hot", "cold"]),
        );
        let mut p = PutProgress::new(&["hot".into(), "cold".into()]);
        assert!(!p.want(&a) && p.want(&b) && p.want(&c));
        p.add(&b);
        assert!(!p.want(&b) && p.want(&c) && !p.done());
        p.add(&c);
        assert!(p.done());
        assert_eq!(p.classes.get("hot"), Some(&2));
        let mut any = PutProgress::new(&[]);
        assert!(any.want(&a));
        any.add(&a);
        assert!(any.done() && !any.want(&b));
    }
}
