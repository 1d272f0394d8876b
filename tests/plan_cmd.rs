//! `keepmover plan` on the real binary: the Kubernetes Indexed Job parses with a real YAML
//! parser (PyYAML) and has what Kubernetes requires of one, the Slurm script passes
//! `bash -n`, both carry exactly the plan's copy flags and no token, and bad input is
//! refused with a usage error.

mod py_support;

use std::process::{Command, Output};

use py_support::{python_json, python_with};

fn keepmover(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_keepmover"))
        .args(args)
        .env("HOME", "/nonexistent-home")
        .output()
        .expect("run keepmover")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Every YAML document in `yaml`, as JSON, through PyYAML's safe loader.
fn load_yaml(yaml: &str) -> Option<Vec<serde_json::Value>> {
    let python = python_with(&["yaml"])?;
    let docs = python_json(
        &python,
        "import json, sys, yaml; print(json.dumps(list(yaml.safe_load_all(sys.stdin))))",
        yaml,
    );
    Some(docs.as_array().expect("a list of documents").clone())
}

/// A settings file with a token in it, as `plan` may be pointed at one.
fn settings_with_token(dir: &std::path::Path, name: &str, token: &str) -> String {
    let path = dir.join(format!("{name}.conf"));
    std::fs::write(
        &path,
        format!("ARVADOS_API_HOST=x.example:443\nARVADOS_API_TOKEN={token}\nARVADOS_BLOB_SIGNING_KEY=key-{token}\n"),
    )
    .expect("write settings");
    path.display().to_string()
}

const COPY_FLAGS: [&str; 10] = [
    "-replications",
    "2",
    "-prefix",
    "ab",
    "-size",
    "1MiB..",
    "-concurrency",
    "8",
    "-memory",
    "2GiB",
];

#[test]
fn k8s_manifest_is_an_indexed_job_with_the_plans_flags_and_no_token() {
    let dir = tempfile::tempdir().expect("tempdir");
    let src = settings_with_token(dir.path(), "oldcluster", "SECRET-TOKEN-SRC");
    let mut args = vec![
        "plan",
        "-k8s",
        "-src",
        &src,
        "-dst",
        "newcluster",
        "-shards",
        "40",
        "-pvc",
        "km-state",
        "-name",
        "old-to-new",
        "-dry-run",
    ];
    args.extend(COPY_FLAGS);
    let out = keepmover(&args);
    let yaml = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(!yaml.contains("SECRET-TOKEN"), "a token leaked:\n{yaml}");
    let Some(docs) = load_yaml(&yaml) else { return };
    assert_eq!(docs.len(), 1, "{yaml}");
    let job = &docs[0];
    assert_eq!(job["apiVersion"], "batch/v1");
    assert_eq!(job["kind"], "Job");
    assert_eq!(job["metadata"]["name"], "old-to-new");
    let spec = &job["spec"];
    assert_eq!(spec["completionMode"], "Indexed");
    assert_eq!(spec["completions"], 40);
    assert_eq!(spec["parallelism"], 16, "default min(N, 16)");
    assert_eq!(spec["backoffLimitPerIndex"], 3);
    let pod = &spec["template"]["spec"];
    // backoffLimitPerIndex requires Never.
    assert_eq!(pod["restartPolicy"], "Never");
    let containers = pod["containers"].as_array().expect("containers");
    assert_eq!(containers.len(), 1);
    let c = &containers[0];
    assert_eq!(
        c["image"],
        format!("keepmover:{}", env!("CARGO_PKG_VERSION"))
    );
    let command: Vec<&str> = c["command"]
        .as_array()
        .expect("command")
        .iter()
        .map(|v| v.as_str().expect("string"))
        .collect();
    let mut want = vec![
        "keepmover",
        "-src",
        "/etc/keepmover/keepmover-oldcluster/oldcluster.conf",
        "-dst",
        "/etc/keepmover/keepmover-newcluster/newcluster.conf",
        "-shard",
        "auto/40",
        "-checkpoint",
        "/state/ck-$(JOB_COMPLETION_INDEX)",
        "-report",
        "/state/report-$(JOB_COMPLETION_INDEX).jsonl",
        "-json",
        "/state/summary-$(JOB_COMPLETION_INDEX).json",
    ];
    // The copy flags in the flag table's order.
    want.extend([
        "-replications",
        "2",
        "-prefix",
        "ab",
        "-concurrency",
        "8",
        "-memory",
        "2GiB",
        "-dry-run=true",
        "-size",
        "1MiB..",
    ]);
    assert_eq!(command, want);
    // The index comes in through the environment too (for -shard auto/N and $(...)).
    assert_eq!(c["env"][0]["name"], "JOB_COMPLETION_INDEX");
    // 2 GiB of buffers + 256 MiB headroom.
    assert_eq!(c["resources"]["limits"]["memory"], "2304Mi");
    assert_eq!(c["resources"]["requests"]["memory"], "2304Mi");
    assert_eq!(c["resources"]["limits"]["cpu"], "2");
    let volumes = pod["volumes"].as_array().expect("volumes");
    let by_name = |name: &str| {
        volumes
            .iter()
            .find(|v| v["name"] == name)
            .unwrap_or_else(|| panic!("volume {name} in {volumes:?}"))
    };
    assert_eq!(
        by_name("state")["persistentVolumeClaim"]["claimName"],
        "km-state"
    );
    assert_eq!(
        by_name("settings-0")["secret"]["secretName"],
        "keepmover-oldcluster"
    );
    assert_eq!(
        by_name("settings-1")["secret"]["secretName"],
        "keepmover-newcluster"
    );
    let mounts = c["volumeMounts"].as_array().expect("mounts");
    assert!(mounts
        .iter()
        .any(|m| m["name"] == "state" && m["mountPath"] == "/state"));
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    // A usage error fails the index at once instead of being retried.
    let rules = spec["podFailurePolicy"]["rules"].as_array().expect("rules");
    assert!(rules
        .iter()
        .any(|r| r["action"] == "FailIndex" && r["onExitCodes"]["values"][0] == 2));
}

#[test]
fn k8s_without_a_claim_warns_that_checkpoints_do_not_survive() {
    let out = keepmover(&[
        "plan",
        "-k8s",
        "-src",
        "a",
        "-dst",
        "a",
        "-shards",
        "2",
        "-src-services",
        "u1",
        "-dst-services",
        "u2",
        "-parallelism",
        "1",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(
        err.contains("warning: /state is an emptyDir") && err.contains("lost with each pod"),
        "{err}"
    );
    let yaml = text(&out.stdout);
    let Some(docs) = load_yaml(&yaml) else { return };
    let pod = &docs[0]["spec"]["template"]["spec"];
    let volumes = pod["volumes"].as_array().expect("volumes");
    assert!(volumes
        .iter()
        .any(|v| v["name"] == "state" && v["emptyDir"].is_object()));
    // One cluster, one Secret.
    let secrets = volumes.iter().filter(|v| v["secret"].is_object()).count();
    assert_eq!(secrets, 1, "{volumes:?}");
    assert_eq!(docs[0]["spec"]["parallelism"], 1);
}

#[test]
fn k8s_values_that_look_like_other_yaml_types_stay_strings() {
    // `-prefix 0` would be the number 0 unquoted, `-size` "1..2" fine, `-mtime` with a colon.
    let out = keepmover(&[
        "plan",
        "-k8s",
        "-src",
        "a",
        "-dst",
        "b",
        "-shards",
        "1",
        "-prefix",
        "0",
        "-mtime",
        "2024-01-01T00:00:00Z..",
        "-bwlimit",
        "10MiB:20MiB",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let Some(docs) = load_yaml(&text(&out.stdout)) else {
        return;
    };
    let command = docs[0]["spec"]["template"]["spec"]["containers"][0]["command"]
        .as_array()
        .expect("command")
        .clone();
    let strings: Vec<String> = command
        .iter()
        .map(|v| v.as_str().expect("every argument is a string").to_string())
        .collect();
    for want in ["0", "2024-01-01T00:00:00Z..", "10MiB:20MiB"] {
        assert!(strings.iter().any(|s| s == want), "{want} in {strings:?}");
    }
}

#[test]
fn slurm_script_passes_bash_n_and_has_the_array_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut args = vec![
        "plan",
        "-slurm",
        "-src",
        "old",
        "-dst",
        "new",
        "-shards",
        "4",
        "-settings-dir",
        "/shared/arvados conf",
        "-cpus",
        "4",
        "-locators",
        "/shared/it's.list",
    ];
    args.extend(COPY_FLAGS);
    let out = keepmover(&args);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("-locators /shared/it's.list: every shard reads this file"),
        "{}",
        text(&out.stderr)
    );
    let script = text(&out.stdout);
    let path = dir.path().join("job.sbatch");
    std::fs::write(&path, &script).expect("write script");
    let check = Command::new("bash")
        .arg("-n")
        .arg(&path)
        .output()
        .expect("bash runs");
    assert!(
        check.status.success(),
        "bash -n: {}\n{script}",
        text(&check.stderr)
    );
    let lines: Vec<&str> = script.lines().collect();
    assert_eq!(lines[0], "#!/bin/bash");
    for want in [
        "#SBATCH --array=0-3",
        "#SBATCH --mem=2304M",
        "#SBATCH --cpus-per-task=4",
        "#SBATCH --job-name=keepmover",
    ] {
        assert!(lines.contains(&want), "{want} in\n{script}");
    }
    // Every #SBATCH line comes before the first command.
    let first_command = lines
        .iter()
        .position(|l| !l.starts_with('#'))
        .expect("a command");
    assert!(lines[first_command..]
        .iter()
        .all(|l| !l.starts_with("#SBATCH")));
    for want in [
        "-src '/shared/arvados conf/old.conf'",
        "-shard auto/4",
        "-checkpoint \"$state/ck-$SLURM_ARRAY_TASK_ID\"",
        "-json \"$state/summary-$SLURM_ARRAY_TASK_ID.json\"",
        "-replications 2 \\",
        "-memory 2GiB \\",
        "-locators '/shared/it'\\''s.list'",
    ] {
        assert!(script.contains(want), "{want} in\n{script}");
    }
    // More shards than parallelism: the array is throttled.
    let out = keepmover(&["plan", "-slurm", "-src", "a", "-dst", "b", "-shards", "100"]);
    assert!(text(&out.stdout).contains("#SBATCH --array=0-99%16\n"));
}

#[test]
fn plan_refuses_bad_input_with_a_usage_error() {
    let cases: &[(&[&str], &str)] = &[
        (
            &["plan", "-k8s", "-src", "a", "-dst", "b", "-shards", "0"],
            "invalid value \"0\" for flag -shards: value out of range (must be 1..65536)",
        ),
        (
            &["plan", "-k8s", "-src", "a", "-dst", "b", "-shards", "65537"],
            "invalid value \"65537\" for flag -shards: value out of range (must be 1..65536)",
        ),
        (
            &["plan", "-k8s", "-dst", "b", "-shards", "2"],
            "plan needs -src and -dst",
        ),
        (
            &["plan", "-slurm", "-src", "a", "-shards", "2"],
            "plan needs -src and -dst",
        ),
        (
            &["plan", "-k8s", "-src", "a", "-dst", "b"],
            "plan needs -shards N",
        ),
        (
            &["plan", "-src", "a", "-dst", "b", "-shards", "2"],
            "plan needs one of -k8s",
        ),
        (
            &[
                "plan", "-k8s", "-src", "a", "-dst", "b", "-shards", "2", "-shard", "0/2",
            ],
            "-shard is set by the plan",
        ),
        (
            &[
                "plan", "-k8s", "-src", "a", "-dst", "b", "-shards", "2", "-json", "x",
            ],
            "-json is set by the plan",
        ),
        (
            &[
                "plan", "-k8s", "-src", "a", "-dst", "b", "-shards", "2", "-name", "Big_Job",
            ],
            "-name \"Big_Job\": expected a DNS-1123 label",
        ),
        (
            &["plan", "-k8s", "-src", "Old", "-dst", "b", "-shards", "2"],
            "name the Secret with -src-secret",
        ),
        (
            &[
                "plan", "-k8s", "-src", "a", "-dst", "b", "-shards", "2", "-retries", "x",
            ],
            "invalid value \"x\" for flag -retries",
        ),
        (
            &[
                "plan", "-k8s", "-src", "a", "-dst", "b", "-shards", "2", "-nosuch",
            ],
            "flag provided but not defined: -nosuch",
        ),
    ];
    for (args, want) in cases {
        let out = keepmover(args);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: want {want:?} in {err}");
        assert!(out.stdout.is_empty(), "{args:?} printed a plan anyway");
    }
}

#[test]
fn plan_help_lists_its_flags() {
    let out = keepmover(&["plan", "-help"]);
    assert_eq!(out.status.code(), Some(0));
    let err = text(&out.stderr);
    for needle in [
        "-shards int",
        "-k8s",
        "-slurm",
        "-pvc string",
        "-image string",
    ] {
        assert!(err.contains(needle), "{needle} in {err}");
    }
}
