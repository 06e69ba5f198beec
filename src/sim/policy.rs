//! The autoscalers the simulator compares: crossover's own policy (the controller's
//! [`crate::sizing::recommend`], not a copy), the Kubernetes HPA and Knative's KPA on the same
//! utilization metric, static pools, and the perfect-foresight oracle.

use super::{Model, Replicas, Telemetry};
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
            observation: Some(observation),
            current_replicas: pool.provisioned(),
            ready_replicas: pool.ready,
            last_scale_time: pool.last_scale.map(at),
            learned_output_tokens_per_second: None,
        };
        let decision = recommend(model.spec, &input, &self.history, at(now));
        self.history = decision.status;
        Some(decision.desired_replicas)
    }
}

/// The Kubernetes HPA on the same utilization metric, averaged over the same minute crossover
/// reads: 15 s sync, 10% tolerance, scale-up by at most max(100%, 4 pods) per 15 s, scale-down to
/// the highest recommendation of the last 300 s.
pub struct Hpa {
    pub sync_seconds: usize,
    /// The metric's averaging window: a Prometheus rate over this many seconds, as a metrics
    /// adapter or KEDA query reads it (crossover reads the same minute, its loadWindowSeconds).
    pub metric_window_seconds: usize,
    pub tolerance: f64,
    pub down_window_seconds: usize,
    recommendations: VecDeque<(usize, i32)>,
}

impl Default for Hpa {
    fn default() -> Self {
        Self {
            sync_seconds: 15,
            metric_window_seconds: 60,
            tolerance: 0.1,
            down_window_seconds: 300,
            recommendations: VecDeque::new(),
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
        let target = model.spec.capacity.target_utilization;
        let current = pool.provisioned();
        let work = tel.work(tel.window(
            now,
            self.metric_window_seconds.max(self.sync_seconds),
            model.metrics_lag_seconds,
        ));
        let ready = pool.ready.max(1) as f64;
        let ratio = work / ready / target;
        // Unready pods count as idle, so the desired count is over all provisioned pods.
        let rec = if (ratio - 1.0).abs() <= self.tolerance {
            current
        } else {
            let wanted = ceil_replicas(work, target);
            // The HPA does not scale against the direction the ready pods' ratio points.
            if (ratio > 1.0 && wanted < current) || (ratio < 1.0 && wanted > current) {
                current
            } else {
                wanted
            }
        };
        let rec = model.clamp(rec);
        self.recommendations.push_back((now, rec));
        while self
            .recommendations
            .front()
            .is_some_and(|&(t, _)| t + self.down_window_seconds < now)
        {
            self.recommendations.pop_front();
        }
        let desired = if rec < current {
            let highest = self
                .recommendations
                .iter()
                .map(|r| r.1)
                .max()
                .unwrap_or(rec);
            highest.min(current)
        } else {
            rec.min((current * 2).max(current + 4))
        };
        Some(model.clamp(desired))
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
        let target = model.spec.capacity.target_utilization;
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

    /// Enough replicas for the peak demand at full capacity: never under-provisioned.
    pub fn peak(model: &Model) -> Self {
        let peak = model.demand.iter().copied().fold(0.0, f64::max);
        Self {
            name: "static-peak",
            replicas: model.replicas_for(peak),
        }
    }

    /// Sized for the mean demand at the target utilization, as a capacity plan on averages would.
    pub fn mean(model: &Model) -> Self {
        let mean = model.work.iter().sum::<f64>() / model.seconds() as f64;
        Self {
            name: "static-mean",
            replicas: model.clamp(ceil_replicas(mean, model.spec.capacity.target_utilization)),
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
