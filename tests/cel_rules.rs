//! The CRD's CEL rules, evaluated client-side with kube's CEL validator: the same rules the API
//! server enforces (tests/cluster proves them there too), checked here without a cluster.

use crossover::api::InferencePool;

fn pool(spec_yaml: &str) -> InferencePool {
    let doc = format!(
        "apiVersion: crossover.dev/v1alpha1\nkind: InferencePool\nmetadata: {{name: p, namespace: default}}\nspec:\n{}",
        spec_yaml
            .lines()
            .map(|l| format!("  {l}\n"))
            .collect::<String>()
    );
    serde_saphyr::from_str(&doc).expect("manifest parses")
}

fn refusal(spec_yaml: &str) -> String {
    match pool(spec_yaml).validate_cel() {
        Ok(()) => panic!("accepted: {spec_yaml}"),
        Err(e) => e.to_string(),
    }
}

const OK: &str = "model: m\nminReplicas: 1\nmaxReplicas: 2\ncost: {replicaHourlyUsd: 3.29}";

#[test]
fn a_valid_pool_passes_every_rule() {
    pool(OK).validate_cel().expect("valid");
}

#[test]
fn min_above_max_is_refused_with_the_rule_message() {
    let msg = refusal("model: m\nminReplicas: 3\nmaxReplicas: 2\ncost: {replicaHourlyUsd: 1}");
    assert!(
        msg.contains("minReplicas must not be greater than spec.maxReplicas"),
        "{msg}"
    );
}

#[test]
fn both_prices_are_refused() {
    let msg = refusal("model: m\ncost: {replicaHourlyUsd: 1, replicaMonthlyUsd: 200}");
    assert!(
        msg.contains("set exactly one of spec.cost.replicaHourlyUsd"),
        "{msg}"
    );
}

#[test]
fn no_price_is_refused() {
    let msg = refusal("model: m\ncost: {overheads: [{name: x, monthlyUsd: 1}]}");
    assert!(
        msg.contains("set exactly one of spec.cost.replicaHourlyUsd"),
        "{msg}"
    );
}

#[test]
fn a_negative_price_is_refused() {
    let msg = refusal("model: m\ncost: {replicaHourlyUsd: -1}");
    assert!(
        msg.contains("replicaHourlyUsd must be between 0 and 10,000"),
        "{msg}"
    );
}

#[test]
fn utilization_above_one_is_refused() {
    let msg = refusal("model: m\ncapacity: {targetUtilization: 1.5}\ncost: {replicaHourlyUsd: 1}");
    assert!(
        msg.contains("targetUtilization must be above 0 and at most 1"),
        "{msg}"
    );
}

#[test]
fn replicas_in_auto_mode_are_refused() {
    let msg = refusal("model: m\nreplicas: 2\ncost: {replicaHourlyUsd: 1}");
    assert!(
        msg.contains("only be set when spec.scaling.mode is External"),
        "{msg}"
    );
}

#[test]
fn zero_gpus_are_refused() {
    let msg = refusal("model: m\ngpu: {count: 0}\ncost: {replicaHourlyUsd: 1}");
    assert!(msg.contains("gpu.count must be between 1 and 64"), "{msg}");
}

#[test]
fn max_replicas_zero_is_refused() {
    let msg = refusal("model: m\nminReplicas: 0\nmaxReplicas: 0\ncost: {replicaHourlyUsd: 1}");
    assert!(
        msg.contains("maxReplicas must be between 1 and 1000"),
        "{msg}"
    );
}

#[test]
fn min_replicas_zero_is_refused_in_auto_mode_only() {
    let msg = refusal("model: m\nminReplicas: 0\nmaxReplicas: 2\ncost: {replicaHourlyUsd: 1}");
    assert!(msg.contains("at least 1 in Auto mode"), "{msg}");
    pool("model: m\nminReplicas: 0\nmaxReplicas: 2\nscaling: {mode: External}\ncost: {replicaHourlyUsd: 1}")
        .validate_cel()
        .expect("External mode may scale to zero");
}

#[test]
fn absurd_prices_and_counts_are_refused() {
    for (spec, want) in [
        (
            "model: m\ncost: {replicaHourlyUsd: 1e300}",
            "replicaHourlyUsd must be between",
        ),
        (
            "model: m\nmaxReplicas: 2147483647\ncost: {replicaHourlyUsd: 1}",
            "maxReplicas must be between",
        ),
        (
            "model: m\ncapacity: {outputTokensPerSecond: 1e-300}\ncost: {replicaHourlyUsd: 1}",
            "outputTokensPerSecond must be 0",
        ),
        (
            "model: m\ncompareTo: {model: x, outputUsdPerMillionTokens: 1e9}\ncost: {replicaHourlyUsd: 1}",
            "outputUsdPerMillionTokens must be between",
        ),
        (
            "model: m\ngpu: {resourceName: memory}\ncost: {replicaHourlyUsd: 1}",
            "extended resource name",
        ),
        (
            "model: m\ngpu: {product: 'H100 80GB'}\ncost: {replicaHourlyUsd: 1}",
            "label value",
        ),
    ] {
        let msg = refusal(spec);
        assert!(msg.contains(want), "{spec}: {msg}");
    }
}

const PROM: &str = "model: m\ncost: {replicaHourlyUsd: 1}\nscaling:\n  metrics:\n    source: Prometheus\n    prometheus: ";

#[test]
fn the_removed_bearer_token_secret_is_refused_naming_the_replacement() {
    let msg = refusal(&format!(
        "{PROM}{{url: 'http://evil.example', bearerTokenSecret: {{name: db, key: password}}}}"
    ));
    assert!(
        msg.contains("sourceRef") && msg.contains("PrometheusSource"),
        "{msg}"
    );
}

#[test]
fn a_pool_names_a_url_or_a_source_never_both() {
    let msg = refusal(&format!(
        "{PROM}{{url: 'http://evil.example', sourceRef: {{name: central}}}}"
    ));
    assert!(msg.contains("exactly one of url"), "{msg}");
    pool(&format!("{PROM}{{sourceRef: {{name: central}}}}"))
        .validate_cel()
        .expect("a source alone");
    let msg = refusal(&format!("{PROM}{{url: 'http://user:pw@prom:9090'}}"));
    assert!(msg.contains("must not carry credentials"), "{msg}");
}

#[test]
fn selectors_are_label_matchers_only() {
    pool(&format!(
        "{PROM}{{url: 'http://prom:9090', selector: 'job=\"vllm\",cluster=~\"east|west\"'}}"
    ))
    .validate_cel()
    .expect("matchers");
    let msg = refusal(&format!(
        "{PROM}{{url: 'http://prom:9090', selector: 'job=\"x\"}} or vector(1'}}"
    ));
    assert!(msg.contains("PromQL label matchers"), "{msg}");
}

#[test]
fn a_source_refuses_a_token_over_plain_http_unless_allowed() {
    use crossover::api::PrometheusSource;
    let source = |extra: &str| -> PrometheusSource {
        serde_saphyr::from_str(&format!(
            "apiVersion: crossover.dev/v1alpha1\nkind: PrometheusSource\nmetadata: {{name: central}}\nspec:\n  url: http://prom.monitoring:9090\n  bearerTokenSecretRef: {{name: prom-token, key: token}}\n{extra}"
        ))
        .unwrap()
    };
    let msg = source("").validate_cel().unwrap_err().to_string();
    assert!(msg.contains("would travel over plain http"), "{msg}");
    source("  allowTokenOverHttp: true\n")
        .validate_cel()
        .expect("allowed by the administrator");
}
