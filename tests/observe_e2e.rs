//! Watching and steering a running copy through `-listen`: the real `keepmover` binary
//! against simulated clusters (keepsim, in this process, on loopback), slowed with keepsim's
//! delay fault so a run lasts long enough to watch. `/metrics` is checked with the Python
//! `prometheus_client` parser (from `.venv`, which `.ci/run` installs; skipped with a message
//! without it unless `CI` is set), and pause, concurrency, bwlimit and cancel are checked by
//! what the servers and the job's own gauges see. Waits are polls with deadlines, not
//! timings: nothing here asserts a speed beyond "the limit moved the rate".

use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use keepmover::commands::status::{fetch_status, request};
use keepmover::report::status::StatusDoc;
use keepsim::{Cluster, ClusterConfig, Faults};

struct Env {
    src: Cluster,
    dst: Cluster,
    dir: tempfile::TempDir,
    /// `XDG_RUNTIME_DIR` of the jobs started here (run files land under it).
    runtime: PathBuf,
}

fn env() -> Env {
    let src = Cluster::start(ClusterConfig::new("srcaa", 3)).expect("start src");
    let dst = Cluster::start(ClusterConfig::new("dstbb", 3)).expect("start dst");
    let dir = tempfile::tempdir().expect("tempdir");
    keepsim::write_cluster_files(dir.path(), &[&src, &dst]).expect("cluster files");
    let runtime = dir.path().join("run");
    std::fs::create_dir(&runtime).expect("runtime dir");
    Env {
        src,
        dst,
        dir,
        runtime,
    }
}

/// `count` distinct blocks of about `size` bytes, each on one source server.
fn fill(cluster: &Cluster, count: usize, size: usize) {
    for n in 0..count {
        let data = keepsim::pseudo_random_bytes(n as u64 + 1, size + n % 7);
        cluster
            .put_block(n % cluster.keepstores.len(), &data)
            .expect("put");
    }
}

fn slow(cluster: &Cluster, delay_ms: u64) {
    for i in 0..cluster.keepstores.len() {
        cluster.set_faults(
            i,
            Faults {
                delay_ms,
                ..Faults::default()
            },
        );
    }
}

/// What both clusters' servers have seen: requests at the source and the destination, the
/// destination's writes, and its listings.
fn server_counts(env: &Env) -> (usize, usize, usize, u64) {
    (
        env.src.requests(),
        env.dst.requests(),
        env.dst.writes(),
        env.dst.index_listings(),
    )
}

/// Waits (up to `deadline_secs`) until no server has counted a request for `quiet`; returns
/// how long that took.
fn wait_for_quiet_servers(env: &Env, quiet: Duration, deadline_secs: u64) -> Duration {
    let start = Instant::now();
    let mut last = server_counts(env);
    let mut last_change = Instant::now();
    while last_change.elapsed() < quiet {
        assert!(
            start.elapsed() < Duration::from_secs(deadline_secs),
            "the servers never went quiet in {deadline_secs}s: {last:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
        let now = server_counts(env);
        if now != last {
            last = now;
            last_change = Instant::now();
        }
    }
    start.elapsed()
}

fn keepmover_command(env: &Env, extra: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_keepmover"));
    cmd.arg("-src")
        .arg(env.dir.path().join("srcaa.conf"))
        .arg("-dst")
        .arg(env.dir.path().join("dstbb.conf"))
        .args([
            "-progress",
            "log",
            "-retry-delay",
            "20ms",
            "-replications",
            "1",
        ])
        .args(extra)
        .env("XDG_RUNTIME_DIR", &env.runtime);
    cmd
}

/// A job running in the background, its stderr collected by a thread.
struct Job {
    child: Child,
    stderr: std::thread::JoinHandle<String>,
    addr: String,
}

impl Job {
    /// Starts keepmover with `-listen 127.0.0.1:0` (unless `extra` says otherwise) and waits
    /// for its run file to learn the bound address.
    fn start(env: &Env, extra: &[&str]) -> Job {
        let mut args: Vec<&str> = Vec::new();
        if !extra.contains(&"-listen") {
            args.extend(["-listen", "127.0.0.1:0"]);
        }
        args.extend(extra);
        Job::spawn(env, keepmover_command(env, &args))
    }

    /// Starts `command` (which must carry `-listen`) and waits for its run file.
    fn spawn(env: &Env, mut command: Command) -> Job {
        let mut child = command
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .expect("spawn keepmover");
        let mut pipe = child.stderr.take().expect("stderr");
        let stderr = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = pipe.read_to_string(&mut text);
            text
        });
        let run_file = env
            .runtime
            .join("keepmover")
            .join(format!("{}.json", child.id()));
        let deadline = Instant::now() + Duration::from_secs(30);
        let addr = loop {
            if let Ok(bytes) = std::fs::read(&run_file) {
                let v: serde_json::Value = serde_json::from_slice(&bytes).expect("run file JSON");
                break v["address"].as_str().expect("address").to_string();
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!("keepmover exited early ({status})");
            }
            assert!(
                Instant::now() < deadline,
                "no run file at {}",
                run_file.display()
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        Job {
            child,
            stderr,
            addr,
        }
    }

    fn status(&self) -> StatusDoc {
        fetch_status(&self.addr, None).expect("status")
    }

    fn metrics(&self) -> String {
        request(&self.addr, "GET", "/metrics", None, None).expect("metrics")
    }

    fn control(&self, body: &str) -> String {
        request(&self.addr, "POST", "/control", Some(body), None).expect("control")
    }

    /// Polls the status until `done` holds (or panics after `secs`).
    fn wait_for(&self, secs: u64, what: &str, done: impl Fn(&StatusDoc) -> bool) -> StatusDoc {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let doc = self.status();
            if done(&doc) {
                return doc;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; last status: {doc:#?}"
            );
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// Waits for the process to end; its exit code and stderr.
    fn finish(mut self, secs: u64) -> (Option<i32>, String) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                break status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!("keepmover did not end within {secs}s");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        (status.code(), self.stderr.join().unwrap_or_default())
    }
}

/// `keepmover_blocks_in_flight` now (-1 if absent).
fn in_flight(job: &Job) -> f64 {
    sample(&job.metrics(), "keepmover_blocks_in_flight").unwrap_or(-1.0)
}

/// Polls `keepmover_blocks_in_flight` until `reached` holds (or panics after 30 s).
fn wait_for_in_flight(job: &Job, what: &str, reached: impl Fn(f64) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !reached(in_flight(job)) {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The value of an unlabelled sample in an exposition, by a plain reading of the text.
fn sample(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

/// The Python interpreter with `prometheus_client`, or a reason to skip.
fn prometheus_python() -> Option<PathBuf> {
    let python = std::env::var_os("KEEPMOVER_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python"));
    let ok = Command::new(&python)
        .args(["-c", "import prometheus_client.parser"])
        .output()
        .is_ok_and(|o| o.status.success());
    if ok {
        return Some(python);
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "CI is set but {} lacks prometheus_client: .ci/run installs it into .venv",
        python.display()
    );
    eprintln!(
        "SKIPPED: {} lacks prometheus_client (run .ci/run, or .venv/bin/pip install prometheus-client)",
        python.display()
    );
    None
}

/// Parses an exposition with `prometheus_client.parser.text_string_to_metric_families`;
/// returns `{sample name: {sorted labels as k=v,k=v: value}}` and the families' types.
fn parse_with_prometheus_client(python: &Path, text: &str) -> serde_json::Value {
    let script = r#"
import json, sys
from prometheus_client.parser import text_string_to_metric_families
samples, types = {}, {}
for family in text_string_to_metric_families(sys.stdin.read()):
    types[family.name] = family.type
    for s in family.samples:
        labels = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()))
        samples.setdefault(s.name, {})[labels] = s.value
print(json.dumps({"samples": samples, "types": types}))
"#;
    let mut child = Command::new(python)
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run python");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("feed python");
    let out = child.wait_with_output().expect("python output");
    assert!(
        out.status.success(),
        "prometheus_client refused the exposition: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("parser JSON")
}

#[test]
fn metrics_parse_with_prometheus_client_and_match_the_json_summary() {
    let Some(python) = prometheus_python() else {
        return;
    };
    let env = env();
    fill(&env.src, 300, 2000);
    // A few blocks already there: skipped ones show too.
    for n in 0..5 {
        let data = keepsim::pseudo_random_bytes(n as u64 + 1, 2000 + n % 7);
        env.dst.put_block(0, &data).expect("put");
    }
    slow(&env.src, 5);
    let json = env.dir.path().join("summary.json");
    let job = Job::start(
        &env,
        &[
            "-prefix-length",
            "1",
            "-concurrency",
            "4",
            "-listen-linger",
            "60s",
            "-json",
            json.to_str().expect("utf-8"),
        ],
    );
    // Mid-run: parses, and the histogram has servers and operations.
    job.wait_for(30, "some blocks copied", |d| d.counts.copied_blocks > 20);
    let mid = parse_with_prometheus_client(&python, &job.metrics());
    assert_eq!(mid["types"]["keepmover_copied_blocks"], "counter");
    assert_eq!(mid["types"]["keepmover_blocks_in_flight"], "gauge");
    assert_eq!(
        mid["types"]["keepmover_request_duration_seconds"],
        "histogram"
    );
    let buckets = mid["samples"]["keepmover_request_duration_seconds_bucket"]
        .as_object()
        .expect("buckets");
    assert!(
        buckets
            .keys()
            .any(|k| k.contains("op=get") && k.contains("le=+Inf")),
        "{buckets:?}"
    );
    // After the run (the job lingers): the counters are the summary's.
    job.wait_for(60, "the run to end", |d| d.phase == "done");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !json.exists() {
        assert!(Instant::now() < deadline, "no -json summary");
        std::thread::sleep(Duration::from_millis(20));
    }
    let text = job.metrics();
    let parsed = parse_with_prometheus_client(&python, &text);
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&json).expect("summary")).expect("summary JSON");
    let totals = &summary["totals"];
    let value = |name: &str| parsed["samples"][name][""].as_f64().unwrap_or(f64::NAN);
    for (metric, field) in [
        ("keepmover_copied_blocks_total", "copied_blocks"),
        ("keepmover_copied_bytes_total", "copied_bytes"),
        ("keepmover_skipped_blocks_total", "skipped_blocks"),
        ("keepmover_skipped_bytes_total", "skipped_bytes"),
        ("keepmover_failed_blocks_total", "failed_blocks"),
        ("keepmover_refetched_blocks_total", "refetched_blocks"),
        ("keepmover_retried_errors_total", "retried_errors"),
        ("keepmover_requeued_blocks_total", "requeued_blocks"),
        ("keepmover_slices_done_total", "slices_done"),
    ] {
        assert_eq!(
            value(metric),
            totals[field].as_f64().expect("number"),
            "{metric} vs totals.{field}\n{text}"
        );
    }
    assert_eq!(value("keepmover_copied_blocks_total"), 295.0);
    assert_eq!(value("keepmover_skipped_blocks_total"), 5.0);
    assert_eq!(value("keepmover_blocks_in_flight"), 0.0);
    assert_eq!(value("keepmover_checkpoint_watermark_ratio"), 1.0);
    assert_eq!(
        parsed["samples"]["keepmover_phase"]["phase=done"].as_f64(),
        Some(1.0)
    );
    // Every GET counted in the histogram, per server.
    let gets: f64 = parsed["samples"]["keepmover_request_duration_seconds_count"]
        .as_object()
        .expect("counts")
        .iter()
        .filter(|(k, _)| k.contains("op=get"))
        .map(|(_, v)| v.as_f64().unwrap_or(0.0))
        .sum();
    assert_eq!(gets, 295.0);
    assert!(
        !text.contains(&env.src.config.system_root_token),
        "token in /metrics"
    );
    // `cancel` ends the linger; the run had ended well, so the exit code stays 0.
    job.control(r#"{"action":"cancel"}"#);
    let (code, err) = job.finish(30);
    assert_eq!(code, Some(0), "{err}");
}

#[test]
fn pause_stops_new_requests_then_resume_finishes() {
    let env = env();
    fill(&env.src, 300, 1000);
    slow(&env.src, 10);
    let job = Job::start(&env, &["-prefix-length", "1", "-concurrency", "4"]);
    job.wait_for(30, "copying", |d| d.counts.copied_blocks >= 10);
    let answer = job.control(r#"{"action":"pause"}"#);
    assert!(answer.contains("\"phase\":\"paused\""), "{answer}");
    // Blocks in flight finish; then nothing new starts.
    let paused = job.wait_for(30, "in-flight blocks to finish", |d| {
        d.phase == "paused" && d.counts.in_flight_blocks == 0
    });
    // keepsim counts a request when its task reads it off the socket, which on a loaded
    // machine can be well after keepmover sent it: a try keepmover has already timed out
    // and given up on still arrives. So wait until the servers are quiet before watching
    // for new requests. (CI once saw 27 destination requests arrive here, none at the
    // source; the engine's own promise is tested without sockets in
    // `no_block_starts_while_paused_not_even_a_requeued_one`.) A job that kept sending while
    // paused never goes quiet and fails here.
    let at_pause = server_counts(&env);
    let quiet_since = wait_for_quiet_servers(&env, Duration::from_millis(500), 20);
    let before = server_counts(&env);
    if before != at_pause {
        // Not a failure by itself, but worth seeing in the log (`--nocapture`).
        eprintln!("servers counted after in-flight reached 0: {at_pause:?} -> {before:?}");
    }
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(
        server_counts(&env),
        before,
        "requests reached the keepstores while paused (counts: requests src, dst; writes dst; listings dst; {at_pause:?} when in flight reached 0, quiet after {quiet_since:?}); keepmover's counts when paused {:?}, now {:?}",
        paused.counts,
        job.status().counts
    );
    let still = job.status();
    assert_eq!(still.counts.started_blocks, paused.counts.started_blocks);
    assert!(still.counts.copied_blocks < 300);
    // SIGUSR1 prints the same summary as `keepmover status`.
    let pid = job.child.id().to_string();
    let kill = Command::new("kill")
        .args(["-USR1", &pid])
        .status()
        .expect("kill");
    assert!(kill.success());
    // `keepmover status` without an address finds the job through its run file.
    let listed = Command::new(env!("CARGO_BIN_EXE_keepmover"))
        .arg("status")
        .env("XDG_RUNTIME_DIR", &env.runtime)
        .output()
        .expect("status");
    let listed = String::from_utf8_lossy(&listed.stdout);
    assert!(listed.contains(&job.addr), "{listed}");
    assert!(listed.contains(&format!("pid {pid}")), "{listed}");
    let human = Command::new(env!("CARGO_BIN_EXE_keepmover"))
        .args(["status", &job.addr])
        .output()
        .expect("status ADDR");
    let human = String::from_utf8_lossy(&human.stdout);
    assert!(human.contains(": paused, running"), "{human}");
    let ctl = Command::new(env!("CARGO_BIN_EXE_keepmover"))
        .args(["ctl", &job.addr, "resume"])
        .output()
        .expect("ctl resume");
    assert!(ctl.status.success(), "{ctl:?}");
    let (code, err) = job.finish(60);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        err.contains("Successfully copied to destination 300 blocks."),
        "{err}"
    );
    assert!(err.contains("Status: keepmover copy (pid"), "{err}");
    assert!(err.contains(": paused, running"), "{err}");
}

#[test]
fn concurrency_one_brings_blocks_in_flight_down_to_one() {
    let env = env();
    fill(&env.src, 400, 1000);
    slow(&env.src, 40);
    let job = Job::start(&env, &["-prefix-length", "1", "-concurrency", "8"]);
    wait_for_in_flight(&job, "more than 3 in flight at -concurrency 8", |n| {
        n >= 4.0
    });
    let out = Command::new(env!("CARGO_BIN_EXE_keepmover"))
        .args(["ctl", &job.addr, "concurrency", "1"])
        .output()
        .expect("ctl");
    assert!(out.status.success(), "{out:?}");
    wait_for_in_flight(&job, "blocks in flight down to 1", |n| n <= 1.0);
    // And it stays there while the run goes on.
    let copied = job.status().counts.copied_blocks;
    for _ in 0..30 {
        let now = in_flight(&job);
        assert!(now <= 1.0, "{now} blocks in flight after concurrency 1");
        std::thread::sleep(Duration::from_millis(20));
    }
    let text = job.metrics();
    assert_eq!(
        sample(&text, "keepmover_concurrency_per_worker_blocks"),
        Some(1.0)
    );
    assert!(
        job.status().counts.copied_blocks > copied,
        "the run stalled"
    );
    // Back up, and the run ends by itself (no lane stays parked).
    job.control(r#"{"action":"concurrency","value":0}"#);
    slow(&env.src, 0);
    let (code, err) = job.finish(60);
    assert_eq!(code, Some(0), "{err}");
}

#[test]
fn bwlimit_changes_the_measured_rate() {
    let env = env();
    fill(&env.src, 600, 64 << 10);
    slow(&env.src, 2);
    let job = Job::start(&env, &["-prefix-length", "1", "-concurrency", "8"]);
    job.wait_for(30, "copying", |d| d.counts.copied_blocks >= 5);
    let limit = 256u64 << 10;
    let out = Command::new(env!("CARGO_BIN_EXE_keepmover"))
        .args(["ctl", &job.addr, "bwlimit", "256KiB"])
        .output()
        .expect("ctl");
    assert!(out.status.success(), "{out:?}");
    let copied = |job: &Job| job.status().counts.copied_bytes;
    // Let the token bucket's burst and the blocks in flight drain, then measure.
    std::thread::sleep(Duration::from_millis(700));
    let (t0, b0) = (Instant::now(), copied(&job));
    std::thread::sleep(Duration::from_secs(2));
    let limited = (copied(&job) - b0) as f64 / t0.elapsed().as_secs_f64();
    let doc = job.status();
    assert_eq!(doc.limits.bwlimit_down_bytes_per_s, limit);
    // A single rate limits the reads (so the copies); sending is not limited apart.
    assert_eq!(doc.limits.bwlimit_up_bytes_per_s, 0);
    assert!(
        limited <= 2.0 * limit as f64,
        "{limited:.0} B/s under a {limit} B/s limit"
    );
    job.control(r#"{"action":"bwlimit","value":"0"}"#);
    std::thread::sleep(Duration::from_millis(200));
    let (t0, b0) = (Instant::now(), copied(&job));
    std::thread::sleep(Duration::from_secs(1));
    // Unlimited, the rate is several times the limit, or the run has already ended (and
    // may have closed its listener: 600 blocks take a fraction of a second unlimited).
    if let Ok(doc) = fetch_status(&job.addr, None) {
        let free = (doc.counts.copied_bytes - b0) as f64 / t0.elapsed().as_secs_f64();
        assert!(
            doc.phase == "done" || free > 4.0 * limit as f64,
            "{free:.0} B/s without a limit, {limited:.0} B/s with one"
        );
    }
    let (code, err) = job.finish(60);
    assert_eq!(code, Some(0), "{err}");
}

#[test]
fn cancel_saves_the_checkpoint_and_exits_143() {
    let env = env();
    fill(&env.src, 500, 1000);
    slow(&env.src, 10);
    let checkpoint = env.dir.path().join("run.ckpt");
    let ckpt = checkpoint.to_str().expect("utf-8");
    let job = Job::start(
        &env,
        &[
            "-prefix-length",
            "2",
            "-concurrency",
            "4",
            "-checkpoint",
            ckpt,
        ],
    );
    let doc = job.wait_for(60, "a watermark", |d| d.watermark.is_some());
    assert!(doc.counts.copied_blocks < 500, "{doc:?}");
    let out = Command::new(env!("CARGO_BIN_EXE_keepmover"))
        .args(["ctl", &job.addr, "cancel"])
        .output()
        .expect("ctl");
    assert!(out.status.success(), "{out:?}");
    let (code, err) = job.finish(60);
    assert_eq!(code, Some(143), "{err}");
    assert!(err.contains("Stopped (terminated)"), "{err}");
    let saved = std::fs::read_to_string(&checkpoint).expect("checkpoint saved");
    assert!(saved.contains("done_through"), "{saved}");
    // The run file is gone with the job.
    let left: Vec<_> = std::fs::read_dir(env.runtime.join("keepmover"))
        .map(|d| d.flatten().collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "run files left: {left:?}");
    // A rerun from the checkpoint finishes the copy.
    slow(&env.src, 0);
    let again = keepmover_command(&env, &["-prefix-length", "2", "-checkpoint", ckpt])
        .output()
        .expect("rerun");
    let err = String::from_utf8_lossy(&again.stderr);
    assert_eq!(again.status.code(), Some(0), "{err}");
    let copied: usize = (0..3).map(|i| env.dst.blocks_on(i).len()).sum();
    assert_eq!(copied, 500);
}

#[test]
fn non_loopback_listen_needs_a_token_and_then_every_request_carries_it() {
    let env = env();
    let refused = keepmover_command(&env, &["-listen", "0.0.0.0:0"])
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(2), "{err}");
    assert!(err.contains("-listen-token-file"), "{err}");

    fill(&env.src, 200, 1000);
    slow(&env.src, 20);
    let token_file = env.dir.path().join("token");
    std::fs::write(&token_file, "letmein-0123456789\n").expect("token file");
    let job = Job::start(
        &env,
        &[
            "-listen",
            "0.0.0.0:0",
            "-listen-token-file",
            token_file.to_str().expect("utf-8"),
            "-prefix-length",
            "1",
        ],
    );
    // Bound on every interface; asked only over loopback.
    let port = job.addr.rsplit(':').next().expect("port");
    let local = format!("127.0.0.1:{port}");
    let raw = |request: &str| {
        let mut stream = std::net::TcpStream::connect(&local).expect("connect");
        stream.write_all(request.as_bytes()).expect("write");
        let mut reply = String::new();
        stream.read_to_string(&mut reply).expect("read");
        reply
    };
    for path in ["/metrics", "/status"] {
        let reply = raw(&format!("GET {path} HTTP/1.0\r\n\r\n"));
        assert!(reply.starts_with("HTTP/1.0 401"), "{path}: {reply}");
    }
    let reply = raw("POST /control HTTP/1.0\r\nAuthorization: Bearer wrong\r\nContent-Length: 18\r\n\r\n{\"action\":\"pause\"}");
    assert!(reply.starts_with("HTTP/1.0 401"), "{reply}");
    let reply = raw("GET /status HTTP/1.0\r\nAuthorization: Bearer letmein-0123456789\r\n\r\n");
    assert!(reply.starts_with("HTTP/1.0 200"), "{reply}");
    assert!(!reply.contains(&env.src.config.system_root_token));
    // The clients take the same token file.
    let tf = token_file.to_str().expect("utf-8");
    let out = Command::new(env!("CARGO_BIN_EXE_keepmover"))
        .args(["status", "-listen-token-file", tf, &local])
        .output()
        .expect("status");
    assert!(out.status.success(), "{out:?}");
    let out = Command::new(env!("CARGO_BIN_EXE_keepmover"))
        .args(["ctl", &local, "pause"])
        .output()
        .expect("ctl without token");
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("HTTP 401"));
    let out = Command::new(env!("CARGO_BIN_EXE_keepmover"))
        .args(["ctl", "-listen-token-file", tf, &local, "cancel"])
        .output()
        .expect("ctl");
    assert!(out.status.success(), "{out:?}");
    let (code, err) = job.finish(60);
    assert_eq!(code, Some(143), "{err}");
    assert!(!err.contains("letmein"), "token in the log: {err}");
}

#[test]
fn validate_serves_status_metrics_and_control() {
    let env = env();
    fill(&env.src, 120, 4000);
    let copy = keepmover_command(&env, &[]).output().expect("copy");
    assert_eq!(copy.status.code(), Some(0), "{copy:?}");
    let mut command = Command::new(env!("CARGO_BIN_EXE_keepmover"));
    command
        .arg("validate")
        .arg("-src")
        .arg(env.dir.path().join("srcaa.conf"))
        .arg("-dst")
        .arg(env.dir.path().join("dstbb.conf"))
        .args([
            "-replications",
            "1",
            "-deep",
            "-listen",
            "127.0.0.1:0",
            // Serve on after the end, so the test does not race a fast validation.
            "-listen-linger",
            "60s",
        ])
        .env("XDG_RUNTIME_DIR", &env.runtime);
    let job = Job::spawn(&env, command);
    let doc = job.wait_for(60, "the end of the validation", |d| d.phase == "done");
    assert_eq!(doc.command, "validate", "{doc:?}");
    let metrics = job.metrics();
    assert!(
        metrics.contains("keepmover_request_duration_seconds_count{"),
        "the re-reads are in /metrics: {metrics}"
    );
    // A cancel ends the linger at once; the validation itself passed.
    job.control(r#"{"action":"cancel"}"#);
    let (code, err) = job.finish(30);
    assert_eq!(code, Some(0), "{err}");
    assert!(err.contains("Validation passed"), "{err}");
}

/// `keepmover touch` with `-listen 127.0.0.1:0` (and `extra`) on the destination.
fn touch_job(env: &Env, extra: &[&str]) -> Job {
    let mut command = Command::new(env!("CARGO_BIN_EXE_keepmover"));
    command
        .arg("touch")
        .arg("-dst")
        .arg(env.dir.path().join("dstbb.conf"))
        .args(["-all", "-retry-delay", "20ms", "-listen", "127.0.0.1:0"])
        .args(extra)
        .env("XDG_RUNTIME_DIR", &env.runtime);
    Job::spawn(env, command)
}

#[test]
fn touch_serves_status_metrics_and_control() {
    let env = env();
    fill(&env.dst, 200, 500);
    let json = env.dir.path().join("touch.json");
    let job = touch_job(
        &env,
        &[
            "-concurrency",
            "4",
            // Serve on after the end, so the test does not race a fast touch.
            "-listen-linger",
            "60s",
            "-json",
            json.to_str().expect("utf-8"),
        ],
    );
    let doc = job.wait_for(60, "the end of the touch", |d| d.phase == "done");
    assert_eq!(doc.command, "touch", "{doc:?}");
    assert_eq!(doc.counts.touched_copies, 200, "{doc:?}");
    assert_eq!(doc.counts.planned_blocks, 200, "{doc:?}");
    assert_eq!(doc.counts.slices_done, doc.counts.slices_total, "{doc:?}");
    let text = job.metrics();
    assert_eq!(
        sample(&text, "keepmover_touched_copies_total"),
        Some(200.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "keepmover_touch_failed_copies_total"),
        Some(0.0)
    );
    if let Some(python) = prometheus_python() {
        let parsed = parse_with_prometheus_client(&python, &text);
        assert_eq!(parsed["types"]["keepmover_touched_copies"], "counter");
        // Every TOUCH is in the histogram, by server.
        let touches: f64 = parsed["samples"]["keepmover_request_duration_seconds_count"]
            .as_object()
            .expect("counts")
            .iter()
            .filter(|(k, _)| k.contains("op=touch"))
            .map(|(_, v)| v.as_f64().unwrap_or(0.0))
            .sum();
        assert_eq!(touches, 200.0, "{text}");
        assert_eq!(
            parsed["samples"]["keepmover_phase"]["phase=done"].as_f64(),
            Some(1.0)
        );
    }
    assert!(
        !text.contains(&env.dst.config.system_root_token),
        "token in /metrics"
    );
    let human = Command::new(env!("CARGO_BIN_EXE_keepmover"))
        .args(["status", &job.addr])
        .output()
        .expect("status ADDR");
    let human = String::from_utf8_lossy(&human.stdout);
    assert!(
        human.contains("touch: 200 copies touched, 0 failed"),
        "{human}"
    );
    assert!(
        human.contains("limits: at most 4 TOUCH requests in flight"),
        "{human}"
    );
    // A touch moves no data: a bandwidth limit is refused, with the reason.
    let refused = request(
        &job.addr,
        "POST",
        "/control",
        Some(r#"{"action":"bwlimit","value":"10MiB"}"#),
        None,
    )
    .expect_err("bwlimit on touch");
    assert!(
        refused.to_string().contains("400") && refused.to_string().contains("no block data"),
        "{refused}"
    );
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&json).expect("summary")).expect("summary JSON");
    assert_eq!(summary["totals"]["touched_copies"], 200);
    assert_eq!(
        summary["totals"]["slices_done"],
        summary["totals"]["slices"]
    );
    assert_eq!(summary["outcome"], "done");
    assert_eq!(summary["exit_code"], 0);
    // A cancel ends the linger at once; the touch itself had ended well.
    job.control(r#"{"action":"cancel"}"#);
    let (code, err) = job.finish(30);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        err.contains("Summary: touched 200 copies of 200 blocks"),
        "{err}"
    );
}

#[test]
fn touch_cancel_stops_new_touches_and_exits_143() {
    let env = env();
    fill(&env.dst, 300, 500);
    slow(&env.dst, 30);
    let json = env.dir.path().join("touch.json");
    let job = touch_job(
        &env,
        &[
            "-concurrency",
            "2",
            "-prefix-length",
            "1",
            "-json",
            json.to_str().expect("utf-8"),
        ],
    );
    job.wait_for(60, "some copies touched", |d| d.counts.touched_copies >= 5);
    let out = Command::new(env!("CARGO_BIN_EXE_keepmover"))
        .args(["ctl", &job.addr, "cancel"])
        .output()
        .expect("ctl");
    assert!(out.status.success(), "{out:?}");
    let (code, err) = job.finish(60);
    assert_eq!(code, Some(143), "{err}");
    assert!(
        err.contains("Stopped (terminated) before every block was touched"),
        "{err}"
    );
    let touched: u64 = err
        .lines()
        .find_map(|l| l.split("Summary: touched ").nth(1))
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .expect("a summary line");
    assert!((5..300).contains(&touched), "{touched}: {err}");
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&json).expect("summary")).expect("summary JSON");
    let totals = &summary["totals"];
    assert_eq!(summary["outcome"], "terminated", "{summary}");
    assert_eq!(summary["exit_code"], 143, "{summary}");
    assert_eq!(totals["touched_copies"], touched, "{summary}");
    assert_eq!(totals["slices"], 16, "{summary}");
    let done = totals["slices_done"].as_u64().expect("slices_done");
    assert!(done < 16, "a cut run has slices left: {summary}");
    // Only the blocks of the slices it reached are counted as found.
    assert!(
        totals["blocks"].as_u64().expect("blocks") < 300,
        "{summary}"
    );
}

#[test]
fn a_second_signal_drops_touches_in_flight() {
    let env = env();
    fill(&env.dst, 300, 500);
    // Slow enough from the start that the run cannot end before the signals (300 touches,
    // two at a time, 20 ms each).
    slow(&env.dst, 20);
    let job = touch_job(&env, &["-concurrency", "2", "-prefix-length", "1"]);
    job.wait_for(60, "a copy touched", |d| d.counts.touched_copies >= 1);
    // From now on every request (TOUCH or listing) takes 60 s: a graceful stop would wait
    // for the ones in flight; the second signal must not.
    slow(&env.dst, 60_000);
    // Let the 20 ms requests in flight end: the two in flight now are slowed ones.
    std::thread::sleep(Duration::from_millis(300));
    let pid = job.child.id().to_string();
    for _ in 0..2 {
        let kill = Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .expect("kill");
        assert!(kill.success());
        std::thread::sleep(Duration::from_millis(200));
    }
    // Far less than one slowed request.
    let (code, err) = job.finish(20);
    assert_eq!(code, Some(130), "{err}");
    assert!(
        err.contains("Stopped (interrupted) before every block was touched"),
        "{err}"
    );
}

#[test]
fn touch_concurrency_one_brings_touches_in_flight_down_to_one() {
    let env = env();
    fill(&env.dst, 400, 500);
    // Slowed from the start: unslowed, 400 touches can end before the test looks.
    slow(&env.dst, 40);
    let job = touch_job(&env, &["-concurrency", "8", "-prefix-length", "1"]);
    wait_for_in_flight(
        &job,
        "more than 3 TOUCH requests in flight at -concurrency 8",
        |n| n >= 4.0,
    );
    job.control(r#"{"action":"concurrency","value":1}"#);
    wait_for_in_flight(&job, "TOUCH requests in flight down to 1", |n| n <= 1.0);
    let touched = job.status().counts.touched_copies;
    for _ in 0..30 {
        let now = in_flight(&job);
        assert!(
            now <= 1.0,
            "{now} TOUCH requests in flight after concurrency 1"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        job.status().counts.touched_copies > touched,
        "the touch stalled"
    );
    job.control(r#"{"action":"concurrency","value":0}"#);
    slow(&env.dst, 0);
    let (code, err) = job.finish(60);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        err.contains("Summary: touched 400 copies of 400 blocks"),
        "{err}"
    );
}
