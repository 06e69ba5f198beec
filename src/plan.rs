//! `crossover plan`: prices a pool from its manifest against the hosted API for a monthly token
//! volume, with no cluster. Reading the manifest and writing the SVG are the only IO; the figures
//! come from `cost::compare`, the same function the controller uses.

use crate::api::{Cheaper, InferencePool, InferencePoolSpec};
use crate::cost::{self, Comparison, CostError, MonthlyVolume, ReplicaPrice};
use crate::format::{self, parse_tokens};
use clap::{Args, ValueEnum};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use thiserror::Error;

/// Output tokens per input token when `--output-tokens` is not given (DOMAIN.md scenarios).
pub const DEFAULT_OUTPUT_SHARE: f64 = cost::DEFAULT_OUTPUT_TO_INPUT_RATIO;

/// The sweep's range of input tokens per month: 1M to 10B.
pub const SWEEP_FROM_TOKENS: f64 = 1e6;
pub const SWEEP_TO_TOKENS: f64 = 1e10;
/// Sweep points per decade of volume.
const SWEEP_POINTS_PER_DECADE: usize = 4;

/// `crossover plan` arguments.
#[derive(Args, Debug, Clone)]
pub struct PlanArgs {
    /// The InferencePool manifest (YAML) to price.
    #[arg(short = 'f', long = "filename", value_name = "FILE")]
    pub file: PathBuf,

    /// Input (prompt) tokens per month: 500M, 1.5B, 20000.
    #[arg(long, value_parser = parse_tokens, value_name = "TOKENS")]
    pub input_tokens: f64,

    /// Output (generated) tokens per month; default 30% of the input.
    #[arg(long, value_parser = parse_tokens, value_name = "TOKENS")]
    pub output_tokens: Option<f64>,

    /// Replicas to price; default spec.minReplicas (at least 1).
    #[arg(long)]
    pub replicas: Option<u32>,

    /// table (for people) or json (for scripts).
    #[arg(short = 'o', long, value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,

    /// Also show pool against API across volumes from 1M to 10B input tokens a month.
    #[arg(long)]
    pub sweep: bool,

    /// Write the sweep as an SVG chart to this file.
    #[arg(long, value_name = "FILE")]
    pub svg: Option<PathBuf>,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputFormat {
    Table,
    Json,
}

/// Why a plan could not be made.
#[derive(Debug, Error)]
pub enum PlanError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} is not a valid InferencePool manifest: {reason}")]
    Manifest { path: String, reason: String },
    #[error("{path}: {source}")]
    Cost { path: String, source: CostError },
    #[error("cannot write the chart to {path}: {reason}")]
    Svg { path: String, reason: String },
}

/// A priced pool: the comparison plus what the table explains about it.
#[derive(Clone, Debug)]
pub struct Plan {
    pub name: String,
    pub spec: InferencePoolSpec,
    pub comparison: Comparison,
    /// true when the output volume was not given and is 30% of the input.
    pub output_assumed: bool,
    /// Average load over the priced replicas' capacity; None without spec.capacity.
    pub utilization: Option<f64>,
    /// Replicas the average load needs at the target utilization; None without spec.capacity.
    pub replicas_needed: Option<u32>,
}

/// Reads one InferencePool from a YAML file (other documents in the file are ignored).
pub fn load_manifest(path: &Path) -> Result<InferencePool, PlanError> {
    let text = std::fs::read_to_string(path).map_err(|source| PlanError::Read {
        path: path.display().to_string(),
        source,
    })?;
    parse_manifest(&text, &path.display().to_string())
}

/// Parses the YAML text of a manifest holding exactly one InferencePool.
pub fn parse_manifest(text: &str, path: &str) -> Result<InferencePool, PlanError> {
    let bad = |reason: String| PlanError::Manifest {
        path: path.to_string(),
        reason,
    };
    let documents: Vec<serde_json::Value> =
        serde_saphyr::from_multiple(text).map_err(|e| bad(e.to_string()))?;
    let mut pools: Vec<serde_json::Value> = documents
        .into_iter()
        .filter(|d| d.get("kind").and_then(|k| k.as_str()) == Some("InferencePool"))
        .collect();
    let value = match pools.len() {
        1 => pools.remove(0),
        0 => return Err(bad("no document with kind: InferencePool".to_string())),
        n => {
            return Err(bad(format!(
                "{n} InferencePools; plan prices one at a time"
            )));
        }
    };
    serde_json::from_value(value).map_err(|e| bad(e.to_string()))
}

/// Prices `pool` for a monthly volume. `output_tokens` defaults to 30% of the input; `replicas`
/// to spec.minReplicas, at least 1.
pub fn plan(
    pool: &InferencePool,
    input_tokens: f64,
    output_tokens: Option<f64>,
    replicas: Option<u32>,
) -> Result<Plan, CostError> {
    let spec = &pool.spec;
    let replicas = replicas.unwrap_or_else(|| u32::try_from(spec.min_replicas).unwrap_or(0).max(1));
    let volume = MonthlyVolume {
        input_tokens_per_month: input_tokens,
        output_tokens_per_month: output_tokens.unwrap_or(input_tokens * DEFAULT_OUTPUT_SHARE),
    };
    let work = work_in_replicas(spec, volume);
    let utilization = work
        .filter(|_| replicas > 0)
        .map(|w| w / f64::from(replicas));
    let replicas_needed =
        work.map(|w| ((w / spec.capacity.target_or_default() - 1e-9).ceil() as u32).max(1));
    let comparison = cost::compare(spec, replicas, volume, utilization)?;
    Ok(Plan {
        name: pool
            .metadata
            .name
            .clone()
            .unwrap_or_else(|| "pool".to_string()),
        spec: spec.clone(),
        comparison,
        output_assumed: output_tokens.is_none(),
        utilization,
        replicas_needed,
    })
}

/// The average load in replicas' worth of capacity: prefill and decode share a replica's GPU
/// time, so their shares of one replica's capacity add up. None without spec.capacity.
fn work_in_replicas(spec: &InferencePoolSpec, volume: MonthlyVolume) -> Option<f64> {
    let share = |tokens_per_month: f64, capacity: Option<f64>| {
        capacity
            .filter(|c| *c > 0.0)
            .map(|c| tokens_per_month / cost::SECONDS_PER_MONTH / c)
    };
    let output = share(
        volume.output_tokens_per_month,
        spec.capacity.output_tokens_per_second,
    );
    let input = share(
        volume.input_tokens_per_month,
        spec.capacity.input_tokens_per_second,
    );
    match (output, input) {
        (None, None) => None,
        (o, i) => Some(o.unwrap_or(0.0) + i.unwrap_or(0.0)),
    }
}

/// The verdict in words: "self-host is 4.5x cheaper", "the API is 6.2x cheaper".
pub fn verdict_line(c: &Comparison) -> String {
    let times = c.ratio.map(format::ratio);
    match (c.cheaper, times) {
        (Cheaper::SelfHosted, Some(t)) => format!("self-host is {t} cheaper"),
        (Cheaper::SelfHosted, None) => "self-host is cheaper".to_string(),
        (Cheaper::Api, Some(t)) => format!("the API is {t} cheaper"),
        (Cheaper::Api, None) => "the API is cheaper".to_string(),
        (Cheaper::SelfHostRequired, _) => {
            "self-host required (compareTo.allowed is false): the API is no option".to_string()
        }
        (Cheaper::Unknown, _) => {
            "unknown: no API prices (set spec.compareTo.model, or its input/output prices)"
                .to_string()
        }
    }
}

/// The table a person reads in five seconds.
pub fn render_table(plan: &Plan) -> String {
    let c = &plan.comparison;
    let mut rows: Vec<(String, String)> = Vec::new();
    let volume = format!(
        "{} input + {} output tokens/month{}",
        format::tokens(c.volume.input_tokens_per_month),
        format::tokens(c.volume.output_tokens_per_month),
        if plan.output_assumed {
            " (output assumed 30% of input)"
        } else {
            ""
        }
    );
    rows.push((
        "Pool".into(),
        format!("{}/month", format::usd(c.pool_usd_per_month())),
    ));
    let per_replica = match c.pool.replica_price {
        ReplicaPrice::Hourly { usd_per_hour } => {
            format!("{}/h x 730 h", format::usd(usd_per_hour))
        }
        ReplicaPrice::Monthly { usd_per_month } => format!("{}/month", format::usd(usd_per_month)),
    };
    rows.push((
        "  hardware".into(),
        format!(
            "{} x {per_replica} = {}",
            replica_word(c.pool.replicas),
            format::usd(c.pool.hardware_usd_per_month)
        ),
    ));
    for (name, usd) in &c.pool.overheads {
        rows.push((format!("  {name}"), format::usd(*usd)));
    }
    match &c.api {
        Some(api) => {
            rows.push((
                format!("API ({})", api.model),
                format!("{}/month", format::usd(c.api_usd_per_month)),
            ));
            rows.push((
                "  input".into(),
                format!(
                    "{} x {}/1M = {}",
                    format::tokens(c.volume.input_tokens_per_month),
                    format::usd(api.input_usd_per_million_tokens),
                    format::usd(api.usd(c.volume.input_tokens_per_month, 0.0))
                ),
            ));
            rows.push((
                "  output".into(),
                format!(
                    "{} x {}/1M = {}",
                    format::tokens(c.volume.output_tokens_per_month),
                    format::usd(api.output_usd_per_million_tokens),
                    format::usd(api.usd(0.0, c.volume.output_tokens_per_month))
                ),
            ));
            rows.push(("  prices from".into(), api.source.clone()));
        }
        None => rows.push(("API".into(), "no prices".into())),
    }
    rows.push(("Verdict".into(), verdict_line(c)));
    if let Some(v) = c.break_even_input_tokens_per_month {
        rows.push((
            "Break-even".into(),
            format!(
                "{} input tokens/month (at {:.2} output tokens per input token{})",
                format::tokens(v),
                c.output_to_input_ratio,
                if c.output_ratio_assumed {
                    ", assumed"
                } else {
                    ""
                }
            ),
        ));
    }
    if let Some(p) = c.pool_usd_per_million_tokens {
        rows.push(("Pool per 1M tokens".into(), format::usd(p)));
    }
    if let (Some(u), Some(needed)) = (plan.utilization, plan.replicas_needed) {
        let mut line = format!(
            "{} average of {} (from spec.capacity)",
            format::percent(u),
            replica_word(c.pool.replicas)
        );
        if let Some(idle) = c.idle_usd_per_month {
            line.push_str(&format!("; idle capacity {}/month", format::usd(idle)));
        }
        rows.push(("Utilization".into(), line));
        if needed > c.pool.replicas {
            rows.push((
                "Warning".into(),
                format!(
                    "this load needs {} at {} target: price it with --replicas {needed}",
                    replica_word(needed),
                    format::percent(plan.spec.capacity.target_or_default())
                ),
            ));
        }
    }

    let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    let mut out = format!("{}: {volume}\n\n", plan.name);
    for (key, value) in rows {
        out.push_str(&format!("{key:width$}  {value}\n"));
    }
    out
}

fn replica_word(n: u32) -> String {
    if n == 1 {
        "1 replica".to_string()
    } else {
        format!("{n} replicas")
    }
}

/// The JSON object: `status.cost`'s field names plus the plan's own.
pub fn render_json(plan: &Plan) -> serde_json::Value {
    let c = &plan.comparison;
    let mut value = serde_json::to_value(c.to_status(None)).unwrap_or_else(|_| json!({}));
    if let Some(object) = value.as_object_mut() {
        object.insert("pool".into(), json!(plan.name));
        object.insert("replicas".into(), json!(c.pool.replicas));
        object.insert(
            "hardwareMonthlyUsd".into(),
            json!(c.pool.hardware_usd_per_month),
        );
        object.insert(
            "overheads".into(),
            json!(
                c.pool
                    .overheads
                    .iter()
                    .map(|(name, usd)| json!({"name": name, "monthlyUsd": usd}))
                    .collect::<Vec<_>>()
            ),
        );
        object.insert("outputTokensAssumed".into(), json!(plan.output_assumed));
        object.insert("outputToInputRatio".into(), json!(c.output_to_input_ratio));
        object.insert("verdict".into(), json!(verdict_line(c)));
        object.insert("utilization".into(), json!(plan.utilization));
        object.insert("replicasNeeded".into(), json!(plan.replicas_needed));
        if c.idle_usd_per_month.is_none() {
            object.remove("idleMonthlyUsd");
        }
    }
    value
}

/// One volume of the sweep.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SweepPoint {
    pub input_tokens_per_month: f64,
    pub pool_usd_per_month: f64,
    pub api_usd_per_month: f64,
}

/// Pool and API bills at log-spaced input volumes from 1M to 10B, at the plan's output mix and
/// replica count.
pub fn sweep(plan: &Plan) -> Vec<SweepPoint> {
    let c = &plan.comparison;
    let decades = (SWEEP_TO_TOKENS / SWEEP_FROM_TOKENS).log10().round() as usize;
    (0..=decades * SWEEP_POINTS_PER_DECADE)
        .map(|i| {
            let input = SWEEP_FROM_TOKENS * 10f64.powf(i as f64 / SWEEP_POINTS_PER_DECADE as f64);
            let output = input * c.output_to_input_ratio;
            SweepPoint {
                input_tokens_per_month: input,
                pool_usd_per_month: c.pool_usd_per_month(),
                api_usd_per_month: c.api.as_ref().map_or(0.0, |a| a.usd(input, output)),
            }
        })
        .collect()
}

/// The sweep as a terminal table, the break-even marked between the rows it falls between.
pub fn render_sweep(plan: &Plan, points: &[SweepPoint]) -> String {
    let c = &plan.comparison;
    let mut out = format!(
        "\nPool against API by volume ({:.2} output tokens per input token, {}):\n",
        c.output_to_input_ratio,
        replica_word(c.pool.replicas)
    );
    out.push_str(&format!(
        "{:>12}  {:>12}  {:>12}  {}\n",
        "input/month", "pool/month", "API/month", "cheaper"
    ));
    let break_even = c.break_even_input_tokens_per_month;
    let mut marked = false;
    for p in points {
        if let Some(v) = break_even
            && !marked
            && v <= p.input_tokens_per_month
            && v >= SWEEP_FROM_TOKENS
        {
            out.push_str(&format!(
                "{:>12}  {:->42}\n",
                format::tokens(v),
                format!(
                    " break-even at {}/month",
                    format::usd(c.pool_usd_per_month())
                )
            ));
            marked = true;
        }
        let cheaper = if c.api.is_none() {
            "-".to_string()
        } else if p.pool_usd_per_month <= p.api_usd_per_month {
            format::cheaper(
                Cheaper::SelfHosted,
                (p.pool_usd_per_month > 0.0).then(|| p.api_usd_per_month / p.pool_usd_per_month),
            )
        } else {
            format::cheaper(
                Cheaper::Api,
                (p.api_usd_per_month > 0.0).then(|| p.pool_usd_per_month / p.api_usd_per_month),
            )
        };
        out.push_str(&format!(
            "{:>12}  {:>12}  {:>12}  {}\n",
            format::tokens(p.input_tokens_per_month),
            format::usd(p.pool_usd_per_month),
            format::usd(p.api_usd_per_month),
            cheaper
        ));
    }
    if let Some(v) = break_even
        && !marked
    {
        out.push_str(&format!(
            "break-even at {} input tokens/month, outside this range\n",
            format::tokens(v)
        ));
    }
    out
}

/// Writes the sweep as an SVG chart: both bills on log-log axes, break-even as a vertical line.
pub fn write_svg(plan: &Plan, points: &[SweepPoint], path: &Path) -> Result<(), PlanError> {
    use plotters::prelude::*;
    let fail = |reason: String| PlanError::Svg {
        path: path.display().to_string(),
        reason,
    };
    let c = &plan.comparison;
    let positive = |v: f64| (v > 0.0 && v.is_finite()).then_some(v);
    let values: Vec<f64> = points
        .iter()
        .flat_map(|p| [p.pool_usd_per_month, p.api_usd_per_month])
        .filter_map(positive)
        .collect();
    let y_min = values
        .iter()
        .copied()
        .fold(f64::INFINITY, f64::min)
        .min(1.0)
        * 0.8;
    let y_max = values.iter().copied().fold(1.0, f64::max) * 1.25;

    let draw = || -> Result<(), Box<dyn std::error::Error>> {
        let root = SVGBackend::new(path, (960, 560)).into_drawing_area();
        root.fill(&WHITE)?;
        let title = format!(
            "{}: pool against {} by volume",
            plan.name,
            c.api.as_ref().map_or("the API", |a| a.model.as_str())
        );
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 22))
            .margin(20)
            .x_label_area_size(50)
            .y_label_area_size(90)
            .build_cartesian_2d(
                (SWEEP_FROM_TOKENS..SWEEP_TO_TOKENS).log_scale(),
                (y_min..y_max).log_scale(),
            )?;
        chart
            .configure_mesh()
            .x_desc("input tokens per month")
            .y_desc("USD per month")
            .x_label_formatter(&|v| format::tokens(*v))
            .y_label_formatter(&|v| format::usd(*v))
            .draw()?;
        let pool_colour = RGBColor(31, 119, 180);
        let api_colour = RGBColor(214, 39, 40);
        chart
            .draw_series(LineSeries::new(
                points
                    .iter()
                    .map(|p| (p.input_tokens_per_month, p.pool_usd_per_month.max(y_min))),
                pool_colour.stroke_width(3),
            ))?
            .label(format!(
                "pool ({}/month)",
                format::usd(c.pool_usd_per_month())
            ))
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], pool_colour.stroke_width(3))
            });
        if c.api.is_some() {
            chart
                .draw_series(LineSeries::new(
                    points
                        .iter()
                        .map(|p| (p.input_tokens_per_month, p.api_usd_per_month.max(y_min))),
                    api_colour.stroke_width(3),
                ))?
                .label("API bill")
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], api_colour.stroke_width(3))
                });
        }
        if let Some(v) = c
            .break_even_input_tokens_per_month
            .filter(|v| (SWEEP_FROM_TOKENS..=SWEEP_TO_TOKENS).contains(v))
        {
            chart
                .draw_series(LineSeries::new(
                    vec![(v, y_min), (v, y_max)],
                    BLACK.stroke_width(1),
                ))?
                .label(format!(
                    "break-even {} input tokens/month",
                    format::tokens(v)
                ))
                .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLACK));
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.9))
            .border_style(BLACK)
            .draw()?;
        root.present()?;
        Ok(())
    };
    draw().map_err(|e| fail(e.to_string()))
}

/// Runs `crossover plan`: prints the table or JSON (and the sweep), writes the SVG.
pub fn main(args: PlanArgs) -> ExitCode {
    match run(&args) {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Everything `crossover plan` prints, or why it cannot.
pub fn run(args: &PlanArgs) -> Result<String, PlanError> {
    let pool = load_manifest(&args.file)?;
    let plan =
        plan(&pool, args.input_tokens, args.output_tokens, args.replicas).map_err(|source| {
            PlanError::Cost {
                path: args.file.display().to_string(),
                source,
            }
        })?;
    let points = sweep(&plan);
    if let Some(svg) = &args.svg {
        write_svg(&plan, &points, svg)?;
    }
    let mut out = match args.output {
        OutputFormat::Table => {
            let mut text = render_table(&plan);
            if args.sweep {
                text.push_str(&render_sweep(&plan, &points));
            }
            text
        }
        OutputFormat::Json => {
            let mut value = render_json(&plan);
            if args.sweep
                && let Some(object) = value.as_object_mut()
            {
                object.insert(
                    "sweep".into(),
                    json!(
                        points
                            .iter()
                            .map(|p| json!({
                                "inputTokensPerMonth": p.input_tokens_per_month,
                                "poolMonthlyUsd": p.pool_usd_per_month,
                                "apiMonthlyUsd": p.api_usd_per_month,
                            }))
                            .collect::<Vec<_>>()
                    ),
                );
            }
            serde_json::to_string_pretty(&value).unwrap_or_default() + "\n"
        }
    };
    if let (Some(svg), OutputFormat::Table) = (&args.svg, args.output) {
        out.push_str(&format!("\nchart written to {}\n", svg.display()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example(file: &str) -> InferencePool {
        load_manifest(
            &Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("examples")
                .join(file),
        )
        .unwrap()
    }

    #[test]
    fn scenario_b_table_reads_in_five_seconds() {
        let p = plan(
            &example("scenario-b-gemma-at-volume.yaml"),
            500e6,
            Some(150e6),
            None,
        )
        .unwrap();
        let table = render_table(&p);
        for part in [
            "$605/month",
            "$2,750/month",
            "self-host is 4.5x cheaper",
            "110M input tokens/month",
            "$1,250",
            "$1,500",
            "prices from",
            "spec",
        ] {
            assert!(table.contains(part), "{part:?} missing from\n{table}");
        }
    }

    #[test]
    fn output_defaults_to_thirty_percent_and_says_so() {
        let p = plan(
            &example("scenario-a-gemma-small-volume.yaml"),
            50e6,
            None,
            None,
        )
        .unwrap();
        assert_eq!(p.comparison.volume.output_tokens_per_month, 15e6);
        assert!(render_table(&p).contains("output assumed 30% of input"));
        assert!(render_table(&p).contains("the API is 6.2x cheaper"));
    }

    #[test]
    fn replicas_default_to_min_replicas() {
        let mut pool = example("scenario-b-gemma-at-volume.yaml");
        pool.spec.min_replicas = 0;
        assert_eq!(
            plan(&pool, 1e6, None, None)
                .unwrap()
                .comparison
                .pool
                .replicas,
            1
        );
        pool.spec.min_replicas = 3;
        pool.spec.max_replicas = 3;
        assert_eq!(
            plan(&pool, 1e6, None, None)
                .unwrap()
                .comparison
                .pool
                .replicas,
            3
        );
        assert_eq!(
            plan(&pool, 1e6, None, Some(2))
                .unwrap()
                .comparison
                .pool
                .replicas,
            2
        );
    }

    #[test]
    fn warns_when_the_load_needs_more_replicas() {
        let p = plan(
            &example("scenario-c-h100-bare-metal-low.yaml"),
            50e9,
            None,
            None,
        )
        .unwrap();
        assert!(p.replicas_needed.unwrap() > 1);
        assert!(
            render_table(&p).contains("--replicas"),
            "{}",
            render_table(&p)
        );
    }

    #[test]
    fn sweep_marks_break_even_once() {
        let p = plan(
            &example("scenario-b-gemma-at-volume.yaml"),
            500e6,
            Some(150e6),
            None,
        )
        .unwrap();
        let points = sweep(&p);
        assert_eq!(points.len(), 17);
        assert_eq!(points[0].input_tokens_per_month, 1e6);
        assert!((points[16].input_tokens_per_month - 1e10).abs() < 1.0);
        let text = render_sweep(&p, &points);
        assert_eq!(text.matches("break-even").count(), 1, "{text}");
        let marker = text.lines().position(|l| l.contains("break-even")).unwrap();
        assert!(
            text.lines()
                .nth(marker)
                .unwrap()
                .trim_start()
                .starts_with("110M")
        );
        assert!(text.lines().nth(marker - 1).unwrap().contains("API"));
        assert!(text.lines().nth(marker + 1).unwrap().contains("self-host"));
    }

    #[test]
    fn manifests_are_checked() {
        assert!(matches!(
            parse_manifest("kind: Deployment\n", "x.yaml"),
            Err(PlanError::Manifest { .. })
        ));
        let err = parse_manifest("kind: InferencePool\nspec: {model: m}\n", "x.yaml").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("x.yaml is not a valid InferencePool manifest"),
            "{err}"
        );
        assert!(parse_manifest(": : :\n", "x.yaml").is_err());
        let two = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/scenario-b-gemma-at-volume.yaml"),
        )
        .unwrap();
        let doubled = format!("{two}\n---\n{two}");
        assert!(
            parse_manifest(&doubled, "x.yaml")
                .unwrap_err()
                .to_string()
                .contains("2 InferencePools")
        );
        let with_other =
            format!("apiVersion: v1\nkind: Namespace\nmetadata: {{name: a}}\n---\n{two}");
        assert!(parse_manifest(&with_other, "x.yaml").is_ok());
    }
}
