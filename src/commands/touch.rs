//! `keepmover touch -dst B [-locators FILE | -prefix P | -all]`: renews the mtime of
//! destination blocks with keepstore's `TOUCH /<hash+size>`, on every destination server
//! whose index lists the block, so that an operator can hold off the destination's garbage
//! collection (which trashes unreferenced blocks older than `BlobSigningTTL`) while the
//! database move is pending. Touching is idempotent and writes no data.
//!
//! What to touch is the copy's selection ([`SelectionArgs`]: prefix, `-shard`, the
//! `-locators` list read alongside the walk, and `-size`/`-mtime` through the same
//! [`BlockFilter`]), here applied to each destination copy's index line: `-mtime ..300h`
//! renews only the copies written more than 300 hours ago. Which servers hold a block comes
//! from their indexes: slice by slice (memory bounded by one slice, as in the copy), and for
//! a `-locators` list either the slice holding many of the listed blocks or one
//! `index/<hash>` probe per block. Many TOUCH requests are in flight at once, each retried
//! by keepclient's rules.
//!
//! A touch of a whole cluster can take hours, so it is watched and steered as a copy is:
//! `-listen` serves `/status`, `/metrics` and `/control` from the same counters (its own
//! `touched_copies`, `touch_failed_copies`, `touch_not_found_blocks`, and TOUCH latencies
//! and errors by server); pause and concurrency act on the next TOUCH to start; SIGINT,
//! SIGTERM or `cancel` stop starting new ones, let those in flight end and print the summary
//! (a second signal drops them). SIGUSR1 prints a status line.

use std::collections::BTreeMap;
use std::io::{BufWriter, Write as _};
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::{join_all, Either};
use futures_util::stream::{FuturesUnordered, StreamExt};
use serde::Serialize;

use super::listen::{ListenError, ListenOptions};
use super::rsync::{RsyncError, SelectionArgs};
use super::setup::{build_cluster, load_settings, ApiClient, SetupError};
use crate::cluster::Cluster;
use crate::exit::Outcome;
use crate::index::filter::BlockFilter;
use crate::index::locators::Wanted;
use crate::index::merge::choose_extra_digits;
use crate::index::shard::walk_prefixes;
use crate::index::walk::{estimate_source_blocks, WalkError, MAX_SLICE_ENTRIES};
use crate::keep::index_format::IndexEntry;
use crate::keep::BlockId;
use crate::keepstore::http::HttpFactory;
use crate::keepstore::{Cause, IndexSource, Keepstores, KeepstoresFactory};
use crate::mover::counters::{Counters, Op};
use crate::mover::events::{Event, EventSink, Phase};
use crate::mover::gates::{Gates, Key};
use crate::mover::retry::{next_for, RetryPolicy, Rounds};
use crate::mover::Control;
use crate::net::{build_runtime, ClientConfig, IoBackend};
use crate::report::log_line;
use crate::report::status::{JobInfo, Live, StatusSink};

/// Every option of `touch`, typed. Built by `cli`.
#[derive(Clone, Debug)]
pub struct TouchArgs {
    pub dst: String,
    pub dst_keep_services_json: Option<String>,
    /// What to touch: `-prefix` (empty with `-all`), `-shard`, `-locators`, `-size`,
    /// `-mtime`, parsed as the copy parses them.
    pub select: SelectionArgs,
    pub io: IoBackend,
    pub http: ClientConfig,
    /// TOUCH requests in flight at once (a ceiling).
    pub concurrency: usize,
    /// Most TOUCH requests in flight to one keepstore; halved on 503/429/408, regrown on
    /// success (the copy's per-server gates).
    pub per_server_requests: usize,
    pub retry: RetryPolicy,
    /// Hex digits per index slice (0 = chosen from the block count).
    pub prefix_length: usize,
    pub report: Option<PathBuf>,
    pub json: Option<PathBuf>,
    /// `-listen`: the local control endpoint.
    pub listen: Option<ListenOptions>,
}

#[derive(Debug, thiserror::Error)]
pub enum TouchError {
    #[error(transparent)]
    Setup(#[from] SetupError),
    /// The `-locators` list could not be read, or has a malformed line.
    #[error("{0}")]
    List(RsyncError),
    #[error("Error while touching: {0}")]
    Walk(Box<WalkError>),
    #[error("starting the I/O runtime: {0}")]
    Runtime(std::io::Error),
    #[error(transparent)]
    Listen(#[from] ListenError),
    #[error("writing {path}: {source}")]
    Output {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl From<WalkError> for TouchError {
    fn from(e: WalkError) -> Self {
        TouchError::Walk(Box::new(e))
    }
}

/// A block to touch, and the destination servers whose index lists a copy of it that the
/// filter takes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub id: BlockId,
    pub servers: Vec<usize>,
}

fn walk_error(cluster: &Cluster, server: usize, prefix: &str, cause: Cause) -> WalkError {
    WalkError {
        cluster: cluster.label,
        origin: cluster
            .services
            .get(server)
            .map(|s| s.origin.to_string())
            .unwrap_or_default(),
        prefix: prefix.to_string(),
        cause,
    }
}

/// Every copy listed under `prefix`: each `hash+size` with the servers listing it and the
/// copy's mtime there (the oldest, when a server lists it on two mounts).
async fn slice_copies<K: Keepstores>(
    ks: &K,
    dst: &Cluster,
    prefix: &str,
) -> Result<BTreeMap<BlockId, Vec<(usize, i64)>>, WalkError> {
    let lists = (0..dst.services.len()).map(|server| async move {
        let mut entries = Vec::new();
        ks.index(
            dst,
            server,
            IndexSource::Server,
            prefix,
            MAX_SLICE_ENTRIES,
            &mut entries,
        )
        .await
        .map(|()| (server, entries))
        .map_err(|cause| walk_error(dst, server, prefix, cause))
    });
    let mut by_block: BTreeMap<BlockId, Vec<(usize, i64)>> = BTreeMap::new();
    for result in join_all(lists).await {
        let (server, entries) = result?;
        for e in entries {
            let copies = by_block.entry(BlockId::new(e.hash, e.size)).or_default();
            match copies.iter_mut().find(|(s, _)| *s == server) {
                Some((_, mtime)) => *mtime = (*mtime).min(e.mtime_ns),
                None => copies.push((server, e.mtime_ns)),
            }
        }
    }
    Ok(by_block)
}

/// The servers whose copy of `id` the filter takes; `None` when it takes none.
fn target(filter: &BlockFilter, id: BlockId, copies: &[(usize, i64)]) -> Option<Target> {
    let servers: Vec<usize> = copies
        .iter()
        .filter(|(_, mtime_ns)| {
            filter.accepts(&IndexEntry {
                hash: id.hash,
                size: id.size,
                mtime_ns: *mtime_ns,
            })
        })
        .map(|(server, _)| *server)
        .collect();
    (!servers.is_empty()).then_some(Target { id, servers })
}

/// Lists `prefix` on every server and returns each `hash+size` with the servers listing a
/// copy the filter takes.
pub async fn slice_targets<K: Keepstores>(
    ks: &K,
    dst: &Cluster,
    prefix: &str,
    filter: &BlockFilter,
) -> Result<Vec<Target>, WalkError> {
    Ok(slice_copies(ks, dst, prefix)
        .await?
        .into_iter()
        .filter_map(|(id, copies)| target(filter, id, &copies))
        .collect())
}

/// Listed blocks in one slice at least this many: list the slice rather than probe each.
const LIST_SLICE_AT: usize = 64;

/// The targets for the listed blocks of one slice (`slice`: the walk's prefix they are
/// under, sorted as the list is), and the listed blocks no server has (with why). A listed
/// block whose copies the filter all leaves out is neither.
pub async fn locator_targets<K: Keepstores>(
    ks: &K,
    dst: &Cluster,
    slice: &str,
    wanted: &[Wanted],
    filter: &BlockFilter,
) -> Result<(Vec<Target>, Vec<(Wanted, String)>), WalkError> {
    let listed: BTreeMap<BlockId, Vec<(usize, i64)>> = if wanted.len() >= LIST_SLICE_AT {
        slice_copies(ks, dst, slice).await?
    } else {
        let mut all = BTreeMap::new();
        for w in wanted {
            all.extend(slice_copies(ks, dst, &w.hash.to_string()).await?);
        }
        all
    };
    let mut targets = Vec::new();
    let mut not_found = Vec::new();
    for w in wanted {
        let same_hash: Vec<(&BlockId, &Vec<(usize, i64)>)> = listed
            .range(BlockId::new(w.hash, 0)..=BlockId::new(w.hash, u64::MAX))
            .collect();
        let matching: Vec<_> = same_hash.iter().filter(|(id, _)| w.matches(id)).collect();
        if matching.is_empty() {
            let why = match same_hash.first() {
                Some((id, _)) => format!("the destination lists it only as {}", id.short()),
                None => "no destination server lists it".to_string(),
            };
            not_found.push((*w, why));
        }
        targets.extend(
            matching
                .into_iter()
                .filter_map(|(id, copies)| target(filter, **id, copies)),
        );
    }
    Ok((targets, not_found))
}

/// One TOUCH's result.
#[derive(Debug)]
pub struct Touched {
    pub id: BlockId,
    pub server: usize,
    pub result: Result<(), Cause>,
}

/// How often a paused run, or the watch for a hard stop, looks at the controls.
const STEER_POLL: Duration = Duration::from_millis(50);

/// How a run of TOUCH requests ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TouchEnd {
    /// Every request was sent and answered (or failed every retry).
    Finished,
    /// A stop came first: some were never sent.
    Cut,
}

/// What steers and counts a run of TOUCH requests.
pub struct Steering<'a> {
    pub control: &'a Control,
    pub counters: &'a Counters,
    /// Per-server allowances ([`Key::Dst`] by server index), shared by the whole run.
    pub gates: &'a Rc<Gates>,
}

/// One TOUCH request in the in-flight gauge (`keepmover_blocks_in_flight`), until dropped.
struct InFlight<'a>(&'a std::sync::atomic::AtomicU64);

impl<'a> InFlight<'a> {
    fn enter(gauge: &'a std::sync::atomic::AtomicU64) -> InFlight<'a> {
        gauge.fetch_add(1, Relaxed);
        InFlight(gauge)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Relaxed);
    }
}

/// Sends TOUCH for every (target, server), `concurrency` at a time (or what the controls say
/// now), each in keepclient's retry rounds; `done` sees every result as it comes. Starts
/// nothing new while paused or stopping, and a request in flight tries no further round
/// once stopping. (A hard stop is the caller's: `run` drops the whole walk, this included.)
pub async fn touch_targets<K: Keepstores>(
    ks: &K,
    dst: &Cluster,
    targets: &[Target],
    concurrency: usize,
    retry: RetryPolicy,
    steer: &Steering<'_>,
    mut done: impl FnMut(Touched),
) -> TouchEnd {
    // Each server walks the targets on a cursor of its own, and a TOUCH starts only when
    // its server's gate has room: a keepstore that answers slowly, or has had its allowance
    // halved by 503s, holds back its own touches, not the others' (they would otherwise
    // fill every slot waiting at its gate).
    let mut cursors = vec![0usize; dst.services.len()];
    let mut in_flight = FuturesUnordered::new();
    let (counters, control, gates) = (steer.counters, steer.control, steer.gates);
    loop {
        let limit = control.concurrency(concurrency).max(1);
        let mut started = true;
        while started && in_flight.len() < limit && !control.is_stopping() && !control.is_paused() {
            started = false;
            for (server, cursor) in cursors.iter_mut().enumerate() {
                if in_flight.len() >= limit {
                    break;
                }
                if !next_held(targets, cursor, server) {
                    continue;
                }
                let Some(first_permit) = gates.try_enter(Key::Dst(server)) else {
                    continue;
                };
                let id = targets[*cursor].id;
                *cursor += 1;
                started = true;
                let counted = InFlight::enter(&counters.in_flight_blocks);
                in_flight.push(async move {
                    // Counted out however the request ends, dropped by a hard stop included.
                    let _counted = counted;
                    let short = id.short();
                    let mut rounds = Rounds::new(retry, vec![server]);
                    let mut last = Ok(());
                    let mut first_permit = Some(first_permit);
                    while let Some(order) = rounds.next().await {
                        for s in order {
                            let permit = match first_permit.take() {
                                Some(permit) => permit,
                                None => gates.enter(Key::Dst(s)).await,
                            };
                            let began = Instant::now();
                            last = ks.touch(dst, s, short.as_str()).await;
                            drop(permit);
                            match &last {
                                Ok(()) => gates.success(Key::Dst(s)),
                                Err(cause) if cause.is_overload() => gates.overloaded(Key::Dst(s)),
                                Err(_) => {}
                            }
                            if let Some(service) = dst.services.get(s) {
                                counters.observe(
                                    Op::Touch,
                                    &service.uuid,
                                    began.elapsed().as_secs_f64(),
                                );
                                if let Err(cause) = &last {
                                    counters.error(&service.uuid, cause.kind());
                                }
                            }
                            if let Err(cause) = &last {
                                rounds.mark(s, next_for(cause));
                            }
                        }
                        if last.is_ok() || control.is_stopping() {
                            break;
                        }
                    }
                    Touched {
                        id,
                        server,
                        result: last,
                    }
                });
            }
        }
        match in_flight.next().await {
            Some(touched) => done(touched),
            // Nothing in flight: all sent, a stop, or a pause (look again shortly).
            None if cursors
                .iter_mut()
                .enumerate()
                .all(|(server, cursor)| !next_held(targets, cursor, server)) =>
            {
                return TouchEnd::Finished
            }
            None if control.is_stopping() => return TouchEnd::Cut,
            None => compio::time::sleep(STEER_POLL).await,
        }
    }
}

/// Moves `cursor` to the next target `server` holds; false when none is left.
fn next_held(targets: &[Target], cursor: &mut usize, server: usize) -> bool {
    while let Some(target) = targets.get(*cursor) {
        if target.servers.contains(&server) {
            return true;
        }
        *cursor += 1;
    }
    false
}

/// Totals of a touch run.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct TouchTotals {
    pub blocks: u64,
    pub touched_copies: u64,
    pub failed_copies: u64,
    /// Listed blocks no destination server has.
    pub not_found: u64,
    /// Index slices whose blocks were all touched, of all the run walks.
    pub slices_done: u64,
    pub slices: u64,
    pub elapsed_s: f64,
}

impl TouchTotals {
    /// The totals are the run's counters (the ones `-listen` serves), read once.
    fn from_counters(counters: &Counters, elapsed: Duration) -> TouchTotals {
        let c = counters.snapshot();
        TouchTotals {
            blocks: c.planned_blocks,
            touched_copies: c.touched_copies,
            failed_copies: c.touch_failed_copies,
            not_found: c.touch_not_found_blocks,
            slices_done: c.slices_done,
            slices: c.slices_total,
            elapsed_s: elapsed.as_secs_f64(),
        }
    }
}

/// One `-report` line.
#[derive(Serialize)]
struct ReportLine<'a> {
    locator: &'a str,
    /// `touched`, `failed` (some server refused), or `not_found`.
    action: &'static str,
    server: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

/// Most failures printed as log lines; `-report` has them all.
const LOGGED_FAILURES: u64 = 1000;

struct Sink {
    report: Option<(PathBuf, BufWriter<std::fs::File>)>,
    /// The run's counts (the summary, `-json`, `-listen` and SIGUSR1 all read them).
    counters: Arc<Counters>,
    /// The status board: failures go to its last errors.
    board: StatusSink,
    uuids: Vec<String>,
    logged: u64,
    error: Option<TouchError>,
}

impl Sink {
    fn line(&mut self, line: &ReportLine) {
        if let (Some((path, out)), None) = (&mut self.report, &self.error) {
            let result = serde_json::to_writer(&mut *out, line)
                .map_err(std::io::Error::other)
                .and_then(|()| out.write_all(b"\n"));
            if let Err(source) = result {
                self.error = Some(TouchError::Output {
                    path: path.clone(),
                    source,
                });
            }
        }
    }

    /// A failure or a block not found: a log line (the first [`LOGGED_FAILURES`]) and the
    /// status board's last errors.
    fn problem(&mut self, text: String) {
        if self.logged < LOGGED_FAILURES {
            self.logged += 1;
            log_line(&text);
        }
        self.board.events(&[Event::Warning(text)], &self.counters);
    }

    fn touched(&mut self, t: Touched) {
        let short = t.id.short();
        let uuid = self.uuids.get(t.server).cloned().unwrap_or_default();
        match t.result {
            Ok(()) => {
                self.counters.touched_copies.fetch_add(1, Relaxed);
                self.line(&ReportLine {
                    locator: short.as_str(),
                    action: "touched",
                    server: Some(&uuid),
                    error: None,
                });
            }
            Err(cause) => {
                self.counters.touch_failed_copies.fetch_add(1, Relaxed);
                self.problem(format!("Error touching {short} on {uuid}: {cause}"));
                self.line(&ReportLine {
                    locator: short.as_str(),
                    action: "failed",
                    server: Some(&uuid),
                    error: Some(cause.to_string()),
                });
            }
        }
    }

    fn not_found(&mut self, w: &Wanted, why: &str) {
        self.counters.touch_not_found_blocks.fetch_add(1, Relaxed);
        let text = w.to_string();
        self.problem(format!("Not touched {text}: {why}"));
        self.line(&ReportLine {
            locator: &text,
            action: "not_found",
            server: None,
            error: Some(why.to_string()),
        });
    }
}

/// Runs `touch`.
pub fn run(args: TouchArgs) -> Result<Outcome, TouchError> {
    // The list is read, sorted and checked before any request: a malformed line touches
    // nothing.
    let select = args.select.load().map_err(TouchError::List)?;
    let settings = load_settings("dst", &args.dst)?;
    let api = ApiClient::new(&settings, args.io, args.http.clone())?;
    let dst = build_cluster(
        "dst",
        &settings,
        args.dst_keep_services_json.as_deref(),
        &api,
    )?
    .cluster;
    let factory = HttpFactory::new(args.http.clone(), &[&dst]);
    let (runtime, _) = build_runtime(args.io).map_err(TouchError::Runtime)?;
    let report = match &args.report {
        Some(path) => Some((
            path.clone(),
            BufWriter::new(
                std::fs::File::create(path).map_err(|source| TouchError::Output {
                    path: path.clone(),
                    source,
                })?,
            ),
        )),
        None => None,
    };
    let counters = Arc::new(Counters::default());
    let control = Arc::new(Control::new());
    let live = Live::new(
        JobInfo {
            command: "touch".to_string(),
            src_api_host: String::new(),
            dst_api_host: settings.api_host.clone(),
            concurrency: args.concurrency,
            workers: 1,
        },
        counters.clone(),
        control.clone(),
    );
    let listener = match &args.listen {
        Some(options) => Some(super::listen::start(options, live.clone())?),
        None => None,
    };
    // SIGUSR1 prints what `keepmover status` shows.
    let _signals =
        super::signals::install(control.clone(), super::rsync::status_printer(live.clone()));
    let mut board = live.board.sink();
    let mut sink = Sink {
        report,
        counters: counters.clone(),
        board: live.board.sink(),
        uuids: dst.uuids().iter().map(|u| u.to_string()).collect(),
        logged: 0,
        error: None,
    };
    let gates = Gates::new(0, dst.services.len(), args.per_server_requests);
    let steer = Steering {
        control: &control,
        counters: &counters,
        gates: &gates,
    };
    let started = Instant::now();
    // Ok(true): every slice walked and every copy in it touched; Ok(false): cut by a stop.
    let walk = async {
        let ks = factory.client();
        let base = &select.prefix;
        let extra = match args.prefix_length {
            0 => {
                let estimate = estimate_source_blocks(&ks, &dst, base).await?;
                choose_extra_digits(estimate, base.len(), 1_000_000)
            }
            n => n.saturating_sub(base.len()).min(8),
        };
        // The copy's slicing: a shard touches exactly the prefixes the copy's shard walks.
        let extra = select.shard.map_or(extra, |s| extra.max(s.digits()));
        let what = match &select.locators {
            Some(list) => format!("the blocks listed ({} lines)", list.entries),
            None => "every block".to_string(),
        };
        let mut narrowed = Vec::new();
        if !base.is_empty() {
            narrowed.push(format!("under prefix {base}"));
        }
        if let Some(shard) = select.shard {
            narrowed.push(format!("in shard {shard}"));
        }
        if !select.filter.text.is_empty() {
            narrowed.push(format!("whose copy has {}", select.filter.text));
        }
        log_line(&format!(
            "Touching {what}{}{} on {} destination servers",
            if narrowed.is_empty() { "" } else { " " },
            narrowed.join(", "),
            dst.services.len()
        ));
        let mut cursor = select
            .locators
            .as_ref()
            .map(|list| list.cursor())
            .transpose()
            .map_err(|e| TouchError::List(RsyncError::Locators(e.describe("the list"))))?;
        let slices = walk_prefixes(base, extra, select.shard);
        counters.slices_total.store(slices.len() as u64, Relaxed);
        board.events(&[Event::Phase(Phase::Copying)], &counters);
        for slice in slices {
            if control.is_stopping() {
                return Ok(false);
            }
            board.events(
                &[Event::SliceStarted {
                    prefix: slice.clone(),
                }],
                &counters,
            );
            let targets = match &mut cursor {
                Some(cursor) => {
                    let listed = cursor.take_prefix(&slice).map_err(|e| {
                        TouchError::List(RsyncError::Locators(format!(
                            "-locators: reading the sorted list: {e}"
                        )))
                    })?;
                    if listed.is_empty() {
                        counters.slices_done.fetch_add(1, Relaxed);
                        continue;
                    }
                    let (targets, missing) =
                        locator_targets(&ks, &dst, &slice, &listed, &select.filter).await?;
                    for (w, why) in &missing {
                        sink.not_found(w, why);
                    }
                    targets
                }
                None => slice_targets(&ks, &dst, &slice, &select.filter).await?,
            };
            // Blocks listed after a stop are neither touched nor counted.
            if control.is_stopping() {
                return Ok(false);
            }
            counters
                .planned_blocks
                .fetch_add(targets.len() as u64, Relaxed);
            let end = touch_targets(
                &ks,
                &dst,
                &targets,
                args.concurrency,
                args.retry,
                &steer,
                |t| sink.touched(t),
            )
            .await;
            if end == TouchEnd::Cut {
                return Ok(false);
            }
            counters.slices_done.fetch_add(1, Relaxed);
        }
        Ok::<bool, TouchError>(true)
    };
    // A hard stop (a second signal) drops the walk wherever it is: listing a slice, probing
    // a listed block, or waiting for TOUCH replies.
    let hard_stop = async {
        while !control.is_stopped_now() {
            compio::time::sleep(STEER_POLL).await;
        }
    };
    let walked = runtime.block_on(async {
        match futures_util::future::select(std::pin::pin!(walk), std::pin::pin!(hard_stop)).await {
            Either::Left((walked, _)) => walked,
            Either::Right(((), _)) => Ok(false),
        }
    });
    board.events(&[Event::Phase(Phase::Done)], &counters);
    board.finish(&counters);
    let complete = walked?;
    if let Some((path, out)) = &mut sink.report {
        out.flush().map_err(|source| TouchError::Output {
            path: path.clone(),
            source,
        })?;
    }
    if let Some(e) = sink.error.take() {
        return Err(e);
    }
    let totals = TouchTotals::from_counters(&counters, started.elapsed());
    // A stop that came after the last TOUCH cut nothing short.
    let stopped = if complete {
        None
    } else {
        control.stop_reason()
    };
    if let Some(reason) = stopped {
        log_line(&format!(
            "Stopped ({}) before every block was touched; a rerun touches them all again (touching is idempotent).",
            reason.name()
        ));
    }
    log_line(&format!(
        "Summary: touched {} copies of {} blocks, {} failed, {} listed blocks not found; {:.1}s, {:.0} touches/s",
        totals.touched_copies,
        totals.blocks,
        totals.failed_copies,
        totals.not_found,
        totals.elapsed_s,
        totals.touched_copies as f64 / totals.elapsed_s.max(1e-9)
    ));
    let outcome = Outcome {
        stopped,
        problems: totals.failed_copies + totals.not_found,
    };
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&serde_json::json!({
            "keepmover_version": env!("CARGO_PKG_VERSION"),
            "command": "touch",
            "outcome": stopped.map_or("done", |r| r.name()),
            "exit_code": outcome.code(),
            "totals": totals,
        }))
        .map_err(|e| TouchError::Output {
            path: path.clone(),
            source: std::io::Error::other(e),
        })?;
        std::fs::write(path, text + "\n").map_err(|source| TouchError::Output {
            path: path.clone(),
            source,
        })?;
    }
    if let (Some(listener), Some(options)) = (&listener, &args.listen) {
        listener.linger(options.linger);
    }
    Ok(outcome)
}

/// Default retry policy for TOUCH requests (the copy's).
pub fn default_retry() -> RetryPolicy {
    RetryPolicy {
        retries: 2,
        delay: Duration::from_secs(2),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::locators::parse_line;
    use crate::keep::BlockHash;
    use crate::keepstore::memory::{self, MemoryKeepstores};
    use crate::net::build_runtime;

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        let (runtime, _) = build_runtime(IoBackend::Auto).expect("runtime");
        runtime.block_on(f)
    }

    #[test]
    fn touches_every_server_listing_the_block_and_reports_the_rest() {
        let ks = MemoryKeepstores::new();
        let dst = memory::cluster("dst", "bbbbb", 3);
        let a = ks.put(&dst, 0, b"alpha", 10);
        ks.put(&dst, 2, b"alpha", 10);
        let b = ks.put(&dst, 1, b"beta", 10);
        let absent = BlockHash(crate::hash::md5(b"gamma"));
        let line = |text: String| parse_line(&text).expect("a list line");
        let mut wanted = vec![
            line(a.hash.to_string()),
            line(format!("{}+999", b.hash)),
            line(absent.to_string()),
        ];
        wanted.sort();
        let all = BlockFilter::default();
        let (targets, missing) =
            block_on(locator_targets(&ks, &dst, "", &wanted, &all)).expect("listings");
        assert_eq!(
            targets,
            vec![Target {
                id: a,
                servers: vec![0, 2]
            }]
        );
        assert_eq!(missing.len(), 2);
        assert!(missing[0].1.contains("only as") || missing[1].1.contains("only as"));
        let retry = RetryPolicy {
            retries: 1,
            delay: Duration::from_millis(1),
        };
        let mut results = Vec::new();
        let (control, counters) = (Control::new(), Counters::default());
        let steer = Steering {
            control: &control,
            counters: &counters,
            gates: &Gates::new(0, 3, 64),
        };
        let end = block_on(touch_targets(&ks, &dst, &targets, 4, retry, &steer, |t| {
            results.push((t.server, t.result.is_ok()))
        }));
        assert_eq!(end, TouchEnd::Finished);
        results.sort_unstable();
        assert_eq!(results, vec![(0, true), (2, true)]);
        // Each TOUCH is in the latencies, by server.
        let touches: Vec<(String, u64)> = counters
            .latencies()
            .into_iter()
            .filter(|((op, _), _)| *op == Op::Touch)
            .map(|((_, server), h)| (server, h.count))
            .collect();
        assert_eq!(touches.len(), 2, "{touches:?}");
        assert!(touches.iter().all(|(_, n)| *n == 1), "{touches:?}");
        for server in [0, 2] {
            let mtime = ks.with(&dst, server, |s| s.blocks[&a.hash].mtime_ns);
            assert_eq!(mtime, 11, "touched once on {server}");
        }
        assert_eq!(ks.with(&dst, 1, |s| s.blocks[&b.hash].mtime_ns), 10);
    }

    /// Ten blocks, each on both servers of a two-server cluster: twenty TOUCH requests.
    fn twenty_touches() -> (MemoryKeepstores, Cluster, Vec<Target>) {
        let ks = MemoryKeepstores::new();
        let dst = memory::cluster("dst", "bbbbb", 2);
        let mut targets = Vec::new();
        for n in 0..10u8 {
            let id = ks.put(&dst, 0, &[n], 1);
            ks.put(&dst, 1, &[n], 1);
            targets.push(Target {
                id,
                servers: vec![0, 1],
            });
        }
        (ks, dst, targets)
    }

    #[test]
    fn a_stop_starts_no_new_touch_and_a_pause_waits() {
        let (ks, dst, targets) = twenty_touches();
        let retry = default_retry();
        let counters = Counters::default();
        // Stopped before the start: nothing is sent.
        let stopped = Control::new();
        stopped.stop(crate::mover::StopReason::Terminated);
        let mut seen = 0;
        let steer = Steering {
            control: &stopped,
            counters: &counters,
            gates: &Gates::new(0, 2, 64),
        };
        let end = block_on(touch_targets(&ks, &dst, &targets, 4, retry, &steer, |_| {
            seen += 1
        }));
        assert_eq!((end, seen), (TouchEnd::Cut, 0));
        assert_eq!(
            ks.with(&dst, 0, |s| s.blocks.values().map(|b| b.mtime_ns).max()),
            Some(1)
        );
        // One at a time, a stop after the n-th reply: (how it ended, replies seen).
        let stop_after = |n: usize| {
            let control = Control::new();
            let steer = Steering {
                control: &control,
                counters: &counters,
                gates: &Gates::new(0, 2, 64),
            };
            let mut seen = 0;
            let end = block_on(touch_targets(&ks, &dst, &targets, 1, retry, &steer, |_| {
                seen += 1;
                if seen == n {
                    control.stop(crate::mover::StopReason::Interrupted);
                }
            }));
            (end, seen)
        };
        // After the third: exactly three were sent.
        assert_eq!(stop_after(3), (TouchEnd::Cut, 3));
        // After the last: it cut nothing short.
        assert_eq!(stop_after(20), (TouchEnd::Finished, 20));
        // Paused, with the pause lifted from another thread: every touch is sent after it.
        let control = Arc::new(Control::new());
        control.pause();
        let began = Instant::now();
        let resumer = {
            let control = control.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(200));
                control.resume();
            })
        };
        let steer = Steering {
            control: &control,
            counters: &counters,
            gates: &Gates::new(0, 2, 64),
        };
        let mut first = None;
        let mut seen = 0;
        let end = block_on(touch_targets(&ks, &dst, &targets, 4, retry, &steer, |_| {
            first.get_or_insert_with(|| began.elapsed());
            seen += 1;
        }));
        resumer.join().expect("resumer");
        assert_eq!((end, seen), (TouchEnd::Finished, 20));
        assert!(
            first.is_some_and(|t| t >= Duration::from_millis(200)),
            "a touch was sent while paused: {first:?}"
        );
    }

    #[test]
    fn an_overloaded_keepstore_gets_fewer_touches_at_once() {
        let (ks, dst, targets) = twenty_touches();
        ks.script(&dst, 0, &[memory::Scripted::Status(503, "busy".into())]);
        let (control, counters) = (Control::new(), Counters::default());
        let gates = Gates::new(0, 2, 8);
        let steer = Steering {
            control: &control,
            counters: &counters,
            gates: &gates,
        };
        let retry = RetryPolicy {
            retries: 1,
            delay: Duration::from_millis(1),
        };
        let mut failed = 0;
        let end = block_on(touch_targets(
            &ks,
            &dst,
            &targets[..1],
            8,
            retry,
            &steer,
            |t| failed += u32::from(t.result.is_err()),
        ));
        // The 503 was retried, and server 0's allowance halved (8 -> 4, then 4.25 after the
        // retry's success); server 1's grew back to its cap.
        assert_eq!((end, failed), (TouchEnd::Finished, 0));
        assert_eq!(gates.limit(Key::Dst(0)), 4);
        assert_eq!(gates.limit(Key::Dst(1)), 8);
        assert_eq!(counters.snapshot().retried_errors, 1);
    }

    #[test]
    fn a_touch_starts_only_when_its_servers_gate_has_room() {
        let (ks, dst, targets) = twenty_touches();
        let (control, counters) = (Control::new(), Counters::default());
        // One at a time per server, two servers: never more than two in flight, whatever
        // -concurrency says.
        let gates = Gates::new(0, 2, 1);
        let steer = Steering {
            control: &control,
            counters: &counters,
            gates: &gates,
        };
        let (mut seen, mut most_others) = (0, 0);
        let end = block_on(touch_targets(
            &ks,
            &dst,
            &targets,
            8,
            default_retry(),
            &steer,
            |_| {
                seen += 1;
                // The one that ended is counted out already: what is left is the others.
                most_others = most_others.max(counters.in_flight_blocks.load(Relaxed));
            },
        ));
        assert_eq!((end, seen), (TouchEnd::Finished, 20));
        assert!(most_others <= 1, "{most_others} others in flight");
        // Every server's copies were touched.
        for server in 0..2 {
            let renewed = ks.with(&dst, server, |s| s.blocks.values().all(|b| b.mtime_ns == 2));
            assert!(renewed, "server {server}");
        }
    }

    #[test]
    fn a_prefix_slice_lists_once_per_server() {
        let ks = MemoryKeepstores::new();
        let dst = memory::cluster("dst", "bbbbb", 2);
        let a = ks.put(&dst, 0, b"one", 1);
        ks.put(&dst, 1, b"one", 1);
        ks.put(&dst, 1, b"two", 1);
        let targets =
            block_on(slice_targets(&ks, &dst, "", &BlockFilter::default())).expect("listing");
        assert_eq!(targets.len(), 2);
        let one = targets.iter().find(|t| t.id == a).expect("one");
        assert_eq!(one.servers, vec![0, 1]);
        let reads: u64 = (0..2).map(|s| ks.with(&dst, s, |m| m.index_reads)).sum();
        assert_eq!(reads, 2);
    }
}
