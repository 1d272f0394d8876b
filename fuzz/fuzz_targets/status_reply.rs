//! `keepmover status` / `ctl` reading a job's answer: `parse_reply` (the HTTP/1.0 reply as
//! received), `parse_status` (the `/status` document) and `render_human`, and `control_done`
//! (the `/control` answer) never panic on any bytes.
#![no_main]
use keepmover::commands::status::{control_done, parse_reply, parse_status};
use keepmover::report::status::render_human;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The whole reply, and the same bytes as a body alone (both reach the parsers).
    if let Ok(body) = parse_reply("127.0.0.1:9100", data) {
        if let Ok(doc) = parse_status("127.0.0.1:9100", &body) {
            let _ = render_human(&doc);
        }
        let _ = control_done(body);
    }
    let text = String::from_utf8_lossy(data);
    if let Ok(doc) = parse_status("127.0.0.1:9100", &text) {
        let _ = render_human(&doc);
    }
});
