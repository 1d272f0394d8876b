//! The layering rules, held by a test rather than by convention (they slipped four times):
//! each top-level module of the crate may only use modules below it. From the bottom:
//!
//! | rank | modules | why there |
//! |---|---|---|
//! | 0 | `gocompat`, `net`, `units` | Go's formats; HTTP without Keep (`net` must not know Keep); sizes |
//! | 1 | `cluster` | a discovered cluster, below the walk and the engine |
//! | 2 | `keepstore` | the trait the walk and the engine use to reach keepstores |
//! | 3 | `index` | the walk: it must not know the engine |
//! | 4 | `mover` | the engine: it must not know reports, argv or commands |
//! | 5 | `report`, `exit` | views of the engine's events; the exit-code table |
//! | 6 | `commands` | orchestration |
//! | 7 | `cli` | argv |
//!
//! `keep` and `hash` come from the `keep-proto` crate, which depends on nothing here, so the
//! protocol cannot import `net` at all.

use std::collections::BTreeMap;
use std::path::Path;

fn rank(module: &str) -> Option<u32> {
    Some(match module {
        "gocompat" | "net" | "units" => 0,
        "cluster" => 1,
        "keepstore" => 2,
        "index" => 3,
        "mover" => 4,
        "report" | "exit" => 5,
        "commands" => 6,
        "cli" => 7,
        // Re-exports of keep-proto: the bottom, so `net` (rank 0 too) cannot use them.
        "keep" | "hash" => 0,
        _ => return None,
    })
}

fn files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir)
        .expect("readable source tree")
        .flatten()
    {
        let path = entry.path();
        if path.is_dir() {
            files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `crate::<module>` references in a file (code only: comments are skipped).
fn references(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    for line in text.lines() {
        let code = line.split("//").next().unwrap_or("");
        let mut rest = code;
        while let Some(at) = rest.find("crate::") {
            rest = &rest[at + "crate::".len()..];
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            found.push(name);
        }
    }
    found
}

#[test]
fn every_module_only_uses_modules_below_it() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut all = Vec::new();
    files(&src, &mut all);
    let mut violations: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for path in &all {
        let relative = path.strip_prefix(&src).expect("under src");
        let top = relative
            .components()
            .next()
            .and_then(|c| c.as_os_str().to_str())
            .unwrap_or("")
            .trim_end_matches(".rs")
            .to_string();
        let Some(own) = rank(&top) else { continue };
        let text = std::fs::read_to_string(path).expect("readable file");
        for used in references(&text) {
            if used == top {
                continue;
            }
            match rank(&used) {
                Some(r) if r < own => {}
                _ => violations
                    .entry(relative.display().to_string())
                    .or_default()
                    .push(used),
            }
        }
    }
    assert!(
        violations.is_empty(),
        "modules using a module at or above their own layer: {violations:#?}"
    );
}

/// `net` must not know Keep, so it may not reach into keep-proto by the crate's own name
/// either, with one exception: `keep_proto::header_value`, HTTP header text with nothing of
/// Keep in it, which lives there only because keep-proto builds the requests and cannot
/// depend on this crate.
#[test]
fn net_uses_nothing_of_keep_proto_but_header_values() {
    let net = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/net");
    let mut all = Vec::new();
    files(&net, &mut all);
    let mut violations = Vec::new();
    for path in &all {
        let text = std::fs::read_to_string(path).expect("readable file");
        for line in text.lines() {
            let code = line.split("//").next().unwrap_or("");
            let mut rest = code;
            while let Some(at) = rest.find("keep_proto::") {
                rest = &rest[at + "keep_proto::".len()..];
                if !rest.starts_with("header_value") {
                    violations.push(format!("{}: {}", path.display(), line.trim()));
                }
            }
        }
    }
    assert!(
        violations.is_empty(),
        "net using keep-proto beyond header_value: {violations:#?}"
    );
}

#[test]
fn the_protocol_crate_has_no_io_dependencies() {
    let manifest = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("crates/keep-proto/Cargo.toml"),
    )
    .expect("keep-proto manifest");
    for io_crate in ["compio", "tokio", "hyper", "keepmover", "libc"] {
        assert!(
            !manifest.contains(&format!("\n{io_crate} ")),
            "keep-proto depends on {io_crate}"
        );
    }
}
