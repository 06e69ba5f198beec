//! Pure builders: the vLLM Deployment and Service a pool owns, derived from its spec alone.
//! The reconciler applies exactly what these return, so a second reconcile with no spec change
//! sends the same objects and the API server changes nothing.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment,
};
use k8s_openapi::api::core::v1::{
    Container, ContainerPort, EmptyDirVolumeSource, HTTPGetAction, PodSpec, PodTemplateSpec, Probe,
    ResourceRequirements, Service, ServicePort, ServiceSpec, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::{Resource, ResourceExt};

use crate::api::{InferencePool, POOL_LABEL};

/// The label nodes carry for their GPU model (set by NVIDIA's GPU feature discovery).
pub const GPU_PRODUCT_LABEL: &str = "nvidia.com/gpu.product";

/// Why a pool cannot be turned into objects.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum BuildError {
    #[error("the pool has no namespace")]
    NoNamespace,
    #[error("the pool has no uid yet (not read from the API server)")]
    NoUid,
}

/// Labels that select a pool's pods. Stable across spec changes: a Deployment's selector is immutable.
pub fn selector_labels(pool_name: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name".to_string(), "vllm".to_string()),
        (
            "app.kubernetes.io/instance".to_string(),
            pool_name.to_string(),
        ),
        (POOL_LABEL.to_string(), pool_name.to_string()),
    ])
}

/// The selector as the string form the scale subresource wants (`status.selector`).
pub fn selector_string(pool_name: &str) -> String {
    selector_labels(pool_name)
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

fn labels(pool_name: &str) -> BTreeMap<String, String> {
    let mut l = selector_labels(pool_name);
    l.insert(
        "app.kubernetes.io/managed-by".to_string(),
        "crossover".to_string(),
    );
    l.insert(
        "app.kubernetes.io/component".to_string(),
        "inference".to_string(),
    );
    l
}

fn owner_reference(pool: &InferencePool) -> Result<OwnerReference, BuildError> {
    pool.controller_owner_ref(&()).ok_or(BuildError::NoUid)
}

fn child_meta(pool: &InferencePool) -> Result<ObjectMeta, BuildError> {
    Ok(ObjectMeta {
        name: Some(pool.name_any()),
        namespace: Some(pool.namespace().ok_or(BuildError::NoNamespace)?),
        labels: Some(labels(&pool.name_any())),
        owner_references: Some(vec![owner_reference(pool)?]),
        ..ObjectMeta::default()
    })
}

/// The command line vLLM runs: the model, the name clients use, tensor parallelism over the
/// replica's GPUs and the port, then the user's own flags (which may override ours: vLLM takes the last).
pub fn vllm_args(pool: &InferencePool) -> Vec<String> {
    let spec = &pool.spec;
    let served = spec
        .served_model_name
        .clone()
        .unwrap_or_else(|| spec.model.clone());
    let mut args = vec![
        "serve".to_string(),
        spec.model.clone(),
        format!("--served-model-name={served}"),
        format!("--tensor-parallel-size={}", spec.gpu.count),
        format!("--port={}", spec.engine.port),
    ];
    args.extend(spec.engine.args.iter().cloned());
    args
}

/// The Deployment that runs vLLM for a pool, with `replicas` pods.
pub fn deployment(pool: &InferencePool, replicas: i32) -> Result<Deployment, BuildError> {
    let spec = &pool.spec;
    let name = pool.name_any();
    let port = spec.engine.port;
    let gpus = Quantity(spec.gpu.count.to_string());
    let resources = ResourceRequirements {
        limits: Some(BTreeMap::from([(
            spec.gpu.resource_name.clone(),
            gpus.clone(),
        )])),
        requests: Some(BTreeMap::from([(spec.gpu.resource_name.clone(), gpus)])),
        ..ResourceRequirements::default()
    };
    let http_get = |path: &str| HTTPGetAction {
        path: Some(path.to_string()),
        port: IntOrString::String("http".to_string()),
        ..HTTPGetAction::default()
    };
    let container = Container {
        name: "vllm".to_string(),
        image: Some(spec.engine.image.clone()),
        command: Some(vec!["vllm".to_string()]),
        args: Some(vllm_args(pool)),
        env: (!spec.engine.env.is_empty()).then(|| spec.engine.env.clone()),
        ports: Some(vec![ContainerPort {
            name: Some("http".to_string()),
            container_port: port,
            protocol: Some("TCP".to_string()),
            ..ContainerPort::default()
        }]),
        resources: Some(resources),
        // Model download and load take minutes: the startup probe allows 30 minutes before the
        // liveness probe may restart the container.
        startup_probe: Some(Probe {
            http_get: Some(http_get("/health")),
            period_seconds: Some(10),
            failure_threshold: Some(180),
            ..Probe::default()
        }),
        readiness_probe: Some(Probe {
            http_get: Some(http_get("/health")),
            period_seconds: Some(5),
            failure_threshold: Some(3),
            ..Probe::default()
        }),
        liveness_probe: Some(Probe {
            http_get: Some(http_get("/health")),
            period_seconds: Some(15),
            failure_threshold: Some(4),
            ..Probe::default()
        }),
        volume_mounts: Some(vec![VolumeMount {
            name: "dshm".to_string(),
            mount_path: "/dev/shm".to_string(),
            ..VolumeMount::default()
        }]),
        ..Container::default()
    };
    let node_selector = spec
        .gpu
        .product
        .as_ref()
        .map(|p| BTreeMap::from([(GPU_PRODUCT_LABEL.to_string(), p.clone())]));
    let annotations = BTreeMap::from([
        ("prometheus.io/scrape".to_string(), "true".to_string()),
        ("prometheus.io/port".to_string(), port.to_string()),
        ("prometheus.io/path".to_string(), "/metrics".to_string()),
    ]);
    Ok(Deployment {
        metadata: child_meta(pool)?,
        spec: Some(DeploymentSpec {
            replicas: Some(replicas),
            selector: LabelSelector {
                match_labels: Some(selector_labels(&name)),
                ..LabelSelector::default()
            },
            // A GPU is rarely free for a surge pod: replace one pod at a time instead.
            strategy: Some(DeploymentStrategy {
                type_: Some("RollingUpdate".to_string()),
                rolling_update: Some(RollingUpdateDeployment {
                    max_surge: Some(IntOrString::Int(0)),
                    max_unavailable: Some(IntOrString::Int(1)),
                }),
            }),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels(&name)),
                    annotations: Some(annotations),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    containers: vec![container],
                    node_selector,
                    // Fake (kwok) and real GPU nodes are commonly tainted for GPU work only.
                    tolerations: Some(vec![k8s_openapi::api::core::v1::Toleration {
                        key: Some(spec.gpu.resource_name.clone()),
                        operator: Some("Exists".to_string()),
                        effect: Some("NoSchedule".to_string()),
                        ..Default::default()
                    }]),
                    volumes: Some(vec![Volume {
                        name: "dshm".to_string(),
                        empty_dir: Some(EmptyDirVolumeSource {
                            medium: Some("Memory".to_string()),
                            ..EmptyDirVolumeSource::default()
                        }),
                        ..Volume::default()
                    }]),
                    ..PodSpec::default()
                }),
            },
            ..DeploymentSpec::default()
        }),
        status: None,
    })
}

/// The Service in front of a pool's pods, exposing vLLM's port as `http`.
pub fn service(pool: &InferencePool) -> Result<Service, BuildError> {
    let port = pool.spec.engine.port;
    Ok(Service {
        metadata: child_meta(pool)?,
        spec: Some(ServiceSpec {
            selector: Some(selector_labels(&pool.name_any())),
            ports: Some(vec![ServicePort {
                name: Some("http".to_string()),
                port,
                target_port: Some(IntOrString::String("http".to_string())),
                protocol: Some("TCP".to_string()),
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        status: None,
    })
}

/// The kind/apiVersion pair every applied object needs for server-side apply.
pub fn with_type_meta<K: Resource<DynamicType = ()> + serde::Serialize>(
    obj: &K,
) -> serde_json::Value {
    let mut v = serde_json::to_value(obj).unwrap_or(serde_json::Value::Null);
    if let Some(m) = v.as_object_mut() {
        m.insert("apiVersion".into(), K::api_version(&()).into());
        m.insert("kind".into(), K::kind(&()).into());
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::InferencePoolSpec;

    pub(crate) fn pool(yaml_spec: &str) -> InferencePool {
        let spec: InferencePoolSpec = serde_saphyr::from_str(yaml_spec).expect("spec parses");
        let mut p = InferencePool::new("gemma", spec);
        p.metadata.namespace = Some("team-a".into());
        p.metadata.uid = Some("1234".into());
        p
    }

    const SPEC: &str = r#"
model: google/gemma-4-31b-it
servedModelName: gemma4:31b
engine: { args: ["--max-model-len=8192"], port: 8080 }
gpu: { count: 2, product: NVIDIA-GeForce-RTX-3090 }
maxReplicas: 4
cost: { replicaMonthlyUsd: 205 }
"#;

    #[test]
    fn deployment_runs_vllm_with_tensor_parallelism_over_the_replicas_gpus() {
        let d = deployment(&pool(SPEC), 3).unwrap();
        let spec = d.spec.unwrap();
        assert_eq!(spec.replicas, Some(3));
        let pod = spec.template.spec.unwrap();
        let c = &pod.containers[0];
        assert_eq!(
            c.args.clone().unwrap(),
            vec![
                "serve",
                "google/gemma-4-31b-it",
                "--served-model-name=gemma4:31b",
                "--tensor-parallel-size=2",
                "--port=8080",
                "--max-model-len=8192"
            ]
        );
        let limits = c.resources.as_ref().unwrap().limits.as_ref().unwrap();
        assert_eq!(limits["nvidia.com/gpu"], Quantity("2".into()));
        assert_eq!(c.image.as_deref(), Some(crate::api::DEFAULT_VLLM_IMAGE));
        assert_eq!(
            pod.node_selector.unwrap()[GPU_PRODUCT_LABEL],
            "NVIDIA-GeForce-RTX-3090"
        );
        assert!(c.startup_probe.as_ref().unwrap().failure_threshold.unwrap() * 10 >= 600);
        assert_eq!(
            c.readiness_probe
                .as_ref()
                .unwrap()
                .http_get
                .as_ref()
                .unwrap()
                .path
                .as_deref(),
            Some("/health")
        );
        let shm = &pod.volumes.unwrap()[0];
        assert_eq!(
            shm.empty_dir.as_ref().unwrap().medium.as_deref(),
            Some("Memory")
        );
        let ann = spec.template.metadata.unwrap().annotations.unwrap();
        assert_eq!(ann["prometheus.io/port"], "8080");
    }

    #[test]
    fn children_are_owned_by_the_pool_and_labelled_with_it() {
        let p = pool(SPEC);
        for meta in [
            deployment(&p, 1).unwrap().metadata,
            service(&p).unwrap().metadata,
        ] {
            let owner = &meta.owner_references.unwrap()[0];
            assert_eq!(owner.kind, "InferencePool");
            assert_eq!(owner.uid, "1234");
            assert_eq!(owner.controller, Some(true));
            let labels = meta.labels.unwrap();
            assert_eq!(labels[POOL_LABEL], "gemma");
            assert_eq!(labels["app.kubernetes.io/name"], "vllm");
            assert_eq!(labels["app.kubernetes.io/instance"], "gemma");
        }
    }

    #[test]
    fn service_exposes_the_engine_port_as_http() {
        let s = service(&pool(SPEC)).unwrap().spec.unwrap();
        let port = &s.ports.unwrap()[0];
        assert_eq!(port.name.as_deref(), Some("http"));
        assert_eq!(port.port, 8080);
        assert_eq!(s.selector.unwrap()[POOL_LABEL], "gemma");
    }

    #[test]
    fn default_engine_uses_the_pinned_image_and_port_8000() {
        let p = pool("model: m\ncost: { replicaHourlyUsd: 1 }\n");
        let d = deployment(&p, 1).unwrap();
        let c = &d.spec.unwrap().template.spec.unwrap().containers[0];
        assert!(
            c.args
                .as_ref()
                .unwrap()
                .contains(&"--port=8000".to_string())
        );
        assert!(
            c.args
                .as_ref()
                .unwrap()
                .contains(&"--served-model-name=m".to_string())
        );
    }

    #[test]
    fn a_pool_not_read_from_the_server_cannot_own_children() {
        let mut p = pool(SPEC);
        p.metadata.uid = None;
        assert_eq!(deployment(&p, 1).unwrap_err(), BuildError::NoUid);
    }

    #[test]
    fn selector_string_lists_every_selector_label() {
        assert_eq!(
            selector_string("gemma"),
            "app.kubernetes.io/instance=gemma,app.kubernetes.io/name=vllm,crossover.dev/pool=gemma"
        );
    }
}
