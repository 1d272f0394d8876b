//! `keepmover pull`: the copy's flags (the rsync table) plus how pull lists are sent,
//! watched and given up on.

use std::sync::Arc;

use super::{fatal, parse_go_command, usage_error};
use crate::commands::pull::{self, PullArgs};
use crate::gocompat::flag::{flag, FlagKind, FlagSpec, ParsedFlags};
use crate::keep::wire::LIST_LIMIT;
use crate::mover::pull::PullPolicy;
use crate::mover::Control;

/// Flags `pull` adds to the copy's.
pub const PULL_EXTRA_FLAGS: &[FlagSpec] = &[
    flag("pull-patience", FlagKind::Duration, "30s", "keepmover pull: how long a destination keepstore's pull list may go without any of its blocks appearing in its index before what is still missing is sent again (doubles with each send)"),
    flag("pull-rounds", FlagKind::Int, "3", "keepmover pull: times a list's blocks are sent before they are given up (and copied through keepmover, see -pull-fallback)"),
    flag("pull-trial-timeout", FlagKind::Duration, "1m0s", "keepmover pull: how long the trial pull (one real block per destination keepstore, before its first list) may take to show in that keepstore's index"),
    flag("pull-list-limit", FlagKind::Int, "100000", "keepmover pull: most items in one pull list (keep-balance's BalancePullLimit; at most 100000)"),
    flag("pull-fallback", FlagKind::Bool, "true", "keepmover pull: copy blocks whose pulls keep failing through keepmover (false: report them as failed)"),
];

fn specs() -> Vec<FlagSpec> {
    super::RSYNC_FLAGS
        .iter()
        .chain(PULL_EXTRA_FLAGS)
        .cloned()
        .collect()
}

/// The pull policy from the flags.
pub fn pull_policy(parsed: &ParsedFlags) -> Result<PullPolicy, String> {
    Ok(PullPolicy {
        patience: parsed.duration("pull-patience", true)?,
        rounds: parsed.int_in("pull-rounds", 1..=100)?,
        trial_timeout: parsed.duration("pull-trial-timeout", true)?,
        list_limit: parsed.int_in("pull-list-limit", 1..=LIST_LIMIT as i64)?,
        fallback: parsed.is_true("pull-fallback"),
        ..PullPolicy::default()
    })
}

/// `keepmover pull ...`.
pub fn run_pull(program: &str, args: &[String]) -> i32 {
    let title = format!("{program} pull");
    let specs = specs();
    let parsed = match parse_go_command(program, &title, &specs, args) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let typed = (|| -> Result<PullArgs, String> {
        let copy = super::rsync_args(&parsed)?;
        if !copy.watch.is_zero() {
            return Err("-watch is not supported by pull (run pull again instead)".to_string());
        }
        Ok(PullArgs {
            copy,
            policy: pull_policy(&parsed)?,
        })
    })();
    let typed = match typed {
        Ok(t) => t,
        Err(message) => return usage_error(&message),
    };
    match pull::run(typed, Arc::new(Control::new())) {
        Ok(outcome) => outcome.code(),
        Err(e) => fatal(&e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gocompat::flag::parse;

    /// The flag table and `PullPolicy::default()` agree.
    #[test]
    fn help_defaults_are_the_defaults_the_code_uses() {
        let parsed = parse(&specs(), &[]).expect("no flags parse");
        let policy = pull_policy(&parsed).expect("defaults are valid");
        let want = PullPolicy::default();
        assert_eq!(policy.patience, want.patience);
        assert_eq!(policy.rounds, want.rounds);
        assert_eq!(policy.trial_timeout, want.trial_timeout);
        assert_eq!(policy.list_limit, want.list_limit);
        assert_eq!(policy.fallback, want.fallback);
        let args: Vec<String> = ["-pull-list-limit", "100001"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert!(pull_policy(&parse(&specs(), &args).expect("parses")).is_err());
        let args: Vec<String> = ["-pull-fallback=false"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert!(
            !pull_policy(&parse(&specs(), &args).expect("parses"))
                .expect("ok")
                .fallback
        );
    }
}
