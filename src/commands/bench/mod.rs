//! `keepmover bench`: keep-exercise's job (how fast are these keepstores?) on keepmover's
//! engine. Same flags, same CSV on stdout, same log lines; writers PUT a block repeatedly,
//! readers GET (MD5-verified) the latest one or random blocks from the indexes. Each
//! keep-exercise "thread" is a task on the completion-based runtime, so one process can keep
//! many requests in flight. Adds latency percentiles and a JSON report.
//!
//! The pieces: `load` (the tasks that read and write, pacing, the experiments), `stats`
//! (counters, latency histograms, the knee of a sweep), `output` (keep-exercise's CSV, the
//! summary line, the JSON report and the SVG plot).

mod load;
mod output;
mod stats;

use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::setup::{build_cluster, ApiClient, SetupError};
use crate::cluster::{Cluster, Service};
use crate::keep::settings::Settings;
use crate::keep::wire::Bearer;
use crate::mover::events::{Event, EventSink, Phase};
use crate::mover::{Job, Signing};
use crate::net::{build_runtime, ClientConfig, IoBackend, Origin};
use crate::report::log_line;
use crate::report::status::{JobInfo, Live};

use load::experiment_run;
use output::{csv_row, summary_line};

pub use output::CSV_HEADER;
pub use stats::knee_line;

/// Every option, typed (built by `cli`).
#[derive(Clone, Debug)]
pub struct BenchArgs {
    pub block_size: usize,
    pub read_threads: usize,
    pub write_threads: usize,
    pub vary_request: bool,
    pub vary_thread: bool,
    pub replicas: u32,
    pub stats_interval: Duration,
    pub service_url: String,
    pub service_uuid: String,
    pub run_time: Duration,
    pub repeat: u32,
    pub use_index: bool,
    /// Settings file or NAME; empty = the ARVADOS_* environment, as keep-exercise does.
    pub config: String,
    pub io: IoBackend,
    pub json: Option<std::path::PathBuf>,
    /// Tasks (requests in flight) per keep-exercise thread.
    pub concurrency: usize,
    /// Write sizes to choose from at random (`-block-sizes`); empty = `-block-size`.
    pub block_sizes: Vec<usize>,
    /// `-mix R:W`: every task reads or writes in this ratio.
    pub mix: Option<(u32, u32)>,
    /// Requests per second across all tasks (`-rate`); `None` = as fast as possible.
    pub rate: Option<f64>,
    /// Concurrency levels to sweep (`-sweep 1,4,16,64`).
    pub sweep: Vec<usize>,
    /// Draw throughput and p99 (over time, or against concurrency for a sweep) into this SVG.
    pub plot: Option<std::path::PathBuf>,
    /// `-listen`: /status, /metrics (request latencies and errors per server) and /control
    /// (pause, resume, cancel, bwlimit) while the experiments run.
    pub listen: Option<super::listen::ListenOptions>,
}

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("{0}")]
    Setup(#[from] SetupError),
    #[error("{0}")]
    Usage(String),
    #[error("{0}")]
    Io(String),
}
/// Set by SIGINT: finish the experiment and print the summary so far.
static INTERRUPTED: std::sync::LazyLock<Arc<AtomicBool>> =
    std::sync::LazyLock::new(|| Arc::new(AtomicBool::new(false)));
fn settings_from_env() -> Settings {
    let get = |k: &str| std::env::var(k).unwrap_or_default();
    Settings {
        api_token: get("ARVADOS_API_TOKEN"),
        api_host: get("ARVADOS_API_HOST"),
        api_host_insecure: crate::keep::settings::insecure_flag(&get("ARVADOS_API_HOST_INSECURE")),
        blob_signing_key: std::env::var("ARVADOS_BLOB_SIGNING_KEY").ok(),
    }
}
/// Runs the benchmark; prints CSV on stdout and log lines on stderr.
pub fn run(args: BenchArgs) -> Result<(), BenchError> {
    if args.read_threads > 0 && args.write_threads == 0 && !args.use_index {
        return Err(BenchError::Usage(
            "At least one write thread is required if rthreads is non-zero and -use-index is not enabled".into(),
        ));
    }
    if args.read_threads == 0 && args.write_threads == 0 {
        return Err(BenchError::Usage("Nothing to do!".into()));
    }
    if args.vary_request {
        log_line("WARNING: -vary-request writes distinct random blocks: every write consumes disk space on the keepstores");
    }
    let settings = if args.config.is_empty() {
        settings_from_env()
    } else {
        super::setup::load_settings("bench", &args.config)?
    };
    let http = ClientConfig::default();
    let api = ApiClient::new(&settings, args.io, http.clone())?;
    let mut cluster = if args.service_url.is_empty() {
        build_cluster("dst", &settings, None, &api)?.cluster
    } else {
        let origin = Origin::parse(&args.service_url).map_err(BenchError::Usage)?;
        Cluster {
            label: "dst",
            bearer: Bearer::new(&settings.api_token),
            services: vec![Service {
                uuid: "zzzzz-bi6l4-000000000000000".to_string(),
                origin,
                read_only: false,
                is_disk: true,
            }],
            insecure_tls: settings.api_host_insecure,
        }
    };
    if !args.service_uuid.is_empty() {
        cluster.services.retain(|s| s.uuid == args.service_uuid);
        if cluster.services.is_empty() {
            return Err(BenchError::Usage(format!(
                "no keep service with uuid {}",
                args.service_uuid
            )));
        }
    }
    // Signed reads when the settings carry the key (TTL from discovery, else Arvados' default).
    let signing = settings
        .blob_signing_key
        .as_deref()
        .filter(|k| !k.is_empty())
        .map(|key| Signing {
            key: crate::keep::signature::SigningKey::new(key.as_bytes()),
            ttl_secs: api
                .discovery()
                .ok()
                .and_then(|d| d.blob_signature_ttl)
                .unwrap_or(1_209_600),
        });
    let ctx = Rc::new(Job {
        src: cluster.clone(),
        dst: cluster,
        signing,
        dst_signing: None,
        replicas: args.replicas.max(1),
        classes: Arc::from([]),
    });
    // A failed registration only loses the Ctrl-C summary (the default action still ends
    // the run).
    let _ = signal_hook::flag::register(signal_hook::consts::SIGINT, INTERRUPTED.clone());
    let (runtime, _) = build_runtime(args.io).map_err(|e| BenchError::Io(e.to_string()))?;
    let shared = load::Shared::default();
    let live = Live::new(
        JobInfo {
            command: "bench".to_string(),
            src_api_host: settings.api_host.clone(),
            dst_api_host: settings.api_host.clone(),
            concurrency: args.concurrency,
            workers: 1,
        },
        shared.counters.clone(),
        shared.control.clone(),
    );
    let listener = match &args.listen {
        Some(options) => Some(
            super::listen::start(options, live.clone())
                .map_err(|e| BenchError::Io(e.to_string()))?,
        ),
        None => None,
    };
    let mut phases = live.board.sink();
    phases.events(&[Event::Phase(Phase::Copying)], &shared.counters);
    println!();
    println!("{CSV_HEADER}");
    let mut last_rows = Vec::new();
    let mut report = Vec::new();
    let levels: Vec<Option<usize>> = if args.sweep.is_empty() {
        (0..args.repeat.max(1)).map(|_| None).collect()
    } else {
        args.sweep.iter().map(|&level| Some(level)).collect()
    };
    let mut sweep_points: Vec<(usize, f64, f64, u64)> = Vec::new();
    let mut timeline: Vec<crate::report::plot::PlotPoint> = Vec::new();
    for (index, level) in levels.into_iter().enumerate() {
        let experiment = index + 1;
        let mut run_args = args.clone();
        if let Some(level) = level {
            run_args.concurrency = level;
            if run_args.run_time.is_zero() {
                run_args.run_time = Duration::from_secs(5);
            }
        }
        let (row, stats) = runtime.block_on(experiment_run(&run_args, &ctx, &http, &shared))?;
        log_line(&format!("*** experiment {experiment} complete ***"));
        log_line(&summary_line(&row, &stats));
        let offset = timeline.last().map_or(0.0, |p| p.x);
        timeline.extend(
            stats
                .timeline
                .iter()
                .map(|p| crate::report::plot::PlotPoint {
                    x: p.x + offset,
                    ..*p
                }),
        );
        if let Some(level) = level {
            let latency = if stats.read_latency.is_empty() {
                &stats.write_latency
            } else {
                &stats.read_latency
            };
            sweep_points.push((
                level,
                row.read_rate + row.write_rate,
                latency.value_at_quantile(0.99) as f64 / 1000.0,
                row.errors,
            ));
        }
        report.push(output::experiment_json(
            experiment, &run_args, &row, &stats, &ctx.dst,
        ));
        last_rows.push(csv_row(&run_args, &row));
        if INTERRUPTED.load(Ordering::Relaxed) || shared.control.is_stopping() {
            break;
        }
    }
    phases.events(&[Event::Phase(Phase::Done)], &shared.counters);
    if !sweep_points.is_empty() {
        log_line("Sweep: concurrency, MiB/s, p99 ms, errors");
        for (level, rate, p99, errors) in &sweep_points {
            log_line(&format!("Sweep: {level}, {rate:.1}, {p99:.1}, {errors}"));
        }
        log_line(&knee_line(&sweep_points));
    }
    println!();
    println!("{CSV_HEADER},Experiment");
    for (i, row) in last_rows.iter().enumerate() {
        println!("{row},{}", i + 1);
    }
    if let Some(path) = &args.plot {
        output::plot(path, &timeline, &sweep_points).map_err(BenchError::Io)?;
    }
    if let Some(path) = &args.json {
        output::write_json(path, report)?;
    }
    if let (Some(listener), Some(options)) = (&listener, &args.listen) {
        listener.linger(options.linger);
    }
    Ok(())
}
