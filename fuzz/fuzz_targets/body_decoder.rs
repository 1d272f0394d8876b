//! The response decoder over an in-memory stream: a response head (1xx skipping and limits
//! through `head_step`), then its body through `BodyDecoder` (Content-Length, chunked with
//! trailers, until EOF), with the bytes delivered in pieces split at fuzzer-chosen points.
//! Checks: no panic; the decoded body and the verdict do not depend on the splits; body
//! length never exceeds a declared Content-Length or the body limit (+1 byte); consumed
//! bytes never exceed what was fed; trailers stay within their budget.
#![no_main]
use keepmover::net::{
    head_step, BodyDecoder, FramingError, FramingLimits, HeadStep, Method,
};
use libfuzzer_sys::fuzz_target;

const MAX_HEAD: usize = 4096;

/// Runs head + body over `wire` fed in pieces cut at `cuts` (sorted, deduplicated).
fn run(wire: &[u8], cuts: &[usize], limit: Option<u64>) -> Option<Result<(Vec<u8>, usize), FramingError>> {
    let mut pending: Vec<u8> = Vec::new();
    let mut fed = 0;
    let mut pieces = cuts.iter().copied().chain(std::iter::once(wire.len()));
    let mut next_piece = |pending: &mut Vec<u8>, fed: &mut usize| -> bool {
        match pieces.next() {
            Some(cut) => {
                let cut = cut.clamp(*fed, wire.len());
                pending.extend_from_slice(&wire[*fed..cut]);
                *fed = cut;
                true
            }
            None => false,
        }
    };
    // Head: skip interim heads, stop on error or a final head.
    let head = loop {
        match head_step(&pending, MAX_HEAD) {
            Ok(HeadStep::Final(head)) => {
                assert!(head.head_len <= pending.len());
                pending.drain(..head.head_len);
                break head;
            }
            Ok(HeadStep::Interim(len)) => {
                assert!(len > 0 && len <= pending.len());
                pending.drain(..len);
            }
            Ok(HeadStep::Partial) => {
                if !next_piece(&mut pending, &mut fed) {
                    return None;
                }
            }
            Err(_) => return None,
        }
    };
    let framing = head.framing(&Method::Get).ok()?;
    let limits = FramingLimits { max_body: limit, ..FramingLimits::default() };
    let mut decoder = BodyDecoder::new(framing, limits);
    let declared = match framing {
        keepmover::net::BodyFraming::Length(n) => Some(n),
        _ => None,
    };
    let mut body = Vec::new();
    let mut consumed_total = 0usize;
    loop {
        let step = match decoder.feed(&pending, &mut body) {
            Ok(step) => step,
            Err(e) => return Some(Err(e)),
        };
        assert!(step.consumed <= pending.len());
        pending.drain(..step.consumed);
        consumed_total += step.consumed;
        if let Some(n) = declared {
            assert!(body.len() as u64 <= n);
        }
        if let Some(l) = limit {
            assert!(body.len() as u64 <= l + 1);
        }
        let trailer_bytes: usize = decoder.trailers().iter().map(|(n, v)| n.len() + v.len()).sum();
        assert!(trailer_bytes <= FramingLimits::default().max_trailer_bytes);
        assert!(decoder.trailers().len() <= FramingLimits::default().max_trailers);
        if step.done {
            return Some(Ok((body, consumed_total)));
        }
        if !next_piece(&mut pending, &mut fed) {
            return Some(decoder.eof().map(|()| (body, consumed_total)));
        }
    }
}

fuzz_target!(|data: &[u8]| {
    // First bytes: limit choice and up to 4 cut points; the rest is the wire.
    if data.len() < 6 {
        return;
    }
    let limit = match data[0] % 3 {
        0 => None,
        1 => Some(u64::from(data[1])),
        _ => Some(u64::from(data[1]) * 64),
    };
    let wire = &data[6..];
    let mut cuts: Vec<usize> = data[2..6]
        .iter()
        .map(|&b| if wire.is_empty() { 0 } else { usize::from(b) * wire.len() / 255 })
        .collect();
    cuts.sort_unstable();
    let whole = run(wire, &[], limit);
    let split = run(wire, &cuts, limit);
    let bytewise: Vec<usize> = (1..wire.len().min(300)).collect();
    let tiny = run(wire, &bytewise, limit);
    match (&whole, &split, &tiny) {
        (Some(Ok(a)), Some(Ok(b)), Some(Ok(c))) => {
            assert_eq!(a, b);
            if wire.len() < 300 {
                assert_eq!(a, c);
            }
        }
        (Some(Err(_)), Some(Err(_)), _) | (None, None, _) => {}
        // The verdict must not depend on how the bytes were cut.
        _ => panic!("verdicts differ: whole {whole:?} split {split:?}"),
    }
});
