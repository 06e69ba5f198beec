//! The `InferencePool` custom resource (`crossover.dev/v1alpha1`): spec, status and schema
//! validation. Types only, no IO: `crossover crd` prints what `InferencePool::crd()` derives from here.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Affinity, EnvVar, LocalObjectReference, ResourceRequirements, Toleration,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

/// The vLLM release a pool runs when `spec.engine.image` is not set.
pub const DEFAULT_VLLM_IMAGE: &str = "vllm/vllm-openai:v0.33.0";

/// Longest pool name: it is the value of the pods' `crossover.dev/pool` label (63 at most).
pub const MAX_NAME_LENGTH: usize = 63;
/// Most replicas a pool may ask for (minReplicas, maxReplicas, replicas).
pub const MAX_REPLICAS: i32 = 1000;
/// Most GPUs one replica may ask for.
pub const MAX_GPUS_PER_REPLICA: i32 = 64;
/// Highest replica price per hour, USD: far above any GPU node (an 8x H100 node rents for ~$100/h).
pub const MAX_REPLICA_HOURLY_USD: f64 = 10_000.0;
/// Highest replica or overhead price per month, USD.
pub const MAX_MONTHLY_USD: f64 = 10_000_000.0;
/// Highest API price per 1M tokens, USD (frontier models list well under $1,000).
pub const MAX_USD_PER_MILLION_TOKENS: f64 = 10_000.0;
/// Highest capacity per replica, tokens per second.
pub const MAX_TOKENS_PER_SECOND: f64 = 100_000_000.0;
/// Lowest non-zero capacity per replica, tokens per second: anything smaller is a typo that would
/// make every token look like thousands of replicas of work.
pub const MIN_TOKENS_PER_SECOND: f64 = 0.001;

/// An InferencePool runs one model on vLLM across GPU replicas, sizes the replica count to the load
/// vLLM reports, and prices the pool against the hosted API it replaces.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "crossover.dev",
    version = "v1alpha1",
    kind = "InferencePool",
    plural = "inferencepools",
    singular = "inferencepool",
    shortname = "ipool",
    category = "crossover",
    namespaced,
    doc = "An InferencePool (crossover.dev) runs one model on vLLM as a Deployment and a Service that crossover owns, sizes the replica count to the load vLLM reports, and prices the pool against the hosted API it replaces. Not the Gateway API Inference Extension's InferencePool: name it `ipool` or `inferencepools.crossover.dev` in kubectl.",
    status = "InferencePoolStatus",
    scale(
        spec_replicas_path = ".spec.replicas",
        status_replicas_path = ".status.replicas",
        label_selector_path = ".status.selector"
    ),
    printcolumn(name = "Model", type_ = "string", json_path = ".spec.model", description = "Model served by vLLM"),
    printcolumn(name = "Ready", type_ = "string", json_path = ".status.display.ready", description = "Ready replicas / provisioned replicas"),
    printcolumn(name = "Desired", type_ = "integer", json_path = ".status.desiredReplicas", description = "Replicas the sizing policy wants"),
    printcolumn(name = "Util", type_ = "string", json_path = ".status.display.utilization", description = "Load as a share of the pool's capacity"),
    printcolumn(name = "Pool/mo", type_ = "string", json_path = ".status.display.poolMonthly", description = "Pool cost per month at the current run-rate"),
    printcolumn(name = "API/mo", type_ = "string", json_path = ".status.display.apiMonthly", description = "What the same tokens would cost per month on the hosted API"),
    printcolumn(name = "Cheaper", type_ = "string", json_path = ".status.display.cheaper", description = "Which is cheaper, and by how much"),
    printcolumn(name = "Provisioning", type_ = "string", json_path = ".status.provisioning.verdict", description = "Whether the pool is the right size for its load"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    cel,
    validation = Rule::new("self.spec.minReplicas <= self.spec.maxReplicas").message("spec.minReplicas must not be greater than spec.maxReplicas"),
    validation = Rule::new("!has(self.spec.replicas) || self.spec.scaling.mode == 'External'").message("spec.replicas may only be set when spec.scaling.mode is External (in Auto mode crossover sizes the pool itself)"),
    validation = Rule::new("self.metadata.name.size() <= 63").message("metadata.name must be at most 63 characters: it is the crossover.dev/pool label on the pool's pods"),
    validation = Rule::new("self.spec.minReplicas >= 1 || self.spec.scaling.mode == 'External'").message("spec.minReplicas must be at least 1 in Auto mode: crossover reads the load from the pool's own pods, so at zero it could never see demand again (scale to zero with scaling.mode External and KEDA or an HPA)")
)]
#[serde(rename_all = "camelCase")]
pub struct InferencePoolSpec {
    /// The model vLLM serves: a Hugging Face model id (google/gemma-4-31b-it) or a path inside the image.
    #[x_kube(validation = Rule::new("self.size() > 0").message("spec.model must name a model, such as google/gemma-4-31b-it"))]
    #[schemars(length(max = 1024))]
    pub model: String,

    /// The name clients use in API requests (vLLM's --served-model-name). Defaults to `model`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub served_model_name: Option<String>,

    /// How vLLM is run: image, extra flags, environment and port.
    #[serde(default)]
    pub engine: EngineSpec,

    /// GPUs each replica gets.
    #[serde(default)]
    pub gpu: GpuSpec,

    /// The fewest replicas crossover keeps running, whatever the load: at least 1 in Auto mode; 0
    /// only with `scaling.mode: External` (a scaler that sees demand from outside the pool).
    #[serde(default = "default_min_replicas")]
    #[schemars(range(min = 0, max = 1000))]
    pub min_replicas: i32,

    /// The most replicas crossover will run, whatever the load.
    #[serde(default = "default_max_replicas")]
    #[x_kube(validation = Rule::new("self >= 1 && self <= 1000").message("spec.maxReplicas must be between 1 and 1000"))]
    pub max_replicas: i32,

    /// Replica count written by `kubectl scale`, an HPA or KEDA. Only with `scaling.mode: External`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 1000))]
    pub replicas: Option<i32>,

    /// What one replica can serve at the latency you want; the sizing policy divides load by it.
    #[serde(default)]
    pub capacity: CapacitySpec,

    /// How the pool is sized.
    #[serde(default)]
    pub scaling: ScalingSpec,

    /// What the pool costs to run.
    pub cost: CostSpec,

    /// The hosted API this pool replaces, to price the same tokens against.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compare_to: Option<CompareTo>,

    /// What the vLLM pods need from the cluster beyond the model and its GPUs: CPU and memory,
    /// tolerations and node placement, pull secrets, a service account, a model cache, the user
    /// they run as. Every field here reaches the pod template (docs/SECURITY.md lists them).
    #[serde(default)]
    pub pod: PodSettings,
}

fn default_min_replicas() -> i32 {
    1
}
fn default_max_replicas() -> i32 {
    1
}

/// How vLLM is run in each replica.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct EngineSpec {
    /// Container image with vLLM's OpenAI-compatible server.
    #[serde(default = "default_image")]
    #[schemars(length(min = 1, max = 512))]
    pub image: String,

    /// Extra flags appended to `vllm serve` (for example --max-model-len=8192).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 128), inner(length(max = 4096)))]
    pub args: Vec<String>,

    /// Environment for the vLLM container, such as HF_TOKEN from a Secret (valueFrom.secretKeyRef).
    /// Same fields as a container's env; the API server checks them when the Deployment is applied.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "env_schema")]
    pub env: Vec<EnvVar>,

    /// Port vLLM listens on for the API and /metrics.
    #[serde(default = "default_port")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: i32,
}

fn env_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
    // EnvVar's full schema is large and already validated by the Deployment: keep it opaque here.
    let _ = generator;
    schemars::json_schema!({
        "type": "array",
        "maxItems": 128,
        "items": {
            "type": "object",
            "required": ["name"],
            "properties": {"name": {"type": "string", "minLength": 1, "maxLength": 256}},
            "x-kubernetes-preserve-unknown-fields": true
        }
    })
}

impl Default for EngineSpec {
    fn default() -> Self {
        Self {
            image: default_image(),
            args: Vec::new(),
            env: Vec::new(),
            port: default_port(),
        }
    }
}

fn default_image() -> String {
    DEFAULT_VLLM_IMAGE.to_string()
}
fn default_port() -> i32 {
    8000
}

/// GPUs per replica.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct GpuSpec {
    /// GPUs per replica. Sets vLLM's --tensor-parallel-size and the container's GPU limit.
    #[serde(default = "default_gpu_count")]
    #[x_kube(validation = Rule::new("self >= 1 && self <= 64").message("spec.gpu.count must be between 1 and 64 (GPUs per replica)"))]
    pub count: i32,

    /// Extended resource that schedules a GPU, such as nvidia.com/gpu or amd.com/gpu. Also the key
    /// of the default toleration (see spec.pod.tolerations).
    #[serde(default = "default_gpu_resource")]
    #[x_kube(validation = Rule::new("self.matches('^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\\\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$') && self.contains('/') && !self.startsWith('kubernetes.io/')").message("spec.gpu.resourceName must be an extended resource name such as nvidia.com/gpu (a domain, a slash, a name)"))]
    #[schemars(length(max = 253))]
    pub resource_name: String,

    /// GPU product to run on, matched against the nodes' nvidia.com/gpu.product label (for example NVIDIA-H100-80GB-HBM3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self.matches('^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$')").message("spec.gpu.product must be a label value (letters, digits, '-', '_', '.'), such as NVIDIA-H100-80GB-HBM3"))]
    #[schemars(length(max = 63))]
    pub product: Option<String>,
}

impl Default for GpuSpec {
    fn default() -> Self {
        Self {
            count: default_gpu_count(),
            resource_name: default_gpu_resource(),
            product: None,
        }
    }
}

fn default_gpu_count() -> i32 {
    1
}
fn default_gpu_resource() -> String {
    "nvidia.com/gpu".to_string()
}

/// What the vLLM pods need from the cluster. The defaults pass Pod Security `restricted`: the
/// container runs as a non-root user with no privilege escalation, every capability dropped and the
/// runtime's default seccomp profile, and gets no service-account token.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PodSettings {
    /// CPU, memory and ephemeral storage for the vLLM container; the GPUs come from spec.gpu and
    /// are added to whatever is set here. Default: requests of 2 CPUs and 8Gi of memory, no limits
    /// (a memory limit below the model load's peak kills the load).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,

    /// Node labels the pods must match, beside spec.gpu.product.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(length(max = 32))]
    pub node_selector: BTreeMap<String, String>,

    /// Tolerations for the GPU nodes' taints. Unset: exactly `<spec.gpu.resourceName>=present:NoSchedule`
    /// (the taint NVIDIA's GPU operator and GKE put on GPU nodes). Set: this list replaces it, so a
    /// node reserved with another taint value is only used by pools that say so.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    pub tolerations: Option<Vec<Toleration>>,

    /// Node and pod affinity, as in a pod spec (for example to spread replicas across zones).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Affinity>,

    /// Secrets in the pool's namespace for pulling the image from a private registry.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub image_pull_secrets: Vec<LocalObjectReference>,

    /// The service account the pods run as (default: the namespace's `default`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$')").message("spec.pod.serviceAccountName must be a DNS subdomain name"))]
    #[schemars(length(max = 253))]
    pub service_account_name: Option<String>,

    /// Mount the service account's API token into the pods. Off by default: vLLM never calls the
    /// Kubernetes API, and a model's own code (--trust-remote-code) should not get a token.
    #[serde(default)]
    pub automount_service_account_token: bool,

    /// PriorityClass of the pods, so GPU serving can preempt batch work.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub priority_class_name: Option<String>,

    /// RuntimeClass of the pods (some clusters select the NVIDIA container runtime this way).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub runtime_class_name: Option<String>,

    /// User ID the container runs as (never root; default 1000). Group ID and fsGroup follow it,
    /// so the model cache volume is writable.
    #[serde(default = "default_run_as_user")]
    #[x_kube(validation = Rule::new("self >= 1 && self <= 2147483647").message("spec.pod.runAsUser must be a non-root user ID (1 or more)"))]
    pub run_as_user: i64,

    /// Size limit of the in-memory /dev/shm that vLLM's tensor-parallel workers share (default
    /// 8Gi). It counts against the pod's memory.
    #[serde(default = "default_shm_size_limit")]
    pub shm_size_limit: Quantity,

    /// Where downloaded weights are kept, mounted at /cache (HF_HOME=/cache/huggingface). Unset:
    /// an emptyDir, so every new replica downloads the model again; a ReadWriteMany (or
    /// ReadOnlyMany, pre-filled) PersistentVolumeClaim shares it between replicas and restarts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_cache: Option<ModelCache>,

    /// Extra labels on the pods (crossover's own selector labels cannot be overridden).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(length(max = 32))]
    pub labels: BTreeMap<String, String>,

    /// Extra annotations on the pods.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(length(max = 32))]
    pub annotations: BTreeMap<String, String>,
}

impl Default for PodSettings {
    fn default() -> Self {
        Self {
            resources: None,
            node_selector: BTreeMap::new(),
            tolerations: None,
            affinity: None,
            image_pull_secrets: Vec::new(),
            service_account_name: None,
            automount_service_account_token: false,
            priority_class_name: None,
            runtime_class_name: None,
            run_as_user: default_run_as_user(),
            shm_size_limit: default_shm_size_limit(),
            model_cache: None,
            labels: BTreeMap::new(),
            annotations: BTreeMap::new(),
        }
    }
}

fn default_run_as_user() -> i64 {
    1000
}
fn default_shm_size_limit() -> Quantity {
    Quantity("8Gi".to_string())
}

/// The volume that holds downloaded model weights.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.persistentVolumeClaim) != has(self.emptyDirSizeLimit)").message("spec.pod.modelCache sets exactly one of persistentVolumeClaim or emptyDirSizeLimit"))]
pub struct ModelCache {
    /// A PersistentVolumeClaim in the pool's namespace, shared by every replica.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub persistent_volume_claim: Option<String>,
    /// An emptyDir per replica with this size limit (the weights are downloaded on every start).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub empty_dir_size_limit: Option<Quantity>,
}

/// Per-replica capacity at the latency you want.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct CapacitySpec {
    /// Output (decode) tokens per second one replica sustains. When unset, crossover learns it from saturated replicas.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self == 0.0 || (self >= 0.001 && self <= 100000000.0)").message("spec.capacity.outputTokensPerSecond must be 0 (learn it) or between 0.001 and 100,000,000"))]
    pub output_tokens_per_second: Option<f64>,

    /// Input (prefill) tokens per second one replica sustains. Optional: without it prefill is not counted as work.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self == 0.0 || (self >= 0.001 && self <= 100000000.0)").message("spec.capacity.inputTokensPerSecond must be 0 (not counted) or between 0.001 and 100,000,000"))]
    pub input_tokens_per_second: Option<f64>,

    /// Highest share of capacity the pool is planned to run at, above 0 and at most 1 (0.7 keeps
    /// at least 30% headroom). Unset, crossover chooses the headroom itself from the traffic it
    /// has seen: enough for the demand expected over the next startup at
    /// spec.scaling.forecastQuantile.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self > 0.0 && self <= 1.0").message("spec.capacity.targetUtilization must be above 0 and at most 1 (0.7 means run at 70% of capacity)"))]
    pub target_utilization: Option<f64>,
}

/// The utilization judged against where a pool sets no target (the provisioning verdict and
/// `crossover plan`, which size on an average load): the headroom crossover's own plans leave on
/// bursty traffic, about a fifth of capacity (docs/simulation.md).
pub const DEFAULT_TARGET_UTILIZATION: f64 = 0.8;

impl CapacitySpec {
    /// `targetUtilization`, or [`DEFAULT_TARGET_UTILIZATION`] when unset or out of range.
    pub fn target_or_default(&self) -> f64 {
        self.target_utilization
            .filter(|t| t.is_finite() && *t > 0.0 && *t <= 1.0)
            .unwrap_or(DEFAULT_TARGET_UTILIZATION)
    }
}

/// Who decides the replica count.
#[derive(
    schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default,
)]
pub enum ScalingMode {
    /// crossover sizes the pool from the load vLLM reports.
    #[default]
    Auto,
    /// An HPA, KEDA or `kubectl scale` writes `.spec.replicas` through the scale subresource.
    External,
}

/// How the pool is sized.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ScalingSpec {
    /// Auto: crossover sizes the pool. External: HPA, KEDA or kubectl drive `.spec.replicas`.
    #[serde(default)]
    pub mode: ScalingMode,

    /// Where load is read from.
    #[serde(default)]
    pub metrics: MetricsSpec,

    /// Seconds between two readings of the load.
    #[serde(default = "default_interval_seconds")]
    #[schemars(range(min = 1, max = 3600))]
    pub interval_seconds: i32,

    /// Scale up to the lowest recommendation of this many trailing seconds (0: at once).
    #[serde(default = "default_scale_up_window")]
    #[schemars(range(min = 0, max = 3600))]
    pub scale_up_stabilization_seconds: i32,

    /// When set, scale down only to the highest recommendation of this many trailing seconds, on
    /// top of the release rule (a window over 32 intervals is read from the demand history, and
    /// may hold up to one of its buckets longer). Unset (the default), crossover releases a
    /// replica once the demand expected over the next startup no longer needs it: the idle time
    /// it expects before the replica is needed again is longer than a restart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 86400))]
    pub scale_down_stabilization_seconds: Option<i32>,

    /// Load is the mean of the readings of this many trailing seconds (0: the latest reading
    /// alone): bursts shorter than this are left to the queue rather than met with replicas.
    #[serde(default = "default_load_window")]
    #[schemars(range(min = 0, max = 3600))]
    pub load_window_seconds: i32,

    /// The quantile of the demand the pool is planned for over the next startup (0.5 to 0.999):
    /// a replica is kept, or started ahead of time, while the traffic seen says it is needed
    /// within one startup (plus an interval) at least 1 - forecastQuantile of the time. Higher
    /// is safer and costs more.
    #[serde(default = "default_forecast_quantile")]
    #[x_kube(validation = Rule::new("self >= 0.5 && self <= 0.999").message("spec.scaling.forecastQuantile must be between 0.5 and 0.999"))]
    pub forecast_quantile: f64,

    /// Most replicas added in one step (unset: no limit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 10000))]
    pub max_scale_up_step: Option<i32>,

    /// Most replicas removed in one step (unset: no limit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 10000))]
    pub max_scale_down_step: Option<i32>,

    /// Seconds a replica takes from being requested to serving (model download and load): the
    /// horizon the policy plans over. Replicas still loading count as capacity on its way.
    #[serde(default = "default_startup_seconds")]
    #[schemars(range(min = 0, max = 7200))]
    pub startup_seconds: i32,

    /// Signals that the pool is saturated whatever the token rate says.
    #[serde(default)]
    pub saturation: SaturationSpec,
}

impl Default for ScalingSpec {
    fn default() -> Self {
        Self {
            mode: ScalingMode::Auto,
            metrics: MetricsSpec::default(),
            interval_seconds: default_interval_seconds(),
            scale_up_stabilization_seconds: default_scale_up_window(),
            scale_down_stabilization_seconds: None,
            load_window_seconds: default_load_window(),
            forecast_quantile: default_forecast_quantile(),
            max_scale_up_step: None,
            max_scale_down_step: None,
            startup_seconds: default_startup_seconds(),
            saturation: SaturationSpec::default(),
        }
    }
}

fn default_interval_seconds() -> i32 {
    15
}
fn default_scale_up_window() -> i32 {
    0
}
fn default_load_window() -> i32 {
    60
}
fn default_forecast_quantile() -> f64 {
    0.95
}
fn default_startup_seconds() -> i32 {
    180
}

/// When the pool counts as saturated even if the token rate looks fine.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SaturationSpec {
    /// Requests waiting in vLLM's queue for this many seconds in a row mean saturation.
    #[serde(default = "default_queue_seconds")]
    #[schemars(range(min = 0, max = 3600))]
    pub queue_sustained_seconds: i32,

    /// KV-cache use (0 to 1) above which the pool is saturated.
    #[serde(default = "default_kv_threshold")]
    #[x_kube(validation = Rule::new("self > 0.0 && self <= 1.0").message("spec.scaling.saturation.kvCacheThreshold must be above 0 and at most 1"))]
    pub kv_cache_threshold: f64,

    /// Time-to-first-token p90 above this many seconds means saturation (unset: no latency SLO).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self > 0.0").message("spec.scaling.saturation.ttftP90SloSeconds must be above 0"))]
    pub ttft_p90_slo_seconds: Option<f64>,
}

impl Default for SaturationSpec {
    fn default() -> Self {
        Self {
            queue_sustained_seconds: default_queue_seconds(),
            kv_cache_threshold: default_kv_threshold(),
            ttft_p90_slo_seconds: None,
        }
    }
}

fn default_queue_seconds() -> i32 {
    30
}
fn default_kv_threshold() -> f64 {
    0.9
}

/// Where load is read from.
#[derive(
    schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default,
)]
pub enum MetricsSource {
    /// The operator fetches /metrics from each Ready pod of the pool.
    #[default]
    Scrape,
    /// PromQL over a Prometheus server's HTTP API.
    Prometheus,
}

/// Where load is read from.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.source != 'Prometheus' || has(self.prometheus)").message("spec.scaling.metrics.prometheus (url or sourceRef) is required when source is Prometheus"))]
pub struct MetricsSpec {
    /// Scrape (default) reads each pod's /metrics; Prometheus queries a server.
    #[serde(default)]
    pub source: MetricsSource,

    /// The Prometheus server, when `source` is Prometheus.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prometheus: Option<PrometheusSpec>,
}

/// The message that refuses the removed per-pool token.
pub const BEARER_TOKEN_SECRET_REMOVED: &str = "spec.scaling.metrics.prometheus.bearerTokenSecret is no longer accepted (a pool could send any Secret of its namespace to any URL): a cluster administrator defines a PrometheusSource with the URL and token, and the pool names it in spec.scaling.metrics.prometheus.sourceRef";

/// A Prometheus server to query: an administrator's `PrometheusSource` by name, or a plain URL
/// that gets no credentials.
///
/// Series count for a pod only when their `instance` label is the pod's IP and their `namespace`
/// and `pod` labels (when present) agree; the targets must be scraped with `honor_labels: false`
/// for that to mean anything (see docs/SECURITY.md).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.url) != has(self.sourceRef)").message("spec.scaling.metrics.prometheus needs exactly one of url (no credentials) or sourceRef (a PrometheusSource an administrator defined)"))]
#[x_kube(validation = Rule::new("!has(self.bearerTokenSecret)").message(BEARER_TOKEN_SECRET_REMOVED))]
pub struct PrometheusSpec {
    /// Base URL of a Prometheus HTTP API that needs no credentials, such as
    /// http://prometheus.monitoring:9090. Servers that need a token or a private CA are defined by
    /// an administrator as a PrometheusSource and named in sourceRef.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2048))]
    #[x_kube(validation = Rule::new("self.startsWith('http://') || self.startsWith('https://')").message("spec.scaling.metrics.prometheus.url must start with http:// or https://"))]
    #[x_kube(validation = Rule::new("!self.matches('^https?://[^/?#]*@')").message("spec.scaling.metrics.prometheus.url must not carry credentials (user:password@): ask an administrator for a PrometheusSource"))]
    pub url: Option<String>,

    /// A cluster-scoped PrometheusSource, defined by an administrator, with the URL, CA and token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_ref: Option<SourceRef>,

    /// PromQL label matchers added to every query, such as job="vllm" or cluster="east", to keep
    /// other scrape jobs or clusters out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    #[x_kube(validation = Rule::new(crate::api::source::SELECTOR_RULE).message("spec.scaling.metrics.prometheus.selector must be PromQL label matchers such as job=\"vllm\",cluster=~\"east|west\""))]
    pub selector: Option<String>,

    /// Removed: refused with a message naming sourceRef. Kept in the schema only so that the API
    /// server says so instead of silently dropping the field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "removed_field_schema")]
    pub bearer_token_secret: Option<serde_json::Value>,
}

fn removed_field_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
    let _ = generator;
    schemars::json_schema!({
        "description": "Removed: use sourceRef.",
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true
    })
}

/// A PrometheusSource by name.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct SourceRef {
    /// The PrometheusSource's name.
    #[schemars(length(max = 253))]
    pub name: String,
}

/// What the pool costs.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.replicaHourlyUsd) != has(self.replicaMonthlyUsd)").message("set exactly one of spec.cost.replicaHourlyUsd (cloud, per hour) or spec.cost.replicaMonthlyUsd (rented machine, per month)"))]
pub struct CostSpec {
    /// US dollars per hour for one replica (all its GPUs), as a cloud bills it. A month is 730 hours.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self >= 0.0 && self <= 10000.0").message("spec.cost.replicaHourlyUsd must be between 0 and 10,000 (US dollars per replica-hour)"))]
    pub replica_hourly_usd: Option<f64>,

    /// US dollars per month for one replica's machine, as a bare-metal rental bills it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self >= 0.0 && self <= 10000000.0").message("spec.cost.replicaMonthlyUsd must be between 0 and 10,000,000 (US dollars per replica-month)"))]
    pub replica_monthly_usd: Option<f64>,

    /// Fixed monthly costs on top of the hardware: engineering time, observability, tooling, amortised setup.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 50))]
    pub overheads: Vec<Overhead>,

    /// Trailing window, in seconds, that the run-rate projects to a month (default one hour).
    #[serde(default = "default_run_rate_window")]
    #[schemars(range(min = 60, max = 2678400))]
    pub run_rate_window_seconds: i32,
}

fn default_run_rate_window() -> i32 {
    3600
}

/// A fixed monthly cost of running the pool.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Overhead {
    /// What the money pays for, such as "engineering (0.1 FTE)".
    #[schemars(length(max = 256))]
    pub name: String,
    /// US dollars per month.
    #[x_kube(validation = Rule::new("self >= 0.0 && self <= 10000000.0").message("spec.cost.overheads[].monthlyUsd must be between 0 and 10,000,000"))]
    pub monthly_usd: f64,
}

/// The hosted API the pool is compared with.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CompareTo {
    /// The API model, such as gpt-5. Prices come from crossover's built-in catalog unless given below.
    #[schemars(length(max = 256))]
    pub model: String,

    /// US dollars per 1M input tokens; overrides the catalog.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self >= 0.0 && self <= 10000.0").message("spec.compareTo.inputUsdPerMillionTokens must be between 0 and 10,000"))]
    pub input_usd_per_million_tokens: Option<f64>,

    /// US dollars per 1M output tokens; overrides the catalog.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self >= 0.0 && self <= 10000.0").message("spec.compareTo.outputUsdPerMillionTokens must be between 0 and 10,000"))]
    pub output_usd_per_million_tokens: Option<f64>,

    /// false when data must stay in-house: the API is then no option, whatever it costs.
    #[serde(default = "default_true")]
    pub allowed: bool,
}

fn default_true() -> bool {
    true
}

// ---------------------------------------------------------------------------------------------
// Status
// ---------------------------------------------------------------------------------------------

/// What crossover observed and decided for the pool. Written only by the operator.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct InferencePoolStatus {
    /// The spec generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// Replicas provisioned (requested and billing, ready or not).
    #[serde(default)]
    pub replicas: i32,

    /// Replicas serving traffic.
    #[serde(default)]
    pub ready_replicas: i32,

    /// Replicas the sizing policy (or the External scaler) wants.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desired_replicas: Option<i32>,

    /// Label selector of the pool's pods, for the scale subresource (HPA, KEDA).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,

    /// The Service in front of the pool (the pool's name, made a valid Service name when it has
    /// dots or starts with a digit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_name: Option<String>,

    /// When crossover last changed the replica count.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_scale_time: Option<Time>,

    /// Load observed over the last interval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load: Option<LoadStatus>,

    /// Sizing state that must survive an operator restart: recent recommendations and saturation timers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sizing: Option<SizingStatus>,

    /// The pool's cost against the hosted API.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost: Option<CostStatus>,

    /// Whether the pool is the right size for its load, with the numbers behind the verdict.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provisioning: Option<ProvisioningStatus>,

    /// Ready, MetricsAvailable, ScalingLimited, CostEffective: one entry per type (a map keyed by `type`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,

    /// The printer columns, formatted for people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display: Option<DisplayStatus>,
}

/// Load the pool served over the last interval, summed over its pods and engines.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LoadStatus {
    /// Prompt (prefill) tokens per second.
    pub input_tokens_per_second: f64,
    /// Generated (decode) tokens per second.
    pub output_tokens_per_second: f64,
    /// Finished requests per second.
    pub requests_per_second: f64,
    /// Requests in vLLM's running batches.
    pub requests_running: f64,
    /// Requests queued in vLLM.
    pub requests_waiting: f64,
    /// Highest KV-cache use of any pod, 0 to 1.
    pub kv_cache_usage: f64,
    /// Work as a share of the ready replicas' capacity (1.0 = full).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub utilization: Option<f64>,
    /// Time to first token, median over the interval, seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttft_p50_seconds: Option<f64>,
    /// Time to first token, 90th percentile over the interval, seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttft_p90_seconds: Option<f64>,
    /// Mean generated tokens per finished request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mean_output_tokens_per_request: Option<f64>,
    /// Pods whose metrics were read / pods expected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pods_observed: Option<String>,
    /// When the reading was taken.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_at: Option<Time>,
    /// Output tokens/s one replica achieved while saturated, smoothed (learned capacity).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub learned_output_tokens_per_second: Option<f64>,
    /// Input tokens/s one replica achieved while saturated, smoothed (learned capacity).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub learned_input_tokens_per_second: Option<f64>,
    /// Each pod's token counters at the last reading counted into the month-to-date, so a
    /// restarted or newly elected operator counts the exact increments across its own gap. At
    /// most 64 pods (by name); a larger pool's other pods resume one interval later.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub baselines: Vec<CounterBaseline>,
}

/// One pod's token counters as of one sample, summed over its series.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CounterBaseline {
    /// The pod's name.
    pub pod: String,
    /// When the sample was taken (Prometheus: the sample's own time), Unix milliseconds.
    pub sampled_at_unix_ms: i64,
    /// The vLLM process's start time when it exposes `process_start_time_seconds`: a different
    /// value later proves a restart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub process_start_unix_seconds: Option<f64>,
    /// `vllm:prompt_tokens_total`, summed over series.
    pub input_tokens: f64,
    /// `vllm:generation_tokens_total`, summed over series.
    pub output_tokens: f64,
}

/// One recent reading and the recommendation made on it, kept for the load window, the queue's
/// growth and the stabilization windows.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Recommendation {
    /// When it was made.
    pub time: Time,
    /// Replicas recommended.
    pub replicas: i32,
    /// Work that arrived over the interval before the reading (served, plus the queue's growth), in
    /// replicas at full capacity; averaged over
    /// `spec.scaling.loadWindowSeconds` before sizing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub work_replicas: Option<f64>,
    /// Requests waiting at the reading: the next reading counts the queue's growth as work that
    /// arrived but could not be served.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests_waiting: Option<f64>,
    /// Readings merged into this entry (1 unless readings came faster than the windows need
    /// them): `workReplicas` is their mean, `replicas` their lowest, `time` the latest's.
    #[serde(default = "one_reading", skip_serializing_if = "is_one_reading")]
    pub readings: u32,
}

fn one_reading() -> u32 {
    1
}
fn is_one_reading(n: &u32) -> bool {
    *n == 1
}

/// The demand the forecast learns from, downsampled to fixed buckets: bounded whatever the
/// interval, and kept in status so a restarted operator forecasts as well as before.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DemandHistory {
    /// Seconds each bucket covers.
    pub bucket_seconds: i32,
    /// Start of the newest bucket.
    pub newest: Time,
    /// Highest demand of each bucket (work over spec.scaling.loadWindowSeconds, in replicas at
    /// full capacity, rounded up to two decimals), oldest first; null where no complete reading
    /// fell.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub peak_work_replicas: Vec<Option<f64>>,
    /// Highest replica count recommended in each bucket, oldest first: scale-down windows longer
    /// than the recent readings read their maximum from here.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub max_replicas: Vec<i32>,
}

/// Sizing state kept in status so a restarted or newly elected operator continues where it was.
/// Its size is bounded for every setting the schema allows (`crate::sizing::MAX_RECENT` readings,
/// `crate::sizing::HISTORY_BUCKETS` buckets).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SizingStatus {
    /// The latest readings and their recommendations, oldest first (at most 64).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub recommendations: Vec<Recommendation>,
    /// Demand history the forecast learns recurring bursts from (at most 480 buckets).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub history: Option<DemandHistory>,
    /// Since when requests have been waiting without a break (unset: queue empty at the last reading).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue_since: Option<Time>,
    /// Since when utilization has stayed below the over-provisioning threshold.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub low_utilization_since: Option<Time>,
    /// Since when no tokens at all were served.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_since: Option<Time>,
}

/// Which option is cheaper for the observed load.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, schemars::JsonSchema)]
pub enum Cheaper {
    /// The pool costs less than the API bill for the same tokens.
    SelfHosted,
    /// The API bill would be smaller than the pool's cost.
    #[serde(rename = "API")]
    Api,
    /// The API is not allowed (data residency): the pool is required whatever it costs.
    SelfHostRequired,
    /// Not enough data yet.
    Unknown,
}

/// The pool's money, at the current run-rate and month to date.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CostStatus {
    /// Pool cost per month at the current run-rate (provisioned replicas plus overheads), USD.
    pub pool_monthly_usd: f64,
    /// The same tokens on the hosted API, per month at the current run-rate, USD.
    pub api_monthly_usd: f64,
    /// Which is cheaper.
    pub cheaper: Cheaper,
    /// How many times cheaper the cheaper option is (>= 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ratio: Option<f64>,
    /// Input tokens per month at which the API bill equals the pool's cost, at the observed output/input ratio.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub break_even_input_tokens_per_month: Option<f64>,
    /// Input tokens per month at the current run-rate.
    pub input_tokens_per_month: f64,
    /// Output tokens per month at the current run-rate.
    pub output_tokens_per_month: f64,
    /// What the pool costs per 1M tokens (input and output together), USD.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool_usd_per_million_tokens: Option<f64>,
    /// Capacity paid for and not used, per month, USD.
    pub idle_monthly_usd: f64,
    /// The API model priced against.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_model: Option<String>,
    /// API price used, USD per 1M input tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_input_usd_per_million_tokens: Option<f64>,
    /// API price used, USD per 1M output tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_output_usd_per_million_tokens: Option<f64>,
    /// Where the API prices came from (spec, or the catalog entry and its date).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub price_source: Option<String>,
    /// Totals for the current calendar month (UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub month_to_date: Option<MonthToDate>,
    /// Seconds of observations the run-rate averages, up to spec.cost.runRateWindowSeconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_rate_seconds: Option<f64>,
    /// Replicas billed at monthToDate.accountedUntil (pods scheduled onto a node, holding their
    /// GPUs): what poolMonthlyUsd prices, and how the next accrual knows how many went away since.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub billed_replicas: Option<i32>,
    /// The last calendar month's final totals, kept when a new month starts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_month: Option<MonthToDate>,
}

/// Actual totals accumulated over a calendar month (UTC). Stored in status so a restart loses nothing.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MonthToDate {
    /// The month, as YYYY-MM.
    pub period: String,
    /// Everything up to this instant is counted; the next interval starts here.
    pub accounted_until: Time,
    /// Input tokens served.
    pub input_tokens: f64,
    /// Output tokens served.
    pub output_tokens: f64,
    /// Replica-hours provisioned.
    pub replica_hours: f64,
    /// Pool dollars: replica-hours at the hourly or monthly price, plus overheads pro rata.
    pub pool_usd: f64,
    /// API-equivalent dollars for the same tokens.
    pub api_usd: f64,
    /// Seconds of serving whose tokens no counter increment covers (a pod gone or restarted
    /// between readings, an operator outage longer than the pods): not extrapolated into tokens.
    #[serde(default)]
    pub unaccounted_seconds: f64,
}

/// The provisioning verdict.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, schemars::JsonSchema)]
pub enum Verdict {
    /// Capacity matches the load.
    RightSized,
    /// More capacity than the load needs, held by the floor or the hardware.
    OverProvisioned,
    /// Saturated at maxReplicas, or queue or latency SLO breached for a sustained window.
    UnderProvisioned,
    /// No traffic for the window.
    Idle,
    /// No metrics to judge by.
    Unknown,
}

/// Whether the pool is the right size, and why.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProvisioningStatus {
    /// The verdict.
    pub verdict: Verdict,
    /// The numbers behind it.
    pub message: String,
    /// Since when the verdict holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<Time>,
    /// A different verdict the readings point to that has not yet held for its window (debounce).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_verdict: Option<Verdict>,
    /// Since when the readings have pointed to the pending verdict without a break.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_since: Option<Time>,
}

/// Printer-column values, formatted for people ("$2,750", "34%", "self-host 4.5x").
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DisplayStatus {
    /// Ready / provisioned replicas, like "2/3".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready: Option<String>,
    /// Utilization as a percentage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub utilization: Option<String>,
    /// Pool cost per month.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool_monthly: Option<String>,
    /// API bill per month.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_monthly: Option<String>,
    /// Which is cheaper and by how much.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cheaper: Option<String>,
}
