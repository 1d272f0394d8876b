//! One migration across many hosts, end to end on the real binary against keepsim: shards
//! `0/2` and `1/2` write `-json` summaries that `report merge` adds up (and a missing, a
//! failed, a malformed or a duplicated summary is caught); the Slurm script `plan -slurm`
//! prints is run by bash once per array task id, and the container command of `plan -k8s`
//! once per completion index, and together they copy everything.

mod e2e_support;
mod py_support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use e2e_support::*;
use py_support::{python_json, python_with};

fn keepmover_plain(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_keepmover"))
        .args(args)
        .output()
        .expect("run keepmover")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn read_json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).expect("read json")).expect("parses")
}

fn path_arg(path: &Path) -> String {
    path.display().to_string()
}

/// `report merge` with `args`, writing the merged document to `merged`.
fn merge(args: &[&str], merged: &Path) -> Output {
    let mut all = vec!["report", "merge", "-json"];
    let merged = path_arg(merged);
    all.push(&merged);
    all.extend(args);
    keepmover_plain(&all)
}

#[test]
fn report_merge_adds_up_two_real_shards_and_finds_missing_and_failed() {
    let env = default_env();
    let hashes = fill(&env.src, 30, 2000);
    let dir = env.dir.path();
    let summaries: Vec<PathBuf> = (0..2).map(|i| dir.join(format!("s{i}.json"))).collect();
    for (i, path) in summaries.iter().enumerate() {
        let shard = format!("{i}/2");
        let out = keepmover(&env, &["-shard", &shard, "-json", &path_arg(path)]);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        assert_eq!(read_json(path)["shard"], shard.as_str());
    }
    assert_placed(&env, &hashes, 2);
    let (s0, s1) = (read_json(&summaries[0]), read_json(&summaries[1]));
    let merged_path = dir.join("merged.json");
    let files: Vec<String> = summaries.iter().map(|p| path_arg(p)).collect();
    let files: Vec<&str> = files.iter().map(String::as_str).collect();

    // Both shards: complete, every counter the sum of the two.
    let out = merge(&files, &merged_path);
    let printed = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{printed}{}", text(&out.stderr));
    assert!(printed.contains("All 2 shards done."), "{printed}");
    assert!(printed.contains("copied 30 blocks"), "{printed}");
    let merged = read_json(&merged_path);
    assert_eq!(merged["outcome"], "complete");
    assert_eq!(merged["exit_code"], 0);
    assert_eq!(merged["shards"]["seen"], serde_json::json!([0, 1]));
    let totals = s0["totals"].as_object().expect("totals");
    assert!(totals.len() > 10, "{totals:?}");
    for (name, value) in totals {
        let want = value.as_u64().expect("count") + s1["totals"][name].as_u64().expect("count");
        assert_eq!(merged["totals"][name], want, "totals.{name}");
    }
    assert_eq!(merged["totals"]["copied_blocks"], 30);
    let longest = s0["elapsed_s"]
        .as_f64()
        .expect("elapsed")
        .max(s1["elapsed_s"].as_f64().expect("elapsed"));
    assert_eq!(merged["elapsed_s"].as_f64(), Some(longest));

    // Only shard 0: shard 1 is missing, inferred from "0/2" or given by -shards.
    for extra in [&[][..], &["-shards", "2"][..]] {
        let mut args = extra.to_vec();
        args.push(files[0]);
        let out = merge(&args, &merged_path);
        let printed = text(&out.stdout);
        assert_eq!(out.status.code(), Some(1), "{printed}");
        assert!(
            printed.contains("Missing shards (1 of 2, no summary): 1"),
            "{printed}"
        );
        let merged = read_json(&merged_path);
        assert_eq!(merged["outcome"], "incomplete");
        assert_eq!(merged["shards"]["missing"], serde_json::json!([1]));
    }

    // Shard 1 failed (its exit code edited), then stopped early (its outcome edited).
    for (field, value) in [
        ("exit_code", serde_json::json!(1)),
        ("outcome", serde_json::json!("interrupted")),
    ] {
        let mut edited = s1.clone();
        edited[field] = value;
        let path = dir.join(format!("s1-{field}.json"));
        std::fs::write(&path, edited.to_string()).expect("write");
        let out = merge(&[files[0], &path_arg(&path)], &merged_path);
        let printed = text(&out.stdout);
        assert_eq!(out.status.code(), Some(1), "{field}: {printed}");
        assert!(printed.contains("Failed shard 1/2"), "{printed}");
        let merged = read_json(&merged_path);
        assert_eq!(merged["shards"]["failed"][0]["shard"], "1/2");
        assert_eq!(merged["shards"]["missing"], serde_json::json!([]));
    }

    // What cannot be merged is an error naming the file.
    let broken = dir.join("broken.json");
    std::fs::write(&broken, "{\"command\": \"copy\", \"totals\": ").expect("write");
    let out = merge(&[files[0], &path_arg(&broken)], &merged_path);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!(
            "{}: not a keepmover -json summary",
            broken.display()
        )),
        "{err}"
    );
    let out = merge(&[files[0], files[0]], &merged_path);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("shard 0/2 appears twice"));
    let out = merge(&["-shards", "3", files[0], files[1]], &merged_path);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("but -shards is 3"),
        "{}",
        text(&out.stderr)
    );
    let out = keepmover_plain(&["report", "merge", files[0], "-shards", "2"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("flags go before the summary files"));
}

#[test]
fn the_slurm_script_runs_once_per_task_and_the_merge_is_whole() {
    let env = default_env();
    let hashes = fill(&env.src, 24, 1500);
    let dir = env.dir.path();
    let state = dir.join("state");
    let out = keepmover_plain(&[
        "plan",
        "-slurm",
        "-src",
        "srcaa",
        "-dst",
        "dstbb",
        "-shards",
        "2",
        "-settings-dir",
        &path_arg(dir),
        "-state-dir",
        &path_arg(&state),
        "-progress",
        "log",
        "-retry-delay",
        "20ms",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let script = dir.join("job.sbatch");
    std::fs::write(&script, &out.stdout).expect("write script");
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_keepmover"))
        .parent()
        .expect("binary directory");
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    for task in ["0", "1"] {
        let out = Command::new("bash")
            .arg(&script)
            .env("SLURM_ARRAY_TASK_ID", task)
            .env("PATH", &path)
            .env_remove("JOB_COMPLETION_INDEX")
            .output()
            .expect("bash runs the script");
        assert_eq!(
            out.status.code(),
            Some(0),
            "task {task}: {}",
            text(&out.stderr)
        );
        assert!(
            state.join(format!("ck-{task}")).exists(),
            "checkpoint of {task}"
        );
        assert!(state.join(format!("report-{task}.jsonl")).exists());
    }
    assert_placed(&env, &hashes, 2);
    let merged = dir.join("merged.json");
    let out = merge(
        &[
            "-shards",
            "2",
            &path_arg(&state.join("summary-0.json")),
            &path_arg(&state.join("summary-1.json")),
        ],
        &merged,
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
    assert_eq!(read_json(&merged)["totals"]["copied_blocks"], 24);
}

#[test]
fn the_k8s_container_command_runs_once_per_index() {
    let env = default_env();
    let hashes = fill(&env.src, 20, 1700);
    let dir = env.dir.path();
    let out = keepmover_plain(&[
        "plan",
        "-k8s",
        "-src",
        &path_arg(&dir.join("srcaa.conf")),
        "-dst",
        &path_arg(&dir.join("dstbb.conf")),
        "-shards",
        "2",
        "-pvc",
        "state",
        "-progress",
        "log",
        "-retry-delay",
        "20ms",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let Some(python) = python_with(&["yaml"]) else {
        return;
    };
    let job = python_json(
        &python,
        "import json, sys, yaml; print(json.dumps(yaml.safe_load(sys.stdin)))",
        &text(&out.stdout),
    );
    let command: Vec<String> = job["spec"]["template"]["spec"]["containers"][0]["command"]
        .as_array()
        .expect("command")
        .iter()
        .map(|v| v.as_str().expect("string").to_string())
        .collect();
    assert_eq!(command[0], "keepmover");
    // What the pod would see: the Secrets' files, the claim at /state, and Kubernetes'
    // $(JOB_COMPLETION_INDEX) expansion (with $$ meaning $).
    let state = dir.join("state");
    std::fs::create_dir_all(&state).expect("state dir");
    for index in ["0", "1"] {
        let argv: Vec<String> = command[1..]
            .iter()
            .map(|arg| {
                let arg = arg
                    .replace("$(JOB_COMPLETION_INDEX)", index)
                    .replace("$$", "$");
                if let Some(file) = arg.strip_prefix("/etc/keepmover/") {
                    let name = file.rsplit('/').next().expect("file name");
                    path_arg(&dir.join(name))
                } else if let Some(rest) = arg.strip_prefix("/state/") {
                    path_arg(&state.join(rest))
                } else {
                    arg
                }
            })
            .collect();
        let out = Command::new(env!("CARGO_BIN_EXE_keepmover"))
            .args(&argv)
            .env("JOB_COMPLETION_INDEX", index)
            .output()
            .expect("run keepmover");
        assert_eq!(
            out.status.code(),
            Some(0),
            "index {index}: {argv:?}\n{}",
            stderr(&out)
        );
        let summary = read_json(&state.join(format!("summary-{index}.json")));
        assert_eq!(summary["shard"], format!("{index}/2"));
    }
    assert_placed(&env, &hashes, 2);
}
