//! `keepmover -src A -dst B` (and `keepmover rsync ...`): keep-rsync's job. Reads both
//! settings files, discovers both clusters, runs the engine with keep-rsync's log lines (or
//! the bar), and closes with keep-rsync's last line and keepmover's summary.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::setup::{build_cluster, default_classes, load_settings, ApiClient, SetupError};
use crate::exit::Outcome;
use crate::index::filter::BlockFilter;
use crate::index::locators::{LocatorList, DEFAULT_RUN_ENTRIES};
use crate::index::shard::Shard;
use crate::keepstore::http::HttpFactory;
use crate::mover::checkpoint::JobIdentity;
use crate::mover::engine::{Mode, Order, Selection};
use crate::mover::events::EventSink;
use crate::mover::{self, Control, Counters, EngineConfig, Job, Run, RunReport, Signing};
use crate::net::ClientConfig;
use crate::report::blocks::BlockReport;
use crate::report::summary::{self, JsonSummary};
use crate::report::terminal::{Display, Terminal};
use crate::report::{human_bytes, log_line};

/// Every option of the copy, typed. Built by `cli`.
#[derive(Clone, Debug)]
pub struct RsyncArgs {
    pub src: String,
    pub dst: String,
    pub src_keep_services_json: Option<String>,
    pub dst_keep_services_json: Option<String>,
    /// Only these source / destination keep services (uuids); empty = all. With the same
    /// cluster on both sides, this is how a single-cluster job picks its servers.
    pub src_services: Vec<String>,
    pub dst_services: Vec<String>,
    /// 0 = the destination's `defaultCollectionReplication`.
    pub replications: u32,
    pub select: SelectionArgs,
    /// Zero = the source discovery document's `blobSignatureTtl`.
    pub src_blob_signature_ttl: Duration,
    /// `None` = the destination's default classes.
    pub storage_classes: Option<Vec<String>>,
    pub engine: EngineConfig,
    pub http: ClientConfig,
    pub display: Display,
    pub report: Option<PathBuf>,
    pub json: Option<PathBuf>,
    /// `-bwlimit` as (down, up) bytes per second; 0 = none.
    pub bwlimit: (u64, u64),
    /// `-watch`: time between passes; zero = one pass.
    pub watch: Duration,
}

/// What the walk is about, as given on the command line.
#[derive(Clone, Debug, Default)]
pub struct SelectionArgs {
    pub prefix: String,
    pub shard: Option<Shard>,
    pub filter: BlockFilter,
    /// `-locators FILE` (`-` = stdin).
    pub locators: Option<String>,
    pub order: Order,
}

impl SelectionArgs {
    /// The engine's selection, with the locator list read and sorted.
    pub fn load(&self) -> Result<Selection, RsyncError> {
        let locators = match self.locators.as_deref() {
            None => None,
            Some(path) => {
                let spill = std::env::temp_dir();
                let list = if path == "-" {
                    LocatorList::load(std::io::stdin().lock(), DEFAULT_RUN_ENTRIES, &spill)
                } else {
                    let file = std::fs::File::open(path).map_err(|source| RsyncError::Input {
                        path: path.into(),
                        source,
                    })?;
                    LocatorList::load(file, DEFAULT_RUN_ENTRIES, &spill)
                };
                Some(list.map_err(|e| RsyncError::Locators(e.to_string()))?)
            }
        };
        Ok(Selection {
            prefix: self.prefix.clone(),
            shard: self.shard,
            filter: self.filter.clone(),
            locators,
            order: self.order,
            include_present: false,
        })
    }

    /// The filters as the checkpoint records them.
    pub fn describe_filters(&self) -> String {
        let mut parts = Vec::new();
        if !self.filter.text.is_empty() {
            parts.push(self.filter.text.clone());
        }
        if let Some(path) = &self.locators {
            parts.push(format!("locators={path}"));
        }
        parts.join(" ")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RsyncError {
    #[error("reading {path}: {source}")]
    Input {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Locators(String),
    #[error(transparent)]
    Setup(#[from] SetupError),
    #[error(transparent)]
    Engine(#[from] mover::EngineError),
    #[error("the source and the destination share servers ({0}): copying a cluster onto itself is refused (a single-cluster job names disjoint -src-services and -dst-services)")]
    SelfCopy(String),
    #[error("{cluster} has no keep service {uuid}")]
    UnknownService { cluster: &'static str, uuid: String },
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
    pub src_api: ApiClient,
    pub dst_api: ApiClient,
    /// The destination's blob signing key, when its settings file has one.
    pub dst_signing_key: Option<String>,
    /// Both sides are the same cluster (its servers split by `-src-services`/`-dst-services`).
    pub single_cluster: bool,
}

/// Keeps the services named in `uuids` (all when empty); an unknown uuid is an error.
fn select_services(
    cluster: &mut crate::cluster::Cluster,
    uuids: &[String],
) -> Result<(), RsyncError> {
    if uuids.is_empty() {
        return Ok(());
    }
    for uuid in uuids {
        if !cluster.services.iter().any(|s| &s.uuid == uuid) {
            return Err(RsyncError::UnknownService {
                cluster: cluster.label,
                uuid: uuid.clone(),
            });
        }
    }
    cluster.services.retain(|s| uuids.contains(&s.uuid));
    Ok(())
}

/// Reads the settings, discovers both clusters, and builds the job (shared with the other
/// commands that walk two clusters).
pub fn prepare(args: &RsyncArgs, action: &str) -> Result<Prepared, RsyncError> {
    let io = args.engine.io;
    let src_settings = load_settings("src", &args.src)?;
    let dst_settings = load_settings("dst", &args.dst)?;
    let src_api = ApiClient::new(&src_settings, io, args.http.clone())?;
    let dst_api = ApiClient::new(&dst_settings, io, args.http.clone())?;
    let mut src = build_cluster(
        "src",
        &src_settings,
        args.src_keep_services_json.as_deref(),
        &src_api,
    )?;
    let mut dst = build_cluster(
        "dst",
        &dst_settings,
        args.dst_keep_services_json.as_deref(),
        &dst_api,
    )?;
    let single_cluster = src.identity == dst.identity;
    select_services(&mut src.cluster, &args.src_services)?;
    select_services(&mut dst.cluster, &args.dst_services)?;
    if src.cluster.same_servers_as(&dst.cluster) {
        return Err(RsyncError::SelfCopy(src.identity));
    }
    if single_cluster {
        log_line(&format!(
            "Single-cluster job on {}: from {} to {}.",
            src.identity,
            src.cluster.uuids().join(","),
            dst.cluster.uuids().join(",")
        ));
        // The checkpoint must tell the two sides apart.
        src.identity = format!("{} [{}]", src.identity, src.cluster.uuids().join(","));
        dst.identity = format!("{} [{}]", dst.identity, dst.cluster.uuids().join(","));
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
        prefix: args.select.prefix.clone(),
        shard: args.select.shard.map(|s| s.to_string()).unwrap_or_default(),
        filters: args.select.describe_filters(),
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
            select: args.select.load()?,
            config: args.engine.clone(),
            mode: Mode::Copy,
        },
        http: args.http.clone(),
        src_api,
        dst_api,
        dst_signing_key: dst_settings
            .blob_signing_key
            .clone()
            .filter(|k| !k.is_empty()),
        single_cluster,
    })
}

/// The counters of the pass running now (a `-watch` run has one set per pass).
pub type CurrentCounters = Arc<std::sync::Mutex<Arc<Counters>>>;

/// A status summary on stderr (SIGUSR1).
pub fn status_printer(current: CurrentCounters) -> Box<dyn Fn() + Send> {
    Box::new(move || {
        let Some(c) = current.lock().ok().map(|c| c.snapshot()) else {
            return;
        };
        log_line(&format!(
            "Status: copied {} of {} blocks ({} of {}), {} in flight, {} failed, {} skipped, slices {}/{}",
            c.copied_blocks,
            c.planned_blocks,
            human_bytes(c.copied_bytes),
            human_bytes(c.planned_bytes),
            c.in_flight_blocks,
            c.failed_blocks,
            c.skipped_blocks,
            c.slices_done,
            c.slices_total
        ));
    })
}

/// `path`, or with `-watch` the pass's own file (`path.pass-N`).
fn per_pass(path: &std::path::Path, pass: Option<u32>) -> PathBuf {
    match pass {
        None => path.to_path_buf(),
        Some(n) => {
            let mut name = path.as_os_str().to_owned();
            name.push(format!(".pass-{n}"));
            PathBuf::from(name)
        }
    }
}

/// Runs the copy (one pass, or passes until stopped with `-watch`). `Ok` with the outcome
/// whenever the run itself ran (failed blocks and stops are in the outcome); `Err` when it
/// could not run.
pub fn run(args: RsyncArgs, control: Arc<Control>) -> Result<Outcome, RsyncError> {
    control.set_bwlimit(args.bwlimit.0, args.bwlimit.1);
    let current: CurrentCounters = Arc::new(std::sync::Mutex::new(Arc::new(Counters::default())));
    let _signals = super::signals::install(control.clone(), status_printer(current.clone()));
    let watching = !args.watch.is_zero();
    let mut problems = 0;
    let mut pass = 1u32;
    loop {
        let counters = Arc::new(Counters::default());
        if let Ok(mut slot) = current.lock() {
            *slot = counters.clone();
        }
        let label = watching.then_some(pass);
        if watching {
            log_line(&format!(
                "Pass {pass} starts (-watch {}).",
                crate::gocompat::duration::format_go_duration(args.watch)
            ));
        }
        let (report, outcome) = one_pass(&args, &control, &counters, label)?;
        problems += outcome.problems;
        if pass > 1 && report.totals.copied_blocks > 0 {
            log_line(&format!(
                "Pass {pass}: {} blocks appeared on the source since the first pass (the source is still being written).",
                report.totals.copied_blocks
            ));
        }
        if !watching || outcome.stopped.is_some() {
            return Ok(Outcome {
                stopped: outcome.stopped,
                problems,
            });
        }
        // A finished pass's checkpoint says "all done": the next pass walks everything.
        if let Some(path) = &args.engine.checkpoint {
            if report.totals.failed_blocks == 0 {
                let _ = std::fs::remove_file(path);
            }
        }
        let until = std::time::Instant::now() + args.watch;
        while std::time::Instant::now() < until {
            if control.is_stopping() {
                return Ok(Outcome {
                    stopped: control.stop_reason(),
                    problems,
                });
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        pass += 1;
    }
}

/// One walk of both clusters and the copies it calls for, with its report files.
fn one_pass(
    args: &RsyncArgs,
    control: &Arc<Control>,
    counters: &Arc<Counters>,
    pass: Option<u32>,
) -> Result<(RunReport, Outcome), RsyncError> {
    let prepared = prepare(args, "copy")?;
    let job = &prepared.run.job;
    let factory = HttpFactory::new(prepared.http.clone(), &[&job.src, &job.dst]);
    let mut sinks: Vec<Box<dyn EventSink>> = vec![Box::new(Terminal::new(args.display))];
    if let Some(path) = &args.report {
        let path = per_pass(path, pass);
        let uuids = |c: &crate::cluster::Cluster| c.uuids().iter().map(|u| u.to_string()).collect();
        let sink = BlockReport::create(&path, uuids(&job.src), uuids(&job.dst))
            .map_err(|source| RsyncError::Output { path, source })?;
        sinks.push(Box::new(sink));
    }
    let report = mover::run(
        prepared.run,
        factory,
        control.clone(),
        counters.clone(),
        sinks,
    )?;
    let outcome = close(&report);
    if let Some(path) = &args.json {
        let path = per_pass(path, pass);
        let mut summary = JsonSummary::new("copy", &report, counters, outcome.code());
        if let Some(n) = pass {
            summary.extra = serde_json::json!({ "pass": n });
        }
        summary
            .write(&path)
            .map_err(|source| RsyncError::Output { path, source })?;
    }
    Ok((report, outcome))
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
            "Stopped ({}): {} blocks copied, {} failed, {} not done; a rerun (with the same -checkpoint, if any) continues.",
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
