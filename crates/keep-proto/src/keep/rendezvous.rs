//! Rendezvous hashing (`keep-protocol.md` §4): which servers to probe, in which order.
//!
//! Weight of a service for a block = MD5 of the ASCII `hash32 + suffix`. The Go client
//! (keep-rsync, keep-balance) uses the last 15 characters of the uuid as the suffix only when
//! the uuid is exactly 27 characters, and the whole uuid otherwise; the Python SDK always uses
//! the last 15. Both agree for normal 27-character uuids; for other lengths (vector R8) they
//! disagree, and keepmover follows Go. Ties (two uuids with the same suffix) have no defined
//! order in Go; here they keep input order, as in Python.
//!
//! The client order (the one keepmover reads and writes by) has one implementation: the
//! multi-lane batch in [`crate::hash::probe_order_batch`]; [`probe_order_go`] and
//! [`probe_orders_go`] are its entry points. The scalar [`weight`] serves keepstore's mount
//! order and the Python rule.

/// The Go suffix rule: last 15 characters if the uuid is exactly 27 long, else the whole uuid.
pub use crate::hash::rendezvous_suffix as go_suffix;

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
    let mut md5 = crate::hash::Md5State::new();
    md5.update(hash32.as_bytes());
    md5.update(suffix.as_bytes());
    md5.finalize()
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
    let hash32 = hash32.get(..32).unwrap_or(hash32);
    probe_orders_go(&[hash32], uuids).pop().unwrap_or_default()
}

/// [`probe_order_go`] for many blocks at once (all weights go through the SIMD lanes
/// together): one order per hash, indexes into `uuids`.
pub fn probe_orders_go(hashes32: &[&str], uuids: &[&str]) -> Vec<Vec<usize>> {
    let suffixes: Vec<&str> = uuids.iter().map(|u| go_suffix(u)).collect();
    crate::hash::probe_order_batch(hashes32, &suffixes)
}

/// Client probe order (Python SDK rule).
pub fn probe_order_python(hash32: &str, uuids: &[&str]) -> Vec<usize> {
    order_by(hash32, uuids, python_suffix, true)
}

/// keepstore's mount order inside one server: ascending weight, Go suffix rule.
pub fn mount_order_keepstore(hash32: &str, mount_uuids: &[&str]) -> Vec<usize> {
    order_by(hash32, mount_uuids, go_suffix, false)
}
