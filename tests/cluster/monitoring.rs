//! Monitoring against the real tools: promtool accepts the chart's PrometheusRule, and a real
//! Prometheus (Debian's, started here on 127.0.0.1) scraping an operator that runs two priced pools
//! answers every query of the chart's Grafana dashboard with a series. A deleted pool's series go.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use kube::api::{Api, DeleteParams};

use crossover::api::InferencePool;

use crate::harness::*;
use crate::helm::{kube_version, render};
use crate::load::{pool, pool_with_sim};

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A Prometheus of the test's own scraping the operator at `target` every second, keeping the
/// pools' namespace label as the chart's ServiceMonitor does (honorLabels).
struct Prometheus {
    child: Child,
    dir: PathBuf,
    url: String,
}

impl Prometheus {
    fn scraping(target: &str, tag: &str) -> Self {
        let port = free_port();
        let dir =
            std::env::temp_dir().join(format!("crossover-monitoring-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let config = format!(
            "global: {{scrape_interval: 1s, scrape_timeout: 1s}}\nscrape_configs:\n  - job_name: crossover\n    honor_labels: true\n    static_configs: [{{targets: ['{target}']}}]\n"
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

    /// An instant query's result vector (empty when it has no series or fails).
    async fn query(&self, promql: &str) -> Result<Vec<serde_json::Value>, String> {
        let body: serde_json::Value = reqwest::Client::new()
            .get(format!("{}/api/v1/query", self.url))
            .query(&[("query", promql)])
            .send()
            .await
            .map_err(|e| e.to_string())?
            .json()
            .await
            .map_err(|e| e.to_string())?;
        if body["status"] != "success" {
            return Err(body.to_string());
        }
        Ok(body["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default())
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Every `expr` in the dashboard's panels, with Grafana's variables as a person with "All"
/// selected gets them.
fn dashboard_queries() -> Vec<(String, String)> {
    let text =
        std::fs::read_to_string(repo().join("charts/crossover/files/dashboards/crossover.json"))
            .unwrap();
    let dashboard: serde_json::Value = serde_json::from_str(&text).unwrap();
    let mut out = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"]
                .as_str()
                .unwrap()
                .replace("$__rate_interval", "30s")
                .replace("$job", ".+")
                .replace("$namespace", ".+")
                .replace("$pool", ".+");
            out.push((panel["title"].as_str().unwrap().to_string(), expr));
        }
    }
    out
}

#[tokio::test]
async fn promtool_accepts_the_chart_alerting_rules() {
    let client = client().await;
    let rendered = render(
        &kube_version(&client).await,
        "crossover",
        &["metrics.prometheusRule.enabled=true"],
    );
    let rule = rendered
        .split("\n---")
        .filter_map(|d| serde_saphyr::from_str::<serde_json::Value>(d).ok())
        .find(|d| d["kind"] == "PrometheusRule")
        .expect("a PrometheusRule");
    let alerts: Vec<&str> = rule["spec"]["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_array().unwrap())
        .map(|r| r["alert"].as_str().unwrap())
        .collect();
    for wanted in [
        "CrossoverNoLeader",
        "CrossoverPoolUnderProvisioned",
        "CrossoverPoolMetricsUnavailable",
        "CrossoverPoolApiCheaper",
        "CrossoverPoolIdleSpend",
    ] {
        assert!(alerts.contains(&wanted), "{wanted} missing from {alerts:?}");
    }
    let file = std::env::temp_dir().join(format!("crossover-rules-{}.yaml", std::process::id()));
    std::fs::write(&file, serde_saphyr::to_string(&rule["spec"]).unwrap()).unwrap();
    let o = Command::new("promtool")
        .args(["check", "rules"])
        .arg(&file)
        .output()
        .expect("promtool on PATH (Debian's prometheus package)");
    let _ = std::fs::remove_file(&file);
    assert!(
        o.status.success(),
        "promtool check rules: {}{}",
        stdout(&o),
        stderr(&o)
    );
}

#[tokio::test]
async fn every_dashboard_query_returns_a_series_from_an_operator_running_two_priced_pools() {
    let client = client().await;
    install_crd().await;
    let ns = TestNamespace::new(&client, "monitoring").await;
    let port = free_port();
    let address = format!("127.0.0.1:{port}");
    let _op = Operator::start_as(&ns.name, &[], &["--probe-address", &address], &ns.name);
    let prometheus = Prometheus::scraping(&address, &ns.name);
    let _alpha = pool_with_sim(&client, &ns.name, "alpha", &pool("alpha", ""), 1000.0).await;
    let _beta = pool_with_sim(&client, &ns.name, "beta", &pool("beta", ""), 1000.0).await;

    // Both pools priced, month to date included, in Prometheus.
    eventually(
        "both pools' month-to-date dollars in Prometheus",
        Duration::from_secs(90),
        || async {
            let r = prometheus
                .query("crossover_pool_month_to_date_usd")
                .await
                .ok()?;
            (r.len() == 2).then_some(())
        },
    )
    .await;
    // Rates need two samples inside their window.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let queries = dashboard_queries();
    assert!(queries.len() >= 20, "{} queries", queries.len());
    let mut empty = Vec::new();
    for (title, expr) in &queries {
        // A series may need a scrape or two more (a rate's second sample): a few seconds' grace.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        let outcome = loop {
            match prometheus.query(expr).await {
                Ok(series) if !series.is_empty() => break Ok(()),
                Ok(_) if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(500)).await
                }
                Ok(_) => break Err("no series".to_string()),
                Err(e) => break Err(e),
            }
        };
        if let Err(e) = outcome {
            empty.push(format!("{title}: {expr}: {e}"));
        }
    }
    assert!(
        empty.is_empty(),
        "dashboard queries without a series:\n{}",
        empty.join("\n")
    );
    let per_pool = prometheus
        .query("max by (namespace, pool) (crossover_pool_monthly_usd)")
        .await
        .unwrap();
    let pools: Vec<&str> = per_pool
        .iter()
        .map(|s| s["metric"]["pool"].as_str().unwrap())
        .collect();
    assert_eq!(pools.len(), 2, "{per_pool:?}");
    assert!(
        per_pool
            .iter()
            .all(|s| s["metric"]["namespace"] == ns.name.as_str()),
        "the pools' own namespace label: {per_pool:?}"
    );

    // A deleted pool's series go from /metrics.
    Api::<InferencePool>::namespaced(client.clone(), &ns.name)
        .delete("beta", &DeleteParams::default())
        .await
        .unwrap();
    eventually(
        "beta's series gone from /metrics",
        Duration::from_secs(30),
        || async {
            let body = reqwest::get(format!("http://{address}/metrics"))
                .await
                .ok()?
                .text()
                .await
                .ok()?;
            (!body.contains(r#"pool="beta""#) && body.contains(r#"pool="alpha""#)).then_some(())
        },
    )
    .await;
}
