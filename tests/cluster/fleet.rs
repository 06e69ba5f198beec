//! What the fleet plumbing must not cost in correctness: children are read from watch caches and
//! an apply that would change nothing is skipped, yet a hand edit of a child is still undone, and
//! a child that drops out of the cache (its label removed) is still found and repaired.

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Service;
use kube::api::Api;

use crate::harness::*;
use crate::pools::pool_yaml;

const WAIT: Duration = Duration::from_secs(60);

#[tokio::test]
async fn a_hand_edit_of_a_child_is_undone_though_unchanged_applies_are_skipped() {
    let client = client().await;
    install_crd().await;
    let ns = TestNamespace::new(&client, "drift").await;
    let _op = Operator::start(&ns.name);
    // External mode: the pool says how many replicas, whatever the Deployment shows. (In Auto mode
    // with no metrics the operator keeps what the Deployment runs, by design.)
    let manifest =
        pool_yaml("gemma", "").replace("intervalSeconds: 2", "intervalSeconds: 2, mode: External");
    apply(&ns.name, &format!("{manifest}  replicas: 2\n"));
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns.name);
    let replicas = || async { deployments.get_opt("gemma").await.ok()??.spec?.replicas };
    eventually("the Deployment at 2", WAIT, || async {
        (replicas().await? == 2).then_some(())
    })
    .await;
    // Let a few reconciles pass with nothing to change (their applies are skipped).
    tokio::time::sleep(Duration::from_secs(5)).await;

    let o = kubectl(&[
        "scale",
        "deployment",
        "gemma",
        "--replicas=4",
        "-n",
        &ns.name,
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    eventually("the hand scale undone", WAIT, || async {
        (replicas().await? == 2).then_some(())
    })
    .await;

    // Without our label the Service leaves the operator's cache; it is still ours (owner
    // reference), found by name and given its label back.
    let o = kubectl(&[
        "label",
        "service",
        "gemma",
        "crossover.dev/pool-",
        "-n",
        &ns.name,
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let services: Api<Service> = Api::namespaced(client.clone(), &ns.name);
    eventually("the Service's label restored", WAIT, || async {
        let s = services.get_opt("gemma").await.ok()??;
        (s.metadata.labels?.get("crossover.dev/pool")? == "gemma").then_some(())
    })
    .await;
}
