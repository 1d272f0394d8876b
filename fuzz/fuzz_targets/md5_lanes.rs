//! Fuzz target `md5_lanes`: random mixes of streams, lengths and split points through the
//! multi-lane MD5 engine, on a fuzzer-chosen backend, compared with the md-5 crate.
//!
//! Input layout: byte 0 picks the backend (among those the CPU has), byte 1 the number of
//! streams (1..=40), byte 2 the number of rounds (1..=6); then two bytes per stream and
//! round give the piece each stream gets in that round (the top bit of the first byte
//! multiplies the piece by 61 so some streams run long and lanes must be refilled); the
//! remaining bytes are the payload that pieces are cut from (repeated, and perturbed per
//! stream so streams differ). Every stream is checked through `update_many_with` +
//! `finalize`, `finalize_many_with`, `digest_many_with` and the scalar `Md5State::update`.
#![no_main]

use keepmover::hash::{
    available_backends, digest_many_with, finalize_many_with, update_many_with, Md5State,
};
use libfuzzer_sys::fuzz_target;
use md5::Digest as _;

fuzz_target!(|data: &[u8]| {
    let [backend_byte, streams_byte, rounds_byte, rest @ ..] = data else {
        return;
    };
    let backends = available_backends();
    let backend = backends[usize::from(*backend_byte) % backends.len()];
    let streams = 1 + usize::from(*streams_byte) % 40;
    let rounds = 1 + usize::from(*rounds_byte) % 6;
    let control_len = (streams * rounds * 2).min(rest.len());
    let (control, payload) = rest.split_at(control_len);
    let payload: &[u8] = if payload.is_empty() { &[0x5a] } else { payload };

    let piece_len = |stream: usize, round: usize| -> usize {
        let at = (round * streams + stream) * 2;
        let high = control.get(at).copied().unwrap_or(0);
        let low = control.get(at + 1).copied().unwrap_or(0);
        let len = usize::from(high & 0x7f) << 8 | usize::from(low);
        if high & 0x80 != 0 {
            len * 61
        } else {
            len
        }
    };

    // Build each stream's pieces from the payload.
    let mut messages: Vec<Vec<u8>> = vec![Vec::new(); streams];
    let mut pieces: Vec<Vec<std::ops::Range<usize>>> = vec![Vec::new(); streams];
    for round in 0..rounds {
        for (stream, message) in messages.iter_mut().enumerate() {
            let start = message.len();
            let len = piece_len(stream, round);
            message.extend((start..start + len).map(|i| payload[i % payload.len()] ^ stream as u8));
            pieces[stream].push(start..start + len);
        }
    }

    let mut lane_states = vec![Md5State::new(); streams];
    let mut scalar_states = vec![Md5State::new(); streams];
    for round in 0..rounds {
        let chunks: Vec<&[u8]> = (0..streams)
            .map(|s| &messages[s][pieces[s][round].clone()])
            .collect();
        let mut refs: Vec<&mut Md5State> = lane_states.iter_mut().collect();
        update_many_with(backend, &mut refs, &chunks);
        for (state, chunk) in scalar_states.iter_mut().zip(&chunks) {
            state.update(chunk);
        }
    }

    let expected: Vec<[u8; 16]> = messages
        .iter()
        .map(|m| md5::Md5::digest(m).into())
        .collect();
    let finals: Vec<&Md5State> = lane_states.iter().collect();
    assert_eq!(
        finalize_many_with(backend, &finals),
        expected,
        "{backend}: finalize_many"
    );
    let whole: Vec<&[u8]> = messages.iter().map(Vec::as_slice).collect();
    assert_eq!(
        digest_many_with(backend, &whole),
        expected,
        "{backend}: digest_many"
    );
    for (stream, (lane, scalar)) in lane_states.into_iter().zip(scalar_states).enumerate() {
        assert_eq!(lane.len(), messages[stream].len() as u64);
        assert_eq!(
            lane.finalize(),
            expected[stream],
            "{backend}: stream {stream} update_many"
        );
        assert_eq!(
            scalar.finalize(),
            expected[stream],
            "scalar update, stream {stream}"
        );
    }
});
