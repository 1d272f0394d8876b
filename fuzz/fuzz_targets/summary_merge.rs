//! `report merge`: shard `-json` summaries (NUL-separated documents here) parse without
//! panics; whatever `merge` accepts renders and serialises without panics, and its shard
//! bookkeeping is consistent (seen and missing split 0..count, a failed shard was seen).
#![no_main]
use keepmover::report::merge::{merge, parse};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut summaries = Vec::new();
    for (i, doc) in text.split('\0').enumerate().take(16) {
        let path = std::path::PathBuf::from(format!("shard-{i}.json"));
        if let Ok(summary) = parse(&path, doc) {
            assert!(summary.shard.index < summary.shard.count);
            assert!(summary.elapsed_s.is_finite() && summary.elapsed_s >= 0.0);
            summaries.push(summary);
        }
    }
    let Ok(merged) = merge(&summaries, None) else {
        return;
    };
    let count = merged.shards.count;
    assert!(merged.shards.seen.len() + merged.shards.missing.len() == count as usize);
    for i in &merged.shards.seen {
        assert!(*i < count && !merged.shards.missing.contains(i));
    }
    for f in &merged.shards.failed {
        assert!(merged.shards.seen.contains(&f.index));
    }
    assert!(merged.throughput_mb_s.is_finite() && merged.throughput_mb_s >= 0.0);
    let _ = merged.render();
    let _ = merged
        .to_json(if merged.complete() { 0 } else { 1 })
        .to_string();
});
