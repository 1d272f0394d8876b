//! A request header's value that costs no allocation when it need not. Most of a block
//! request's header values are the same for the whole run (a cluster's `Bearer …`, the
//! content type, the replica count), and a 4 KiB block's GET and PUT made them afresh as
//! `String`s, six allocations per block. Here they are static or shared, and what really
//! differs per request (a request id) is kept inline when it is short.
//!
//! It lives in this crate, not with keepmover's HTTP client, only because this crate builds
//! the requests and cannot depend on keepmover; nothing in it is Keep's.

use std::borrow::Borrow;
use std::fmt;
use std::ops::Deref;
use std::sync::Arc;

/// Equal when the text is, whatever the kind.
#[derive(Clone)]
pub enum HeaderValue {
    /// Fixed text (a content type, a small count).
    Static(&'static str),
    /// Made once and shared by many requests (a cluster's `Bearer …`).
    Shared(Arc<str>),
    /// Made for this request alone and short enough to keep inline (a request id).
    Short(ShortText),
    /// Made for this request alone.
    Owned(String),
}

/// Text of at most [`ShortText::CAPACITY`] bytes, kept inline.
#[derive(Clone, Copy)]
pub struct ShortText {
    len: u8,
    bytes: [u8; ShortText::CAPACITY],
}

impl ShortText {
    /// A request id needs 24; 30 is the most that keeps the enum at 32 bytes (8 more than
    /// without an inline kind: cheaper than an allocation per request).
    pub const CAPACITY: usize = 30;

    /// `None` when `text` is longer than [`CAPACITY`](Self::CAPACITY).
    pub fn new(text: &str) -> Option<ShortText> {
        let mut bytes = [0; ShortText::CAPACITY];
        bytes
            .get_mut(..text.len())?
            .copy_from_slice(text.as_bytes());
        Some(ShortText {
            len: text.len() as u8,
            bytes,
        })
    }

    pub fn as_str(&self) -> &str {
        // Always whole UTF-8: copied from a `&str`, in full.
        std::str::from_utf8(&self.bytes[..usize::from(self.len)]).unwrap_or_default()
    }
}

impl HeaderValue {
    pub fn as_str(&self) -> &str {
        match self {
            HeaderValue::Static(text) => text,
            HeaderValue::Shared(text) => text,
            HeaderValue::Short(text) => text.as_str(),
            HeaderValue::Owned(text) => text,
        }
    }

    /// Per-request text: inline when short, else owned.
    pub fn short(text: &str) -> HeaderValue {
        match ShortText::new(text) {
            Some(short) => HeaderValue::Short(short),
            None => HeaderValue::Owned(text.to_string()),
        }
    }
}

impl Deref for HeaderValue {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for HeaderValue {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl Borrow<str> for HeaderValue {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

impl PartialEq for HeaderValue {
    fn eq(&self, other: &HeaderValue) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for HeaderValue {}

impl PartialEq<str> for HeaderValue {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for HeaderValue {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// Shown as its text, as a `String` would be. Header values can carry a token: whoever
/// prints a request's headers must redact them, as with `String`s before.
impl fmt::Debug for HeaderValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for HeaderValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<&'static str> for HeaderValue {
    fn from(text: &'static str) -> HeaderValue {
        HeaderValue::Static(text)
    }
}

impl From<String> for HeaderValue {
    fn from(text: String) -> HeaderValue {
        HeaderValue::Owned(text)
    }
}

impl From<Arc<str>> for HeaderValue {
    fn from(text: Arc<str>) -> HeaderValue {
        HeaderValue::Shared(text)
    }
}

/// A count as header text: 0 to 15 (every replica count a Keep PUT asks for in practice) from
/// a table, larger ones made.
pub fn count(n: u32) -> HeaderValue {
    const SMALL: [&str; 16] = [
        "0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12", "13", "14", "15",
    ];
    match SMALL.get(n as usize) {
        Some(text) => HeaderValue::Static(text),
        None => HeaderValue::Owned(n.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_reads_as_its_text() {
        let shared: Arc<str> = Arc::from("Bearer t");
        for (value, text) in [
            (
                HeaderValue::from("application/octet-stream"),
                "application/octet-stream",
            ),
            (HeaderValue::from(shared.clone()), "Bearer t"),
            (HeaderValue::from(String::from("req-1")), "req-1"),
            (HeaderValue::short("req-2"), "req-2"),
        ] {
            assert_eq!(value.as_str(), text);
            assert_eq!(&*value, text);
            assert_eq!(value, text);
            assert_eq!(format!("{value}"), text);
            assert_eq!(format!("{value:?}"), format!("{text:?}"));
            for kind in [
                HeaderValue::Owned(text.to_string()),
                HeaderValue::Shared(Arc::from(text)),
                HeaderValue::short(text),
            ] {
                assert_eq!(value, kind);
            }
        }
        assert_ne!(HeaderValue::from("a"), HeaderValue::from(String::from("b")));
    }

    #[test]
    fn short_text_is_inline_up_to_its_capacity() {
        for len in [0, 1, 24, ShortText::CAPACITY] {
            let text = "é".repeat(len / 2) + &"x".repeat(len % 2);
            assert!(matches!(HeaderValue::short(&text), HeaderValue::Short(_)));
            assert_eq!(HeaderValue::short(&text).as_str(), text);
        }
        let long = "y".repeat(ShortText::CAPACITY + 1);
        assert!(matches!(HeaderValue::short(&long), HeaderValue::Owned(_)));
        assert_eq!(HeaderValue::short(&long).as_str(), long);
        // What CAPACITY was chosen for.
        assert_eq!(std::mem::size_of::<HeaderValue>(), 32);
    }

    #[test]
    fn counts_read_as_decimal_text() {
        for n in [0, 1, 2, 9, 10, 15, 16, 17, 100, u32::MAX] {
            assert_eq!(count(n).as_str(), n.to_string());
        }
        assert!(matches!(count(15), HeaderValue::Static(_)));
        assert!(matches!(count(16), HeaderValue::Owned(_)));
    }
}
