//! `keepmover -src A -dst B` (and `keepmover rsync ...`): keep-rsync's job. Reads both
//! settings files, discovers both clusters, runs the engine with keep-rsync's log lines (or
//! the bar), and closes with keep-rsync's last line and keepmover's summary.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::listen::{self, ListenError, ListenOptions};
use super::setup::{build_cluster, default_classes, load_settings, ApiClient, SetupError};
use crate::exit::Outcome;
use crate::keepstore::http::HttpFactory;
use crate::mover::checkpoint::JobIdentity;
use crate::mover::events::EventSink;
use crate::mover::{self, Control, Counters, EngineConfig, Job, Run, RunReport, Signing};
use crate::net::ClientConfig;
use crate::report::blocks::BlockReport;
use crate::report::log_line;
use crate::report::status::{limits_brief, render_human, JobInfo, Live};
use crate::report::summary::{self, JsonSummary};
use crate::report::terminal::{Display, Terminal};

/// Every option of the copy, typed. Built by `cli`.
#[derive(Clone, Debug)]
pub struct RsyncArgs {
    pub src: String,
    pub dst: String,
    pub src_keep_services_json: Option<String>,
    pub dst_keep_services_json: Option<String>,
    /// 0 = the destination's `defaultCollectionReplication`.
    pub replications: u32,
    pub prefix: String,
    /// Zero = the source discovery document's `blobSignatureTtl`.
    pub src_blob_signature_ttl: Duration,
    /// `None` = the destination's default classes.
    pub storage_classes: Option<Vec<String>>,
    pub engine: EngineConfig,
    pub http: ClientConfig,
    pub display: Display,
    pub report: Option<PathBuf>,
    pub json: Option<PathBuf>,
    /// `-listen`: the local control endpoint.
    pub listen: Option<ListenOptions>,
}

#[derive(Debug, thiserror::Error)]
pub enum RsyncError {
    #[error(transparent)]
    Setup(#[from] SetupError),
    #[error(transparent)]
    Engine(#[from] mover::EngineError),
    #[error("the source and the destination are the same servers ({0}): copying a cluster onto itself is refused")]
    SelfCopy(String),
    #[error(transparent)]
    Listen(#[from] ListenError),
    #[error("writing {path}: {source}")]
    Output {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Both clusters discovered, and the job the engine will run.
pub struct Prepared {
    pub run: Run,
    pub http: ClientConfig,
    /// The clusters' API hosts (for the status; never their tokens).
    pub src_api_host: String,
    pub dst_api_host: String,
}

/// Reads the settings, discovers both clusters, and builds the job (shared with the other
/// commands that walk two clusters).
pub fn prepare(args: &RsyncArgs, action: &str) -> Result<Prepared, RsyncError> {
    let io = args.engine.io;
    let src_settings = load_settings("src", &args.src)?;
    let dst_settings = load_settings("dst", &args.dst)?;
    let src_api = ApiClient::new(&src_settings, io, args.http.clone())?;
    let dst_api = ApiClient::new(&dst_settings, io, args.http.clone())?;
    let src = build_cluster(
        "src",
        &src_settings,
        args.src_keep_services_json.as_deref(),
        &src_api,
    )?;
    let dst = build_cluster(
        "dst",
        &dst_settings,
        args.dst_keep_services_json.as_deref(),
        &dst_api,
    )?;
    if src.cluster.same_servers_as(&dst.cluster) {
        return Err(RsyncError::SelfCopy(src.identity));
    }
    // keep-rsync signs with the source key and TTL; the TTL is only needed with a key.
    let signing = match src_settings
        .blob_signing_key
        .as_deref()
        .filter(|k| !k.is_empty())
    {
        Some(key) => {
            let ttl_secs = if args.src_blob_signature_ttl.is_zero() {
                src_api
                    .discovery()?
                    .blob_signature_ttl
                    .ok_or(SetupError::Discovery {
                        cluster: "source",
                        field: "blobSignatureTtl",
                        flag: "-src-blob-signature-ttl",
                    })?
            } else {
                args.src_blob_signature_ttl.as_secs()
            };
            Some(Signing {
                key: key.as_bytes().to_vec(),
                ttl_secs,
            })
        }
        None => None,
    };
    let replicas = if args.replications == 0 {
        dst_api
            .discovery()?
            .default_collection_replication
            .ok_or(SetupError::Discovery {
                cluster: "destination",
                field: "defaultCollectionReplication",
                flag: "-replications",
            })?
    } else {
        args.replications
    };
    let classes = match &args.storage_classes {
        Some(classes) => classes.clone(),
        None => default_classes(&dst_api),
    };
    let identity = JobIdentity {
        action: action.to_string(),
        src: src.identity,
        dst: dst.identity,
        replicas,
        classes: classes.clone(),
        prefix: args.prefix.clone(),
        shard: String::new(),
        filters: String::new(),
    };
    Ok(Prepared {
        run: Run {
            job: Job {
                src: src.cluster,
                dst: dst.cluster,
                signing,
                replicas,
                classes,
            },
            identity,
            prefix: args.prefix.clone(),
            config: args.engine.clone(),
        },
        http: args.http.clone(),
        src_api_host: src_settings.api_host.clone(),
        dst_api_host: dst_settings.api_host.clone(),
    })
}

/// A status summary on stderr (SIGUSR1): the same summary as `keepmover status`.
pub fn status_printer(live: Live) -> Box<dyn Fn() + Send> {
    Box::new(move || {
        let summary = render_human(&live.status());
        log_line(&format!("Status: {}", summary.trim_end()));
    })
}

/// What the views of a running job share: the counters, the controls and the status board
/// (with its sink, to give the engine). Any command that runs the engine builds one.
pub fn live_view(
    command: &str,
    prepared: &Prepared,
    counters: Arc<Counters>,
    control: Arc<Control>,
) -> Live {
    let config = &prepared.run.config;
    Live::new(
        JobInfo {
            command: command.to_string(),
            src_api_host: prepared.src_api_host.clone(),
            dst_api_host: prepared.dst_api_host.clone(),
            concurrency: config.concurrency,
            workers: match config.workers {
                0 => mover::default_workers(),
                n => n,
            },
        },
        counters,
        control,
    )
}

/// The terminal sink, its bar showing the live limits and phase.
pub fn terminal(display: Display, live: &Live) -> Terminal {
    let (for_limits, for_phase) = (live.clone(), live.clone());
    Terminal::new(display)
        .with_limits(Box::new(move || limits_brief(&for_limits.limits())))
        .with_phase(Box::new(move || for_phase.phase()))
}

/// Runs the copy. `Ok` with the outcome whenever the run itself ran (failed blocks and
/// stops are in the outcome); `Err` when it could not run.
pub fn run(args: RsyncArgs, control: Arc<Control>) -> Result<Outcome, RsyncError> {
    let prepared = prepare(&args, "copy")?;
    let counters = Arc::new(Counters::default());
    let live = live_view("copy", &prepared, counters.clone(), control.clone());
    let _signals = super::signals::install(control.clone(), status_printer(live.clone()));
    let listener = match &args.listen {
        Some(options) => Some(listen::start(options, live.clone())?),
        None => None,
    };
    let job = &prepared.run.job;
    let factory = HttpFactory::new(prepared.http.clone(), &[&job.src, &job.dst]);
    let mut sinks: Vec<Box<dyn EventSink>> = vec![
        Box::new(terminal(args.display, &live)),
        Box::new(live.board.sink()),
    ];
    if let Some(path) = &args.report {
        let uuids = |c: &crate::cluster::Cluster| c.uuids().iter().map(|u| u.to_string()).collect();
        let sink =
            BlockReport::create(path, uuids(&job.src), uuids(&job.dst)).map_err(|source| {
                RsyncError::Output {
                    path: path.clone(),
                    source,
                }
            })?;
        sinks.push(Box::new(sink));
    }
    let report = mover::run(prepared.run, factory, control, counters.clone(), sinks)?;
    let outcome = close(&report);
    if let Some(path) = &args.json {
        JsonSummary::new("copy", &report, &counters, outcome.code())
            .write(path)
            .map_err(|source| RsyncError::Output {
                path: path.clone(),
                source,
            })?;
    }
    if let (Some(listener), Some(options)) = (&listener, &args.listen) {
        listener.linger(options.linger);
    }
    Ok(outcome)
}

/// keep-rsync's closing line and keepmover's summary; the outcome for the exit code.
pub fn close(report: &RunReport) -> Outcome {
    if report.dry_run {
        log_line(&format!(
            "Dry run: would copy {} blocks ({} bytes) in {} slices.",
            report.plan.to_copy_blocks, report.plan.to_copy_bytes, report.slices
        ));
        return Outcome::default();
    }
    let t = &report.totals;
    if report.plan.estimated_from_slices.is_some() {
        log_line(&format!(
            "Exact totals: {} blocks in src and {} blocks in dst; {} blocks ({} bytes) were missing from dst.",
            t.src_blocks, t.dst_blocks, t.planned_blocks, t.planned_bytes
        ));
    }
    let outcome = Outcome {
        stopped: report.stopped,
        problems: t.failed_blocks,
    };
    if let Some(reason) = report.stopped {
        log_line(&format!(
            "Stopped ({}): {} blocks copied, {} failed, {} not done; rerun with the same -checkpoint to continue.",
            serde_json::to_value(reason)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default(),
            t.copied_blocks,
            t.failed_blocks,
            report.unsettled()
        ));
    } else if t.failed_blocks > 0 {
        log_line(&format!(
            "Error while syncing data: {} of {} blocks could not be copied (see the errors above); rerun to retry them",
            t.failed_blocks, t.planned_blocks
        ));
    } else {
        log_line(&format!(
            "Successfully copied to destination {} blocks.",
            t.copied_blocks
        ));
    }
    log_line(&summary::render(report));
    outcome
}
