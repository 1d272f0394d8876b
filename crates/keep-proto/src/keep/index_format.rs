//! Index bodies (`keep-protocol.md` §5.4): `<hash>+<size> <mtime>\n` per stored block, then
//! one blank line as the completion marker. The parser is incremental (feed it chunks split
//! anywhere) and strict in keep-balance's way: exactly two fields, hashes under the
//! requested prefix, and the blank line last. A body without it is incomplete.

use super::locator::{BlockHash, MAX_BLOCK_SIZE};

/// One index line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IndexEntry {
    pub hash: BlockHash,
    pub size: u64,
    /// Nanoseconds since the epoch (old servers' seconds are converted, as keep-balance does).
    pub mtime_ns: i64,
}

/// Longest index line accepted (a real one is under 60 bytes).
pub const MAX_INDEX_LINE: usize = 4096;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IndexLineError {
    #[error("index line is not `hash+size mtime`")]
    Shape,
    #[error("index line has a bad hash")]
    Hash,
    #[error("index line has a bad size")]
    Size,
    #[error("index line has a bad mtime")]
    Mtime,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IndexError {
    #[error("line {line}: {source}")]
    Line { line: u64, source: IndexLineError },
    #[error("line {line}: longer than {MAX_INDEX_LINE} bytes")]
    LineTooLong { line: u64 },
    #[error("line {line}: hash does not start with the requested prefix {prefix:?}")]
    OutsidePrefix { line: u64, prefix: String },
    #[error("data after the completion marker (line {line})")]
    AfterEnd { line: u64 },
    #[error("Got incomplete index: no blank line at the end after {lines} lines")]
    Incomplete { lines: u64 },
}

/// Parses one line (without its `\n`).
pub fn parse_index_line(line: &[u8]) -> Result<IndexEntry, IndexLineError> {
    // Exactly two fields: the first space ends the locator, and no other may follow.
    let space = memchr::memchr(b' ', line).ok_or(IndexLineError::Shape)?;
    let (locator, mtime) = (&line[..space], &line[space + 1..]);
    if memchr::memchr(b' ', mtime).is_some() {
        return Err(IndexLineError::Shape);
    }
    if locator.len() < 34 || locator[32] != b'+' {
        return Err(IndexLineError::Shape);
    }
    let hash = BlockHash::from_hex_bytes(&locator[..32]).ok_or(IndexLineError::Hash)?;
    let size = parse_decimal(&locator[33..]).ok_or(IndexLineError::Size)?;
    if size > MAX_BLOCK_SIZE {
        return Err(IndexLineError::Size);
    }
    let (negative, digits) = match mtime.first() {
        Some(b'-') => (true, &mtime[1..]),
        _ => (false, mtime),
    };
    let magnitude = parse_decimal(digits).ok_or(IndexLineError::Mtime)?;
    let magnitude = i64::try_from(magnitude).map_err(|_| IndexLineError::Mtime)?;
    let mut mtime_ns = if negative { -magnitude } else { magnitude };
    if mtime_ns.abs() < 1_000_000_000_000 {
        mtime_ns = mtime_ns
            .checked_mul(1_000_000_000)
            .ok_or(IndexLineError::Mtime)?;
    }
    Ok(IndexEntry {
        hash,
        size,
        mtime_ns,
    })
}

fn parse_decimal(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || digits.len() > 19 {
        return None;
    }
    // 19 digits always fit in a u64 (10^19 - 1 < 2^64), so no overflow checks. Eight
    // digits at a time (an mtime has 19), then one at a time.
    let mut value = 0u64;
    let mut bad = false;
    let mut chunks = digits.chunks_exact(8);
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let (eight, ok) = eight_digits(u64::from_le_bytes(word));
        bad |= !ok;
        value = value.wrapping_mul(100_000_000).wrapping_add(eight);
    }
    for &d in chunks.remainder() {
        let digit = d.wrapping_sub(b'0');
        bad |= digit > 9;
        value = value.wrapping_mul(10).wrapping_add(u64::from(digit));
    }
    (!bad).then_some(value)
}

/// The value of eight ASCII decimal digits loaded little-endian (the first digit in the low
/// byte), and whether they all are digits.
fn eight_digits(word: u64) -> (u64, bool) {
    const ONES: u64 = 0x0101_0101_0101_0101;
    // Each byte in b'0'..=b'9': high nibble 3, and adding 6 does not carry out of it.
    let ok = (word & (0xF0 * ONES)) == 0x30 * ONES
        && ((word.wrapping_add(0x06 * ONES)) & (0xF0 * ONES)) == 0x30 * ONES;
    let mut v = word.wrapping_sub(0x30 * ONES);
    v = v.wrapping_mul(10).wrapping_add(v >> 8) & 0x00FF_00FF_00FF_00FF;
    v = v.wrapping_mul(100).wrapping_add(v >> 16) & 0x0000_FFFF_0000_FFFF;
    v = v.wrapping_mul(10_000).wrapping_add(v >> 32) & 0xFFFF_FFFF;
    (v, ok)
}

/// Formats one index line, with its `\n`.
pub fn format_index_line(hash: &BlockHash, size: u64, mtime_ns: i64) -> String {
    format!("{hash}+{size} {mtime_ns}\n")
}

/// An incremental index-body parser.
#[derive(Debug)]
pub struct IndexBodyParser {
    prefix: Option<String>,
    partial: Vec<u8>,
    lines: u64,
    ended: bool,
    /// A `feed` failed: the body is bad whatever follows.
    failed: bool,
}

impl IndexBodyParser {
    /// `prefix`: when set, every hash must start with it.
    pub fn new(prefix: Option<String>) -> IndexBodyParser {
        IndexBodyParser {
            prefix: prefix.filter(|p| !p.is_empty()),
            partial: Vec::new(),
            lines: 0,
            ended: false,
            failed: false,
        }
    }

    /// Feeds the next piece of the body; calls `on_entry` for each complete line.
    pub fn feed(
        &mut self,
        data: &[u8],
        on_entry: impl FnMut(IndexEntry),
    ) -> Result<(), IndexError> {
        let result = self.feed_inner(data, on_entry);
        if result.is_err() {
            self.failed = true;
        }
        result
    }

    fn feed_inner(
        &mut self,
        mut data: &[u8],
        mut on_entry: impl FnMut(IndexEntry),
    ) -> Result<(), IndexError> {
        while !data.is_empty() {
            if self.ended {
                return Err(IndexError::AfterEnd {
                    line: self.lines + 1,
                });
            }
            match memchr::memchr(b'\n', data) {
                Some(pos) => {
                    let line_ref: &[u8] = if self.partial.is_empty() {
                        &data[..pos]
                    } else {
                        self.partial.extend_from_slice(&data[..pos]);
                        &self.partial
                    };
                    if line_ref.len() > MAX_INDEX_LINE {
                        return Err(IndexError::LineTooLong {
                            line: self.lines + 1,
                        });
                    }
                    self.lines += 1;
                    if line_ref.is_empty() {
                        self.ended = true;
                    } else {
                        let entry =
                            parse_index_line(line_ref).map_err(|source| IndexError::Line {
                                line: self.lines,
                                source,
                            })?;
                        if let Some(prefix) = &self.prefix {
                            if !line_ref.starts_with(prefix.as_bytes()) {
                                return Err(IndexError::OutsidePrefix {
                                    line: self.lines,
                                    prefix: prefix.clone(),
                                });
                            }
                        }
                        on_entry(entry);
                    }
                    self.partial.clear();
                    data = &data[pos + 1..];
                }
                None => {
                    if self.partial.len() + data.len() > MAX_INDEX_LINE {
                        return Err(IndexError::LineTooLong {
                            line: self.lines + 1,
                        });
                    }
                    self.partial.extend_from_slice(data);
                    data = &[];
                }
            }
        }
        Ok(())
    }

    /// Ends the body: an error unless the completion marker came and nothing followed.
    pub fn finish(&self) -> Result<u64, IndexError> {
        if self.failed || !self.ended || !self.partial.is_empty() {
            return Err(IndexError::Incomplete { lines: self.lines });
        }
        Ok(self.lines - 1)
    }
}
