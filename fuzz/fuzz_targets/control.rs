//! The -listen `/control` request body: `apply_control` never panics on any body, and
//! whatever it accepts leaves the live limits in range (concurrency never above the
//! configured `-concurrency`).
#![no_main]
use std::sync::Arc;

use keepmover::commands::listen::apply_control;
use keepmover::mover::{Control, Counters};
use keepmover::report::status::{JobInfo, Live};
use libfuzzer_sys::fuzz_target;

const CONFIGURED: usize = 32;

fuzz_target!(|data: &[u8]| {
    let live = Live::new(
        JobInfo {
            command: "copy".into(),
            concurrency: CONFIGURED,
            workers: 1,
            ..JobInfo::default()
        },
        Arc::new(Counters::default()),
        Arc::new(Control::new()),
    );
    // Several requests in one input, separated by NUL, applied in order.
    for body in data.split(|&b| b == 0).take(8) {
        let _ = apply_control(&live, body);
        let now = live.control.concurrency(CONFIGURED);
        assert!((1..=CONFIGURED).contains(&now), "concurrency {now}");
        let _ = live.limits();
        let _ = live.status();
    }
});
