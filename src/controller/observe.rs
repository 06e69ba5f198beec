//! The controller's edge to vLLM: reads each pool's serving pods (by scraping /metrics or through
//! one shared set of Prometheus queries per server) and turns each pod's baseline and its latest
//! sample into an `Observation` (`load::derive`). Baselines live in memory per series and, per pod,
//! in `status.load.baselines`, so a restart or failover still counts every token exactly once.
//!
//! In memory, bounded and pruned: each pool's baselines (dropped for pools not reconciled for a
//! few intervals, so deleted pools leave nothing behind), one answer per Prometheus server, and
//! resolved `PrometheusSource`s (refreshed every `SOURCE_TTL`).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret};
use kube::runtime::reflector::Store;
use kube::{Api, Client, ResourceExt};
use tokio::sync::Semaphore;

use crate::api::{
    BEARER_TOKEN_SECRET_REMOVED, CounterBaseline, InferencePool, MetricsSource, POOL_LABEL,
    PrometheusSource, from_time,
};
use crate::load::Observation;
use crate::load::derive::{Baseline, DeriveInput, Limits, PoolReading, derive};
use crate::load::http::{self, ClientOptions, check_url, redact_url};
use crate::load::prometheus::{PodKey, PrometheusClient, Scope, ServerReading, Targets, Token};
use crate::load::scrape::{ScrapeTarget, metrics_url, scrape_pods, split_results};

/// Pool identity: namespace and name.
pub type PoolKey = (String, String);

/// How long a resolved PrometheusSource (its Secret and CA included) is reused.
pub const SOURCE_TTL: Duration = Duration::from_secs(30);

/// What one attempt to observe a pool gave.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// A new observation: the pods whose samples moved since their baselines.
    Fresh(Observation),
    /// The last attempt (good or failed) is too recent; nothing new to act on.
    TooSoon,
    /// First sight of the pods: rates need one more interval.
    WarmingUp,
    /// The pods answered, but no sample moved since the last reading (Prometheus scrapes less
    /// often than the pool's interval): no sizing, no accrual, and nothing is wrong.
    NoNewData {
        scrape_interval_seconds: Option<f64>,
    },
    /// No data: why, for the MetricsAvailable condition. Never a reason to scale down.
    Missing(String),
    /// No data because of configuration only a person can fix (a missing PrometheusSource, an
    /// unreadable Secret, a token that would travel over http, a refused address): the reason is
    /// the condition's. The pool is held, as for missing data.
    Misconfigured {
        reason: &'static str,
        message: String,
    },
    /// No pod serves yet (the pool is starting or scaled to zero): nothing to read, nothing wrong.
    NotServing(String),
}

impl Outcome {
    /// How often the source refreshes the pods' samples, when the outcome says.
    pub fn scrape_interval_seconds(&self) -> Option<f64> {
        match self {
            Outcome::Fresh(o) => o.scrape_interval_seconds,
            Outcome::NoNewData {
                scrape_interval_seconds,
            } => *scrape_interval_seconds,
            _ => None,
        }
    }
}

/// How the observer reads.
#[derive(Clone, Debug)]
pub struct ObserverOptions {
    /// Namespace of the Secrets and ConfigMaps PrometheusSources name (the operator's own).
    pub source_namespace: String,
    /// Allow link-local and metadata addresses (refused by default).
    pub allow_link_local: bool,
    /// Total time of one pod scrape, body included.
    pub scrape_timeout: Duration,
    /// Total time of one Prometheus query, body included.
    pub prometheus_timeout: Duration,
    /// Pod scrapes in flight across all pools. Each is bounded in memory by the parser's caps
    /// (under 1 MiB), so this bounds scrape memory too.
    pub scrape_permits: usize,
    /// Prometheus answers in flight across all servers; each is decoded as it streams in, so
    /// memory holds only the series kept (`prometheus::MAX_SERIES` at most).
    pub prometheus_permits: usize,
}

impl Default for ObserverOptions {
    fn default() -> Self {
        Self {
            source_namespace: "default".into(),
            allow_link_local: false,
            scrape_timeout: Duration::from_secs(3),
            prometheus_timeout: Duration::from_secs(10),
            scrape_permits: 32,
            prometheus_permits: 4,
        }
    }
}

struct PoolState {
    uid: Option<String>,
    baselines: BTreeMap<String, Baseline>,
    /// When the pods last answered.
    last_answer: Option<DateTime<Utc>>,
    /// Since when this process has tracked every pod of the pool (see `DeriveInput`).
    tracked_since: Option<DateTime<Utc>>,
    /// The last attempt that did IO, good or failed: attempts are rate-limited like readings.
    attempted: Option<Instant>,
    touched: Instant,
    interval: Duration,
}

/// A failed server read, ready for the outcome.
type Failure = Fetch;

#[derive(Default)]
struct ServerEntry {
    last: Option<(Instant, Scope, Result<Arc<ServerReading>, Failure>)>,
    /// Namespaces whose pools read this server, and when each last asked.
    namespaces: HashMap<String, Instant>,
    scrape_interval_seconds: Option<f64>,
    used: Option<Instant>,
}

/// A Prometheus server as pools name it, with the selector its queries carry.
type ServerKey = (String, Option<String>);

/// A `PrometheusSource` resolved into a client.
struct Resolved {
    client: PrometheusClient,
    selector: Option<String>,
}

struct SourceEntry {
    fetched: Instant,
    resolved: Result<Arc<Resolved>, Fetch>,
}

/// Why a read gave no reading.
#[derive(Clone, Debug, PartialEq)]
enum Fetch {
    Missing(String),
    Misconfigured {
        reason: &'static str,
        message: String,
    },
}

impl From<Fetch> for Outcome {
    fn from(f: Fetch) -> Self {
        match f {
            Fetch::Missing(m) => Outcome::Missing(m),
            Fetch::Misconfigured { reason, message } => Outcome::Misconfigured { reason, message },
        }
    }
}

fn misconfigured(reason: &'static str, message: String) -> Fetch {
    Fetch::Misconfigured { reason, message }
}

/// Shared by every reconcile.
pub struct Observer {
    options: ObserverOptions,
    /// For pods and plain-URL Prometheus servers (system roots, no credentials).
    http: reqwest::Client,
    pools: Mutex<HashMap<PoolKey, PoolState>>,
    servers: Mutex<HashMap<ServerKey, Arc<tokio::sync::Mutex<ServerEntry>>>>,
    sources: tokio::sync::Mutex<HashMap<String, SourceEntry>>,
    scrape_permits: Semaphore,
    prometheus_permits: Semaphore,
}

impl Default for Observer {
    fn default() -> Self {
        Self::new(ObserverOptions::default())
    }
}

/// A pod that serves: Ready, not terminating, with an address.
fn serving(pod: &Pod) -> Option<String> {
    let status = pod.status.as_ref()?;
    let ready = status
        .conditions
        .as_ref()?
        .iter()
        .any(|c| c.type_ == "Ready" && c.status == "True");
    if !ready || pod.metadata.deletion_timestamp.is_some() {
        return None;
    }
    status.pod_ip.clone()
}

fn of_pool(p: &Pod, namespace: &str, pool: &str) -> bool {
    p.namespace().as_deref() == Some(namespace)
        && p.labels().get(POOL_LABEL).map(String::as_str) == Some(pool)
}

/// The pool's serving pods from the shared pod cache, as (name, ip).
pub fn serving_pods(pods: &Store<Pod>, namespace: &str, pool: &str) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = pods
        .state()
        .iter()
        .filter(|p| of_pool(p, namespace, pool))
        .filter_map(|p| serving(p).map(|ip| (p.name_any(), ip)))
        .collect();
    v.sort();
    v
}

impl Observer {
    pub fn new(options: ObserverOptions) -> Self {
        let http = http::client(&ClientOptions {
            allow_link_local: options.allow_link_local,
            ca_pem: None,
            timeout: options.scrape_timeout.max(options.prometheus_timeout),
            keep_alive: false,
        })
        // No CA and no custom roots: only the TLS backend itself could fail, at start-up.
        .expect("the metrics HTTP client builds");
        Self {
            scrape_permits: Semaphore::new(options.scrape_permits.max(1)),
            prometheus_permits: Semaphore::new(options.prometheus_permits.max(1)),
            options,
            http,
            pools: Mutex::default(),
            servers: Mutex::default(),
            sources: tokio::sync::Mutex::default(),
        }
    }

    fn lock_pools(&self) -> std::sync::MutexGuard<'_, HashMap<PoolKey, PoolState>> {
        // A panic while holding the lock leaves plain data behind: keep using it.
        self.pools.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Reads the pool's load. `interval` is the pool's sync interval: attempts closer together
    /// than most of it are not made, whether the last one succeeded or failed. `ready_replicas` is
    /// the Deployment's: completeness is judged against it as well as against the pod cache.
    pub async fn observe(
        &self,
        client: &Client,
        pods: &Store<Pod>,
        pool: &InferencePool,
        interval: Duration,
        ready_replicas: i32,
    ) -> Outcome {
        let ns = pool.namespace().unwrap_or_default();
        let name = pool.name_any();
        let key = (ns.clone(), name.clone());
        self.prune();
        {
            let mut states = self.lock_pools();
            let s = states.entry(key.clone()).or_insert_with(|| PoolState {
                uid: pool.metadata.uid.clone(),
                baselines: BTreeMap::new(),
                last_answer: None,
                tracked_since: None,
                attempted: None,
                touched: Instant::now(),
                interval,
            });
            if s.uid != pool.metadata.uid {
                // The same name, another pool: nothing carries over.
                s.uid = pool.metadata.uid.clone();
                s.baselines.clear();
                s.last_answer = None;
                s.tracked_since = None;
                s.attempted = None;
            }
            s.touched = Instant::now();
            s.interval = interval;
            if s.attempted
                .is_some_and(|t| t.elapsed() < interval.mul_f64(0.8))
            {
                return Outcome::TooSoon;
            }
        }
        let serving = serving_pods(pods, &ns, &name);
        let expected = (serving.len() as u32).max(ready_replicas.max(0) as u32);
        if serving.is_empty() {
            return Outcome::NotServing(if ready_replicas > 0 {
                format!(
                    "the Deployment reports {ready_replicas} ready replica(s); waiting for the pod cache to show them"
                )
            } else {
                "no Ready pods to read metrics from yet".into()
            });
        }
        if let Some(s) = self.lock_pools().get_mut(&key) {
            s.attempted = Some(Instant::now());
        }
        let fetched = match pool.spec.scaling.metrics.source {
            MetricsSource::Scrape => self.scrape(pool, &serving).await,
            MetricsSource::Prometheus => {
                self.read_prometheus(client, pods, pool, &serving, interval)
                    .await
            }
        };
        let (current, scrape_interval) = match fetched {
            Ok(r) => r,
            Err(f) => return f.into(),
        };
        if current.is_empty() {
            return Outcome::Missing(format!(
                "none of the {} Ready pods reported vLLM metrics",
                serving.len()
            ));
        }
        let keep: BTreeSet<String> = pods
            .state()
            .iter()
            .filter(|p| of_pool(p, &ns, &name))
            .map(|p| p.name_any())
            .collect();
        let status_load = pool.status.as_ref().and_then(|s| s.load.as_ref());
        let saved: &[CounterBaseline] = status_load.map_or(&[], |l| l.baselines.as_slice());
        let learned = status_load.and_then(|l| l.learned_output_tokens_per_second);
        let capacity = &pool.spec.capacity;
        let output_capacity = match (capacity.output_tokens_per_second, learned) {
            (Some(c), Some(l)) => Some(c.max(l)),
            (c, l) => c.or(l),
        };
        let now = Utc::now();
        let mut states = self.lock_pools();
        let Some(state) = states.get_mut(&key) else {
            return Outcome::TooSoon;
        };
        let persisted_at = status_load
            .and_then(|l| l.observed_at.as_ref())
            .map(from_time);
        let created = pool.metadata.creation_timestamp.as_ref().map(from_time);
        let tracked_since = *state
            .tracked_since
            .get_or_insert_with(|| persisted_at.or(created).unwrap_or(now));
        let last_reading = state.last_answer.or(persisted_at).unwrap_or(tracked_since);
        let refresh = Duration::from_secs_f64(scrape_interval.unwrap_or(0.0).max(0.0));
        let fresh_for = chrono::Duration::from_std(interval.max(refresh) * 2).unwrap_or_default()
            + chrono::Duration::seconds(1);
        let d = derive(&DeriveInput {
            baselines: &state.baselines,
            saved,
            current: &current,
            keep: &keep,
            pods_expected: expected,
            tracked_since,
            last_reading,
            now,
            rate_span: chrono::Duration::from_std(interval * 5).unwrap_or_default(),
            fresh_for,
            limits: Limits::for_capacity(capacity.input_tokens_per_second, output_capacity),
        });
        state.baselines = d.baselines;
        state.last_answer = Some(now);
        drop(states);
        let mut obs = d.observation;
        obs.scrape_interval_seconds = scrape_interval;
        // Prometheus discovers a new pod a scrape or two after it is Ready: until then it is a
        // new pod (no scale-down, no Warning), not a missing one.
        if let Some(scrape) = scrape_interval {
            let grace = chrono::Duration::seconds((3.0 * scrape).max(60.0) as i64);
            obs.pods_new += recently_ready(pods, &ns, &name, now - grace)
                .iter()
                .filter(|p| !current.contains_key(*p))
                .count() as u32;
        }
        let answered = current.len() as u32;
        if d.pods_counted == 0 {
            if d.pods_warming > 0 {
                return Outcome::WarmingUp;
            }
            if d.pods_rejected > 0 {
                return Outcome::Missing(format!(
                    "{} of {answered} answering pods were kept out as missing data ({})",
                    d.pods_rejected,
                    obs.rejected.unwrap_or_default()
                ));
            }
            return Outcome::NoNewData {
                scrape_interval_seconds: scrape_interval,
            };
        }
        if let Some(what) = obs.malformed() {
            return Outcome::Missing(format!(
                "the pods reported a malformed {what} (NaN, infinite or negative)"
            ));
        }
        Outcome::Fresh(obs)
    }

    /// Forgets pools not reconciled for a few intervals (deleted pools), servers and sources no
    /// pool asked for in ten minutes.
    fn prune(&self) {
        self.lock_pools()
            .retain(|_, s| s.touched.elapsed() < s.interval * 3 + Duration::from_secs(120));
        let idle = Duration::from_secs(600);
        self.servers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|_, e| {
                e.try_lock()
                    .map_or(true, |e| e.used.is_none_or(|t| t.elapsed() < idle))
            });
        if let Ok(mut sources) = self.sources.try_lock() {
            sources.retain(|_, s| s.fetched.elapsed() < idle);
        }
    }

    async fn scrape(
        &self,
        pool: &InferencePool,
        serving: &[(String, String)],
    ) -> Result<(PoolReading, Option<f64>), Fetch> {
        let port = u16::try_from(pool.spec.engine.port).unwrap_or(8000);
        let (mut refused, mut targets) = (Vec::new(), Vec::new());
        for (pod, ip) in serving {
            let url = metrics_url(ip, port);
            match check_url(&url, self.options.allow_link_local) {
                Ok(_) => targets.push(ScrapeTarget {
                    pod: pod.clone(),
                    url,
                }),
                Err(_) => refused.push(pod.clone()),
            }
        }
        let (ok, mut failed) = split_results(
            scrape_pods(
                &self.http,
                targets,
                self.options.scrape_timeout,
                &self.scrape_permits,
            )
            .await,
        );
        // Answers arrive in any order: name the same pod each time, so that an unchanged failure
        // leaves the status message (and the object) unchanged.
        failed.sort_by(|a, b| a.0.cmp(&b.0));
        if ok.is_empty() {
            if let Some(pod) = refused.first() {
                return Err(misconfigured(
                    "AddressRefused",
                    format!("pod {pod} has a link-local address, which crossover does not scrape"),
                ));
            }
            if let Some((pod, err)) = failed.first() {
                return Err(Fetch::Missing(format!(
                    "{} of {} pods could not be scraped ({pod}: {err})",
                    failed.len(),
                    serving.len()
                )));
            }
        }
        if !failed.is_empty() || !refused.is_empty() {
            let kinds: BTreeSet<&str> = failed.iter().map(|(_, e)| e.kind()).collect();
            tracing::warn!(pool = %pool.name_any(), failed = failed.len(), refused = refused.len(), kinds = ?kinds, "some pods could not be scraped");
        }
        Ok((ok, None))
    }

    /// One set of queries per Prometheus server, selector and interval, shared by every pool that
    /// uses it; this pool takes its serving pods from the answer.
    async fn read_prometheus(
        &self,
        client: &Client,
        pods: &Store<Pod>,
        pool: &InferencePool,
        serving: &[(String, String)],
        interval: Duration,
    ) -> Result<(PoolReading, Option<f64>), Fetch> {
        let Some(prom) = pool.spec.scaling.metrics.prometheus.as_ref() else {
            return Err(misconfigured(
                "InvalidSpec",
                "spec.scaling.metrics.prometheus is not set".into(),
            ));
        };
        if prom.bearer_token_secret.is_some() {
            return Err(misconfigured(
                "TokenSecretRemoved",
                BEARER_TOKEN_SECRET_REMOVED.into(),
            ));
        }
        let (server, resolved) = match (&prom.source_ref, &prom.url) {
            (Some(r), _) => (
                format!("source:{}", r.name),
                self.source(client, &r.name).await?,
            ),
            (None, Some(url)) => {
                check_url(url, self.options.allow_link_local).map_err(|e| {
                    misconfigured(
                        "InvalidURL",
                        format!("spec.scaling.metrics.prometheus.url {e}"),
                    )
                })?;
                let client = PrometheusClient {
                    http: self.http.clone(),
                    base_url: url.clone(),
                    token: None,
                    headers: Vec::new(),
                    timeout: self.options.prometheus_timeout,
                };
                (
                    format!("url:{url}"),
                    Arc::new(Resolved {
                        client,
                        selector: None,
                    }),
                )
            }
            (None, None) => {
                return Err(misconfigured(
                    "InvalidSpec",
                    "spec.scaling.metrics.prometheus needs url or sourceRef".into(),
                ));
            }
        };
        let selector = [resolved.selector.as_deref(), prom.selector.as_deref()]
            .into_iter()
            .flatten()
            .map(|s| s.trim().trim_end_matches(','))
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>();
        let selector = (!selector.is_empty()).then(|| selector.join(","));
        let entry = {
            let mut map = self.servers.lock().unwrap_or_else(|e| e.into_inner());
            map.entry((server, selector.clone())).or_default().clone()
        };
        let ns = pool.namespace().unwrap_or_default();
        let mut entry = entry.lock().await;
        entry.used = Some(Instant::now());
        entry.namespaces.insert(ns.clone(), Instant::now());
        entry
            .namespaces
            .retain(|_, t| t.elapsed() < Duration::from_secs(600));
        let fresh = entry.last.as_ref().is_some_and(|(t, scope, _)| {
            t.elapsed() < interval.mul_f64(0.8) && scope.namespaces.contains(&ns)
        });
        if !fresh {
            let scope = Scope {
                namespaces: entry.namespaces.keys().cloned().collect(),
                selector,
            };
            let targets = targets(pods, &scope.namespaces);
            // Enough history for two samples at the estimated scrape interval, within
            // Prometheus' own five-minute lookback.
            let window = (entry.scrape_interval_seconds.unwrap_or(100.0) * 3.0).clamp(30.0, 300.0);
            let url = redact_url(&resolved.client.base_url);
            let result = resolved
                .client
                .read(&scope, &targets, window as u32, &self.prometheus_permits)
                .await
                .map(Arc::new)
                .map_err(|e| {
                    tracing::warn!(server = %url, kind = e.kind(), "Prometheus read failed");
                    Fetch::Missing(format!("Prometheus at {url} failed: {e}"))
                });
            if let Ok(r) = &result {
                entry.scrape_interval_seconds =
                    r.scrape_interval_seconds.or(entry.scrape_interval_seconds);
                if r.unattributed > 0 {
                    tracing::debug!(server = %url, series = r.unattributed, "series whose instance is no serving pod's IP were ignored");
                }
            }
            entry.last = Some((Instant::now(), scope, result));
        }
        let Some((_, _, result)) = entry.last.as_ref() else {
            return Err(Fetch::Missing("no Prometheus answer yet".into()));
        };
        let readings = result.clone()?;
        let mine: PoolReading = serving
            .iter()
            .filter_map(|(pod, _)| {
                let key = PodKey {
                    namespace: ns.clone(),
                    pod: pod.clone(),
                };
                Some((pod.clone(), readings.pods.get(&key)?.clone()))
            })
            .collect();
        if mine.is_empty() {
            return Err(Fetch::Missing(format!(
                "Prometheus at {} has no vLLM series whose instance is the IP of one of the {} Ready pods",
                redact_url(&resolved.client.base_url),
                serving.len()
            )));
        }
        Ok((mine, readings.scrape_interval_seconds))
    }

    /// A PrometheusSource with its Secret and CA, resolved at most every `SOURCE_TTL`.
    async fn source(&self, client: &Client, name: &str) -> Result<Arc<Resolved>, Fetch> {
        let mut sources = self.sources.lock().await;
        if let Some(e) = sources.get(name)
            && e.fetched.elapsed() < SOURCE_TTL
        {
            return e.resolved.clone();
        }
        let resolved = self.resolve(client, name).await.map(Arc::new);
        sources.insert(
            name.to_string(),
            SourceEntry {
                fetched: Instant::now(),
                resolved: resolved.clone(),
            },
        );
        resolved
    }

    async fn resolve(&self, client: &Client, name: &str) -> Result<Resolved, Fetch> {
        let src = Api::<PrometheusSource>::all(client.clone())
            .get_opt(name)
            .await
            .map_err(|e| {
                misconfigured(
                    "SourceUnreadable",
                    format!("cannot read PrometheusSource {name}: {}", api_error(&e)),
                )
            })?
            .ok_or_else(|| {
                misconfigured(
                    "SourceNotFound",
                    format!(
                        "PrometheusSource {name} does not exist (a cluster administrator defines it; kubectl get promsource)"
                    ),
                )
            })?;
        let spec = &src.spec;
        let url = check_url(&spec.url, self.options.allow_link_local).map_err(|e| {
            misconfigured(
                "InvalidURL",
                format!("PrometheusSource {name}: spec.url {e}"),
            )
        })?;
        let ns = &self.options.source_namespace;
        let token = match &spec.bearer_token_secret_ref {
            None => None,
            Some(r) => {
                if url.scheme() == "http" && !spec.allow_token_over_http {
                    return Err(misconfigured(
                        "TokenOverHttp",
                        format!(
                            "PrometheusSource {name} would send its bearer token over plain http ({}): use https, or an administrator sets allowTokenOverHttp",
                            redact_url(&spec.url)
                        ),
                    ));
                }
                let bytes = self
                    .secret_key(client, &r.name, &r.key)
                    .await
                    .map_err(|why| {
                        misconfigured(
                            "SecretUnreadable",
                            format!(
                                "PrometheusSource {name}: the token Secret {ns}/{} {why}",
                                r.name
                            ),
                        )
                    })?;
                let token = String::from_utf8(bytes)
                    .map(|s| s.trim().to_string())
                    .ok()
                    .filter(|t| !t.is_empty() && !t.contains(['\n', '\r']))
                    .ok_or_else(|| {
                        misconfigured(
                            "SecretUnreadable",
                            format!(
                                "PrometheusSource {name}: the token in Secret {ns}/{} is not one line of text",
                                r.name
                            ),
                        )
                    })?;
                Some(Token(token))
            }
        };
        let ca_pem = match &spec.ca {
            None => None,
            Some(ca) => {
                let (what, got) = match (&ca.config_map_key_ref, &ca.secret_key_ref) {
                    (Some(r), _) => (
                        format!("ConfigMap {ns}/{}", r.name),
                        self.config_map_key(client, &r.name, &r.key).await,
                    ),
                    (None, Some(r)) => (
                        format!("Secret {ns}/{}", r.name),
                        self.secret_key(client, &r.name, &r.key).await,
                    ),
                    (None, None) => {
                        return Err(misconfigured(
                            "CAUnreadable",
                            format!(
                                "PrometheusSource {name}: spec.ca names no ConfigMap or Secret"
                            ),
                        ));
                    }
                };
                Some(got.map_err(|why| {
                    misconfigured(
                        "CAUnreadable",
                        format!("PrometheusSource {name}: the CA bundle in {what} {why}"),
                    )
                })?)
            }
        };
        let http = http::client(&ClientOptions {
            allow_link_local: self.options.allow_link_local,
            ca_pem,
            timeout: self.options.prometheus_timeout,
            keep_alive: true,
        })
        .map_err(|e| misconfigured("CAUnreadable", format!("PrometheusSource {name}: {e}")))?;
        Ok(Resolved {
            client: PrometheusClient {
                http,
                base_url: spec.url.clone(),
                token,
                headers: spec
                    .headers
                    .iter()
                    .map(|h| (h.name.clone(), h.value.clone()))
                    .collect(),
                timeout: self.options.prometheus_timeout,
            },
            selector: spec.selector.clone(),
        })
    }

    async fn secret_key(&self, client: &Client, name: &str, key: &str) -> Result<Vec<u8>, String> {
        let secret = Api::<Secret>::namespaced(client.clone(), &self.options.source_namespace)
            .get_opt(name)
            .await
            .map_err(|e| format!("cannot be read ({})", api_error(&e)))?
            .ok_or_else(|| "does not exist".to_string())?;
        secret
            .data
            .and_then(|mut d| d.remove(key))
            .map(|b| b.0)
            .ok_or_else(|| format!("has no key {key}"))
    }

    async fn config_map_key(
        &self,
        client: &Client,
        name: &str,
        key: &str,
    ) -> Result<Vec<u8>, String> {
        let cm = Api::<ConfigMap>::namespaced(client.clone(), &self.options.source_namespace)
            .get_opt(name)
            .await
            .map_err(|e| format!("cannot be read ({})", api_error(&e)))?
            .ok_or_else(|| "does not exist".to_string())?;
        cm.data
            .and_then(|mut d| d.remove(key))
            .map(String::into_bytes)
            .ok_or_else(|| format!("has no key {key}"))
    }
}

/// An API error as a reason and code, without the server's full message.
fn api_error(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) => format!("{} {}", s.code, s.reason),
        _ => "the API server could not be reached".into(),
    }
}

/// The pool's serving pods that became Ready after `since`.
fn recently_ready(
    pods: &Store<Pod>,
    namespace: &str,
    pool: &str,
    since: DateTime<Utc>,
) -> BTreeSet<String> {
    pods.state()
        .iter()
        .filter(|p| of_pool(p, namespace, pool) && serving(p).is_some())
        .filter(|p| {
            p.status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
                .and_then(|c| c.last_transition_time.as_ref())
                .is_some_and(|t| from_time(t) > since)
        })
        .map(|p| p.name_any())
        .collect()
}

/// Every serving crossover pod in these namespaces, by IP: the only addresses a series may come
/// from to count.
fn targets(pods: &Store<Pod>, namespaces: &BTreeSet<String>) -> Targets {
    pods.state()
        .iter()
        .filter(|p| p.labels().contains_key(POOL_LABEL))
        .filter_map(|p| {
            let ns = p.namespace()?;
            if !namespaces.contains(&ns) {
                return None;
            }
            let ip = serving(p)?;
            Some((
                ip,
                PodKey {
                    namespace: ns,
                    pod: p.name_any(),
                },
            ))
        })
        .collect()
}

/// Seconds between two instants as f64, never negative.
pub fn seconds_between(from: DateTime<Utc>, to: DateTime<Utc>) -> f64 {
    ((to - from).num_milliseconds() as f64 / 1000.0).max(0.0)
}
