//! One simulated keepstore: the HTTP API of `keep-protocol.md` §5 with the real statuses and
//! bodies, the request limiter (503 beyond max concurrent + queued), pull and trash workers,
//! and switchable faults.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;

use crate::body::SimBody;
use crate::keep::index_format::format_index_line;
use crate::keep::locator::{parse_keepstore, BlockHash, EMPTY_BLOCK_HASH, MAX_BLOCK_SIZE};
use crate::keep::rendezvous::mount_order_keepstore;
use crate::keep::signature::{sign_locator, verify_locator};
use crate::store::{now_ns, Mount, Synthetic};

/// Faults to inject, switchable at run time.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Faults {
    /// Probability (0..1) of answering 500 to a block request.
    pub error_500: f64,
    /// Probability of answering 503.
    pub error_503: f64,
    /// Added before every response, in milliseconds.
    pub delay_ms: u64,
    /// GET bodies stop halfway and the connection is dropped.
    pub close_mid_body: bool,
    /// GET bodies have one byte flipped (status and length stay right, as keepstore does).
    pub corrupt_body: bool,
    /// Index bodies stop before their completion blank line.
    pub truncate_index: bool,
    /// Refuse every request with a connection reset (server "down").
    pub down: bool,
    /// Pull-list test hook: the next list of two or more items loses its second half (as if a
    /// keep-balance list had replaced part of it); the flag then clears itself.
    pub pull_drop_second_half_once: bool,
    /// Pull test hook: blocks whose hash starts with one of these arrive damaged at this
    /// keepstore's pull worker (so its MD5 check fails), while other clients read them fine.
    pub pull_corrupt: Vec<String>,
    /// Pull test hook: lists are accepted and their items taken, but nothing is pulled.
    pub pull_ignore: bool,
}

/// Settings shared by all keepstores of a cluster.
#[derive(Clone, Debug)]
pub struct KeepstorePolicy {
    pub system_root_token: String,
    pub blob_signing_key: String,
    pub blob_signing: bool,
    pub blob_signing_ttl: u64,
    pub max_concurrent: usize,
    pub max_queued: usize,
    /// `Collections.BlobReplicateConcurrency`: pull workers.
    pub blob_replicate_concurrency: usize,
}

pub struct Keepstore {
    pub uuid: String,
    pub mounts: Vec<Arc<Mount>>,
    pub synthetic: Option<Synthetic>,
    pub policy: KeepstorePolicy,
    pub faults: Mutex<Faults>,
    limiter: Semaphore,
    waiting_or_running: AtomicUsize,
    /// Requests answered (for tests).
    pub requests: AtomicUsize,
    pub url: Mutex<String>,
    /// The pull queue and its workers' counters.
    pub pulls: crate::pull::PullQueue,
}

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

/// Tokens as keepstore reads them: `Bearer`/`OAuth2` Authorization, or `?api_token=`.
pub fn request_token<B>(req: &Request<B>) -> Option<String> {
    if let Some(value) = req
        .headers()
        .get("authorization")
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

#[derive(Deserialize)]
struct TrashItem {
    locator: String,
    block_mtime: i64,
    #[serde(default)]
    mount_uuid: String,
}

impl Keepstore {
    pub fn new(
        uuid: String,
        mounts: Vec<Arc<Mount>>,
        synthetic: Option<Synthetic>,
        policy: KeepstorePolicy,
    ) -> Keepstore {
        Keepstore {
            uuid,
            mounts,
            synthetic,
            limiter: Semaphore::new(policy.max_concurrent.max(1)),
            policy,
            faults: Mutex::new(Faults::default()),
            waiting_or_running: AtomicUsize::new(0),
            requests: AtomicUsize::new(0),
            url: Mutex::new(String::new()),
            pulls: crate::pull::PullQueue::default(),
        }
    }

    pub fn faults(&self) -> Faults {
        self.faults.lock().map(|f| f.clone()).unwrap_or_default()
    }

    /// Mounts in keepstore rendezvous order for `hash`.
    fn mount_order(&self, hash: &BlockHash) -> Vec<&Arc<Mount>> {
        let uuids: Vec<&str> = self.mounts.iter().map(|m| m.uuid.as_str()).collect();
        mount_order_keepstore(&hash.to_string(), &uuids)
            .into_iter()
            .map(|i| &self.mounts[i])
            .collect()
    }

    /// The first writable mount in keepstore's rendezvous order for `hash` (where a pull
    /// without a mount writes).
    pub fn first_writable_mount(&self, hash: &BlockHash) -> Option<Arc<Mount>> {
        self.mount_order(hash)
            .into_iter()
            .find(|m| m.is_writable())
            .cloned()
    }

    /// Finds a block: synthetic first, then mounts in order.
    pub fn find(&self, hash: &BlockHash) -> Option<(Bytes, u32)> {
        if let Some(data) = self.synthetic.as_ref().and_then(|s| s.get(hash)) {
            return Some((data, 1));
        }
        self.mount_order(hash)
            .into_iter()
            .find_map(|m| m.get(hash).map(|d| (d, m.replication)))
    }

    /// Stores a verified block as keepstore does: touch an existing copy, else write to the
    /// first writable mount in order that has room. Returns the replication stored.
    pub fn store(
        &self,
        hash: BlockHash,
        data: Bytes,
        mount_uuid: Option<&str>,
    ) -> Result<u32, u16> {
        let order: Vec<&Arc<Mount>> = match mount_uuid.filter(|u| !u.is_empty()) {
            Some(uuid) => self.mounts.iter().filter(|m| m.uuid == uuid).collect(),
            None => self.mount_order(&hash),
        };
        for mount in &order {
            if mount.is_writable() && mount.contains(&hash) {
                match mount.get(&hash) {
                    Some(existing) if existing == data => {
                        mount.touch(&hash);
                        return Ok(mount.replication);
                    }
                    Some(_) => return Err(500),
                    None => {}
                }
            }
        }
        let mut saw_other_error = false;
        for mount in order.iter().filter(|m| m.is_writable()) {
            match mount.put(hash, data.clone()) {
                Ok(()) => return Ok(mount.replication),
                Err(true) => {}
                Err(false) => saw_other_error = true,
            }
        }
        Err(if saw_other_error { 503 } else { 507 })
    }

    /// Handles one request (the limiter and faults included).
    pub async fn handle(self: Arc<Self>, req: Request<Incoming>) -> Reply {
        self.requests.fetch_add(1, Ordering::Relaxed);
        let waiting = self.waiting_or_running.fetch_add(1, Ordering::AcqRel) + 1;
        let reply = if waiting > self.policy.max_concurrent + self.policy.max_queued {
            text(503, "Service Unavailable")
        } else {
            match self.limiter.acquire().await {
                Ok(_permit) => self.clone().route(req).await,
                Err(_) => text(503, "Service Unavailable"),
            }
        };
        self.waiting_or_running.fetch_sub(1, Ordering::AcqRel);
        decorate(reply)
    }

    async fn route(self: Arc<Self>, req: Request<Incoming>) -> Reply {
        let faults = self.faults();
        if faults.delay_ms > 0 {
            tokio::time::sleep(Duration::from_millis(faults.delay_ms)).await;
        }
        let path = req.uri().path().to_string();
        let method = req.method().clone();
        if method == Method::OPTIONS {
            return bare(200);
        }
        // Admin endpoints.
        let admin_path = path == "/index"
            || path.starts_with("/index/")
            || path.starts_with("/mounts")
            || path == "/pull"
            || path == "/trash"
            || path.starts_with("/untrash/")
            || path == "/_keepsim/faults";
        let admin_method = method == Method::DELETE || method.as_str() == "TOUCH";
        if admin_path || admin_method {
            match request_token(&req) {
                None if !self.policy.system_root_token.is_empty() => {
                    return text(401, "Unauthorized")
                }
                Some(t)
                    if !self.policy.system_root_token.is_empty()
                        && t != self.policy.system_root_token =>
                {
                    return text(403, "Forbidden")
                }
                _ => {}
            }
        }
        if path == "/_keepsim/faults" && method == Method::PUT {
            let body = match req.into_body().collect().await {
                Ok(b) => b.to_bytes(),
                Err(_) => return text(500, "reading body"),
            };
            return match serde_json::from_slice::<Faults>(&body) {
                Ok(f) => {
                    if let Ok(mut slot) = self.faults.lock() {
                        *slot = f;
                    }
                    bare(200)
                }
                Err(e) => text(400, &format!("bad faults JSON: {e}")),
            };
        }
        if method == Method::GET {
            if let Some(prefix) = path.strip_prefix("/index") {
                let prefix = query_param(&req, "prefix")
                    .filter(|p| !p.is_empty())
                    .unwrap_or_else(|| prefix.trim_start_matches('/').to_string());
                return self.index(None, &prefix, &faults);
            }
            if path == "/mounts" {
                return self.mounts_json();
            }
            if let Some(rest) = path.strip_prefix("/mounts/") {
                let Some((mount, tail)) = rest.split_once("/blocks") else {
                    return text(400, "Bad Request");
                };
                let prefix = query_param(&req, "prefix")
                    .filter(|p| !p.is_empty())
                    .unwrap_or_else(|| tail.trim_start_matches('/').to_string());
                return self.index(Some(mount), &prefix, &faults);
            }
        }
        if method == Method::PUT && path == "/pull" {
            return self.pull(req).await;
        }
        if method == Method::PUT && path == "/trash" {
            return self.trash(req).await;
        }
        if method == Method::PUT {
            if let Some(loc) = path.strip_prefix("/untrash/") {
                return match parse_keepstore(loc) {
                    Ok(_) => text(404, "file does not exist"),
                    Err(_) => text(400, "invalid locator"),
                };
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
        if !is_block_path || (path.starts_with("//") && method == Method::PUT) {
            return text(400, "Bad Request");
        }
        if faults.error_500 > 0.0 && rand::random::<f64>() < faults.error_500 {
            return text(500, "injected fault");
        }
        if faults.error_503 > 0.0 && rand::random::<f64>() < faults.error_503 {
            return text(503, "injected fault");
        }
        match method {
            Method::GET | Method::HEAD => self.get(&req, locator, method == Method::HEAD, &faults),
            Method::PUT => self.put(req, locator.to_string()).await,
            Method::DELETE => text(405, "method not allowed"),
            m if m.as_str() == "TOUCH" => match parse_keepstore(locator) {
                Ok(loc) => {
                    let touched = self
                        .mounts
                        .iter()
                        .any(|m| m.is_writable() && m.touch(&loc.hash));
                    if touched {
                        bare(200)
                    } else {
                        text(404, "file does not exist")
                    }
                }
                Err(_) => text(400, "invalid locator"),
            },
            _ => text(400, "Bad Request"),
        }
    }

    fn get<B>(&self, req: &Request<B>, locator: &str, head: bool, faults: &Faults) -> Reply {
        let loc = match parse_keepstore(locator) {
            Ok(l) => l,
            Err(_) => return text(400, "invalid locator"),
        };
        let hash_hex = loc.hash.to_string();
        if !head && loc.size.unwrap_or(0) == 0 && hash_hex != EMPTY_BLOCK_HASH {
            return text(405, "method not allowed");
        }
        if self.policy.blob_signing {
            let Some(token) = request_token(req) else {
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
        let Some((data, _)) = self.find(&loc.hash) else {
            return text(404, "file does not exist");
        };
        if head {
            let mut r = bare(200);
            r.headers_mut().insert("content-length", data.len().into());
            *r.body_mut() = SimBody::empty();
            return r;
        }
        let len = data.len();
        let body = if faults.close_mid_body {
            SimBody::pieces(vec![data.slice(..len / 2)], true)
        } else if faults.corrupt_body && len > 0 {
            let mut bad = data.to_vec();
            bad[len / 2] ^= 0xff;
            SimBody::full(bad)
        } else {
            SimBody::full(data)
        };
        let mut r = Response::new(body);
        r.headers_mut().insert("content-length", len.into());
        r.headers_mut().insert(
            "vary",
            hyper::header::HeaderValue::from_static("X-Keep-Signature"),
        );
        r
    }

    async fn put(&self, req: Request<Incoming>, locator: String) -> Reply {
        let token = request_token(&req);
        let declared = req
            .headers()
            .get("content-length")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|l| l > MAX_BLOCK_SIZE) {
            return text(413, "Request Entity Too Large");
        }
        let body = match http_body_util::Limited::new(req.into_body(), MAX_BLOCK_SIZE as usize)
            .collect()
            .await
        {
            Ok(b) => b.to_bytes(),
            Err(_) => return text(413, "Request Entity Too Large"),
        };
        let hash_hex = &locator[..32];
        let actual = BlockHash(crate::verify::md5_of(body.clone()).await);
        if actual.to_string() != hash_hex {
            return text(
                400,
                &format!("content hash {actual} did not match specified locator {locator}"),
            );
        }
        match self.store(actual, body.clone(), None) {
            Ok(replication) => {
                let short = format!("{hash_hex}+{}", body.len());
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
                    .insert("x-keep-replicas-stored", replication.into());
                if let Ok(v) =
                    hyper::header::HeaderValue::from_str(&format!("default={replication}"))
                {
                    r.headers_mut()
                        .insert("x-keep-storage-classes-confirmed", v);
                }
                r
            }
            Err(507) => text(507, "insufficient storage"),
            Err(500) => text(500, "hash collision"),
            Err(_) => text(503, "volume unavailable"),
        }
    }

    fn index(&self, mount: Option<&str>, prefix: &str, faults: &Faults) -> Reply {
        if prefix.len() > 32
            || !prefix
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return text(400, "invalid prefix");
        }
        let mounts: Vec<&Arc<Mount>> = match mount {
            Some(uuid) => {
                let found: Vec<&Arc<Mount>> =
                    self.mounts.iter().filter(|m| m.uuid == uuid).collect();
                if found.is_empty() {
                    return text(404, "mount not found");
                }
                found
            }
            None => {
                let mut all: Vec<&Arc<Mount>> = self.mounts.iter().collect();
                all.sort_by(|a, b| a.uuid.cmp(&b.uuid));
                all
            }
        };
        let mut pieces = Vec::new();
        let mut current = String::new();
        let mut push_line = |line: String, pieces: &mut Vec<Bytes>| {
            current.push_str(&line);
            if current.len() > 64 << 10 {
                pieces.push(Bytes::from(std::mem::take(&mut current)));
            }
        };
        if mount.is_none() {
            if let Some(synthetic) = &self.synthetic {
                for (hash, _) in synthetic.table().iter() {
                    if hash.to_string().starts_with(prefix) {
                        push_line(
                            format_index_line(
                                hash,
                                u64::from(synthetic.size),
                                1_700_000_000_000_000_000,
                            ),
                            &mut pieces,
                        );
                    }
                }
            }
        }
        for m in mounts {
            for (hash, size, mtime) in m.index(prefix) {
                push_line(format_index_line(&hash, size, mtime), &mut pieces);
            }
        }
        if !faults.truncate_index {
            current.push('\n');
        }
        pieces.push(Bytes::from(current));
        Response::new(SimBody::pieces(pieces, faults.truncate_index))
    }

    fn mounts_json(&self) -> Reply {
        let mut list: Vec<serde_json::Value> = self
            .mounts
            .iter()
            .map(|m| {
                serde_json::json!({
                    "uuid": m.uuid, "device_id": format!("keepsim:{}", m.uuid),
                    "allow_write": m.is_writable(), "allow_trash": true,
                    "replication": m.replication, "storage_classes": {"default": true},
                })
            })
            .collect();
        list.sort_by(|a, b| a["uuid"].as_str().cmp(&b["uuid"].as_str()));
        let mut r = Response::new(SimBody::full(serde_json::to_vec(&list).unwrap_or_default()));
        r.headers_mut().insert(
            "content-type",
            hyper::header::HeaderValue::from_static("application/json"),
        );
        r
    }

    async fn pull(self: Arc<Self>, req: Request<Incoming>) -> Reply {
        let body = match req.into_body().collect().await {
            Ok(b) => b.to_bytes(),
            Err(_) => return text(500, "reading body"),
        };
        let mut items: Vec<crate::pull::PullItem> = match serde_json::from_slice(&body) {
            Ok(i) => i,
            Err(e) => return text(500, &format!("bad pull list: {e}")),
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
        crate::pull::start_workers(&self);
        self.pulls.replace(items);
        bare(200)
    }

    async fn trash(&self, req: Request<Incoming>) -> Reply {
        let body = match req.into_body().collect().await {
            Ok(b) => b.to_bytes(),
            Err(_) => return text(500, "reading body"),
        };
        let items: Vec<TrashItem> = match serde_json::from_slice(&body) {
            Ok(i) => i,
            Err(e) => return text(500, &format!("bad trash list: {e}")),
        };
        let cutoff = now_ns() - (self.policy.blob_signing_ttl as i64) * 1_000_000_000;
        for item in items {
            let Ok(loc) = parse_keepstore(&item.locator) else {
                continue;
            };
            if item.block_mtime > cutoff {
                continue;
            }
            for m in &self.mounts {
                if !item.mount_uuid.is_empty() && m.uuid != item.mount_uuid {
                    continue;
                }
                if m.index(&loc.hash.to_string())
                    .iter()
                    .any(|(h, _, t)| *h == loc.hash && *t == item.block_mtime)
                {
                    m.remove(&loc.hash);
                }
            }
        }
        bare(200)
    }
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
        headers.insert("x-request-id", v);
    }
    reply
}
