//! `-shard I/N` and `-shard auto/N` (the index from a scheduler's environment; a summary's
//! `shard` field): `Shard::parse` never panics; an accepted shard formats and parses back to
//! itself, its range is non-empty and inside the prefix space, and its walk prefixes are
//! inside that range.
#![no_main]
use keepmover::index::shard::{walk_prefixes, Shard};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // `text` is SPEC, or SPEC NUL ENV-VALUE for auto/N.
    let (spec, env_value) = match text.split_once('\0') {
        Some((spec, value)) => (spec, Some(value.to_string())),
        None => (text, None),
    };
    let env = |_: &str| env_value.clone();
    let Ok(shard) = Shard::parse(spec, &env) else {
        return;
    };
    assert!(shard.index < shard.count);
    assert_eq!(Shard::parse(&shard.to_string(), &|_| None), Ok(shard));
    let space = 16u64.pow(shard.digits() as u32);
    let (start, end) = shard.range();
    assert!(
        start < end && end <= space,
        "{shard}: {start}..{end} of {space}"
    );
    if shard.count >= 16 {
        let prefixes = walk_prefixes("a", 0, Some(shard));
        assert_eq!(prefixes.len() as u64, end - start);
        for p in &prefixes {
            assert!(p.starts_with('a') && p.len() == 1 + shard.digits());
            let n = u64::from_str_radix(&p[1..], 16).expect("hex prefix");
            assert!((start..end).contains(&n));
        }
    }
});
