//! The Dockerfile cannot be built here (no Docker daemon, no registry), so it is checked
//! with a real parser (dockerfile-parse): two stages, the builder on the toolchain image of
//! the workspace's `rust-version`, the lean `--no-default-features --locked` release build,
//! a non-root numeric user and `ENTRYPOINT ["keepmover"]`. The README's build command, the
//! Dockerfile's and `plan -k8s`'s default image must agree, and `.dockerignore` must keep
//! build outputs out of the context but not the sources.

mod py_support;

use std::path::{Path, PathBuf};
use std::process::Command;

use py_support::{python_json, python_with};

/// The lean binary's build, as the README documents it.
const BUILD: &str = "cargo build --release --no-default-features --locked";

fn repo(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(file)
}

fn read(file: &str) -> String {
    std::fs::read_to_string(repo(file)).unwrap_or_else(|e| panic!("reading {file}: {e}"))
}

/// `rust-version` of the workspace, from Cargo.toml.
fn rust_version() -> String {
    read("Cargo.toml")
        .lines()
        .find_map(|l| l.trim().strip_prefix("rust-version = \""))
        .and_then(|rest| rest.strip_suffix('"'))
        .expect("rust-version in Cargo.toml")
        .to_string()
}

fn docker_build_line() -> String {
    format!("docker build -t keepmover:{} .", env!("CARGO_PKG_VERSION"))
}

#[test]
fn dockerfile_parses_into_a_lean_two_stage_non_root_build() {
    let Some(python) = python_with(&["dockerfile_parse"]) else {
        return;
    };
    let parsed = python_json(
        &python,
        "import io, json, sys\nfrom dockerfile_parse import DockerfileParser\n\
         d = DockerfileParser(fileobj=io.BytesIO(sys.stdin.buffer.read()))\n\
         print(json.dumps({'structure': d.structure, 'parents': d.parent_images, 'multistage': d.is_multistage}))",
        &read("Dockerfile"),
    );
    assert_eq!(parsed["multistage"], true);
    let parents: Vec<&str> = parsed["parents"]
        .as_array()
        .expect("parents")
        .iter()
        .map(|v| v.as_str().expect("image"))
        .collect();
    assert_eq!(parents.len(), 2, "{parents:?}");
    let toolchain = format!("rust:{}-", rust_version());
    assert!(
        parents[0].starts_with(&toolchain),
        "builder {} is not on the workspace's toolchain {toolchain}*",
        parents[0]
    );
    assert!(
        parents[1].starts_with("gcr.io/distroless/cc-debian12")
            || parents[1].starts_with("debian:bookworm-slim"),
        "runtime base {}",
        parents[1]
    );
    let instructions: Vec<(String, String)> = parsed["structure"]
        .as_array()
        .expect("structure")
        .iter()
        .map(|i| {
            (
                i["instruction"].as_str().expect("instruction").to_string(),
                i["value"].as_str().expect("value").to_string(),
            )
        })
        .filter(|(name, _)| name != "COMMENT")
        .collect();
    let froms: Vec<usize> = instructions
        .iter()
        .enumerate()
        .filter(|(_, (name, _))| name == "FROM")
        .map(|(at, _)| at)
        .collect();
    assert_eq!(froms.len(), 2);
    assert!(
        instructions[froms[0]]
            .1
            .to_lowercase()
            .ends_with(" as builder"),
        "{:?}",
        instructions[froms[0]]
    );
    let (builder, runtime) = instructions.split_at(froms[1]);
    assert!(
        builder
            .iter()
            .any(|(name, value)| name == "RUN" && value.contains(BUILD)),
        "the builder runs `{BUILD}`: {builder:?}"
    );
    assert!(
        runtime
            .iter()
            .any(|(name, value)| name == "COPY" && value.starts_with("--from=builder ")),
        "{runtime:?}"
    );
    let user = runtime
        .iter()
        .rev()
        .find(|(name, _)| name == "USER")
        .map(|(_, value)| value.clone())
        .expect("a USER in the runtime stage");
    let uid = user.split(':').next().unwrap_or("");
    assert!(
        uid.parse::<u32>().is_ok_and(|n| n != 0),
        "USER {user}: numeric and not root, so runAsNonRoot can check it"
    );
    let entrypoint = runtime
        .iter()
        .rev()
        .find(|(name, _)| name == "ENTRYPOINT")
        .map(|(_, value)| value.clone())
        .expect("an ENTRYPOINT in the runtime stage");
    let entrypoint: serde_json::Value =
        serde_json::from_str(&entrypoint).expect("ENTRYPOINT in exec (JSON) form");
    assert_eq!(entrypoint, serde_json::json!(["keepmover"]));
    // The Dockerfile's own build note is the README's command.
    assert!(read("Dockerfile").contains(&docker_build_line()));
}

#[test]
fn readme_build_command_matches_the_dockerfile_and_the_plans_image() {
    let readme = read("README.md");
    let line = docker_build_line();
    assert!(readme.contains(&line), "README lacks `{line}`");
    assert!(
        readme.contains(BUILD) && read("Dockerfile").contains(BUILD),
        "README and Dockerfile both build with `{BUILD}`"
    );
    // The README names the builder's image, which is the workspace's toolchain (it said
    // rust:1.89 after the locked compio crates had come to need 1.95).
    let image = format!("`rust:{}` image", rust_version());
    assert!(readme.contains(&image), "README lacks {image}");
    // What the README builds is what `plan -k8s` runs by default.
    let out = Command::new(env!("CARGO_BIN_EXE_keepmover"))
        .args(["plan", "-k8s", "-src", "a", "-dst", "b", "-shards", "1"])
        .output()
        .expect("run keepmover");
    assert_eq!(out.status.code(), Some(0));
    let manifest = String::from_utf8_lossy(&out.stdout);
    let tag = format!("image: \"keepmover:{}\"", env!("CARGO_PKG_VERSION"));
    assert!(manifest.contains(&tag), "{manifest}");
}

#[test]
fn dockerignore_leaves_out_outputs_but_not_sources() {
    let ignore = read(".dockerignore");
    let lines: Vec<&str> = ignore
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    for needed in ["target", ".git", ".venv"] {
        assert!(lines.contains(&needed), "{needed} in .dockerignore");
    }
    // cargo --locked needs every workspace member's manifest and the lock file.
    for source in [
        "Cargo.toml",
        "Cargo.lock",
        "src",
        "crates",
        "tools",
        "benches",
        "*",
    ] {
        assert!(
            !lines.contains(&source),
            "{source} must stay in the context"
        );
    }
}
