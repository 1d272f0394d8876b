//! Hashing the chunks of all in-flight blocks of one worker together. Every block being
//! received submits its unhashed bytes once enough have landed; a flush runs once the tasks
//! that were ready in this turn of the event loop have all submitted, and hashes their
//! chunks side by side in SIMD lanes (`crate::hash::update_many`). A lone block is hashed
//! at the scalar rate and no block waits for another one's data. Buffers move in and out by
//! value (owned-buffer style), so no chunk is copied.
//!
//! # Equal segments
//!
//! The lanes of one kernel call advance together, so a lane whose chunk is longer than the
//! others' runs on alone (or in the narrower AVX2 kernel, or in scalar code) once they end.
//! Chunks arrive with whatever the network delivered (from 256 KiB to several MiB), so a
//! flush hashes the same length from every block: the shortest chunk's (at least
//! [`MIN_SEGMENT`]). A receiving block gets the rest back unhashed and submits it with its
//! next bytes; a block's last chunk stays queued, segment by segment, until it is all
//! hashed.
//!
//! # Whole widths
//!
//! With real bytes to hash (at least [`FULL_LANES_BYTES`] queued), a flush waits for every
//! lane to fill (within [`FLUSH_WAIT`], and only while more chunks can come) and hashes a
//! whole number of kernel widths: the newest chunks beyond that go into the next flush
//! rather than into a half-empty AVX2 call. 1 MiB and 64 MiB blocks then run 95-99% of their
//! bytes through full 16-lane AVX-512 steps, up from 75-90% (BENCHMARKS.md).

use std::cell::{Cell, RefCell};
use std::ops::Range;
use std::rc::Rc;

use futures_channel::oneshot;

use crate::hash::{update_many, Md5State};

struct Job {
    state: Md5State,
    buffer: Vec<u8>,
    range: Range<usize>,
    /// The block's last bytes: answered only once all of `range` is hashed.
    last: bool,
    reply: oneshot::Sender<Hashed>,
}

/// What [`HashBatcher::update`] hands back: the state, the buffer, and how far into the
/// buffer the state has hashed (the end of the range when it was the block's last chunk).
pub struct Hashed {
    pub state: Md5State,
    pub buffer: Vec<u8>,
    pub hashed_to: usize,
}

/// Chunks shorter than this are hashed whole, however short the others are: the segment
/// length of a flush never goes below it.
pub const MIN_SEGMENT: usize = 64 << 10;

/// One per worker thread.
#[derive(Clone, Default)]
pub struct HashBatcher {
    queue: Rc<RefCell<Vec<Job>>>,
    /// Blocks requested or being received (holding a [`Receiving`]): how many chunks may
    /// still come.
    receivers: Rc<Cell<usize>>,
}

/// Held from a block's GET until it is hashed: a flush waits for other blocks' chunks only
/// while some such block has none queued (a lone block never waits).
pub struct Receiving(Rc<Cell<usize>>);

impl Drop for Receiving {
    fn drop(&mut self) {
        self.0.set(self.0.get().saturating_sub(1));
    }
}

impl HashBatcher {
    pub fn new() -> HashBatcher {
        HashBatcher::default()
    }

    /// Marks one block as being received until the guard drops.
    pub fn receiving(&self) -> Receiving {
        self.receivers.set(self.receivers.get() + 1);
        Receiving(self.receivers.clone())
    }

    /// Hashes `buffer[range]` into `state` together with the other blocks' pending chunks.
    /// Unless `last`, it may hash only a prefix of the range (see the module comment):
    /// `hashed_to` says where the state stopped.
    pub async fn update(
        &self,
        state: Md5State,
        buffer: Vec<u8>,
        range: Range<usize>,
        last: bool,
    ) -> Hashed {
        let (reply, answer) = oneshot::channel();
        let end = range.end;
        self.submit(Job {
            state,
            buffer,
            range,
            last,
            reply,
        });
        // The flush task answers every job it takes; a dropped sender only happens while the
        // runtime shuts down, and then nothing reads the result.
        answer.await.unwrap_or_else(|_| Hashed {
            state: Md5State::new(),
            buffer: Vec::new(),
            hashed_to: end,
        })
    }

    /// Queues a job, and starts a flush if none is waiting.
    fn submit(&self, job: Job) {
        let first = {
            let mut queue = self.queue.borrow_mut();
            queue.push(job);
            queue.len() == 1
        };
        if first {
            // Runs after every task already woken in this turn has had its go. While fewer
            // chunks than SIMD lanes are waiting, it gives the event loop a few more turns
            // to deliver other blocks' chunks (a turn with nothing ready returns at once).
            let batcher = self.clone();
            compio::runtime::spawn(async move {
                let lanes = crate::hash::backend().lanes();
                let queue = &batcher.queue;
                for _ in 0..FLUSH_WAIT_TURNS {
                    if queue.borrow().len() >= lanes {
                        break;
                    }
                    YieldOnce(false).await;
                }
                // Lanes not filled yet while other blocks are being received: wait a little
                // longer, on the timer (no spinning), for their chunks. Readers wait too, but
                // with many blocks in flight the wire stays busy, and a half-empty 16-lane
                // step costs nearly as much as a full one. When every receiving block has its
                // chunk queued, nothing more can come: no wait.
                let mut waited = std::time::Duration::ZERO;
                let more_may_come = || {
                    let queue = queue.borrow();
                    let target = lanes_to_fill(&queue, lanes);
                    worth_waiting(queue.len(), target, batcher.receivers.get())
                };
                while waited < FLUSH_WAIT && more_may_come() {
                    compio::time::sleep(FLUSH_WAIT_STEP).await;
                    waited += FLUSH_WAIT_STEP;
                }
                for unfinished in flush(queue, lanes) {
                    batcher.submit(unfinished);
                }
            })
            .detach();
        }
    }
}

/// Longest time a flush waits, beyond the event-loop turns, for lanes to fill up. With a slow
/// server (1 MiB blocks from keepsim's default serving) 4 ms cut keepmover's user time by a
/// quarter against 1 ms, at the same throughput (BENCHMARKS.md).
const FLUSH_WAIT: std::time::Duration = std::time::Duration::from_millis(4);
const FLUSH_WAIT_STEP: std::time::Duration = std::time::Duration::from_micros(250);

/// Event-loop turns a flush waits for more chunks before hashing a partial batch.
const FLUSH_WAIT_TURNS: usize = 2;

/// Returns `Pending` once, after asking to be polled again: a yield to the event loop.
struct YieldOnce(bool);

impl std::future::Future for YieldOnce {
    type Output = ();
    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<()> {
        if self.0 {
            return std::task::Poll::Ready(());
        }
        self.0 = true;
        cx.waker().wake_by_ref();
        std::task::Poll::Pending
    }
}

/// Hashes one equal segment of the queued jobs (see the module comment) and answers them;
/// returns the jobs still to hash: last chunks with bytes left, and the newest jobs beyond a
/// whole number of kernel widths (`lanes`), which go into the next flush rather than into
/// a half-empty narrower kernel call.
fn flush(queue: &RefCell<Vec<Job>>, lanes: usize) -> Vec<Job> {
    let mut jobs = std::mem::take(&mut *queue.borrow_mut());
    let full_rounds = jobs.len() / lanes.max(1);
    let mut unfinished = if full_rounds > 0 && lanes_to_fill(&jobs, lanes) == lanes {
        jobs.split_off(full_rounds * lanes)
    } else {
        Vec::new()
    };
    let segment = segment_length(jobs.iter().map(|job| job.range.len()));
    {
        let mut states: Vec<&mut Md5State> = Vec::with_capacity(jobs.len());
        let mut chunks: Vec<&[u8]> = Vec::with_capacity(jobs.len());
        for job in jobs.iter_mut() {
            let take = job.range.len().min(segment);
            let chunk = job.buffer.get(job.range.start..job.range.start + take);
            chunks.push(chunk.unwrap_or(&[]));
            job.range.start += take;
            states.push(&mut job.state);
        }
        update_many(&mut states, &chunks);
    }
    for job in jobs {
        if job.last && !job.range.is_empty() {
            unfinished.push(job);
            continue;
        }
        let _ = job.reply.send(Hashed {
            state: job.state,
            buffer: job.buffer,
            hashed_to: job.range.start,
        });
    }
    unfinished
}

/// Whether a flush with `queued` chunks should wait for more: fewer than `target` are queued
/// and some block that was requested (`receivers`) has no chunk queued yet.
fn worth_waiting(queued: usize, target: usize, receivers: usize) -> bool {
    queued < target && queued < receivers
}

/// Queued bytes from which a flush waits for (and keeps to) whole kernel widths: below this,
/// a half-empty kernel call costs less than the timer wake-ups of waiting, and small blocks
/// would only gain latency (4 KiB blocks at 5 ms: fewer blocks/s).
const FULL_LANES_BYTES: usize = 1 << 20;

/// How many chunks a flush waits for: every lane when there are enough bytes to hash that
/// the empty lanes would cost more than the wait, half of them otherwise.
fn lanes_to_fill(jobs: &[Job], lanes: usize) -> usize {
    let queued_bytes: usize = jobs.iter().map(|job| job.range.len()).sum();
    if queued_bytes >= FULL_LANES_BYTES {
        lanes
    } else {
        lanes.div_ceil(2)
    }
}

/// The length a flush hashes from each chunk: the shortest chunk's, but at least
/// [`MIN_SEGMENT`], and a whole number of MD5 blocks (64 bytes) so no state keeps a partial
/// block between flushes.
fn segment_length(chunk_lengths: impl Iterator<Item = usize>) -> usize {
    let shortest = chunk_lengths.min().unwrap_or(0);
    shortest.max(MIN_SEGMENT) & !63
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_follow_the_shortest_chunk_above_the_floor() {
        let mib = 1 << 20;
        assert_eq!(
            segment_length([3 * mib, mib + 100, 2 * mib].into_iter()),
            mib + 64
        );
        assert_eq!(segment_length([3 * mib, 100].into_iter()), MIN_SEGMENT);
        assert_eq!(segment_length(std::iter::empty()), MIN_SEGMENT);
    }

    #[test]
    fn a_flush_waits_only_for_chunks_that_can_still_come() {
        // A lone block (the tail of a job, `-concurrency 1`) never waits.
        assert!(!worth_waiting(1, 16, 1));
        // Every requested block has its chunk queued: nothing more can come.
        assert!(!worth_waiting(5, 16, 5));
        // Others are still on their way, and fewer than the target are queued.
        assert!(worth_waiting(5, 16, 40));
        assert!(worth_waiting(15, 16, 40));
        // The target reached: hash now.
        assert!(!worth_waiting(16, 16, 40));
        assert!(!worth_waiting(8, 8, 40));
    }

    /// Queued jobs as `flush` sees them, each `len` bytes, with the receivers of their answers.
    fn queued_jobs(
        count: usize,
        len: usize,
    ) -> (RefCell<Vec<Job>>, Vec<oneshot::Receiver<Hashed>>) {
        let mut jobs = Vec::new();
        let mut answers = Vec::new();
        for _ in 0..count {
            let (reply, answer) = oneshot::channel();
            jobs.push(Job {
                state: Md5State::new(),
                buffer: vec![7; len],
                range: 0..len,
                last: false,
                reply,
            });
            answers.push(answer);
        }
        (RefCell::new(jobs), answers)
    }

    #[test]
    fn a_flush_of_big_chunks_keeps_to_whole_kernel_widths() {
        // 10 chunks of 256 KiB in 4 lanes: 8 hashed now, the 2 newest left for the next flush.
        let (queue, mut answers) = queued_jobs(10, 256 << 10);
        let left = flush(&queue, 4);
        assert_eq!(left.len(), 2);
        let answered = answers
            .iter_mut()
            .map(|answer| matches!(answer.try_recv(), Ok(Some(_))))
            .collect::<Vec<_>>();
        assert_eq!(
            answered,
            [true, true, true, true, true, true, true, true, false, false]
        );

        // Small chunks (4 KiB blocks) are all hashed at once: waiting would only add latency.
        let (queue, mut answers) = queued_jobs(10, 4096);
        assert_eq!(lanes_to_fill(&queue.borrow(), 16), 8);
        assert!(flush(&queue, 4).is_empty());
        assert!(answers
            .iter_mut()
            .all(|answer| matches!(answer.try_recv(), Ok(Some(_)))));
    }

    /// Whatever the mix of chunk lengths and last chunks, every block's digest is the
    /// plain MD5 of its bytes, and a non-last chunk is told where hashing stopped.
    #[test]
    fn partial_segments_add_up_to_the_right_digests() {
        compio::runtime::Runtime::new()
            .expect("runtime")
            .block_on(async {
                let batcher = HashBatcher::new();
                let lengths = [5 << 20, 300 << 10, 70_000, 1 << 20, 17, 2 << 20];
                let tasks: Vec<_> = lengths
                    .iter()
                    .enumerate()
                    .map(|(i, &len)| {
                        let batcher = batcher.clone();
                        async move {
                            let data: Vec<u8> = (0..len).map(|b| (b * 31 + i * 7) as u8).collect();
                            let mut reference = Md5State::new();
                            reference.update(&data);
                            let expected = reference.finalize();
                            let mut state = Md5State::new();
                            let mut buffer = data;
                            let mut hashed = 0;
                            // Two submissions: a non-last one over the first half, then the
                            // rest as the last chunk.
                            let half = buffer.len() / 2;
                            if half > 0 {
                                let h = batcher.update(state, buffer, 0..half, false).await;
                                assert!(h.hashed_to <= half);
                                (state, buffer, hashed) = (h.state, h.buffer, h.hashed_to);
                            }
                            let end = buffer.len();
                            let h = batcher.update(state, buffer, hashed..end, true).await;
                            assert_eq!(h.hashed_to, end);
                            assert_eq!(h.state.finalize(), expected);
                        }
                    })
                    .collect();
                futures_util::future::join_all(tasks).await;
            });
    }
}
