//! The committed CRD in crds/ is exactly what `crossover crd` generates, and its schema carries
//! the validation a person relies on. Regenerate with `make crds` when this fails.

use kube::CustomResourceExt;

#[test]
fn committed_crd_matches_the_generated_one() {
    let generated = crossover::api::crd_yaml().expect("CRD renders");
    // The repository's copy, and the Helm chart's (helm installs charts/crossover/crds/ itself).
    for path in [
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/crds/inferencepools.crossover.dev.yaml"
        ),
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/charts/crossover/crds/inferencepools.crossover.dev.yaml"
        ),
    ] {
        let committed = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
        assert!(
            committed == generated,
            "{path} is stale: run `make crds` and commit the result"
        );
    }
}

#[test]
fn crd_names_avoid_the_gateway_api_inference_pool_clash() {
    let crd = crossover::api::InferencePool::crd();
    assert_eq!(crd.spec.group, "crossover.dev");
    assert_eq!(crd.spec.names.short_names, Some(vec!["ipool".to_string()]));
    assert_eq!(
        crd.spec.names.categories,
        Some(vec!["crossover".to_string()])
    );
    let v = &crd.spec.versions[0];
    let sub = v.subresources.as_ref().expect("subresources");
    assert!(sub.status.is_some());
    let scale = sub.scale.as_ref().expect("scale subresource");
    assert_eq!(scale.spec_replicas_path, ".spec.replicas");
    assert_eq!(scale.status_replicas_path, ".status.replicas");
    assert_eq!(
        scale.label_selector_path.as_deref(),
        Some(".status.selector")
    );
    let columns: Vec<_> = v
        .additional_printer_columns
        .as_ref()
        .unwrap()
        .iter()
        .map(|c| c.name.to_uppercase())
        .collect();
    assert_eq!(
        columns,
        [
            "MODEL",
            "READY",
            "DESIRED",
            "UTIL",
            "POOL/MO",
            "API/MO",
            "CHEAPER",
            "PROVISIONING",
            "AGE"
        ]
    );
}
