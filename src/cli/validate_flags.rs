//! `keepmover validate`'s flags: keep-rsync's settings and services flags, `-prefix`, the
//! copy's selection (`-shard`, `-size`, `-mtime`, `-locators`, parsed by the copy's own
//! [`selection`]), `-replications`, `-storage-classes`, the copy's tuning and timeouts, and
//! rclone check's output files; and `keepmover preflight`, which takes the copy's own flags so that any
//! copy command line can be checked by putting `preflight` in front of it.

use std::sync::Arc;

use super::listen_flags::{listen_options, LISTEN, LISTEN_LINGER, LISTEN_TOKEN_FILE};
use super::rsync_flags::{
    comma_list, engine_tuning, http_config, rsync_args, selection, LOCATORS, MTIME, RSYNC_FLAGS,
    SHARD, SIZE,
};
use super::{fatal, parse_go_command, usage_error};
use crate::commands::preflight;
use crate::commands::rsync::{prepare, RsyncArgs};
use crate::commands::validate::{self, parse_sample, ValidateArgs};
use crate::exit;
use crate::gocompat::flag::{flag, FlagKind, FlagSpec, ParsedFlags};
use crate::mover::validate::Reread;
use crate::mover::Control;
use crate::report::terminal::Display;
use crate::report::validate::OutputPaths;

pub const VALIDATE_FLAGS: &[FlagSpec] = &[
    flag("src", FlagKind::String, "", "Source configuration filename or NAME ($HOME/.config/arvados/NAME.conf), as for the copy"),
    flag("dst", FlagKind::String, "", "Destination configuration filename or NAME, as for the copy. With -deep or -sample, its ARVADOS_BLOB_SIGNING_KEY signs the re-reads"),
    flag("src-keep-services-json", FlagKind::String, "", "Source keep services: the JSON text itself, or a file holding it (skips discovery)"),
    flag("dst-keep-services-json", FlagKind::String, "", "Destination keep services: the JSON text itself, or a file holding it (skips discovery)"),
    flag("replications", FlagKind::Int, "0", "Replicas every block should have on the destination (0 = the destination's defaultCollectionReplication)"),
    flag("prefix", FlagKind::String, "", "Index prefix: only hashes starting with this"),
    SHARD,
    SIZE,
    MTIME,
    LOCATORS,
    flag("storage-classes", FlagKind::String, "", "Comma list of storage classes each wanting the replicas (default: the destination's default classes)"),
    flag("src-blob-signature-ttl", FlagKind::Duration, "0s", "Accepted for the copy's command lines (validate does not read source blocks)"),
    flag("dst-blob-signature-ttl", FlagKind::Duration, "0s", "Destination signature TTL for re-reads (0 = the destination's discovery document)"),
    flag("deep", FlagKind::Bool, "false", "Also read back every destination copy (each server holding it) and check its MD5, at copy speed"),
    flag("sample", FlagKind::String, "", "Read back the copies of a deterministic share of the blocks, e.g. 1% or 0.1% (implies re-reading; picked by a hash of -seed and the block hash)"),
    flag("seed", FlagKind::Int, "0", "Seed of -sample: the same seed picks the same blocks on every run"),
    flag("missing", FlagKind::String, "", "Write the hash+size of blocks missing on the destination to this file"),
    flag("differ", FlagKind::String, "", "Write the hash+size of blocks that differ (another size on the destination, or a copy with the wrong MD5) to this file"),
    flag("error", FlagKind::String, "", "Write the hash+size of blocks with a copy that could not be read to this file"),
    flag("combined", FlagKind::String, "", "Write every block to this file as `<status> hash+size`: = fine, - missing, + only on the destination, * differs, ! unreadable, < under-replicated, ~ misplaced"),
    flag("report", FlagKind::String, "", "Write one JSON line per block (status, action, replicas, holders, findings) to this file"),
    flag("json", FlagKind::String, "", "Write the summary (totals per finding kind) as JSON to this file"),
    flag("quiet", FlagKind::Bool, "false", "No progress lines (findings and the summary are still printed)"),
    flag("workers", FlagKind::Int, "0", "Worker threads for re-reads (0 = one per two cores)"),
    flag("concurrency", FlagKind::Int, "32", "Blocks re-read at once per worker"),
    super::rsync_flags::MEMORY,
    super::rsync_flags::IO,
    super::rsync_flags::CONNECT_TIMEOUT,
    super::rsync_flags::FIRST_BYTE_TIMEOUT,
    super::rsync_flags::IDLE_TIMEOUT,
    super::rsync_flags::MIN_RATE,
    flag("retries", FlagKind::Int, "2", "Retries per read after the first attempt"),
    super::rsync_flags::RETRY_DELAY,
    super::rsync_flags::PREFIX_LENGTH,
    flag("per-server-requests", FlagKind::Int, "32", "Most re-reads in flight to one keepstore from one worker"),
    LISTEN,
    LISTEN_TOKEN_FILE,
    LISTEN_LINGER,
    flag("version", FlagKind::Bool, "false", "Print version information and exit."),
];

/// Typed arguments from parsed validate flags; errors are usage errors.
pub fn validate_args(parsed: &ParsedFlags) -> Result<ValidateArgs, String> {
    let seed: u64 = parsed.int_in("seed", 0..=i64::MAX)?;
    let reread = match (parsed.non_empty("sample"), parsed.is_true("deep")) {
        (Some(text), _) => Reread::Sample {
            ppm: parse_sample(text)?,
            seed,
        },
        (None, true) => Reread::All,
        (None, false) => Reread::Off,
    };
    let path = |name: &str| parsed.non_empty(name).map(Into::into);
    Ok(ValidateArgs {
        common: RsyncArgs {
            src: parsed.text("src").to_string(),
            dst: parsed.text("dst").to_string(),
            src_keep_services_json: parsed
                .non_empty("src-keep-services-json")
                .map(str::to_string),
            dst_keep_services_json: parsed
                .non_empty("dst-keep-services-json")
                .map(str::to_string),
            src_services: Vec::new(),
            dst_services: Vec::new(),
            replications: parsed.int_in("replications", 0..=1000)?,
            select: selection(parsed)?,
            src_blob_signature_ttl: parsed.duration("src-blob-signature-ttl", false)?,
            storage_classes: parsed.non_empty("storage-classes").map(comma_list),
            engine: engine_tuning(parsed)?,
            http: http_config(parsed)?,
            display: if parsed.is_true("quiet") {
                Display::Quiet
            } else {
                Display::Log
            },
            report: path("report"),
            json: path("json"),
            preflight: false,
            bwlimit: (0, 0),
            watch: std::time::Duration::ZERO,
            trash_bad: false,
            listen: listen_options(parsed)?,
        },
        reread,
        dst_blob_signature_ttl: parsed.duration("dst-blob-signature-ttl", false)?,
        outputs: OutputPaths {
            missing: path("missing"),
            differ: path("differ"),
            error: path("error"),
            combined: path("combined"),
            report: None,
        },
    })
}

pub fn run_validate(program: &str, args: &[String]) -> i32 {
    let title = format!("{program} validate");
    let parsed = match parse_go_command(program, &title, VALIDATE_FLAGS, args) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let typed = match validate_args(&parsed) {
        Ok(t) => t,
        Err(message) => return usage_error(&message),
    };
    match validate::run(typed, Arc::new(Control::new())) {
        Ok(outcome) => outcome.code(),
        Err(e) => fatal(&e.to_string()),
    }
}

/// `keepmover preflight [the copy's flags]`: the checks alone; exit 1 on errors.
pub fn run_preflight(program: &str, args: &[String]) -> i32 {
    let title = format!("{program} preflight");
    let parsed = match parse_go_command(program, &title, RSYNC_FLAGS, args) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let typed = match rsync_args(&parsed) {
        Ok(t) => t,
        Err(message) => return usage_error(&message),
    };
    let prepared = match prepare(&typed, "copy") {
        Ok(p) => p,
        Err(e) => return fatal(&e.to_string()),
    };
    let checks = preflight::run_checks(&prepared, typed.engine.io);
    checks.print();
    if let Some(path) = &typed.json {
        if let Err(e) = checks.write_json(path) {
            return fatal(&format!("writing {}: {e}", path.display()));
        }
    }
    if checks.errors() > 0 {
        exit::FAILURE
    } else {
        exit::SUCCESS
    }
}
