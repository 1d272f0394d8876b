//! Job controls end to end, on the real binary against keepsim: `-max-transfer` (exit 8,
//! a rerun finishes), `-max-duration` (exit 10), `-bwlimit` (the rate holds), `-watch`
//! (new blocks are copied in the next pass), filters, shards and the per-block report.

mod e2e_support;

use std::time::{Duration, Instant};

use e2e_support::*;
use keepsim::Faults;

#[test]
fn max_transfer_exits_8_and_a_rerun_finishes_the_job() {
    let env = default_env();
    let hashes = fill(&env.src, 40, 50_000);
    let checkpoint = env.dir.path().join("ck");
    let ck = checkpoint.display().to_string();
    let out = keepmover(
        &env,
        &[
            "-max-transfer",
            "300KiB",
            "-concurrency",
            "1",
            "-checkpoint",
            &ck,
            "-prefix-length",
            "1",
        ],
    );
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(8), "{err}");
    assert!(err.contains("Stopped (max_transfer)"), "{err}");
    let first = copied(&env, &hashes);
    assert!(first > 0 && first < 40, "{first} copied: {err}");
    let out = keepmover(&env, &["-checkpoint", &ck]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert_placed(&env, &hashes, 2);
}

#[test]
fn max_duration_exits_10() {
    let env = default_env();
    fill(&env.src, 30, 10_000);
    for server in 0..3 {
        env.src.set_faults(
            server,
            Faults {
                delay_ms: 200,
                ..Faults::default()
            },
        );
    }
    let began = Instant::now();
    let out = keepmover(&env, &["-max-duration", "1s", "-concurrency", "1"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(10), "{err}");
    assert!(err.contains("Stopped (max_duration)"), "{err}");
    assert!(began.elapsed() < Duration::from_secs(20), "{err}");
}

#[test]
fn bwlimit_holds_the_rate_within_ten_percent() {
    let env = default_env();
    // 12 MiB at 1 MiB/s: about 12 s.
    let hashes = fill(&env.src, 48, 256 << 10);
    let json = env.dir.path().join("run.json");
    let json_arg = json.display().to_string();
    let out = keepmover(&env, &["-bwlimit", "1MiB", "-json", &json_arg]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert_eq!(copied(&env, &hashes), 48);
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).expect("json")).expect("parses");
    let bytes = summary["totals"]["copied_bytes"].as_f64().expect("bytes");
    let secs = summary["elapsed_s"].as_f64().expect("elapsed");
    assert!(secs >= 10.0, "ran {secs} s");
    let rate = bytes / secs;
    let want = f64::from(1u32 << 20);
    assert!(
        (rate - want).abs() / want < 0.10,
        "measured {rate:.0} B/s against a limit of {want} B/s over {secs:.1} s"
    );
}

#[test]
fn watch_copies_blocks_added_between_passes() {
    let env = default_env();
    let first = fill(&env.src, 10, 3000);
    let child = spawn(&env, &["-watch", "1s"]);
    let deadline = Instant::now() + Duration::from_secs(20);
    while copied(&env, &first) < 10 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(copied(&env, &first), 10, "first pass");
    let later = fill_from(&env.src, 100, 5, 3000);
    while copied(&env, &later) < 5 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    signal(&child, "TERM");
    let out = child.wait_with_output().expect("exits");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(copied(&env, &later), 5, "{err}");
    assert!(err.contains("Pass 2 starts"), "{err}");
    assert!(
        err.contains("blocks appeared on the source since the first pass"),
        "{err}"
    );
    assert_eq!(out.status.code(), Some(143), "{err}");
}

#[test]
fn size_filter_and_locator_list_select_exactly_their_blocks() {
    let env = default_env();
    // Sizes 1000 + n.
    let hashes = fill(&env.src, 20, 1000);
    let out = keepmover(&env, &["-size", "1005..1009"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    for (n, hash) in hashes.iter().enumerate() {
        assert_eq!(
            !holders(&env.dst, hash).is_empty(),
            (5..=9).contains(&n),
            "block {n}"
        );
    }
    let list = env.dir.path().join("list");
    std::fs::write(&list, format!("{}\n{}+1012\n", hashes[0], hashes[12])).expect("write");
    let list_arg = list.display().to_string();
    let out = keepmover(&env, &["-locators", &list_arg]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(copied(&env, &hashes), 7);
}

#[test]
fn shards_together_copy_what_one_run_copies() {
    let env = default_env();
    let hashes = fill(&env.src, 30, 2000);
    let report = env.dir.path().join("blocks");
    let mut lines = 0;
    for index in 0..4 {
        let shard = format!("{index}/4");
        let path = format!("{}.{index}", report.display());
        let out = keepmover(&env, &["-shard", &shard, "-report", &path]);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        lines += std::fs::read_to_string(&path)
            .expect("report")
            .lines()
            .count();
    }
    assert_eq!(lines, 30, "each block copied by exactly one shard");
    assert_placed(&env, &hashes, 2);
}
