//! The committed CRD in crds/ is exactly what `crossover crd` generates, the chart's copy in
//! charts/crossover/files/crds/ (rendered as a template behind crds.enabled) is the same file, and
//! the schema carries the validation a person relies on. Regenerate with `make crds` when this fails.

use kube::CustomResourceExt;

#[test]
fn committed_crds_match_the_generated_ones() {
    for (file, generated) in crossover::api::crds().expect("CRDs render") {
        let path = format!("{}/crds/{file}", env!("CARGO_MANIFEST_DIR"));
        let committed = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        assert!(
            committed == generated,
            "{path} is stale: run `make crds` and commit the result (and if the schema gained or \
             changed a field since the last release, bump api::CRD_SCHEMA_VERSION)"
        );
    }
}

#[test]
fn the_chart_carries_every_committed_crd_unchanged() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let names = |dir: &std::path::Path| -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".yaml"))
            .collect();
        v.sort();
        v
    };
    let (ours, chart) = (root.join("crds"), root.join("charts/crossover/files/crds"));
    assert_eq!(names(&ours), names(&chart), "run `make crds`");
    for name in names(&ours) {
        let a = std::fs::read_to_string(ours.join(&name)).unwrap();
        let b = std::fs::read_to_string(chart.join(&name)).unwrap();
        assert!(
            a == b,
            "charts/crossover/files/crds/{name} is stale: run `make crds`"
        );
    }
    // Helm's crds/ folder is install-only: a CRD there would never be upgraded.
    assert!(
        !root.join("charts/crossover/crds").exists(),
        "charts/crossover/crds/ must stay empty: the chart templates its CRDs"
    );
}

#[test]
fn the_crd_says_which_schema_version_it_is() {
    let crd = crossover::api::crd();
    let annotations = crd.metadata.annotations.unwrap();
    assert_eq!(
        annotations[crossover::api::SCHEMA_VERSION_ANNOTATION],
        crossover::api::CRD_SCHEMA_VERSION.to_string()
    );
    let schema = serde_json::to_value(&crd.spec.versions[0].schema).unwrap();
    let root = &schema["openAPIV3Schema"];
    assert!(
        root["description"]
            .as_str()
            .unwrap()
            .starts_with("An InferencePool (crossover.dev) runs one model on vLLM"),
        "{}",
        root["description"]
    );
    let conditions = &root["properties"]["status"]["properties"]["conditions"];
    assert_eq!(conditions["x-kubernetes-list-type"], "map");
    assert_eq!(
        conditions["x-kubernetes-list-map-keys"],
        serde_json::json!(["type"])
    );
}

#[test]
fn prometheus_source_is_cluster_scoped() {
    let crd = crossover::api::PrometheusSource::crd();
    assert_eq!(crd.spec.scope, "Cluster");
    assert_eq!(crd.spec.group, "crossover.dev");
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
