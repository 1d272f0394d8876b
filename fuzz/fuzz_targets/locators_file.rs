//! `-locators FILE` lists: `parse_line` never panics and an accepted line formats
//! (`hash` or `hash+size`) and parses back to the same entry; `LocatorList::load` of a whole
//! list (in memory) never panics, and its cursor yields the accepted entries sorted, without
//! duplicates, prefix by prefix.
#![no_main]
use keepmover::index::locators::{parse_line, LocatorList};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut accepted = Vec::new();
    if let Ok(text) = std::str::from_utf8(data) {
        for line in text.lines() {
            if let Some(w) = parse_line(line) {
                let formatted = w.to_string();
                assert_eq!(parse_line(&formatted), Some(w), "{line:?} -> {formatted:?}");
                accepted.push(w);
            }
        }
    }
    // A run bound larger than any input: the list stays in memory (no spill files).
    let Ok(list) = LocatorList::load(data, usize::MAX, std::path::Path::new("/nonexistent")) else {
        return;
    };
    // Every non-blank, non-comment line parsed, so each accepted line is in the list.
    assert_eq!(list.entries as usize, accepted.len());
    accepted.sort_unstable();
    accepted.dedup();
    let Ok(mut cursor) = list.cursor() else {
        return;
    };
    // Read as the walk reads it, prefix by prefix in increasing order.
    let mut read = Vec::new();
    for digit in "0123456789abcdef".chars() {
        let Ok(under) = cursor.take_prefix(&digit.to_string()) else {
            return;
        };
        read.extend(under);
    }
    assert_eq!(read, accepted);
});
