//! MD5 for PUT bodies, batched across concurrent requests: every PUT hands its body to one
//! hashing thread, which takes all bodies waiting at that moment and hashes them side by side
//! in SIMD lanes (keepmover's `hash::digest_many`). Under load the batches fill by themselves
//! (bodies queue while a batch is hashed), so verifying uploads is not what limits a
//! benchmark; a lone PUT is hashed at the scalar rate.

use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Mutex, OnceLock};

use bytes::Bytes;
use tokio::sync::oneshot;

type Job = (Bytes, oneshot::Sender<[u8; 16]>);

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
        let bodies: Vec<&[u8]> = batch.iter().map(|(body, _)| body.as_ref()).collect();
        let digests = crate::hash::digest_many(&bodies);
        for ((_, reply), digest) in batch.into_iter().zip(digests) {
            let _ = reply.send(digest);
        }
    }
}

/// The MD5 of `body`, computed in a batch with other concurrent uploads.
pub async fn md5_of(body: Bytes) -> [u8; 16] {
    let (reply, answer) = oneshot::channel();
    let sent = service()
        .and_then(|s| s.lock().ok())
        .map(|sender| sender.send((body.clone(), reply)).is_ok())
        .unwrap_or(false);
    if sent {
        if let Ok(digest) = answer.await {
            return digest;
        }
    }
    // No hashing thread (it could not be started): hash here.
    crate::hash::md5(&body)
}
