//! What the watch caches keep of each object. At a thousand pools the caches are most of the
//! operator's memory, and most of each object is never read: managed fields, the pod spec, the
//! Deployment's pod template. Each function below keeps exactly the fields the controller reads
//! (its tests run the readers on a full and a trimmed object and compare), so a reader of a new
//! field must add it here.
//!
//! [`Applied`] remembers what was last applied to each child, so that an apply that would change
//! nothing is not sent: at a thousand pools, two no-op server-side applies per pool per interval
//! were most of the operator's API traffic.

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::core::v1::{ContainerStatus, Pod, PodCondition, PodSpec, PodStatus, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::core::{DeserializeGuard, PartialObjectMeta};

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Mutex;

use crate::api::InferencePool;

/// The annotation `kubectl apply` stores a whole copy of the object in.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Identity, labels and lifecycle; owner references and annotations only where asked for.
fn trim_meta(meta: ObjectMeta, owners: bool, annotations: bool) -> ObjectMeta {
    ObjectMeta {
        name: meta.name,
        namespace: meta.namespace,
        uid: meta.uid,
        resource_version: meta.resource_version,
        generation: meta.generation,
        creation_timestamp: meta.creation_timestamp,
        deletion_timestamp: meta.deletion_timestamp,
        labels: meta.labels,
        owner_references: if owners { meta.owner_references } else { None },
        annotations: if annotations {
            meta.annotations.map(|mut a| {
                a.remove(LAST_APPLIED);
                a
            })
        } else {
            None
        },
        ..ObjectMeta::default()
    }
}

/// A pool keeps everything but its managed fields, kubectl's copy of itself and its status:
/// the newest status is kept once, by the reconciler (`checkpoint::Statuses`).
pub fn trim_pool(pool: &mut DeserializeGuard<InferencePool>) {
    let meta = match &mut pool.0 {
        Ok(p) => {
            p.status = None;
            &mut p.metadata
        }
        Err(invalid) => &mut invalid.metadata,
    };
    *meta = trim_meta(std::mem::take(meta), true, true);
}

/// A pod keeps what scraping (Ready, IP), billing (node, phase, scheduled time) and the start-up
/// diagnosis (conditions' reasons, containers' waiting states) read.
pub fn trim_pod(pod: &mut Pod) {
    pod.metadata = trim_meta(std::mem::take(&mut pod.metadata), false, false);
    pod.spec = pod.spec.take().map(|s| PodSpec {
        node_name: s.node_name,
        ..PodSpec::default()
    });
    pod.status = pod.status.take().map(|s| PodStatus {
        phase: s.phase,
        pod_ip: s.pod_ip,
        start_time: s.start_time,
        conditions: s.conditions.map(|cs| {
            cs.into_iter()
                .map(|c| PodCondition {
                    type_: c.type_,
                    status: c.status,
                    reason: c.reason,
                    message: c.message,
                    last_transition_time: c.last_transition_time,
                    ..PodCondition::default()
                })
                .collect()
        }),
        container_statuses: s.container_statuses.map(|cs| {
            cs.into_iter()
                .map(|c| ContainerStatus {
                    name: c.name,
                    ready: c.ready,
                    restart_count: c.restart_count,
                    started: c.started,
                    state: c.state,
                    ..ContainerStatus::default()
                })
                .collect()
        }),
        ..PodStatus::default()
    });
}

/// A Deployment keeps its owner (the ownership check), its replicas and its whole status; the pod
/// template, the bulk of it, is never read back: the apply sends the whole desired object.
pub fn trim_deployment(d: &mut Deployment) {
    d.metadata = trim_meta(std::mem::take(&mut d.metadata), true, false);
    d.spec = d.spec.take().map(|s| DeploymentSpec {
        replicas: s.replicas,
        selector: s.selector,
        ..DeploymentSpec::default()
    });
}

/// A Service is cached as metadata only; it keeps its owner for the ownership check.
pub fn trim_service(s: &mut PartialObjectMeta<Service>) {
    s.metadata = trim_meta(std::mem::take(&mut s.metadata), true, false);
}

/// A pool's child: namespace, pool name, kind.
type ChildKey = (String, String, &'static str);

/// What this process last applied to each child (a digest of the object sent) and the
/// resourceVersion the API server answered with. While the cache shows that very version (nobody
/// has written the child since) and the object to apply is the same, the apply is skipped: it
/// would change nothing. Any other writer (kubectl scale, an edit, the Deployment controller's
/// status) moves the version and the next reconcile applies again; so does a new process.
#[derive(Default)]
pub struct Applied(Mutex<HashMap<ChildKey, (u64, String)>>);

impl Applied {
    fn key(namespace: &str, pool: &str, kind: &'static str) -> ChildKey {
        (namespace.to_string(), pool.to_string(), kind)
    }

    fn digest(body: &serde_json::Value) -> u64 {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        body.to_string().hash(&mut h);
        h.finish()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ChildKey, (u64, String)>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether applying `body` to the child the cache shows at `seen_version` would change nothing.
    pub fn unchanged(
        &self,
        namespace: &str,
        pool: &str,
        kind: &'static str,
        body: &serde_json::Value,
        seen_version: Option<&str>,
    ) -> bool {
        let Some(seen) = seen_version else {
            return false;
        };
        self.lock()
            .get(&Self::key(namespace, pool, kind))
            .is_some_and(|(digest, version)| *digest == Self::digest(body) && version == seen)
    }

    /// Records a successful apply of `body`, answered at `version`.
    pub fn record(
        &self,
        namespace: &str,
        pool: &str,
        kind: &'static str,
        body: &serde_json::Value,
        version: Option<String>,
    ) {
        let key = Self::key(namespace, pool, kind);
        match version {
            Some(v) => {
                self.lock().insert(key, (Self::digest(body), v));
            }
            None => {
                self.lock().remove(&key);
            }
        }
    }

    /// Forgets a pool that no longer exists.
    pub fn forget(&self, namespace: &str, pool: &str) {
        self.lock()
            .retain(|(ns, name, _), _| !(ns == namespace && name == pool));
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::{build, observe, status};
    use chrono::{DateTime, Utc};
    use kube::runtime::reflector;
    use kube::runtime::watcher;

    fn pool() -> InferencePool {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "crossover.dev/v1alpha1", "kind": "InferencePool",
            "metadata": {"name": "p", "namespace": "ns", "uid": "pool-uid"},
            "spec": {"model": "m", "maxReplicas": 3, "cost": {"replicaHourlyUsd": 1.0}}
        }))
        .unwrap()
    }

    /// A pod of the pool's Deployment as kwok and the kubelet report it, with everything the API
    /// server adds.
    fn pod(name: &str, ready: bool, waiting: Option<&str>) -> Pod {
        let template = build::deployment(&pool(), 1)
            .unwrap()
            .spec
            .unwrap()
            .template;
        let mut pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {
                "name": name, "namespace": "ns", "uid": format!("uid-{name}"),
                "resourceVersion": "42", "creationTimestamp": "2026-12-01T10:00:00Z",
                "labels": {"crossover.dev/pool": "p", "pod-template-hash": "abc"},
                "annotations": {"prometheus.io/scrape": "true"},
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "p-abc", "uid": "rs", "controller": true}],
                "managedFields": [{"manager": "kube-controller-manager", "operation": "Update", "apiVersion": "v1", "fieldsType": "FieldsV1", "fieldsV1": {"f:metadata": {}}}]
            },
            "spec": {
                "nodeName": "gpu-node-0",
                "containers": [{"name": "vllm", "image": "vllm/vllm-openai:v0.33.0", "args": ["serve", "m"],
                                "resources": {"limits": {"nvidia.com/gpu": "1"}}}],
                "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists"}]
            },
            "status": {
                "phase": "Running", "podIP": "127.5.0.9", "hostIP": "127.0.0.1",
                "startTime": "2026-12-01T10:00:01Z",
                "conditions": [
                    {"type": "PodScheduled", "status": "True", "lastTransitionTime": "2026-12-01T10:00:01Z"},
                    {"type": "Ready", "status": if ready { "True" } else { "False" }, "lastTransitionTime": "2026-12-01T10:00:05Z", "lastProbeTime": null}
                ],
                "containerStatuses": [{
                    "name": "vllm", "image": "vllm/vllm-openai:v0.33.0", "imageID": "sha256:0", "ready": ready,
                    "restartCount": 1, "started": ready, "containerID": "containerd://0",
                    "state": match waiting {
                        Some(r) => serde_json::json!({"waiting": {"reason": r, "message": "back-off pulling"}}),
                        None => serde_json::json!({"running": {"startedAt": "2026-12-01T10:00:02Z"}}),
                    }
                }]
            }
        }))
        .unwrap();
        let mut spec = template.spec.unwrap();
        spec.node_name = Some("gpu-node-0".into());
        pod.spec = Some(spec);
        pod
    }

    fn trimmed(p: &Pod) -> Pod {
        let mut t = p.clone();
        trim_pod(&mut t);
        t
    }

    #[test]
    fn a_trimmed_pod_reads_the_same_to_every_reader_and_is_much_smaller() {
        let full = vec![
            pod("a", true, None),
            pod("b", false, Some("ImagePullBackOff")),
            pod("c", false, None),
        ];
        let trim: Vec<Pod> = full.iter().map(trimmed).collect();
        let refs = |v: &[Pod]| -> Vec<Pod> { v.to_vec() };
        let (f, t) = (refs(&full), refs(&trim));
        let (fr, tr): (Vec<&Pod>, Vec<&Pod>) = (f.iter().collect(), t.iter().collect());
        let now: DateTime<Utc> = "2026-12-01T10:10:00Z".parse().unwrap();
        assert_eq!(status::provisioned_pods(&fr), status::provisioned_pods(&tr));
        assert_eq!(
            status::starting_replicas(&fr, now, 1800),
            status::starting_replicas(&tr, now, 1800)
        );
        assert_eq!(
            status::pod_problem(None, &fr),
            status::pod_problem(None, &tr)
        );
        assert!(status::pod_problem(None, &tr).is_some());
        let serving = |pods: &[Pod]| {
            let (store, mut writer) = reflector::store::<Pod>();
            for p in pods {
                writer.apply_watcher_event(&watcher::Event::Apply(p.clone()));
            }
            observe::serving_pods(&store, "ns", "p")
        };
        assert_eq!(serving(&full), serving(&trim));
        assert_eq!(
            serving(&trim),
            vec![("a".to_string(), "127.5.0.9".to_string())]
        );
        let size = |p: &Pod| serde_json::to_vec(p).unwrap().len();
        assert!(
            size(&trim[0]) * 3 < size(&full[0]),
            "{} of {} bytes kept",
            size(&trim[0]),
            size(&full[0])
        );
        assert!(trim[0].metadata.managed_fields.is_none());
    }

    #[test]
    fn a_trimmed_deployment_keeps_its_owner_replicas_and_status() {
        let pool = pool();
        let mut full = build::deployment(&pool, 3).unwrap();
        full.status = Some(
            serde_json::from_value(serde_json::json!({
                "replicas": 3, "readyReplicas": 2,
                "conditions": [{"type": "ReplicaFailure", "status": "True", "message": "quota"}]
            }))
            .unwrap(),
        );
        full.metadata.managed_fields = Some(vec![Default::default()]);
        let mut trim = full.clone();
        trim_deployment(&mut trim);
        assert_eq!(
            build::ownership(Some(&trim.metadata), &pool),
            build::ownership(Some(&full.metadata), &pool)
        );
        assert_eq!(
            build::ownership(Some(&trim.metadata), &pool),
            build::Ownership::Ours
        );
        assert_eq!(
            status::deployment_replicas(Some(&trim)),
            status::deployment_replicas(Some(&full))
        );
        assert_eq!(
            status::pod_problem(Some(&trim), &[]),
            status::pod_problem(Some(&full), &[])
        );
        assert_eq!(trim.spec.as_ref().unwrap().replicas, Some(3));
        assert!(trim.spec.unwrap().template.spec.is_none());
        assert!(trim.metadata.managed_fields.is_none());
    }

    #[test]
    fn an_apply_is_skipped_only_while_nothing_has_changed_on_either_side() {
        let applied = Applied::default();
        let body = serde_json::json!({"spec": {"replicas": 2}});
        // Never applied by this process: apply.
        assert!(!applied.unchanged("ns", "p", "Deployment", &body, Some("10")));
        applied.record("ns", "p", "Deployment", &body, Some("11".into()));
        // The cache shows the version our apply produced and we would send the same: skip.
        assert!(applied.unchanged("ns", "p", "Deployment", &body, Some("11")));
        // Someone wrote the object since (kubectl scale, its status): apply again.
        assert!(!applied.unchanged("ns", "p", "Deployment", &body, Some("12")));
        // We would send something else (a new replica count): apply.
        let scaled = serde_json::json!({"spec": {"replicas": 3}});
        assert!(!applied.unchanged("ns", "p", "Deployment", &scaled, Some("11")));
        // The cache has no object (deleted): apply.
        assert!(!applied.unchanged("ns", "p", "Deployment", &body, None));
        assert!(!applied.unchanged("ns", "p", "Service", &body, Some("11")));
        applied.record("ns", "p", "Service", &body, Some("5".into()));
        applied.record("ns", "q", "Service", &body, Some("5".into()));
        applied.forget("ns", "p");
        assert_eq!(applied.len(), 1);
    }

    #[test]
    fn a_trimmed_pool_loses_only_managed_fields_and_kubectls_copy() {
        let mut pool: DeserializeGuard<InferencePool> = serde_json::from_value(serde_json::json!({
            "apiVersion": "crossover.dev/v1alpha1", "kind": "InferencePool",
            "metadata": {"name": "p", "namespace": "ns", "uid": "u", "generation": 4,
                "annotations": {LAST_APPLIED: "{...}", "team": "ml"},
                "managedFields": [{"manager": "kubectl"}]},
            "spec": {"model": "m", "maxReplicas": 3, "cost": {"replicaHourlyUsd": 1.0}}
        }))
        .unwrap();
        let before = pool.0.as_ref().unwrap().spec.clone();
        trim_pool(&mut pool);
        let p = pool.0.as_ref().unwrap();
        assert_eq!(p.spec, before);
        assert_eq!(p.metadata.generation, Some(4));
        assert!(p.metadata.managed_fields.is_none());
        let ann = p.metadata.annotations.as_ref().unwrap();
        assert_eq!(ann.len(), 1);
        assert_eq!(ann["team"], "ml");
    }
}
