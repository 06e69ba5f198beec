//! Pure status assembly: conditions that keep their transition time while unchanged, the replica
//! counts read from the Deployment, and what the pool's pods say about billing and start-up. The
//! reconciler writes the result only when it differs from what is stored.

use chrono::{DateTime, Utc};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;

use crate::api::{DisplayStatus, InferencePoolStatus, from_time};
use crate::cost::ProvisionedPod;

pub const READY: &str = "Ready";
pub const METRICS_AVAILABLE: &str = "MetricsAvailable";
pub const SCALING_LIMITED: &str = "ScalingLimited";
pub const COST_EFFECTIVE: &str = "CostEffective";
/// Whether the last reconcile applied everything it decided (children and status).
pub const RECONCILED: &str = "Reconciled";

/// Longest condition message written: kubectl describe stays readable and a hostile or verbose
/// API error cannot bloat the status.
pub const MAX_MESSAGE_CHARS: usize = 1024;
/// True when the metrics source refreshes at least once per pool interval (Prometheus mode).
pub const SCRAPE_INTERVAL_ALIGNED: &str = "ScrapeIntervalAligned";

/// A condition as the reconciler decides it; timestamps are filled in by [`set_condition`].
#[derive(Debug, Clone, PartialEq)]
pub struct ConditionUpdate {
    pub type_: &'static str,
    /// "True", "False" or "Unknown".
    pub status: &'static str,
    pub reason: String,
    pub message: String,
}

impl ConditionUpdate {
    pub fn new(
        type_: &'static str,
        status: bool,
        reason: &str,
        message: impl Into<String>,
    ) -> Self {
        Self::with_status(
            type_,
            if status { "True" } else { "False" },
            reason,
            message,
        )
    }

    /// Neither true nor false yet: not enough data to say (metav1.Condition's Unknown).
    pub fn unknown(type_: &'static str, reason: &str, message: impl Into<String>) -> Self {
        Self::with_status(type_, "Unknown", reason, message)
    }

    fn with_status(
        type_: &'static str,
        status: &'static str,
        reason: &str,
        message: impl Into<String>,
    ) -> Self {
        Self {
            type_,
            status,
            reason: reason.to_string(),
            message: truncate(message.into(), MAX_MESSAGE_CHARS),
        }
    }

    pub fn is_true(&self) -> bool {
        self.status == "True"
    }
}

/// `text` cut to at most `max` characters on a character boundary, marked when cut.
pub fn truncate(text: String, max: usize) -> String {
    if text.chars().count() <= max {
        return text;
    }
    let mut cut: String = text.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

/// Upserts a condition. The transition time moves only when the status flips, so an unchanged
/// condition leaves the status byte-identical and no write is needed.
pub fn set_condition(
    conditions: &mut Vec<Condition>,
    update: ConditionUpdate,
    generation: Option<i64>,
    now: DateTime<Utc>,
) {
    let status = update.status.to_string();
    let existing = conditions.iter().position(|c| c.type_ == update.type_);
    let last_transition_time = match existing.map(|i| &conditions[i]) {
        Some(c) if c.status == status => c.last_transition_time.clone(),
        _ => crate::api::to_time(now),
    };
    let cond = Condition {
        type_: update.type_.to_string(),
        status,
        reason: update.reason,
        message: update.message,
        observed_generation: generation,
        last_transition_time,
    };
    match existing {
        Some(i) => conditions[i] = cond,
        None => conditions.push(cond),
    }
}

/// Provisioned and ready replicas as the Deployment reports them (0 before it exists).
pub fn deployment_replicas(deployment: Option<&Deployment>) -> (i32, i32) {
    let status = deployment.and_then(|d| d.status.as_ref());
    (
        status.and_then(|s| s.replicas).unwrap_or(0),
        status.and_then(|s| s.ready_replicas).unwrap_or(0),
    )
}

/// The Ready condition from replica counts: ready when every wanted replica serves. `problem` is
/// why pods cannot start (see [`pod_problem`]), which beats "loading" when nothing serves.
pub fn ready_condition(desired: i32, ready: i32, problem: Option<&Problem>) -> ConditionUpdate {
    if let Some(p) = problem.filter(|_| ready < desired) {
        return ConditionUpdate::new(
            READY,
            ready > 0,
            p.reason,
            format!("{ready}/{desired} replicas ready; {}", p.message),
        );
    }
    if desired == 0 {
        ConditionUpdate::new(
            READY,
            true,
            "ScaledToZero",
            "the pool is scaled to zero replicas",
        )
    } else if ready >= desired {
        ConditionUpdate::new(
            READY,
            true,
            "AllReplicasReady",
            format!("{ready}/{desired} replicas ready"),
        )
    } else if ready > 0 {
        ConditionUpdate::new(
            READY,
            true,
            "PartiallyReady",
            format!("{ready}/{desired} replicas ready; the rest are starting"),
        )
    } else {
        ConditionUpdate::new(
            READY,
            false,
            "ReplicasStarting",
            format!("0/{desired} replicas ready; vLLM is loading the model"),
        )
    }
}

/// Why the pool's pods cannot start, from the Deployment's conditions and the pods themselves.
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    pub reason: &'static str,
    pub message: String,
}

/// The first reason the pool's replicas cannot come up, if any: the ReplicaSet cannot create pods
/// (admission refused them: Pod Security, quota, a webhook), the rollout passed its deadline, a pod
/// cannot be scheduled (no free GPU of the right product), or an image cannot be pulled.
pub fn pod_problem(deployment: Option<&Deployment>, pods: &[&Pod]) -> Option<Problem> {
    let conditions = deployment
        .and_then(|d| d.status.as_ref())
        .and_then(|s| s.conditions.as_ref());
    for c in conditions.into_iter().flatten() {
        let message = c.message.clone().unwrap_or_default();
        if c.type_ == "ReplicaFailure" && c.status == "True" {
            return Some(Problem {
                reason: "PodsRefused",
                message: format!("pods cannot be created: {message}"),
            });
        }
        if c.type_ == "Progressing"
            && c.status == "False"
            && c.reason.as_deref() == Some("ProgressDeadlineExceeded")
        {
            return Some(Problem {
                reason: "RolloutStuck",
                message: format!("the rollout passed its deadline: {message}"),
            });
        }
    }
    let unschedulable: Vec<&Pod> = pods
        .iter()
        .copied()
        .filter(|p| {
            pod_condition(p, "PodScheduled").is_some_and(|c| {
                c.status == "False" && c.reason.as_deref() == Some("Unschedulable")
            })
        })
        .collect();
    if let Some(first) = unschedulable.first() {
        let why = pod_condition(first, "PodScheduled")
            .and_then(|c| c.message.clone())
            .unwrap_or_default();
        return Some(Problem {
            reason: "Unschedulable",
            message: format!(
                "{} pod(s) cannot be scheduled (no node with a free GPU that matches?): {why}",
                unschedulable.len()
            ),
        });
    }
    for pod in pods {
        let statuses = pod
            .status
            .as_ref()
            .and_then(|s| s.container_statuses.as_ref());
        for cs in statuses.into_iter().flatten() {
            let Some(waiting) = cs.state.as_ref().and_then(|s| s.waiting.as_ref()) else {
                continue;
            };
            let reason = waiting.reason.as_deref().unwrap_or("");
            if matches!(
                reason,
                "ImagePullBackOff"
                    | "ErrImagePull"
                    | "InvalidImageName"
                    | "CreateContainerConfigError"
            ) || reason == "CrashLoopBackOff"
            {
                return Some(Problem {
                    reason: if reason == "CrashLoopBackOff" {
                        "CrashLoop"
                    } else {
                        "ContainerCannotStart"
                    },
                    message: format!(
                        "pod {} is {reason}: {}",
                        pod.metadata.name.as_deref().unwrap_or(""),
                        waiting.message.as_deref().unwrap_or("")
                    ),
                });
            }
        }
    }
    None
}

fn pod_condition<'a>(
    pod: &'a Pod,
    type_: &str,
) -> Option<&'a k8s_openapi::api::core::v1::PodCondition> {
    pod.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_)
}

/// The pods that hold GPUs for billing: bound to a node since they were scheduled, and not
/// finished. A Pending pod that got no node (no free GPU, quota) bills nothing.
pub fn provisioned_pods(pods: &[&Pod]) -> Vec<ProvisionedPod> {
    pods.iter()
        .filter_map(|p| {
            let spec = p.spec.as_ref()?;
            spec.node_name.as_ref()?;
            let phase = p.status.as_ref().and_then(|s| s.phase.as_deref());
            if matches!(phase, Some("Succeeded" | "Failed")) {
                return None;
            }
            let scheduled_at = pod_condition(p, "PodScheduled")
                .filter(|c| c.status == "True")
                .and_then(|c| c.last_transition_time.as_ref())
                .or(p.metadata.creation_timestamp.as_ref())
                .map(from_time)?;
            Some(ProvisionedPod {
                scheduled_at,
                ended_at: None,
            })
        })
        .collect()
}

/// Replicas on their way: pods scheduled (or waiting for a node) but not Ready yet, created less
/// than `budget_seconds` ago (the startup probe's budget). They count as capacity coming, so a long
/// model load does not add a replica every startup period.
pub fn starting_replicas(pods: &[&Pod], now: DateTime<Utc>, budget_seconds: i64) -> i32 {
    let n = pods
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter(|p| pod_condition(p, "Ready").is_none_or(|c| c.status != "True"))
        .filter(|p| {
            p.metadata
                .creation_timestamp
                .as_ref()
                .is_some_and(|t| (now - from_time(t)).num_seconds() < budget_seconds)
        })
        .count();
    i32::try_from(n).unwrap_or(i32::MAX)
}

/// The READY printer column: ready over provisioned.
pub fn display_ready(ready: i32, replicas: i32) -> String {
    format!("{ready}/{replicas}")
}

/// Fills the replica-related parts of a status, keeping everything else from `prev`.
pub fn with_replicas(
    prev: &InferencePoolStatus,
    generation: Option<i64>,
    selector: String,
    replicas: i32,
    ready: i32,
    desired: i32,
) -> InferencePoolStatus {
    let mut s = prev.clone();
    s.observed_generation = generation;
    s.selector = Some(selector);
    s.replicas = replicas;
    s.ready_replicas = ready;
    s.desired_replicas = Some(desired);
    let display = s.display.get_or_insert_with(DisplayStatus::default);
    display.ready = Some(display_ready(ready, replicas));
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + secs, 0).unwrap()
    }

    #[test]
    fn unchanged_condition_keeps_its_transition_time() {
        let mut c = Vec::new();
        set_condition(
            &mut c,
            ConditionUpdate::new(READY, false, "ReplicasStarting", "0/1"),
            Some(1),
            t(0),
        );
        set_condition(
            &mut c,
            ConditionUpdate::new(READY, false, "ReplicasStarting", "0/1 still"),
            Some(1),
            t(10),
        );
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].last_transition_time, crate::api::to_time(t(0)));
        assert_eq!(c[0].message, "0/1 still");
        set_condition(
            &mut c,
            ConditionUpdate::new(READY, true, "AllReplicasReady", "1/1"),
            Some(1),
            t(20),
        );
        assert_eq!(c[0].last_transition_time, crate::api::to_time(t(20)));
        assert_eq!(c[0].status, "True");
    }

    #[test]
    fn ready_condition_reads_like_kubectl_describe() {
        assert!(!ready_condition(2, 0, None).is_true());
        assert_eq!(ready_condition(2, 1, None).reason, "PartiallyReady");
        assert_eq!(ready_condition(2, 2, None).message, "2/2 replicas ready");
    }

    fn pod(json: serde_json::Value) -> Pod {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn pending_pods_without_a_node_bill_nothing() {
        let scheduled = pod(serde_json::json!({
            "metadata": {"name": "a", "creationTimestamp": "2026-12-01T10:00:00Z"},
            "spec": {"nodeName": "gpu-node-0", "containers": []},
            "status": {"phase": "Running", "conditions": [
                {"type": "PodScheduled", "status": "True", "lastTransitionTime": "2026-12-01T10:00:05Z"}
            ]}
        }));
        let pending = pod(serde_json::json!({
            "metadata": {"name": "b", "creationTimestamp": "2026-12-01T10:00:00Z"},
            "spec": {"containers": []},
            "status": {"phase": "Pending", "conditions": [
                {"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                 "message": "0/5 nodes are available: 4 Insufficient nvidia.com/gpu."}
            ]}
        }));
        let billed = provisioned_pods(&[&scheduled, &pending]);
        assert_eq!(billed.len(), 1);
        assert_eq!(
            billed[0].scheduled_at.to_rfc3339(),
            "2026-12-01T10:00:05+00:00"
        );
        let problem = pod_problem(None, &[&scheduled, &pending]).unwrap();
        assert_eq!(problem.reason, "Unschedulable");
        assert!(
            problem.message.contains("Insufficient nvidia.com/gpu"),
            "{}",
            problem.message
        );
        let ready = ready_condition(2, 1, Some(&problem));
        assert_eq!(ready.reason, "Unschedulable");
        assert!(ready.message.starts_with("1/2 replicas ready"));
    }

    #[test]
    fn pods_the_replica_set_cannot_create_are_named_as_the_reason() {
        let d: Deployment = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p"},
            "status": {"conditions": [{"type": "ReplicaFailure", "status": "True",
                "reason": "FailedCreate",
                "message": "pods \"p-1\" is forbidden: violates PodSecurity \"restricted:latest\""}]}
        }))
        .unwrap();
        let problem = pod_problem(Some(&d), &[]).unwrap();
        assert_eq!(problem.reason, "PodsRefused");
        assert!(problem.message.contains("violates PodSecurity"));
        assert!(!ready_condition(1, 0, Some(&problem)).is_true());
    }

    #[test]
    fn replicas_fill_the_ready_column() {
        let s = with_replicas(
            &InferencePoolStatus::default(),
            Some(3),
            "a=b".into(),
            3,
            2,
            4,
        );
        assert_eq!(s.display.unwrap().ready.as_deref(), Some("2/3"));
        assert_eq!(s.desired_replicas, Some(4));
        assert_eq!(s.observed_generation, Some(3));
    }
}
