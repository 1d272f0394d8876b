//! Moving one block: GET it from a source server that holds it, straight into a pooled
//! buffer with MD5 updated as each chunk lands, then PUT the frozen buffer to the wanted
//! number of destination servers in rendezvous order, following keepclient's rules
//! (`keep-protocol.md` §6.1, §6.2): which statuses are retried, which are final, and that a
//! block counts only once the replicas are confirmed.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures_util::stream::{FuturesUnordered, StreamExt};

use super::cluster::Cluster;
use super::hash_batch::HashBatcher;
use super::pool::{BufferLease, BufferPool};
use crate::hash::Md5State;
use crate::index::SourceBlock;
use crate::keep::locator::BlockHash;
use crate::keep::rendezvous::probe_order_go;
use crate::keep::signature::sign_locator;
use crate::net::{HttpClient, Method, Request};

/// How source locators are signed (keep-rsync signs each one itself, §2).
#[derive(Clone)]
pub struct Signing {
    pub key: Vec<u8>,
    pub ttl_secs: u64,
}

impl std::fmt::Debug for Signing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signing")
            .field("key", &"<redacted>")
            .field("ttl_secs", &self.ttl_secs)
            .finish()
    }
}

/// Everything a transfer needs that is the same for every block.
#[derive(Debug)]
pub struct TransferContext {
    pub src: Cluster,
    pub dst: Cluster,
    pub signing: Option<Signing>,
    pub replicas: u32,
    pub storage_classes: Vec<String>,
    /// Attempts after the first (keepclient's `Retries`).
    pub retries: u32,
    pub retry_delay: Duration,
}

/// Why one block could not be copied; carries the locator and servers it concerns.
#[derive(Debug, thiserror::Error)]
pub enum TransferError {
    #[error("Error getting block: {locator} {detail}")]
    Get { locator: String, detail: String },
    #[error("Could not write sufficient replicas of {locator}: wanted {wanted}, stored {stored}: {detail}")]
    Put {
        locator: String,
        wanted: u32,
        stored: u32,
        detail: String,
    },
}

/// What happened, for the counters.
#[derive(Debug, Default)]
pub struct TransferOutcome {
    /// Source replicas that were read but wrong (length or MD5), so another was tried.
    pub bad_replicas: u32,
    /// Requests that failed and were retried or routed around.
    pub request_errors: u32,
    pub replicas_stored: u32,
    /// The source server the block was read from (index into `src.services`).
    pub read_from: Option<usize>,
    /// The destination servers that confirmed a copy (indexes into `dst.services`).
    pub stored_on: Vec<usize>,
}

fn request_id() -> String {
    // `req-` + 20 base-36 characters, like Arvados' own ids.
    const ALPHABET: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut id = String::with_capacity(24);
    id.push_str("req-");
    for _ in 0..20 {
        id.push(ALPHABET[rand::random_range(0..ALPHABET.len())] as char);
    }
    id
}

fn is_retryable_status(status: u16) -> bool {
    status == 408 || status == 429 || (status >= 500 && status != 507)
}

/// The locator to GET: `hash+size`, signed as keep-rsync signs it (expiry now + 1 day).
fn source_locator(ctx: &TransferContext, short: &str) -> String {
    match &ctx.signing {
        Some(signing) => {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0);
            sign_locator(
                short,
                &ctx.src.token,
                &signing.key,
                now + 86_400,
                signing.ttl_secs,
            )
        }
        None => short.to_string(),
    }
}

/// The order to try source servers: the holders from the index first, starting at one
/// picked by the hash so load spreads across holders, then every other source server in
/// rendezvous order (as keepclient probes when it does not know the holders).
fn source_order(ctx: &TransferContext, block: &SourceBlock, hash_hex: &str) -> Vec<usize> {
    let mut order: Vec<usize> = Vec::with_capacity(ctx.src.services.len());
    let holders = &block.holders;
    if !holders.is_empty() {
        let start = block.id.hash.0[15] as usize % holders.len();
        for i in 0..holders.len() {
            order.push(holders[(start + i) % holders.len()] as usize);
        }
    }
    let uuids: Vec<&str> = ctx.src.services.iter().map(|s| s.uuid.as_str()).collect();
    for server in probe_order_go(hash_hex, &uuids) {
        if !order.contains(&server) {
            order.push(server);
        }
    }
    order
}

enum GetAttempt {
    Ok,
    NotFound,
    BadReplica(String),
    Retryable(String),
    Final(String),
}

/// One GET into `lease`, hashing as bytes land. Leaves the verified block in the lease.
#[allow(clippy::too_many_arguments)]
async fn get_once(
    client: &HttpClient,
    hasher: &HashBatcher,
    ctx: &TransferContext,
    server: usize,
    locator: &str,
    block: &SourceBlock,
    lease: &mut BufferLease,
) -> GetAttempt {
    let service = &ctx.src.services[server];
    let request = Request {
        method: Method::Get,
        origin: service.origin.clone(),
        path_and_query: format!("/{locator}"),
        headers: vec![
            (
                "Authorization".to_string(),
                format!("Bearer {}", ctx.src.token),
            ),
            ("X-Request-Id".to_string(), request_id()),
        ],
        body: None,
    };
    let mut response = match client.send(request).await {
        Ok(r) => r,
        Err(e) => return GetAttempt::Retryable(format!("{}: {e}", service.origin)),
    };
    if response.status != 200 {
        let status = response.status;
        let body = response.read_to_end(4096).await.unwrap_or_default();
        let text = String::from_utf8_lossy(&body).trim().to_string();
        let detail = format!("{} {status} {text}", service.origin);
        return match status {
            404 | 403 | 410 => GetAttempt::NotFound,
            s if is_retryable_status(s) => GetAttempt::Retryable(detail),
            _ => GetAttempt::Final(detail),
        };
    }
    let size = block.id.size;
    if response.content_length() != Some(size) {
        let got = response.content_length();
        let _ = response.discard().await;
        return GetAttempt::BadReplica(format!(
            "{}: Content-Length {got:?} does not match size hint {size}",
            service.origin
        ));
    }
    let mut buffer = lease.take();
    buffer.clear();
    let mut md5 = Md5State::new();
    loop {
        let before = buffer.len();
        let compio::BufResult(read, returned) = response.read_body_chunk(buffer).await;
        buffer = returned;
        match read {
            Ok(0) => break,
            Ok(_) => {
                let after = buffer.len();
                (md5, buffer) = hasher.update(md5, buffer, before..after).await;
            }
            Err(e) => {
                lease.put(buffer);
                return GetAttempt::Retryable(format!("{}: {e}", service.origin));
            }
        }
    }
    let length = buffer.len() as u64;
    lease.put(buffer);
    if length != size {
        return GetAttempt::BadReplica(format!(
            "{}: got {length} bytes, want {size}",
            service.origin
        ));
    }
    let digest = BlockHash(md5.finalize());
    if digest != block.id.hash {
        return GetAttempt::BadReplica(format!(
            "{}: checksum mismatch: content MD5 is {digest}",
            service.origin
        ));
    }
    GetAttempt::Ok
}

/// Fetches `block` into a fresh lease, verified, trying holders then other servers, with
/// keepclient's retry rounds for transient failures.
pub async fn fetch(
    client: &HttpClient,
    hasher: &HashBatcher,
    ctx: &TransferContext,
    pool: &BufferPool,
    block: &SourceBlock,
    outcome: &mut TransferOutcome,
) -> Result<BufferLease, TransferError> {
    let hash_hex = block.id.hash.to_string();
    let short = format!("{hash_hex}+{}", block.id.size);
    let mut lease = pool.acquire(block.id.size as usize).await;
    let mut order = source_order(ctx, block, &hash_hex);
    let mut errors: Vec<String> = Vec::new();
    let mut backoff = Backoff::new(ctx.retry_delay);
    for round in 0..=ctx.retries {
        let locator = source_locator(ctx, &short);
        let mut retry = Vec::new();
        for &server in &order {
            match get_once(client, hasher, ctx, server, &locator, block, &mut lease).await {
                GetAttempt::Ok => {
                    outcome.read_from = Some(server);
                    return Ok(lease);
                }
                GetAttempt::NotFound => {}
                GetAttempt::BadReplica(detail) => {
                    outcome.bad_replicas += 1;
                    errors.push(detail);
                }
                GetAttempt::Retryable(detail) => {
                    outcome.request_errors += 1;
                    errors.push(detail);
                    retry.push(server);
                }
                GetAttempt::Final(detail) => {
                    outcome.request_errors += 1;
                    errors.push(detail);
                }
            }
        }
        if retry.is_empty() || round == ctx.retries {
            break;
        }
        backoff.sleep().await;
        order = retry;
    }
    let detail = if errors.is_empty() {
        "Block not found".to_string()
    } else {
        errors.join("; ")
    };
    Err(TransferError::Get {
        locator: short,
        detail,
    })
}

/// The destination write order of many blocks at once: writable services sorted by
/// rendezvous weight (Go rule, §4), computed in SIMD lanes by `hash::probe_order_batch`.
/// Returned as indexes into `dst.services`.
pub fn write_orders(dst: &Cluster, hashes: &[BlockHash]) -> Vec<Vec<usize>> {
    let writable = dst.writable();
    let suffixes: Vec<&str> = writable
        .iter()
        .map(|&i| crate::keep::rendezvous::go_suffix(&dst.services[i].uuid))
        .collect();
    let hex: Vec<String> = hashes.iter().map(BlockHash::to_string).collect();
    let refs: Vec<&str> = hex.iter().map(String::as_str).collect();
    crate::hash::probe_order_batch(&refs, &suffixes)
        .into_iter()
        .map(|order| order.into_iter().map(|i| writable[i]).collect())
        .collect()
}

/// keepclient's retry delays: uniform in [1 ms, m), m starting at the retry delay and
/// doubling each round, capped at ten times the start.
struct Backoff {
    next: Duration,
    cap: Duration,
}

impl Backoff {
    fn new(start: Duration) -> Backoff {
        Backoff {
            next: start,
            cap: start * 10,
        }
    }

    async fn sleep(&mut self) {
        let max_ms = self.next.as_millis().max(2) as u64;
        compio::time::sleep(Duration::from_millis(rand::random_range(1..max_ms))).await;
        self.next = (self.next * 2).min(self.cap);
    }
}

enum PutAttempt {
    Stored(u32),
    Retryable(String),
    Final(String),
}

async fn put_once(
    client: &HttpClient,
    ctx: &TransferContext,
    server: usize,
    hash_hex: &str,
    body: Bytes,
) -> PutAttempt {
    let service = &ctx.dst.services[server];
    let mut headers = vec![
        (
            "Authorization".to_string(),
            format!("Bearer {}", ctx.dst.token),
        ),
        ("X-Request-Id".to_string(), request_id()),
        (
            "Content-Type".to_string(),
            "application/octet-stream".to_string(),
        ),
        (
            "X-Keep-Desired-Replicas".to_string(),
            ctx.replicas.to_string(),
        ),
    ];
    if !ctx.storage_classes.is_empty() {
        headers.push((
            "X-Keep-Storage-Classes".to_string(),
            ctx.storage_classes.join(", "),
        ));
    }
    let request = Request {
        method: Method::Put,
        origin: service.origin.clone(),
        path_and_query: format!("/{hash_hex}"),
        headers,
        body: Some(body),
    };
    let response = match client.send(request).await {
        Ok(r) => r,
        Err(e) => return PutAttempt::Retryable(format!("{}: {e}", service.origin)),
    };
    let status = response.status;
    let replicas = response
        .header("X-Keep-Replicas-Stored")
        .and_then(|v| v.trim().parse::<u32>().ok())
        .unwrap_or(1);
    let body = response.read_to_end(4096).await.unwrap_or_default();
    if status == 200 {
        return PutAttempt::Stored(replicas);
    }
    let detail = format!(
        "{} [{status}] {}",
        service.origin,
        String::from_utf8_lossy(&body).trim()
    );
    if is_retryable_status(status) {
        PutAttempt::Retryable(detail)
    } else {
        PutAttempt::Final(detail)
    }
}

/// Writes `body` to the destination until `ctx.replicas` are confirmed (§6.1): writable
/// servers in the given rendezvous order (`write_order`, indexes into the destination's
/// services, see [`write_orders`]), as many uploads at once as replicas are still needed (one
/// at a time when proxies are involved), the next server on failure, retry rounds for servers
/// that failed transiently. Every upload shares the same `Bytes`: no copy per replica.
pub async fn store(
    client: &HttpClient,
    ctx: &TransferContext,
    hash: &BlockHash,
    body: Bytes,
    write_order: &[usize],
    outcome: &mut TransferOutcome,
) -> Result<u32, TransferError> {
    let hash_hex = hash.to_string();
    let mut candidates: Vec<usize> = write_order.to_vec();
    let per_upload = if ctx.dst.all_writable_disk() {
        1
    } else {
        ctx.replicas.max(1)
    };
    let wanted = ctx.replicas.max(1);
    let mut stored = 0u32;
    let mut errors: Vec<String> = Vec::new();
    let mut backoff = Backoff::new(ctx.retry_delay);
    for round in 0..=ctx.retries {
        let mut queue = candidates.iter().copied();
        let mut retry = Vec::new();
        let mut in_flight = FuturesUnordered::new();
        loop {
            while stored < wanted && (in_flight.len() as u32) * per_upload < wanted - stored {
                let Some(server) = queue.next() else { break };
                let body = body.clone();
                let hash_hex = hash_hex.as_str();
                in_flight.push(async move {
                    (server, put_once(client, ctx, server, hash_hex, body).await)
                });
            }
            let Some((server, attempt)) = in_flight.next().await else {
                break;
            };
            match attempt {
                PutAttempt::Stored(n) => {
                    stored += n;
                    outcome.stored_on.push(server);
                }
                PutAttempt::Retryable(detail) => {
                    outcome.request_errors += 1;
                    errors.push(detail);
                    retry.push(server);
                }
                PutAttempt::Final(detail) => {
                    outcome.request_errors += 1;
                    errors.push(detail);
                }
            }
        }
        if stored >= wanted {
            outcome.replicas_stored = stored;
            return Ok(stored);
        }
        if retry.is_empty() || round == ctx.retries {
            break;
        }
        backoff.sleep().await;
        candidates = retry;
    }
    Err(TransferError::Put {
        locator: format!("{hash_hex}+{}", body.len()),
        wanted,
        stored,
        detail: if errors.is_empty() {
            "no writable destination servers".to_string()
        } else {
            errors.join("; ")
        },
    })
}
