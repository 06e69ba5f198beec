//! `make bench-fleet`: what a fleet costs. N pools (default 1,000) × 2 pods on the local control
//! plane, each pod's /metrics served by vllm-sim, a 15 s interval, one operator (release build,
//! leader election on). After every pool reports load and the fleet has settled, it measures over
//! a steady window: the operator's RSS and CPU, its API requests per second by verb and resource
//! (from the API server's audit log, by the operator's User-Agent), its status writes per second
//! and which status fields they changed (from its debug log); then it steps the load of a few
//! pools and times each step to the pool's scale decision (the Deployment's new replicas).
//!
//! The make target starts the cluster (audit log on, every request; a /16 Service range; nodes
//! for the pods) and stops it afterwards. Run it on a quiet machine: it measures the operator,
//! but the control plane and the simulator share the cores.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use clap::Parser;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};

use crossover::api::InferencePool;

#[derive(Parser, Debug)]
struct Args {
    /// Pools in the fleet (two pods each).
    #[arg(long, default_value_t = 1000)]
    pools: usize,
    /// spec.scaling.intervalSeconds of every pool.
    #[arg(long, default_value_t = 15)]
    interval_seconds: u64,
    /// After every pool reports load, wait this long before measuring (the start-up herd spreads
    /// over the interval within a few intervals).
    #[arg(long, default_value_t = 150)]
    settle_seconds: u64,
    /// The steady window measured.
    #[arg(long, default_value_t = 300)]
    steady_seconds: u64,
    /// Pools whose load is stepped, one after another, to time the scale decision.
    #[arg(long, default_value_t = 5)]
    steps: usize,
    #[arg(long)]
    operator: PathBuf,
    #[arg(long)]
    sim: PathBuf,
    /// The cluster directory (kubeconfig and audit.log).
    #[arg(long)]
    cluster_dir: PathBuf,
    /// Where the operator's log and the JSON summary go.
    #[arg(long, default_value = "target/bench-fleet")]
    out: PathBuf,
    /// Given by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

const NAMESPACE: &str = "fleet";
const IDENTITY: &str = "fleet-bench";
/// Per pool: 2 requests a second of 100 in and 50 out (100 output tok/s) against a declared 100 a
/// replica at 70 %: two replicas (the floor). A step quadruples it: four replicas' worth.
const STEADY_RPS: f64 = 2.0;
const STEP_FACTOR: f64 = 4.0;

fn pool(name: &str, interval: u64) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": "crossover.dev/v1alpha1",
        "kind": "InferencePool",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {
            "model": "meta-llama/Llama-3.1-8B-Instruct",
            "gpu": {"count": 1},
            "minReplicas": 2,
            "maxReplicas": 4,
            "capacity": {"outputTokensPerSecond": 100, "targetUtilization": 0.7},
            "scaling": {"intervalSeconds": interval},
            "cost": {"replicaHourlyUsd": 2.5},
            "compareTo": {"model": "gpt-5", "inputUsdPerMillionTokens": 2.5, "outputUsdPerMillionTokens": 10}
        }
    })
}

fn name(i: usize) -> String {
    format!("fleet-{i:04}")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

struct Killed(Child);
impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The simulator's control endpoint.
#[derive(Clone)]
struct Sim {
    http: reqwest::Client,
    control: String,
}

impl Sim {
    async fn add(&self, ip: &str, pool: &str) {
        let _ = self
            .http
            .post(format!("http://{}/pods", self.control))
            .json(&serde_json::json!({"address": format!("{ip}:8000"), "pool": pool}))
            .send()
            .await;
    }

    async fn remove(&self, ip: &str) {
        let _ = self
            .http
            .delete(format!("http://{}/pods/{ip}:8000", self.control))
            .send()
            .await;
    }

    async fn load(&self, pool: &str, rps: f64) {
        let _ = self
            .http
            .post(format!("http://{}/load", self.control))
            .json(&serde_json::json!({
                "pool": pool, "requestsPerSecond": rps,
                "inputTokensPerRequest": 100.0, "outputTokensPerRequest": 50.0
            }))
            .send()
            .await;
    }
}

/// Keeps the simulator serving exactly the fleet's running pods, and each pool's load split over
/// them (the simulator splits a pool's load at the time it is offered).
async fn serve_pods(
    client: kube::Client,
    sim: Sim,
    loads: Arc<std::sync::Mutex<HashMap<String, f64>>>,
) {
    let pods: Api<Pod> = Api::namespaced(client, NAMESPACE);
    let mut served: HashMap<String, (String, String)> = HashMap::new(); // pod → (ip, pool)
    let stream = watcher(pods, watcher::Config::default())
        .default_backoff()
        .touched_objects();
    futures::pin_mut!(stream);
    while let Some(event) = stream.next().await {
        let Ok(pod) = event else { continue };
        let name = pod.metadata.name.clone().unwrap_or_default();
        let pool = pod
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get("crossover.dev/pool").cloned())
            .unwrap_or_default();
        let ip = pod.status.as_ref().and_then(|s| s.pod_ip.clone());
        let gone = pod.metadata.deletion_timestamp.is_some();
        let before = served.get(&name).cloned();
        let now = match (&ip, gone) {
            (Some(ip), false) => Some((ip.clone(), pool.clone())),
            _ => None,
        };
        if before == now {
            continue;
        }
        if let Some((old_ip, _)) = &before {
            sim.remove(old_ip).await;
            served.remove(&name);
        }
        if let Some((ip, pool)) = &now {
            sim.add(ip, pool).await;
            served.insert(name, (ip.clone(), pool.clone()));
        }
        let rps = loads.lock().unwrap().get(&pool).copied();
        if let Some(rps) = rps {
            sim.load(&pool, rps).await;
        }
    }
}

fn proc_stat(pid: u32) -> (u64, u64) {
    // (utime + stime in clock ticks, RSS in KiB)
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = fields
        .get(11)
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0)
        + fields
            .get(12)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let rss = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    (ticks, rss)
}

fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

/// The operator's requests in [from, to] from the audit log, by "verb resource[/subresource]".
fn requests(audit: &PathBuf, from: DateTime<Utc>, to: DateTime<Utc>) -> BTreeMap<String, u64> {
    let text = std::fs::read_to_string(audit).unwrap_or_default();
    let mut by = BTreeMap::new();
    for line in text.lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if !v["userAgent"]
            .as_str()
            .is_some_and(|a| a.contains(&format!("({IDENTITY})")))
        {
            continue;
        }
        let Some(at) = v["requestReceivedTimestamp"]
            .as_str()
            .and_then(|t| t.parse::<DateTime<Utc>>().ok())
        else {
            continue;
        };
        if at < from || at > to {
            continue;
        }
        let r = &v["objectRef"];
        let mut what = format!(
            "{} {}",
            v["verb"].as_str().unwrap_or("?"),
            r["resource"].as_str().unwrap_or("-")
        );
        if let Some(sub) = r["subresource"].as_str() {
            what = format!("{what}/{sub}");
        }
        *by.entry(what).or_insert(0) += 1;
    }
    by
}

/// Status fields changed by the operator's status writes in [from, to], from its debug log
/// (`writing status changed=[...]`).
fn changed_fields(log: &PathBuf, from: DateTime<Utc>, to: DateTime<Utc>) -> BTreeMap<String, u64> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let mut by = BTreeMap::new();
    for line in text.lines().filter(|l| l.contains("writing status")) {
        let line = strip_ansi(line);
        let line = line.as_str();
        let Some(at) = line
            .split_whitespace()
            .next()
            .and_then(|t| t.parse::<DateTime<Utc>>().ok())
        else {
            continue;
        };
        if at < from || at > to {
            continue;
        }
        let Some(list) = line
            .split_once("changed=[")
            .and_then(|(_, r)| r.split_once(']'))
            .map(|(l, _)| l)
        else {
            continue;
        };
        let fields: BTreeSet<&str> = list
            .split(',')
            .map(|f| f.trim().trim_matches('"'))
            .filter(|f| !f.is_empty())
            .collect();
        let key = fields.into_iter().collect::<Vec<_>>().join("+");
        *by.entry(key).or_insert(0) += 1;
    }
    by
}

/// The line without terminal colour codes (the operator colours its log even into a file).
fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

async fn replicas(deployments: &Api<Deployment>, name: &str) -> Option<i32> {
    deployments.get_opt(name).await.ok()??.spec?.replicas
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    std::fs::create_dir_all(&args.out)?;
    let kubeconfig = args.cluster_dir.join("kubeconfig");
    let audit = args.cluster_dir.join("audit.log");
    let kc = kube::config::Kubeconfig::read_from(&kubeconfig)?;
    let config = kube::Config::from_custom_kubeconfig(kc, &Default::default()).await?;
    let client = kube::Client::try_from(config)?;
    let t_start = Instant::now();
    let say = |what: &str| {
        eprintln!(
            "[bench-fleet {:>5.0}s] {what}",
            t_start.elapsed().as_secs_f64()
        )
    };

    let crd = Command::new(&args.operator).args(["crd"]).output()?;
    let mut apply = Command::new("kubectl")
        .args(["--kubeconfig", kubeconfig.to_str().unwrap_or_default()])
        .args(["apply", "--server-side", "--force-conflicts", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()?;
    {
        use std::io::Write;
        apply.stdin.take().map(|mut i| i.write_all(&crd.stdout));
    }
    anyhow::ensure!(apply.wait()?.success(), "the CRD did not apply");
    let established = Command::new("kubectl")
        .args(["--kubeconfig", kubeconfig.to_str().unwrap_or_default()])
        .args([
            "wait",
            "--for=condition=Established",
            "crd/inferencepools.crossover.dev",
            "--timeout=60s",
        ])
        .stdout(Stdio::null())
        .status()?;
    anyhow::ensure!(established.success(), "the CRD is not Established");
    let ns: Namespace =
        serde_json::from_value(serde_json::json!({"metadata": {"name": NAMESPACE}}))?;
    let _ = Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await;

    let sim_port = free_port();
    let sim = Sim {
        http: reqwest::Client::new(),
        control: format!("127.0.0.1:{sim_port}"),
    };
    let _sim = Killed(
        Command::new(&args.sim)
            .args(["--control", &sim.control])
            .args([
                "--output-tokens-per-second",
                "400",
                "--per-request-output-tokens-per-second",
                "200",
            ])
            .args(["--input-tokens-per-second", "100000", "--tick-ms", "200"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?,
    );
    let op_log = args.out.join("operator.log");
    let probe = free_port();
    let operator = Killed(
        Command::new(&args.operator)
            .args([
                "run",
                "--namespace",
                NAMESPACE,
                "--probe-address",
                &format!("127.0.0.1:{probe}"),
            ])
            .env("KUBECONFIG", &kubeconfig)
            .env("POD_NAME", IDENTITY)
            .env(
                "RUST_LOG",
                "info,kube=warn,crossover::controller::reconcile=debug",
            )
            .stdout(std::fs::File::create(args.out.join("operator.stdout"))?)
            .stderr(std::fs::File::create(&op_log)?)
            .spawn()?,
    );
    let pid = operator.0.id();
    say(&format!("operator pid {pid}, log {}", op_log.display()));

    let loads: Arc<std::sync::Mutex<HashMap<String, f64>>> = Arc::default();
    for i in 0..args.pools {
        loads.lock().unwrap().insert(name(i), STEADY_RPS);
    }
    tokio::spawn(serve_pods(client.clone(), sim.clone(), loads.clone()));

    // Create the fleet, a few at a time.
    let pools: Api<InferencePool> = Api::namespaced(client.clone(), NAMESPACE);
    let params = PatchParams::apply("bench-fleet").force();
    futures::stream::iter(0..args.pools)
        .map(|i| {
            let (pools, params) = (pools.clone(), params.clone());
            async move {
                pools
                    .patch(
                        &name(i),
                        &params,
                        &Patch::Apply(pool(&name(i), args.interval_seconds)),
                    )
                    .await
                    .map(|_| ())
            }
        })
        .buffer_unordered(8)
        .try_collect::<Vec<()>>()
        .await?;
    say(&format!("{} pools applied", args.pools));

    // Until every pool reports load from both its pods.
    loop {
        let list = pools.list(&ListParams::default()).await?;
        let reporting = list
            .items
            .iter()
            .filter(|p| {
                p.status
                    .as_ref()
                    .and_then(|s| s.load.as_ref())
                    .and_then(|l| l.pods_observed.as_deref())
                    == Some("2/2")
            })
            .count();
        let (_, rss) = proc_stat(pid);
        say(&format!(
            "{reporting}/{} pools report load from both pods; operator RSS {} MiB",
            args.pools,
            rss / 1024
        ));
        if reporting == args.pools {
            break;
        }
        anyhow::ensure!(
            t_start.elapsed() < Duration::from_secs(3600),
            "the fleet never came up"
        );
        tokio::time::sleep(Duration::from_secs(15)).await;
    }
    let ready_after = t_start.elapsed();
    say(&format!("settling {} s", args.settle_seconds));
    tokio::time::sleep(Duration::from_secs(args.settle_seconds)).await;

    // The steady window.
    let ticks_per_second = clock_ticks();
    let (ticks0, _) = proc_stat(pid);
    let (t0, i0) = (Utc::now(), Instant::now());
    let mut rss_max = 0;
    let mut rss_samples = Vec::new();
    while i0.elapsed() < Duration::from_secs(args.steady_seconds) {
        let (_, rss) = proc_stat(pid);
        rss_max = rss_max.max(rss);
        rss_samples.push(rss);
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
    let (ticks1, rss_end) = proc_stat(pid);
    let (t1, window) = (Utc::now(), i0.elapsed().as_secs_f64());
    let cores = (ticks1 - ticks0) as f64 / ticks_per_second / window;
    say("steady window measured; stepping loads");

    // Load steps, one pool at a time.
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), NAMESPACE);
    let mut lags = Vec::new();
    for k in 0..args.steps.min(args.pools) {
        let target = name(k * (args.pools / args.steps.max(1)).max(1));
        let before = replicas(&deployments, &target).await.unwrap_or(0);
        loads
            .lock()
            .unwrap()
            .insert(target.clone(), STEADY_RPS * STEP_FACTOR);
        sim.load(&target, STEADY_RPS * STEP_FACTOR).await;
        let step = Instant::now();
        let lag = loop {
            if replicas(&deployments, &target).await.unwrap_or(0) > before {
                break Some(step.elapsed());
            }
            if step.elapsed() > Duration::from_secs(args.interval_seconds * 6) {
                break None;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        say(&format!("load step on {target}: decided after {lag:?}"));
        lags.push((target, lag));
    }

    let reqs = requests(&audit, t0, t1);
    let total: u64 = reqs.values().sum();
    let status_writes = reqs
        .get("patch inferencepools/status")
        .copied()
        .unwrap_or(0);
    let fields = changed_fields(&op_log, t0, t1);
    let per_s = |n: u64| n as f64 / window;
    let mut out = String::new();
    out += &format!(
        "bench-fleet: {} pools × 2 pods, interval {} s, steady window {:.0} s (fleet reporting after {:.0} s, then {} s settling)\n",
        args.pools,
        args.interval_seconds,
        window,
        ready_after.as_secs_f64(),
        args.settle_seconds
    );
    out += &format!(
        "operator RSS: {} MiB at the end, {} MiB at most in the window\n",
        rss_end / 1024,
        rss_max / 1024
    );
    out += &format!("operator CPU: {cores:.3} cores\n");
    out += &format!("API requests: {:.2}/s in all\n", per_s(total));
    for (what, n) in &reqs {
        out += &format!("  {what:<40} {:>8.2}/s\n", per_s(*n));
    }
    out += &format!(
        "status writes: {:.2}/s ({status_writes} in the window; {:.3} per pool per interval)\n",
        per_s(status_writes),
        status_writes as f64 / args.pools as f64 / (window / args.interval_seconds as f64)
    );
    for (what, n) in &fields {
        out += &format!("  changed {what:<50} {:>8.2}/s\n", per_s(*n));
    }
    for (pool, lag) in &lags {
        out += &match lag {
            Some(l) => format!(
                "load step on {pool}: scale decided {:.1} s after the step\n",
                l.as_secs_f64()
            ),
            None => format!(
                "load step on {pool}: no scale within {} s\n",
                args.interval_seconds * 6
            ),
        };
    }
    print!("{out}");
    std::fs::write(args.out.join("summary.txt"), &out)?;
    let json = serde_json::json!({
        "pools": args.pools, "interval_seconds": args.interval_seconds, "window_seconds": window,
        "rss_mib_end": rss_end / 1024, "rss_mib_max": rss_max / 1024, "cores": cores,
        "requests_per_second": reqs.iter().map(|(k, v)| (k.clone(), per_s(*v))).collect::<BTreeMap<_, _>>(),
        "status_writes_per_second": per_s(status_writes),
        "status_changes_per_second": fields.iter().map(|(k, v)| (k.clone(), per_s(*v))).collect::<BTreeMap<_, _>>(),
        "step_lags_seconds": lags.iter().map(|(p, l)| (p.clone(), l.map(|l| l.as_secs_f64()))).collect::<BTreeMap<_, _>>(),
        "rss_kib_samples": rss_samples,
    });
    std::fs::write(
        args.out.join("summary.json"),
        serde_json::to_string_pretty(&json)?,
    )?;
    Ok(())
}
