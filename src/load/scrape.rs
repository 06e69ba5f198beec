//! IO edge for scrape mode: GET each pod's vLLM /metrics with bounded concurrency and a timeout.
//! A pod that cannot be read is reported with its error, never as zeros; parsing is `parse.rs`.

use std::time::Duration;

use chrono::Utc;
use futures::stream::{self, StreamExt};
use thiserror::Error;

use super::derive::{PodReading, PoolReading};
use super::parse::{ParseError, parse_reading};

/// Requests in flight at once: enough for large pools, few enough not to stall the controller.
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

/// Why one pod's metrics could not be read.
#[derive(Debug, Error)]
pub enum ScrapeError {
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    #[error("request failed: {0}")]
    Http(#[source] reqwest::Error),
    #[error("HTTP status {0}")]
    Status(u16),
    #[error("unparseable /metrics: {0}")]
    Parse(#[from] ParseError),
}

impl ScrapeError {
    /// A low-cardinality label for metrics and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            ScrapeError::Timeout(_) => "timeout",
            ScrapeError::Http(_) => "http",
            ScrapeError::Status(_) => "status",
            ScrapeError::Parse(_) => "parse",
        }
    }
}

/// Scrapes every target, at most `SCRAPE_CONCURRENCY` at a time, each bounded by `timeout`.
/// Results come back in no particular order, one per target.
pub async fn scrape_pods(
    client: &reqwest::Client,
    targets: Vec<ScrapeTarget>,
    timeout: Duration,
) -> Vec<(String, Result<PodReading, ScrapeError>)> {
    stream::iter(targets)
        .map(|t| async move {
            let result = scrape_one(client, &t.url, timeout).await;
            (t.pod, result)
        })
        .buffer_unordered(SCRAPE_CONCURRENCY)
        .collect()
        .await
}

/// Scrapes one /metrics URL.
pub async fn scrape_one(
    client: &reqwest::Client,
    url: &str,
    timeout: Duration,
) -> Result<PodReading, ScrapeError> {
    let fetch = async {
        let resp = client.get(url).send().await.map_err(ScrapeError::Http)?;
        if !resp.status().is_success() {
            return Err(ScrapeError::Status(resp.status().as_u16()));
        }
        // The values are rendered when the server answers: stamp the reading with that moment.
        let at = Utc::now();
        let body = resp.text().await.map_err(ScrapeError::Http)?;
        Ok((at, body))
    };
    let (at, body) = tokio::time::timeout(timeout, fetch)
        .await
        .map_err(|_| ScrapeError::Timeout(timeout))??;
    Ok(PodReading {
        reading: parse_reading(&body)?,
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
