//! keep-rsync's flags, exactly (names, kinds, defaults, usage texts), plus keepmover's own
//! flags in the same Go style, and their translation into [`RsyncArgs`]. The table is the
//! only place a flag's default is written; `EngineConfig::default()` and
//! `ClientConfig::default()` hold the same values, and a test holds the three together.

use std::sync::Arc;

use super::listen_flags::{listen_options, LISTEN, LISTEN_LINGER, LISTEN_TOKEN_FILE};
use super::{fatal, parse_go_command, usage_error};
use crate::commands::rsync::SelectionArgs;
use crate::commands::rsync::{self, RsyncArgs};
use crate::gocompat::flag::{flag, invalid, FlagKind, FlagSpec, ParsedFlags};
use crate::index::filter::BlockFilter;
use crate::index::shard::Shard;
use crate::index::walk::DstIndexErrors;
use crate::mover::{Control, Counting, EngineConfig, RetryPolicy};
use crate::net::{ClientConfig, IoBackend};
use crate::report::terminal::Display;
pub use crate::units::parse_byte_size;

/// The selection flags of every command that walks indexes (the copy, `move`, `vacate`,
/// `pull`, `validate`, `touch`): one definition each, read by [`selection`].
pub const SHARD: FlagSpec = flag("shard", FlagKind::String, "", "keepmover: I/N: only shard I of N contiguous hash ranges (3-hex prefixes, 4 when N > 4096), as `plan` splits a job; auto/N takes I from JOB_COMPLETION_INDEX, SLURM_ARRAY_TASK_ID or AWS_BATCH_JOB_ARRAY_INDEX");
pub const SIZE: FlagSpec = flag(
    "size",
    FlagKind::String,
    "",
    "keepmover: only blocks of sizes A..B (bytes or with units, either end open), e.g. 1MiB..",
);
pub const MTIME: FlagSpec = flag("mtime", FlagKind::String, "", "keepmover: only blocks whose index mtime is in A..B; each bound an RFC 3339 time or an age (a Go duration meaning now minus that): ..720h = older than 30 days, 24h.. = written in the last day");
pub const LOCATORS: FlagSpec = flag("locators", FlagKind::String, "", "keepmover: only the blocks listed in this file (hash or hash+size per line; - = stdin); sorted on disk beyond memory, so any length works");

/// `-min-rate`, shared by every command that moves blocks.
pub const MIN_RATE: FlagSpec = flag("min-rate", FlagKind::String, "64KiB", "keepmover: slowest a transfer may average, in bytes/s: a body must be done within -idle-timeout plus its size at this rate, so a trickling server cannot hold a block for days (0 = no floor)");

/// keep-rsync's eight flags followed by keepmover's extensions.
// Flags shared with the other commands that read indexes and move blocks (one text each).
pub const MEMORY: FlagSpec = flag(
    "memory",
    FlagKind::String,
    "1GiB",
    "keepmover: memory budget for block buffers (e.g. 512MiB, 4GiB); at least 64MiB",
);
pub const IO: FlagSpec = flag(
    "io",
    FlagKind::String,
    "auto",
    "keepmover: I/O backend: auto (io_uring if the kernel allows it, else epoll), uring, epoll",
);
pub const CONNECT_TIMEOUT: FlagSpec = flag(
    "connect-timeout",
    FlagKind::Duration,
    "10s",
    "keepmover: TCP connect + TLS handshake timeout",
);
pub const FIRST_BYTE_TIMEOUT: FlagSpec = flag(
    "first-byte-timeout",
    FlagKind::Duration,
    "1m0s",
    "keepmover: time from a request being sent to its response head arriving",
);
pub const IDLE_TIMEOUT: FlagSpec = flag("idle-timeout", FlagKind::Duration, "1m0s", "keepmover: longest time a transfer may go without moving a byte (replaces keep-rsync's 20s whole-request cap)");
/// `-per-server-requests` (also `touch`'s).
pub const PER_SERVER_REQUESTS: FlagSpec = flag("per-server-requests", FlagKind::Int, "64", "keepmover: most requests in flight to one keepstore, all workers together (keepstore's default limit is 64); fewer while it answers 503/429/408");
pub const RETRY_DELAY: FlagSpec = flag(
    "retry-delay",
    FlagKind::Duration,
    "2s",
    "keepmover: first retry delay; doubles each time, capped at 10x",
);
pub const PREFIX_LENGTH: FlagSpec = flag("prefix-length", FlagKind::Int, "0", "keepmover: hex digits per index slice (0 = chosen from the block count so a slice holds about a million locators)");

pub const RSYNC_FLAGS: &[FlagSpec] = &[
    flag("src", FlagKind::String, "", "Source configuration filename. May be either a pathname to a config file, or (for example) 'foo' as shorthand for $HOME/.config/arvados/foo.conf file. This file is expected to specify the values for ARVADOS_API_TOKEN, ARVADOS_API_HOST, ARVADOS_API_HOST_INSECURE, and ARVADOS_BLOB_SIGNING_KEY for the source."),
    flag("dst", FlagKind::String, "", "Destination configuration filename. May be either a pathname to a config file, or (for example) 'foo' as shorthand for $HOME/.config/arvados/foo.conf file. This file is expected to specify the values for ARVADOS_API_TOKEN, ARVADOS_API_HOST, and ARVADOS_API_HOST_INSECURE for the destination."),
    flag("src-keep-services-json", FlagKind::String, "", "An optional JSON configuration file for the source keep services. If provided, this file is used instead of taking the keep services from the source's API server. (keepmover: the JSON text itself, or a path to a file holding it.)"),
    flag("dst-keep-services-json", FlagKind::String, "", "An optional JSON configuration file for the destination keep services. If provided, this file is used instead of taking the keep services from the destination's API server. (keepmover: the JSON text itself, or a path to a file holding it.)"),
    flag("replications", FlagKind::Int, "0", "Number of replications to write to the destination. If replications not specified, default replication level configured on destination server will be used."),
    flag("prefix", FlagKind::String, "", "Index prefix"),
    flag("src-blob-signature-ttl", FlagKind::Duration, "0s", "Lifetime of blob permission signatures on source keepservers. If not provided, this will be retrieved from the API server's discovery document."),
    flag("version", FlagKind::Bool, "false", "Print version information and exit."),
    // keepmover extensions
    flag("workers", FlagKind::Int, "0", "keepmover: worker threads, each with its own io_uring ring (0 = one per two cores)"),
    flag("concurrency", FlagKind::Int, "512", "keepmover: most blocks in flight per worker thread: a ceiling; the memory budget (big blocks) and -per-server-requests (small blocks on a slow network) bind first"),
    MEMORY,
    IO,
    flag("checkpoint", FlagKind::String, "", "keepmover: resume file; the run skips the hash prefixes it records as done and records each prefix once all its blocks are confirmed. It is bound to this job (clusters, replicas, classes, prefix) and locked while a run uses it"),
    CONNECT_TIMEOUT,
    FIRST_BYTE_TIMEOUT,
    IDLE_TIMEOUT,
    MIN_RATE,
    flag("retries", FlagKind::Int, "2", "keepmover: retries per block after the first attempt, as keepclient's Retries"),
    RETRY_DELAY,
    flag("index-by", FlagKind::String, "mount", "keepmover: list each distinct mount once (mount: /mounts/<uuid>/blocks, as keep-balance; a volume shared by several keepstores is read once), or each server (server: /index/, as keep-rsync)"),
    PREFIX_LENGTH,
    flag("progress", FlagKind::String, "auto", "keepmover: auto (a live bar on a terminal, keep-rsync's log lines otherwise), bar, log"),
    flag("count-first", FlagKind::Bool, "false", "keepmover: walk every index once to count before copying, for exact totals in the first log line (by default they are estimated from the first slice, saving a full index read)"),
    flag("skip-count", FlagKind::Bool, "false", "keepmover: accepted for compatibility with earlier keepmover versions; no effect (counting is skipped by default, see -count-first)"),
    flag("dry-run", FlagKind::Bool, "false", "keepmover: walk and diff the indexes, report what would be copied, copy nothing"),
    flag("grace", FlagKind::Duration, "30s", "keepmover: after SIGINT/SIGTERM, how long blocks in flight may take to finish before they are abandoned (a second signal abandons them at once)"),
    flag("dst-index-errors", FlagKind::String, "fail", "keepmover: what an unreadable destination index does: fail (stop, as keep-rsync), or copy (treat it as empty: its blocks may be copied again)"),
    PER_SERVER_REQUESTS,
    flag("storage-classes", FlagKind::String, "", "keepmover: comma list of destination storage classes (default: the destination's default classes); a block counts as copied only when every class confirms its replicas"),
    flag("report", FlagKind::String, "", "keepmover: write one JSON line per block (locator, action, servers, bytes, attempts, error) to this file as the run goes"),
    flag("json", FlagKind::String, "", "keepmover: write the run's summary as JSON to this file"),
    flag("max-transfer", FlagKind::String, "", "keepmover: stop cleanly (exit 8) once this many bytes are copied, e.g. 500GiB"),
    flag("max-duration", FlagKind::Duration, "0s", "keepmover: stop cleanly (exit 10) after this long, e.g. 8h (0 = no limit)"),
    flag("bwlimit", FlagKind::String, "", "keepmover: bandwidth limit in bytes/s, e.g. 100MiB: the rate blocks are read at (so also copied at); UP:DOWN limits bytes sent (all replicas) and received separately; 0 = none"),
    SHARD,
    SIZE,
    MTIME,
    LOCATORS,
    flag("order-by", FlagKind::String, "prefix", "keepmover: order within each slice: prefix, size-asc, size-desc, or mixed (small blocks get their own share of slots and memory)"),
    flag("src-services", FlagKind::String, "", "keepmover: only these source keep services (comma list of uuids); with -src and -dst the same cluster, a single-cluster job"),
    flag("dst-services", FlagKind::String, "", "keepmover: only these destination keep services (comma list of uuids)"),
    flag("verify-existing", FlagKind::Bool, "false", "keepmover: re-read every block the destination already lists and check its MD5; write good replicas elsewhere for bad ones and report them"),
    flag("trash-bad", FlagKind::Bool, "false", "keepmover: with -verify-existing, ask keepstores to trash the bad replicas found (keepstore's trash rules apply)"),
    flag("watch", FlagKind::Duration, "0s", "keepmover: keep the destination current: after a pass, wait this long and copy what is new, until stopped (0 = one pass)"),
    flag("preflight", FlagKind::Bool, "true", "keepmover: run the safety checks first (source token and signing key, destination writability and classes, distinct clusters, the garbage-collection window; see `keepmover preflight`) and refuse to start on errors; -preflight=false skips them"),
    LISTEN,
    LISTEN_TOKEN_FILE,
    LISTEN_LINGER,
];

/// Runs the drop-in form: parse, then hand over to `commands::rsync`.
pub fn run_rsync(program: &str, args: &[String]) -> i32 {
    let parsed = match parse_go_command(program, "", RSYNC_FLAGS, args) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let args = match rsync_args(&parsed) {
        Ok(a) => a,
        Err(message) => return usage_error(&message),
    };
    match rsync::run(args, Arc::new(Control::new())) {
        Ok(outcome) => outcome.code(),
        Err(e) => fatal(&e.to_string()),
    }
}

/// A size flag (`1GiB`, `512MiB`, `4096`).
pub(super) fn size_flag(parsed: &ParsedFlags, name: &str) -> Result<u64, String> {
    let text = parsed.text(name);
    parse_byte_size(text)
        .ok_or_else(|| invalid(name, text, "expected a size such as 512MiB or 4GiB"))
}

/// The engine's tuning from the flags shared by every command that walks two clusters.
pub fn engine_config(parsed: &ParsedFlags) -> Result<EngineConfig, String> {
    let dst_index_errors = match parsed.text("dst-index-errors") {
        "fail" => DstIndexErrors::Fail,
        "copy" => DstIndexErrors::Copy,
        other => return Err(invalid("dst-index-errors", other, "expected fail or copy")),
    };
    let max_transfer = match parsed.non_empty("max-transfer") {
        Some(_) => Some(size_flag(parsed, "max-transfer")?),
        None => None,
    };
    let max_duration = parsed.duration("max-duration", false)?;
    Ok(EngineConfig {
        counting: if parsed.is_true("count-first") {
            Counting::Exact
        } else {
            Counting::Estimate
        },
        dry_run: parsed.is_true("dry-run"),
        checkpoint: parsed.non_empty("checkpoint").map(Into::into),
        grace: parsed.duration("grace", false)?,
        dst_index_errors,
        max_transfer,
        max_duration: (!max_duration.is_zero()).then_some(max_duration),
        verify_existing: parsed.is_true("verify-existing"),
        index_by_mount: match parsed.text("index-by") {
            "mount" => true,
            "server" => false,
            other => return Err(invalid("index-by", other, "expected mount or server")),
        },
        ..engine_tuning(parsed)?
    })
}

/// The tuning every engine-driven command shares (`workers`, `concurrency`, `memory`, `io`,
/// `retries`, `retry-delay`, `prefix-length`, `per-server-requests`); the rest default.
pub fn engine_tuning(parsed: &ParsedFlags) -> Result<EngineConfig, String> {
    let memory = size_flag(parsed, "memory")?;
    if memory < 64 << 20 {
        return Err(format!(
            "-memory {} is below 64MiB, the largest Keep block",
            parsed.text("memory")
        ));
    }
    let io_text = parsed.text("io");
    let io: IoBackend = io_text
        .parse()
        .map_err(|_| invalid("io", io_text, "expected auto, uring or epoll"))?;
    Ok(EngineConfig {
        workers: parsed.int_in("workers", 0..=1024)?,
        concurrency: parsed.int_in("concurrency", 1..=65_536)?,
        memory_budget: usize::try_from(memory).unwrap_or(usize::MAX),
        io,
        retry: RetryPolicy {
            retries: parsed.int_in("retries", 0..=100)?,
            delay: parsed.duration("retry-delay", false)?,
        },
        prefix_length: parsed.int_in("prefix-length", 0..=8)?,
        per_server_requests: parsed.int_in("per-server-requests", 1..=65_536)?,
        min_rate: http_config(parsed)?.min_rate,
        ..EngineConfig::default()
    })
}

/// The HTTP client's timeouts from the flags.
pub fn http_config(parsed: &ParsedFlags) -> Result<ClientConfig, String> {
    Ok(ClientConfig {
        connect_timeout: parsed.duration("connect-timeout", true)?,
        first_byte_timeout: parsed.duration("first-byte-timeout", true)?,
        idle_timeout: parsed.duration("idle-timeout", true)?,
        min_rate: match parsed.get("min-rate") {
            None => ClientConfig::default().min_rate,
            Some(text) => crate::units::parse_rate(text).ok_or_else(|| {
                invalid(
                    "min-rate",
                    text,
                    "expected a rate such as 64KiB, or 0 (no floor)",
                )
            })?,
        },
        ..ClientConfig::default()
    })
}

/// `-bwlimit RATE` or `UP:DOWN`, as (down, up) bytes per second. A single rate limits the
/// reading side (the copy's own rate); `UP:DOWN` limits sending and receiving separately.
pub fn bwlimit(text: &str) -> Result<(u64, u64), String> {
    crate::units::parse_bwlimit(text).ok_or_else(|| {
        invalid(
            "bwlimit",
            text,
            "expected a rate such as 100MiB, or UP:DOWN",
        )
    })
}

/// `-prefix`: up to 32 lowercase hex digits (every command that takes it).
pub fn prefix_arg(parsed: &ParsedFlags) -> Result<String, String> {
    let prefix = parsed.text("prefix").to_string();
    if prefix.len() > 32
        || !prefix
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return Err(invalid(
            "prefix",
            &prefix,
            "expected up to 32 lowercase hex digits",
        ));
    }
    Ok(prefix)
}

/// What the walk is about: prefix, shard, filters, list, order (`-order-by` where the
/// command's table has it; hash order otherwise).
pub fn selection(parsed: &ParsedFlags) -> Result<SelectionArgs, String> {
    let prefix = prefix_arg(parsed)?;
    let shard = match parsed.non_empty("shard") {
        Some(text) => Some(
            Shard::parse(text, &|name| std::env::var(name).ok())
                .map_err(|e| invalid("shard", text, &e.to_string()))?,
        ),
        None => None,
    };
    let now_ns = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0);
    let filter = BlockFilter::parse(parsed.text("size"), parsed.text("mtime"), now_ns)
        .map_err(|e| e.to_string())?;
    let order = match parsed.get("order-by") {
        Some(text) => text
            .parse()
            .map_err(|why: String| invalid("order-by", text, &why))?,
        None => Default::default(),
    };
    Ok(SelectionArgs {
        prefix,
        shard,
        filter,
        locators: parsed.non_empty("locators").map(str::to_string),
        order,
    })
}

/// A comma list, items trimmed, empties and repeats dropped (`-storage-classes a,a` is one
/// class; a service listed twice is one service), in the order first given.
pub fn comma_list(text: &str) -> Vec<String> {
    let mut items: Vec<String> = Vec::new();
    for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        if !items.iter().any(|seen| seen == item) {
            items.push(item.to_string());
        }
    }
    items
}

/// Turns validated flag texts into typed arguments; errors are usage errors.
pub fn rsync_args(parsed: &ParsedFlags) -> Result<RsyncArgs, String> {
    let display = match parsed.text("progress") {
        "auto" => Display::auto(),
        "bar" => Display::Bar,
        "log" => Display::Log,
        other => return Err(invalid("progress", other, "expected auto, bar or log")),
    };
    let storage_classes = parsed.non_empty("storage-classes").map(comma_list);
    Ok(RsyncArgs {
        src: parsed.text("src").to_string(),
        dst: parsed.text("dst").to_string(),
        src_keep_services_json: parsed
            .non_empty("src-keep-services-json")
            .map(str::to_string),
        dst_keep_services_json: parsed
            .non_empty("dst-keep-services-json")
            .map(str::to_string),
        src_services: comma_list(parsed.text("src-services")),
        dst_services: comma_list(parsed.text("dst-services")),
        replications: parsed.int_in("replications", 0..=1000)?,
        select: selection(parsed)?,
        src_blob_signature_ttl: parsed.duration("src-blob-signature-ttl", false)?,
        storage_classes,
        engine: engine_config(parsed)?,
        http: http_config(parsed)?,
        display,
        report: parsed.non_empty("report").map(Into::into),
        json: parsed.non_empty("json").map(Into::into),
        bwlimit: bwlimit(parsed.text("bwlimit"))?,
        watch: parsed.duration("watch", false)?,
        trash_bad: parsed.is_true("trash-bad"),
        preflight: parsed.is_true("preflight"),
        listen: listen_options(parsed)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gocompat::flag::parse;

    #[test]
    fn comma_lists_drop_empties_and_repeats() {
        assert_eq!(comma_list(" a, b ,,a,c , b"), ["a", "b", "c"]);
        assert!(comma_list(" , ").is_empty());
        let parsed = parse(
            RSYNC_FLAGS,
            &["-storage-classes".to_string(), "hot,hot, cold".to_string()],
        )
        .expect("parses");
        let args = rsync_args(&parsed).expect("valid");
        assert_eq!(
            args.storage_classes.as_deref(),
            Some(&["hot".to_string(), "cold".to_string()][..])
        );
    }

    /// The flag table, `EngineConfig::default()` and `ClientConfig::default()` agree: what
    /// `-help` shows is what the code uses.
    #[test]
    fn help_defaults_are_the_defaults_the_code_uses() {
        let parsed = parse(RSYNC_FLAGS, &[]).expect("no flags parse");
        let engine = engine_config(&parsed).expect("defaults are valid");
        let want = EngineConfig::default();
        assert_eq!(engine.workers, want.workers);
        assert_eq!(engine.concurrency, want.concurrency);
        assert_eq!(engine.memory_budget, want.memory_budget);
        assert_eq!(engine.io, want.io);
        assert_eq!(engine.retry, want.retry);
        assert_eq!(engine.prefix_length, want.prefix_length);
        assert_eq!(engine.counting, want.counting);
        assert_eq!(engine.dry_run, want.dry_run);
        assert_eq!(engine.checkpoint, want.checkpoint);
        assert_eq!(engine.grace, want.grace);
        assert_eq!(engine.dst_index_errors, want.dst_index_errors);
        assert_eq!(engine.per_server_requests, want.per_server_requests);
        assert_eq!(engine.max_transfer, want.max_transfer);
        assert_eq!(engine.max_duration, want.max_duration);
        assert_eq!(engine.verify_existing, want.verify_existing);
        assert_eq!(engine.index_by_mount, want.index_by_mount);
        let http = http_config(&parsed).expect("defaults are valid");
        let want = ClientConfig::default();
        assert_eq!(http.connect_timeout, want.connect_timeout);
        assert_eq!(http.first_byte_timeout, want.first_byte_timeout);
        assert_eq!(http.idle_timeout, want.idle_timeout);
        assert_eq!(http.min_rate, want.min_rate);
        // And the help text prints them.
        let help = crate::gocompat::flag::print_defaults(RSYNC_FLAGS);
        assert!(help.contains("(default 512)"), "{help}");
        assert!(help.contains("(default \"1GiB\")"), "{help}");
        assert!(help.contains("(default 1m0s)"), "{help}");
    }

    #[test]
    fn numeric_flags_are_range_checked() {
        let args = |list: &[&str]| {
            let owned: Vec<String> = list.iter().map(|s| s.to_string()).collect();
            rsync_args(&parse(RSYNC_FLAGS, &owned).expect("parses"))
        };
        let err = args(&["-replications", "4294967297"]).expect_err("out of range");
        assert!(err.contains("value out of range"), "{err}");
        let err = args(&["-idle-timeout", "0"]).expect_err("zero timeout");
        assert!(err.contains("must be greater than zero"), "{err}");
        let err = args(&["-concurrency", "0"]).expect_err("zero concurrency");
        assert!(err.contains("-concurrency"), "{err}");
        assert!(args(&["-concurrency", "-3"]).is_err());
        assert!(args(&["-max-transfer", "lots"]).is_err());
        assert_eq!(
            args(&["-max-transfer", "1GiB"])
                .expect("ok")
                .engine
                .max_transfer,
            Some(1 << 30)
        );
    }
}
