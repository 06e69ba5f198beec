//! The evaluation corpus (`crossover simulate --corpus`): one pool replayed through every policy
//! on workloads built deterministically from the shipped trace and from synthetic families, each
//! with and without a metrics lag, so that no single trace decides whether the policy is good.
//!
//! Synthetic workloads draw Poisson arrivals from a fixed-seed generator, with request sizes
//! sampled from the shipped trace (or from a capped Pareto for the heavy-tailed family). Rates are
//! in replicas of work at the pool's capacity, so the same family fits any pool.

use super::trace::{self, Request, Shape, Workload};
use super::{SimError, SimOptions, SimReport, simulate};
use crate::api::InferencePoolSpec;
use serde::Serialize;

/// The metrics lag of the lagged half of the corpus: a 30 s Prometheus scrape.
pub const LAG_SECONDS: u32 = 30;

/// What every figure leaves out by default: the first quarter hour, before any policy has seen
/// a burst (a pool runs for months; its first minutes are not its steady state).
pub const DEFAULT_WARM_UP_SECONDS: u32 = 900;

/// SplitMix64: small, fast, and the same sequence on every platform and version.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1_u64 << 53) as f64
    }

    /// Uniform in [lo, hi).
    pub fn between(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.uniform()
    }

    /// A Poisson count with mean `lambda` (Knuth's product method, in chunks so exp() never
    /// underflows).
    pub fn poisson(&mut self, lambda: f64) -> u64 {
        let mut left = lambda.max(0.0);
        let mut count = 0;
        while left > 0.0 {
            let chunk = left.min(30.0);
            left -= chunk;
            let limit = (-chunk).exp();
            let mut p = self.uniform();
            while p > limit {
                count += 1;
                p *= self.uniform();
            }
        }
        count
    }
}

/// How request sizes are drawn.
#[derive(Clone, Copy, Debug)]
enum Sizes<'a> {
    /// Uniformly from the shipped trace's requests.
    Trace(&'a [Request]),
    /// Capped Pareto prompt and output lengths (heavy tails, a few huge requests).
    Pareto,
}

/// Largest prompt the example pool accepts (its `--max-model-len`), and a long generation.
const MAX_PROMPT_TOKENS: f64 = 16_384.0;
const MAX_OUTPUT_TOKENS: f64 = 4_096.0;

impl Sizes<'_> {
    fn draw(&self, rng: &mut Rng) -> (f64, f64) {
        match self {
            Sizes::Trace(requests) => {
                let r = requests[(rng.next_u64() % requests.len() as u64) as usize];
                (r.input_tokens as f64, r.output_tokens as f64)
            }
            Sizes::Pareto => {
                let pareto = |rng: &mut Rng, scale: f64, alpha: f64, cap: f64| {
                    (scale / (1.0 - rng.uniform()).powf(1.0 / alpha)).min(cap)
                };
                (
                    pareto(rng, 300.0, 1.2, MAX_PROMPT_TOKENS).round(),
                    pareto(rng, 8.0, 1.5, MAX_OUTPUT_TOKENS).round(),
                )
            }
        }
    }

    /// Mean work per request (replica-seconds) for the pool, estimated from a fixed sample.
    fn mean_work(&self, spec: &InferencePoolSpec, seed: u64) -> f64 {
        let mut rng = Rng::new(seed ^ 0x5EED);
        let n = 50_000;
        let total: f64 = (0..n)
            .map(|_| {
                let (i, o) = self.draw(&mut rng);
                work_of(spec, i, o)
            })
            .sum();
        total / n as f64
    }
}

fn work_of(spec: &InferencePoolSpec, input: f64, output: f64) -> f64 {
    let c = &spec.capacity;
    let positive = |v: Option<f64>| v.filter(|x| x.is_finite() && *x > 0.0);
    positive(c.output_tokens_per_second).map_or(0.0, |o| output / o)
        + positive(c.input_tokens_per_second).map_or(0.0, |i| input / i)
}

/// Poisson arrivals at `rate(t)` replicas of work, sized by `sizes`, for `seconds`.
fn poisson_workload(
    spec: &InferencePoolSpec,
    seconds: usize,
    seed: u64,
    sizes: Sizes,
    rate: impl Fn(usize) -> f64,
    description: String,
) -> Workload {
    let per_request = sizes.mean_work(spec, seed).max(f64::MIN_POSITIVE);
    let mut rng = Rng::new(seed);
    let mut w = Workload {
        input_tokens: vec![0.0; seconds],
        output_tokens: vec![0.0; seconds],
        requests: vec![0.0; seconds],
        synthetic: true,
        description: format!("{description} (SYNTHETIC)"),
    };
    for s in 0..seconds {
        let n = rng.poisson(rate(s).max(0.0) / per_request);
        for _ in 0..n {
            let (i, o) = sizes.draw(&mut rng);
            w.input_tokens[s] += i;
            w.output_tokens[s] += o;
        }
        w.requests[s] = n as f64;
    }
    w
}

/// Bursts of `high` (each scaled by a uniform 0.8..1.2) for `on` seconds, every `period` +- `jitter`
/// seconds, over a floor of `low`: the rate each second.
fn on_off(
    seconds: usize,
    seed: u64,
    period: f64,
    jitter: f64,
    on: f64,
    high: f64,
    low: f64,
) -> Vec<f64> {
    let mut rng = Rng::new(seed ^ 0xB0B5);
    let mut rate = vec![low; seconds];
    let mut start = rng.between(0.2, 1.0) * period;
    while (start as usize) < seconds {
        let level = high * rng.between(0.8, 1.2);
        let end = ((start + on) as usize).min(seconds);
        for r in &mut rate[start as usize..end] {
            *r = level;
        }
        start += period + rng.between(-jitter, jitter);
    }
    rate
}

/// One workload of the corpus.
pub struct Entry {
    pub name: String,
    pub workload: Workload,
}

/// The corpus's workloads, in a fixed order: the shipped trace at x1, x4 and x8, then the
/// synthetic families the issue names.
pub fn workloads(spec: &InferencePoolSpec, requests: &[Request]) -> Vec<Entry> {
    const HOUR: usize = 3600;
    let mut out = Vec::new();
    for scale in [1.0, 4.0, 8.0] {
        let shape = Shape {
            load_scale: scale,
            ..Default::default()
        };
        out.push(Entry {
            name: format!("azure code x{scale}"),
            workload: trace::workload(requests, shape, "Azure LLM inference trace 2023, coding"),
        });
    }
    let sizes = Sizes::Trace(requests);
    for (i, level) in [0.4, 2.6, 11.5].into_iter().enumerate() {
        out.push(Entry {
            name: format!("poisson {level}"),
            workload: poisson_workload(
                spec,
                3 * HOUR,
                11 + i as u64,
                sizes,
                |_| level,
                format!("steady Poisson at {level} replicas of work, 3 h"),
            ),
        });
    }
    out.push(Entry {
        name: "diurnal day".into(),
        workload: poisson_workload(
            spec,
            24 * HOUR,
            21,
            sizes,
            |s| 4.0 * (1.0 - 0.8 * (2.0 * std::f64::consts::PI * s as f64 / 86_400.0).cos()),
            "a day of Poisson traffic, 0.8 replicas of work at midnight to 7.2 at noon".into(),
        ),
    });
    let short = on_off(3 * HOUR, 31, 120.0, 10.0, 40.0, 6.0, 0.5);
    out.push(Entry {
        name: "bursts every 2 min".into(),
        workload: poisson_workload(
            spec,
            3 * HOUR,
            31,
            sizes,
            |s| short[s],
            "40 s bursts of ~6 replicas every 120 +-10 s over 0.5, 3 h (period below the startup)"
                .into(),
        ),
    });
    let long = on_off(4 * HOUR, 32, 720.0, 60.0, 120.0, 6.0, 0.5);
    out.push(Entry {
        name: "bursts every 12 min".into(),
        workload: poisson_workload(
            spec,
            4 * HOUR,
            32,
            sizes,
            |s| long[s],
            "120 s bursts of ~6 replicas every 720 +-60 s over 0.5, 4 h (period above the startup)"
                .into(),
        ),
    });
    out.push(Entry {
        name: "slow ramp".into(),
        workload: poisson_workload(
            spec,
            5 * HOUR,
            41,
            sizes,
            |s| {
                let h = s as f64 / HOUR as f64;
                if h < 2.0 {
                    0.5 + 9.5 * h / 2.0
                } else if h < 3.0 {
                    10.0
                } else {
                    10.0 - 9.5 * (h - 3.0) / 2.0
                }
            },
            "0.5 to 10 replicas of work over 2 h, 1 h at 10, back over 2 h".into(),
        ),
    });
    out.push(Entry {
        name: "flash crowd 10x".into(),
        workload: poisson_workload(
            spec,
            3 * HOUR,
            51,
            sizes,
            |s| {
                if (5400..5700).contains(&s) { 20.0 } else { 2.0 }
            },
            "2 replicas of work, 10x for five minutes at 1.5 h, 3 h".into(),
        ),
    });
    out.push(Entry {
        name: "heavy-tailed sizes".into(),
        workload: poisson_workload(
            spec,
            3 * HOUR,
            61,
            Sizes::Pareto,
            |_| 3.0,
            "3 replicas of work in Pareto-sized requests (prompts alpha 1.2 capped at 16k, outputs alpha 1.5), 3 h".into(),
        ),
    });
    out
}

/// One workload at one metrics lag, through every policy.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CorpusRun {
    pub name: String,
    pub metrics_lag_seconds: u32,
    pub report: SimReport,
}

/// The whole corpus.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CorpusReport {
    pub warm_up_seconds: u32,
    pub runs: Vec<CorpusRun>,
}

/// Runs every workload (or those whose name contains `only`), without and with
/// [`LAG_SECONDS`] of metrics lag.
pub fn run(
    spec: &InferencePoolSpec,
    requests: &[Request],
    warm_up_seconds: u32,
    only: Option<&str>,
) -> Result<CorpusReport, SimError> {
    let mut runs = Vec::new();
    let chosen = workloads(spec, requests)
        .into_iter()
        .filter(|e| only.is_none_or(|o| e.name.contains(o)));
    for entry in chosen {
        for lag in [0, LAG_SECONDS] {
            let options = SimOptions {
                metrics_lag_seconds: lag,
                warm_up_seconds,
                ..Default::default()
            };
            runs.push(CorpusRun {
                name: entry.name.clone(),
                metrics_lag_seconds: lag,
                report: simulate(spec, &entry.workload, options)?,
            });
        }
    }
    Ok(CorpusReport {
        warm_up_seconds,
        runs,
    })
}

/// Issue 13's targets for crossover on each workload, after warm-up.
pub const MAX_ORACLE_RATIO: f64 = 1.15;
pub const MAX_UNDER_SHARE: f64 = 0.005;
pub const MIN_P99_ALLOWANCE_SECONDS: f64 = 2.0;
pub const MAX_STATIC_PEAK_RATIO: f64 = 1.05;
/// The dynamic baselines crossover must beat: fewer GPU-hours at no more under-provisioning.
pub const BASELINES: [&str; 3] = ["hpa", "kpa", "keda"];

/// One policy's figures in one run, relative to the oracle's.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Figures {
    pub oracle_ratio: f64,
    pub under_share: f64,
    pub p99_queue_seconds: f64,
}

impl CorpusRun {
    pub fn policy(&self, name: &str) -> Option<&super::PolicyResult> {
        self.report.policies.iter().find(|p| p.name == name)
    }

    pub fn figures(&self, name: &str) -> Option<Figures> {
        let p = self.policy(name)?;
        let oracle = self.policy("oracle")?;
        Some(Figures {
            oracle_ratio: p.gpu_hours / oracle.gpu_hours.max(f64::MIN_POSITIVE),
            under_share: p.under_provisioned_seconds as f64
                / self.report.evaluated_seconds.max(1) as f64,
            p99_queue_seconds: p.p99_queue_seconds,
        })
    }

    /// The targets crossover misses here, each with its figure ("G 1.31x", "B hpa"), in the
    /// order of the issue: GPU-hours, under-provisioning, queueing, baselines, static peak.
    pub fn misses(&self) -> Vec<String> {
        let mut out = Vec::new();
        let (Some(x), Some(c), Some(oracle)) = (
            self.figures("crossover"),
            self.policy("crossover"),
            self.policy("oracle"),
        ) else {
            return vec!["no crossover or oracle run".into()];
        };
        if x.oracle_ratio > MAX_ORACLE_RATIO {
            out.push(format!("G {:.2}x", x.oracle_ratio));
        }
        if x.under_share > MAX_UNDER_SHARE {
            out.push(format!("U {:.2}%", x.under_share * 100.0));
        }
        let allowed = MIN_P99_ALLOWANCE_SECONDS.max(oracle.p99_queue_seconds);
        if x.p99_queue_seconds > allowed + 1e-9 {
            out.push(format!("Q {:.1}s", x.p99_queue_seconds));
        }
        for b in BASELINES {
            if let Some(p) = self.policy(b)
                && !(c.gpu_hours < p.gpu_hours
                    && c.under_provisioned_seconds <= p.under_provisioned_seconds)
            {
                out.push(format!("B {b}"));
            }
        }
        if let Some(s) = self.policy("static-peak")
            && c.gpu_hours > MAX_STATIC_PEAK_RATIO * s.gpu_hours
        {
            out.push(format!("S {:.2}x", c.gpu_hours / s.gpu_hours));
        }
        out
    }
}

/// A worst figure and the run it came from.
pub type Worst<'a> = (f64, &'a CorpusRun);

impl CorpusReport {
    /// The policy's worst oracle ratio and worst under-provisioned share across the corpus,
    /// each with the run it came from.
    pub fn worst(&self, policy: &str) -> Option<(Worst<'_>, Worst<'_>)> {
        let mut ratio: Option<(f64, &CorpusRun)> = None;
        let mut under: Option<(f64, &CorpusRun)> = None;
        for run in &self.runs {
            let Some(f) = run.figures(policy) else {
                continue;
            };
            if ratio.is_none_or(|(r, _)| f.oracle_ratio > r) {
                ratio = Some((f.oracle_ratio, run));
            }
            if under.is_none_or(|(u, _)| f.under_share > u) {
                under = Some((f.under_share, run));
            }
        }
        Some((ratio?, under?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_generator_is_deterministic_and_poisson_has_its_mean() {
        let (mut a, mut b) = (Rng::new(7), Rng::new(7));
        assert_eq!(a.next_u64(), b.next_u64());
        let mut r = Rng::new(1);
        for lambda in [0.5, 12.0, 95.0] {
            let n = 20_000;
            let mean = (0..n).map(|_| r.poisson(lambda) as f64).sum::<f64>() / n as f64;
            assert!(
                (mean - lambda).abs() < 0.05 * lambda.max(1.0),
                "{lambda}: {mean}"
            );
        }
    }

    #[test]
    fn on_off_bursts_keep_their_period() {
        let rate = on_off(7200, 1, 720.0, 60.0, 120.0, 6.0, 0.5);
        let onsets = rate.windows(2).filter(|w| w[0] < 1.0 && w[1] > 1.0).count();
        assert!((9..=11).contains(&onsets), "{onsets} bursts in 2 h");
        assert!(rate.iter().all(|&r| r == 0.5 || (4.8..7.2).contains(&r)));
    }
}
