//! The InferencePool controller: watches pools and their Deployments and Services, and runs the
//! reconcile pipeline in `reconcile.rs` for each. This file wires the watches and their caches,
//! the shared context, the error and requeue policies and leadership; decisions live in pure
//! modules beside it.
//!
//! At fleet scale (a thousand pools) the costs are set here: reconciles run at most
//! `concurrency` at a time; each pool's first requeue in a term is spread over the interval and
//! later ones keep it there, so the fleet does not reconcile in a herd; children are read from watch caches that keep only the
//! fields read ([`cache`]); the operator's own status writes trigger nothing (a predicate on what
//! a person or the scale subresource changes); and what is kept per pool goes when the pool does.

pub mod accounting;
pub mod build;
pub mod cache;
pub mod checkpoint;
pub mod crd;
pub mod decide;
pub mod gate;
pub mod leader;
pub mod observe;
mod reconcile;
pub mod status;
pub mod validate;

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Pod, Service};
use kube::core::{DeserializeGuard, PartialObjectMeta};
use kube::runtime::controller::{self, Action, Controller};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{PredicateConfig, WatchStreamExt, watcher};
use kube::{Api, Client, Resource};
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
        if self.not_leading() {
            return "not_leading";
        }
        match self {
            Error::Read { .. } => "read",
            Error::Apply { .. } => "apply",
            Error::Status(_) => "status",
            Error::Build(_) => "build",
        }
    }

    /// A write the leadership gate refused: this replica stopped leading mid-reconcile.
    pub fn not_leading(&self) -> bool {
        gate::refused(self)
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
    /// Pods of every pool (label crossover.dev/pool), from one shared watch, trimmed.
    pub pods: Store<Pod>,
    /// The pools' Deployments and Services (label crossover.dev/pool), trimmed: read instead of a
    /// GET per reconcile. An object missing here is looked up once more (it may be someone
    /// else's, without our label).
    pub deployments: Store<Deployment>,
    pub services: Store<PartialObjectMeta<Service>>,
    pub observer: observe::Observer,
    /// Failed reconciles in a row per pool (the error policy's backoff).
    pub failures: Failures,
    /// Health, readiness and metrics; each reconcile sets its pool's gauges here.
    pub ops: Arc<crate::ops::Ops>,
    /// When each pool's pods were last looked at (billing a pod that left between two looks).
    pub looks: Arc<accounting::Looks>,
    /// What was last applied to each child, so an apply that would change nothing is skipped.
    pub applied: cache::Applied,
    /// Pools reconciled in this leadership term (their first requeue spreads them).
    pub seen: Mutex<std::collections::HashSet<PoolKey>>,
    /// Whether the pool watch may be behind: set by a watch error, cleared by the next event that
    /// shows it current (a relist's end, a change delivered). Meanwhile the cached pool may be one
    /// that was deleted or edited since, so each reconcile first checks it with a GET.
    pub pool_watch_behind: AtomicBool,
    /// Each pool's newest status, written or held until it must be written ([`checkpoint`]).
    pub statuses: checkpoint::Statuses,
    /// Longest a changed status waits to be written when nothing that must go at once changed.
    pub status_checkpoint: Duration,
}

impl Context {
    /// The pool's Deployment as the cache has it.
    pub fn cached_deployment(&self, namespace: &str, name: &str) -> Option<Arc<Deployment>> {
        self.deployments
            .get(&ObjectRef::new(name).within(namespace))
    }

    /// The pool's Service's metadata as the cache has it.
    pub fn cached_service(
        &self,
        namespace: &str,
        name: &str,
    ) -> Option<Arc<PartialObjectMeta<Service>>> {
        self.services.get(&ObjectRef::new(name).within(namespace))
    }

    /// Until every cache has listed once: judging a pool on an empty cache would read as "no
    /// Deployment, no pods".
    async fn caches_ready(&self) {
        let _ = self.pods.wait_until_ready().await;
        let _ = self.deployments.wait_until_ready().await;
        let _ = self.services.wait_until_ready().await;
    }

    /// Whether the pool as cached is the pool as stored. Checked with a GET of its metadata only
    /// when the cache could mislead: while the pool watch may be behind, and before children the
    /// caches do not have are created. A pool deleted while its watch was down (or frozen) must
    /// not get its children back: they would be recreated, pods and all, until the garbage
    /// collector removed them once more.
    async fn pool_is_current(&self, pool: &DeserializeGuard<InferencePool>) -> Result<bool, Error> {
        let meta = pool.meta();
        let (ns, name) = (
            meta.namespace.as_deref().unwrap_or_default(),
            meta.name.as_deref().unwrap_or_default(),
        );
        let creating = self.cached_deployment(ns, name).is_none()
            || self
                .cached_service(ns, &build::service_name(name))
                .is_none();
        if !creating && !self.pool_watch_behind.load(Ordering::Relaxed) {
            return Ok(true);
        }
        let api: Api<PartialObjectMeta<InferencePool>> = Api::namespaced(self.client.clone(), ns);
        let stored = api
            .get_metadata_opt(name)
            .await
            .map_err(|source| Error::Read {
                what: "pool",
                source,
            })?;
        Ok(stored.is_some_and(|s| {
            s.metadata.uid == meta.uid && s.metadata.generation == meta.generation
        }))
    }

    /// When `pool` should come back after a reconcile that went through ([`requeue_delay`]).
    pub fn next_reconcile(&self, pool: &InferencePool, interval: Duration) -> Duration {
        let key = (
            pool.metadata.namespace.clone().unwrap_or_default(),
            pool.metadata.name.clone().unwrap_or_default(),
        );
        let first = self
            .seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key);
        requeue_delay(interval, first, random_fraction())
    }

    /// Drops what is kept for a pool that no longer exists.
    fn forget_pool(&self, key: &PoolKey) {
        self.failures.reset(key);
        self.seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
        self.ops.metrics.forget_pool(&key.0, &key.1);
        self.looks.forget(key);
        self.applied.forget(&key.0, &key.1);
        self.statuses.forget(key);
    }

    /// The pool with its newest status, and what this term last wrote of it: as this term last
    /// computed it, or as stored on the pool's first reconcile in the term (the pool watch keeps
    /// no status).
    pub async fn with_newest_status(
        &self,
        pools: &Api<InferencePool>,
        pool: &InferencePool,
    ) -> Result<(InferencePool, Option<checkpoint::Written>), Error> {
        let mut pool = pool.clone();
        let uid = pool.metadata.uid.clone();
        let key = (
            pool.metadata.namespace.clone().unwrap_or_default(),
            pool.metadata.name.clone().unwrap_or_default(),
        );
        if let Some((status, written)) = self.statuses.latest(&key, uid.as_deref()) {
            pool.status = Some(status);
            return Ok((pool, written));
        }
        // A GET of the pool (its status included): the verb the chart grants for pools.
        let stored = pools.get(&key.1).await.map_err(|source| Error::Read {
            what: "pool status",
            source,
        })?;
        pool.status = stored.status.filter(|_| stored.metadata.uid == uid);
        Ok((pool, None))
    }
}

type PoolKey = (String, String);

/// Failed reconciles retry after an exponential backoff with jitter, per pool: 5 s, 10 s, 20 s …
/// up to 5 minutes, so an API server refusing every pool (a webhook, quota, a brownout) is not
/// hammered in lock-step. A success resets the pool's count.
fn error_policy(
    pool: Arc<DeserializeGuard<InferencePool>>,
    error: &Error,
    ctx: Arc<Context>,
) -> Action {
    if error.not_leading() {
        // The controller is stopping: this replica lost the lease. Nothing was written.
        info!(pool = %pool_key(&pool).1, "not leading; this reconcile wrote nothing");
        return Action::await_change();
    }
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
    0.75 + random_fraction() / 2.0
}

/// A number in [0, 1), different on every call (std's random hasher keys; no RNG crate needed for
/// spreading retries).
pub(crate) fn random_fraction() -> f64 {
    let r = std::collections::hash_map::RandomState::new().hash_one(std::time::Instant::now());
    (r % 1_000_000) as f64 / 1_000_000.0
}

/// When a pool that just reconciled should come back. The first time in a leadership term,
/// after a random share (`fraction`, 0 to 1) of 10 % to 100 % of its interval; then exactly one
/// interval. Pools start together when the operator starts, after a failover, or when many are
/// applied at once; the first requeue spreads them evenly over the interval instead of scraping,
/// writing and allocating in one herd every interval, and the exact interval afterwards keeps
/// them spread with the even cadence that rates and money assume (no reading is more than one
/// interval after the last).
pub fn requeue_delay(interval: Duration, first: bool, fraction: f64) -> Duration {
    if first {
        interval.mul_f64(0.1 + 0.9 * fraction.clamp(0.0, 1.0))
    } else {
        interval
    }
}

fn pool_key(pool: &DeserializeGuard<InferencePool>) -> PoolKey {
    let meta = pool.meta();
    (
        meta.namespace.clone().unwrap_or_default(),
        meta.name.clone().unwrap_or_default(),
    )
}

/// Consecutive failed reconciles per pool, for the backoff.
#[derive(Default)]
pub struct Failures(Mutex<HashMap<PoolKey, u32>>);

impl Failures {
    fn record(&self, key: &PoolKey) -> u32 {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let n = map.entry(key.clone()).or_insert(0);
        *n = n.saturating_add(1);
        *n
    }

    fn reset(&self, key: &PoolKey) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).remove(key);
    }

    /// How many pools have failures recorded (for tests and debugging).
    pub fn len(&self) -> usize {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// What re-triggers a pool's reconcile on its own watch: what a person, a tool or the scale
/// subresource changes (the generation covers spec, `spec.replicas` through /scale included;
/// labels and annotations; deletion), never the status the operator itself writes. A pool that
/// cannot be read passes on every change: an edit of its status may be what repairs it.
fn pool_changed(pool: &DeserializeGuard<InferencePool>) -> Option<u64> {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    match &pool.0 {
        Ok(p) => {
            let m = &p.metadata;
            (
                m.generation,
                &m.labels,
                &m.annotations,
                m.deletion_timestamp.is_some(),
            )
                .hash(&mut h);
        }
        Err(invalid) => invalid.metadata.resource_version.hash(&mut h),
    }
    Some(h.finish())
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
    /// This replica's name: in the User-Agent of its API requests (so an audit log tells replicas
    /// apart) and in the Lease.
    pub identity: String,
    /// Most reconciles running at once.
    pub concurrency: u16,
    /// Longest a status change that can wait is held before it is written ([`checkpoint`]).
    pub status_checkpoint: Duration,
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

/// One shutdown signal, observed from several places.
#[derive(Clone)]
struct Shutdown(tokio::sync::watch::Receiver<bool>);

impl Shutdown {
    fn listen() -> Self {
        let (tx, rx) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            shutdown_signal().await;
            let _ = tx.send(true);
        });
        Self(rx)
    }

    async fn wait(&self) {
        let mut rx = self.0.clone();
        let _ = rx.wait_for(|down| *down).await;
    }
}

/// A client for `config` whose requests say who sends them.
fn client_for(
    mut config: kube::Config,
    identity: &str,
    gate: Option<gate::LeaderOnly>,
) -> anyhow::Result<Client> {
    let agent = format!("crossover/{} ({identity})", env!("CARGO_PKG_VERSION"));
    if let Ok(value) = http::HeaderValue::from_str(&agent) {
        config.headers.push((http::header::USER_AGENT, value));
    }
    let builder = kube::client::ClientBuilder::try_from(config)?;
    Ok(match gate {
        Some(g) => builder.with_layer(&g).build(),
        None => builder.build(),
    })
}

/// Runs the controller until a shutdown signal. With leader election, only while this replica
/// holds the Lease: writes stop at the renew deadline (the gate), the controller then drains and
/// the replica stands by again. It does not exit, so losing the lease never becomes a
/// CrashLoopBackOff.
pub async fn run(config: kube::Config, opts: RunOptions) -> anyhow::Result<()> {
    let shutdown = Shutdown::listen();
    let plain = client_for(config.clone(), &opts.identity, None)?;
    // Ready once the API server answers with a current CRD; a standby is ready too: it can take over.
    tokio::select! {
        _ = crd::wait_until_current(&plain, opts.namespace.as_deref(), &opts.ops) => {}
        _ = shutdown.wait() => {
            info!("shutdown while waiting for the CRD");
            return Ok(());
        }
    }
    let Some(lease) = opts.leader.clone() else {
        opts.ops.metrics.set_leader(true);
        let (stop_tx, stop_rx) = futures::channel::oneshot::channel::<()>();
        let controller = run_controller(plain, opts.clone(), stop_rx);
        tokio::pin!(controller);
        return tokio::select! {
            r = &mut controller => r,
            _ = shutdown.wait() => {
                let _ = stop_tx.send(());
                controller.await
            }
        };
    };
    lease.check().map_err(|e| anyhow::anyhow!(e))?;
    // Lease calls are never retried inside the client: a renewal retried after its answer was
    // lost would be refused by its own first attempt, and the elector reads back instead.
    let mut lease_config = config.clone();
    lease_config.default_retry = false;
    let leases: Api<Lease> = Api::namespaced(
        client_for(lease_config, &opts.identity, None)?,
        &lease.namespace,
    );
    let mut elector = leader::Elector::new(leases, lease.clone());
    let gated = client_for(
        config,
        &opts.identity,
        Some(gate::LeaderOnly::new(elector.leadership())),
    )?;
    loop {
        tokio::select! {
            _ = elector.acquire() => {}
            _ = shutdown.wait() => {
                info!("shutdown while standing by");
                return Ok(());
            }
        }
        opts.ops.metrics.set_leader(true);
        let (stop_tx, stop_rx) = futures::channel::oneshot::channel::<()>();
        let controller = run_controller(gated.clone(), opts.clone(), stop_rx);
        tokio::pin!(controller);
        enum Stop {
            Ended(anyhow::Result<()>),
            Lost(String),
            Shutdown,
        }
        let stop = tokio::select! {
            r = &mut controller => Stop::Ended(r),
            why = elector.hold() => Stop::Lost(why),
            _ = shutdown.wait() => Stop::Shutdown,
        };
        let _ = stop_tx.send(());
        // In-flight reconciles finish; past the deadline their writes are refused by the gate, so
        // a reconcile stops at a step boundary, as after any failed write, and is redone by the
        // next leader. A drain that hangs on a dead connection is cut after one lease duration.
        let drain = lease.duration;
        let result = match stop {
            Stop::Ended(r) => r,
            Stop::Lost(why) => {
                warn!(%why, "lost the lease: stopping the controller and standing by");
                let _ = tokio::time::timeout(drain, &mut controller).await;
                Ok(())
            }
            Stop::Shutdown => {
                // Keep renewing while draining, so the reconciles still running may finish.
                let drained = tokio::select! {
                    r = tokio::time::timeout(drain, &mut controller) => r.unwrap_or(Ok(())),
                    why = elector.hold() => {
                        warn!(%why, "lost the lease while shutting down");
                        Ok(())
                    }
                };
                opts.ops.metrics.set_leader(false);
                elector.release().await;
                return drained;
            }
        };
        opts.ops.metrics.set_leader(false);
        result?;
    }
}

fn api<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    K::DynamicType: Default,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// Aborts a background task when dropped: the watches of one leadership term end with it.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Runs the controller until `stop` resolves, then lets the running reconciles finish.
async fn run_controller(
    client: Client,
    opts: RunOptions,
    stop: futures::channel::oneshot::Receiver<()>,
) -> anyhow::Result<()> {
    let ns = opts.namespace.as_deref();
    let reporter = Reporter {
        controller: "crossover".into(),
        instance: std::env::var("POD_NAME").ok(),
    };
    let children = watcher::Config::default().labels(POOL_LABEL);
    // One watch on the pools' pods feeds every reconcile's scrape targets and billing.
    let (pod_store, pod_writer) = reflector::store();
    let pod_watch = watcher(api::<Pod>(&client, ns), children.clone())
        .default_backoff()
        .modify(cache::trim_pod)
        .reflect(pod_writer)
        .for_each(|event| {
            if let Err(e) = event {
                warn!(error = %e, "the pod watch failed; retrying with backoff");
            }
            futures::future::ready(())
        });
    let _pod_watch = AbortOnDrop(tokio::spawn(pod_watch));
    // The children's watches fill the caches reconciles read and trigger the owning pool.
    let (deployment_store, deployment_writer) = reflector::store();
    let deployment_watch = watcher(api::<Deployment>(&client, ns), children.clone())
        .default_backoff()
        .modify(cache::trim_deployment)
        .reflect(deployment_writer)
        .touched_objects();
    let (service_store, service_writer) = reflector::store();
    let service_watch = watcher(api::<PartialObjectMeta<Service>>(&client, ns), children)
        .default_backoff()
        .modify(cache::trim_service)
        .reflect(service_writer)
        .touched_objects();

    let ctx = Arc::new(Context {
        client: client.clone(),
        recorder: Recorder::new(client.clone(), reporter),
        clock: system_clock(opts.clock_offset),
        pods: pod_store,
        deployments: deployment_store,
        services: service_store,
        observer: observe::Observer::new(opts.observer.clone()),
        failures: Failures::default(),
        ops: opts.ops.clone(),
        looks: Arc::new(accounting::Looks::default()),
        applied: cache::Applied::default(),
        seen: Mutex::default(),
        pool_watch_behind: AtomicBool::new(false),
        statuses: checkpoint::Statuses::default(),
        status_checkpoint: opts.status_checkpoint,
    });
    let (pool_store, pool_writer) = reflector::store();
    let forget = ctx.clone();
    let pool_watch = watcher(
        api::<DeserializeGuard<InferencePool>>(&client, ns),
        watcher::Config::default(),
    )
    .default_backoff()
    .modify(cache::trim_pool)
    .reflect(pool_writer)
    .inspect(move |event| match event {
        Err(e) => {
            warn!(error = %e, "the pool watch failed; checking each pool with the API server until it recovers");
            forget.pool_watch_behind.store(true, Ordering::Relaxed);
        }
        Ok(watcher::Event::Delete(pool)) => {
            forget.forget_pool(&pool_key(pool));
            forget.pool_watch_behind.store(false, Ordering::Relaxed);
        }
        Ok(watcher::Event::Apply(_) | watcher::Event::InitDone) => {
            forget.pool_watch_behind.store(false, Ordering::Relaxed)
        }
        Ok(watcher::Event::Init | watcher::Event::InitApply(_)) => {}
    })
    .applied_objects()
    .predicate_filter(
        pool_changed,
        PredicateConfig::default().ttl(Duration::from_secs(600)),
    );

    info!(
        concurrency = opts.concurrency,
        "crossover controller started"
    );
    let ops = opts.ops.clone();
    let measured = move |pool: Arc<DeserializeGuard<InferencePool>>, ctx: Arc<Context>| {
        let ops = ops.clone();
        async move {
            ctx.caches_ready().await;
            if !ctx.pool_is_current(&pool).await? {
                // Deleted or changed since the cache saw it: the watch brings the news shortly.
                tracing::debug!(pool = %pool_key(&pool).1, "the cached pool is stale; waiting for the watch");
                return Ok(Action::requeue(Duration::from_secs(1)));
            }
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
    let config = controller::Config::default()
        .concurrency(opts.concurrency.max(1))
        // Coalesces the bursts of child events a rollout makes; short enough not to delay a scale.
        .debounce(Duration::from_millis(200));
    let done = ctx.clone();
    Controller::for_stream(pool_watch, pool_store)
        .with_config(config)
        .owns_stream(deployment_watch)
        .owns_stream(service_watch)
        .graceful_shutdown_on(async move {
            let _ = stop.await;
        })
        .run(measured, error_policy, ctx)
        .for_each(move |res| {
            match res {
                Ok((obj, _)) => tracing::debug!(pool = %obj, "reconciled"),
                // A deleted pool's next scheduled reconcile finds no object: forget it.
                Err(controller::Error::ObjectNotFound(obj)) => {
                    done.forget_pool(&(obj.namespace.clone().unwrap_or_default(), obj.name.clone()))
                }
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

    /// `n` pools reconciled together at t = 0, then `rounds` more times: the largest share of
    /// them that falls in any tenth of the interval in the last round.
    fn herd_after(n: usize, rounds: usize) -> f64 {
        let interval = Duration::from_secs(15);
        let mut bins = [0usize; 10];
        for i in 0..n {
            let mut t = Duration::ZERO;
            for round in 0..rounds {
                // A deterministic spread of fractions stands in for the random one.
                let fraction = (i as f64 + 0.5) / n as f64;
                t += requeue_delay(interval, round == 0, fraction);
            }
            let ms = t.as_millis() % 15_000;
            bins[(ms / 1_500) as usize] += 1;
        }
        *bins.iter().max().unwrap() as f64 / n as f64
    }

    #[test]
    fn pools_that_start_together_spread_over_the_interval_and_stay_spread() {
        assert_eq!(herd_after(1000, 0), 1.0, "all at t = 0");
        for rounds in [1, 2, 50] {
            let herd = herd_after(1000, rounds);
            assert!(herd <= 0.12, "{rounds} rounds: {herd}");
        }
    }

    #[test]
    fn a_pool_comes_back_early_only_once_then_every_interval() {
        let interval = Duration::from_secs(15);
        assert_eq!(
            requeue_delay(interval, true, 0.0),
            Duration::from_millis(1500)
        );
        assert_eq!(requeue_delay(interval, true, 1.0), interval);
        assert_eq!(requeue_delay(interval, true, 7.0), interval, "clamped");
        assert_eq!(requeue_delay(interval, false, 0.3), interval);
    }

    #[test]
    fn the_pools_own_status_write_triggers_nothing_but_edits_do() {
        let pool =
            |generation: i64, status: &str, label: &str| -> DeserializeGuard<InferencePool> {
                serde_json::from_value(serde_json::json!({
                "apiVersion": "crossover.dev/v1alpha1", "kind": "InferencePool",
                "metadata": {"name": "p", "namespace": "ns", "generation": generation,
                    "resourceVersion": format!("{generation}{status}"), "labels": {"team": label}},
                "spec": {"model": "m", "maxReplicas": 3, "cost": {"replicaHourlyUsd": 1.0}},
                "status": {"replicas": 1, "display": {"ready": status}}
            }))
            .unwrap()
            };
        let base = pool_changed(&pool(1, "1/1", "a"));
        assert_eq!(pool_changed(&pool(1, "2/2", "a")), base, "a status write");
        assert_ne!(
            pool_changed(&pool(2, "1/1", "a")),
            base,
            "a spec edit or kubectl scale"
        );
        assert_ne!(pool_changed(&pool(1, "1/1", "b")), base, "a label edit");
        let invalid = |rv: &str| -> DeserializeGuard<InferencePool> {
            serde_json::from_value(serde_json::json!({
                "apiVersion": "crossover.dev/v1alpha1", "kind": "InferencePool",
                "metadata": {"name": "p", "namespace": "ns", "generation": 1, "resourceVersion": rv},
                "spec": {"model": 7}
            }))
            .unwrap()
        };
        assert!(invalid("1").0.is_err());
        assert_ne!(pool_changed(&invalid("1")), pool_changed(&invalid("2")));
    }

    #[test]
    fn failures_of_a_pool_are_forgotten() {
        let f = Failures::default();
        let key = ("ns".to_string(), "p".to_string());
        assert_eq!(f.record(&key), 1);
        assert_eq!(f.record(&key), 2);
        f.reset(&key);
        assert!(f.is_empty());
    }
}
