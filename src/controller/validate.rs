//! Pure checks of a pool's spec. The CRD schema refuses these at admission; this is the second
//! line for objects stored before a rule existed, or written with validation bypassed.

use crate::api::{InferencePoolSpec, ScalingMode};

/// A spec the controller will not act on, with a message for the person who wrote it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidSpec(pub String);

pub fn validate(spec: &InferencePoolSpec) -> Result<(), InvalidSpec> {
    let fail = |m: &str| Err(InvalidSpec(m.to_string()));
    if spec.model.is_empty() {
        return fail("spec.model must name a model, such as google/gemma-4-31b-it");
    }
    if spec.max_replicas < 1 {
        return fail("spec.maxReplicas must be at least 1");
    }
    if spec.min_replicas < 0 {
        return fail("spec.minReplicas must be zero or more");
    }
    if spec.min_replicas > spec.max_replicas {
        return fail("spec.minReplicas must not be greater than spec.maxReplicas");
    }
    if spec.gpu.count < 1 {
        return fail("spec.gpu.count must be at least 1 (GPUs per replica)");
    }
    if spec.replicas.is_some() && spec.scaling.mode != ScalingMode::External {
        return fail(
            "spec.replicas may only be set when spec.scaling.mode is External (in Auto mode crossover sizes the pool itself)",
        );
    }
    let t = spec.capacity.target_utilization;
    if t.is_nan() || t <= 0.0 || t > 1.0 {
        return fail("spec.capacity.targetUtilization must be above 0 and at most 1");
    }
    let c = &spec.cost;
    if c.replica_hourly_usd.is_some() == c.replica_monthly_usd.is_some() {
        return fail(
            "set exactly one of spec.cost.replicaHourlyUsd or spec.cost.replicaMonthlyUsd",
        );
    }
    // NaN counts as negative: it is no price.
    let negative = |v: Option<f64>| v.is_some_and(|x| x.is_nan() || x < 0.0);
    if negative(c.replica_hourly_usd)
        || negative(c.replica_monthly_usd)
        || c.overheads
            .iter()
            .any(|o| o.monthly_usd.is_nan() || o.monthly_usd < 0.0)
    {
        return fail("spec.cost prices must be zero or more");
    }
    if negative(spec.capacity.output_tokens_per_second)
        || negative(spec.capacity.input_tokens_per_second)
    {
        return fail("spec.capacity throughputs must be zero or more");
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
                "maxReplicas must be at least 1",
            ),
            (
                "model: m\ncost: {replicaHourlyUsd: 1, replicaMonthlyUsd: 2}",
                "exactly one",
            ),
            ("model: m\ncost: {}", "exactly one"),
            ("model: m\ncost: {replicaHourlyUsd: -1}", "zero or more"),
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
        ];
        for (yaml, want) in cases {
            let err = validate(&spec(yaml)).expect_err(yaml);
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
            validate(&pool.spec).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        }
    }

    #[test]
    fn replicas_are_allowed_in_external_mode() {
        validate(&spec("model: m\nreplicas: 2\nmaxReplicas: 3\nscaling: {mode: External}\ncost: {replicaHourlyUsd: 1}"))
            .unwrap();
    }
}
