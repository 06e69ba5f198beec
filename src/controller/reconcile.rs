//! The reconcile pipeline for one pool, in the order it runs:
//! dereference (IO) → validate (pure) → observe (IO) → decide (pure) → build and apply the
//! children we own (IO) → write the status, with how the apply went (IO) → publish Events.
//! The decision is written even when applying a child fails: the failure shows in the
//! `Reconciled` condition with the API server's message, and the reconcile backs off.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ObjectReference, Pod, Service};
use kube::api::{Patch, PatchParams};
use kube::core::{DeserializeGuard, PartialObjectMeta};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType};
use kube::{Api, Resource, ResourceExt};
use serde_json::json;
use tracing::{info, warn};

use super::build::{self, Ownership};
use super::decide::Note;
use super::observe::Outcome;
use super::status::{self, ConditionUpdate};
use super::{Context, Error, checkpoint, decide, validate};
use crate::api::{FIELD_MANAGER, InferencePool, InferencePoolStatus, from_time};

pub async fn reconcile(
    obj: Arc<DeserializeGuard<InferencePool>>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    let pool = match &obj.0 {
        Ok(pool) => pool,
        Err(invalid) => return invalid_object(&ctx, invalid).await,
    };
    let now = (ctx.clock)();
    let pools: Api<InferencePool> =
        Api::namespaced(ctx.client.clone(), &pool.namespace().unwrap_or_default());
    let (pool, written) = ctx.with_newest_status(&pools, pool).await?;
    let pool = &pool;
    if let Err(invalid) = validate::validate(pool) {
        return invalid_spec(&ctx, &pools, pool, &invalid.0, now).await;
    }

    let children = read_children(&ctx, pool).await?;
    let pods = pool_pods(&ctx, pool);
    let pod_refs: Vec<&Pod> = pods.iter().map(Arc::as_ref).collect();
    let (deployment_replicas, ready_replicas) =
        status::deployment_replicas(children.deployment.as_ref());
    let interval = Duration::from_secs(pool.spec.scaling.interval_seconds.max(1) as u64);
    let outcome = match &children.deployment {
        Some(_) => {
            ctx.observer
                .observe(&ctx.client, &ctx.pods, pool, interval, ready_replicas)
                .await
        }
        None => Outcome::NotServing("the Deployment does not exist yet".into()),
    };
    let provisioned = status::provisioned_pods(&pod_refs);
    let plan = decide::decide(&decide::Inputs {
        pool,
        current_replicas: children
            .deployment
            .as_ref()
            .and_then(|d| d.spec.as_ref())
            .and_then(|s| s.replicas),
        deployment_replicas,
        ready_replicas,
        starting_replicas: status::starting_replicas(&pod_refs, now, build::STARTUP_BUDGET_SECONDS),
        pods: &provisioned,
        problem: status::pod_problem(children.deployment.as_ref(), &pod_refs),
        last_look: ctx
            .looks
            .exchange((pool.namespace().unwrap_or_default(), pool.name_any()), now),
        outcome: &outcome,
        now,
    });

    let applied = apply_children(&ctx, pool, &children, plan.desired_replicas).await;
    let prev = pool.status.clone().unwrap_or_default();
    let mut next = plan.status;
    let reconciled = reconciled_condition(&applied);
    let mut events = plan.events;
    if let Some(note) = failure_note(&prev, &reconciled) {
        events.push(note);
    }
    status::set_condition(
        &mut next.conditions,
        reconciled,
        pool.metadata.generation,
        now,
    );
    keep_or_write_status(&ctx, &pools, pool, written, &prev, &next, now).await?;
    ctx.ops.metrics.observe_pool(
        &pool.namespace().unwrap_or_default(),
        &pool.name_any(),
        &next,
    );
    // Events after the status write: a failed write retries the whole decision, not the Event.
    for note in &events {
        info!(pool = %pool.name_any(), namespace = ?pool.namespace(), reason = note.reason, "{}", note.message);
        publish(
            &ctx,
            &pool.object_ref(&()),
            note.type_,
            note.reason,
            note.message.clone(),
        )
        .await;
    }
    match applied {
        Ok(()) | Err(Failure { error: None, .. }) => {
            Ok(Action::requeue(ctx.next_reconcile(pool, interval)))
        }
        Err(Failure { error: Some(e), .. }) => Err(e),
    }
}

/// The pool's children as they stand, and whose they are.
struct Children {
    deployment: Option<Deployment>,
    deployment_ownership: Ownership,
    service_ownership: Ownership,
    /// The Service's resourceVersion as read (for skipping an apply that changes nothing).
    service_version: Option<String>,
}

async fn read_children(ctx: &Context, pool: &InferencePool) -> Result<Children, Error> {
    let ns = pool.namespace().unwrap_or_default();
    let name = pool.name_any();
    let service_name = build::service_name(&name);
    // The watch caches hold the pools' children (by label). One missing there is looked up: it
    // may exist without our label (someone else's), which the ownership check must see.
    let deployment = match ctx.cached_deployment(&ns, &name) {
        Some(d) => Some(Deployment::clone(&d)),
        None => Api::<Deployment>::namespaced(ctx.client.clone(), &ns)
            .get_opt(&name)
            .await
            .map_err(|source| Error::Read {
                what: "deployment",
                source,
            })?,
    };
    let service: Option<PartialObjectMeta<Service>> = match ctx.cached_service(&ns, &service_name) {
        Some(s) => Some(PartialObjectMeta::clone(&s)),
        None => Api::<Service>::namespaced(ctx.client.clone(), &ns)
            .get_metadata_opt(&service_name)
            .await
            .map_err(|source| Error::Read {
                what: "service",
                source,
            })?,
    };
    let deployment_ownership = build::ownership(deployment.as_ref().map(|d| &d.metadata), pool);
    let service_ownership = build::ownership(service.as_ref().map(|s| &s.metadata), pool);
    // Someone else's Deployment tells nothing about this pool's replicas.
    let deployment = deployment.filter(|_| deployment_ownership == Ownership::Ours);
    Ok(Children {
        deployment,
        deployment_ownership,
        service_ownership,
        service_version: service.and_then(|s| s.metadata.resource_version),
    })
}

/// The pool's pods from the shared pod cache.
fn pool_pods(ctx: &Context, pool: &InferencePool) -> Vec<Arc<Pod>> {
    let ns = pool.namespace();
    let name = pool.name_any();
    ctx.pods
        .state()
        .into_iter()
        .filter(|p| {
            p.namespace() == ns
                && p.labels().get(crate::api::POOL_LABEL).map(String::as_str) == Some(name.as_str())
        })
        .collect()
}

/// Why applying the children did not go through: a reason for the Reconciled condition, the
/// message people read, and the error that makes the controller back off (None for a conflict,
/// which retrying does not fix and which is re-checked every interval).
struct Failure {
    reason: &'static str,
    message: String,
    error: Option<Error>,
}

async fn apply_children(
    ctx: &Context,
    pool: &InferencePool,
    children: &Children,
    desired: i32,
) -> Result<(), Failure> {
    let ns = pool.namespace().unwrap_or_default();
    let params = PatchParams::apply(FIELD_MANAGER).force();
    let mut conflicts = Vec::new();
    match &children.deployment_ownership {
        Ownership::Foreign(whose) => conflicts.push(format!(
            "Deployment {ns}/{} exists and is {whose}",
            pool.name_any()
        )),
        _ => {
            let deployment = build::deployment(pool, desired).map_err(build_failure)?;
            let body = build::with_type_meta(&deployment);
            let seen = children.deployment.as_ref();
            let seen = seen.and_then(|d| d.metadata.resource_version.as_deref());
            if !ctx
                .applied
                .unchanged(&ns, &pool.name_any(), "Deployment", &body, seen)
            {
                let written = Api::<Deployment>::namespaced(ctx.client.clone(), &ns)
                    .patch(&pool.name_any(), &params, &Patch::Apply(&body))
                    .await
                    .map_err(|e| apply_failure("DeploymentRefused", "Deployment", e))?;
                let version = written.metadata.resource_version;
                ctx.applied
                    .record(&ns, &pool.name_any(), "Deployment", &body, version);
            }
        }
    }
    match &children.service_ownership {
        Ownership::Foreign(whose) => conflicts.push(format!(
            "Service {ns}/{} exists and is {whose}",
            build::service_name(&pool.name_any())
        )),
        _ => {
            let service = build::service(pool).map_err(build_failure)?;
            let body = build::with_type_meta(&service);
            let seen = children.service_version.as_deref();
            if !ctx
                .applied
                .unchanged(&ns, &pool.name_any(), "Service", &body, seen)
            {
                let written = Api::<Service>::namespaced(ctx.client.clone(), &ns)
                    .patch(
                        &build::service_name(&pool.name_any()),
                        &params,
                        &Patch::Apply(&body),
                    )
                    .await
                    .map_err(|e| apply_failure("ServiceRefused", "Service", e))?;
                let version = written.metadata.resource_version;
                ctx.applied
                    .record(&ns, &pool.name_any(), "Service", &body, version);
            }
        }
    }
    if conflicts.is_empty() {
        return Ok(());
    }
    Err(Failure {
        reason: "NameConflict",
        message: format!(
            "{}; crossover leaves objects it does not control untouched: rename the pool or remove them",
            conflicts.join("; ")
        ),
        error: None,
    })
}

fn build_failure(e: build::BuildError) -> Failure {
    Failure {
        reason: "InvalidChildren",
        message: e.to_string(),
        error: Some(Error::Build(e)),
    }
}

fn apply_failure(reason: &'static str, what: &'static str, source: kube::Error) -> Failure {
    Failure {
        reason,
        message: format!(
            "the API server refused the {what}: {}",
            api_message(&source)
        ),
        error: Some(Error::Apply { what, source }),
    }
}

/// What the API server said, without the transport noise around it.
fn api_message(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) => format!("{} ({})", s.message, s.reason),
        other => other.to_string(),
    }
}

fn reconciled_condition(applied: &Result<(), Failure>) -> ConditionUpdate {
    match applied {
        Ok(()) => ConditionUpdate::new(
            status::RECONCILED,
            true,
            "Applied",
            "the Deployment and Service are as the pool says",
        ),
        Err(f) => ConditionUpdate::new(status::RECONCILED, false, f.reason, f.message.clone()),
    }
}

/// A Warning Event when applying starts failing, or fails differently; none while it keeps
/// failing the same way (the condition says so, and retries must not flood the Events).
fn failure_note(prev: &InferencePoolStatus, next: &ConditionUpdate) -> Option<Note> {
    if next.is_true() {
        return None;
    }
    let before = prev
        .conditions
        .iter()
        .find(|c| c.type_ == status::RECONCILED);
    let same = before.is_some_and(|c| {
        c.status == next.status && c.reason == next.reason && c.message == next.message
    });
    (!same).then(|| Note {
        type_: EventType::Warning,
        reason: match next.reason.as_str() {
            "NameConflict" => "NameConflict",
            _ => "ApplyFailed",
        },
        message: next.message.clone(),
    })
}

/// Writes `next` when [`checkpoint::write_due`] says so, else holds it as the pool's newest
/// status. A write that fails keeps nothing: the retry decides again from the status before it,
/// so what the failed step decided (a scale, its Event) is decided and announced once more.
async fn keep_or_write_status(
    ctx: &Context,
    pools: &Api<InferencePool>,
    pool: &InferencePool,
    written: Option<checkpoint::Written>,
    prev: &InferencePoolStatus,
    next: &InferencePoolStatus,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<(), Error> {
    let key = (pool.namespace().unwrap_or_default(), pool.name_any());
    if !checkpoint::write_due(written.as_ref(), prev, next, now, ctx.status_checkpoint) {
        ctx.statuses.keep(key, pool.uid(), next.clone(), None);
        return Ok(());
    }
    tracing::debug!(pool = %pool.name_any(), changed = ?changed_fields(prev, next), "writing status");
    write_status_or_say_why(ctx, pools, pool, next, now).await?;
    let written = checkpoint::Written {
        settled_digest: checkpoint::settled_digest(next),
        at: now,
    };
    ctx.statuses
        .keep(key, pool.uid(), next.clone(), Some(written));
    Ok(())
}

/// Writes the status; when the API server refuses it (too large, invalid), records why in the
/// Reconciled condition alone, and a Warning Event, so the failure is never only in a log line.
async fn write_status_or_say_why(
    ctx: &Context,
    pools: &Api<InferencePool>,
    pool: &InferencePool,
    next: &InferencePoolStatus,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<(), Error> {
    let Err(e) = write_status(pools, &pool.name_any(), next).await else {
        return Ok(());
    };
    let refused = matches!(&e, Error::Status(kube::Error::Api(s)) if (400..500).contains(&s.code));
    if refused && let Error::Status(source) = &e {
        let message = format!(
            "the API server refused the status: {}; sizing history and money since {} are not saved",
            api_message(source),
            pool.status
                .as_ref()
                .and_then(|s| s.cost.as_ref())
                .and_then(|c| c.month_to_date.as_ref())
                .map(|m| from_time(&m.accounted_until).to_rfc3339())
                .unwrap_or_else(|| "the start".into())
        );
        let mut conditions = pool.status.clone().unwrap_or_default().conditions;
        status::set_condition(
            &mut conditions,
            ConditionUpdate::new(status::RECONCILED, false, "StatusRefused", message.clone()),
            pool.metadata.generation,
            now,
        );
        // A merge patch of the conditions alone: it leaves the rest of the stored status as is.
        let patch = json!({"status": {"conditions": conditions}});
        if let Err(e2) = pools
            .patch_status(
                &pool.name_any(),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await
        {
            warn!(error = %e2, "could not record the refused status either");
        }
        publish(
            ctx,
            &pool.object_ref(&()),
            EventType::Warning,
            "StatusRefused",
            message,
        )
        .await;
    }
    Err(e)
}

async fn invalid_object(
    ctx: &Context,
    invalid: &kube::core::error_boundary::InvalidObject,
) -> Result<Action, Error> {
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
        ctx,
        &reference,
        EventType::Warning,
        "InvalidObject",
        format!("cannot read this pool: {}", invalid.error),
    )
    .await;
    Ok(Action::await_change())
}

async fn invalid_spec(
    ctx: &Context,
    pools: &Api<InferencePool>,
    pool: &InferencePool,
    why: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Action, Error> {
    let prev = pool.status.clone().unwrap_or_default();
    let mut s = prev.clone();
    s.observed_generation = pool.metadata.generation;
    status::set_condition(
        &mut s.conditions,
        ConditionUpdate::new(status::READY, false, "InvalidSpec", why),
        pool.metadata.generation,
        now,
    );
    if s != prev {
        publish(
            ctx,
            &pool.object_ref(&()),
            EventType::Warning,
            "InvalidSpec",
            why.to_string(),
        )
        .await;
        write_status(pools, &pool.name_any(), &s).await?;
        let written = checkpoint::Written {
            settled_digest: checkpoint::settled_digest(&s),
            at: now,
        };
        ctx.statuses.keep(
            (pool.namespace().unwrap_or_default(), pool.name_any()),
            pool.uid(),
            s,
            Some(written),
        );
    }
    // Retrying cannot fix a spec: wait for the next edit.
    Ok(Action::await_change())
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
        .map(|k| k.to_string())
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

/// Events are best effort: a failure to record one is logged, never fails the reconcile. Notes
/// are cut to the 1 KiB events.k8s.io accepts.
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
        note: Some(status::truncate(note, 1000)),
        action: "Reconcile".into(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&event, reference).await {
        warn!(error = %e, reason, "could not record event");
    }
}
