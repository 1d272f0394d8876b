//! keepstore's pull and trash workers (services/keepstore/pull_worker.go, trash_worker.go):
//! a queue that `PUT /pull` or `PUT /trash` replaces wholesale, a fixed number of workers
//! taking items from its front, and counters for tests (queued, in progress, done,
//! failed, skipped).
//!
//! Pull: the item's servers are tried in keepclient's root-sorter order over the URL
//! strings (MD5 of hash + URL, or + its last 15 characters if the URL is exactly 27 long,
//! heaviest first), once each (the worker's keepclient has Retries = 0); the GET carries
//! the locator signed with this keepstore's own key and TTL for the fixed token
//! [`PULL_TOKEN`]; a 200 whose Content-Length is not the size, or whose body fails the
//! length or MD5 check, fails the item at once (other servers are not tried, as in
//! keepclient); the block, held in memory, is written to the named mount (item skipped if
//! the mount is unknown or read-only) or to the first writable mount in keepstore order.
//!
//! Trash: items whose `block_mtime` is newer than now − BlobSigningTTL are skipped; on
//! each mount (the named one, or every trash-allowed mount) a copy is trashed only if its
//! stored mtime equals `block_mtime` exactly.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::Notify;

use crate::keep::locator::{parse_keepstore, MAX_BLOCK_SIZE};
use crate::keep::rendezvous::{go_suffix, weight};
use crate::keep::signature::sign_locator;
use crate::keep::wire::{PullItem, TrashItem};
use crate::keepstore::Keepstore;
use crate::store::{now_ns, Payload};

/// The token keepstore's pull worker sends (pull_worker.go).
pub const PULL_TOKEN: &str = "keepstore-token-used-for-pulling-data-from-same-cluster";
/// keepclient's whole-request timeout for disk services.
pub const PULL_TIMEOUT: Duration = Duration::from_secs(20);

/// Counters of one worker pool.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct WorkerStats {
    /// Items waiting in the queue.
    pub queued: u64,
    /// Items being worked on.
    pub in_progress: u64,
    /// Items that did their job (block pulled and written; at least one copy trashed).
    pub done: u64,
    /// Pull items that could not be done (no server gave a good copy, the write failed,
    /// no writable mount).
    pub failed: u64,
    /// Items ignored by keepstore's rules (invalid locator, unknown or read-only mount,
    /// trash item too young, no copy with exactly that mtime).
    pub skipped: u64,
    /// Lists received (`PUT /pull` or `PUT /trash`).
    pub lists: u64,
}

/// A replaceable work queue.
pub struct WorkQueue<T> {
    items: Mutex<VecDeque<T>>,
    notify: Notify,
    in_progress: AtomicU64,
    done: AtomicU64,
    failed: AtomicU64,
    skipped: AtomicU64,
    lists: AtomicU64,
}

/// What became of one item.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Done,
    Failed,
    Skipped,
}

impl<T> Default for WorkQueue<T> {
    fn default() -> Self {
        WorkQueue {
            items: Mutex::new(VecDeque::new()),
            notify: Notify::new(),
            in_progress: AtomicU64::new(0),
            done: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            skipped: AtomicU64::new(0),
            lists: AtomicU64::new(0),
        }
    }
}

impl<T: Send + 'static> WorkQueue<T> {
    /// Replaces the queue with `list` (an empty list clears it).
    pub fn replace(&self, list: Vec<T>) {
        self.lists.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut items) = self.items.lock() {
            *items = list.into();
        }
        self.notify.notify_waiters();
    }

    pub fn clear(&self) {
        if let Ok(mut items) = self.items.lock() {
            items.clear();
        }
    }

    async fn next(&self) -> T {
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let item = self.items.lock().ok().and_then(|mut i| i.pop_front());
            if let Some(item) = item {
                self.in_progress.fetch_add(1, Ordering::SeqCst);
                return item;
            }
            notified.await;
        }
    }

    fn record(&self, outcome: Outcome) {
        let counter = match outcome {
            Outcome::Done => &self.done,
            Outcome::Failed => &self.failed,
            Outcome::Skipped => &self.skipped,
        };
        counter.fetch_add(1, Ordering::SeqCst);
        self.in_progress.fetch_sub(1, Ordering::SeqCst);
    }

    pub fn stats(&self) -> WorkerStats {
        WorkerStats {
            queued: self.items.lock().map(|i| i.len() as u64).unwrap_or(0),
            in_progress: self.in_progress.load(Ordering::SeqCst),
            done: self.done.load(Ordering::SeqCst),
            failed: self.failed.load(Ordering::SeqCst),
            skipped: self.skipped.load(Ordering::SeqCst),
            lists: self.lists.load(Ordering::SeqCst),
        }
    }
}

/// Starts keepstore's workers (inside the runtime): `max(1, BlobReplicateConcurrency)`
/// pull workers if any mount is writable, and `BlobTrashConcurrency` trash workers if
/// `BlobTrash` is on and any mount allows trash (as keepstore decides at start-up).
pub fn start(ks: &Arc<Keepstore>) {
    if ks.mounts.iter().any(|m| m.is_writable()) {
        for _ in 0..ks.policy.blob_replicate_concurrency.max(1) {
            let ks = ks.clone();
            tokio::spawn(async move {
                loop {
                    let item = ks.pull.next().await;
                    let outcome = pull_one(&ks, &item).await;
                    ks.pull.record(outcome);
                }
            });
        }
    }
    if ks.policy.blob_trash && ks.mounts.iter().any(|m| m.allows_trash()) {
        for _ in 0..ks.policy.blob_trash_concurrency {
            let ks = ks.clone();
            tokio::spawn(async move {
                loop {
                    let item = ks.trash.next().await;
                    let outcome = trash_one(&ks, &item);
                    ks.trash.record(outcome);
                }
            });
        }
    }
}

/// `servers` in keepclient's root-sorter order for `hash32` (heaviest first), duplicates
/// dropped (keepclient keys its roots by URL).
pub fn pull_order(hash32: &str, servers: &[String]) -> Vec<String> {
    let mut unique: Vec<&String> = Vec::new();
    for s in servers {
        if !unique.contains(&s) {
            unique.push(s);
        }
    }
    let mut weighted: Vec<([u8; 16], &String)> = unique
        .into_iter()
        .map(|s| (weight(hash32, go_suffix(s)), s))
        .collect();
    weighted.sort_by_key(|w| std::cmp::Reverse(w.0));
    weighted.into_iter().map(|(_, s)| s.clone()).collect()
}

async fn pull_one(ks: &Keepstore, item: &PullItem) -> Outcome {
    let Ok(loc) = parse_keepstore(&item.locator) else {
        return Outcome::Skipped;
    };
    let faults = ks.faults();
    if faults.pull_ignore {
        return Outcome::Skipped;
    }
    let damaged = faults
        .pull_corrupt
        .iter()
        .any(|prefix| item.locator.starts_with(prefix.as_str()));
    let restarts = ks.restarts.load(Ordering::SeqCst);
    let target = if item.mount_uuid.is_empty() {
        match ks
            .mount_order(&loc.hash)
            .into_iter()
            .find(|m| m.is_writable())
        {
            Some(m) => m.clone(),
            None => return Outcome::Failed,
        }
    } else {
        match ks.mounts.iter().find(|m| m.uuid == item.mount_uuid) {
            Some(m) if m.is_writable() => m.clone(),
            _ => return Outcome::Skipped,
        }
    };
    let policy = &ks.policy;
    let signed = {
        let expiry = (now_ns() / 1_000_000_000) as u64 + policy.blob_signing_ttl;
        sign_locator(
            &item.locator,
            PULL_TOKEN,
            policy.blob_signing_key.as_bytes(),
            expiry,
            policy.blob_signing_ttl,
        )
    };
    let hash32 = loc.hash.to_string();
    for server in pull_order(&hash32, &item.servers) {
        let Ok(got) = crate::fetch::get(
            &server,
            &signed,
            PULL_TOKEN,
            PULL_TIMEOUT,
            MAX_BLOCK_SIZE as usize,
        )
        .await
        else {
            continue;
        };
        if got.status != 200 {
            continue;
        }
        // keepclient: a 200 must carry the size hint as its Content-Length, and the body
        // must match length and MD5; otherwise the read fails without trying others.
        let size_ok = match loc.size.filter(|&s| s > 0) {
            Some(size) => got.content_length == Some(size) && got.body.len() as u64 == size,
            None => got.content_length == Some(got.body.len() as u64),
        };
        if damaged || !size_ok || crate::hash::md5(&got.body) != loc.hash.0 {
            return Outcome::Failed;
        }
        if ks.restarts.load(Ordering::SeqCst) != restarts {
            // The keepstore "process" that started this pull is gone.
            return Outcome::Failed;
        }
        let payload = Payload::Bytes {
            data: got.body,
            verified: true,
        };
        return match target.write(loc.hash, &payload) {
            Ok(()) => Outcome::Done,
            Err(_) => Outcome::Failed,
        };
    }
    Outcome::Failed
}

fn trash_one(ks: &Keepstore, item: &TrashItem) -> Outcome {
    let Ok(loc) = parse_keepstore(&item.locator) else {
        return Outcome::Skipped;
    };
    let ttl_ns = (ks.policy.blob_signing_ttl as i64).saturating_mul(1_000_000_000);
    if now_ns() - item.block_mtime < ttl_ns {
        return Outcome::Skipped;
    }
    // trash_worker.go: no mount named = the writable mounts (mountsW); a named mount only
    // if it allows trash (writable, or AllowTrashWhenReadOnly).
    let mounts: Vec<_> = if item.mount_uuid.is_empty() {
        ks.mounts.iter().filter(|m| m.is_writable()).collect()
    } else {
        match ks.mounts.iter().find(|m| m.uuid == item.mount_uuid) {
            Some(m) if m.allows_trash() => vec![m],
            _ => return Outcome::Skipped,
        }
    };
    let rules = ks.trash_rules();
    let mut trashed = false;
    for m in mounts {
        match m.stat(&loc.hash) {
            Some((_, mtime)) if mtime == item.block_mtime => {
                trashed |= m.trash(&loc.hash, &rules);
            }
            _ => {}
        }
    }
    if trashed {
        Outcome::Done
    } else {
        Outcome::Skipped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn servers_are_sorted_like_keepclient_sorts_roots() {
        let hash = "acbd18db4cc2f85cedef654fccc4a4d8";
        let servers: Vec<String> = (0..5)
            .map(|i| format!("http://127.0.0.1:{}", 25100 + i))
            .collect();
        let order = pull_order(hash, &servers);
        assert_eq!(order.len(), 5);
        let weights: Vec<[u8; 16]> = order
            .iter()
            .map(|s| crate::hash::md5(format!("{hash}{s}").as_bytes()))
            .collect();
        assert!(weights.windows(2).all(|w| w[0] >= w[1]), "heaviest first");
        // A 27-character URL is weighed by its last 15 characters, as a uuid would be.
        let url27 = "http://keep.example.org:251".to_string();
        assert_eq!(url27.len(), 27);
        let expected = crate::hash::md5(format!("{hash}{}", &url27[12..]).as_bytes());
        assert_eq!(weight(hash, go_suffix(&url27)), expected);
        let dup = vec![servers[0].clone(), servers[0].clone()];
        assert_eq!(pull_order(hash, &dup).len(), 1);
    }
}
