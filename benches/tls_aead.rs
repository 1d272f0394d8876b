//! TLS record protection per provider: rustls's own TLS 1.3 AES-256-GCM record encrypter
//! and decrypter (what every sealed and opened 16 KiB record of a copy over HTTPS goes
//! through, rustls's copy of the plaintext into the record included), built from ring and
//! from aws-lc-rs. Exists to show why aws-lc-rs is keepmover's default provider (its
//! AVX-512 AES-GCM where the CPU has it) and to keep checking it; results go into
//! BENCHMARKS.md ("TLS providers").
//!
//! Run: `cargo bench --bench tls_aead`. Short measurement (2 s, 10 samples): the bench
//! machine is shared.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use rustls::crypto::cipher::{
    AeadKey, InboundOpaqueMessage, Iv, MessageDecrypter, MessageEncrypter, OutboundChunks,
    OutboundPlainMessage,
};
use rustls::crypto::CryptoProvider;
use rustls::{CipherSuite, ContentType, ProtocolVersion};

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

criterion_group! {
    name = benches;
    config = Criterion::default()
        .measurement_time(Duration::from_secs(2))
        .warm_up_time(Duration::from_millis(500))
        .sample_size(10);
    targets = records
}
criterion_main!(benches);
