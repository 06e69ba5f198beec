//! IO edge for scrape mode: GET each pod's vLLM /metrics, at most `SCRAPE_CONCURRENCY` per pool
//! and a global number across pools, each bounded by a timeout and a byte cap, parsed as it
//! streams in. A pod that cannot be read is reported with its error, never as zeros.

use std::time::Duration;

use chrono::Utc;
use futures::stream::{self, StreamExt};
use thiserror::Error;
use tokio::sync::Semaphore;

use super::derive::{PodReading, PoolReading};
use super::http::{self, BodyError, RequestError, SCRAPE_BODY_LIMIT_BYTES};
use super::parse::{ExpositionParser, ParseError};

/// Requests in flight at once for one pool: enough for large pools, few enough not to stall it.
pub const SCRAPE_CONCURRENCY: usize = 16;

/// One pod to scrape.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScrapeTarget {
    /// Pod name, the key in `PoolReading`.
    pub pod: String,
    /// Full URL, such as `http://10.0.3.7:8000/metrics` (see `metrics_url`).
    pub url: String,
}

/// The /metrics URL of a pod's vLLM server.
pub fn metrics_url(pod_ip: &str, port: u16) -> String {
    if pod_ip.contains(':') {
        format!("http://[{pod_ip}]:{port}/metrics")
    } else {
        format!("http://{pod_ip}:{port}/metrics")
    }
}

/// Why one pod's metrics could not be read. Only kinds and numbers: a pod's body or error text
/// never reaches status.
#[derive(Debug, Error)]
pub enum ScrapeError {
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    #[error("{0}")]
    Request(RequestError),
    #[error("HTTP status {0}")]
    Status(u16),
    #[error("/metrics is larger than {limit} bytes")]
    TooLarge { limit: u64 },
    #[error("unparseable /metrics: {0}")]
    Parse(#[from] ParseError),
}

impl ScrapeError {
    /// A low-cardinality label for metrics and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            ScrapeError::Timeout(_) => "timeout",
            ScrapeError::Request(e) => e.kind(),
            ScrapeError::Status(_) => "status",
            ScrapeError::TooLarge { .. } => "too_large",
            ScrapeError::Parse(e) => e.kind(),
        }
    }
}

/// Scrapes every target, at most `SCRAPE_CONCURRENCY` at a time for this pool and as many as
/// `permits` allows across all pools, each bounded by `timeout` (waiting for a permit included).
/// Results come back in no particular order, one per target.
pub async fn scrape_pods(
    client: &reqwest::Client,
    targets: Vec<ScrapeTarget>,
    timeout: Duration,
    permits: &Semaphore,
) -> Vec<(String, Result<PodReading, ScrapeError>)> {
    stream::iter(targets)
        .map(|t| async move {
            let result = tokio::time::timeout(timeout, async {
                let _permit = permits.acquire().await;
                scrape_one(client, &t.url).await
            })
            .await
            .unwrap_or(Err(ScrapeError::Timeout(timeout)));
            (t.pod, result)
        })
        .buffer_unordered(SCRAPE_CONCURRENCY)
        .collect()
        .await
}

/// Scrapes one /metrics URL (the caller bounds the time). Memory is bounded by the parser's caps,
/// not by the body: lines are parsed as they arrive and only the used families are kept.
pub async fn scrape_one(client: &reqwest::Client, url: &str) -> Result<PodReading, ScrapeError> {
    let resp = client
        .get(url)
        .send()
        .await
        .map_err(|e| ScrapeError::Request(e.into()))?;
    if !resp.status().is_success() {
        return Err(ScrapeError::Status(resp.status().as_u16()));
    }
    // The values are rendered when the server answers: stamp the reading with that moment.
    let at = Utc::now();
    let mut parser = ExpositionParser::default();
    http::stream_body(resp, SCRAPE_BODY_LIMIT_BYTES, |chunk| parser.feed(chunk))
        .await
        .map_err(|e| match e {
            BodyError::TooLarge { limit } => ScrapeError::TooLarge { limit },
            BodyError::Read(RequestError::Timeout) => ScrapeError::Request(RequestError::Timeout),
            BodyError::Read(r) => ScrapeError::Request(r),
            BodyError::Sink(p) => ScrapeError::Parse(p),
        })?;
    Ok(PodReading {
        reading: parser.finish()?,
        at,
    })
}

/// Keeps the pods that answered; failures are returned apart so the caller can log and count them.
pub fn split_results(
    results: Vec<(String, Result<PodReading, ScrapeError>)>,
) -> (PoolReading, Vec<(String, ScrapeError)>) {
    let mut ok = PoolReading::new();
    let mut failed = Vec::new();
    for (pod, r) in results {
        match r {
            Ok(reading) => {
                ok.insert(pod, reading);
            }
            Err(e) => failed.push((pod, e)),
        }
    }
    (ok, failed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_for_v4_and_v6_pods() {
        assert_eq!(
            metrics_url("10.0.0.7", 8000),
            "http://10.0.0.7:8000/metrics"
        );
        assert_eq!(
            metrics_url("fd00::7", 8000),
            "http://[fd00::7]:8000/metrics"
        );
    }
}
