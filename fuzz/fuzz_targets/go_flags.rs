//! The Go-compatible flag parser: arbitrary argument lists (NUL-separated in the input)
//! against a table with every kind never panic; accepted values are valid for their kind and
//! positional arguments are a suffix of the input.
#![no_main]
use keepmover::gocompat::duration::parse_go_duration;
use keepmover::gocompat::flag::{flag, parse, parse_go_bool, parse_go_int, FlagKind, FlagSpec};
use libfuzzer_sys::fuzz_target;

const SPECS: &[FlagSpec] = &[
    flag("verbose", FlagKind::Bool, "false", "bool"),
    flag("n", FlagKind::Int, "0", "int"),
    flag("name", FlagKind::String, "", "string"),
    flag("timeout", FlagKind::Duration, "1s", "duration"),
];

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let args: Vec<String> = text.split('\0').map(str::to_string).collect();
    // The parser checks durations itself now; `valid` is the independent check below.
    let valid = |d: &str| parse_go_duration(d).is_ok();
    if let Ok(parsed) = parse(SPECS, &args) {
        assert!(parsed.positional.len() <= args.len());
        assert_eq!(parsed.positional[..], args[args.len() - parsed.positional.len()..]);
        if let Some(v) = parsed.get("verbose") {
            assert!(parse_go_bool(v).is_some(), "{v:?}");
        }
        if let Some(v) = parsed.get("n") {
            assert!(parse_go_int(v).is_some(), "{v:?}");
        }
        if let Some(v) = parsed.get("timeout") {
            assert!(valid(v), "{v:?}");
        }
    }
});
