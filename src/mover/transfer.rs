//! Moving one block: GET it from a source server that holds it, straight into a pooled
//! buffer with MD5 updated as each chunk lands, then PUT the frozen buffer to the first
//! writable destination servers in rendezvous order, following keepclient's rules
//! (`keep-protocol.md` §6.1, §6.2): which answers are retried (one policy, [`super::retry`]),
//! that a bad replica sends the read to the next holder, and that a block counts only once
//! the wanted replicas, and every wanted storage class, are confirmed.
//!
//! Written against the [`Keepstores`] trait, so the rules are unit-tested over the in-memory
//! fake (below) and run for real over HTTP.

use std::rc::Rc;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures_util::stream::{FuturesUnordered, StreamExt};

use super::control::Control;
use super::counters::{Counters, Op};
use super::gates::{Gates, Key};
use super::hash_batch::HashBatcher;
use super::pool::{BufferLease, BufferPool};
use super::retry::{next_for, Next, RetryPolicy, Rounds};
use crate::cluster::Cluster;
use crate::hash::Md5State;
use crate::index::SourceBlock;
use crate::keep::signature::SigningKey;
use crate::keep::{BlockHash, BlockId, ShortLocator};
use crate::keepstore::{Attempt, BadReplica, BlockBody, Cause, ErrorKind, Keepstores, PutWants};

/// Received bytes are handed to the hash batcher in segments of at least this much.
pub const HASH_SEGMENT: usize = 256 << 10;

/// How source locators are signed (keep-rsync signs each one itself, §2). `SigningKey`
/// prints as `<redacted>`.
#[derive(Clone, Debug)]
pub struct Signing {
    pub key: SigningKey,
    pub ttl_secs: u64,
}

/// What a copy is asked to do, the same for every block.
#[derive(Debug, Clone)]
pub struct Job {
    pub src: Cluster,
    pub dst: Cluster,
    pub signing: Option<Signing>,
    /// The destination's signing key, when known: reading destination replicas back where
    /// signatures are enforced (`-verify-existing`, `move`).
    pub dst_signing: Option<Signing>,
    /// Replicas wanted on the destination.
    pub replicas: u32,
    /// Storage classes wanted on the destination (each with `replicas` copies). Shared: every
    /// PUT's wants start as this list, without copying it.
    pub classes: Arc<[String]>,
}

/// Why one block could not be moved; carries its locator and every failed attempt.
#[derive(Debug, thiserror::Error)]
pub enum TransferError {
    #[error(
        "Error getting block: {locator} {}",
        describe(attempts, "Block not found")
    )]
    Get {
        locator: ShortLocator,
        attempts: Vec<Attempt>,
    },
    #[error(
        "Could not write sufficient replicas of {locator}: wanted {wanted}{}, stored {stored}: {}",
        classes_wanted(missing_classes),
        describe(attempts, "no writable destination servers")
    )]
    Put {
        locator: ShortLocator,
        wanted: u32,
        stored: u32,
        missing_classes: Vec<String>,
        attempts: Vec<Attempt>,
    },
}

fn describe(attempts: &[Attempt], none: &str) -> String {
    if attempts.is_empty() {
        return none.to_string();
    }
    attempts
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

fn classes_wanted(missing: &[String]) -> String {
    if missing.is_empty() {
        String::new()
    } else {
        format!(" (classes not confirmed: {})", missing.join(", "))
    }
}

impl TransferError {
    /// The kind of trouble that decided the failure: the last attempt's, or not found.
    pub fn kind(&self) -> ErrorKind {
        let attempts = match self {
            TransferError::Get { attempts, .. } | TransferError::Put { attempts, .. } => attempts,
        };
        attempts.last().map_or(
            match self {
                TransferError::Get { .. } => ErrorKind::NotFound,
                TransferError::Put { .. } => ErrorKind::Full,
            },
            |a| a.cause.kind(),
        )
    }
}

/// What happened, for the counters and the block's report line.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Requests made (GETs and PUTs).
    pub attempts: u32,
    /// Source replicas read but wrong (length or MD5), so another was tried.
    pub bad_replicas: u32,
    /// Requests that failed and were retried or routed around.
    pub request_errors: u32,
    pub replicas_stored: u32,
    /// The source server the block was read from (index into `src.services`).
    pub read_from: Option<usize>,
    /// The destination servers that confirmed a copy (indexes into `dst.services`).
    pub stored_on: Vec<usize>,
    /// The locator each of them answered with (signed by it), for a read-back.
    pub stored_locators: Vec<String>,
}

/// Everything a transfer uses that lives as long as a worker.
pub struct Ctx<'a, K: Keepstores> {
    pub keepstores: &'a K,
    pub job: &'a Job,
    pub retry: RetryPolicy,
    pub hasher: &'a HashBatcher,
    pub pool: &'a BufferPool,
    pub gates: &'a Rc<Gates>,
    pub control: &'a Control,
    pub counters: &'a Counters,
    /// Per destination server, the most replicas one PUT can store there
    /// ([`Layout::replica_caps`](crate::index::layout::Layout::replica_caps)); empty when
    /// the mounts are unknown.
    pub replica_caps: &'a [Option<u32>],
}

/// The locator to GET: `hash+size`, signed as keep-rsync signs it (expiry now + 1 day), at
/// the moment of the request so a long run never sends a stale signature.
pub fn source_locator(src: &Cluster, signing: Option<&Signing>, short: &ShortLocator) -> String {
    match signing {
        Some(signing) => {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0);
            signing.key.sign_locator(
                short.as_str(),
                src.bearer.token(),
                now + 86_400,
                signing.ttl_secs,
            )
        }
        None => short.as_str().to_string(),
    }
}

/// The order to try source servers: the holders from the index first, starting at one
/// picked by the hash so load spreads across holders, then every other source server in
/// rendezvous order (as keepclient probes when it does not know the holders).
pub fn source_order(src: &Cluster, block: &SourceBlock, rendezvous: &[usize]) -> Vec<usize> {
    let mut order: Vec<usize> = Vec::with_capacity(src.services.len());
    let holders = &block.holders;
    if !holders.is_empty() {
        let start = block.id.hash.0[15] as usize % holders.len();
        for i in 0..holders.len() {
            order.push(holders[(start + i) % holders.len()] as usize);
        }
    }
    for &server in rendezvous {
        if !order.contains(&server) {
            order.push(server);
        }
    }
    order
}

impl<K: Keepstores> Ctx<'_, K> {
    /// Records the latency of a request that began at `began`; returns when it ended.
    fn observe(
        &self,
        op: Op,
        cluster: &Cluster,
        server: usize,
        began: std::time::Instant,
    ) -> std::time::Instant {
        let ended = std::time::Instant::now();
        if let Some(service) = cluster.services.get(server) {
            let latency = ended.saturating_duration_since(began);
            self.counters
                .observe(op, &service.uuid, latency.as_secs_f64());
        }
        ended
    }

    fn note_error(&self, cluster: &Cluster, key: Key, server: usize, cause: &Cause) {
        if cause.is_overload() {
            self.gates.overloaded(key);
        }
        let name = cluster
            .services
            .get(server)
            .map(|s| s.origin.to_string())
            .unwrap_or_default();
        self.counters.error(&name, cause.kind());
    }

    async fn throttle(&self, limit: &super::control::RateLimit, bytes: u64) {
        let wait = limit.reserve(bytes);
        if !wait.is_zero() {
            compio::time::sleep(wait).await;
        }
    }

    /// One GET into `lease`, hashing as bytes land. Leaves the verified block in the lease.
    /// `asked`: when the lane asked for the server's gate; the time from then to the
    /// response head (gate wait included: waiting there is queueing too) steers the window.
    async fn get_once(
        &self,
        cluster: &Cluster,
        server: usize,
        locator: &str,
        block: &BlockId,
        lease: &mut BufferLease,
        asked: std::time::Instant,
    ) -> Result<(), Cause> {
        // From the request on: a block waiting for its response head will have chunks too.
        let _receiving = self.hasher.receiving();
        let mut body = self.keepstores.get_block(cluster, server, locator).await?;
        self.gates.record_head(asked.elapsed());
        let size = block.size;
        if body.content_length() != Some(size) {
            return Err(Cause::BadReplica(BadReplica::ContentLength {
                got: body.content_length(),
                want: size,
            }));
        }
        let mut buffer = lease.take();
        buffer.clear();
        let mut md5 = Md5State::new();
        // Bytes are hashed in segments of at least HASH_SEGMENT (and the rest at the end):
        // fewer, longer jobs for the lanes than one per network read.
        let mut hashed = 0;
        loop {
            let (read, returned) = body.read_chunk(buffer).await;
            buffer = returned;
            match read {
                Ok(0) => break,
                Ok(n) => {
                    self.counters
                        .bytes_in
                        .fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
                    if buffer.len() - hashed >= HASH_SEGMENT {
                        let end = buffer.len();
                        let done = self.hasher.update(md5, buffer, hashed..end, false).await;
                        (md5, buffer, hashed) = (done.state, done.buffer, done.hashed_to);
                    }
                    self.throttle(&self.control.bw_in, n as u64).await;
                }
                Err(cause) => {
                    lease.put(buffer);
                    return Err(cause);
                }
            }
        }
        if hashed < buffer.len() {
            let end = buffer.len();
            let done = self.hasher.update(md5, buffer, hashed..end, true).await;
            (md5, buffer) = (done.state, done.buffer);
        }
        let length = buffer.len() as u64;
        lease.put(buffer);
        if length != size {
            return Err(Cause::BadReplica(BadReplica::Length {
                got: length,
                want: size,
            }));
        }
        let digest = BlockHash(md5.finalize());
        if digest != block.hash {
            return Err(Cause::BadReplica(BadReplica::Checksum { got: digest }));
        }
        Ok(())
    }

    /// Reads one replica of `block` from one server and checks its length and MD5 (the
    /// same pooled buffers and SIMD lanes as the copy): `-verify-existing`, `validate -deep`.
    pub async fn check_replica(
        &self,
        key: Key,
        locator: &str,
        block: &BlockId,
    ) -> Result<(), Cause> {
        let (cluster, server) = match key {
            Key::Src(i) => (&self.job.src, i),
            Key::Dst(i) => (&self.job.dst, i),
        };
        let mut lease = self.pool.acquire(block.size as usize).await;
        let asked = std::time::Instant::now();
        let permit = self.gates.enter(key).await;
        let began = permit.began(asked);
        let result = self
            .get_once(cluster, server, locator, block, &mut lease, asked)
            .await;
        drop(permit);
        self.observe(Op::Get, cluster, server, began);
        if let Err(cause) = &result {
            if !matches!(cause, Cause::BadReplica(_)) {
                self.note_error(cluster, key, server, cause);
            }
        }
        result
    }

    /// Fetches `block` into a fresh lease, verified, trying holders then other servers, in
    /// keepclient's retry rounds.
    pub async fn fetch(
        &self,
        block: &SourceBlock,
        short: &ShortLocator,
        rendezvous: &[usize],
        outcome: &mut Outcome,
    ) -> Result<BufferLease, TransferError> {
        let src = &self.job.src;
        let mut lease = self.pool.acquire(block.id.size as usize).await;
        let mut rounds = Rounds::new(self.retry, source_order(src, block, rendezvous));
        let mut attempts: Vec<Attempt> = Vec::new();
        let mut resigned = false;
        while let Some(order) = rounds.next().await {
            for server in order {
                let key = Key::Src(server);
                let mut result;
                loop {
                    // Signed per request: a signature is never older than one request.
                    let locator = source_locator(src, self.job.signing.as_ref(), short);
                    let asked = std::time::Instant::now();
                    let permit = self.gates.enter(key).await;
                    outcome.attempts += 1;
                    let began = permit.began(asked);
                    result = self
                        .get_once(src, server, &locator, &block.id, &mut lease, asked)
                        .await;
                    drop(permit);
                    self.observe(Op::Get, src, server, began);
                    // An expired signature (a clock skew, a very slow queue) is worth exactly
                    // one more try, freshly signed, right away.
                    match &result {
                        Err(cause) if cause.is_expired_signature() && !resigned => {
                            resigned = true;
                            self.note_error(src, key, server, cause);
                        }
                        _ => break,
                    }
                }
                match result {
                    Ok(()) => {
                        self.gates.success(key);
                        outcome.read_from = Some(server);
                        return Ok(lease);
                    }
                    Err(cause) => {
                        let next = if cause.is_expired_signature() {
                            Next::Drop
                        } else {
                            next_for(&cause)
                        };
                        if matches!(cause, Cause::BadReplica(_)) {
                            outcome.bad_replicas += 1;
                        }
                        if cause.kind() != ErrorKind::NotFound {
                            outcome.request_errors += 1;
                            self.note_error(src, key, server, &cause);
                        }
                        rounds.mark(server, next);
                        attempts.push(Attempt::new(src, server, cause));
                    }
                }
            }
        }
        let only_not_found = attempts
            .iter()
            .all(|a| a.cause.kind() == ErrorKind::NotFound);
        if only_not_found {
            attempts.clear();
        }
        Err(TransferError::Get {
            locator: *short,
            attempts,
        })
    }

    /// Writes `body` to the destination until the wanted replicas, and every wanted storage
    /// class, are confirmed (§6.1): writable servers in `write_order` (indexes into the
    /// destination's services, rendezvous order), as many uploads at once as are still
    /// needed (one at a time when proxies are involved), the next server on failure, retry
    /// rounds for servers that failed transiently. Every upload shares the same `Bytes`.
    pub async fn store(
        &self,
        short: &ShortLocator,
        body: Bytes,
        write_order: &[usize],
        outcome: &mut Outcome,
    ) -> Result<u32, TransferError> {
        self.store_replicas(short, body, write_order, self.job.replicas, outcome)
            .await
    }

    /// A signed `HEAD` of one replica: keepstore reads the block and checks its MD5 before
    /// answering 200, so this confirms the bytes without moving them.
    pub async fn read_back(&self, key: Key, locator: &str) -> Result<(), Cause> {
        let (cluster, server) = match key {
            Key::Src(i) => (&self.job.src, i),
            Key::Dst(i) => (&self.job.dst, i),
        };
        let permit = self.gates.enter(key).await;
        let began = std::time::Instant::now();
        let result = self.keepstores.head_block(cluster, server, locator).await;
        drop(permit);
        self.observe(Op::Head, cluster, server, began);
        if let Err(cause) = &result {
            self.note_error(cluster, key, server, cause);
        }
        result
    }

    /// [`Ctx::store`] with `wanted` replicas instead of the job's (vacate keeps each
    /// block's own count).
    pub async fn store_replicas(
        &self,
        short: &ShortLocator,
        body: Bytes,
        write_order: &[usize],
        wanted: u32,
        outcome: &mut Outcome,
    ) -> Result<u32, TransferError> {
        let dst = &self.job.dst;
        let wanted = wanted.max(1);
        let per_upload = if dst.all_writable_disk() { 1 } else { wanted };
        let mut need = ClassNeeds::new(wanted, &self.job.classes);
        let mut attempts: Vec<Attempt> = Vec::new();
        let mut rounds = Rounds::new(self.retry, write_order.to_vec());
        let upload = |server: usize, wants: PutWants, body: Bytes| async move {
            let key = Key::Dst(server);
            let size = body.len() as u64;
            self.throttle(&self.control.bw_out, size).await;
            // From the gate on, as for GETs: waiting there is queueing too.
            let asked = std::time::Instant::now();
            let permit = self.gates.enter(key).await;
            let began = permit.began(asked);
            let result = self
                .keepstores
                .put_block(dst, server, short, body, &wants)
                .await;
            let ended = self.observe(Op::Put, dst, server, began);
            match &result {
                Ok(_) => self
                    .gates
                    .record_put(size, ended.saturating_duration_since(asked)),
                Err(cause) if cause.is_overload() || cause.is_slow() => {
                    self.gates.record_put_trouble()
                }
                Err(_) => {}
            }
            (server, result)
        };
        // Empty again at the end of every round; made once, when first needed (it allocates).
        let mut in_flight: Option<FuturesUnordered<_>> = None;
        let running = |in_flight: &Option<FuturesUnordered<_>>| {
            in_flight.as_ref().map_or(0, |uploads| uploads.len()) as u32
        };
        while let Some(candidates) = rounds.next().await {
            let mut queue = candidates.into_iter();
            loop {
                // An upload that is the only one to run is awaited in place: no task node
                // allocated, no future moved into it (one PUT per block when one upload asks
                // for every replica, or one replica is wanted).
                let mut alone = None;
                while need.concurrency() > 0
                    && running(&in_flight) * per_upload < need.concurrency()
                {
                    let Some(server) = queue.next() else { break };
                    let wants = PutWants {
                        replicas: wanted,
                        classes: need.classes_todo(),
                    };
                    outcome.attempts += 1;
                    if running(&in_flight) == 0 && per_upload >= need.concurrency() {
                        alone = Some((server, wants));
                        break;
                    }
                    in_flight
                        .get_or_insert_with(FuturesUnordered::new)
                        .push(upload(server, wants, body.clone()));
                }
                let finished = match (alone, in_flight.as_mut()) {
                    (Some((server, wants)), _) => Some(upload(server, wants, body.clone()).await),
                    (None, Some(uploads)) => uploads.next().await,
                    (None, None) => None,
                };
                let Some((server, result)) = finished else {
                    break;
                };
                match result {
                    Ok(mut reply) => {
                        self.gates.success(Key::Dst(server));
                        // A server claiming more replicas than its mounts can hold lies
                        // (or is misconfigured): count what it can hold, and write the
                        // rest elsewhere.
                        if let Some(cap) = self.replica_caps.get(server).copied().flatten() {
                            reply.replicas = reply.replicas.min(cap);
                            for (_, n) in reply.classes.iter_mut().flatten() {
                                *n = (*n).min(cap);
                            }
                        }
                        need.confirmed(reply.replicas, reply.classes.as_deref());
                        outcome.stored_on.push(server);
                        outcome.stored_locators.push(reply.locator);
                        self.counters
                            .bytes_out
                            .fetch_add(body.len() as u64, std::sync::atomic::Ordering::Relaxed);
                    }
                    Err(cause) => {
                        outcome.request_errors += 1;
                        self.note_error(dst, Key::Dst(server), server, &cause);
                        rounds.mark(server, next_for(&cause));
                        attempts.push(Attempt::new(dst, server, cause));
                    }
                }
            }
            if need.satisfied() {
                outcome.replicas_stored = need.stored;
                return Ok(need.stored);
            }
        }
        outcome.replicas_stored = need.stored;
        Err(TransferError::Put {
            locator: *short,
            wanted,
            stored: need.stored,
            missing_classes: if need.tracking {
                need.classes_todo().to_vec()
            } else {
                Vec::new()
            },
            attempts,
        })
    }
}

/// keepclient's accounting of what a write still needs (support.go `httpBlockWrite`):
/// replicas per wanted class while servers confirm classes, else total replicas.
#[derive(Debug)]
struct ClassNeeds {
    wanted: u32,
    stored: u32,
    /// The job's classes (shared, not copied per block).
    classes: Arc<[String]>,
    /// Per class of `classes`: replicas still to confirm (0: done).
    todo: Vec<u32>,
    tracking: bool,
}

impl ClassNeeds {
    fn new(wanted: u32, classes: &Arc<[String]>) -> ClassNeeds {
        ClassNeeds {
            wanted,
            stored: 0,
            classes: classes.clone(),
            todo: vec![wanted; classes.len()],
            tracking: !classes.is_empty(),
        }
    }

    /// Uploads that may be in flight without over-replicating (keepclient's maxConcurrency).
    fn concurrency(&self) -> u32 {
        if self.tracking {
            self.todo
                .iter()
                .copied()
                .filter(|&n| n > 0)
                .min()
                .unwrap_or(0)
        } else {
            self.wanted.saturating_sub(self.stored)
        }
    }

    /// The classes still wanted: the job's own list while every class is (no copy), else
    /// the ones left.
    fn classes_todo(&self) -> Arc<[String]> {
        if self.todo.iter().all(|&n| n > 0) {
            return self.classes.clone();
        }
        self.classes
            .iter()
            .zip(&self.todo)
            .filter(|(_, &n)| n > 0)
            .map(|(class, _)| class.clone())
            .collect()
    }

    fn confirmed(&mut self, replicas: u32, classes: Option<&[(String, u32)]>) {
        // Saturating: with the mounts unknown, `replicas` is the server's uncapped claim.
        self.stored = self.stored.saturating_add(replicas);
        match classes {
            // A server that does not report classes: rely on the replica count from now on.
            None => self.tracking = false,
            Some(classes) => {
                // A class named twice (`-storage-classes a,a`) is one class: both entries
                // count what the server confirmed for it (a total per class name).
                for (name, n) in classes {
                    for (class, todo) in self.classes.iter().zip(&mut self.todo) {
                        if class == name {
                            *todo = todo.saturating_sub(*n);
                        }
                    }
                }
            }
        }
    }

    fn satisfied(&self) -> bool {
        if self.tracking {
            self.todo.iter().all(|&n| n == 0)
        } else {
            self.stored >= self.wanted
        }
    }
}

#[cfg(test)]
mod tests;
