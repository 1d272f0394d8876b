//! Locator parsing never panics; a strictly parsed locator formats back to a string that
//! parses to the same value (sizes come back canonical); keepstore's lenient parser accepts whatever the strict one does.
#![no_main]
use keepmover::keep::locator::{parse_keepstore, Locator};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(locator) = Locator::parse(text) {
        let formatted = locator.to_string();
        assert_eq!(Locator::parse(&formatted).as_ref(), Ok(&locator));
        // Not `formatted == text`: a size such as `+07` is accepted (Go's Atoi does) and
        // formats canonically as `+7` (found by this target).
        let lenient = parse_keepstore(text).expect("strict implies lenient");
        assert_eq!(lenient.hash, locator.hash);
    }
    let _ = parse_keepstore(text);
});
