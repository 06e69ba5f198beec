//! The sizing policy: how many replicas a pool should run for the load it observes. Pure and
//! deterministic: the controller and the simulator (`crossover simulate`) call the same
//! [`recommend`], and everything it must remember between calls travels in [`SizingStatus`].

use crate::api::{InferencePoolSpec, Recommendation, SizingStatus, from_time, to_time};
use crate::format::thousands;
use crate::load::Observation;
use chrono::{DateTime, TimeDelta, Utc};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

/// Rounding slack so that work of exactly 2.0 replicas asks for 2, not 3, after float noise.
const CEIL_EPSILON: f64 = 1e-9;

/// Smoothing weight of a new saturated reading in the learned capacity (EWMA).
pub const LEARN_EWMA_WEIGHT: f64 = 0.2;

/// Configured and learned capacity further apart than this share are reported as disagreeing.
pub const CAPACITY_DISAGREEMENT: f64 = 0.3;

/// What the policy needs to know besides the spec and its own history.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct SizingInput {
    /// Load over the last interval; `None` when metrics could not be read at all.
    pub observation: Option<Observation>,
    /// Replicas provisioned (the Deployment's spec.replicas): billing, ready or not.
    pub current_replicas: i32,
    /// Replicas serving traffic.
    pub ready_replicas: i32,
    /// When the replica count last changed.
    pub last_scale_time: Option<DateTime<Utc>>,
    /// Output tokens/s one replica achieved while saturated ([`learn_capacity`]); used only when
    /// `spec.capacity.outputTokensPerSecond` is unset.
    pub learned_output_tokens_per_second: Option<f64>,
}

/// What the policy decided, with everything the status and conditions need to explain it.
#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    /// Replicas to provision now.
    pub desired_replicas: i32,
    /// History to persist in `status.sizing` for the next call.
    pub status: SizingStatus,
    /// Work as a share of the ready replicas' capacity (1.0 = full); `None` without data or capacity.
    pub utilization: Option<f64>,
    /// For people, with the numbers: "3 → 5: 2,840 output tok/s against 1,890 of capacity at 70% target".
    pub reason: String,
    /// Set when a bound or step limit cut the recommendation (ScalingLimited condition).
    pub limited: Option<String>,
    /// Set when the policy held the pool because data was missing, partial or capacity unknown.
    pub held: Option<String>,
}

/// Recommends the replica count for `spec` given the latest observation and the persisted history.
///
/// Up fast, down slow: scale up to the lowest recommendation within the up window, down only to
/// the highest within the down window (as the HPA's behavior does). Never scales down on missing or
/// partial data, and does not add replicas for demand that replicas still starting will carry.
pub fn recommend(
    spec: &InferencePoolSpec,
    input: &SizingInput,
    history: &SizingStatus,
    now: DateTime<Utc>,
) -> Decision {
    let scaling = &spec.scaling;
    let min = spec.min_replicas.max(0);
    let max = spec.max_replicas.max(min);
    let current = input.current_replicas.max(0);
    let target = spec
        .capacity
        .target_utilization
        .clamp(f64::MIN_POSITIVE, 1.0);
    let up_window = TimeDelta::seconds(scaling.scale_up_stabilization_seconds.max(0) as i64);
    let down_window = TimeDelta::seconds(scaling.scale_down_stabilization_seconds.max(0) as i64);
    let load_window = TimeDelta::seconds(scaling.load_window_seconds.max(0) as i64);
    let keep_window = up_window.max(down_window).max(load_window);

    let mut status = history.clone();
    status
        .recommendations
        .retain(|r| now - from_time(&r.time) <= keep_window);

    let obs = input.observation.as_ref();
    let complete = obs.is_some_and(Observation::is_complete);

    // The queue timer survives restarts in status; an empty queue resets it, but only a complete
    // reading can say the queue is empty (a missing pod may hold the waiting requests).
    match obs {
        Some(o) if o.requests_waiting > 0.0 => {
            status.queue_since.get_or_insert_with(|| to_time(now));
        }
        Some(_) if complete => status.queue_since = None,
        _ => {}
    }

    // Replicas that were requested recently and are still loading are capacity on its way: while
    // they start, saturation is expected and must not trigger a second scale-up.
    let starting = current > input.ready_replicas
        && input
            .last_scale_time
            .is_none_or(|t| now - t < TimeDelta::seconds(scaling.startup_seconds.max(0) as i64));

    let capacity = Capacity::of(spec, input.learned_output_tokens_per_second);
    let work = match (obs, &capacity) {
        (Some(o), Some(c)) => Some(c.work_replicas(o)),
        _ => None,
    };
    let utilization =
        work.and_then(|w| (input.ready_replicas > 0).then(|| w / input.ready_replicas as f64));

    let mut saturation = obs
        .map(|o| saturation_signals(spec, o, status.queue_since.as_ref(), now))
        .unwrap_or_default();

    let malformed = obs.and_then(Observation::malformed);
    let (Some(o), None) = (obs, malformed) else {
        let held = match malformed {
            Some(what) => format!(
                "metrics malformed ({what} is NaN, infinite or negative): holding at {current} replicas"
            ),
            None => {
                format!("metrics missing: holding at {current} replicas until the load can be read")
            }
        };
        return Decision {
            desired_replicas: current,
            status,
            utilization: None,
            reason: format!("{current} → {current}: {held}"),
            limited: None,
            held: Some(held),
        };
    };

    // What the tokens ask for, before saturation, bounds and windows: the larger of
    // - demand: the mean work of the last loadWindowSeconds of readings at full capacity, plus the
    //   replicas that drain the queue within a startup (bursts shorter than the window are the
    //   queue's; served tokens alone cannot exceed the ready replicas' ceiling, so without the
    //   queue term a saturated pool would grow one replica per startup);
    // - headroom: the mean work over the scale-down window at the target utilization.
    // Held by the scale-down window, the demand term keeps the pool at the recent peak minute
    // through bursts that come and go faster than a replica starts; the target applies to the
    // average, not again to the peak (as the HPA's max of recommendations at target would).
    // What arrived is what was served plus what the queue grew by since the previous reading: a
    // saturated pool serves no more than its ceiling, however much more is coming.
    let backlog = backlog_replicas(o, work, scaling.startup_seconds);
    let arrived = work
        .map(|w| (w + queue_growth_replicas(o, w, status.recommendations.last(), now)).max(0.0));
    let sizing = arrived.map(|w| Sizing {
        now: w,
        recent: mean_work(&status.recommendations, now, load_window, w),
        backlog,
        average: mean_work(&status.recommendations, now, down_window, w),
        target,
    });
    let token_raw = sizing.as_ref().map(Sizing::replicas);
    let mut raw = token_raw.unwrap_or(current);
    let mut why = match (&capacity, &sizing) {
        (Some(c), Some(z)) => format!(
            "{} = {:.2} replicas of work; {}",
            c.describe(o),
            z.now,
            z.describe(load_window, down_window)
        ),
        _ => "no capacity known (set spec.capacity.outputTokensPerSecond or wait for a saturated \
              reading to learn it)"
            .to_string(),
    };

    let full = full_and_hidden(sizing.as_ref(), input.ready_replicas, o.requests_waiting);
    if let Some(share) = full {
        saturation.push(format!(
            "serving {:.0}% of capacity with nothing queued",
            share * 100.0
        ));
    }
    if !saturation.is_empty() {
        if starting {
            why.push_str(&format!(
                "; saturated ({}) but {} replica(s) still starting carry the demand",
                saturation.join(", "),
                current - input.ready_replicas
            ));
            raw = raw.max(current);
        } else if raw <= current
            && saturation_adds_one(sizing.as_ref(), input.ready_replicas, full.is_some())
        {
            raw = current + 1;
            why.push_str(&format!(
                "; saturated ({}): one more replica",
                saturation.join(", ")
            ));
        } else {
            why.push_str(&format!("; saturated ({})", saturation.join(", ")));
        }
    }

    let mut held = None;
    if capacity.is_none() {
        raw = raw.max(current);
        held = Some(format!(
            "no capacity known: holding at {current} replicas unless saturated"
        ));
    }
    if !complete {
        raw = raw.max(current);
        held = Some(format!(
            "partial metrics ({} of {} pods answered): not scaling down",
            o.pods_observed, o.pods_expected
        ));
    }

    let mut limited = None;
    let bounded = raw.clamp(min, max);
    if raw > max {
        limited = Some(format!("at maxReplicas ({max}): the load asks for {raw}"));
    } else if raw < min {
        limited = Some(format!("at minReplicas ({min}): the load asks for {raw}"));
    }

    status.recommendations.push(Recommendation {
        time: to_time(now),
        replicas: bounded,
        work_replicas: arrived,
        requests_waiting: Some(o.requests_waiting),
    });

    let in_window = |w: TimeDelta| {
        status
            .recommendations
            .iter()
            .filter(move |r| now - from_time(&r.time) <= w)
            .map(|r| r.replicas)
    };
    let up_to = in_window(up_window).min().unwrap_or(bounded);
    let down_to = in_window(down_window).max().unwrap_or(bounded);
    let mut desired = if current < up_to {
        up_to
    } else if current > down_to {
        down_to
    } else {
        current
    };
    if desired > current && desired < bounded {
        why.push_str(&format!(
            "; up-stabilization: lowest of the last {}s is {desired}",
            up_window.num_seconds()
        ));
    } else if bounded < current && desired > bounded {
        why.push_str(&format!(
            "; down-stabilization: highest of the last {}s is {desired}",
            down_window.num_seconds()
        ));
    }

    if let Some(step) = scaling.max_scale_up_step.filter(|s| *s > 0)
        && desired > current + step
    {
        limited = Some(format!(
            "maxScaleUpStep {step}: {current} → {} of {desired}",
            current + step
        ));
        desired = current + step;
    }
    if let Some(step) = scaling.max_scale_down_step.filter(|s| *s > 0)
        && desired < current - step
    {
        limited = Some(format!(
            "maxScaleDownStep {step}: {current} → {} of {desired}",
            current - step
        ));
        desired = current - step;
    }
    // Bounds win over windows and steps: a spec edit that moves them applies at once.
    let desired = desired.clamp(min, max);

    Decision {
        desired_replicas: desired,
        status,
        utilization,
        reason: format!("{current} → {desired}: {why}"),
        limited,
        held,
    }
}

/// Per-replica capacity the policy divides load by.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Capacity {
    output_tokens_per_second: f64,
    input_tokens_per_second: Option<f64>,
    learned: bool,
}

impl Capacity {
    fn of(spec: &InferencePoolSpec, learned_output: Option<f64>) -> Option<Self> {
        let positive = |v: Option<f64>| v.filter(|c| c.is_finite() && *c > 0.0);
        let configured = positive(spec.capacity.output_tokens_per_second);
        let output = configured.or(positive(learned_output))?;
        Some(Self {
            output_tokens_per_second: output,
            input_tokens_per_second: positive(spec.capacity.input_tokens_per_second),
            learned: configured.is_none(),
        })
    }

    /// Replicas' worth of work in the observation, at full capacity.
    fn work_replicas(&self, o: &Observation) -> f64 {
        let input = self
            .input_tokens_per_second
            .map_or(0.0, |c| o.input_tokens_per_second.max(0.0) / c);
        input + o.output_tokens_per_second.max(0.0) / self.output_tokens_per_second
    }

    fn describe(&self, o: &Observation) -> String {
        let learned = if self.learned { " (learned)" } else { "" };
        let output = format!(
            "{} output tok/s against {}{learned} per replica",
            thousands(o.output_tokens_per_second),
            thousands(self.output_tokens_per_second)
        );
        match self.input_tokens_per_second {
            Some(c) => format!(
                "{} input tok/s against {} per replica + {output}",
                thousands(o.input_tokens_per_second),
                thousands(c)
            ),
            None => output,
        }
    }
}

/// The load the policy sizes for, in replicas of full capacity.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Sizing {
    /// Work of this reading.
    now: f64,
    /// Mean work of the readings within `spec.scaling.loadWindowSeconds`.
    recent: f64,
    /// Replicas that drain the queue within a startup.
    backlog: f64,
    /// Mean work of the readings within the scale-down window.
    average: f64,
    target: f64,
}

impl Sizing {
    /// Replicas that carry the recent demand and its queue at full capacity.
    fn demand_replicas(&self) -> i32 {
        ceil_replicas(self.recent + self.backlog)
    }

    /// Replicas that run the average load at the target utilization.
    fn headroom_replicas(&self) -> i32 {
        ceil_replicas(self.average / self.target)
    }

    fn replicas(&self) -> i32 {
        self.demand_replicas().max(self.headroom_replicas())
    }

    fn describe(&self, load_window: TimeDelta, down_window: TimeDelta) -> String {
        let queue = if self.backlog > 0.0 {
            format!(" + {:.2} to drain the queue", self.backlog)
        } else {
            String::new()
        };
        format!(
            "{:.2} over {}s{queue} needs {} at full capacity, {:.2} over {}s needs {} at {:.0}% target",
            self.recent,
            load_window.num_seconds(),
            self.demand_replicas(),
            self.average,
            down_window.num_seconds(),
            self.headroom_replicas(),
            self.target * 100.0
        )
    }
}

/// Fewest whole replicas for `work` replicas of work.
fn ceil_replicas(work: f64) -> i32 {
    (work - CEIL_EPSILON).ceil().max(0.0) as i32
}

/// Mean work of the readings made less than `window` before `now`, this one's (`latest`) included.
/// Readings are evenly spaced by the sync interval, so the plain mean is the time-weighted one.
fn mean_work(
    history: &[Recommendation],
    now: DateTime<Utc>,
    window: TimeDelta,
    latest: f64,
) -> f64 {
    let (sum, n) = history
        .iter()
        .filter(|r| now - from_time(&r.time) < window)
        .filter_map(|r| r.work_replicas)
        .fold((latest, 1.0), |(sum, n), w| (sum + w, n + 1.0));
    sum / n
}

/// Share of the ready replicas' capacity below which saturation signals mean the capacity figure
/// is wrong for this traffic: replicas saturate while the tokens say a third of the pool is idle,
/// and one more replica is the safe answer.
pub const EXPLAINED_WORK_SHARE: f64 = 0.7;

/// Share of the ready replicas' capacity that, served in this reading or over the load window with
/// nothing queued, means the pool is at its ceiling: served tokens are capped at capacity, and
/// whatever arrives beyond it shows neither in them nor in a queue (vLLM batches it rather than
/// queueing it), so it counts as saturation and adds one replica. With a queue, the queue term
/// measures the excess instead. (On the shipped trace at x8, 0.9 and 0.95 cost 6% and 2% more
/// GPU-hours by firing on bursts the queue absorbed.)
pub const FULL_WORK_SHARE: f64 = 0.97;

/// Whether saturation signals ask for one more replica than the tokens do. Between the two shares
/// they do not: bursty arrivals alone queue requests and fill the KV cache at that load, the
/// queue term already answers them, and adding a replica for each burst ratchets the pool up (on
/// the shipped trace at x8, +1 on any saturation cost 19% more GPU-hours).
fn saturation_adds_one(sizing: Option<&Sizing>, ready_replicas: i32, full: bool) -> bool {
    let Some(z) = sizing else {
        return true;
    };
    if ready_replicas <= 0 {
        return true;
    }
    let ready = ready_replicas as f64;
    let capacity_wrong = z.now.max(z.recent) + z.backlog < EXPLAINED_WORK_SHARE * ready;
    capacity_wrong || full
}

/// The share of capacity served, when it is at least [`FULL_WORK_SHARE`] (this reading or the
/// load window) with nothing queued: the pool is at its ceiling and the excess is invisible.
fn full_and_hidden(sizing: Option<&Sizing>, ready_replicas: i32, queued: f64) -> Option<f64> {
    let z = sizing?;
    if ready_replicas <= 0 || queued > 0.0 {
        return None;
    }
    let share = z.now.max(z.recent) / ready_replicas as f64;
    (share >= FULL_WORK_SHARE).then_some(share)
}

/// Work that joined the queue instead of being served, per second since the `previous` reading,
/// in replicas (negative while the queue drains), at the work per finished request the interval
/// shows; 0 without an earlier queue reading or without finished requests.
fn queue_growth_replicas(
    o: &Observation,
    served_work: f64,
    previous: Option<&Recommendation>,
    now: DateTime<Utc>,
) -> f64 {
    let Some((waiting_before, at)) =
        previous.and_then(|p| Some((p.requests_waiting?, from_time(&p.time))))
    else {
        return 0.0;
    };
    let seconds = (now - at).num_milliseconds() as f64 / 1000.0;
    if seconds <= 0.0 || o.requests_per_second <= 0.0 || served_work <= 0.0 {
        return 0.0;
    }
    (o.requests_waiting - waiting_before) / seconds * served_work / o.requests_per_second
}

/// Replicas that would drain the queued requests within `startup_seconds` (at least a minute), at
/// the work per finished request the interval shows; 0 without a queue or without finished requests.
fn backlog_replicas(o: &Observation, work: Option<f64>, startup_seconds: i32) -> f64 {
    match work {
        Some(w) if o.requests_waiting > 0.0 && o.requests_per_second > 0.0 && w > 0.0 => {
            let work_per_request = w / o.requests_per_second;
            o.requests_waiting * work_per_request / f64::from(startup_seconds.max(60))
        }
        _ => 0.0,
    }
}

/// The saturation signals that fire in `o`, in words; empty when none does.
fn saturation_signals(
    spec: &InferencePoolSpec,
    o: &Observation,
    queue_since: Option<&Time>,
    now: DateTime<Utc>,
) -> Vec<String> {
    let sat = &spec.scaling.saturation;
    let mut signals = Vec::new();
    if let Some(since) = queue_since {
        let waited = now - from_time(since);
        if o.requests_waiting > 0.0
            && waited >= TimeDelta::seconds(sat.queue_sustained_seconds.max(0) as i64)
        {
            signals.push(format!(
                "{:.0} requests waiting for {}s",
                o.requests_waiting,
                waited.num_seconds()
            ));
        }
    }
    if o.kv_cache_usage > sat.kv_cache_threshold {
        signals.push(format!(
            "KV cache {:.0}% above {:.0}%",
            o.kv_cache_usage * 100.0,
            sat.kv_cache_threshold * 100.0
        ));
    }
    if let (Some(slo), Some(p90)) = (sat.ttft_p90_slo_seconds, o.ttft_p90_seconds)
        && p90 > slo
    {
        signals.push(format!("TTFT p90 {p90:.2}s above {slo:.2}s SLO"));
    }
    signals
}

/// Whether requests have waited without a break for `spec.scaling.saturation.queueSustainedSeconds`.
pub fn queue_sustained(
    spec: &InferencePoolSpec,
    status: &SizingStatus,
    now: DateTime<Utc>,
) -> bool {
    status.queue_since.as_ref().is_some_and(|since| {
        now - from_time(since)
            >= TimeDelta::seconds(spec.scaling.saturation.queue_sustained_seconds.max(0) as i64)
    })
}

/// Learns output tokens/s per replica from a saturated pool: when requests have queued for the
/// sustained window, the replicas are producing all they can, so output per ready replica is real
/// capacity. Smoothed with an EWMA; returns `prev` unchanged when the reading proves nothing.
pub fn learn_capacity(
    prev: Option<f64>,
    obs: &Observation,
    ready_replicas: i32,
    queue_sustained: bool,
) -> Option<f64> {
    if !queue_sustained
        || ready_replicas <= 0
        || !obs.is_complete()
        || obs.output_tokens_per_second <= 0.0
    {
        return prev;
    }
    let sample = obs.output_tokens_per_second / ready_replicas as f64;
    Some(match prev {
        Some(p) if p.is_finite() && p > 0.0 => p + LEARN_EWMA_WEIGHT * (sample - p),
        _ => sample,
    })
}

/// A message when configured and learned output capacity differ by more than 30% of the
/// configured figure (the spec is probably wrong for this model, GPU or prompt mix).
pub fn capacity_disagreement(configured: Option<f64>, learned: Option<f64>) -> Option<String> {
    let (c, l) = (configured?, learned?);
    if c <= 0.0 || (l - c).abs() / c <= CAPACITY_DISAGREEMENT {
        return None;
    }
    Some(format!(
        "spec.capacity.outputTokensPerSecond is {} but saturated replicas served {} per replica ({:+.0}%)",
        thousands(c),
        thousands(l),
        (l - c) / c * 100.0
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{CapacitySpec, CostSpec, ScalingSpec};

    fn spec() -> InferencePoolSpec {
        InferencePoolSpec {
            model: "m".into(),
            served_model_name: None,
            engine: Default::default(),
            gpu: Default::default(),
            min_replicas: 1,
            max_replicas: 10,
            replicas: None,
            capacity: CapacitySpec {
                output_tokens_per_second: Some(1000.0),
                input_tokens_per_second: None,
                target_utilization: 0.5,
            },
            scaling: ScalingSpec::default(),
            cost: CostSpec {
                replica_hourly_usd: Some(2.0),
                ..Default::default()
            },
            compare_to: None,
            pod: Default::default(),
        }
    }

    fn obs(output_tps: f64, pods: u32) -> Observation {
        Observation {
            output_tokens_per_second: output_tps,
            pods_observed: pods,
            pods_expected: pods,
            ..Default::default()
        }
    }

    fn t(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + s, 0).unwrap()
    }

    fn history(recs: &[(i64, i32)]) -> SizingStatus {
        SizingStatus {
            recommendations: recs
                .iter()
                .map(|&(s, replicas)| Recommendation {
                    time: to_time(t(s)),
                    replicas,
                    work_replicas: None,
                    requests_waiting: None,
                })
                .collect(),
            ..Default::default()
        }
    }

    /// Earlier readings with their work in replicas, one every 15 s for `seconds` before now.
    fn readings(seconds: i64, work: f64) -> SizingStatus {
        SizingStatus {
            recommendations: (1..=seconds / 15)
                .rev()
                .map(|i| Recommendation {
                    time: to_time(t(-15 * i)),
                    replicas: 3,
                    work_replicas: Some(work),
                    requests_waiting: None,
                })
                .collect(),
            ..Default::default()
        }
    }

    struct Case {
        name: &'static str,
        spec: InferencePoolSpec,
        input: SizingInput,
        history: SizingStatus,
        now: i64,
        want: i32,
        limited: bool,
        held: bool,
    }

    fn case(name: &'static str, current: i32, observation: Option<Observation>) -> Case {
        Case {
            name,
            spec: spec(),
            input: SizingInput {
                observation,
                current_replicas: current,
                ready_replicas: current,
                last_scale_time: Some(t(-3600)),
                learned_output_tokens_per_second: None,
            },
            history: SizingStatus::default(),
            now: 0,
            want: current,
            limited: false,
            held: false,
        }
    }

    #[test]
    fn recommend_table() {
        let mut cases = Vec::new();

        // 1,500 tok/s at 1,000 per replica and 50% target is 3 replicas.
        let mut c = case("steady load stays", 3, Some(obs(1500.0, 3)));
        c.want = 3;
        cases.push(c);

        let mut c = case("step up goes at once", 3, Some(obs(2600.0, 3)));
        c.want = 6;
        cases.push(c);

        let mut c = case("step down inside the window waits", 6, Some(obs(1000.0, 6)));
        c.history = history(&[(-300, 6), (-15, 5)]);
        c.want = 6;
        cases.push(c);

        let mut c = case("step down outside the window goes", 6, Some(obs(1000.0, 6)));
        c.history = history(&[(-900, 6), (-700, 6)]);
        c.want = 2;
        cases.push(c);

        let mut c = case(
            "step down to the highest in the window",
            6,
            Some(obs(1000.0, 6)),
        );
        c.history = history(&[(-900, 6), (-300, 4), (-100, 3)]);
        c.want = 4;
        cases.push(c);

        let mut o = obs(200.0, 3);
        o.requests_waiting = 12.0;
        let mut c = case("sustained queue with a low token rate adds one", 3, Some(o));
        c.history.queue_since = Some(to_time(t(-45)));
        c.want = 4;
        cases.push(c);

        // Saturated at 3,000 output tok/s on 3 replicas of 1,000 with 50 requests/s finishing:
        // 0.06 replica-seconds a request. 9,000 queued requests are 540 replica-seconds of work,
        // 3 replicas more to drain them over the 180 s startup: 6, where "+1" would give 4.
        let mut o = obs(3000.0, 3);
        o.requests_per_second = 50.0;
        o.requests_waiting = 9000.0;
        let mut c = case(
            "a deep queue asks for the replicas that drain it",
            3,
            Some(o),
        );
        c.history.queue_since = Some(to_time(t(-45)));
        c.want = 6;
        cases.push(c);

        // A 15 s spike of 5 replicas of work after five minutes at 1: the minute's mean is
        // (3 x 1 + 5) / 4 = 2 and the five minutes' 24 / 20 = 1.2, 3 replicas at 50%: the queue
        // takes the spike. The old rule (this reading at the target) asked for 10.
        // (A spike above capacity leaves requests queued: 5 at 0.5 replica-seconds each add
        // 0.01 to drain within the startup.)
        let mut o = obs(5000.0, 3);
        o.requests_per_second = 10.0;
        o.requests_waiting = 5.0;
        let mut c = case("a one-reading spike is the queue's", 3, Some(o));
        c.history = readings(285, 1.0);
        c.want = 3;
        cases.push(c);

        // The same 5 replicas of work, sustained: 10 at 50%.
        let mut c = case(
            "sustained load is sized at the target",
            3,
            Some(obs(5000.0, 3)),
        );
        c.history = readings(285, 5.0);
        c.want = 10;
        cases.push(c);

        // Five minutes at 2, the last minute at 6, at a 100% target: the five minutes' mean
        // (16 x 2 + 4 x 6) / 20 = 2.8 asks for 3, the last minute's demand for 6, at once.
        let mut c = case(
            "the last minute's demand is a floor",
            3,
            Some(obs(6000.0, 3)),
        );
        c.history = readings(285, 2.0);
        for r in c.history.recommendations.iter_mut().rev().take(3) {
            r.work_replicas = Some(6.0);
        }
        c.spec.capacity.target_utilization = 1.0;
        c.want = 6;
        cases.push(c);

        // 2.4 replicas of work on 3 at a 100% target with the KV cache full: 80% busy explains
        // it (bursts fill the cache at that load), so the tokens decide: 3.
        let mut o = obs(2400.0, 3);
        o.kv_cache_usage = 0.95;
        let mut c = case("saturation the tokens explain adds nothing", 3, Some(o));
        c.spec.capacity.target_utilization = 1.0;
        c.want = 3;
        cases.push(c);

        // A full minute at capacity with the KV cache full and no queue: what arrives beyond
        // capacity shows nowhere (vLLM batches it), so saturation adds one.
        let mut o = obs(1000.0, 1);
        o.kv_cache_usage = 0.99;
        let mut c = case("full with nothing queued adds one", 1, Some(o));
        c.spec.capacity.target_utilization = 1.0;
        c.history = readings(45, 1.0);
        c.want = 2;
        cases.push(c);

        // The same with requests queued: the queue term measures the excess instead (120 waiting
        // at 0.1 replica-seconds each over a 180 s startup is 0.07 more: ceil(1.07) = 2).
        let mut o = obs(1000.0, 1);
        o.kv_cache_usage = 0.99;
        o.requests_per_second = 10.0;
        o.requests_waiting = 120.0;
        let mut c = case("full with a queue is sized by the queue", 1, Some(o));
        c.spec.capacity.target_utilization = 1.0;
        c.history = readings(45, 1.0);
        c.want = 2;
        cases.push(c);

        let mut o = obs(200.0, 3);
        o.requests_waiting = 12.0;
        let mut c = case("a fresh queue is not saturation yet", 3, Some(o));
        c.history = history(&[(-300, 3)]);
        c.history.queue_since = Some(to_time(t(-10)));
        c.want = 3;
        cases.push(c);

        let mut o = obs(200.0, 3);
        o.kv_cache_usage = 0.95;
        let mut c = case("KV cache above threshold adds one", 3, Some(o));
        c.want = 4;
        cases.push(c);

        let mut o = obs(200.0, 3);
        o.ttft_p90_seconds = Some(3.0);
        let mut c = case("TTFT p90 above SLO adds one", 3, Some(o));
        c.spec.scaling.saturation.ttft_p90_slo_seconds = Some(2.0);
        c.want = 4;
        cases.push(c);

        // 5 provisioned, 3 ready, scaled 60 s ago: demand for 5 is already on its way.
        let mut o = obs(2400.0, 3);
        o.kv_cache_usage = 0.99;
        let mut c = case("starting pods carry the same demand", 5, Some(o));
        c.input.ready_replicas = 3;
        c.input.last_scale_time = Some(t(-60));
        c.want = 5;
        cases.push(c);

        let mut c = case(
            "starting pods do not block more demand",
            5,
            Some(obs(3400.0, 3)),
        );
        c.input.ready_replicas = 3;
        c.input.last_scale_time = Some(t(-60));
        c.want = 7;
        cases.push(c);

        let mut c = case("max bound", 8, Some(obs(9000.0, 8)));
        c.want = 10;
        c.limited = true;
        cases.push(c);

        let mut c = case("min bound", 2, Some(obs(0.0, 2)));
        c.spec.min_replicas = 2;
        c.spec.scaling.scale_down_stabilization_seconds = 0;
        c.want = 2;
        c.limited = true;
        cases.push(c);

        let mut c = case("missing data holds", 6, None);
        c.spec.scaling.scale_down_stabilization_seconds = 0;
        c.want = 6;
        c.held = true;
        cases.push(c);

        let mut o = obs(100.0, 3);
        o.pods_expected = 6;
        let mut c = case("partial data never scales down", 6, Some(o));
        c.spec.scaling.scale_down_stabilization_seconds = 0;
        c.want = 6;
        c.held = true;
        cases.push(c);

        let mut o = obs(4500.0, 3);
        o.pods_expected = 6;
        let mut c = case("partial data may still scale up", 6, Some(o));
        c.want = 9;
        c.held = true;
        cases.push(c);

        let mut c = case("up step limit", 2, Some(obs(4000.0, 2)));
        c.spec.scaling.max_scale_up_step = Some(2);
        c.want = 4;
        c.limited = true;
        cases.push(c);

        let mut c = case("down step limit", 8, Some(obs(500.0, 8)));
        c.spec.scaling.scale_down_stabilization_seconds = 0;
        c.spec.scaling.max_scale_down_step = Some(3);
        c.want = 5;
        c.limited = true;
        cases.push(c);

        let mut c = case("up window takes the lowest", 2, Some(obs(4000.0, 2)));
        c.spec.scaling.scale_up_stabilization_seconds = 60;
        c.history = history(&[(-30, 4)]);
        c.want = 4;
        cases.push(c);

        let mut c = case("no capacity known holds", 3, Some(obs(100.0, 3)));
        c.spec.capacity.output_tokens_per_second = None;
        c.spec.scaling.scale_down_stabilization_seconds = 0;
        c.want = 3;
        c.held = true;
        cases.push(c);

        let mut c = case(
            "learned capacity is used when the spec has none",
            3,
            Some(obs(3000.0, 3)),
        );
        c.spec.capacity.output_tokens_per_second = None;
        c.input.learned_output_tokens_per_second = Some(500.0);
        c.want = 10;
        c.limited = true;
        cases.push(c);

        let mut o = obs(1500.0, 3);
        o.input_tokens_per_second = 20_000.0;
        let mut c = case("input tokens count when input capacity is set", 3, Some(o));
        c.spec.capacity.input_tokens_per_second = Some(10_000.0);
        // 2.0 + 1.5 = 3.5 replicas of work at 50% target: 7.
        c.want = 7;
        cases.push(c);

        for c in cases {
            let d = recommend(&c.spec, &c.input, &c.history, t(c.now));
            assert_eq!(d.desired_replicas, c.want, "{}: {}", c.name, d.reason);
            assert_eq!(
                d.limited.is_some(),
                c.limited,
                "{}: limited {:?}",
                c.name,
                d.limited
            );
            assert_eq!(d.held.is_some(), c.held, "{}: held {:?}", c.name, d.held);
        }
    }

    proptest::proptest! {
        // A malformed metric never shrinks the pool: whichever reading is NaN, infinite or
        // negative, the policy holds (with no down window, a sane low reading would shrink it).
        #[test]
        fn malformed_readings_never_scale_down(
            bad in proptest::sample::select(vec![f64::NAN, f64::INFINITY, f64::NEG_INFINITY, -1.0, -1e12]),
            field in 0usize..7,
            current in 2i32..10,
        ) {
            let mut s = spec();
            s.scaling.scale_down_stabilization_seconds = 0;
            s.capacity.input_tokens_per_second = Some(10_000.0);
            let mut o = obs(100.0, current as u32);
            o.input_tokens_per_second = 100.0;
            o.requests_per_second = 1.0;
            match field {
                0 => o.output_tokens_per_second = bad,
                1 => o.input_tokens_per_second = bad,
                2 => o.requests_per_second = bad,
                3 => o.requests_waiting = bad,
                4 => o.kv_cache_usage = bad,
                5 => o.requests_running = bad,
                _ => o.ttft_p90_seconds = Some(bad),
            }
            let mut input = case("", current, Some(o)).input;
            input.current_replicas = current;
            let d = recommend(&s, &input, &readings(60, 0.1), t(0));
            proptest::prop_assert!(d.desired_replicas >= current, "{}", d.reason);
        }
    }

    #[test]
    fn reason_carries_the_numbers() {
        let d = recommend(
            &spec(),
            &case("", 3, Some(obs(2840.0, 3))).input,
            &SizingStatus::default(),
            t(0),
        );
        assert_eq!(d.desired_replicas, 6);
        assert!(
            d.reason
                .starts_with("3 → 6: 2,840 output tok/s against 1,000"),
            "{}",
            d.reason
        );
        assert_eq!(d.utilization, Some(2.84 / 3.0));
    }

    #[test]
    fn history_survives_as_status_and_is_pruned() {
        let s = spec();
        let input = case("", 3, Some(obs(1500.0, 3))).input;
        let old = history(&[(-5000, 9), (-100, 3)]);
        let d = recommend(&s, &input, &old, t(0));
        let times: Vec<_> = d
            .status
            .recommendations
            .iter()
            .map(|r| from_time(&r.time))
            .collect();
        assert_eq!(times, vec![t(-100), t(0)]);
    }

    #[test]
    fn queue_timer_starts_persists_and_resets() {
        let s = spec();
        let mut o = obs(100.0, 1);
        o.requests_waiting = 3.0;
        let mut input = case("", 1, Some(o)).input;
        let d1 = recommend(&s, &input, &SizingStatus::default(), t(0));
        assert_eq!(d1.status.queue_since.as_ref().map(from_time), Some(t(0)));
        let d2 = recommend(&s, &input, &d1.status, t(30));
        assert_eq!(d2.status.queue_since.as_ref().map(from_time), Some(t(0)));
        assert!(queue_sustained(&s, &d2.status, t(30)));
        assert_eq!(d2.desired_replicas, 2);
        input.observation = Some(obs(100.0, 1));
        let d3 = recommend(&s, &input, &d2.status, t(45));
        assert_eq!(d3.status.queue_since, None);
    }

    #[test]
    fn learn_capacity_only_from_saturated_replicas() {
        let o = obs(3000.0, 2);
        assert_eq!(learn_capacity(None, &o, 2, false), None);
        assert_eq!(learn_capacity(Some(1000.0), &o, 2, false), Some(1000.0));
        assert_eq!(learn_capacity(None, &o, 2, true), Some(1500.0));
        assert_eq!(learn_capacity(Some(1000.0), &o, 2, true), Some(1100.0));
        let mut partial = o.clone();
        partial.pods_expected = 3;
        assert_eq!(
            learn_capacity(Some(1000.0), &partial, 2, true),
            Some(1000.0)
        );
    }

    #[test]
    fn capacity_disagreement_over_thirty_percent() {
        assert_eq!(capacity_disagreement(Some(1000.0), Some(1250.0)), None);
        let msg = capacity_disagreement(Some(1000.0), Some(600.0)).unwrap();
        assert!(
            msg.contains("1,000") && msg.contains("600") && msg.contains("-40%"),
            "{msg}"
        );
        assert_eq!(capacity_disagreement(None, Some(600.0)), None);
    }

    #[test]
    fn thousands_groups_digits() {
        assert_eq!(thousands(2840.4), "2,840");
        assert_eq!(thousands(1_234_567.0), "1,234,567");
        assert_eq!(thousands(12.0), "12");
        assert_eq!(thousands(-1500.0), "-1,500");
    }
}
