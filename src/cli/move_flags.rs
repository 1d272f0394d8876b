//! `keepmover move` and `keepmover vacate`: the copy's flags (the rsync table) plus how long
//! to wait for the source keepstores to carry out a trash list.

use std::sync::Arc;

use super::{fatal, parse_go_command, usage_error};
use crate::commands::moves::{self, MoveArgs};
use crate::gocompat::flag::{flag, FlagKind, FlagSpec};
use crate::mover::Control;

/// Flags `move` and `vacate` add to the copy's.
pub const MOVE_EXTRA_FLAGS: &[FlagSpec] = &[flag(
    "trash-patience",
    FlagKind::Duration,
    "1m0s",
    "keepmover move/vacate: how long to keep re-reading a source index to confirm one trash list was carried out before reporting what is still there",
)];

fn specs() -> Vec<FlagSpec> {
    super::RSYNC_FLAGS
        .iter()
        .chain(MOVE_EXTRA_FLAGS)
        .cloned()
        .collect()
}

/// `keepmover move ...` (`vacate` = false) or `keepmover vacate ...`.
pub fn run_move(program: &str, args: &[String], vacate: bool) -> i32 {
    let name = if vacate { "vacate" } else { "move" };
    let title = format!("{program} {name}");
    let specs = specs();
    let parsed = match parse_go_command(program, &title, &specs, args) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let typed = (|| -> Result<MoveArgs, String> {
        let copy = super::rsync_args(&parsed)?;
        if vacate && !copy.dst.is_empty() && copy.dst != copy.src {
            return Err(
                "vacate works inside one cluster: give -src (and -src-services), not another -dst"
                    .to_string(),
            );
        }
        Ok(MoveArgs {
            copy,
            trash_patience: parsed.duration("trash-patience", true)?,
            vacate,
        })
    })();
    let typed = match typed {
        Ok(t) => t,
        Err(message) => return usage_error(&message),
    };
    match moves::run(typed, Arc::new(Control::new())) {
        Ok(outcome) => outcome.code(),
        Err(e) => fatal(&e.to_string()),
    }
}
