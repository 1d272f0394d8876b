//! TLS record protection per provider: rustls's own TLS 1.3 AES-256-GCM record encrypter
//! and decrypter (what every sealed and opened 16 KiB record of a copy over HTTPS goes
//! through, rustls's copy of the plaintext into the record included), built from ring and
//! from aws-lc-rs. Exists to show why aws-lc-rs is keepmover's default provider (its
//! AVX-512 AES-GCM where the CPU has it) and to keep checking it; results go into
//! BENCHMARKS.md ("TLS providers").
//!
//! A second group follows a record's whole path through keepmover's own TLS 1.3 record
//! layer (`net::tls_records`) against rustls 0.23's unbuffered API, copies included.
//!
//! A third group compares AES-128-GCM with AES-256-GCM (the suite keepmover offers first).
//!
//! Run: `cargo bench --bench tls_aead`. Short measurement (2 s, 10 samples): the bench
//! machine is shared.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};
use keepmover::net::tls_records::{content, KeySchedule, Opened, Records, Sealer};
use rustls::crypto::cipher::{
    AeadKey, InboundOpaqueMessage, Iv, MessageDecrypter, MessageEncrypter, OutboundChunks,
    OutboundPlainMessage,
};
use rustls::crypto::CryptoProvider;
use rustls::{CipherSuite, ConnectionTrafficSecrets, ContentType, ProtocolVersion};

/// The largest TLS record's plaintext, as keepmover's bodies are sealed and opened.
const RECORD: usize = 16 << 10;

fn protection(provider: &CryptoProvider) -> (Box<dyn MessageEncrypter>, Box<dyn MessageDecrypter>) {
    let suite = provider
        .cipher_suites
        .iter()
        .find(|suite| suite.suite() == CipherSuite::TLS13_AES_256_GCM_SHA384)
        .and_then(|suite| suite.tls13())
        .expect("the provider has TLS13_AES_256_GCM_SHA384");
    let key = || AeadKey::from([0x5a; 32]);
    let iv = || Iv::new([0xa5; 12]);
    (
        suite.aead_alg.encrypter(key(), iv()),
        suite.aead_alg.decrypter(key(), iv()),
    )
}

/// One application-data record's plaintext, as rustls fragments a body.
fn application_data(payload: &[u8]) -> OutboundPlainMessage<'_> {
    OutboundPlainMessage {
        typ: ContentType::ApplicationData,
        version: ProtocolVersion::TLSv1_2,
        payload: OutboundChunks::Single(payload),
    }
}

fn records(c: &mut Criterion) {
    let plaintext: Vec<u8> = (0..RECORD).map(|i| (i * 31 % 251) as u8).collect();
    let providers = [
        ("ring", rustls::crypto::ring::default_provider()),
        ("aws-lc-rs", rustls::crypto::aws_lc_rs::default_provider()),
    ];
    let mut group = c.benchmark_group("tls13_aes256gcm_16KiB_record");
    group.throughput(Throughput::Bytes(RECORD as u64));
    for (name, provider) in &providers {
        let (mut seal, mut open) = protection(provider);
        // 0, 1, 2, ... across all of criterion's calls, as on a connection: aws-lc-rs refuses
        // a TLS 1.3 sequence that does not start at 0 and count up (a nonce reused).
        let mut seq = 0u64;
        group.bench_function(BenchmarkId::new("seal", name), |b| {
            b.iter(|| {
                let message = application_data(black_box(&plaintext));
                let sealed = seal.encrypt(message, seq).expect("seal").encode();
                seq += 1;
                black_box(sealed)
            })
        });
        // One sealed record (by a fresh encrypter, at sequence number 0), opened in place:
        // each iteration first restores the ciphertext (a 16 KiB copy, the same for both
        // providers).
        let sealed = protection(provider)
            .0
            .encrypt(application_data(&plaintext), 0)
            .expect("seal")
            .encode();
        let mut work = sealed.clone();
        group.bench_function(BenchmarkId::new("open", name), |b| {
            b.iter(|| {
                work.copy_from_slice(&sealed);
                let message = InboundOpaqueMessage::new(
                    ContentType::ApplicationData,
                    ProtocolVersion::TLSv1_2,
                    &mut work[5..],
                );
                black_box(open.decrypt(message, 0).expect("open").payload.len())
            })
        });
    }
    group.finish();
}

/// The secret both ends of the record-path benchmarks use.
fn secret() -> ConnectionTrafficSecrets {
    ConnectionTrafficSecrets::Aes256Gcm {
        key: AeadKey::from([0x5a; 32]),
        iv: Iv::new([0xa5; 12]),
    }
}

/// A key schedule for a connection that never updates its keys.
struct FixedKeys;

impl KeySchedule for FixedKeys {
    fn next_sending(&mut self) -> Result<ConnectionTrafficSecrets, rustls::Error> {
        Err(rustls::Error::General(
            "no key update in this benchmark".into(),
        ))
    }
    fn next_receiving(&mut self) -> Result<ConnectionTrafficSecrets, rustls::Error> {
        Err(rustls::Error::General(
            "no key update in this benchmark".into(),
        ))
    }
    fn session_ticket(&mut self, _: &[u8]) -> Result<(), rustls::Error> {
        Ok(())
    }
}

/// The peer's records of `plaintext`, one per call, in sequence from 0.
fn peer_records(plaintext: &[u8]) -> impl FnMut() -> Vec<u8> + '_ {
    let mut peer = Sealer::new(&secret()).expect("sealer");
    move || {
        let (mut record, mut len) = (Vec::new(), 0);
        peer.seal(
            plaintext,
            &[content::APPLICATION_DATA],
            &mut record,
            &mut len,
        )
        .expect("seal");
        record
    }
}

/// A 16 KiB record's whole path on aws-lc-rs, from the caller's plaintext to the send buffer
/// and from the receive buffer to the caller's destination: as rustls 0.23's unbuffered API
/// takes it (plaintext copied into a scratch and sealed there, the sealed record copied into
/// the send buffer; opened in place, then copied into a `Vec`, then into the destination)
/// against keepmover's record layer (sealed from the plaintext straight into the send buffer;
/// opened in place, then copied into the destination; or opened straight into it).
fn record_path(c: &mut Criterion) {
    let plaintext: Vec<u8> = (0..RECORD).map(|i| (i * 31 % 251) as u8).collect();
    let provider = rustls::crypto::aws_lc_rs::default_provider();
    let mut group = c.benchmark_group("tls13_aes256gcm_16KiB_record_path");
    group.throughput(Throughput::Bytes(RECORD as u64));
    let mut out = vec![0u8; RECORD + 64];

    let (mut seal, mut open) = protection(&provider);
    let mut seq = 0u64;
    group.bench_function(BenchmarkId::new("seal", "rustls"), |b| {
        b.iter(|| {
            let sealed = seal
                .encrypt(application_data(black_box(&plaintext)), seq)
                .expect("seal")
                .encode();
            seq += 1;
            out[..sealed.len()].copy_from_slice(&sealed);
            black_box(&out);
        })
    });
    let mut sealer = Sealer::new(&secret()).expect("sealer");
    group.bench_function(BenchmarkId::new("seal", "keepmover"), |b| {
        b.iter(|| {
            let mut len = 0;
            sealer
                .seal(
                    black_box(&plaintext),
                    &[content::APPLICATION_DATA],
                    &mut out,
                    &mut len,
                )
                .expect("seal");
            black_box(&out[..len]);
        })
    });

    // Records sealed by keepmover's peer-side sealer, one per iteration in sequence (outside
    // the timing), opened by rustls and by keepmover: each side counts its own sequence.
    let mut destination = vec![0u8; RECORD];
    let mut next_record = peer_records(&plaintext);
    let mut seq = 0u64;
    group.bench_function(BenchmarkId::new("open", "rustls"), |b| {
        b.iter_batched_ref(
            &mut next_record,
            |record| {
                let message = InboundOpaqueMessage::new(
                    ContentType::ApplicationData,
                    ProtocolVersion::TLSv1_2,
                    &mut record[5..],
                );
                let opened = open.decrypt(message, seq).expect("open").payload.to_vec();
                seq += 1;
                destination.copy_from_slice(&opened);
                black_box(&destination);
            },
            BatchSize::SmallInput,
        )
    });
    let mut next_record = peer_records(&plaintext);
    let mut records =
        Records::new((0, secret()), (0, secret()), Box::new(FixedKeys)).expect("records");
    group.bench_function(BenchmarkId::new("open", "keepmover"), |b| {
        b.iter_batched_ref(
            &mut next_record,
            |record| match records.open(record) {
                Ok(Opened::Data { payload, .. }) => {
                    destination.copy_from_slice(&record[payload]);
                    black_box(&destination);
                }
                other => panic!("{other:?}"),
            },
            BatchSize::SmallInput,
        )
    });
    // Opened straight into the destination's spare capacity (what a body read does).
    let mut next_record = peer_records(&plaintext);
    let mut records =
        Records::new((0, secret()), (0, secret()), Box::new(FixedKeys)).expect("records");
    let mut destination = Vec::with_capacity(RECORD + 1);
    let mut overflow = Vec::new();
    group.bench_function(BenchmarkId::new("open", "keepmover_into"), |b| {
        b.iter_batched_ref(
            &mut next_record,
            |record| {
                destination.clear();
                match records.open_into(record, &mut destination, RECORD, &mut overflow) {
                    Ok(Opened::Appended { .. }) => black_box(&destination),
                    other => panic!("{other:?}"),
                };
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

/// AES-128-GCM against AES-256-GCM on one 16 KiB record, sealed and opened in place with
/// aws-lc-rs: what offering AES-128 first (`net::tls`) saves per byte, each way, where the
/// server follows the client's order.
fn key_sizes(c: &mut Criterion) {
    use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_128_GCM, AES_256_GCM};
    let mut group = c.benchmark_group("tls13_aesgcm_16KiB_key_size");
    group.throughput(Throughput::Bytes(RECORD as u64));
    for (name, algorithm) in [("AES-128-GCM", &AES_128_GCM), ("AES-256-GCM", &AES_256_GCM)] {
        let key_bytes = vec![0x5a; algorithm.key_len()];
        let key = LessSafeKey::new(UnboundKey::new(algorithm, &key_bytes).expect("key"));
        let nonce = || Nonce::assume_unique_for_key([0xa5; 12]);
        let mut record: Vec<u8> = (0..RECORD).map(|i| (i * 31 % 251) as u8).collect();
        group.bench_function(BenchmarkId::new("seal", name), |b| {
            b.iter(|| {
                let tag = key
                    .seal_in_place_separate_tag(nonce(), Aad::empty(), black_box(&mut record))
                    .expect("seal");
                black_box(tag)
            })
        });
        let mut sealed = record.clone();
        let tag = key
            .seal_in_place_separate_tag(nonce(), Aad::empty(), &mut sealed)
            .expect("seal");
        sealed.extend_from_slice(tag.as_ref());
        let mut work = sealed.clone();
        group.bench_function(BenchmarkId::new("open", name), |b| {
            b.iter(|| {
                work.copy_from_slice(&sealed);
                black_box(
                    key.open_in_place(nonce(), Aad::empty(), &mut work)
                        .expect("open")
                        .len(),
                )
            })
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .measurement_time(Duration::from_secs(2))
        .warm_up_time(Duration::from_millis(500))
        .sample_size(10);
    targets = records, record_path, key_sizes
}
criterion_main!(benches);
