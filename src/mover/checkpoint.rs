//! The resume file. The walk visits hash prefixes in order, so one watermark says it all:
//! every prefix up to `done_through` has all its blocks confirmed on the destination. A
//! prefix with a failed block stops the watermark, so a rerun retries it. The file is
//! replaced atomically (write, fsync, rename) so a crash never leaves it half-written.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// What the file holds. The slicing parameters are stored so a resumed run walks the same
/// prefixes; resuming with another `-prefix` is refused rather than silently wrong.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointState {
    pub version: u32,
    pub base_prefix: String,
    pub extra_digits: usize,
    /// The last prefix whose blocks are all confirmed, if any.
    pub done_through: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("reading checkpoint {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("checkpoint {path} is not a keepmover checkpoint: {detail}")]
    Malformed { path: PathBuf, detail: String },
    #[error("checkpoint {path} was written for -prefix {found:?}, this run has -prefix {wanted:?}; remove it or use the same prefix")]
    PrefixMismatch {
        path: PathBuf,
        found: String,
        wanted: String,
    },
    #[error("writing checkpoint {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

pub const CHECKPOINT_VERSION: u32 = 1;

/// Reads the checkpoint if it exists. A missing file means a fresh start.
pub fn load(path: &Path, base_prefix: &str) -> Result<Option<CheckpointState>, CheckpointError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(CheckpointError::Read {
                path: path.to_path_buf(),
                source,
            })
        }
    };
    let state = parse(&text).map_err(|detail| CheckpointError::Malformed {
        path: path.to_path_buf(),
        detail,
    })?;
    if state.base_prefix != base_prefix {
        return Err(CheckpointError::PrefixMismatch {
            path: path.to_path_buf(),
            found: state.base_prefix,
            wanted: base_prefix.to_string(),
        });
    }
    Ok(Some(state))
}

/// Parses and validates checkpoint text (also the fuzz entry point).
pub fn parse(text: &str) -> Result<CheckpointState, String> {
    let state: CheckpointState = serde_json::from_str(text).map_err(|e| e.to_string())?;
    if state.version != CHECKPOINT_VERSION {
        return Err(format!("unsupported version {}", state.version));
    }
    let is_hex = |s: &str| {
        s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    if !is_hex(&state.base_prefix) || state.base_prefix.len() > 32 || state.extra_digits > 8 {
        return Err("bad prefix or slice length".to_string());
    }
    if let Some(done) = &state.done_through {
        if !is_hex(done)
            || done.len() != state.base_prefix.len() + state.extra_digits
            || !done.starts_with(&state.base_prefix)
        {
            return Err(format!("bad watermark {done:?}"));
        }
    }
    Ok(state)
}

/// Atomically replaces the checkpoint file.
pub fn save(path: &Path, state: &CheckpointState) -> Result<(), CheckpointError> {
    use std::io::Write as _;
    let write_error = |source| CheckpointError::Write {
        path: path.to_path_buf(),
        source,
    };
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let text = serde_json::to_string(state).map_err(|e| write_error(std::io::Error::other(e)))?;
    let mut file = std::fs::File::create(&tmp).map_err(write_error)?;
    file.write_all(text.as_bytes()).map_err(write_error)?;
    file.write_all(b"\n").map_err(write_error)?;
    file.sync_all().map_err(write_error)?;
    std::fs::rename(&tmp, path).map_err(write_error)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_validation() {
        let dir = tempfile::tempdir().expect("test input");
        let path = dir.path().join("ck.json");
        assert_eq!(load(&path, "").expect("test input"), None);
        let state = CheckpointState {
            version: 1,
            base_prefix: "a".into(),
            extra_digits: 2,
            done_through: Some("a3f".into()),
        };
        save(&path, &state).expect("test input");
        assert_eq!(load(&path, "a").expect("test input"), Some(state));
        assert!(matches!(
            load(&path, "b"),
            Err(CheckpointError::PrefixMismatch { .. })
        ));
        std::fs::write(&path, "{").expect("test input");
        assert!(matches!(
            load(&path, "a"),
            Err(CheckpointError::Malformed { .. })
        ));
        assert!(
            parse(r#"{"version":1,"base_prefix":"a","extra_digits":2,"done_through":"b00"}"#)
                .is_err()
        );
        assert!(
            parse(r#"{"version":1,"base_prefix":"A","extra_digits":2,"done_through":null}"#)
                .is_err()
        );
    }

    #[test]
    fn unwritable_path_is_a_clear_error() {
        let err = save(
            Path::new("/nonexistent-dir/ck.json"),
            &CheckpointState {
                version: 1,
                base_prefix: String::new(),
                extra_digits: 0,
                done_through: None,
            },
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("/nonexistent-dir/ck.json"),
            "{err}"
        );
    }
}
