//! The engine's running totals: one set of atomics, bumped where things happen, read by every
//! view (log lines, the bar, `/status`, `/metrics`, the JSON summary). Views never count for
//! themselves, so they cannot disagree.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;

use serde::Serialize;

use crate::keepstore::ErrorKind;

macro_rules! counters {
    ($($(#[$doc:meta])* $name:ident,)*) => {
        /// Totals shared by the engine's threads.
        #[derive(Debug, Default)]
        pub struct Counters {
            $($(#[$doc])* pub $name: AtomicU64,)*
            errors_by: Mutex<BTreeMap<(String, ErrorKind), u64>>,
            hashed_by_kernel: Mutex<BTreeMap<&'static str, (u64, u64)>>,
        }

        /// A consistent-enough copy of [`Counters`] (each field read once).
        #[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
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
    /// Bytes received in block bodies and sent in block bodies.
    bytes_in,
    bytes_out,
    /// Index slices walked, and how many the walk has in all.
    slices_done,
    slices_total,
    /// Index lines read (both clusters).
    index_lines,
}

impl Counters {
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

    /// Bytes hashed by an MD5 kernel, and the kernel calls (for lane occupancy).
    pub fn hashed(&self, kernel: &'static str, bytes: u64, calls: u64) {
        if let Ok(mut map) = self.hashed_by_kernel.lock() {
            let entry = map.entry(kernel).or_default();
            entry.0 += bytes;
            entry.1 += calls;
        }
    }

    /// Bytes and kernel calls per MD5 kernel.
    pub fn hashed_by_kernel(&self) -> BTreeMap<&'static str, (u64, u64)> {
        self.hashed_by_kernel
            .lock()
            .map(|m| m.clone())
            .unwrap_or_default()
    }
}
