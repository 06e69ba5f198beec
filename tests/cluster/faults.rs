//! Control-plane faults, against the real control plane with the API server's audit log on: a
//! kube-apiserver restart, an etcd restart, the operator SIGKILLed in the middle of a scale-up,
//! the leader frozen (SIGSTOP) while a standby takes over and then resumed, and watches that must
//! relist. For each: no wrong scale-down (every Deployment's replicas, as a watch saw them, never
//! fall), every token counted exactly once and replica-hours matching the pods, no Event storm,
//! and the time to recover, printed as `RECOVERY <fault>: ...` lines for docs/RELIABILITY.md.
//!
//! These tests stop and restart parts of the cluster they run on, so they have a cluster of their
//! own and run one at a time: `make test-faults` starts it with `CROSSOVER_AUDIT=1` and runs
//! `cargo test --test faults`. They are a test target of their own (not in the `cluster` binary,
//! whose tests share one cluster and run in parallel).

#[allow(dead_code)]
#[path = "harness.rs"]
mod harness;
#[allow(dead_code)]
#[path = "sim.rs"]
mod sim;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, ListParams};
use kube::runtime::{WatchStreamExt, watcher};

use crossover::api::{InferencePool, MonthToDate, from_time};

use harness::*;
use sim::Sim;

const INTERVAL_S: u64 = 2;
/// Lease timings for these tests: a standby waits 6 s; the leader stops writing 4 s after its last
/// renewal.
const LEASE: [&str; 6] = [
    "--lease-duration-seconds",
    "6",
    "--lease-renew-deadline-seconds",
    "4",
    "--lease-retry-period-seconds",
    "1",
];

/// One fault at a time: each stops or restarts what the others run on.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn cluster_dir() -> PathBuf {
    kubeconfig()
        .parent()
        .expect("the kubeconfig lives in the cluster directory")
        .to_path_buf()
}

/// `tools/cluster.sh ARGS` on the test cluster, with the settings it was started with.
fn cluster(args: &[&str]) {
    let o = Command::new(repo().join("tools/cluster.sh"))
        .args(args)
        .env("CROSSOVER_CLUSTER_DIR", cluster_dir())
        .output()
        .expect("run tools/cluster.sh");
    assert!(
        o.status.success(),
        "tools/cluster.sh {args:?} failed: {}",
        stderr(&o)
    );
}

fn signal(pid: u32, sig: &str) {
    let o = Command::new("kill")
        .args([&format!("-{sig}"), &pid.to_string()])
        .output()
        .expect("kill");
    assert!(o.status.success(), "kill -{sig} {pid}: {}", stderr(&o));
}

/// One request in the API server's audit log.
#[derive(Debug, Clone)]
struct Audited {
    received: DateTime<Utc>,
    agent: String,
    resource: String,
    subresource: String,
    name: String,
    code: u16,
}

impl Audited {
    fn by(&self, who: &str) -> bool {
        self.agent.contains(&format!("({who})"))
    }
    fn applied(&self) -> bool {
        (200..300).contains(&self.code)
    }
    fn status_write(&self) -> bool {
        self.resource == "inferencepools" && self.subresource == "status" && self.applied()
    }
}

/// The writes to namespace `ns` in the audit log (the cluster logs writes only).
fn audit(ns: &str) -> Vec<Audited> {
    let path = cluster_dir().join("audit.log");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "no audit log at {} ({e}): these tests need the cluster started with CROSSOVER_AUDIT=1; run them with `make test-faults`",
            path.display()
        )
    });
    text.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["objectRef"]["namespace"] == ns)
        .filter_map(|v| {
            let s = |p: &str| {
                v.pointer(p)
                    .and_then(|x| x.as_str())
                    .unwrap_or("")
                    .to_string()
            };
            Some(Audited {
                received: s("/requestReceivedTimestamp").parse().ok()?,
                agent: s("/userAgent"),
                resource: s("/objectRef/resource"),
                subresource: s("/objectRef/subresource"),
                name: s("/objectRef/name"),
                code: v["responseStatus"]["code"].as_u64().unwrap_or(0) as u16,
            })
        })
        .collect()
}

/// (spec.replicas, generation) as a watch saw them, per Deployment.
type Seen = BTreeMap<String, Vec<(i32, i64)>>;

/// Every spec.replicas of every Deployment in the namespace, as a watch saw them.
#[derive(Clone, Default)]
struct ReplicaLog(Arc<Mutex<Seen>>);

impl ReplicaLog {
    fn start(client: &kube::Client, ns: &str) -> (Self, tokio::task::JoinHandle<()>) {
        let log = Self::default();
        let api: Api<Deployment> = Api::namespaced(client.clone(), ns);
        let sink = log.clone();
        let task = tokio::spawn(async move {
            watcher(api, watcher::Config::default())
                .default_backoff()
                .applied_objects()
                .for_each(|d| {
                    if let Ok(d) = d {
                        let replicas = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0);
                        let generation = d.metadata.generation.unwrap_or(0);
                        let name = d.metadata.name.clone().unwrap_or_default();
                        let mut map = sink.0.lock().unwrap();
                        let seen = map.entry(name).or_default();
                        if seen.last() != Some(&(replicas, generation)) {
                            seen.push((replicas, generation));
                        }
                    }
                    futures::future::ready(())
                })
                .await
        });
        (log, task)
    }

    /// Panics if any Deployment's replicas ever went down.
    fn assert_never_fell(&self, fault: &str) {
        for (name, seen) in self.0.lock().unwrap().iter() {
            let replicas: Vec<i32> = seen.iter().map(|s| s.0).collect();
            assert!(
                replicas.windows(2).all(|w| w[1] >= w[0]),
                "{fault}: Deployment {name} was scaled down: replicas went {replicas:?}"
            );
        }
    }

    fn last(&self, name: &str) -> Option<(i32, i64)> {
        self.0.lock().unwrap().get(name)?.last().copied()
    }
}

/// An Auto pool offered 1,000 output tok/s against 1,000 a replica at 70 %: two replicas. The
/// 10-minute scale-down window means no legitimate scale-down can happen during a test.
fn steady_pool(name: &str) -> String {
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
    scaleDownStabilizationSeconds: 600
    loadWindowSeconds: {INTERVAL_S}
    startupSeconds: 0
    saturation: {{queueSustainedSeconds: 4}}
  cost: {{replicaHourlyUsd: 3.6}}
  compareTo: {{model: gpt-5, inputUsdPerMillionTokens: 2.5, outputUsdPerMillionTokens: 10}}
"#
    )
}

/// 2 requests a second of 200 in and 500 out.
async fn steady_load(sim: &Sim, pool: &str) {
    sim.load(pool, 2.0, 200.0, 500.0).await;
}

async fn deployment_replicas(client: &kube::Client, ns: &str, name: &str) -> Option<i32> {
    Api::<Deployment>::namespaced(client.clone(), ns)
        .get_opt(name)
        .await
        .ok()??
        .spec?
        .replicas
}

async fn pod_ips(client: &kube::Client, ns: &str, pool: &str) -> usize {
    sim::pod_ips(client, ns, pool).await.len()
}

/// A namespace, one operator replica ("replica-a"), the steady pool at two replicas served by the
/// simulator, a watch on every Deployment, and the money as it stood when the load was at rest.
struct Scene {
    client: kube::Client,
    ns: TestNamespace,
    sim: Sim,
    replicas: ReplicaLog,
    _watch: AbortOnDrop,
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);
impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Scene {
    /// Sets the scene with the operator replicas `operators` starts in the namespace.
    async fn new<T>(prefix: &str, operators: impl FnOnce(&str) -> T) -> (Self, T) {
        let client = client().await;
        install_crd().await;
        let ns = TestNamespace::new(&client, prefix).await;
        let (replicas, watch) = ReplicaLog::start(&client, &ns.name);
        let started = operators(&ns.name);
        apply(&ns.name, &steady_pool("steady"));
        eventually("a pod with an IP", Duration::from_secs(60), || async {
            (pod_ips(&client, &ns.name, "steady").await > 0).then_some(())
        })
        .await;
        let sim = Sim::start(&client, &ns.name, "steady", 1000.0).await;
        let scene = Self {
            client,
            ns,
            sim,
            replicas,
            _watch: AbortOnDrop(watch),
        };
        (scene, started)
    }

    /// Offers the steady load and waits for two replicas, both served, and fresh readings.
    async fn at_two_replicas(&self) {
        steady_load(&self.sim, "steady").await;
        let (c, ns) = (&self.client, &self.ns.name);
        eventually(
            "two replicas, both served",
            Duration::from_secs(90),
            || async {
                self.sim.sync(c, ns, "steady").await;
                let up = deployment_replicas(c, ns, "steady").await? == 2
                    && pod_ips(c, ns, "steady").await == 2;
                up.then_some(())
            },
        )
        .await;
        self.sim.sync(c, ns, "steady").await;
        self.wait_for_readings_of(2).await;
    }

    async fn pool(&self, name: &str) -> Option<InferencePool> {
        Api::<InferencePool>::namespaced(self.client.clone(), &self.ns.name)
            .get_opt(name)
            .await
            .ok()?
    }

    /// Until the status reports a reading of `pods` pods taken after now.
    async fn wait_for_readings_of(&self, pods: usize) {
        let since = Utc::now();
        eventually(
            "a reading of every pod",
            Duration::from_secs(60),
            || async {
                let load = self.pool("steady").await?.status?.load?;
                let at = from_time(load.observed_at.as_ref()?);
                let all = load.pods_observed.as_deref() == Some(&format!("{pods}/{pods}"));
                (at > since && all).then_some(())
            },
        )
        .await;
    }

    /// Stops the load and waits until the simulator's counters and the status's money stop
    /// moving; returns both.
    async fn at_rest(&self) -> (f64, MonthToDate) {
        self.sim.load("steady", 0.0, 200.0, 500.0).await;
        let mut last: Option<(f64, f64)> = None;
        let mut still = 0;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            tokio::time::sleep(Duration::from_secs(INTERVAL_S)).await;
            let served = self.sim.generation_tokens("steady").await;
            let mtd = self.money().await;
            let now = (served, mtd.as_ref().map_or(-1.0, |m| m.output_tokens));
            still = if last == Some(now) { still + 1 } else { 0 };
            last = Some(now);
            // Three intervals unchanged: every pod has been read since its counters stopped.
            if still >= 3
                && let Some(m) = mtd
            {
                return (served, m);
            }
            assert!(
                Instant::now() < deadline,
                "the money never settled: {now:?}"
            );
        }
    }

    async fn money(&self) -> Option<MonthToDate> {
        self.pool("steady").await?.status?.cost?.month_to_date
    }

    /// The operator's Warning and Normal Events in the namespace since `since`, repeats included
    /// (the scheduler's and the controllers' own are not the operator's to answer for).
    async fn events_since(&self, since: DateTime<Utc>) -> BTreeMap<String, i32> {
        let list = Api::<Event>::namespaced(self.client.clone(), &self.ns.name)
            .list(&ListParams::default())
            .await
            .expect("list events");
        let mut by_reason = BTreeMap::new();
        for e in list
            .items
            .into_iter()
            .filter(|e| e.reporting_controller.as_deref() == Some("crossover"))
        {
            let last = e
                .series
                .as_ref()
                .map(|s| s.last_observed_time.0)
                .or(e.event_time.as_ref().map(|t| t.0));
            let Some(last) = last else { continue };
            if last.as_millisecond() < since.timestamp_millis() {
                continue;
            }
            let n = e.series.as_ref().map_or(1, |s| s.count);
            *by_reason
                .entry(e.reason.clone().unwrap_or_default())
                .or_insert(0) += n;
        }
        by_reason
    }

    /// The operator's first applied status write at or after `t` (from the audit log).
    fn first_status_write_after(&self, who: &str, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        audit(&self.ns.name)
            .into_iter()
            .filter(|a| a.by(who) && a.status_write() && a.received >= t)
            .map(|a| a.received)
            .min()
    }

    async fn wait_for_status_write_after(
        &self,
        who: &str,
        t: DateTime<Utc>,
        within: Duration,
    ) -> DateTime<Utc> {
        eventually(&format!("a status write by {who}"), within, || async {
            self.first_status_write_after(who, t)
        })
        .await
    }
}

/// An operator replica with the fault tests' lease, health and metrics on an ephemeral port.
fn replica(ns: &str, who: &str, extra: &[&str]) -> Operator {
    let mut args: Vec<&str> = LEASE.to_vec();
    args.extend(extra);
    Operator::start_as(ns, &[("POD_NAME", who)], &args, &format!("{ns}-{who}"))
}

/// Replica-hours are the pods', and every token served between two rests is in the status once.
/// `slack` is the share of the tokens served a fault may miss or add: a lost or doubled reading
/// is a whole interval's tokens (several percent here), far above it.
fn assert_money(
    fault: &str,
    before: &(f64, MonthToDate),
    after: &(f64, MonthToDate),
    pods: f64,
    slack: f64,
) {
    let span_s = (from_time(&after.1.accounted_until) - from_time(&before.1.accounted_until))
        .as_seconds_f64();
    let hours = after.1.replica_hours - before.1.replica_hours;
    let expected = pods * span_s / 3600.0;
    assert!(
        (hours - expected).abs() * 3600.0 <= 2.0,
        "{fault}: {hours} replica-hours billed over {span_s} s of {pods} pods (expected {expected})"
    );
    let served = after.0 - before.0;
    let counted = after.1.output_tokens - before.1.output_tokens;
    eprintln!("MONEY {fault}: {served} output tokens served, {counted} counted");
    assert!(served > 0.0, "{fault}: no load was served");
    assert!(
        (counted - served).abs() <= served * slack,
        "{fault}: {served} output tokens served, {counted} counted (unaccounted seconds {} → {})",
        before.1.unaccounted_seconds,
        after.1.unaccounted_seconds
    );
}

/// The share of tokens a fault test tolerates (see `without_a_fault_the_money_is_exact`, which
/// tolerates none).
const FAULT_SLACK: f64 = 0.01;

/// A storm is the same Event again and again (one per reconcile would be a dozen here); a fault
/// may explain itself once or twice per reason, and what it does (a scale, a verdict that moved
/// with the load) is announced once each.
fn assert_no_event_storm(fault: &str, events: &BTreeMap<String, i32>) {
    let total: i32 = events.values().sum();
    eprintln!("EVENTS {fault}: {events:?}");
    assert!(
        events.values().all(|&n| n <= 2),
        "{fault}: an Event repeated: {events:?}"
    );
    assert!(total <= 6, "{fault}: {total} Events: {events:?}");
}

fn report(fault: &str, what: &str, took: chrono::TimeDelta) {
    eprintln!(
        "RECOVERY {fault}: {what} {:.1} s",
        took.num_milliseconds() as f64 / 1000.0
    );
}

/// A control-plane component restarted under a steady pool: the leader may lose its lease while
/// the API server cannot renew it, stands by, and leads again once it answers.
async fn survives_a_restart_of(component: &str, prefix: &str) {
    let _one = ONE_AT_A_TIME.lock().await;
    let (scene, mut op) = Scene::new(prefix, |ns| replica(ns, "replica-a", &[])).await;
    scene.at_two_replicas().await;
    let before = scene.at_rest().await;
    steady_load(&scene.sim, "steady").await;
    scene.wait_for_readings_of(2).await;
    let (_, generation) = scene.replicas.last("steady").unwrap();

    let fault_start = Utc::now();
    cluster(&["restart", component]);
    let back = Utc::now();
    let first = scene
        .wait_for_status_write_after("replica-a", back, Duration::from_secs(90))
        .await;
    report(
        &format!("{component} restart"),
        "from the component serving again to the operator's next status write",
        first - back,
    );
    report(
        &format!("{component} restart"),
        "operator writes resumed after the restart began",
        first - fault_start,
    );
    scene.wait_for_readings_of(2).await;
    let after = scene.at_rest().await;

    assert!(
        op.running(),
        "the operator exited during the {component} restart"
    );
    scene.replicas.assert_never_fell(component);
    assert_eq!(
        scene.replicas.last("steady"),
        Some((2, generation)),
        "the steady pool's Deployment changed"
    );
    assert_money(component, &before, &after, 2.0, FAULT_SLACK);
    assert_no_event_storm(component, &scene.events_since(fault_start).await);
}

/// The control for every fault below: the same scene with no fault counts the money exactly.
#[tokio::test]
async fn without_a_fault_the_money_is_exact() {
    let _one = ONE_AT_A_TIME.lock().await;
    let (scene, mut op) = Scene::new("fault-none", |ns| replica(ns, "replica-a", &[])).await;
    scene.at_two_replicas().await;
    let before = scene.at_rest().await;
    steady_load(&scene.sim, "steady").await;
    scene.wait_for_readings_of(2).await;
    tokio::time::sleep(Duration::from_secs(10 * INTERVAL_S)).await;
    let after = scene.at_rest().await;
    assert!(op.running());
    scene.replicas.assert_never_fell("no fault");
    assert_money("no fault", &before, &after, 2.0, 0.0);
}

#[tokio::test]
async fn a_kube_apiserver_restart_loses_nothing_and_scales_nothing_down() {
    survives_a_restart_of("kube-apiserver", "fault-apiserver").await;
}

#[tokio::test]
async fn an_etcd_restart_loses_nothing_and_scales_nothing_down() {
    survives_a_restart_of("etcd", "fault-etcd").await;
}

#[tokio::test]
async fn an_operator_killed_in_the_middle_of_a_scale_up_finishes_it_once() {
    let _one = ONE_AT_A_TIME.lock().await;
    let (scene, op) = Scene::new("fault-kill", |ns| replica(ns, "replica-a", &[])).await;
    let (c, ns) = (&scene.client, scene.ns.name.clone());
    scene.at_two_replicas().await;
    let before = scene.at_rest().await;

    // 2,500 tok/s: four replicas' worth. The simulator keeps serving only the two pods it has, so
    // the new ones start but report nothing: partial data, on which nothing may scale down.
    scene.sim.load("steady", 5.0, 200.0, 500.0).await;
    let scaling = eventually("the scale-up", Duration::from_secs(30), || async {
        let r = deployment_replicas(c, &ns, "steady").await?;
        (r > 2).then_some(r)
    })
    .await;
    signal(op.pid(), "KILL");
    let killed = Utc::now();
    drop(op);
    let mut op = replica(&ns, "replica-a", &[]);
    let first = scene
        .wait_for_status_write_after("replica-a", killed, Duration::from_secs(60))
        .await;
    report(
        "operator SIGKILL mid scale-up",
        "from the kill to the restarted operator's first status write",
        first - killed,
    );
    let pool = eventually(
        "the scale recorded in the status",
        Duration::from_secs(30),
        || async {
            let p = scene.pool("steady").await?;
            let s = p.status.as_ref()?;
            (s.desired_replicas? >= scaling && s.last_scale_time.is_some()).then_some(p)
        },
    )
    .await;
    // Hold the load a few intervals: a restarted operator with no memory must not undo it.
    tokio::time::sleep(Duration::from_secs(4 * INTERVAL_S)).await;
    let at = deployment_replicas(c, &ns, "steady").await.unwrap();
    assert!(
        at >= scaling,
        "scaled from {scaling} to {at} after the restart"
    );
    let after = scene.at_rest().await;

    assert!(op.running());
    scene.replicas.assert_never_fell("SIGKILL");
    // Replica-hours: the two old pods for the whole span, the new ones from when they were
    // scheduled (checked through the pod list rather than a fixed count).
    let pods = Api::<Pod>::namespaced(c.clone(), &ns)
        .list(&ListParams::default().labels("crossover.dev/pool=steady"))
        .await
        .unwrap();
    let (t0, t1) = (
        from_time(&before.1.accounted_until),
        from_time(&after.1.accounted_until),
    );
    let pod_seconds: f64 = pods
        .items
        .iter()
        .filter_map(|p| {
            let c = p.status.as_ref()?.conditions.as_ref()?;
            let at = c.iter().find(|c| c.type_ == "PodScheduled")?;
            let from = from_time(at.last_transition_time.as_ref()?).max(t0);
            Some((t1 - from).as_seconds_f64().max(0.0))
        })
        .sum();
    let hours = after.1.replica_hours - before.1.replica_hours;
    assert!(
        (hours * 3600.0 - pod_seconds).abs() <= 2.0 * pods.items.len() as f64,
        "{hours} replica-hours billed for {pod_seconds} pod-seconds"
    );
    let (served, counted) = (
        after.0 - before.0,
        after.1.output_tokens - before.1.output_tokens,
    );
    eprintln!("MONEY SIGKILL: {served} output tokens served, {counted} counted");
    assert!(
        (counted - served).abs() <= served * FAULT_SLACK,
        "tokens across the kill: {served} served, {counted} counted (unaccounted seconds {} → {})",
        before.1.unaccounted_seconds,
        after.1.unaccounted_seconds
    );
    let events = scene
        .events_since(killed - chrono::TimeDelta::seconds(30))
        .await;
    let scaled = events.get("Scaled").copied().unwrap_or(0);
    assert!(
        (1..=2).contains(&scaled),
        "the scale-up to {} is announced once (twice at most when its status write died with the process): {events:?}",
        pool.status.unwrap().desired_replicas.unwrap()
    );
    assert_no_event_storm("SIGKILL", &events);
}

#[tokio::test]
async fn a_frozen_leader_never_writes_after_the_standby_took_over() {
    let _one = ONE_AT_A_TIME.lock().await;
    let (scene, mut a) = Scene::new("fault-freeze", |ns| replica(ns, "replica-a", &[])).await;
    let ns = scene.ns.name.clone();
    eventually("replica-a leads", Duration::from_secs(30), || async {
        audit(&ns)
            .iter()
            .any(|w| w.by("replica-a") && w.resource == "leases" && w.applied())
            .then_some(())
    })
    .await;
    let mut b = replica(&ns, "replica-b", &[]);
    scene.at_two_replicas().await;
    let before = scene.at_rest().await;
    steady_load(&scene.sim, "steady").await;
    scene.wait_for_readings_of(2).await;

    signal(a.pid(), "STOP");
    let frozen = Utc::now();
    let first_b = scene
        .wait_for_status_write_after("replica-b", frozen, Duration::from_secs(60))
        .await;
    report(
        "leader frozen (SIGSTOP)",
        "from the freeze to the standby's first status write",
        first_b - frozen,
    );
    // Let the new leader work a while, then wake the old one while writes are flowing.
    tokio::time::sleep(Duration::from_secs(3 * INTERVAL_S)).await;
    signal(a.pid(), "CONT");
    let resumed = Utc::now();
    tokio::time::sleep(Duration::from_secs(5 * INTERVAL_S)).await;
    let after = scene.at_rest().await;
    assert!(a.running(), "the old leader exited instead of standing by");
    assert!(b.running());

    // The audit log: after the new leader's first write, nothing from the old one landed, and it
    // tried nothing but to renew the Lease it had lost (refused).
    let log = audit(&ns);
    let first_b_write = log
        .iter()
        .filter(|w| w.by("replica-b") && w.applied() && w.resource != "leases")
        .map(|w| w.received)
        .min()
        .expect("the standby wrote");
    let late: Vec<&Audited> = log
        .iter()
        .filter(|w| w.by("replica-a") && w.received >= first_b_write)
        .collect();
    let landed: Vec<&&Audited> = late.iter().filter(|w| w.applied()).collect();
    assert!(
        landed.is_empty(),
        "the old leader wrote after the new one's first write ({first_b_write}): {landed:#?}"
    );
    let tried: Vec<&&Audited> = late.iter().filter(|w| w.resource != "leases").collect();
    assert!(
        tried.is_empty(),
        "the old leader sent writes past its gate: {tried:#?}"
    );
    let last_a = log
        .iter()
        .filter(|w| w.by("replica-a") && w.applied() && w.resource != "leases")
        .map(|w| w.received)
        .max();
    eprintln!(
        "AUDIT one writer: replica-a's last write {last_a:?}, replica-b's first {first_b_write}, \
         replica-a refused after resuming at {resumed}: {} Lease attempts, {} other writes",
        late.len(),
        tried.len()
    );
    if let Some(last_a) = last_a {
        report(
            "leader frozen (SIGSTOP)",
            "no writer at all (old leader's last write to the new one's first)",
            first_b_write - last_a,
        );
    }
    scene.replicas.assert_never_fell("SIGSTOP");
    assert_money("SIGSTOP", &before, &after, 2.0, FAULT_SLACK);
    assert_no_event_storm("SIGSTOP", &scene.events_since(frozen).await);
}

/// External pool scaled while the operator cannot see it.
fn external_pool(name: &str, replicas: i32) -> String {
    steady_pool(name)
        .replace(
            "scaleDownStabilizationSeconds: 600",
            "scaleDownStabilizationSeconds: 600\n    mode: External",
        )
        .replace(
            "minReplicas: 1",
            &format!("minReplicas: 1\n  replicas: {replicas}"),
        )
        // Port 8080: no simulator answers there; these pools are sized from outside.
        .replace(
            "gpu: {count: 1, product: NVIDIA-H100-80GB-HBM3}",
            "gpu: {count: 1, product: NVIDIA-H100-80GB-HBM3}\n  engine: {port: 8080}",
        )
}

#[tokio::test]
async fn watches_that_must_relist_pick_up_what_changed_meanwhile() {
    let _one = ONE_AT_A_TIME.lock().await;
    // One replica without election: the same watches live through the fault and must relist.
    let (scene, mut op) = Scene::new("fault-relist", |ns| {
        replica(ns, "replica-a", &["--leader-elect", "false"])
    })
    .await;
    let (c, ns) = (&scene.client, scene.ns.name.clone());
    apply(&ns, &external_pool("ext", 1));
    apply(&ns, &external_pool("gone", 1));
    scene.at_two_replicas().await;
    eventually(
        "the external pools at one replica",
        Duration::from_secs(60),
        || async {
            let ext = deployment_replicas(c, &ns, "ext").await? == 1;
            let gone = deployment_replicas(c, &ns, "gone").await? == 1;
            (ext && gone).then_some(())
        },
    )
    .await;
    let before = scene.at_rest().await;
    steady_load(&scene.sim, "steady").await;
    scene.wait_for_readings_of(2).await;

    // Freeze the operator, cut every connection, change things, and compact etcd: the
    // resourceVersions its watches hold are gone, so they can only relist.
    signal(op.pid(), "STOP");
    let fault_start = Utc::now();
    cluster(&["restart", "kube-apiserver"]);
    let o = kubectl(&["scale", "ipool", "ext", "--replicas=3", "-n", &ns]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = kubectl(&["delete", "ipool", "gone", "-n", &ns, "--wait=false"]);
    assert!(o.status.success(), "{}", stderr(&o));
    cluster(&["etcd-compact"]);
    signal(op.pid(), "CONT");
    let resumed = Utc::now();

    eventually(
        "the scaled external pool followed",
        Duration::from_secs(90),
        || async { (deployment_replicas(c, &ns, "ext").await? == 3).then_some(()) },
    )
    .await;
    let relisted = Utc::now();
    report(
        "watches relist (410 after compaction)",
        "from the operator resuming to the missed change applied",
        relisted - resumed,
    );
    let first = scene
        .wait_for_status_write_after("replica-a", resumed, Duration::from_secs(60))
        .await;
    report(
        "watches relist (410 after compaction)",
        "from the operator resuming to its next status write",
        first - resumed,
    );
    scene.wait_for_readings_of(2).await;
    let after = scene.at_rest().await;
    assert!(op.running());
    // The deleted pool's children are never created again, and once the watches relisted
    // nothing is written for it. (A no-op apply to a child that still existed, raced at the
    // instant the frozen operator resumed, is harmless: its owner is gone, the garbage collector
    // removes it.)
    let gone: Vec<Audited> = audit(&ns)
        .into_iter()
        .filter(|w| w.by("replica-a") && w.name == "gone" && w.received >= fault_start)
        .collect();
    let recreated: Vec<&Audited> = gone.iter().filter(|w| w.code == 201).collect();
    assert!(
        recreated.is_empty(),
        "recreated the deleted pool's children: {recreated:#?}"
    );
    let late: Vec<&Audited> = gone.iter().filter(|w| w.received >= relisted).collect();
    assert!(
        late.is_empty(),
        "wrote for the deleted pool after the relist: {late:#?}"
    );
    scene.replicas.assert_never_fell("relist");
    assert_money("relist", &before, &after, 2.0, FAULT_SLACK);
    assert_no_event_storm("relist", &scene.events_since(fault_start).await);
}
