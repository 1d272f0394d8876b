//! The resume file. The walk visits hash prefixes in order, so one watermark says it all:
//! every prefix up to `done_through` has all its blocks confirmed on the destination. The
//! file also says which job it belongs to (source, destination, replicas, classes, prefix,
//! shard, filters): reusing it for another job is refused, naming the difference, because a
//! watermark from another job would skip blocks that were never copied.
//!
//! The file is replaced atomically (write a temporary file, fsync, rename, fsync the
//! directory), by a thread of its own so that no worker waits for a disk; one run holds a
//! lock on it, so two runs cannot share it.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::mpsc;

use serde::{Deserialize, Serialize};

/// The format written by this version. Version 1 (keepmover 0.1) did not record the job.
pub const CHECKPOINT_VERSION: u32 = 2;

/// What the checkpoint was written for. Every field must match for a resume.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobIdentity {
    /// `copy`, `move`, `pull`, ...
    pub action: String,
    /// The source: its API host, or its service uuids when they were given as JSON.
    pub src: String,
    pub dst: String,
    pub replicas: u32,
    pub classes: Vec<String>,
    pub prefix: String,
    /// `I/N` when sharded.
    pub shard: String,
    /// Block filters (`-size`, `-mtime`, `-locators`), as given.
    pub filters: String,
}

/// What the file holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointState {
    pub version: u32,
    pub job: JobIdentity,
    /// Hex digits added to the job's prefix per slice (so a resumed run walks the same slices).
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
    #[error("checkpoint {path} was written by an older keepmover (format {found}), which did not record the job it belongs to; remove it and rerun (the rerun compares the indexes again, so nothing is lost)")]
    OldVersion { path: PathBuf, found: u32 },
    #[error("checkpoint {path} belongs to another job: its {field} is {found:?}, this run's is {wanted:?}; use another -checkpoint file, or remove this one to start over")]
    OtherJob {
        path: PathBuf,
        field: &'static str,
        found: String,
        wanted: String,
    },
    #[error("checkpoint {path} is in use by another keepmover run{holder}; wait for it to finish or use another -checkpoint file")]
    Locked { path: PathBuf, holder: String },
    #[error("writing checkpoint {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

fn is_hex(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Parses and validates checkpoint text (also the fuzz entry point). The version is checked
/// by the caller, which can say what to do about an old one.
pub fn parse(text: &str) -> Result<CheckpointState, String> {
    #[derive(Deserialize)]
    struct Version {
        version: u32,
    }
    let version: Version = serde_json::from_str(text).map_err(|e| e.to_string())?;
    if version.version != CHECKPOINT_VERSION {
        return Err(format!("unsupported version {}", version.version));
    }
    let state: CheckpointState = serde_json::from_str(text).map_err(|e| e.to_string())?;
    let prefix = &state.job.prefix;
    if !is_hex(prefix) || prefix.len() > 32 || state.extra_digits > 8 {
        return Err("bad prefix or slice length".to_string());
    }
    if let Some(done) = &state.done_through {
        if !is_hex(done)
            || done.len() != prefix.len() + state.extra_digits
            || !done.starts_with(prefix.as_str())
        {
            return Err(format!("bad watermark {done:?}"));
        }
    }
    Ok(state)
}

/// Reads the checkpoint for `job`, if the file exists. A missing file is a fresh start.
pub fn load(path: &Path, job: &JobIdentity) -> Result<Option<CheckpointState>, CheckpointError> {
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
    let malformed = |detail: String| CheckpointError::Malformed {
        path: path.to_path_buf(),
        detail,
    };
    let version = serde_json::from_str::<serde_json::Value>(&text)
        .map_err(|e| malformed(e.to_string()))?
        .get("version")
        .and_then(|v| v.as_u64())
        .ok_or_else(|| malformed("no version".to_string()))?;
    if version < u64::from(CHECKPOINT_VERSION) {
        return Err(CheckpointError::OldVersion {
            path: path.to_path_buf(),
            found: version as u32,
        });
    }
    let state = parse(&text).map_err(malformed)?;
    if let Some((field, found, wanted)) = difference(&state.job, job) {
        return Err(CheckpointError::OtherJob {
            path: path.to_path_buf(),
            field,
            found,
            wanted,
        });
    }
    Ok(Some(state))
}

/// The first field in which two jobs differ.
fn difference(found: &JobIdentity, wanted: &JobIdentity) -> Option<(&'static str, String, String)> {
    let fields: [(&'static str, String, String); 8] = [
        ("action", found.action.clone(), wanted.action.clone()),
        ("source", found.src.clone(), wanted.src.clone()),
        ("destination", found.dst.clone(), wanted.dst.clone()),
        (
            "replicas",
            found.replicas.to_string(),
            wanted.replicas.to_string(),
        ),
        (
            "storage classes",
            found.classes.join(","),
            wanted.classes.join(","),
        ),
        ("prefix", found.prefix.clone(), wanted.prefix.clone()),
        ("shard", found.shard.clone(), wanted.shard.clone()),
        ("filters", found.filters.clone(), wanted.filters.clone()),
    ];
    fields.into_iter().find(|(_, a, b)| a != b)
}

/// Atomically replaces the checkpoint file: temporary file, fsync, rename, fsync of the
/// directory (so the rename itself survives a crash).
pub fn save(path: &Path, state: &CheckpointState) -> Result<(), CheckpointError> {
    use std::io::Write as _;
    let write_error = |source| CheckpointError::Write {
        path: path.to_path_buf(),
        source,
    };
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".tmp.{}", std::process::id()));
    let tmp = PathBuf::from(tmp);
    let text = serde_json::to_string(state).map_err(|e| write_error(std::io::Error::other(e)))?;
    let mut file = File::create(&tmp).map_err(write_error)?;
    file.write_all(text.as_bytes()).map_err(write_error)?;
    file.write_all(b"\n").map_err(write_error)?;
    file.sync_all().map_err(write_error)?;
    drop(file);
    if let Err(e) = std::fs::rename(&tmp, path) {
        let _ = std::fs::remove_file(&tmp);
        return Err(write_error(e));
    }
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(write_error)?;
    Ok(())
}

/// The lock a run holds on its checkpoint (`<file>.lock`, flock'd), released on drop.
#[derive(Debug)]
pub struct CheckpointLock {
    _file: File,
}

impl CheckpointLock {
    pub fn acquire(path: &Path) -> Result<CheckpointLock, CheckpointError> {
        use std::io::{Read as _, Seek as _, Write as _};
        let mut lock_path = path.as_os_str().to_owned();
        lock_path.push(".lock");
        let write_error = |source| CheckpointError::Write {
            path: path.to_path_buf(),
            source,
        };
        let mut file = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(PathBuf::from(&lock_path))
            .map_err(write_error)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = holder.trim();
                return Err(CheckpointError::Locked {
                    path: path.to_path_buf(),
                    holder: if holder.is_empty() {
                        String::new()
                    } else {
                        format!(" (pid {holder})")
                    },
                });
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(write_error(e)),
        }
        file.set_len(0).map_err(write_error)?;
        file.rewind().map_err(write_error)?;
        let _ = write!(file, "{}", std::process::id());
        Ok(CheckpointLock { _file: file })
    }
}

/// Saves watermarks on a thread of its own; later ones replace earlier unsaved ones.
pub struct CheckpointWriter {
    sender: Option<mpsc::Sender<Option<String>>>,
    handle: Option<std::thread::JoinHandle<Result<(), CheckpointError>>>,
}

impl CheckpointWriter {
    pub fn start(path: PathBuf, base: CheckpointState) -> std::io::Result<CheckpointWriter> {
        let (sender, receiver) = mpsc::channel::<Option<String>>();
        let handle = std::thread::Builder::new()
            .name("keepmover-checkpoint".into())
            .spawn(move || {
                let mut first_error = None;
                while let Ok(mut mark) = receiver.recv() {
                    // Coalesce: only the newest watermark matters.
                    while let Ok(newer) = receiver.try_recv() {
                        mark = newer;
                    }
                    let mut state = base.clone();
                    state.done_through = mark;
                    if let Err(e) = save(&path, &state) {
                        first_error.get_or_insert(e);
                    }
                }
                first_error.map_or(Ok(()), Err)
            })?;
        Ok(CheckpointWriter {
            sender: Some(sender),
            handle: Some(handle),
        })
    }

    /// Records a new watermark (saved shortly, off the caller's thread).
    pub fn set(&self, watermark: String) {
        if let Some(sender) = &self.sender {
            let _ = sender.send(Some(watermark));
        }
    }

    /// Waits for the last save; the first write error, if any.
    pub fn finish(mut self) -> Result<(), CheckpointError> {
        self.sender = None;
        match self.handle.take().map(|h| h.join()) {
            Some(Ok(result)) => result,
            Some(Err(_)) => Err(CheckpointError::Write {
                path: PathBuf::new(),
                source: std::io::Error::other("checkpoint thread panicked"),
            }),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job() -> JobIdentity {
        JobIdentity {
            action: "copy".into(),
            src: "src.example:443".into(),
            dst: "dst.example:443".into(),
            replicas: 2,
            classes: vec!["default".into()],
            prefix: "a".into(),
            shard: String::new(),
            filters: String::new(),
        }
    }

    fn state() -> CheckpointState {
        CheckpointState {
            version: CHECKPOINT_VERSION,
            job: job(),
            extra_digits: 2,
            done_through: Some("a3f".into()),
        }
    }

    #[test]
    fn round_trip_and_validation() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("ck.json");
        assert_eq!(load(&path, &job()).expect("missing is fine"), None);
        save(&path, &state()).expect("save");
        assert_eq!(load(&path, &job()).expect("load"), Some(state()));
        std::fs::write(&path, "{").expect("write");
        assert!(matches!(
            load(&path, &job()),
            Err(CheckpointError::Malformed { .. })
        ));
        let mut bad = state();
        bad.done_through = Some("b00".into());
        assert!(parse(&serde_json::to_string(&bad).expect("json")).is_err());
        let mut bad = state();
        bad.job.prefix = "A".into();
        bad.done_through = None;
        assert!(parse(&serde_json::to_string(&bad).expect("json")).is_err());
    }

    #[test]
    fn another_job_is_refused_naming_the_difference() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("ck.json");
        save(&path, &state()).expect("save");
        let mut other = job();
        other.dst = "fresh.example:443".into();
        let err = load(&path, &other).expect_err("other destination");
        let text = err.to_string();
        assert!(
            text.contains("destination") && text.contains("fresh.example"),
            "{text}"
        );
        let mut other = job();
        other.replicas = 3;
        assert!(load(&path, &other)
            .expect_err("other replicas")
            .to_string()
            .contains("replicas"));
    }

    #[test]
    fn old_format_is_refused_with_advice() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("ck.json");
        std::fs::write(
            &path,
            r#"{"version":1,"base_prefix":"","extra_digits":0,"done_through":null}"#,
        )
        .expect("write");
        let err = load(&path, &job()).expect_err("v1");
        assert!(matches!(err, CheckpointError::OldVersion { found: 1, .. }));
        assert!(err.to_string().contains("remove it"), "{err}");
    }

    #[test]
    fn one_run_holds_the_lock() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("ck.json");
        let first = CheckpointLock::acquire(&path).expect("first lock");
        let err = CheckpointLock::acquire(&path).expect_err("second run");
        assert!(
            err.to_string()
                .contains("in use by another keepmover run (pid"),
            "{err}"
        );
        drop(first);
        CheckpointLock::acquire(&path).expect("free again");
    }

    #[test]
    fn writer_saves_the_newest_watermark() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("ck.json");
        let mut base = state();
        base.done_through = None;
        let writer = CheckpointWriter::start(path.clone(), base).expect("writer");
        writer.set("a00".into());
        writer.set("a01".into());
        writer.finish().expect("saved");
        let loaded = load(&path, &job()).expect("load").expect("present");
        assert_eq!(loaded.done_through.as_deref(), Some("a01"));
    }

    #[test]
    fn unwritable_path_is_a_clear_error() {
        let err = save(Path::new("/nonexistent-dir/ck.json"), &state()).unwrap_err();
        assert!(
            err.to_string().contains("/nonexistent-dir/ck.json"),
            "{err}"
        );
    }
}
