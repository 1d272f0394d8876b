//! Process limits the client runs into: many connections per origin times many origins need
//! file descriptors, and the usual soft `RLIMIT_NOFILE` (1024) is low. [`raise_nofile_limit`]
//! raises the soft limit towards what the caller needs, never past the hard limit.

/// Why the open-files limit could not be raised as asked.
#[derive(Debug, thiserror::Error)]
pub enum NofileError {
    #[error("reading RLIMIT_NOFILE failed: {0}")]
    Get(std::io::Error),
    #[error("raising RLIMIT_NOFILE to {wanted} failed: {source}")]
    Set {
        wanted: u64,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "open-files limit is {soft} (hard limit {hard}), {wanted} wanted: raise the hard limit \
         (ulimit -Hn, LimitNOFILE=, limits.conf) or lower the concurrency"
    )]
    HardLimit { soft: u64, hard: u64, wanted: u64 },
}

/// Raises the soft `RLIMIT_NOFILE` towards `wanted`. Returns the soft limit now in force
/// (≥ `wanted`, or unchanged when it already was). When the hard limit is below `wanted`,
/// the soft limit is raised to the hard limit and [`NofileError::HardLimit`] says so.
pub fn raise_nofile_limit(wanted: u64) -> Result<u64, NofileError> {
    let (soft, hard) = get_nofile().map_err(NofileError::Get)?;
    if soft >= wanted {
        return Ok(soft);
    }
    let target = wanted.min(hard);
    if target > soft {
        set_nofile(target, hard).map_err(|source| NofileError::Set {
            wanted: target,
            source,
        })?;
    }
    if target < wanted {
        return Err(NofileError::HardLimit {
            soft: target,
            hard,
            wanted,
        });
    }
    Ok(target)
}

fn get_nofile() -> std::io::Result<(u64, u64)> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    #[allow(unsafe_code)]
    // SAFETY: `limit` is a valid, writable `rlimit` that outlives the call; getrlimit only
    // writes into it.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok((limit.rlim_cur, limit.rlim_max))
}

fn set_nofile(soft: u64, hard: u64) -> std::io::Result<()> {
    let limit = libc::rlimit {
        rlim_cur: soft,
        rlim_max: hard,
    };
    #[allow(unsafe_code)]
    // SAFETY: `limit` is a valid `rlimit` that outlives the call; setrlimit only reads it.
    let rc = unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raises_within_the_hard_limit_and_says_when_it_cannot() {
        let (soft, hard) = get_nofile().expect("getrlimit");
        assert_eq!(raise_nofile_limit(soft).expect("no-op"), soft);
        if hard != libc::RLIM_INFINITY {
            match raise_nofile_limit(hard.saturating_add(1)) {
                Err(NofileError::HardLimit { soft, hard: h, .. }) => {
                    assert_eq!((soft, h), (hard, hard));
                    assert!(NofileError::HardLimit {
                        soft,
                        hard: h,
                        wanted: hard + 1
                    }
                    .to_string()
                    .contains("raise the hard limit"));
                }
                other => panic!("{other:?}"),
            }
        }
    }
}
