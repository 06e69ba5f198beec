//! The provisioning verdict: is the pool the right size for its load? Each reading is classified
//! (Unknown, Idle, UnderProvisioned, OverProvisioned, RightSized) and the published verdict only
//! changes once a new classification has held for its window, so it does not flap.

use crate::api::{InferencePoolSpec, ProvisioningStatus, ScalingMode, Verdict};
use crate::cost::ReplicaPrice;
use crate::format;
use crate::load::Observation;
use chrono::{DateTime, Utc};

/// Below this share of ready capacity a pool counts as over-provisioned. 30% is well under the
/// usual 70% target, so a pool sized for its peak at 20% average use is caught, and normal
/// trough-to-peak swings of a right-sized pool are not.
pub const LOW_UTILIZATION_THRESHOLD: f64 = 0.30;

/// Default window a new Idle or OverProvisioned reading must hold before it becomes the verdict.
pub const DEFAULT_WINDOW_SECONDS: i64 = 600;

/// How long each classification must hold before the verdict changes to it. UnderProvisioned uses
/// `spec.scaling.saturation.queueSustainedSeconds`, the user's own definition of "sustained".
#[derive(Clone, Debug, PartialEq)]
pub struct ProvisioningPolicy {
    pub idle_window_seconds: i64,
    pub over_provisioned_window_seconds: i64,
    /// Before an alarm (Idle, Over, Under) is withdrawn.
    pub right_sized_window_seconds: i64,
    /// Before a verdict is dropped for lack of metrics: one failed scrape must not erase it.
    pub unknown_window_seconds: i64,
    pub low_utilization_threshold: f64,
}

impl Default for ProvisioningPolicy {
    fn default() -> Self {
        Self {
            idle_window_seconds: DEFAULT_WINDOW_SECONDS,
            over_provisioned_window_seconds: DEFAULT_WINDOW_SECONDS,
            right_sized_window_seconds: 300,
            unknown_window_seconds: 60,
            low_utilization_threshold: LOW_UTILIZATION_THRESHOLD,
        }
    }
}

impl ProvisioningPolicy {
    fn window_seconds(&self, verdict: Verdict, spec: &InferencePoolSpec) -> i64 {
        match verdict {
            Verdict::Idle => self.idle_window_seconds,
            Verdict::OverProvisioned => self.over_provisioned_window_seconds,
            Verdict::UnderProvisioned => i64::from(spec.scaling.saturation.queue_sustained_seconds),
            Verdict::RightSized => self.right_sized_window_seconds,
            Verdict::Unknown => self.unknown_window_seconds,
        }
    }
}

/// What the verdict is judged from, for one reconcile.
#[derive(Clone, Debug)]
pub struct ProvisioningInput<'a> {
    pub spec: &'a InferencePoolSpec,
    /// The load over the last interval; None when no metrics could be read.
    pub observation: Option<&'a Observation>,
    /// Work over ready capacity (1.0 = full); None while the capacity per replica is unknown.
    pub utilization: Option<f64>,
    /// Replicas provisioned (billing, ready or not).
    pub replicas: u32,
    /// Replicas serving.
    pub ready_replicas: u32,
    /// `status.provisioning` as last written: carries the verdict and the debounce timer across
    /// reconciles and restarts.
    pub previous: Option<&'a ProvisioningStatus>,
    pub now: DateTime<Utc>,
}

/// One reading's classification, before debouncing.
#[derive(Clone, Debug, PartialEq)]
pub struct Reading {
    pub verdict: Verdict,
    /// The numbers behind it.
    pub message: String,
}

/// Classifies the current reading alone. Priority: no metrics, then saturation (a queue with no
/// tokens is a stuck pool, not an idle one), then idle, then utilization.
pub fn classify(input: &ProvisioningInput, policy: &ProvisioningPolicy) -> Reading {
    let spec = input.spec;
    let Some(obs) = input.observation.filter(|o| o.pods_observed > 0) else {
        let message = match input.observation {
            Some(o) => format!("no metrics: 0 of {} pods answered", o.pods_expected),
            None => "no metrics from the pool's pods".to_string(),
        };
        return Reading {
            verdict: Verdict::Unknown,
            message,
        };
    };
    let replica_usd_per_month = ReplicaPrice::from_spec(&spec.cost)
        .ok()
        .map(|p| p.usd_per_month());
    let max_replicas = u32::try_from(spec.max_replicas).unwrap_or(0);
    let at_max = input.replicas >= max_replicas;

    let mut pressure = Vec::new();
    if obs.requests_waiting > 0.0 {
        pressure.push(format!("{:.0} requests queued", obs.requests_waiting));
    }
    if let (Some(ttft), Some(slo)) = (
        obs.ttft_p90_seconds,
        spec.scaling.saturation.ttft_p90_slo_seconds,
    ) && ttft > slo
    {
        pressure.push(format!("TTFT p90 {ttft:.2}s over the {slo:.2}s SLO"));
    }
    if at_max {
        if let Some(u) = input.utilization.filter(|u| *u >= 1.0) {
            pressure.push(format!(
                "utilization {} at maxReplicas={max_replicas}",
                format::percent(u)
            ));
        }
        let kv_threshold = spec.scaling.saturation.kv_cache_threshold;
        if obs.kv_cache_usage >= kv_threshold {
            pressure.push(format!(
                "KV cache {} (threshold {}) at maxReplicas={max_replicas}",
                format::percent(obs.kv_cache_usage),
                format::percent(kv_threshold)
            ));
        }
    }
    if !pressure.is_empty() {
        let mut message = pressure.join("; ");
        if !at_max {
            message.push_str(&format!(
                "; {} more replicas allowed before maxReplicas={max_replicas}",
                max_replicas - input.replicas
            ));
        }
        return Reading {
            verdict: Verdict::UnderProvisioned,
            message,
        };
    }

    // Idle, OverProvisioned and RightSized speak for the whole pool: a pod that did not answer
    // may be the busy one (an overloaded vLLM answers /metrics slowly).
    if !obs.is_complete() {
        return Reading {
            verdict: Verdict::Unknown,
            message: format!(
                "partial metrics: {} of {} pods answered; the size is judged on every pod",
                obs.pods_observed, obs.pods_expected
            ),
        };
    }

    if obs.input_tokens_per_second + obs.output_tokens_per_second <= 0.0 {
        let message = match replica_usd_per_month {
            Some(usd) => format!(
                "no tokens served; {} {}/month doing nothing",
                replicas_cost(input.replicas, ""),
                format::usd(usd * f64::from(input.replicas))
            ),
            None => format!("no tokens served by {} replicas", input.replicas),
        };
        return Reading {
            verdict: Verdict::Idle,
            message,
        };
    }

    let Some(utilization) = input.utilization.filter(|u| u.is_finite()) else {
        return Reading {
            verdict: Verdict::Unknown,
            message: "capacity per replica not known yet: set spec.capacity.outputTokensPerSecond or wait until a replica saturates".to_string(),
        };
    };
    let target = spec.capacity.target_or_default();
    let serving = if input.ready_replicas > 0 {
        input.ready_replicas
    } else {
        input.replicas
    };
    // Work in replicas' worth of capacity, and the fewest replicas that carry it at the target.
    let work_replicas = utilization.max(0.0) * f64::from(serving);
    let needed = ((work_replicas / target - 1e-9).ceil() as u32).max(1);
    let floor = u32::try_from(spec.min_replicas).unwrap_or(0).max(1);
    let held = input.replicas <= floor || spec.scaling.mode == ScalingMode::External;

    if utilization < policy.low_utilization_threshold && held {
        let excess = input.replicas.saturating_sub(needed);
        let message = if excess > 0 {
            let idle = match replica_usd_per_month {
                Some(usd) => format!(
                    "{} {}/month",
                    replicas_cost(excess, "idle "),
                    format::usd(usd * f64::from(excess))
                ),
                None => format!("{excess} replicas idle"),
            };
            let holder = if spec.scaling.mode == ScalingMode::External {
                "the external scaler keeps them".to_string()
            } else {
                format!("minReplicas={} keeps them", spec.min_replicas)
            };
            format!(
                "load fits {needed} of {} replicas at {} target; {idle} ({holder})",
                input.replicas,
                format::percent(target),
            )
        } else {
            let idle = replica_usd_per_month
                .map(|usd| {
                    let hardware = usd * f64::from(input.replicas);
                    format!(
                        "; {} of its {}/month hardware pays for idle capacity",
                        format::usd(hardware * (1.0 - utilization.clamp(0.0, 1.0))),
                        format::usd(hardware)
                    )
                })
                .unwrap_or_default();
            format!(
                "load uses {} of {} replica, under {}: the smallest pool is larger than the load{idle}",
                format::percent(utilization),
                input.replicas,
                format::percent(policy.low_utilization_threshold),
            )
        };
        return Reading {
            verdict: Verdict::OverProvisioned,
            message,
        };
    }

    let mut message = format!(
        "utilization {} of {serving} ready replicas (target {})",
        format::percent(utilization),
        format::percent(target)
    );
    if needed < input.replicas && needed >= floor {
        message.push_str(&format!("; load fits {needed}, scaling down"));
    } else if needed > input.replicas {
        message.push_str(&format!("; load needs {needed}, scaling up"));
    }
    Reading {
        verdict: Verdict::RightSized,
        message,
    }
}

/// `status.provisioning` for this reconcile: the reading, debounced against the previous status.
/// The verdict changes only once the new classification has held for its window (see
/// [`ProvisioningPolicy`]); until then the pending verdict and since when it holds are kept in
/// status, so an operator restart does not reset the clock. Leaving Unknown for RightSized is
/// immediate: there was no judgement to protect.
pub fn assess(input: &ProvisioningInput, policy: &ProvisioningPolicy) -> ProvisioningStatus {
    let reading = classify(input, policy);
    let now = input.now;
    let previous_verdict = input.previous.map_or(Verdict::Unknown, |p| p.verdict);
    let previous_since = input
        .previous
        .and_then(|p| p.since.as_ref())
        .map(crate::api::from_time)
        .unwrap_or(now);

    if reading.verdict == previous_verdict {
        let message = with_duration(&reading, now - previous_since);
        return status(reading.verdict, message, previous_since, None);
    }

    let pending_since = input
        .previous
        .filter(|p| p.pending_verdict == Some(reading.verdict))
        .and_then(|p| p.pending_since.as_ref())
        .map(crate::api::from_time)
        .unwrap_or(now)
        .min(now);
    let held = now - pending_since;
    let window_seconds = policy.window_seconds(reading.verdict, input.spec);
    let switch = held.num_seconds() >= window_seconds
        || (previous_verdict == Verdict::Unknown && reading.verdict == Verdict::RightSized);
    if switch {
        let message = with_duration(&reading, held);
        return status(reading.verdict, message, pending_since, None);
    }
    let message = format!(
        "{previous_verdict:?} until the change holds {}; {:?} for {} so far: {}",
        format::duration_seconds(window_seconds),
        reading.verdict,
        format::duration_seconds(held.num_seconds()),
        reading.message
    );
    status(
        previous_verdict,
        message,
        previous_since,
        Some((reading.verdict, pending_since)),
    )
}

/// "1 replica costs" / "3 idle replicas cost".
fn replicas_cost(n: u32, adjective: &str) -> String {
    if n == 1 {
        format!("1 {adjective}replica costs")
    } else {
        format!("{n} {adjective}replicas cost")
    }
}

fn with_duration(reading: &Reading, held: chrono::Duration) -> String {
    if reading.verdict == Verdict::Idle {
        // "no tokens served" is only news with how long it has lasted.
        reading.message.replacen(
            "no tokens served",
            &format!(
                "no tokens served for {}",
                format::duration_seconds(held.num_seconds())
            ),
            1,
        )
    } else {
        reading.message.clone()
    }
}

fn status(
    verdict: Verdict,
    message: String,
    since: DateTime<Utc>,
    pending: Option<(Verdict, DateTime<Utc>)>,
) -> ProvisioningStatus {
    ProvisioningStatus {
        verdict,
        message,
        since: Some(crate::api::to_time(since)),
        pending_verdict: pending.map(|(v, _)| v),
        pending_since: pending.map(|(_, at)| crate::api::to_time(at)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::InferencePool;
    use chrono::Duration;

    fn spec(min: i32, max: i32, hourly_usd: f64) -> InferencePoolSpec {
        let yaml = format!(
            r#"
apiVersion: crossover.dev/v1alpha1
kind: InferencePool
metadata: {{name: p}}
spec:
  model: m
  minReplicas: {min}
  maxReplicas: {max}
  capacity: {{outputTokensPerSecond: 1000, targetUtilization: 0.7}}
  scaling: {{saturation: {{ttftP90SloSeconds: 2.0}}}}
  cost: {{replicaHourlyUsd: {hourly_usd}}}
"#
        );
        serde_saphyr::from_str::<InferencePool>(&yaml).unwrap().spec
    }

    fn obs(tokens_per_second: f64) -> Observation {
        Observation {
            input_tokens_per_second: tokens_per_second * 3.0,
            output_tokens_per_second: tokens_per_second,
            pods_observed: 3,
            pods_expected: 3,
            ..Observation::default()
        }
    }

    fn t0() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-05-01T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    struct Case {
        name: &'static str,
        spec: InferencePoolSpec,
        observation: Option<Observation>,
        utilization: Option<f64>,
        replicas: u32,
        verdict: Verdict,
        message_has: &'static [&'static str],
    }

    #[test]
    fn classifies_each_reading() {
        let queued = Observation {
            requests_waiting: 12.0,
            ..obs(500.0)
        };
        let slow = Observation {
            ttft_p90_seconds: Some(3.5),
            ..obs(500.0)
        };
        let full_kv = Observation {
            kv_cache_usage: 0.95,
            ..obs(500.0)
        };
        let stuck = Observation {
            requests_waiting: 4.0,
            ..obs(0.0)
        };
        let silent = Observation {
            pods_observed: 0,
            ..obs(0.0)
        };
        let cases = [
            Case {
                name: "no metrics",
                spec: spec(1, 4, 3.29),
                observation: None,
                utilization: None,
                replicas: 2,
                verdict: Verdict::Unknown,
                message_has: &["no metrics"],
            },
            Case {
                name: "no pod answered",
                spec: spec(1, 4, 3.29),
                observation: Some(silent),
                utilization: None,
                replicas: 3,
                verdict: Verdict::Unknown,
                message_has: &["0 of 3 pods"],
            },
            Case {
                name: "no tokens",
                spec: spec(3, 4, 3.29),
                observation: Some(obs(0.0)),
                utilization: Some(0.0),
                replicas: 3,
                verdict: Verdict::Idle,
                message_has: &["3 replicas cost $7,205/month"],
            },
            Case {
                name: "queue",
                spec: spec(1, 4, 3.29),
                observation: Some(queued),
                utilization: Some(0.8),
                replicas: 2,
                verdict: Verdict::UnderProvisioned,
                message_has: &["12 requests queued", "2 more replicas allowed"],
            },
            Case {
                name: "ttft slo",
                spec: spec(1, 4, 3.29),
                observation: Some(slow),
                utilization: Some(0.8),
                replicas: 4,
                verdict: Verdict::UnderProvisioned,
                message_has: &["TTFT p90 3.50s over the 2.00s SLO"],
            },
            Case {
                name: "saturated at max",
                spec: spec(1, 4, 3.29),
                observation: Some(obs(900.0)),
                utilization: Some(1.1),
                replicas: 4,
                verdict: Verdict::UnderProvisioned,
                message_has: &["utilization 110% at maxReplicas=4"],
            },
            Case {
                name: "kv cache full at max",
                spec: spec(1, 4, 3.29),
                observation: Some(full_kv),
                utilization: Some(0.8),
                replicas: 4,
                verdict: Verdict::UnderProvisioned,
                message_has: &["KV cache 95%"],
            },
            Case {
                name: "saturated below max is the autoscaler's job",
                spec: spec(1, 4, 3.29),
                observation: Some(obs(900.0)),
                utilization: Some(1.1),
                replicas: 2,
                verdict: Verdict::RightSized,
                message_has: &["110%"],
            },
            Case {
                name: "a queue with no tokens is stuck, not idle",
                spec: spec(1, 4, 3.29),
                observation: Some(stuck),
                utilization: Some(0.0),
                replicas: 1,
                verdict: Verdict::UnderProvisioned,
                message_has: &["4 requests queued"],
            },
            Case {
                name: "floor keeps idle replicas",
                spec: spec(3, 6, 3.29),
                observation: Some(obs(100.0)),
                utilization: Some(0.2),
                replicas: 3,
                verdict: Verdict::OverProvisioned,
                message_has: &[
                    "load fits 1 of 3 replicas at 70% target; 2 idle replicas cost $4,803/month",
                    "minReplicas=3",
                ],
            },
            Case {
                name: "one replica larger than the load",
                spec: spec(1, 1, 1.0),
                observation: Some(obs(50.0)),
                utilization: Some(0.1),
                replicas: 1,
                verdict: Verdict::OverProvisioned,
                message_has: &["10% of 1 replica", "$657 of its $730/month"],
            },
            Case {
                name: "low but the autoscaler can shrink",
                spec: spec(1, 6, 3.29),
                observation: Some(obs(100.0)),
                utilization: Some(0.2),
                replicas: 3,
                verdict: Verdict::RightSized,
                message_has: &["load fits 1, scaling down"],
            },
            Case {
                name: "healthy",
                spec: spec(1, 4, 3.29),
                observation: Some(obs(500.0)),
                utilization: Some(0.55),
                replicas: 2,
                verdict: Verdict::RightSized,
                message_has: &["utilization 55% of 2 ready replicas (target 70%)"],
            },
            Case {
                name: "capacity unknown",
                spec: spec(1, 4, 3.29),
                observation: Some(obs(500.0)),
                utilization: None,
                replicas: 2,
                verdict: Verdict::Unknown,
                message_has: &["capacity"],
            },
        ];
        for case in cases {
            let input = ProvisioningInput {
                spec: &case.spec,
                observation: case.observation.as_ref(),
                utilization: case.utilization,
                replicas: case.replicas,
                ready_replicas: case.replicas,
                previous: None,
                now: t0(),
            };
            let reading = classify(&input, &ProvisioningPolicy::default());
            assert_eq!(
                reading.verdict, case.verdict,
                "{}: {}",
                case.name, reading.message
            );
            for part in case.message_has {
                assert!(
                    reading.message.contains(part),
                    "{}: {:?} lacks {part:?}",
                    case.name,
                    reading.message
                );
            }
        }
    }

    /// Runs readings one sync interval (15 s) apart, carrying status like the controller does, and
    /// returns the verdict after each.
    fn run(
        spec: &InferencePoolSpec,
        readings: &[(Option<f64>, f64)],
        replicas: u32,
    ) -> Vec<ProvisioningStatus> {
        let mut previous: Option<ProvisioningStatus> = None;
        let mut out = Vec::new();
        for (i, (tokens, utilization)) in readings.iter().enumerate() {
            let observation = tokens.map(obs);
            let input = ProvisioningInput {
                spec,
                observation: observation.as_ref(),
                utilization: Some(*utilization),
                replicas,
                ready_replicas: replicas,
                previous: previous.as_ref(),
                now: t0() + Duration::seconds(15 * i as i64),
            };
            let next = assess(&input, &ProvisioningPolicy::default());
            // Status round-trips through the API server between reconciles.
            let next: ProvisioningStatus =
                serde_json::from_value(serde_json::to_value(&next).unwrap()).unwrap();
            out.push(next.clone());
            previous = Some(next);
        }
        out
    }

    #[test]
    fn right_sized_at_once_from_unknown() {
        let s = spec(1, 4, 3.29);
        let out = run(&s, &[(Some(500.0), 0.55)], 2);
        assert_eq!(out[0].verdict, Verdict::RightSized);
        assert_eq!(out[0].pending_verdict, None);
    }

    #[test]
    fn over_provisioned_only_after_ten_minutes_and_says_so_meanwhile() {
        let s = spec(3, 6, 3.29);
        let mut readings = vec![(Some(500.0), 0.55)];
        readings.extend(std::iter::repeat_n((Some(100.0), 0.2), 41)); // 0 .. 600 s
        let out = run(&s, &readings, 3);
        assert_eq!(out[1].verdict, Verdict::RightSized);
        assert_eq!(out[1].pending_verdict, Some(Verdict::OverProvisioned));
        assert!(
            out[20].message.contains("OverProvisioned for 4m45s so far"),
            "{}",
            out[20].message
        );
        assert_eq!(out[40].verdict, Verdict::RightSized, "9m45s is not yet 10m");
        let last = out.last().unwrap();
        assert_eq!(last.verdict, Verdict::OverProvisioned);
        assert_eq!(
            last.since,
            Some(crate::api::to_time(t0() + Duration::seconds(15))),
            "since when it held"
        );
        assert_eq!(last.pending_verdict, None);
    }

    #[test]
    fn one_contrary_reading_does_not_flip_the_verdict() {
        let s = spec(3, 6, 3.29);
        let mut readings = vec![(Some(500.0), 0.55)];
        readings.extend(std::iter::repeat_n((Some(100.0), 0.2), 45));
        readings.push((Some(500.0), 0.6)); // one busy reading
        readings.extend(std::iter::repeat_n((Some(100.0), 0.2), 5));
        let out = run(&s, &readings, 3);
        assert!(
            out[42..]
                .iter()
                .all(|p| p.verdict == Verdict::OverProvisioned)
        );
        // ... and the busy reading resets nothing: the pending RightSized is dropped.
        assert_eq!(out.last().unwrap().pending_verdict, None);
    }

    #[test]
    fn idle_after_the_window_with_its_duration() {
        let s = spec(1, 4, 3.29);
        let mut readings = vec![(Some(500.0), 0.55)];
        readings.extend(std::iter::repeat_n((Some(0.0), 0.0), 60));
        let out = run(&s, &readings, 1);
        let last = out.last().unwrap();
        assert_eq!(last.verdict, Verdict::Idle);
        assert!(
            last.message.starts_with("no tokens served for 14m45s"),
            "{}",
            last.message
        );
        assert!(
            last.message.contains("1 replica costs $2,402/month"),
            "{}",
            last.message
        );
    }

    #[test]
    fn under_provisioned_after_the_queue_window() {
        let s = spec(1, 2, 3.29);
        // Saturated at maxReplicas=2: 30 s (queueSustainedSeconds) later it is the verdict.
        let readings = [
            (Some(500.0), 0.55),
            (Some(900.0), 1.2),
            (Some(900.0), 1.2),
            (Some(900.0), 1.2),
        ];
        let out = run(&s, &readings, 2);
        assert_eq!(out[2].verdict, Verdict::RightSized);
        assert_eq!(out[3].verdict, Verdict::UnderProvisioned);
    }

    #[test]
    fn a_missed_scrape_keeps_the_verdict() {
        let s = spec(1, 4, 3.29);
        let readings = [(Some(500.0), 0.55), (None, 0.0), (Some(500.0), 0.55)];
        let out = run(&s, &readings, 2);
        assert!(out.iter().all(|p| p.verdict == Verdict::RightSized));
        assert_eq!(out[1].pending_verdict, Some(Verdict::Unknown));
        let long_gap: Vec<_> = std::iter::once((Some(500.0), 0.55))
            .chain(std::iter::repeat_n((None, 0.0), 6))
            .collect();
        assert_eq!(
            run(&s, &long_gap, 2).last().unwrap().verdict,
            Verdict::Unknown
        );
    }
}
