//! The money, live: the status the controller writes reproduces the worked scenarios, the run-rate
//! and month-to-date match a hand calculation, and month-to-date survives restarts and months.

use std::time::Duration;

use chrono::{Datelike, TimeZone, Utc};
use kube::api::Api;

use crossover::api::{CostStatus, InferencePool, MonthToDate, from_time};
use crossover::cost::SECONDS_PER_MONTH;

use crate::harness::*;
use crate::sim::Sim;

/// An example manifest, renamed, with a 2 s sync interval so the test is quick.
fn example(file: &str, name: &str) -> String {
    let text = std::fs::read_to_string(repo().join("examples").join(file)).unwrap();
    let mut doc: serde_json::Value = serde_saphyr::from_str(&text).unwrap();
    doc["metadata"]["name"] = name.into();
    doc["spec"]["scaling"] = serde_json::json!({"intervalSeconds": 2});
    serde_saphyr::to_string(&doc).unwrap()
}

/// Applies the pool, serves its pod with the simulator at `input`/`output` tokens per month.
async fn priced_pool(
    client: &kube::Client,
    ns: &str,
    name: &str,
    manifest: &str,
    input_per_month: f64,
    output_per_month: f64,
    rps: f64,
) -> Sim {
    apply(ns, manifest);
    eventually("a running pod", Duration::from_secs(60), || async {
        (!crate::sim::pod_ips(client, ns, name).await.is_empty()).then_some(())
    })
    .await;
    let sim = Sim::start(client, ns, name, 100_000.0).await;
    // `rps` requests a second carry the month's volume. Prompt tokens arrive a request at a time,
    // so more requests give smoother rates; but a request generates at least one token, so small
    // volumes need fewer, larger requests.
    sim.load(
        name,
        rps,
        input_per_month / SECONDS_PER_MONTH / rps,
        output_per_month / SECONDS_PER_MONTH / rps,
    )
    .await;
    sim
}

async fn cost_when(
    client: &kube::Client,
    ns: &str,
    name: &str,
    what: &str,
    ok: impl Fn(&CostStatus) -> bool,
) -> CostStatus {
    let pools: Api<InferencePool> = Api::namespaced(client.clone(), ns);
    eventually(what, Duration::from_secs(90), || async {
        let c = pools.get(name).await.ok()?.status?.cost?;
        ok(&c).then_some(c)
    })
    .await
}

fn within(actual: f64, expected: f64, share: f64) -> bool {
    (actual - expected).abs() <= expected.abs() * share
}

#[tokio::test]
async fn the_worked_scenarios_reproduce_in_the_status_the_controller_writes() {
    let client = client().await;
    install_crd().await;
    let ns = TestNamespace::new(&client, "scenarios").await;
    let _op = Operator::start(&ns.name);
    // (manifest, input and output tokens per month, pool $/month, API $/month, cheaper column)
    let cases = [
        (
            "scenario-a-gemma-small-volume.yaml",
            "a",
            50e6,
            15e6,
            1705.0,
            275.0,
            "API",
        ),
        (
            "scenario-b-gemma-at-volume.yaml",
            "b",
            500e6,
            150e6,
            605.0,
            2750.0,
            "self-host",
        ),
        (
            "scenario-c-h100-bare-metal-low.yaml",
            "c",
            5e9,
            1.5e9,
            5500.0,
            27500.0,
            "self-host",
        ),
    ];
    let mut sims = Vec::new();
    for (file, name, input, output, _, _, _) in cases {
        sims.push(
            priced_pool(
                &client,
                &ns.name,
                name,
                &example(file, name),
                input,
                output,
                2.0,
            )
            .await,
        );
    }
    for (_, name, _, _, pool_usd, api_usd, cheaper) in cases {
        let c = cost_when(&client, &ns.name, name, "the scenario's API bill", |c| {
            within(c.api_monthly_usd, api_usd, 0.03)
        })
        .await;
        assert_eq!(
            c.pool_monthly_usd, pool_usd,
            "scenario {name}: pool cost is exact"
        );
        let o = kubectl(&["get", "ipool", name, "-n", &ns.name, "--no-headers"]);
        let row = stdout(&o);
        assert!(row.contains(&crossover::format::usd(pool_usd)), "{row}");
        assert!(row.contains(cheaper), "scenario {name}: {row}");
    }
}

#[tokio::test]
async fn run_rate_and_month_to_date_match_a_hand_calculation_and_survive_a_restart() {
    let client = client().await;
    install_crd().await;
    let ns = TestNamespace::new(&client, "mtd").await;
    let op = Operator::start(&ns.name);
    // One replica at $3.65/hour ($2,664.50 a month) plus $500 of tooling; 2,000 in and 400 out tok/s.
    let manifest = r#"apiVersion: crossover.dev/v1alpha1
kind: InferencePool
metadata: {name: meter}
spec:
  model: m
  minReplicas: 1
  maxReplicas: 1
  capacity: {outputTokensPerSecond: 5000}
  scaling: {intervalSeconds: 2}
  cost: {replicaHourlyUsd: 3.65, overheads: [{name: tooling, monthlyUsd: 500}]}
  compareTo: {model: gpt-5, inputUsdPerMillionTokens: 2.5, outputUsdPerMillionTokens: 10}
"#;
    let (in_tps, out_tps) = (2000.0, 400.0);
    let _sim = priced_pool(
        &client,
        &ns.name,
        "meter",
        manifest,
        in_tps * SECONDS_PER_MONTH,
        out_tps * SECONDS_PER_MONTH,
        40.0,
    )
    .await;

    // Run-rate by hand: 2,000 × 2,628,000 s = 5.256B input, 1.0512B output tokens a month;
    // API = 5,256 × $2.50 + 1,051.2 × $10 = $23,652; pool = 730 × $3.65 + $500 = $3,164.50.
    let c = cost_when(
        &client,
        &ns.name,
        "meter",
        "the run-rate",
        |c: &CostStatus| within(c.api_monthly_usd, 23_652.0, 0.03),
    )
    .await;
    assert!(
        (c.pool_monthly_usd - 3164.5).abs() < 0.005,
        "{}",
        c.pool_monthly_usd
    );
    assert!(
        within(c.input_tokens_per_month, 5.256e9, 0.03),
        "{}",
        c.input_tokens_per_month
    );

    // Month-to-date by hand: pool dollars are replica-hours × $3.65 plus overheads pro rata.
    let m1 = cost_when(
        &client,
        &ns.name,
        "meter",
        "20 s accounted",
        |c: &CostStatus| mtd_span(c) >= 20.0,
    )
    .await
    .month_to_date
    .unwrap();
    let month_seconds = seconds_in_month(&m1);
    let expected_pool =
        m1.replica_hours * 3.65 + 500.0 * (m1.replica_hours * 3600.0) / month_seconds;
    assert!(
        (m1.pool_usd - expected_pool).abs() < 0.01,
        "pool {} vs {}",
        m1.pool_usd,
        expected_pool
    );
    assert!((m1.api_usd - (m1.input_tokens * 2.5 + m1.output_tokens * 10.0) / 1e6).abs() < 0.01);

    // Restart in the middle of the month: nothing resets, nothing counts twice.
    op.stop();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let _op = Operator::start(&ns.name);
    let u1 = from_time(&m1.accounted_until);
    let m2 = cost_when(
        &client,
        &ns.name,
        "meter",
        "accounting after the restart",
        |c: &CostStatus| {
            c.month_to_date
                .as_ref()
                .is_some_and(|m| (from_time(&m.accounted_until) - u1).num_seconds() >= 10)
        },
    )
    .await
    .month_to_date
    .unwrap();
    let span = (from_time(&m2.accounted_until) - u1).num_milliseconds() as f64 / 1000.0;
    let added_tokens = m2.input_tokens - m1.input_tokens;
    // Tokens are counter increments up to each reading's sample, the span is whole seconds of
    // accountedUntil: they agree to within a second of tokens at each end.
    assert!(
        (added_tokens - in_tps * span).abs() <= in_tps * (0.05 * span + 2.0),
        "added {added_tokens} input tokens over {span} s"
    );
    assert!(
        ((m2.replica_hours - m1.replica_hours) * 3600.0 - span).abs() < 0.5,
        "one replica for {span} s"
    );
    assert_eq!(m2.period, m1.period);
}

/// The pool's month-to-date once its output tokens are within 0.1% of `truth` (the pods'
/// counters), or as it stands after 30 s.
async fn month_to_date_near(pools: &Api<InferencePool>, name: &str, truth: f64) -> MonthToDate {
    let mut m = None;
    for _ in 0..60 {
        m = pools
            .get(name)
            .await
            .ok()
            .and_then(|p| p.status?.cost?.month_to_date);
        if m.as_ref()
            .is_some_and(|m| (m.output_tokens - truth).abs() <= 0.001 * truth)
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    m.expect("month-to-date")
}

fn mtd_span(c: &CostStatus) -> f64 {
    c.month_to_date
        .as_ref()
        .map_or(0.0, |m| m.replica_hours * 3600.0)
}

fn seconds_in_month(m: &MonthToDate) -> f64 {
    let at = from_time(&m.accounted_until);
    let start = Utc
        .with_ymd_and_hms(at.year(), at.month(), 1, 0, 0, 0)
        .unwrap();
    let (y, mo) = if at.month() == 12 {
        (at.year() + 1, 1)
    } else {
        (at.year(), at.month() + 1)
    };
    let next = Utc.with_ymd_and_hms(y, mo, 1, 0, 0, 0).unwrap();
    (next - start).num_seconds() as f64
}

#[tokio::test]
async fn a_month_boundary_starts_a_new_period() {
    let client = client().await;
    install_crd().await;
    let ns = TestNamespace::new(&client, "boundary").await;
    // The operator's clock reads 12 s before the next month begins.
    let now = Utc::now();
    let (y, mo) = if now.month() == 12 {
        (now.year() + 1, 1)
    } else {
        (now.year(), now.month() + 1)
    };
    let next_month = Utc.with_ymd_and_hms(y, mo, 1, 0, 0, 0).unwrap();
    let offset = (next_month - now).num_seconds() - 12;
    let _op = Operator::start_with(
        &ns.name,
        &[("CROSSOVER_CLOCK_OFFSET_SECONDS", &offset.to_string())],
    );
    let manifest = example("scenario-b-gemma-at-volume.yaml", "month");
    let _sim = priced_pool(&client, &ns.name, "month", &manifest, 500e6, 150e6, 2.0).await;
    let period = format!("{y:04}-{mo:02}");
    let c = cost_when(
        &client,
        &ns.name,
        "month",
        "the new month period",
        |c: &CostStatus| {
            c.month_to_date
                .as_ref()
                .is_some_and(|m| m.period == period && m.replica_hours * 3600.0 >= 10.0)
        },
    )
    .await;
    let m = c.month_to_date.unwrap();
    let secs = m.replica_hours * 3600.0;
    assert!(
        secs < 60.0,
        "the new period counts only its own seconds, got {secs}"
    );
    // Hardware is accounted to the last whole second, tokens to the reading's instant: up to a
    // second more of tokens than of hardware, 10% of a 10 s span at most.
    assert!(
        within(m.input_tokens, 500e6 / SECONDS_PER_MONTH * secs, 0.15),
        "{} tokens over {secs} s",
        m.input_tokens
    );
    // The month that ended is kept, up to its last second, and announced.
    let previous = c.previous_month.expect("status.cost.previousMonth");
    assert_ne!(previous.period, period);
    assert_eq!(from_time(&previous.accounted_until), next_month);
    assert!(previous.replica_hours > 0.0 && previous.pool_usd > 0.0);
    let closed = eventually("the MonthClosed Event", Duration::from_secs(30), || async {
        let events: Api<k8s_openapi::api::events::v1::Event> =
            Api::namespaced(client.clone(), &ns.name);
        events
            .list(&Default::default())
            .await
            .ok()?
            .items
            .into_iter()
            .find(|e| e.reason.as_deref() == Some("MonthClosed"))
            .and_then(|e| e.note)
    })
    .await;
    assert!(closed.contains(&previous.period), "{closed}");
}

#[tokio::test]
async fn an_external_pool_scaled_to_zero_and_back_bills_no_phantom_hours() {
    let client = client().await;
    install_crd().await;
    let ns = TestNamespace::new(&client, "zero").await;
    let _op = Operator::start(&ns.name);
    let manifest = r#"apiVersion: crossover.dev/v1alpha1
kind: InferencePool
metadata: {name: nightly}
spec:
  model: m
  engine: {port: 8080}
  minReplicas: 0
  maxReplicas: 4
  replicas: 2
  scaling: {mode: External, intervalSeconds: 2}
  cost: {replicaHourlyUsd: 3.6}
  compareTo: {model: gpt-5, inputUsdPerMillionTokens: 2.5, outputUsdPerMillionTokens: 10}
"#;
    apply(&ns.name, manifest);
    let billed = |n: i32| move |c: &CostStatus| c.billed_replicas == Some(n);
    cost_when(
        &client,
        &ns.name,
        "nightly",
        "two replicas billed",
        billed(2),
    )
    .await;
    let scale = |n: &str| {
        let o = kubectl(&[
            "scale",
            "ipool",
            "nightly",
            "-n",
            &ns.name,
            &format!("--replicas={n}"),
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
    };
    scale("0");
    let at_zero = cost_when(&client, &ns.name, "nightly", "nothing billed", billed(0))
        .await
        .month_to_date
        .unwrap();
    // Twenty seconds at zero, then back to two.
    tokio::time::sleep(Duration::from_secs(20)).await;
    let up = Utc::now();
    scale("2");
    let back = cost_when(
        &client,
        &ns.name,
        "nightly",
        "two replicas billed again",
        billed(2),
    )
    .await
    .month_to_date
    .unwrap();
    let added_seconds = (back.replica_hours - at_zero.replica_hours) * 3600.0;
    let since_up = (from_time(&back.accounted_until) - up).num_milliseconds() as f64 / 1000.0;
    assert!(
        added_seconds <= 2.0 * (since_up + 2.0),
        "{added_seconds} replica-seconds billed for {since_up} s since the scale-up: the 20 s at zero bill nothing"
    );
    assert!(added_seconds >= 0.0);
}

/// Switches what the simulator's pods of `pool` answer on /metrics (they keep serving).
async fn metrics_behavior(sim: &Sim, client: &kube::Client, ns: &str, pool: &str, behavior: &str) {
    let http = reqwest::Client::new();
    for (_, ip) in crate::sim::pod_ips(client, ns, pool).await {
        let r = http
            .put(format!("http://{}/pods/{ip}:8000/behavior", sim.control()))
            .json(&serde_json::json!({ "behavior": behavior }))
            .send()
            .await
            .expect("vllm-sim control");
        assert!(r.status().is_success(), "{}", r.status());
    }
}

#[tokio::test]
async fn a_metrics_outage_bills_every_provisioned_second_and_counts_every_token() {
    let client = client().await;
    install_crd().await;
    let ns = TestNamespace::new(&client, "outage").await;
    let _op = Operator::start(&ns.name);
    let manifest = r#"apiVersion: crossover.dev/v1alpha1
kind: InferencePool
metadata: {name: outage}
spec:
  model: m
  minReplicas: 2
  maxReplicas: 2
  capacity: {outputTokensPerSecond: 5000}
  scaling: {intervalSeconds: 2}
  cost: {replicaHourlyUsd: 3.6}
  compareTo: {model: gpt-5, inputUsdPerMillionTokens: 2.5, outputUsdPerMillionTokens: 10}
"#;
    apply(&ns.name, manifest);
    eventually("two running pods", Duration::from_secs(60), || async {
        (crate::sim::pod_ips(&client, &ns.name, "outage").await.len() == 2).then_some(())
    })
    .await;
    let sim = Sim::start(&client, &ns.name, "outage", 100_000.0).await;
    sim.load("outage", 10.0, 200.0, 50.0).await;
    cost_when(&client, &ns.name, "outage", "tokens counted", |c| {
        c.month_to_date
            .as_ref()
            .is_some_and(|m| m.output_tokens > 0.0)
    })
    .await;

    // Both pods' /metrics answer 503 for a dozen seconds (six intervals) while they keep serving.
    metrics_behavior(&sim, &client, &ns.name, "outage", "unavailable").await;
    let pools: Api<InferencePool> = Api::namespaced(client.clone(), &ns.name);
    let metrics = |want: &'static str| {
        let pools = pools.clone();
        move || {
            let pools = pools.clone();
            async move {
                let s = pools.get("outage").await.ok()?.status?;
                let c = s
                    .conditions
                    .iter()
                    .find(|c| c.type_ == "MetricsAvailable")?;
                (c.status == want).then_some(())
            }
        }
    };
    eventually(
        "MetricsAvailable=False",
        Duration::from_secs(30),
        metrics("False"),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(12)).await;
    metrics_behavior(&sim, &client, &ns.name, "outage", "vllm").await;
    eventually(
        "MetricsAvailable=True",
        Duration::from_secs(30),
        metrics("True"),
    )
    .await;

    // Freeze the counters, and let the operator read them once more.
    sim.load("outage", 0.0, 0.0, 0.0).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let truth = sim.generation_tokens("outage").await;
    let m = month_to_date_near(&pools, "outage", truth).await;
    println!(
        "outage: month-to-date {:.0} output tokens, the pods counted {truth:.0} ({:+.2}%)",
        m.output_tokens,
        (m.output_tokens - truth) / truth * 100.0
    );
    // Enough tokens that the 0.1 % below is a handful (the count depends on how fast the
    // operator reaches each condition, so no tighter bound).
    assert!(truth > 5_000.0, "the pods served {truth} tokens");
    assert!(
        (m.output_tokens - truth).abs() <= 0.001 * truth,
        "every token counted once"
    );

    // Hardware: every second each pod held its GPUs, outage included.
    let pods = Api::<k8s_openapi::api::core::v1::Pod>::namespaced(client.clone(), &ns.name)
        .list(&kube::api::ListParams::default().labels("crossover.dev/pool=outage"))
        .await
        .unwrap();
    let until = from_time(&m.accounted_until);
    let provisioned: f64 = pods
        .items
        .iter()
        .map(|p| {
            let scheduled = p
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .and_then(|c| c.iter().find(|c| c.type_ == "PodScheduled"))
                .and_then(|c| c.last_transition_time.as_ref())
                .map(from_time)
                .expect("a scheduled pod");
            (until - scheduled).num_milliseconds() as f64 / 1000.0
        })
        .sum();
    let billed = m.replica_hours * 3600.0;
    println!(
        "outage: billed {billed:.1} replica-seconds, the pods held their GPUs {provisioned:.1} ({:+.2}%)",
        (billed - provisioned) / provisioned * 100.0
    );
    assert!(
        (billed - provisioned).abs() <= 4.0,
        "billed {billed} replica-seconds, provisioned {provisioned}"
    );
    assert!((m.pool_usd - m.replica_hours * 3.6).abs() < 1e-6);
}

/// With the default five-minute checkpoint, steady readings are held in memory, not written to
/// the status; an operator killed between two checkpoints loses no token, because the next one
/// counts from the baselines written with the last month-to-date.
#[tokio::test]
async fn held_readings_are_not_written_and_a_kill_between_checkpoints_loses_no_token() {
    let client = client().await;
    install_crd().await;
    let ns = TestNamespace::new(&client, "held").await;
    let op = Operator::start_as(
        &ns.name,
        &[("CROSSOVER_STATUS_CHECKPOINT_SECONDS", "300")],
        &[],
        "held-1",
    );
    let manifest = r#"apiVersion: crossover.dev/v1alpha1
kind: InferencePool
metadata: {name: held}
spec:
  model: m
  minReplicas: 1
  maxReplicas: 1
  capacity: {outputTokensPerSecond: 5000}
  scaling: {intervalSeconds: 2}
  cost: {replicaHourlyUsd: 3.6}
  compareTo: {model: gpt-5, inputUsdPerMillionTokens: 2.5, outputUsdPerMillionTokens: 10}
"#;
    apply(&ns.name, manifest);
    eventually("a running pod", Duration::from_secs(60), || async {
        (crate::sim::pod_ips(&client, &ns.name, "held").await.len() == 1).then_some(())
    })
    .await;
    let sim = Sim::start(&client, &ns.name, "held", 100_000.0).await;
    let pools: Api<InferencePool> = Api::namespaced(client.clone(), &ns.name);
    // The first reading's baseline is written at once (a pod is counted from now on).
    eventually("a counted pod", Duration::from_secs(60), || async {
        let s = pools.get("held").await.ok()?.status?;
        (s.load?.baselines.len() == 1).then_some(())
    })
    .await;
    sim.load("held", 10.0, 200.0, 50.0).await;
    // Let the pod go Ready and the verdicts settle, then watch a dozen steady seconds.
    tokio::time::sleep(Duration::from_secs(8)).await;
    let version = |p: &InferencePool| p.metadata.resource_version.clone();
    let mut seen = std::collections::BTreeSet::new();
    let first = pools.get("held").await.unwrap();
    for _ in 0..12 {
        seen.insert(version(&pools.get("held").await.unwrap()));
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let held_mtd = first.status.and_then(|s| s.cost?.month_to_date);
    println!(
        "held: {} status versions over 12 s of steady readings every 2 s",
        seen.len()
    );
    assert!(
        seen.len() <= 2,
        "steady readings are held, not written: {} versions",
        seen.len()
    );

    // Killed between checkpoints: what it held is gone, what it wrote is enough.
    op.stop();
    sim.load("held", 0.0, 0.0, 0.0).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let truth = sim.generation_tokens("held").await;
    let _op = Operator::start_as(&ns.name, &[], &[], "held-2");
    let m = month_to_date_near(&pools, "held", truth).await;
    println!(
        "held: month-to-date {:.0} output tokens after the kill (held {:.0}), the pod counted {truth:.0}",
        m.output_tokens,
        held_mtd.map_or(0.0, |h| h.output_tokens),
    );
    assert!(truth > 5_000.0, "the pod served {truth} tokens");
    assert!(
        (m.output_tokens - truth).abs() <= 0.001 * truth,
        "every token counted once across the kill: {} of {truth}",
        m.output_tokens
    );
}
