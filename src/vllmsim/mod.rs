//! A vLLM stand-in for tests and demos: simulated pods that serve vLLM 0.33's /metrics format and
//! respond to load pushed through a control endpoint. `model` is the per-engine queueing model,
//! `render` the exposition, `server` the HTTP edges; `Simulator` ties pods to pools and load.

pub mod model;
pub mod render;
pub mod server;

use std::collections::BTreeMap;
use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

pub use model::{EngineConfig, EngineLoad, EngineModel};

/// Settings shared by every simulated pod.
#[derive(Clone, Debug, PartialEq)]
pub struct PodConfig {
    /// `model_name` label.
    pub model: String,
    /// Data-parallel engines per pod; each gets an equal share of the pod's capacity and load.
    pub engines: usize,
    /// Emit the pre-rename names (`vllm:gpu_cache_usage_perc`, `vllm:time_per_output_token_seconds`).
    pub legacy_names: bool,
    /// The pod's capacity, before it is split over engines.
    pub engine: EngineConfig,
}

/// Load offered to a pool (split over its pods) or to one pod.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LoadRequest {
    /// Only pods of this pool; all pools when unset.
    #[serde(default)]
    pub pool: Option<String>,
    /// Only this pod (its listen address); overrides `pool`.
    #[serde(default)]
    pub pod: Option<String>,
    pub requests_per_second: f64,
    pub input_tokens_per_request: f64,
    pub output_tokens_per_request: f64,
}

/// A pod as the control endpoint lists it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodStatus {
    pub address: String,
    pub pool: String,
    pub requests_per_second: f64,
    pub requests_running: usize,
    pub requests_waiting: usize,
    pub generation_tokens_total: f64,
}

/// One simulated pod: its pool, its engines and the wall-clock second it was started (for the
/// `_created` series and `process_start_time_seconds`).
#[derive(Clone, Debug)]
pub struct SimPod {
    pub pool: String,
    pub engines: Vec<EngineModel>,
    pub created_unix_seconds: f64,
    /// What its /metrics answers: vLLM's format, or a hostile body.
    pub behavior: Behavior,
    /// Labels added to every series, as a hostile exporter (or a relabelling) would.
    pub extra_labels: Vec<(String, String)>,
}

/// What a simulated pod's /metrics answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Behavior {
    /// vLLM's exposition.
    #[default]
    Vllm,
    /// `HUGE_BODY_BYTES` of exposition, announced by Content-Length.
    Huge,
    /// The same, streamed without a length.
    HugeChunked,
    /// An exposition that never ends.
    Endless,
    /// 503 on /metrics while the engine keeps serving and counting: a metrics outage.
    Unavailable,
}

/// The size of a `Huge` body: far past any cap, and past the operator's memory limit.
pub const HUGE_BODY_BYTES: u64 = 300 * 1024 * 1024;

/// All simulated pods, keyed by listen address. Pure state: the server steps it on a timer.
#[derive(Clone, Debug)]
pub struct Simulator {
    pub config: PodConfig,
    pub pods: BTreeMap<SocketAddr, SimPod>,
}

impl Simulator {
    pub fn new(config: PodConfig) -> Self {
        Self {
            config,
            pods: BTreeMap::new(),
        }
    }

    fn engine_config(&self) -> EngineConfig {
        let n = self.config.engines.max(1) as f64;
        let c = &self.config.engine;
        EngineConfig {
            output_tokens_per_second: c.output_tokens_per_second / n,
            input_tokens_per_second: c.input_tokens_per_second / n,
            max_num_seqs: (c.max_num_seqs as f64 / n).ceil() as usize,
            kv_cache_tokens: c.kv_cache_tokens / n,
            ..c.clone()
        }
    }

    /// Adds an idle pod (or restarts one at the same address: counters start again from zero).
    pub fn add_pod(&mut self, address: SocketAddr, pool: &str, created_unix_seconds: f64) {
        let engines = (0..self.config.engines.max(1))
            .map(|_| EngineModel::new(self.engine_config()))
            .collect();
        self.pods.insert(
            address,
            SimPod {
                pool: pool.to_string(),
                engines,
                created_unix_seconds,
                behavior: Behavior::Vllm,
                extra_labels: Vec::new(),
            },
        );
    }

    /// Restarts a pod in place, keeping its offered load: vLLM's counters reset, as after a crash.
    pub fn restart_pod(&mut self, address: SocketAddr, created_unix_seconds: f64) -> bool {
        let Some(old) = self.pods.get(&address) else {
            return false;
        };
        let pool = old.pool.clone();
        let (behavior, labels) = (old.behavior, old.extra_labels.clone());
        let loads: Vec<EngineLoad> = old.engines.iter().map(|e| e.load).collect();
        self.add_pod(address, &pool, created_unix_seconds);
        if let Some(pod) = self.pods.get_mut(&address) {
            pod.behavior = behavior;
            pod.extra_labels = labels;
            for (e, l) in pod.engines.iter_mut().zip(loads) {
                e.load = l;
            }
        }
        true
    }

    pub fn remove_pod(&mut self, address: SocketAddr) -> bool {
        self.pods.remove(&address).is_some()
    }

    /// Splits the load evenly over the selected pods and their engines; returns how many pods.
    pub fn set_load(&mut self, req: &LoadRequest) -> usize {
        let selected: Vec<SocketAddr> = self
            .pods
            .iter()
            .filter(|(addr, pod)| match (&req.pod, &req.pool) {
                (Some(p), _) => addr.to_string() == *p,
                (None, Some(pool)) => pod.pool == *pool,
                (None, None) => true,
            })
            .map(|(addr, _)| *addr)
            .collect();
        let n_pods = selected.len();
        for addr in &selected {
            if let Some(pod) = self.pods.get_mut(addr) {
                let share = (n_pods * pod.engines.len()) as f64;
                for e in &mut pod.engines {
                    e.load = EngineLoad {
                        requests_per_second: req.requests_per_second / share,
                        input_tokens_per_request: req.input_tokens_per_request,
                        output_tokens_per_request: req.output_tokens_per_request,
                    };
                }
            }
        }
        n_pods
    }

    pub fn step(&mut self, dt_seconds: f64) {
        for pod in self.pods.values_mut() {
            for e in &mut pod.engines {
                e.step(dt_seconds);
            }
        }
    }

    /// The pod's /metrics body, or `None` if no pod listens there.
    pub fn render(&self, address: SocketAddr) -> Option<String> {
        let pod = self.pods.get(&address)?;
        let text = render::render_metrics(
            &self.config.model,
            &pod.engines,
            self.config.legacy_names,
            pod.created_unix_seconds,
        );
        Some(render::with_labels(&text, &pod.extra_labels))
    }

    pub fn status(&self) -> Vec<PodStatus> {
        self.pods
            .iter()
            .map(|(addr, pod)| PodStatus {
                address: addr.to_string(),
                pool: pod.pool.clone(),
                requests_per_second: pod.engines.iter().map(|e| e.load.requests_per_second).sum(),
                requests_running: pod.engines.iter().map(|e| e.requests_running()).sum(),
                requests_waiting: pod.engines.iter().map(|e| e.requests_waiting()).sum(),
                // What the pod's counter says (whole tokens, as /metrics renders it): the truth
                // a test compares month-to-date with.
                generation_tokens_total: pod
                    .engines
                    .iter()
                    .map(|e| e.generation_tokens_total.floor())
                    .sum(),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::parse::parse_reading;

    pub(crate) fn pod_config(engines: usize, legacy_names: bool) -> PodConfig {
        PodConfig {
            model: "meta-llama/Llama-3.1-8B-Instruct".into(),
            engines,
            legacy_names,
            engine: EngineConfig {
                output_tokens_per_second: 2000.0,
                input_tokens_per_second: 20_000.0,
                per_request_output_tokens_per_second: 50.0,
                max_num_seqs: 256,
                kv_cache_tokens: 1_000_000.0,
                max_model_len: 8192,
            },
        }
    }

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn load_splits_over_pool_pods_and_engines() {
        let mut sim = Simulator::new(pod_config(2, false));
        sim.add_pod(addr("127.1.0.1:8000"), "a", 0.0);
        sim.add_pod(addr("127.1.0.2:8000"), "a", 0.0);
        sim.add_pod(addr("127.1.0.3:8000"), "b", 0.0);
        let n = sim.set_load(&LoadRequest {
            pool: Some("a".into()),
            pod: None,
            requests_per_second: 8.0,
            input_tokens_per_request: 100.0,
            output_tokens_per_request: 100.0,
        });
        assert_eq!(n, 2);
        let st = sim.status();
        assert_eq!(st[0].requests_per_second, 4.0);
        assert_eq!(st[1].requests_per_second, 4.0);
        assert_eq!(st[2].requests_per_second, 0.0);
        assert_eq!(
            sim.pods[&addr("127.1.0.1:8000")].engines[0]
                .load
                .requests_per_second,
            2.0
        );
    }

    #[test]
    fn rendered_metrics_parse_to_the_model_state() {
        let mut sim = Simulator::new(pod_config(2, false));
        let a = addr("127.1.0.1:8000");
        sim.add_pod(a, "a", 1.7e9);
        sim.set_load(&LoadRequest {
            pool: None,
            pod: None,
            requests_per_second: 10.0,
            input_tokens_per_request: 300.0,
            output_tokens_per_request: 200.0,
        });
        for _ in 0..200 {
            sim.step(0.1);
        }
        let r = parse_reading(&sim.render(a).unwrap()).unwrap();
        let engines = &sim.pods[&a].engines;
        let sum = |f: fn(&EngineModel) -> f64| engines.iter().map(f).sum::<f64>();
        assert_eq!(
            r.requests_running,
            Some(sum(|e| e.requests_running() as f64))
        );
        assert_eq!(r.requests_waiting, Some(0.0));
        assert_eq!(
            r.generation_tokens_total(),
            Some(sum(|e| e.generation_tokens_total.floor()))
        );
        assert_eq!(
            r.prompt_tokens_total(),
            Some(sum(|e| e.prompt_tokens_total.floor()))
        );
        assert_eq!(
            r.request_success_total(),
            Some(sum(|e| e.request_success_total))
        );
        assert!(r.request_success_total().unwrap() > 100.0);
        assert_eq!(r.process_start_time_seconds, Some(1.7e9));
        let max_kv = engines
            .iter()
            .map(|e| e.kv_cache_usage())
            .fold(0.0, f64::max);
        assert_eq!(r.kv_cache_usage, Some(max_kv));
        let ttft = r.time_to_first_token().unwrap();
        assert_eq!(
            ttft.count,
            Some(sum(|e| e.time_to_first_token_seconds.count))
        );
        assert_eq!(ttft.buckets.len(), model::TTFT_BUCKETS_SECONDS.len() + 1);
        let gen_tokens = r.request_generation().unwrap();
        assert_eq!(gen_tokens.sum.unwrap() / gen_tokens.count.unwrap(), 200.0);
    }

    #[test]
    fn legacy_names_parse_the_same() {
        let mut sim = Simulator::new(pod_config(1, true));
        let a = addr("127.1.0.1:8000");
        sim.add_pod(a, "a", 1.7e9);
        sim.set_load(&LoadRequest {
            pool: None,
            pod: None,
            requests_per_second: 10.0,
            input_tokens_per_request: 300.0,
            output_tokens_per_request: 200.0,
        });
        for _ in 0..100 {
            sim.step(0.1);
        }
        let text = sim.render(a).unwrap();
        assert!(text.contains("vllm:gpu_cache_usage_perc{"));
        assert!(text.contains("vllm:time_per_output_token_seconds_bucket{"));
        assert!(!text.contains("vllm:kv_cache_usage_perc"));
        let r = parse_reading(&text).unwrap();
        assert!(r.kv_cache_usage.unwrap() > 0.0);
    }

    #[test]
    fn restart_resets_counters_but_keeps_load() {
        let mut sim = Simulator::new(pod_config(1, false));
        let a = addr("127.1.0.1:8000");
        sim.add_pod(a, "a", 0.0);
        sim.set_load(&LoadRequest {
            pool: None,
            pod: None,
            requests_per_second: 4.0,
            input_tokens_per_request: 10.0,
            output_tokens_per_request: 10.0,
        });
        for _ in 0..50 {
            sim.step(0.1);
        }
        assert!(sim.restart_pod(a, 1.0));
        assert_eq!(sim.pods[&a].engines[0].generation_tokens_total, 0.0);
        assert_eq!(sim.status()[0].requests_per_second, 4.0);
    }
}
