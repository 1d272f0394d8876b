//! `keepmover plan -slurm`: an sbatch script for a job array with one task per shard. Each
//! task runs the copy with `-shard auto/N` (keepmover reads `SLURM_ARRAY_TASK_ID`) and keeps
//! its checkpoint, block report and summary in the state directory, named by its task id,
//! so a requeued or resubmitted task resumes. Settings files are read on the compute nodes
//! (from `-settings-dir`, or `-src`/`-dst` as given); the script holds no token.

use std::fmt::Write as _;

use super::{
    memory_mib, one_line, settings_name, shard_flags, Plan, PlanArgs, PlanError, SlurmArgs,
};

/// Slurm's default `MaxArraySize`: array indices must be below it.
const SLURM_DEFAULT_MAX_ARRAY_SIZE: u32 = 1001;

/// `text` as one shell word: as it is when it holds only characters no shell treats
/// specially, else in single quotes (a `'` inside as `'\''`).
pub fn shell_word(text: &str) -> String {
    let plain = !text.is_empty()
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./:=,+@%".contains(&b));
    if plain {
        text.to_string()
    } else {
        format!("'{}'", text.replace('\'', "'\\''"))
    }
}

fn settings_arg(value: &str, dir: Option<&str>) -> String {
    match dir {
        Some(dir) => format!(
            "{}/{}.conf",
            dir.trim_end_matches('/'),
            settings_name(value)
        ),
        None => value.to_string(),
    }
}

pub fn render(args: &PlanArgs, slurm: &SlurmArgs) -> Result<Plan, PlanError> {
    let n = args.shards;
    if slurm.state_dir.is_empty() {
        return Err(PlanError::Name {
            flag: "-state-dir",
            value: String::new(),
            why: "the array's tasks need a directory for their checkpoints and summaries"
                .to_string(),
        });
    }
    let dir = slurm.settings_dir.as_deref();
    let mut warnings = Vec::new();
    let mut text = String::from("#!/bin/bash\n");
    let header = [
        format!(
            "keepmover plan {}: copy {} to {} in {n} shards as a Slurm job array;",
            env!("CARGO_PKG_VERSION"),
            args.src,
            args.dst
        ),
        format!(
            "task I copies shard I/{n} and keeps ck-I, report-I.jsonl and summary-I.json in {}.",
            slurm.state_dir
        ),
        match dir {
            Some(d) => format!("The settings files (tokens) are read on the compute nodes from {d}; none is in this script."),
            None => "The settings files (tokens) are read on the compute nodes as -src/-dst name them; none is in this script.".to_string(),
        },
        "Submit with: sbatch THIS_FILE (keepmover must be on the nodes' PATH); afterwards:".to_string(),
        format!(
            "  keepmover report merge -shards {n} {}/summary-*.json",
            slurm.state_dir
        ),
    ];
    for line in header {
        let _ = writeln!(text, "# {}", one_line(&line));
    }
    let throttle = if args.parallelism < n {
        format!("%{}", args.parallelism)
    } else {
        String::new()
    };
    let _ = writeln!(text, "#SBATCH --job-name={}", args.name);
    let _ = writeln!(text, "#SBATCH --array=0-{}{throttle}", n - 1);
    let _ = writeln!(text, "#SBATCH --ntasks=1");
    let _ = writeln!(text, "#SBATCH --cpus-per-task={}", args.cpus);
    let _ = writeln!(text, "#SBATCH --mem={}M", memory_mib(args));
    text.push_str("set -euo pipefail\n");
    let _ = writeln!(text, "state={}", shell_word(&slurm.state_dir));
    text.push_str("mkdir -p \"$state\"\n");
    let mut words = vec![
        "exec keepmover".to_string(),
        format!("-src {}", shell_word(&settings_arg(&args.src, dir))),
        format!("-dst {}", shell_word(&settings_arg(&args.dst, dir))),
    ];
    // The per-shard flags, with the state directory and the task id left to the shell.
    for pair in shard_flags(n, "$state", "$SLURM_ARRAY_TASK_ID").chunks(2) {
        if let [flag, value] = pair {
            let value = if value.starts_with('$') {
                format!("\"{value}\"")
            } else {
                value.clone()
            };
            words.push(format!("{flag} {value}"));
        }
    }
    for pass in &args.copy_flags {
        let pieces: Vec<String> = pass.argv().iter().map(|p| shell_word(p)).collect();
        words.push(pieces.join(" "));
    }
    text.push_str(&words.join(" \\\n  "));
    text.push('\n');
    if n > SLURM_DEFAULT_MAX_ARRAY_SIZE {
        warnings.push(format!(
            "an array of {n} tasks needs MaxArraySize of at least {n} in slurm.conf (Slurm's default is {SLURM_DEFAULT_MAX_ARRAY_SIZE}, indices 0..{})",
            SLURM_DEFAULT_MAX_ARRAY_SIZE - 1
        ));
    }
    Ok(Plan { text, warnings })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_words() {
        assert_eq!(shell_word("1MiB.."), "1MiB..");
        assert_eq!(shell_word("a b"), "'a b'");
        assert_eq!(shell_word("it's"), "'it'\\''s'");
        assert_eq!(shell_word("$HOME"), "'$HOME'");
        assert_eq!(shell_word(""), "''");
    }
}
