//! The repository's Python (`.venv/bin/python`, or `$KEEPMOVER_PYTHON`), for tests that
//! check generated files with real parsers: PyYAML for Kubernetes manifests,
//! dockerfile-parse for the Dockerfile. `.ci/run` installs both. Without them a test skips
//! itself with a message; under `CI` a missing parser is a failure.
#![allow(dead_code)]

use std::io::Write as _;
use std::path::PathBuf;
use std::process::{Command, Stdio};

/// The interpreter, if it can import every module of `modules`; `None` (after saying so on
/// stderr) when it cannot and `CI` is not set.
pub fn python_with(modules: &[&str]) -> Option<PathBuf> {
    let python = std::env::var_os("KEEPMOVER_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python"));
    let imports = format!("import {}", modules.join(", "));
    let ok = Command::new(&python)
        .args(["-c", &imports])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if ok {
        return Some(python);
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "CI is set but {} cannot `{imports}`: run .ci/run (it installs pyyaml and dockerfile-parse into .venv)",
        python.display()
    );
    eprintln!(
        "SKIPPED: {} cannot `{imports}` (run .ci/run to create .venv)",
        python.display()
    );
    None
}

/// Runs `script` with `input` on stdin and returns its stdout parsed as JSON.
pub fn python_json(python: &PathBuf, script: &str, input: &str) -> serde_json::Value {
    let mut child = Command::new(python)
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start python");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("write to python");
    let out = child.wait_with_output().expect("python runs");
    assert!(
        out.status.success(),
        "python failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("python prints JSON")
}
