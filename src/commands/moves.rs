//! `keepmover move` and `keepmover vacate`: copy, prove, then remove from the source —
//! dCache's move job, on keepstore's own rules. `move -src A -dst B` copies like the default
//! command, reads one destination replica back (a signed HEAD: keepstore reads and checks
//! the block), and then asks the source keepstores to trash the block (`PUT /trash` with the
//! index mtime) and re-reads their indexes to prove it. `vacate -src A -src-services UUID`
//! empties those keepstores, or mounts (volume uuids), into the rest of the same cluster,
//! keeping every block's replica count. Neither ever trashes a block whose destination
//! replicas are not confirmed and read back, and `vacate` also counts them again in the
//! rest of the cluster's listings first: never the last replica.
//!
//! Vacating a mount: its keepstore is a source for that mount alone (listed with
//! `/mounts/<uuid>/blocks`, trashed with the mount named in every trash item), and stays a
//! destination through its other mounts when the mount is read-only (keepstore then writes
//! a PUT to another of its mounts). While the mount is writable, a PUT to its keepstore
//! could be satisfied by the very copy being vacated (keepstore touches a copy it already
//! holds instead of writing another), so that keepstore takes no new copies in the run.

use std::sync::Arc;
use std::time::Duration;

use super::listen;
use super::rsync::{
    close, live_view, prepare, prepare_sharing, status_printer, terminal, RsyncArgs, RsyncError,
};
use super::setup::SetupError;
use crate::exit::Outcome;
use crate::index::layout::{self, Layout, ServerMounts};
use crate::keepstore::http::HttpFactory;
use crate::keepstore::KeepstoresFactory;
use crate::mover::engine::Mode;
use crate::mover::events::EventSink;
use crate::mover::trash::{Elsewhere, TrashPolicy, Trasher};
use crate::mover::{self, Control, Counters};
use crate::net::build_runtime;
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
    #[error("vacate: {uuid} is neither a keep service nor a mount of {cluster} (mounts as listed by its keepstores' GET /mounts{unlisted})")]
    UnknownUuid {
        uuid: String,
        cluster: String,
        unlisted: String,
    },
    #[error("vacate: mount {0} does not allow trash (a read-only volume without AllowTrashWhenReadOnly): keepstore would ignore every trash item for it, so nothing could be removed. Set AllowTrashWhenReadOnly: true on the volume (or make it writable) and restart its keepstores")]
    MountKeepsTrash(String),
    #[error(
        "vacate: -index-by server lists whole keepstores; emptying a mount needs -index-by mount"
    )]
    MountsNeedMountIndex,
    #[error("starting the I/O runtime: {0}")]
    Runtime(std::io::Error),
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
    let (mut prepared, vacated) = if args.vacate {
        let (prepared, vacated) = prepare_vacate(&copy, action)?;
        (prepared, Some(vacated))
    } else {
        (prepare(&copy, action)?, None)
    };
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
    let mut policy = TrashPolicy {
        blob_signing_ttl: Duration::from_secs(src_ttl),
        patience: args.trash_patience,
        io: copy.engine.io,
        mounts_by_server: Default::default(),
        confirm: None,
    };
    if let Some(vacated) = &vacated {
        // Which source servers are emptied mount by mount, and the rest of the cluster as
        // the trasher counts replicas there before any trash list.
        for (server, service) in job.src.services.iter().enumerate() {
            let mounts: Vec<String> = vacated
                .mounts
                .iter()
                .filter(|m| m.servers.contains(&service.uuid))
                .map(|m| m.uuid.clone())
                .collect();
            if !mounts.is_empty() {
                policy.mounts_by_server.insert(server, mounts);
            }
        }
        let mut layout = if copy.engine.index_by_mount {
            let (runtime, _) = build_runtime(copy.engine.io).map_err(MoveError::Runtime)?;
            runtime.block_on(layout::discover(&factory.client(), &job.dst))
        } else {
            Layout::whole_servers(&job.dst)
        };
        layout.without_mounts(&prepared.run.select.mounts);
        policy.confirm = Some(Elsewhere {
            cluster: job.dst.clone(),
            layout,
        });
    }
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
            "Dry run ({action}): {} blocks ({}) not on the destination, to copy and read back; {} blocks ({}) already listed there, to read back (and top up where they have fewer replicas than wanted); {} blocks ({}) would leave the source.",
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

/// A mount `vacate` empties on its own.
#[derive(Clone, Debug)]
struct VacatedMount {
    uuid: String,
    /// The keep services (uuids) that expose it.
    servers: Vec<String>,
    /// New copies could land on it (`allow_write` on a writable service).
    writable: bool,
}

/// What `vacate -src-services` named, sorted out against the cluster.
#[derive(Clone, Debug, Default)]
struct Vacated {
    /// Keep services emptied whole.
    services: Vec<String>,
    /// Mounts emptied on their own (none of whose servers is emptied whole).
    mounts: Vec<VacatedMount>,
}

/// Sorts `-src-services` into keep services and mounts, and prepares the job: the source is
/// what is vacated, the destination the rest of the cluster's writable keep services (see
/// the module notes for a vacated mount's own keepstore).
fn prepare_vacate(
    copy: &RsyncArgs,
    action: &str,
) -> Result<(super::rsync::Prepared, Vacated), MoveError> {
    let probe = super::setup::load_settings("src", &copy.src)?;
    let api = super::setup::ApiClient::new(&probe, copy.engine.io, copy.http.clone())?;
    let all =
        super::setup::build_cluster("src", &probe, copy.src_keep_services_json.as_deref(), &api)?;
    let services = &all.cluster.services;
    let mut vacated = Vacated::default();
    let mut named_mounts = Vec::new();
    for uuid in &copy.src_services {
        if services.iter().any(|s| &s.uuid == uuid) {
            vacated.services.push(uuid.clone());
        } else {
            named_mounts.push(uuid.clone());
        }
    }
    if !named_mounts.is_empty() {
        if !copy.engine.index_by_mount {
            return Err(MoveError::MountsNeedMountIndex);
        }
        let factory = HttpFactory::new(copy.http.clone(), &[&all.cluster]);
        let (runtime, _) = build_runtime(copy.engine.io).map_err(MoveError::Runtime)?;
        let layout = runtime.block_on(layout::discover(&factory.client(), &all.cluster));
        for uuid in named_mounts {
            let Some(location) = layout
                .locations
                .iter()
                .find(|l| l.mount.as_deref() == Some(uuid.as_str()))
            else {
                let unlisted: Vec<&str> = layout
                    .servers
                    .iter()
                    .zip(services)
                    .filter(|(m, _)| matches!(m, ServerMounts::Unknown(_)))
                    .map(|(_, s)| s.uuid.as_str())
                    .collect();
                return Err(MoveError::UnknownUuid {
                    uuid,
                    cluster: all.identity.clone(),
                    unlisted: if unlisted.is_empty() {
                        String::new()
                    } else {
                        format!("; these did not list their mounts: {}", unlisted.join(", "))
                    },
                });
            };
            let trashable = location.servers.iter().any(|&server| {
                matches!(layout.servers.get(server), Some(ServerMounts::Known(mounts))
                    if mounts.iter().any(|m| m.uuid == uuid && m.allow_trash))
            });
            if !trashable {
                return Err(MoveError::MountKeepsTrash(uuid));
            }
            let servers: Vec<String> = location
                .servers
                .iter()
                .map(|&s| services[s].uuid.clone())
                .collect();
            // A keepstore emptied whole empties this mount with it.
            if servers.iter().any(|s| vacated.services.contains(s)) {
                continue;
            }
            vacated.mounts.push(VacatedMount {
                uuid,
                servers,
                writable: location.writable,
            });
        }
    }
    let exposes_writable = |uuid: &String| {
        vacated
            .mounts
            .iter()
            .any(|m| m.writable && m.servers.contains(uuid))
    };
    let mount_servers: Vec<&String> = vacated.mounts.iter().flat_map(|m| &m.servers).collect();
    let sources: Vec<String> = services
        .iter()
        .map(|s| &s.uuid)
        .filter(|u| vacated.services.contains(u) || mount_servers.contains(u))
        .cloned()
        .collect();
    let others: Vec<String> = services
        .iter()
        .filter(|s| !s.read_only)
        .map(|s| &s.uuid)
        .filter(|u| !vacated.services.contains(u) && !exposes_writable(u))
        .cloned()
        .collect();
    if others.is_empty() {
        return Err(MoveError::NowhereToGo(all.identity));
    }
    for m in vacated.mounts.iter().filter(|m| m.writable) {
        log_line(&format!(
            "vacate: mount {} is writable, so {} take no new copies in this run (a PUT there could be answered by the very copy being vacated: keepstore touches a copy it holds instead of writing another); new blocks may also keep landing on it. To let its keepstore's other mounts take copies, set ReadOnly: true and AllowTrashWhenReadOnly: true on the volume first.",
            m.uuid,
            m.servers.join(", ")
        ));
    }
    // Keepstores whose vacated mounts are all read-only stay destinations (other mounts).
    let shared: Vec<String> = others
        .iter()
        .filter(|u| mount_servers.contains(u))
        .cloned()
        .collect();
    let mut copy = copy.clone();
    copy.src_services = sources;
    copy.dst_services = others;
    let mut prepared = prepare_sharing(&copy, action, &shared)?;
    if !vacated.mounts.is_empty() {
        let uuids: Vec<String> = vacated.mounts.iter().map(|m| m.uuid.clone()).collect();
        log_line(&format!(
            "Vacating mounts {} (the rest of their keepstores stays){}.",
            uuids.join(", "),
            if vacated.services.is_empty() {
                String::new()
            } else {
                format!(" and keep services {}", vacated.services.join(", "))
            }
        ));
        // The checkpoint tells a mount's vacate from its whole keepstore's.
        prepared.run.identity.src =
            format!("{} mounts [{}]", prepared.run.identity.src, uuids.join(","));
        prepared.run.select.mounts = uuids;
    }
    Ok((prepared, vacated))
}

/// Shares one factory between the engine and the trasher.
struct FactoryRef(Arc<HttpFactory>);

impl crate::keepstore::KeepstoresFactory for FactoryRef {
    type Client = crate::keepstore::http::HttpKeepstores;
    fn client(&self) -> Self::Client {
        self.0.client()
    }
}
