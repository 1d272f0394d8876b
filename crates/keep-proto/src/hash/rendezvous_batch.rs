//! Keep rendezvous order (keep-protocol §4) with the per-service MD5s computed in lanes.
//!
//! weight(service) = MD5 of the ASCII string `hash32 + suffix`, where the suffix is the last
//! 15 characters of the service uuid if the uuid is exactly 27 characters long, else the whole
//! uuid; services are probed by weight descending (the lowercase hex compare used by Go and
//! Python is the same as comparing the raw digests), ties in input order. Each weight is one
//! 64-byte block (32 + 15 bytes), so a batch of blocks × services is a batch of independent
//! one-block messages: ideal for SIMD lanes, and why this lives next to the kernels.
//! `keep` keeps the scalar rule; the tests here check both agree on vectors R1–R7 and R10.

use super::{digest_many_with, digest_padded_blocks, scalar::pad_final_blocks, Backend, BLOCK_LEN};

/// The part of a service uuid that enters the weight: the last 15 characters of a 27-character
/// uuid (`zzzzz-bi6l4-0123456789abcde` → `0123456789abcde`), otherwise the whole uuid (Go rule).
pub fn rendezvous_suffix(uuid: &str) -> &str {
    if uuid.len() == 27 {
        uuid.get(12..).unwrap_or(uuid)
    } else {
        uuid
    }
}

/// The weight of each service for block `hash32`: `md5(hash32 + suffixes[i])`, in lanes.
pub fn rendezvous_weights(hash32: &str, suffixes: &[&str]) -> Vec<[u8; 16]> {
    rendezvous_weights_with(super::backend(), hash32, suffixes)
}

/// [`rendezvous_weights`] with a given backend.
pub fn rendezvous_weights_with(backend: Backend, hash32: &str, suffixes: &[&str]) -> Vec<[u8; 16]> {
    weights_row_major(backend, &[hash32], suffixes)
}

/// For each block hash, the probe order of the services: indices into `suffixes` by weight
/// descending, ties by index. All `hashes.len() * suffixes.len()` weights go through the lanes
/// together, so even three services fill 16 lanes when enough blocks are ordered at once.
pub fn probe_order_batch(hashes: &[&str], suffixes: &[&str]) -> Vec<Vec<usize>> {
    probe_order_batch_with(super::backend(), hashes, suffixes)
}

/// [`probe_order_batch`] with a given backend.
pub fn probe_order_batch_with(
    backend: Backend,
    hashes: &[&str],
    suffixes: &[&str],
) -> Vec<Vec<usize>> {
    let weights = weights_row_major(backend, hashes, suffixes);
    if suffixes.is_empty() {
        return vec![Vec::new(); hashes.len()];
    }
    weights
        .chunks(suffixes.len())
        .map(|row| {
            let mut order: Vec<usize> = (0..row.len()).collect();
            // Stable sort: equal weights keep input order.
            order.sort_by(|&x, &y| row[y].cmp(&row[x]));
            order
        })
        .collect()
}

/// `md5(hashes[h] + suffixes[s])` at index `h * suffixes.len() + s`.
fn weights_row_major(backend: Backend, hashes: &[&str], suffixes: &[&str]) -> Vec<[u8; 16]> {
    let longest_hash = hashes.iter().map(|hash| hash.len()).max().unwrap_or(0);
    let longest_suffix = suffixes
        .iter()
        .map(|suffix| suffix.len())
        .max()
        .unwrap_or(0);
    if longest_hash + longest_suffix <= BLOCK_LEN - 9 {
        // Every message fits in one padded block: build the blocks directly.
        let mut blocks = Vec::with_capacity(hashes.len() * suffixes.len());
        let mut message = [0u8; BLOCK_LEN];
        let mut padded = [0u8; 2 * BLOCK_LEN];
        for hash in hashes {
            message[..hash.len()].copy_from_slice(hash.as_bytes());
            for suffix in suffixes {
                let len = hash.len() + suffix.len();
                message[hash.len()..len].copy_from_slice(suffix.as_bytes());
                pad_final_blocks(&message[..len], len as u64, &mut padded);
                let mut block = [0u8; BLOCK_LEN];
                block.copy_from_slice(&padded[..BLOCK_LEN]);
                blocks.push(block);
            }
        }
        return digest_padded_blocks(backend, &blocks);
    }
    // Long uuids (not 27 characters, so used whole): concatenate and use the general path.
    let mut arena = Vec::new();
    let mut bounds = Vec::with_capacity(hashes.len() * suffixes.len());
    for hash in hashes {
        for suffix in suffixes {
            let start = arena.len();
            arena.extend_from_slice(hash.as_bytes());
            arena.extend_from_slice(suffix.as_bytes());
            bounds.push(start..arena.len());
        }
    }
    let messages: Vec<&[u8]> = bounds.into_iter().map(|range| &arena[range]).collect();
    digest_many_with(backend, &messages)
}
