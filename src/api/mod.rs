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
pub fn crd_yaml() -> Result<String, serde_yaml::Error> {
    use kube::CustomResourceExt;
    serde_yaml::to_string(&InferencePool::crd())
}
