//! The crossover API: the `InferencePool` custom resource and the labels that tie a pool to its
//! children. Data types only; nothing here talks to a cluster.

mod pool;
pub mod source;

pub use pool::*;
pub use source::{PrometheusSource, PrometheusSourceSpec};

/// API group of crossover's resources.
pub const GROUP: &str = "crossover.dev";

/// Label every child of a pool carries, naming the pool.
pub const POOL_LABEL: &str = "crossover.dev/pool";

/// The server-side-apply field manager for every write crossover makes.
pub const FIELD_MANAGER: &str = "crossover";

/// Annotation on the generated CRD that carries [`CRD_SCHEMA_VERSION`].
pub const SCHEMA_VERSION_ANNOTATION: &str = "crossover.dev/schema-version";

/// The version of the InferencePool schema this binary writes. Bump it in a release whose schema
/// gains or changes a field: the API server silently prunes status fields an older CRD does not
/// declare (the sizing history, month-to-date money), so an operator refuses to run against a CRD
/// whose annotation is lower. CRDs from before the annotation count as version 0.
pub const CRD_SCHEMA_VERSION: u32 = 3;

/// The CRD this binary expects: the derived one, stamped with its schema version.
pub fn crd()
-> k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition {
    use kube::CustomResourceExt;
    let mut crd = InferencePool::crd();
    crd.metadata.annotations.get_or_insert_default().insert(
        SCHEMA_VERSION_ANNOTATION.to_string(),
        CRD_SCHEMA_VERSION.to_string(),
    );
    crd
}

/// The generated InferencePool CRD as YAML, exactly what `crossover crd inferencepools` prints
/// and `crds/` holds.
pub fn crd_yaml() -> Result<String, serde_saphyr::ser_error::Error> {
    serde_saphyr::to_string(&crd())
}

/// The generated PrometheusSource CRD as YAML (`crossover crd prometheussources`).
pub fn source_crd_yaml() -> Result<String, serde_saphyr::ser_error::Error> {
    use kube::CustomResourceExt;
    serde_saphyr::to_string(&PrometheusSource::crd())
}

/// Every CRD crossover defines: the file name under `crds/` and its YAML.
pub fn crds() -> Result<Vec<(&'static str, String)>, serde_saphyr::ser_error::Error> {
    Ok(vec![
        ("inferencepools.crossover.dev.yaml", crd_yaml()?),
        ("prometheussources.crossover.dev.yaml", source_crd_yaml()?),
    ])
}

/// Converts crossover's clock type to the API's timestamp type (k8s-openapi uses jiff), in whole
/// seconds: the precision status keeps, so a value survives a round trip through the API server.
pub fn to_time(
    t: chrono::DateTime<chrono::Utc>,
) -> k8s_openapi::apimachinery::pkg::apis::meta::v1::Time {
    let ts = k8s_openapi::jiff::Timestamp::from_second(t.timestamp())
        .unwrap_or(k8s_openapi::jiff::Timestamp::UNIX_EPOCH);
    k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(ts)
}

/// Converts an API timestamp back to crossover's clock type.
pub fn from_time(
    t: &k8s_openapi::apimachinery::pkg::apis::meta::v1::Time,
) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp_millis(t.0.as_millisecond()).unwrap_or_default()
}
