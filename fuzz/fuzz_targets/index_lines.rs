//! The incremental index parser gives the same entries and the same verdict however the
//! body is split into chunks, and never panics.
#![no_main]
use keepmover::keep::index_format::{parse_index_line, IndexBodyParser};
use libfuzzer_sys::fuzz_target;

fn run(chunks: &[&[u8]]) -> (Vec<(String, u64, i64)>, Result<(), String>) {
    let mut parser = IndexBodyParser::new(None);
    let mut entries = Vec::new();
    for chunk in chunks {
        if let Err(e) = parser.feed(chunk, |e| entries.push((e.hash.to_string(), e.size, e.mtime_ns))) {
            return (entries, Err(e.to_string()));
        }
    }
    let verdict = parser.finish().map(|_| ()).map_err(|e| e.to_string());
    (entries, verdict)
}

fuzz_target!(|input: (u16, &[u8])| {
    let (split, body) = input;
    let _ = parse_index_line(body);
    let split = usize::from(split) % (body.len() + 1);
    let (whole_entries, whole) = run(&[body]);
    let (split_entries, parts) = run(&[&body[..split], &body[split..]]);
    assert_eq!(whole.is_ok(), parts.is_ok());
    if whole.is_ok() {
        assert_eq!(whole_entries, split_entries);
    }
});
