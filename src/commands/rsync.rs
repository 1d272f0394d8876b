//! `keepmover -src A -dst B` (and `keepmover rsync ...`): keep-rsync's job. Reads both
//! settings files, discovers both clusters, and runs the engine with keep-rsync's log lines.

use std::path::PathBuf;
use std::time::Duration;

use super::setup::{build_cluster, default_classes, load_settings, ApiClient, SetupError};
use crate::mover::{self, EngineConfig, Signing, TransferContext};
use crate::net::{ClientConfig, IoBackend};
use crate::report::{log_line, Display, Progress};

/// How progress is shown (`-progress`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProgressStyle {
    Auto,
    Bar,
    Log,
}

/// Every option of the rsync form, typed. Built by `cli`.
#[derive(Clone, Debug)]
pub struct RsyncArgs {
    pub src: String,
    pub dst: String,
    pub src_keep_services_json: Option<String>,
    pub dst_keep_services_json: Option<String>,
    pub replications: u32,
    pub prefix: String,
    pub src_blob_signature_ttl: Duration,
    pub workers: usize,
    pub concurrency: usize,
    pub memory_budget: u64,
    pub io: IoBackend,
    pub checkpoint: Option<PathBuf>,
    pub connect_timeout: Duration,
    pub first_byte_timeout: Duration,
    pub idle_timeout: Duration,
    pub retries: u32,
    pub retry_delay: Duration,
    pub prefix_length: usize,
    pub progress: ProgressStyle,
    pub dry_run: bool,
    pub skip_count: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum RsyncError {
    #[error(transparent)]
    Setup(#[from] SetupError),
    #[error(transparent)]
    Engine(#[from] mover::EngineError),
    #[error("Error while syncing data: {failed} of {total} blocks could not be copied (see the errors above); rerun to retry them")]
    BlocksFailed { failed: u64, total: u64 },
}

/// Runs the copy; `Ok` only when every block made it.
pub fn run(args: RsyncArgs) -> Result<(), RsyncError> {
    let http = ClientConfig {
        connect_timeout: args.connect_timeout,
        first_byte_timeout: args.first_byte_timeout,
        idle_timeout: args.idle_timeout,
        ..mover::default_http_config()
    };
    let src_settings = load_settings("src", &args.src)?;
    let dst_settings = load_settings("dst", &args.dst)?;
    let src_api = ApiClient::new(&src_settings, args.io, http.clone())?;
    let dst_api = ApiClient::new(&dst_settings, args.io, http.clone())?;
    let src = build_cluster(
        "src",
        &src_settings,
        args.src_keep_services_json.as_deref(),
        &src_api,
    )?;
    let dst = build_cluster(
        "dst",
        &dst_settings,
        args.dst_keep_services_json.as_deref(),
        &dst_api,
    )?;

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
                    .ok_or_else(|| SetupError("source discovery document has no blobSignatureTtl; use -src-blob-signature-ttl".into()))?
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
            .ok_or_else(|| SetupError("destination discovery document has no defaultCollectionReplication; use -replications".into()))?
    } else {
        args.replications
    };
    let storage_classes = default_classes(&dst_api);

    let display = match args.progress {
        ProgressStyle::Auto => Display::auto(),
        ProgressStyle::Bar => Display::Bar,
        ProgressStyle::Log => Display::Log,
    };
    let progress = Progress::new(display);
    let config = EngineConfig {
        transfer: TransferContext {
            src,
            dst,
            signing,
            replicas,
            storage_classes,
            retries: args.retries,
            retry_delay: args.retry_delay,
        },
        prefix: args.prefix,
        prefix_length: args.prefix_length,
        workers: args.workers,
        concurrency: args.concurrency,
        memory_budget: usize::try_from(args.memory_budget).unwrap_or(usize::MAX),
        io: args.io,
        http,
        checkpoint: args.checkpoint,
        dry_run: args.dry_run,
        count_first: !args.skip_count || args.dry_run,
        slice_target: 1_000_000,
    };
    let report = mover::run(config, progress.clone())?;
    let summary = progress.finish();
    if args.dry_run {
        log_line(&format!(
            "Dry run: would copy {} blocks ({} bytes) in {} slices.",
            report.to_copy, report.to_copy_bytes, report.slices
        ));
        return Ok(());
    }
    let unaccounted = report
        .to_copy
        .saturating_sub(summary.copied_blocks + summary.failed_blocks);
    if summary.failed_blocks > 0 || unaccounted > 0 {
        log_line(&summary.render());
        return Err(RsyncError::BlocksFailed {
            failed: summary.failed_blocks + unaccounted,
            total: report.to_copy,
        });
    }
    log_line(&format!(
        "Successfully copied to destination {} blocks.",
        summary.copied_blocks
    ));
    log_line(&format!("{} (io: {})", summary.render(), report.io_backend));
    Ok(())
}
