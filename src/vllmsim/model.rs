//! One simulated vLLM engine (a data-parallel rank), stepped by time: requests arrive at the set
//! rate, queue, prefill and decode within the engine's token budgets, and the engine keeps the
//! counters and histograms vLLM exposes. Pure: no clock, no IO, so tests step it by hand.

use std::collections::VecDeque;

/// vLLM 0.33 `vllm:time_to_first_token_seconds` buckets.
pub const TTFT_BUCKETS_SECONDS: &[f64] = &[
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
    20.0, 40.0, 80.0, 160.0, 640.0, 2560.0,
];
/// vLLM 0.33 `vllm:inter_token_latency_seconds` buckets.
pub const ITL_BUCKETS_SECONDS: &[f64] = &[
    0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0,
    40.0, 80.0,
];
/// vLLM 0.33 `vllm:e2e_request_latency_seconds` buckets.
pub const E2E_BUCKETS_SECONDS: &[f64] = &[
    0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0, 240.0,
    480.0, 960.0, 1920.0, 7680.0,
];

/// vLLM's 1-2-5 token buckets up to `max_model_len` (request_prompt_tokens, request_generation_tokens).
pub fn token_buckets(max_model_len: u32) -> Vec<f64> {
    let mut out = Vec::new();
    let mut magnitude = 1.0;
    loop {
        for m in [1.0, 2.0, 5.0] {
            let b = m * magnitude;
            if b > f64::from(max_model_len) {
                return out;
            }
            out.push(b);
        }
        magnitude *= 10.0;
    }
}

/// What one engine can do. A pod's capacity is split evenly over its engines.
#[derive(Clone, Debug, PartialEq)]
pub struct EngineConfig {
    /// Decode tokens per second over the whole batch.
    pub output_tokens_per_second: f64,
    /// Prefill tokens per second.
    pub input_tokens_per_second: f64,
    /// Decode speed of one sequence when the batch is not the bottleneck.
    pub per_request_output_tokens_per_second: f64,
    /// Most requests in the running batch (vLLM's --max-num-seqs); beyond it requests wait.
    pub max_num_seqs: usize,
    /// KV-cache size in tokens; a request reserves prompt + output tokens while it runs.
    pub kv_cache_tokens: f64,
    pub max_model_len: u32,
}

/// Offered load on one engine.
#[derive(Clone, Copy, Debug, PartialEq, Default)]
pub struct EngineLoad {
    pub requests_per_second: f64,
    pub input_tokens_per_request: f64,
    pub output_tokens_per_request: f64,
}

/// A non-cumulative histogram: counts per bucket, the last being +Inf.
#[derive(Clone, Debug, PartialEq)]
pub struct SimHistogram {
    pub bounds: Vec<f64>,
    pub counts: Vec<f64>,
    pub sum: f64,
    pub count: f64,
}

impl SimHistogram {
    pub fn new(bounds: &[f64]) -> Self {
        Self {
            bounds: bounds.to_vec(),
            counts: vec![0.0; bounds.len() + 1],
            sum: 0.0,
            count: 0.0,
        }
    }

    /// Records `weight` observations of `value`.
    pub fn observe(&mut self, value: f64, weight: f64) {
        let i = self
            .bounds
            .iter()
            .position(|&b| value <= b)
            .unwrap_or(self.bounds.len());
        self.counts[i] += weight;
        self.sum += value * weight;
        self.count += weight;
    }

    /// `(le, cumulative count)` pairs ending with `+Inf`, as exposed.
    pub fn cumulative(&self) -> Vec<(f64, f64)> {
        let mut acc = 0.0;
        self.bounds
            .iter()
            .copied()
            .chain(std::iter::once(f64::INFINITY))
            .zip(&self.counts)
            .map(|(le, n)| {
                acc += n;
                (le, acc)
            })
            .collect()
    }
}

#[derive(Clone, Debug)]
struct Request {
    arrived_at_seconds: f64,
    input_tokens: f64,
    output_tokens: f64,
    prefilled_tokens: f64,
    generated_tokens: f64,
    first_token_at_seconds: Option<f64>,
}

/// One engine's state and the metrics it exposes.
#[derive(Clone, Debug)]
pub struct EngineModel {
    pub config: EngineConfig,
    pub load: EngineLoad,
    now_seconds: f64,
    arrivals_due: f64,
    waiting: VecDeque<Request>,
    running: Vec<Request>,
    kv_reserved_tokens: f64,
    pub prompt_tokens_total: f64,
    pub generation_tokens_total: f64,
    pub request_success_total: f64,
    pub time_to_first_token_seconds: SimHistogram,
    pub inter_token_latency_seconds: SimHistogram,
    pub e2e_request_latency_seconds: SimHistogram,
    pub request_prompt_tokens: SimHistogram,
    pub request_generation_tokens: SimHistogram,
}

impl EngineModel {
    pub fn new(config: EngineConfig) -> Self {
        let tokens = token_buckets(config.max_model_len);
        Self {
            load: EngineLoad::default(),
            now_seconds: 0.0,
            arrivals_due: 0.0,
            waiting: VecDeque::new(),
            running: Vec::new(),
            kv_reserved_tokens: 0.0,
            prompt_tokens_total: 0.0,
            generation_tokens_total: 0.0,
            request_success_total: 0.0,
            time_to_first_token_seconds: SimHistogram::new(TTFT_BUCKETS_SECONDS),
            inter_token_latency_seconds: SimHistogram::new(ITL_BUCKETS_SECONDS),
            e2e_request_latency_seconds: SimHistogram::new(E2E_BUCKETS_SECONDS),
            request_prompt_tokens: SimHistogram::new(&tokens),
            request_generation_tokens: SimHistogram::new(&tokens),
            config,
        }
    }

    pub fn requests_running(&self) -> usize {
        self.running.len()
    }

    pub fn requests_waiting(&self) -> usize {
        self.waiting.len()
    }

    /// KV-cache use, 0 to 1.
    pub fn kv_cache_usage(&self) -> f64 {
        if self.config.kv_cache_tokens > 0.0 {
            (self.kv_reserved_tokens / self.config.kv_cache_tokens).min(1.0)
        } else {
            0.0
        }
    }

    /// Advances the engine by `dt_seconds`: arrivals, admission, prefill, decode, completions.
    /// Small steps (≤ 0.1 s) keep latencies within a bucket of what a continuous model would give.
    pub fn step(&mut self, dt_seconds: f64) {
        if dt_seconds <= 0.0 {
            return;
        }
        self.now_seconds += dt_seconds;
        let now = self.now_seconds;

        // Arrivals are evenly spaced: deterministic, so tests can check exact counts.
        self.arrivals_due += self.load.requests_per_second * dt_seconds;
        while self.arrivals_due >= 1.0 {
            self.arrivals_due -= 1.0;
            self.waiting.push_back(Request {
                arrived_at_seconds: now,
                input_tokens: self.load.input_tokens_per_request.max(0.0),
                output_tokens: self.load.output_tokens_per_request.max(1.0),
                prefilled_tokens: 0.0,
                generated_tokens: 0.0,
                first_token_at_seconds: None,
            });
        }

        while let Some(next) = self.waiting.front() {
            let need = next.input_tokens + next.output_tokens;
            let fits = self.kv_reserved_tokens + need <= self.config.kv_cache_tokens;
            // A request larger than the whole cache still runs alone rather than blocking forever.
            if self.running.len() >= self.config.max_num_seqs || !(fits || self.running.is_empty())
            {
                break;
            }
            self.kv_reserved_tokens += need;
            if let Some(r) = self.waiting.pop_front() {
                self.running.push(r);
            }
        }

        // Prefill first come, first served within the prefill budget.
        let mut prefill_budget = self.config.input_tokens_per_second * dt_seconds;
        for r in &mut self.running {
            if r.first_token_at_seconds.is_some() {
                continue;
            }
            let take = prefill_budget.min(r.input_tokens - r.prefilled_tokens);
            r.prefilled_tokens += take;
            prefill_budget -= take;
            self.prompt_tokens_total += take;
            if r.prefilled_tokens >= r.input_tokens {
                r.first_token_at_seconds = Some(now);
                r.generated_tokens = 1.0;
                self.generation_tokens_total += 1.0;
                self.time_to_first_token_seconds
                    .observe(now - r.arrived_at_seconds, 1.0);
            }
            if prefill_budget <= 0.0 {
                break;
            }
        }

        // Decode: the batch shares the engine's decode rate, each sequence capped at its own speed.
        let decoding = self
            .running
            .iter()
            .filter(|r| r.first_token_at_seconds.is_some() && r.generated_tokens < r.output_tokens)
            .count();
        if decoding > 0 {
            let per_request = (self.config.output_tokens_per_second / decoding as f64)
                .min(self.config.per_request_output_tokens_per_second)
                * dt_seconds;
            for r in &mut self.running {
                if r.first_token_at_seconds.is_some() && r.generated_tokens < r.output_tokens {
                    let add = per_request.min(r.output_tokens - r.generated_tokens);
                    r.generated_tokens += add;
                    self.generation_tokens_total += add;
                }
            }
        }

        let mut i = 0;
        while i < self.running.len() {
            let r = &self.running[i];
            match r.first_token_at_seconds {
                Some(first) if r.generated_tokens >= r.output_tokens => {
                    let r = self.running.swap_remove(i);
                    self.kv_reserved_tokens -= r.input_tokens + r.output_tokens;
                    self.request_success_total += 1.0;
                    self.e2e_request_latency_seconds
                        .observe(now - r.arrived_at_seconds, 1.0);
                    self.request_prompt_tokens.observe(r.input_tokens, 1.0);
                    self.request_generation_tokens.observe(r.output_tokens, 1.0);
                    // One observation per decoded token after the first, at the request's mean gap.
                    let gaps = (r.output_tokens - 1.0).floor();
                    if gaps >= 1.0 {
                        self.inter_token_latency_seconds
                            .observe((now - first) / gaps, gaps);
                    }
                }
                _ => i += 1,
            }
        }
        if self.running.is_empty() {
            // Avoid float drift leaving a phantom reservation.
            self.kv_reserved_tokens = 0.0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> EngineConfig {
        EngineConfig {
            output_tokens_per_second: 1000.0,
            input_tokens_per_second: 10_000.0,
            per_request_output_tokens_per_second: 50.0,
            max_num_seqs: 64,
            kv_cache_tokens: 1_000_000.0,
            max_model_len: 8192,
        }
    }

    fn run(model: &mut EngineModel, seconds: f64) {
        for _ in 0..(seconds * 10.0).round() as usize {
            model.step(0.1);
        }
    }

    #[test]
    fn token_buckets_are_1_2_5_capped() {
        assert_eq!(
            token_buckets(600),
            vec![1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0]
        );
    }

    #[test]
    fn under_capacity_throughput_matches_load_and_queue_stays_empty() {
        let mut m = EngineModel::new(config());
        // 5 req/s x 100 output tokens = 500 tok/s, half the decode capacity
        m.load = EngineLoad {
            requests_per_second: 5.0,
            input_tokens_per_request: 200.0,
            output_tokens_per_request: 100.0,
        };
        run(&mut m, 30.0);
        let (gen0, prompt0, done0) = (
            m.generation_tokens_total,
            m.prompt_tokens_total,
            m.request_success_total,
        );
        run(&mut m, 60.0);
        let out_rate = (m.generation_tokens_total - gen0) / 60.0;
        let in_rate = (m.prompt_tokens_total - prompt0) / 60.0;
        let rps = (m.request_success_total - done0) / 60.0;
        assert!((out_rate - 500.0).abs() < 15.0, "{out_rate}");
        assert!((in_rate - 1000.0).abs() < 1e-6, "{in_rate}");
        assert!((rps - 5.0).abs() < 0.2, "{rps}");
        assert_eq!(m.requests_waiting(), 0);
        // 100 tokens at 50 tok/s each: about 2 s in the batch, so about 10 running (Little's law)
        assert!(
            (8..=12).contains(&m.requests_running()),
            "{}",
            m.requests_running()
        );
        // prefill of 200 tokens at 10k tok/s: first token in the first step
        assert!(
            m.time_to_first_token_seconds.cumulative()[7].1 == m.time_to_first_token_seconds.count
        );
    }

    #[test]
    fn saturation_grows_the_queue_and_ttft() {
        let mut m = EngineModel::new(config());
        // 20 req/s x 100 tokens = 2000 tok/s, twice the decode capacity
        m.load = EngineLoad {
            requests_per_second: 20.0,
            input_tokens_per_request: 200.0,
            output_tokens_per_request: 100.0,
        };
        run(&mut m, 20.0);
        let waiting_early = m.requests_waiting();
        run(&mut m, 20.0);
        assert!(
            m.requests_waiting() > waiting_early + 100,
            "{waiting_early} -> {}",
            m.requests_waiting()
        );
        assert_eq!(m.requests_running(), 64);
        let throughput_start = m.generation_tokens_total;
        run(&mut m, 10.0);
        let out_rate = (m.generation_tokens_total - throughput_start) / 10.0;
        assert!(
            (out_rate - 1000.0).abs() < 30.0,
            "capped at capacity: {out_rate}"
        );
        let ttft = &m.time_to_first_token_seconds;
        assert!(
            ttft.sum / ttft.count > 1.0,
            "mean TTFT {}",
            ttft.sum / ttft.count
        );
    }

    #[test]
    fn idle_engine_stays_idle() {
        let mut m = EngineModel::new(config());
        run(&mut m, 5.0);
        assert_eq!(m.generation_tokens_total, 0.0);
        assert_eq!(m.kv_cache_usage(), 0.0);
    }
}
