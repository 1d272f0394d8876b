//! The Grafana dashboard in `docs/` is built on the metrics keepmover exports: every
//! `keepmover_*` name in its queries is a family (or a histogram's `_bucket`/`_count`/`_sum`)
//! that `/metrics` serves, so a renamed metric breaks this test, not an operator's dashboard.

use std::collections::BTreeSet;
use std::sync::Arc;

use keepmover::keepstore::ErrorKind;
use keepmover::mover::counters::Op;
use keepmover::mover::{Control, Counters};
use keepmover::report::metrics;
use keepmover::report::status::{JobInfo, Live};

fn names_in(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("keepmover_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        names.insert(tail[..end].to_string());
        rest = &tail[end..];
    }
    names
}

#[test]
fn every_dashboard_query_uses_exported_metrics() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/grafana-dashboard.json");
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).expect("dashboard")).expect("JSON");
    let counters = Arc::new(Counters::default());
    counters.observe(Op::Get, "srv", 0.01);
    counters.error("srv", ErrorKind::Timeout);
    // The MD5 kernel figures are process-wide: hash something so they are served.
    keepmover::hash::digest_many(&[&[7u8; 4096][..]; 4]);
    let live = Live::new(JobInfo::default(), counters, Arc::new(Control::new()));
    let exposition = metrics::render(&live);
    let served: BTreeSet<String> = exposition
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(str::to_string)
        .collect();
    let panels = dashboard["panels"].as_array().expect("panels");
    assert!(panels.len() >= 10, "{} panels", panels.len());
    let mut used = BTreeSet::new();
    for panel in panels {
        let title = panel["title"].as_str().expect("title");
        let targets = panel["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "{title} has no query");
        for target in targets {
            let expr = target["expr"].as_str().expect("expr");
            for name in names_in(expr) {
                assert!(
                    served.contains(&name),
                    "{title}: {name} is not served by /metrics"
                );
                used.insert(name);
            }
        }
    }
    for wanted in [
        "keepmover_copied_bytes_total",
        "keepmover_blocks_in_flight",
        "keepmover_request_duration_seconds_bucket",
        "keepmover_request_errors_total",
        "keepmover_checkpoint_watermark_ratio",
        "keepmover_buffer_in_use_bytes",
    ] {
        assert!(used.contains(wanted), "the dashboard never shows {wanted}");
    }
}
