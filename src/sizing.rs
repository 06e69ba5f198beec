//! The sizing policy: how many replicas a pool should run for the load it observes. Pure and
//! deterministic: the controller and the simulator (`crossover simulate`) call the same
//! [`recommend`], and everything it must remember between calls travels in [`SizingStatus`].
//!
//! The pool is planned for the demand expected over the next startup horizon at
//! `spec.scaling.forecastQuantile` ([`forecast`]): the demand now, and each replica above it that
//! the history expects to be needed within one startup often enough. The history lives in status,
//! bounded ([`history`]).

pub mod forecast;
pub mod history;

use crate::api::{InferencePoolSpec, Recommendation, SizingStatus, from_time, to_time};
use crate::format::thousands;
use crate::load::Observation;
use chrono::{DateTime, TimeDelta, Utc};
use forecast::{Forecast, Peaks};
pub use history::{HISTORY_BUCKETS, MAX_RECENT};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

/// Rounding slack so that work of exactly 2.0 replicas asks for 2, not 3, after float noise.
const CEIL_EPSILON: f64 = 1e-9;

/// Smoothing weight of a new saturated reading in the learned capacity (EWMA).
pub const LEARN_EWMA_WEIGHT: f64 = 0.2;

/// Configured and learned capacity further apart than this share are reported as disagreeing.
pub const CAPACITY_DISAGREEMENT: f64 = 0.3;

/// Readings a down window may span and still be read from the readings (exactly) rather than
/// from the history's buckets.
const SHORT_DOWN_READINGS: i32 = 32;

/// `spec.scaling.forecastQuantile` when the stored value is out of its schema range.
pub const DEFAULT_FORECAST_QUANTILE: f64 = 0.95;

/// What the policy needs to know besides the spec and its own history.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct SizingInput {
    /// Load over the last interval; `None` when metrics could not be read at all.
    pub observation: Option<Observation>,
    /// Replicas provisioned (the Deployment's spec.replicas): billing, ready or not.
    pub current_replicas: i32,
    /// Replicas serving traffic.
    pub ready_replicas: i32,
    /// Replicas provisioned but not ready yet, within the startup probe's budget: capacity on
    /// its way, however long the model takes to load.
    pub starting_replicas: i32,
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
    /// For people, with the numbers: "3 → 5: 2,840 output tok/s against 1,000 per replica = ...".
    pub reason: String,
    /// Set when a bound or step limit cut the recommendation (ScalingLimited condition).
    pub limited: Option<String>,
    /// Set when the policy held the pool because data was missing, partial or capacity unknown.
    pub held: Option<String>,
}

/// The spec's knobs as the policy uses them, each in its valid range.
struct Knobs {
    min: i32,
    max: i32,
    target: Option<f64>,
    quantile: f64,
    up_window: TimeDelta,
    down_window: Option<TimeDelta>,
    load_window: TimeDelta,
    /// Readings kept: the up and load windows, and the previous reading for the queue's growth.
    recent_window: TimeDelta,
    /// Seconds from a decision to the next one's replicas serving: startup plus one interval.
    horizon_seconds: f64,
    bucket_seconds: i64,
}

impl Knobs {
    fn of(spec: &InferencePoolSpec) -> Self {
        let s = &spec.scaling;
        let seconds = |v: i32| TimeDelta::seconds(i64::from(v.max(0)));
        let min = spec.min_replicas.max(0);
        let down_window = s.scale_down_stabilization_seconds.map(seconds);
        let (up_window, load_window) = (
            seconds(s.scale_up_stabilization_seconds),
            seconds(s.load_window_seconds),
        );
        Self {
            min,
            max: spec.max_replicas.max(min),
            target: spec
                .capacity
                .target_utilization
                .filter(|t| t.is_finite() && *t > 0.0)
                .map(|t| t.min(1.0)),
            quantile: Some(s.forecast_quantile)
                .filter(|q| (0.5..=0.999).contains(q))
                .unwrap_or(DEFAULT_FORECAST_QUANTILE),
            up_window,
            down_window,
            load_window,
            recent_window: up_window
                .max(load_window)
                .max(seconds(s.interval_seconds.saturating_mul(2)))
                .max(down_window.map_or(TimeDelta::zero(), |w| {
                    // A short down window is read from the readings themselves, exactly.
                    w.min(seconds(
                        s.interval_seconds
                            .max(1)
                            .saturating_mul(SHORT_DOWN_READINGS),
                    ))
                })),
            horizon_seconds: f64::from(s.startup_seconds.max(0))
                + f64::from(s.interval_seconds.max(1)),
            bucket_seconds: history::bucket_seconds(
                s.interval_seconds.max(1),
                down_window.map_or(0, |w| w.num_seconds()),
            ),
        }
    }
}

/// Recommends the replica count for `spec` given the latest observation and the persisted history.
///
/// Plans for the demand of the next startup horizon at the forecast quantile: up as soon as the
/// demand or the forecast asks, down once the forecast no longer expects a replica within a
/// startup (and, when set, after the down window). Never scales down on missing or partial data,
/// and does not add replicas for demand that replicas still starting will carry.
pub fn recommend(
    spec: &InferencePoolSpec,
    input: &SizingInput,
    history: &SizingStatus,
    now: DateTime<Utc>,
) -> Decision {
    let knobs = Knobs::of(spec);
    let current = input.current_replicas.max(0);

    let mut status = history.clone();
    history::prune_recent(&mut status.recommendations, now, knobs.recent_window);

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

    let capacity = Capacity::of(spec, input.learned_output_tokens_per_second);
    let work = match (obs, &capacity) {
        (Some(o), Some(c)) => Some(c.work_replicas(o)),
        _ => None,
    };
    let utilization =
        work.and_then(|w| (input.ready_replicas > 0).then(|| w / f64::from(input.ready_replicas)));

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

    // What arrived is what was served plus what the queue grew by since the previous reading: a
    // saturated pool serves no more than its ceiling, however much more is coming. Demand is its
    // mean over the load window (bursts shorter than that are the queue's), plus the replicas
    // that drain the queue within a startup.
    let backlog = backlog_replicas(o, work, spec.scaling.startup_seconds);
    let arrived = work
        .map(|w| (w + queue_growth_replicas(o, w, status.recommendations.last(), now)).max(0.0));
    let demand =
        arrived.map(|w| history::mean_work(&status.recommendations, now, knobs.load_window, w));
    // Only a complete reading says how high demand was; a partial one would teach the forecast
    // that levels were not needed when they were.
    let learned = demand.filter(|_| complete);
    history::record(&mut status.history, knobs.bucket_seconds, now, learned, 0);

    let sizing = match (arrived, demand) {
        (Some(now_work), Some(recent)) => {
            let need_now = ceil_replicas(recent + backlog);
            let forecast = status.history.as_ref().map(|h| {
                let b = h.bucket_seconds.max(1);
                Peaks {
                    peaks: &h.peak_work_replicas,
                    bucket_seconds: f64::from(b),
                    into_newest_seconds: (now - from_time(&h.newest)).num_seconds() as f64,
                }
                .plan(need_now, knobs.max, knobs.horizon_seconds, knobs.quantile)
            });
            Some(Sizing {
                now: now_work,
                recent,
                backlog,
                need_now,
                forecast,
                target: knobs.target,
            })
        }
        _ => None,
    };
    let token_raw = sizing.as_ref().map(Sizing::replicas);
    let mut raw = token_raw.unwrap_or(current);
    let mut why = match (&capacity, &sizing) {
        (Some(c), Some(z)) => format!(
            "{} = {:.2} replicas of work; {}",
            c.describe(o),
            z.now,
            z.describe(&knobs)
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
        // Replicas still loading are capacity on its way: while they start, saturation is
        // expected and must not add a replica per startup however long the model takes to load.
        if input.starting_replicas > 0 {
            why.push_str(&format!(
                "; saturated ({}) but {} replica(s) still starting carry the demand",
                saturation.join(", "),
                input.starting_replicas
            ));
            raw = raw.max(current);
        } else if raw <= current
            && saturation_adds_one(sizing.as_ref(), input.ready_replicas, full.is_some())
        {
            raw = current.saturating_add(1);
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
    let bounded = raw.clamp(knobs.min, knobs.max);
    if raw > knobs.max {
        limited = Some(format!(
            "at maxReplicas ({}): the load asks for {raw}",
            knobs.max
        ));
    } else if raw < knobs.min {
        limited = Some(format!(
            "at minReplicas ({}): the load asks for {raw}",
            knobs.min
        ));
    }

    status.recommendations.push(Recommendation {
        time: to_time(now),
        replicas: bounded,
        work_replicas: arrived,
        requests_waiting: Some(o.requests_waiting),
        readings: 1,
    });
    history::prune_recent(&mut status.recommendations, now, knobs.recent_window);
    history::record(
        &mut status.history,
        knobs.bucket_seconds,
        now,
        None,
        bounded,
    );

    let mut desired = stabilize(&status, &knobs, current, bounded, now, &mut why);
    if let Some(step) = spec.scaling.max_scale_up_step.filter(|s| *s > 0)
        && desired > current.saturating_add(step)
    {
        let to = current.saturating_add(step);
        limited = Some(format!(
            "maxScaleUpStep {step}: {current} → {to} of {desired}"
        ));
        desired = to;
    }
    if let Some(step) = spec.scaling.max_scale_down_step.filter(|s| *s > 0)
        && desired < current.saturating_sub(step)
    {
        let to = current.saturating_sub(step);
        limited = Some(format!(
            "maxScaleDownStep {step}: {current} → {to} of {desired}"
        ));
        desired = to;
    }
    // Bounds win over windows and steps: a spec edit that moves them applies at once.
    let desired = desired.clamp(knobs.min, knobs.max);

    Decision {
        desired_replicas: desired,
        status,
        utilization,
        reason: format!("{current} → {desired}: {why}"),
        limited,
        held,
    }
}

/// The stabilization windows: up only to the lowest recommendation of the up window (default 0 s:
/// at once), down only to the highest of the down window when one is set.
fn stabilize(
    status: &SizingStatus,
    knobs: &Knobs,
    current: i32,
    bounded: i32,
    now: DateTime<Utc>,
    why: &mut String,
) -> i32 {
    let up_to = status
        .recommendations
        .iter()
        .filter(|r| now - from_time(&r.time) <= knobs.up_window)
        .map(|r| r.replicas)
        .min()
        .unwrap_or(bounded);
    let down_to = knobs
        .down_window
        .and_then(|w| {
            let within: Vec<_> = status
                .recommendations
                .iter()
                .filter(|r| now - from_time(&r.time) <= w)
                .collect();
            // Readings cover the window when it is short enough to keep them all unmerged; a
            // longer one is read from the buckets, at their resolution (holding up to a bucket
            // longer, never shorter).
            if w <= knobs.recent_window && within.iter().all(|r| r.readings <= 1) {
                within.iter().map(|r| r.replicas).max()
            } else {
                history::max_replicas_within(status.history.as_ref(), now, w)
            }
        })
        .map_or(bounded, |m| m.max(bounded));
    let desired = if current < up_to {
        up_to
    } else if current > down_to {
        down_to
    } else {
        current
    };
    if desired > current && desired < bounded {
        why.push_str(&format!(
            "; up-stabilization: lowest of the last {}s is {desired}",
            knobs.up_window.num_seconds()
        ));
    } else if bounded < current
        && desired > bounded
        && let Some(w) = knobs.down_window
    {
        why.push_str(&format!(
            "; down-stabilization: highest of the last {}s is {desired}",
            w.num_seconds()
        ));
    }
    desired
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
    /// Work that arrived in this reading's interval.
    now: f64,
    /// Demand: mean work that arrived within `spec.scaling.loadWindowSeconds`.
    recent: f64,
    /// Replicas that drain the queue within a startup.
    backlog: f64,
    /// Replicas the demand and its queue need now, at full capacity.
    need_now: i32,
    /// What the history expects over the next startup horizon.
    forecast: Option<Forecast>,
    /// `targetUtilization`, when set: a ceiling on the utilization planned for the demand now.
    target: Option<f64>,
}

impl Sizing {
    /// Replicas that keep the demand now at or below the target utilization (when set). The
    /// queue's drain is transient, at full capacity: the target is not applied to it again.
    fn ceiling_replicas(&self) -> Option<i32> {
        self.target.map(|t| ceil_replicas(self.recent / t))
    }

    fn replicas(&self) -> i32 {
        self.need_now
            .max(self.forecast.map_or(0, |f| f.replicas))
            .max(self.ceiling_replicas().unwrap_or(0))
    }

    fn describe(&self, knobs: &Knobs) -> String {
        let queue = if self.backlog > 0.0 {
            format!(" + {:.2} to drain the queue", self.backlog)
        } else {
            String::new()
        };
        let mut out = format!(
            "{:.2} over {}s{queue} needs {} now",
            self.recent,
            knobs.load_window.num_seconds(),
            self.need_now
        );
        let horizon = knobs.horizon_seconds;
        let quantile = knobs.quantile * 100.0;
        if let Some(f) = &self.forecast {
            match (&f.kept, &f.next) {
                (Some(k), _) => out.push_str(&format!(
                    "; the next {horizon:.0}s need {} at p{quantile:.0} (replica {} idle {:.0}s \
                     came back within {horizon:.0}s in {:.0}% of {} such gaps)",
                    f.replicas,
                    k.replicas,
                    k.idle_seconds,
                    k.chance * 100.0,
                    k.gaps
                )),
                (None, Some(n)) if n.seen => out.push_str(&format!(
                    "; replica {} idle {:.0}s came back within {horizon:.0}s in {:.0}% of {} such \
                     gaps, under {:.0}%: not kept",
                    n.replicas,
                    n.idle_seconds,
                    n.chance * 100.0,
                    n.gaps,
                    100.0 - quantile
                )),
                _ => {}
            }
        }
        if let (Some(t), Some(c)) = (self.target, self.ceiling_replicas()) {
            out.push_str(&format!("; {c} at {:.0}% target", t * 100.0));
        }
        out
    }
}

/// Fewest whole replicas for `work` replicas of work.
fn ceil_replicas(work: f64) -> i32 {
    (work - CEIL_EPSILON).ceil().max(0.0) as i32
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
                target_utilization: None,
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
                    readings: 1,
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
                    readings: 1,
                })
                .collect(),
            ..Default::default()
        }
    }

    /// The status after the controller's loop fed `spec` one reading every 15 s from `from` to
    /// `to` (exclusive), with `output(s)` tok/s at second `s` and the pool at what it asked for
    /// (startup ignored: the history is what is tested).
    fn fed(
        spec: &InferencePoolSpec,
        from: i64,
        to: i64,
        output: impl Fn(i64) -> f64,
    ) -> (SizingStatus, i32) {
        let mut status = SizingStatus::default();
        let mut replicas = 1;
        for s in (from..to).step_by(15) {
            let input = SizingInput {
                observation: Some(obs(output(s), replicas as u32)),
                current_replicas: replicas,
                ready_replicas: replicas,
                ..Default::default()
            };
            let d = recommend(spec, &input, &status, t(s));
            status = d.status;
            replicas = d.desired_replicas;
        }
        (status, replicas)
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
                starting_replicas: 0,
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

        // 2,500 tok/s at 1,000 per replica is 2.5 replicas of work: 3.
        cases.push(case("steady load is its demand", 3, Some(obs(2500.0, 3))));

        let mut c = case("step up goes at once", 3, Some(obs(5600.0, 3)));
        c.want = 6;
        cases.push(c);

        // Nothing in the history expects more than the demand now: down at once.
        let mut c = case(
            "step down with nothing expected goes",
            6,
            Some(obs(1000.0, 6)),
        );
        c.want = 1;
        cases.push(c);

        // 2.6 replicas of work at most 50% planned utilization: 6.
        let mut c = case(
            "a target caps the planned utilization",
            3,
            Some(obs(2600.0, 3)),
        );
        c.spec.capacity.target_utilization = Some(0.5);
        c.want = 6;
        cases.push(c);

        let mut o = obs(200.0, 3);
        o.requests_waiting = 12.0;
        let mut c = case("sustained queue with a low token rate adds one", 3, Some(o));
        c.history.queue_since = Some(to_time(t(-45)));
        c.want = 4;
        cases.push(c);

        // Saturated at 3,000 output tok/s on 3 replicas of 1,000 with 50 requests/s finishing:
        // 0.06 replica-seconds a request. 9,000 queued requests are 540 replica-seconds of work,
        // 3 replicas more to drain them over the 180 s startup: 6, where "+1" would give 4. A
        // target of 50% applies to the demand (3 / 0.5 = 6), not again to the drain (12).
        let mut o = obs(3000.0, 3);
        o.requests_per_second = 50.0;
        o.requests_waiting = 9000.0;
        let mut c = case(
            "a deep queue asks for the replicas that drain it",
            3,
            Some(o),
        );
        c.history.queue_since = Some(to_time(t(-45)));
        c.spec.capacity.target_utilization = Some(0.5);
        c.want = 6;
        cases.push(c);

        // A 15 s spike of 5 replicas of work after five minutes at 1: the minute's mean is
        // (3 x 1 + 5) / 4 = 2, plus 5 queued requests of 0.5 replica-seconds each drained over
        // the startup (0.01): 3. The queue takes the spike.
        let mut o = obs(5000.0, 3);
        o.requests_per_second = 10.0;
        o.requests_waiting = 5.0;
        let mut c = case("a one-reading spike is the queue's", 3, Some(o));
        c.history = readings(285, 1.0);
        c.want = 3;
        cases.push(c);

        // 2.4 replicas of work on 3 with the KV cache full: 80% busy explains it (bursts fill
        // the cache at that load), so the tokens decide: 3.
        let mut o = obs(2400.0, 3);
        o.kv_cache_usage = 0.95;
        cases.push(case(
            "saturation the tokens explain adds nothing",
            3,
            Some(o),
        ));

        // A full minute at capacity with the KV cache full and no queue: what arrives beyond
        // capacity shows nowhere (vLLM batches it), so saturation adds one.
        let mut o = obs(1000.0, 1);
        o.kv_cache_usage = 0.99;
        let mut c = case("full with nothing queued adds one", 1, Some(o));
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
        c.history = readings(45, 1.0);
        c.want = 2;
        cases.push(c);

        let mut o = obs(200.0, 1);
        o.requests_waiting = 12.0;
        let mut c = case("a fresh queue is not saturation yet", 1, Some(o));
        c.history.queue_since = Some(to_time(t(-10)));
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

        // 5 provisioned, 3 ready, 2 starting: demand for 5 is already on its way.
        let mut o = obs(2400.0, 3);
        o.kv_cache_usage = 0.99;
        let mut c = case("starting pods carry the same demand", 5, Some(o));
        c.input.ready_replicas = 3;
        c.input.starting_replicas = 2;
        c.want = 5;
        cases.push(c);

        // A model that loads for ten minutes: 4 provisioned, 2 ready, the others loading for
        // longer than startupSeconds but within the startup probe's budget. Saturated, the pool
        // still waits for them instead of adding one per startup.
        let mut o = obs(2000.0, 2);
        o.kv_cache_usage = 0.99;
        o.requests_waiting = 40.0;
        let mut c = case("a long model load adds no replica per startup", 4, Some(o));
        c.input.ready_replicas = 2;
        c.input.starting_replicas = 2;
        c.history.queue_since = Some(to_time(t(-600)));
        c.want = 4;
        cases.push(c);

        let mut c = case(
            "starting pods do not block more demand",
            5,
            Some(obs(6400.0, 3)),
        );
        c.input.ready_replicas = 3;
        c.input.starting_replicas = 2;
        c.want = 7;
        cases.push(c);

        let mut c = case("max bound", 8, Some(obs(12_000.0, 8)));
        c.want = 10;
        c.limited = true;
        cases.push(c);

        let mut c = case("min bound", 2, Some(obs(0.0, 2)));
        c.spec.min_replicas = 2;
        c.want = 2;
        c.limited = true;
        cases.push(c);

        let mut c = case("missing data holds", 6, None);
        c.held = true;
        cases.push(c);

        let mut o = obs(100.0, 3);
        o.pods_expected = 6;
        let mut c = case("partial data never scales down", 6, Some(o));
        c.held = true;
        cases.push(c);

        let mut o = obs(9000.0, 3);
        o.pods_expected = 6;
        let mut c = case("partial data may still scale up", 6, Some(o));
        c.want = 9;
        c.held = true;
        cases.push(c);

        let mut c = case("up step limit", 2, Some(obs(6000.0, 2)));
        c.spec.scaling.max_scale_up_step = Some(2);
        c.want = 4;
        c.limited = true;
        cases.push(c);

        let mut c = case("down step limit", 8, Some(obs(500.0, 8)));
        c.spec.scaling.max_scale_down_step = Some(3);
        c.want = 5;
        c.limited = true;
        cases.push(c);

        let mut c = case("up window takes the lowest", 2, Some(obs(6000.0, 2)));
        c.spec.scaling.scale_up_stabilization_seconds = 60;
        c.history = history(&[(-30, 4)]);
        c.want = 4;
        cases.push(c);

        let mut c = case("no capacity known holds", 3, Some(obs(100.0, 3)));
        c.spec.capacity.output_tokens_per_second = None;
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
        c.want = 6;
        cases.push(c);

        let mut o = obs(1500.0, 3);
        o.input_tokens_per_second = 20_000.0;
        let mut c = case("input tokens count when input capacity is set", 3, Some(o));
        c.spec.capacity.input_tokens_per_second = Some(10_000.0);
        // 2.0 + 1.5 = 3.5 replicas of work: 4.
        c.want = 4;
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

    #[test]
    fn a_down_window_holds_the_highest_recommendation_within_it() {
        let mut s = spec();
        s.scaling.scale_down_stabilization_seconds = Some(300);
        // 5.5 replicas of work until 200 s ago, 0.8 since.
        let (status, replicas) = fed(&s, -900, 0, |at| if at < -200 { 5500.0 } else { 800.0 });
        assert_eq!(replicas, 6, "held within the window");
        let input = case("", 6, Some(obs(800.0, 6))).input;
        let d = recommend(&s, &input, &status, t(0));
        assert_eq!(d.desired_replicas, 6, "{}", d.reason);
        assert!(d.reason.contains("down-stabilization"), "{}", d.reason);
        // The levels no longer needed are kept one horizon (195 s) after they were last needed
        // (no gaps yet to say otherwise: the break-even rule), and the window holds that 300 s
        // more, level by level. After both the forecast decides, and nothing recurs: 1.
        let (status, _) = fed(&s, -900, 600, |at| if at < -200 { 5500.0 } else { 800.0 });
        let d = recommend(&s, &input, &status, t(600));
        assert_eq!(d.desired_replicas, 1, "{}", d.reason);
    }

    #[test]
    fn a_recurring_burst_is_met_by_replicas_started_one_startup_ahead() {
        // 60 s bursts of 5.5 replicas of work every 600 s over 0.5, for two hours.
        let s = spec();
        let load = |at: i64| {
            if at.rem_euclid(600) < 60 {
                5500.0
            } else {
                500.0
            }
        };
        let (status, _) = fed(&s, -7200, 0, load);
        let at = |now: i64| {
            let input = case("", 1, Some(obs(load(now), 1))).input;
            recommend(&s, &input, &status_until(&s, &status, now, load), t(now))
        };
        // Just after a burst the next is ~10 minutes away: back to the demand.
        let d = at(150);
        assert_eq!(d.desired_replicas, 1, "{}", d.reason);
        // 195 s (startup + interval) before the next burst the forecast asks for it.
        let d = at(600 - 180);
        assert_eq!(d.desired_replicas, 6, "{}", d.reason);
        assert!(
            d.reason.contains("the next 195s need 6 at p95"),
            "{}",
            d.reason
        );
    }

    /// `status` carried on from second 0 to `now` by feeding `load` every 15 s.
    fn status_until(
        s: &InferencePoolSpec,
        status: &SizingStatus,
        now: i64,
        load: impl Fn(i64) -> f64,
    ) -> SizingStatus {
        let mut status = status.clone();
        for at in (0..now).step_by(15) {
            let input = case("", 1, Some(obs(load(at), 1))).input;
            status = recommend(s, &input, &status, t(at)).status;
        }
        status
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
    fn the_status_stays_small_for_every_setting_the_schema_allows() {
        // The settings that keep the most: a reading every second, the longest load and up
        // windows (3,600 s), the longest down window (86,400 s: the longest buckets, 180 s),
        // the most replicas, and numbers that print at full length.
        let mut s = spec();
        s.max_replicas = 1000;
        s.scaling.interval_seconds = 1;
        s.scaling.load_window_seconds = 3600;
        s.scaling.scale_up_stabilization_seconds = 3600;
        s.scaling.scale_down_stabilization_seconds = Some(86_400);
        let mut o = obs(1_000_000.0 / 3.0, 1000);
        o.requests_waiting = 1e15 / 7.0;
        o.requests_per_second = 1e9 / 7.0;
        let mut status = SizingStatus {
            queue_since: Some(to_time(t(-1))),
            low_utilization_since: Some(to_time(t(-1))),
            idle_since: Some(to_time(t(-1))),
            ..Default::default()
        };
        let mut step = |status: &mut SizingStatus, at: i64, k: i64| {
            o.output_tokens_per_second = 1_000_000.0 / 3.0 + k as f64 / 7.0;
            let input = SizingInput {
                observation: Some(o.clone()),
                current_replicas: 1000,
                ready_replicas: 1000,
                ..Default::default()
            };
            *status = recommend(&s, &input, status, t(at)).status;
        };
        // An hour of readings a second fills the recent ones; then one reading per bucket for
        // a whole history fills the buckets.
        for k in 0..3700 {
            step(&mut status, k, k);
        }
        for k in 0..(HISTORY_BUCKETS as i64 + 10) {
            step(&mut status, 3700 + 180 * k, k);
        }
        let h = status.history.as_ref().unwrap();
        assert_eq!(h.bucket_seconds, 180);
        assert_eq!(h.peak_work_replicas.len(), HISTORY_BUCKETS);
        assert_eq!(h.max_replicas.len(), HISTORY_BUCKETS);
        assert!(status.recommendations.len() <= MAX_RECENT);
        // Run the recent readings up to their bound too, at full length.
        for k in 0..100 {
            step(
                &mut status,
                3700 + 180 * (HISTORY_BUCKETS as i64 + 10) + k,
                k,
            );
        }
        assert_eq!(status.recommendations.len(), MAX_RECENT);
        let json = serde_json::to_string(&status).unwrap();
        // etcd refuses objects over 1.5 MiB; the whole sizing state stays under 32 KiB.
        assert!(json.len() < 32 * 1024, "{} bytes", json.len());
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(96))]
        // User-given integers at their extremes (and past the schema's, as an old CRD or a
        // hand-edited object may carry) never overflow, and the answer stays within the bounds.
        #[test]
        fn extreme_settings_never_overflow(
            min in proptest::sample::select(vec![i32::MIN, -1, 0, 1, 1000, i32::MAX]),
            max in proptest::sample::select(vec![i32::MIN, 0, 1, 1000, i32::MAX]),
            up_step in proptest::option::of(proptest::sample::select(vec![1, 10_000, i32::MAX - 1, i32::MAX])),
            down_step in proptest::option::of(proptest::sample::select(vec![1, 10_000, i32::MAX])),
            current in proptest::sample::select(vec![0, 1, 999, i32::MAX - 1, i32::MAX]),
            starting in proptest::sample::select(vec![0, 1, i32::MAX]),
            interval in proptest::sample::select(vec![i32::MIN, 1, 15, 3600, i32::MAX]),
            startup in proptest::sample::select(vec![i32::MIN, 0, 7200, i32::MAX]),
            window in proptest::sample::select(vec![i32::MIN, 0, 3600, 86_400, i32::MAX]),
            work in proptest::sample::select(vec![0.0, 1.0, 999.0, 1e12, 1e300]),
            quantile in proptest::sample::select(vec![0.0, 0.5, 0.999, 2.0, f64::NAN]),
            target in proptest::option::of(proptest::sample::select(vec![0.0, 1e-300, 0.5, 1.0, 7.0, f64::NAN])),
        ) {
            let mut s = spec();
            s.min_replicas = min;
            s.max_replicas = max;
            s.scaling.max_scale_up_step = up_step;
            s.scaling.max_scale_down_step = down_step;
            s.scaling.interval_seconds = interval;
            s.scaling.startup_seconds = startup;
            s.scaling.load_window_seconds = window;
            s.scaling.scale_up_stabilization_seconds = window;
            s.scaling.scale_down_stabilization_seconds = Some(window);
            s.scaling.forecast_quantile = quantile;
            s.capacity.target_utilization = target;
            let mut status = SizingStatus::default();
            for k in 0..4 {
                let mut o = obs(work * 1000.0 * (1.0 + k as f64), 3);
                o.requests_waiting = work;
                o.requests_per_second = 1.0;
                let input = SizingInput {
                    observation: Some(o),
                    current_replicas: current,
                    ready_replicas: current.saturating_sub(starting),
                    starting_replicas: starting,
                    learned_output_tokens_per_second: None,
                };
                let d = recommend(&s, &input, &status, t(k * 15));
                let lo = min.max(0);
                proptest::prop_assert!(d.desired_replicas >= lo && d.desired_replicas <= max.max(lo), "{}", d.reason);
                proptest::prop_assert!(d.status.recommendations.len() <= MAX_RECENT);
                status = d.status;
            }
        }
    }

    #[test]
    fn reason_carries_the_numbers() {
        let mut s = spec();
        s.capacity.target_utilization = Some(0.5);
        let d = recommend(
            &s,
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
        // The load window (60 s) is the longest the readings are kept for here.
        let old = history(&[(-5000, 9), (-45, 3)]);
        let d = recommend(&s, &input, &old, t(0));
        let times: Vec<_> = d
            .status
            .recommendations
            .iter()
            .map(|r| from_time(&r.time))
            .collect();
        assert_eq!(times, vec![t(-45), t(0)]);
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
