//! `keepmover plan`: one migration split into `-shards N` hash ranges, written out for a
//! scheduler that already runs work on many hosts — a Kubernetes Indexed Job (`-k8s`) or a
//! Slurm job array (`-slurm`). keepmover coordinates nothing itself: each pod or array task
//! runs the ordinary copy with `-shard auto/N` (the index comes from the scheduler's
//! environment) and its own checkpoint, block report and `-json` summary, and `keepmover
//! report merge` adds the summaries up afterwards. The plan only prints text; it reads no
//! settings file and holds no token (those stay in Secrets or on the compute nodes).

pub mod kubernetes;
pub mod slurm;
pub mod yaml;

/// What the plan is for, with the options only that scheduler has.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    Kubernetes(KubernetesArgs),
    Slurm(SlurmArgs),
}

/// `-k8s` options.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KubernetesArgs {
    pub image: String,
    /// Empty = kubectl's current namespace.
    pub namespace: String,
    /// The claim mounted at `/state`; `None` = an emptyDir (lost with the pod).
    pub pvc: Option<String>,
    pub backoff_limit_per_index: u32,
    /// Secrets holding `<name>.conf` for each side.
    pub src_secret: String,
    pub dst_secret: String,
}

/// `-slurm` options.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SlurmArgs {
    /// Where `<name>.conf` are on the compute nodes; `None` = `-src`/`-dst` as given.
    pub settings_dir: Option<String>,
    /// Checkpoints, reports and summaries (shared storage, so a rerun on another node
    /// finds its checkpoint).
    pub state_dir: String,
}

/// Everything a plan is made of. Built by `cli`, which has validated the copy's flags.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlanArgs {
    /// `-src` and `-dst` as given: a NAME or a path to a settings file.
    pub src: String,
    pub dst: String,
    pub shards: u32,
    pub parallelism: u32,
    /// The Job's name / the array's job name.
    pub name: String,
    /// The copy's other flags, exactly as `plan` was given them.
    pub copy_flags: Vec<PassFlag>,
    /// `-memory`: the copy's buffer budget, bytes.
    pub memory: u64,
    /// Added to `-memory` for the request and limit: an index slice, TLS, the allocator.
    pub headroom: u64,
    pub cpus: u32,
    pub target: Target,
}

/// One copy flag passed through to every shard: `-name value`, or `-name=value` alone
/// (booleans, which take no separate value in Go's syntax).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PassFlag {
    pub flag: String,
    pub value: Option<String>,
}

impl PassFlag {
    /// As argv pieces.
    pub fn argv(&self) -> Vec<String> {
        let mut out = vec![self.flag.clone()];
        out.extend(self.value.clone());
        out
    }
}

/// A plan's text and what the operator should know about it (printed on stderr).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    pub text: String,
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error("{flag} {value:?}: {why}")]
    Name {
        flag: &'static str,
        value: String,
        why: String,
    },
}

/// The settings NAME behind `-src`/`-dst`: the value itself, or a path's file name without
/// `.conf` (`/etc/arvados/old.conf` → `old`).
pub fn settings_name(value: &str) -> &str {
    let file = value.rsplit('/').next().unwrap_or(value);
    file.strip_suffix(".conf").unwrap_or(file)
}

/// Where the settings file is on the machine `plan` runs on, for the hint that says how to
/// make the Secret (a NAME means `$HOME/.config/arvados/NAME.conf`, as for the copy).
pub fn settings_source(value: &str) -> String {
    if value.contains('/') {
        value.to_string()
    } else {
        format!("$HOME/.config/arvados/{value}.conf")
    }
}

/// The memory one pod or task needs, in MiB (rounded up): the buffers plus headroom.
pub fn memory_mib(args: &PlanArgs) -> u64 {
    args.memory.saturating_add(args.headroom).div_ceil(1 << 20)
}

/// Kubernetes object and Secret names, Slurm job names: a DNS-1123 label (lowercase
/// letters, digits, `-`; starts and ends alphanumeric; at most 63 characters).
pub fn check_label(flag: &'static str, value: &str) -> Result<(), PlanError> {
    let ok = !value.is_empty()
        && value.len() <= 63
        && value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !value.starts_with('-')
        && !value.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(PlanError::Name {
            flag,
            value: value.to_string(),
            why: "expected a DNS-1123 label: lowercase letters, digits and '-', starting and ending with a letter or digit, at most 63 characters".to_string(),
        })
    }
}

/// The plan's text for its scheduler.
pub fn render(args: &PlanArgs) -> Result<Plan, PlanError> {
    check_label("-name", &args.name)?;
    match &args.target {
        Target::Kubernetes(k8s) => kubernetes::render(args, k8s),
        Target::Slurm(slurm) => slurm::render(args, slurm),
    }
}

/// `text` fit for a comment line: control characters (a newline in a path) become `?`.
pub fn one_line(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

/// The per-shard part of every plan's command: the shard from the scheduler, and files
/// named by the shard's index (`index` is how the scheduler spells it in a command line).
pub fn shard_flags(shards: u32, state: &str, index: &str) -> Vec<String> {
    vec![
        "-shard".to_string(),
        format!("auto/{shards}"),
        "-checkpoint".to_string(),
        format!("{state}/ck-{index}"),
        "-report".to_string(),
        format!("{state}/report-{index}.jsonl"),
        "-json".to_string(),
        format!("{state}/summary-{index}.json"),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_names_and_sources() {
        assert_eq!(settings_name("old"), "old");
        assert_eq!(settings_name("/etc/arvados/new.conf"), "new");
        assert_eq!(settings_name("./x/cluster"), "cluster");
        assert_eq!(settings_source("old"), "$HOME/.config/arvados/old.conf");
        assert_eq!(settings_source("/a/b.conf"), "/a/b.conf");
    }

    #[test]
    fn labels() {
        for good in ["keepmover", "a", "old-to-new-2"] {
            assert!(check_label("-name", good).is_ok(), "{good}");
        }
        let long = "a".repeat(64);
        for bad in ["", "Old", "a_b", "-a", "a-", "a.b", long.as_str()] {
            assert!(check_label("-name", bad).is_err(), "{bad}");
        }
    }
}
