//! The safety checks before a migration: `keepmover preflight` (same flags as the copy), and
//! the same checks before every copy (`-preflight`, on by default), which refuses to start
//! only on errors. Each check says what it saw:
//!
//! * clusters: the source and the destination are not the same cluster (same API host,
//!   shared keep service uuids or addresses) — an error for copy, validate and preflight,
//!   checked in `rsync::prepare` whatever `-preflight` says;
//! * source: the token reads every server's index (a 401/403 is an error: indexes need the
//!   SystemRootToken), and the signing key works — one HEAD of a block taken from the index,
//!   signed exactly as the copy signs, must succeed; keepstore answers a wrong key or TTL
//!   with `400 invalid signature`;
//! * destination: every server's `GET /mounts` (writable mounts, storage classes, read-only
//!   services), and whether the wanted replicas and classes fit on what is writable;
//! * garbage collection (a warning, always): copied blocks are unreferenced on the
//!   destination until its database holds the collections; a destination keep-balance with
//!   trash on removes them once older than `Collections.BlobSigningTTL`.
//!
//! The checks over keepstores are written against the [`Keepstores`] trait and unit-tested
//! over the in-memory fake; the clock and the config document are parameters.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::cluster::Cluster;
use crate::gocompat::duration::{format_go_duration, parse_go_duration};
use crate::index::layout::{self, Layout, ServerMounts};
use crate::index::walk::MAX_SLICE_ENTRIES;
use crate::keep::index_format::IndexEntry;
use crate::keep::BlockId;
use crate::keepstore::http::HttpFactory;
use crate::keepstore::{Cause, IndexSource, Keepstores, KeepstoresFactory};
use crate::mover::transfer::source_locator;
use crate::mover::Signing;
use crate::net::{build_runtime, IoBackend};
use crate::report::log_line;

use super::rsync::Prepared;

/// How serious a check's result is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Ok,
    Warning,
    Error,
}

/// One check's result.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Check {
    pub severity: Severity,
    /// `clusters`, `source`, `destination` or `garbage collection`.
    pub subject: &'static str,
    pub text: String,
}

impl Check {
    fn new(severity: Severity, subject: &'static str, text: impl Into<String>) -> Check {
        Check {
            severity,
            subject,
            text: text.into(),
        }
    }
}

/// Every check's result, in the order they ran.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Preflight {
    pub checks: Vec<Check>,
}

impl Preflight {
    pub fn errors(&self) -> usize {
        self.count(Severity::Error)
    }

    pub fn warnings(&self) -> usize {
        self.count(Severity::Warning)
    }

    fn count(&self, severity: Severity) -> usize {
        self.checks
            .iter()
            .filter(|c| c.severity == severity)
            .count()
    }

    /// One log line per check, then a verdict line.
    pub fn print(&self) {
        for check in &self.checks {
            let tag = match check.severity {
                Severity::Ok => "ok",
                Severity::Warning => "WARNING",
                Severity::Error => "ERROR",
            };
            log_line(&format!(
                "preflight {tag}: {}: {}",
                check.subject, check.text
            ));
        }
        log_line(&format!(
            "preflight: {} errors, {} warnings",
            self.errors(),
            self.warnings()
        ));
    }

    pub fn write_json(&self, path: &std::path::Path) -> std::io::Result<()> {
        let text = serde_json::to_string_pretty(self).map_err(std::io::Error::other)?;
        std::fs::write(path, text + "\n")
    }
}

/// `host:port` as a URL would have it, lower-cased, with the https default port.
fn normal_host(host: &str) -> String {
    let host = host.trim().trim_end_matches('/').to_ascii_lowercase();
    let has_port = match host.strip_prefix('[') {
        Some(rest) => rest.contains("]:"),
        None => host.matches(':').count() == 1,
    };
    if has_port || host.is_empty() {
        host
    } else {
        format!("{host}:443")
    }
}

/// Why the source and the destination are the same cluster, if they are: the same API host
/// (unless both sides' services were given explicitly, e.g. moving between the keepstores
/// of one cluster, where the service lists decide), a keep service uuid on both sides, or a
/// keep service address on both sides.
pub fn same_cluster(
    src_api_host: &str,
    dst_api_host: &str,
    src: &Cluster,
    dst: &Cluster,
    explicit_services: bool,
) -> Option<String> {
    if let Some(s) = src
        .services
        .iter()
        .find(|a| dst.services.iter().any(|b| a.origin == b.origin))
    {
        return Some(format!("keep service {} is on both sides", s.origin));
    }
    if let Some(s) = src
        .services
        .iter()
        .find(|a| dst.services.iter().any(|b| a.uuid == b.uuid))
    {
        return Some(format!(
            "keep service uuid {} is on both sides (with other addresses)",
            s.uuid
        ));
    }
    let (a, b) = (normal_host(src_api_host), normal_host(dst_api_host));
    if !explicit_services && !a.is_empty() && a == b {
        return Some(format!(
            "both settings files name API host {a} (to move blocks between the keepstores of one cluster, give both -src-keep-services-json and -dst-keep-services-json)"
        ));
    }
    None
}

/// Prefixes tried, longest first, to find one source block cheaply: `P000` (1/4096 of the
/// hash space), `P00`, `P0`, then `P` itself (only reached when the cluster is tiny).
fn probe_prefixes(prefix: &str) -> Vec<String> {
    let mut out: Vec<String> = ["000", "00", "0", ""]
        .iter()
        .map(|tail| format!("{prefix}{tail}"))
        .filter(|p| p.len() <= 32)
        .collect();
    out.dedup();
    out
}

async fn list<K: Keepstores>(
    ks: &K,
    cluster: &Cluster,
    server: usize,
    prefix: &str,
) -> Result<Vec<IndexEntry>, Cause> {
    let mut entries = Vec::new();
    ks.index(
        cluster,
        server,
        IndexSource::Server,
        prefix,
        MAX_SLICE_ENTRIES,
        &mut entries,
    )
    .await?;
    Ok(entries)
}

fn is_denied(cause: &Cause) -> bool {
    matches!(
        cause,
        Cause::Status {
            status: 401 | 403,
            ..
        }
    )
}

/// The source checks: the token reads every server's index; a signed HEAD of one listed
/// block succeeds.
pub async fn check_source<K: Keepstores>(
    ks: &K,
    src: &Cluster,
    signing: Option<&Signing>,
    prefix: &str,
) -> Vec<Check> {
    let mut checks = Vec::new();
    let probes = probe_prefixes(prefix);
    let first = probes.first().cloned().unwrap_or_default();
    let answers =
        futures_util::future::join_all((0..src.services.len()).map(|i| list(ks, src, i, &first)))
            .await;
    let mut readable = Vec::new();
    let mut found: Option<(usize, BlockId)> = None;
    for (server, answer) in answers.into_iter().enumerate() {
        let origin = &src.services[server].origin;
        match answer {
            Ok(entries) => {
                readable.push(server);
                if found.is_none() {
                    found = entries
                        .first()
                        .map(|e| (server, BlockId::new(e.hash, e.size)));
                }
            }
            Err(cause) if is_denied(&cause) => checks.push(Check::new(
                Severity::Error,
                "source",
                format!("the token cannot read the index of {origin} ({cause}): ARVADOS_API_TOKEN in the source settings must be the source's SystemRootToken"),
            )),
            Err(cause) => checks.push(Check::new(
                Severity::Warning,
                "source",
                format!("the index of {origin} could not be read ({cause}); the run stops if it still fails"),
            )),
        }
    }
    if readable.len() == src.services.len() {
        checks.push(Check::new(
            Severity::Ok,
            "source",
            format!(
                "the token reads the index of all {} servers",
                src.services.len()
            ),
        ));
    }
    for probe in probes.iter().skip(1) {
        if found.is_some() {
            break;
        }
        for &server in &readable {
            if let Ok(entries) = list(ks, src, server, probe).await {
                if let Some(e) = entries.first() {
                    found = Some((server, BlockId::new(e.hash, e.size)));
                    break;
                }
            }
        }
    }
    let Some((server, id)) = found else {
        if !readable.is_empty() {
            checks.push(Check::new(
                Severity::Warning,
                "source",
                format!("no block under prefix {prefix:?} to test the signing key with"),
            ));
        }
        return checks;
    };
    let short = id.short();
    let origin = &src.services[server].origin;
    let locator = source_locator(src, signing, &short);
    let how = if signing.is_some() {
        "signed with the source settings' ARVADOS_BLOB_SIGNING_KEY"
    } else {
        "without a signature (the source settings have no ARVADOS_BLOB_SIGNING_KEY)"
    };
    // A HEAD reply carries no text: for a well-formed locator taken from an index, keepstore
    // answers 400 only for an invalid signature and 401 for an expired one (or no token).
    let check = match ks.head_block(src, server, &locator).await {
        Ok(()) if signing.is_some() => Check::new(
            Severity::Ok,
            "source",
            format!("the signing key works: a HEAD of {short} {how} succeeded on {origin}"),
        ),
        Ok(()) => Check::new(
            Severity::Ok,
            "source",
            format!("the source does not enforce permission signatures: a HEAD of {short} {how} succeeded on {origin}"),
        ),
        Err(Cause::Status { status: 400, .. }) if signing.is_some() => Check::new(
            Severity::Error,
            "source",
            format!(
                "a HEAD of {short} {how} was refused by {origin} with 400 invalid signature: the key, or the signature TTL ({} from -src-blob-signature-ttl or the source's discovery document), is not the source cluster's",
                format_go_duration(Duration::from_secs(signing.map_or(0, |s| s.ttl_secs)))
            ),
        ),
        Err(Cause::Status { status: 400, .. }) => Check::new(
            Severity::Error,
            "source",
            format!("a HEAD of {short} {how} was refused by {origin} with 400 invalid signature: the source enforces permission signatures; set ARVADOS_BLOB_SIGNING_KEY in the source settings file"),
        ),
        Err(Cause::Status { status: 401, .. }) => Check::new(
            Severity::Error,
            "source",
            format!("a HEAD of {short} {how} was refused by {origin} with 401 (expired signature, or no token): is this machine's clock far from the source's?"),
        ),
        Err(cause) => Check::new(
            Severity::Warning,
            "source",
            format!("could not test the signing key: a HEAD of {short} on {origin} failed ({cause})"),
        ),
    };
    checks.push(check);
    checks
}

/// The destination checks, from its layout: who takes writes, in which classes, and whether
/// the wanted replicas (in every wanted class) fit.
pub fn check_destination(
    dst: &Cluster,
    layout: &Layout,
    replicas: u32,
    classes: &[String],
) -> Vec<Check> {
    let mut checks = Vec::new();
    for (server, service) in dst.services.iter().enumerate() {
        let name = format!("{} ({})", service.uuid, service.origin);
        match layout.servers.get(server) {
            Some(ServerMounts::Known(mounts)) => {
                let writable: Vec<_> = mounts.iter().filter(|m| m.allow_write).collect();
                let mut served: Vec<&str> = writable.iter().flat_map(|m| m.classes()).collect();
                served.sort_unstable();
                served.dedup();
                if service.read_only {
                    checks.push(Check::new(
                        Severity::Ok,
                        "destination",
                        format!("{name} is read-only (keep_services read_only): it takes no copies"),
                    ));
                } else if writable.is_empty() {
                    checks.push(Check::new(
                        Severity::Warning,
                        "destination",
                        format!("{name} accepts no writes: none of its {} mounts allows writing (copies go to the next server in rendezvous order, and stay misplaced)", mounts.len()),
                    ));
                } else {
                    checks.push(Check::new(
                        Severity::Ok,
                        "destination",
                        format!(
                            "{name} accepts writes: {} of {} mounts writable, classes {}",
                            writable.len(),
                            mounts.len(),
                            served.join(", ")
                        ),
                    ));
                }
            }
            Some(ServerMounts::Unknown(problem)) if problem.is_denied() => checks.push(Check::new(
                Severity::Error,
                "destination",
                format!("the token cannot read /mounts of {name} ({}): ARVADOS_API_TOKEN in the destination settings must be the destination's SystemRootToken", problem.text),
            )),
            Some(ServerMounts::Unknown(problem)) if problem.is_unreachable() => checks.push(Check::new(
                Severity::Warning,
                "destination",
                format!("{name} is unreachable ({}): counted as taking no copies", problem.text),
            )),
            Some(ServerMounts::Unknown(problem)) => checks.push(Check::new(
                Severity::Warning,
                "destination",
                format!("{name} did not list its mounts ({}): its classes are unknown; counted as one writable replica", problem.text),
            )),
            None => {}
        }
    }
    let want = replicas.max(1);
    let servers = 0..dst.services.len();
    let total: u32 = servers
        .clone()
        .map(|s| layout.write_capacity(dst, s, None))
        .sum();
    let writers = servers
        .clone()
        .filter(|&s| layout.write_capacity(dst, s, None) > 0)
        .count();
    if total < want {
        checks.push(Check::new(
            Severity::Error,
            "destination",
            format!("{want} replicas wanted, but the destination's writable servers can take only {total} ({writers} of {} servers take writes)", dst.services.len()),
        ));
        return checks;
    }
    let mut short_classes = Vec::new();
    for class in classes {
        let fits: u32 = servers
            .clone()
            .map(|s| layout.write_capacity(dst, s, Some(class)))
            .sum();
        if fits < want {
            short_classes.push(format!(
                "storage class {class}: {want} replicas wanted, writable mounts in that class can take only {fits}"
            ));
        }
    }
    for text in &short_classes {
        checks.push(Check::new(Severity::Error, "destination", text.clone()));
    }
    if short_classes.is_empty() {
        let classes_text = if classes.is_empty() {
            String::new()
        } else {
            format!(" in storage classes {}", classes.join(", "))
        };
        let caveat = if layout.all_known() {
            ""
        } else {
            " (classes of servers without /mounts are unknown)"
        };
        checks.push(Check::new(
            Severity::Ok,
            "destination",
            format!("{want} replicas{classes_text} fit: {writers} servers take writes, room for {total} replicas{caveat}"),
        ));
    }
    checks
}

/// keepstore's default `Collections.BlobSigningTTL`.
pub const DEFAULT_BLOB_SIGNING_TTL: Duration = Duration::from_secs(336 * 3600);

/// `Collections.BlobSigningTTL` from the exported config (`GET /arvados/v1/config`), a Go
/// duration string such as `336h0m0s`; `Err` says why the default applies.
pub fn blob_signing_ttl(config: &serde_json::Value) -> Result<Duration, String> {
    let value = config
        .get("Collections")
        .and_then(|c| c.get("BlobSigningTTL"))
        .ok_or("the exported config has no Collections.BlobSigningTTL")?;
    let text = value
        .as_str()
        .ok_or_else(|| format!("Collections.BlobSigningTTL is not a duration string: {value}"))?;
    parse_go_duration(text).map_err(|e| format!("Collections.BlobSigningTTL: {e}"))
}

/// `YYYY-MM-DD HH:MM UTC` for a Unix time.
pub fn utc_text(unix_secs: u64) -> String {
    let days = (unix_secs / 86_400) as i64;
    let rem = unix_secs % 86_400;
    // Howard Hinnant's days-to-civil.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60
    )
}

/// The garbage-collection window: until when blocks copied from `since` are safe.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct GcWindow {
    pub blob_signing_ttl_s: u64,
    /// Where the TTL came from, or why the default was assumed.
    pub ttl_source: String,
    /// Unix seconds: the copies made at `since` may be trashed from then on.
    pub trash_from: u64,
    pub trash_from_text: String,
}

/// Works out the window for copies made at `since` (Unix seconds).
pub fn gc_window(config: Result<&serde_json::Value, String>, since: u64) -> GcWindow {
    let (ttl, source) = match config.and_then(blob_signing_ttl) {
        Ok(ttl) => (
            ttl,
            "Collections.BlobSigningTTL in the destination's exported config".to_string(),
        ),
        Err(why) => (
            DEFAULT_BLOB_SIGNING_TTL,
            format!("the Arvados default; {why}"),
        ),
    };
    let trash_from = since.saturating_add(ttl.as_secs());
    GcWindow {
        blob_signing_ttl_s: ttl.as_secs(),
        ttl_source: source,
        trash_from,
        trash_from_text: utc_text(trash_from),
    }
}

/// The always-shown warning about the destination's garbage collection.
pub fn gc_hazard(window: &GcWindow) -> Check {
    Check::new(
        Severity::Warning,
        "garbage collection",
        format!(
            "until the database moves, every block copied is unreferenced on the destination. A destination keep-balance with Collections.BlobTrash on trashes unreferenced blocks older than Collections.BlobSigningTTL ({}, {}): migrate the collections by {} (blocks copied by earlier runs sooner), or before then turn trash off on the destination (Collections.BlobTrash: false, or Collections.BalanceTrashLimit: 0, in its config.yml; neither is exported, so keepmover cannot check them). `keepmover touch` renews copied blocks to extend the window.",
            format_go_duration(Duration::from_secs(window.blob_signing_ttl_s)),
            window.ttl_source,
            window.trash_from_text,
        ),
    )
}

/// Unix seconds now.
pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Every check for a prepared two-cluster job, over HTTP. (The clusters' distinctness was
/// checked when the job was prepared.)
pub fn run_checks(prepared: &Prepared, io: IoBackend) -> Preflight {
    let job = &prepared.run.job;
    let mut preflight = Preflight::default();
    preflight.checks.push(Check::new(
        Severity::Ok,
        "clusters",
        format!(
            "source {} and destination {} are different clusters",
            prepared.run.identity.src, prepared.run.identity.dst
        ),
    ));
    let factory = HttpFactory::new(prepared.http.clone(), &[&job.src, &job.dst]);
    match build_runtime(io) {
        Ok((runtime, _)) => runtime.block_on(async {
            let ks = factory.client();
            let (source, layout) = futures_util::join!(
                check_source(
                    &ks,
                    &job.src,
                    job.signing.as_ref(),
                    &prepared.run.select.prefix
                ),
                layout::discover(&ks, &job.dst)
            );
            preflight.checks.extend(source);
            preflight.checks.extend(check_destination(
                &job.dst,
                &layout,
                job.replicas,
                &job.classes,
            ));
        }),
        Err(e) => preflight.checks.push(Check::new(
            Severity::Error,
            "clusters",
            format!("starting the I/O runtime ({io}): {e}"),
        )),
    }
    let config = prepared.dst_api.config().map_err(|e| e.to_string());
    let window = gc_window(config.as_ref().map_err(Clone::clone), now_secs());
    preflight.checks.push(gc_hazard(&window));
    preflight
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keepstore::memory::{self, MemoryKeepstores, Scripted};
    use crate::net::build_runtime;

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        let (runtime, _) = build_runtime(IoBackend::Auto).expect("runtime");
        runtime.block_on(f)
    }

    fn severities(checks: &[Check]) -> Vec<Severity> {
        checks.iter().map(|c| c.severity).collect()
    }

    #[test]
    fn the_source_token_and_signing_check() {
        let ks = MemoryKeepstores::new();
        let src = memory::cluster("src", "aaaaa", 2);
        // A block under "000" so the first probe finds it.
        let mut n = 0u32;
        loop {
            let data = n.to_le_bytes();
            if crate::keep::BlockHash(crate::hash::md5(&data))
                .to_string()
                .starts_with("000")
            {
                ks.put(&src, 1, &data, 1);
                break;
            }
            n += 1;
        }
        let checks = block_on(check_source(&ks, &src, None, ""));
        assert_eq!(
            severities(&checks),
            vec![Severity::Ok, Severity::Ok],
            "{checks:?}"
        );
        assert!(checks[1].text.contains("does not enforce"), "{checks:?}");
        // keepstore's answer to a wrong key: 400 invalid signature (scripts play to block
        // requests only: the HEAD takes it).
        ks.script(
            &src,
            1,
            &[Scripted::Status(400, "invalid signature".into())],
        );
        let signing = Signing {
            key: crate::keep::signature::SigningKey::new(b"wrong"),
            ttl_secs: 1_209_600,
        };
        let checks = block_on(check_source(&ks, &src, Some(&signing), ""));
        let last = checks.last().expect("a check");
        assert_eq!(last.severity, Severity::Error, "{checks:?}");
        assert!(last.text.contains("400 invalid signature"), "{last:?}");
        assert!(last.text.contains("336h0m0s"), "{last:?}");
        assert!(!last.text.contains("+A"), "no signed locator in messages");
        // A token that cannot read indexes.
        ks.with(&src, 0, |s| s.index_fails = Some((403, "Forbidden".into())));
        let checks = block_on(check_source(&ks, &src, None, ""));
        assert_eq!(checks[0].severity, Severity::Error, "{checks:?}");
        assert!(checks[0].text.contains("SystemRootToken"));
    }

    #[test]
    fn destination_writes_and_classes() {
        let ks = MemoryKeepstores::new();
        let dst = memory::cluster("dst", "bbbbb", 3);
        let layout_of = |ks: &MemoryKeepstores| block_on(layout::discover(ks, &dst));
        let checks = check_destination(&dst, &layout_of(&ks), 2, &["default".into()]);
        assert!(
            checks.iter().all(|c| c.severity == Severity::Ok),
            "{checks:?}"
        );
        // Two read-only: one writable server cannot take two replicas.
        for s in 0..2 {
            ks.with(&dst, s, |m| m.read_only = true);
        }
        let checks = check_destination(&dst, &layout_of(&ks), 2, &[]);
        let last = checks.last().expect("a check");
        assert_eq!(last.severity, Severity::Error, "{checks:?}");
        assert!(last.text.contains("can take only 1"), "{last:?}");
        // A class no mount serves.
        ks.with(&dst, 0, |m| m.read_only = false);
        let checks = check_destination(&dst, &layout_of(&ks), 2, &["archive".into()]);
        let last = checks.last().expect("a check");
        assert_eq!(last.severity, Severity::Error, "{checks:?}");
        assert!(last.text.contains("storage class archive"), "{last:?}");
    }

    #[test]
    fn the_same_cluster_is_refused() {
        let a = memory::cluster("src", "aaaaa", 2);
        let b = memory::cluster("dst", "bbbbb", 2);
        assert_eq!(same_cluster("h1", "h2:443", &a, &b, false), None);
        let same_host = same_cluster("Host.Example", "host.example:443", &a, &b, false);
        assert!(same_host.is_some_and(|t| t.contains("host.example:443")));
        assert_eq!(same_cluster("h", "h", &a, &b, true), None, "explicit lists");
        let mut c = memory::cluster("dst", "ccccc", 2);
        c.services[1].uuid = a.services[0].uuid.clone();
        assert!(same_cluster("h1", "h2", &a, &c, true).is_some_and(|t| t.contains("uuid")));
        assert!(same_cluster("h1", "h2", &a, &a, true).is_some());
    }

    #[test]
    fn the_garbage_collection_window() {
        let config = serde_json::json!({"Collections": {"BlobSigningTTL": "24h0m0s"}});
        let w = gc_window(Ok(&config), 1_700_000_000);
        assert_eq!(w.blob_signing_ttl_s, 86_400);
        assert_eq!(w.trash_from, 1_700_086_400);
        assert_eq!(w.trash_from_text, "2023-11-15 22:13 UTC");
        let check = gc_hazard(&w);
        assert_eq!(check.severity, Severity::Warning);
        for name in [
            "Collections.BlobTrash",
            "Collections.BalanceTrashLimit",
            "Collections.BlobSigningTTL",
            "24h0m0s",
        ] {
            assert!(check.text.contains(name), "{name}: {}", check.text);
        }
        let w = gc_window(Err("no config".into()), 0);
        assert_eq!(w.blob_signing_ttl_s, 336 * 3600);
        assert!(w.ttl_source.contains("no config"));
        assert_eq!(utc_text(0), "1970-01-01 00:00 UTC");
        assert_eq!(utc_text(951_782_400), "2000-02-29 00:00 UTC");
    }
}
