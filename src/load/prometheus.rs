//! IO edge for Prometheus mode: two queries per server and interval, shared by every pool that
//! reads the same server with the same selector, scoped to the namespaces that have such pools,
//! turned into the same per-pod `Reading`s scrape mode produces so `derive()` is shared.
//!
//! - Raw series, not sums: resets are judged per series and copies of a series from two jobs are
//!   one series (`parse::ReadingBuilder` keeps the highest), which a `sum by` in PromQL would hide.
//! - Values and their own sample times come from one range-vector query (`{...}[W]` answered as a
//!   matrix of raw samples), so a value is never paired with another scrape's time, and the gaps
//!   between samples give Prometheus' scrape interval. Histogram buckets come from an instant
//!   query: quantiles of bucket deltas do not depend on time.
//! - Tenancy: a series counts for a pod only when its `instance` is that pod's IP (any port), and
//!   its `namespace` and `pod` labels, when present, agree. A target scraped with
//!   `honor_labels: true` can set every label, `instance` included, so Prometheus mode is only as
//!   trustworthy as the scrape config: use `honor_labels: false` (Prometheus Operator:
//!   `overrideHonorLabels`), or scrape mode, for pools of tenants who do not trust each other.
//!   The series must carry a `namespace` label (PodMonitor, ServiceMonitor and the usual
//!   kubernetes_sd relabelling add it).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use thiserror::Error;
use tokio::sync::Semaphore;

use super::derive::PodReading;
use futures::StreamExt;

use super::http::{PROMETHEUS_BODY_LIMIT_BYTES, RequestError};
use super::parse::{ParseError, ReadingBuilder, is_used_family, parse_float};

/// Counters and gauges the policy reads, plus the process start time that confirms restarts.
const VALUE_FAMILIES: &str = concat!(
    "vllm:(num_requests_running|num_requests_waiting|kv_cache_usage_perc|gpu_cache_usage_perc|",
    "prompt_tokens_total|generation_tokens_total|request_success_total|",
    "request_generation_tokens_sum|request_generation_tokens_count|",
    "time_to_first_token_seconds_sum|time_to_first_token_seconds_count)|process_start_time_seconds"
);
const BUCKETS: &str = "vllm:time_to_first_token_seconds_bucket";
/// Series kept from one answer: some 50 per vLLM engine, so about a thousand pods.
pub const MAX_SERIES: usize = 50_000;

/// What one set of queries covers.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Scope {
    /// Namespaces with pools on this server.
    pub namespaces: BTreeSet<String>,
    /// Extra label matchers (`check_selector` accepted them), from the pool or the source.
    pub selector: Option<String>,
}

impl Scope {
    fn matchers(&self) -> String {
        let ns: Vec<&str> = self.namespaces.iter().map(String::as_str).collect();
        let mut m = format!(",namespace=~\"{}\"", ns.join("|"));
        if let Some(s) = self
            .selector
            .as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
        {
            m.push(',');
            m.push_str(s.trim_end_matches(','));
        }
        m
    }
}

/// The counters and gauges, as raw samples over the last `window_seconds`.
pub fn values_query(scope: &Scope, window_seconds: u32) -> String {
    format!(
        "{{__name__=~\"{VALUE_FAMILIES}\"{}}}[{window_seconds}s]",
        scope.matchers()
    )
}

/// The TTFT buckets, latest values.
pub fn buckets_query(scope: &Scope) -> String {
    format!("{{__name__=\"{BUCKETS}\"{}}}", scope.matchers())
}

/// Accepts PromQL label matchers such as `job="vllm",cluster=~"east|west"`, nothing else, so a
/// selector can only narrow the queries.
pub fn check_selector(s: &str) -> Result<(), &'static str> {
    let mut rest = s.trim();
    if rest.is_empty() {
        return Ok(());
    }
    loop {
        let name_len = rest
            .char_indices()
            .find(|&(i, c)| !(c.is_ascii_alphabetic() || c == '_' || (i > 0 && c.is_ascii_digit())))
            .map_or(rest.len(), |(i, _)| i);
        if name_len == 0 {
            return Err("expected a label name");
        }
        rest = rest[name_len..].trim_start();
        let op = ["=~", "!~", "!=", "="]
            .into_iter()
            .find(|op| rest.starts_with(op))
            .ok_or("expected =, !=, =~ or !~ after the label name")?;
        rest = rest[op.len()..].trim_start();
        rest = rest
            .strip_prefix('"')
            .ok_or("expected a double-quoted value")?;
        let mut escaped = false;
        let end = rest
            .char_indices()
            .find(|&(_, c)| {
                let stop = c == '"' && !escaped;
                escaped = c == '\\' && !escaped;
                stop
            })
            .map(|(i, _)| i)
            .ok_or("unterminated value")?;
        rest = rest[end + 1..].trim_start();
        if rest.is_empty() {
            return Ok(());
        }
        rest = rest
            .strip_prefix(',')
            .ok_or("expected ',' between matchers")?
            .trim_start();
        if rest.is_empty() {
            return Ok(());
        }
    }
}

/// A pod as the operator knows it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PodKey {
    pub namespace: String,
    pub pod: String,
}

/// The serving pods a series may be attributed to, by IP.
pub type Targets = HashMap<String, PodKey>;

/// Decides, from a series' labels, which pod (if any) it counts for.
type Attribute = dyn Fn(&HashMap<String, String>) -> Option<PodKey> + Send + Sync;

/// A bearer token; never printed.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Token(pub String);

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(redacted)")
    }
}

/// Why a Prometheus read failed: kinds and numbers only (the server may be anyone's).
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum PrometheusError {
    #[error("{0}")]
    Request(RequestError),
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    #[error("HTTP status {0}")]
    Status(u16),
    #[error("the query failed ({0})")]
    Api(&'static str),
    #[error("unexpected response ({0})")]
    Decode(&'static str),
    #[error("the response is larger than {0} bytes")]
    TooLarge(u64),
    #[error("more than {MAX_SERIES} vLLM series")]
    TooManySeries,
    #[error("a series is malformed: {0}")]
    Series(ParseError),
}

impl PrometheusError {
    /// A low-cardinality label for metrics and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            PrometheusError::Request(e) => e.kind(),
            PrometheusError::Timeout(_) => "timeout",
            PrometheusError::Status(_) => "status",
            PrometheusError::Api(_) => "api",
            PrometheusError::Decode(_) => "decode",
            PrometheusError::TooLarge(_) => "too_large",
            PrometheusError::TooManySeries => "too_many_series",
            PrometheusError::Series(e) => e.kind(),
        }
    }
}

/// Prometheus' own error types; anything else is reported as "other", never echoed.
fn error_type(t: &str) -> &'static str {
    match t {
        "timeout" => "timeout",
        "canceled" => "canceled",
        "execution" => "execution",
        "bad_data" => "bad_data",
        "internal" => "internal",
        "unavailable" => "unavailable",
        "not_found" => "not_found",
        _ => "other",
    }
}

/// What one server says about the pods in scope.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct ServerReading {
    /// Each pod's reading, stamped with its latest sample's own time.
    pub pods: BTreeMap<PodKey, PodReading>,
    /// The median gap between successive samples of a series: the scrape interval.
    pub scrape_interval_seconds: Option<f64>,
    /// Series whose `instance` is no serving pod's IP, or whose labels disagree with it.
    pub unattributed: usize,
}

/// A Prometheus server (or a compatible API) with its credentials.
#[derive(Clone, Debug)]
pub struct PrometheusClient {
    pub http: reqwest::Client,
    pub base_url: String,
    pub token: Option<Token>,
    pub headers: Vec<(String, String)>,
    pub timeout: Duration,
}

impl PrometheusClient {
    /// One query; the body is capped, decoded on a blocking thread and filtered as it is decoded.
    async fn query(
        &self,
        promql: &str,
        keep: Arc<Attribute>,
        permits: &Semaphore,
    ) -> Result<Decoded, PrometheusError> {
        let url = format!("{}/api/v1/query", self.base_url.trim_end_matches('/'));
        // No `time`: Prometheus evaluates at its own now, so a skewed operator clock cannot
        // push the query outside the samples.
        let mut req = self.http.get(url).query(&[("query", promql)]);
        if let Some(t) = &self.token {
            req = req.bearer_auth(&t.0);
        }
        for (k, v) in &self.headers {
            req = req.header(k.as_str(), v.as_str());
        }
        tokio::time::timeout(self.timeout, async {
            let _permit = permits.acquire().await;
            let resp = req
                .send()
                .await
                .map_err(|e| PrometheusError::Request(e.into()))?;
            let status = resp.status().as_u16();
            if resp
                .content_length()
                .is_some_and(|n| n > PROMETHEUS_BODY_LIMIT_BYTES)
            {
                return Err(PrometheusError::TooLarge(PROMETHEUS_BODY_LIMIT_BYTES));
            }
            // The body is decoded on a blocking thread as it arrives, a few chunks at a time:
            // memory holds the kept series, never the body.
            let (tx, rx) = tokio::sync::mpsc::channel::<Vec<u8>>(8);
            let decoder = tokio::task::spawn_blocking(move || {
                decode(
                    status,
                    std::io::BufReader::new(Chunks::new(rx)),
                    keep.as_ref(),
                )
            });
            let mut body = resp.bytes_stream();
            let mut read = 0u64;
            let mut failed = None;
            while let Some(chunk) = body.next().await {
                let chunk = match chunk {
                    Ok(c) => c,
                    Err(e) => {
                        failed = Some(PrometheusError::Request(e.into()));
                        break;
                    }
                };
                read += chunk.len() as u64;
                if read > PROMETHEUS_BODY_LIMIT_BYTES {
                    failed = Some(PrometheusError::TooLarge(PROMETHEUS_BODY_LIMIT_BYTES));
                    break;
                }
                // The decoder gave up (an error, or too many series): its answer says why.
                if tx.send(chunk.to_vec()).await.is_err() {
                    break;
                }
            }
            // The decoder sees the end of the body (or of what was read) and finishes.
            drop(tx);
            let decoded = decoder
                .await
                .map_err(|_| PrometheusError::Decode("decoder panicked"))?;
            match failed {
                Some(e) => Err(e),
                None => decoded,
            }
        })
        .await
        .map_err(|_| PrometheusError::Timeout(self.timeout))?
    }

    /// Reads every serving pod in `targets` that falls in `scope`, in two queries.
    pub async fn read(
        &self,
        scope: &Scope,
        targets: &Targets,
        window_seconds: u32,
        permits: &Semaphore,
    ) -> Result<ServerReading, PrometheusError> {
        if scope.namespaces.is_empty() {
            return Ok(ServerReading::default());
        }
        let targets = Arc::new(targets.clone());
        let unattributed = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let keep = {
            let (targets, unattributed) = (targets.clone(), unattributed.clone());
            Arc::new(move |m: &HashMap<String, String>| {
                let key = attribute(m, &targets);
                if key.is_none() && m.get("__name__").is_some_and(|n| used_name(n)) {
                    unattributed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                key
            })
        };
        let (values_q, buckets_q) = (values_query(scope, window_seconds), buckets_query(scope));
        let (values, buckets) = futures::try_join!(
            self.query(&values_q, keep.clone(), permits),
            self.query(&buckets_q, keep, permits),
        )?;
        let mut reading = assemble(values, buckets)?;
        reading.unattributed = unattributed.load(std::sync::atomic::Ordering::Relaxed);
        Ok(reading)
    }
}

fn used_name(n: &str) -> bool {
    is_used_family(n) || n == BUCKETS
}

/// The pod a series belongs to: its `instance` host is the pod's IP, and its `namespace` and
/// `pod` labels, when present, are the pod's.
pub fn attribute(m: &HashMap<String, String>, targets: &Targets) -> Option<PodKey> {
    if !m.get("__name__").is_some_and(|n| used_name(n)) {
        return None;
    }
    let instance = m.get("instance")?;
    let host = match instance.rsplit_once(':') {
        // `[fd00::7]:8000`, `10.0.0.7:8000`
        Some((h, port)) if port.chars().all(|c| c.is_ascii_digit()) && !h.ends_with(':') => h,
        _ => instance.as_str(),
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let key = targets.get(host)?;
    let agrees = |label: &str, want: &str| m.get(label).is_none_or(|v| v == want);
    (agrees("namespace", &key.namespace) && agrees("pod", &key.pod)).then(|| key.clone())
}

/// One kept series: its pod, metric name, labels and samples (time, value), oldest first.
struct Kept {
    pod: PodKey,
    name: String,
    labels: Vec<(String, String)>,
    samples: Vec<(f64, f64)>,
}

struct Decoded {
    series: Vec<Kept>,
}

/// A body arriving in chunks from the async side, read by the blocking decoder.
struct Chunks {
    rx: tokio::sync::mpsc::Receiver<Vec<u8>>,
    cur: Vec<u8>,
    pos: usize,
}

impl Chunks {
    fn new(rx: tokio::sync::mpsc::Receiver<Vec<u8>>) -> Self {
        Self {
            rx,
            cur: Vec::new(),
            pos: 0,
        }
    }
}

impl std::io::Read for Chunks {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.pos >= self.cur.len() {
            match self.rx.blocking_recv() {
                Some(next) => {
                    self.cur = next;
                    self.pos = 0;
                }
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.cur.len() - self.pos);
        buf[..n].copy_from_slice(&self.cur[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

#[derive(Deserialize)]
struct Elem {
    metric: HashMap<String, String>,
    #[serde(default)]
    value: Option<(f64, String)>,
    #[serde(default)]
    values: Vec<(f64, String)>,
}

/// Decodes an instant-query answer (vector or matrix), keeping only the series `keep` attributes
/// to a pod: the rest is dropped element by element as it is read.
fn decode(
    status: u16,
    body: impl std::io::Read,
    keep: &Attribute,
) -> Result<Decoded, PrometheusError> {
    let mut series = Vec::new();
    let mut overflow = false;
    let mut sink = |e: Elem| {
        let Some(pod) = keep(&e.metric) else {
            return true;
        };
        if series.len() >= MAX_SERIES {
            overflow = true;
            return false;
        }
        let mut raw = e.values;
        raw.extend(e.value);
        let samples: Vec<(f64, f64)> = raw
            .into_iter()
            .filter_map(|(t, v)| Some((t, parse_float(&v)?)))
            .collect();
        let mut metric = e.metric;
        let name = metric.remove("__name__").unwrap_or_default();
        series.push(Kept {
            pod,
            name,
            labels: metric.into_iter().collect(),
            samples,
        });
        true
    };
    let mut de = serde_json::Deserializer::from_reader(body);
    let head = ResponseSeed { sink: &mut sink }.deserialize(&mut de);
    if overflow {
        return Err(PrometheusError::TooManySeries);
    }
    let head = match head {
        Ok(h) => h,
        Err(_) if (200..300).contains(&status) => {
            return Err(PrometheusError::Decode("not a Prometheus API response"));
        }
        Err(_) => return Err(PrometheusError::Status(status)),
    };
    if head.status.as_deref() != Some("success") {
        return Err(PrometheusError::Api(error_type(
            head.error_type.as_deref().unwrap_or(""),
        )));
    }
    match head.result_type.as_deref() {
        Some("vector" | "matrix") => Ok(Decoded { series }),
        _ => Err(PrometheusError::Decode("neither a vector nor a matrix")),
    }
}

/// The small fields of an answer; `error` is skipped unread (it could be anything).
#[derive(Default)]
struct Head {
    status: Option<String>,
    error_type: Option<String>,
    result_type: Option<String>,
}

struct ResponseSeed<'s, F> {
    sink: &'s mut F,
}

impl<'de, F: FnMut(Elem) -> bool> DeserializeSeed<'de> for ResponseSeed<'_, F> {
    type Value = Head;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Head, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de, F: FnMut(Elem) -> bool> Visitor<'de> for ResponseSeed<'_, F> {
    type Value = Head;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a Prometheus API response")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Head, A::Error> {
        let mut head = Head::default();
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "status" => head.status = Some(map.next_value()?),
                "errorType" => head.error_type = Some(map.next_value()?),
                "data" => {
                    head.result_type = map.next_value_seed(DataSeed {
                        sink: &mut *self.sink,
                    })?
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(head)
    }
}

struct DataSeed<'s, F> {
    sink: &'s mut F,
}

impl<'de, F: FnMut(Elem) -> bool> DeserializeSeed<'de> for DataSeed<'_, F> {
    type Value = Option<String>;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Option<String>, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de, F: FnMut(Elem) -> bool> Visitor<'de> for DataSeed<'_, F> {
    type Value = Option<String>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("query data")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Option<String>, A::Error> {
        let mut result_type = None;
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "resultType" => result_type = Some(map.next_value()?),
                "result" => map.next_value_seed(ResultSeed {
                    sink: &mut *self.sink,
                })?,
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(result_type)
    }
}

struct ResultSeed<'s, F> {
    sink: &'s mut F,
}

impl<'de, F: FnMut(Elem) -> bool> DeserializeSeed<'de> for ResultSeed<'_, F> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de, F: FnMut(Elem) -> bool> Visitor<'de> for ResultSeed<'_, F> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a list of series")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while let Some(e) = seq.next_element::<Elem>()? {
            if !(self.sink)(e) {
                return Err(de::Error::custom("too many series"));
            }
        }
        Ok(())
    }
}

/// Builds each pod's reading from the kept series: the latest sample of each value series, the
/// buckets' latest values, the pod stamped with its newest value sample.
fn assemble(values: Decoded, buckets: Decoded) -> Result<ServerReading, PrometheusError> {
    let mut builders: BTreeMap<PodKey, (ReadingBuilder, Option<f64>)> = BTreeMap::new();
    let mut gaps: Vec<f64> = Vec::new();
    for (s, timed) in values
        .series
        .into_iter()
        .map(|s| (s, true))
        .chain(buckets.series.into_iter().map(|s| (s, false)))
    {
        let Some(&(t, v)) = s.samples.iter().max_by(|a, b| a.0.total_cmp(&b.0)) else {
            continue;
        };
        if timed && s.name == "vllm:generation_tokens_total" && gaps.len() < 4096 {
            gaps.extend(
                s.samples
                    .windows(2)
                    .map(|w| w[1].0 - w[0].0)
                    .filter(|g| *g > 0.0),
            );
        }
        let (b, at) = builders.entry(s.pod).or_default();
        b.add(
            &s.name,
            s.labels.iter().map(|(k, v)| (k.as_str(), v.as_str())),
            v,
        )
        .map_err(PrometheusError::Series)?;
        if timed {
            *at = Some(at.map_or(t, |a: f64| a.max(t)));
        }
    }
    gaps.sort_by(f64::total_cmp);
    let scrape_interval_seconds = gaps
        .get(gaps.len() / 2)
        .map(|g| (g * 1000.0).round() / 1000.0);
    let pods = builders
        .into_iter()
        .filter_map(|(key, (b, at))| {
            let at = DateTime::<Utc>::from_timestamp_millis((at? * 1000.0).round() as i64)?;
            Some((
                key,
                PodReading {
                    reading: b.finish(),
                    at,
                },
            ))
        })
        .collect();
    Ok(ServerReading {
        pods,
        scrape_interval_seconds,
        unattributed: 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn targets() -> Targets {
        let key = |pod: &str| PodKey {
            namespace: "ml".into(),
            pod: pod.into(),
        };
        HashMap::from([
            ("10.0.0.7".to_string(), key("llama-0")),
            ("10.0.0.8".to_string(), key("llama-1")),
        ])
    }

    fn keep() -> impl Fn(&HashMap<String, String>) -> Option<PodKey> + Send + Sync {
        let t = targets();
        move |m| attribute(m, &t)
    }

    fn series(labels: &str, samples: &str) -> String {
        format!(r#"{{"metric":{{{labels}}},"values":[{samples}]}}"#)
    }

    fn matrix(series: &[String]) -> String {
        format!(
            r#"{{"status":"success","data":{{"resultType":"matrix","result":[{}]}}}}"#,
            series.join(",")
        )
    }

    const GEN: &str = r#""__name__":"vllm:generation_tokens_total","engine":"0""#;

    #[test]
    fn values_come_with_their_own_sample_times_and_the_scrape_interval() {
        let body = matrix(&[
            series(
                &format!(
                    r#"{GEN},"instance":"10.0.0.7:8000","namespace":"ml","pod":"llama-0","job":"a""#
                ),
                r#"[100,"10"],[130,"40"],[160,"70"]"#,
            ),
            // The same pod scraped by a second job: one series, counted once.
            series(
                &format!(
                    r#"{GEN},"instance":"10.0.0.7:8000","namespace":"ml","pod":"llama-0","job":"b""#
                ),
                r#"[110,"20"],[140,"50"],[170,"80"]"#,
            ),
        ]);
        let values = decode(200, body.as_bytes(), &keep()).unwrap();
        let r = assemble(values, Decoded { series: vec![] }).unwrap();
        let pod = &r.pods[&PodKey {
            namespace: "ml".into(),
            pod: "llama-0".into(),
        }];
        assert_eq!(pod.reading.generation_tokens_total(), Some(80.0));
        assert_eq!(pod.at, DateTime::from_timestamp(170, 0).unwrap());
        assert_eq!(r.scrape_interval_seconds, Some(30.0));
    }

    #[test]
    fn a_series_from_another_tenants_pod_is_not_attributed() {
        // Exported by a pod at 10.0.0.99 (not llama-0) with llama-0's namespace and pod labels,
        // as honor_labels lets a target do: its instance gives it away.
        let body = matrix(&[
            series(
                &format!(r#"{GEN},"instance":"10.0.0.99:8000","namespace":"ml","pod":"llama-0""#),
                r#"[100,"1e9"]"#,
            ),
            // At llama-1's IP but claiming to be llama-0: labels disagree, dropped too.
            series(
                &format!(r#"{GEN},"instance":"10.0.0.8:8000","namespace":"ml","pod":"llama-0""#),
                r#"[100,"1e9"]"#,
            ),
        ]);
        let values = decode(200, body.as_bytes(), &keep()).unwrap();
        assert!(values.series.is_empty());
    }

    #[test]
    fn errors_are_kinds_never_the_servers_words() {
        let e = decode(
            400,
            &br#"{"status":"error","errorType":"bad_data","error":"secret=hunter2"}"#[..],
            &keep(),
        )
        .err()
        .unwrap();
        assert_eq!(e, PrometheusError::Api("bad_data"));
        assert!(!e.to_string().contains("hunter2"));
        let e = decode(
            400,
            &br#"{"status":"error","errorType":"<script>","error":"x"}"#[..],
            &keep(),
        )
        .err()
        .unwrap();
        assert_eq!(e, PrometheusError::Api("other"));
        assert_eq!(
            decode(502, &b"<html>bad gateway</html>"[..], &keep()).err(),
            Some(PrometheusError::Status(502))
        );
        assert_eq!(
            decode(200, &b"{"[..], &keep()).err().unwrap().kind(),
            "decode"
        );
        let scalar = br#"{"status":"success","data":{"resultType":"scalar","result":[1,"1"]}}"#;
        assert_eq!(
            decode(200, &scalar[..], &keep()).err().unwrap().kind(),
            "decode"
        );
    }

    #[test]
    fn too_many_series_is_refused_not_kept() {
        let one = series(
            &format!(r#"{GEN},"instance":"10.0.0.7:8000","model_name":"m{{}}""#),
            r#"[1,"1"]"#,
        );
        let many: Vec<String> = (0..MAX_SERIES + 1)
            .map(|i| one.replace("m{}", &format!("m{i}")))
            .collect();
        let body = matrix(&many);
        assert_eq!(
            decode(200, body.as_bytes(), &keep()).err(),
            Some(PrometheusError::TooManySeries)
        );
    }

    #[test]
    fn queries_are_scoped_and_selectors_checked() {
        let scope = Scope {
            namespaces: BTreeSet::from(["a".to_string(), "b".to_string()]),
            selector: Some(r#"job="vllm",cluster=~"east|west""#.into()),
        };
        let q = values_query(&scope, 90);
        assert!(
            q.contains(r#"namespace=~"a|b",job="vllm",cluster=~"east|west"}[90s]"#),
            "{q}"
        );
        assert!(
            buckets_query(&scope)
                .starts_with(r#"{__name__="vllm:time_to_first_token_seconds_bucket""#)
        );
        for ok in ["", r#"job="vllm""#, r#"a!="x\"y", b=~"c|d","#] {
            assert_eq!(check_selector(ok), Ok(()), "{ok}");
        }
        for bad in [
            r#"job="vllm"} or vector(1"#,
            r#"job=vllm"#,
            r#"="x""#,
            r#"job="unterminated"#,
            r#"a="b" c="d""#,
        ] {
            assert!(check_selector(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn tokens_are_never_printed() {
        let t = Token("s3cret".into());
        assert!(!format!("{t:?}").contains("s3cret"));
    }
}
