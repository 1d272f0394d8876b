//! The lane scheduler: keeps N SIMD lanes busy with many independent MD5 streams.
//!
//! Each stream's pending work is a [`LaneJob`]: its chaining value plus at most two segments
//! of whole 64-byte blocks, one borrowed from the caller (`body`) and one owned by the job
//! (`owned`: the completed tail block that must go *before* the body in `update_many`, or the
//! padding blocks that go *after* it in `digest_many`). [`run_lanes`] loads up to N jobs into
//! lanes, runs the kernel for as many blocks as the shortest current segment allows, and
//! refills every lane whose job finished with the next pending job, so short and long
//! streams mix without lanes idling while work remains. Jobs are started longest first,
//! which keeps the end of the run (when fewer than N jobs remain) short. When one job is
//! left it is finished with the scalar code, which is as fast as a lane for one stream.

use super::scalar::{compress_blocks, BLOCK_LEN};

/// One stream's pending whole blocks and its chaining value.
pub(super) struct LaneJob<'a> {
    /// Chaining value; holds the final value once the job is done.
    pub(super) words: [u32; 4],
    owned: [u8; 2 * BLOCK_LEN],
    owned_len: usize,
    owned_first: bool,
    body: &'a [u8],
    /// Segment being processed: 0 or 1, 2 when done.
    stage: usize,
    /// Bytes of the current segment already compressed.
    offset: usize,
}

impl<'a> LaneJob<'a> {
    /// A job compressing `owned[..owned_len]` before (`owned_first`) or after `body`.
    /// `owned_len` and `body.len()` must be multiples of 64 (only whole blocks are queued).
    pub(super) fn new(
        words: [u32; 4],
        owned: [u8; 2 * BLOCK_LEN],
        owned_len: usize,
        owned_first: bool,
        body: &'a [u8],
    ) -> Self {
        debug_assert!(owned_len.is_multiple_of(BLOCK_LEN) && owned_len <= owned.len());
        debug_assert!(body.len().is_multiple_of(BLOCK_LEN));
        let mut job = Self {
            words,
            owned,
            owned_len,
            owned_first,
            body,
            stage: 0,
            offset: 0,
        };
        job.skip_finished_segments();
        job
    }

    fn segment(&self, stage: usize) -> &[u8] {
        match (stage, self.owned_first) {
            (0, true) | (1, false) => &self.owned[..self.owned_len],
            (0, false) | (1, true) => self.body,
            _ => &[],
        }
    }

    fn skip_finished_segments(&mut self) {
        while self.stage < 2 && self.offset >= self.segment(self.stage).len() {
            self.stage += 1;
            self.offset = 0;
        }
    }

    /// The not yet compressed part of the current segment (empty when done).
    pub(super) fn current(&self) -> &[u8] {
        self.segment(self.stage).get(self.offset..).unwrap_or(&[])
    }

    pub(super) fn is_done(&self) -> bool {
        self.stage >= 2
    }

    /// Whole blocks still to compress.
    pub(super) fn remaining_blocks(&self) -> usize {
        let current = self.current().len();
        let later = if self.stage == 0 {
            self.segment(1).len()
        } else {
            0
        };
        (current + later) / BLOCK_LEN
    }

    fn advance(&mut self, bytes: usize) {
        self.offset += bytes;
        self.skip_finished_segments();
    }

    /// Compresses everything left with the scalar code.
    pub(super) fn finish_scalar(&mut self) {
        while !self.is_done() {
            let mut words = self.words;
            let current = self.current();
            let len = current.len();
            compress_blocks(&mut words, current);
            self.words = words;
            self.advance(len);
        }
    }
}

/// A kernel advancing N lanes by `blocks` blocks; lane `l` reads the start of `inputs[l]`,
/// which holds at least `blocks * 64` bytes.
pub(super) type LaneKernel<const N: usize> = fn(&mut [[u32; 4]; N], &[&[u8]; N], usize);

/// Runs every job to completion with an N-lane kernel (see the module comment).
pub(super) fn run_lanes<const N: usize>(jobs: &mut [LaneJob<'_>], kernel: LaneKernel<N>) {
    run_lanes_until::<N>(jobs, kernel, 0);
}

/// Like [`run_lanes`], but returns early, with every unfinished job's progress saved in the
/// job, once no job is pending and at most `hand_over_at` lanes are busy, so a narrower
/// kernel can finish them (a 16-lane AVX-512 step costs about two 8-lane AVX2 steps, so
/// with 8 or fewer streams left AVX2 is faster).
pub(super) fn run_lanes_until<const N: usize>(
    jobs: &mut [LaneJob<'_>],
    kernel: LaneKernel<N>,
    hand_over_at: usize,
) {
    let mut order: Vec<usize> = (0..jobs.len()).filter(|&j| !jobs[j].is_done()).collect();
    order.sort_by_key(|&j| std::cmp::Reverse(jobs[j].remaining_blocks()));
    let mut pending = order.into_iter();

    let mut lane_job: [Option<usize>; N] = [None; N];
    let mut lane_words = [[0u32; 4]; N];
    loop {
        for (slot, words) in lane_job.iter_mut().zip(lane_words.iter_mut()) {
            if slot.is_none() {
                if let Some(j) = pending.next() {
                    *slot = Some(j);
                    *words = jobs[j].words;
                }
            }
        }
        let active_count = lane_job.iter().flatten().count();
        if active_count > 0 && pending.len() == 0 && active_count <= hand_over_at {
            for (slot, words) in lane_job.iter().zip(lane_words.iter()) {
                if let Some(j) = *slot {
                    jobs[j].words = *words;
                }
            }
            return;
        }
        let mut active = lane_job.iter().flatten();
        let Some(&first_active) = active.next() else {
            break;
        };
        if active.next().is_none() && pending.len() == 0 {
            // A lone stream: the scalar code is at least as fast as one lane of a kernel.
            if let Some(lane) = lane_job.iter().position(|slot| *slot == Some(first_active)) {
                jobs[first_active].words = lane_words[lane];
            }
            jobs[first_active].finish_scalar();
            break;
        }

        let blocks = {
            let jobs_ref: &[LaneJob<'_>] = jobs;
            // Idle lanes re-read the first active lane's input (valid memory for `blocks`
            // blocks); what they compute is discarded when the lane is refilled.
            let inputs: [&[u8]; N] = std::array::from_fn(|lane| {
                jobs_ref[lane_job[lane].unwrap_or(first_active)].current()
            });
            let blocks = lane_job
                .iter()
                .flatten()
                .map(|&j| jobs_ref[j].current().len() / BLOCK_LEN)
                .min()
                .unwrap_or(0);
            kernel(&mut lane_words, &inputs, blocks);
            super::usage::record(
                super::usage::backend_of_width(N),
                blocks,
                lane_job.iter().flatten().count(),
                N,
            );
            blocks
        };

        for (slot, words) in lane_job.iter_mut().zip(lane_words.iter()) {
            if let Some(j) = *slot {
                let job = &mut jobs[j];
                job.advance(blocks * BLOCK_LEN);
                if job.is_done() {
                    job.words = *words;
                    *slot = None;
                }
            }
        }
    }
}
