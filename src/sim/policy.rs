//! The autoscalers the simulator compares: crossover's own policy (the controller's
//! [`crate::sizing::recommend`], not a copy), the Kubernetes HPA (the upstream calculator, ported
//! in [`super::hpa`]), KEDA on a Prometheus rate and Knative's KPA on the same work metric, static
//! pools, and the perfect-foresight oracle.

use super::{Model, Replicas, Telemetry, hpa};
use crate::api::{InferencePoolSpec, SizingStatus};
use crate::load::Observation;
use crate::sizing::{SizingInput, recommend};
use chrono::{DateTime, TimeDelta, Utc};
use std::collections::VecDeque;

/// A policy that sets the provisioned replica count.
pub trait Autoscaler {
    fn name(&self) -> &str;
    /// Replicas ready at t = 0.
    fn initial_replicas(&self, model: &Model) -> i32 {
        model.warm_start()
    }
    /// Called once a second with what was served before `now`; `Some` sets the provisioned count.
    fn decide(
        &mut self,
        now: usize,
        tel: &Telemetry,
        pool: &Replicas,
        model: &Model,
    ) -> Option<i32>;
}

fn ceil_replicas(work: f64, target: f64) -> i32 {
    ((work / target) - 1e-9).ceil().max(0.0) as i32
}

/// crossover's policy, called every `spec.scaling.intervalSeconds` with the metrics it would scrape.
pub struct Crossover {
    history: SizingStatus,
    epoch: DateTime<Utc>,
    interval: usize,
}

impl Crossover {
    pub fn new(spec: &InferencePoolSpec) -> Self {
        Self {
            history: SizingStatus::default(),
            epoch: DateTime::UNIX_EPOCH,
            interval: spec.scaling.interval_seconds.max(1) as usize,
        }
    }
}

impl Autoscaler for Crossover {
    fn name(&self) -> &str {
        "crossover"
    }

    fn decide(
        &mut self,
        now: usize,
        tel: &Telemetry,
        pool: &Replicas,
        model: &Model,
    ) -> Option<i32> {
        if now == 0 || !now.is_multiple_of(self.interval) {
            return None;
        }
        let window = tel.window(now, self.interval, model.metrics_lag_seconds);
        let observation = Observation {
            input_tokens_per_second: tel.input_tokens_per_second(window),
            output_tokens_per_second: tel.output_tokens_per_second(window),
            requests_waiting: tel.waiting_at(window),
            requests_per_second: tel.requests_per_second(window),
            // vLLM's KV-cache use tracks how full the batch is; the model's proxy is the busy share.
            kv_cache_usage: tel.busy(window),
            pods_observed: pool.ready.max(0) as u32,
            pods_expected: pool.ready.max(0) as u32,
            ..Default::default()
        };
        let at = |s: usize| self.epoch + TimeDelta::seconds(s as i64);
        let input = SizingInput {
            // At 0 ready replicas the controller reads no metrics: no pod serves them.
            observation: (pool.ready > 0).then_some(observation),
            current_replicas: pool.provisioned(),
            ready_replicas: pool.ready,
            // Every replica of the model is within its startup: it becomes ready after it.
            starting_replicas: pool.provisioned() - pool.ready,
            learned_output_tokens_per_second: None,
        };
        let decision = recommend(model.spec, &input, &self.history, at(now));
        self.history = decision.status;
        Some(decision.desired_replicas)
    }
}

/// Milli-units of a replica's full capacity, the unit the HPA's metrics carry here.
const MILLI: f64 = 1000.0;

/// The Kubernetes HPA ([`super::hpa`], the upstream calculator and rules) on a Pods metric: each
/// ready pod's share of the work served over the last minute (a Prometheus rate through a
/// metrics adapter), AverageValue target = the baseline target utilization. Pods still starting
/// have no sample (vLLM is not up yet), which the calculator treats as missing. Defaults as an
/// HPA without `spec.behavior` runs: 15 s sync, 10% tolerance, scale-down to the highest
/// recommendation of 300 s, scale-up to at most max(2 x current, 4) per sync.
pub struct Hpa {
    pub sync_seconds: usize,
    /// The metric's averaging window: a Prometheus `rate(...[1m])`.
    pub metric_window_seconds: usize,
    pub tolerances: hpa::Tolerances,
    normalizer: hpa::Normalizer,
    target_milli: i64,
}

impl Hpa {
    pub fn new(model: &Model) -> Self {
        Self {
            sync_seconds: 15,
            metric_window_seconds: 60,
            tolerances: hpa::Tolerances::default(),
            normalizer: hpa::Normalizer::new(None),
            target_milli: (model.baseline_target() * MILLI).round() as i64,
        }
    }
}

impl Autoscaler for Hpa {
    fn name(&self) -> &str {
        "hpa"
    }

    fn decide(
        &mut self,
        now: usize,
        tel: &Telemetry,
        pool: &Replicas,
        model: &Model,
    ) -> Option<i32> {
        if now == 0 || !now.is_multiple_of(self.sync_seconds) {
            return None;
        }
        let current = pool.provisioned();
        self.normalizer.record_initial(current, now as f64);
        let window = tel.window(now, self.metric_window_seconds, model.metrics_lag_seconds);
        let ready = pool.ready.max(0);
        let per_pod = if ready > 0 {
            (tel.work(window) / ready as f64 * MILLI).round() as i64
        } else {
            0
        };
        let pods: Vec<hpa::Pod> = (0..current.max(0))
            .map(|i| hpa::Pod::running((i < ready).then_some(per_pod)))
            .collect();
        let desired = if current > model.max_replicas {
            model.max_replicas
        } else if current < model.min_replicas {
            model.min_replicas
        } else {
            // No samples (every pod loading) is an error for the HPA: it does not scale.
            let Ok((desired, _)) =
                hpa::pod_metric_replicas(&pods, current, self.target_milli, self.tolerances)
            else {
                return None;
            };
            self.normalizer.normalize(
                current,
                desired,
                model.min_replicas,
                model.max_replicas,
                now as f64,
            )
        };
        if desired != current {
            self.normalizer
                .store_scale_event(current, desired, now as f64);
        }
        Some(desired)
    }
}

/// KEDA with a Prometheus trigger: the pool's total work served per second (`sum(rate(...[1m]))`
/// over vLLM's token counters, divided by capacity) with the default AverageValue metric type and
/// threshold = the baseline target, so the HPA KEDA creates computes ceil(total / threshold) over
/// the Deployment's replicas, loading ones included. The value is queried every `pollingInterval`
/// (30 s) and served from that cache in between (`useCachedMetrics: true`); the generated HPA has
/// no `spec.behavior`, so its defaults apply (15 s sync, 10% tolerance, 300 s down window).
/// `minReplicaCount` is the pool's minimum: at zero replicas vLLM exports nothing to activate on.
pub struct Keda {
    pub polling_interval_seconds: usize,
    pub sync_seconds: usize,
    pub metric_window_seconds: usize,
    pub tolerances: hpa::Tolerances,
    normalizer: hpa::Normalizer,
    threshold_milli: i64,
    cached_milli: Option<i64>,
}

impl Keda {
    pub fn new(model: &Model) -> Self {
        Self {
            polling_interval_seconds: 30,
            sync_seconds: 15,
            metric_window_seconds: 60,
            tolerances: hpa::Tolerances::default(),
            normalizer: hpa::Normalizer::new(None),
            threshold_milli: (model.baseline_target() * MILLI).round() as i64,
            cached_milli: None,
        }
    }
}

impl Autoscaler for Keda {
    fn name(&self) -> &str {
        "keda"
    }

    fn decide(
        &mut self,
        now: usize,
        tel: &Telemetry,
        pool: &Replicas,
        model: &Model,
    ) -> Option<i32> {
        if now.is_multiple_of(self.polling_interval_seconds) || self.cached_milli.is_none() {
            let window = tel.window(now, self.metric_window_seconds, model.metrics_lag_seconds);
            self.cached_milli = Some((tel.work(window) * MILLI).round() as i64);
        }
        if now == 0 || !now.is_multiple_of(self.sync_seconds) {
            return None;
        }
        let current = pool.provisioned();
        self.normalizer.record_initial(current, now as f64);
        let desired = if current > model.max_replicas {
            model.max_replicas
        } else if current < model.min_replicas {
            model.min_replicas
        } else {
            let (desired, _) = hpa::external_per_pod_replicas(
                &[self.cached_milli.unwrap_or(0)],
                current,
                self.threshold_milli,
                self.tolerances,
            );
            self.normalizer.normalize(
                current,
                desired,
                model.min_replicas,
                model.max_replicas,
                now as f64,
            )
        };
        Some(desired)
    }
}

/// Knative's KPA (as AIBrix runs it) on the same metric: 60 s stable window, 6 s panic window,
/// panic when the panic window asks for 200% of the ready pods; no scale-down while panicking;
/// at most halving per tick. Ticks every 2 s.
pub struct Kpa {
    pub tick_seconds: usize,
    pub stable_window_seconds: usize,
    pub panic_window_seconds: usize,
    pub panic_threshold: f64,
    pub max_scale_down_rate: f64,
    panic_since: Option<usize>,
    max_panic_pods: i32,
}

impl Default for Kpa {
    fn default() -> Self {
        Self {
            tick_seconds: 2,
            stable_window_seconds: 60,
            panic_window_seconds: 6,
            panic_threshold: 2.0,
            max_scale_down_rate: 2.0,
            panic_since: None,
            max_panic_pods: 0,
        }
    }
}

impl Autoscaler for Kpa {
    fn name(&self) -> &str {
        "kpa"
    }

    fn decide(
        &mut self,
        now: usize,
        tel: &Telemetry,
        pool: &Replicas,
        model: &Model,
    ) -> Option<i32> {
        if now == 0 || !now.is_multiple_of(self.tick_seconds) {
            return None;
        }
        let target = model.baseline_target();
        let lag = model.metrics_lag_seconds;
        let stable = tel.work(tel.window(now, self.stable_window_seconds, lag));
        let panic = tel.work(tel.window(now, self.panic_window_seconds, lag));
        let ready = pool.ready.max(1);
        let desired_stable = ceil_replicas(stable, target);
        let desired_panic = ceil_replicas(panic, target);

        if desired_panic as f64 / ready as f64 >= self.panic_threshold {
            self.panic_since = Some(now);
        } else if self
            .panic_since
            .is_some_and(|since| now >= since + self.stable_window_seconds)
        {
            self.panic_since = None;
            self.max_panic_pods = 0;
        }
        let mut desired = if self.panic_since.is_some() {
            // In panic the pool only grows.
            self.max_panic_pods = self
                .max_panic_pods
                .max(desired_panic)
                .max(pool.provisioned());
            self.max_panic_pods
        } else {
            desired_stable
        };
        let floor = (ready as f64 / self.max_scale_down_rate).ceil() as i32;
        desired = desired.max(floor);
        Some(model.clamp(desired))
    }
}

/// A fixed pool.
pub struct Static {
    name: &'static str,
    replicas: i32,
}

impl Static {
    /// A pool of `replicas`, always.
    pub fn fixed(name: &'static str, replicas: i32) -> Self {
        Self { name, replicas }
    }

    /// Enough replicas for the peak demand (after warm-up) at full capacity: never
    /// under-provisioned where the figures count.
    pub fn peak(model: &Model) -> Self {
        let peak = model.evaluated_demand().iter().copied().fold(0.0, f64::max);
        Self {
            name: "static-peak",
            replicas: model.replicas_for(peak),
        }
    }

    /// Sized for the mean demand at the target utilization, as a capacity plan on averages would.
    pub fn mean(model: &Model) -> Self {
        let work = model.evaluated_work();
        let mean = work.iter().sum::<f64>() / work.len().max(1) as f64;
        Self {
            name: "static-mean",
            replicas: model.clamp(ceil_replicas(mean, model.baseline_target())),
        }
    }
}

impl Autoscaler for Static {
    fn name(&self) -> &str {
        self.name
    }
    fn initial_replicas(&self, _: &Model) -> i32 {
        self.replicas
    }
    fn decide(&mut self, _: usize, _: &Telemetry, _: &Replicas, _: &Model) -> Option<i32> {
        None
    }
}

/// Perfect foresight: replicas needed at each second are `ceil(demand)`; each is requested exactly
/// `startupSeconds` before it is needed and released when it is not needed again within a
/// startup (keeping it is cheaper than starting it again). The GPU-hours floor at zero
/// under-provisioning.
pub struct Oracle {
    schedule: Vec<i32>,
}

impl Oracle {
    pub fn new(model: &Model) -> Self {
        let needed: Vec<i32> = model
            .demand
            .iter()
            .map(|&d| model.replicas_for(d))
            .collect();
        Self {
            schedule: sliding_max_ahead(&needed, model.startup_seconds),
        }
    }

    /// Replicas provisioned each second.
    pub fn schedule(&self) -> &[i32] {
        &self.schedule
    }
}

/// `out[t] = max(v[t..=t + ahead])`, in O(n) with a monotonic deque.
fn sliding_max_ahead(v: &[i32], ahead: usize) -> Vec<i32> {
    let mut out = vec![0; v.len()];
    let mut dq: VecDeque<usize> = VecDeque::new();
    let mut next = 0;
    for (t, slot) in out.iter_mut().enumerate() {
        let end = (t + ahead).min(v.len() - 1);
        while next <= end {
            while dq.back().is_some_and(|&i| v[i] <= v[next]) {
                dq.pop_back();
            }
            dq.push_back(next);
            next += 1;
        }
        while dq.front().is_some_and(|&i| i < t) {
            dq.pop_front();
        }
        *slot = v[dq[0]];
    }
    out
}

impl Autoscaler for Oracle {
    fn name(&self) -> &str {
        "oracle"
    }
    fn initial_replicas(&self, _: &Model) -> i32 {
        self.schedule[0]
    }
    fn decide(&mut self, now: usize, _: &Telemetry, _: &Replicas, _: &Model) -> Option<i32> {
        Some(self.schedule[now])
    }
}

#[cfg(test)]
mod tests {
    use super::sliding_max_ahead;

    #[test]
    fn sliding_max_looks_ahead() {
        assert_eq!(
            sliding_max_ahead(&[1, 3, 2, 1, 1, 4], 2),
            vec![3, 3, 2, 4, 4, 4]
        );
        assert_eq!(sliding_max_ahead(&[2, 1], 0), vec![2, 1]);
    }
}
