//! Criterion benches of the hot protocol paths outside MD5: the response-head parser, the
//! index-body parser, the slice merge/diff, and rendezvous ordering (scalar Go rule next to
//! the SIMD batch), plus MD5 per chunk size as the copy engine feeds it.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use keepmover::hash::{probe_order_batch, Md5State};
use keepmover::index::merge::{merge_sources, sort_slice, subtract, BlockId};
use keepmover::keep::index_format::{format_index_line, IndexBodyParser};
use keepmover::keep::locator::BlockHash;
use keepmover::keep::rendezvous::{go_suffix, probe_order_go};
use keepmover::net::parse_response_head;

fn hash_of(n: u64) -> BlockHash {
    BlockHash(keepmover::hash::md5(&n.to_le_bytes()))
}

fn short(c: &mut Criterion) -> criterion::BenchmarkGroup<'_, criterion::measurement::WallTime> {
    let mut group = c.benchmark_group("protocol");
    group
        .measurement_time(Duration::from_secs(2))
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500));
    group
}

fn head_parse(c: &mut Criterion) {
    let head = b"HTTP/1.1 200 OK\r\nAccess-Control-Allow-Headers: Authorization, Content-Length, Content-Type, X-Keep-Desired-Replicas\r\nAccess-Control-Allow-Methods: GET, HEAD, OPTIONS, PUT\r\nAccess-Control-Allow-Origin: *\r\nAccess-Control-Expose-Headers: X-Keep-Locator, X-Keep-Replicas-Stored, X-Keep-Storage-Classes-Confirmed\r\nContent-Length: 87\r\nContent-Type: text/plain; charset=utf-8\r\nX-Keep-Replicas-Stored: 1\r\nX-Keep-Storage-Classes-Confirmed: default=1\r\nX-Request-Id: req-1a2b3c4d5e6f7g8h9i0j\r\nDate: Mon, 23 Nov 2026 01:00:00 GMT\r\n\r\n";
    let mut group = short(c);
    group.throughput(Throughput::Elements(1));
    group.bench_function("response_head_parse", |b| {
        b.iter(|| parse_response_head(black_box(head)))
    });
    group.finish();
}

fn index_parse(c: &mut Criterion) {
    let mut body = Vec::new();
    for n in 0..100_000u64 {
        body.extend_from_slice(
            format_index_line(&hash_of(n), 1 << 20, 1_700_000_000_123_456_789).as_bytes(),
        );
    }
    body.push(b'\n');
    let mut group = short(c);
    group.throughput(Throughput::Bytes(body.len() as u64));
    group.bench_function("index_body_100k_lines", |b| {
        b.iter(|| {
            let mut parser = IndexBodyParser::new(None);
            let mut count = 0usize;
            for chunk in body.chunks(256 << 10) {
                let _ = parser.feed(chunk, |_| count += 1);
            }
            let _ = parser.finish();
            count
        })
    });
    group.finish();
}

fn merge_diff(c: &mut Criterion) {
    let servers: Vec<Vec<BlockId>> = (0..3u64)
        .map(|s| {
            (0..100_000u64)
                .map(|n| BlockId {
                    hash: hash_of(n * 3 + s),
                    size: 1 << 20,
                })
                .collect()
        })
        .collect();
    let destination: Vec<BlockId> = (0..150_000u64)
        .map(|n| BlockId {
            hash: hash_of(n * 2),
            size: 1 << 20,
        })
        .collect();
    let mut group = short(c);
    group.throughput(Throughput::Elements(300_000));
    group.bench_function("sort_merge_subtract_3x100k", |b| {
        b.iter(|| {
            let slices: Vec<(u16, Vec<BlockId>)> = servers
                .iter()
                .enumerate()
                .map(|(i, s)| {
                    let mut s = s.clone();
                    sort_slice(&mut s);
                    (i as u16, s)
                })
                .collect();
            let mut dst = destination.clone();
            sort_slice(&mut dst);
            subtract(merge_sources(slices), &dst).0.len()
        })
    });
    group.finish();
}

fn rendezvous(c: &mut Criterion) {
    let hashes: Vec<String> = (0..1024u64).map(|n| hash_of(n).to_string()).collect();
    let refs: Vec<&str> = hashes.iter().map(String::as_str).collect();
    let mut group = short(c);
    group.throughput(Throughput::Elements(1024));
    for services in [3usize, 8, 16, 64] {
        let uuids: Vec<String> = (0..services)
            .map(|i| format!("zzzzz-bi6l4-{i:015}"))
            .collect();
        let uuid_refs: Vec<&str> = uuids.iter().map(String::as_str).collect();
        let suffixes: Vec<&str> = uuids.iter().map(|u| go_suffix(u)).collect();
        group.bench_with_input(
            BenchmarkId::new("probe_order_go_1024_blocks", services),
            &services,
            |b, _| {
                b.iter(|| {
                    refs.iter()
                        .map(|h| probe_order_go(h, &uuid_refs)[0])
                        .sum::<usize>()
                })
            },
        );
        group.bench_with_input(
            BenchmarkId::new("probe_order_batch_1024_blocks", services),
            &services,
            |b, _| b.iter(|| probe_order_batch(&refs, &suffixes).len()),
        );
    }
    group.finish();
}

fn md5_chunks(c: &mut Criterion) {
    let data = vec![7u8; 8 << 20];
    let mut group = short(c);
    group.throughput(Throughput::Bytes(data.len() as u64));
    for chunk in [4usize << 10, 64 << 10, 1 << 20] {
        group.bench_with_input(
            BenchmarkId::new("md5_update_8MiB_in_chunks", chunk),
            &chunk,
            |b, &chunk| {
                b.iter(|| {
                    let mut state = Md5State::new();
                    for piece in data.chunks(chunk) {
                        state.update(piece);
                    }
                    state.finalize()
                })
            },
        );
    }
    group.finish();
}

criterion_group!(
    benches,
    head_parse,
    index_parse,
    merge_diff,
    rendezvous,
    md5_chunks
);
criterion_main!(benches);
