//! The crossover API: the `InferencePool` custom resource and the labels that tie a pool to its
//! children. Data types only; nothing here talks to a cluster.

mod pool;

pub use pool::*;

/// API group of crossover's resources.
pub const GROUP: &str = "crossover.dev";

/// Label every child of a pool carries, naming the pool.
pub const POOL_LABEL: &str = "crossover.dev/pool";

/// The server-side-apply field manager for every write crossover makes.
pub const FIELD_MANAGER: &str = "crossover";

/// The generated CRD as YAML, exactly what `crossover crd` prints and `crds/` holds.
pub fn crd_yaml() -> Result<String, serde_saphyr::ser_error::Error> {
    use kube::CustomResourceExt;
    serde_saphyr::to_string(&InferencePool::crd())
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
