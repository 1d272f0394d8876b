//! `keepmover plan`: the copy's flags (the rsync table) plus the plan's own, in the same Go
//! syntax. The copy's flags given to `plan` are validated exactly as the copy would (so a
//! typo fails here, not in a thousand pods) and passed through unchanged to every shard;
//! the per-shard ones (`-shard`, `-checkpoint`, `-report`, `-json`) are the plan's to set.

use super::{parse_go_command, usage_error};
use crate::commands::plan::{self, KubernetesArgs, PassFlag, PlanArgs, SlurmArgs, Target};
use crate::gocompat::flag::{flag, invalid, FlagKind, FlagSpec, ParsedFlags};
use crate::index::shard::MAX_SHARDS;
use crate::report::log_line;

/// The default image: this version's, as the README's `docker build -t` names it.
pub const DEFAULT_IMAGE: &str = concat!("keepmover:", env!("CARGO_PKG_VERSION"));

/// Flags `plan` adds to the copy's.
pub const PLAN_FLAGS: &[FlagSpec] = &[
    flag("shards", FlagKind::Int, "0", "keepmover plan: how many shards (hash ranges) to split the job into, 1..65536; one pod or array task each"),
    flag("k8s", FlagKind::Bool, "false", "keepmover plan: print a Kubernetes Indexed Job"),
    flag("slurm", FlagKind::Bool, "false", "keepmover plan: print an sbatch script for a Slurm job array"),
    flag("parallelism", FlagKind::Int, "0", "keepmover plan: most shards running at once (0 = min(shards, 16))"),
    flag("name", FlagKind::String, "keepmover", "keepmover plan: the Job's name / the array's job name"),
    flag("cpus", FlagKind::Int, "2", "keepmover plan: CPUs per shard (request and limit; Slurm --cpus-per-task); -workers defaults to one per two of them"),
    flag("memory-headroom", FlagKind::String, "256MiB", "keepmover plan: memory per shard beyond -memory's buffers (an index slice, TLS, the allocator)"),
    flag("image", FlagKind::String, DEFAULT_IMAGE, "keepmover plan -k8s: the container image"),
    flag("namespace", FlagKind::String, "", "keepmover plan -k8s: the Job's namespace (default: kubectl's current one)"),
    flag("pvc", FlagKind::String, "", "keepmover plan -k8s: PersistentVolumeClaim mounted at /state for checkpoints, reports and summaries (ReadWriteMany for pods on several nodes); without it an emptyDir, lost with each pod"),
    flag("backoff-limit-per-index", FlagKind::Int, "3", "keepmover plan -k8s: retries of one shard's pod before that shard is marked failed"),
    flag("src-secret", FlagKind::String, "", "keepmover plan -k8s: Secret holding the source settings file NAME.conf (default keepmover-NAME)"),
    flag("dst-secret", FlagKind::String, "", "keepmover plan -k8s: Secret holding the destination settings file NAME.conf (default keepmover-NAME)"),
    flag("settings-dir", FlagKind::String, "", "keepmover plan -slurm: directory holding NAME.conf on the compute nodes (default: -src and -dst as given)"),
    flag("state-dir", FlagKind::String, "keepmover-state", "keepmover plan -slurm: directory (shared by the nodes) for checkpoints, reports and summaries; relative to the submit directory"),
];

/// Copy flags the plan sets per shard.
const PER_SHARD: [&str; 4] = ["shard", "checkpoint", "report", "json"];
/// Plan flags that belong to one scheduler.
const K8S_ONLY: [&str; 6] = [
    "image",
    "namespace",
    "pvc",
    "backoff-limit-per-index",
    "src-secret",
    "dst-secret",
];
const SLURM_ONLY: [&str; 2] = ["settings-dir", "state-dir"];

fn specs() -> Vec<FlagSpec> {
    super::RSYNC_FLAGS
        .iter()
        .chain(PLAN_FLAGS)
        .cloned()
        .collect()
}

/// `keepmover plan ...`: the manifest on stdout, warnings on stderr.
pub fn run_plan(program: &str, args: &[String]) -> i32 {
    let specs = specs();
    let parsed = match parse_go_command(program, &format!("{program} plan"), &specs, args) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let typed = match plan_args(&parsed) {
        Ok(t) => t,
        Err(message) => return usage_error(&message),
    };
    for warning in &typed.1 {
        log_line(&format!("warning: {warning}"));
    }
    match plan::render(&typed.0) {
        Ok(plan) => {
            for warning in &plan.warnings {
                log_line(&format!("warning: {warning}"));
            }
            print!("{}", plan.text);
            crate::exit::SUCCESS
        }
        Err(e) => usage_error(&e.to_string()),
    }
}

/// The copy flags given on the command line, in the table's order, as they will be passed
/// to every shard.
fn pass_through(parsed: &ParsedFlags) -> Vec<PassFlag> {
    super::RSYNC_FLAGS
        .iter()
        .filter(|spec| !matches!(spec.name, "src" | "dst" | "version"))
        .filter_map(|spec| {
            let value = parsed.values.get(spec.name)?;
            Some(if spec.kind == FlagKind::Bool {
                PassFlag {
                    flag: format!("-{}={value}", spec.name),
                    value: None,
                }
            } else {
                PassFlag {
                    flag: format!("-{}", spec.name),
                    value: Some(value.clone()),
                }
            })
        })
        .collect()
}

/// The typed plan and warnings about files the shards must find themselves.
pub fn plan_args(parsed: &ParsedFlags) -> Result<(PlanArgs, Vec<String>), String> {
    let k8s = parsed.is_true("k8s");
    let slurm = parsed.is_true("slurm");
    if k8s == slurm {
        return Err(
            "plan needs one of -k8s (a Kubernetes Indexed Job) or -slurm (an sbatch array script)"
                .to_string(),
        );
    }
    for (only, target, other) in [
        (&K8S_ONLY[..], "-k8s", slurm),
        (&SLURM_ONLY[..], "-slurm", k8s),
    ] {
        if let Some(name) = only.iter().find(|name| other && parsed.is_set(name)) {
            return Err(format!("-{name} applies to plan {target} only"));
        }
    }
    if !parsed.is_set("shards") {
        return Err(format!(
            "plan needs -shards N, the number of shards (1..{MAX_SHARDS})"
        ));
    }
    let shards: u32 = parsed.int_in("shards", 1..=i64::from(MAX_SHARDS))?;
    let (src, dst) = (parsed.text("src"), parsed.text("dst"));
    if src.is_empty() || dst.is_empty() {
        return Err(
            "plan needs -src and -dst (settings file NAME or path for each cluster)".to_string(),
        );
    }
    if let Some(name) = PER_SHARD.iter().find(|name| parsed.is_set(name)) {
        return Err(format!(
            "-{name} is set by the plan for each shard (-shard auto/N, -checkpoint, -report and -json under the state directory); leave it out"
        ));
    }
    // The copy's flags, checked as the copy checks them.
    let copy = super::rsync_args(parsed)?;
    if !copy.watch.is_zero() {
        return Err("-watch makes each shard run until stopped, so its pod or task never completes and its summaries are per pass (summary-I.json.pass-N), which report merge does not read; schedule the plan again instead".to_string());
    }
    let mut warnings = Vec::new();
    if let Some(list) = &copy.select.locators {
        if list == "-" {
            return Err(invalid(
                "locators",
                list,
                "a shard has no standard input; give a file the shards can read",
            ));
        }
        warnings.push(format!("-locators {list}: every shard reads this file, so it must exist at that path inside the pods or on the compute nodes"));
    }
    for side in ["src-keep-services-json", "dst-keep-services-json"] {
        if let Some(value) = parsed.non_empty(side) {
            if !value.trim_start().starts_with(['{', '[']) {
                warnings.push(format!("-{side} {value}: every shard reads this file, so it must exist at that path inside the pods or on the compute nodes"));
            }
        }
    }
    let parallelism: u32 = match parsed.int_in::<u32>("parallelism", 0..=i64::from(MAX_SHARDS))? {
        0 => shards.min(16),
        p => p,
    };
    let headroom_text = parsed.text("memory-headroom");
    let headroom = super::parse_byte_size(headroom_text).ok_or_else(|| {
        invalid(
            "memory-headroom",
            headroom_text,
            "expected a size such as 256MiB",
        )
    })?;
    let target = if k8s {
        Target::Kubernetes(KubernetesArgs {
            image: parsed
                .non_empty("image")
                .ok_or_else(|| invalid("image", "", "expected an image reference"))?
                .to_string(),
            namespace: parsed.text("namespace").to_string(),
            pvc: parsed.non_empty("pvc").map(str::to_string),
            backoff_limit_per_index: parsed.int_in("backoff-limit-per-index", 0..=1000)?,
            src_secret: parsed.text("src-secret").to_string(),
            dst_secret: parsed.text("dst-secret").to_string(),
        })
    } else {
        Target::Slurm(SlurmArgs {
            settings_dir: parsed.non_empty("settings-dir").map(str::to_string),
            state_dir: parsed.text("state-dir").to_string(),
        })
    };
    Ok((
        PlanArgs {
            src: src.to_string(),
            dst: dst.to_string(),
            shards,
            parallelism,
            name: parsed.text("name").to_string(),
            copy_flags: pass_through(parsed),
            memory: copy.engine.memory_budget as u64,
            headroom,
            cpus: parsed.int_in("cpus", 1..=1024)?,
            target,
        },
        warnings,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::VERSION;
    use crate::gocompat::flag::parse;

    fn plan(list: &[&str]) -> Result<(PlanArgs, Vec<String>), String> {
        let owned: Vec<String> = list.iter().map(|s| s.to_string()).collect();
        plan_args(&parse(&specs(), &owned).expect("parses"))
    }

    #[test]
    fn the_flag_tables_do_not_collide() {
        for spec in PLAN_FLAGS {
            assert!(
                !super::super::RSYNC_FLAGS
                    .iter()
                    .any(|r| r.name == spec.name),
                "-{} is both a copy flag and a plan flag",
                spec.name
            );
        }
        assert_eq!(DEFAULT_IMAGE, format!("keepmover:{VERSION}"));
    }

    #[test]
    fn copy_flags_pass_through_in_table_order() {
        let (args, warnings) = plan(&[
            "-k8s",
            "-src",
            "a",
            "-dst",
            "b",
            "-shards",
            "3",
            "-size",
            "1MiB..",
            "-replications",
            "2",
            "-dry-run",
            "-memory",
            "2GiB",
        ])
        .expect("valid");
        let argv: Vec<String> = args.copy_flags.iter().flat_map(PassFlag::argv).collect();
        assert_eq!(
            argv,
            [
                "-replications",
                "2",
                "-memory",
                "2GiB",
                "-dry-run=true",
                "-size",
                "1MiB.."
            ]
        );
        assert!(warnings.is_empty());
        assert_eq!(args.parallelism, 3);
        assert_eq!(args.memory, 2 << 30);
    }

    #[test]
    fn refusals() {
        let err = |list: &[&str]| plan(list).expect_err("refused");
        assert!(err(&["-src", "a", "-dst", "b", "-shards", "2"]).contains("-k8s"));
        assert!(
            err(&["-k8s", "-slurm", "-src", "a", "-dst", "b", "-shards", "2"]).contains("one of")
        );
        assert!(err(&["-k8s", "-src", "a", "-dst", "b"]).contains("-shards N"));
        assert!(err(&["-k8s", "-src", "a", "-shards", "2"]).contains("-src and -dst"));
        assert!(
            err(&["-k8s", "-src", "a", "-dst", "b", "-shards", "0"]).contains("value out of range")
        );
        assert!(err(&["-k8s", "-src", "a", "-dst", "b", "-shards", "65537"])
            .contains("value out of range"));
        assert!(err(&[
            "-k8s",
            "-src",
            "a",
            "-dst",
            "b",
            "-shards",
            "2",
            "-checkpoint",
            "x"
        ])
        .contains("-checkpoint is set by the plan"));
        assert!(
            err(&["-slurm", "-src", "a", "-dst", "b", "-shards", "2", "-pvc", "x"])
                .contains("-pvc applies to plan -k8s only")
        );
        assert!(err(&[
            "-k8s",
            "-src",
            "a",
            "-dst",
            "b",
            "-shards",
            "2",
            "-state-dir",
            "x"
        ])
        .contains("-state-dir applies to plan -slurm only"));
        assert!(
            err(&["-k8s", "-src", "a", "-dst", "b", "-shards", "2", "-memory", "lots"])
                .contains("-memory")
        );
        assert!(err(&[
            "-k8s",
            "-src",
            "a",
            "-dst",
            "b",
            "-shards",
            "2",
            "-locators",
            "-"
        ])
        .contains("standard input"));
        let watch = ["-k8s", "-src", "a", "-dst", "b", "-shards", "2", "-watch"];
        assert!(err(&[&watch[..], &["1h"]].concat())
            .contains("-watch makes each shard run until stopped"));
        assert!(plan(&[&watch[..], &["0s"]].concat()).is_ok());
    }
}
