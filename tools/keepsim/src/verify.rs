//! MD5 for PUT bodies, batched across concurrent requests: every PUT hands its body (or,
//! when streaming, each 1 MiB of it with its running MD5 state) to one hashing thread,
//! which takes all the work waiting at that moment and hashes it side by side in SIMD
//! lanes (keepmover's `hash::digest_many` / `update_many`). Under load the batches fill by
//! themselves, so verifying uploads is not what limits a benchmark; a lone PUT is hashed at
//! the scalar rate.
//!
//! [`md5_stream`] is what digest-only storage uses: the body is MD5-checked as it streams
//! in and never collected (at most 1 MiB of it is held at a time).

use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Mutex, OnceLock};

use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use tokio::sync::oneshot;

use crate::hash::Md5State;

enum Job {
    Whole(Bytes, oneshot::Sender<[u8; 16]>),
    Update(Box<Md5State>, Bytes, oneshot::Sender<Box<Md5State>>),
}

fn service() -> Option<&'static Mutex<Sender<Job>>> {
    static SERVICE: OnceLock<Option<Mutex<Sender<Job>>>> = OnceLock::new();
    SERVICE
        .get_or_init(|| {
            let (sender, receiver) = channel::<Job>();
            std::thread::Builder::new()
                .name("keepsim-md5".to_string())
                .spawn(move || hash_loop(receiver))
                .ok()
                .map(|_| Mutex::new(sender))
        })
        .as_ref()
}

fn hash_loop(receiver: Receiver<Job>) {
    while let Ok(first) = receiver.recv() {
        let mut batch = vec![first];
        while let Ok(more) = receiver.try_recv() {
            batch.push(more);
        }
        let mut whole = Vec::new();
        let mut updates = Vec::new();
        for job in batch {
            match job {
                Job::Whole(body, reply) => whole.push((body, reply)),
                Job::Update(state, chunk, reply) => updates.push((state, chunk, reply)),
            }
        }
        if !whole.is_empty() {
            let bodies: Vec<&[u8]> = whole.iter().map(|(body, _)| body.as_ref()).collect();
            let digests = crate::hash::digest_many(&bodies);
            for ((_, reply), digest) in whole.into_iter().zip(digests) {
                let _ = reply.send(digest);
            }
        }
        if !updates.is_empty() {
            let chunks: Vec<Bytes> = updates.iter().map(|(_, c, _)| c.clone()).collect();
            let slices: Vec<&[u8]> = chunks.iter().map(|c| c.as_ref()).collect();
            let mut states: Vec<&mut Md5State> =
                updates.iter_mut().map(|(s, _, _)| s.as_mut()).collect();
            crate::hash::update_many(&mut states, &slices);
            for (state, _, reply) in updates {
                let _ = reply.send(state);
            }
        }
    }
}

fn submit(job: Job) -> bool {
    service()
        .and_then(|s| s.lock().ok())
        .map(|sender| sender.send(job).is_ok())
        .unwrap_or(false)
}

/// The MD5 of `body`, computed in a batch with other concurrent uploads.
pub async fn md5_of(body: Bytes) -> [u8; 16] {
    let (reply, answer) = oneshot::channel();
    if submit(Job::Whole(body.clone(), reply)) {
        if let Ok(digest) = answer.await {
            return digest;
        }
    }
    // No hashing thread (it could not be started): hash here.
    crate::hash::md5(&body)
}

/// Feeds `chunk` into `state`, in a batch with other streams.
async fn update(state: Box<Md5State>, chunk: Bytes) -> Box<Md5State> {
    let (reply, answer) = oneshot::channel();
    let fallback = state.clone();
    if submit(Job::Update(state, chunk.clone(), reply)) {
        if let Ok(state) = answer.await {
            return state;
        }
    }
    let mut state = fallback;
    state.update(&chunk);
    state
}

/// Why a streamed body could not be hashed.
#[derive(Debug, PartialEq, Eq)]
pub enum StreamError {
    /// More than the limit (keepstore: 413).
    TooLarge,
    /// The body broke off (client hang-up, short body).
    Read,
}

/// Hashes a request body as it arrives (1 MiB at a time, never the whole body), with or
/// without MD5: returns the digest (if `hash`) and the byte count.
pub async fn md5_stream<B>(
    mut body: B,
    limit: u64,
    hash: bool,
) -> Result<(Option<[u8; 16]>, u64), StreamError>
where
    B: hyper::body::Body<Data = Bytes> + Unpin,
{
    const STEP: usize = 1 << 20;
    let mut state = Box::new(Md5State::new());
    let mut pending = BytesMut::new();
    let mut total = 0u64;
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else {
            return Err(StreamError::Read);
        };
        let Ok(data) = frame.into_data() else {
            continue;
        };
        total += data.len() as u64;
        if total > limit {
            return Err(StreamError::TooLarge);
        }
        if !hash {
            continue;
        }
        if pending.is_empty() && data.len() >= STEP {
            state = update(state, data).await;
            continue;
        }
        pending.extend_from_slice(&data);
        if pending.len() >= STEP {
            state = update(state, pending.split().freeze()).await;
        }
    }
    if !hash {
        return Ok((None, total));
    }
    if !pending.is_empty() {
        state = update(state, pending.freeze()).await;
    }
    Ok((Some(state.finalize()), total))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;
    use std::pin::Pin;
    use std::task::{Context, Poll};

    /// A body delivering fixed pieces.
    struct Pieces(VecDeque<Bytes>);

    impl hyper::body::Body for Pieces {
        type Data = Bytes;
        type Error = std::convert::Infallible;
        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
            Poll::Ready(self.0.pop_front().map(|p| Ok(hyper::body::Frame::data(p))))
        }
    }

    #[tokio::test]
    async fn streamed_digest_equals_one_shot() {
        let data = crate::blockset::pseudo_random_bytes(1, 3 << 20 | 12345);
        let body = || Pieces(data.chunks(70_001).map(Bytes::copy_from_slice).collect());
        let (digest, n) = md5_stream(body(), 64 << 20, true).await.expect("hashed");
        assert_eq!(n, data.len() as u64);
        assert_eq!(digest, Some(crate::hash::md5(&data)));
        assert_eq!(md5_stream(body(), 64 << 20, false).await, Ok((None, n)));
        assert_eq!(
            md5_stream(body(), 1 << 20, true).await,
            Err(StreamError::TooLarge)
        );
        assert_eq!(
            md5_of(Bytes::from(data.clone())).await,
            crate::hash::md5(&data)
        );
    }
}
