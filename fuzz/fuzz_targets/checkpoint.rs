//! The checkpoint file is read back on resume: its parser never panics, and what it accepts
//! has a watermark inside the walked prefix.
#![no_main]
use keepmover::mover::checkpoint::parse;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(state) = parse(text) {
        if let Some(done) = &state.done_through {
            // The walked prefix is the job's (checkpoint v2 keeps it in `job.prefix`).
            assert!(done.starts_with(&state.job.prefix));
            assert_eq!(done.len(), state.job.prefix.len() + state.extra_digits);
        }
    }
});
