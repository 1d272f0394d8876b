//! `keepmover bench` against keepsim: keep-exercise's CSV, rules and targeting, error
//! counting under injected faults, -use-index, run time, and the JSON report.

use std::process::{Command, Output};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use keepsim::{Cluster, ClusterConfig, Faults};

const HEADER: &str = "Timestamp,Elapsed,Read (bytes),Avg Read Speed (MiB/s),Peak Read Speed (MiB/s),Written (bytes),Avg Write Speed (MiB/s),Peak Write Speed (MiB/s),Errors,ReadThreads,WriteThreads,VaryRequest,VaryThread,BlockSize,Replicas,StatsInterval,ServiceURL,ServiceUUID,UseIndex,RunTime,Repeat";

fn setup() -> (Cluster, tempfile::TempDir) {
    let cluster = Cluster::start(ClusterConfig::new("bench", 3)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    keepsim::write_cluster_files(dir.path(), &[&cluster]).unwrap();
    (cluster, dir)
}

fn bench(dir: &tempfile::TempDir, args: &[&str]) -> Output {
    let conf = dir.path().join("bench.conf");
    Command::new(env!("CARGO_BIN_EXE_keepmover"))
        .arg("bench")
        .arg("-config")
        .arg(&conf)
        .args([
            "-block-size",
            "65536",
            "-run-time",
            "1s",
            "-stats-interval",
            "500ms",
        ])
        .args(args)
        .output()
        .unwrap()
}

/// The final per-experiment rows (after the second header).
fn summary_rows(out: &Output) -> Vec<Vec<String>> {
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text
        .lines()
        .skip_while(|l| !l.ends_with(",Experiment"))
        .skip(1);
    let mut rows = Vec::new();
    for line in lines.by_ref() {
        rows.push(line.split(',').map(str::to_string).collect());
    }
    rows
}

#[test]
fn csv_header_and_columns_match_keep_exercise() {
    let (_cluster, dir) = setup();
    let out = bench(&dir, &["-rthreads", "2", "-wthreads", "1"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "");
    assert_eq!(lines[1], HEADER);
    let columns = HEADER.split(',').count();
    let interval_rows: Vec<&&str> = lines[2..].iter().take_while(|l| !l.is_empty()).collect();
    assert!(!interval_rows.is_empty());
    for row in interval_rows {
        assert_eq!(row.split(',').count(), columns, "{row}");
    }
    assert!(text.contains(&format!("{HEADER},Experiment")));
    let rows = summary_rows(&out);
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].len(), columns + 1);
    assert!(rows[0][2].parse::<u64>().unwrap() > 0, "read bytes");
    assert!(rows[0][5].parse::<u64>().unwrap() > 0, "written bytes");
    assert_eq!(rows[0][8], "0", "errors");
    let err = String::from_utf8_lossy(&out.stderr);
    for line in [
        "Start warmup phase",
        "Warmup complete!",
        "*** experiment 1 complete ***",
        "Summary:",
    ] {
        assert!(err.contains(line), "{line}: {err}");
    }
}

#[test]
fn keep_exercise_rules() {
    let (_cluster, dir) = setup();
    let out = bench(&dir, &["-rthreads", "0", "-wthreads", "0"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("Nothing to do!"));
    let out = bench(&dir, &["-rthreads", "1", "-wthreads", "0"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains("At least one write thread is required if rthreads is non-zero and -use-index is not enabled"));
    let out = bench(&dir, &["-bogus"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn injected_faults_raise_the_error_count() {
    let (cluster, dir) = setup();
    for server in 0..3 {
        cluster.set_faults(
            server,
            Faults {
                error_500: 1.0,
                ..Faults::default()
            },
        );
    }
    let out = bench(&dir, &["-rthreads", "0", "-wthreads", "2"]);
    let rows = summary_rows(&out);
    assert!(rows[0][8].parse::<u64>().unwrap() > 0, "{:?}", rows);
    for server in 0..3 {
        cluster.set_faults(
            server,
            Faults {
                corrupt_body: true,
                ..Faults::default()
            },
        );
    }
    let json = dir.path().join("report.json");
    let out = bench(
        &dir,
        &[
            "-rthreads",
            "2",
            "-wthreads",
            "1",
            "-json",
            json.to_str().unwrap(),
        ],
    );
    let rows = summary_rows(&out);
    assert!(
        rows[0][8].parse::<u64>().unwrap() > 0,
        "checksum errors counted: {rows:?}"
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert!(
        report["experiments"][0]["errors_by_kind"]["checksum"]
            .as_u64()
            .unwrap()
            > 0,
        "{report}"
    );
}

#[test]
fn use_index_reads_only_existing_blocks() {
    let (cluster, dir) = setup();
    for n in 0..20u64 {
        cluster
            .put_block((n % 3) as usize, &keepsim::pseudo_random_bytes(n, 5000))
            .unwrap();
    }
    let out = bench(&dir, &["-rthreads", "2", "-wthreads", "0", "-use-index"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows = summary_rows(&out);
    assert!(rows[0][2].parse::<u64>().unwrap() > 0, "read bytes");
    assert_eq!(rows[0][8], "0", "no 404s: every block read exists");
}

#[test]
fn url_and_uuid_target_one_server() {
    let (cluster, dir) = setup();
    let before: Vec<usize> = cluster
        .keepstores
        .iter()
        .map(|k| k.requests.load(Ordering::Relaxed))
        .collect();
    let url = cluster.keepstore_url(1);
    let out = bench(&dir, &["-rthreads", "1", "-wthreads", "1", "-url", &url]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let after: Vec<usize> = cluster
        .keepstores
        .iter()
        .map(|k| k.requests.load(Ordering::Relaxed))
        .collect();
    assert_eq!(after[0], before[0]);
    assert_eq!(after[2], before[2]);
    assert!(after[1] > before[1]);
    let uuid = cluster.keepstore_uuid(2).to_string();
    let out = bench(&dir, &["-rthreads", "1", "-wthreads", "1", "-uuid", &uuid]);
    assert_eq!(out.status.code(), Some(0));
    let last: Vec<usize> = cluster
        .keepstores
        .iter()
        .map(|k| k.requests.load(Ordering::Relaxed))
        .collect();
    assert_eq!(last[0], after[0]);
    assert_eq!(last[1], after[1]);
    assert!(last[2] > after[2]);
}

#[test]
fn run_time_stops_on_time() {
    let (_cluster, dir) = setup();
    let started = Instant::now();
    let out = bench(
        &dir,
        &[
            "-rthreads",
            "1",
            "-wthreads",
            "1",
            "-run-time",
            "2s",
            "-repeat",
            "2",
        ],
    );
    let took = started.elapsed();
    assert_eq!(out.status.code(), Some(0));
    assert!(
        took >= Duration::from_secs(4) && took < Duration::from_secs(20),
        "{took:?}"
    );
    assert_eq!(summary_rows(&out).len(), 2, "one row per repeat");
}

fn json_report(dir: &tempfile::TempDir, args: &[&str]) -> serde_json::Value {
    let json = dir.path().join("r.json");
    let mut all: Vec<&str> = args.to_vec();
    let path = json.to_str().unwrap().to_string();
    all.extend(["-json", &path]);
    let out = bench(dir, &all);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap()
}

#[test]
fn rate_caps_requests_per_second() {
    let (_cluster, dir) = setup();
    let report = json_report(
        &dir,
        &[
            "-rthreads",
            "2",
            "-wthreads",
            "2",
            "-concurrency",
            "4",
            "-rate",
            "20",
            "-run-time",
            "2s",
        ],
    );
    let e = &report["experiments"][0];
    let ops = e["read_latency"]["count"].as_u64().unwrap()
        + e["write_latency"]["count"].as_u64().unwrap();
    assert!(
        ops > 10 && ops <= 50,
        "about 40 requests in 2 s at 20/s, got {ops}"
    );
}

#[test]
fn mix_reads_and_writes_in_ratio_with_a_size_list() {
    let (_cluster, dir) = setup();
    let report = json_report(
        &dir,
        &[
            "-rthreads",
            "1",
            "-wthreads",
            "1",
            "-concurrency",
            "4",
            "-mix",
            "3:1",
            "-block-sizes",
            "4KiB,64KiB",
        ],
    );
    let e = &report["experiments"][0];
    let reads = e["read_latency"]["count"].as_u64().unwrap();
    let writes = e["write_latency"]["count"].as_u64().unwrap();
    assert!(
        reads > writes && writes > 0,
        "reads {reads}, writes {writes}"
    );
    let out = bench(&dir, &["-mix", "x"]);
    assert_eq!(out.status.code(), Some(2));
    let out = bench(&dir, &["-block-sizes", "65MiB"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn sweep_finds_the_knee_and_shows_the_limiter() {
    let mut config = ClusterConfig::new("bench", 1);
    config.max_concurrent = 2;
    config.max_queued = 2;
    let cluster = Cluster::start(config).unwrap();
    let dir = tempfile::tempdir().unwrap();
    keepsim::write_cluster_files(dir.path(), &[&cluster]).unwrap();
    let out = bench(
        &dir,
        &[
            "-rthreads",
            "1",
            "-wthreads",
            "1",
            "-sweep",
            "1,16",
            "-run-time",
            "1s",
        ],
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("Sweep: 1, ") && err.contains("Sweep: 16, "),
        "{err}"
    );
    assert!(err.contains("Knee: "), "{err}");
    let rows = summary_rows(&out);
    assert_eq!(rows.len(), 2, "one row per level");
    assert!(
        rows[1][8].parse::<u64>().unwrap() > 0,
        "503s past 2 running + 2 queued: {rows:?}"
    );
}

#[test]
fn per_server_rates_in_the_report() {
    let (cluster, dir) = setup();
    let report = json_report(
        &dir,
        &[
            "-rthreads",
            "1",
            "-wthreads",
            "2",
            "-vary-request",
            "-block-size",
            "4096",
        ],
    );
    let servers = report["experiments"][0]["servers"].as_array().unwrap();
    assert!(
        servers.len() >= 2,
        "distinct blocks spread over servers: {servers:?}"
    );
    for server in servers {
        let uuid = server["uuid"].as_str().unwrap();
        assert!((0..3).any(|i| cluster.keepstore_uuid(i) == uuid), "{uuid}");
    }
    let writes: f64 = servers
        .iter()
        .map(|s| s["writes_per_s"].as_f64().unwrap())
        .sum();
    assert!(writes > 0.0);
}

#[test]
fn plot_is_valid_svg_over_time_and_for_a_sweep() {
    let (_cluster, dir) = setup();
    for extra in [
        &["-run-time", "2s"][..],
        &["-sweep", "1,2", "-run-time", "1s"][..],
    ] {
        let svg = dir.path().join("plot.svg");
        let mut args = vec!["-rthreads", "1", "-wthreads", "1"];
        args.extend_from_slice(extra);
        let path = svg.to_str().unwrap().to_string();
        args.extend(["-plot", &path]);
        let out = bench(&dir, &args);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = std::fs::read_to_string(&svg).unwrap();
        let doc = roxmltree::Document::parse(&text).expect("valid XML");
        assert_eq!(doc.root_element().tag_name().name(), "svg");
        assert!(
            text.contains("<polyline") || text.contains("<path"),
            "a curve is drawn"
        );
    }
}

#[test]
fn listen_serves_status_and_metrics_and_cancel_ends_the_run() {
    use keepmover::commands::status::{fetch_status, request};
    let (_cluster, dir) = setup();
    let runtime = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_keepmover"))
        .arg("bench")
        .arg("-config")
        .arg(dir.path().join("bench.conf"))
        .args([
            "-block-size",
            "65536",
            "-run-time",
            "0s",
            "-stats-interval",
            "0s",
            "-listen",
            "127.0.0.1:0",
        ])
        .env("XDG_RUNTIME_DIR", runtime.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let run_file = runtime
        .path()
        .join("keepmover")
        .join(format!("{}.json", child.id()));
    let deadline = Instant::now() + Duration::from_secs(30);
    let addr = loop {
        if let Ok(bytes) = std::fs::read(&run_file) {
            let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
            break v["address"].as_str().unwrap().to_string();
        }
        assert!(Instant::now() < deadline, "no run file");
        std::thread::sleep(Duration::from_millis(20));
    };
    // The experiment runs until cancelled: wait for requests to show.
    let deadline = Instant::now() + Duration::from_secs(30);
    let metrics = loop {
        let text = request(&addr, "GET", "/metrics", None, None).unwrap();
        if text.contains("keepmover_request_duration_seconds_count{") {
            break text;
        }
        assert!(Instant::now() < deadline, "no requests in /metrics: {text}");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(metrics.contains("keepmover_phase"), "{metrics}");
    let doc = fetch_status(&addr, None).unwrap();
    assert_eq!(doc.command, "bench");
    assert_eq!(doc.phase, "copying");
    request(
        &addr,
        "POST",
        "/control",
        Some(r#"{"action":"cancel"}"#),
        None,
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("bench did not end after cancel");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(0));
}
