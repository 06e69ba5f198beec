//! Prometheus mode: Debian's `prometheus`, started here on 127.0.0.1, scrapes the simulator at the
//! pods' IPs; a pool that reads load through PromQL must reach the decisions, and the money, a
//! scraping pool reaches on the same load, however Prometheus is set up: slower than the pool,
//! with two jobs on the same pods, with a target that lies about its labels, or behind https.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use kube::api::Api;

use crossover::api::InferencePool;

use crate::harness::*;
use crate::load::{replicas, replicas_stay};
use crate::sim::{Sim, free_port, pod_ips};

/// How the test's Prometheus scrapes.
pub struct Setup {
    pub scrape_interval_seconds: u32,
    /// One job per name, all on the same targets (a pod scraped by two jobs).
    pub jobs: &'static [&'static str],
    /// Let targets set their own labels (a scrape config that trusts them).
    pub honor_labels: bool,
    /// Serve the API over https with a certificate of a CA the test makes.
    pub tls: bool,
}

impl Default for Setup {
    fn default() -> Self {
        Self {
            scrape_interval_seconds: 1,
            jobs: &["vllm"],
            honor_labels: false,
            tls: false,
        }
    }
}

/// A Prometheus server of the test's own, discovering targets from a file the test rewrites.
pub struct Prometheus {
    child: Child,
    dir: PathBuf,
    pub url: String,
}

/// A CA and a certificate for 127.0.0.1 signed by it, made with openssl in `dir`.
fn make_certs(dir: &Path) {
    let run = |args: &[&str]| {
        let o = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("openssl on PATH");
        assert!(
            o.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    };
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=crossover test CA",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
    ]);
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=127.0.0.1",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
    ]);
    std::fs::write(dir.join("san.ext"), "subjectAltName=IP:127.0.0.1\n").unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "san.ext",
        "-out",
        "server.crt",
    ]);
}

impl Prometheus {
    pub fn start(tag: &str) -> Self {
        Self::start_with(tag, Setup::default())
    }

    pub fn start_with(tag: &str, setup: Setup) -> Self {
        let port = free_port();
        let dir =
            std::env::temp_dir().join(format!("crossover-prometheus-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("targets.json"), "[]").unwrap();
        let targets = dir.join("targets.json");
        let jobs: String = setup
            .jobs
            .iter()
            .map(|job| {
                format!(
                    "  - job_name: {job}\n    honor_labels: {}\n    file_sd_configs:\n      - files: [{}]\n        refresh_interval: 1s\n",
                    setup.honor_labels,
                    targets.display()
                )
            })
            .collect();
        let s = setup.scrape_interval_seconds;
        let config = format!(
            "global: {{scrape_interval: {s}s, scrape_timeout: {}s}}\nscrape_configs:\n{jobs}",
            s.min(1)
        );
        std::fs::write(dir.join("prometheus.yml"), config).unwrap();
        let mut cmd = Command::new("prometheus");
        cmd.arg(format!(
            "--config.file={}",
            dir.join("prometheus.yml").display()
        ))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"));
        let scheme = if setup.tls {
            make_certs(&dir);
            std::fs::write(
                dir.join("web.yml"),
                format!(
                    "tls_server_config:\n  cert_file: {}\n  key_file: {}\n",
                    dir.join("server.crt").display(),
                    dir.join("server.key").display()
                ),
            )
            .unwrap();
            cmd.arg(format!(
                "--web.config.file={}",
                dir.join("web.yml").display()
            ));
            "https"
        } else {
            "http"
        };
        let log = std::fs::File::create(dir.join("prometheus.log")).unwrap();
        let child = cmd
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("Debian's prometheus on PATH (.ci/run installs it)");
        Self {
            child,
            dir,
            url: format!("{scheme}://127.0.0.1:{port}"),
        }
    }

    /// The CA that signed the server's certificate (with `tls`).
    pub fn ca_pem(&self) -> String {
        std::fs::read_to_string(self.dir.join("ca.crt")).unwrap()
    }

    /// Scrape these pods, labelled the way a PodMonitor labels them.
    pub fn targets(&self, namespace: &str, pods: &[(String, String)]) {
        let groups: Vec<_> = pods
            .iter()
            .map(|(pod, ip)| serde_json::json!({"targets": [format!("{ip}:8000")], "labels": {"namespace": namespace, "pod": pod}}))
            .collect();
        let tmp = self.dir.join("targets.json.tmp");
        std::fs::write(&tmp, serde_json::to_string(&groups).unwrap()).unwrap();
        std::fs::rename(tmp, self.dir.join("targets.json")).unwrap();
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The sizing tests' pool (2 s interval), reading through `metrics`.
pub fn pool(name: &str, metrics: &str) -> String {
    crate::load::pool(name, &format!("metrics: {metrics}"))
}

fn queried(url: &str) -> String {
    format!("{{source: Prometheus, prometheus: {{url: \"{url}\"}}}}")
}

pub async fn condition(
    pools: &Api<InferencePool>,
    name: &str,
    type_: &str,
) -> Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition> {
    pools
        .get(name)
        .await
        .ok()?
        .status?
        .conditions
        .into_iter()
        .find(|c| c.type_ == type_)
}

/// Month-to-date output tokens of a pool.
async fn tokens(pools: &Api<InferencePool>, name: &str) -> Option<f64> {
    Some(
        pools
            .get(name)
            .await
            .ok()?
            .status?
            .cost?
            .month_to_date?
            .output_tokens,
    )
}

/// Runs the same load on a scraping pool and a Prometheus-mode pool until both settle at three
/// replicas reading the offered load, then stops it and compares each pool's month-to-date output
/// tokens with what the simulator's pods counted. Returns the two relative errors.
async fn same_load_same_money(ns: &str, prom: &Prometheus) -> (f64, f64) {
    let client = client().await;
    for name in ["scraped", "queried"] {
        eventually("a running pod", Duration::from_secs(60), || async {
            (!pod_ips(&client, ns, name).await.is_empty()).then_some(())
        })
        .await;
    }
    let scraped = Sim::start(&client, ns, "scraped", 1000.0).await;
    let queried = Sim::start(&client, ns, "queried", 1000.0).await;
    let sync = || async {
        scraped.sync(&client, ns, "scraped").await;
        queried.sync(&client, ns, "queried").await;
        prom.targets(ns, &pod_ips(&client, ns, "queried").await);
    };
    sync().await;
    // The same load on both: 1,500 output tok/s, three replicas at 70% of 1,000.
    scraped.load("scraped", 3.0, 200.0, 500.0).await;
    queried.load("queried", 3.0, 200.0, 500.0).await;
    let pools: Api<InferencePool> = Api::namespaced(client.clone(), ns);
    let settled = eventually(
        "both pools at 3 replicas",
        Duration::from_secs(150),
        || async {
            sync().await;
            let a = replicas(&client, ns, "scraped").await?;
            let b = replicas(&client, ns, "queried").await?;
            (a == 3 && b == 3).then_some((a, b))
        },
    )
    .await;
    assert_eq!(settled, (3, 3));
    // Once the backlog queued before the scale-up has drained, both read the offered
    // 1,500 output tok/s within 10%, from all pods.
    let near = |v: f64| (v - 1500.0).abs() <= 150.0;
    eventually(
        "both pools reading the offered load from all pods",
        Duration::from_secs(90),
        || async {
            sync().await;
            let a = pools.get("scraped").await.ok()?.status?.load?;
            let b = pools.get("queried").await.ok()?.status?.load?;
            let complete = a.pods_observed.as_deref() == Some("3/3")
                && b.pods_observed.as_deref() == Some("3/3");
            (complete && near(a.output_tokens_per_second) && near(b.output_tokens_per_second))
                .then_some(())
        },
    )
    .await;
    // The money: stop the load, let the last samples in, and compare with the pods' counters.
    scraped.load("scraped", 0.0, 200.0, 500.0).await;
    queried.load("queried", 0.0, 200.0, 500.0).await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    let mut errors = (0.0, 0.0);
    for (i, (name, sim)) in [("scraped", &scraped), ("queried", &queried)]
        .into_iter()
        .enumerate()
    {
        let truth = sim.generation_tokens(name).await;
        let counted = eventually(
            "month-to-date caught up with the counters",
            Duration::from_secs(30),
            || async {
                let t = tokens(&pools, name).await?;
                ((t - truth).abs() / truth < 0.02).then_some(t)
            },
        )
        .await;
        let error = (counted - truth) / truth;
        println!(
            "{name}: month-to-date {counted:.0} output tokens, the pods counted {truth:.0} ({:+.2}%)",
            error * 100.0
        );
        if i == 0 {
            errors.0 = error;
        } else {
            errors.1 = error;
        }
    }
    errors
}

#[tokio::test]
async fn prometheus_mode_reaches_the_same_decisions_as_scrape_mode() {
    let client = client().await;
    install_crd().await;
    let ns = TestNamespace::new(&client, "prometheus").await;
    let prom = Prometheus::start(&ns.name);
    let _op = Operator::start(&ns.name);
    apply(&ns.name, &pool("scraped", "{source: Scrape}"));
    apply(&ns.name, &pool("queried", &queried(&prom.url)));
    same_load_same_money(&ns.name, &prom).await;
    let pools: Api<InferencePool> = Api::namespaced(client.clone(), &ns.name);
    let available = condition(&pools, "queried", "MetricsAvailable")
        .await
        .unwrap();
    assert_eq!(available.status, "True", "{}", available.message);
}

#[tokio::test]
async fn prometheus_scraping_slower_than_the_pool_interval_scales_and_prices_like_scrape_mode() {
    let client = client().await;
    install_crd().await;
    let ns = TestNamespace::new(&client, "aliasing").await;
    // Scraped every 4 s against the pools' 2 s: every other reading sees no new sample.
    let prom = Prometheus::start_with(
        &ns.name,
        Setup {
            scrape_interval_seconds: 4,
            ..Setup::default()
        },
    );
    let _op = Operator::start(&ns.name);
    apply(&ns.name, &pool("scraped", "{source: Scrape}"));
    apply(&ns.name, &pool("queried", &queried(&prom.url)));
    let (scraped, queried) = same_load_same_money(&ns.name, &prom).await;
    assert!(
        scraped.abs() < 0.02 && queried.abs() < 0.02,
        "{scraped} {queried}"
    );
    let pools: Api<InferencePool> = Api::namespaced(client.clone(), &ns.name);
    let aligned = condition(&pools, "queried", "ScrapeIntervalAligned")
        .await
        .unwrap();
    assert_eq!(
        (aligned.status.as_str(), aligned.reason.as_str()),
        ("False", "IntervalShorterThanScrape"),
        "{}",
        aligned.message
    );
    assert!(aligned.message.contains("every 4 s"), "{}", aligned.message);
    // No-new-data readings never flipped MetricsAvailable.
    let available = condition(&pools, "queried", "MetricsAvailable")
        .await
        .unwrap();
    assert_eq!(available.status, "True", "{}", available.message);
}

#[tokio::test]
async fn a_pod_scraped_by_two_jobs_is_counted_once() {
    let client = client().await;
    install_crd().await;
    let ns = TestNamespace::new(&client, "twojobs").await;
    let prom = Prometheus::start_with(
        &ns.name,
        Setup {
            jobs: &["kubernetes-pods", "podmonitor-vllm"],
            ..Setup::default()
        },
    );
    let _op = Operator::start(&ns.name);
    apply(&ns.name, &pool("scraped", "{source: Scrape}"));
    apply(&ns.name, &pool("queried", &queried(&prom.url)));
    // Three replicas (not six), the offered tok/s (not twice), the counters' tokens (not twice).
    let (_, queried) = same_load_same_money(&ns.name, &prom).await;
    assert!(queried.abs() < 0.02, "{queried}");
}

#[tokio::test]
async fn a_target_labelled_as_another_pools_pod_does_not_move_it() {
    let client = client().await;
    install_crd().await;
    let ns = TestNamespace::new(&client, "tenancy").await;
    // A scrape config that trusts targets' own labels: tenant A's pod can claim to be B's.
    let prom = Prometheus::start_with(
        &ns.name,
        Setup {
            honor_labels: true,
            ..Setup::default()
        },
    );
    let _op = Operator::start(&ns.name);
    for name in ["tenant-a", "tenant-b"] {
        apply(&ns.name, &pool(name, &queried(&prom.url)));
    }
    for name in ["tenant-a", "tenant-b"] {
        eventually("a running pod", Duration::from_secs(60), || async {
            (!pod_ips(&client, &ns.name, name).await.is_empty()).then_some(())
        })
        .await;
    }
    let (b_pod, _) = pod_ips(&client, &ns.name, "tenant-b").await[0].clone();
    let b = Sim::start(&client, &ns.name, "tenant-b", 1000.0).await;
    b.load("tenant-b", 0.5, 200.0, 200.0).await;
    // Tenant A's pod exports every series with B's namespace and pod labels, under a load that
    // queues thousands of requests.
    let (a_pod, a_ip) = pod_ips(&client, &ns.name, "tenant-a").await[0].clone();
    let a = Sim::start(&client, &ns.name, "tenant-a", 1000.0).await;
    let http = reqwest::Client::new();
    http.delete(format!("http://{}/pods/{a_ip}:8000", a.control()))
        .send()
        .await
        .unwrap();
    let r = http
        .post(format!("http://{}/pods", a.control()))
        .json(&serde_json::json!({
            "address": format!("{a_ip}:8000"),
            "pool": "tenant-a",
            "labels": {"namespace": ns.name, "pod": b_pod},
        }))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    a.load("tenant-a", 200.0, 200.0, 500.0).await;
    let mut all = pod_ips(&client, &ns.name, "tenant-b").await;
    all.push((a_pod, a_ip.clone()));
    prom.targets(&ns.name, &all);
    let pools: Api<InferencePool> = Api::namespaced(client.clone(), &ns.name);
    eventually("B observed", Duration::from_secs(60), || async {
        let c = condition(&pools, "tenant-b", "MetricsAvailable").await?;
        (c.status == "True").then_some(())
    })
    .await;
    // The spoofed series are in Prometheus under B's pod name (the attack is real)...
    let spoofed = format!("count({{pod=\"{b_pod}\",instance=\"{a_ip}:8000\"}})");
    eventually(
        "A's series labelled as B's pod in Prometheus",
        Duration::from_secs(30),
        || async {
            let v: serde_json::Value = http
                .get(format!("{}/api/v1/query", prom.url))
                .query(&[("query", spoofed.as_str())])
                .send()
                .await
                .ok()?
                .json()
                .await
                .ok()?;
            (!v["data"]["result"].as_array()?.is_empty()).then_some(())
        },
    )
    .await;
    // ...and, long enough for A's queue to be in every one of B's readings, B does not move.
    replicas_stay(
        &client,
        &ns.name,
        "tenant-b",
        1,
        Duration::from_secs(20),
        "tenant B was scaled by series tenant A's pod exported in B's name",
    )
    .await;
    let load = pools
        .get("tenant-b")
        .await
        .unwrap()
        .status
        .unwrap()
        .load
        .unwrap();
    assert_eq!(load.requests_waiting, 0.0, "{load:?}");
    assert!(load.output_tokens_per_second < 200.0, "{load:?}");
}

#[tokio::test]
async fn a_dead_prometheus_holds_the_pool_and_says_why() {
    let client = client().await;
    install_crd().await;
    let ns = TestNamespace::new(&client, "promdown").await;
    let prom = Prometheus::start(&ns.name);
    let _op = Operator::start(&ns.name);
    let manifest = pool("queried", &queried(&prom.url)).replace(
        "scaleDownStabilizationSeconds: 12",
        "scaleDownStabilizationSeconds: 6",
    );
    apply(&ns.name, &manifest);
    eventually("a running pod", Duration::from_secs(60), || async {
        (!pod_ips(&client, &ns.name, "queried").await.is_empty()).then_some(())
    })
    .await;
    let sim = Sim::start(&client, &ns.name, "queried", 1000.0).await;
    sim.load("queried", 3.0, 200.0, 500.0).await;
    eventually("3 replicas", Duration::from_secs(120), || async {
        sim.sync(&client, &ns.name, "queried").await;
        prom.targets(&ns.name, &pod_ips(&client, &ns.name, "queried").await);
        (replicas(&client, &ns.name, "queried").await? == 3).then_some(())
    })
    .await;
    // Prometheus goes away and the traffic drops: a dead Prometheus is not zero traffic.
    drop(prom);
    sim.load("queried", 0.1, 200.0, 100.0).await;
    let pools: Api<InferencePool> = Api::namespaced(client.clone(), &ns.name);
    let c = eventually(
        "MetricsAvailable=False",
        Duration::from_secs(30),
        || async {
            let c = condition(&pools, "queried", "MetricsAvailable").await?;
            (c.status == "False").then_some(c)
        },
    )
    .await;
    assert!(c.message.contains("Prometheus"), "{}", c.message);
    replicas_stay(
        &client,
        &ns.name,
        "queried",
        3,
        Duration::from_secs(12),
        "scaled down without data",
    )
    .await;
}
