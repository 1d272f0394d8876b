//! Response heads and chunk-size lines from the network: the head parser, the body-framing
//! decision and the chunk-size parser never panic on arbitrary bytes, and a complete head
//! never claims more bytes than it was given.
#![no_main]
use keepmover::net::{parse_chunk_size, parse_response_head, Method, ParseOutcome};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(ParseOutcome::Complete(head)) = parse_response_head(data) {
        assert!(head.head_len <= data.len());
        let _ = head.framing(&Method::Get);
        let _ = head.framing(&Method::Head);
        let _ = head.keep_alive();
    }
    for line in data.split(|&b| b == b'\n') {
        let _ = parse_chunk_size(line.strip_suffix(b"\r").unwrap_or(line));
    }
});
