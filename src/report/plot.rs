//! SVG pictures for `keepmover bench --plot`: throughput and p99 latency over time, or
//! against concurrency for a sweep. Operators read a curve faster than a CSV. Drawn with
//! plotters' SVG backend (no font files needed: text is emitted as SVG text).

use std::path::Path;

use plotters::prelude::*;

/// One series point: x (seconds, or concurrency), throughput MiB/s, p99 ms.
#[derive(Clone, Copy, Debug)]
pub struct PlotPoint {
    pub x: f64,
    pub mib_s: f64,
    pub p99_ms: f64,
}

/// Draws throughput (top) and p99 latency (bottom) against `x_label` into an SVG file.
pub fn draw(path: &Path, title: &str, x_label: &str, points: &[PlotPoint]) -> Result<(), String> {
    let fail = |e: &dyn std::fmt::Display| format!("drawing {}: {e}", path.display());
    let root = SVGBackend::new(path, (900, 600)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| fail(&e))?;
    let (top, bottom) = root.split_vertically(300);
    let x_max = points.iter().map(|p| p.x).fold(1.0, f64::max);
    let y_max = points.iter().map(|p| p.mib_s).fold(1.0, f64::max) * 1.1;
    let l_max = points.iter().map(|p| p.p99_ms).fold(1.0, f64::max) * 1.1;
    let mut chart = ChartBuilder::on(&top)
        .caption(format!("{title}: throughput"), ("sans-serif", 18))
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..x_max, 0f64..y_max)
        .map_err(|e| fail(&e))?;
    chart
        .configure_mesh()
        .x_desc(x_label)
        .y_desc("MiB/s")
        .draw()
        .map_err(|e| fail(&e))?;
    chart
        .draw_series(LineSeries::new(
            points.iter().map(|p| (p.x, p.mib_s)),
            &BLUE,
        ))
        .map_err(|e| fail(&e))?;
    let mut chart = ChartBuilder::on(&bottom)
        .caption(format!("{title}: p99 latency"), ("sans-serif", 18))
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..x_max, 0f64..l_max)
        .map_err(|e| fail(&e))?;
    chart
        .configure_mesh()
        .x_desc(x_label)
        .y_desc("p99 ms")
        .draw()
        .map_err(|e| fail(&e))?;
    chart
        .draw_series(LineSeries::new(
            points.iter().map(|p| (p.x, p.p99_ms)),
            &RED,
        ))
        .map_err(|e| fail(&e))?;
    root.present().map_err(|e| fail(&e))?;
    Ok(())
}
