//! `keepmover validate -src A -dst B`: proves a copy, reading only. Both clusters are set up
//! as the copy sets them up (`rsync::prepare`: settings files, discovery, the same-cluster
//! refusal), the destination's mounts are read once, and `mover::validate` walks and
//! classifies every block, re-reading destination copies with `-deep` or `-sample`. Exit 0
//! only when every source block is on the destination, with its replicas, in place, and
//! (when re-read) intact.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::preflight::{gc_window, utc_text};
use super::rsync::{prepare, RsyncArgs, RsyncError};
use super::setup::SetupError;
use crate::exit::Outcome;
use crate::index::layout::{self, ServerMounts};
use crate::index::placement::{Wanted, PPM_ALL};
use crate::keepstore::http::HttpFactory;
use crate::keepstore::KeepstoresFactory;
use crate::mover::events::EventSink;
use crate::mover::validate::{self, Reread, ValidateError, ValidateJob, ValidateTotals};
use crate::mover::{Control, Counters, Signing};
use crate::net::build_runtime;
use crate::report::log_line;
use crate::report::terminal::Display;
use crate::report::validate::{render, OutputPaths, ValidateFiles, ValidateJson, ValidateLog};

/// Every option of `validate`, typed. Built by `cli`.
#[derive(Clone, Debug)]
pub struct ValidateArgs {
    /// The clusters, replicas, classes, prefix, tuning and timeouts, as for a copy
    /// (`report` and `json` are validate's own files).
    pub common: RsyncArgs,
    pub reread: Reread,
    /// The destination's signature TTL for re-reads; zero = its discovery document.
    pub dst_blob_signature_ttl: Duration,
    pub outputs: OutputPaths,
}

#[derive(Debug, thiserror::Error)]
pub enum ValidateCommandError {
    #[error(transparent)]
    Prepare(#[from] RsyncError),
    #[error(transparent)]
    Validate(#[from] ValidateError),
    #[error("starting the I/O runtime: {0}")]
    Runtime(std::io::Error),
    #[error("writing {path}: {source}")]
    Output {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Parses `-sample`: a percentage such as `5%`, `0.5%` or `5` (up to four decimals) into
/// parts per million, in (0, 100 %].
pub fn parse_sample(text: &str) -> Result<u32, String> {
    let number = text.trim().trim_end_matches('%');
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    let digits_ok = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty() || !digits_ok(whole) || !digits_ok(fraction) || fraction.len() > 4 {
        return Err(format!(
            "invalid value {text:?} for flag -sample: expected a percentage such as 5% or 0.5%"
        ));
    }
    let whole: u64 = whole
        .parse()
        .map_err(|_| format!("invalid value {text:?} for flag -sample: too large"))?;
    let fraction: u64 = format!("{fraction:0<4}").parse().unwrap_or(0);
    let ppm = whole.saturating_mul(10_000).saturating_add(fraction);
    if ppm == 0 || ppm > u64::from(PPM_ALL) {
        return Err(format!(
            "invalid value {text:?} for flag -sample: must be above 0% and at most 100%"
        ));
    }
    Ok(ppm as u32)
}

fn reread_text(reread: Reread) -> String {
    match reread {
        Reread::Off => "none (indexes only; -deep or -sample re-read copies)".to_string(),
        Reread::All => "every destination copy (-deep)".to_string(),
        Reread::Sample { ppm, seed } => format!(
            "every destination copy of a {}% sample (-seed {seed})",
            f64::from(ppm) / 10_000.0
        ),
    }
}

/// Runs a validation and prints its findings and summary.
pub fn run(args: ValidateArgs, control: Arc<Control>) -> Result<Outcome, ValidateCommandError> {
    let mut prepared = prepare(&args.common, "validate")?;
    let select = std::mem::take(&mut prepared.run.select);
    let job = &prepared.run.job;
    let dst_signing = match prepared
        .dst_settings
        .blob_signing_key
        .as_deref()
        .filter(|k| !k.is_empty())
    {
        Some(key) if args.reread != Reread::Off => {
            let ttl_secs = if args.dst_blob_signature_ttl.is_zero() {
                prepared
                    .dst_api
                    .discovery()
                    .map_err(RsyncError::from)?
                    .blob_signature_ttl
                    .ok_or(RsyncError::Setup(SetupError::Discovery {
                        cluster: "destination",
                        field: "blobSignatureTtl",
                        flag: "-dst-blob-signature-ttl",
                    }))?
            } else {
                args.dst_blob_signature_ttl.as_secs()
            };
            Some(Signing {
                key: crate::keep::signature::SigningKey::new(key.as_bytes()),
                ttl_secs,
            })
        }
        Some(_) => None,
        None => {
            if args.reread != Reread::Off {
                log_line("validate: the destination settings have no ARVADOS_BLOB_SIGNING_KEY: re-reads go unsigned, and a destination that enforces signatures refuses them (400 invalid signature)");
            }
            None
        }
    };
    let factory = HttpFactory::new(prepared.http.clone(), &[&job.src, &job.dst]);
    let dst_layout = {
        let (runtime, _) =
            build_runtime(args.common.engine.io).map_err(ValidateCommandError::Runtime)?;
        runtime.block_on(layout::discover(&factory.client(), &job.dst))
    };
    for (server, mounts) in dst_layout.servers.iter().enumerate() {
        if let ServerMounts::Unknown(problem) = mounts {
            log_line(&format!(
                "validate: {} did not list its mounts ({}): reading its whole index, one replica per copy",
                job.dst.services[server].uuid, problem.text
            ));
        }
    }
    let wanted = Wanted {
        replicas: job.replicas,
        classes: job.classes.to_vec(),
    };
    let prefix = select.prefix.clone();
    let shard = select.shard.map(|s| s.to_string());
    let filters = args.common.select.describe_filters();
    log_line(&format!(
        "Validating {} against {}{}{}{}: {} source and {} destination servers ({} listings per slice), {} replicas wanted{}; re-reading {}",
        prepared.run.identity.dst,
        prepared.run.identity.src,
        if prefix.is_empty() { String::new() } else { format!(" under prefix {prefix}") },
        shard.as_ref().map(|s| format!(", shard {s}")).unwrap_or_default(),
        if filters.is_empty() { String::new() } else { format!(", only blocks with {filters}") },
        job.src.services.len(),
        job.dst.services.len(),
        dst_layout.locations.len(),
        job.replicas,
        if job.classes.is_empty() { String::new() } else { format!(" in storage classes {}", job.classes.join(", ")) },
        reread_text(args.reread),
    ));
    let dst_uuids: Vec<String> = job.dst.uuids().iter().map(|u| u.to_string()).collect();
    let totals = Arc::new(ValidateTotals::default());
    let counters = Arc::new(Counters::default());
    // -listen: the same /status, /metrics and /control as a copy (requests, errors, phase,
    // pause, cancel, concurrency, bandwidth); the findings are in the log and the files.
    let live = super::rsync::live_view(
        "validate",
        (&prepared.src_api_host, &prepared.dst_api_host),
        &prepared.run.config,
        counters.clone(),
        control.clone(),
    );
    let listener = match &args.common.listen {
        Some(options) => {
            Some(super::listen::start(options, live.clone()).map_err(RsyncError::from)?)
        }
        None => None,
    };
    let mut sinks: Vec<Box<dyn EventSink>> = vec![
        Box::new(ValidateLog::new(
            dst_uuids.clone(),
            totals.clone(),
            args.common.display == Display::Quiet,
        )),
        Box::new(live.board.sink()),
    ];
    let outputs = OutputPaths {
        report: args.common.report.clone(),
        ..args.outputs.clone()
    };
    // Only `-combined` and `-report` list blocks without findings.
    let every_block = outputs.combined.is_some() || outputs.report.is_some();
    if outputs.any() {
        sinks.push(Box::new(
            ValidateFiles::create(&outputs, dst_uuids)
                .map_err(|(path, source)| ValidateCommandError::Output { path, source })?,
        ));
    }
    let _signals = super::signals::install(control.clone(), {
        let totals = totals.clone();
        Box::new(move || {
            let t = totals.snapshot();
            log_line(&format!(
                "Status: {} of {} blocks checked, {} with problems, {} copies re-read",
                t.checked_blocks, t.src_blocks, t.problem_blocks, t.verified_copies
            ));
        })
    });
    let validate_job = ValidateJob {
        src: job.src.clone(),
        dst: job.dst.clone(),
        dst_signing,
        layout: dst_layout,
        wanted: wanted.clone(),
        select,
        reread: args.reread,
        every_block,
        config: prepared.run.config.clone(),
    };
    let report = validate::run(
        validate_job,
        factory,
        control,
        counters.clone(),
        totals,
        sinks,
    )?;
    let counts = &report.counts;
    let outcome = Outcome {
        stopped: report.stopped,
        problems: counts.problem_blocks,
    };
    log_line(&render(&report, &counters));
    if report.stopped.is_some() {
        log_line(&format!(
            "Stopped: {} of {} source blocks checked; the validation is incomplete",
            counts.checked_blocks, counts.src_blocks
        ));
    } else if counts.problem_blocks == 0 {
        log_line(&format!(
            "Validation passed: all {} source blocks are on the destination with {} replicas in rendezvous order{}.",
            counts.src_blocks,
            job.replicas,
            match args.reread {
                Reread::Off => "",
                Reread::All => ", every copy read back with the right MD5",
                Reread::Sample { .. } => ", every copy of the sample read back with the right MD5",
            }
        ));
    } else {
        log_line(&format!(
            "Validation failed: {} of {} source blocks have problems (see above, and the -combined / -report files)",
            counts.problem_blocks, counts.src_blocks
        ));
    }
    let window = counts.oldest_copy_mtime_ns.map(|oldest| {
        let since = u64::try_from(oldest / 1_000_000_000).unwrap_or(0);
        let config = prepared.dst_api.config().map_err(|e| e.to_string());
        let window = gc_window(config.as_ref().map_err(Clone::clone), since);
        log_line(&format!(
            "Garbage collection: the oldest destination copy of a source block was written {}; a destination keep-balance with trash on may trash unreferenced copies from {} (BlobSigningTTL {}s, {}). Migrate the collections before then, turn trash off, or renew the copies with `keepmover touch`.",
            utc_text(since),
            window.trash_from_text,
            window.blob_signing_ttl_s,
            window.ttl_source
        ));
        window
    });
    if let Some(path) = &args.common.json {
        let reread = match args.reread {
            Reread::Off => "none".to_string(),
            Reread::All => "all".to_string(),
            Reread::Sample { ppm, seed } => format!("sample {ppm} ppm, seed {seed}"),
        };
        let mut doc = ValidateJson::new(
            &report,
            &counters,
            outcome.code(),
            &prefix,
            wanted.replicas,
            &wanted.classes,
            &reread,
        );
        doc.shard = shard.clone();
        doc.filters = filters.clone();
        doc.garbage_collection = window
            .and_then(|w| serde_json::to_value(w).ok())
            .unwrap_or(serde_json::Value::Null);
        doc.write(path)
            .map_err(|source| ValidateCommandError::Output {
                path: path.clone(),
                source,
            })?;
    }
    if let (Some(listener), Some(options)) = (&listener, &args.common.listen) {
        listener.linger(options.linger);
    }
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sample_percentages() {
        assert_eq!(parse_sample("5%"), Ok(50_000));
        assert_eq!(parse_sample("5"), Ok(50_000));
        assert_eq!(parse_sample("0.5%"), Ok(5_000));
        assert_eq!(parse_sample("0.0001%"), Ok(1));
        assert_eq!(parse_sample("100%"), Ok(PPM_ALL));
        for bad in ["0%", "101%", "abc", "-5%", "1.00001%", "", "%", "1e3"] {
            assert!(parse_sample(bad).is_err(), "{bad}");
        }
    }
}
