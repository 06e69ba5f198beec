//! Turns two snapshots of a pool's pods into an `Observation`: counter rates over the interval,
//! current gauges, and TTFT quantiles from histogram bucket deltas. Pure, shared by scrape mode,
//! Prometheus mode and the simulator.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use super::Observation;
use super::parse::{Histogram, Reading};

/// One pod's reading and when it was taken (for Prometheus, the sample's own timestamp).
#[derive(Clone, Debug, PartialEq)]
pub struct PodReading {
    pub reading: Reading,
    pub at: DateTime<Utc>,
}

/// A pool's pods that answered, by pod name. Pods that failed to answer are absent, never zeros.
pub type PoolReading = BTreeMap<String, PodReading>;

/// The pool's load between `prev` and `cur`.
///
/// - Gauges (running, waiting, KV cache) come from every pod in `cur`, including pods new this
///   interval: they only add load, which is the safe direction.
/// - Rates and TTFT come from pods present in both readings, each over its own elapsed time, then
///   summed. A counter below its previous value means the pod restarted: its value is the increase.
/// - `pods_observed` counts only pods that contributed rates: present in both readings, time moved
///   forward, and both token counters present. A pod that just appeared (no previous reading) is
///   therefore not observed yet, so the observation is incomplete for one interval and cannot
///   shrink the pool on a token rate that is missing that pod's share.
/// - Pods in `prev` but not in `cur` contribute nothing; if they should have answered the caller's
///   `pods_expected` makes the observation incomplete.
pub fn derive(prev: &PoolReading, cur: &PoolReading, pods_expected: u32) -> Observation {
    let mut obs = Observation {
        pods_expected,
        ..Observation::default()
    };
    let mut ttft = Histogram::default();
    let mut gen_sum = 0.0;
    let mut gen_count = 0.0;

    for (pod, now) in cur {
        let r = &now.reading;
        obs.requests_running += r.requests_running.unwrap_or(0.0);
        obs.requests_waiting += r.requests_waiting.unwrap_or(0.0);
        obs.kv_cache_usage = obs.kv_cache_usage.max(r.kv_cache_usage.unwrap_or(0.0));

        let Some(before) = prev.get(pod) else {
            obs.pods_new += 1;
            continue;
        };
        let elapsed_seconds = (now.at - before.at).as_seconds_f64();
        if elapsed_seconds <= 0.0 {
            continue;
        }
        let p = &before.reading;
        let (Some(input), Some(output)) = (
            counter_increase(p.prompt_tokens_total, r.prompt_tokens_total),
            counter_increase(p.generation_tokens_total, r.generation_tokens_total),
        ) else {
            continue;
        };
        obs.pods_observed += 1;
        obs.input_tokens += input;
        obs.output_tokens += output;
        obs.covered_seconds = obs.covered_seconds.max(elapsed_seconds);
        obs.input_tokens_per_second += input / elapsed_seconds;
        obs.output_tokens_per_second += output / elapsed_seconds;
        if let Some(done) = counter_increase(p.request_success_total, r.request_success_total) {
            obs.requests_per_second += done / elapsed_seconds;
        }
        if let Some(d) = histogram_increase(
            p.time_to_first_token_seconds.as_ref(),
            r.time_to_first_token_seconds.as_ref(),
        ) {
            ttft.add(&d);
        }
        if let Some(d) = histogram_increase(
            p.request_generation_tokens.as_ref(),
            r.request_generation_tokens.as_ref(),
        ) && let (Some(s), Some(c)) = (d.sum, d.count)
        {
            gen_sum += s;
            gen_count += c;
        }
    }

    obs.ttft_p50_seconds = histogram_quantile(0.5, &ttft.buckets);
    obs.ttft_p90_seconds = histogram_quantile(0.9, &ttft.buckets);
    obs.mean_output_tokens_per_request = (gen_count > 0.0).then(|| gen_sum / gen_count);
    obs
}

/// The increase of a counter; a drop means the process restarted and counted from zero since.
fn counter_increase(prev: Option<f64>, cur: Option<f64>) -> Option<f64> {
    let (p, c) = (prev?, cur?);
    Some(if c >= p { c - p } else { c })
}

/// Bucket-by-bucket increase. Any bucket, sum or count going down, or a changed bucket layout,
/// means a restart: the current histogram is then the increase.
fn histogram_increase(prev: Option<&Histogram>, cur: Option<&Histogram>) -> Option<Histogram> {
    let (p, c) = (prev?, cur?);
    let same_layout = p.buckets.len() == c.buckets.len()
        && p.buckets.iter().zip(&c.buckets).all(|(a, b)| a.0 == b.0);
    let reset = !same_layout
        || p.buckets.iter().zip(&c.buckets).any(|(a, b)| b.1 < a.1)
        || matches!((p.count, c.count), (Some(a), Some(b)) if b < a)
        || matches!((p.sum, c.sum), (Some(a), Some(b)) if b < a);
    if reset {
        return Some(c.clone());
    }
    let sub = |a: Option<f64>, b: Option<f64>| Some(b? - a?);
    Some(Histogram {
        buckets: p
            .buckets
            .iter()
            .zip(&c.buckets)
            .map(|(a, b)| (b.0, b.1 - a.1))
            .collect(),
        sum: sub(p.sum, c.sum),
        count: sub(p.count, c.count),
    })
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
mod tests {
    use super::*;
    use crate::load::parse::parse_reading;

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_777_000_000 + seconds, 0).unwrap()
    }

    fn pool(pods: &[(&str, Reading, i64)]) -> PoolReading {
        pods.iter()
            .map(|(name, reading, t)| {
                (
                    name.to_string(),
                    PodReading {
                        reading: reading.clone(),
                        at: at(*t),
                    },
                )
            })
            .collect()
    }

    fn ttft(buckets: &[(f64, f64)]) -> Histogram {
        Histogram {
            buckets: buckets.to_vec(),
            sum: None,
            count: buckets.last().map(|b| b.1),
        }
    }

    #[test]
    fn an_infinite_counter_makes_a_malformed_observation_not_load() {
        let prev = pool(&[("a", counters(1000.0, 100.0, 10.0), 0)]);
        let cur = pool(&[("a", counters(2000.0, f64::INFINITY, 20.0), 15)]);
        let o = derive(&prev, &cur, 1);
        assert_eq!(o.malformed(), Some("output tok/s"));
        let sane = derive(&prev, &pool(&[("a", counters(2000.0, 400.0, 20.0), 15)]), 1);
        assert_eq!(sane.malformed(), None);
    }

    fn counters(prompt: f64, generation: f64, success: f64) -> Reading {
        Reading {
            requests_running: Some(1.0),
            requests_waiting: Some(0.0),
            kv_cache_usage: Some(0.1),
            prompt_tokens_total: Some(prompt),
            generation_tokens_total: Some(generation),
            request_success_total: Some(success),
            ..Reading::default()
        }
    }

    const INF: f64 = f64::INFINITY;

    #[test]
    fn rates_over_elapsed_seconds_summed_over_pods() {
        let prev = pool(&[
            ("a", counters(1000.0, 500.0, 10.0), 0),
            ("b", counters(0.0, 0.0, 0.0), 5),
        ]);
        let cur = pool(&[
            ("a", counters(2500.0, 800.0, 13.0), 15),
            ("b", counters(1000.0, 200.0, 2.0), 15),
        ]);
        let o = derive(&prev, &cur, 2);
        // a: 1500/15 in, 300/15 out, 3/15 rps; b: over 10 s, 1000/10 in, 200/10 out, 2/10 rps
        assert!((o.input_tokens_per_second - (100.0 + 100.0)).abs() < 1e-9);
        assert!((o.output_tokens_per_second - (20.0 + 20.0)).abs() < 1e-9);
        assert!((o.requests_per_second - (0.2 + 0.2)).abs() < 1e-9);
        assert_eq!(o.requests_running, 2.0);
        assert_eq!((o.pods_observed, o.pods_expected), (2, 2));
        assert!(o.is_complete());
    }

    #[test]
    fn counter_reset_counts_value_since_restart() {
        let prev = pool(&[("a", counters(10_000.0, 5_000.0, 100.0), 0)]);
        let cur = pool(&[("a", counters(300.0, 150.0, 3.0), 10)]);
        let o = derive(&prev, &cur, 1);
        assert_eq!(o.input_tokens_per_second, 30.0);
        assert_eq!(o.output_tokens_per_second, 15.0);
        assert!((o.requests_per_second - 0.3).abs() < 1e-12);
    }

    #[test]
    fn new_pod_adds_gauges_but_not_rates_and_marks_incomplete() {
        let prev = pool(&[("a", counters(0.0, 0.0, 0.0), 0)]);
        let mut fresh = counters(9_999.0, 9_999.0, 99.0);
        fresh.requests_waiting = Some(4.0);
        fresh.kv_cache_usage = Some(0.9);
        let cur = pool(&[("a", counters(100.0, 100.0, 1.0), 10), ("b", fresh, 10)]);
        let o = derive(&prev, &cur, 2);
        assert_eq!(o.output_tokens_per_second, 10.0);
        assert_eq!(o.requests_waiting, 4.0);
        assert_eq!(o.kv_cache_usage, 0.9);
        assert_eq!(o.pods_observed, 1);
        assert!(!o.is_complete());
    }

    #[test]
    fn vanished_pod_contributes_nothing() {
        let prev = pool(&[
            ("a", counters(0.0, 0.0, 0.0), 0),
            ("gone", counters(0.0, 0.0, 0.0), 0),
        ]);
        let cur = pool(&[("a", counters(0.0, 50.0, 1.0), 10)]);
        let o = derive(&prev, &cur, 1);
        assert_eq!(o.output_tokens_per_second, 5.0);
        assert_eq!(o.pods_observed, 1);
        assert!(o.is_complete());
        // ...but if it should have answered, the observation says so
        assert!(!derive(&prev, &cur, 2).is_complete());
    }

    #[test]
    fn missing_token_counters_mean_not_observed_not_idle() {
        let prev = pool(&[("a", Reading::default(), 0)]);
        let cur = pool(&[("a", Reading::default(), 10)]);
        let o = derive(&prev, &cur, 1);
        assert_eq!(o.pods_observed, 0);
        assert!(!o.is_complete());
        assert_eq!(o.ttft_p50_seconds, None);
        assert_eq!(o.mean_output_tokens_per_request, None);
    }

    #[test]
    fn first_reading_has_no_rates() {
        let cur = pool(&[("a", counters(100.0, 100.0, 1.0), 10)]);
        let o = derive(&PoolReading::new(), &cur, 1);
        assert_eq!(o.pods_observed, 0);
        assert_eq!(o.output_tokens_per_second, 0.0);
        assert_eq!(o.requests_running, 1.0);
    }

    #[test]
    fn quantiles_by_hand() {
        // 10 observations: 2 in (0, 0.1], 6 in (0.1, 0.5], 2 in (0.5, 1]
        let b = [(0.1, 2.0), (0.5, 8.0), (1.0, 10.0), (INF, 10.0)];
        // p50: rank 5, bucket (0.1, 0.5] holds ranks 2..8: 0.1 + 0.4 * 3/6 = 0.3
        assert!((histogram_quantile(0.5, &b).unwrap() - 0.3).abs() < 1e-12);
        // p90: rank 9, bucket (0.5, 1] holds 8..10: 0.5 + 0.5 * 1/2 = 0.75
        assert!((histogram_quantile(0.9, &b).unwrap() - 0.75).abs() < 1e-12);
        // p10: rank 1 in the first bucket, lower bound 0: 0.1 * 1/2
        assert!((histogram_quantile(0.1, &b).unwrap() - 0.05).abs() < 1e-12);
        // rank in +Inf bucket: highest finite bound
        assert_eq!(
            histogram_quantile(0.9, &[(1.0, 1.0), (INF, 10.0)]),
            Some(1.0)
        );
        assert_eq!(histogram_quantile(0.5, &[(1.0, 0.0), (INF, 0.0)]), None);
        assert_eq!(histogram_quantile(0.5, &[(1.0, 3.0)]), None);
    }

    #[test]
    fn ttft_quantiles_from_interval_deltas_summed_over_pods() {
        let with = |h: Histogram| Reading {
            time_to_first_token_seconds: Some(h),
            ..counters(0.0, 0.0, 0.0)
        };
        // Before the interval: 1000 fast requests per pod. They must not dilute the interval.
        let old = ttft(&[(0.1, 1000.0), (0.5, 1000.0), (1.0, 1000.0), (INF, 1000.0)]);
        let prev = pool(&[("a", with(old.clone()), 0), ("b", with(old), 0)]);
        // a adds 2 in (0,0.1] and 3 in (0.1,0.5]; b adds 3 in (0.1,0.5] and 2 in (0.5,1]
        let a = ttft(&[(0.1, 1002.0), (0.5, 1005.0), (1.0, 1005.0), (INF, 1005.0)]);
        let b = ttft(&[(0.1, 1000.0), (0.5, 1003.0), (1.0, 1005.0), (INF, 1005.0)]);
        let cur = pool(&[("a", with(a), 10), ("b", with(b), 10)]);
        let o = derive(&prev, &cur, 2);
        // summed deltas: [(0.1,2),(0.5,8),(1,10),(Inf,10)] as in quantiles_by_hand
        assert!((o.ttft_p50_seconds.unwrap() - 0.3).abs() < 1e-12);
        assert!((o.ttft_p90_seconds.unwrap() - 0.75).abs() < 1e-12);
    }

    #[test]
    fn histogram_reset_uses_current_buckets() {
        let with = |h: Histogram| Reading {
            time_to_first_token_seconds: Some(h),
            ..counters(0.0, 0.0, 0.0)
        };
        let prev = pool(&[(
            "a",
            with(ttft(&[(0.1, 500.0), (1.0, 900.0), (INF, 1000.0)])),
            0,
        )]);
        let cur = pool(&[("a", with(ttft(&[(0.1, 4.0), (1.0, 4.0), (INF, 4.0)])), 10)]);
        let o = derive(&prev, &cur, 1);
        assert!((o.ttft_p50_seconds.unwrap() - 0.05).abs() < 1e-12);
    }

    #[test]
    fn mean_output_tokens_from_sum_and_count_deltas() {
        let with = |sum: f64, count: f64| Reading {
            request_generation_tokens: Some(Histogram {
                buckets: vec![(INF, count)],
                sum: Some(sum),
                count: Some(count),
            }),
            ..counters(0.0, 0.0, 0.0)
        };
        let prev = pool(&[("a", with(1000.0, 10.0), 0), ("b", with(0.0, 0.0), 0)]);
        let cur = pool(&[("a", with(1600.0, 12.0), 10), ("b", with(200.0, 2.0), 10)]);
        // (600 + 200) / (2 + 2)
        assert_eq!(
            derive(&prev, &cur, 2).mean_output_tokens_per_request,
            Some(200.0)
        );
        let idle = derive(&cur, &cur.clone(), 2);
        assert_eq!(idle.mean_output_tokens_per_request, None);
    }

    #[test]
    fn derive_from_real_format_fixtures() {
        let base = parse_reading(include_str!("testdata/v1-two-engines.txt")).unwrap();
        let mut later = base.clone();
        later.generation_tokens_total = Some(9000.0 + 1500.0);
        later.prompt_tokens_total = Some(30000.0 + 4500.0);
        let prev = pool(&[("p", base, 0)]);
        let cur = pool(&[("p", later, 15)]);
        let o = derive(&prev, &cur, 1);
        assert_eq!(o.output_tokens_per_second, 100.0);
        assert_eq!(o.input_tokens_per_second, 300.0);
        assert_eq!(o.requests_running, 12.0);
        assert_eq!(o.requests_waiting, 3.0);
        assert_eq!(o.kv_cache_usage, 0.5);
        // no new requests in the interval: no TTFT to report, not a TTFT of zero
        assert_eq!(o.ttft_p50_seconds, None);
    }
}
