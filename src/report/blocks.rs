//! `-report FILE.jsonl`: one JSON line per block (locator as `hash+size`, never signed;
//! action; source server; destination servers; bytes; attempts; the error kind and text on
//! failure), appended and flushed batch by batch as the run goes, so a crash loses at most
//! the last batch.

use std::fs::File;
use std::io::{BufWriter, Write as _};
use std::path::Path;

use serde::Serialize;

use crate::mover::counters::Counters;
use crate::mover::events::{Event, EventSink};

/// One report line.
#[derive(Serialize)]
struct Line<'a> {
    locator: &'a str,
    action: &'a str,
    bytes: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    source: Option<&'a str>,
    destinations: Vec<&'a str>,
    attempts: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    error_kind: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a str>,
}

/// The `-report` sink.
pub struct BlockReport {
    out: BufWriter<File>,
    src_uuids: Vec<String>,
    dst_uuids: Vec<String>,
    failed: Option<std::io::Error>,
}

impl BlockReport {
    /// Creates (truncates) the report file. Server indexes in events are named by the uuids.
    pub fn create(
        path: &Path,
        src_uuids: Vec<String>,
        dst_uuids: Vec<String>,
    ) -> std::io::Result<BlockReport> {
        Ok(BlockReport {
            out: BufWriter::new(File::create(path)?),
            src_uuids,
            dst_uuids,
            failed: None,
        })
    }

    fn write(&mut self, event: &Event) -> std::io::Result<()> {
        let Event::Done(record) = event else {
            return Ok(());
        };
        let line = Line {
            locator: record.block.as_str(),
            action: record.action.as_str(),
            bytes: record.bytes,
            source: record
                .source
                .and_then(|s| self.src_uuids.get(s as usize))
                .map(String::as_str),
            destinations: record
                .stored_on
                .iter()
                .filter_map(|&d| self.dst_uuids.get(d as usize))
                .map(String::as_str)
                .collect(),
            attempts: record.attempts,
            error_kind: record.error.as_ref().map(|e| e.kind.as_str()),
            error: record.error.as_ref().map(|e| e.text.as_str()),
        };
        serde_json::to_writer(&mut self.out, &line)?;
        self.out.write_all(b"\n")
    }
}

impl EventSink for BlockReport {
    fn events(&mut self, batch: &[Event], _counters: &Counters) {
        if self.failed.is_some() {
            return;
        }
        let result = batch
            .iter()
            .try_for_each(|e| self.write(e))
            .and_then(|()| self.out.flush());
        if let Err(e) = result {
            super::log_line(&format!(
                "writing the -report file failed, no more lines: {e}"
            ));
            self.failed = Some(e);
        }
    }

    fn finish(&mut self, _counters: &Counters) {
        let _ = self.out.flush();
        let _ = self.out.get_ref().sync_all();
    }
}
