//! The operator's own production surface over HTTP: `/healthz` (the process serves),
//! `/readyz` (it reached the API server and found a CRD at least as new as itself) and `/metrics`
//! (Prometheus text: reconciles, their errors by kind and duration, whether this replica leads, the
//! build, and each pool's money and size as gauges labelled by namespace and pool).

use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;

use crate::api::{Cheaper, InferencePoolStatus, Verdict};
use crate::controller::status::METRICS_AVAILABLE;

/// The operator's metrics. The operator's own labels are bounded (a result, an error kind); the
/// per-pool gauges carry the pool's namespace and name only, one series per pool and gauge, as
/// kube-state-metrics does for objects.
#[derive(Clone)]
pub struct Metrics {
    reconciles: Family<Vec<(&'static str, &'static str)>, Counter>,
    reconcile_seconds: Histogram,
    leader: Gauge,
    ready: Gauge,
    pools: Vec<(PoolGauge, PoolFamily)>,
}

/// One per-pool gauge's series, one per pool.
type PoolFamily = Family<PoolLabels, Gauge<f64, AtomicU64>>;

impl Metrics {
    /// Counts one reconcile that took `took`, failed with `error_kind` or succeeded.
    pub fn observe_reconcile(&self, took: Duration, error_kind: Option<&'static str>) {
        let labels = match error_kind {
            None => vec![("result", "ok"), ("error", "")],
            Some(kind) => vec![("result", "error"), ("error", kind)],
        };
        self.reconciles.get_or_create(&labels).inc();
        self.reconcile_seconds.observe(took.as_secs_f64());
    }

    pub fn set_leader(&self, leading: bool) {
        self.leader.set(i64::from(leading));
    }

    /// Sets the pool's gauges from the status just decided. A gauge the status cannot give (no
    /// prices, no reading yet) is removed rather than reported as 0: a missing dollar is not $0.
    pub fn observe_pool(&self, namespace: &str, pool: &str, status: &InferencePoolStatus) {
        let labels = PoolLabels::new(namespace, pool);
        let values = pool_gauges(status);
        for (gauge, family) in &self.pools {
            match values.iter().find(|(g, _)| g == gauge) {
                Some((_, v)) => {
                    family.get_or_create(&labels).set(*v);
                }
                None => {
                    family.remove(&labels);
                }
            }
        }
    }

    /// Drops every series of a pool that no longer exists.
    pub fn forget_pool(&self, namespace: &str, pool: &str) {
        let labels = PoolLabels::new(namespace, pool);
        for (_, family) in &self.pools {
            family.remove(&labels);
        }
    }
}

/// The only labels a pool's gauges carry.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PoolLabels {
    namespace: String,
    pool: String,
}

impl PoolLabels {
    fn new(namespace: &str, pool: &str) -> Self {
        Self {
            namespace: namespace.to_string(),
            pool: pool.to_string(),
        }
    }
}

/// One per-pool gauge: `crossover_pool_<name>{namespace, pool}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PoolGauge {
    MonthlyUsd,
    ApiMonthlyUsd,
    IdleMonthlyUsd,
    MonthToDateUsd,
    ApiMonthToDateUsd,
    Replicas,
    ReadyReplicas,
    DesiredReplicas,
    Utilization,
    Verdict,
    Cheaper,
    MetricsAvailable,
}

impl PoolGauge {
    pub const ALL: [PoolGauge; 12] = [
        PoolGauge::MonthlyUsd,
        PoolGauge::ApiMonthlyUsd,
        PoolGauge::IdleMonthlyUsd,
        PoolGauge::MonthToDateUsd,
        PoolGauge::ApiMonthToDateUsd,
        PoolGauge::Replicas,
        PoolGauge::ReadyReplicas,
        PoolGauge::DesiredReplicas,
        PoolGauge::Utilization,
        PoolGauge::Verdict,
        PoolGauge::Cheaper,
        PoolGauge::MetricsAvailable,
    ];

    /// The name after the registry's `crossover_` prefix.
    pub fn name(self) -> &'static str {
        match self {
            PoolGauge::MonthlyUsd => "pool_monthly_usd",
            PoolGauge::ApiMonthlyUsd => "pool_api_monthly_usd",
            PoolGauge::IdleMonthlyUsd => "pool_idle_monthly_usd",
            PoolGauge::MonthToDateUsd => "pool_month_to_date_usd",
            PoolGauge::ApiMonthToDateUsd => "pool_api_month_to_date_usd",
            PoolGauge::Replicas => "pool_replicas",
            PoolGauge::ReadyReplicas => "pool_ready_replicas",
            PoolGauge::DesiredReplicas => "pool_desired_replicas",
            PoolGauge::Utilization => "pool_utilization_ratio",
            PoolGauge::Verdict => "pool_provisioning_verdict",
            PoolGauge::Cheaper => "pool_cheaper",
            PoolGauge::MetricsAvailable => "pool_metrics_available",
        }
    }

    fn help(self) -> &'static str {
        match self {
            PoolGauge::MonthlyUsd => {
                "Pool cost per month at the current run-rate (provisioned replicas plus overheads), USD"
            }
            PoolGauge::ApiMonthlyUsd => {
                "What the pool's tokens would cost per month on the hosted API, at the current run-rate, USD"
            }
            PoolGauge::IdleMonthlyUsd => "Capacity paid for and not used, per month, USD",
            PoolGauge::MonthToDateUsd => "Pool dollars this calendar month (UTC) so far",
            PoolGauge::ApiMonthToDateUsd => {
                "Hosted-API dollars the same tokens would have cost this calendar month (UTC) so far"
            }
            PoolGauge::Replicas => "Replicas provisioned (requested and billing, ready or not)",
            PoolGauge::ReadyReplicas => "Replicas serving traffic",
            PoolGauge::DesiredReplicas => {
                "Replicas the sizing policy (or the External scaler) wants"
            }
            PoolGauge::Utilization => "Load as a share of the ready replicas' capacity (1 = full)",
            PoolGauge::Verdict => {
                "Provisioning verdict: 0 Unknown, 1 RightSized, 2 OverProvisioned, 3 UnderProvisioned, 4 Idle"
            }
            PoolGauge::Cheaper => {
                "Which is cheaper for the observed load: 0 Unknown, 1 SelfHosted, 2 API, 3 SelfHostRequired"
            }
            PoolGauge::MetricsAvailable => {
                "1 while the pool's load metrics are read (condition MetricsAvailable=True), else 0"
            }
        }
    }
}

/// The gauge value of a provisioning verdict (documented in the gauge's help).
pub fn verdict_code(verdict: Verdict) -> f64 {
    match verdict {
        Verdict::Unknown => 0.0,
        Verdict::RightSized => 1.0,
        Verdict::OverProvisioned => 2.0,
        Verdict::UnderProvisioned => 3.0,
        Verdict::Idle => 4.0,
    }
}

/// The gauge value of the cheaper side (documented in the gauge's help).
pub fn cheaper_code(cheaper: Cheaper) -> f64 {
    match cheaper {
        Cheaper::Unknown => 0.0,
        Cheaper::SelfHosted => 1.0,
        Cheaper::Api => 2.0,
        Cheaper::SelfHostRequired => 3.0,
    }
}

/// A pool's gauges, from its status alone; a gauge the status does not know is left out.
pub fn pool_gauges(status: &InferencePoolStatus) -> Vec<(PoolGauge, f64)> {
    let cost = status.cost.as_ref();
    let month = cost.and_then(|c| c.month_to_date.as_ref());
    let metrics_available = status
        .conditions
        .iter()
        .find(|c| c.type_ == METRICS_AVAILABLE)
        .and_then(|c| match c.status.as_str() {
            "True" => Some(1.0),
            "False" => Some(0.0),
            // Unknown (warming up, no reading yet) is neither: no series, no alert.
            _ => None,
        });
    [
        (PoolGauge::MonthlyUsd, cost.map(|c| c.pool_monthly_usd)),
        (PoolGauge::ApiMonthlyUsd, cost.map(|c| c.api_monthly_usd)),
        (PoolGauge::IdleMonthlyUsd, cost.map(|c| c.idle_monthly_usd)),
        (PoolGauge::MonthToDateUsd, month.map(|m| m.pool_usd)),
        (PoolGauge::ApiMonthToDateUsd, month.map(|m| m.api_usd)),
        (PoolGauge::Replicas, Some(f64::from(status.replicas))),
        (
            PoolGauge::ReadyReplicas,
            Some(f64::from(status.ready_replicas)),
        ),
        (
            PoolGauge::DesiredReplicas,
            status.desired_replicas.map(f64::from),
        ),
        (
            PoolGauge::Utilization,
            status.load.as_ref().and_then(|l| l.utilization),
        ),
        (
            PoolGauge::Verdict,
            status
                .provisioning
                .as_ref()
                .map(|p| verdict_code(p.verdict)),
        ),
        (PoolGauge::Cheaper, cost.map(|c| cheaper_code(c.cheaper))),
        (PoolGauge::MetricsAvailable, metrics_available),
    ]
    .into_iter()
    .filter_map(|(gauge, value)| Some((gauge, value.filter(|v| v.is_finite())?)))
    .collect()
}

/// Shared by the HTTP server and the controller.
pub struct Ops {
    registry: Registry,
    pub metrics: Metrics,
    /// Ok once ready; otherwise what /readyz says is missing.
    readiness: RwLock<Result<(), String>>,
}

/// What /readyz says before the first check has run.
const NOT_CHECKED: &str = "not ready: the API server or the CRD has not answered yet";

impl Default for Ops {
    fn default() -> Self {
        let metrics = Metrics {
            reconciles: Family::default(),
            reconcile_seconds: Histogram::new(exponential_buckets(0.001, 2.0, 16)),
            leader: Gauge::default(),
            ready: Gauge::default(),
            pools: PoolGauge::ALL
                .iter()
                .map(|g| (*g, Family::default()))
                .collect(),
        };
        let mut registry = Registry::with_prefix("crossover");
        registry.register(
            "reconciles",
            "InferencePool reconciles by result and error kind",
            metrics.reconciles.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Time one reconcile took, observe to status write",
            metrics.reconcile_seconds.clone(),
        );
        registry.register(
            "leader",
            "1 while this replica holds the leader lease and writes, else 0",
            metrics.leader.clone(),
        );
        registry.register(
            "ready",
            "1 once this replica found the API server and a CRD at least as new as itself, else 0",
            metrics.ready.clone(),
        );
        registry.register(
            "build",
            "The running build",
            Info::new(vec![("version", env!("CARGO_PKG_VERSION"))]),
        );
        for (gauge, family) in &metrics.pools {
            registry.register(gauge.name(), gauge.help(), family.clone());
        }
        Self {
            registry,
            metrics,
            readiness: RwLock::new(Err(NOT_CHECKED.to_string())),
        }
    }
}

impl Ops {
    pub fn set_ready(&self, ready: bool) {
        if ready {
            self.set_readiness(Ok(()));
        } else {
            self.set_readiness(Err(NOT_CHECKED.to_string()));
        }
    }

    /// Ready, or not ready for the reason given (served by /readyz to people and probes).
    pub fn set_readiness(&self, readiness: Result<(), String>) {
        self.metrics.ready.set(i64::from(readiness.is_ok()));
        // A poisoned lock only means a panic elsewhere mid-write; the value is still a whole Result.
        *self.readiness.write().unwrap_or_else(|e| e.into_inner()) = readiness;
    }

    pub fn readiness(&self) -> Result<(), String> {
        self.readiness
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The metrics in Prometheus' text format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(ops): State<Arc<Ops>>) -> impl IntoResponse {
    match ops.readiness() {
        Ok(()) => (StatusCode::OK, "ready\n".to_string()),
        Err(why) => (StatusCode::SERVICE_UNAVAILABLE, format!("{why}\n")),
    }
}

async fn metrics(State(ops): State<Arc<Ops>>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        ops.render(),
    )
}

pub fn router(ops: Arc<Ops>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(ops)
}

/// Binds `addr` and serves in the background; returns the bound address (port 0 picks one).
pub async fn serve(addr: SocketAddr, ops: Arc<Ops>) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, router(ops)).await {
            tracing::error!(error = %e, "the health and metrics server stopped");
        }
    });
    Ok(bound)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_render_with_bounded_labels() {
        let ops = Ops::default();
        ops.metrics
            .observe_reconcile(Duration::from_millis(3), None);
        ops.metrics
            .observe_reconcile(Duration::from_millis(5), Some("apply"));
        ops.metrics.set_leader(true);
        let text = ops.render();
        assert!(
            text.contains(r#"crossover_reconciles_total{result="ok",error=""} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"crossover_reconciles_total{result="error",error="apply"} 1"#),
            "{text}"
        );
        assert!(text.contains("crossover_leader 1"), "{text}");
        assert!(
            text.contains("crossover_reconcile_duration_seconds_count 2"),
            "{text}"
        );
        assert!(
            text.contains(&format!(
                r#"crossover_build_info{{version="{}"}} 1"#,
                env!("CARGO_PKG_VERSION")
            )),
            "{text}"
        );
    }

    /// A priced pool, as the controller writes it.
    fn priced_status() -> InferencePoolStatus {
        serde_json::from_value(serde_json::json!({
            "replicas": 3, "readyReplicas": 2, "desiredReplicas": 4,
            "load": {"inputTokensPerSecond": 100.0, "outputTokensPerSecond": 50.0,
                     "requestsPerSecond": 1.0, "requestsRunning": 2.0, "requestsWaiting": 0.0,
                     "kvCacheUsage": 0.1, "utilization": 0.85},
            "cost": {"poolMonthlyUsd": 1705.0, "apiMonthlyUsd": 275.5, "cheaper": "API",
                     "inputTokensPerMonth": 1.0e8, "outputTokensPerMonth": 3.0e7,
                     "idleMonthlyUsd": 255.75,
                     "monthToDate": {"period": "2026-12", "accountedUntil": "2026-12-10T00:00:00Z",
                                     "inputTokens": 1.0, "outputTokens": 1.0, "replicaHours": 2.0,
                                     "poolUsd": 550.25, "apiUsd": 88.0}},
            "provisioning": {"verdict": "UnderProvisioned", "message": "queue"},
            "conditions": [{"type": "MetricsAvailable", "status": "True", "reason": "Observed",
                            "message": "", "lastTransitionTime": "2026-12-10T00:00:00Z"}]
        }))
        .unwrap()
    }

    #[test]
    fn a_priced_pool_gives_every_gauge() {
        let gauges = pool_gauges(&priced_status());
        let value = |g| gauges.iter().find(|(x, _)| *x == g).map(|(_, v)| *v);
        assert_eq!(value(PoolGauge::MonthlyUsd), Some(1705.0));
        assert_eq!(value(PoolGauge::ApiMonthlyUsd), Some(275.5));
        assert_eq!(value(PoolGauge::IdleMonthlyUsd), Some(255.75));
        assert_eq!(value(PoolGauge::MonthToDateUsd), Some(550.25));
        assert_eq!(value(PoolGauge::ApiMonthToDateUsd), Some(88.0));
        assert_eq!(value(PoolGauge::Replicas), Some(3.0));
        assert_eq!(value(PoolGauge::ReadyReplicas), Some(2.0));
        assert_eq!(value(PoolGauge::DesiredReplicas), Some(4.0));
        assert_eq!(value(PoolGauge::Utilization), Some(0.85));
        assert_eq!(
            value(PoolGauge::Verdict),
            Some(verdict_code(Verdict::UnderProvisioned))
        );
        assert_eq!(value(PoolGauge::Cheaper), Some(cheaper_code(Cheaper::Api)));
        assert_eq!(value(PoolGauge::MetricsAvailable), Some(1.0));
        assert_eq!(gauges.len(), PoolGauge::ALL.len());
    }

    #[test]
    fn what_the_status_does_not_know_is_left_out_not_zero() {
        let gauges = pool_gauges(&InferencePoolStatus::default());
        let names: Vec<_> = gauges.iter().map(|(g, _)| *g).collect();
        // Replica counts are always known; no money, load or verdict before the first reading.
        assert_eq!(names, [PoolGauge::Replicas, PoolGauge::ReadyReplicas]);
    }

    #[test]
    fn pool_series_are_labelled_by_namespace_and_pool_and_go_with_the_pool() {
        let ops = Ops::default();
        ops.metrics
            .observe_pool("team-a", "gemma", &priced_status());
        ops.metrics
            .observe_pool("team-b", "llama", &InferencePoolStatus::default());
        let text = ops.render();
        assert!(
            text.contains(r#"crossover_pool_monthly_usd{namespace="team-a",pool="gemma"} 1705.0"#),
            "{text}"
        );
        assert!(
            text.contains(r#"crossover_pool_replicas{namespace="team-b",pool="llama"} 0.0"#),
            "{text}"
        );
        assert!(!text.contains(r#"crossover_pool_monthly_usd{namespace="team-b""#));
        // Prices vanish (say, the catalog entry is gone): the series goes, it does not read $0.
        let mut unpriced = priced_status();
        unpriced.cost = None;
        ops.metrics.observe_pool("team-a", "gemma", &unpriced);
        let text = ops.render();
        assert!(
            !text.contains(r#"crossover_pool_monthly_usd{namespace="team-a""#),
            "{text}"
        );
        assert!(text.contains(r#"crossover_pool_replicas{namespace="team-a",pool="gemma"} 3.0"#));
        ops.metrics.forget_pool("team-a", "gemma");
        let text = ops.render();
        assert!(!text.contains(r#"pool="gemma""#), "{text}");
        assert!(text.contains(r#"pool="llama""#), "{text}");
    }

    #[test]
    fn readiness_says_why_it_is_not_ready() {
        let ops = Ops::default();
        assert!(ops.readiness().is_err());
        ops.set_readiness(Err("the CRD is too old".into()));
        assert_eq!(ops.readiness(), Err("the CRD is too old".to_string()));
        assert!(ops.render().contains("crossover_ready 0"));
        ops.set_ready(true);
        assert_eq!(ops.readiness(), Ok(()));
        assert!(ops.render().contains("crossover_ready 1"));
    }
}
