//! `keepmover pull -src A -dst B`: the destination keepstores pull the missing blocks
//! themselves from the source keepstores (keepstore pull lists); keepmover plans, sends,
//! watches and confirms ([`crate::mover::pull`]), and copies what keeps failing. Also one
//! cluster, `-src A -dst A -src-services X -dst-services Y,Z`, to rebalance blocks onto
//! their rendezvous places. The settings, discovery, selection and reports are the copy's.

use std::sync::Arc;

use super::listen;
use super::rsync::{close, live_view, prepare, status_printer, terminal, RsyncArgs, RsyncError};
use crate::exit::Outcome;
use crate::keepstore::http::HttpFactory;
use crate::mover::events::EventSink;
use crate::mover::pull::{self, Diagnosis, PullError, PullPolicy, PullRun};
use crate::mover::{Control, Counters};
use crate::report::blocks::BlockReport;
use crate::report::summary::JsonSummary;
use crate::report::{human_bytes, log_line};

/// `pull`: the copy's arguments, plus how pull lists are sent and watched.
#[derive(Clone, Debug)]
pub struct PullArgs {
    pub copy: RsyncArgs,
    pub policy: PullPolicy,
}

#[derive(Debug, thiserror::Error)]
pub enum PullCommandError {
    #[error(transparent)]
    Copy(#[from] RsyncError),
    #[error(transparent)]
    Pull(#[from] PullError),
}

/// Runs a pull (or its dry run).
pub fn run(args: PullArgs, control: Arc<Control>) -> Result<Outcome, PullCommandError> {
    let copy = &args.copy;
    // -bwlimit limits keepmover's own transfers: here only the fallback copies.
    control.set_bwlimit(copy.bwlimit.0, copy.bwlimit.1);
    let prepared = prepare(copy, "pull")?;
    log_line("Before pull: pause keep-balance on the destination cluster for the duration: a running keep-balance sends its own pull lists, and each replaces keepmover's (keepmover sends what is still missing again, but every replacement costs a round of patience).");
    let job = &prepared.run.job;
    let same_key = match (&job.signing, &prepared.dst_signing_key) {
        (Some(src), Some(dst)) => Some(src.key.is(dst.as_bytes())),
        _ => None,
    };
    // Only asked for when a trial pull fails: each answer is an API request.
    let (src_api, dst_api, single_cluster) =
        (prepared.src_api, prepared.dst_api, prepared.single_cluster);
    let diagnose = Box::new(move || {
        let ttl =
            |api: &super::setup::ApiClient| api.discovery().ok().and_then(|d| d.blob_signature_ttl);
        Diagnosis {
            single_cluster,
            src_ttl: ttl(&src_api),
            dst_ttl: ttl(&dst_api),
            same_key,
        }
    });
    let counters = Arc::new(Counters::default());
    let live = live_view(
        "pull",
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
    let factory = HttpFactory::new(prepared.http.clone(), &[&job.src, &job.dst]);
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
    let finished = pull::run(
        PullRun {
            run: prepared.run,
            policy: args.policy.clone(),
            diagnose,
        },
        factory,
        control,
        counters.clone(),
        sinks,
    )?;
    let report = &finished.report;
    let outcome = if let Some(dry) = &finished.dry_run {
        let p = &report.plan;
        log_line(&format!(
            "Dry run (pull): would pull {} blocks ({}) as {} list items in {} lists to {} destination keepstores, over {} slices; no trial pull was made and nothing was sent.",
            p.to_copy_blocks,
            human_bytes(p.to_copy_bytes),
            dry.items,
            dry.lists,
            dry.servers,
            report.slices
        ));
        Outcome::default()
    } else {
        let outcome = close(report);
        let t = &report.totals;
        log_line(&format!(
            "Pull: {} blocks ({}) pulled by the destination keepstores and confirmed in their indexes; {} blocks ({}) copied through keepmover after their pulls failed; {} failed; {} pull lists sent, {} list items sent again.",
            t.pulled_blocks,
            human_bytes(t.pulled_bytes),
            t.fallback_blocks,
            human_bytes(t.fallback_bytes),
            t.failed_blocks,
            t.pull_lists,
            t.pull_items_resent
        ));
        outcome
    };
    if let Some(path) = &copy.json {
        let mut summary = JsonSummary::new("pull", report, &counters, outcome.code());
        if let Some(dry) = &finished.dry_run {
            summary.extra = serde_json::json!({
                "dry_run_lists": {"items": dry.items, "lists": dry.lists, "servers": dry.servers}
            });
        }
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
