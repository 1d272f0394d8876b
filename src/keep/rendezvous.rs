//! Rendezvous hashing (`keep-protocol.md` §4): which servers to probe, in which order.
//!
//! Weight of a service for a block = MD5 of the ASCII `hash32 + suffix`. The Go client
//! (keep-rsync, keep-balance) uses the last 15 characters of the uuid as the suffix only when
//! the uuid is exactly 27 characters, and the whole uuid otherwise; the Python SDK always uses
//! the last 15. Both agree for normal 27-character uuids; for other lengths (vector R8) they
//! disagree, and keepmover follows Go. Ties (two uuids with the same suffix) have no defined
//! order in Go; here they keep input order, as in Python.

use md5::{Digest, Md5};

/// The Go suffix rule: last 15 characters if the uuid is exactly 27 long, else the whole uuid.
pub fn go_suffix(uuid: &str) -> &str {
    if uuid.len() == 27 && uuid.is_char_boundary(12) {
        &uuid[12..]
    } else {
        uuid
    }
}

/// The Python suffix rule: the last 15 characters, whatever the length.
pub fn python_suffix(uuid: &str) -> &str {
    let mut start = uuid.len().saturating_sub(15);
    while !uuid.is_char_boundary(start) {
        start += 1;
    }
    &uuid[start..]
}

/// MD5 of `hash32 + suffix`; comparing these bytes equals comparing their lowercase hex.
pub fn weight(hash32: &str, suffix: &str) -> [u8; 16] {
    let mut md5 = Md5::new();
    md5.update(hash32.as_bytes());
    md5.update(suffix.as_bytes());
    md5.finalize().into()
}

fn order_by(
    hash32: &str,
    uuids: &[&str],
    suffix: fn(&str) -> &str,
    descending: bool,
) -> Vec<usize> {
    let hash32 = hash32.get(..32).unwrap_or(hash32);
    let weights: Vec<[u8; 16]> = uuids.iter().map(|u| weight(hash32, suffix(u))).collect();
    let mut order: Vec<usize> = (0..uuids.len()).collect();
    // Stable sort: ties keep input order.
    if descending {
        order.sort_by(|&a, &b| weights[b].cmp(&weights[a]));
    } else {
        order.sort_by(|&a, &b| weights[a].cmp(&weights[b]));
    }
    order
}

/// Client probe order (Go rule): indexes into `uuids`, heaviest first.
pub fn probe_order_go(hash32: &str, uuids: &[&str]) -> Vec<usize> {
    order_by(hash32, uuids, go_suffix, true)
}

/// Client probe order (Python SDK rule).
pub fn probe_order_python(hash32: &str, uuids: &[&str]) -> Vec<usize> {
    order_by(hash32, uuids, python_suffix, true)
}

/// keepstore's mount order inside one server: ascending weight, Go suffix rule.
pub fn mount_order_keepstore(hash32: &str, mount_uuids: &[&str]) -> Vec<usize> {
    order_by(hash32, mount_uuids, go_suffix, false)
}
