//! Settings-file parsing never panics, and an error never echoes the file's content (a line
//! may hold a token).
#![no_main]
use keepmover::keep::settings::parse_settings;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    match parse_settings(text) {
        Ok(settings) => {
            let _ = format!("{settings:?}");
        }
        Err(e) => {
            let message = e.to_string();
            assert!(message.starts_with("line "), "{message}");
        }
    }
});
