//! `tidelog bench --svg`: throughput against concurrent tasks, one line per
//! journal configuration (system, mode, record size), and the one-task
//! baselines as points. Plain SVG text, so no system fonts are needed.

use std::collections::BTreeSet;
use std::path::Path;

use plotters::prelude::*;

use super::report::Cell;

const PALETTE: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
];

pub(crate) fn write_svg(path: &Path, cells: &[Cell]) -> Result<(), String> {
    let err = |e: &dyn std::fmt::Display| format!("{}: {e}", path.display());
    let tasks: Vec<usize> = cells.iter().map(|c| c.tasks).collect::<BTreeSet<_>>().into_iter().collect();
    // x is the position of a task count in `tasks` (they are far apart: 1, 64, 256).
    let x_of = |t: usize| tasks.iter().position(|&x| x == t).unwrap_or(0) as f64;
    // A log-scale rate axis: one-task baselines (thousands per second) and
    // 256-task journals (hundreds of thousands) are both readable.
    let top = cells.iter().map(|c| c.rate).fold(1.0, f64::max) * 1.5;
    let bottom = cells.iter().map(|c| c.rate).filter(|&r| r > 0.0).fold(top, f64::min) / 1.5;
    let root = SVGBackend::new(path, (960, 600)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let mut chart = ChartBuilder::on(&root)
        .caption("tidelog bench: operations per second vs concurrent tasks", ("sans-serif", 20))
        .margin(16)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(-0.2..(tasks.len() as f64 - 0.8).max(0.2), (bottom.max(1.0)..top).log_scale())
        .map_err(|e| err(&e))?;
    chart
        .configure_mesh()
        .x_labels(tasks.len().max(2))
        .x_label_formatter(&|x| tasks.get(x.round() as usize).map_or(String::new(), |t| format!("{t} tasks")))
        .y_desc("ops/s (log scale)")
        .draw()
        .map_err(|e| err(&e))?;
    let mut series: Vec<(String, String, usize)> = Vec::new();
    for c in cells {
        let key = (c.system.clone(), c.mode.clone(), c.record);
        if !series.contains(&key) {
            series.push(key);
        }
    }
    for (i, (system, mode, record)) in series.iter().enumerate() {
        let color = PALETTE[i % PALETTE.len()];
        let mut points: Vec<(f64, f64)> = cells
            .iter()
            .filter(|c| (&c.system, &c.mode, c.record) == (system, mode, *record))
            .map(|c| (x_of(c.tasks), c.rate.max(1.0)))
            .collect();
        points.sort_by(|a, b| a.0.total_cmp(&b.0));
        let label = format!("{system}, {mode}, {record} B");
        let drawn = if points.len() > 1 {
            chart.draw_series(LineSeries::new(points.clone(), color.stroke_width(2))).map_err(|e| err(&e))?
        } else {
            chart.draw_series(points.iter().map(|&p| Cross::new(p, 6, color.stroke_width(2)))).map_err(|e| err(&e))?
        };
        drawn.label(label).legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], color.stroke_width(2)));
        chart.draw_series(points.iter().map(|&p| Circle::new(p, 3, color.filled()))).map_err(|e| err(&e))?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(|e| err(&e))?;
    root.present().map_err(|e| err(&e))
}
