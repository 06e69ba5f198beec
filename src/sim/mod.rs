//! `crossover simulate`: replays a request trace through a model of the pool (replicas that take
//! `startupSeconds` to become ready and bill from the moment they are requested, a fluid FIFO queue,
//! metrics sampled every interval) under crossover's own [`crate::sizing::recommend`] and baselines,
//! and prices each run in GPU-hours and dollars.

pub mod corpus;
pub mod hpa;
pub mod policy;
pub mod report;
pub mod trace;

use crate::api::InferencePoolSpec;
use policy::Autoscaler;
use serde::Serialize;
use std::collections::VecDeque;
pub use trace::{Shape, Workload};

/// Demand counts as the mean work over this many trailing seconds: a burst the queue absorbs
/// within a minute is the queue's job (it shows in p99 queueing delay), not a missing replica.
pub const DEMAND_WINDOW_SECONDS: usize = 60;

/// The Azure LLM inference trace (coding service, 2023-11-16; Azure Public Dataset, Microsoft,
/// CC-BY-4.0), embedded so `crossover simulate` runs anywhere with no arguments.
pub const EXAMPLE_TRACE_CSV: &str = include_str!("../../examples/traces/azure-llm-2023-code.csv");

/// The pool `crossover simulate` runs when given none.
pub const EXAMPLE_POOL_YAML: &str = include_str!("../../examples/simulate-llama-70b-h100.yaml");

/// Hours in the month that monthly prices are pro-rated over.
pub const HOURS_PER_MONTH: f64 = 730.0;

const EPSILON: f64 = 1e-9;

/// Why a simulation cannot run.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SimError {
    #[error(
        "spec.capacity.outputTokensPerSecond must be set to simulate: the model needs what one replica serves"
    )]
    NoCapacity,
    #[error("the workload is empty")]
    EmptyWorkload,
}

/// Knobs of the pool model that the spec does not carry.
#[derive(Clone, Copy, Debug, PartialEq, Default)]
pub struct SimOptions {
    /// Seconds from request to ready; default `spec.scaling.startupSeconds`.
    pub startup_seconds: Option<u32>,
    /// Extra delay before a reading reaches the autoscalers (a Prometheus scrape, say), on top of
    /// each one averaging over its own interval.
    pub metrics_lag_seconds: u32,
    /// Seconds at the start left out of every figure (every policy still runs through them).
    pub warm_up_seconds: u32,
}

/// The pool model's fixed inputs, shared by every policy's run.
pub struct Model<'a> {
    pub spec: &'a InferencePoolSpec,
    pub workload: &'a Workload,
    /// Replica-seconds of work arriving each second (1.0 = one replica's full capacity).
    pub work: Vec<f64>,
    /// Mean work over the trailing [`DEMAND_WINDOW_SECONDS`]: what ready replicas must carry.
    pub demand: Vec<f64>,
    pub output_tokens_per_second: f64,
    pub input_tokens_per_second: Option<f64>,
    pub startup_seconds: usize,
    pub metrics_lag_seconds: usize,
    /// First second counted in the figures (0 without warm-up; always before the last second).
    pub warm_up: usize,
    pub min_replicas: i32,
    pub max_replicas: i32,
}

impl<'a> Model<'a> {
    pub fn new(
        spec: &'a InferencePoolSpec,
        workload: &'a Workload,
        options: SimOptions,
    ) -> Result<Self, SimError> {
        let positive = |v: Option<f64>| v.filter(|c| c.is_finite() && *c > 0.0);
        let output =
            positive(spec.capacity.output_tokens_per_second).ok_or(SimError::NoCapacity)?;
        let input = positive(spec.capacity.input_tokens_per_second);
        if workload.seconds() == 0 {
            return Err(SimError::EmptyWorkload);
        }
        let work: Vec<f64> = (0..workload.seconds())
            .map(|s| {
                workload.output_tokens[s] / output
                    + input.map_or(0.0, |c| workload.input_tokens[s] / c)
            })
            .collect();
        let mut demand = Vec::with_capacity(work.len());
        let mut sum = 0.0;
        for s in 0..work.len() {
            sum += work[s];
            if s >= DEMAND_WINDOW_SECONDS {
                sum -= work[s - DEMAND_WINDOW_SECONDS];
            }
            // No traffic before the trace: the first minute's mean counts the seconds before it.
            demand.push(sum.max(0.0) / DEMAND_WINDOW_SECONDS as f64);
        }
        let min_replicas = spec.min_replicas.max(0);
        Ok(Self {
            spec,
            workload,
            work,
            demand,
            output_tokens_per_second: output,
            input_tokens_per_second: input,
            startup_seconds: options
                .startup_seconds
                .unwrap_or(spec.scaling.startup_seconds.max(0) as u32)
                as usize,
            metrics_lag_seconds: options.metrics_lag_seconds as usize,
            warm_up: (options.warm_up_seconds as usize).min(workload.seconds() - 1),
            min_replicas,
            max_replicas: spec.max_replicas.max(min_replicas),
        })
    }

    pub fn seconds(&self) -> usize {
        self.work.len()
    }

    pub fn clamp(&self, replicas: i32) -> i32 {
        replicas.clamp(self.min_replicas, self.max_replicas)
    }

    /// Fewest replicas that carry `work` replica-seconds per second at full capacity.
    pub fn replicas_for(&self, work: f64) -> i32 {
        self.clamp((work - EPSILON).ceil().max(0.0) as i32)
    }

    /// A pool sized for the first minute at the target utilization, ready at t = 0: every dynamic
    /// policy starts from the same warm pool.
    pub fn warm_start(&self) -> i32 {
        let first = self.demand[self.seconds().min(DEMAND_WINDOW_SECONDS) - 1];
        self.replicas_for(first / self.baseline_target())
    }

    /// The target utilization the baselines run at: the spec's, else [`BASELINE_TARGET`].
    pub fn baseline_target(&self) -> f64 {
        self.spec
            .capacity
            .target_utilization
            .filter(|t| t.is_finite() && *t > 0.0)
            .map_or(BASELINE_TARGET, |t| t.min(1.0))
    }

    /// Demand over the seconds the figures count.
    pub fn evaluated_demand(&self) -> &[f64] {
        &self.demand[self.warm_up..]
    }

    /// Work over the seconds the figures count.
    pub fn evaluated_work(&self) -> &[f64] {
        &self.work[self.warm_up..]
    }
}

/// Target utilization of the `hpa`, `keda`, `kpa` and `static-mean` baselines when the pool sets
/// none: the example pool's setting before the policy chose its own headroom (docs/simulation.md).
pub const BASELINE_TARGET: f64 = 0.8;

/// Replicas of one run: ready ones, and those still starting with the second they become ready.
#[derive(Clone, Debug, Default)]
pub struct Replicas {
    pub ready: i32,
    starting: VecDeque<usize>,
    /// Second of the last change of the provisioned count.
    pub last_scale: Option<usize>,
    pub scale_events: u32,
}

impl Replicas {
    pub fn new(ready: i32) -> Self {
        Self {
            ready,
            ..Default::default()
        }
    }

    /// Requested and billing, ready or not.
    pub fn provisioned(&self) -> i32 {
        self.ready + self.starting.len() as i32
    }

    /// Sets the provisioned count at second `now`; new replicas are ready `startup` seconds later.
    /// Shrinking cancels starting replicas first (newest first): they serve nothing yet.
    pub fn set(&mut self, target: i32, now: usize, startup: usize) {
        let current = self.provisioned();
        if target == current {
            return;
        }
        if target > current {
            for _ in current..target {
                self.starting.push_back(now + startup);
            }
        } else {
            for _ in target..current {
                if self.starting.pop_back().is_none() {
                    self.ready -= 1;
                }
            }
        }
        self.last_scale = Some(now);
        self.scale_events += 1;
    }

    /// Moves replicas whose startup is over to ready.
    pub fn advance(&mut self, now: usize) {
        while self.starting.front().is_some_and(|&at| at <= now) {
            self.starting.pop_front();
            self.ready += 1;
        }
    }
}

/// What the pool served, second by second, as prefix sums so any window's mean is O(1).
#[derive(Clone, Debug, Default)]
pub struct Telemetry {
    cum_input_tokens: Vec<f64>,
    cum_output_tokens: Vec<f64>,
    cum_work: Vec<f64>,
    cum_busy: Vec<f64>,
    cum_requests: Vec<f64>,
    /// Requests still queued at the end of each second.
    pub waiting: Vec<f64>,
}

impl Telemetry {
    fn with_capacity(n: usize) -> Self {
        let mut t = Self {
            cum_input_tokens: Vec::with_capacity(n + 1),
            cum_output_tokens: Vec::with_capacity(n + 1),
            cum_work: Vec::with_capacity(n + 1),
            cum_busy: Vec::with_capacity(n + 1),
            cum_requests: Vec::with_capacity(n + 1),
            waiting: Vec::with_capacity(n),
        };
        for v in [
            &mut t.cum_input_tokens,
            &mut t.cum_output_tokens,
            &mut t.cum_work,
            &mut t.cum_busy,
            &mut t.cum_requests,
        ] {
            v.push(0.0);
        }
        t
    }

    fn push(
        &mut self,
        input: f64,
        output: f64,
        work: f64,
        busy: f64,
        waiting: f64,
        served_requests: f64,
    ) {
        let last = |v: &Vec<f64>| v[v.len() - 1];
        self.cum_input_tokens
            .push(last(&self.cum_input_tokens) + input);
        self.cum_output_tokens
            .push(last(&self.cum_output_tokens) + output);
        self.cum_work.push(last(&self.cum_work) + work);
        self.cum_busy.push(last(&self.cum_busy) + busy);
        self.cum_requests
            .push(last(&self.cum_requests) + served_requests);
        self.waiting.push(waiting);
    }

    /// Seconds recorded so far.
    pub fn len(&self) -> usize {
        self.waiting.len()
    }

    pub fn is_empty(&self) -> bool {
        self.waiting.is_empty()
    }

    fn mean(cum: &[f64], from: usize, to: usize) -> f64 {
        if to <= from {
            return 0.0;
        }
        (cum[to] - cum[from]) / (to - from) as f64
    }

    /// The window `[from, to)` ending `lag` seconds before `now`, `len` seconds long, clipped to data.
    pub fn window(&self, now: usize, len: usize, lag: usize) -> (usize, usize) {
        let to = now.saturating_sub(lag).min(self.len());
        (to.saturating_sub(len), to)
    }

    pub fn input_tokens_per_second(&self, (from, to): (usize, usize)) -> f64 {
        Self::mean(&self.cum_input_tokens, from, to)
    }
    pub fn output_tokens_per_second(&self, (from, to): (usize, usize)) -> f64 {
        Self::mean(&self.cum_output_tokens, from, to)
    }
    /// Replica-seconds of work served per second.
    pub fn work(&self, (from, to): (usize, usize)) -> f64 {
        Self::mean(&self.cum_work, from, to)
    }
    /// Requests finished per second.
    pub fn requests_per_second(&self, (from, to): (usize, usize)) -> f64 {
        Self::mean(&self.cum_requests, from, to)
    }
    /// Mean share of ready capacity busy.
    pub fn busy(&self, (from, to): (usize, usize)) -> f64 {
        Self::mean(&self.cum_busy, from, to)
    }
    /// Requests queued at the end of the window (a gauge read at scrape time).
    pub fn waiting_at(&self, (_, to): (usize, usize)) -> f64 {
        if to == 0 { 0.0 } else { self.waiting[to - 1] }
    }
}

/// One policy's run, priced.
#[derive(Clone, Debug, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PolicyResult {
    pub name: String,
    pub gpu_hours: f64,
    pub pool_cost_usd: f64,
    pub api_cost_usd: Option<f64>,
    pub under_provisioned_seconds: u64,
    pub p99_queue_seconds: f64,
    pub scale_events: u32,
    /// Ready replicas each second (for the chart; not in the JSON).
    #[serde(skip)]
    pub ready: Vec<i32>,
}

/// Every policy's run over one workload.
#[derive(Clone, Debug, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SimReport {
    pub workload: String,
    pub synthetic: bool,
    pub duration_seconds: u64,
    /// Seconds at the start left out of every figure.
    pub warm_up_seconds: u64,
    /// Seconds the figures count: the duration less the warm-up.
    pub evaluated_seconds: u64,
    pub input_tokens: f64,
    pub output_tokens: f64,
    pub policies: Vec<PolicyResult>,
    /// Demand in replicas of full capacity, each second (for the chart).
    #[serde(skip)]
    pub demand: Vec<f64>,
}

/// Runs crossover and every baseline over `workload`.
pub fn simulate(
    spec: &InferencePoolSpec,
    workload: &Workload,
    options: SimOptions,
) -> Result<SimReport, SimError> {
    let model = Model::new(spec, workload, options)?;
    let mut policies: Vec<Box<dyn Autoscaler>> = vec![
        Box::new(policy::Crossover::new(spec)),
        Box::new(policy::Hpa::new(&model)),
        Box::new(policy::Kpa::default()),
        Box::new(policy::Keda::new(&model)),
        Box::new(policy::Static::peak(&model)),
        Box::new(policy::Static::mean(&model)),
        Box::new(policy::Oracle::new(&model)),
    ];
    let results = policies
        .iter_mut()
        .map(|p| run(&model, p.as_mut()))
        .collect();
    Ok(SimReport {
        workload: workload.description.clone(),
        synthetic: workload.synthetic,
        duration_seconds: model.seconds() as u64,
        warm_up_seconds: model.warm_up as u64,
        evaluated_seconds: (model.seconds() - model.warm_up) as u64,
        input_tokens: workload.input_tokens[model.warm_up..].iter().sum(),
        output_tokens: workload.output_tokens[model.warm_up..].iter().sum(),
        policies: results,
        demand: model.demand,
    })
}

/// Plays the workload through the pool model under one autoscaler.
pub fn run(model: &Model, autoscaler: &mut dyn Autoscaler) -> PolicyResult {
    let n = model.seconds();
    let w = model.workload;
    let (ci, co) = (
        model.input_tokens_per_second,
        model.output_tokens_per_second,
    );
    let work_of = |input: f64, output: f64| output / co + ci.map_or(0.0, |c| input / c);

    let mut pool = Replicas::new(autoscaler.initial_replicas(model));
    let mut tel = Telemetry::with_capacity(n);
    let (mut q_in, mut q_out, mut q_req) = (0.0_f64, 0.0_f64, 0.0_f64);
    let mut replica_seconds = 0.0;
    let mut under = 0_u64;
    let mut arrived = 0.0;
    let mut arrived_before = Vec::with_capacity(n);
    let mut ready = Vec::with_capacity(n);

    let mut scales_before_warm_up = 0;
    for s in 0..n {
        let counted = s >= model.warm_up;
        if s == model.warm_up {
            scales_before_warm_up = pool.scale_events;
        }
        pool.advance(s);
        if let Some(target) = autoscaler.decide(s, &tel, &pool, model) {
            pool.set(model.clamp(target), s, model.startup_seconds);
            pool.advance(s);
        }
        let capacity = pool.ready.max(0) as f64;
        if counted {
            replica_seconds += pool.provisioned() as f64;
            if model.demand[s] > capacity + EPSILON {
                under += 1;
            }
        }
        ready.push(pool.ready);

        // Fluid FIFO: what arrives this second waits behind the work queued before it, until
        // the pool has served that much (found once the run is over, so a scale-up that lands
        // while it waits shortens its wait).
        arrived_before.push(arrived);
        arrived += work_of(w.input_tokens[s], w.output_tokens[s]);
        q_in += w.input_tokens[s];
        q_out += w.output_tokens[s];
        q_req += w.requests[s];
        let queued = work_of(q_in, q_out);
        let share = if queued > EPSILON {
            (capacity / queued).min(1.0)
        } else {
            1.0
        };
        let (served_in, served_out) = (q_in * share, q_out * share);
        q_in -= served_in;
        q_out -= served_out;
        let served_requests = q_req * share;
        q_req *= 1.0 - share;
        if q_req < 1e-6 {
            q_req = 0.0;
        }
        let served_work = queued * share;
        let busy = if capacity > 0.0 {
            served_work / capacity
        } else {
            1.0
        };
        tel.push(
            served_in,
            served_out,
            served_work,
            busy,
            q_req,
            served_requests,
        );
    }

    let spec = model.spec;
    let evaluated = n - model.warm_up;
    let hours = replica_seconds / 3600.0;
    let replica_usd = spec
        .cost
        .replica_hourly_usd
        .map(|h| h * hours)
        .or(spec
            .cost
            .replica_monthly_usd
            .map(|m| m * hours / HOURS_PER_MONTH))
        .unwrap_or(0.0);
    let overhead_usd: f64 = spec
        .cost
        .overheads
        .iter()
        .map(|o| o.monthly_usd)
        .sum::<f64>()
        * (evaluated as f64 / 3600.0)
        / HOURS_PER_MONTH;
    PolicyResult {
        name: autoscaler.name().to_string(),
        gpu_hours: hours * spec.gpu.count.max(1) as f64,
        pool_cost_usd: replica_usd + overhead_usd,
        api_cost_usd: api_cost_usd(spec, w, model.warm_up),
        under_provisioned_seconds: under,
        p99_queue_seconds: p99_queue_seconds(model, &arrived_before, &tel.cum_work),
        scale_events: pool.scale_events - scales_before_warm_up,
        ready,
    }
}

/// The same tokens (from second `from` on) at the `compareTo` prices; `None` without explicit
/// input and output prices.
pub fn api_cost_usd(spec: &InferencePoolSpec, w: &Workload, from: usize) -> Option<f64> {
    let c = spec.compare_to.as_ref()?;
    let (pi, po) = (
        c.input_usd_per_million_tokens?,
        c.output_usd_per_million_tokens?,
    );
    let input: f64 = w.input_tokens[from..].iter().sum();
    let output: f64 = w.output_tokens[from..].iter().sum();
    Some((input * pi + output * po) / 1e6)
}

/// 99th percentile of the queueing delay of the requests counted: the requests of second `s`
/// start once the pool has served all the work that arrived before them (`arrived_before[s]`,
/// against the cumulative work served, `served[t]` before second `t`), interpolated within the
/// second. Requests still waiting at the end count the wait so far.
fn p99_queue_seconds(model: &Model, arrived_before: &[f64], served: &[f64]) -> f64 {
    let requests = &model.workload.requests;
    let n = arrived_before.len().min(served.len().saturating_sub(1));
    let mut delays: Vec<(f64, f64)> = Vec::new();
    let mut t = 0;
    for s in model.warm_up..n {
        if requests[s] <= 0.0 {
            continue;
        }
        let ahead = arrived_before[s];
        t = t.max(s);
        while t < n && served[t + 1] < ahead - EPSILON {
            t += 1;
        }
        let start = if t == n {
            n as f64
        } else if served[t] >= ahead - EPSILON {
            t as f64
        } else {
            t as f64 + (ahead - served[t]) / (served[t + 1] - served[t]).max(EPSILON)
        };
        delays.push(((start - s as f64).max(0.0), requests[s]));
    }
    p99(delays)
}

/// 99th percentile of (delay, requests) pairs, weighted by requests.
fn p99(mut delays: Vec<(f64, f64)>) -> f64 {
    let total: f64 = delays.iter().map(|d| d.1).sum();
    let rank = total * 0.99;
    delays.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut seen = 0.0;
    for (delay, count) in &delays {
        seen += count;
        if seen >= rank {
            return *delay;
        }
    }
    delays.last().map_or(0.0, |d| d.0)
}

#[cfg(test)]
mod tests;
