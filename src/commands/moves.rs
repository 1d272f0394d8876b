//! `keepmover move` and `keepmover vacate`: copy, prove, then remove from the source —
//! dCache's move job, on keepstore's own rules. `move -src A -dst B` copies like the default
//! command, reads one destination replica back (a signed HEAD: keepstore reads and checks
//! the block), and then asks the source keepstores to trash the block (`PUT /trash` with the
//! index mtime) and re-reads their indexes to prove it. `vacate -src A -src-services UUID`
//! empties those keepstores into the rest of the same cluster, keeping every block's
//! replica count. Neither ever trashes a block whose destination replicas are not confirmed
//! and read back, so never the last replica.

use std::sync::Arc;
use std::time::Duration;

use super::listen;
use super::rsync::{close, live_view, prepare, status_printer, terminal, RsyncArgs, RsyncError};
use super::setup::SetupError;
use crate::exit::Outcome;
use crate::keepstore::http::HttpFactory;
use crate::mover::engine::Mode;
use crate::mover::events::EventSink;
use crate::mover::trash::{TrashPolicy, Trasher};
use crate::mover::{self, Control, Counters};
use crate::report::blocks::BlockReport;
use crate::report::summary::JsonSummary;
use crate::report::{human_bytes, log_line};

/// `move` and `vacate`: the copy's arguments, plus how long to wait for trash lists.
#[derive(Clone, Debug)]
pub struct MoveArgs {
    pub copy: RsyncArgs,
    /// How long to keep re-reading a source index for one trash list.
    pub trash_patience: Duration,
    /// `vacate`: the destination is the rest of the source cluster.
    pub vacate: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum MoveError {
    #[error(transparent)]
    Copy(#[from] RsyncError),
    #[error("the source has Collections.BlobTrash off: its keepstores ignore every trash request, so nothing can be moved (copy instead, or turn trash on)")]
    TrashOff,
    #[error("vacate needs -src-services: the keep services (uuids) to empty")]
    NothingToVacate,
    #[error("vacate: no writable keep service would be left in {0}")]
    NowhereToGo(String),
    #[error("starting a thread: {0}")]
    Thread(std::io::Error),
}

impl From<SetupError> for MoveError {
    fn from(e: SetupError) -> Self {
        MoveError::Copy(RsyncError::Setup(e))
    }
}

impl From<mover::EngineError> for MoveError {
    fn from(e: mover::EngineError) -> Self {
        MoveError::Copy(RsyncError::Engine(e))
    }
}

/// The source's trash settings from its exported config: `Collections.BlobTrash` (`None`
/// when the config cannot be read).
fn source_trash_enabled(api: &super::setup::ApiClient) -> Option<bool> {
    api.config()
        .ok()
        .and_then(|c| c.get("Collections")?.get("BlobTrash")?.as_bool())
}

/// Runs a move or a vacate.
pub fn run(args: MoveArgs, control: Arc<Control>) -> Result<Outcome, MoveError> {
    let mut copy = args.copy.clone();
    let action = if args.vacate { "vacate" } else { "move" };
    if args.vacate {
        if copy.src_services.is_empty() {
            return Err(MoveError::NothingToVacate);
        }
        // The rest of the same cluster, as the destination.
        copy.dst = copy.src.clone();
        copy.dst_keep_services_json = copy.src_keep_services_json.clone();
    }
    let mut prepared = prepare_with_rest(&copy, action, args.vacate)?;
    match source_trash_enabled(&prepared.src_api) {
        Some(false) => return Err(MoveError::TrashOff),
        Some(true) => {}
        None => log_line("Warning: the source's exported config could not be read; if Collections.BlobTrash is off there, nothing will be removed (every block will be reported)."),
    }
    log_line(&format!(
        "Before {action}: pause keep-balance on the source cluster (and on the destination) for the duration: a running keep-balance replaces the trash lists keepmover sends, and may pull blocks back."
    ));
    let src_ttl = prepared
        .src_api
        .discovery()
        .ok()
        .and_then(|d| d.blob_signature_ttl)
        .unwrap_or(1_209_600);
    let (sender, receiver) = crossbeam_channel::unbounded();
    prepared.run.mode = if args.vacate {
        Mode::Vacate { trash: sender }
    } else {
        Mode::Move { trash: sender }
    };
    let counters = Arc::new(Counters::default());
    let live = live_view(
        action,
        (&prepared.src_api_host, &prepared.dst_api_host),
        &prepared.run.config,
        counters.clone(),
        control.clone(),
    );
    let _signals = super::signals::install(control.clone(), status_printer(live.clone()));
    let listener = match &copy.listen {
        Some(options) => Some(listen::start(options, live.clone()).map_err(RsyncError::from)?),
        None => None,
    };
    let job = &prepared.run.job;
    let factory = Arc::new(HttpFactory::new(
        prepared.http.clone(),
        &[&job.src, &job.dst],
    ));
    let mut sinks: Vec<Box<dyn EventSink>> = vec![
        Box::new(terminal(copy.display, &live)),
        Box::new(live.board.sink()),
    ];
    if let Some(path) = &copy.report {
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
    let dry_run = copy.engine.dry_run;
    let policy = TrashPolicy {
        blob_signing_ttl: Duration::from_secs(src_ttl),
        patience: args.trash_patience,
        io: copy.engine.io,
    };
    let src = job.src.clone();
    let mut trasher = Ok(None);
    let report = mover::run_with(
        prepared.run,
        FactoryRef(factory.clone()),
        control,
        counters.clone(),
        sinks,
        |emitter| {
            // The trasher reports through the same sinks (its removals and refusals are
            // lines of the -report file too).
            trasher =
                Trasher::start(factory, src, policy, receiver, counters.clone(), emitter).map(Some);
        },
    );
    if let Some(t) = trasher.map_err(MoveError::Thread)? {
        t.finish();
    }
    let report = report?;
    if dry_run {
        let p = &report.plan;
        log_line(&format!(
            "Dry run ({action}): {} blocks ({}) to copy and read back, {} blocks ({}) already on the destination to read back; {} blocks ({}) would leave the source.",
            p.to_copy_blocks,
            human_bytes(p.to_copy_bytes),
            p.present_blocks,
            human_bytes(p.present_bytes),
            p.to_copy_blocks + p.present_blocks,
            human_bytes(p.to_copy_bytes + p.present_bytes),
        ));
        return Ok(Outcome::default());
    }
    let mut outcome = close(&report);
    let t = counters.snapshot();
    log_line(&format!(
        "Removed from the source: {} blocks ({}); not removed: {} (see the lines above); read back on the destination: {}.",
        t.trashed_blocks,
        human_bytes(t.trashed_bytes),
        t.not_removed_blocks,
        t.verified_blocks
    ));
    outcome.problems += t.not_removed_blocks;
    if let Some(path) = &copy.json {
        let mut summary = JsonSummary::new(action, &report, &counters, outcome.code());
        summary.totals = &t;
        summary.shard = copy.select.shard.map(|s| s.to_string());
        summary.write(path).map_err(|source| RsyncError::Output {
            path: path.clone(),
            source,
        })?;
    }
    if let (Some(listener), Some(options)) = (&listener, &copy.listen) {
        listener.linger(options.linger);
    }
    Ok(outcome)
}

/// [`prepare`], with the destination services being the rest of the source cluster when
/// `rest` (vacate).
fn prepare_with_rest(
    copy: &RsyncArgs,
    action: &str,
    rest: bool,
) -> Result<super::rsync::Prepared, MoveError> {
    if !rest {
        return Ok(prepare(copy, action)?);
    }
    // Discover once to learn the other services, then prepare with them named.
    let probe = super::setup::load_settings("src", &copy.src)?;
    let api = super::setup::ApiClient::new(&probe, copy.engine.io, copy.http.clone())?;
    let all =
        super::setup::build_cluster("src", &probe, copy.src_keep_services_json.as_deref(), &api)?;
    let others: Vec<String> = all
        .cluster
        .services
        .iter()
        .filter(|s| !copy.src_services.contains(&s.uuid) && !s.read_only)
        .map(|s| s.uuid.clone())
        .collect();
    if others.is_empty() {
        return Err(MoveError::NowhereToGo(all.identity));
    }
    let mut copy = copy.clone();
    copy.dst_services = others;
    Ok(prepare(&copy, action)?)
}

/// Shares one factory between the engine and the trasher.
struct FactoryRef(Arc<HttpFactory>);

impl crate::keepstore::KeepstoresFactory for FactoryRef {
    type Client = crate::keepstore::http::HttpKeepstores;
    fn client(&self) -> Self::Client {
        self.0.client()
    }
}
