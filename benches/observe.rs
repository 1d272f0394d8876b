//! What watching a run costs: the per-event price of the engine's counters (what every block
//! pays whether anyone watches or not), of the status sink that `/status` and SIGUSR1 read
//! (on the pump thread, per event of a batch), and the price of one `/status` document and
//! one `/metrics` exposition (per request, on the endpoint's thread) for a job with six
//! servers' histograms and error tables.

use std::hint::black_box;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use keepmover::keep::{BlockHash, BlockId};
use keepmover::keepstore::ErrorKind;
use keepmover::mover::counters::Op;
use keepmover::mover::events::{Action, BlockRecord, Event, EventSink, Phase};
use keepmover::mover::{Control, Counters};
use keepmover::report::metrics;
use keepmover::report::status::{JobInfo, Live};

fn group(c: &mut Criterion) -> criterion::BenchmarkGroup<'_, criterion::measurement::WallTime> {
    let mut group = c.benchmark_group("observe");
    group
        .measurement_time(Duration::from_secs(2))
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500));
    group
}

const SERVERS: [&str; 6] = [
    "srcaa-bi6l4-000000000000000",
    "srcaa-bi6l4-000000000000001",
    "srcaa-bi6l4-000000000000002",
    "dstbb-bi6l4-000000000000000",
    "dstbb-bi6l4-000000000000001",
    "dstbb-bi6l4-000000000000002",
];

/// A batch as the pump sees it in a copy: each block's Started and Done.
fn batch() -> Vec<Event> {
    let mut events = Vec::with_capacity(256);
    for n in 0..128u64 {
        let mut hash = [0u8; 16];
        hash[..8].copy_from_slice(&n.to_le_bytes());
        let block = BlockId::new(BlockHash(hash), 1 << 20).short();
        events.push(Event::Started {
            number: n,
            planned: 1000,
            finished: n,
            block,
        });
        events.push(Event::Done(BlockRecord {
            block,
            action: Action::Copied,
            bytes: 1 << 20,
            source: Some(0),
            stored_on: vec![1, 2],
            attempts: 3,
            error: None,
        }));
    }
    events
}

/// A job's view with every server's histogram and some errors filled in.
fn busy_live() -> Live {
    let counters = Arc::new(Counters::default());
    for (i, server) in SERVERS.iter().enumerate() {
        for n in 0..1000 {
            counters.observe(
                if i < 3 { Op::Get } else { Op::Put },
                server,
                0.0005 * n as f64,
            );
        }
        counters.observe(Op::Index, server, 0.2);
        counters.error(server, ErrorKind::Timeout);
        counters.error(server, ErrorKind::Status5xx);
    }
    let live = Live::new(
        JobInfo {
            command: "copy".into(),
            src_api_host: "src.example:443".into(),
            dst_api_host: "dst.example:443".into(),
            concurrency: 32,
            workers: 1,
        },
        counters.clone(),
        Arc::new(Control::new()),
    );
    let mut sink = live.board.sink();
    sink.events(&[Event::Phase(Phase::Copying)], &counters);
    for _ in 0..20 {
        sink.tick(&counters);
    }
    live
}

fn counters(c: &mut Criterion) {
    let counters = Counters::default();
    let mut group = group(c);
    group.throughput(Throughput::Elements(1));
    // What copy_block does per block outside the events: started, in flight up and down,
    // copied blocks and bytes.
    group.bench_function("counters_per_block_atomics", |b| {
        b.iter(|| {
            counters.started_blocks.fetch_add(1, Relaxed);
            counters.in_flight_blocks.fetch_add(1, Relaxed);
            counters.in_flight_blocks.fetch_sub(1, Relaxed);
            counters.copied_blocks.fetch_add(1, Relaxed);
            counters.copied_bytes.fetch_add(black_box(1 << 20), Relaxed);
        })
    });
    // One request's latency (a GET or a PUT): per request, a lock and a map lookup.
    group.bench_function("counters_observe_latency", |b| {
        let mut i = 0usize;
        b.iter(|| {
            i = (i + 1) % SERVERS.len();
            counters.observe(Op::Get, black_box(SERVERS[i]), black_box(0.004));
        })
    });
    group.finish();
}

fn status_sink(c: &mut Criterion) {
    let live = busy_live();
    let events = batch();
    let mut sink = live.board.sink();
    let mut group = group(c);
    group.throughput(Throughput::Elements(events.len() as u64));
    group.bench_function("status_sink_per_event", |b| {
        let counters = live.counters();
        b.iter(|| sink.events(black_box(&events), &counters))
    });
    group.finish();
}

fn documents(c: &mut Criterion) {
    let live = busy_live();
    let mut group = group(c);
    group.throughput(Throughput::Elements(1));
    group.bench_function("status_document_json", |b| {
        b.iter(|| serde_json::to_string_pretty(&live.status()).map(|s| s.len()))
    });
    group.bench_function("metrics_exposition", |b| {
        b.iter(|| metrics::render(black_box(&live)).len())
    });
    group.finish();
}

criterion_group!(benches, counters, status_sink, documents);
criterion_main!(benches);
