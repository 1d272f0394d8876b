//! `keepmover report merge [-shards N] [-json FILE] FILE...`: its flags in Go syntax (flags
//! first, then the summary files, as Go's flag package reads them).

use super::{fatal, parse_go_command_with_operands, usage_error};
use crate::commands::report::{self, MergeArgs};
use crate::gocompat::flag::{flag, FlagKind, FlagSpec};
use crate::index::shard::MAX_SHARDS;

pub const MERGE_FLAGS: &[FlagSpec] = &[
    flag("shards", FlagKind::Int, "0", "keepmover report merge: how many shards the plan had (0 = as the summaries say); shards with no summary are reported missing"),
    flag("json", FlagKind::String, "", "keepmover report merge: also write the merged summary as JSON to this file"),
];

/// `keepmover report SUBCOMMAND ...`; `merge` is the one there is.
pub fn run_report(program: &str, args: &[String]) -> i32 {
    match args.first().map(String::as_str) {
        Some("merge") => run_merge(program, &args[1..]),
        Some(other) => usage_error(&format!(
            "unknown report subcommand {other:?}: expected merge"
        )),
        None => usage_error(
            "report needs a subcommand: report merge [-shards N] [-json FILE] SUMMARY.json...",
        ),
    }
}

fn run_merge(program: &str, args: &[String]) -> i32 {
    let title = format!("{program} report merge [flags] SUMMARY.json...");
    let parsed = match parse_go_command_with_operands(program, &title, MERGE_FLAGS, args) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let typed = (|| -> Result<MergeArgs, String> {
        if parsed.positional.is_empty() {
            return Err("report merge needs the shards' -json summary files".to_string());
        }
        // Go's parser stops at the first file: a flag after it would be taken for a file.
        if let Some(late) = parsed
            .positional
            .iter()
            .find(|a| a.starts_with('-') && a.len() > 1)
        {
            return Err(format!(
                "{late} after the files: flags go before the summary files"
            ));
        }
        let shards: u32 = parsed.int_in("shards", 0..=i64::from(MAX_SHARDS))?;
        Ok(MergeArgs {
            files: parsed.positional.iter().map(Into::into).collect(),
            shards: (shards > 0).then_some(shards),
            json: parsed.non_empty("json").map(Into::into),
        })
    })();
    let typed = match typed {
        Ok(t) => t,
        Err(message) => return usage_error(&message),
    };
    match report::merge(&typed) {
        Ok(outcome) => outcome.code(),
        Err(e) => fatal(&e.to_string()),
    }
}
