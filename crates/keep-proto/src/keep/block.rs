//! A block's identity as the indexes name it (`hash+size`), and that name as text without an
//! allocation. keep-rsync diffs on exactly this pair, so a hash present with another size is
//! a different block. The text form is made once per block and carried along, because a block
//! is named in a request path, a log line, an event and a report line.

use std::fmt;

use super::locator::BlockHash;

/// `hash+size`: what an index line and a short locator say about a block.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BlockId {
    pub hash: BlockHash,
    pub size: u64,
}

impl BlockId {
    pub fn new(hash: BlockHash, size: u64) -> BlockId {
        BlockId { hash, size }
    }

    /// The short locator `hash+size` as text, without allocating.
    pub fn short(&self) -> ShortLocator {
        ShortLocator::new(self)
    }
}

/// Longest `hash+size`: 32 hex digits, `+`, and the 20 digits of `u64::MAX`.
const SHORT_MAX: usize = 32 + 1 + 20;

/// The text `hash+size` held inline (`Copy`, no heap).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ShortLocator {
    text: [u8; SHORT_MAX],
    len: u8,
}

impl ShortLocator {
    fn new(id: &BlockId) -> ShortLocator {
        let mut text = [0u8; SHORT_MAX];
        let mut hex = [0u8; 32];
        id.hash.write_hex(&mut hex);
        text[..32].copy_from_slice(&hex);
        text[32] = b'+';
        let mut digits = [0u8; 20];
        let mut n = id.size;
        let mut count = 0;
        loop {
            digits[count] = b'0' + (n % 10) as u8;
            count += 1;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        for i in 0..count {
            text[33 + i] = digits[count - 1 - i];
        }
        ShortLocator {
            text,
            len: (33 + count) as u8,
        }
    }

    pub fn as_str(&self) -> &str {
        // Only ASCII digits, hex and '+' are ever written.
        std::str::from_utf8(&self.text[..self.len as usize]).unwrap_or("")
    }

    /// The 32 hex digits of the hash.
    pub fn hash_hex(&self) -> &str {
        &self.as_str()[..32]
    }
}

impl fmt::Display for ShortLocator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for ShortLocator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.as_str())
    }
}

impl AsRef<str> for ShortLocator {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_locator_text() {
        let id = BlockId::new(BlockHash([0xab; 16]), 0);
        assert_eq!(id.short().as_str(), format!("{}+0", "ab".repeat(16)));
        let id = BlockId::new(BlockHash([1; 16]), 67_108_864);
        assert_eq!(
            id.short().to_string(),
            format!("{}+67108864", "01".repeat(16))
        );
        assert_eq!(id.short().hash_hex(), "01".repeat(16));
        let id = BlockId::new(BlockHash([0; 16]), u64::MAX);
        assert_eq!(
            id.short().as_str(),
            format!("{}+{}", "00".repeat(16), u64::MAX)
        );
    }
}
