//! Response heads and chunked bodies from the network: the head parser never panics, and
//! the chunked decoder yields the same bytes and verdict however the input is split.
#![no_main]
use keepmover::net::head::{body_kind, keeps_alive, parse_response_head, ChunkState, ChunkStep, HeadParse};
use libfuzzer_sys::fuzz_target;

fn decode(pieces: &[&[u8]]) -> Result<Vec<u8>, String> {
    let mut state = ChunkState::Size;
    let mut pending: Vec<u8> = Vec::new();
    let mut out = Vec::new();
    let mut feed = pieces.iter();
    loop {
        match state.step(&pending, 4096)? {
            ChunkStep::NeedMore => match feed.next() {
                Some(more) => pending.extend_from_slice(more),
                None => return Err("truncated".into()),
            },
            ChunkStep::Data { consumed, start, len } => {
                out.extend_from_slice(&pending[start..start + len]);
                pending.drain(..consumed);
            }
            ChunkStep::Advanced { consumed } => {
                pending.drain(..consumed);
            }
            ChunkStep::Done { .. } => return Ok(out),
        }
    }
}

fuzz_target!(|input: (u16, &[u8])| {
    let (split, data) = input;
    if let Ok(HeadParse::Complete(head)) = parse_response_head(data) {
        assert!(head.length <= data.len());
        let _ = body_kind(&head, false);
        let _ = keeps_alive(&head);
    }
    let split = usize::from(split) % (data.len() + 1);
    let whole = decode(&[data]);
    let parts = decode(&[&data[..split], &data[split..]]);
    assert_eq!(whole.is_ok(), parts.is_ok());
    if let (Ok(a), Ok(b)) = (&whole, &parts) {
        assert_eq!(a, b);
    }
});
