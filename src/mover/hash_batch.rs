//! Hashing the chunks of all in-flight blocks of one worker together. Every block being
//! received submits each chunk as it lands; a flush runs once the tasks that were ready in
//! this turn of the event loop have all submitted, and hashes their chunks side by side in
//! SIMD lanes (`crate::hash::update_many`). A lone block is hashed at the scalar rate and no
//! block waits for another one's data. Buffers move in and out by value (owned-buffer
//! style), so no chunk is copied.

use std::cell::RefCell;
use std::ops::Range;
use std::rc::Rc;

use futures_channel::oneshot;

use crate::hash::{update_many, Md5State};

struct Job {
    state: Md5State,
    buffer: Vec<u8>,
    range: Range<usize>,
    reply: oneshot::Sender<(Md5State, Vec<u8>)>,
}

/// One per worker thread.
#[derive(Clone, Default)]
pub struct HashBatcher {
    queue: Rc<RefCell<Vec<Job>>>,
}

impl HashBatcher {
    pub fn new() -> HashBatcher {
        HashBatcher::default()
    }

    /// Hashes `buffer[range]` into `state` together with the other blocks' pending chunks.
    pub async fn update(
        &self,
        state: Md5State,
        buffer: Vec<u8>,
        range: Range<usize>,
    ) -> (Md5State, Vec<u8>) {
        let (reply, answer) = oneshot::channel();
        let first = {
            let mut queue = self.queue.borrow_mut();
            queue.push(Job {
                state,
                buffer,
                range,
                reply,
            });
            queue.len() == 1
        };
        if first {
            // Runs after every task already woken in this turn has had its go. While fewer
            // chunks than SIMD lanes are waiting, it gives the event loop a few more turns
            // to deliver other blocks' chunks (a turn with nothing ready returns at once).
            let queue = self.queue.clone();
            compio::runtime::spawn(async move {
                let lanes = crate::hash::backend().lanes();
                for _ in 0..FLUSH_WAIT_TURNS {
                    if queue.borrow().len() >= lanes {
                        break;
                    }
                    YieldOnce(false).await;
                }
                // Still far from full lanes: wait a little longer, on the timer (no spinning),
                // for other blocks' chunks. Readers wait too, but with many blocks in flight
                // the wire stays busy, and a half-empty 16-lane step costs nearly as much as
                // a full one.
                let mut waited = std::time::Duration::ZERO;
                while waited < FLUSH_WAIT && queue.borrow().len() * 2 < lanes {
                    compio::time::sleep(FLUSH_WAIT_STEP).await;
                    waited += FLUSH_WAIT_STEP;
                }
                flush(&queue)
            })
            .detach();
        }
        // The flush task answers every job it takes; a dropped sender only happens while the
        // runtime shuts down, and then nothing reads the result.
        answer.await.unwrap_or_default()
    }
}

/// Longest time a flush waits, beyond the event-loop turns, for lanes to fill up.
const FLUSH_WAIT: std::time::Duration = std::time::Duration::from_micros(1000);
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

fn flush(queue: &RefCell<Vec<Job>>) {
    let mut jobs = std::mem::take(&mut *queue.borrow_mut());
    if jobs.is_empty() {
        return;
    }
    {
        let mut states: Vec<&mut Md5State> = Vec::with_capacity(jobs.len());
        let mut chunks: Vec<&[u8]> = Vec::with_capacity(jobs.len());
        for Job {
            state,
            buffer,
            range,
            ..
        } in jobs.iter_mut()
        {
            chunks.push(buffer.get(range.clone()).unwrap_or(&[]));
            states.push(state);
        }
        update_many(&mut states, &chunks);
    }
    for job in jobs {
        let _ = job.reply.send((job.state, job.buffer));
    }
}
