//! Signature verification never panics on arbitrary locators, tokens and keys, and a locator
//! signed with a key and token always verifies with them.
#![no_main]
use keepmover::keep::signature::{find_signature, sign_locator, verify_locator};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: (&str, &str, &[u8], u32, u32)| {
    let (locator, token, key, expiry, ttl) = input;
    let _ = find_signature(locator);
    let _ = verify_locator(locator, token, key, u64::from(ttl), u64::from(expiry));
    let hash = "acbd18db4cc2f85cedef654fccc4a4d8+3";
    if !token.is_empty() && !key.is_empty() && expiry > 0 {
        let signed = sign_locator(hash, token, key, u64::from(expiry), u64::from(ttl));
        assert_eq!(verify_locator(&signed, token, key, u64::from(ttl), u64::from(expiry)), Ok(()));
    }
});
