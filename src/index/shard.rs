//! Shards: one job split across hosts by hash range, so each host walks and copies its own
//! part of the hash space and a scheduler (a Kubernetes Indexed Job, a Slurm array, AWS
//! Batch) runs them. `-shard I/N` gives shard I of N contiguous ranges of 3-hex-digit
//! prefixes (4 digits when N > 4096, N up to 65536) below the job's `-prefix`. Shards are
//! disjoint, cover everything, and are stable for a given N; `-shard auto/N` takes I from
//! the scheduler's environment.

use std::fmt;

/// Most shards: every 4-hex-digit prefix its own.
pub const MAX_SHARDS: u32 = 65_536;

/// Shard `index` of `count`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    pub index: u32,
    pub count: u32,
}

/// Environment variables that carry an array job's index, in the order they are tried:
/// Kubernetes Indexed Jobs, Slurm job arrays, AWS Batch array jobs.
pub const SCHEDULER_INDEX_VARS: [&str; 3] = [
    "JOB_COMPLETION_INDEX",
    "SLURM_ARRAY_TASK_ID",
    "AWS_BATCH_JOB_ARRAY_INDEX",
];

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShardError {
    #[error("expected I/N or auto/N with 0 <= I < N <= {MAX_SHARDS}")]
    Syntax,
    #[error("-shard auto/N: none of {} is set", SCHEDULER_INDEX_VARS.join(", "))]
    NoSchedulerIndex,
    #[error("-shard auto/N: {var}={value:?} is not an index below {count}")]
    BadSchedulerIndex {
        var: &'static str,
        value: String,
        count: u32,
    },
}

impl Shard {
    /// Parses `I/N`, or `auto/N` with I read through `env` from [`SCHEDULER_INDEX_VARS`].
    pub fn parse(text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Shard, ShardError> {
        let (index, count) = text.split_once('/').ok_or(ShardError::Syntax)?;
        let count: u32 = count.parse().map_err(|_| ShardError::Syntax)?;
        if count == 0 || count > MAX_SHARDS {
            return Err(ShardError::Syntax);
        }
        let index = if index == "auto" {
            let (var, value) = SCHEDULER_INDEX_VARS
                .iter()
                .find_map(|var| env(var).map(|v| (*var, v)))
                .ok_or(ShardError::NoSchedulerIndex)?;
            value
                .trim()
                .parse::<u32>()
                .ok()
                .filter(|i| *i < count)
                .ok_or(ShardError::BadSchedulerIndex {
                    var,
                    value: value.clone(),
                    count,
                })?
        } else {
            index.parse().map_err(|_| ShardError::Syntax)?
        };
        if index >= count {
            return Err(ShardError::Syntax);
        }
        Ok(Shard { index, count })
    }

    /// Hex digits (below the job's prefix) that name a shard's ranges: 3, or 4 past 4096.
    pub fn digits(&self) -> usize {
        if self.count > 4096 {
            4
        } else {
            3
        }
    }

    /// The shard's range of `digits()`-digit prefixes below the job's prefix: `[start, end)`.
    pub fn range(&self) -> (u64, u64) {
        let space = 16u64.pow(self.digits() as u32);
        let n = u64::from(self.count);
        let i = u64::from(self.index);
        (i * space / n, (i + 1) * space / n)
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// The slice prefixes of a walk, in order: `base` followed by `extra` hex digits, limited
/// to the shard's range when there is one (then `extra` is at least the shard's digits).
pub fn walk_prefixes(base: &str, extra: usize, shard: Option<Shard>) -> Vec<String> {
    match shard {
        None => {
            let count = 16u64.pow(extra as u32);
            (0..count)
                .map(|n| {
                    if extra == 0 {
                        base.to_string()
                    } else {
                        format!("{base}{n:0width$x}", width = extra)
                    }
                })
                .collect()
        }
        Some(shard) => {
            let digits = shard.digits();
            let extra = extra.max(digits);
            let below = extra - digits;
            let (start, end) = shard.range();
            let per = 16u64.pow(below as u32);
            (start * per..end * per)
                .map(|n| format!("{base}{n:0width$x}", width = extra))
                .collect()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn parse_forms() {
        assert_eq!(
            Shard::parse("3/16", &no_env),
            Ok(Shard {
                index: 3,
                count: 16
            })
        );
        for bad in ["", "3", "16/16", "a/2", "1/0", "0/65537", "-1/4"] {
            assert!(Shard::parse(bad, &no_env).is_err(), "{bad}");
        }
        assert_eq!(
            Shard::parse("auto/8", &no_env),
            Err(ShardError::NoSchedulerIndex)
        );
        for var in SCHEDULER_INDEX_VARS {
            let env = |name: &str| (name == var).then(|| "5".to_string());
            assert_eq!(
                Shard::parse("auto/8", &env).map(|s| s.index),
                Ok(5),
                "{var}"
            );
        }
        let env = |name: &str| (name == "SLURM_ARRAY_TASK_ID").then(|| "9".to_string());
        assert!(matches!(
            Shard::parse("auto/8", &env),
            Err(ShardError::BadSchedulerIndex { .. })
        ));
    }

    #[test]
    fn shards_are_disjoint_and_cover_everything() {
        for count in [1u32, 2, 3, 7, 16, 100, 4096, 5000] {
            let mut seen = BTreeSet::new();
            let mut total = 0;
            for index in 0..count {
                let prefixes = walk_prefixes("", 0, Some(Shard { index, count }));
                total += prefixes.len();
                for p in prefixes {
                    assert!(seen.insert(p), "overlap at {count}");
                }
            }
            let digits = if count > 4096 { 4 } else { 3 };
            assert_eq!(total, 16usize.pow(digits), "{count}");
            assert_eq!(seen.len(), total);
        }
    }

    #[test]
    fn prefixes_respect_the_base_and_extra_digits() {
        let shard = Shard { index: 1, count: 2 };
        let p = walk_prefixes("a", 4, Some(shard));
        assert_eq!(p.len(), 2048 * 16);
        assert_eq!(p.first().map(String::as_str), Some("a8000"));
        assert_eq!(p.last().map(String::as_str), Some("affff"));
        assert_eq!(walk_prefixes("", 1, None).len(), 16);
        assert_eq!(walk_prefixes("ab", 0, None), vec!["ab"]);
    }
}
