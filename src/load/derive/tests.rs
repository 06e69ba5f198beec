use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use proptest::prelude::*;

use super::*;
use crate::load::parse::{Reading, ReadingBuilder, parse_reading};

const INF: f64 = f64::INFINITY;

fn at(seconds: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(1_777_000_000 + seconds, 0).unwrap()
}

/// A pod with two engines' token counters (prompt, generation per engine) and a request counter.
fn pod(engines: &[(f64, f64)], started: Option<f64>) -> Reading {
    let mut b = ReadingBuilder::default();
    for (i, (p, g)) in engines.iter().enumerate() {
        let e = i.to_string();
        let labels = [("engine", e.as_str()), ("model_name", "m")];
        b.add("vllm:prompt_tokens_total", labels, *p).unwrap();
        b.add("vllm:generation_tokens_total", labels, *g).unwrap();
        b.add("vllm:request_success_total", labels, *g / 100.0)
            .unwrap();
        b.add("vllm:num_requests_running", labels, 1.0).unwrap();
    }
    if let Some(s) = started {
        b.add("process_start_time_seconds", [], s).unwrap();
    }
    b.finish()
}

fn one(p: f64, g: f64) -> Reading {
    pod(&[(p, g)], None)
}

/// The observer's state for one pool, stepped reading by reading as the controller does.
struct Pool {
    baselines: BTreeMap<String, Baseline>,
    saved: Vec<CounterBaseline>,
    tracked_since: DateTime<Utc>,
    last_reading: DateTime<Utc>,
    /// When baselines were last persisted (status.load.observedAt).
    persisted_at: DateTime<Utc>,
    limits: Limits,
    expected: u32,
}

impl Pool {
    fn new(expected: u32) -> Self {
        Self {
            baselines: BTreeMap::new(),
            saved: Vec::new(),
            tracked_since: at(-1000),
            last_reading: at(0),
            persisted_at: at(-1000),
            limits: Limits::for_capacity(None, Some(1000.0)),
            expected,
        }
    }

    /// One reading at `now` of the pods that answered; persists baselines when something was
    /// counted (what decide writes to status with the money).
    fn read(&mut self, now: i64, pods: &[(&str, Reading, i64)]) -> Derived {
        let current: PoolReading = pods
            .iter()
            .map(|(n, r, t)| {
                (
                    n.to_string(),
                    PodReading {
                        reading: r.clone(),
                        at: at(*t),
                    },
                )
            })
            .collect();
        let keep: BTreeSet<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
        let d = derive(&DeriveInput {
            baselines: &self.baselines,
            saved: &self.saved,
            current: &current,
            keep: &keep,
            pods_expected: self.expected,
            tracked_since: self.tracked_since,
            last_reading: self.last_reading,
            now: at(now),
            rate_span: chrono::Duration::seconds(75),
            fresh_for: chrono::Duration::seconds(31),
            limits: self.limits,
        });
        self.baselines = d.baselines.clone();
        self.last_reading = at(now);
        if d.pods_counted > 0 {
            self.saved = d.observation.baselines.clone();
            self.persisted_at = at(now);
        }
        d
    }

    /// The operator restarts: memory is gone, status (the persisted baselines) stays.
    fn restart_operator(&mut self) {
        self.baselines.clear();
        self.tracked_since = self.persisted_at;
        self.last_reading = self.persisted_at;
    }
}

#[test]
fn exact_increments_and_rates_summed_over_pods() {
    let mut p = Pool::new(2);
    p.read(0, &[("a", one(1000.0, 500.0), 0), ("b", one(0.0, 0.0), 0)]);
    let d = p.read(
        15,
        &[("a", one(2500.0, 800.0), 15), ("b", one(1000.0, 200.0), 10)],
    );
    let o = &d.observation;
    assert_eq!((o.input_tokens, o.output_tokens), (2500.0, 500.0));
    // a: 1500/15 in, 300/15 out; b over its own 10 s: 1000/10 in, 200/10 out
    assert!((o.input_tokens_per_second - 200.0).abs() < 1e-9);
    assert!((o.output_tokens_per_second - 40.0).abs() < 1e-9);
    assert_eq!((o.pods_observed, o.pods_expected), (2, 2));
    assert!(o.is_complete());
    assert_eq!(o.unaccounted_seconds, 0.0);
    assert_eq!(o.baselines.len(), 2);
}

#[test]
fn resets_are_judged_per_series_before_summing() {
    let mut p = Pool::new(1);
    p.read(0, &[("a", pod(&[(0.0, 10_000.0), (0.0, 500.0)], None), 0)]);
    // Engine 1 restarted (its counter fell), engine 0 kept counting: the sum fell too, but only
    // engine 1 is a reset.
    let d = p.read(
        15,
        &[("a", pod(&[(0.0, 10_600.0), (0.0, 300.0)], None), 15)],
    );
    assert_eq!(d.observation.output_tokens, 600.0 + 300.0);
}

#[test]
fn a_series_appearing_or_disappearing_is_not_a_spike() {
    let mut p = Pool::new(1);
    p.read(0, &[("a", pod(&[(0.0, 9_000.0)], None), 0)]);
    // A second engine's series appears with its lifetime count, the first one grows by 100.
    let d = p.read(
        15,
        &[("a", pod(&[(0.0, 9_100.0), (0.0, 8_000.0)], None), 15)],
    );
    assert_eq!(d.observation.output_tokens, 100.0);
    // Then the first disappears: nothing counted for it, the second grows by 50.
    let mut only_second = ReadingBuilder::default();
    only_second
        .add(
            "vllm:generation_tokens_total",
            [("engine", "1"), ("model_name", "m")],
            8_050.0,
        )
        .unwrap();
    let d = p.read(30, &[("a", only_second.finish(), 30)]);
    assert_eq!(d.observation.output_tokens, 50.0);
}

#[test]
fn a_sample_that_did_not_advance_is_no_new_data_not_zero_load() {
    let mut p = Pool::new(1);
    p.read(0, &[("a", one(0.0, 0.0), 0)]);
    let d = p.read(30, &[("a", one(0.0, 3000.0), 30)]);
    assert_eq!(d.observation.output_tokens_per_second, 100.0);
    // 15 s later Prometheus has not scraped again: the same sample, same time.
    let d = p.read(45, &[("a", one(0.0, 3000.0), 30)]);
    assert_eq!(d.pods_counted, 0, "nothing to count");
    assert_eq!(d.pods_advanced, 0);
    assert_eq!(d.observation.output_tokens, 0.0);
    // ...and the pod's last rate stands in: it is as current as the source allows.
    assert_eq!(d.observation.output_tokens_per_second, 100.0);
    assert!(d.observation.is_complete());
    // The next scrape counts the whole 30 s since the baseline.
    let d = p.read(60, &[("a", one(0.0, 6000.0), 60)]);
    assert_eq!(d.observation.output_tokens, 3000.0);
}

#[test]
fn a_malformed_reading_never_becomes_the_baseline() {
    let mut p = Pool::new(1);
    p.read(0, &[("a", one(0.0, 5e9), 0)]);
    let d = p.read(15, &[("a", one(0.0, INF), 15)]);
    assert_eq!(d.pods_rejected, 1);
    assert!(!d.observation.is_complete());
    assert!(
        d.observation
            .rejected
            .as_deref()
            .unwrap()
            .contains("generation")
    );
    // The good reading after it counts from the last good baseline: 15 s of tokens, not 5e9.
    let d = p.read(30, &[("a", one(0.0, 5e9 + 9000.0), 30)]);
    assert_eq!(d.observation.output_tokens, 9000.0);
}

#[test]
fn an_implausible_increase_is_missing_data_and_a_lasting_shift_is_remeasured() {
    let mut p = Pool::new(1);
    p.read(0, &[("a", one(0.0, 1000.0), 0)]);
    // 1e18 in 15 s: beyond 4x 1,000 tok/s.
    let d = p.read(15, &[("a", one(0.0, 1e18), 15)]);
    assert_eq!((d.pods_rejected, d.pods_counted), (1, 0));
    let d = p.read(30, &[("a", one(0.0, 1000.0 + 30_000.0), 30)]);
    assert_eq!(
        d.observation.output_tokens, 30_000.0,
        "the glitch cost nothing"
    );
    // A shift that lasts (the series now carries another exporter's total) is remeasured after
    // MAX_REJECTIONS readings, and the skipped span is reported.
    for t in [45, 60] {
        assert_eq!(
            p.read(t, &[("a", one(0.0, 1e12 + t as f64), t)])
                .pods_rejected,
            1
        );
    }
    let d = p.read(75, &[("a", one(0.0, 1e12 + 75.0), 75)]);
    assert_eq!((d.pods_warming, d.observation.pods_new), (1, 1));
    assert_eq!(d.observation.output_tokens, 0.0);
    let d = p.read(90, &[("a", one(0.0, 1e12 + 90.0), 90)]);
    assert_eq!(d.observation.output_tokens, 15.0);
    assert_eq!(
        d.observation.unaccounted_seconds, 45.0,
        "the skipped span, reported"
    );
}

#[test]
fn the_process_start_time_tells_a_restart_from_a_glitch() {
    let mut p = Pool::new(1);
    let started = (at(-100).timestamp()) as f64;
    p.read(-15, &[("a", pod(&[(0.0, 7000.0)], Some(started)), -15)]);
    let d = p.read(0, &[("a", pod(&[(0.0, 8000.0)], Some(started)), 0)]);
    assert_eq!(
        d.observation.output_tokens, 8000.0,
        "all of it, counted from zero"
    );
    // Down without a restart: a glitch, kept out.
    let d = p.read(15, &[("a", pod(&[(0.0, 10.0)], Some(started)), 15)]);
    assert_eq!(d.pods_rejected, 1);
    // A restart at t=20 that claims 90,000 tokens in its 10 s: beyond 4x 1,000 tok/s.
    let restarted = at(20).timestamp() as f64;
    let d = p.read(30, &[("a", pod(&[(0.0, 90_000.0)], Some(restarted)), 30)]);
    assert_eq!(d.pods_rejected, 1);
    // A plausible one: counted from zero, and the 20 s before it are unaccounted.
    let d = p.read(45, &[("a", pod(&[(0.0, 2000.0)], Some(restarted)), 45)]);
    assert_eq!(d.observation.output_tokens, 2000.0);
    assert_eq!(d.observation.unaccounted_seconds, 20.0);
}

#[test]
fn a_new_pod_counts_from_zero_when_its_process_started_since_the_pool_was_tracked() {
    let mut p = Pool::new(2);
    p.tracked_since = at(0);
    p.read(0, &[("a", one(0.0, 0.0), 0)]);
    let b_started = Some(at(5).timestamp() as f64);
    let d = p.read(
        15,
        &[
            ("a", one(0.0, 1500.0), 15),
            ("b", pod(&[(0.0, 700.0)], b_started), 15),
        ],
    );
    // b's first sample is its rates' baseline; its tokens wait for its next reading.
    assert_eq!(d.observation.output_tokens, 1500.0);
    assert_eq!(d.observation.pods_new, 1);
    assert!(!d.observation.is_complete());
    let d = p.read(
        30,
        &[
            ("a", one(0.0, 3000.0), 30),
            ("b", pod(&[(0.0, 1000.0)], b_started), 30),
        ],
    );
    // Everything b counted since it started: 1,000, and its rate over its own 15 s.
    assert_eq!(d.observation.output_tokens, 1500.0 + 1000.0);
    assert_eq!(d.observation.output_tokens_per_second, 100.0 + 20.0);
    assert!(d.observation.is_complete());
    // Without a start time there is no proof: the span since the last reading is unaccounted.
    p.expected = 3;
    p.read(
        45,
        &[
            ("a", one(0.0, 4500.0), 45),
            ("b", pod(&[(0.0, 1300.0)], b_started), 45),
            ("c", one(0.0, 50.0), 45),
        ],
    );
    let d = p.read(
        60,
        &[
            ("a", one(0.0, 6000.0), 60),
            ("b", pod(&[(0.0, 1600.0)], b_started), 60),
            ("c", one(0.0, 80.0), 60),
        ],
    );
    assert_eq!(d.observation.output_tokens, 1500.0 + 300.0 + 30.0);
    assert_eq!(d.observation.unaccounted_seconds, 15.0);
}

#[test]
fn a_pod_that_did_not_answer_keeps_its_baseline_and_counts_later() {
    let mut p = Pool::new(2);
    p.read(0, &[("a", one(0.0, 0.0), 0), ("b", one(0.0, 0.0), 0)]);
    let d = p.read(15, &[("a", one(0.0, 1500.0), 15)]);
    assert!(!d.observation.is_complete());
    assert_eq!(d.observation.output_tokens, 1500.0);
    assert!(
        d.observation.baselines.iter().any(|b| b.pod == "b"),
        "b carried forward"
    );
    let d = p.read(
        30,
        &[("a", one(0.0, 3000.0), 30), ("b", one(0.0, 3000.0), 30)],
    );
    assert_eq!(d.observation.output_tokens, 1500.0 + 3000.0);
}

#[test]
fn a_restarted_operator_counts_the_exact_increments_across_its_gap() {
    let mut p = Pool::new(1);
    p.read(0, &[("a", one(0.0, 0.0), 0)]);
    p.read(15, &[("a", one(0.0, 1500.0), 15)]);
    p.restart_operator();
    // An hour later the first sample is only the rates' baseline...
    let d = p.read(3615, &[("a", one(0.0, 1500.0 + 360_000.0), 3615)]);
    assert_eq!((d.pods_counted, d.pods_warming), (0, 1));
    // ...and the next reading counts everything since the persisted baseline, with the rate of
    // its own interval (never an average over the gap).
    let d = p.read(3630, &[("a", one(0.0, 1500.0 + 361_500.0), 3630)]);
    assert_eq!(d.observation.output_tokens, 361_500.0);
    assert_eq!(d.observation.output_tokens_per_second, 100.0);
    assert_eq!(d.observation.unaccounted_seconds, 0.0);
}

#[test]
fn tokens_count_from_the_persisted_baseline_when_a_status_write_failed() {
    let mut p = Pool::new(1);
    p.read(0, &[("a", one(0.0, 0.0), 0)]);
    p.read(15, &[("a", one(0.0, 1500.0), 15)]);
    let written = p.saved.clone();
    // The reading at 30 counted 1,500 more, but its status write failed: status still holds
    // the baseline of 15.
    p.read(30, &[("a", one(0.0, 3000.0), 30)]);
    p.saved = written;
    let d = p.read(45, &[("a", one(0.0, 4500.0), 45)]);
    assert_eq!(
        d.observation.output_tokens, 3000.0,
        "counted once, from what status holds"
    );
    assert_eq!(d.observation.output_tokens_per_second, 100.0);
}

#[test]
fn persisted_baselines_are_bounded() {
    let mut p = Pool::new(100);
    let names: Vec<String> = (0..100).map(|i| format!("p{i:03}")).collect();
    let pods: Vec<(&str, Reading, i64)> = names
        .iter()
        .map(|n| (n.as_str(), one(0.0, 0.0), 0))
        .collect();
    let d = p.read(0, &pods);
    assert_eq!(d.observation.baselines.len(), MAX_PERSISTED_BASELINES);
}

#[test]
fn quantiles_by_hand() {
    // 10 observations: 2 in (0, 0.1], 6 in (0.1, 0.5], 2 in (0.5, 1]
    let b = [(0.1, 2.0), (0.5, 8.0), (1.0, 10.0), (INF, 10.0)];
    assert!((histogram_quantile(0.5, &b).unwrap() - 0.3).abs() < 1e-12);
    assert!((histogram_quantile(0.9, &b).unwrap() - 0.75).abs() < 1e-12);
    assert!((histogram_quantile(0.1, &b).unwrap() - 0.05).abs() < 1e-12);
    assert_eq!(
        histogram_quantile(0.9, &[(1.0, 1.0), (INF, 10.0)]),
        Some(1.0)
    );
    assert_eq!(histogram_quantile(0.5, &[(1.0, 0.0), (INF, 0.0)]), None);
    assert_eq!(histogram_quantile(0.5, &[(1.0, 3.0)]), None);
}

#[test]
fn ttft_quantiles_from_interval_deltas_summed_over_pods() {
    let with = |buckets: &[(f64, f64)]| {
        let mut b = ReadingBuilder::default();
        for (le, n) in buckets {
            let le = if le.is_infinite() {
                "+Inf".to_string()
            } else {
                le.to_string()
            };
            b.add(
                "vllm:time_to_first_token_seconds_bucket",
                [("le", le.as_str())],
                *n,
            )
            .unwrap();
        }
        b.add("vllm:generation_tokens_total", [], 0.0).unwrap();
        b.add("vllm:prompt_tokens_total", [], 0.0).unwrap();
        b.finish()
    };
    let old = [(0.1, 1000.0), (0.5, 1000.0), (1.0, 1000.0), (INF, 1000.0)];
    let mut p = Pool::new(2);
    p.read(0, &[("a", with(&old), 0), ("b", with(&old), 0)]);
    let a = [(0.1, 1002.0), (0.5, 1005.0), (1.0, 1005.0), (INF, 1005.0)];
    let b = [(0.1, 1000.0), (0.5, 1003.0), (1.0, 1005.0), (INF, 1005.0)];
    let d = p.read(10, &[("a", with(&a), 10), ("b", with(&b), 10)]);
    assert!((d.observation.ttft_p50_seconds.unwrap() - 0.3).abs() < 1e-12);
    assert!((d.observation.ttft_p90_seconds.unwrap() - 0.75).abs() < 1e-12);
}

#[test]
fn derive_from_real_format_fixtures() {
    let base = parse_reading(include_str!("../testdata/v1-two-engines.txt")).unwrap();
    let mut later = base.clone();
    for v in later.generation_tokens.values_mut() {
        *v += 750.0;
    }
    for v in later.prompt_tokens.values_mut() {
        *v += 2250.0;
    }
    let mut p = Pool::new(1);
    p.read(0, &[("p", base, 0)]);
    let d = p.read(15, &[("p", later, 15)]);
    let o = &d.observation;
    assert_eq!(o.output_tokens_per_second, 100.0);
    assert_eq!(o.input_tokens_per_second, 300.0);
    assert_eq!(o.requests_running, 12.0);
    assert_eq!(o.requests_waiting, 3.0);
    assert_eq!(o.kv_cache_usage, 0.5);
    // no new requests in the interval: no TTFT to report, not a TTFT of zero
    assert_eq!(o.ttft_p50_seconds, None);
}

/// What happens to one pod at one reading.
#[derive(Clone, Copy, Debug)]
enum Event {
    Normal,
    /// It does not answer.
    Silent,
    /// The source has not scraped it again: the previous sample, same time.
    Stale,
    /// One series reads infinite.
    Malformed,
    /// One series reads 1e18.
    Glitch,
    /// One series is served twice (two jobs), once lagging by one sample.
    Duplicate,
    /// The operator restarts before this reading (memory lost, status kept).
    OperatorRestart,
}

fn event() -> impl Strategy<Value = Event> {
    prop_oneof![
        6 => Just(Event::Normal),
        2 => Just(Event::Silent),
        2 => Just(Event::Stale),
        1 => Just(Event::Malformed),
        1 => Just(Event::Glitch),
        1 => Just(Event::Duplicate),
        1 => Just(Event::OperatorRestart),
    ]
}

proptest! {
    // Over any sequence of readings with malformed values, glitches, duplicate series, gaps,
    // stale samples, partial pods and operator restarts: token increments are never negative,
    // never exceed the true increments, are exact once every pod answered cleanly, and any
    // reading that misses a pod's load is flagged incomplete.
    #[test]
    fn increments_never_exceed_the_truth_and_incomplete_data_says_so(
        steps in prop::collection::vec(
            (prop::collection::vec(event(), 3), prop::collection::vec((0u32..=600, 0u32..=600), 3)),
            1..30,
        ),
    ) {
        let started = at(-500).timestamp() as f64;
        let mut pool = Pool::new(3);
        let names = ["a", "b", "c"];
        // True counters per pod and engine (output only; input mirrors it x3).
        let mut truth = [[0.0f64; 2]; 3];
        let mut last_sample: [Option<(Reading, i64)>; 3] = [None, None, None];
        let mut previous_strike = [false; 3];
        let mut counted = 0.0;
        let mut lossy = false;
        let first_all_answered = steps[0]
            .0
            .iter()
            .all(|e| matches!(e, Event::Normal | Event::Duplicate | Event::OperatorRestart));
        for (i, (events, adds)) in steps.iter().enumerate() {
            let now = 15 * (i as i64 + 1);
            let mut pods = Vec::new();
            let mut clean = true;
            let mut missing = false;
            let mut restart = false;
            for (k, ((ev, (e0, e1)), name)) in events.iter().zip(adds).zip(names).enumerate() {
                // Served over the 15 s: at most 1,200 tok/s, within the 4x 1,000 bound.
                truth[k][0] += f64::from(*e0) * 15.0;
                truth[k][1] += f64::from(*e1) * 15.0;
                let engines: Vec<(f64, f64)> = truth[k].iter().map(|g| (g * 3.0, *g)).collect();
                let good = pod(&engines, Some(started));
                // A pod rejected last time reads cleanly now (a lasting shift is another test).
                let ev = if previous_strike[k] { Event::Normal } else { *ev };
                previous_strike[k] = matches!(ev, Event::Malformed | Event::Glitch);
                match ev {
                    Event::Normal | Event::OperatorRestart => {
                        restart |= matches!(ev, Event::OperatorRestart);
                        last_sample[k] = Some((good.clone(), now));
                        pods.push((name, good, now));
                    }
                    Event::Silent => {
                        clean = false;
                        missing = true;
                    }
                    Event::Stale => {
                        clean = false;
                        if let Some((r, t)) = last_sample[k].clone() {
                            pods.push((name, r, t));
                        }
                    }
                    Event::Malformed | Event::Glitch => {
                        clean = false;
                        missing = true;
                        let mut bad = good.clone();
                        let v = if matches!(ev, Event::Malformed) { INF } else { 1e18 };
                        *bad.generation_tokens.values_mut().next().unwrap() = v;
                        pods.push((name, bad, now));
                    }
                    Event::Duplicate => {
                        let mut b = ReadingBuilder::default();
                        for (job, scale) in [("x", 1.0), ("y", 0.99)] {
                            for (e, (p, g)) in engines.iter().enumerate() {
                                let e = e.to_string();
                                let l = [("job", job), ("engine", e.as_str()), ("model_name", "m")];
                                b.add("vllm:prompt_tokens_total", l, p * scale).unwrap();
                                b.add("vllm:generation_tokens_total", l, g * scale).unwrap();
                            }
                        }
                        b.add("process_start_time_seconds", [], started).unwrap();
                        let r = b.finish();
                        last_sample[k] = Some((r.clone(), now));
                        pods.push((name, r, now));
                    }
                }
            }
            if restart {
                // A pod with nothing persisted yet loses what memory held of it: written off.
                lossy |= names.iter().any(|n| !pool.saved.iter().any(|b| b.pod == *n));
                pool.restart_operator();
            }
            let d = pool.read(now, &pods);
            let o = &d.observation;
            prop_assert!(o.output_tokens >= 0.0 && o.input_tokens >= 0.0);
            prop_assert!(o.unaccounted_seconds >= 0.0);
            counted += o.output_tokens;
            let served: f64 = truth.iter().flatten().sum();
            prop_assert!(counted <= served + 1e-6, "counted {counted} > served {served}");
            if missing {
                prop_assert!(!o.is_complete(), "a reading missing a pod's load was complete");
            }
            // Every pod's process started before the first reading and exposes its start time:
            // when all answered the first reading, then once all answer cleanly, everything served
            // has been counted (a pod first seen later has no baseline for what it served before).
            // (A pod warming up, after an operator restart, counts with its next reading.)
            let all_normal = events.iter().all(|e| matches!(e, Event::Normal));
            if i > 0 && !lossy && clean && first_all_answered && all_normal && d.pods_warming == 0 {
                prop_assert!((counted - served).abs() < 1e-6, "counted {counted}, served {served}");
            }
        }
    }
}
