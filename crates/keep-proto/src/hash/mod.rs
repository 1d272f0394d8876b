//! MD5 for block verification and rendezvous weights.
//!
//! Keep names every block by its MD5, so every byte keepmover moves is hashed once, and MD5
//! of a single stream is the hard ceiling of any Keep client (each of its 64 steps per block
//! waits for the previous one: about 0.7–1 GB/s per core whatever the CPU). MD5 over
//! *independent* messages vectorises, and keepmover always has many blocks in flight, so
//! this module hashes many streams at once in SIMD lanes:
//!
//! * [`Md5State`]: one streaming MD5 (four chaining words, the unfinished block, the length);
//!   [`Md5State::update`] is the scalar path for one stream.
//! * [`update_many`]: feeds chunk `i` into state `i` for any number of states, 16 (AVX-512),
//!   8 (AVX2) or 4 (SSE2) lanes at a time. Chunks may have any length; a lane whose chunk
//!   runs out is refilled with the next pending stream; unaligned tails are carried in the
//!   state; a lone stream takes the scalar path.
//! * [`digest_many`], [`finalize_many`]: one-shot digests and padding, also in lanes.
//! * [`rendezvous_weights`], [`probe_order_batch`]: Keep rendezvous order (keep-protocol §4)
//!   with the per-service MD5s computed in lanes.
//!
//! The backend is picked once at run time ([`backend`]): AVX-512F, else AVX2, else SSE2
//! (x86-64 baseline), else scalar; `KEEPMOVER_MD5=scalar|sse2|avx2|avx512` forces one (a
//! warning on stderr and the detected backend if the CPU lacks it or the value is unknown).
//! Every backend produces digests identical to the md-5 crate (differential tests,
//! proptests and the `md5_lanes` fuzz target check it).
//!
//! Why own kernels rather than a crate: `md5-simd` and `md5-many` were considered. Both are
//! young (one an alpha), and neither exposes the contract the copy engine needs (per-stream
//! state that can be stepped by both a scalar and a lane path with arbitrary, unaligned
//! chunk sizes, refilled lanes, and the rendezvous batch) without an adapter layer that
//! would itself need the full test suite. The kernels here are ~300 lines of `std::arch`
//! on stable Rust, share one round schedule ([`rounds`]) with the scalar code, keep all
//! `unsafe` to bounds-checked vector loads and stores, and are tested on every backend.
//!
//! Dispatch detail: with 8 or fewer streams left, the AVX-512 backend hands them to the
//! 8-lane AVX2 kernel (a half-empty 16-lane step costs about two AVX2 steps on Zen 5).
//!
//! Verification: differential tests and proptests against md-5 on every available backend
//! (`tests.rs`; big messages up to 64 MiB in `--release`), and `fuzz/fuzz_targets/md5_lanes.rs`.
//! Miri was not run: it needs a nightly toolchain with the miri component, which this
//! project's machines do not have; it could check `scalar.rs`/`lanes.rs` (safe code) but not
//! the `std::arch` kernels, which Miri does not support.

mod lanes;
mod rendezvous_batch;
mod rounds;
mod scalar;
#[cfg(test)]
mod tests;
mod usage;
#[cfg(target_arch = "x86_64")]
mod x86;

use std::fmt;
use std::sync::OnceLock;

use self::lanes::LaneJob;
use self::scalar::{pad_final_blocks, words_to_digest, BLOCK_LEN, INITIAL_WORDS};

pub use self::rendezvous_batch::{
    probe_order_batch, probe_order_batch_with, rendezvous_suffix, rendezvous_weights,
    rendezvous_weights_with,
};
pub use self::scalar::{md5, Md5State};
pub use self::usage::{kernel_use, KernelUse};

/// Name of the environment variable that forces a backend.
pub const BACKEND_ENV_VAR: &str = "KEEPMOVER_MD5";

/// An MD5 implementation: scalar, or a SIMD kernel with a number of lanes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Backend {
    /// One stream at a time, portable Rust.
    Scalar,
    /// 4 lanes, SSE2 (every x86-64 CPU).
    Sse2,
    /// 8 lanes, AVX2.
    Avx2,
    /// 16 lanes, AVX-512F.
    Avx512,
}

impl Backend {
    /// Every backend, narrowest first.
    pub const ALL: [Backend; 4] = [
        Backend::Scalar,
        Backend::Sse2,
        Backend::Avx2,
        Backend::Avx512,
    ];

    /// Streams advanced together per step.
    pub fn lanes(self) -> usize {
        match self {
            Backend::Scalar => 1,
            Backend::Sse2 => 4,
            Backend::Avx2 => 8,
            Backend::Avx512 => 16,
        }
    }

    /// The name used by `KEEPMOVER_MD5` and `Display`.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Scalar => "scalar",
            Backend::Sse2 => "sse2",
            Backend::Avx2 => "avx2",
            Backend::Avx512 => "avx512",
        }
    }

    /// Whether this CPU can run the backend.
    pub fn is_available(self) -> bool {
        match self {
            Backend::Scalar => true,
            #[cfg(target_arch = "x86_64")]
            Backend::Sse2 => true,
            #[cfg(target_arch = "x86_64")]
            Backend::Avx2 => std::arch::is_x86_feature_detected!("avx2"),
            #[cfg(target_arch = "x86_64")]
            Backend::Avx512 => std::arch::is_x86_feature_detected!("avx512f"),
            #[cfg(not(target_arch = "x86_64"))]
            _ => false,
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a requested backend cannot be used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BackendRequestError {
    /// The value is not one of `scalar`, `sse2`, `avx2`, `avx512`.
    Unknown(String),
    /// The CPU lacks the instructions the backend needs.
    Unavailable(Backend),
}

impl fmt::Display for BackendRequestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BackendRequestError::Unknown(value) => {
                write!(
                    f,
                    "unknown MD5 backend {value:?} (expected scalar, sse2, avx2 or avx512)"
                )
            }
            BackendRequestError::Unavailable(backend) => {
                write!(f, "MD5 backend {backend} is not supported by this CPU")
            }
        }
    }
}

impl std::error::Error for BackendRequestError {}

impl std::str::FromStr for Backend {
    type Err = BackendRequestError;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        let wanted = value.trim().to_ascii_lowercase();
        Backend::ALL
            .into_iter()
            .find(|backend| {
                backend.name() == wanted || (wanted == "avx-512" && *backend == Backend::Avx512)
            })
            .ok_or_else(|| BackendRequestError::Unknown(value.to_owned()))
    }
}

/// Backends this CPU can run, narrowest first (always starts with `Scalar`).
pub fn available_backends() -> Vec<Backend> {
    Backend::ALL
        .into_iter()
        .filter(|backend| backend.is_available())
        .collect()
}

/// The widest backend this CPU can run.
pub fn detected_backend() -> Backend {
    Backend::ALL
        .into_iter()
        .rev()
        .find(|backend| backend.is_available())
        .unwrap_or(Backend::Scalar)
}

/// The backend for a `KEEPMOVER_MD5` value: `None`, empty or `auto` mean detection.
pub fn choose_backend(requested: Option<&str>) -> Result<Backend, BackendRequestError> {
    match requested.map(str::trim) {
        None | Some("") => Ok(detected_backend()),
        Some(value) if value.eq_ignore_ascii_case("auto") => Ok(detected_backend()),
        Some(value) => {
            let backend: Backend = value.parse()?;
            if backend.is_available() {
                Ok(backend)
            } else {
                Err(BackendRequestError::Unavailable(backend))
            }
        }
    }
}

/// The backend used by [`update_many`] and friends: chosen once from `KEEPMOVER_MD5` and CPU
/// detection, then cached. A bad or unsupported `KEEPMOVER_MD5` prints a warning on stderr
/// and falls back to the detected backend.
pub fn backend() -> Backend {
    static CHOSEN: OnceLock<Backend> = OnceLock::new();
    *CHOSEN.get_or_init(|| {
        let requested = std::env::var(BACKEND_ENV_VAR).ok();
        match choose_backend(requested.as_deref()) {
            Ok(backend) => backend,
            Err(error) => {
                let fallback = detected_backend();
                eprintln!("keepmover: {BACKEND_ENV_VAR}: {error}; using {fallback}");
                fallback
            }
        }
    })
}

/// `requested` if this CPU can run it, else the default [`backend`].
fn usable(requested: Backend) -> Backend {
    if requested.is_available() {
        requested
    } else {
        backend()
    }
}

/// Runs every job to completion on `backend`.
fn run_jobs(backend: Backend, jobs: &mut [LaneJob<'_>]) {
    match usable(backend) {
        #[cfg(target_arch = "x86_64")]
        Backend::Sse2 => lanes::run_lanes::<4>(jobs, x86::compress_sse2),
        #[cfg(target_arch = "x86_64")]
        Backend::Avx2 => lanes::run_lanes::<8>(jobs, x86::compress_avx2),
        #[cfg(target_arch = "x86_64")]
        Backend::Avx512 => {
            // With 8 or fewer streams (at the start or left at the end) the 8-lane AVX2
            // kernel is faster than half-empty 16-lane steps; every AVX-512 CPU has AVX2.
            if Backend::Avx2.is_available() {
                lanes::run_lanes_until::<16>(jobs, x86::compress_avx512, 8);
                lanes::run_lanes::<8>(jobs, x86::compress_avx2);
            } else {
                lanes::run_lanes::<16>(jobs, x86::compress_avx512);
            }
        }
        _ => jobs.iter_mut().for_each(LaneJob::finish_scalar),
    }
}

/// Hashes `chunks[i]` into `states[i]` for every `i`, all streams together in the lanes of
/// the default [`backend`]. Equivalent to `states[i].update(chunks[i])` for each `i`.
///
/// # Panics
/// If `states` and `chunks` differ in length.
pub fn update_many(states: &mut [&mut Md5State], chunks: &[&[u8]]) {
    update_many_with(backend(), states, chunks);
}

/// [`update_many`] with a given backend (the default one if this CPU cannot run it).
///
/// # Panics
/// If `states` and `chunks` differ in length.
pub fn update_many_with(backend: Backend, states: &mut [&mut Md5State], chunks: &[&[u8]]) {
    assert_eq!(
        states.len(),
        chunks.len(),
        "update_many: one chunk per state"
    );
    if usable(backend) == Backend::Scalar || states.len() == 1 {
        for (state, chunk) in states.iter_mut().zip(chunks) {
            state.update(chunk);
        }
        return;
    }
    let mut jobs = Vec::with_capacity(states.len());
    let mut owners = Vec::with_capacity(states.len());
    for (index, (state, &chunk)) in states.iter_mut().zip(chunks).enumerate() {
        let tail_len = state.tail_len();
        state.len = state.len.wrapping_add(chunk.len() as u64);
        if tail_len + chunk.len() < BLOCK_LEN {
            state.tail[tail_len..tail_len + chunk.len()].copy_from_slice(chunk);
            continue;
        }
        // Complete the unfinished block (if any) into the job's own buffer; it goes first.
        let mut owned = [0u8; 2 * BLOCK_LEN];
        let (owned_len, rest) = if tail_len > 0 {
            let take = BLOCK_LEN - tail_len;
            owned[..tail_len].copy_from_slice(&state.tail[..tail_len]);
            owned[tail_len..BLOCK_LEN].copy_from_slice(&chunk[..take]);
            (BLOCK_LEN, &chunk[take..])
        } else {
            (0, chunk)
        };
        let whole = rest.len() - rest.len() % BLOCK_LEN;
        let (body, remainder) = rest.split_at(whole);
        state.tail[..remainder.len()].copy_from_slice(remainder);
        jobs.push(LaneJob::new(state.words, owned, owned_len, true, body));
        owners.push(index);
    }
    run_jobs(backend, &mut jobs);
    for (job, index) in jobs.iter().zip(owners) {
        states[index].words = job.words;
    }
}

/// One-shot MD5 of every message, in lanes of the default [`backend`].
pub fn digest_many(messages: &[&[u8]]) -> Vec<[u8; 16]> {
    digest_many_with(backend(), messages)
}

/// [`digest_many`] with a given backend (the default one if this CPU cannot run it).
pub fn digest_many_with(backend: Backend, messages: &[&[u8]]) -> Vec<[u8; 16]> {
    let mut jobs: Vec<LaneJob<'_>> = messages
        .iter()
        .map(|message| {
            let whole = message.len() - message.len() % BLOCK_LEN;
            let (body, tail) = message.split_at(whole);
            let mut padding = [0u8; 2 * BLOCK_LEN];
            let padding_len = pad_final_blocks(tail, message.len() as u64, &mut padding);
            LaneJob::new(INITIAL_WORDS, padding, padding_len, false, body)
        })
        .collect();
    run_jobs(backend, &mut jobs);
    jobs.iter().map(|job| words_to_digest(&job.words)).collect()
}

/// The digests of many streaming states (what [`Md5State::finalize`] would return for each),
/// with the padding blocks compressed in lanes of the default [`backend`].
pub fn finalize_many(states: &[&Md5State]) -> Vec<[u8; 16]> {
    finalize_many_with(backend(), states)
}

/// [`finalize_many`] with a given backend (the default one if this CPU cannot run it).
pub fn finalize_many_with(backend: Backend, states: &[&Md5State]) -> Vec<[u8; 16]> {
    let mut jobs: Vec<LaneJob<'_>> = states
        .iter()
        .map(|state| {
            let mut padding = [0u8; 2 * BLOCK_LEN];
            let padding_len =
                pad_final_blocks(&state.tail[..state.tail_len()], state.len, &mut padding);
            LaneJob::new(state.words, padding, padding_len, true, &[])
        })
        .collect();
    run_jobs(backend, &mut jobs);
    jobs.iter().map(|job| words_to_digest(&job.words)).collect()
}

/// MD5 digests of messages that each fit in one block: `blocks[i]` is message `i` already
/// padded (at most 55 bytes, then `0x80`, zeros and the bit length). The rendezvous path
/// uses it: it skips the scheduler and hands the kernel N blocks per call.
fn digest_padded_blocks(backend: Backend, blocks: &[[u8; BLOCK_LEN]]) -> Vec<[u8; 16]> {
    match usable(backend) {
        #[cfg(target_arch = "x86_64")]
        Backend::Sse2 => digest_padded_blocks_in_groups::<4>(blocks, x86::compress_sse2),
        #[cfg(target_arch = "x86_64")]
        Backend::Avx2 => digest_padded_blocks_in_groups::<8>(blocks, x86::compress_avx2),
        #[cfg(target_arch = "x86_64")]
        Backend::Avx512 if blocks.len() <= 8 && Backend::Avx2.is_available() => {
            digest_padded_blocks_in_groups::<8>(blocks, x86::compress_avx2)
        }
        #[cfg(target_arch = "x86_64")]
        Backend::Avx512 => digest_padded_blocks_in_groups::<16>(blocks, x86::compress_avx512),
        _ => blocks.iter().map(digest_padded_block_scalar).collect(),
    }
}

fn digest_padded_block_scalar(block: &[u8; BLOCK_LEN]) -> [u8; 16] {
    let mut words = INITIAL_WORDS;
    scalar::compress_blocks(&mut words, block);
    words_to_digest(&words)
}

fn digest_padded_blocks_in_groups<const N: usize>(
    blocks: &[[u8; BLOCK_LEN]],
    kernel: lanes::LaneKernel<N>,
) -> Vec<[u8; 16]> {
    let mut digests = Vec::with_capacity(blocks.len());
    for group in blocks.chunks(N) {
        if group.len() == 1 {
            digests.push(digest_padded_block_scalar(&group[0]));
            continue;
        }
        let mut states = [INITIAL_WORDS; N];
        // Lanes past the end of the group re-hash the group's first block; ignored below.
        let inputs: [&[u8]; N] =
            std::array::from_fn(|lane| group.get(lane).unwrap_or(&group[0]).as_slice());
        kernel(&mut states, &inputs, 1);
        digests.extend(states[..group.len()].iter().map(words_to_digest));
    }
    digests
}
