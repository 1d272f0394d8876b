//! Go duration parsing never panics, and what it accepts formats and parses back unchanged.
#![no_main]
use keepmover::gocompat::duration::{format_go_duration, parse_go_duration};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(d) = parse_go_duration(text) {
        assert_eq!(parse_go_duration(&format_go_duration(d)), Ok(d));
    }
});
