//! Observing load: what vLLM's /metrics says a pool is doing. Parsing and derivation are pure;
//! the scrape and Prometheus clients, and the bounded HTTP they share, are the IO edges.

pub mod derive;
pub mod http;
pub mod parse;
pub mod prometheus;
pub mod scrape;

pub use derive::{Baseline, DeriveInput, Derived, Limits, PodReading, PoolReading, derive};
pub use parse::{Histogram, ParseError, Reading, parse_reading};

use crate::api::CounterBaseline;

/// A pool's load over one reading, summed over its pods and engines. This is what the sizing
/// policy, the cost model and the provisioning verdict read, in the controller and the simulator
/// alike.
///
/// Two kinds of numbers live here. **Rates and gauges** describe the pool now, for sizing. **Token
/// increments** (`input_tokens`, `output_tokens`) are exact counter increments, each pod measured
/// from its own baseline to its own latest sample, for the money: they never extrapolate, and a
/// pod that did not answer keeps its baseline, so its tokens count when it answers again.
///
/// `unaccounted_seconds` is the pod-seconds of serving time, within this reading, that no counter
/// increment covers and none ever will: a pod seen for the first time without proof that its
/// process started since the pool was last observed (the span since then), a restart (from the
/// baseline to the process start, or the whole interval when the pod does not expose
/// `process_start_time_seconds`), a pod measured afresh after `derive::MAX_REJECTIONS`
/// implausible readings (the span skipped), and a pod that left with tokens since its last sample
/// (at most one sample's freshness). It is an upper bound, reported and never turned into tokens.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Observation {
    /// Prompt (prefill) tokens per second.
    pub input_tokens_per_second: f64,
    /// Generated (decode) tokens per second.
    pub output_tokens_per_second: f64,
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
    /// Pods whose rates are in this observation (a pod Prometheus has not scraped again counts with
    /// the rates of its last scrape while that sample is current), and pods that should have
    /// answered: the larger of the pool's serving pods and the Deployment's ready replicas.
    pub pods_observed: u32,
    pub pods_expected: u32,
    /// Pods that answered for the first time: their rates count from the next interval. They
    /// leave the observation incomplete (no scale-down) without meaning anything is wrong.
    pub pods_new: u32,
    /// Prompt tokens served since each pod's baseline, summed over pods: exact, for month-to-date.
    pub input_tokens: f64,
    /// Generated tokens served since each pod's baseline, summed over pods.
    pub output_tokens: f64,
    /// Seconds the increments cover: from the oldest baseline they start from to the reading
    /// (month-to-date splits them across a month boundary by it).
    pub covered_seconds: f64,
    /// Serving pod-seconds no counter increment covers (see the type's documentation).
    pub unaccounted_seconds: f64,
    /// How often the source refreshes the pods' samples (Prometheus' scrape interval, estimated
    /// from sample times), when known.
    pub scrape_interval_seconds: Option<f64>,
    /// Why some pods' readings were kept out (malformed or implausible), for the condition.
    pub rejected: Option<String>,
    /// What the next reading needs, to be persisted in `status.load.baselines`.
    pub baselines: Vec<CounterBaseline>,
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
