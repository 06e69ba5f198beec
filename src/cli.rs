//! The `crossover` command line: `run` (the operator), `crd` (print the CRD), and the offline
//! questions `plan` and `simulate`.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser, Debug)]
#[command(
    name = "crossover",
    version,
    about = "Runs vLLM pools sized to their load and priced against the hosted-API bill"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the operator against the cluster in KUBECONFIG (or in-cluster config).
    Run(RunArgs),
    /// Print crossover's CustomResourceDefinitions as YAML (both, or the one named).
    Crd {
        /// inferencepools or prometheussources (default: both, as one multi-document stream).
        #[arg(value_parser = ["inferencepools", "prometheussources"])]
        name: Option<String>,
    },
    /// Price a pool manifest against the hosted API for a monthly token volume, with no cluster.
    Plan(crate::plan::PlanArgs),
    /// Replay a request trace through a model of the pool under crossover's policy and baselines.
    Simulate(SimulateArgs),
}

/// `crossover simulate`: with no arguments, the example pool on the embedded Azure coding trace.
#[derive(Args, Debug)]
pub struct SimulateArgs {
    /// InferencePool manifest to simulate (default: examples/simulate-llama-70b-h100.yaml, embedded).
    #[arg(short = 'f', long = "file")]
    pub file: Option<PathBuf>,
    /// Trace: Azure LLM inference CSV (TIMESTAMP,ContextTokens,GeneratedTokens) or JSONL
    /// (timestamp ms, input_length, output_length). Default: the embedded Azure coding trace.
    #[arg(long)]
    pub trace: Option<PathBuf>,
    /// Multiply the arrival rate (divides inter-arrival times).
    #[arg(long, default_value_t = 1.0)]
    pub load_scale: f64,
    /// Play the trace this many times back to back (synthetic).
    #[arg(long, default_value_t = 1)]
    pub repeat: u32,
    /// Shape the rate by a synthetic day: 0.5x at midnight, 1.5x at noon (synthetic).
    #[arg(long)]
    pub diurnal: bool,
    /// Seconds from requesting a replica to its serving (default: spec.scaling.startupSeconds).
    #[arg(long)]
    pub startup_seconds: Option<u32>,
    /// Extra seconds before a metrics reading reaches the autoscalers.
    #[arg(long, default_value_t = 0)]
    pub metrics_lag_seconds: u32,
    /// Leave the first seconds of the replay out of every policy's figures (default: none for a
    /// single replay, 900 with --corpus).
    #[arg(long)]
    pub warm_up_seconds: Option<u32>,
    /// Run the evaluation corpus instead of one replay: the trace at x1, x4 and x8 and the
    /// synthetic families, each without and with a 30 s metrics lag, in one table.
    #[arg(long, conflicts_with_all = ["load_scale", "repeat", "diurnal", "metrics_lag_seconds", "svg", "startup_seconds"])]
    pub corpus: bool,
    /// With --corpus, only the workloads whose name contains this ("bursts", "poisson 2.6").
    #[arg(long, requires = "corpus")]
    pub workload: Option<String>,
    /// table for people, json for tools.
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
    /// Also draw demand against each policy's ready replicas into this SVG file.
    #[arg(long)]
    pub svg: Option<PathBuf>,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutputFormat {
    Table,
    Json,
}

#[derive(clap::Args, Debug)]
pub struct RunArgs {
    /// Watch only this namespace (default: all namespaces).
    #[arg(long, env = "CROSSOVER_NAMESPACE")]
    pub namespace: Option<String>,
    /// Log format: text or json.
    #[arg(long, default_value = "text", value_parser = ["text", "json"])]
    pub log_format: String,
    /// Shift the operator's clock by this many seconds (for tests that cross a month boundary).
    #[arg(
        long,
        env = "CROSSOVER_CLOCK_OFFSET_SECONDS",
        default_value_t = 0,
        hide = true
    )]
    pub clock_offset_seconds: i64,
    /// Address of the /healthz, /readyz and /metrics server.
    #[arg(long, env = "CROSSOVER_PROBE_ADDRESS", default_value = "0.0.0.0:8081")]
    pub probe_address: std::net::SocketAddr,
    /// Elect a leader among replicas with a Lease: only the holder writes.
    #[arg(long, env = "CROSSOVER_LEADER_ELECT", default_value_t = true, action = clap::ArgAction::Set)]
    pub leader_elect: bool,
    /// Namespace of the Lease (default: POD_NAMESPACE, the operator's own, else --namespace, else
    /// "default"). Not the watched namespace: its tenants could squat a Lease there.
    #[arg(long, env = "CROSSOVER_LEASE_NAMESPACE")]
    pub lease_namespace: Option<String>,
    /// Name of the Lease (default: crossover-leader, or crossover-leader-NAMESPACE with
    /// --namespace). Installs that must share one writer use the same name and namespace.
    #[arg(long, env = "CROSSOVER_LEASE_NAME")]
    pub lease_name: Option<String>,
    /// A standby takes the Lease over once it has not seen it change for this long.
    #[arg(long, env = "CROSSOVER_LEASE_DURATION_SECONDS", default_value_t = 15)]
    pub lease_duration_seconds: u64,
    /// Namespace of the Secrets and ConfigMaps that PrometheusSources name (default:
    /// POD_NAMESPACE, the operator's own, else "default").
    #[arg(long, env = "CROSSOVER_SOURCE_NAMESPACE")]
    pub source_namespace: Option<String>,
    /// Let metrics reads reach link-local and cloud metadata addresses (169.254.0.0/16, fe80::/10,
    /// fd00:ec2::254, 100.100.100.200), refused by default.
    #[arg(long, env = "CROSSOVER_ALLOW_LINK_LOCAL_METRICS", default_value_t = false, action = clap::ArgAction::Set)]
    pub allow_link_local_metrics: bool,
    /// The leader stops writing when it has not renewed for this long; below the lease duration
    /// (default: two thirds of it, 10 s of 15 s as client-go).
    #[arg(long, env = "CROSSOVER_LEASE_RENEW_DEADLINE_SECONDS")]
    pub lease_renew_deadline_seconds: Option<f64>,
    /// Between two tries to renew or acquire the Lease (default: 2/15 of the lease duration, 2 s
    /// of 15 s as client-go).
    #[arg(long, env = "CROSSOVER_LEASE_RETRY_PERIOD_SECONDS")]
    pub lease_retry_period_seconds: Option<f64>,
    /// Most pool reconciles running at once.
    #[arg(
        long,
        env = "CROSSOVER_MAX_CONCURRENT_RECONCILES",
        default_value_t = 32
    )]
    pub max_concurrent_reconciles: u16,
    /// Longest a status change that can wait (rates, month-to-date dollars, counter baselines,
    /// demand history) is held in memory before it is written; changes of replicas, conditions,
    /// verdicts and counted pods are written at once. 0 writes every change.
    #[arg(
        long,
        env = "CROSSOVER_STATUS_CHECKPOINT_SECONDS",
        default_value_t = 300
    )]
    pub status_checkpoint_seconds: u64,
}

/// The Lease this replica runs for, from the flags.
fn lease_config(args: &RunArgs, identity: &str) -> crate::controller::leader::LeaseConfig {
    let namespace = args
        .lease_namespace
        .clone()
        .or_else(|| {
            std::env::var("POD_NAMESPACE")
                .ok()
                .filter(|s| !s.is_empty())
        })
        .or_else(|| args.namespace.clone())
        .unwrap_or_else(|| "default".to_string());
    let duration = std::time::Duration::from_secs(args.lease_duration_seconds.max(1));
    let seconds = |s: f64| std::time::Duration::from_secs_f64(s.max(0.0));
    crate::controller::leader::LeaseConfig {
        namespace,
        // One leader per scope by default: all namespaces, or the one watched.
        name: args
            .lease_name
            .clone()
            .unwrap_or_else(|| match &args.namespace {
                Some(ns) => format!("crossover-leader-{ns}"),
                None => "crossover-leader".to_string(),
            }),
        identity: identity.to_string(),
        duration,
        renew_deadline: args
            .lease_renew_deadline_seconds
            .map(seconds)
            .unwrap_or(duration * 2 / 3),
        retry_period: args
            .lease_retry_period_seconds
            .map(seconds)
            .unwrap_or(duration * 2 / 15),
    }
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Crd { name } => match crate::api::crds() {
            Ok(crds) => {
                let wanted = crds
                    .iter()
                    .filter(|(file, _)| name.as_ref().is_none_or(|n| file.starts_with(n.as_str())))
                    .map(|(_, yaml)| yaml.as_str())
                    .collect::<Vec<_>>();
                print!("{}", wanted.join("---\n"));
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: cannot render the CRD: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Run(args) => run(args),
        Command::Plan(args) => crate::plan::main(args),
        Command::Simulate(args) => match simulate(&args) {
            Ok(out) => {
                print!("{out}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::FAILURE
            }
        },
    }
}

/// This replica's name in the leader Lease: the pod's name in a cluster (a restarted container
/// keeps it and renews at once), else the host's name.
fn identity() -> String {
    std::env::var("POD_NAME")
        .ok()
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok().filter(|s| !s.is_empty()))
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
        })
        .unwrap_or_else(|| format!("crossover-{}", std::process::id()))
}

fn run(args: RunArgs) -> ExitCode {
    crate::telemetry::init(args.log_format == "json");
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        let ops = std::sync::Arc::new(crate::ops::Ops::default());
        let bound = crate::ops::serve(args.probe_address, ops.clone())
            .await
            .map_err(|e| {
                anyhow::anyhow!(
                    "cannot serve health and metrics on {}: {e}",
                    args.probe_address
                )
            })?;
        tracing::info!(address = %bound, "serving /healthz, /readyz and /metrics");
        let config = kube::Config::infer().await?;
        let identity = identity();
        let leader = args.leader_elect.then(|| lease_config(&args, &identity));
        let observer = crate::controller::observe::ObserverOptions {
            source_namespace: args
                .source_namespace
                .clone()
                .or_else(|| {
                    std::env::var("POD_NAMESPACE")
                        .ok()
                        .filter(|s| !s.is_empty())
                })
                .unwrap_or_else(|| "default".to_string()),
            allow_link_local: args.allow_link_local_metrics,
            ..Default::default()
        };
        let opts = crate::controller::RunOptions {
            observer,
            namespace: args.namespace,
            clock_offset: chrono::Duration::seconds(args.clock_offset_seconds),
            leader,
            identity,
            concurrency: args.max_concurrent_reconciles,
            status_checkpoint: std::time::Duration::from_secs(args.status_checkpoint_seconds),
            ops,
        };
        crate::controller::run(config, opts).await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn simulate(args: &SimulateArgs) -> anyhow::Result<String> {
    use crate::sim::{self, trace};
    use anyhow::Context;
    if !(args.load_scale.is_finite() && args.load_scale > 0.0) {
        anyhow::bail!(
            "--load-scale must be a number above 0, got {}",
            args.load_scale
        );
    }
    let pool: crate::api::InferencePool = match &args.file {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            serde_saphyr::from_str(&text)
                .with_context(|| format!("{} is not an InferencePool", path.display()))?
        }
        None => {
            serde_saphyr::from_str(sim::EXAMPLE_POOL_YAML).context("the embedded example pool")?
        }
    };
    let (requests, label) = match &args.trace {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            let name = path.display().to_string();
            let format = trace::TraceFormat::detect(&name, &text);
            let requests = trace::parse(&text, format).with_context(|| format!("trace {name}"))?;
            (requests, name)
        }
        None => (
            trace::parse(sim::EXAMPLE_TRACE_CSV, trace::TraceFormat::AzureCsv)
                .context("the embedded trace")?,
            "Azure LLM inference trace 2023, coding (embedded)".to_string(),
        ),
    };
    if args.corpus {
        let warm_up = args
            .warm_up_seconds
            .unwrap_or(sim::corpus::DEFAULT_WARM_UP_SECONDS);
        let report = sim::corpus::run(&pool.spec, &requests, warm_up, args.workload.as_deref())?;
        return Ok(match args.output {
            OutputFormat::Table => sim::report::corpus_table(&report),
            OutputFormat::Json => serde_json::to_string_pretty(&report)? + "\n",
        });
    }
    let shape = trace::Shape {
        load_scale: args.load_scale,
        repeat: args.repeat.max(1),
        diurnal: args.diurnal,
    };
    let label = format!(
        "{label}, pool {}",
        pool.metadata.name.as_deref().unwrap_or("unnamed")
    );
    let workload = trace::workload(&requests, shape, &label);
    let options = sim::SimOptions {
        startup_seconds: args.startup_seconds,
        metrics_lag_seconds: args.metrics_lag_seconds,
        warm_up_seconds: args.warm_up_seconds.unwrap_or(0),
    };
    let report = sim::simulate(&pool.spec, &workload, options)?;
    if let Some(path) = &args.svg {
        sim::report::svg(&report, path)?;
    }
    Ok(match args.output {
        OutputFormat::Table => sim::report::table(&report),
        OutputFormat::Json => sim::report::json(&report)? + "\n",
    })
}
