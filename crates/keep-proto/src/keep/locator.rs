//! Block locators (`hash[+size][+hints]`), parsed two ways: strictly, as manifests and the
//! signature verifier see them, and leniently, as keepstore's router accepts them
//! (`keep-protocol.md` §1).

use std::fmt;

/// The largest Keep block: 64 MiB.
pub const MAX_BLOCK_SIZE: u64 = 67_108_864;
/// MD5 of the empty string: the empty block.
pub const EMPTY_BLOCK_HASH: &str = "d41d8cd98f00b204e9800998ecf8427e";

/// Why a locator was refused. Messages quote at most 80 characters of the input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LocatorError {
    #[error("invalid locator {0:?}: hash must be 32 lowercase hex digits")]
    BadHash(String),
    #[error("invalid locator {0:?}: bad size")]
    BadSize(String),
    #[error("invalid locator {0:?}: size exceeds 64 MiB")]
    TooLarge(String),
    #[error("invalid locator {0:?}: empty part (leading, trailing or doubled '+')")]
    EmptyPart(String),
    #[error("invalid locator {0:?}: bad hint")]
    BadHint(String),
}

fn quoted(input: &str) -> String {
    input.chars().take(80).collect()
}

/// A block's MD5, binary. Orders like its lowercase hex (byte order = hex order).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct BlockHash(pub [u8; 16]);

const fn hex_value(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'a'..=b'f' => Some(byte - b'a' + 10),
        _ => None,
    }
}

/// Marks a byte that is not a lowercase hex digit in [`HEX_VALUES`].
const NOT_HEX: u8 = 0x80;

/// [`hex_value`] for every byte, `NOT_HEX` where it is `None`.
static HEX_VALUES: [u8; 256] = {
    let mut table = [NOT_HEX; 256];
    let mut b = 0;
    while b < 256 {
        table[b] = match hex_value(b as u8) {
            Some(v) => v,
            None => NOT_HEX,
        };
        b += 1;
    }
    table
};

impl BlockHash {
    /// Parses exactly 32 lowercase hex digits.
    pub fn from_hex(text: &str) -> Result<BlockHash, LocatorError> {
        Self::from_hex_bytes(text.as_bytes()).ok_or_else(|| LocatorError::BadHash(quoted(text)))
    }

    /// Like [`BlockHash::from_hex`] on bytes; `None` unless exactly 32 lowercase hex digits.
    pub fn from_hex_bytes(text: &[u8]) -> Option<BlockHash> {
        // Table lookups without a branch per digit, one validity check at the end: the
        // index walk parses every line of both clusters' indexes through here.
        let text: &[u8; 32] = text.try_into().ok()?;
        let mut out = [0u8; 16];
        let mut bad = 0u8;
        for (i, byte) in out.iter_mut().enumerate() {
            let hi = HEX_VALUES[usize::from(text[2 * i])];
            let lo = HEX_VALUES[usize::from(text[2 * i + 1])];
            bad |= hi | lo;
            *byte = (hi << 4) | (lo & 15);
        }
        (bad & NOT_HEX == 0).then_some(BlockHash(out))
    }

    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }

    /// 32 lowercase hex digits.
    pub fn to_hex(&self) -> String {
        self.to_string()
    }

    /// Writes the 32 hex digits into `out` without allocating.
    pub fn write_hex(&self, out: &mut [u8; 32]) {
        for (i, byte) in self.0.iter().enumerate() {
            out[2 * i] = HEX_DIGITS[(byte >> 4) as usize];
            out[2 * i + 1] = HEX_DIGITS[(byte & 15) as usize];
        }
    }
}

/// Lowercase hex digits, as Keep writes hashes and signatures.
pub(crate) const HEX_DIGITS: &[u8; 16] = b"0123456789abcdef";

impl fmt::Display for BlockHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut hex = [0u8; 32];
        self.write_hex(&mut hex);
        // The digits are ASCII by construction.
        f.write_str(std::str::from_utf8(&hex).map_err(|_| fmt::Error)?)
    }
}

impl fmt::Debug for BlockHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BlockHash({self})")
    }
}

/// A strictly parsed locator: hash, optional size, hints (without `+`) in original order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Locator {
    pub hash: BlockHash,
    pub size: Option<u64>,
    pub hints: Vec<String>,
}

fn is_hint(part: &str) -> bool {
    let bytes = part.as_bytes();
    matches!(bytes.first(), Some(b'A'..=b'Z'))
        && bytes[1..]
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'@' | b'_' | b'-'))
}

impl Locator {
    /// The manifest grammar: `hash [+size] *(+hint)`, size ≤ 64 MiB, hints `UPPER *(ALNUM/@/_/-)`.
    pub fn parse(text: &str) -> Result<Locator, LocatorError> {
        let mut parts = text.split('+');
        let hash = BlockHash::from_hex(parts.next().unwrap_or(""))?;
        let mut size = None;
        let mut hints = Vec::new();
        for (i, part) in parts.enumerate() {
            if part.is_empty() {
                return Err(LocatorError::EmptyPart(quoted(text)));
            }
            if i == 0 && part.as_bytes()[0].is_ascii_digit() {
                if !part.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(LocatorError::BadSize(quoted(text)));
                }
                let value: u64 = part
                    .parse()
                    .map_err(|_| LocatorError::TooLarge(quoted(text)))?;
                if value > MAX_BLOCK_SIZE {
                    return Err(LocatorError::TooLarge(quoted(text)));
                }
                size = Some(value);
            } else if is_hint(part) {
                hints.push(part.to_string());
            } else {
                return Err(LocatorError::BadHint(quoted(text)));
            }
        }
        Ok(Locator { hash, size, hints })
    }

    /// `hash+size` (just `hash` when the size is unknown).
    pub fn short(&self) -> String {
        match self.size {
            Some(size) => format!("{}+{size}", self.hash),
            None => self.hash.to_string(),
        }
    }

    /// The `+A` permission hint's body (`<sig>@<expiry>`), if any.
    pub fn signature_hint(&self) -> Option<&str> {
        self.hints.iter().find_map(|h| h.strip_prefix('A'))
    }

    /// The `+R` remote-signature hint's body, if any.
    pub fn remote_hint(&self) -> Option<&str> {
        self.hints.iter().find_map(|h| h.strip_prefix('R'))
    }

    /// The `+K@` hints' targets (cluster ids or service uuids).
    pub fn keep_hints(&self) -> impl Iterator<Item = &str> {
        self.hints.iter().filter_map(|h| h.strip_prefix("K@"))
    }
}

impl fmt::Display for Locator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.hash)?;
        if let Some(size) = self.size {
            write!(f, "+{size}")?;
        }
        for hint in &self.hints {
            write!(f, "+{hint}")?;
        }
        Ok(())
    }
}

/// What keepstore's `getLocatorInfo` extracts from a request path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeepstoreLocator {
    pub hash: BlockHash,
    /// `None` when the second part is missing or not a decimal number.
    pub size: Option<u64>,
    pub signed: bool,
    pub remote: bool,
}

/// keepstore's leniency (§1): no empty part, exactly 32 lowercase hex first, the second part
/// is the size if decimal, any later part starting with a digit is invalid, hint contents
/// otherwise unchecked.
pub fn parse_keepstore(text: &str) -> Result<KeepstoreLocator, LocatorError> {
    let mut parts = text.split('+');
    let hash = BlockHash::from_hex(parts.next().unwrap_or(""))?;
    let mut located = KeepstoreLocator {
        hash,
        size: None,
        signed: false,
        remote: false,
    };
    for (i, part) in parts.enumerate() {
        if part.is_empty() {
            return Err(LocatorError::EmptyPart(quoted(text)));
        }
        if i == 0 {
            if let Ok(size) = part.parse::<u64>() {
                if part.bytes().all(|b| b.is_ascii_digit()) {
                    located.size = Some(size);
                    continue;
                }
            }
        } else if part.as_bytes()[0].is_ascii_digit() {
            return Err(LocatorError::BadHint(quoted(text)));
        }
        match part.as_bytes()[0] {
            b'A' => located.signed = true,
            b'R' => located.remote = true,
            _ => {}
        }
    }
    Ok(located)
}
