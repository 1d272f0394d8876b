//! MD5 throughput: md-5 (one stream) against every multi-lane backend at 1–16 concurrent
//! streams of 4 KiB, 1 MiB and 64 MiB, the streaming `update_many` path, and rendezvous
//! batches. Exists to show (and keep showing) that the lanes beat the single-stream ceiling
//! and that one stream is no slower than md-5; results go into BENCHMARKS.md.
//!
//! Run: `cargo bench --bench md5` (filter e.g. `cargo bench --bench md5 -- avx512`).
//! Measurement time is short (2 s, 10 samples) because the bench machine is shared.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use keepmover::hash::{
    available_backends, digest_many_with, md5 as keepmover_md5, probe_order_batch_with,
    update_many_with, Md5State,
};
use md5::Digest as _;

const KIB: usize = 1 << 10;
const MIB: usize = 1 << 20;

/// Deterministic non-zero filler (so no part of the pipeline can shortcut zeros).
fn filled(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

fn size_name(size: usize) -> String {
    if size >= MIB {
        format!("{}MiB", size / MIB)
    } else {
        format!("{}KiB", size / KIB)
    }
}

fn single_stream(c: &mut Criterion) {
    let mut group = c.benchmark_group("md5_single");
    for size in [4 * KIB, MIB, 64 * MIB] {
        let data = filled(size, 1);
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_with_input(
            BenchmarkId::new("md-5", size_name(size)),
            &data,
            |b, data| b.iter(|| md5::Md5::digest(black_box(data))),
        );
        group.bench_with_input(
            BenchmarkId::new("keepmover-scalar", size_name(size)),
            &data,
            |b, data| b.iter(|| keepmover_md5(black_box(data))),
        );
    }
    group.finish();
}

fn many_streams(c: &mut Criterion) {
    let backends = available_backends();
    let mut group = c.benchmark_group("md5_streams");
    for size in [4 * KIB, MIB, 64 * MIB] {
        let stream_counts: &[usize] = if size == 64 * MIB {
            &[1, 16]
        } else {
            &[1, 2, 4, 8, 16, 32]
        };
        let max_streams = stream_counts.iter().copied().max().unwrap_or(1);
        // Distinct buffers per stream, so 16 × 64 MiB really reads 1 GiB from memory.
        let buffers: Vec<Vec<u8>> = (0..max_streams)
            .map(|seed| filled(size, seed as u64))
            .collect();
        for &streams in stream_counts {
            let messages: Vec<&[u8]> = buffers[..streams].iter().map(Vec::as_slice).collect();
            group.throughput(Throughput::Bytes((size * streams) as u64));
            group.bench_with_input(
                BenchmarkId::new("md-5", format!("{streams}x{}", size_name(size))),
                &messages,
                |b, messages| {
                    b.iter(|| {
                        messages
                            .iter()
                            .map(|message| md5::Md5::digest(black_box(message)))
                            .collect::<Vec<_>>()
                    })
                },
            );
            for &backend in &backends {
                group.bench_with_input(
                    BenchmarkId::new(backend.name(), format!("{streams}x{}", size_name(size))),
                    &messages,
                    |b, messages| b.iter(|| digest_many_with(backend, black_box(messages))),
                );
            }
        }
    }
    group.finish();
}

/// The copy engine's shape: 16 blocks of 1 MiB arriving in 64 KiB chunks (plus 3 bytes, so
/// tails are unaligned), hashed with one `update_many` call per round.
fn streaming_update_many(c: &mut Criterion) {
    let streams = 16;
    let size = MIB;
    let chunk = 64 * KIB + 3;
    let buffers: Vec<Vec<u8>> = (0..streams).map(|seed| filled(size, seed as u64)).collect();
    let mut group = c.benchmark_group("md5_update_many");
    group.throughput(Throughput::Bytes((size * streams) as u64));
    for backend in available_backends() {
        group.bench_function(
            BenchmarkId::new(backend.name(), "16x1MiB_in_64KiB+3_chunks"),
            |b| {
                b.iter(|| {
                    let mut states = vec![Md5State::new(); streams];
                    let mut offset = 0;
                    while offset < size {
                        let chunks: Vec<&[u8]> = buffers
                            .iter()
                            .map(|buffer| &buffer[offset..(offset + chunk).min(size)])
                            .collect();
                        let mut refs: Vec<&mut Md5State> = states.iter_mut().collect();
                        update_many_with(backend, &mut refs, &chunks);
                        offset += chunk;
                    }
                    states
                        .into_iter()
                        .map(Md5State::finalize)
                        .collect::<Vec<_>>()
                })
            },
        );
    }
    group.finish();
}

fn rendezvous(c: &mut Criterion) {
    let blocks = 1024;
    let hashes: Vec<String> = (0..blocks)
        .map(|index| format!("{:x}", md5::Md5::digest(index.to_string())))
        .collect();
    let hashes: Vec<&str> = hashes.iter().map(String::as_str).collect();
    let mut group = c.benchmark_group("rendezvous_1024_blocks");
    group.throughput(Throughput::Elements(blocks as u64));
    for services in [3usize, 8, 16, 64] {
        let suffixes: Vec<String> = (0..services).map(|index| format!("{index:015x}")).collect();
        let suffixes: Vec<&str> = suffixes.iter().map(String::as_str).collect();
        group.bench_function(
            BenchmarkId::new("md-5+sort", format!("S={services}")),
            |b| {
                b.iter(|| {
                    hashes
                        .iter()
                        .map(|hash| {
                            let weights: Vec<[u8; 16]> = suffixes
                                .iter()
                                .map(|suffix| {
                                    let mut hasher = md5::Md5::new();
                                    hasher.update(hash.as_bytes());
                                    hasher.update(suffix.as_bytes());
                                    hasher.finalize().into()
                                })
                                .collect();
                            let mut order: Vec<usize> = (0..services).collect();
                            order.sort_by(|&x, &y| weights[y].cmp(&weights[x]));
                            order
                        })
                        .collect::<Vec<_>>()
                })
            },
        );
        for backend in available_backends() {
            group.bench_function(
                BenchmarkId::new(backend.name(), format!("S={services}")),
                |b| {
                    b.iter(|| {
                        probe_order_batch_with(backend, black_box(&hashes), black_box(&suffixes))
                    })
                },
            );
        }
    }
    group.finish();
}

fn short_measurements() -> Criterion {
    eprintln!(
        "md5 backends on this CPU: {:?} (default {})",
        available_backends(),
        keepmover::hash::backend()
    );
    Criterion::default()
        .measurement_time(Duration::from_secs(2))
        .warm_up_time(Duration::from_millis(500))
        .sample_size(10)
}

criterion_group! {
    name = md5_benches;
    config = short_measurements();
    targets = single_stream, many_streams, streaming_update_many, rendezvous
}
criterion_main!(md5_benches);
