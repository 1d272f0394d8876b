//! `keepmover report merge FILE...`: reads the `-json` summaries that a plan's shards
//! wrote, adds them up (`report::merge`), prints the merged view and writes it as JSON, and
//! says by its exit code whether the migration is whole: 0 when every shard is there and
//! done, 1 when one is missing or failed (the exit table's "anything not right").

use std::path::PathBuf;

use crate::exit::Outcome;
use crate::report::merge::{self, MergeError};

/// `report merge`'s options, typed. Built by `cli`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MergeArgs {
    pub files: Vec<PathBuf>,
    /// `-shards N`; `None` = the count the files carry.
    pub shards: Option<u32>,
    pub json: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error(transparent)]
    Merge(#[from] MergeError),
    #[error("writing {path}: {source}")]
    Output {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Merges, prints the summary on stdout, writes `-json`; the outcome counts the shards
/// missing or failed as problems.
pub fn merge(args: &MergeArgs) -> Result<Outcome, ReportError> {
    let summaries = args
        .files
        .iter()
        .map(|path| merge::read(path))
        .collect::<Result<Vec<_>, _>>()?;
    let merged = merge::merge(&summaries, args.shards)?;
    let outcome = Outcome {
        stopped: None,
        problems: (merged.shards.missing.len() + merged.shards.failed.len()) as u64,
    };
    print!("{}", merged.render());
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&merged.to_json(outcome.code()))
            .map_err(std::io::Error::other)
            .and_then(|text| std::fs::write(path, text + "\n"));
        text.map_err(|source| ReportError::Output {
            path: path.clone(),
            source,
        })?;
    }
    Ok(outcome)
}
