//! Which slices are settled, in walk order, so the checkpoint watermark only ever names a
//! prefix below which every block is confirmed. Pure bookkeeping: the engine feeds it
//! registrations and completions and saves the watermarks it returns (off the workers).
//!
//! A slice with a failed block stops the watermark for good in this run, so a rerun retries
//! that slice (and everything after it); a slice whose blocks were abandoned (a stop) never
//! completes, with the same effect.

use std::collections::VecDeque;

#[derive(Debug)]
struct OpenSlice {
    seq: u64,
    prefix: String,
    remaining: u64,
    failed: bool,
}

/// Slices registered in walk order and not yet passed by the watermark.
#[derive(Debug, Default)]
pub struct SliceTracker {
    open: VecDeque<OpenSlice>,
    stuck: bool,
}

/// What settled after a call: the slices now complete, and the new watermark if it moved.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Settled {
    pub slices: Vec<String>,
    pub watermark: Option<String>,
}

impl SliceTracker {
    pub fn new() -> SliceTracker {
        SliceTracker::default()
    }

    /// A slice of the walk with `blocks` to settle (in walk order, `seq` increasing).
    pub fn register(&mut self, seq: u64, prefix: &str, blocks: u64) -> Settled {
        self.open.push_back(OpenSlice {
            seq,
            prefix: prefix.to_string(),
            remaining: blocks,
            failed: false,
        });
        self.advance()
    }

    /// One block of slice `seq` is settled: confirmed (`ok`) or failed.
    pub fn complete(&mut self, seq: u64, ok: bool) -> Settled {
        if let Some(slice) = self.open.iter_mut().find(|s| s.seq == seq) {
            slice.remaining = slice.remaining.saturating_sub(1);
            slice.failed |= !ok;
        }
        self.advance()
    }

    /// Slices still open (registered, not passed by the watermark).
    pub fn open_slices(&self) -> usize {
        self.open.len()
    }

    fn advance(&mut self) -> Settled {
        let mut settled = Settled::default();
        while let Some(front) = self.open.front() {
            if self.stuck || front.remaining > 0 {
                break;
            }
            if front.failed {
                self.stuck = true;
                settled.slices.push(front.prefix.clone());
                break;
            }
            if let Some(done) = self.open.pop_front() {
                settled.slices.push(done.prefix.clone());
                settled.watermark = Some(done.prefix);
            }
        }
        // Slices behind a stuck one still settle (for progress), without moving the mark.
        if self.stuck {
            while let Some(pos) = self
                .open
                .iter()
                .skip(1)
                .position(|s| s.remaining == 0)
                .map(|p| p + 1)
            {
                if let Some(done) = self.open.remove(pos) {
                    settled.slices.push(done.prefix);
                }
            }
        }
        settled
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watermark_moves_in_order_only() {
        let mut t = SliceTracker::new();
        assert_eq!(t.register(0, "0", 2).watermark, None);
        assert_eq!(t.register(1, "1", 1).watermark, None);
        // Slice 1 finishes first: no watermark until slice 0 is done.
        assert_eq!(t.complete(1, true).watermark, None);
        assert_eq!(t.complete(0, true).watermark, None);
        let settled = t.complete(0, true);
        assert_eq!(settled.watermark.as_deref(), Some("1"));
        assert_eq!(settled.slices, vec!["0", "1"]);
        // An empty slice settles at once.
        assert_eq!(t.register(2, "2", 0).watermark.as_deref(), Some("2"));
    }

    #[test]
    fn a_failed_block_stops_the_watermark_for_good() {
        let mut t = SliceTracker::new();
        t.register(0, "0", 1);
        t.register(1, "1", 1);
        let settled = t.complete(0, false);
        assert_eq!(settled.watermark, None);
        assert_eq!(settled.slices, vec!["0"]);
        let settled = t.complete(1, true);
        assert_eq!(settled.watermark, None, "behind a failed slice");
        assert_eq!(settled.slices, vec!["1"]);
        assert_eq!(t.register(2, "2", 0).watermark, None);
    }

    #[test]
    fn abandoned_blocks_keep_their_slice_open() {
        let mut t = SliceTracker::new();
        t.register(0, "0", 3);
        t.complete(0, true);
        assert_eq!(t.open_slices(), 1);
    }
}
