//! Pure builders: the vLLM Deployment and Service a pool owns, derived from its spec alone, and the
//! rule for which existing objects are the pool's to write. The reconciler applies exactly what
//! these return, so a second reconcile with no spec change sends the same objects and the API
//! server changes nothing.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment,
};
use k8s_openapi::api::core::v1::{
    Capabilities, Container, ContainerPort, EmptyDirVolumeSource, EnvVar, HTTPGetAction,
    PersistentVolumeClaimVolumeSource, PodSecurityContext, PodSpec, PodTemplateSpec, Probe,
    ResourceRequirements, SeccompProfile, SecurityContext, Service, ServicePort, ServiceSpec,
    Toleration, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::{Resource, ResourceExt};

use crate::api::{InferencePool, POOL_LABEL};

/// The label nodes carry for their GPU model (set by NVIDIA's GPU feature discovery).
pub const GPU_PRODUCT_LABEL: &str = "nvidia.com/gpu.product";

/// The taint value GPU nodes commonly carry under the GPU resource's key (GKE, NVIDIA's docs).
pub const GPU_TAINT_VALUE: &str = "present";

/// Where the model cache volume is mounted; HF_HOME and vLLM's caches live under it.
pub const CACHE_MOUNT_PATH: &str = "/cache";

/// Seconds the startup probe allows a replica to load its model before liveness may restart it:
/// replicas younger than this that are not ready yet count as capacity on its way.
pub const STARTUP_BUDGET_SECONDS: i64 = 1800;
const STARTUP_PROBE_PERIOD_SECONDS: i32 = 10;

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

/// The name of the pool's Service: the pool's own name when it is a valid Service name (a DNS-1035
/// label), else that name with dots and other characters made dashes and a `pool-` prefix before
/// a leading digit, so `llama-3.1-8b` gets `llama-3-1-8b` and `4o-mini` gets `pool-4o-mini`. Two
/// pools mapping to one name are told apart by ownership: the second reports the conflict.
pub fn service_name(pool_name: &str) -> String {
    if is_dns_label(pool_name) {
        return pool_name.to_string();
    }
    let mut name = String::with_capacity(pool_name.len() + 5);
    for c in pool_name.chars().map(|c| c.to_ascii_lowercase()) {
        let c = if c.is_ascii_lowercase() || c.is_ascii_digit() {
            c
        } else {
            '-'
        };
        if !(c == '-' && (name.is_empty() || name.ends_with('-'))) {
            name.push(c);
        }
    }
    if !name.starts_with(|c: char| c.is_ascii_lowercase()) {
        name.insert_str(0, "pool-");
    }
    // Pool names are at most 63 characters (CEL), so only the prefix can overflow.
    let mut name: String = name.chars().take(63).collect();
    while name.ends_with('-') {
        name.pop();
    }
    name
}

/// A DNS-1035 label: what a Service name must be.
fn is_dns_label(s: &str) -> bool {
    let bytes = s.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 63
        && bytes[0].is_ascii_lowercase()
        && bytes[bytes.len() - 1] != b'-'
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
}

/// Whether an existing object is the pool's to write.
#[derive(Debug, Clone, PartialEq)]
pub enum Ownership {
    /// Nothing by that name yet: the pool creates it.
    Absent,
    /// Controlled by this pool (its controller reference carries the pool's UID).
    Ours,
    /// Someone else's: left untouched, and the pool says whose.
    Foreign(String),
}

/// crossover writes only what this pool controls, as controller-runtime's SetControllerReference
/// does: an object of the same name that it does not control is never taken over (server-side
/// apply with force would swap a Service's selector and garbage-collect it with the pool).
pub fn ownership(existing: Option<&ObjectMeta>, pool: &InferencePool) -> Ownership {
    let Some(meta) = existing else {
        return Ownership::Absent;
    };
    let uid = pool.metadata.uid.as_deref();
    let controller = meta
        .owner_references
        .iter()
        .flatten()
        .find(|o| o.controller == Some(true));
    match controller {
        Some(o) if uid.is_some() && Some(o.uid.as_str()) == uid => Ownership::Ours,
        Some(o) => Ownership::Foreign(format!("controlled by {} {}", o.kind, o.name)),
        None => Ownership::Foreign(
            "not controlled by any pool (created by hand or by another tool)".into(),
        ),
    }
}

fn labels(pool: &InferencePool) -> BTreeMap<String, String> {
    let mut l = selector_labels(&pool.name_any());
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

fn child_meta(pool: &InferencePool, name: String) -> Result<ObjectMeta, BuildError> {
    Ok(ObjectMeta {
        name: Some(name),
        namespace: Some(pool.namespace().ok_or(BuildError::NoNamespace)?),
        labels: Some(labels(pool)),
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

/// CPU and memory (the user's, or requests of 2 CPUs and 8Gi) plus the replica's GPUs as both
/// request and limit, as the device plugin requires.
fn resources(pool: &InferencePool) -> ResourceRequirements {
    let spec = &pool.spec;
    let gpus = Quantity(spec.gpu.count.to_string());
    let mut r = spec
        .pod
        .resources
        .clone()
        .unwrap_or_else(|| ResourceRequirements {
            requests: Some(BTreeMap::from([
                ("cpu".to_string(), Quantity("2".into())),
                ("memory".to_string(), Quantity("8Gi".into())),
            ])),
            ..ResourceRequirements::default()
        });
    r.requests
        .get_or_insert_with(BTreeMap::new)
        .insert(spec.gpu.resource_name.clone(), gpus.clone());
    r.limits
        .get_or_insert_with(BTreeMap::new)
        .insert(spec.gpu.resource_name.clone(), gpus);
    r
}

/// The container's environment: the caches under the cache volume (a non-root user cannot write
/// the image's /root), then the user's variables, which replace ours of the same name.
fn env(pool: &InferencePool) -> Vec<EnvVar> {
    let user = &pool.spec.engine.env;
    let ours = [
        ("HOME", CACHE_MOUNT_PATH.to_string()),
        ("HF_HOME", format!("{CACHE_MOUNT_PATH}/huggingface")),
        ("VLLM_CACHE_ROOT", format!("{CACHE_MOUNT_PATH}/vllm")),
        ("XDG_CACHE_HOME", CACHE_MOUNT_PATH.to_string()),
    ];
    ours.into_iter()
        .filter(|(name, _)| !user.iter().any(|e| e.name == *name))
        .map(|(name, value)| EnvVar {
            name: name.to_string(),
            value: Some(value),
            value_from: None,
        })
        .chain(user.iter().cloned())
        .collect()
}

/// Tolerations: the user's list when given, else exactly the GPU taint GPU nodes carry (an
/// `Exists` toleration would also tolerate nodes tainted `<gpu>=reserved-for-another-team`).
fn tolerations(pool: &InferencePool) -> Vec<Toleration> {
    pool.spec.pod.tolerations.clone().unwrap_or_else(|| {
        vec![Toleration {
            key: Some(pool.spec.gpu.resource_name.clone()),
            operator: Some("Equal".to_string()),
            value: Some(GPU_TAINT_VALUE.to_string()),
            effect: Some("NoSchedule".to_string()),
            ..Toleration::default()
        }]
    })
}

fn volumes(pool: &InferencePool) -> Vec<Volume> {
    let settings = &pool.spec.pod;
    let cache = match &settings.model_cache {
        Some(c) if c.persistent_volume_claim.is_some() => Volume {
            name: "cache".to_string(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: c.persistent_volume_claim.clone().unwrap_or_default(),
                read_only: None,
            }),
            ..Volume::default()
        },
        other => Volume {
            name: "cache".to_string(),
            empty_dir: Some(EmptyDirVolumeSource {
                size_limit: other.as_ref().and_then(|c| c.empty_dir_size_limit.clone()),
                ..EmptyDirVolumeSource::default()
            }),
            ..Volume::default()
        },
    };
    vec![
        Volume {
            name: "dshm".to_string(),
            empty_dir: Some(EmptyDirVolumeSource {
                medium: Some("Memory".to_string()),
                size_limit: Some(settings.shm_size_limit.clone()),
            }),
            ..Volume::default()
        },
        cache,
    ]
}

/// What Pod Security `restricted` asks of a pod: not root, the runtime's seccomp profile.
fn pod_security(pool: &InferencePool) -> PodSecurityContext {
    let uid = pool.spec.pod.run_as_user.max(1);
    PodSecurityContext {
        run_as_non_root: Some(true),
        run_as_user: Some(uid),
        run_as_group: Some(uid),
        fs_group: Some(uid),
        seccomp_profile: Some(SeccompProfile {
            type_: "RuntimeDefault".to_string(),
            localhost_profile: None,
        }),
        ..PodSecurityContext::default()
    }
}

/// ...and of each container: no privilege escalation, every capability dropped.
fn container_security() -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        run_as_non_root: Some(true),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".to_string()]),
            add: None,
        }),
        ..SecurityContext::default()
    }
}

fn container(pool: &InferencePool) -> Container {
    let spec = &pool.spec;
    let http_get = |path: &str| HTTPGetAction {
        path: Some(path.to_string()),
        port: IntOrString::String("http".to_string()),
        ..HTTPGetAction::default()
    };
    Container {
        name: "vllm".to_string(),
        image: Some(spec.engine.image.clone()),
        command: Some(vec!["vllm".to_string()]),
        args: Some(vllm_args(pool)),
        env: Some(env(pool)),
        ports: Some(vec![ContainerPort {
            name: Some("http".to_string()),
            container_port: spec.engine.port,
            protocol: Some("TCP".to_string()),
            ..ContainerPort::default()
        }]),
        resources: Some(resources(pool)),
        // Model download and load take minutes: the startup probe allows STARTUP_BUDGET_SECONDS
        // before the liveness probe may restart the container.
        startup_probe: Some(Probe {
            http_get: Some(http_get("/health")),
            period_seconds: Some(STARTUP_PROBE_PERIOD_SECONDS),
            failure_threshold: Some(
                (STARTUP_BUDGET_SECONDS / i64::from(STARTUP_PROBE_PERIOD_SECONDS)) as i32,
            ),
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
        volume_mounts: Some(vec![
            VolumeMount {
                name: "dshm".to_string(),
                mount_path: "/dev/shm".to_string(),
                ..VolumeMount::default()
            },
            VolumeMount {
                name: "cache".to_string(),
                mount_path: CACHE_MOUNT_PATH.to_string(),
                ..VolumeMount::default()
            },
        ]),
        security_context: Some(container_security()),
        ..Container::default()
    }
}

fn pod_spec(pool: &InferencePool) -> PodSpec {
    let settings = &pool.spec.pod;
    let mut node_selector = settings.node_selector.clone();
    if let Some(product) = &pool.spec.gpu.product {
        node_selector.insert(GPU_PRODUCT_LABEL.to_string(), product.clone());
    }
    PodSpec {
        containers: vec![container(pool)],
        node_selector: (!node_selector.is_empty()).then_some(node_selector),
        tolerations: Some(tolerations(pool)),
        affinity: settings.affinity.clone(),
        image_pull_secrets: (!settings.image_pull_secrets.is_empty())
            .then(|| settings.image_pull_secrets.clone()),
        service_account_name: settings.service_account_name.clone(),
        automount_service_account_token: Some(settings.automount_service_account_token),
        priority_class_name: settings.priority_class_name.clone(),
        runtime_class_name: settings.runtime_class_name.clone(),
        security_context: Some(pod_security(pool)),
        volumes: Some(volumes(pool)),
        ..PodSpec::default()
    }
}

fn template_metadata(pool: &InferencePool) -> ObjectMeta {
    let settings = &pool.spec.pod;
    // crossover's selector labels win over the user's: the Deployment's selector depends on them.
    let mut labels = settings.labels.clone();
    labels.extend(self::labels(pool));
    let port = pool.spec.engine.port.to_string();
    let mut annotations = settings.annotations.clone();
    annotations.extend([
        ("prometheus.io/scrape".to_string(), "true".to_string()),
        ("prometheus.io/port".to_string(), port),
        ("prometheus.io/path".to_string(), "/metrics".to_string()),
    ]);
    ObjectMeta {
        labels: Some(labels),
        annotations: Some(annotations),
        ..ObjectMeta::default()
    }
}

/// The Deployment that runs vLLM for a pool, with `replicas` pods.
pub fn deployment(pool: &InferencePool, replicas: i32) -> Result<Deployment, BuildError> {
    Ok(Deployment {
        metadata: child_meta(pool, pool.name_any())?,
        spec: Some(DeploymentSpec {
            replicas: Some(replicas),
            selector: LabelSelector {
                match_labels: Some(selector_labels(&pool.name_any())),
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
                metadata: Some(template_metadata(pool)),
                spec: Some(pod_spec(pool)),
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
        metadata: child_meta(pool, service_name(&pool.name_any()))?,
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
        let shm = &pod.volumes.as_ref().unwrap()[0];
        let dir = shm.empty_dir.as_ref().unwrap();
        assert_eq!(dir.medium.as_deref(), Some("Memory"));
        assert_eq!(dir.size_limit, Some(Quantity("8Gi".into())));
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
    fn default_pods_pass_pod_security_restricted() {
        let d = deployment(&pool(SPEC), 1).unwrap();
        let pod = d.spec.unwrap().template.spec.unwrap();
        let psc = pod.security_context.unwrap();
        assert_eq!(psc.run_as_non_root, Some(true));
        assert_eq!(psc.run_as_user, Some(1000));
        assert_eq!(psc.seccomp_profile.unwrap().type_, "RuntimeDefault");
        let c = &pod.containers[0];
        let sc = c.security_context.as_ref().unwrap();
        assert_eq!(sc.allow_privilege_escalation, Some(false));
        assert_eq!(
            sc.capabilities.as_ref().unwrap().drop.as_deref(),
            Some(&["ALL".to_string()][..])
        );
        assert_eq!(pod.automount_service_account_token, Some(false));
        let requests = c.resources.as_ref().unwrap().requests.as_ref().unwrap();
        assert_eq!(requests["cpu"], Quantity("2".into()));
        assert_eq!(requests["memory"], Quantity("8Gi".into()));
        assert_eq!(requests["nvidia.com/gpu"], Quantity("2".into()));
        let env = c.env.as_ref().unwrap();
        assert!(env.iter().any(|e| e.name == "HF_HOME"));
    }

    #[test]
    fn the_default_toleration_matches_the_gpu_taint_exactly() {
        let d = deployment(&pool(SPEC), 1).unwrap();
        let t = &d.spec.unwrap().template.spec.unwrap().tolerations.unwrap()[0];
        assert_eq!(t.key.as_deref(), Some("nvidia.com/gpu"));
        assert_eq!(t.operator.as_deref(), Some("Equal"));
        assert_eq!(t.value.as_deref(), Some("present"));
    }

    #[test]
    fn pod_settings_reach_the_pod() {
        let p = pool(&format!(
            "{SPEC}pod:
  resources: {{requests: {{cpu: '8', memory: 64Gi}}, limits: {{memory: 96Gi}}}}
  tolerations: [{{key: sku, operator: Equal, value: gpu, effect: NoSchedule}}]
  nodeSelector: {{pool: gpu-a}}
  imagePullSecrets: [{{name: regcred}}]
  serviceAccountName: vllm
  priorityClassName: serving
  runAsUser: 2000
  shmSizeLimit: 16Gi
  modelCache: {{persistentVolumeClaim: models}}
  labels: {{team: ml, crossover.dev/pool: hijack}}
"
        ));
        let d = deployment(&p, 1).unwrap();
        let t = d.spec.unwrap().template;
        let pod = t.spec.unwrap();
        let c = &pod.containers[0];
        let r = c.resources.as_ref().unwrap();
        assert_eq!(r.requests.as_ref().unwrap()["cpu"], Quantity("8".into()));
        assert_eq!(
            r.limits.as_ref().unwrap()["memory"],
            Quantity("96Gi".into())
        );
        assert_eq!(
            r.limits.as_ref().unwrap()["nvidia.com/gpu"],
            Quantity("2".into())
        );
        assert_eq!(pod.tolerations.unwrap()[0].key.as_deref(), Some("sku"));
        let ns = pod.node_selector.unwrap();
        assert_eq!(ns["pool"], "gpu-a");
        assert_eq!(ns[GPU_PRODUCT_LABEL], "NVIDIA-GeForce-RTX-3090");
        assert_eq!(pod.image_pull_secrets.unwrap()[0].name, "regcred");
        assert_eq!(pod.service_account_name.as_deref(), Some("vllm"));
        assert_eq!(pod.priority_class_name.as_deref(), Some("serving"));
        assert_eq!(pod.security_context.unwrap().fs_group, Some(2000));
        let volumes = pod.volumes.unwrap();
        assert_eq!(
            volumes[1]
                .persistent_volume_claim
                .as_ref()
                .unwrap()
                .claim_name,
            "models"
        );
        let labels = t.metadata.unwrap().labels.unwrap();
        assert_eq!(labels["team"], "ml");
        assert_eq!(
            labels[POOL_LABEL], "gemma",
            "the selector label cannot be overridden"
        );
    }

    #[test]
    fn service_names_are_valid_for_every_pool_name() {
        for (pool, service) in [
            ("gemma", "gemma"),
            ("llama-3.1-8b", "llama-3-1-8b"),
            ("qwen2.5-7b", "qwen2-5-7b"),
            ("4o-mini-replacement", "pool-4o-mini-replacement"),
            ("a..b", "a-b"),
            (&"x".repeat(63), &"x".repeat(63)),
        ] {
            assert_eq!(service_name(pool), service, "{pool}");
            assert!(is_dns_label(&service_name(pool)), "{pool}");
        }
        let long = format!("9{}", "a".repeat(62));
        assert!(is_dns_label(&service_name(&long)));
        assert_eq!(service_name(&long).len(), 63);
    }

    #[test]
    fn only_objects_this_pool_controls_are_its_own() {
        let p = pool(SPEC);
        let ours = deployment(&p, 1).unwrap().metadata;
        assert_eq!(ownership(Some(&ours), &p), Ownership::Ours);
        assert_eq!(ownership(None, &p), Ownership::Absent);
        let by_hand = ObjectMeta {
            name: Some("gemma".into()),
            ..ObjectMeta::default()
        };
        assert!(matches!(
            ownership(Some(&by_hand), &p),
            Ownership::Foreign(_)
        ));
        let mut other = ours.clone();
        other.owner_references.as_mut().unwrap()[0].uid = "5678".into();
        assert!(matches!(ownership(Some(&other), &p), Ownership::Foreign(_)));
    }

    #[test]
    fn selector_string_lists_every_selector_label() {
        assert_eq!(
            selector_string("gemma"),
            "app.kubernetes.io/instance=gemma,app.kubernetes.io/name=vllm,crossover.dev/pool=gemma"
        );
    }
}
