//! vllm-sim: serves simulated vLLM pods' /metrics for tests and demos, with load pushed through a
//! control endpoint. The model and HTTP handling live in `crossover::vllmsim`.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;
use crossover::vllmsim::{EngineConfig, PodConfig, Simulator, server};

#[derive(Parser, Debug)]
#[command(about = "Simulated vLLM 0.33 pods serving /metrics, driven by POST /load")]
struct Args {
    /// A pod to serve, as ADDR or POOL=ADDR (pool "default" when omitted). Repeat for more pods;
    /// none is fine when pods are added later with POST /pods.
    #[arg(long = "pod", value_parser = parse_pod)]
    pods: Vec<(String, SocketAddr)>,
    /// Control endpoint: POST /load, GET/POST /pods, DELETE /pods/{addr}, POST /pods/{addr}/restart.
    #[arg(long, default_value = "127.0.0.1:9400")]
    control: SocketAddr,
    /// Served model name (the model_name label).
    #[arg(long, default_value = "meta-llama/Llama-3.1-8B-Instruct")]
    model: String,
    /// Data-parallel engines per pod (engine label 0..N-1).
    #[arg(long, default_value_t = 1)]
    engines: usize,
    /// Emit vllm:gpu_cache_usage_perc and vllm:time_per_output_token_seconds instead of the new names.
    #[arg(long)]
    legacy_names: bool,
    /// Decode tokens per second one pod sustains (published: ~3,400 for Llama 3.1 8B FP8 on an H100).
    #[arg(long, default_value_t = 3400.0)]
    output_tokens_per_second: f64,
    /// Prefill tokens per second one pod sustains.
    #[arg(long, default_value_t = 30000.0)]
    input_tokens_per_second: f64,
    /// Decode speed of a single sequence when the batch is not the bottleneck.
    #[arg(long, default_value_t = 60.0)]
    per_request_output_tokens_per_second: f64,
    /// Most requests in a pod's running batch; beyond it they wait.
    #[arg(long, default_value_t = 256)]
    max_num_seqs: usize,
    /// KV-cache size per pod, in tokens.
    #[arg(long, default_value_t = 500000.0)]
    kv_cache_tokens: f64,
    /// Upper bound of the token-count histogram buckets.
    #[arg(long, default_value_t = 8192)]
    max_model_len: u32,
    /// How often the simulation advances, in milliseconds.
    #[arg(long, default_value_t = 100)]
    tick_ms: u64,
}

fn parse_pod(s: &str) -> Result<(String, SocketAddr), String> {
    let (pool, addr) = s.split_once('=').unwrap_or(("default", s));
    let addr = addr
        .parse()
        .map_err(|e| format!("{addr:?} is not ip:port: {e}"))?;
    Ok((pool.to_string(), addr))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
    let args = Args::parse();
    let sim = Simulator::new(PodConfig {
        model: args.model,
        engines: args.engines.max(1),
        legacy_names: args.legacy_names,
        engine: EngineConfig {
            output_tokens_per_second: args.output_tokens_per_second,
            input_tokens_per_second: args.input_tokens_per_second,
            per_request_output_tokens_per_second: args.per_request_output_tokens_per_second,
            max_num_seqs: args.max_num_seqs,
            kv_cache_tokens: args.kv_cache_tokens,
            max_model_len: args.max_model_len,
        },
    });
    let running = server::start(
        sim,
        args.control,
        &args.pods,
        Duration::from_millis(args.tick_ms.max(1)),
    )
    .await?;
    tracing::info!(control = %running.control, pods = ?running.pods, "vllm-sim listening");
    tokio::signal::ctrl_c().await?;
    Ok(())
}
