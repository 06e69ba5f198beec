//! IO edge for Prometheus mode: four instant queries per interval for ALL pools on one server,
//! grouped by namespace and pod, turned into the same per-pod `Reading`s scrape mode produces so
//! `derive()` is shared.
//!
//! Raw counter values are queried, not `rate()`: `derive()` then computes rates over exactly the
//! controller's interval, as in scrape mode, instead of over a PromQL window. Each pod is stamped
//! with its sample's own time (`timestamp()`), not the query time, so a Prometheus scrape interval
//! different from ours does not distort rates. The targets must carry `namespace` and `pod` labels
//! (PodMonitor, or kubernetes_sd relabelling, adds them).

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Deserialize;
use thiserror::Error;

use super::derive::{PodReading, PoolReading};
use super::parse::{Sample, parse_float, reading_from_samples};

/// Gauges and counters summed over engine, model_name and finished_reason, per pod and series.
/// Keeping `__name__` in the grouping folds many series into one query; the regex is anchored by
/// PromQL, so the `*_created` series never match.
pub const QUERY_SUMS: &str = concat!(
    r#"sum by (namespace, pod, __name__) ({__name__=~"vllm:("#,
    "num_requests_running|num_requests_waiting|prompt_tokens_total|generation_tokens_total|",
    "request_success_total|request_generation_tokens_sum|request_generation_tokens_count|",
    "time_to_first_token_seconds_sum|time_to_first_token_seconds_count|",
    "inter_token_latency_seconds_sum|inter_token_latency_seconds_count|",
    "time_per_output_token_seconds_sum|time_per_output_token_seconds_count",
    r#")"})"#
);
/// KV-cache use is a share of each engine's cache: the max, as in scrape mode. Both names for
/// servers before and after the rename.
pub const QUERY_MAXES: &str = r#"max by (namespace, pod, __name__) ({__name__=~"vllm:(kv_cache_usage_perc|gpu_cache_usage_perc)"})"#;
/// Latency histogram buckets summed over engines, per pod and bound.
pub const QUERY_BUCKETS: &str = r#"sum by (namespace, pod, __name__, le) ({__name__=~"vllm:(time_to_first_token_seconds|inter_token_latency_seconds|time_per_output_token_seconds)_bucket"})"#;
/// When Prometheus last scraped each pod, in seconds since the epoch.
pub const QUERY_TIMES: &str =
    r#"max by (namespace, pod) (timestamp(vllm:generation_tokens_total))"#;

/// A pod as Prometheus labels it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PodKey {
    pub namespace: String,
    pub pod: String,
}

/// Why a Prometheus query failed.
#[derive(Debug, Error)]
pub enum PrometheusError {
    #[error("request failed: {0}")]
    Http(#[source] reqwest::Error),
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    #[error("HTTP status {status}: {message}")]
    Status { status: u16, message: String },
    #[error("query failed ({error_type}): {error}")]
    Api { error_type: String, error: String },
    #[error("unexpected response: {0}")]
    Decode(String),
}

impl PrometheusError {
    /// A low-cardinality label for metrics and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            PrometheusError::Http(_) => "http",
            PrometheusError::Timeout(_) => "timeout",
            PrometheusError::Status { .. } => "status",
            PrometheusError::Api { .. } => "api",
            PrometheusError::Decode(_) => "decode",
        }
    }
}

/// One element of an instant vector.
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct VectorSample {
    pub metric: HashMap<String, String>,
    /// `[unix seconds, "value"]`; the value is a string because it may be `NaN` or `+Inf`.
    pub value: (f64, String),
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ApiResponse {
    status: String,
    data: Option<ApiData>,
    error_type: Option<String>,
    error: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ApiData {
    result_type: String,
    result: serde_json::Value,
}

/// A Prometheus server. Pools that name the same URL and token share one client, so the number of
/// queries per interval does not grow with the number of pools.
#[derive(Clone, Debug)]
pub struct PrometheusClient {
    http: reqwest::Client,
    base_url: String,
    bearer_token: Option<String>,
    timeout: Duration,
}

impl PrometheusClient {
    pub fn new(
        http: reqwest::Client,
        base_url: &str,
        bearer_token: Option<String>,
        timeout: Duration,
    ) -> Self {
        Self {
            http,
            base_url: base_url.trim_end_matches('/').to_string(),
            bearer_token,
            timeout,
        }
    }

    /// One instant query at `at`.
    pub async fn query(
        &self,
        promql: &str,
        at: DateTime<Utc>,
    ) -> Result<Vec<VectorSample>, PrometheusError> {
        let time = format!("{:.3}", at.timestamp_millis() as f64 / 1000.0);
        let mut req = self
            .http
            .get(format!("{}/api/v1/query", self.base_url))
            .query(&[("query", promql), ("time", time.as_str())]);
        if let Some(token) = &self.bearer_token {
            req = req.bearer_auth(token);
        }
        let fetch = async {
            let resp = req.send().await.map_err(PrometheusError::Http)?;
            let status = resp.status().as_u16();
            let body = resp.text().await.map_err(PrometheusError::Http)?;
            Ok::<_, PrometheusError>((status, body))
        };
        let (status, body) = tokio::time::timeout(self.timeout, fetch)
            .await
            .map_err(|_| PrometheusError::Timeout(self.timeout))??;
        decode_vector(status, &body)
    }

    /// Reads every pod in `pods` (namespace/pod → pool key) in four queries, and groups them by
    /// pool. Pods Prometheus does not know are absent from their pool's reading, never zeros;
    /// series of pods not in `pods` (other vLLM servers) are ignored.
    pub async fn read_pools<K: Ord + Clone>(
        &self,
        pods: &HashMap<PodKey, K>,
    ) -> Result<BTreeMap<K, PoolReading>, PrometheusError> {
        // One evaluation time for all four so they describe the same moment.
        let at = Utc::now();
        let (sums, maxes, buckets, times) = futures::try_join!(
            self.query(QUERY_SUMS, at),
            self.query(QUERY_MAXES, at),
            self.query(QUERY_BUCKETS, at),
            self.query(QUERY_TIMES, at),
        )?;
        Ok(group_by_pool(
            [sums, maxes, buckets].concat(),
            &times,
            at,
            pods,
        ))
    }
}

/// Decodes an instant-query response body (Prometheus answers errors as JSON too).
pub fn decode_vector(status: u16, body: &str) -> Result<Vec<VectorSample>, PrometheusError> {
    let resp: ApiResponse = match serde_json::from_str(body) {
        Ok(r) => r,
        Err(e) if (200..300).contains(&status) => {
            return Err(PrometheusError::Decode(e.to_string()));
        }
        Err(_) => {
            return Err(PrometheusError::Status {
                status,
                message: body.chars().take(200).collect(),
            });
        }
    };
    if resp.status != "success" {
        return Err(PrometheusError::Api {
            error_type: resp.error_type.unwrap_or_default(),
            error: resp.error.unwrap_or_default(),
        });
    }
    let data = resp
        .data
        .ok_or_else(|| PrometheusError::Decode("no data".into()))?;
    if data.result_type != "vector" {
        return Err(PrometheusError::Decode(format!(
            "result type {} instead of vector",
            data.result_type
        )));
    }
    serde_json::from_value(data.result).map_err(|e| PrometheusError::Decode(e.to_string()))
}

/// Pure: turns the query results into per-pool readings. `times` holds each pod's last sample
/// time; a pod without one is stamped with the query time.
pub fn group_by_pool<K: Ord + Clone>(
    samples: Vec<VectorSample>,
    times: &[VectorSample],
    query_time: DateTime<Utc>,
    pods: &HashMap<PodKey, K>,
) -> BTreeMap<K, PoolReading> {
    let mut by_pod: BTreeMap<PodKey, Vec<Sample>> = BTreeMap::new();
    for s in samples {
        let (Some(key), Some(name), Some(value)) = (
            pod_key(&s.metric),
            s.metric.get("__name__"),
            parse_float(&s.value.1),
        ) else {
            continue;
        };
        if !pods.contains_key(&key) {
            continue;
        }
        let labels = s
            .metric
            .get("le")
            .map(|le| vec![("le".to_string(), le.clone())])
            .unwrap_or_default();
        by_pod.entry(key).or_default().push(Sample {
            name: name.clone(),
            labels,
            value,
        });
    }
    let sample_times: HashMap<PodKey, DateTime<Utc>> = times
        .iter()
        .filter_map(|s| {
            let seconds = parse_float(&s.value.1)?;
            let at = DateTime::from_timestamp_millis((seconds * 1000.0).round() as i64)?;
            Some((pod_key(&s.metric)?, at))
        })
        .collect();

    let mut out: BTreeMap<K, PoolReading> = BTreeMap::new();
    for (key, samples) in by_pod {
        let Some(pool) = pods.get(&key) else {
            continue;
        };
        let at = sample_times.get(&key).copied().unwrap_or(query_time);
        out.entry(pool.clone()).or_default().insert(
            key.pod,
            PodReading {
                reading: reading_from_samples(&samples),
                at,
            },
        );
    }
    out
}

fn pod_key(metric: &HashMap<String, String>) -> Option<PodKey> {
    Some(PodKey {
        namespace: metric.get("namespace")?.clone(),
        pod: metric.get("pod")?.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::parse::parse_reading;

    fn pods() -> HashMap<PodKey, &'static str> {
        let key = |pod: &str| PodKey {
            namespace: "ml".into(),
            pod: pod.into(),
        };
        HashMap::from([(key("llama-0"), "llama"), (key("llama-1"), "llama")])
    }

    /// What the four queries return when Prometheus scraped the fixture in
    /// `testdata/v1-two-engines.txt` from pod ml/llama-0 (sums and maxes taken by hand), plus a
    /// pod of another namespace that no pool owns.
    fn responses() -> (Vec<VectorSample>, Vec<VectorSample>) {
        let body = include_str!("testdata/prometheus-v1-two-engines.json");
        let all = decode_vector(200, body).unwrap();
        let (times, samples) = all
            .into_iter()
            .partition(|s| !s.metric.contains_key("__name__"));
        (samples, times)
    }

    #[test]
    fn prometheus_reading_matches_scrape_reading() {
        let (samples, times) = responses();
        let t0 = DateTime::from_timestamp(1_777_000_030, 0).unwrap();
        let pools = group_by_pool(samples, &times, t0, &pods());
        assert_eq!(pools.len(), 1);
        let pool = &pools["llama"];
        assert_eq!(pool.len(), 1, "other namespace ignored, llama-1 absent");
        let got = &pool["llama-0"];
        assert_eq!(
            got.at,
            DateTime::from_timestamp(1_777_000_012, 500_000_000).unwrap()
        );

        let mut want = parse_reading(include_str!("testdata/v1-two-engines.txt")).unwrap();
        // Only _sum and _count of request_generation_tokens are queried: derive needs no more.
        if let Some(h) = want.request_generation_tokens.as_mut() {
            h.buckets.clear();
        }
        assert_eq!(got.reading, want);
    }

    #[test]
    fn api_errors_are_typed() {
        let e = decode_vector(
            400,
            r#"{"status":"error","errorType":"bad_data","error":"parse error"}"#,
        )
        .unwrap_err();
        assert_eq!(e.kind(), "api");
        assert_eq!(
            decode_vector(502, "<html>bad gateway</html>")
                .unwrap_err()
                .kind(),
            "status"
        );
        assert_eq!(decode_vector(200, "{").unwrap_err().kind(), "decode");
        let matrix = r#"{"status":"success","data":{"resultType":"matrix","result":[]}}"#;
        assert_eq!(decode_vector(200, matrix).unwrap_err().kind(), "decode");
    }
}
