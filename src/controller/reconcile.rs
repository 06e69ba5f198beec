//! The reconcile pipeline for one pool, in the order it runs:
//! dereference (IO) → validate (pure) → decide replicas (pure) → build children (pure) →
//! apply (IO) → assemble status (pure) → write status if it changed (IO).

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ObjectReference, Service};
use kube::api::{Patch, PatchParams};
use kube::core::DeserializeGuard;
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType};
use kube::{Api, Resource, ResourceExt};
use serde_json::json;
use tracing::{info, warn};

use super::observe::Outcome;
use super::status::{self, ConditionUpdate};
use super::{Context, Error, build, decide, validate};
use crate::api::{FIELD_MANAGER, InferencePool, InferencePoolStatus};

pub async fn reconcile(
    obj: Arc<DeserializeGuard<InferencePool>>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    let pool = match &obj.0 {
        Ok(pool) => pool,
        Err(invalid) => {
            // One malformed object must not stop the others: report it and wait for an edit.
            let meta = &invalid.metadata;
            warn!(name = ?meta.name, namespace = ?meta.namespace, error = %invalid.error, "malformed InferencePool");
            let reference = ObjectReference {
                api_version: Some(InferencePool::api_version(&()).into()),
                kind: Some(InferencePool::kind(&()).into()),
                name: meta.name.clone(),
                namespace: meta.namespace.clone(),
                uid: meta.uid.clone(),
                ..ObjectReference::default()
            };
            publish(
                &ctx,
                &reference,
                EventType::Warning,
                "InvalidObject",
                format!("cannot read this pool: {}", invalid.error),
            )
            .await;
            return Ok(Action::await_change());
        }
    };
    let name = pool.name_any();
    let ns = pool.namespace().unwrap_or_default();
    let now = (ctx.clock)();
    let pools: Api<InferencePool> = Api::namespaced(ctx.client.clone(), &ns);
    let prev_status = pool.status.clone().unwrap_or_default();
    let generation = pool.metadata.generation;

    if let Err(invalid) = validate::validate(&pool.spec) {
        let mut s = prev_status.clone();
        s.observed_generation = generation;
        status::set_condition(
            &mut s.conditions,
            ConditionUpdate::new(status::READY, false, "InvalidSpec", invalid.0.clone()),
            generation,
            now,
        );
        if s != prev_status {
            publish(
                &ctx,
                &pool.object_ref(&()),
                EventType::Warning,
                "InvalidSpec",
                invalid.0.clone(),
            )
            .await;
            write_status(&pools, &name, &s).await?;
        }
        // Retrying cannot fix a spec: wait for the next edit.
        return Ok(Action::await_change());
    }

    let deployments: Api<Deployment> = Api::namespaced(ctx.client.clone(), &ns);
    let services: Api<Service> = Api::namespaced(ctx.client.clone(), &ns);
    let current = deployments
        .get_opt(&name)
        .await
        .map_err(|source| Error::Read {
            what: "deployment",
            source,
        })?;
    let current_replicas = current
        .as_ref()
        .and_then(|d| d.spec.as_ref())
        .and_then(|s| s.replicas);

    let (deployment_replicas, ready_replicas) = status::deployment_replicas(current.as_ref());
    let interval = Duration::from_secs(pool.spec.scaling.interval_seconds.max(1) as u64);
    let outcome = if current.is_some() {
        ctx.observer
            .observe(&ctx.client, &ctx.pods, pool, interval)
            .await
    } else {
        Outcome::NotServing("the Deployment does not exist yet".into())
    };
    let plan = decide::decide(&decide::Inputs {
        pool,
        current_replicas,
        deployment_replicas,
        ready_replicas,
        outcome: &outcome,
        now,
    });

    let params = PatchParams::apply(FIELD_MANAGER).force();
    let deployment = build::deployment(pool, plan.desired_replicas)?;
    deployments
        .patch(
            &name,
            &params,
            &Patch::Apply(build::with_type_meta(&deployment)),
        )
        .await
        .map_err(|source| Error::Apply {
            what: "deployment",
            source,
        })?;
    services
        .patch(
            &name,
            &params,
            &Patch::Apply(build::with_type_meta(&build::service(pool)?)),
        )
        .await
        .map_err(|source| Error::Apply {
            what: "service",
            source,
        })?;

    if plan.status != prev_status {
        tracing::debug!(pool = %name, namespace = %ns, changed = ?changed_fields(&prev_status, &plan.status), "writing status");
        write_status(&pools, &name, &plan.status).await?;
    }
    // Events after the status write: a failed write retries the whole decision, not the Event.
    for note in &plan.events {
        info!(pool = %name, namespace = %ns, reason = note.reason, "{}", note.message);
        publish(
            &ctx,
            &pool.object_ref(&()),
            note.type_,
            note.reason,
            note.message.clone(),
        )
        .await;
    }
    Ok(Action::requeue(interval))
}

/// Top-level status fields that differ, for the debug log of each write.
fn changed_fields(old: &InferencePoolStatus, new: &InferencePoolStatus) -> Vec<String> {
    let (a, b) = (
        serde_json::to_value(old).unwrap_or_default(),
        serde_json::to_value(new).unwrap_or_default(),
    );
    let keys: std::collections::BTreeSet<&String> = a
        .as_object()
        .into_iter()
        .chain(b.as_object())
        .flat_map(|m| m.keys())
        .collect();
    keys.into_iter()
        .filter(|k| a.get(k.as_str()) != b.get(k.as_str()))
        .map(|k| {
            format!(
                "{k}: {} -> {}",
                a.get(k.as_str()).map(|v| v.to_string()).unwrap_or_default(),
                b.get(k.as_str()).map(|v| v.to_string()).unwrap_or_default()
            )
        })
        .collect()
}

async fn write_status(
    pools: &Api<InferencePool>,
    name: &str,
    status: &InferencePoolStatus,
) -> Result<(), Error> {
    let body = json!({
        "apiVersion": InferencePool::api_version(&()),
        "kind": InferencePool::kind(&()),
        "status": status,
    });
    pools
        .patch_status(
            name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(body),
        )
        .await
        .map_err(Error::Status)?;
    Ok(())
}

/// Events are best effort: a failure to record one is logged, never fails the reconcile.
async fn publish(
    ctx: &Context,
    reference: &ObjectReference,
    type_: EventType,
    reason: &str,
    note: String,
) {
    let event = Event {
        type_,
        reason: reason.into(),
        note: Some(note),
        action: "Reconcile".into(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&event, reference).await {
        warn!(error = %e, reason, "could not record event");
    }
}
