//! Turns each pod's baseline and its current sample into an `Observation`: the exact counter
//! increments since the baseline (for the money), rates over the pod's own elapsed time (for
//! sizing), current gauges, and TTFT quantiles from histogram bucket deltas. Pure, shared by
//! scrape mode, Prometheus mode and the tests.
//!
//! The rules, pod by pod (a pod's baseline is where its next increment is measured from):
//! - **No new sample** (Prometheus has not scraped it since): the baseline stays; the pod's rates
//!   from its last advance stand in while its sample is current, so a scrape slower than the
//!   pool's interval never reads as zero load.
//! - **Malformed** (NaN-free but infinite or negative values) or **implausible** (an increase, or a
//!   "reset" to a value, beyond what one replica could serve in the elapsed time at
//!   `Limits`): missing data. The baseline stays, so a one-off glitch costs nothing; after
//!   `MAX_REJECTIONS` in a row the pod is measured afresh from its current sample (a lasting shift,
//!   such as a relabelled series) and the skipped span is reported unaccounted.
//! - **Counters** are compared series by series. A series below its baseline is a reset (counted
//!   from zero) unless `process_start_time_seconds` says the process did not restart, in which
//!   case it is a glitch (missing data). A series that appears counts from the next reading, one
//!   that disappears stops counting: neither is a spike.
//! - **A pod without a baseline** counts from zero when its process started after the pool began
//!   to be tracked (no token of it was ever counted, and all its counters accrued since);
//!   otherwise from its current sample, and the span since the pool was last read is reported
//!   unaccounted.
//! - **Persisted baselines** (status, per-pod sums): when the baseline in memory is not the one in
//!   status (a restart, a failover, or a status write that failed), tokens are counted from the
//!   persisted one, so whatever month-to-date status holds, it gains each token exactly once.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};

use super::Observation;
use super::parse::{Histogram, Reading, Series};
use crate::api::CounterBaseline;

/// One pod's reading and when it was taken (for Prometheus, the sample's own timestamp).
#[derive(Clone, Debug, PartialEq)]
pub struct PodReading {
    pub reading: Reading,
    pub at: DateTime<Utc>,
}

/// A pool's pods that answered, by pod name. Pods that failed to answer are absent, never zeros.
pub type PoolReading = BTreeMap<String, PodReading>;

/// Readings in a row kept out as implausible before a pod is measured afresh.
pub const MAX_REJECTIONS: u32 = 3;
/// Pods whose baselines are persisted in status (by name): enough for nearly every pool, and a
/// bound on the status size (about 130 bytes each).
pub const MAX_PERSISTED_BASELINES: usize = 64;
/// How much more than its capacity a replica may appear to serve before the reading is judged
/// missing data rather than load. Capacity in the spec is what a replica serves *at the target
/// latency*; a saturated replica with large batches serves more, two to three times in vLLM
/// benchmarks. Four times leaves room for that and for a conservative figure, while a glitch
/// (1e18), a lifetime counter read as one interval, or a duplicated target is far beyond it.
pub const PLAUSIBILITY_MARGIN: f64 = 4.0;
/// Ceilings per pod when no capacity is configured or learned: no GPU server produces this much,
/// so only glitches exceed them. Prefill is far faster than decode (and prefix-cache hits count).
pub const MAX_OUTPUT_TOKENS_PER_SECOND: f64 = 1e6;
pub const MAX_INPUT_TOKENS_PER_SECOND: f64 = 1e7;

/// The most tokens per second one pod can have served.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Limits {
    pub input_tokens_per_second: f64,
    pub output_tokens_per_second: f64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            input_tokens_per_second: MAX_INPUT_TOKENS_PER_SECOND,
            output_tokens_per_second: MAX_OUTPUT_TOKENS_PER_SECOND,
        }
    }
}

impl Limits {
    /// `PLAUSIBILITY_MARGIN` times one replica's capacity (configured or learned), within the
    /// absolute ceilings.
    pub fn for_capacity(input: Option<f64>, output: Option<f64>) -> Self {
        let bound = |c: Option<f64>, ceiling: f64| {
            c.filter(|c| c.is_finite() && *c > 0.0)
                .map_or(ceiling, |c| (c * PLAUSIBILITY_MARGIN).min(ceiling))
        };
        Self {
            input_tokens_per_second: bound(input, MAX_INPUT_TOKENS_PER_SECOND),
            output_tokens_per_second: bound(output, MAX_OUTPUT_TOKENS_PER_SECOND),
        }
    }
}

/// A pod's rates over its last advance.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct PodRates {
    pub input_tokens_per_second: f64,
    pub output_tokens_per_second: f64,
    pub requests_per_second: f64,
}

/// What a pod's next reading is measured from, kept in memory, series by series.
#[derive(Clone, Debug, PartialEq)]
pub struct Baseline {
    pub sample: PodReading,
    /// Rates over the advance that produced this baseline (None when it is the pod's first).
    pub rates: Option<PodRates>,
    /// Readings in a row kept out as implausible since this baseline was taken.
    pub rejected: u32,
    /// Set while the pod warms up (first sight, or resumed after a restart of the operator):
    /// what its first counted reading adds besides the increment from `sample`.
    pub pending: Option<Pending>,
}

/// What a warming pod's first counted reading owes.
#[derive(Clone, Debug, PartialEq)]
pub struct Pending {
    /// Count tokens from here instead of from the persisted baseline: zero at the process start
    /// for a pod whose every token is uncounted, or this sample for a pod measured afresh.
    pub zero: Option<CounterBaseline>,
    /// Serving time before the first sample that no increment will cover.
    pub unaccounted_seconds: f64,
}

/// Everything `derive` reads.
pub struct DeriveInput<'a> {
    /// Baselines in memory, by pod.
    pub baselines: &'a BTreeMap<String, Baseline>,
    /// Baselines persisted in status (what month-to-date has counted up to).
    pub saved: &'a [CounterBaseline],
    /// The serving pods that answered.
    pub current: &'a PoolReading,
    /// Pods that still exist for the pool: other pods' baselines are dropped.
    pub keep: &'a BTreeSet<String>,
    /// Pods that should have answered (the larger of the serving pods and ready replicas).
    pub pods_expected: u32,
    /// Since when every pod of the pool has been tracked (this process's first reading of it, or
    /// the last reading persisted before it started): a pod first seen whose process started
    /// later has never had a token counted, so all its counters are counted.
    pub tracked_since: DateTime<Utc>,
    /// When the pool's pods last answered: the bound of what a pod first seen without proof may
    /// have served uncounted.
    pub last_reading: DateTime<Utc>,
    pub now: DateTime<Utc>,
    /// Rates are taken over at most this span; older baselines give tokens only.
    pub rate_span: chrono::Duration,
    /// A sample older than this is no longer current: its rates do not stand in.
    pub fresh_for: chrono::Duration,
    pub limits: Limits,
}

/// What `derive` gives.
#[derive(Clone, Debug, PartialEq)]
pub struct Derived {
    pub observation: Observation,
    /// The baselines to keep in memory for the next reading.
    pub baselines: BTreeMap<String, Baseline>,
    /// Pods whose sample moved since their baseline.
    pub pods_advanced: u32,
    /// Pods whose increment was counted (advanced, or counted from zero).
    pub pods_counted: u32,
    /// Pods whose reading was kept out as malformed or implausible.
    pub pods_rejected: u32,
    /// Pods seen for the first time (or again after an operator restart): their first sample
    /// is their rates' baseline, and their tokens count with their next reading.
    pub pods_warming: u32,
}

/// What happened to one pod.
enum Step {
    /// Counted: tokens (and rates unless the baseline was too old).
    Counted(Counted),
    /// No baseline in memory: this sample becomes one, and the pod counts from the next reading
    /// (from the persisted baseline, or from zero, or from here with the span before written off).
    Warming(Pending),
    /// No new sample since the baseline; the carried rates, when still current.
    Stale(Option<PodRates>),
    /// Kept out; the reason for the condition message.
    Rejected(&'static str),
}

struct Counted {
    input_tokens: f64,
    output_tokens: f64,
    unaccounted_seconds: f64,
    rates: Option<PodRates>,
    ttft: Option<Histogram>,
    generation: Option<Histogram>,
}

pub fn derive(inp: &DeriveInput) -> Derived {
    let mut obs = Observation {
        pods_expected: inp.pods_expected,
        ..Observation::default()
    };
    let saved: BTreeMap<&str, &CounterBaseline> =
        inp.saved.iter().map(|b| (b.pod.as_str(), b)).collect();
    let mut next: BTreeMap<String, Baseline> = BTreeMap::new();
    let mut persisted: BTreeMap<String, CounterBaseline> = BTreeMap::new();
    let (mut advanced, mut counted, mut rejected, mut warming) = (0, 0, 0, 0);
    let mut ttft = Histogram::default();
    let (mut gen_sum, mut gen_count) = (0.0, 0.0);
    let mut covered_from: Option<DateTime<Utc>> = None;

    for (pod, cur) in inp.current {
        let base = inp.baselines.get(pod);
        let saved = saved.get(pod.as_str()).copied();
        if let Some(why) = malformed(&cur.reading) {
            rejected += 1;
            obs.rejected.get_or_insert_with(|| format!("{pod}: {why}"));
            keep_old(pod, base, saved, &mut next, &mut persisted);
            continue;
        }
        let r = &cur.reading;
        obs.requests_running += r.requests_running.unwrap_or(0.0);
        obs.requests_waiting += r.requests_waiting.unwrap_or(0.0);
        obs.kv_cache_usage = obs.kv_cache_usage.max(r.kv_cache_usage.unwrap_or(0.0));

        match step(inp, base, saved, cur) {
            Step::Stale(rates) => {
                let current = inp.now - cur.at <= inp.fresh_for;
                if let (Some(rates), true) = (rates, current) {
                    add_rates(&mut obs, &rates);
                    obs.pods_observed += 1;
                }
                keep_old(pod, base, saved, &mut next, &mut persisted);
            }
            Step::Rejected(why) => {
                rejected += 1;
                obs.rejected.get_or_insert_with(|| format!("{pod}: {why}"));
                let strikes = base.map_or(1, |b| b.rejected + 1);
                if strikes >= MAX_REJECTIONS {
                    // A lasting shift, not a glitch: measure afresh from here, as a pod first
                    // seen, and say what was lost when it next counts.
                    let since = base.map(|b| b.sample.at).unwrap_or(inp.last_reading);
                    warming += 1;
                    obs.pods_new += 1;
                    let fresh = Baseline {
                        sample: cur.clone(),
                        rates: None,
                        rejected: 0,
                        // From this sample, whatever status still holds.
                        pending: Some(Pending {
                            zero: Some(persist(pod, cur)),
                            unaccounted_seconds: seconds(since, cur.at),
                        }),
                    };
                    persisted.insert(pod.clone(), persist(pod, &fresh.sample));
                    next.insert(pod.clone(), fresh);
                } else {
                    keep_old(pod, base, saved, &mut next, &mut persisted);
                    // A pod never counted has no baseline to strike against: it is measured from
                    // zero again next time (its counters bounded by its start time, when known).
                    if let Some(b) = next.get_mut(pod) {
                        b.rejected = strikes;
                    }
                }
            }
            Step::Warming(pending) => {
                warming += 1;
                obs.pods_new += 1;
                // Status keeps what month-to-date has counted up to: the persisted baseline if
                // any, else zero at the process start, else this sample (the rest written off).
                let written = saved.cloned().unwrap_or_else(|| match &pending.zero {
                    Some(zero) => CounterBaseline {
                        pod: pod.clone(),
                        ..zero.clone()
                    },
                    None => persist(pod, cur),
                });
                persisted.insert(pod.clone(), written);
                next.insert(
                    pod.clone(),
                    Baseline {
                        sample: cur.clone(),
                        rates: None,
                        rejected: 0,
                        pending: Some(pending),
                    },
                );
            }
            Step::Counted(c) => {
                counted += 1;
                advanced += 1;
                // The time the increments are spread over (month-to-date splits them across a
                // month boundary by it): from the baseline, or across the gap to a persisted one.
                // A pod counted from zero spreads its first tokens over its first interval, not
                // its life: most of that life is loading the model.
                let from_zero =
                    base.is_some_and(|b| b.pending.as_ref().is_some_and(|p| p.zero.is_some()));
                let from = saved
                    .filter(|_| !from_zero)
                    .map(saved_at)
                    .into_iter()
                    .chain(base.map(|b| b.sample.at))
                    .min()
                    .unwrap_or(inp.tracked_since);
                covered_from = Some(covered_from.map_or(from, |f| f.min(from)));
                obs.input_tokens += c.input_tokens;
                obs.output_tokens += c.output_tokens;
                obs.unaccounted_seconds += c.unaccounted_seconds;
                if let Some(rates) = &c.rates {
                    add_rates(&mut obs, rates);
                    obs.pods_observed += 1;
                }
                if let Some(h) = &c.ttft {
                    ttft.add(h);
                }
                if let Some(Histogram {
                    sum: Some(s),
                    count: Some(n),
                    ..
                }) = &c.generation
                {
                    gen_sum += s;
                    gen_count += n;
                }
                let fresh = Baseline {
                    sample: cur.clone(),
                    rates: c.rates,
                    rejected: 0,
                    pending: None,
                };
                persisted.insert(pod.clone(), persist(pod, &fresh.sample));
                next.insert(pod.clone(), fresh);
            }
        }
    }

    // Pods that did not answer keep their baselines (their tokens count when they answer again);
    // pods that are gone take theirs with them, and what they served since is lost.
    for (pod, b) in inp.baselines {
        if inp.current.contains_key(pod) {
            continue;
        }
        if inp.keep.contains(pod) {
            next.insert(pod.clone(), b.clone());
        } else {
            obs.unaccounted_seconds += seconds(b.sample.at, inp.now).min(seconds_of(inp.fresh_for));
        }
    }
    for b in inp.saved {
        if !inp.current.contains_key(&b.pod) && inp.keep.contains(&b.pod) {
            persisted.entry(b.pod.clone()).or_insert_with(|| b.clone());
        }
    }
    // Whatever else is kept in memory: from where its tokens are still to be counted.
    for (pod, b) in &next {
        persisted.entry(pod.clone()).or_insert_with(|| {
            match b.pending.as_ref().and_then(|p| p.zero.as_ref()) {
                Some(zero) => CounterBaseline {
                    pod: pod.clone(),
                    ..zero.clone()
                },
                None => persist(pod, &b.sample),
            }
        });
    }

    obs.ttft_p50_seconds = histogram_quantile(0.5, &ttft.buckets);
    obs.ttft_p90_seconds = histogram_quantile(0.9, &ttft.buckets);
    obs.mean_output_tokens_per_request = (gen_count > 0.0).then(|| gen_sum / gen_count);
    obs.covered_seconds = covered_from.map_or(0.0, |from| seconds(from, inp.now));
    obs.baselines = persisted
        .into_values()
        .take(MAX_PERSISTED_BASELINES)
        .collect();
    Derived {
        observation: obs,
        baselines: next,
        pods_advanced: advanced,
        pods_counted: counted,
        pods_rejected: rejected,
        pods_warming: warming,
    }
}

/// The observation between two snapshots of a pool, as the observer derives it when `prev` holds
/// the baselines (for tests and tools that take two readings by hand).
pub fn between(prev: &PoolReading, cur: &PoolReading, pods_expected: u32) -> Observation {
    let baselines: BTreeMap<String, Baseline> = prev
        .iter()
        .map(|(pod, r)| {
            (
                pod.clone(),
                Baseline {
                    sample: r.clone(),
                    rates: None,
                    rejected: 0,
                    pending: None,
                },
            )
        })
        .collect();
    let since = prev.values().map(|r| r.at).min().unwrap_or_default();
    let now = cur.values().map(|r| r.at).max().unwrap_or(since);
    let keep = prev.keys().chain(cur.keys()).cloned().collect();
    derive(&DeriveInput {
        baselines: &baselines,
        saved: &[],
        current: cur,
        keep: &keep,
        pods_expected,
        tracked_since: since,
        last_reading: since,
        now,
        rate_span: chrono::Duration::hours(1),
        fresh_for: chrono::Duration::hours(1),
        limits: Limits::default(),
    })
    .observation
}

fn add_rates(obs: &mut Observation, r: &PodRates) {
    obs.input_tokens_per_second += r.input_tokens_per_second;
    obs.output_tokens_per_second += r.output_tokens_per_second;
    obs.requests_per_second += r.requests_per_second;
}

/// Keeps a pod's baselines as they were (nothing of its current sample is counted).
fn keep_old(
    pod: &str,
    base: Option<&Baseline>,
    saved: Option<&CounterBaseline>,
    next: &mut BTreeMap<String, Baseline>,
    persisted: &mut BTreeMap<String, CounterBaseline>,
) {
    if let Some(b) = base {
        next.insert(pod.to_string(), b.clone());
    }
    if let Some(s) = saved {
        persisted.insert(pod.to_string(), s.clone());
    }
}

fn persist(pod: &str, s: &PodReading) -> CounterBaseline {
    CounterBaseline {
        pod: pod.to_string(),
        sampled_at_unix_ms: s.at.timestamp_millis(),
        process_start_unix_seconds: s.reading.process_start_time_seconds,
        input_tokens: s.reading.prompt_tokens_total().unwrap_or(0.0),
        output_tokens: s.reading.generation_tokens_total().unwrap_or(0.0),
    }
}

fn saved_at(s: &CounterBaseline) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(s.sampled_at_unix_ms).unwrap_or_default()
}

fn seconds(from: DateTime<Utc>, to: DateTime<Utc>) -> f64 {
    ((to - from).num_milliseconds() as f64 / 1000.0).max(0.0)
}

fn seconds_of(d: chrono::Duration) -> f64 {
    d.num_milliseconds() as f64 / 1000.0
}

/// The first value no vLLM could report (infinite or negative; NaN was dropped as absent).
fn malformed(r: &Reading) -> Option<&'static str> {
    let bad = |v: f64| !v.is_finite() || v < 0.0;
    let bad_series = |s: &Series| s.values().any(|v| bad(*v));
    let bad_hist = |h: &BTreeMap<String, Histogram>| {
        h.values().any(|h| {
            h.buckets.iter().any(|(_, n)| bad(*n))
                || h.sum.is_some_and(bad)
                || h.count.is_some_and(bad)
        })
    };
    [
        ("running requests", r.requests_running.is_some_and(bad)),
        ("waiting requests", r.requests_waiting.is_some_and(bad)),
        ("KV-cache use", r.kv_cache_usage.is_some_and(bad)),
        ("prompt token counter", bad_series(&r.prompt_tokens)),
        ("generation token counter", bad_series(&r.generation_tokens)),
        ("request counter", bad_series(&r.request_success)),
        ("TTFT histogram", bad_hist(&r.time_to_first_token_seconds)),
        (
            "output tokens histogram",
            bad_hist(&r.request_generation_tokens),
        ),
        (
            "process start time",
            r.process_start_time_seconds.is_some_and(bad),
        ),
    ]
    .into_iter()
    .find(|(_, b)| *b)
    .map(|(name, _)| name)
}

/// Whether the process restarted between two samples: `Some(true)` proven, `Some(false)` proven
/// not (same start time), `None` when the pod does not say.
fn restarted(before: Option<f64>, now: Option<f64>) -> Option<bool> {
    let (b, n) = (before?, now?);
    Some((n - b).abs() >= 1.0)
}

/// One counter family, series by series: the increase, and whether any series reset.
/// `Err` when a series went down although the process provably did not restart.
fn series_increase(
    before: &Series,
    now: &Series,
    restart: Option<bool>,
) -> Result<(f64, bool), &'static str> {
    let mut total = 0.0;
    let mut reset = false;
    for (key, &c) in now {
        if restart == Some(true) {
            total += c;
            continue;
        }
        match before.get(key) {
            Some(&p) if c >= p => total += c - p,
            Some(_) if restart == Some(false) => {
                return Err("a counter went down although the process did not restart");
            }
            Some(_) => {
                reset = true;
                total += c;
            }
            // A series that appears counts from the next reading, never as a spike.
            None => {}
        }
    }
    Ok((total, reset || restart == Some(true)))
}

fn step(
    inp: &DeriveInput,
    base: Option<&Baseline>,
    saved: Option<&CounterBaseline>,
    cur: &PodReading,
) -> Step {
    let r = &cur.reading;
    if let Some(b) = base {
        let elapsed = seconds(b.sample.at, cur.at);
        if elapsed <= 0.0 {
            return Step::Stale(b.rates.clone());
        }
        let mut c = match from_memory(inp, b, cur, elapsed) {
            Ok(c) => c,
            Err(why) => return Step::Rejected(why),
        };
        // Money is counted from the zero of a pod first seen, or from the persisted baseline
        // whenever it is not the one in memory (a status write that failed, an operator restart).
        let pending = b.pending.as_ref();
        let from = pending
            .and_then(|p| p.zero.as_ref())
            .or(saved.filter(|s| b.sample.at.timestamp_millis() != s.sampled_at_unix_ms));
        if let Some(s) = from {
            match from_saved(inp, s, cur) {
                Ok(Some((i, o, lost))) => {
                    c.input_tokens = i;
                    c.output_tokens = o;
                    c.unaccounted_seconds = lost;
                }
                Ok(None) => {}
                Err(why) => return Step::Rejected(why),
            }
        }
        c.unaccounted_seconds += pending.map_or(0.0, |p| p.unaccounted_seconds);
        return Step::Counted(c);
    }
    // No baseline in memory: this sample starts one.
    let started = started_at(r);
    let (i, o) = (
        r.prompt_tokens_total().unwrap_or(0.0),
        r.generation_tokens_total().unwrap_or(0.0),
    );
    // Counters cannot hold more than the process could serve since it started: a glitch must not
    // become the first baseline either.
    if let Some(t) = started
        && !plausible(inp, i, o, seconds(t, cur.at))
    {
        return Step::Rejected("counters above what one replica serves since it started");
    }
    if saved.is_some() {
        // Resuming: the persisted baseline is what the next reading counts from.
        return Step::Warming(Pending {
            zero: None,
            unaccounted_seconds: 0.0,
        });
    }
    Step::Warming(match started {
        // Every token it counted, it counted since the pool began to be tracked: count all.
        Some(t) if t >= inp.tracked_since && t <= cur.at => Pending {
            zero: Some(CounterBaseline {
                pod: String::new(),
                sampled_at_unix_ms: t.timestamp_millis(),
                process_start_unix_seconds: r.process_start_time_seconds,
                input_tokens: 0.0,
                output_tokens: 0.0,
            }),
            unaccounted_seconds: 0.0,
        },
        _ => Pending {
            zero: None,
            unaccounted_seconds: seconds(inp.last_reading, cur.at),
        },
    })
}

fn plausible(inp: &DeriveInput, input: f64, output: f64, elapsed: f64) -> bool {
    // A second of slack for the sample times' precision.
    let span = elapsed + 1.0;
    input <= inp.limits.input_tokens_per_second * span
        && output <= inp.limits.output_tokens_per_second * span
}

fn from_memory(
    inp: &DeriveInput,
    b: &Baseline,
    cur: &PodReading,
    elapsed: f64,
) -> Result<Counted, &'static str> {
    let (p, r) = (&b.sample.reading, &cur.reading);
    let restart = restarted(p.process_start_time_seconds, r.process_start_time_seconds);
    let (input, reset_in) = series_increase(&p.prompt_tokens, &r.prompt_tokens, restart)?;
    let (output, reset_out) = series_increase(&p.generation_tokens, &r.generation_tokens, restart)?;
    // After a proven restart the counters hold only what the new process served since it started.
    let span = match (restart, started_at(r)) {
        (Some(true), Some(t)) => seconds(t, cur.at).min(elapsed),
        _ => elapsed,
    };
    if !plausible(inp, input, output, span) {
        return Err(if reset_in || reset_out {
            "a counter reset to more than one replica serves in the interval"
        } else {
            "an increase beyond what one replica serves in the interval"
        });
    }
    // Requests are not bounded: they only feed requests/s, never money or capacity.
    let done = series_increase(&p.request_success, &r.request_success, restart)
        .map(|(n, _)| n)
        .unwrap_or(0.0);
    let lost = if reset_in || reset_out {
        lost_to_restart(b.sample.at, cur, elapsed)
    } else {
        0.0
    };
    let rates = (elapsed <= seconds_of(inp.rate_span)).then(|| PodRates {
        input_tokens_per_second: input / elapsed,
        output_tokens_per_second: output / elapsed,
        requests_per_second: done / elapsed,
    });
    let forced = restart == Some(true);
    Ok(Counted {
        input_tokens: input,
        output_tokens: output,
        unaccounted_seconds: lost,
        ttft: rates.as_ref().and_then(|_| {
            histograms_increase(
                &p.time_to_first_token_seconds,
                &r.time_to_first_token_seconds,
                forced,
            )
        }),
        generation: rates.as_ref().and_then(|_| {
            histograms_increase(
                &p.request_generation_tokens,
                &r.request_generation_tokens,
                forced,
            )
        }),
        rates,
    })
}

fn started_at(r: &Reading) -> Option<DateTime<Utc>> {
    r.process_start_time_seconds
        .and_then(|s| DateTime::from_timestamp_millis((s * 1000.0) as i64))
}

/// Seconds between the baseline and a restart, whose tokens the old process took with it. With
/// no start time to go by, the whole interval (an upper bound).
fn lost_to_restart(baseline_at: DateTime<Utc>, cur: &PodReading, elapsed: f64) -> f64 {
    match started_at(&cur.reading) {
        Some(started) => seconds(baseline_at, started).min(elapsed),
        None => elapsed,
    }
}

/// Tokens since a persisted baseline (per-pod sums): `None` when the sample did not move past it.
fn from_saved(
    inp: &DeriveInput,
    s: &CounterBaseline,
    cur: &PodReading,
) -> Result<Option<(f64, f64, f64)>, &'static str> {
    let at = saved_at(s);
    let elapsed = seconds(at, cur.at);
    if elapsed <= 0.0 {
        return Ok(None);
    }
    let r = &cur.reading;
    let restart = restarted(s.process_start_unix_seconds, r.process_start_time_seconds);
    let (ci, co) = (
        r.prompt_tokens_total().unwrap_or(0.0),
        r.generation_tokens_total().unwrap_or(0.0),
    );
    let went_down = ci < s.input_tokens || co < s.output_tokens;
    let (input, output, reset) = match restart {
        Some(true) => (ci, co, true),
        Some(false) if went_down => {
            return Err("a counter went down although the process did not restart");
        }
        None if went_down => (ci, co, true),
        _ => (ci - s.input_tokens, co - s.output_tokens, false),
    };
    if !plausible(inp, input, output, elapsed) {
        return Err("an increase beyond what one replica serves since the last counted reading");
    }
    let lost = if reset {
        lost_to_restart(at, cur, elapsed)
    } else {
        0.0
    };
    Ok(Some((input, output, lost)))
}

/// Histogram deltas series by series, summed. A series that went down reset (its current
/// histogram is the increase); one that appeared counts from the next reading unless the process
/// restarted (`forced`), when every series counts from zero.
fn histograms_increase(
    before: &BTreeMap<String, Histogram>,
    now: &BTreeMap<String, Histogram>,
    forced: bool,
) -> Option<Histogram> {
    let mut acc: Option<Histogram> = None;
    for (key, c) in now {
        let d = match before.get(key) {
            _ if forced => c.clone(),
            Some(p) => histogram_increase(p, c),
            None => continue,
        };
        match acc.as_mut() {
            Some(a) => a.add(&d),
            None => acc = Some(d),
        }
    }
    acc
}

/// Bucket-by-bucket increase. Any bucket, sum or count going down, or a changed bucket layout,
/// means a restart: the current histogram is then the increase.
fn histogram_increase(p: &Histogram, c: &Histogram) -> Histogram {
    let same_layout = p.buckets.len() == c.buckets.len()
        && p.buckets.iter().zip(&c.buckets).all(|(a, b)| a.0 == b.0);
    let reset = !same_layout
        || p.buckets.iter().zip(&c.buckets).any(|(a, b)| b.1 < a.1)
        || matches!((p.count, c.count), (Some(a), Some(b)) if b < a)
        || matches!((p.sum, c.sum), (Some(a), Some(b)) if b < a);
    if reset {
        return c.clone();
    }
    let sub = |a: Option<f64>, b: Option<f64>| Some(b? - a?);
    Histogram {
        buckets: p
            .buckets
            .iter()
            .zip(&c.buckets)
            .map(|(a, b)| (b.0, b.1 - a.1))
            .collect(),
        sum: sub(p.sum, c.sum),
        count: sub(p.count, c.count),
    }
}

/// The `q` quantile of cumulative buckets `(le, count)` sorted by `le`, interpolated linearly within
/// the bucket as PromQL's `histogram_quantile` does. `None` with no observations or no `+Inf`
/// bucket. A quantile in the `+Inf` bucket is the highest finite bound (PromQL's answer too).
pub fn histogram_quantile(q: f64, buckets: &[(f64, f64)]) -> Option<f64> {
    let &(last_le, total) = buckets.last()?;
    // `total > 0.0` is false for NaN too.
    let has_observations = total > 0.0;
    if last_le != f64::INFINITY || !has_observations || !(0.0..=1.0).contains(&q) {
        return None;
    }
    let rank = q * total;
    // PromQL tolerates small non-monotonicity from scraping engines at slightly different moments.
    let mut prev_count = 0.0;
    let mut prev_le = 0.0;
    for (i, &(le, raw)) in buckets.iter().enumerate() {
        let count = raw.max(prev_count);
        if count >= rank {
            if le == f64::INFINITY {
                return Some(if i == 0 { 0.0 } else { prev_le });
            }
            if i == 0 && le <= 0.0 {
                return Some(le);
            }
            let lower = if i == 0 { 0.0 } else { prev_le };
            let in_bucket = count - prev_count;
            if in_bucket <= 0.0 {
                return Some(le);
            }
            return Some(lower + (le - lower) * (rank - prev_count) / in_bucket);
        }
        prev_count = count;
        prev_le = le;
    }
    None
}

#[cfg(test)]
mod tests;
