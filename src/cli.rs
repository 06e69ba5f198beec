//! The `crossover` command line: `run` (the operator), `crd` (print the CRD), and the offline
//! questions `plan` and `simulate`.

use clap::{Parser, Subcommand};
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
    /// Print the InferencePool CustomResourceDefinition as YAML.
    Crd,
    /// Price a pool manifest against the hosted API for a monthly token volume, with no cluster.
    Plan(crate::plan::PlanArgs),
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
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Crd => match crate::api::crd_yaml() {
            Ok(yaml) => {
                print!("{yaml}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: cannot render the CRD: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Run(args) => run(args),
        Command::Plan(args) => crate::plan::main(args),
    }
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
        let client = kube::Client::try_default().await?;
        let opts = crate::controller::RunOptions {
            namespace: args.namespace,
            clock_offset: chrono::Duration::seconds(args.clock_offset_seconds),
        };
        crate::controller::run(client, opts).await
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
