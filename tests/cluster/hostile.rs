//! A pool author controls what answers at their pods' /metrics, and at a Prometheus URL they
//! name. Pods that answer with hundreds of megabytes (announced, or streamed) or with a body that
//! never ends, and a "Prometheus" that never stops sending, must leave the operator under the
//! chart's memory limit and every other pool reconciled on time.

use std::time::{Duration, Instant};

use kube::api::Api;

use crossover::api::{InferencePool, from_time};

use crate::harness::*;
use crate::prometheus::{condition, pool};
use crate::sim::{Sim, pod_ips};

/// The chart's memory limit for the operator (charts/crossover/values.yaml).
const CHART_LIMIT_BYTES: u64 = 256 * 1024 * 1024;

/// Peak resident memory of a process (VmHWM), in bytes.
fn peak_rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM");
    kb * 1024
}

/// An HTTP server whose every answer streams forever; returns its URL.
async fn endless_server() -> String {
    let chunk = axum::body::Bytes::from(vec![b' '; 64 * 1024]);
    let app = axum::Router::new().fallback(move || {
        let chunk = chunk.clone();
        async move {
            axum::body::Body::from_stream(futures::stream::repeat_with(move || {
                Ok::<_, std::io::Error>(chunk.clone())
            }))
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    url
}

#[tokio::test]
async fn hostile_metrics_bodies_leave_the_operator_small_and_other_pools_on_time() {
    let client = client().await;
    install_crd().await;
    let ns = TestNamespace::new(&client, "hostile").await;
    let op = Operator::start(&ns.name);
    // Three hostile pods, one per kind of body, and a victim pool next to them.
    let hostile = pool("hostile", "{source: Scrape}")
        .replace("minReplicas: 1", "minReplicas: 3")
        .replace("maxReplicas: 4", "maxReplicas: 3");
    apply(&ns.name, &hostile);
    apply(&ns.name, &pool("victim", "{source: Scrape}"));
    // And a Prometheus-mode pool whose "Prometheus" answers every query with a body that never
    // ends (any pool author may name any URL without credentials).
    let endless = endless_server().await;
    apply(
        &ns.name,
        &pool(
            "hostile-prom",
            &format!("{{source: Prometheus, prometheus: {{url: \"{endless}\"}}}}"),
        ),
    );
    let pods = eventually(
        "3 hostile pods and a victim",
        Duration::from_secs(60),
        || async {
            let h = pod_ips(&client, &ns.name, "hostile").await;
            let v = pod_ips(&client, &ns.name, "victim").await;
            (h.len() == 3 && !v.is_empty()).then_some(h)
        },
    )
    .await;
    let victim = Sim::start(&client, &ns.name, "victim", 1000.0).await;
    victim.load("victim", 1.0, 200.0, 200.0).await;
    let sim = Sim::start(&client, &ns.name, "hostile", 1000.0).await;
    let http = reqwest::Client::new();
    for ((_, ip), behavior) in pods.iter().zip(["huge", "hugeChunked", "endless"]) {
        http.delete(format!("http://{}/pods/{ip}:8000", sim.control()))
            .send()
            .await
            .unwrap();
        let r = http
            .post(format!("http://{}/pods", sim.control()))
            .json(&serde_json::json!({"address": format!("{ip}:8000"), "pool": "hostile", "behavior": behavior}))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{}", r.status());
    }

    let pools: Api<InferencePool> = Api::namespaced(client.clone(), &ns.name);
    let c = eventually(
        "the hostile pool says why",
        Duration::from_secs(60),
        || async {
            let c = condition(&pools, "hostile", "MetricsAvailable").await?;
            (c.status == "False" && c.message.contains("larger than")).then_some(c)
        },
    )
    .await;
    println!("hostile pool: {}", c.message);

    let c = eventually(
        "the hostile Prometheus pool says why",
        Duration::from_secs(60),
        || async {
            let c = condition(&pools, "hostile-prom", "MetricsAvailable").await?;
            (c.status == "False" && c.message.contains("larger than")).then_some(c)
        },
    )
    .await;
    println!("hostile Prometheus pool: {}", c.message);

    // For 30 s: the victim is read every interval (2 s) and the operator stays small.
    let started = Instant::now();
    let mut last_seen = None;
    let mut longest_gap = Duration::ZERO;
    let mut since_change = Instant::now();
    while started.elapsed() < Duration::from_secs(30) {
        let at = pools
            .get("victim")
            .await
            .ok()
            .and_then(|p| p.status?.load?.observed_at)
            .map(|t| from_time(&t));
        if at.is_some() && at != last_seen {
            if last_seen.is_some() {
                longest_gap = longest_gap.max(since_change.elapsed());
            }
            last_seen = at;
            since_change = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    longest_gap = longest_gap.max(since_change.elapsed());
    let peak = peak_rss_bytes(op.pid());
    println!(
        "operator peak RSS {:.1} MiB under three hostile /metrics bodies and an endless Prometheus; the victim's readings at most {longest_gap:?} apart (interval 2 s)",
        peak as f64 / 1048576.0
    );
    assert!(peak < CHART_LIMIT_BYTES, "peak RSS {peak} bytes");
    // Whole seconds in status and a 300 ms poll: a reading every interval shows as <= 3.5 s.
    assert!(longest_gap < Duration::from_millis(3500), "{longest_gap:?}");
    let c = condition(&pools, "victim", "MetricsAvailable")
        .await
        .unwrap();
    assert_eq!(c.status, "True", "{}", c.message);
}
