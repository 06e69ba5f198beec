//! Pure status assembly: conditions that keep their transition time while unchanged, and the
//! replica counts read from the Deployment. The reconciler writes the result only when it differs
//! from what is stored.

use chrono::{DateTime, Utc};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;

use crate::api::{DisplayStatus, InferencePoolStatus};

pub const READY: &str = "Ready";
pub const METRICS_AVAILABLE: &str = "MetricsAvailable";
pub const SCALING_LIMITED: &str = "ScalingLimited";
pub const COST_EFFECTIVE: &str = "CostEffective";

/// A condition as the reconciler decides it; timestamps are filled in by [`set_condition`].
#[derive(Debug, Clone, PartialEq)]
pub struct ConditionUpdate {
    pub type_: &'static str,
    pub status: bool,
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
        Self {
            type_,
            status,
            reason: reason.to_string(),
            message: message.into(),
        }
    }
}

/// Upserts a condition. The transition time moves only when the status flips, so an unchanged
/// condition leaves the status byte-identical and no write is needed.
pub fn set_condition(
    conditions: &mut Vec<Condition>,
    update: ConditionUpdate,
    generation: Option<i64>,
    now: DateTime<Utc>,
) {
    let status = if update.status { "True" } else { "False" }.to_string();
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

/// The Ready condition from replica counts: ready when every wanted replica serves.
pub fn ready_condition(desired: i32, ready: i32) -> ConditionUpdate {
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
        assert!(!ready_condition(2, 0).status);
        assert_eq!(ready_condition(2, 1).reason, "PartiallyReady");
        assert_eq!(ready_condition(2, 2).message, "2/2 replicas ready");
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
