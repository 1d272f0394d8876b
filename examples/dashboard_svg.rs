//! Draws the panels of `docs/grafana-dashboard.json` as one SVG from a file of `/metrics`
//! scrapes taken during a real run (see `tools/scrape_run.sh`), so the README can show what
//! the dashboard shows without a Prometheus and a Grafana. Each panel computes in Rust what
//! its PromQL computes: `rate()` over a sliding window of scrapes, and `histogram_quantile`
//! over the window's bucket increases (linear inside a bucket, as Prometheus does).
//!
//! ```sh
//! cargo run --release --example dashboard_svg -- scrapes.txt docs/dashboard.svg
//! ```
//!
//! The scrape file is the expositions one after another, each preceded by a line
//! `# SCRAPE <unix seconds>`.

use std::collections::BTreeMap;

use plotters::prelude::*;

/// Scrapes a rate looks back over (one a second: a 3 s window).
const WINDOW: usize = 3;

type Labels = BTreeMap<String, String>;

struct Scrape {
    t: f64,
    samples: Vec<(String, Labels, f64)>,
}

impl Scrape {
    /// Sum of the samples of `name` whose labels match `filter`, grouped by `by`.
    fn grouped(
        &self,
        name: &str,
        by: &[&str],
        filter: &dyn Fn(&Labels) -> bool,
    ) -> BTreeMap<Vec<String>, f64> {
        let mut out = BTreeMap::new();
        for (n, labels, v) in &self.samples {
            if n == name && filter(labels) {
                let key = by
                    .iter()
                    .map(|b| labels.get(*b).cloned().unwrap_or_default())
                    .collect();
                *out.entry(key).or_insert(0.0) += v;
            }
        }
        out
    }

    fn value(&self, name: &str) -> f64 {
        self.grouped(name, &[], &|_| true).values().sum()
    }
}

fn parse_labels(text: &str) -> Labels {
    let mut labels = Labels::new();
    for part in text.split("\",") {
        if let Some((k, v)) = part.split_once("=\"") {
            labels.insert(k.trim().to_string(), v.trim_end_matches('"').to_string());
        }
    }
    labels
}

fn parse(text: &str) -> Vec<Scrape> {
    let mut scrapes: Vec<Scrape> = Vec::new();
    for line in text.lines() {
        if let Some(t) = line.strip_prefix("# SCRAPE ") {
            if let Ok(t) = t.trim().parse() {
                scrapes.push(Scrape {
                    t,
                    samples: Vec::new(),
                });
            }
            continue;
        }
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let Some(scrape) = scrapes.last_mut() else {
            continue;
        };
        let (series, value) = match line.rsplit_once(' ') {
            Some(split) => split,
            None => continue,
        };
        let Ok(value) = value.parse::<f64>() else {
            continue;
        };
        let (name, labels) = match series.split_once('{') {
            Some((name, rest)) => (name, parse_labels(rest.trim_end_matches('}'))),
            None => (series, Labels::new()),
        };
        scrapes_push(scrape, name, labels, value);
    }
    scrapes
}

fn scrapes_push(scrape: &mut Scrape, name: &str, labels: Labels, value: f64) {
    scrape.samples.push((name.to_string(), labels, value));
}

/// A named line of (seconds since the first scrape, value).
type Series = (String, Vec<(f64, f64)>);

/// `rate(name[window])` per group.
fn rate(
    s: &[Scrape],
    name: &str,
    by: &[&str],
    scale: f64,
    filter: &dyn Fn(&Labels) -> bool,
) -> Vec<Series> {
    let mut lines: BTreeMap<Vec<String>, Vec<(f64, f64)>> = BTreeMap::new();
    for i in WINDOW..s.len() {
        let (a, b) = (&s[i - WINDOW], &s[i]);
        let before = a.grouped(name, by, filter);
        for (key, now) in b.grouped(name, by, filter) {
            let then = before.get(&key).copied().unwrap_or(0.0);
            let r = (now - then).max(0.0) / (b.t - a.t) * scale;
            lines.entry(key).or_default().push((b.t - s[0].t, r));
        }
    }
    lines.into_iter().map(|(k, v)| (k.join(" "), v)).collect()
}

/// A gauge (or any sample) over time, summed.
fn gauge(s: &[Scrape], name: &str, scale: f64) -> Vec<(f64, f64)> {
    s.iter()
        .map(|x| (x.t - s[0].t, x.value(name) * scale))
        .collect()
}

/// `histogram_quantile(q, sum by (le, by...) (rate(bucket[window])))`, in milliseconds.
fn quantile(s: &[Scrape], q: f64, by: &str, filter: &dyn Fn(&Labels) -> bool) -> Vec<Series> {
    let name = "keepmover_request_duration_seconds_bucket";
    let mut lines: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
    for i in WINDOW..s.len() {
        let (a, b) = (&s[i - WINDOW], &s[i]);
        let before = a.grouped(name, &[by, "le"], filter);
        let mut groups: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
        for (key, now) in b.grouped(name, &[by, "le"], filter) {
            let then = before.get(&key).copied().unwrap_or(0.0);
            let le = if key[1] == "+Inf" {
                f64::INFINITY
            } else {
                key[1].parse().unwrap_or(0.0)
            };
            groups
                .entry(key[0].clone())
                .or_default()
                .push((le, now - then));
        }
        for (group, mut buckets) in groups {
            buckets.sort_by(|x, y| x.0.total_cmp(&y.0));
            let total = buckets.last().map_or(0.0, |b| b.1);
            if total <= 0.0 {
                continue;
            }
            let rank = q * total;
            let (mut lower, mut below) = (0.0, 0.0);
            let mut value = None;
            for &(le, cum) in &buckets {
                if cum >= rank {
                    value = Some(if le.is_infinite() {
                        lower
                    } else {
                        lower + (le - lower) * (rank - below) / (cum - below).max(1e-9)
                    });
                    break;
                }
                lower = le;
                below = cum;
            }
            if let Some(v) = value {
                lines
                    .entry(group)
                    .or_default()
                    .push((b.t - s[0].t, v * 1000.0));
            }
        }
    }
    lines.into_iter().collect()
}

const COLORS: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(255, 127, 14),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
];

fn panel(
    area: &DrawingArea<SVGBackend, plotters::coord::Shift>,
    title: &str,
    unit: &str,
    series: &[Series],
    x_max: f64,
) -> Result<(), String> {
    let y_max = series
        .iter()
        .flat_map(|(_, pts)| pts.iter().map(|p| p.1))
        .filter(|v| v.is_finite())
        .fold(0.0f64, f64::max)
        .max(1e-3)
        * 1.15;
    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 16))
        .margin(8)
        .x_label_area_size(24)
        .y_label_area_size(52)
        .build_cartesian_2d(0f64..x_max, 0f64..y_max)
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .x_desc("seconds")
        .y_desc(unit)
        .light_line_style(RGBColor(235, 235, 235))
        .draw()
        .map_err(|e| e.to_string())?;
    // Limits and budgets first, wide and grey, so the measured line shows on top of them.
    let is_limit = |name: &str| name.starts_with("limit") || name.starts_with("budget");
    let mut order: Vec<usize> = (0..series.len()).collect();
    order.sort_by_key(|&i| !is_limit(&series[i].0));
    for (i, (name, pts)) in order.into_iter().map(|i| (i, &series[i])) {
        let (color, width) = if is_limit(name) {
            (RGBColor(160, 160, 160), 4)
        } else {
            (COLORS[i % COLORS.len()], 2)
        };
        chart
            .draw_series(LineSeries::new(
                pts.iter().copied(),
                color.stroke_width(width),
            ))
            .map_err(|e| e.to_string())?
            .label(name.clone())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 14, y)], color.stroke_width(width))
            });
    }
    if series.iter().any(|(n, _)| !n.is_empty()) {
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.8))
            .border_style(RGBColor(200, 200, 200))
            .label_font(("sans-serif", 11))
            .draw()
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

fn short_server(name: &str) -> String {
    // srcaa-bi6l4-000000000000001 -> srcaa…01
    match (name.get(..5), name.get(name.len().saturating_sub(2)..)) {
        (Some(a), Some(b)) if name.len() > 8 => format!("{a}-{b}"),
        _ => name.to_string(),
    }
}

fn main() -> Result<(), String> {
    let args: Vec<String> = std::env::args().collect();
    let (Some(input), Some(output)) = (args.get(1), args.get(2)) else {
        return Err("usage: dashboard_svg SCRAPES.txt OUT.svg".into());
    };
    let text = std::fs::read_to_string(input).map_err(|e| format!("{input}: {e}"))?;
    let s = parse(&text);
    if s.len() <= WINDOW {
        return Err(format!(
            "{input}: {} scrapes, need more than {WINDOW}",
            s.len()
        ));
    }
    let x_max = s[s.len() - 1].t - s[0].t;
    let all = |_: &Labels| true;
    let mib = 1.0 / (1 << 20) as f64;
    let root = SVGBackend::new(output, (1500, 980)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let (head, body) = root.split_vertically(40);
    head.draw(&Text::new(
        "keepmover dashboard (docs/grafana-dashboard.json), drawn from /metrics scraped every second during a copy against keepsim",
        (12, 12),
        ("sans-serif", 18),
    ))
    .map_err(|e| e.to_string())?;
    let areas = body.split_evenly((3, 3));
    let mut throughput = rate(&s, "keepmover_copied_bytes_total", &[], mib, &all);
    if let Some(first) = throughput.first_mut() {
        first.0 = "copied".into();
    }
    throughput.push((
        "limit down".into(),
        gauge(&s, "keepmover_bwlimit_down_bytes_per_second", mib)
            .into_iter()
            .filter(|p| p.1 > 0.0)
            .collect(),
    ));
    panel(&areas[0], "Throughput", "MiB/s", &throughput, x_max)?;
    let mut blocks = Vec::new();
    for (name, label) in [
        ("keepmover_copied_blocks_total", "copied"),
        ("keepmover_skipped_blocks_total", "skipped"),
        ("keepmover_failed_blocks_total", "failed"),
    ] {
        if let Some((_, pts)) = rate(&s, name, &[], 1.0, &all).pop() {
            blocks.push((label.to_string(), pts));
        }
    }
    panel(&areas[1], "Blocks per second", "blocks/s", &blocks, x_max)?;
    let limit: Vec<(f64, f64)> = s
        .iter()
        .map(|x| {
            (
                x.t - s[0].t,
                x.value("keepmover_concurrency_per_worker_blocks") * x.value("keepmover_workers"),
            )
        })
        .collect();
    panel(
        &areas[2],
        "Blocks in flight",
        "blocks",
        &[
            (
                "in flight".into(),
                gauge(&s, "keepmover_blocks_in_flight", 1.0),
            ),
            ("limit".into(), limit),
        ],
        x_max,
    )?;
    let mut by_op = Vec::new();
    for q in [0.5, 0.99] {
        for (op, pts) in quantile(&s, q, "op", &|l| l.get("op").is_some_and(|o| o != "index")) {
            by_op.push((format!("{op} p{}", (q * 100.0) as u32), pts));
        }
    }
    panel(
        &areas[3],
        "Request latency p50 / p99 by operation",
        "ms",
        &by_op,
        x_max,
    )?;
    let by_server: Vec<Series> = quantile(&s, 0.99, "server", &|l| {
        l.get("op").is_some_and(|o| o == "get" || o == "put")
    })
    .into_iter()
    .map(|(n, p)| (short_server(&n), p))
    .collect();
    panel(
        &areas[4],
        "Request latency p99 by server",
        "ms",
        &by_server,
        x_max,
    )?;
    let mut errors: Vec<Series> = rate(&s, "keepmover_request_errors_total", &["kind"], 1.0, &all);
    if let Some((_, pts)) = rate(&s, "keepmover_retried_errors_total", &[], 1.0, &all).pop() {
        errors.push(("retried".into(), pts));
    }
    panel(
        &areas[5],
        "Errors and retries",
        "per second",
        &errors,
        x_max,
    )?;
    panel(
        &areas[6],
        "Buffers",
        "MiB",
        &[
            (
                "in use".into(),
                gauge(&s, "keepmover_buffer_in_use_bytes", mib),
            ),
            (
                "budget".into(),
                gauge(&s, "keepmover_buffer_budget_bytes", mib),
            ),
        ],
        x_max,
    )?;
    let ratio = |num: &str, den: &str| -> Vec<(f64, f64)> {
        s.iter()
            .map(|x| (x.t - s[0].t, 100.0 * x.value(num) / x.value(den).max(1.0)))
            .collect()
    };
    panel(
        &areas[7],
        "Progress, slices done, checkpoint watermark",
        "%",
        &[
            (
                "bytes copied".into(),
                ratio("keepmover_copied_bytes_total", "keepmover_planned_bytes"),
            ),
            (
                "slices done".into(),
                ratio("keepmover_slices_done_total", "keepmover_slices"),
            ),
            (
                "watermark".into(),
                gauge(&s, "keepmover_checkpoint_watermark_ratio", 100.0),
            ),
        ],
        x_max,
    )?;
    let phases = ["planning", "copying", "paused", "stopping", "done"];
    let phase: Vec<(f64, f64)> =
        s.iter()
            .map(|x| {
                let current = x.samples.iter().find(|(n, l, v)| {
                    n == "keepmover_phase" && *v == 1.0 && l.contains_key("phase")
                });
                let index = current.and_then(|(_, l, _)| {
                    phases
                        .iter()
                        .position(|p| Some(&p.to_string()) == l.get("phase"))
                });
                (x.t - s[0].t, index.map_or(0.0, |i| i as f64))
            })
            .collect();
    panel(
        &areas[8],
        "Phase (0 planning, 1 copying, 2 paused, 3 stopping, 4 done)",
        "phase",
        &[(String::new(), phase)],
        x_max,
    )?;
    root.present().map_err(|e| e.to_string())?;
    println!("{output}: {} scrapes over {x_max:.0}s", s.len());
    Ok(())
}
