//! Sizes and rates (`-bwlimit`, `ctl bwlimit`, size flags): `parse_byte_size`, `parse_rate`
//! and `parse_bwlimit` never panic; a plain number parses as itself, a unit multiplies by its
//! power of 1024, and `UP:DOWN` gives the two rates swapped into (down, up).
#![no_main]
use keepmover::units::{parse_bwlimit, parse_byte_size, parse_rate};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Some(n) = parse_byte_size(text) {
        assert_eq!(parse_byte_size(&n.to_string()), Some(n));
        for (unit, shift) in [("K", 10), ("MiB", 20), ("g", 30), ("TB", 40)] {
            let scaled = parse_byte_size(&format!("{n}{unit}"));
            assert_eq!(scaled, n.checked_mul(1 << shift), "{n}{unit}");
        }
    }
    if let Some(rate) = parse_rate(text) {
        assert_eq!(parse_rate(&format!("{rate}/s")), Some(rate));
    }
    if let Some((down, up)) = parse_bwlimit(text) {
        assert_eq!(parse_bwlimit(&format!("{up}:{down}")), Some((down, up)));
        if let Some((a, b)) = text.split_once(':') {
            assert_eq!(parse_rate(a), Some(up));
            assert_eq!(parse_rate(b), Some(down));
        }
    }
});
