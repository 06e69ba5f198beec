//! The pure heart of a reconcile: from the pool, its stored status, the Deployment's counts and
//! what observing the pool gave, decide the replica count, the next status and the Events that
//! explain the change. Every input comes in as data, so this is tested without a cluster.

use chrono::{DateTime, Utc};
use kube::runtime::events::EventType;

use super::observe::Outcome;
use super::status::{self, ConditionUpdate};
use crate::api::{
    Cheaper, CostStatus, InferencePool, InferencePoolStatus, LoadStatus, ScalingMode, Verdict,
    from_time, to_time,
};
use crate::cost;
use crate::format;
use crate::load::Observation;
use crate::provisioning::{self, ProvisioningInput, ProvisioningPolicy};
use crate::sizing::{self, SizingInput};

/// What the reconcile reads before deciding.
pub struct Inputs<'a> {
    pub pool: &'a InferencePool,
    /// The Deployment's spec.replicas (None before it exists).
    pub current_replicas: Option<i32>,
    /// The Deployment's status: provisioned and ready pods.
    pub deployment_replicas: i32,
    pub ready_replicas: i32,
    pub outcome: &'a Outcome,
    pub now: DateTime<Utc>,
}

/// An Event to publish.
#[derive(Debug, Clone, PartialEq)]
pub struct Note {
    pub type_: EventType,
    pub reason: &'static str,
    pub message: String,
}

/// What the reconcile then writes.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub desired_replicas: i32,
    pub status: InferencePoolStatus,
    pub events: Vec<Note>,
}

pub fn decide(inp: &Inputs) -> Plan {
    let pool = inp.pool;
    let spec = &pool.spec;
    let generation = pool.metadata.generation;
    let prev = pool.status.clone().unwrap_or_default();
    let (min, max) = (spec.min_replicas, spec.max_replicas.max(spec.min_replicas));
    let current = inp.current_replicas.unwrap_or(min);
    let mut events = Vec::new();
    let mut s = prev.clone();

    // Sizing runs on every fresh or missing reading; a reading too close to the last one, or the
    // first after a restart, changes nothing but the bounds.
    let observation = match inp.outcome {
        Outcome::Fresh(o) => Some(o),
        _ => None,
    };
    let decision = matches!(
        inp.outcome,
        Outcome::Fresh(_) | Outcome::Missing(_) | Outcome::NotServing(_)
    )
    .then(|| {
        let input = SizingInput {
            observation: observation.cloned(),
            current_replicas: current,
            ready_replicas: inp.ready_replicas,
            last_scale_time: prev.last_scale_time.as_ref().map(from_time),
            learned_output_tokens_per_second: prev
                .load
                .as_ref()
                .and_then(|l| l.learned_output_tokens_per_second),
        };
        sizing::recommend(
            spec,
            &input,
            &prev.sizing.clone().unwrap_or_default(),
            inp.now,
        )
    });

    let (desired, limited) = match spec.scaling.mode {
        ScalingMode::External => {
            let wanted = spec.replicas.unwrap_or(min);
            let d = wanted.clamp(min, max);
            (d, (d != wanted).then(|| format!("{wanted} replicas requested; held at {d} (minReplicas {min}, maxReplicas {max})")))
        }
        ScalingMode::Auto => {
            match &decision {
                Some(d) => (d.desired_replicas.clamp(min, max), d.limited.clone()),
                None => {
                    let d = current.clamp(min, max);
                    (d, (d != current).then(|| format!("{current} replicas held at {d} (minReplicas {min}, maxReplicas {max})")))
                }
            }
        }
    };
    if let Some(d) = &decision {
        s.sizing = Some(d.status.clone());
    }
    let utilization = decision.as_ref().and_then(|d| d.utilization);

    if let Some(obs) = observation {
        update_load(&mut s, spec, obs, utilization, inp.ready_replicas, inp.now);
        let accounted = update_cost(&mut s, &prev, spec, obs, desired, utilization, inp.now);
        if let Err(e) = accounted {
            events.push(Note {
                type_: EventType::Warning,
                reason: "CostUnavailable",
                message: e,
            });
        }
    }

    // The verdict: judged on fresh and missing readings, kept as is otherwise.
    if matches!(inp.outcome, Outcome::Fresh(_) | Outcome::Missing(_)) {
        let verdict = provisioning::assess(
            &ProvisioningInput {
                spec,
                observation,
                utilization,
                replicas: desired.max(0) as u32,
                ready_replicas: inp.ready_replicas.max(0) as u32,
                previous: prev.provisioning.as_ref(),
                now: inp.now,
            },
            &ProvisioningPolicy::default(),
        );
        let was = prev.provisioning.as_ref().map(|p| p.verdict);
        if was != Some(verdict.verdict) && !(was.is_none() && verdict.verdict == Verdict::Unknown) {
            let type_ = if matches!(verdict.verdict, Verdict::RightSized | Verdict::Unknown) {
                EventType::Normal
            } else {
                EventType::Warning
            };
            events.push(Note {
                type_,
                reason: "Provisioning",
                message: format!("{:?}: {}", verdict.verdict, verdict.message),
            });
        }
        s.provisioning = Some(verdict);
    }

    let mut s = status::with_replicas(
        &s,
        generation,
        super::build::selector_string(&pool.metadata.name.clone().unwrap_or_default()),
        inp.deployment_replicas.max(desired),
        inp.ready_replicas,
        desired,
    );
    let util_shown = s.load.as_ref().and_then(|l| l.utilization);
    s.display = Some(format::display(
        s.replicas,
        s.ready_replicas,
        util_shown,
        s.cost.as_ref(),
    ));

    // Conditions.
    status::set_condition(
        &mut s.conditions,
        status::ready_condition(desired, inp.ready_replicas),
        generation,
        inp.now,
    );
    let scaling = match &limited {
        Some(m) => ConditionUpdate::new(status::SCALING_LIMITED, true, "AtBound", m.clone()),
        None => ConditionUpdate::new(
            status::SCALING_LIMITED,
            false,
            "WithinBounds",
            "replicas are within minReplicas and maxReplicas",
        ),
    };
    status::set_condition(&mut s.conditions, scaling, generation, inp.now);
    if let Some(update) = metrics_condition(
        inp.outcome,
        decision.as_ref().and_then(|d| d.held.clone()),
        &s,
        spec.capacity.output_tokens_per_second,
    ) {
        let was_true = prev
            .conditions
            .iter()
            .find(|c| c.type_ == status::METRICS_AVAILABLE)
            .is_none_or(|c| c.status == "True");
        // One Warning when data that should be there goes missing; a starting pool is no fault.
        if !update.status && was_true && matches!(update.reason.as_str(), "NoData" | "PartialData")
        {
            events.push(Note {
                type_: EventType::Warning,
                reason: "MetricsUnavailable",
                message: format!("{}; holding at {desired} replicas", update.message),
            });
        }
        status::set_condition(&mut s.conditions, update, generation, inp.now);
    }
    if let Some(c) = &s.cost {
        status::set_condition(&mut s.conditions, cost_condition(c), generation, inp.now);
        let was = prev.cost.as_ref().map(|p| p.cheaper);
        if was.is_some_and(|w| w != c.cheaper) || (was.is_none() && c.cheaper != Cheaper::Unknown) {
            events.push(Note {
                type_: EventType::Normal,
                reason: "CostComparison",
                message: cost_message(c),
            });
        }
    }

    if inp.current_replicas.is_some_and(|c| c != desired) {
        s.last_scale_time = Some(to_time(inp.now));
        let reason = decision
            .as_ref()
            .filter(|_| spec.scaling.mode == ScalingMode::Auto)
            .map(|d| d.reason.clone())
            .unwrap_or_else(|| format!("{current} → {desired}: set through the scale subresource"));
        events.push(Note {
            type_: EventType::Normal,
            reason: "Scaled",
            message: reason,
        });
    }
    Plan {
        desired_replicas: desired,
        status: s,
        events,
    }
}

fn update_load(
    s: &mut InferencePoolStatus,
    spec: &crate::api::InferencePoolSpec,
    obs: &Observation,
    utilization: Option<f64>,
    ready: i32,
    now: DateTime<Utc>,
) {
    let prev = s.load.clone().unwrap_or_default();
    let sustained = s
        .sizing
        .as_ref()
        .is_some_and(|h| sizing::queue_sustained(spec, h, now));
    s.load = Some(LoadStatus {
        input_tokens_per_second: obs.input_tokens_per_second,
        output_tokens_per_second: obs.output_tokens_per_second,
        requests_per_second: obs.requests_per_second,
        requests_running: obs.requests_running,
        requests_waiting: obs.requests_waiting,
        kv_cache_usage: obs.kv_cache_usage,
        utilization,
        ttft_p50_seconds: obs.ttft_p50_seconds,
        ttft_p90_seconds: obs.ttft_p90_seconds,
        mean_output_tokens_per_request: obs.mean_output_tokens_per_request,
        pods_observed: Some(format!("{}/{}", obs.pods_observed, obs.pods_expected)),
        observed_at: Some(to_time(now)),
        learned_output_tokens_per_second: sizing::learn_capacity(
            prev.learned_output_tokens_per_second,
            obs,
            ready,
            sustained,
        ),
        learned_input_tokens_per_second: prev.learned_input_tokens_per_second,
    });
}

/// Month-to-date accrues the span since it was last accounted; the run-rate is a trailing average
/// over `spec.cost.runRateWindowSeconds`, kept in status (tokens per month) so a restart resumes it.
fn update_cost(
    s: &mut InferencePoolStatus,
    prev: &InferencePoolStatus,
    spec: &crate::api::InferencePoolSpec,
    obs: &Observation,
    replicas: i32,
    utilization: Option<f64>,
    now: DateTime<Utc>,
) -> Result<(), String> {
    let interval = f64::from(spec.scaling.interval_seconds.max(1));
    let prev_mtd = prev.cost.as_ref().and_then(|c| c.month_to_date.as_ref());
    let from = prev_mtd
        .map(|m| from_time(&m.accounted_until))
        .unwrap_or(now - chrono::Duration::milliseconds((interval * 1000.0) as i64));
    let span = super::observe::seconds_between(from, now);
    let replicas_u = replicas.max(0) as u32;
    let mtd = cost::accumulate(
        prev_mtd,
        spec,
        from,
        now,
        replicas_u,
        obs.input_tokens_per_second * span,
        obs.output_tokens_per_second * span,
    );

    // Trailing average of the token rates: an exact mean while less than the window has been
    // observed, then an exponential average with the window as its time constant. Both the
    // average (as tokens per month) and the span it covers live in status, so a restart resumes it.
    let window = f64::from(spec.cost.run_rate_window_seconds.max(60));
    let last_at = prev
        .load
        .as_ref()
        .and_then(|l| l.observed_at.as_ref())
        .map(from_time);
    let (in_rate, out_rate, covered) = match (prev.cost.as_ref(), last_at) {
        (Some(c), Some(at)) => {
            let dt = super::observe::seconds_between(at, now).clamp(0.001, window);
            let covered = (c.run_rate_seconds.unwrap_or(0.0) + dt).min(window);
            let weight = dt / covered;
            let old_in = c.input_tokens_per_month / cost::SECONDS_PER_MONTH;
            let old_out = c.output_tokens_per_month / cost::SECONDS_PER_MONTH;
            (
                old_in + weight * (obs.input_tokens_per_second - old_in),
                old_out + weight * (obs.output_tokens_per_second - old_out),
                covered,
            )
        }
        _ => (
            obs.input_tokens_per_second,
            obs.output_tokens_per_second,
            interval.min(window),
        ),
    };
    match cost::run_rate(spec, in_rate, out_rate, replicas_u, utilization, Some(mtd)) {
        Ok(mut c) => {
            c.run_rate_seconds = Some(covered);
            s.cost = Some(c);
            Ok(())
        }
        Err(e) => Err(format!("cannot price the pool: {e}")),
    }
}

fn metrics_condition(
    outcome: &Outcome,
    held: Option<String>,
    s: &InferencePoolStatus,
    configured: Option<f64>,
) -> Option<ConditionUpdate> {
    let learned = s
        .load
        .as_ref()
        .and_then(|l| l.learned_output_tokens_per_second);
    let disagreement = sizing::capacity_disagreement(configured, learned)
        .map(|m| format!("; {m}"))
        .unwrap_or_default();
    match outcome {
        Outcome::Fresh(o) if o.is_complete() => Some(ConditionUpdate::new(
            status::METRICS_AVAILABLE,
            true,
            "Observed",
            format!(
                "{}/{} pods reported{disagreement}",
                o.pods_observed, o.pods_expected
            ),
        )),
        Outcome::Fresh(o) if o.pods_observed + o.pods_new >= o.pods_expected => {
            Some(ConditionUpdate::new(
                status::METRICS_AVAILABLE,
                true,
                "NewPods",
                format!(
                    "{}/{} pods reported; {} new pod(s) count from the next interval{disagreement}",
                    o.pods_observed, o.pods_expected, o.pods_new
                ),
            ))
        }
        Outcome::Fresh(o) => Some(ConditionUpdate::new(
            status::METRICS_AVAILABLE,
            false,
            "PartialData",
            format!(
                "{} of {} Ready pods reported; the pool is not scaled down on partial data{}",
                o.pods_observed,
                o.pods_expected,
                held.map(|h| format!(" ({h})")).unwrap_or_default()
            ),
        )),
        Outcome::Missing(why) => Some(ConditionUpdate::new(
            status::METRICS_AVAILABLE,
            false,
            "NoData",
            format!("{why}; the pool is held at its size"),
        )),
        Outcome::NotServing(why) => Some(ConditionUpdate::new(
            status::METRICS_AVAILABLE,
            false,
            "NoReadyPods",
            why.clone(),
        )),
        Outcome::WarmingUp
            if !s
                .conditions
                .iter()
                .any(|c| c.type_ == status::METRICS_AVAILABLE) =>
        {
            Some(ConditionUpdate::new(
                status::METRICS_AVAILABLE,
                false,
                "WarmingUp",
                "first reading taken; rates follow after one interval",
            ))
        }
        _ => None,
    }
}

fn cost_message(c: &CostStatus) -> String {
    format!(
        "pool {}/month against {}/month on the API: {}",
        format::usd(c.pool_monthly_usd),
        format::usd(c.api_monthly_usd),
        format::cheaper(c.cheaper, c.ratio)
    )
}

fn cost_condition(c: &CostStatus) -> ConditionUpdate {
    let message = cost_message(c);
    match c.cheaper {
        Cheaper::SelfHosted => {
            ConditionUpdate::new(status::COST_EFFECTIVE, true, "SelfHostedCheaper", message)
        }
        Cheaper::SelfHostRequired => ConditionUpdate::new(
            status::COST_EFFECTIVE,
            true,
            "SelfHostRequired",
            format!("{message} (the API is not allowed for this data)"),
        ),
        Cheaper::Api => ConditionUpdate::new(status::COST_EFFECTIVE, false, "APICheaper", message),
        Cheaper::Unknown => ConditionUpdate::new(
            status::COST_EFFECTIVE,
            false,
            "Unknown",
            "no API prices to compare with (set spec.compareTo)",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::InferencePoolSpec;

    fn pool(extra: &str) -> InferencePool {
        let spec: InferencePoolSpec = serde_saphyr::from_str(&format!(
            "model: m\nminReplicas: 1\nmaxReplicas: 4\ncapacity: {{outputTokensPerSecond: 1000}}\ncost: {{replicaHourlyUsd: 2}}\ncompareTo: {{model: gpt-5, inputUsdPerMillionTokens: 2.5, outputUsdPerMillionTokens: 10}}\n{extra}"
        ))
        .unwrap();
        let mut p = InferencePool::new("p", spec);
        p.metadata.namespace = Some("ns".into());
        p.metadata.generation = Some(1);
        p
    }

    /// One reconcile of a pool whose Deployment runs and serves `replicas`.
    fn settled(p: &InferencePool, replicas: i32, outcome: &Outcome, now: DateTime<Utc>) -> Plan {
        decide(&Inputs {
            pool: p,
            current_replicas: Some(replicas),
            deployment_replicas: replicas,
            ready_replicas: replicas,
            outcome,
            now,
        })
    }

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000, 0).unwrap()
    }

    fn obs(out_tps: f64) -> Observation {
        Observation {
            input_tokens_per_second: out_tps * 5.0,
            output_tokens_per_second: out_tps,
            pods_observed: 2,
            pods_expected: 2,
            ..Observation::default()
        }
    }

    #[test]
    fn load_above_capacity_scales_up_with_an_event_that_carries_the_numbers() {
        let p = pool("");
        let outcome = Outcome::Fresh(obs(2000.0));
        let plan = settled(&p, 2, &outcome, now());
        assert_eq!(
            plan.desired_replicas, 3,
            "2,000 tok/s at 70% of 1,000 needs 3"
        );
        let scaled = plan
            .events
            .iter()
            .find(|e| e.reason == "Scaled")
            .expect("a Scaled event");
        assert!(scaled.message.contains("2 → 3"), "{}", scaled.message);
        assert_eq!(plan.status.last_scale_time, Some(to_time(now())));
        assert!(plan.status.cost.is_some());
        assert!(plan.status.display.as_ref().unwrap().pool_monthly.is_some());
    }

    #[test]
    fn missing_metrics_hold_the_size_and_warn_once() {
        let mut p = pool("");
        let outcome = Outcome::Missing("2 of 2 pods could not be scraped".into());
        let plan = settled(&p, 3, &outcome, now());
        assert_eq!(plan.desired_replicas, 3);
        let c = plan
            .status
            .conditions
            .iter()
            .find(|c| c.type_ == "MetricsAvailable")
            .unwrap();
        assert_eq!((c.status.as_str(), c.reason.as_str()), ("False", "NoData"));
        assert_eq!(
            plan.events
                .iter()
                .filter(|e| e.reason == "MetricsUnavailable")
                .count(),
            1
        );
        // The next reconcile, still without data: no second Warning.
        p.status = Some(plan.status);
        let again = settled(&p, 3, &outcome, now() + chrono::Duration::seconds(15));
        assert_eq!(again.desired_replicas, 3);
        assert!(
            again
                .events
                .iter()
                .all(|e| e.reason != "MetricsUnavailable")
        );
    }

    #[test]
    fn external_mode_copies_spec_replicas_within_bounds() {
        let p = pool("replicas: 9\nscaling: {mode: External}");
        let plan = settled(&p, 1, &Outcome::TooSoon, now());
        assert_eq!(plan.desired_replicas, 4);
        let c = plan
            .status
            .conditions
            .iter()
            .find(|c| c.type_ == "ScalingLimited")
            .unwrap();
        assert_eq!(c.status, "True");
    }

    #[test]
    fn a_reading_too_soon_changes_nothing_once_settled() {
        let mut p = pool("");
        let first = settled(&p, 1, &Outcome::TooSoon, now());
        p.status = Some(first.status.clone());
        let second = settled(
            &p,
            1,
            &Outcome::TooSoon,
            now() + chrono::Duration::seconds(30),
        );
        assert_eq!(second.status, first.status, "status unchanged: no write");
        assert!(second.events.is_empty());
    }

    #[test]
    fn month_to_date_accrues_only_the_span_since_it_was_accounted() {
        let mut p = pool("");
        let o = Outcome::Fresh(obs(100.0));
        let a = settled(&p, 1, &o, now());
        p.status = Some(a.status.clone());
        let b = settled(&p, 1, &o, now() + chrono::Duration::seconds(15));
        let (ma, mb) = (
            a.status.cost.clone().unwrap().month_to_date.unwrap(),
            b.status.cost.clone().unwrap().month_to_date.unwrap(),
        );
        assert!(
            (mb.output_tokens - ma.output_tokens - 1500.0).abs() < 1e-6,
            "15 s at 100 tok/s"
        );
        // Replaying the same instant (a restart re-reading it) adds nothing.
        p.status = Some(b.status.clone());
        let c = settled(&p, 1, &o, now() + chrono::Duration::seconds(15));
        assert_eq!(
            c.status.cost.unwrap().month_to_date.unwrap().output_tokens,
            mb.output_tokens
        );
    }
}
