//! The API server's discovery document and cluster config: `DiscoveryDoc::from_json` and
//! `default_storage_classes` never panic; the classes come back sorted.
#![no_main]
use keepmover::keep::discovery::{default_storage_classes, DiscoveryDoc};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let _ = DiscoveryDoc::from_json(text);
    let classes = default_storage_classes(text);
    assert!(classes.windows(2).all(|w| w[0] <= w[1]));
});
