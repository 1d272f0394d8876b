//! What `keepmover validate` writes, from its [`Event::Checked`] events: rclone check's
//! files (`-missing`, `-differ`, `-error`, `-combined`, one `hash+size` per line, never a
//! signed locator), the `-report FILE.jsonl` line per block, log lines for findings and
//! progress, the closing summary line and the `-json` document.
//!
//! `-combined` letters: `=` fine, `-` missing on the destination, `+` only on the destination,
//! `*` differs (another size, or a copy whose MD5 is wrong), `!` a copy could not be read,
//! `<` under-replicated, `~` misplaced. One letter per block: the most serious finding.

use std::fs::File;
use std::io::{BufWriter, Write as _};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::Serialize;

use super::{human_bytes, log_line};
use crate::index::placement::{Finding, FindingKind};
use crate::mover::counters::Counters;
use crate::mover::events::{Event, EventSink};
use crate::mover::validate::{CheckRecord, ValidateReport, ValidateTotals};

/// Where `-missing`, `-differ`, `-error`, `-combined` and `-report` go.
#[derive(Clone, Debug, Default)]
pub struct OutputPaths {
    pub missing: Option<PathBuf>,
    pub differ: Option<PathBuf>,
    pub error: Option<PathBuf>,
    pub combined: Option<PathBuf>,
    pub report: Option<PathBuf>,
}

impl OutputPaths {
    /// Whether any per-block file is asked for.
    pub fn any(&self) -> bool {
        [
            &self.missing,
            &self.differ,
            &self.error,
            &self.combined,
            &self.report,
        ]
        .iter()
        .any(|p| p.is_some())
    }
}

struct Out {
    path: PathBuf,
    file: BufWriter<File>,
}

impl Out {
    fn create(path: &Option<PathBuf>) -> std::io::Result<Option<Out>> {
        path.as_ref()
            .map(|p| {
                Ok(Out {
                    path: p.clone(),
                    file: BufWriter::new(File::create(p)?),
                })
            })
            .transpose()
    }
}

/// The file sink: rclone's lists and the JSON-lines report.
pub struct ValidateFiles {
    missing: Option<Out>,
    differ: Option<Out>,
    error: Option<Out>,
    combined: Option<Out>,
    report: Option<Out>,
    dst_uuids: Vec<String>,
    failed: Option<String>,
}

/// A finding as a report line shows it (servers by uuid).
#[derive(Serialize)]
struct FindingLine<'a> {
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    server: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    detail: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    have: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    want: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    class: Option<&'a str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    sizes: Vec<u64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    expected: Vec<&'a str>,
}

/// One `-report` line.
#[derive(Serialize)]
struct ReportLine<'a> {
    locator: &'a str,
    status: String,
    /// `checked` (indexes agree), `verified` (and every copy read back intact), `extra`
    /// (destination only), or the kind of the finding that decides the status.
    action: &'static str,
    bytes: u64,
    replicas: u32,
    wanted: u32,
    holders: Vec<&'a str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    verified_on: Vec<&'a str>,
    findings: Vec<FindingLine<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    oldest_mtime_ns: Option<i64>,
}

/// The report's `action` for a record.
pub fn action(record: &CheckRecord) -> &'static str {
    let v = &record.verdict;
    if v.extra {
        return "extra";
    }
    match v.primary() {
        Some(kind) => kind.as_str(),
        None if record.reread => "verified",
        None => "checked",
    }
}

fn uuid(uuids: &[String], server: usize) -> &str {
    uuids.get(server).map_or("?", String::as_str)
}

fn finding_line<'a>(f: &'a Finding, uuids: &'a [String]) -> FindingLine<'a> {
    let mut line = FindingLine {
        kind: f.kind().as_str(),
        server: None,
        detail: None,
        have: None,
        want: None,
        class: None,
        sizes: Vec::new(),
        expected: Vec::new(),
    };
    match f {
        Finding::Missing => {}
        Finding::SizeMismatch { sizes } => line.sizes = sizes.clone(),
        Finding::UnderReplicated { have, want, class } => {
            line.have = Some(*have);
            line.want = Some(*want);
            line.class = class.as_deref();
        }
        Finding::Misplaced { expected, .. } => {
            line.expected = expected.iter().map(|&s| uuid(uuids, s)).collect();
        }
        Finding::Corrupt { server, detail } | Finding::Unreadable { server, detail } => {
            line.server = Some(uuid(uuids, *server));
            line.detail = Some(detail);
        }
    }
    line
}

impl ValidateFiles {
    /// Creates (truncates) every file asked for. `dst_uuids` names servers in the report.
    pub fn create(
        paths: &OutputPaths,
        dst_uuids: Vec<String>,
    ) -> Result<ValidateFiles, (PathBuf, std::io::Error)> {
        let open =
            |p: &Option<PathBuf>| Out::create(p).map_err(|e| (p.clone().unwrap_or_default(), e));
        Ok(ValidateFiles {
            missing: open(&paths.missing)?,
            differ: open(&paths.differ)?,
            error: open(&paths.error)?,
            combined: open(&paths.combined)?,
            report: open(&paths.report)?,
            dst_uuids,
            failed: None,
        })
    }

    fn write(&mut self, record: &CheckRecord) -> Result<(), (PathBuf, std::io::Error)> {
        let v = &record.verdict;
        let short = v.id.short();
        let locator = short.as_str();
        let status = v.status();
        let put = |out: &mut Option<Out>, line: &str| -> Result<(), (PathBuf, std::io::Error)> {
            match out {
                Some(o) => writeln!(o.file, "{line}").map_err(|e| (o.path.clone(), e)),
                None => Ok(()),
            }
        };
        put(&mut self.combined, &format!("{} {locator}", status.char()))?;
        let has = |k: FindingKind| v.findings.iter().any(|f| f.kind() == k);
        if has(FindingKind::Missing) {
            put(&mut self.missing, locator)?;
        }
        if has(FindingKind::SizeMismatch) || has(FindingKind::Corrupt) {
            put(&mut self.differ, locator)?;
        }
        if has(FindingKind::Unreadable) {
            put(&mut self.error, locator)?;
        }
        if let Some(out) = &mut self.report {
            let uuids = &self.dst_uuids;
            let line = ReportLine {
                locator,
                status: status.char().to_string(),
                action: action(record),
                bytes: v.id.size,
                replicas: v.replicas,
                wanted: v.wanted,
                holders: v.holders.iter().map(|&s| uuid(uuids, s)).collect(),
                verified_on: record.verified_on.iter().map(|&s| uuid(uuids, s)).collect(),
                findings: v.findings.iter().map(|f| finding_line(f, uuids)).collect(),
                oldest_mtime_ns: v.oldest_mtime_ns,
            };
            let path = out.path.clone();
            serde_json::to_writer(&mut out.file, &line)
                .map_err(|e| (path.clone(), std::io::Error::other(e)))?;
            out.file.write_all(b"\n").map_err(|e| (path, e))?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), (PathBuf, std::io::Error)> {
        for out in [
            &mut self.missing,
            &mut self.differ,
            &mut self.error,
            &mut self.combined,
            &mut self.report,
        ]
        .into_iter()
        .flatten()
        {
            out.file.flush().map_err(|e| (out.path.clone(), e))?;
        }
        Ok(())
    }
}

impl EventSink for ValidateFiles {
    fn events(&mut self, batch: &[Event], _counters: &Counters) {
        if self.failed.is_some() {
            return;
        }
        let result = batch
            .iter()
            .try_for_each(|e| match e {
                Event::Checked(record) => self.write(record),
                _ => Ok(()),
            })
            .and_then(|()| self.flush());
        if let Err((path, e)) = result {
            let text = format!("writing {}: {e}", path.display());
            log_line(&format!("{text}; no more lines go to it"));
            self.failed = Some(text);
        }
    }

    fn finish(&mut self, _counters: &Counters) {
        let _ = self.flush();
    }
}

/// Most findings printed as log lines; the files hold them all.
pub const LOGGED_FINDINGS: u64 = 1000;

/// Log lines: each finding (up to [`LOGGED_FINDINGS`]) and a progress line now and then.
pub struct ValidateLog {
    dst_uuids: Vec<String>,
    totals: std::sync::Arc<ValidateTotals>,
    quiet: bool,
    logged: u64,
    suppressed: u64,
    every: Duration,
    last: Instant,
}

impl ValidateLog {
    pub fn new(
        dst_uuids: Vec<String>,
        totals: std::sync::Arc<ValidateTotals>,
        quiet: bool,
    ) -> ValidateLog {
        ValidateLog {
            dst_uuids,
            totals,
            quiet,
            logged: 0,
            suppressed: 0,
            every: Duration::from_secs(10),
            last: Instant::now(),
        }
    }
}

/// One finding in words.
pub fn describe(locator: &str, finding: &Finding, uuids: &[String]) -> String {
    let names = |servers: &[usize]| {
        servers
            .iter()
            .map(|&s| uuid(uuids, s))
            .collect::<Vec<_>>()
            .join(", ")
    };
    match finding {
        Finding::Missing => format!("{locator}: missing on the destination"),
        Finding::SizeMismatch { sizes } => format!(
            "{locator}: size mismatch: the destination lists this hash with size {}",
            sizes
                .iter()
                .map(u64::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Finding::UnderReplicated { have, want, class } => format!(
            "{locator}: under-replicated: {have} of {want} replicas{}",
            class
                .as_ref()
                .map(|c| format!(" in storage class {c}"))
                .unwrap_or_default()
        ),
        Finding::Misplaced { expected, holders } => format!(
            "{locator}: misplaced: on [{}], rendezvous order wants [{}]",
            names(holders),
            names(expected)
        ),
        Finding::Corrupt { server, detail } => format!(
            "{locator}: corrupt copy on {}: {detail}",
            uuid(uuids, *server)
        ),
        Finding::Unreadable { server, detail } => format!(
            "{locator}: could not read the copy on {}: {detail}",
            uuid(uuids, *server)
        ),
    }
}

impl EventSink for ValidateLog {
    fn events(&mut self, batch: &[Event], _counters: &Counters) {
        for event in batch {
            match event {
                Event::Checked(record) if record.verdict.is_problem() => {
                    let short = record.verdict.id.short();
                    for finding in &record.verdict.findings {
                        if self.logged < LOGGED_FINDINGS {
                            self.logged += 1;
                            log_line(&format!(
                                "ERROR: {}",
                                describe(short.as_str(), finding, &self.dst_uuids)
                            ));
                        } else {
                            self.suppressed += 1;
                        }
                    }
                }
                Event::Warning(text) => log_line(text),
                _ => {}
            }
        }
    }

    fn tick(&mut self, counters: &Counters) {
        if self.quiet || self.last.elapsed() < self.every {
            return;
        }
        self.last = Instant::now();
        let t = self.totals.snapshot();
        let c = counters.snapshot();
        log_line(&format!(
            "Validating: slice {} of {}, {} blocks checked, {} with problems, {} copies re-read ({})",
            c.slices_done,
            c.slices_total,
            t.checked_blocks,
            t.problem_blocks,
            t.verified_copies,
            human_bytes(t.verified_bytes)
        ));
    }

    fn finish(&mut self, _counters: &Counters) {
        if self.suppressed > 0 {
            log_line(&format!(
                "{} more findings were not logged (the -combined and -report files list every block)",
                self.suppressed
            ));
        }
    }
}

/// The closing summary line.
pub fn render(report: &ValidateReport, counters: &Counters) -> String {
    let t = &report.counts;
    let secs = report.elapsed.as_secs_f64().max(1e-9);
    let lines = counters.snapshot().index_lines;
    let kinds = FindingKind::ALL
        .iter()
        .map(|&k| format!("{} {}", k.as_str().replace('_', "-"), t.of(k)))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "Summary: {} blocks on src, {} fine on dst, {} with problems ({kinds}); {} only on dst; re-read {} copies of {} blocks ({}, {:.1} MB/s); {:.1}s, {:.0} index lines/s (io: {})",
        t.src_blocks,
        t.ok_blocks,
        t.problem_blocks,
        t.extra_blocks,
        t.verified_copies,
        t.reread_blocks,
        human_bytes(t.verified_bytes),
        t.verified_bytes as f64 / 1e6 / secs,
        secs,
        lines as f64 / secs,
        report.io_backend
    )
}

/// The `-json` document of a validation.
#[derive(Serialize)]
pub struct ValidateJson<'a> {
    pub keepmover_version: &'static str,
    pub command: &'static str,
    /// `done`, or why the run stopped early.
    pub outcome: String,
    pub exit_code: i32,
    pub elapsed_s: f64,
    pub io_backend: String,
    pub prefix: &'a str,
    /// `-shard I/N`, when given (so a plan's shards can be told apart).
    pub shard: Option<String>,
    /// `-size`, `-mtime`, `-locators` as given (empty: none).
    pub filters: String,
    pub wanted_replicas: u32,
    pub wanted_classes: &'a [String],
    pub reread: &'a str,
    /// Blocks per finding kind.
    pub findings: std::collections::BTreeMap<&'static str, u64>,
    pub totals: &'a crate::mover::validate::ValidateCounts,
    pub index_lines: u64,
    pub index_lines_per_s: f64,
    pub reread_mb_s: f64,
    pub slices: u64,
    pub peak_buffer_bytes: usize,
    /// The garbage-collection window (see `preflight`): what the command worked out.
    pub garbage_collection: serde_json::Value,
}

impl<'a> ValidateJson<'a> {
    /// The document for a finished run; `garbage_collection` is filled by the command.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        report: &'a ValidateReport,
        counters: &Counters,
        exit_code: i32,
        prefix: &'a str,
        wanted_replicas: u32,
        wanted_classes: &'a [String],
        reread: &'a str,
    ) -> ValidateJson<'a> {
        let secs = report.elapsed.as_secs_f64().max(1e-9);
        let lines = counters.snapshot().index_lines;
        ValidateJson {
            keepmover_version: env!("CARGO_PKG_VERSION"),
            command: "validate",
            outcome: report.stopped.map_or("done", |r| r.name()).to_string(),
            exit_code,
            elapsed_s: report.elapsed.as_secs_f64(),
            io_backend: report.io_backend.to_string(),
            prefix,
            shard: None,
            filters: String::new(),
            wanted_replicas,
            wanted_classes,
            reread,
            findings: FindingKind::ALL
                .iter()
                .map(|&k| (k.as_str(), report.counts.of(k)))
                .collect(),
            totals: &report.counts,
            index_lines: lines,
            index_lines_per_s: lines as f64 / secs,
            reread_mb_s: report.counts.verified_bytes as f64 / 1e6 / secs,
            slices: report.slices,
            peak_buffer_bytes: report.peak_buffer_bytes,
            garbage_collection: serde_json::Value::Null,
        }
    }

    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        let text = serde_json::to_string_pretty(self).map_err(std::io::Error::other)?;
        std::fs::write(path, text + "\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::placement::Verdict;
    use crate::keep::{BlockHash, BlockId};

    fn record(findings: Vec<Finding>, reread: bool) -> CheckRecord {
        CheckRecord {
            verdict: Verdict {
                id: BlockId::new(BlockHash([0xab; 16]), 3),
                extra: false,
                holders: vec![1],
                replicas: 1,
                wanted: 2,
                findings,
                oldest_mtime_ns: Some(7),
            },
            reread,
            verified_on: if reread { vec![1] } else { vec![] },
            attempts: 1,
        }
    }

    #[test]
    fn files_get_one_hash_size_per_line_by_kind() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = |n: &str| Some(dir.path().join(n));
        let paths = OutputPaths {
            missing: path("missing"),
            differ: path("differ"),
            error: path("error"),
            combined: path("combined"),
            report: path("report.jsonl"),
        };
        let mut sink =
            ValidateFiles::create(&paths, vec!["u0".into(), "u1".into()]).expect("create");
        let counters = Counters::default();
        let events = vec![
            Event::Checked(Box::new(record(vec![], true))),
            Event::Checked(Box::new(record(vec![Finding::Missing], false))),
            Event::Checked(Box::new(record(
                vec![Finding::Corrupt {
                    server: 1,
                    detail: "content MD5 is 00".into(),
                }],
                true,
            ))),
            Event::Checked(Box::new(record(
                vec![Finding::UnderReplicated {
                    have: 1,
                    want: 2,
                    class: None,
                }],
                false,
            ))),
        ];
        sink.events(&events, &counters);
        sink.finish(&counters);
        let read = |n: &str| std::fs::read_to_string(dir.path().join(n)).expect("read");
        let loc = format!("{}+3", "ab".repeat(16));
        assert_eq!(
            read("combined"),
            format!("= {loc}\n- {loc}\n* {loc}\n< {loc}\n")
        );
        assert_eq!(read("missing"), format!("{loc}\n"));
        assert_eq!(read("differ"), format!("{loc}\n"));
        assert_eq!(read("error"), "");
        let lines: Vec<serde_json::Value> = read("report.jsonl")
            .lines()
            .map(|l| serde_json::from_str(l).expect("json line"))
            .collect();
        let actions: Vec<&str> = lines
            .iter()
            .map(|l| l["action"].as_str().unwrap_or(""))
            .collect();
        assert_eq!(
            actions,
            vec!["verified", "missing", "corrupt", "under_replicated"]
        );
        assert_eq!(lines[2]["findings"][0]["server"], "u1");
        assert_eq!(lines[3]["findings"][0]["want"], 2);
    }
}
