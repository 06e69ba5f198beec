//! The start-up check that the installed InferencePool CRD is one this binary can write: present,
//! and stamped with a schema version at least this binary's. Against an older CRD the API server
//! silently prunes the status fields it does not declare (the sizing history, month-to-date money),
//! so the operator waits, not ready, and says why in /readyz, a log line and an Event.

use std::time::Duration;

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::core::DeserializeGuard;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::{Api, Client};
use tracing::{info, warn};

use crate::api::{CRD_SCHEMA_VERSION, InferencePool, SCHEMA_VERSION_ANNOTATION};
use crate::ops::Ops;

/// The CRD the operator needs.
pub const CRD_NAME: &str = "inferencepools.crossover.dev";

/// How often a waiting operator looks again.
const RETRY: Duration = Duration::from_secs(10);

/// Why the operator cannot run yet.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CrdProblem {
    #[error(
        "the CRD {CRD_NAME} is not installed: install the chart with crds.enabled=true, or `kubectl apply --server-side -f crds/`"
    )]
    Missing,
    #[error(
        "the CRD {CRD_NAME} has schema version {installed}, older than this operator's {expected}, and would drop status fields it does not declare: upgrade it with the chart (crds.enabled=true) or `kubectl apply --server-side -f crds/` from this release"
    )]
    TooOld { installed: u32, expected: u32 },
    #[error("cannot read the CRD {CRD_NAME}: {0}")]
    Unreadable(String),
    #[error("cannot list inferencepools.crossover.dev: {0}")]
    Unlistable(String),
}

impl CrdProblem {
    /// The Event reason; None for problems that are not the installation's (API server or RBAC
    /// hiccups), which only the log and /readyz report.
    fn event_reason(&self) -> Option<&'static str> {
        match self {
            CrdProblem::Missing => Some("CRDMissing"),
            CrdProblem::TooOld { .. } => Some("CRDOutdated"),
            CrdProblem::Unreadable(_) | CrdProblem::Unlistable(_) => None,
        }
    }
}

/// The schema version a CRD carries; 0 when it has none (CRDs from before the annotation).
pub fn installed_schema_version(crd: &CustomResourceDefinition) -> u32 {
    crd.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(SCHEMA_VERSION_ANNOTATION))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// Whether this binary may run against the installed CRD. A newer CRD is fine: it declares
/// everything this binary writes.
pub fn judge(installed: Option<&CustomResourceDefinition>) -> Result<(), CrdProblem> {
    let crd = installed.ok_or(CrdProblem::Missing)?;
    let installed = installed_schema_version(crd);
    if installed < CRD_SCHEMA_VERSION {
        return Err(CrdProblem::TooOld {
            installed,
            expected: CRD_SCHEMA_VERSION,
        });
    }
    Ok(())
}

/// One look: the CRD's version, then a list of pools (the API serves them and RBAC allows it).
async fn check(client: &Client, namespace: Option<&str>) -> Result<(), CrdProblem> {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let crd = crds
        .get_opt(CRD_NAME)
        .await
        .map_err(|e| CrdProblem::Unreadable(e.to_string()))?;
    judge(crd.as_ref())?;
    let pools: Api<DeserializeGuard<InferencePool>> = match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    pools
        .list(&kube::api::ListParams::default().limit(1))
        .await
        .map_err(|e| CrdProblem::Unlistable(e.to_string()))?;
    Ok(())
}

/// This replica's own Pod, which Events about the installation are recorded on (so `kubectl
/// describe pod` shows them); None outside a cluster, where the log says it all.
fn own_pod() -> Option<ObjectReference> {
    let var = |name| std::env::var(name).ok().filter(|v: &String| !v.is_empty());
    Some(ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Pod".into()),
        name: Some(var("POD_NAME")?),
        namespace: Some(var("POD_NAMESPACE")?),
        uid: var("POD_UID"),
        ..ObjectReference::default()
    })
}

/// Returns once the CRD is current and pools can be listed; until then /readyz answers 503 with
/// the reason, and each new reason is logged and, when it is the installation's, recorded as a
/// Warning Event on this replica's Pod.
pub async fn wait_until_current(client: &Client, namespace: Option<&str>, ops: &Ops) {
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: "crossover".into(),
            instance: std::env::var("POD_NAME").ok(),
        },
    );
    let pod = own_pod();
    let mut reported: Option<CrdProblem> = None;
    loop {
        match check(client, namespace).await {
            Ok(()) => {
                if reported.is_some() {
                    info!("the CRD {CRD_NAME} is current now; starting");
                }
                ops.set_ready(true);
                return;
            }
            Err(problem) => {
                ops.set_readiness(Err(format!("not ready: {problem}")));
                if reported.as_ref() != Some(&problem) {
                    warn!("not ready, retrying every {}s: {problem}", RETRY.as_secs());
                    if let (Some(reason), Some(pod)) = (problem.event_reason(), &pod) {
                        let event = Event {
                            type_: EventType::Warning,
                            reason: reason.into(),
                            note: Some(problem.to_string()),
                            action: "CheckCRD".into(),
                            secondary: None,
                        };
                        if let Err(e) = recorder.publish(&event, pod).await {
                            warn!(error = %e, reason, "could not record event");
                        }
                    }
                    reported = Some(problem);
                }
            }
        }
        tokio::time::sleep(RETRY).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn crd_with(annotation: Option<&str>) -> CustomResourceDefinition {
        let mut crd = crate::api::crd();
        let annotations = crd.metadata.annotations.get_or_insert_default();
        annotations.remove(SCHEMA_VERSION_ANNOTATION);
        if let Some(v) = annotation {
            annotations.insert(SCHEMA_VERSION_ANNOTATION.into(), v.into());
        }
        crd
    }

    #[test]
    fn the_generated_crd_is_current() {
        assert_eq!(judge(Some(&crate::api::crd())), Ok(()));
    }

    #[test]
    fn a_crd_from_before_the_annotation_is_too_old() {
        assert_eq!(
            judge(Some(&crd_with(None))),
            Err(CrdProblem::TooOld {
                installed: 0,
                expected: CRD_SCHEMA_VERSION
            })
        );
        // Garbage counts as the oldest: refusing is safe, pruning status is not.
        assert_eq!(installed_schema_version(&crd_with(Some("two"))), 0);
    }

    #[test]
    fn a_newer_crd_is_accepted_and_a_missing_one_is_not() {
        let newer = (CRD_SCHEMA_VERSION + 1).to_string();
        assert_eq!(judge(Some(&crd_with(Some(&newer)))), Ok(()));
        assert_eq!(judge(None), Err(CrdProblem::Missing));
    }

    #[test]
    fn the_refusal_says_what_to_do() {
        let message = CrdProblem::TooOld {
            installed: 0,
            expected: 1,
        }
        .to_string();
        assert!(message.contains("schema version 0"), "{message}");
        assert!(message.contains("crds.enabled=true"), "{message}");
        assert!(message.contains("kubectl apply --server-side"), "{message}");
    }
}
