//! The pool's children where real clusters differ from the happy path: names that follow model
//! versions, objects that are someone else's, an API server that refuses the Deployment, and a
//! namespace that enforces Pod Security `restricted`.

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Pod, Service};
use kube::ResourceExt;
use kube::api::{Api, ListParams, Patch, PatchParams};

use crossover::api::InferencePool;

use crate::harness::*;
use crate::pools::pool_yaml;

const WAIT: Duration = Duration::from_secs(60);

fn condition(p: &InferencePool, type_: &str) -> Option<(String, String, String)> {
    let c = p
        .status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)?;
    Some((c.status.clone(), c.reason.clone(), c.message.clone()))
}

async fn events_for(client: &kube::Client, ns: &str, reason: &str) -> Vec<String> {
    let events: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(client.clone(), ns);
    events
        .list(&ListParams::default())
        .await
        .map(|l| l.items)
        .unwrap_or_default()
        .into_iter()
        .filter(|e| e.reason.as_deref() == Some(reason))
        .filter_map(|e| e.note)
        .collect()
}

#[tokio::test]
async fn a_pool_named_like_a_model_version_gets_a_service_and_a_status() {
    let client = client().await;
    install_crd().await;
    let ns = TestNamespace::new(&client, "dotted").await;
    let _op = Operator::start(&ns.name);
    apply(&ns.name, &pool_yaml("llama-3.1-8b", ""));
    let pools: Api<InferencePool> = Api::namespaced(client.clone(), &ns.name);
    let status = eventually("status with ready replicas", WAIT, || async {
        let s = pools.get("llama-3.1-8b").await.ok()?.status?;
        (s.ready_replicas == 2).then_some(s)
    })
    .await;
    assert_eq!(status.service_name.as_deref(), Some("llama-3-1-8b"));
    let svc = Api::<Service>::namespaced(client.clone(), &ns.name)
        .get("llama-3-1-8b")
        .await
        .expect("the Service under its valid name");
    let owner = &svc.owner_references()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str()),
        ("InferencePool", "llama-3.1-8b")
    );
    let selector = svc.spec.unwrap().selector.unwrap();
    assert_eq!(selector["crossover.dev/pool"], "llama-3.1-8b");
    let p = pools.get("llama-3.1-8b").await.unwrap();
    let (reconciled, reason, _) = condition(&p, "Reconciled").unwrap();
    assert_eq!((reconciled.as_str(), reason.as_str()), ("True", "Applied"));
    let row = stdout(&kubectl(&[
        "get",
        "ipool",
        "llama-3.1-8b",
        "-n",
        &ns.name,
        "--no-headers",
    ]));
    assert!(row.contains("2/2") && row.contains('$'), "{row}");
}

#[tokio::test]
async fn names_the_children_cannot_carry_are_refused_by_the_api_server() {
    let client = client().await;
    install_crd().await;
    let ns = TestNamespace::new(&client, "longname").await;
    let long = "a".repeat(64);
    let o = kubectl_with_stdin(
        &["apply", "-n", &ns.name, "-f", "-"],
        Some(&pool_yaml(&long, "")),
    );
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("metadata.name must be at most 63 characters"),
        "{}",
        stderr(&o)
    );
    let auto_zero = pool_yaml("zero", "").replace("minReplicas: 2", "minReplicas: 0");
    let o = kubectl_with_stdin(&["apply", "-n", &ns.name, "-f", "-"], Some(&auto_zero));
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("minReplicas must be at least 1 in Auto mode"),
        "{}",
        stderr(&o)
    );
}

#[tokio::test]
async fn an_existing_service_of_the_same_name_keeps_its_selector_and_owner() {
    let client = client().await;
    install_crd().await;
    let ns = TestNamespace::new(&client, "hijack").await;
    // The team's own Service in front of its hand-run vLLM.
    apply(
        &ns.name,
        r#"apiVersion: v1
kind: Service
metadata: {name: qwen}
spec:
  selector: {app: hand-run-vllm}
  ports: [{name: web, port: 80, targetPort: 8000}]
"#,
    );
    let _op = Operator::start(&ns.name);
    apply(&ns.name, &pool_yaml("qwen", ""));
    let pools: Api<InferencePool> = Api::namespaced(client.clone(), &ns.name);
    let (_, _, message) = eventually("a NameConflict condition", WAIT, || async {
        let p = pools.get("qwen").await.ok()?;
        condition(&p, "Reconciled").filter(|(s, r, _)| s == "False" && r == "NameConflict")
    })
    .await;
    assert!(message.contains("Service"), "{message}");
    // Several intervals later the Service is still the team's.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let svc = Api::<Service>::namespaced(client.clone(), &ns.name)
        .get("qwen")
        .await
        .unwrap();
    assert!(svc.owner_references().is_empty(), "no owner was added");
    let spec = svc.spec.unwrap();
    assert_eq!(
        spec.selector.unwrap(),
        [("app".to_string(), "hand-run-vllm".to_string())].into()
    );
    assert_eq!(spec.ports.unwrap()[0].port, 80);
    let warnings = events_for(&client, &ns.name, "NameConflict").await;
    assert_eq!(
        warnings.len(),
        1,
        "one Warning, not one per retry: {warnings:?}"
    );
}

#[tokio::test]
async fn a_deployment_the_api_server_refuses_shows_in_the_reconciled_condition() {
    let client = client().await;
    install_crd().await;
    let ns = TestNamespace::new(&client, "quota").await;
    apply(
        &ns.name,
        r#"apiVersion: v1
kind: ResourceQuota
metadata: {name: no-deployments}
spec:
  hard: {count/deployments.apps: "0"}
"#,
    );
    let _op = Operator::start(&ns.name);
    apply(&ns.name, &pool_yaml("refused", ""));
    let pools: Api<InferencePool> = Api::namespaced(client.clone(), &ns.name);
    let p = eventually("a DeploymentRefused condition", WAIT, || async {
        let p = pools.get("refused").await.ok()?;
        condition(&p, "Reconciled")
            .is_some_and(|(s, r, _)| s == "False" && r == "DeploymentRefused")
            .then_some(p)
    })
    .await;
    let (_, _, message) = condition(&p, "Reconciled").unwrap();
    assert!(
        message.contains("exceeded quota"),
        "the API server's words: {message}"
    );
    // The decision is kept although the apply failed.
    let status = p.status.unwrap();
    assert_eq!(status.desired_replicas, Some(2));
    assert!(status.cost.is_some(), "a priced pool shows its cost");
    let warnings = eventually("the ApplyFailed Warning", WAIT, || async {
        let w = events_for(&client, &ns.name, "ApplyFailed").await;
        (!w.is_empty()).then_some(w)
    })
    .await;
    assert!(warnings[0].contains("exceeded quota"), "{warnings:?}");
}

#[tokio::test]
async fn pods_run_in_a_namespace_that_enforces_pod_security_restricted() {
    let client = client().await;
    install_crd().await;
    let ns = TestNamespace::new(&client, "restricted").await;
    Api::<Namespace>::all(client.clone())
        .patch(
            &ns.name,
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"metadata": {"labels": {
                "pod-security.kubernetes.io/enforce": "restricted",
                "pod-security.kubernetes.io/enforce-version": "latest"
            }}})),
        )
        .await
        .unwrap();
    // The namespace really enforces it: a pod with no security context is refused.
    let o = kubectl_with_stdin(
        &["apply", "-n", &ns.name, "-f", "-"],
        Some(
            "apiVersion: v1\nkind: Pod\nmetadata: {name: plain}\nspec: {containers: [{name: c, image: busybox}]}\n",
        ),
    );
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("violates PodSecurity"),
        "{}",
        stderr(&o)
    );

    let _op = Operator::start(&ns.name);
    apply(&ns.name, &pool_yaml("hardened", ""));
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns.name);
    eventually("two Running pods", WAIT, || async {
        let list = pods
            .list(&ListParams::default().labels("crossover.dev/pool=hardened"))
            .await
            .ok()?;
        let running = list
            .items
            .iter()
            .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
            .count();
        (running == 2).then_some(())
    })
    .await;
    let d = Api::<Deployment>::namespaced(client.clone(), &ns.name)
        .get("hardened")
        .await
        .unwrap();
    let failures = d
        .status
        .and_then(|s| s.conditions)
        .unwrap_or_default()
        .into_iter()
        .filter(|c| c.type_ == "ReplicaFailure" && c.status == "True")
        .count();
    assert_eq!(failures, 0, "the ReplicaSet created every pod");
}

#[tokio::test]
async fn an_admission_policy_restricts_images_and_engine_args() {
    let client = client().await;
    install_crd().await;
    let ns = TestNamespace::new(&client, "vap").await;
    Api::<Namespace>::all(client.clone())
        .patch(
            &ns.name,
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"metadata": {"labels": {
                "crossover.dev/restricted-pools": "true"
            }}})),
        )
        .await
        .unwrap();
    let policy = repo().join("examples/policy/restrict-images-and-args.yaml");
    let o = kubectl(&["apply", "--server-side", "-f", policy.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let remote_code = pool_yaml("remote", "").replace(
        r#"args: ["--max-model-len=8192"]"#,
        r#"args: ["--trust-remote-code"]"#,
    );
    let other_image =
        pool_yaml("image", "").replace("engine: {", "engine: {image: attacker/fake-vllm:1, ");
    // The policy takes a moment to reach the API server's admission chain: probe with server-side
    // dry runs, which go through admission and store nothing.
    let dry_create = |manifest: &str| {
        kubectl_with_stdin(
            &["create", "--dry-run=server", "-n", &ns.name, "-f", "-"],
            Some(manifest),
        )
    };
    eventually("the policy refuses --trust-remote-code", WAIT, || async {
        let o = dry_create(&remote_code);
        (!o.status.success() && stderr(&o).contains("--trust-remote-code is not allowed"))
            .then_some(())
    })
    .await;
    let o = dry_create(&other_image);
    assert!(!o.status.success(), "another image was accepted");
    assert!(
        stderr(&o).contains("must be vllm/vllm-openai"),
        "{}",
        stderr(&o)
    );
    apply(&ns.name, &pool_yaml("allowed", ""));
}
