//! keepstore reply headers: `X-Keep-Replicas-Stored` and
//! `X-Keep-Storage-Classes-Confirmed` parsers never panic on arbitrary text; a confirmed
//! list never holds an empty class name or a zero count.
#![no_main]
use keepmover::keep::wire::{classes_confirmed, replicas_stored};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let _ = replicas_stored(Some(text));
    if let Some(classes) = classes_confirmed(Some(text)) {
        for (name, count) in classes {
            assert!(!name.is_empty() && name.trim() == name, "{name:?}");
            assert!(count > 0);
        }
    }
});
