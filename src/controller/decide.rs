//! The pure heart of a reconcile: from the pool, its stored status, the Deployment's counts, the
//! pool's pods and what observing the pool gave, decide the replica count, the next status and the
//! Events that explain the change. Every input comes in as data, so this is tested without a
//! cluster. The steps, in order: size, record the load, account the money, judge the size, fill
//! the replica counts and conditions, note a scale.

use chrono::{DateTime, Utc};
use kube::runtime::events::EventType;

use super::accounting::{self, MoneyInputs};
use super::observe::Outcome;
use super::status::{self, ConditionUpdate, Problem};
use crate::api::{
    Cheaper, CostStatus, InferencePool, InferencePoolStatus, LoadStatus, ScalingMode, Verdict,
    from_time, to_time,
};
use crate::cost::ProvisionedPod;
use crate::format;
use crate::load::Observation;
use crate::provisioning::{self, ProvisioningInput, ProvisioningPolicy};
use crate::sizing::{self, Decision, SizingInput};

/// What the reconcile reads before deciding.
pub struct Inputs<'a> {
    pub pool: &'a InferencePool,
    /// The Deployment's spec.replicas (None when it does not exist: deleted, orphaned or new).
    pub current_replicas: Option<i32>,
    /// The Deployment's status: pods that exist, and pods that serve.
    pub deployment_replicas: i32,
    pub ready_replicas: i32,
    /// Pods not ready yet but within the startup probe's budget: capacity on its way.
    pub starting_replicas: i32,
    /// The pool's pods that hold GPUs, for billing.
    pub pods: &'a [ProvisionedPod],
    /// Why pods cannot start, when they cannot (Pod Security, quota, no free GPU, image pull).
    pub problem: Option<Problem>,
    /// The previous reconcile's look at the pods (memory only).
    pub last_look: Option<DateTime<Utc>>,
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

/// The replica count, with what limited it and the policy's decision behind it.
struct Replicas {
    /// The Deployment's replicas, or the last desired count when the Deployment is gone.
    current: i32,
    desired: i32,
    limited: Option<String>,
    decision: Option<Decision>,
}

pub fn decide(inp: &Inputs) -> Plan {
    let prev = inp.pool.status.clone().unwrap_or_default();
    let spec = &inp.pool.spec;
    let observation = match inp.outcome {
        Outcome::Fresh(o) => Some(o),
        _ => None,
    };
    let replicas = size(inp, &prev, observation);
    let utilization = replicas.decision.as_ref().and_then(|d| d.utilization);
    let mut events = Vec::new();
    let mut s = prev.clone();
    if let Some(d) = &replicas.decision {
        s.sizing = Some(d.status.clone());
    }
    if let Some(obs) = observation {
        update_load(&mut s, spec, obs, utilization, inp.ready_replicas, inp.now);
    }

    let money = accounting::account(&MoneyInputs {
        spec,
        prev: &prev,
        observation,
        pods: inp.pods,
        utilization: utilization.or(prev.load.as_ref().and_then(|l| l.utilization)),
        created: inp.pool.metadata.creation_timestamp.as_ref().map(from_time),
        last_look: inp.last_look,
        now: inp.now,
    });
    s.cost = money.cost;
    events.extend(money.events);

    if matches!(
        inp.outcome,
        Outcome::Fresh(_) | Outcome::Missing(_) | Outcome::Misconfigured { .. }
    ) {
        let (verdict, note) = judge(inp, &prev, observation, utilization, replicas.desired);
        events.extend(note);
        s.provisioning = Some(verdict);
    }

    let mut s = status::with_replicas(
        &s,
        inp.pool.metadata.generation,
        super::build::selector_string(&inp.pool.metadata.name.clone().unwrap_or_default()),
        inp.deployment_replicas,
        inp.ready_replicas,
        replicas.desired,
    );
    s.service_name = Some(super::build::service_name(
        inp.pool.metadata.name.as_deref().unwrap_or_default(),
    ));
    let util_shown = s.load.as_ref().and_then(|l| l.utilization);
    s.display = Some(format::display(
        s.replicas,
        s.ready_replicas,
        util_shown,
        s.cost.as_ref(),
    ));
    events.extend(set_conditions(inp, &prev, &mut s, &replicas));
    events.extend(note_scale(inp, &prev, &mut s, &replicas));
    Plan {
        desired_replicas: replicas.desired,
        status: s,
        events,
    }
}

/// Runs the sizing policy on fresh and missing readings (a reading too close to the last one, or
/// the first after a restart, changes nothing but the bounds) and applies the mode and bounds.
fn size(inp: &Inputs, prev: &InferencePoolStatus, observation: Option<&Observation>) -> Replicas {
    let spec = &inp.pool.spec;
    let (min, max) = (spec.min_replicas, spec.max_replicas.max(spec.min_replicas));
    // A deleted or orphaned Deployment comes back at the size it had, not at minReplicas: an
    // orphaned ReplicaSet adopted by a Deployment of minReplicas would scale live pods down.
    let current = inp
        .current_replicas
        .or(prev.desired_replicas)
        .unwrap_or(min);
    let decision = matches!(
        inp.outcome,
        Outcome::Fresh(_)
            | Outcome::Missing(_)
            | Outcome::Misconfigured { .. }
            | Outcome::NotServing(_)
    )
    .then(|| {
        let input = SizingInput {
            observation: observation.cloned(),
            current_replicas: current,
            ready_replicas: inp.ready_replicas,
            starting_replicas: inp.starting_replicas,
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
    Replicas {
        current,
        desired,
        limited,
        decision,
    }
}

/// The provisioning verdict for this reading, and an Event when it changes.
fn judge(
    inp: &Inputs,
    prev: &InferencePoolStatus,
    observation: Option<&Observation>,
    utilization: Option<f64>,
    desired: i32,
) -> (crate::api::ProvisioningStatus, Option<Note>) {
    let verdict = provisioning::assess(
        &ProvisioningInput {
            spec: &inp.pool.spec,
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
    let note = (was != Some(verdict.verdict)
        && !(was.is_none() && verdict.verdict == Verdict::Unknown))
        .then(|| Note {
            type_: if matches!(verdict.verdict, Verdict::RightSized | Verdict::Unknown) {
                EventType::Normal
            } else {
                EventType::Warning
            },
            reason: verdict_reason(verdict.verdict),
            message: verdict.message.clone(),
        });
    (verdict, note)
}

/// The Event reason for a new verdict: the verdict itself, as people filter Events by it.
fn verdict_reason(v: Verdict) -> &'static str {
    match v {
        Verdict::RightSized => "RightSized",
        Verdict::OverProvisioned => "OverProvisioned",
        Verdict::UnderProvisioned => "UnderProvisioned",
        Verdict::Idle => "Idle",
        Verdict::Unknown => "ProvisioningUnknown",
    }
}

/// Ready, ScalingLimited, MetricsAvailable and CostEffective, with the Events their changes call for.
fn set_conditions(
    inp: &Inputs,
    prev: &InferencePoolStatus,
    s: &mut InferencePoolStatus,
    replicas: &Replicas,
) -> Vec<Note> {
    let generation = inp.pool.metadata.generation;
    let desired = replicas.desired;
    let mut events = Vec::new();
    status::set_condition(
        &mut s.conditions,
        status::ready_condition(desired, inp.ready_replicas, inp.problem.as_ref()),
        generation,
        inp.now,
    );
    let scaling = match &replicas.limited {
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
        replicas.decision.as_ref().and_then(|d| d.held.clone()),
        s,
        inp.pool.spec.capacity.output_tokens_per_second,
    ) {
        let was_true = prev
            .conditions
            .iter()
            .find(|c| c.type_ == status::METRICS_AVAILABLE)
            .is_none_or(|c| c.status == "True");
        // One Warning when data that should be there goes missing; a starting pool is no fault.
        let missing = matches!(
            inp.outcome,
            Outcome::Missing(_) | Outcome::Misconfigured { .. }
        ) || update.reason == "PartialData";
        if !update.is_true() && was_true && missing {
            events.push(Note {
                type_: EventType::Warning,
                reason: "MetricsUnavailable",
                message: format!("{}; holding at {desired} replicas", update.message),
            });
        }
        status::set_condition(&mut s.conditions, update, generation, inp.now);
    }
    if let Some(update) =
        scrape_interval_condition(inp.outcome, inp.pool.spec.scaling.interval_seconds)
    {
        status::set_condition(&mut s.conditions, update, generation, inp.now);
    }
    if let Some(c) = &s.cost {
        status::set_condition(&mut s.conditions, cost_condition(c), generation, inp.now);
        let was = prev.cost.as_ref().map(|p| p.cheaper);
        let known = |c: Cheaper| c != Cheaper::Unknown;
        if known(c.cheaper) && was.is_some_and(|w| w != c.cheaper)
            || (was.is_none_or(|w| !known(w)) && known(c.cheaper))
        {
            events.push(Note {
                type_: EventType::Normal,
                reason: "CostComparison",
                message: cost_message(c),
            });
        }
    }
    events
}

/// Records a change of the replica count: `lastScaleTime` and a Scaled Event. Compared with the
/// last decided count (in status), not the Deployment's: when a write after the scale failed, the
/// retry still records it.
fn note_scale(
    inp: &Inputs,
    prev: &InferencePoolStatus,
    s: &mut InferencePoolStatus,
    replicas: &Replicas,
) -> Option<Note> {
    let before = prev.desired_replicas.or(inp.current_replicas)?;
    if before == replicas.desired {
        return None;
    }
    s.last_scale_time = Some(to_time(inp.now));
    let why = replicas
        .decision
        .as_ref()
        .filter(|_| inp.pool.spec.scaling.mode == ScalingMode::Auto)
        .map(|d| d.reason.clone())
        .unwrap_or_else(|| {
            format!(
                "{before} → {}: set through the scale subresource",
                replicas.desired
            )
        });
    let _ = replicas.current;
    Some(Note {
        type_: EventType::Normal,
        reason: "Scaled",
        message: why,
    })
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
        baselines: obs.baselines.clone(),
    });
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
                "{} of {} Ready pods reported{}; the pool is not scaled down on partial data{}",
                o.pods_observed,
                o.pods_expected,
                o.rejected
                    .as_ref()
                    .map(|r| format!(" (kept out as missing data: {r})"))
                    .unwrap_or_default(),
                held.map(|h| format!(" ({h})")).unwrap_or_default()
            ),
        )),
        Outcome::Missing(why) => Some(ConditionUpdate::new(
            status::METRICS_AVAILABLE,
            false,
            "NoData",
            format!("{why}; the pool is held at its size"),
        )),
        Outcome::Misconfigured { reason, message } => Some(ConditionUpdate::new(
            status::METRICS_AVAILABLE,
            false,
            reason,
            format!("{message}; the pool is held at its size"),
        )),
        // Prometheus has not scraped since the last reading: nothing changed, nothing to say.
        Outcome::NoNewData { .. } => None,
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
            Some(ConditionUpdate::unknown(
                status::METRICS_AVAILABLE,
                "WarmingUp",
                "first reading taken; rates follow after one interval",
            ))
        }
        _ => None,
    }
}

/// Whether the pool's interval is at least the source's scrape interval: shorter, every other
/// reading (or more) has nothing new, so decisions come later than the interval promises.
fn scrape_interval_condition(outcome: &Outcome, interval_seconds: i32) -> Option<ConditionUpdate> {
    let scrape = outcome.scrape_interval_seconds()?.round();
    let interval = f64::from(interval_seconds);
    Some(if interval + 0.5 >= scrape {
        ConditionUpdate::new(
            status::SCRAPE_INTERVAL_ALIGNED,
            true,
            "ScrapeKeepsUp",
            format!(
                "Prometheus scrapes the pods every {scrape:.0} s, at least once per spec.scaling.intervalSeconds ({interval_seconds} s)"
            ),
        )
    } else {
        ConditionUpdate::new(
            status::SCRAPE_INTERVAL_ALIGNED,
            false,
            "IntervalShorterThanScrape",
            format!(
                "Prometheus scrapes the pods every {scrape:.0} s but spec.scaling.intervalSeconds is {interval_seconds}: readings without a new sample are skipped, so the pool reacts every {scrape:.0} s at best; set intervalSeconds to {scrape:.0} or more"
            ),
        )
    })
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
        Cheaper::Unknown if c.api_model.is_some() => ConditionUpdate::unknown(
            status::COST_EFFECTIVE,
            "NoTrafficYet",
            format!(
                "pool {}/month; no traffic observed yet to price on the API (break-even {} input tokens/month)",
                format::usd(c.pool_monthly_usd),
                c.break_even_input_tokens_per_month
                    .map(format::tokens)
                    .unwrap_or_else(|| "-".into())
            ),
        ),
        Cheaper::Unknown => ConditionUpdate::unknown(
            status::COST_EFFECTIVE,
            "NoAPIPrices",
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

    fn long_ago() -> DateTime<Utc> {
        now() - chrono::Duration::days(2)
    }

    fn running(n: i32) -> Vec<ProvisionedPod> {
        (0..n)
            .map(|_| ProvisionedPod {
                scheduled_at: long_ago(),
                ended_at: None,
            })
            .collect()
    }

    /// One reconcile of a pool whose Deployment runs and serves `replicas`.
    fn settled(p: &InferencePool, replicas: i32, outcome: &Outcome, now: DateTime<Utc>) -> Plan {
        with_pods(p, replicas, &running(replicas), outcome, now)
    }

    fn with_pods(
        p: &InferencePool,
        replicas: i32,
        pods: &[ProvisionedPod],
        outcome: &Outcome,
        now: DateTime<Utc>,
    ) -> Plan {
        looked(p, replicas, pods, outcome, now, None)
    }

    fn looked(
        p: &InferencePool,
        replicas: i32,
        pods: &[ProvisionedPod],
        outcome: &Outcome,
        now: DateTime<Utc>,
        last_look: Option<DateTime<Utc>>,
    ) -> Plan {
        decide(&Inputs {
            pool: p,
            current_replicas: Some(replicas),
            deployment_replicas: replicas,
            ready_replicas: replicas,
            starting_replicas: 0,
            pods,
            problem: None,
            last_look,
            outcome,
            now,
        })
    }

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000, 0).unwrap()
    }

    /// A reading over the last 15 s at `out_tps` output tok/s (and five times that in input).
    fn obs(out_tps: f64) -> Observation {
        Observation {
            input_tokens_per_second: out_tps * 5.0,
            output_tokens_per_second: out_tps,
            input_tokens: out_tps * 5.0 * 15.0,
            output_tokens: out_tps * 15.0,
            covered_seconds: 15.0,
            pods_observed: 2,
            pods_expected: 2,
            ..Observation::default()
        }
    }

    fn mtd(plan: &Plan) -> crate::api::MonthToDate {
        plan.status.cost.clone().unwrap().month_to_date.unwrap()
    }

    fn after(seconds: i64) -> DateTime<Utc> {
        now() + chrono::Duration::seconds(seconds)
    }

    #[test]
    fn load_above_capacity_scales_up_with_an_event_that_carries_the_numbers() {
        let mut p = pool("");
        p.status = Some(InferencePoolStatus {
            desired_replicas: Some(2),
            ..Default::default()
        });
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
    fn a_scale_whose_status_write_failed_is_recorded_on_the_retry() {
        // The Deployment already went to 3, the status still says 2.
        let mut p = pool("");
        p.status = Some(InferencePoolStatus {
            desired_replicas: Some(2),
            ..Default::default()
        });
        let plan = settled(&p, 3, &Outcome::Fresh(obs(2500.0)), now());
        assert_eq!(plan.desired_replicas, 3);
        assert_eq!(plan.status.last_scale_time, Some(to_time(now())));
        assert!(plan.events.iter().any(|e| e.reason == "Scaled"));
    }

    #[test]
    fn a_deleted_deployment_comes_back_at_the_last_desired_size() {
        let mut p = pool("");
        p.status = Some(InferencePoolStatus {
            desired_replicas: Some(4),
            ..Default::default()
        });
        let plan = decide(&Inputs {
            pool: &p,
            current_replicas: None,
            deployment_replicas: 0,
            ready_replicas: 0,
            starting_replicas: 0,
            pods: &[],
            problem: None,
            last_look: None,
            outcome: &Outcome::NotServing("the Deployment does not exist yet".into()),
            now: now(),
        });
        assert_eq!(plan.desired_replicas, 4, "not minReplicas (1)");
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
        let again = settled(&p, 3, &outcome, after(15));
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
    fn a_reconcile_within_the_interval_changes_nothing_once_settled() {
        let mut p = pool("");
        let first = settled(&p, 1, &Outcome::TooSoon, now());
        p.status = Some(first.status.clone());
        let second = settled(&p, 1, &Outcome::TooSoon, after(5));
        assert_eq!(second.status, first.status, "status unchanged: no write");
        assert!(second.events.is_empty());
        // Five minutes later the hardware is brought up to date, metrics or not; sooner when
        // the pods billed change.
        let third = settled(&p, 1, &Outcome::TooSoon, after(300));
        assert!(mtd(&third).replica_hours > mtd(&first).replica_hours);
        let fourth = settled(&p, 2, &Outcome::TooSoon, after(20));
        assert!(mtd(&fourth).replica_hours > mtd(&first).replica_hours);
    }

    #[test]
    fn tokens_accrue_from_counter_increments_not_a_rate_times_the_span() {
        let mut p = pool("");
        let a = settled(&p, 1, &Outcome::Fresh(obs(100.0)), now());
        p.status = Some(a.status.clone());
        // A 10-minute outage, then a reading whose increments cover 30 s only (the pods were
        // replaced): 30 s of tokens are counted, and nothing is extrapolated over the gap.
        let mut o = obs(100.0);
        o.output_tokens = 3000.0;
        o.input_tokens = 15_000.0;
        o.covered_seconds = 30.0;
        o.unaccounted_seconds = 570.0;
        let b = settled(&p, 1, &Outcome::Fresh(o), after(600));
        let (ma, mb) = (mtd(&a), mtd(&b));
        assert!((mb.output_tokens - ma.output_tokens - 3000.0).abs() < 1e-6);
        assert!((mb.unaccounted_seconds - 570.0).abs() < 1e-6);
        // Hardware covers the whole 600 s for the one pod that was there throughout.
        assert!((mb.replica_hours - ma.replica_hours - 600.0 / 3600.0).abs() < 1e-9);
    }

    #[test]
    fn hardware_bills_scheduled_pods_not_the_desired_count() {
        let mut p = pool("");
        let a = settled(&p, 1, &Outcome::Missing("down".into()), now());
        p.status = Some(a.status.clone());
        // The policy wants 4; one pod runs, and the three new ones got no GPU (no node).
        let b = with_pods(
            &p,
            4,
            &running(1),
            &Outcome::Missing("down".into()),
            after(300),
        );
        let billed = mtd(&b).replica_hours - mtd(&a).replica_hours;
        assert!((billed - 300.0 / 3600.0).abs() < 1e-9, "{billed}");
        // Pool/mo is never blank, even with no metrics ever.
        assert!(b.status.display.unwrap().pool_monthly.is_some());
    }

    #[test]
    fn a_new_pool_bills_its_first_model_load() {
        let mut p = pool("");
        p.metadata.creation_timestamp = Some(to_time(now() - chrono::Duration::minutes(10)));
        let pod = ProvisionedPod {
            scheduled_at: now() - chrono::Duration::minutes(9),
            ended_at: None,
        };
        let plan = with_pods(&p, 1, &[pod], &Outcome::NotServing("loading".into()), now());
        let billed = mtd(&plan).replica_hours;
        assert!((billed - 9.0 / 60.0).abs() < 1e-9, "{billed}");
    }

    #[test]
    fn a_new_month_keeps_the_previous_one_and_says_so() {
        let mut p = pool("");
        let end_of_march = DateTime::parse_from_rfc3339("2027-03-31T23:59:50Z")
            .unwrap()
            .with_timezone(&Utc);
        let a = settled(&p, 1, &Outcome::Fresh(obs(10.0)), end_of_march);
        p.status = Some(a.status.clone());
        let b = settled(
            &p,
            1,
            &Outcome::Fresh(obs(10.0)),
            end_of_march + chrono::Duration::seconds(15),
        );
        let cost = b.status.cost.unwrap();
        assert_eq!(cost.month_to_date.unwrap().period, "2027-04");
        let march = cost.previous_month.unwrap();
        assert_eq!(march.period, "2027-03");
        assert!(march.replica_hours > mtd(&a).replica_hours);
        let event = b.events.iter().find(|e| e.reason == "MonthClosed").unwrap();
        assert!(event.message.contains("2027-03"), "{}", event.message);
    }

    /// What the pool's metrics gave at one reconcile, for the property below.
    #[derive(Clone, Debug)]
    enum Reading {
        /// Every pod answered: `(output tok/s, waiting requests)`.
        Complete(f64, f64),
        /// Some pod did not answer.
        Partial(f64, u32),
        Missing,
        NoNewData,
        TooSoon,
        WarmingUp,
    }

    fn reading() -> impl proptest::strategy::Strategy<Value = Reading> {
        use proptest::prelude::*;
        prop_oneof![
            4 => (0.0f64..8000.0, 0.0f64..20.0).prop_map(|(o, w)| Reading::Complete(o, w)),
            2 => (0.0f64..8000.0, 1u32..3).prop_map(|(o, m)| Reading::Partial(o, m)),
            1 => Just(Reading::Missing),
            1 => Just(Reading::NoNewData),
            1 => Just(Reading::TooSoon),
            1 => Just(Reading::WarmingUp),
        ]
    }

    proptest::proptest! {
        // Over any sequence of readings (partial, missing, stale, too early, warming) and pods
        // that come and go: the pool never shrinks on incomplete data; month-to-date tokens are
        // exactly the increments the readings carried (never more); hardware is the integral of
        // the pods holding GPUs, within half a span for each pod that left between two looks.
        #[test]
        fn money_and_size_hold_over_any_sequence_of_readings(
            steps in proptest::collection::vec((reading(), 1i64..400, 0i32..5, 0.0f64..1.0), 1..40),
        ) {
            let mut p = pool("");
            let mut t = now();
            let mut current = 2;
            let mut pods: Vec<ProvisionedPod> = running(2);
            // The first reconcile opens the books; everything after is measured from it.
            let first = with_pods(&p, current, &pods, &Outcome::TooSoon, t);
            let opened = mtd(&first).replica_hours;
            p.status = Some(first.status);
            let mut served = 0.0;
            let mut truth_seconds = 0.0;
            let mut slack_seconds = 0.0;
            for (r, dt, want_pods, left_at) in steps {
                let next = t + chrono::Duration::seconds(dt);
                // Pods that stay bill the whole span; new ones from when they were scheduled;
                // those that leave, until some moment within it.
                let want = want_pods as usize;
                let mut kept: Vec<ProvisionedPod> = pods.iter().copied().take(want).collect();
                let left = pods.len().saturating_sub(want);
                truth_seconds += kept.len() as f64 * dt as f64 + left as f64 * left_at * dt as f64;
                slack_seconds += left as f64 * dt as f64 / 2.0 + 1e-6;
                while kept.len() < want {
                    let at = t + chrono::Duration::seconds(dt / 2);
                    truth_seconds += (next - at).num_seconds() as f64;
                    kept.push(ProvisionedPod { scheduled_at: at, ended_at: None });
                }
                pods = kept;
                let fresh = match r {
                    Reading::Complete(out, waiting) => Some((out, waiting, 0)),
                    Reading::Partial(out, missing) => Some((out, 0.0, missing)),
                    _ => None,
                };
                let outcome = match (fresh, r) {
                    (Some((out, waiting, missing)), _) => {
                        let mut o = obs(out);
                        o.requests_waiting = waiting;
                        o.output_tokens = out * dt as f64;
                        o.covered_seconds = dt as f64;
                        o.pods_expected = current.max(1) as u32;
                        o.pods_observed = o.pods_expected.saturating_sub(missing);
                        served += o.output_tokens;
                        Outcome::Fresh(o)
                    }
                    (None, Reading::Missing) => Outcome::Missing("down".into()),
                    (None, Reading::NoNewData) => Outcome::NoNewData { scrape_interval_seconds: Some(30.0) },
                    (None, Reading::TooSoon) => Outcome::TooSoon,
                    (None, _) => Outcome::WarmingUp,
                };
                let incomplete = !matches!(&outcome, Outcome::Fresh(o) if o.is_complete());
                let plan = looked(&p, current, &pods, &outcome, next, Some(t));
                if incomplete {
                    proptest::prop_assert!(
                        plan.desired_replicas >= current,
                        "{current} -> {} on {outcome:?}", plan.desired_replicas
                    );
                }
                let m = mtd(&plan);
                proptest::prop_assert!(m.output_tokens <= served + 1e-6 * served.max(1.0));
                current = plan.desired_replicas;
                p.status = Some(plan.status);
                t = next;
            }
            // Bring the money up to date and compare.
            let last = looked(&p, current, &pods, &Outcome::Missing("down".into()), t + chrono::Duration::seconds(301), Some(t));
            truth_seconds += pods.len() as f64 * 301.0;
            let m = mtd(&last);
            proptest::prop_assert!((m.output_tokens - served).abs() <= 1e-6 * served.max(1.0),
                "tokens {} vs {served}", m.output_tokens);
            let billed = (m.replica_hours - opened) * 3600.0;
            proptest::prop_assert!(
                (billed - truth_seconds).abs() <= slack_seconds + 1e-6 * truth_seconds,
                "billed {billed} s, provisioned {truth_seconds} s, slack {slack_seconds}"
            );
        }
    }
}
