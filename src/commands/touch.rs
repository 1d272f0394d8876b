//! `keepmover touch -dst B [-locators FILE | -prefix P | -all]`: renews the mtime of
//! destination blocks with keepstore's `TOUCH /<hash+size>`, on every destination server
//! whose index lists the block, so that an operator can hold off the destination's garbage
//! collection (which trashes unreferenced blocks older than `BlobSigningTTL`) while the
//! database move is pending. Touching is idempotent and writes no data.
//!
//! Which servers hold a block comes from their indexes: slice by slice for `-prefix` and
//! `-all` (memory bounded by one slice, as in the copy), and for a `-locators` list either
//! the slice holding many of the listed blocks or one `index/<hash>` probe per block. Many
//! TOUCH requests are in flight at once, each retried by keepclient's rules.

use std::collections::BTreeMap;
use std::io::{BufRead, BufWriter, Write as _};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use futures_util::stream::{FuturesUnordered, StreamExt};
use serde::Serialize;

use super::setup::{build_cluster, load_settings, ApiClient, SetupError};
use crate::cluster::Cluster;
use crate::exit::Outcome;
use crate::index::merge::{choose_extra_digits, prefixes};
use crate::index::walk::{estimate_source_blocks, WalkError, MAX_SLICE_ENTRIES};
use crate::keep::{BlockHash, BlockId};
use crate::keepstore::http::HttpFactory;
use crate::keepstore::{Cause, IndexSource, Keepstores, KeepstoresFactory};
use crate::mover::retry::{next_for, RetryPolicy, Rounds};
use crate::net::{build_runtime, ClientConfig, IoBackend};
use crate::report::log_line;

/// Where `-locators` reads from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LocatorInput {
    File(PathBuf),
    /// `-locators -`.
    Stdin,
}

/// Which blocks to touch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Selection {
    /// The blocks a list names (filtered by `-prefix` when both are given).
    Locators { input: LocatorInput, prefix: String },
    /// Every block under a prefix (`-all` is the empty prefix).
    Prefix(String),
}

/// Every option of `touch`, typed. Built by `cli`.
#[derive(Clone, Debug)]
pub struct TouchArgs {
    pub dst: String,
    pub dst_keep_services_json: Option<String>,
    pub selection: Selection,
    pub io: IoBackend,
    pub http: ClientConfig,
    /// TOUCH requests in flight at once.
    pub concurrency: usize,
    pub retry: RetryPolicy,
    /// Hex digits per index slice (0 = chosen from the block count).
    pub prefix_length: usize,
    pub report: Option<PathBuf>,
    pub json: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum TouchError {
    #[error(transparent)]
    Setup(#[from] SetupError),
    #[error("{source_name} line {line}: {text:?} is not a block hash or hash+size")]
    BadLine {
        source_name: String,
        line: usize,
        text: String,
    },
    #[error("reading {source_name}: {source}")]
    Read {
        source_name: String,
        source: std::io::Error,
    },
    #[error("Error while touching: {0}")]
    Walk(Box<WalkError>),
    #[error("starting the I/O runtime: {0}")]
    Runtime(std::io::Error),
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

/// One requested block: its hash, and its size when the line gave one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Wanted {
    pub hash: BlockHash,
    pub size: Option<u64>,
}

impl Wanted {
    fn text(&self) -> String {
        match self.size {
            Some(size) => format!("{}+{size}", self.hash),
            None => self.hash.to_string(),
        }
    }
}

/// Parses a locator list: one `hash` or `hash+size` per line (surrounding blanks and empty
/// lines ignored); the first malformed line is an error naming it. Sorted, deduplicated.
pub fn parse_locators(text: &str, source_name: &str) -> Result<Vec<Wanted>, TouchError> {
    let mut out = Vec::new();
    for (index, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() {
            continue;
        }
        let bad = || TouchError::BadLine {
            source_name: source_name.to_string(),
            line: index + 1,
            text: line.chars().take(80).collect(),
        };
        let (hash_text, size_text) = match line.split_once('+') {
            Some((h, s)) => (h, Some(s)),
            None => (line, None),
        };
        if hash_text.len() != 32
            || !hash_text
                .bytes()
                .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        {
            return Err(bad());
        }
        let hash = BlockHash::from_hex(hash_text).map_err(|_| bad())?;
        let size = match size_text {
            None => None,
            Some(s) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) && s.len() <= 20 => {
                Some(s.parse::<u64>().map_err(|_| bad())?)
            }
            Some(_) => return Err(bad()),
        };
        out.push(Wanted { hash, size });
    }
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

/// A block to touch, and the destination servers whose index lists it.
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

/// Lists `prefix` on every server and returns each `hash+size` with the servers listing it.
pub async fn slice_targets<K: Keepstores>(
    ks: &K,
    dst: &Cluster,
    prefix: &str,
) -> Result<Vec<Target>, WalkError> {
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
    let mut by_block: BTreeMap<BlockId, Vec<usize>> = BTreeMap::new();
    for result in join_all(lists).await {
        let (server, entries) = result?;
        for e in entries {
            let servers = by_block.entry(BlockId::new(e.hash, e.size)).or_default();
            if !servers.contains(&server) {
                servers.push(server);
            }
        }
    }
    Ok(by_block
        .into_iter()
        .map(|(id, servers)| Target { id, servers })
        .collect())
}

/// Listed blocks in one slice at least this many: list the slice rather than probe each.
const LIST_SLICE_AT: usize = 64;

/// The targets for a locator list, and the listed blocks no server has (with why).
pub async fn locator_targets<K: Keepstores>(
    ks: &K,
    dst: &Cluster,
    wanted: &[Wanted],
    extra_digits: usize,
) -> Result<(Vec<Target>, Vec<(Wanted, String)>), WalkError> {
    let mut targets = Vec::new();
    let mut not_found = Vec::new();
    let mut groups: BTreeMap<String, Vec<Wanted>> = BTreeMap::new();
    for w in wanted {
        let hex = w.hash.to_string();
        groups
            .entry(hex[..extra_digits.min(32)].to_string())
            .or_default()
            .push(*w);
    }
    for (slice, group) in groups {
        let listed: Vec<Target> = if group.len() >= LIST_SLICE_AT {
            slice_targets(ks, dst, &slice).await?
        } else {
            let mut all = Vec::new();
            for w in &group {
                all.extend(slice_targets(ks, dst, &w.hash.to_string()).await?);
            }
            all
        };
        for w in group {
            let same_hash: Vec<&Target> = listed.iter().filter(|t| t.id.hash == w.hash).collect();
            let matching: Vec<&Target> = same_hash
                .iter()
                .copied()
                .filter(|t| w.size.is_none_or(|s| s == t.id.size))
                .collect();
            if matching.is_empty() {
                let why = match same_hash.first() {
                    Some(t) => format!("the destination lists it only as {}", t.id.short()),
                    None => "no destination server lists it".to_string(),
                };
                not_found.push((w, why));
            }
            targets.extend(matching.into_iter().cloned());
        }
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

/// Sends TOUCH for every (target, server), `concurrency` at a time, each in keepclient's
/// retry rounds; `done` sees every result as it comes.
pub async fn touch_targets<K: Keepstores>(
    ks: &K,
    dst: &Cluster,
    targets: &[Target],
    concurrency: usize,
    retry: RetryPolicy,
    mut done: impl FnMut(Touched),
) {
    let jobs = targets
        .iter()
        .flat_map(|t| t.servers.iter().map(move |&s| (t.id, s)));
    let mut jobs = jobs;
    let mut in_flight = FuturesUnordered::new();
    loop {
        while in_flight.len() < concurrency.max(1) {
            let Some((id, server)) = jobs.next() else {
                break;
            };
            in_flight.push(async move {
                let short = id.short();
                let mut rounds = Rounds::new(retry, vec![server]);
                let mut last = Ok(());
                while let Some(order) = rounds.next().await {
                    for s in order {
                        last = ks.touch(dst, s, short.as_str()).await;
                        if let Err(cause) = &last {
                            rounds.mark(s, next_for(cause));
                        }
                    }
                    if last.is_ok() {
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
        match in_flight.next().await {
            Some(touched) => done(touched),
            None => break,
        }
    }
}

/// Totals of a touch run.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct TouchTotals {
    pub blocks: u64,
    pub touched_copies: u64,
    pub failed_copies: u64,
    /// Listed blocks no destination server has.
    pub not_found: u64,
    pub elapsed_s: f64,
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
    uuids: Vec<String>,
    totals: TouchTotals,
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

    fn touched(&mut self, t: Touched) {
        let short = t.id.short();
        let uuid = self.uuids.get(t.server).cloned().unwrap_or_default();
        match t.result {
            Ok(()) => {
                self.totals.touched_copies += 1;
                self.line(&ReportLine {
                    locator: short.as_str(),
                    action: "touched",
                    server: Some(&uuid),
                    error: None,
                });
            }
            Err(cause) => {
                self.totals.failed_copies += 1;
                if self.logged < LOGGED_FAILURES {
                    self.logged += 1;
                    log_line(&format!("Error touching {short} on {uuid}: {cause}"));
                }
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
        self.totals.not_found += 1;
        let text = w.text();
        if self.logged < LOGGED_FAILURES {
            self.logged += 1;
            log_line(&format!("Not touched {text}: {why}"));
        }
        self.line(&ReportLine {
            locator: &text,
            action: "not_found",
            server: None,
            error: Some(why.to_string()),
        });
    }
}

fn read_input(input: &LocatorInput) -> Result<(String, String), TouchError> {
    match input {
        LocatorInput::Stdin => {
            let mut text = String::new();
            for line in std::io::stdin().lock().lines() {
                let line = line.map_err(|source| TouchError::Read {
                    source_name: "standard input".into(),
                    source,
                })?;
                text.push_str(&line);
                text.push('\n');
            }
            Ok(("standard input".to_string(), text))
        }
        LocatorInput::File(path) => {
            let name = path.display().to_string();
            std::fs::read_to_string(path)
                .map(|text| (name.clone(), text))
                .map_err(|source| TouchError::Read {
                    source_name: name,
                    source,
                })
        }
    }
}

/// Runs `touch`.
pub fn run(args: TouchArgs) -> Result<Outcome, TouchError> {
    // The list is checked before any request: a malformed line touches nothing.
    let listed = match &args.selection {
        Selection::Locators { input, prefix } => {
            let (name, text) = read_input(input)?;
            let all = parse_locators(&text, &name)?;
            Some(
                all.into_iter()
                    .filter(|w| w.hash.to_string().starts_with(prefix.as_str()))
                    .collect::<Vec<_>>(),
            )
        }
        Selection::Prefix(_) => None,
    };
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
    let mut sink = Sink {
        report,
        uuids: dst.uuids().iter().map(|u| u.to_string()).collect(),
        totals: TouchTotals::default(),
        logged: 0,
        error: None,
    };
    let started = Instant::now();
    runtime.block_on(async {
        let ks = factory.client();
        let base = match &args.selection {
            Selection::Prefix(p) => p.clone(),
            Selection::Locators { prefix, .. } => prefix.clone(),
        };
        let extra = match args.prefix_length {
            0 => {
                let estimate = estimate_source_blocks(&ks, &dst, &base).await?;
                choose_extra_digits(estimate, base.len(), 1_000_000)
            }
            n => n.saturating_sub(base.len()).min(8),
        };
        match &listed {
            Some(wanted) => {
                log_line(&format!(
                    "Touching {} listed blocks on {} destination servers",
                    wanted.len(),
                    dst.services.len()
                ));
                let (targets, missing) =
                    locator_targets(&ks, &dst, wanted, base.len() + extra).await?;
                for (w, why) in &missing {
                    sink.not_found(w, why);
                }
                sink.totals.blocks = targets.len() as u64;
                touch_targets(&ks, &dst, &targets, args.concurrency, args.retry, |t| {
                    sink.touched(t)
                })
                .await;
            }
            None => {
                log_line(&format!(
                    "Touching every block{} on {} destination servers",
                    if base.is_empty() {
                        String::new()
                    } else {
                        format!(" under prefix {base}")
                    },
                    dst.services.len()
                ));
                for slice in prefixes(&base, extra) {
                    let targets = slice_targets(&ks, &dst, &slice).await?;
                    sink.totals.blocks += targets.len() as u64;
                    touch_targets(&ks, &dst, &targets, args.concurrency, args.retry, |t| {
                        sink.touched(t)
                    })
                    .await;
                }
            }
        }
        Ok::<(), TouchError>(())
    })?;
    if let Some((path, out)) = &mut sink.report {
        out.flush().map_err(|source| TouchError::Output {
            path: path.clone(),
            source,
        })?;
    }
    if let Some(e) = sink.error.take() {
        return Err(e);
    }
    let totals = TouchTotals {
        elapsed_s: started.elapsed().as_secs_f64(),
        ..sink.totals
    };
    log_line(&format!(
        "Summary: touched {} copies of {} blocks, {} failed, {} listed blocks not found; {:.1}s, {:.0} touches/s",
        totals.touched_copies,
        totals.blocks,
        totals.failed_copies,
        totals.not_found,
        totals.elapsed_s,
        totals.touched_copies as f64 / totals.elapsed_s.max(1e-9)
    ));
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&serde_json::json!({
            "keepmover_version": env!("CARGO_PKG_VERSION"),
            "command": "touch",
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
    Ok(Outcome {
        stopped: None,
        problems: totals.failed_copies + totals.not_found,
    })
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
    use crate::keepstore::memory::{self, MemoryKeepstores};
    use crate::net::build_runtime;

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        let (runtime, _) = build_runtime(IoBackend::Auto).expect("runtime");
        runtime.block_on(f)
    }

    #[test]
    fn a_malformed_line_is_named() {
        let hash = "acbd18db4cc2f85cedef654fccc4a4d8";
        let text = format!("{hash}\n\n  {hash}+3  \n37b51d194a7513e45b56f6524f2d51f2+3\n");
        let parsed = parse_locators(&text, "list").expect("valid");
        assert_eq!(parsed.len(), 3, "{parsed:?}");
        for (bad, line) in [
            (format!("{hash}\nnot-a-hash\n"), 2),
            (format!("{hash}+3+A0000@1\n"), 1),
            (format!("{}\n", hash.to_uppercase()), 1),
            (format!("\n\n{hash}+\n"), 3),
            (format!("{hash}x\n"), 1),
        ] {
            match parse_locators(&bad, "list") {
                Err(TouchError::BadLine { line: got, .. }) => assert_eq!(got, line, "{bad}"),
                other => panic!("{bad}: {other:?}"),
            }
        }
        let err = parse_locators("zzz\n", "locators.txt").expect_err("bad");
        assert_eq!(
            err.to_string(),
            "locators.txt line 1: \"zzz\" is not a block hash or hash+size"
        );
    }

    #[test]
    fn touches_every_server_listing_the_block_and_reports_the_rest() {
        let ks = MemoryKeepstores::new();
        let dst = memory::cluster("dst", "bbbbb", 3);
        let a = ks.put(&dst, 0, b"alpha", 10);
        ks.put(&dst, 2, b"alpha", 10);
        let b = ks.put(&dst, 1, b"beta", 10);
        let absent = BlockHash(crate::hash::md5(b"gamma"));
        let wanted = vec![
            Wanted {
                hash: a.hash,
                size: None,
            },
            Wanted {
                hash: b.hash,
                size: Some(999),
            },
            Wanted {
                hash: absent,
                size: None,
            },
        ];
        let (targets, missing) =
            block_on(locator_targets(&ks, &dst, &wanted, 0)).expect("listings");
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
        block_on(touch_targets(&ks, &dst, &targets, 4, retry, |t| {
            results.push((t.server, t.result.is_ok()))
        }));
        results.sort_unstable();
        assert_eq!(results, vec![(0, true), (2, true)]);
        for server in [0, 2] {
            let mtime = ks.with(&dst, server, |s| s.blocks[&a.hash].mtime_ns);
            assert_eq!(mtime, 11, "touched once on {server}");
        }
        assert_eq!(ks.with(&dst, 1, |s| s.blocks[&b.hash].mtime_ns), 10);
    }

    #[test]
    fn a_prefix_slice_lists_once_per_server() {
        let ks = MemoryKeepstores::new();
        let dst = memory::cluster("dst", "bbbbb", 2);
        let a = ks.put(&dst, 0, b"one", 1);
        ks.put(&dst, 1, b"one", 1);
        ks.put(&dst, 1, b"two", 1);
        let targets = block_on(slice_targets(&ks, &dst, "")).expect("listing");
        assert_eq!(targets.len(), 2);
        let one = targets.iter().find(|t| t.id == a).expect("one");
        assert_eq!(one.servers, vec![0, 1]);
        let reads: u64 = (0..2).map(|s| ks.with(&dst, s, |m| m.index_reads)).sum();
        assert_eq!(reads, 2);
    }
}
