//! The controller's edge to vLLM: reads each pool's pods (by scraping /metrics or by one shared
//! set of Prometheus queries) and turns two successive readings into an `Observation`. The last
//! reading per pool is a cache: losing it on restart costs one interval of rates, nothing more.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::runtime::reflector::Store;
use kube::{Api, Client, ResourceExt};

use crate::api::{InferencePool, MetricsSource, POOL_LABEL};
use crate::load::Observation;
use crate::load::derive::{PoolReading, derive};
use crate::load::prometheus::{PodKey, PrometheusClient};
use crate::load::scrape::{ScrapeTarget, metrics_url, scrape_pods, split_results};

/// Pool identity: namespace and name.
pub type PoolKey = (String, String);

/// What one attempt to observe a pool gave.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// A new observation over the interval since the previous reading.
    Fresh(Observation),
    /// The previous reading is too recent for a rate; nothing new to act on.
    TooSoon,
    /// First reading (or the previous one is stale): rates need one more interval.
    WarmingUp,
    /// No data: why, for the MetricsAvailable condition. Never a reason to scale down.
    Missing(String),
    /// No pod serves yet (the pool is starting or scaled to zero): nothing to read, nothing wrong.
    NotServing(String),
}

struct Last {
    reading: PoolReading,
    taken: Instant,
}

type PromResult = Arc<BTreeMap<PoolKey, PoolReading>>;

/// A Prometheus server as pools name it: URL and bearer token.
type PromServer = (String, Option<String>);

#[derive(Default)]
struct PromEntry {
    last: Option<(Instant, Result<PromResult, String>)>,
}

/// Shared by every reconcile.
pub struct Observer {
    http: reqwest::Client,
    last: Mutex<HashMap<PoolKey, Last>>,
    prometheus: Mutex<HashMap<PromServer, Arc<tokio::sync::Mutex<PromEntry>>>>,
    pub scrape_timeout: Duration,
}

impl Default for Observer {
    fn default() -> Self {
        Self {
            http: reqwest::Client::new(),
            last: Mutex::default(),
            prometheus: Mutex::default(),
            scrape_timeout: Duration::from_secs(3),
        }
    }
}

/// A pod that serves: Ready, with an address.
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

/// The pool's serving pods from the shared pod cache, as (name, ip).
pub fn serving_pods(pods: &Store<Pod>, namespace: &str, pool: &str) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = pods
        .state()
        .iter()
        .filter(|p| {
            p.namespace().as_deref() == Some(namespace)
                && p.labels().get(POOL_LABEL).map(String::as_str) == Some(pool)
        })
        .filter_map(|p| serving(p).map(|ip| (p.name_any(), ip)))
        .collect();
    v.sort();
    v
}

impl Observer {
    /// Reads the pool's load. `interval` is the pool's sync interval: readings closer together
    /// than most of it give noisy rates and are not taken.
    pub async fn observe(
        &self,
        client: &Client,
        pods: &Store<Pod>,
        pool: &InferencePool,
        interval: Duration,
    ) -> Outcome {
        let ns = pool.namespace().unwrap_or_default();
        let key = (ns.clone(), pool.name_any());
        let min_gap = interval.mul_f64(0.8);
        if let Some(last) = self.lock_last().get(&key)
            && last.taken.elapsed() < min_gap
        {
            return Outcome::TooSoon;
        }
        let serving = serving_pods(pods, &ns, &key.1);
        if serving.is_empty() {
            self.lock_last().remove(&key);
            return Outcome::NotServing("no Ready pods to read metrics from yet".into());
        }
        let expected = serving.len() as u32;
        let current = match pool.spec.scaling.metrics.source {
            MetricsSource::Scrape => self.scrape(pool, &serving).await,
            MetricsSource::Prometheus => self.read_prometheus(client, pods, pool, interval).await,
        };
        let current = match current {
            Ok(r) => r,
            Err(why) => return Outcome::Missing(why),
        };
        if current.is_empty() {
            return Outcome::Missing(format!(
                "none of the {expected} Ready pods reported vLLM metrics"
            ));
        }
        let mut last = self.lock_last();
        let previous = last.insert(
            key,
            Last {
                reading: current.clone(),
                taken: Instant::now(),
            },
        );
        match previous {
            // A previous reading older than a few intervals would average over a gap.
            Some(prev) if prev.taken.elapsed() <= interval * 5 => {
                let observation = derive(&prev.reading, &current, expected);
                match observation.malformed() {
                    Some(what) => Outcome::Missing(format!(
                        "the pods reported a malformed {what} (NaN, infinite or negative)"
                    )),
                    None => Outcome::Fresh(observation),
                }
            }
            _ => Outcome::WarmingUp,
        }
    }

    fn lock_last(&self) -> std::sync::MutexGuard<'_, HashMap<PoolKey, Last>> {
        // A panic while holding the lock leaves plain data behind: keep using it.
        self.last.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn scrape(
        &self,
        pool: &InferencePool,
        serving: &[(String, String)],
    ) -> Result<PoolReading, String> {
        let port = u16::try_from(pool.spec.engine.port).unwrap_or(8000);
        let targets = serving
            .iter()
            .map(|(pod, ip)| ScrapeTarget {
                pod: pod.clone(),
                url: metrics_url(ip, port),
            })
            .collect();
        let (ok, mut failed) =
            split_results(scrape_pods(&self.http, targets, self.scrape_timeout).await);
        // Answers arrive in any order: name the same pod each time, so that an unchanged failure
        // leaves the status message (and the object) unchanged.
        failed.sort_by(|a, b| a.0.cmp(&b.0));
        if ok.is_empty()
            && let Some((pod, err)) = failed.first()
        {
            return Err(format!(
                "{} of {} pods could not be scraped ({pod}: {err})",
                failed.len(),
                serving.len()
            ));
        }
        if !failed.is_empty() {
            tracing::warn!(pool = %pool.name_any(), failed = failed.len(), "some pods could not be scraped");
        }
        Ok(ok)
    }

    /// One set of queries per Prometheus server and interval, shared by every pool that uses it.
    async fn read_prometheus(
        &self,
        client: &Client,
        pods: &Store<Pod>,
        pool: &InferencePool,
        interval: Duration,
    ) -> Result<PoolReading, String> {
        let Some(prom) = pool.spec.scaling.metrics.prometheus.as_ref() else {
            return Err("spec.scaling.metrics.prometheus is not set".into());
        };
        let ns = pool.namespace().unwrap_or_default();
        let token = match &prom.bearer_token_secret {
            None => None,
            Some(r) => Some(read_secret_key(client, &ns, &r.name, &r.key).await?),
        };
        let entry = {
            let mut map = self.prometheus.lock().unwrap_or_else(|e| e.into_inner());
            map.entry((prom.url.clone(), token.clone()))
                .or_default()
                .clone()
        };
        let mut entry = entry.lock().await;
        let fresh = entry
            .last
            .as_ref()
            .is_some_and(|(t, _)| t.elapsed() < interval.mul_f64(0.8));
        if !fresh {
            // Every crossover pod the cache knows, so one answer serves all pools on this server.
            let all: HashMap<PodKey, PoolKey> = pods
                .state()
                .iter()
                .filter_map(|p| {
                    let pool = p.labels().get(POOL_LABEL)?.clone();
                    let ns = p.namespace()?;
                    Some((
                        PodKey {
                            namespace: ns.clone(),
                            pod: p.name_any(),
                        },
                        (ns, pool),
                    ))
                })
                .collect();
            let client =
                PrometheusClient::new(self.http.clone(), &prom.url, token, self.scrape_timeout);
            let result = client
                .read_pools(&all)
                .await
                .map(Arc::new)
                .map_err(|e| format!("Prometheus at {} failed: {e}", prom.url));
            entry.last = Some((Instant::now(), result));
        }
        let Some((_, result)) = entry.last.as_ref() else {
            return Err("no Prometheus answer yet".into());
        };
        let readings = result.as_ref().map_err(Clone::clone)?;
        Ok(readings
            .get(&(ns, pool.name_any()))
            .cloned()
            .unwrap_or_default())
    }
}

async fn read_secret_key(
    client: &Client,
    ns: &str,
    name: &str,
    key: &str,
) -> Result<String, String> {
    let secret = Api::<Secret>::namespaced(client.clone(), ns)
        .get(name)
        .await
        .map_err(|e| format!("cannot read Secret {ns}/{name} for the Prometheus token: {e}"))?;
    let bytes = secret
        .data
        .as_ref()
        .and_then(|d| d.get(key))
        .ok_or_else(|| format!("Secret {ns}/{name} has no key {key}"))?;
    String::from_utf8(bytes.0.clone())
        .map(|s| s.trim().to_string())
        .map_err(|_| format!("Secret {ns}/{name} key {key} is not UTF-8"))
}

/// Seconds between two instants as f64, never negative.
pub fn seconds_between(from: DateTime<Utc>, to: DateTime<Utc>) -> f64 {
    ((to - from).num_milliseconds() as f64 / 1000.0).max(0.0)
}
