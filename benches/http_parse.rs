//! The response-head parse path (httparse + framing decisions) on a typical keepstore GET
//! answer and a PUT answer: it runs once per block, so it must stay far below a microsecond
//! next to a 64 MiB body. Also the head loop's step (`head_step`, with 1xx skipping and
//! limits) and the sans-IO body decoder on a chunked index listing and a Content-Length
//! body fed in network-sized pieces.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use keepmover::net::{
    head_step, parse_response_head, BodyDecoder, BodyFraming, FramingLimits, HeadStep, Method,
    ParseOutcome,
};
use std::hint::black_box;

const GET_HEAD: &[u8] = b"HTTP/1.1 200 OK\r\nAccess-Control-Allow-Headers: Authorization, Content-Length, Content-Type, X-Keep-Desired-Replicas, X-Keep-Signature, X-Keep-Storage-Classes\r\nAccess-Control-Allow-Methods: GET, HEAD, PUT, OPTIONS\r\nAccess-Control-Allow-Origin: *\r\nAccess-Control-Expose-Headers: X-Keep-Locator, X-Keep-Replicas-Stored, X-Keep-Storage-Classes-Confirmed\r\nAccess-Control-Max-Age: 86486400\r\nContent-Length: 67108864\r\nVary: X-Keep-Signature\r\nX-Request-Id: req-1x2y3z4w5v6u7t8s9r0q\r\nDate: Sun, 23 Nov 2025 01:02:03 GMT\r\n\r\n";
const PUT_HEAD: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 92\r\nContent-Type: text/plain; charset=utf-8\r\nX-Keep-Replicas-Stored: 1\r\nX-Keep-Storage-Classes-Confirmed: default=1\r\nX-Request-Id: req-1x2y3z4w5v6u7t8s9r0q\r\nDate: Sun, 23 Nov 2025 01:02:03 GMT\r\n\r\n";

fn parse_and_frame(raw: &[u8]) -> (u16, bool) {
    match parse_response_head(raw) {
        Ok(ParseOutcome::Complete(head)) => {
            let framing = head.framing(&Method::Get).ok();
            (head.status, framing.is_some() && head.keep_alive())
        }
        _ => (0, false),
    }
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("response_head");
    for (name, raw) in [
        ("keepstore_get_200", GET_HEAD),
        ("keepstore_put_200", PUT_HEAD),
    ] {
        group.throughput(Throughput::Bytes(raw.len() as u64));
        group.bench_function(name, |b| b.iter(|| parse_and_frame(black_box(raw))));
    }
    // A head that arrives in two pieces: the first parse says Partial.
    let half = &GET_HEAD[..GET_HEAD.len() / 2];
    group.bench_function("partial_then_complete", |b| {
        b.iter(|| {
            let partial = matches!(
                parse_response_head(black_box(half)),
                Ok(ParseOutcome::Partial)
            );
            (partial, parse_and_frame(black_box(GET_HEAD)))
        })
    });
    group.bench_function("head_step_get_200", |b| {
        b.iter(|| match head_step(black_box(GET_HEAD), 64 << 10) {
            Ok(HeadStep::Final(head)) => (head.status, head.framing(&Method::Get).is_ok()),
            _ => (0, false),
        })
    });
    group.finish();

    // A keepstore index listing: 1 MiB of lines in 8 KiB chunks, then a trailer.
    let line = b"acbd18db4cc2f85cedef654fccc4a4d8+3 1700000000000000000\n";
    let mut listing = Vec::new();
    while listing.len() < 1 << 20 {
        listing.extend_from_slice(line);
    }
    let mut chunked = Vec::new();
    for piece in listing.chunks(8 << 10) {
        chunked.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
        chunked.extend_from_slice(piece);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\nX-Trailer: done\r\n\r\n");
    let mut group = c.benchmark_group("body_decoder");
    group.throughput(Throughput::Bytes(listing.len() as u64));
    for (name, framing, wire) in [
        (
            "chunked_index_1MiB_fed_64KiB",
            BodyFraming::Chunked,
            &chunked,
        ),
        (
            "content_length_1MiB_fed_64KiB",
            BodyFraming::Length(listing.len() as u64),
            &listing,
        ),
    ] {
        let mut out = Vec::with_capacity(2 << 20);
        group.bench_function(name, |b| {
            b.iter(|| {
                out.clear();
                let mut decoder = BodyDecoder::new(framing, FramingLimits::default());
                let mut carry = Vec::new();
                for piece in black_box(wire.as_slice()).chunks(64 << 10) {
                    carry.extend_from_slice(piece);
                    let fed = decoder.feed(&carry, &mut out).expect("valid body");
                    carry.drain(..fed.consumed);
                    if fed.done {
                        break;
                    }
                }
                out.len()
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
