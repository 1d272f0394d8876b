//! Differential tests: every backend against the md-5 crate, plus the rendezvous vectors.
//!
//! Big messages (up to 64 MiB) run only in release builds (`cargo test --release`); debug
//! runs cap them at 1 MiB so `cargo test -p keepmover --lib hash` stays fast.

use super::*;
use ::md5::Digest as _;
use proptest::prelude::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

fn reference(data: &[u8]) -> [u8; 16] {
    ::md5::Md5::digest(data).into()
}

fn random_bytes(rng: &mut StdRng, len: usize) -> Vec<u8> {
    let mut data = vec![0u8; len];
    rng.fill(&mut data[..]);
    data
}

fn hex(digest: &[u8; 16]) -> String {
    digest.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// Every backend the CPU has; `Scalar` always included.
fn backends() -> Vec<Backend> {
    let backends = available_backends();
    assert_eq!(backends[0], Backend::Scalar);
    backends
}

/// Streams `data` through `update_many_with` together with companion streams, splitting
/// every stream at the given cut points, and checks every digest against md-5.
fn check_streams_split(backend: Backend, messages: &[Vec<u8>], rng: &mut StdRng, rounds: usize) {
    let mut states: Vec<Md5State> = messages.iter().map(|_| Md5State::new()).collect();
    let mut offsets = vec![0usize; messages.len()];
    for round in 0..=rounds {
        let chunks: Vec<&[u8]> = messages
            .iter()
            .zip(&offsets)
            .map(|(message, &offset)| {
                let left = message.len() - offset;
                let take = if round == rounds || left == 0 {
                    left
                } else {
                    rng.random_range(0..=left)
                };
                &message[offset..offset + take]
            })
            .collect();
        for (offset, chunk) in offsets.iter_mut().zip(&chunks) {
            *offset += chunk.len();
        }
        let mut refs: Vec<&mut Md5State> = states.iter_mut().collect();
        update_many_with(backend, &mut refs, &chunks);
    }
    let finals: Vec<&Md5State> = states.iter().collect();
    let lane_digests = finalize_many_with(backend, &finals);
    for (index, ((message, state), lane_digest)) in
        messages.iter().zip(&states).zip(&lane_digests).enumerate()
    {
        let expected = reference(message);
        assert_eq!(
            state.len(),
            message.len() as u64,
            "{backend}: stream {index} length"
        );
        assert_eq!(
            lane_digest,
            &expected,
            "{backend}: stream {index} of {} bytes (finalize_many)",
            message.len()
        );
        assert_eq!(
            state.clone().finalize(),
            expected,
            "{backend}: stream {index} of {} bytes",
            message.len()
        );
    }
}

#[test]
fn known_answers() {
    // RFC 1321 appendix A.5.
    let vectors: [(&[u8], &str); 4] = [
        (b"", "d41d8cd98f00b204e9800998ecf8427e"),
        (b"abc", "900150983cd24fb0d6963f7d28e17f72"),
        (b"message digest", "f96b697d7cb7938d525a2f31aaf161d0"),
        (
            b"12345678901234567890123456789012345678901234567890123456789012345678901234567890",
            "57edf4a22be3c955ac49da2e2107b67a",
        ),
    ];
    for backend in backends() {
        let messages: Vec<&[u8]> = vectors.iter().map(|(message, _)| *message).collect();
        for (digest, (_, expected)) in digest_many_with(backend, &messages).iter().zip(vectors) {
            assert_eq!(hex(digest), expected, "{backend}");
        }
    }
    for (message, expected) in vectors {
        assert_eq!(hex(&md5(message)), expected);
    }
}

#[test]
fn every_length_0_to_300_one_shot_and_streaming() {
    let mut rng = StdRng::seed_from_u64(1);
    let messages: Vec<Vec<u8>> = (0..=300).map(|len| random_bytes(&mut rng, len)).collect();
    let refs: Vec<&[u8]> = messages.iter().map(Vec::as_slice).collect();
    for backend in backends() {
        for (message, digest) in messages.iter().zip(digest_many_with(backend, &refs)) {
            assert_eq!(
                digest,
                reference(message),
                "{backend}: length {}",
                message.len()
            );
        }
        // The same messages as one batch of streams, fed in random pieces.
        check_streams_split(backend, &messages, &mut rng, 3);
    }
    for message in &messages {
        assert_eq!(
            md5(message),
            reference(message),
            "scalar md5, length {}",
            message.len()
        );
    }
}

#[test]
fn lengths_around_every_block_boundary_up_to_4_kib() {
    let mut rng = StdRng::seed_from_u64(2);
    let lengths: Vec<usize> = (1..=64)
        .flat_map(|blocks| blocks * 64 - 9..=blocks * 64 + 9)
        .collect();
    let messages: Vec<Vec<u8>> = lengths
        .iter()
        .map(|&len| random_bytes(&mut rng, len))
        .collect();
    let refs: Vec<&[u8]> = messages.iter().map(Vec::as_slice).collect();
    for backend in backends() {
        for (message, digest) in messages.iter().zip(digest_many_with(backend, &refs)) {
            assert_eq!(
                digest,
                reference(message),
                "{backend}: length {}",
                message.len()
            );
        }
        check_streams_split(backend, &messages, &mut rng, 2);
    }
}

#[test]
fn batches_of_very_different_lengths_refill_lanes() {
    let mut rng = StdRng::seed_from_u64(3);
    let max_long = if cfg!(debug_assertions) {
        300_000
    } else {
        3_000_000
    };
    for backend in backends() {
        for count in [1usize, 2, 3, 5, 15, 16, 17, 33, 70] {
            let messages: Vec<Vec<u8>> = (0..count)
                .map(|index| {
                    let len = match index % 4 {
                        0 => rng.random_range(0..64),
                        1 => rng.random_range(0..4096),
                        2 => rng.random_range(0..max_long / 10),
                        _ => rng.random_range(0..max_long),
                    };
                    random_bytes(&mut rng, len)
                })
                .collect();
            let refs: Vec<&[u8]> = messages.iter().map(Vec::as_slice).collect();
            for (message, digest) in messages.iter().zip(digest_many_with(backend, &refs)) {
                assert_eq!(
                    digest,
                    reference(message),
                    "{backend}: {count} streams, length {}",
                    message.len()
                );
            }
            check_streams_split(backend, &messages, &mut rng, 4);
        }
    }
}

#[test]
fn streaming_in_random_pieces_mixing_scalar_and_lanes() {
    let mut rng = StdRng::seed_from_u64(4);
    for backend in backends() {
        for _ in 0..20 {
            let len = rng.random_range(0..20_000);
            let message = random_bytes(&mut rng, len);
            let mut state = Md5State::new();
            let mut companion = Md5State::new();
            let mut offset = 0;
            while offset < message.len() {
                let piece = rng.random_range(0..=(message.len() - offset).min(700));
                let chunk = &message[offset..offset + piece];
                if rng.random_bool(0.5) {
                    state.update(chunk);
                } else {
                    // Lanes need a companion stream to engage; feed it the same bytes.
                    update_many_with(backend, &mut [&mut state, &mut companion], &[chunk, chunk]);
                    offset += piece;
                    continue;
                }
                companion.update(chunk);
                offset += piece;
            }
            assert_eq!(state.len(), message.len() as u64);
            assert_eq!(
                state.finalize(),
                reference(&message),
                "{backend}: length {len}"
            );
            assert_eq!(
                companion.finalize(),
                reference(&message),
                "{backend}: companion, length {len}"
            );
        }
    }
}

#[test]
fn large_random_lengths() {
    // Up to 64 MiB in release builds, 1 MiB in debug builds.
    let max = if cfg!(debug_assertions) {
        1 << 20
    } else {
        64 << 20
    };
    let mut rng = StdRng::seed_from_u64(5);
    let mut lengths = vec![max, max - 1, rng.random_range(max / 2..max)];
    lengths.push(rng.random_range(0..max));
    let messages: Vec<Vec<u8>> = lengths
        .iter()
        .map(|&len| random_bytes(&mut rng, len))
        .collect();
    let refs: Vec<&[u8]> = messages.iter().map(Vec::as_slice).collect();
    let expected: Vec<[u8; 16]> = messages.iter().map(|message| reference(message)).collect();
    for backend in backends() {
        assert_eq!(digest_many_with(backend, &refs), expected, "{backend}");
        // Streaming in 1 MiB + 3 byte pieces, all four streams together.
        let mut states = vec![Md5State::new(); messages.len()];
        let piece = (1 << 20) + 3;
        let mut offset = 0;
        while offset < max {
            let chunks: Vec<&[u8]> = messages
                .iter()
                .map(|message| {
                    &message[offset.min(message.len())..(offset + piece).min(message.len())]
                })
                .collect();
            let mut refs: Vec<&mut Md5State> = states.iter_mut().collect();
            update_many_with(backend, &mut refs, &chunks);
            offset += piece;
        }
        let digests: Vec<[u8; 16]> = states.into_iter().map(Md5State::finalize).collect();
        assert_eq!(digests, expected, "{backend} streaming");
    }
    assert_eq!(md5(&messages[0]), expected[0]);
}

#[test]
fn sixty_four_mib_of_zeros_is_keep_exercise_block() {
    if cfg!(debug_assertions) {
        return; // release only: 64 MiB in a debug build takes too long
    }
    let zeros = vec![0u8; 64 << 20];
    for backend in backends() {
        let digests = digest_many_with(backend, &[&zeros, &zeros[..1]]);
        assert_eq!(
            hex(&digests[0]),
            "7f614da9329cd3aebf59b91aadc30bf0",
            "{backend}"
        );
    }
}

#[test]
fn empty_and_degenerate_batches() {
    for backend in backends() {
        assert!(digest_many_with(backend, &[]).is_empty());
        update_many_with(backend, &mut [], &[]);
        assert!(finalize_many_with(backend, &[]).is_empty());
        let mut a = Md5State::new();
        let mut b = Md5State::new();
        update_many_with(backend, &mut [&mut a, &mut b], &[b"", b""]);
        assert_eq!(a.finalize(), reference(b""));
        assert_eq!(b.finalize(), reference(b""));
    }
}

#[test]
#[should_panic(expected = "one chunk per state")]
fn update_many_rejects_mismatched_lengths() {
    let mut state = Md5State::new();
    update_many(&mut [&mut state], &[b"a", b"b"]);
}

#[test]
fn backend_names_lanes_and_choice() {
    for backend in Backend::ALL {
        assert_eq!(backend.name().parse::<Backend>(), Ok(backend));
        assert_eq!(backend.to_string(), backend.name());
    }
    assert_eq!(Backend::Scalar.lanes(), 1);
    assert_eq!(Backend::Sse2.lanes(), 4);
    assert_eq!(Backend::Avx2.lanes(), 8);
    assert_eq!(Backend::Avx512.lanes(), 16);
    assert_eq!(choose_backend(None), Ok(detected_backend()));
    assert_eq!(choose_backend(Some("auto")), Ok(detected_backend()));
    assert_eq!(choose_backend(Some(" SCALAR ")), Ok(Backend::Scalar));
    assert!(matches!(
        choose_backend(Some("avx1024")),
        Err(BackendRequestError::Unknown(_))
    ));
    for backend in Backend::ALL {
        let choice = choose_backend(Some(backend.name()));
        if backend.is_available() {
            assert_eq!(choice, Ok(backend));
        } else {
            assert_eq!(choice, Err(BackendRequestError::Unavailable(backend)));
        }
    }
    assert!(available_backends().contains(&backend()));
    #[cfg(target_arch = "x86_64")]
    assert!(Backend::Sse2.is_available());
}

// ---------------------------------------------------------------------------------------
// Rendezvous (keep-protocol §10.2).

/// The scalar rule: md5(hash + suffix) with md-5, sorted descending, ties by input order.
fn reference_probe_order(hash: &str, uuids: &[&str]) -> Vec<usize> {
    let weights: Vec<[u8; 16]> = uuids
        .iter()
        .map(|uuid| reference(format!("{hash}{}", rendezvous_suffix(uuid)).as_bytes()))
        .collect();
    let mut order: Vec<usize> = (0..uuids.len()).collect();
    order.sort_by(|&x, &y| weights[y].cmp(&weights[x]));
    order
}

fn probe_order(backend: Backend, hash: &str, uuids: &[&str]) -> Vec<usize> {
    let suffixes: Vec<&str> = uuids.iter().map(|uuid| rendezvous_suffix(uuid)).collect();
    let mut orders = probe_order_batch_with(backend, &[hash], &suffixes);
    assert_eq!(orders.len(), 1);
    let order = orders.remove(0);
    assert_eq!(
        order,
        reference_probe_order(hash, uuids),
        "{backend}: lanes differ from the scalar rule"
    );
    order
}

fn uuids(prefix: &str, count: usize, format: fn(usize) -> String) -> Vec<String> {
    (0..count)
        .map(|index| format!("{prefix}{}", format(index)))
        .collect()
}

fn as_strs(strings: &[String]) -> Vec<&str> {
    strings.iter().map(String::as_str).collect()
}

#[test]
fn rendezvous_vectors_r1_to_r7_and_r10() {
    let dec15 = |index: usize| format!("{index:015}");
    for backend in backends() {
        // R1 (weights checked too).
        let r1 = uuids("zzzzz-bi6l4-", 3, dec15);
        let r1 = as_strs(&r1);
        assert_eq!(
            probe_order(backend, "acbd18db4cc2f85cedef654fccc4a4d8", &r1),
            [0, 2, 1],
            "{backend} R1"
        );
        let suffixes: Vec<&str> = r1.iter().map(|uuid| rendezvous_suffix(uuid)).collect();
        let weights =
            rendezvous_weights_with(backend, "acbd18db4cc2f85cedef654fccc4a4d8", &suffixes);
        let prefixes: Vec<String> = weights
            .iter()
            .map(|weight| hex(weight)[..8].to_owned())
            .collect();
        assert_eq!(
            prefixes,
            ["7dbe5843", "28a8a441", "3a0bc450"],
            "{backend} R1 weights"
        );
        // R2.
        let r2 = ["zzzzz-bi6l4-123456789012340", "zzzzz-bi6l4-123456789012341"];
        assert_eq!(
            probe_order(backend, "37b51d194a7513e45b56f6524f2d51f2", &r2),
            [0, 1],
            "{backend} R2"
        );
        let weights = rendezvous_weights_with(
            backend,
            "37b51d194a7513e45b56f6524f2d51f2",
            &[rendezvous_suffix(r2[0]), rendezvous_suffix(r2[1])],
        );
        assert_eq!(hex(&weights[0])[..8], *"e03b8903", "{backend} R2 weight");
        assert_eq!(hex(&weights[1])[..8], *"00f1f654", "{backend} R2 weight");
        // R3.
        let r3 = uuids("xyzzy-bi6l4-", 5, dec15);
        assert_eq!(
            probe_order(backend, "d41d8cd98f00b204e9800998ecf8427e", &as_strs(&r3)),
            [1, 0, 3, 4, 2]
        );
        // R4.
        let r4 = uuids("zzzzz-bi6l4-", 8, dec15);
        assert_eq!(
            probe_order(backend, "9b662d28aa25e7709afc7194a719996a", &as_strs(&r4)),
            [0, 1, 3, 2, 7, 6, 5, 4],
            "{backend} R4"
        );
        // R5.
        let r5 = uuids("abcde-bi6l4-keepstore00000", 4, |index| {
            format!("{}", index + 1)
        });
        assert_eq!(
            probe_order(backend, "d41d8cd98f00b204e9800998ecf8427e", &as_strs(&r5)),
            [0, 1, 2, 3]
        );
        // R6.
        let r6 = uuids("zzzzz-bi6l4-", 4, dec15);
        assert_eq!(
            probe_order(backend, "7f614da9329cd3aebf59b91aadc30bf0", &as_strs(&r6)),
            [0, 1, 3, 2]
        );
        // R7: 16 services zzzzz-bi6l4-%015x; hash = md5("%064x" of i); order as uuid hex digits.
        let r7 = uuids("zzzzz-bi6l4-", 16, |index| format!("{index:015x}"));
        let r7 = as_strs(&r7);
        let expected = [
            ("10eab6008d5642cf42abd2aa41f847cb", "3eab2d5fc9681074"),
            ("9a25b027482b37e047104e2e532cabae", "097dba52e648f1c3"),
            ("ece15765f11abfb7d3c71995a3d63bfe", "c5b4e023f8a7d691"),
            ("0c1728e2354416472350c906ca8b5718", "9d81c02e76a3bf54"),
        ];
        let hashes: Vec<String> = (0..4)
            .map(|i: usize| hex(&md5(format!("{i:064x}").as_bytes())))
            .collect();
        let suffixes: Vec<&str> = r7.iter().map(|uuid| rendezvous_suffix(uuid)).collect();
        let batch = probe_order_batch_with(backend, &as_strs(&hashes), &suffixes);
        for ((hash, order), (expected_hash, expected_order)) in
            hashes.iter().zip(&batch).zip(expected)
        {
            assert_eq!(hash, expected_hash);
            let digits: String = order.iter().map(|&index| format!("{index:x}")).collect();
            assert_eq!(digits, expected_order, "{backend} R7 {hash}");
            assert_eq!(*order, reference_probe_order(hash, &r7));
        }
        // R10: write order over writable services only (R1 with …001 read-only).
        let writable: Vec<&str> = r1
            .iter()
            .copied()
            .filter(|uuid| !uuid.ends_with("001"))
            .collect();
        let order = probe_order(backend, "acbd18db4cc2f85cedef654fccc4a4d8", &writable);
        let by_uuid: Vec<&str> = order.iter().map(|&index| &writable[index][26..]).collect();
        assert_eq!(by_uuid, ["0", "2"], "{backend} R10");
    }
}

#[test]
fn rendezvous_long_uuids_ties_and_big_batches_match_scalar_rule() {
    let mut rng = StdRng::seed_from_u64(6);
    // R8 (Go rule: uuids not 27 chars long are used whole) and R9 (ties keep input order).
    let r8 = [
        "zzzzz-bi6l4-0123456789abcdef",
        "zzzzz-bi6l4-fedcba9876543210",
        "zzzzz-bi6l4-00000000000000001",
    ];
    let r9 = [
        "aaaaa-bi6l4-000000000000001",
        "bbbbb-bi6l4-000000000000001",
        "aaaaa-bi6l4-000000000000002",
    ];
    let long: Vec<String> = (0..20)
        .map(|index| format!("{index}-{}", "x".repeat(index * 7)))
        .collect();
    let hashes: Vec<String> = (0..100).map(|index| hex(&md5(&[index as u8]))).collect();
    for backend in backends() {
        assert_eq!(
            probe_order(backend, "acbd18db4cc2f85cedef654fccc4a4d8", &r8),
            [2, 1, 0],
            "{backend} R8 Go"
        );
        let order = probe_order(backend, "acbd18db4cc2f85cedef654fccc4a4d8", &r9);
        assert_eq!(order[0], 2, "{backend} R9");
        assert_eq!(&order[1..], [0, 1], "{backend} R9 ties in input order");
        probe_order(backend, &hashes[0], &as_strs(&long));
        for services in [0usize, 1, 3, 8, 16, 17, 64] {
            let service_uuids: Vec<String> = (0..services)
                .map(|_| format!("zzzzz-bi6l4-{:015x}", rng.random::<u64>() >> 4))
                .collect();
            let service_uuids = as_strs(&service_uuids);
            let suffixes: Vec<&str> = service_uuids
                .iter()
                .map(|uuid| rendezvous_suffix(uuid))
                .collect();
            let batch = probe_order_batch_with(backend, &as_strs(&hashes), &suffixes);
            assert_eq!(batch.len(), hashes.len());
            for (hash, order) in hashes.iter().zip(&batch) {
                assert_eq!(
                    *order,
                    reference_probe_order(hash, &service_uuids),
                    "{backend} S={services}"
                );
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Properties.

proptest! {
    #![proptest_config(ProptestConfig { cases: if cfg!(debug_assertions) { 64 } else { 256 }, ..ProptestConfig::default() })]

    /// Any batch of messages: one-shot lanes == md-5 on every backend.
    #[test]
    fn prop_digest_many_matches_md5(messages in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..700), 0..40)) {
        let refs: Vec<&[u8]> = messages.iter().map(Vec::as_slice).collect();
        let expected: Vec<[u8; 16]> = messages.iter().map(|message| reference(message)).collect();
        for backend in backends() {
            prop_assert_eq!(&digest_many_with(backend, &refs), &expected, "{}", backend);
        }
    }

    /// Any batch of messages, each cut at arbitrary points and fed with update_many in
    /// rounds (streams of a round get their next piece, possibly empty).
    #[test]
    fn prop_streaming_splits_match_md5(
        messages in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..3000), 1..24),
        cuts in prop::collection::vec(prop::collection::vec(0usize..3000, 0..6), 24),
    ) {
        for backend in backends() {
            let mut states = vec![Md5State::new(); messages.len()];
            let mut pieces: Vec<Vec<&[u8]>> = Vec::new();
            for (message, message_cuts) in messages.iter().zip(&cuts) {
                let mut points: Vec<usize> = message_cuts.iter().map(|&cut| cut.min(message.len())).collect();
                points.sort_unstable();
                let mut start = 0;
                let mut list = Vec::new();
                for point in points.into_iter().chain([message.len()]) {
                    list.push(&message[start..point]);
                    start = point;
                }
                pieces.push(list);
            }
            let rounds = pieces.iter().map(Vec::len).max().unwrap_or(0);
            for round in 0..rounds {
                let chunks: Vec<&[u8]> = pieces.iter().map(|list| list.get(round).copied().unwrap_or(&[])).collect();
                let mut refs: Vec<&mut Md5State> = states.iter_mut().collect();
                update_many_with(backend, &mut refs, &chunks);
            }
            for (message, state) in messages.iter().zip(states) {
                prop_assert_eq!(state.len(), message.len() as u64);
                prop_assert_eq!(state.finalize(), reference(message), "{}", backend);
            }
        }
    }

    /// Scalar streaming in arbitrary pieces == md-5.
    #[test]
    fn prop_scalar_update_pieces(message in prop::collection::vec(any::<u8>(), 0..2000), cut_a in 0usize..2000, cut_b in 0usize..2000) {
        let (first, second) = (cut_a.min(cut_b).min(message.len()), cut_a.max(cut_b).min(message.len()));
        let mut state = Md5State::new();
        state.update(&message[..first]);
        state.update(&message[first..second]);
        state.update(&message[second..]);
        prop_assert_eq!(state.finalize(), reference(&message));
    }
}
