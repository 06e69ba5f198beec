//! The operator's own production surface over HTTP: `/healthz` (the process serves),
//! `/readyz` (it reached the API server and found the CRD) and `/metrics` (Prometheus text:
//! reconciles, their errors by kind and duration, and whether this replica leads).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// The operator's metrics. Labels are bounded: a result, an error kind; never a pool's name.
#[derive(Clone)]
pub struct Metrics {
    reconciles: Family<Vec<(&'static str, &'static str)>, Counter>,
    reconcile_seconds: Histogram,
    leader: Gauge,
}

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
}

/// Shared by the HTTP server and the controller.
pub struct Ops {
    registry: Registry,
    pub metrics: Metrics,
    ready: AtomicBool,
}

impl Default for Ops {
    fn default() -> Self {
        let metrics = Metrics {
            reconciles: Family::default(),
            reconcile_seconds: Histogram::new(exponential_buckets(0.001, 2.0, 16)),
            leader: Gauge::default(),
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
        Self {
            registry,
            metrics,
            ready: AtomicBool::new(false),
        }
    }
}

impl Ops {
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Relaxed);
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
    if ops.ready.load(Ordering::Relaxed) {
        (StatusCode::OK, "ready\n")
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: the API server or the CRD has not answered yet\n",
        )
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
    }
}
