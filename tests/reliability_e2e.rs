//! Week-long-run promises, end to end on the real binary against keepsim: a graceful stop
//! on SIGTERM (in-flight blocks finish, checkpoint saved, summary printed, exit 143), a
//! second signal stops at once, `kill -9` then a rerun copies everything, and a checkpoint
//! cannot be reused for another job or by two runs at once.

mod e2e_support;

use std::time::{Duration, Instant};

use e2e_support::*;
use keepsim::{ClusterConfig, Faults};

fn slow(env: &Env, delay_ms: u64) {
    for server in 0..3 {
        env.src.set_faults(
            server,
            Faults {
                delay_ms,
                ..Faults::default()
            },
        );
    }
}

/// Waits until at least `n` of `hashes` are on the destination.
fn wait_copied(env: &Env, hashes: &[String], n: usize) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while copied(env, hashes) < n && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(copied(env, hashes) >= n, "copying never started");
}

#[test]
fn sigterm_stops_gracefully_saves_the_checkpoint_and_a_rerun_finishes() {
    let env = default_env();
    let hashes = fill(&env.src, 60, 4000);
    slow(&env, 100);
    let ck = env.dir.path().join("ck").display().to_string();
    let child = spawn(
        &env,
        &[
            "-checkpoint",
            &ck,
            "-prefix-length",
            "2",
            "-concurrency",
            "2",
        ],
    );
    wait_copied(&env, &hashes, 5);
    signal(&child, "TERM");
    let stopped_at = Instant::now();
    let out = child.wait_with_output().expect("exits");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(143), "{err}");
    assert!(stopped_at.elapsed() < Duration::from_secs(10), "{err}");
    assert!(err.contains("Stopped (terminated)"), "{err}");
    assert!(err.contains("Summary: copied"), "{err}");
    assert!(std::path::Path::new(&ck).exists(), "checkpoint saved");
    let partial = copied(&env, &hashes);
    assert!(partial < 60, "stopped early: {partial}");
    slow(&env, 0);
    let out = keepmover(&env, &["-checkpoint", &ck]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_placed(&env, &hashes, 2);
}

#[test]
fn a_second_signal_stops_at_once() {
    let env = default_env();
    let hashes = fill(&env.src, 200, 4000);
    let child = spawn(&env, &["-grace", "60s", "-concurrency", "4"]);
    wait_copied(&env, &hashes, 1);
    // From now on every request takes 5 s: blocks in flight take that long to finish.
    slow(&env, 5000);
    std::thread::sleep(Duration::from_millis(300));
    signal(&child, "INT");
    std::thread::sleep(Duration::from_millis(200));
    let second = Instant::now();
    signal(&child, "INT");
    let out = child.wait_with_output().expect("exits");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(second.elapsed() < Duration::from_secs(3), "{err}");
    assert_eq!(out.status.code(), Some(130), "{err}");
    assert!(copied(&env, &hashes) < 200);
}

#[test]
fn after_kill_9_a_rerun_copies_every_missing_block() {
    let env = default_env();
    let hashes = fill(&env.src, 80, 3000);
    slow(&env, 50);
    let ck = env.dir.path().join("ck").display().to_string();
    let mut child = spawn(&env, &["-checkpoint", &ck, "-prefix-length", "2"]);
    wait_copied(&env, &hashes, 10);
    child.kill().expect("SIGKILL");
    let _ = child.wait();
    slow(&env, 0);
    let out = keepmover(&env, &["-checkpoint", &ck]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert_placed(&env, &hashes, 2);
    // And nothing is left: a third run finds every block present.
    let again = keepmover(&env, &["-count-first"]);
    assert!(
        stderr(&again).contains("there are 80 blocks in src and 80 blocks in dst"),
        "{}",
        stderr(&again)
    );
}

#[test]
fn a_checkpoint_belongs_to_its_job_and_to_one_run() {
    let env = default_env();
    fill(&env.src, 10, 2000);
    let ck = env.dir.path().join("ck").display().to_string();
    let out = keepmover(&env, &["-checkpoint", &ck]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    // The same checkpoint towards another, empty destination: refused, naming it.
    let other = keepsim::Cluster::start(ClusterConfig::new("othrr", 3)).expect("cluster");
    keepsim::write_cluster_files(env.dir.path(), &[&other]).expect("files");
    let other_conf = env.dir.path().join("othrr.conf").display().to_string();
    let mut argv = args(&env, &["-checkpoint", &ck]);
    let dst_at = argv.iter().position(|a| a == "-dst").expect("dst flag") + 1;
    argv[dst_at] = other_conf;
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_keepmover"))
        .args(&argv)
        .output()
        .expect("runs");
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("belongs to another job: its destination"),
        "{err}"
    );
    // Two runs on one checkpoint: the second is refused while the first holds it.
    slow(&env, 300);
    let fresh = env.dir.path().join("ck2").display().to_string();
    let first = spawn(&env, &["-checkpoint", &fresh, "-replications", "3"]);
    std::thread::sleep(Duration::from_millis(500));
    let out = keepmover(&env, &["-checkpoint", &fresh, "-replications", "3"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("in use by another keepmover run"), "{err}");
    signal(&first, "TERM");
    let _ = first.wait_with_output();
}
