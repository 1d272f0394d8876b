//! `-locators FILE`: an explicit list of blocks (`hash` or `hash+size` per line, `-` for
//! stdin) that a job is limited to. The walk visits hashes in order, so the list is sorted
//! once and then read alongside the walk, prefix by prefix. It is sorted in memory up to a
//! bound and spilled to disk in sorted runs beyond it (24 bytes per entry on disk), then
//! merged on the fly, so a list of a billion locators needs no more memory than a few runs'
//! read buffers.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::path::Path;

use crate::keep::{BlockHash, BlockId};

/// Entries sorted in memory before a run is spilled (4 Mi × 24 bytes = 96 MiB).
pub const DEFAULT_RUN_ENTRIES: usize = 4 << 20;

/// A wanted block: its hash and, if the line gave one, its size.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Wanted {
    pub hash: BlockHash,
    /// `u64::MAX` when the line gave only the hash (any size matches).
    size: u64,
}

impl std::fmt::Display for Wanted {
    /// As the list gave it: `hash` or `hash+size`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.size() {
            Some(size) => write!(f, "{}+{size}", self.hash),
            None => write!(f, "{}", self.hash),
        }
    }
}

impl Wanted {
    pub fn size(&self) -> Option<u64> {
        (self.size != u64::MAX).then_some(self.size)
    }

    /// Whether `id` is this wanted block.
    pub fn matches(&self, id: &BlockId) -> bool {
        self.hash == id.hash && self.size().is_none_or(|s| s == id.size)
    }

    fn to_bytes(self) -> [u8; 24] {
        let mut out = [0u8; 24];
        out[..16].copy_from_slice(&self.hash.0);
        out[16..].copy_from_slice(&self.size.to_be_bytes());
        out
    }

    fn from_bytes(b: &[u8; 24]) -> Wanted {
        let mut hash = [0u8; 16];
        hash.copy_from_slice(&b[..16]);
        let mut size = [0u8; 8];
        size.copy_from_slice(&b[16..]);
        Wanted {
            hash: BlockHash(hash),
            size: u64::from_be_bytes(size),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LocatorListError {
    #[error("line {line}: {text:?} is not a block hash or hash+size (32 lowercase hex digits, then optionally +size)")]
    Line { line: u64, text: String },
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

impl LocatorListError {
    /// The error for people, naming the list it came from (a path, or standard input).
    pub fn describe(&self, source: &str) -> String {
        match self {
            LocatorListError::Line { .. } => format!("-locators: {source} {self}"),
            LocatorListError::Io(e) => format!("-locators: reading {source}: {e}"),
        }
    }
}

/// Parses one line: `hash`, `hash+size`, or a full locator whose hints are ignored.
pub fn parse_line(line: &str) -> Option<Wanted> {
    let line = line.trim();
    let mut parts = line.split('+');
    // 32 lowercase hex digits (BlockHash's own rule).
    let hash = BlockHash::from_hex(parts.next()?).ok()?;
    let size = match parts.next() {
        None => u64::MAX,
        Some(s) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => s
            .parse()
            .ok()
            .filter(|n| *n <= crate::keep::locator::MAX_BLOCK_SIZE)?,
        // A hint right after the hash (no size): hash only.
        Some(s) if s.starts_with(|c: char| c.is_ascii_uppercase()) => u64::MAX,
        Some(_) => return None,
    };
    Some(Wanted { hash, size })
}

/// The sorted list: one in-memory run, or runs spilled to files. It can be read more than
/// once (a counting walk, then the copy).
pub struct LocatorList {
    memory: std::sync::Arc<Vec<Wanted>>,
    spilled: Vec<tempfile::NamedTempFile>,
    dir: Option<tempfile::TempDir>,
    /// Lines read (before deduplication).
    pub entries: u64,
}

impl std::fmt::Debug for LocatorList {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocatorList")
            .field("entries", &self.entries)
            .field("spilled_runs", &self.spilled.len())
            .finish()
    }
}

impl LocatorList {
    /// Reads and sorts a list; runs of more than `run_entries` are spilled under `spill_in`
    /// (a temporary directory is made there). Blank lines and `#` comments are skipped.
    pub fn load(
        input: impl Read,
        run_entries: usize,
        spill_in: &Path,
    ) -> Result<LocatorList, LocatorListError> {
        let reader = BufReader::new(input);
        let mut run: Vec<Wanted> = Vec::new();
        let mut list = LocatorList {
            memory: std::sync::Arc::new(Vec::new()),
            spilled: Vec::new(),
            dir: None,
            entries: 0,
        };
        for (number, line) in reader.lines().enumerate() {
            let line = line?;
            let trimmed = line.trim();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            let wanted = parse_line(trimmed).ok_or_else(|| LocatorListError::Line {
                line: number as u64 + 1,
                text: trimmed.chars().take(80).collect(),
            })?;
            run.push(wanted);
            list.entries += 1;
            if run.len() >= run_entries.max(1) {
                list.spill(&mut run, spill_in)?;
            }
        }
        run.sort_unstable();
        run.dedup();
        if list.spilled.is_empty() {
            list.memory = std::sync::Arc::new(run);
        } else if !run.is_empty() {
            list.spill(&mut run, spill_in)?;
        }
        Ok(list)
    }

    fn spill(&mut self, run: &mut Vec<Wanted>, dir: &Path) -> Result<(), LocatorListError> {
        run.sort_unstable();
        run.dedup();
        if self.dir.is_none() {
            self.dir = Some(
                tempfile::Builder::new()
                    .prefix("keepmover-locators")
                    .tempdir_in(dir)?,
            );
        }
        let mut file = match &self.dir {
            Some(d) => tempfile::NamedTempFile::new_in(d.path())?,
            None => tempfile::NamedTempFile::new()?,
        };
        {
            let mut out = BufWriter::new(file.as_file_mut());
            for w in run.iter() {
                out.write_all(&w.to_bytes())?;
            }
            out.flush()?;
        }
        self.spilled.push(file);
        run.clear();
        Ok(())
    }

    /// Reads the list in hash order, alongside a walk (each cursor from the start).
    pub fn cursor(&self) -> Result<LocatorCursor, LocatorListError> {
        let mut runs = Vec::new();
        for file in &self.spilled {
            runs.push(BufReader::with_capacity(64 << 10, File::open(file.path())?));
        }
        let mut cursor = LocatorCursor {
            memory: self.memory.clone(),
            position: 0,
            runs,
            heap: BinaryHeap::new(),
            peeked: None,
            last: None,
        };
        for i in 0..cursor.runs.len() {
            cursor.refill(i)?;
        }
        Ok(cursor)
    }
}

/// The sorted, deduplicated stream of wanted blocks.
pub struct LocatorCursor {
    memory: std::sync::Arc<Vec<Wanted>>,
    position: usize,
    runs: Vec<BufReader<File>>,
    heap: BinaryHeap<Reverse<(Wanted, usize)>>,
    peeked: Option<Wanted>,
    last: Option<Wanted>,
}

impl LocatorCursor {
    fn refill(&mut self, run: usize) -> std::io::Result<()> {
        let mut record = [0u8; 24];
        match self.runs[run].read_exact(&mut record) {
            Ok(()) => {
                self.heap.push(Reverse((Wanted::from_bytes(&record), run)));
                Ok(())
            }
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(()),
            Err(e) => Err(e),
        }
    }

    fn next_raw(&mut self) -> std::io::Result<Option<Wanted>> {
        if self.runs.is_empty() {
            let next = self.memory.get(self.position).copied();
            self.position += 1;
            return Ok(next);
        }
        match self.heap.pop() {
            Some(Reverse((w, run))) => {
                self.refill(run)?;
                Ok(Some(w))
            }
            None => Ok(None),
        }
    }

    fn peek(&mut self) -> std::io::Result<Option<Wanted>> {
        while self.peeked.is_none() {
            match self.next_raw()? {
                Some(w) if Some(w) == self.last => continue,
                Some(w) => {
                    self.last = Some(w);
                    self.peeked = Some(w);
                }
                None => return Ok(None),
            }
        }
        Ok(self.peeked)
    }

    /// The wanted blocks under `prefix`, skipping any before it. Prefixes must be asked for
    /// in increasing order.
    pub fn take_prefix(&mut self, prefix: &str) -> std::io::Result<Vec<Wanted>> {
        let mut out = Vec::new();
        while let Some(w) = self.peek()? {
            let hex = w.hash.to_string();
            if hex.starts_with(prefix) {
                out.push(w);
            } else if hex.as_str() > prefix {
                break;
            }
            self.peeked = None;
        }
        Ok(out)
    }
}

/// Keeps the blocks of `blocks` (sorted by id) that the sorted `wanted` list names.
pub fn retain_wanted<T>(blocks: &mut Vec<T>, wanted: &[Wanted], id: impl Fn(&T) -> BlockId) {
    let mut cursor = 0;
    blocks.retain(|block| {
        let id = id(block);
        while cursor < wanted.len() && wanted[cursor].hash < id.hash {
            cursor += 1;
        }
        wanted[cursor..]
            .iter()
            .take_while(|w| w.hash == id.hash)
            .any(|w| w.matches(&id))
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hash(n: u8) -> String {
        format!("{n:02x}").repeat(16)
    }

    #[test]
    fn lines_parse_with_or_without_size() {
        assert_eq!(parse_line(&hash(1)).and_then(|w| w.size()), None);
        assert_eq!(
            parse_line(&format!("{}+7", hash(1))).and_then(|w| w.size()),
            Some(7)
        );
        assert!(parse_line(&format!("{}+7+Afoo@1", hash(1))).is_some());
        assert!(parse_line("nothex").is_none());
        assert!(parse_line(&format!("{}+x", hash(1))).is_none());
        assert!(parse_line(&format!("{}+99999999999", hash(1))).is_none());
    }

    #[test]
    fn spilled_runs_merge_sorted_and_deduplicated() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut text = String::new();
        for n in (0u8..200).rev() {
            text.push_str(&format!("{}+{}\n", hash(n), n));
            if n % 3 == 0 {
                text.push_str(&format!("{}+{}\n", hash(n), n));
            }
        }
        text.push_str("\n# a comment\n");
        let list = LocatorList::load(text.as_bytes(), 7, dir.path()).expect("loads");
        for _ in 0..2 {
            let mut cursor = list.cursor().expect("cursor");
            let mut all = Vec::new();
            for p in 0..16u8 {
                all.extend(cursor.take_prefix(&format!("{p:x}")).expect("reads"));
            }
            assert_eq!(all.len(), 200);
            assert!(all.windows(2).all(|w| w[0] < w[1]));
        }
    }

    #[test]
    fn bad_lines_are_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let text = format!("{}\nbogus\n", hash(1));
        let err = LocatorList::load(text.as_bytes(), 10, dir.path()).err();
        assert!(matches!(err, Some(LocatorListError::Line { line: 2, .. })));
        let err = LocatorList::load("zzz\n".as_bytes(), 10, dir.path()).err();
        assert_eq!(
            err.map(|e| e.describe("locators.txt")).as_deref(),
            Some("-locators: locators.txt line 1: \"zzz\" is not a block hash or hash+size (32 lowercase hex digits, then optionally +size)")
        );
        // Upper case, a size that is not a number, nothing after the +: refused.
        for bad in [
            "ACBD18DB4CC2F85CEDEF654FCCC4A4D8".to_string(),
            format!("{}+", hash(1)),
            format!("{}x", hash(1)),
        ] {
            assert!(parse_line(&bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn retain_keeps_only_listed_blocks() {
        let id = |n: u8, size: u64| BlockId::new(BlockHash([n; 16]), size);
        let mut blocks = vec![id(1, 5), id(2, 5), id(3, 5), id(3, 6)];
        let wanted = vec![
            parse_line(&hash(2)).expect("hash only"),
            parse_line(&format!("{}+6", hash(3))).expect("with size"),
        ];
        retain_wanted(&mut blocks, &wanted, |b| *b);
        assert_eq!(blocks, vec![id(2, 5), id(3, 6)]);
    }
}
