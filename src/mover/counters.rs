//! The engine's running totals: one set of atomics, bumped where things happen, read by every
//! view (log lines, the bar, `/status`, `/metrics`, the JSON summary). Views never count for
//! themselves, so they cannot disagree.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use super::pool::InUse;
use crate::keepstore::ErrorKind;

macro_rules! counters {
    ($($(#[$doc:meta])* $name:ident,)*) => {
        /// Totals shared by the engine's threads.
        #[derive(Debug, Default)]
        pub struct Counters {
            $($(#[$doc])* pub $name: AtomicU64,)*
            /// Block buffer bytes leased now (kept by the engine's buffer pool).
            pub buffers_in_use: Arc<InUse>,
            /// The buffer pool's budget, in bytes (set when copying starts).
            pub buffer_budget: AtomicU64,
            /// Blocks the workers' adaptive windows allow in flight now, all workers together
            /// (see `mover::window`).
            pub window_blocks: AtomicU64,
            errors_by: Mutex<BTreeMap<(String, ErrorKind), u64>>,
            /// By operation, then server: a request looks its server up by `&str`, with no
            /// allocation.
            latency: Mutex<BTreeMap<Op, BTreeMap<String, LatencyHistogram>>>,
        }

        /// A consistent-enough copy of [`Counters`] (each field read once).
        #[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
        #[serde(default)]
        pub struct Snapshot {
            $($(#[$doc])* pub $name: u64,)*
        }

        impl Counters {
            pub fn snapshot(&self) -> Snapshot {
                Snapshot { $($name: self.$name.load(Relaxed),)* }
            }
        }
    };
}

counters! {
    /// Distinct blocks on the source (under the prefix, shard and filters), walked so far.
    src_blocks,
    /// Distinct blocks on the destination, walked so far.
    dst_blocks,
    /// Blocks found to need copying (planned; grows as the walk goes when not counted first).
    planned_blocks,
    planned_bytes,
    /// Blocks the destination already had.
    skipped_blocks,
    skipped_bytes,
    /// Blocks handed to a worker.
    started_blocks,
    in_flight_blocks,
    copied_blocks,
    copied_bytes,
    failed_blocks,
    failed_bytes,
    /// Source replicas read but found wrong (length or MD5), so another holder was read.
    refetched_blocks,
    /// Requests that failed and were retried or routed around.
    retried_errors,
    /// Blocks put back at the end of the queue after failing every retry.
    requeued_blocks,
    /// Requeued blocks that then succeeded.
    requeue_successes,
    /// Blocks whose destination replica was read back and verified (move, vacate).
    verified_blocks,
    /// Blocks removed from the source (confirmed by its index), and blocks that could not be.
    trashed_blocks,
    trashed_bytes,
    not_removed_blocks,
    /// Pull mode: blocks the destination keepstores pulled, confirmed by their indexes
    /// (also counted as copied).
    pulled_blocks,
    pulled_bytes,
    /// Pull lists sent (trial lists included), and list items sent again because the
    /// destination had not carried them out.
    pull_lists,
    pull_items_resent,
    /// Pull mode: blocks copied through keepmover after their pulls kept failing (also
    /// counted as copied).
    fallback_blocks,
    fallback_bytes,
    /// Bytes received in block bodies and sent in block bodies.
    bytes_in,
    bytes_out,
    /// Index slices walked, and how many the walk has in all.
    slices_done,
    slices_total,
    /// Index lines read (both clusters).
    index_lines,
    /// `touch`: destination copies whose mtime a TOUCH renewed, copies it could not renew
    /// (every retry failed), and listed blocks no destination server has.
    touched_copies,
    touch_failed_copies,
    touch_not_found_blocks,
}

/// Which kind of request a latency is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Op {
    Get,
    Put,
    Head,
    Index,
    Touch,
}

impl Op {
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Get => "get",
            Op::Put => "put",
            Op::Head => "head",
            Op::Index => "index",
            Op::Touch => "touch",
        }
    }
}

/// Upper bounds, in seconds, of the latency buckets (Prometheus-style, cumulative on export).
pub const LATENCY_BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Request latencies of one (operation, server): counts per bucket (not cumulative), the
/// count and the sum.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LatencyHistogram {
    pub buckets: [u64; LATENCY_BUCKETS.len()],
    pub count: u64,
    pub sum_seconds: f64,
}

impl Counters {
    /// One finished request: its operation, server and duration.
    pub fn observe(&self, op: Op, server: &str, seconds: f64) {
        if let Ok(mut map) = self.latency.lock() {
            let by_server = map.entry(op).or_default();
            let h = match by_server.get_mut(server) {
                Some(h) => h,
                None => by_server.entry(server.to_string()).or_default(),
            };
            if let Some(i) = LATENCY_BUCKETS.iter().position(|&b| seconds <= b) {
                h.buckets[i] += 1;
            }
            h.count += 1;
            h.sum_seconds += seconds;
        }
    }

    /// Latencies so far by (operation, server).
    pub fn latencies(&self) -> BTreeMap<(Op, String), LatencyHistogram> {
        let Ok(map) = self.latency.lock() else {
            return BTreeMap::new();
        };
        map.iter()
            .flat_map(|(&op, by_server)| {
                by_server
                    .iter()
                    .map(move |(server, h)| ((op, server.clone()), h.clone()))
            })
            .collect()
    }

    /// One request error, by server and kind.
    pub fn error(&self, server: &str, kind: ErrorKind) {
        self.retried_errors.fetch_add(1, Relaxed);
        if let Ok(mut map) = self.errors_by.lock() {
            *map.entry((server.to_string(), kind)).or_default() += 1;
        }
    }

    /// Errors so far by (server, kind).
    pub fn errors_by(&self) -> BTreeMap<(String, ErrorKind), u64> {
        self.errors_by.lock().map(|m| m.clone()).unwrap_or_default()
    }

    /// Bytes hashed and kernel calls per MD5 kernel (process-wide: `hash::kernel_use`).
    pub fn hashed_by_kernel(&self) -> BTreeMap<&'static str, (u64, u64)> {
        crate::hash::kernel_use()
            .into_iter()
            .map(|k| (k.backend.name(), (k.bytes, k.calls)))
            .collect()
    }
}
