//! The Helm chart, installed with the real helm into the real API server: it lints, installs, and
//! the RBAC it grants is exactly enough for the operator to run a pool (proven by running the
//! operator as the chart's ServiceAccount, through impersonation).

use std::process::{Command, Output};
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::rbac::v1::{ClusterRole, Role};
use kube::api::Api;

use crossover::api::InferencePool;

use crate::harness::*;
use crate::pools::pool_yaml;

fn helm(args: &[&str]) -> Output {
    Command::new("helm")
        .env("KUBECONFIG", kubeconfig())
        .args(args)
        .output()
        .expect("helm on PATH (make test puts the one built for the cluster there)")
}

/// Uninstalls on drop: the chart's ClusterRole and binding outlive the test namespace otherwise.
struct Release {
    name: &'static str,
    namespace: String,
}

impl Drop for Release {
    fn drop(&mut self) {
        let _ = helm(&["uninstall", self.name, "-n", &self.namespace]);
    }
}

/// The test kubeconfig, acting as `user` (the admin may impersonate anyone).
fn kubeconfig_as(user: &str, path: &std::path::Path) {
    let text = std::fs::read_to_string(kubeconfig()).unwrap();
    let mut kc: serde_json::Value = serde_saphyr::from_str(&text).unwrap();
    for u in kc["users"].as_array_mut().unwrap() {
        u["user"]["as"] = serde_json::Value::String(user.to_string());
    }
    std::fs::write(path, serde_saphyr::to_string(&kc).unwrap()).unwrap();
}

#[tokio::test]
async fn the_chart_installs_and_its_rbac_is_enough_to_run_a_pool() {
    let client = client().await;
    install_crd().await;
    let ns = TestNamespace::new(&client, "helm").await;
    let chart = repo().join("charts/crossover");
    let chart = chart.to_str().unwrap();

    let lint = helm(&["lint", chart]);
    assert!(
        lint.status.success(),
        "helm lint: {}{}",
        stdout(&lint),
        stderr(&lint)
    );

    let install = helm(&[
        "install",
        "xo",
        chart,
        "-n",
        &ns.name,
        "--set",
        "replicaCount=1",
        "--wait",
        "--timeout",
        "90s",
    ]);
    let _release = Release {
        name: "xo",
        namespace: ns.name.clone(),
    };
    assert!(
        install.status.success(),
        "helm install: {}{}",
        stdout(&install),
        stderr(&install)
    );
    let deployment = Api::<Deployment>::namespaced(client.clone(), &ns.name)
        .get("xo-crossover")
        .await
        .expect("the operator's Deployment");
    let container = &deployment.spec.unwrap().template.spec.unwrap().containers[0];
    let args = container.args.clone().unwrap_or_default();
    assert!(
        args.contains(&"--leader-elect=true".to_string()),
        "{args:?}"
    );
    assert_eq!(
        container
            .readiness_probe
            .as_ref()
            .unwrap()
            .http_get
            .as_ref()
            .unwrap()
            .path
            .as_deref(),
        Some("/readyz")
    );
    Api::<Service>::namespaced(client.clone(), &ns.name)
        .get("xo-crossover-metrics")
        .await
        .expect("the metrics Service");
    Api::<ClusterRole>::all(client.clone())
        .get(&format!("xo-crossover-{}", ns.name))
        .await
        .expect("the ClusterRole");
    Api::<Role>::namespaced(client.clone(), &ns.name)
        .get("xo-crossover-leader-election")
        .await
        .expect("the leader-election Role");

    // Run the operator as the chart's ServiceAccount: every read, apply, status write, Event and
    // Lease goes through the chart's RBAC, checked by the real API server.
    let as_chart = std::env::temp_dir().join(format!("kubeconfig-{}", ns.name));
    kubeconfig_as(
        &format!("system:serviceaccount:{}:xo-crossover", ns.name),
        &as_chart,
    );
    let _op = Operator::start_as(
        &ns.name,
        &[("KUBECONFIG", as_chart.to_str().unwrap())],
        &[],
        &ns.name,
    );
    apply(&ns.name, &pool_yaml("rbac", ""));
    let pools: Api<InferencePool> = Api::namespaced(client.clone(), &ns.name);
    eventually(
        "children and status written under the chart's RBAC",
        Duration::from_secs(60),
        || async {
            let deployment = Api::<Deployment>::namespaced(client.clone(), &ns.name)
                .get_opt("rbac")
                .await
                .ok()??;
            Api::<Service>::namespaced(client.clone(), &ns.name)
                .get_opt("rbac")
                .await
                .ok()??;
            let status = pools.get("rbac").await.ok()?.status?;
            (deployment.metadata.name.is_some() && status.observed_generation == Some(1))
                .then_some(())
        },
    )
    .await;
    // Events and bearer-token Secrets come up only on some paths; ask the API server directly.
    let sa = format!("system:serviceaccount:{}:xo-crossover", ns.name);
    for (verb, resource) in [
        ("create", "events.events.k8s.io"),
        ("patch", "events.events.k8s.io"),
        ("get", "secrets"),
        ("update", "leases.coordination.k8s.io"),
    ] {
        let o = kubectl(&["auth", "can-i", verb, resource, "-n", &ns.name, "--as", &sa]);
        assert_eq!(
            stdout(&o).trim(),
            "yes",
            "{verb} {resource}: {}",
            stderr(&o)
        );
    }
    // And nothing beyond what it needs.
    for (verb, resource) in [
        ("delete", "deployments.apps"),
        ("list", "secrets"),
        ("create", "pods"),
    ] {
        let o = kubectl(&["auth", "can-i", verb, resource, "-n", &ns.name, "--as", &sa]);
        assert_eq!(
            stdout(&o).trim(),
            "no",
            "{verb} {resource} should be refused"
        );
    }
    let log = std::fs::read_to_string(
        std::env::temp_dir().join(format!("crossover-operator-{}.log", ns.name)),
    )
    .unwrap();
    assert!(
        !log.to_lowercase().contains("forbidden"),
        "the operator hit RBAC refusals:\n{log}"
    );
}
