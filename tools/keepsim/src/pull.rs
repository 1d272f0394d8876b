//! keepstore's pull worker (services/keepstore/pull_worker.go), as far as keepmover's pull
//! mode depends on it: `PUT /pull` *replaces* the queue (an empty list clears it), a fixed
//! number of workers (`Collections.BlobReplicateConcurrency`) take items from its front,
//! each item's servers are tried in keepclient's order for the block (md5(hash + server
//! URL), heaviest first), every GET is signed with this keepstore's own key, its own
//! BlobSigningTTL and a fixed token, the bytes (held in memory) are MD5-checked, and the
//! block is written to the named mount (skipped if unknown or read-only) or to the first
//! writable mount in keepstore's rendezvous order. There is no reply per item: completion
//! shows only in the index.
//!
//! Kept in its own file so it can be reconciled with a fuller keepstore model; the test
//! hooks it reads are [`crate::Faults`]' `pull_*` fields.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use md5::{Digest, Md5};
use serde::Deserialize;
use tokio::sync::Notify;

use crate::keep::locator::parse_keepstore;
use crate::keep::rendezvous::probe_order_go;
use crate::keep::signature::sign_locator;
use crate::keepstore::Keepstore;
use crate::store::now_ns;

/// The token keepstore's pull worker sends (pull_worker.go).
pub const PULL_TOKEN: &str = "keepstore-token-used-for-pulling-data-from-same-cluster";

/// One pull list entry, as keepstore decodes it.
#[derive(Clone, Debug, Deserialize)]
pub struct PullItem {
    pub locator: String,
    pub servers: Vec<String>,
    #[serde(default)]
    pub mount_uuid: String,
}

/// A keepstore's pull queue and its counters.
#[derive(Debug, Default)]
pub struct PullQueue {
    todo: Mutex<VecDeque<PullItem>>,
    wake: Notify,
    started: AtomicBool,
    /// Lists received.
    pub lists: AtomicUsize,
    /// Items whose block was fetched, checked and written.
    pub pulled: AtomicUsize,
    /// Items that failed (no server gave the right bytes, or the write failed).
    pub failed: AtomicUsize,
    /// Items dropped by the `pull_ignore` hook.
    pub ignored: AtomicUsize,
}

impl PullQueue {
    /// keepstore's `SetPullList`: the new list replaces whatever was queued.
    pub fn replace(&self, items: Vec<PullItem>) {
        if let Ok(mut todo) = self.todo.lock() {
            *todo = items.into();
        }
        self.lists.fetch_add(1, Ordering::Relaxed);
        self.wake.notify_waiters();
    }

    /// Items still queued (not yet taken by a worker).
    pub fn queued(&self) -> usize {
        self.todo.lock().map(|t| t.len()).unwrap_or(0)
    }

    async fn next(&self) -> PullItem {
        loop {
            // Registered before the check, so a list arriving in between still wakes us.
            let woken = self.wake.notified();
            if let Some(item) = self.todo.lock().ok().and_then(|mut t| t.pop_front()) {
                return item;
            }
            woken.await;
        }
    }
}

/// keepclient's order for a pull's servers: the URLs as service "uuids" (so the whole URL
/// unless it happens to be 27 characters), md5(hash + that), heaviest first.
pub fn pull_order(hash32: &str, servers: &[String]) -> Vec<String> {
    let mut unique: Vec<&str> = Vec::new();
    for s in servers {
        if !unique.contains(&s.as_str()) {
            unique.push(s);
        }
    }
    probe_order_go(hash32, &unique)
        .into_iter()
        .map(|i| unique[i].to_string())
        .collect()
}

/// Starts the keepstore's pull workers once (on the first list), if it has a writable mount.
pub fn start_workers(ks: &Arc<Keepstore>) {
    if ks.pulls.started.swap(true, Ordering::AcqRel) {
        return;
    }
    if !ks.mounts.iter().any(|m| m.is_writable()) {
        return;
    }
    for _ in 0..ks.policy.blob_replicate_concurrency.max(1) {
        let ks = ks.clone();
        tokio::spawn(async move {
            loop {
                let item = ks.pulls.next().await;
                if ks.faults().pull_ignore {
                    ks.pulls.ignored.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                let counter = if pull_one(&ks, &item).await {
                    &ks.pulls.pulled
                } else {
                    &ks.pulls.failed
                };
                counter.fetch_add(1, Ordering::Relaxed);
            }
        });
    }
}

/// One item: fetch from the servers in order, check, write. `true` when written.
async fn pull_one(ks: &Keepstore, item: &PullItem) -> bool {
    let Ok(loc) = parse_keepstore(&item.locator) else {
        return false;
    };
    let hash32 = loc.hash.to_string();
    let short = format!("{hash32}+{}", loc.size.unwrap_or(0));
    let ttl = ks.policy.blob_signing_ttl;
    let expiry = (now_ns() / 1_000_000_000) as u64 + ttl;
    let signed = sign_locator(
        &short,
        PULL_TOKEN,
        ks.policy.blob_signing_key.as_bytes(),
        expiry,
        ttl,
    );
    // The target mount first: keepstore skips an item for an unknown or read-only mount
    // before fetching anything.
    let target = if item.mount_uuid.is_empty() {
        None
    } else {
        match ks.mounts.iter().find(|m| m.uuid == item.mount_uuid) {
            Some(m) if m.is_writable() => Some(m.clone()),
            _ => return false,
        }
    };
    let corrupt_on_the_way = ks
        .faults()
        .pull_corrupt
        .iter()
        .any(|p| !p.is_empty() && hash32.starts_with(p.as_str()));
    for server in pull_order(&hash32, &item.servers) {
        let Some(data) = crate::fetch::get_block(&server, &signed, PULL_TOKEN).await else {
            continue;
        };
        let data = if corrupt_on_the_way && !data.is_empty() {
            let mut bad = data.to_vec();
            bad[0] ^= 0xff;
            bytes::Bytes::from(bad)
        } else {
            data
        };
        let digest: [u8; 16] = Md5::digest(&data).into();
        if digest != loc.hash.0 || loc.size.is_some_and(|s| s != data.len() as u64) {
            continue;
        }
        let mount = match &target {
            Some(m) => m.clone(),
            None => match ks.first_writable_mount(&loc.hash) {
                Some(m) => m,
                None => return false,
            },
        };
        return mount.put(loc.hash, data).is_ok();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn servers_are_ordered_by_md5_of_hash_and_url() {
        let hash = "acbd18db4cc2f85cedef654fccc4a4d8";
        let servers: Vec<String> = (0..4).map(|i| format!("http://h:{}", 25107 + i)).collect();
        let order = pull_order(hash, &servers);
        let weight = |s: &str| -> [u8; 16] { Md5::digest(format!("{hash}{s}").as_bytes()).into() };
        for pair in order.windows(2) {
            assert!(weight(&pair[0]) > weight(&pair[1]), "{order:?}");
        }
        let twice = vec![servers[0].clone(), servers[0].clone()];
        assert_eq!(pull_order(hash, &twice).len(), 1);
    }
}
