//! Observing vLLM and sizing the pool, end to end: the simulator serves vLLM's /metrics at the
//! pods' IPs, the operator scrapes them and moves the Deployment's replicas.

use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use kube::api::Api;

use crossover::api::InferencePool;

use crate::harness::*;
use crate::sim::Sim;

const INTERVAL_S: u64 = 2;

/// A small autoscaled pool: 1,000 output tok/s a replica at 70%, 2 s interval, 12 s down window,
/// each reading sized on its own (a load window of one interval), so a step shows within two
/// intervals. `extra_scaling` adds lines under `spec.scaling` (indented four spaces).
pub fn pool(name: &str, extra_scaling: &str) -> String {
    format!(
        r#"apiVersion: crossover.dev/v1alpha1
kind: InferencePool
metadata: {{name: {name}}}
spec:
  model: meta-llama/Llama-3.1-8B-Instruct
  gpu: {{count: 1, product: NVIDIA-H100-80GB-HBM3}}
  minReplicas: 1
  maxReplicas: 4
  capacity: {{outputTokensPerSecond: 1000, targetUtilization: 0.7}}
  scaling:
    intervalSeconds: {INTERVAL_S}
    scaleDownStabilizationSeconds: 12
    loadWindowSeconds: {INTERVAL_S}
    startupSeconds: 0
    saturation: {{queueSustainedSeconds: 4}}
    {extra_scaling}
  cost: {{replicaHourlyUsd: 3.29}}
  compareTo: {{model: gpt-5, inputUsdPerMillionTokens: 2.5, outputUsdPerMillionTokens: 10}}
"#
    )
}

/// Waits until the Deployment runs `n` replicas and the simulator serves every one of their pods
/// (each new pod is registered with it as it gets an IP).
pub async fn scaled_and_served(client: &kube::Client, ns: &str, name: &str, sim: &Sim, n: i32) {
    let what = format!("{n} replicas, all served by the simulator");
    eventually(&what, Duration::from_secs(60), || async {
        sim.sync(client, ns, name).await;
        let pods = crate::sim::pod_ips(client, ns, name).await.len() as i32;
        (replicas(client, ns, name).await? == n && pods == n).then_some(())
    })
    .await;
    sim.sync(client, ns, name).await;
}

/// Asserts, every half second for `duration`, that the Deployment keeps `n` replicas.
pub async fn replicas_stay(
    client: &kube::Client,
    ns: &str,
    name: &str,
    n: i32,
    duration: Duration,
    why: &str,
) {
    let until = Instant::now() + duration;
    while Instant::now() < until {
        assert_eq!(replicas(client, ns, name).await, Some(n), "{why}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

pub async fn replicas(client: &kube::Client, ns: &str, name: &str) -> Option<i32> {
    Api::<Deployment>::namespaced(client.clone(), ns)
        .get_opt(name)
        .await
        .ok()??
        .spec?
        .replicas
}

/// Applies a pool, waits for its first pod, starts the simulator at it and waits until the
/// operator reports load (two readings in).
pub async fn pool_with_sim(
    client: &kube::Client,
    ns: &str,
    name: &str,
    manifest: &str,
    capacity: f64,
) -> Sim {
    apply(ns, manifest);
    eventually(
        "a running pod with an IP",
        Duration::from_secs(60),
        || async { (!crate::sim::pod_ips(client, ns, name).await.is_empty()).then_some(()) },
    )
    .await;
    let sim = Sim::start(client, ns, name, capacity).await;
    sim.load(name, 0.5, 400.0, 400.0).await;
    let pools: Api<InferencePool> = Api::namespaced(client.clone(), ns);
    eventually(
        "status.load from the simulator",
        Duration::from_secs(60),
        || async {
            let load = pools.get(name).await.ok()?.status?.load?;
            (load.output_tokens_per_second > 0.0).then_some(())
        },
    )
    .await;
    sim
}

/// Pool "llama" offered 1,500 output tok/s (three replicas at 70%), scaled to three and all
/// three served by the simulator.
async fn at_three_replicas(client: &kube::Client, ns: &str) -> Sim {
    let sim = pool_with_sim(client, ns, "llama", &pool("llama", ""), 1000.0).await;
    sim.load("llama", 3.0, 200.0, 500.0).await;
    scaled_and_served(client, ns, "llama", &sim, 3).await;
    sim
}

#[tokio::test]
async fn a_load_step_scales_the_pool_up_within_two_sync_intervals() {
    let client = client().await;
    install_crd().await;
    let ns = TestNamespace::new(&client, "scaleup").await;
    let _op = Operator::start(&ns.name);
    let sim = pool_with_sim(&client, &ns.name, "llama", &pool("llama", ""), 1000.0).await;
    assert_eq!(
        replicas(&client, &ns.name, "llama").await,
        Some(1),
        "200 tok/s fits one replica"
    );

    // 1,500 output tok/s against 1,000 per replica at 70%: three replicas.
    sim.load("llama", 3.0, 200.0, 500.0).await;
    let step = Instant::now();
    eventually(
        "a scale-up within two sync intervals",
        Duration::from_millis(2 * INTERVAL_S * 1000 + 1500),
        || async { (replicas(&client, &ns.name, "llama").await? >= 2).then_some(()) },
    )
    .await;
    let first_scale = step.elapsed();
    eprintln!("first scale-up {first_scale:?} after the load step (interval {INTERVAL_S}s)");
    // The first replica only shows saturation (its output is capped); the rest follow as the new
    // pods report.
    scaled_and_served(&client, &ns.name, "llama", &sim, 3).await;
    let o = kubectl(&[
        "get",
        "events",
        "-n",
        &ns.name,
        "--field-selector",
        "reason=Scaled",
        "-o",
        "jsonpath={.items[*].message}",
    ]);
    let notes = stdout(&o);
    assert!(
        notes.contains("output tok/s"),
        "Scaled events carry the numbers: {notes}"
    );
}

#[tokio::test]
async fn a_load_drop_scales_down_only_after_the_stabilization_window() {
    let client = client().await;
    install_crd().await;
    let ns = TestNamespace::new(&client, "scaledown").await;
    let _op = Operator::start(&ns.name);
    let sim = at_three_replicas(&client, &ns.name).await;
    // Let every replica serve for a few intervals, then drop to 200 tok/s: one replica's worth.
    tokio::time::sleep(Duration::from_secs(3 * INTERVAL_S)).await;
    sim.load("llama", 0.5, 200.0, 400.0).await;
    let drop = Instant::now();
    // Inside the 12 s window the pool keeps its size.
    replicas_stay(
        &client,
        &ns.name,
        "llama",
        3,
        Duration::from_secs(8),
        "scaled down inside the window",
    )
    .await;
    eventually(
        "1 replica after the window",
        Duration::from_secs(30),
        || async { (replicas(&client, &ns.name, "llama").await? == 1).then_some(()) },
    )
    .await;
    let waited = drop.elapsed();
    assert!(
        waited >= Duration::from_secs(12),
        "scaled down after {waited:?}, before the 12 s window"
    );
}

#[tokio::test]
async fn dead_metrics_endpoints_hold_the_size_and_set_the_condition() {
    let client = client().await;
    install_crd().await;
    let ns = TestNamespace::new(&client, "nometrics").await;
    let _op = Operator::start(&ns.name);
    let sim = at_three_replicas(&client, &ns.name).await;
    drop(sim);
    let pools: Api<InferencePool> = Api::namespaced(client.clone(), &ns.name);
    eventually(
        "MetricsAvailable=False",
        Duration::from_secs(30),
        || async {
            let s = pools.get("llama").await.ok()?.status?;
            let c = s
                .conditions
                .iter()
                .find(|c| c.type_ == "MetricsAvailable")?;
            (c.status == "False").then_some(())
        },
    )
    .await;
    // Longer than the scale-down window: no data is not zero traffic.
    replicas_stay(
        &client,
        &ns.name,
        "llama",
        3,
        Duration::from_secs(16),
        "scaled on missing data",
    )
    .await;
    let o = kubectl(&[
        "get",
        "events",
        "-n",
        &ns.name,
        "--field-selector",
        "reason=MetricsUnavailable,type=Warning",
        "-o",
        "name",
    ]);
    assert_eq!(
        stdout(&o).lines().count(),
        1,
        "exactly one Warning event: {}",
        stdout(&o)
    );
}
