//! `keepmover -src A -dst B` (and `keepmover rsync ...`): keep-rsync's job. Reads both
//! settings files, discovers both clusters, runs the engine with keep-rsync's log lines (or
//! the bar), and closes with keep-rsync's last line and keepmover's summary.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::listen::{self, ListenError, ListenOptions};
use super::setup::{build_cluster, default_classes, load_settings, ApiClient, SetupError};
use crate::exit::Outcome;
use crate::index::filter::BlockFilter;
use crate::index::locators::{LocatorList, DEFAULT_RUN_ENTRIES};
use crate::index::shard::Shard;
use crate::keep::settings::Settings;
use crate::keepstore::http::HttpFactory;
use crate::mover::checkpoint::JobIdentity;
use crate::mover::engine::{BadCopy, Mode, Order, Selection};
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
    /// `-trash-bad`: trash the bad replicas `-verify-existing` finds.
    pub trash_bad: bool,
    /// Run the preflight checks first and refuse to start on errors (`-preflight`).
    pub preflight: bool,
    /// `-listen`: the local control endpoint.
    pub listen: Option<ListenOptions>,
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
                let (list, source) = if path == "-" {
                    let list =
                        LocatorList::load(std::io::stdin().lock(), DEFAULT_RUN_ENTRIES, &spill);
                    (list, "standard input")
                } else {
                    let file = std::fs::File::open(path).map_err(|source| RsyncError::Input {
                        path: path.into(),
                        source,
                    })?;
                    (LocatorList::load(file, DEFAULT_RUN_ENTRIES, &spill), path)
                };
                Some(list.map_err(|e| RsyncError::Locators(e.describe(source)))?)
            }
        };
        Ok(Selection {
            prefix: self.prefix.clone(),
            shard: self.shard,
            filter: self.filter.clone(),
            locators,
            order: self.order,
            include_present: false,
            mounts: Vec::new(),
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
    #[error("the source and the destination are the same cluster ({0}): copying or validating a cluster against itself is refused (a single-cluster job names disjoint -src-services and -dst-services)")]
    SelfCopy(String),
    #[error("{cluster} has no keep service {uuid}")]
    UnknownService { cluster: &'static str, uuid: String },
    #[error("{uuid} is a mount (volume) uuid, not a keep service: only vacate empties mounts (-src-services of vacate takes both)")]
    MountNotService { uuid: String },
    #[error("preflight found {0} errors (above); refusing to start. Fix them, or skip the checks with -preflight=false")]
    Preflight(usize),
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
    pub src_api: ApiClient,
    /// The destination's API server (its exported config, its discovery document).
    pub dst_api: ApiClient,
    /// The destination settings (`validate -deep` signs its reads with their key).
    pub dst_settings: Settings,
    /// The destination's blob signing key, when its settings file has one.
    pub dst_signing_key: Option<String>,
    /// Both sides are the same cluster (its servers split by `-src-services`/`-dst-services`).
    pub single_cluster: bool,
    /// The clusters' API hosts (for the status; never their tokens).
    pub src_api_host: String,
    pub dst_api_host: String,
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
            if is_mount_uuid(uuid) {
                return Err(RsyncError::MountNotService { uuid: uuid.clone() });
            }
            return Err(RsyncError::UnknownService {
                cluster: cluster.label,
                uuid: uuid.clone(),
            });
        }
    }
    cluster.services.retain(|s| uuids.contains(&s.uuid));
    Ok(())
}

/// Whether `uuid` names a keepstore mount (an Arvados volume: type infix `nyw5e`, as in
/// `GET /mounts` and the `Volumes` section of config.yml) rather than a keep service
/// (`bi6l4`).
pub fn is_mount_uuid(uuid: &str) -> bool {
    uuid.split('-').nth(1) == Some("nyw5e")
}

/// Reads the settings, discovers both clusters, and builds the job (shared with the other
/// commands that walk two clusters).
pub fn prepare(args: &RsyncArgs, action: &str) -> Result<Prepared, RsyncError> {
    prepare_sharing(args, action, &[])
}

/// [`prepare`], with the keep services in `shared` allowed on both sides of a single-cluster
/// job: `vacate` of one of their mounts, where the source lists only that mount and the
/// destination every other.
pub fn prepare_sharing(
    args: &RsyncArgs,
    action: &str,
    shared: &[String],
) -> Result<Prepared, RsyncError> {
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
    // Servers named on both sides decide for a single-cluster job; otherwise the same API
    // host on both sides is a copy onto itself.
    let explicit = args.src_keep_services_json.is_some() && args.dst_keep_services_json.is_some()
        || !args.src_services.is_empty()
        || !args.dst_services.is_empty();
    let apart = |cluster: &crate::cluster::Cluster| {
        let mut view = cluster.clone();
        view.services.retain(|s| !shared.contains(&s.uuid));
        view
    };
    if let Some(why) = super::preflight::same_cluster(
        &src_settings.api_host,
        &dst_settings.api_host,
        &apart(&src.cluster),
        &apart(&dst.cluster),
        explicit,
    ) {
        return Err(RsyncError::SelfCopy(why));
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
                key: crate::keep::signature::SigningKey::new(key.as_bytes()),
                ttl_secs,
            })
        }
        None => None,
    };
    // The destination's key, when its settings file has one, reads its replicas back.
    let dst_signing = dst_settings
        .blob_signing_key
        .as_deref()
        .filter(|k| !k.is_empty())
        .map(|key| Signing {
            key: crate::keep::signature::SigningKey::new(key.as_bytes()),
            ttl_secs: dst_api
                .discovery()
                .ok()
                .and_then(|d| d.blob_signature_ttl)
                .unwrap_or(1_209_600),
        });
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
                dst_signing,
                replicas,
                classes: classes.into(),
            },
            identity,
            select: args.select.load()?,
            config: args.engine.clone(),
            mode: Mode::Copy,
            bad_copies: Default::default(),
        },
        http: args.http.clone(),
        src_api_host: src_settings.api_host.clone(),
        dst_api_host: dst_settings.api_host.clone(),
        src_api,
        dst_api,
        dst_signing_key: dst_settings
            .blob_signing_key
            .clone()
            .filter(|k| !k.is_empty()),
        dst_settings,
        single_cluster,
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
    (src_api_host, dst_api_host): (&str, &str),
    config: &EngineConfig,
    counters: Arc<Counters>,
    control: Arc<Control>,
) -> Live {
    Live::new(
        JobInfo {
            command: command.to_string(),
            src_api_host: src_api_host.to_string(),
            dst_api_host: dst_api_host.to_string(),
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
    let src_host = load_settings("src", &args.src)?.api_host;
    let dst_host = load_settings("dst", &args.dst)?.api_host;
    let live = live_view(
        "copy",
        (&src_host, &dst_host),
        &args.engine,
        Arc::new(Counters::default()),
        control.clone(),
    );
    let _signals = super::signals::install(control.clone(), status_printer(live.clone()));
    let listener = match &args.listen {
        Some(options) => Some(listen::start(options, live.clone())?),
        None => None,
    };
    let linger = || {
        if let (Some(listener), Some(options)) = (&listener, &args.listen) {
            listener.linger(options.linger);
        }
    };
    let watching = !args.watch.is_zero();
    let mut problems = 0;
    let mut pass = 1u32;
    loop {
        // Each pass counts afresh (its summary is its own); /metrics sees a counter reset.
        live.set_counters(Arc::new(Counters::default()));
        let label = watching.then_some(pass);
        if watching {
            log_line(&format!(
                "Pass {pass} starts (-watch {}).",
                crate::gocompat::duration::format_go_duration(args.watch)
            ));
        }
        let (report, outcome) = one_pass(&args, &control, &live, label)?;
        problems += outcome.problems;
        if pass > 1 && report.totals.copied_blocks > 0 {
            log_line(&format!(
                "Pass {pass}: {} blocks appeared on the source since the first pass (the source is still being written).",
                report.totals.copied_blocks
            ));
        }
        if !watching || outcome.stopped.is_some() {
            linger();
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
                linger();
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
    live: &Live,
    pass: Option<u32>,
) -> Result<(RunReport, Outcome), RsyncError> {
    let counters = live.counters();
    let prepared = prepare(args, "copy")?;
    // The safety checks run before every pass's copy starts.
    if args.preflight {
        let checks = super::preflight::run_checks(&prepared, args.engine.io);
        checks.print();
        if checks.errors() > 0 {
            return Err(RsyncError::Preflight(checks.errors()));
        }
    }
    let job = &prepared.run.job;
    let dst = job.dst.clone();
    let bad_copies = prepared.run.bad_copies.clone();
    let factory = HttpFactory::new(prepared.http.clone(), &[&job.src, &job.dst]);
    let mut sinks: Vec<Box<dyn EventSink>> = vec![
        Box::new(terminal(args.display, live)),
        Box::new(live.board.sink()),
    ];
    if let Some(path) = &args.report {
        let path = per_pass(path, pass);
        let uuids = |c: &crate::cluster::Cluster| c.uuids().iter().map(|u| u.to_string()).collect();
        let sink = BlockReport::create(&path, uuids(&job.src), uuids(&job.dst))
            .map_err(|source| RsyncError::Output { path, source })?;
        sinks.push(Box::new(sink));
    }
    let started = std::time::Instant::now();
    let io_backend = prepared.run.config.io;
    let report = match mover::run(
        prepared.run,
        factory.clone(),
        control.clone(),
        counters.clone(),
        sinks,
    ) {
        Ok(report) => report,
        Err(e) => {
            // A run that ends in an error still leaves its -json summary (outcome "error",
            // the counters so far), so a scheduler or `report merge` sees a failed shard
            // rather than a missing one.
            if let Some(path) = &args.json {
                let report = RunReport {
                    plan: Default::default(),
                    totals: counters.snapshot(),
                    stopped: None,
                    io_backend,
                    peak_buffer_bytes: 0,
                    slices: 0,
                    elapsed: started.elapsed(),
                    dry_run: args.engine.dry_run,
                };
                let mut summary =
                    JsonSummary::new("copy", &report, &counters, crate::exit::FAILURE);
                summary.outcome = "error".to_string();
                summary.shard = args.select.shard.map(|s| s.to_string());
                summary.extra = serde_json::json!({ "error": e.to_string(), "pass": pass });
                let path = per_pass(path, pass);
                if let Err(source) = summary.write(&path) {
                    log_line(&format!(
                        "could not write the -json summary {}: {source}",
                        path.display()
                    ));
                }
            }
            return Err(e.into());
        }
    };
    let mut outcome = close(&report);
    let bad: Vec<BadCopy> = bad_copies.lock().map(|b| b.clone()).unwrap_or_default();
    if !bad.is_empty() {
        log_line(&format!(
            "-verify-existing found {} bad destination replicas (listed above); good replicas were written elsewhere where they could be.",
            bad.len()
        ));
        if args.trash_bad {
            outcome.problems += trash_bad_copies(&factory, &dst, &bad, args.engine.io);
        } else {
            log_line("The bad replicas stay where they are; -trash-bad asks their keepstores to trash them (keepstore's trash rules apply).");
        }
    }
    if let Some(path) = &args.json {
        let path = per_pass(path, pass);
        let mut summary = JsonSummary::new("copy", &report, &counters, outcome.code());
        summary.shard = args.select.shard.map(|s| s.to_string());
        if let Some(n) = pass {
            summary.extra = serde_json::json!({ "pass": n });
        }
        summary
            .write(&path)
            .map_err(|source| RsyncError::Output { path, source })?;
    }
    Ok((report, outcome))
}

/// `-trash-bad`: asks each keepstore holding a bad replica to trash exactly that copy
/// (`PUT /trash` with its mount and index mtime), then checks the mount's index. Returns
/// how many are still there.
fn trash_bad_copies(
    factory: &HttpFactory,
    dst: &crate::cluster::Cluster,
    bad: &[BadCopy],
    io: crate::net::IoBackend,
) -> u64 {
    use crate::keep::wire::TrashItem;
    use crate::keepstore::{IndexSource, Keepstores, KeepstoresFactory};
    let Ok((runtime, _)) = crate::net::build_runtime(io) else {
        log_line("-trash-bad: could not start the I/O runtime; nothing trashed");
        return bad.len() as u64;
    };
    runtime.block_on(async {
        let keepstores = factory.client();
        let mut by_server: std::collections::BTreeMap<usize, Vec<&BadCopy>> = Default::default();
        let mut left = 0u64;
        for copy in bad {
            if copy.mount.is_none() {
                log_line(&format!(
                    "-trash-bad: {} on server {}: its mount is unknown, not trashed",
                    copy.block.short(),
                    copy.server
                ));
                left += 1;
                continue;
            }
            by_server.entry(copy.server).or_default().push(copy);
        }
        for (server, copies) in by_server {
            let items: Vec<TrashItem> = copies
                .iter()
                .filter_map(|c| {
                    let (mount, mtime) = c.mount.as_ref()?;
                    Some(TrashItem {
                        locator: c.block.short().to_string(),
                        block_mtime: *mtime,
                        mount_uuid: mount.clone(),
                    })
                })
                .collect();
            let uuid = dst.services.get(server).map_or("?", |s| s.uuid.as_str());
            if let Err(e) = keepstores.send_trash(dst, server, &items).await {
                log_line(&format!("-trash-bad: PUT /trash to {uuid} failed: {e}"));
                left += items.len() as u64;
                continue;
            }
            compio::time::sleep(Duration::from_secs(1)).await;
            for copy in copies {
                let Some((mount, _)) = &copy.mount else { continue };
                let short = copy.block.short();
                let mut entries = Vec::new();
                let still = keepstores
                    .index(dst, server, IndexSource::Mount(mount), short.hash_hex(), 16, &mut entries)
                    .await
                    .map(|()| entries.iter().any(|e| e.hash == copy.block.hash))
                    .unwrap_or(true);
                if still {
                    left += 1;
                    log_line(&format!(
                        "-trash-bad: {short} is still on {uuid} mount {mount} (younger than BlobSigningTTL, or BlobTrash off there)"
                    ));
                } else {
                    log_line(&format!("-trash-bad: trashed the bad replica of {short} on {uuid} mount {mount}"));
                }
            }
        }
        left
    })
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
            reason.name(),
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
