//! Prometheus mode: Debian's `prometheus`, started here on 127.0.0.1, scrapes the simulator at the
//! pods' IPs; a pool that reads load through PromQL must reach the decisions a scraping pool reaches
//! on the same load.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use kube::api::Api;

use crossover::api::InferencePool;

use crate::harness::*;
use crate::load::{replicas, replicas_stay};
use crate::sim::{Sim, pod_ips};

/// A Prometheus server of the test's own, discovering targets from a file the test rewrites.
struct Prometheus {
    child: Child,
    dir: PathBuf,
    url: String,
}

impl Prometheus {
    fn start(tag: &str) -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir =
            std::env::temp_dir().join(format!("crossover-prometheus-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("targets.json"), "[]").unwrap();
        let config = format!(
            "global: {{scrape_interval: 1s, scrape_timeout: 1s}}\nscrape_configs:\n  - job_name: vllm\n    file_sd_configs:\n      - files: [{}]\n        refresh_interval: 1s\n",
            dir.join("targets.json").display()
        );
        std::fs::write(dir.join("prometheus.yml"), config).unwrap();
        let log = std::fs::File::create(dir.join("prometheus.log")).unwrap();
        let child = Command::new("prometheus")
            .arg(format!(
                "--config.file={}",
                dir.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("Debian's prometheus on PATH (.ci/run installs it)");
        Self {
            child,
            dir,
            url: format!("http://127.0.0.1:{port}"),
        }
    }

    /// Scrape these pods, labelled the way a PodMonitor labels them.
    fn targets(&self, namespace: &str, pods: &[(String, String)]) {
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
fn pool(name: &str, metrics: &str) -> String {
    crate::load::pool(name, &format!("metrics: {metrics}"))
}

#[tokio::test]
async fn prometheus_mode_reaches_the_same_decisions_as_scrape_mode() {
    let client = client().await;
    install_crd().await;
    let ns = TestNamespace::new(&client, "prometheus").await;
    let prom = Prometheus::start(&ns.name);
    let _op = Operator::start(&ns.name);
    apply(&ns.name, &pool("scraped", "{source: Scrape}"));
    apply(
        &ns.name,
        &pool(
            "queried",
            &format!(
                "{{source: Prometheus, prometheus: {{url: \"{}\"}}}}",
                prom.url
            ),
        ),
    );
    for name in ["scraped", "queried"] {
        eventually("a running pod", Duration::from_secs(60), || async {
            (!pod_ips(&client, &ns.name, name).await.is_empty()).then_some(())
        })
        .await;
    }
    let scraped = Sim::start(&client, &ns.name, "scraped", 1000.0).await;
    let queried = Sim::start(&client, &ns.name, "queried", 1000.0).await;
    let sync = || async {
        scraped.sync(&client, &ns.name, "scraped").await;
        queried.sync(&client, &ns.name, "queried").await;
        prom.targets(&ns.name, &pod_ips(&client, &ns.name, "queried").await);
    };
    sync().await;
    // The same load on both: 1,500 output tok/s, three replicas at 70% of 1,000.
    scraped.load("scraped", 3.0, 200.0, 500.0).await;
    queried.load("queried", 3.0, 200.0, 500.0).await;
    let pools: Api<InferencePool> = Api::namespaced(client.clone(), &ns.name);
    let settled = eventually(
        "both pools at 3 replicas",
        Duration::from_secs(120),
        || async {
            sync().await;
            let a = replicas(&client, &ns.name, "scraped").await?;
            let b = replicas(&client, &ns.name, "queried").await?;
            (a == 3 && b == 3).then_some((a, b))
        },
    )
    .await;
    assert_eq!(settled, (3, 3));
    // And, once the backlog queued before the scale-up has drained (while it drains vLLM serves
    // more than arrives, at moments that differ between the pools), they read the same load: the
    // offered 1,500 output tok/s within 10%.
    let near = |v: f64| (v - 1500.0).abs() <= 150.0;
    eventually(
        "both pools reading the offered load from all pods",
        Duration::from_secs(60),
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
    let available = pools
        .get("queried")
        .await
        .unwrap()
        .status
        .unwrap()
        .conditions
        .into_iter()
        .find(|c| c.type_ == "MetricsAvailable")
        .unwrap();
    assert_eq!(available.status, "True", "{}", available.message);
}

#[tokio::test]
async fn a_dead_prometheus_holds_the_pool_and_says_why() {
    let client = client().await;
    install_crd().await;
    let ns = TestNamespace::new(&client, "promdown").await;
    let prom = Prometheus::start(&ns.name);
    let _op = Operator::start(&ns.name);
    let manifest = pool(
        "queried",
        &format!(
            "{{source: Prometheus, prometheus: {{url: \"{}\"}}}}",
            prom.url
        ),
    )
    .replace(
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
            let c = pools
                .get("queried")
                .await
                .ok()?
                .status?
                .conditions
                .into_iter()
                .find(|c| c.type_ == "MetricsAvailable")?;
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
