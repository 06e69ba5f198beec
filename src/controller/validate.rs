//! Pure checks of a pool. The CRD schema refuses these at admission; this is the second line for
//! objects stored before a rule existed, or written with validation bypassed. The limits are the
//! constants in `crate::api`, which the schema's rules state in words.

use crate::api::{
    InferencePool, InferencePoolSpec, MAX_GPUS_PER_REPLICA, MAX_MONTHLY_USD, MAX_NAME_LENGTH,
    MAX_REPLICA_HOURLY_USD, MAX_REPLICAS, MAX_TOKENS_PER_SECOND, MAX_USD_PER_MILLION_TOKENS,
    MIN_TOKENS_PER_SECOND, ScalingMode,
};

/// A spec the controller will not act on, with a message for the person who wrote it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidSpec(pub String);

/// The pool's name and spec.
pub fn validate(pool: &InferencePool) -> Result<(), InvalidSpec> {
    let name = pool.metadata.name.as_deref().unwrap_or_default();
    if name.len() > MAX_NAME_LENGTH {
        return Err(InvalidSpec(format!(
            "metadata.name must be at most {MAX_NAME_LENGTH} characters: it is the crossover.dev/pool label on the pool's pods"
        )));
    }
    validate_spec(&pool.spec)
}

pub fn validate_spec(spec: &InferencePoolSpec) -> Result<(), InvalidSpec> {
    let fail = |m: String| Err(InvalidSpec(m));
    if spec.model.is_empty() {
        return fail("spec.model must name a model, such as google/gemma-4-31b-it".into());
    }
    if spec.max_replicas < 1 || spec.max_replicas > MAX_REPLICAS {
        return fail(format!(
            "spec.maxReplicas must be between 1 and {MAX_REPLICAS}"
        ));
    }
    if spec.min_replicas < 0
        || spec
            .replicas
            .is_some_and(|r| !(0..=MAX_REPLICAS).contains(&r))
    {
        return fail(format!(
            "spec.minReplicas and spec.replicas must be between 0 and {MAX_REPLICAS}"
        ));
    }
    if spec.min_replicas > spec.max_replicas {
        return fail("spec.minReplicas must not be greater than spec.maxReplicas".into());
    }
    if spec.min_replicas < 1 && spec.scaling.mode == ScalingMode::Auto {
        return fail(
            "spec.minReplicas must be at least 1 in Auto mode: crossover reads the load from the pool's own pods, so at zero it could never see demand again (scale to zero with scaling.mode External and KEDA or an HPA)".into(),
        );
    }
    if !(1..=MAX_GPUS_PER_REPLICA).contains(&spec.gpu.count) {
        return fail(format!(
            "spec.gpu.count must be between 1 and {MAX_GPUS_PER_REPLICA} (GPUs per replica)"
        ));
    }
    if spec.replicas.is_some() && spec.scaling.mode != ScalingMode::External {
        return fail(
            "spec.replicas may only be set when spec.scaling.mode is External (in Auto mode crossover sizes the pool itself)".into(),
        );
    }
    if let Some(t) = spec.capacity.target_utilization
        && (t.is_nan() || t <= 0.0 || t > 1.0)
    {
        return fail("spec.capacity.targetUtilization must be above 0 and at most 1".into());
    }
    let q = spec.scaling.forecast_quantile;
    if q.is_nan() || !(0.5..=0.999).contains(&q) {
        return fail("spec.scaling.forecastQuantile must be between 0.5 and 0.999".into());
    }
    let c = &spec.cost;
    if c.replica_hourly_usd.is_some() == c.replica_monthly_usd.is_some() {
        return fail(
            "set exactly one of spec.cost.replicaHourlyUsd or spec.cost.replicaMonthlyUsd".into(),
        );
    }
    // NaN fails every range: it is no price.
    let within = |v: Option<f64>, max: f64| v.is_none_or(|x| (0.0..=max).contains(&x));
    if !within(c.replica_hourly_usd, MAX_REPLICA_HOURLY_USD)
        || !within(c.replica_monthly_usd, MAX_MONTHLY_USD)
        || c.overheads
            .iter()
            .any(|o| !within(Some(o.monthly_usd), MAX_MONTHLY_USD))
    {
        return fail(format!(
            "spec.cost prices must be zero or more, at most {MAX_REPLICA_HOURLY_USD} per replica-hour and {MAX_MONTHLY_USD} per month"
        ));
    }
    if let Some(api) = &spec.compare_to
        && (!within(api.input_usd_per_million_tokens, MAX_USD_PER_MILLION_TOKENS)
            || !within(
                api.output_usd_per_million_tokens,
                MAX_USD_PER_MILLION_TOKENS,
            ))
    {
        return fail(format!(
            "spec.compareTo prices must be between 0 and {MAX_USD_PER_MILLION_TOKENS} per 1M tokens"
        ));
    }
    let capacity = |v: Option<f64>| {
        v.is_none_or(|x| x == 0.0 || (MIN_TOKENS_PER_SECOND..=MAX_TOKENS_PER_SECOND).contains(&x))
    };
    if !capacity(spec.capacity.output_tokens_per_second)
        || !capacity(spec.capacity.input_tokens_per_second)
    {
        return fail(format!(
            "spec.capacity throughputs must be 0 or between {MIN_TOKENS_PER_SECOND} and {MAX_TOKENS_PER_SECOND} tokens per second"
        ));
    }
    if !spec.gpu.resource_name.contains('/') {
        return fail(
            "spec.gpu.resourceName must be an extended resource name such as nvidia.com/gpu".into(),
        );
    }
    if spec.pod.run_as_user < 1 {
        return fail("spec.pod.runAsUser must be a non-root user ID (1 or more)".into());
    }
    if let Some(p) = &spec.scaling.metrics.prometheus {
        if p.bearer_token_secret.is_some() {
            return Err(InvalidSpec(crate::api::BEARER_TOKEN_SECRET_REMOVED.into()));
        }
        if p.url.is_some() == p.source_ref.is_some() {
            return fail(
                "spec.scaling.metrics.prometheus needs exactly one of url (no credentials) or sourceRef (a PrometheusSource an administrator defined)".into(),
            );
        }
        if let Some(sel) = &p.selector
            && let Err(why) = crate::load::prometheus::check_selector(sel)
        {
            return Err(InvalidSpec(format!(
                "spec.scaling.metrics.prometheus.selector must be PromQL label matchers such as job=\"vllm\": {why}"
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(yaml: &str) -> InferencePoolSpec {
        serde_saphyr::from_str(yaml).expect("spec parses")
    }

    #[test]
    fn table_of_invalid_specs_names_the_broken_field() {
        let cases = [
            (
                "model: m\nminReplicas: 3\nmaxReplicas: 2\ncost: {replicaHourlyUsd: 1}",
                "minReplicas must not be greater",
            ),
            (
                "model: m\nmaxReplicas: 0\nminReplicas: 0\ncost: {replicaHourlyUsd: 1}",
                "maxReplicas must be between 1",
            ),
            (
                "model: m\ncost: {replicaHourlyUsd: 1, replicaMonthlyUsd: 2}",
                "exactly one",
            ),
            ("model: m\ncost: {}", "exactly one"),
            ("model: m\ncost: {replicaHourlyUsd: -1}", "zero or more"),
            ("model: m\ncost: {replicaHourlyUsd: 1e12}", "at most"),
            (
                "model: m\nminReplicas: 0\ncost: {replicaHourlyUsd: 1}",
                "at least 1 in Auto mode",
            ),
            (
                "model: m\ncapacity: {outputTokensPerSecond: 1e-300}\ncost: {replicaHourlyUsd: 1}",
                "spec.capacity throughputs",
            ),
            (
                "model: m\nmaxReplicas: 2147483647\ncost: {replicaHourlyUsd: 1}",
                "maxReplicas must be between",
            ),
            (
                "model: m\ncapacity: {targetUtilization: 1.5}\ncost: {replicaHourlyUsd: 1}",
                "targetUtilization",
            ),
            (
                "model: m\nreplicas: 2\ncost: {replicaHourlyUsd: 1}",
                "only be set when spec.scaling.mode is External",
            ),
            (
                "model: m\ngpu: {count: 0}\ncost: {replicaHourlyUsd: 1}",
                "gpu.count",
            ),
            (
                "model: m\ncost: {replicaHourlyUsd: 1}\nscaling: {metrics: {source: Prometheus, prometheus: {url: 'http://p', bearerTokenSecret: {name: s, key: k}}}}",
                "sourceRef",
            ),
            (
                "model: m\ncost: {replicaHourlyUsd: 1}\nscaling: {metrics: {source: Prometheus, prometheus: {url: 'http://p', sourceRef: {name: s}}}}",
                "exactly one of url",
            ),
            (
                "model: m\ncost: {replicaHourlyUsd: 1}\nscaling: {metrics: {source: Prometheus, prometheus: {url: 'http://p', selector: 'job=vllm'}}}",
                "selector",
            ),
        ];
        for (yaml, want) in cases {
            let err = validate_spec(&spec(yaml)).expect_err(yaml);
            assert!(err.0.contains(want), "{yaml}: got {err}");
        }
    }

    #[test]
    fn every_example_manifest_is_valid() {
        for entry in std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/examples")).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().and_then(|e| e.to_str()) != Some("yaml") {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            let pool: crate::api::InferencePool =
                serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            validate(&pool).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        }
    }

    #[test]
    fn replicas_are_allowed_in_external_mode() {
        validate_spec(&spec("model: m\nreplicas: 2\nmaxReplicas: 3\nscaling: {mode: External}\ncost: {replicaHourlyUsd: 1}"))
            .unwrap();
        validate_spec(&spec("model: m\nminReplicas: 0\nmaxReplicas: 3\nscaling: {mode: External}\ncost: {replicaHourlyUsd: 1}"))
            .unwrap();
    }

    #[test]
    fn names_longer_than_a_label_value_are_refused() {
        let mut pool = InferencePool::new(
            &"a".repeat(64),
            spec("model: m\ncost: {replicaHourlyUsd: 1}"),
        );
        assert!(validate(&pool).unwrap_err().0.contains("at most 63"));
        pool.metadata.name = Some("llama-3.1-8b".into());
        validate(&pool).unwrap();
    }
}
