//! The InferencePool controller: watches pools and their Deployments and Services, and runs the
//! reconcile pipeline in `reconcile.rs` for each. This file wires the watches, the shared context
//! and the error policy; decisions live in pure modules beside it.

pub mod accounting;
pub mod build;
pub mod crd;
pub mod decide;
pub mod leader;
pub mod observe;
mod reconcile;
pub mod status;
pub mod validate;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Pod, Service};
use kube::core::DeserializeGuard;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::{self, Store, reflector};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use tracing::{info, warn};

use crate::api::{InferencePool, POOL_LABEL};

pub use reconcile::reconcile;

/// Errors of one reconcile, one variant per pipeline step. Labels stay low-cardinality: the
/// variant name, never an object name.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("reading {what} failed: {source}")]
    Read {
        what: &'static str,
        #[source]
        source: kube::Error,
    },
    #[error("applying the {what} failed: {source}")]
    Apply {
        what: &'static str,
        #[source]
        source: kube::Error,
    },
    #[error("writing the status failed: {0}")]
    Status(#[source] kube::Error),
    #[error("cannot build the pool's children: {0}")]
    Build(#[from] build::BuildError),
}

impl Error {
    /// A short, bounded label for metrics and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Read { .. } => "read",
            Error::Apply { .. } => "apply",
            Error::Status(_) => "status",
            Error::Build(_) => "build",
        }
    }
}

/// A source of the current time, injectable so tests can cross a month boundary.
pub type Clock = Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>;

/// The system clock, shifted by `offset` (zero in production; tests move it forward).
pub fn system_clock(offset: chrono::Duration) -> Clock {
    Arc::new(move || Utc::now() + offset)
}

/// What every reconcile shares.
pub struct Context {
    pub client: Client,
    pub recorder: Recorder,
    pub clock: Clock,
    /// Pods of every pool (label crossover.dev/pool), from one shared watch.
    pub pods: Store<Pod>,
    pub observer: observe::Observer,
    /// Failed reconciles in a row per pool (the error policy's backoff).
    pub failures: Failures,
    /// Health, readiness and metrics; each reconcile sets its pool's gauges here.
    pub ops: Arc<crate::ops::Ops>,
    /// When each pool's pods were last looked at (billing a pod that left between two looks).
    pub looks: Arc<accounting::Looks>,
}

/// Failed reconciles retry after an exponential backoff with jitter, per pool: 5 s, 10 s, 20 s …
/// up to 5 minutes, so an API server refusing every pool (a webhook, quota, a brownout) is not
/// hammered in lock-step. A success resets the pool's count.
fn error_policy(
    pool: Arc<DeserializeGuard<InferencePool>>,
    error: &Error,
    ctx: Arc<Context>,
) -> Action {
    let failures = ctx.failures.record(&pool_key(&pool));
    let delay = backoff(failures, jitter());
    warn!(error = %error, kind = error.kind(), failures, retry_in = ?delay, "reconcile failed; retrying");
    Action::requeue(delay)
}

/// The retry delay after `failures` failures in a row, scaled by `jitter` (0.75 to 1.25).
pub fn backoff(failures: u32, jitter: f64) -> Duration {
    const BASE_SECONDS: f64 = 5.0;
    const CAP_SECONDS: f64 = 300.0;
    let exp = failures.saturating_sub(1).min(16);
    let seconds = (BASE_SECONDS * f64::from(1u32 << exp)).min(CAP_SECONDS);
    Duration::from_secs_f64(seconds * jitter.clamp(0.75, 1.25))
}

/// A factor between 0.75 and 1.25, different on every call.
fn jitter() -> f64 {
    use std::hash::BuildHasher;
    let r = std::collections::hash_map::RandomState::new().hash_one(std::time::Instant::now());
    0.75 + (r % 1_000_000) as f64 / 2_000_000.0
}

fn pool_key(pool: &DeserializeGuard<InferencePool>) -> (String, String) {
    let meta = match &pool.0 {
        Ok(p) => &p.metadata,
        Err(invalid) => &invalid.metadata,
    };
    (
        meta.namespace.clone().unwrap_or_default(),
        meta.name.clone().unwrap_or_default(),
    )
}

/// Consecutive failed reconciles per pool, for the backoff.
#[derive(Default)]
pub struct Failures(std::sync::Mutex<std::collections::HashMap<(String, String), u32>>);

impl Failures {
    fn record(&self, key: &(String, String)) -> u32 {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let n = map.entry(key.clone()).or_insert(0);
        *n = n.saturating_add(1);
        *n
    }

    fn reset(&self, key: &(String, String)) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).remove(key);
    }
}

/// Options for the running operator.
#[derive(Clone)]
pub struct RunOptions {
    /// Only watch this namespace (all namespaces when None).
    pub namespace: Option<String>,
    /// Shift the clock (tests only).
    pub clock_offset: chrono::Duration,
    /// Run only while holding this Lease (None: run unconditionally, a single replica).
    pub leader: Option<leader::LeaseConfig>,
    /// Readiness and metrics, served by `crate::ops`.
    pub ops: Arc<crate::ops::Ops>,
    /// How metrics are read (source namespace, address policy).
    pub observer: observe::ObserverOptions,
}

/// Resolves on SIGTERM (what the kubelet sends) or Ctrl-C.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Runs the controller until a shutdown signal; with leader election, only while this replica
/// holds the Lease (a lost lease ends the process so its pod restarts as a standby).
pub async fn run(client: Client, opts: RunOptions) -> anyhow::Result<()> {
    // Ready once the API server answers with a current CRD; a standby is ready too: it can take over.
    tokio::select! {
        _ = crd::wait_until_current(&client, opts.namespace.as_deref(), &opts.ops) => {}
        _ = shutdown_signal() => {
            info!("shutdown while waiting for the CRD");
            return Ok(());
        }
    }
    let Some(lease) = opts.leader.clone() else {
        opts.ops.metrics.set_leader(true);
        return run_controller(client, opts).await;
    };
    let leases: Api<k8s_openapi::api::coordination::v1::Lease> =
        Api::namespaced(client.clone(), &lease.namespace);
    tokio::select! {
        _ = leader::acquire(&leases, &lease) => {}
        _ = shutdown_signal() => {
            info!("shutdown while standing by");
            return Ok(());
        }
    }
    opts.ops.metrics.set_leader(true);
    let ops = opts.ops.clone();
    let result = tokio::select! {
        r = run_controller(client, opts) => r,
        lost = leader::hold(&leases, &lease) => Err(anyhow::anyhow!("lost leadership: {lost}")),
    };
    ops.metrics.set_leader(false);
    if result.is_ok() {
        leader::release(&leases, &lease).await;
    }
    result
}

async fn run_controller(client: Client, opts: RunOptions) -> anyhow::Result<()> {
    let (pools, deployments, services): (
        Api<DeserializeGuard<InferencePool>>,
        Api<Deployment>,
        Api<Service>,
    ) = match &opts.namespace {
        Some(ns) => (
            Api::namespaced(client.clone(), ns),
            Api::namespaced(client.clone(), ns),
            Api::namespaced(client.clone(), ns),
        ),
        None => (
            Api::all(client.clone()),
            Api::all(client.clone()),
            Api::all(client.clone()),
        ),
    };
    let reporter = Reporter {
        controller: "crossover".into(),
        instance: std::env::var("POD_NAME").ok(),
    };
    let pods: Api<Pod> = match &opts.namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    // One watch on the pools' pods feeds every reconcile's scrape targets and Prometheus lookups.
    let (pod_store, pod_writer) = reflector::store();
    let pod_watch = reflector(
        pod_writer,
        // managedFields are a large share of a Pod and nothing here reads them.
        watcher(pods, watcher::Config::default().labels(POOL_LABEL))
            .modify(|p| p.metadata.managed_fields = None),
    )
    .default_backoff()
    .touched_objects()
    .for_each(|event| {
        // A pod watch that cannot list or watch leaves the cache stale: say so.
        if let Err(e) = event {
            warn!(error = %e, "the pod watch failed; retrying with backoff");
        }
        futures::future::ready(())
    });
    tokio::spawn(pod_watch);
    // Completeness is judged against the pod cache: never reconcile on an empty one.
    if pod_store.wait_until_ready().await.is_err() {
        anyhow::bail!("the pod watch stopped before its first list");
    }
    let looks = Arc::new(accounting::Looks::default());
    let ctx = Arc::new(Context {
        client: client.clone(),
        recorder: Recorder::new(client.clone(), reporter),
        clock: system_clock(opts.clock_offset),
        pods: pod_store,
        observer: observe::Observer::new(opts.observer.clone()),
        failures: Failures::default(),
        looks: looks.clone(),
        ops: opts.ops.clone(),
    });
    let children = watcher::Config::default().labels(POOL_LABEL);
    info!("crossover controller started");
    let ops = opts.ops.clone();
    let measured = move |pool: Arc<DeserializeGuard<InferencePool>>, ctx: Arc<Context>| {
        let ops = ops.clone();
        async move {
            let started = std::time::Instant::now();
            let key = pool_key(&pool);
            let result = reconcile(pool, ctx.clone()).await;
            if result.is_ok() {
                ctx.failures.reset(&key);
            }
            ops.metrics
                .observe_reconcile(started.elapsed(), result.as_ref().err().map(Error::kind));
            result
        }
    };
    Controller::new(pools, watcher::Config::default())
        .owns(deployments, children.clone())
        .owns(services, children)
        .graceful_shutdown_on(shutdown_signal())
        .run(measured, error_policy, ctx)
        .for_each(|res| {
            // A deleted pool's next scheduled reconcile finds no object: its gauges go with it.
            if let Err(kube::runtime::controller::Error::ObjectNotFound(obj)) = &res {
                let ns = obj.namespace.clone().unwrap_or_default();
                opts.ops.metrics.forget_pool(&ns, &obj.name);
                looks.forget(&(ns, obj.name.clone()));
            }
            match res {
                Ok((obj, _)) => tracing::debug!(pool = %obj, "reconciled"),
                Err(e) => tracing::debug!(error = %e, "reconcile error"),
            }
            futures::future::ready(())
        })
        .await;
    info!("crossover controller stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_five_seconds_to_five_minutes() {
        let at = |n| backoff(n, 1.0).as_secs_f64();
        assert_eq!([at(1), at(2), at(3), at(4)], [5.0, 10.0, 20.0, 40.0]);
        assert_eq!(at(7), 300.0);
        assert_eq!(at(u32::MAX), 300.0);
        assert_eq!(backoff(1, 0.75).as_secs_f64(), 3.75);
        assert_eq!(backoff(1, 9.0).as_secs_f64(), 6.25, "jitter is clamped");
        for _ in 0..100 {
            let j = jitter();
            assert!((0.75..=1.25).contains(&j), "{j}");
        }
    }
}
