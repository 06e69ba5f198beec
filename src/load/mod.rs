//! Observing load: what vLLM's /metrics says a pool is doing. Parsing and rate derivation are pure;
//! the scrape and Prometheus clients are the IO edges.

pub mod derive;
pub mod parse;
pub mod prometheus;
pub mod scrape;

pub use derive::{PodReading, PoolReading, derive};
pub use parse::{Histogram, ParseError, Reading, parse_reading};

/// A pool's load over one sync interval, summed over its pods and engines. This is what the sizing
/// policy, the cost model and the provisioning verdict read, in the controller and the simulator alike.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Observation {
    /// Prompt (prefill) tokens per second.
    pub input_tokens_per_second: f64,
    /// Generated (decode) tokens per second.
    pub output_tokens_per_second: f64,
    /// Prompt tokens counted by counter increments since each contributing pod's baseline: what
    /// month-to-date accrues (never a rate times a span).
    pub input_tokens: f64,
    /// Generated tokens counted by counter increments since each contributing pod's baseline.
    pub output_tokens: f64,
    /// Seconds the increments cover: the oldest contributing pod's baseline age.
    pub covered_seconds: f64,
    /// Serving time that no counter increment covers and never will (documented by the load
    /// layer); reported in month-to-date, never extrapolated into tokens.
    pub unaccounted_seconds: f64,
    /// Finished requests per second.
    pub requests_per_second: f64,
    /// Requests in running batches, summed over pods.
    pub requests_running: f64,
    /// Requests queued, summed over pods.
    pub requests_waiting: f64,
    /// Highest KV-cache use of any pod, 0 to 1.
    pub kv_cache_usage: f64,
    /// Time to first token over the interval, median and 90th percentile, seconds.
    pub ttft_p50_seconds: Option<f64>,
    pub ttft_p90_seconds: Option<f64>,
    /// Mean generated tokens per finished request over the interval.
    pub mean_output_tokens_per_request: Option<f64>,
    /// Pods whose metrics were read, and pods that should have answered (Ready pods of the pool).
    pub pods_observed: u32,
    pub pods_expected: u32,
    /// Pods that answered for the first time: their rates count from the next interval. They
    /// leave the observation incomplete (no scale-down) without meaning anything is wrong.
    pub pods_new: u32,
}

impl Observation {
    /// The first value that no vLLM could report (NaN, infinite or negative), by name: a broken
    /// exporter or a counter gone wrong. Such an observation is treated as missing, never as load.
    pub fn malformed(&self) -> Option<&'static str> {
        let bad = |v: f64| !v.is_finite() || v < 0.0;
        [
            ("input tok/s", self.input_tokens_per_second),
            ("output tok/s", self.output_tokens_per_second),
            ("input tokens", self.input_tokens),
            ("output tokens", self.output_tokens),
            ("requests/s", self.requests_per_second),
            ("running requests", self.requests_running),
            ("waiting requests", self.requests_waiting),
            ("KV-cache use", self.kv_cache_usage),
            ("TTFT p50", self.ttft_p50_seconds.unwrap_or(0.0)),
            ("TTFT p90", self.ttft_p90_seconds.unwrap_or(0.0)),
            (
                "output tokens per request",
                self.mean_output_tokens_per_request.unwrap_or(0.0),
            ),
        ]
        .into_iter()
        .find(|(_, v)| bad(*v))
        .map(|(name, _)| name)
    }

    /// True when every pod that should have answered did: only complete data may shrink a pool.
    pub fn is_complete(&self) -> bool {
        self.pods_observed >= self.pods_expected
    }
}
