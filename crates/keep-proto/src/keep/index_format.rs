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
    let mut fields = line.split(|&b| b == b' ');
    let locator = fields.next().ok_or(IndexLineError::Shape)?;
    let mtime = fields.next().ok_or(IndexLineError::Shape)?;
    if fields.next().is_some() {
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
    if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    digits.iter().try_fold(0u64, |acc, &d| {
        acc.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })
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
            match data.iter().position(|&b| b == b'\n') {
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
