//! `keepmover report merge`: the `-json` summaries of one plan's shards, added up into one
//! view of the whole migration, and the shards that did not finish. The scheduler (a
//! Kubernetes Indexed Job, a Slurm array) ran the shards; this is where an operator learns
//! whether all of them were done: every counter summed (generically, so a counter added
//! later is summed too), request errors by kind and by server, the longest shard's time
//! and the throughput of all shards together, and the shards missing (no summary) or failed
//! (a non-zero exit code, or an outcome other than `done`).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::human_bytes;
use crate::index::shard::Shard;

#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    #[error("no summary files given")]
    NoFiles,
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not a keepmover -json summary: {detail}")]
    Malformed { path: PathBuf, detail: String },
    #[error("{path} is shard {shard}, but {why}")]
    ShardCount {
        path: PathBuf,
        shard: String,
        why: String,
    },
    #[error("shard {shard} appears twice: in {first} and in {second} (its counters would be added twice)")]
    DuplicateShard {
        shard: String,
        first: PathBuf,
        second: PathBuf,
    },
    #[error("{path} is from `{command}`, but {first} is from `{first_command}`: merge the summaries of one plan")]
    MixedCommands {
        path: PathBuf,
        command: String,
        first: PathBuf,
        first_command: String,
    },
}

/// The fields of a `-json` summary that a merge reads.
#[derive(Deserialize)]
struct Document {
    command: String,
    /// Absent in summaries of unsharded runs from before the field existed.
    #[serde(default)]
    shard: Option<String>,
    outcome: String,
    exit_code: i64,
    elapsed_s: f64,
    plan: BTreeMap<String, serde_json::Value>,
    totals: BTreeMap<String, serde_json::Value>,
    #[serde(default)]
    unsettled_blocks: u64,
    #[serde(default)]
    errors: Vec<ErrorCount>,
    #[serde(default)]
    peak_buffer_bytes: u64,
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
pub struct ErrorCount {
    pub server: String,
    pub kind: String,
    pub count: u64,
}

/// One shard's summary, read and checked.
#[derive(Clone, Debug)]
pub struct ShardSummary {
    pub path: PathBuf,
    /// `0/1` for an unsharded run.
    pub shard: Shard,
    pub command: String,
    pub outcome: String,
    pub exit_code: i64,
    pub elapsed_s: f64,
    pub plan: BTreeMap<String, u64>,
    pub totals: BTreeMap<String, u64>,
    pub unsettled_blocks: u64,
    pub errors: Vec<ErrorCount>,
    pub peak_buffer_bytes: u64,
}

impl ShardSummary {
    /// Whether the shard did its whole part: exit code 0 and outcome `done`.
    pub fn succeeded(&self) -> bool {
        self.exit_code == 0 && self.outcome == "done"
    }
}

/// The numbers of a counters object; `null` (a figure that does not apply) is left out,
/// anything else that is not a count is an error naming the field.
fn counts(
    path: &Path,
    section: &str,
    values: BTreeMap<String, serde_json::Value>,
) -> Result<BTreeMap<String, u64>, MergeError> {
    let mut out = BTreeMap::new();
    for (name, value) in values {
        if value.is_null() {
            continue;
        }
        let count = value.as_u64().ok_or_else(|| MergeError::Malformed {
            path: path.to_path_buf(),
            detail: format!("{section}.{name} is {value}, not a count"),
        })?;
        out.insert(name, count);
    }
    Ok(out)
}

/// Parses one summary document (`text` read from `path`).
pub fn parse(path: &Path, text: &str) -> Result<ShardSummary, MergeError> {
    let malformed = |detail: String| MergeError::Malformed {
        path: path.to_path_buf(),
        detail,
    };
    let doc: Document = serde_json::from_str(text).map_err(|e| malformed(e.to_string()))?;
    let shard = match doc.shard.as_deref() {
        None => Shard { index: 0, count: 1 },
        Some(text) => {
            Shard::parse(text, &|_| None).map_err(|e| malformed(format!("shard {text:?}: {e}")))?
        }
    };
    if !doc.elapsed_s.is_finite() || doc.elapsed_s < 0.0 {
        return Err(malformed(format!(
            "elapsed_s is {}, not a duration",
            doc.elapsed_s
        )));
    }
    Ok(ShardSummary {
        path: path.to_path_buf(),
        shard,
        command: doc.command,
        outcome: doc.outcome,
        exit_code: doc.exit_code,
        elapsed_s: doc.elapsed_s,
        plan: counts(path, "plan", doc.plan)?,
        totals: counts(path, "totals", doc.totals)?,
        unsettled_blocks: doc.unsettled_blocks,
        errors: doc.errors,
        peak_buffer_bytes: doc.peak_buffer_bytes,
    })
}

/// Reads and parses one summary file.
pub fn read(path: &Path) -> Result<ShardSummary, MergeError> {
    let text = std::fs::read_to_string(path).map_err(|source| MergeError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse(path, &text)
}

/// A shard that ran but did not finish its part.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct FailedShard {
    pub shard: String,
    pub index: u32,
    pub file: PathBuf,
    pub outcome: String,
    pub exit_code: i64,
}

/// The shards of a merge.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Shards {
    pub count: u32,
    pub seen: Vec<u32>,
    pub missing: Vec<u32>,
    pub failed: Vec<FailedShard>,
}

/// The merged view.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Merged {
    /// The command the shards ran (`copy`, `move`, ...).
    pub of_command: String,
    pub shards: Shards,
    pub files: Vec<PathBuf>,
    /// The longest shard's time.
    pub elapsed_s: f64,
    /// Copied bytes of all shards over the longest shard's time: the rate of the whole
    /// migration when the shards ran at the same time.
    pub throughput_mb_s: f64,
    pub plan: BTreeMap<String, u64>,
    pub totals: BTreeMap<String, u64>,
    pub unsettled_blocks: u64,
    /// The largest of the shards' peak buffer use (each shard is its own host).
    pub peak_buffer_bytes_max: u64,
    pub errors_by_kind: BTreeMap<String, u64>,
    pub errors: Vec<ErrorCount>,
}

fn add_all(into: &mut BTreeMap<String, u64>, from: &BTreeMap<String, u64>) {
    for (name, value) in from {
        let slot = into.entry(name.clone()).or_insert(0);
        *slot = slot.saturating_add(*value);
    }
}

/// Adds up `summaries`. The shard count is `expected` (`-shards N`) or the one the files
/// carry; every file must be of that count, and each shard may appear once.
pub fn merge(summaries: &[ShardSummary], expected: Option<u32>) -> Result<Merged, MergeError> {
    let first = summaries.first().ok_or(MergeError::NoFiles)?;
    let count = expected.unwrap_or(first.shard.count);
    let mut by_index: BTreeMap<u32, &ShardSummary> = BTreeMap::new();
    let mut merged = Merged {
        of_command: first.command.clone(),
        shards: Shards {
            count,
            seen: Vec::new(),
            missing: Vec::new(),
            failed: Vec::new(),
        },
        files: Vec::new(),
        elapsed_s: 0.0,
        throughput_mb_s: 0.0,
        plan: BTreeMap::new(),
        totals: BTreeMap::new(),
        unsettled_blocks: 0,
        peak_buffer_bytes_max: 0,
        errors_by_kind: BTreeMap::new(),
        errors: Vec::new(),
    };
    let mut errors: BTreeMap<(String, String), u64> = BTreeMap::new();
    for summary in summaries {
        if summary.command != first.command {
            return Err(MergeError::MixedCommands {
                path: summary.path.clone(),
                command: summary.command.clone(),
                first: first.path.clone(),
                first_command: first.command.clone(),
            });
        }
        if summary.shard.count != count {
            let why = match expected {
                Some(n) => format!("-shards is {n}"),
                None => format!(
                    "{} is shard {}: merge the summaries of one split",
                    first.path.display(),
                    first.shard
                ),
            };
            return Err(MergeError::ShardCount {
                path: summary.path.clone(),
                shard: summary.shard.to_string(),
                why,
            });
        }
        if let Some(earlier) = by_index.insert(summary.shard.index, summary) {
            return Err(MergeError::DuplicateShard {
                shard: summary.shard.to_string(),
                first: earlier.path.clone(),
                second: summary.path.clone(),
            });
        }
        merged.files.push(summary.path.clone());
        add_all(&mut merged.plan, &summary.plan);
        add_all(&mut merged.totals, &summary.totals);
        merged.unsettled_blocks = merged
            .unsettled_blocks
            .saturating_add(summary.unsettled_blocks);
        merged.elapsed_s = merged.elapsed_s.max(summary.elapsed_s);
        merged.peak_buffer_bytes_max = merged.peak_buffer_bytes_max.max(summary.peak_buffer_bytes);
        for e in &summary.errors {
            let slot = errors
                .entry((e.server.clone(), e.kind.clone()))
                .or_insert(0);
            *slot = slot.saturating_add(e.count);
            let slot = merged.errors_by_kind.entry(e.kind.clone()).or_insert(0);
            *slot = slot.saturating_add(e.count);
        }
    }
    merged.errors = errors
        .into_iter()
        .map(|((server, kind), count)| ErrorCount {
            server,
            kind,
            count,
        })
        .collect();
    let seen: BTreeSet<u32> = by_index.keys().copied().collect();
    merged.shards.seen = seen.iter().copied().collect();
    merged.shards.missing = (0..count).filter(|i| !seen.contains(i)).collect();
    merged.shards.failed = by_index
        .values()
        .filter(|s| !s.succeeded())
        .map(|s| FailedShard {
            shard: s.shard.to_string(),
            index: s.shard.index,
            file: s.path.clone(),
            outcome: s.outcome.clone(),
            exit_code: s.exit_code,
        })
        .collect();
    let copied = merged.totals.get("copied_bytes").copied().unwrap_or(0);
    merged.throughput_mb_s = copied as f64 / 1e6 / merged.elapsed_s.max(1e-9);
    Ok(merged)
}

/// `0-3,7,9-12`: indices as ranges.
pub fn ranges(indices: &[u32]) -> String {
    let mut out = String::new();
    let mut i = 0;
    while i < indices.len() {
        let start = indices[i];
        let mut end = start;
        while i + 1 < indices.len() && indices[i + 1] == end + 1 {
            i += 1;
            end = indices[i];
        }
        if !out.is_empty() {
            out.push(',');
        }
        if start == end {
            let _ = write!(out, "{start}");
        } else {
            let _ = write!(out, "{start}-{end}");
        }
        i += 1;
    }
    out
}

impl Merged {
    /// Every shard seen, and none failed.
    pub fn complete(&self) -> bool {
        self.shards.missing.is_empty() && self.shards.failed.is_empty()
    }

    /// The human summary, several lines.
    pub fn render(&self) -> String {
        let t = |name: &str| self.totals.get(name).copied().unwrap_or(0);
        let mut out = String::new();
        let _ = writeln!(
            out,
            "Merged {} summaries of {}: {} of {} shards seen.",
            self.files.len(),
            self.of_command,
            self.shards.seen.len(),
            self.shards.count
        );
        let _ = writeln!(
            out,
            "Totals: copied {} blocks ({}), skipped {} already present, failed {} ({}), re-fetched {} after bad replicas, {} retried errors, {} not settled.",
            t("copied_blocks"),
            human_bytes(t("copied_bytes")),
            t("skipped_blocks"),
            t("failed_blocks"),
            human_bytes(t("failed_bytes")),
            t("refetched_blocks"),
            t("retried_errors"),
            self.unsettled_blocks
        );
        let _ = writeln!(
            out,
            "Time: {:.1}s (the longest shard); {:.1} MB/s with the shards running together.",
            self.elapsed_s, self.throughput_mb_s
        );
        let kinds: Vec<String> = self
            .errors_by_kind
            .iter()
            .map(|(kind, n)| format!("{kind} {n}"))
            .collect();
        let _ = writeln!(
            out,
            "Request errors by kind: {}.",
            if kinds.is_empty() {
                "none".to_string()
            } else {
                kinds.join(", ")
            }
        );
        if !self.shards.missing.is_empty() {
            let _ = writeln!(
                out,
                "Missing shards ({} of {}, no summary): {}",
                self.shards.missing.len(),
                self.shards.count,
                ranges(&self.shards.missing)
            );
        }
        for f in &self.shards.failed {
            let _ = writeln!(
                out,
                "Failed shard {} ({}): outcome {}, exit code {}",
                f.shard,
                f.file.display(),
                f.outcome,
                f.exit_code
            );
        }
        if self.complete() {
            let _ = writeln!(out, "All {} shards done.", self.shards.count);
        } else {
            let mut rerun: Vec<u32> = self.shards.missing.clone();
            rerun.extend(self.shards.failed.iter().map(|f| f.index));
            rerun.sort_unstable();
            let _ = writeln!(
                out,
                "Not complete: rerun shards {} (Slurm: sbatch --array={} SCRIPT; each resumes from its checkpoint), then merge again.",
                ranges(&rerun),
                ranges(&rerun)
            );
        }
        out
    }

    /// The merged `-json` document; `exit_code` is what `report merge` exits with.
    pub fn to_json(&self, exit_code: i32) -> serde_json::Value {
        let mut doc = serde_json::json!({
            "keepmover_version": env!("CARGO_PKG_VERSION"),
            "command": "report merge",
            "outcome": if self.complete() { "complete" } else { "incomplete" },
            "exit_code": exit_code,
        });
        if let (Some(doc), Ok(serde_json::Value::Object(fields))) =
            (doc.as_object_mut(), serde_json::to_value(self))
        {
            doc.extend(fields);
        }
        doc
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(shard: &str, copied: u64, exit_code: i64) -> String {
        serde_json::json!({
            "command": "copy", "shard": shard, "outcome": "done", "exit_code": exit_code,
            "elapsed_s": copied as f64, "plan": {"to_copy_blocks": copied, "estimated_from_slices": null},
            "totals": {"copied_blocks": copied, "copied_bytes": copied * 10, "new_counter": 1},
            "errors": [{"server": "a", "kind": "timeout", "count": 2}],
            "extra": null,
        })
        .to_string()
    }

    fn parsed(name: &str, text: &str) -> ShardSummary {
        parse(Path::new(name), text).expect("parses")
    }

    #[test]
    fn sums_every_counter_and_finds_missing_and_failed() {
        let all = [
            parsed("s0", &summary("0/4", 3, 0)),
            parsed("s2", &summary("2/4", 5, 1)),
        ];
        let m = merge(&all, None).expect("merges");
        assert_eq!(m.totals["copied_blocks"], 8);
        assert_eq!(m.totals["new_counter"], 2);
        assert_eq!(m.plan["to_copy_blocks"], 8);
        assert!(!m.plan.contains_key("estimated_from_slices"));
        assert_eq!(m.errors_by_kind["timeout"], 4);
        assert_eq!(m.elapsed_s, 5.0);
        assert_eq!(m.shards.missing, vec![1, 3]);
        assert_eq!(m.shards.failed.len(), 1);
        assert_eq!(m.shards.failed[0].shard, "2/4");
        assert!(!m.complete());
        let text = m.render();
        assert!(
            text.contains("Missing shards (2 of 4, no summary): 1,3"),
            "{text}"
        );
        assert_eq!(m.to_json(1)["outcome"], "incomplete");
    }

    #[test]
    fn refuses_what_cannot_be_added_up() {
        let a = parsed("a", &summary("0/2", 1, 0));
        assert!(matches!(
            merge(&[a.clone(), parsed("b", &summary("0/2", 1, 0))], None),
            Err(MergeError::DuplicateShard { .. })
        ));
        assert!(matches!(
            merge(&[a.clone(), parsed("c", &summary("1/3", 1, 0))], None),
            Err(MergeError::ShardCount { .. })
        ));
        assert!(matches!(
            merge(std::slice::from_ref(&a), Some(3)),
            Err(MergeError::ShardCount { .. })
        ));
        assert!(matches!(merge(&[], None), Err(MergeError::NoFiles)));
        let err = parse(Path::new("bad.json"), "{\"command\": 1}").expect_err("malformed");
        assert!(
            err.to_string()
                .starts_with("bad.json: not a keepmover -json summary"),
            "{err}"
        );
        let negative = summary("0/2", 1, 0).replace("\"new_counter\":1", "\"new_counter\":-1");
        let err = parse(Path::new("neg.json"), &negative).expect_err("negative");
        assert!(
            err.to_string().contains("totals.new_counter is -1"),
            "{err}"
        );
        let err = parse(Path::new("s.json"), &summary("2/2", 1, 0)).expect_err("bad shard");
        assert!(err.to_string().contains("shard \"2/2\""), "{err}");
    }

    #[test]
    fn index_ranges() {
        assert_eq!(ranges(&[0, 1, 2, 3, 7, 9, 10]), "0-3,7,9-10");
        assert_eq!(ranges(&[]), "");
    }
}
