//! Permission signatures (`keep-protocol.md` §2): HMAC-SHA1 over
//! `hash@token@expiry_hex@ttl_hex`, appended as `+A<sig>@<expiry>`. Tokens and keys never
//! appear in errors.

use hmac::{Hmac, Mac};
use sha1::Sha1;

use super::locator::HEX_DIGITS;

/// Why keepstore refuses a signed locator; each maps to keepstore's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// No well-formed `+A<40 hex>@<8 hex>` hint.
    #[error("invalid signature")]
    Missing,
    /// The signature does not match this key, token and TTL.
    #[error("invalid signature")]
    Invalid,
    #[error("expired signature")]
    Expired,
}

impl SignatureError {
    /// The status keepstore answers with: 400 for missing/invalid, 401 for expired.
    pub fn http_status(&self) -> u16 {
        match self {
            SignatureError::Missing | SignatureError::Invalid => 400,
            SignatureError::Expired => 401,
        }
    }
}

/// A blob signing key made ready once: HMAC-SHA1's inner and outer pads are hashed when it
/// is made, so each signature then costs only its message's compressions (a copy signs a
/// locator per block). Never printed.
#[derive(Clone)]
pub struct SigningKey {
    mac: Hmac<Sha1>,
    key: Box<[u8]>,
}

impl SigningKey {
    pub fn new(key: &[u8]) -> SigningKey {
        // HMAC accepts keys of any length, so this cannot fail; an empty key signs nothing.
        let mac = <Hmac<Sha1> as Mac>::new_from_slice(key)
            .unwrap_or_else(|_| <Hmac<Sha1> as Mac>::new(&Default::default()));
        SigningKey {
            mac,
            key: key.into(),
        }
    }

    /// Whether this is the key `key` (two clusters sharing one signing key).
    pub fn is(&self, key: &[u8]) -> bool {
        *self.key == *key
    }

    /// The 40 lowercase hex digits of the signature.
    pub fn signature_hex(
        &self,
        hash32: &str,
        token: &str,
        expiry_unix: u64,
        ttl_secs: u64,
    ) -> String {
        let mut out = String::with_capacity(40);
        self.push_signature_hex(&mut out, hash32, token, expiry_unix, ttl_secs);
        out
    }

    /// [`signature_hex`](Self::signature_hex), appended to `out` (a signed locator is written
    /// in one allocation).
    fn push_signature_hex(
        &self,
        out: &mut String,
        hash32: &str,
        token: &str,
        expiry_unix: u64,
        ttl_secs: u64,
    ) {
        // The message is `hash@token@expiry(%08x)@ttl(%x)`, fed in pieces (no allocation: a
        // copy signs one locator per block).
        let mut digits = [0u8; 16];
        let mut mac = self.mac.clone();
        mac.update(hash32.as_bytes());
        mac.update(b"@");
        mac.update(token.as_bytes());
        mac.update(b"@");
        mac.update(lower_hex(expiry_unix, 8, &mut digits));
        mac.update(b"@");
        mac.update(lower_hex(ttl_secs, 1, &mut digits));
        let digest = mac.finalize().into_bytes();
        for byte in digest {
            out.push(char::from(HEX_DIGITS[usize::from(byte >> 4)]));
            out.push(char::from(HEX_DIGITS[usize::from(byte & 15)]));
        }
    }

    /// Appends `+A<sig>@<expiry>` to `locator`; unchanged if the key or token is empty.
    pub fn sign_locator(
        &self,
        locator: &str,
        token: &str,
        expiry_unix: u64,
        ttl_secs: u64,
    ) -> String {
        if self.key.is_empty() || token.is_empty() || locator.len() < 32 {
            return locator.to_string();
        }
        let mut digits = [0u8; 16];
        let expiry = lower_hex(expiry_unix, 8, &mut digits);
        // `+A`, 40 hex digits of HMAC-SHA1, `@`, the expiry.
        let mut signed = String::with_capacity(locator.len() + 3 + 40 + expiry.len());
        signed.push_str(locator);
        signed.push_str("+A");
        self.push_signature_hex(&mut signed, &locator[..32], token, expiry_unix, ttl_secs);
        signed.push('@');
        // Hex digits are ASCII.
        signed.extend(expiry.iter().map(|&b| char::from(b)));
        signed
    }
}

/// `value` in lowercase hex, zero-padded to at least `min_width` digits (`%0*x`), in `buf`.
fn lower_hex(value: u64, min_width: usize, buf: &mut [u8; 16]) -> &[u8] {
    let digits = ((64 - value.leading_zeros()).div_ceil(4) as usize).max(min_width.min(16));
    let start = 16 - digits;
    let mut rest = value;
    for slot in buf[start..].iter_mut().rev() {
        *slot = HEX_DIGITS[(rest & 15) as usize];
        rest >>= 4;
    }
    &buf[start..]
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigningKey(<redacted>)")
    }
}

/// The 40 lowercase hex digits of the signature.
pub fn signature_hex(
    hash32: &str,
    token: &str,
    key: &[u8],
    expiry_unix: u64,
    ttl_secs: u64,
) -> String {
    SigningKey::new(key).signature_hex(hash32, token, expiry_unix, ttl_secs)
}

/// Appends `+A<sig>@<expiry>` to `locator`; unchanged if the key or token is empty.
pub fn sign_locator(
    locator: &str,
    token: &str,
    key: &[u8],
    expiry_unix: u64,
    ttl_secs: u64,
) -> String {
    SigningKey::new(key).sign_locator(locator, token, expiry_unix, ttl_secs)
}

/// Finds the `+A` hint the way Go's `SignedLocatorRe` does: hash, optional `+digits`, any
/// `[B-Z]` hints, exactly one `+A<40 hex>@<8 hex>`, then any `[B-Z]` hints. Returns the
/// signature and expiry texts.
pub fn find_signature(locator: &str) -> Option<(&str, &str)> {
    let mut parts = locator.split('+');
    let hash = parts.next()?;
    if hash.len() != 32 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let mut found = None;
    for (i, part) in parts.enumerate() {
        let first = *part.as_bytes().first()?;
        if i == 0 && part.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        // `get(1..)`: a hint may start with a multi-byte character (network input).
        let body = part.get(1..)?;
        let valid_hint_body = body
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'@' | b'_' | b'-'));
        if first == b'A' {
            if found.is_some() {
                return None;
            }
            let (sig, expiry) = body.split_once('@')?;
            if sig.len() != 40
                || expiry.len() != 8
                || !sig.bytes().all(|b| b.is_ascii_hexdigit())
                || !expiry.bytes().all(|b| b.is_ascii_hexdigit())
            {
                return None;
            }
            found = Some((sig, expiry));
        } else if !(b'B'..=b'Z').contains(&first) || !valid_hint_body {
            return None;
        }
    }
    found
}

/// Verifies a signed locator as keepstore does (§2 steps 2–4).
pub fn verify_locator(
    locator: &str,
    token: &str,
    key: &[u8],
    ttl_secs: u64,
    now_unix: u64,
) -> Result<(), SignatureError> {
    let (sig, expiry_hex) = find_signature(locator).ok_or(SignatureError::Missing)?;
    let expiry = u64::from_str_radix(expiry_hex, 16).map_err(|_| SignatureError::Missing)?;
    if expiry < now_unix {
        return Err(SignatureError::Expired);
    }
    let expected = signature_hex(&locator[..32], token, key, expiry, ttl_secs);
    // The comparison is with lowercase output, so an uppercase signature fails (as in Go).
    if expected != sig || format!("{expiry:08x}") != expiry_hex {
        return Err(SignatureError::Invalid);
    }
    Ok(())
}

#[cfg(test)]
mod hex_tests {
    use super::lower_hex;

    #[test]
    fn lower_hex_pads_like_printf() {
        let mut buf = [0u8; 16];
        for (value, width) in [
            (0u64, 1usize),
            (0, 8),
            (0x5c, 8),
            (0x12345678, 8),
            (0x1_2345_6789, 8),
            (1_209_600, 1),
            (u64::MAX, 8),
        ] {
            assert_eq!(
                lower_hex(value, width, &mut buf),
                format!("{value:0width$x}").as_bytes(),
                "{value:#x} at width {width}"
            );
        }
    }
}
