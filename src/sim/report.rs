//! Presenting a simulation: a table for people, JSON for tools, and an SVG of demand against each
//! policy's ready capacity over time.

use super::SimReport;
use super::corpus::{self, CorpusReport};
use crate::format::thousands;
use plotters::prelude::*;
use std::fmt::Write as _;
use std::path::Path;

/// Most points per series in the chart: a week at one-second steps would make a 50 MB SVG.
const MAX_CHART_POINTS: usize = 2000;

/// The report as an aligned table.
pub fn table(report: &SimReport) -> String {
    let mut out = String::new();
    let hours = report.duration_seconds as f64 / 3600.0;
    let _ = writeln!(out, "workload: {}", report.workload);
    let _ = writeln!(
        out,
        "{:.1} h simulated, {} input + {} output tokens counted{}\n",
        hours,
        thousands(report.input_tokens),
        thousands(report.output_tokens),
        if report.warm_up_seconds > 0 {
            format!(
                "; the first {} s (warm-up) are left out of every figure",
                report.warm_up_seconds
            )
        } else {
            String::new()
        }
    );
    let _ = writeln!(
        out,
        "{:<12} {:>10} {:>12} {:>12} {:>16} {:>12} {:>7}",
        "POLICY", "GPU-HOURS", "POOL $", "API $", "UNDER-PROV s", "P99 QUEUE s", "SCALES"
    );
    for p in &report.policies {
        let share = p.under_provisioned_seconds as f64 / report.evaluated_seconds.max(1) as f64;
        let _ = writeln!(
            out,
            "{:<12} {:>10.2} {:>12} {:>12} {:>16} {:>12.2} {:>7}",
            p.name,
            p.gpu_hours,
            format!("${:.2}", p.pool_cost_usd),
            p.api_cost_usd
                .map_or("n/a".to_string(), |c| format!("${c:.2}")),
            format!("{} ({:.2}%)", p.under_provisioned_seconds, share * 100.0),
            p.p99_queue_seconds,
            p.scale_events
        );
    }
    if report.synthetic {
        let _ = writeln!(
            out,
            "\nSYNTHETIC workload: built from a real trace, not a recording."
        );
    }
    out
}

/// Width of one policy's cell in the corpus table: "1.31x  6.66%".
const CELL: usize = 14;

/// The corpus as one table: a row per workload and lag, a cell per policy (GPU-hours as a
/// multiple of the oracle's, share of seconds under-provisioned), crossover's p99 queueing delay
/// against the oracle's, the targets crossover misses, and the worst case of every policy.
pub fn corpus_table(report: &CorpusReport) -> String {
    let mut out = String::new();
    let Some(first) = report.runs.first() else {
        return "the corpus is empty\n".into();
    };
    let names: Vec<&str> = first
        .report
        .policies
        .iter()
        .map(|p| p.name.as_str())
        .filter(|n| *n != "oracle")
        .collect();
    let _ = writeln!(
        out,
        "corpus: {} runs (each workload without and with a {} s metrics lag); the first {} s of \
         every replay are warm-up, left out of every figure",
        report.runs.len(),
        corpus::LAG_SECONDS,
        report.warm_up_seconds
    );
    let _ = writeln!(
        out,
        "cells: GPU-hours as a multiple of the oracle's, share of seconds under-provisioned\n"
    );
    let _ = write!(out, "{:<20} {:>4} {:>8}", "WORKLOAD", "LAG", "ORACLE-H");
    for n in &names {
        let _ = write!(out, "  {n:<CELL$}");
    }
    let _ = writeln!(out, "  {:>11}  MISSED", "P99 s X/OR");
    for run in &report.runs {
        let oracle = run.policy("oracle").map_or(0.0, |p| p.gpu_hours);
        let _ = write!(
            out,
            "{:<20} {:>3}s {:>8.2}",
            run.name, run.metrics_lag_seconds, oracle
        );
        for n in &names {
            let cell = run.figures(n).map_or("n/a".to_string(), |f| {
                format!("{:.2}x {:>6.2}%", f.oracle_ratio, f.under_share * 100.0)
            });
            let _ = write!(out, "  {cell:<CELL$}");
        }
        let p99 = match (run.policy("crossover"), run.policy("oracle")) {
            (Some(c), Some(o)) => format!("{:.1}/{:.1}", c.p99_queue_seconds, o.p99_queue_seconds),
            _ => "n/a".into(),
        };
        let misses = run.misses();
        let missed = if misses.is_empty() {
            "-".to_string()
        } else {
            misses.join(", ")
        };
        let _ = writeln!(out, "  {p99:>11}  {missed}");
    }
    let _ = write!(out, "{:<20} {:>4} {:>8}", "worst case", "", "");
    for n in &names {
        let cell = report
            .worst(n)
            .map_or("n/a".to_string(), |((r, _), (u, _))| {
                format!("{r:.2}x {:>6.2}%", u * 100.0)
            });
        let _ = write!(out, "  {cell:<CELL$}");
    }
    let _ = writeln!(out);
    if let Some(((r, rr), (u, ur))) = report.worst("crossover") {
        let met = report.runs.iter().filter(|r| r.misses().is_empty()).count();
        let _ = writeln!(
            out,
            "\ncrossover, worst case: {r:.2}x the oracle's GPU-hours ({}, {} s lag); {:.2}% of \
             seconds under-provisioned ({}, {} s lag); every target met on {met} of {} runs",
            rr.name,
            rr.metrics_lag_seconds,
            u * 100.0,
            ur.name,
            ur.metrics_lag_seconds,
            report.runs.len()
        );
    }
    let _ = writeln!(
        out,
        "MISSED: G over {:.2}x the oracle's GPU-hours; U over {:.1}% of seconds under-provisioned; \
         Q p99 queueing over max({:.0} s, the oracle's); B not fewer GPU-hours than that baseline \
         at no more under-provisioned seconds; S over {:.2}x the static pool sized for the peak",
        corpus::MAX_ORACLE_RATIO,
        corpus::MAX_UNDER_SHARE * 100.0,
        corpus::MIN_P99_ALLOWANCE_SECONDS,
        corpus::MAX_STATIC_PEAK_RATIO
    );
    out
}

/// `{"policies": [...]}` plus the workload's description.
pub fn json(report: &SimReport) -> Result<String, serde_json::Error> {
    serde_json::to_string_pretty(report)
}

/// Why the chart could not be drawn.
#[derive(Debug, thiserror::Error)]
#[error("cannot draw the chart: {0}")]
pub struct ChartError(String);

/// Draws demand (replicas of full capacity) against each policy's ready replicas.
pub fn svg(report: &SimReport, path: &Path) -> Result<(), ChartError> {
    let err = |e: &dyn std::fmt::Display| ChartError(e.to_string());
    let n = report.demand.len().max(1);
    let bucket = n.div_ceil(MAX_CHART_POINTS).max(1);
    let minutes = |i: usize| i as f64 / 60.0;
    // Each point is the bucket's maximum, so short spikes stay visible.
    let demand: Vec<(f64, f64)> = report
        .demand
        .chunks(bucket)
        .enumerate()
        .map(|(i, c)| (minutes(i * bucket), c.iter().copied().fold(0.0, f64::max)))
        .collect();
    let top = report
        .policies
        .iter()
        .flat_map(|p| p.ready.iter().map(|&r| r as f64))
        .chain(demand.iter().map(|d| d.1))
        .fold(1.0, f64::max)
        * 1.1;

    let root = SVGBackend::new(path, (1200, 600)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!("demand vs ready replicas: {}", report.workload),
            ("sans-serif", 16),
        )
        .margin(10)
        .x_label_area_size(40)
        .y_label_area_size(50)
        .build_cartesian_2d(0.0..minutes(n), 0.0..top)
        .map_err(|e| err(&e))?;
    chart
        .configure_mesh()
        .x_desc("minutes")
        .y_desc("replicas")
        .draw()
        .map_err(|e| err(&e))?;
    chart
        .draw_series(LineSeries::new(demand, BLACK.stroke_width(2)))
        .map_err(|e| err(&e))?
        .label("demand (replicas at full capacity)")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLACK));
    for (i, p) in report.policies.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        let points = p.ready.chunks(bucket).enumerate().map(|(j, c)| {
            (
                minutes(j * bucket),
                c.iter().copied().min().unwrap_or(0) as f64,
            )
        });
        chart
            .draw_series(LineSeries::new(points, color))
            .map_err(|e| err(&e))?
            .label(format!("{} ready", p.name))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|e| err(&e))?;
    root.present().map_err(|e| err(&e))
}
