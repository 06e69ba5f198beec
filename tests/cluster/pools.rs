//! The foundation: CRD, children, status, kubectl columns, validation, GC, scale, restarts.

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Pod, Service};
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, ListParams};

use crossover::api::InferencePool;

use crate::harness::*;

const WAIT: Duration = Duration::from_secs(60);

/// Port 8080: pod IPs are reused across tests, and the simulators of the sizing tests answer on
/// 8000; these pools must see no metrics at all.
pub fn pool_yaml(name: &str, extra: &str) -> String {
    format!(
        r#"apiVersion: crossover.dev/v1alpha1
kind: InferencePool
metadata: {{name: {name}}}
spec:
  model: google/gemma-4-31b-it
  servedModelName: gemma4:31b
  engine: {{args: ["--max-model-len=8192"], port: 8080}}
  gpu: {{count: 2, product: NVIDIA-H100-80GB-HBM3}}
  minReplicas: 2
  maxReplicas: 4
  capacity: {{outputTokensPerSecond: 900}}
  scaling: {{intervalSeconds: 2}}
  cost: {{replicaMonthlyUsd: 205, overheads: [{{name: engineering, monthlyUsd: 1500}}]}}
  compareTo: {{model: gpt-5, inputUsdPerMillionTokens: 2.5, outputUsdPerMillionTokens: 10}}
{extra}"#
    )
}

async fn deployment(client: &kube::Client, ns: &str, name: &str) -> Option<Deployment> {
    Api::<Deployment>::namespaced(client.clone(), ns)
        .get_opt(name)
        .await
        .ok()
        .flatten()
}

#[tokio::test]
async fn crd_installs_established_and_every_example_applies() {
    let client = client().await;
    install_crd().await;
    let ns = TestNamespace::new(&client, "examples").await;
    let o = kubectl(&[
        "apply",
        "-n",
        &ns.name,
        "-f",
        repo().join("examples").to_str().unwrap(),
    ]);
    assert!(o.status.success(), "examples refused: {}", stderr(&o));
    let pools = Api::<InferencePool>::namespaced(client.clone(), &ns.name)
        .list(&ListParams::default())
        .await
        .unwrap();
    let yaml_files = std::fs::read_dir(repo().join("examples"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "yaml")
        })
        .count();
    assert_eq!(pools.items.len(), yaml_files);
}

#[tokio::test]
async fn pool_gets_owned_gpu_deployment_and_service_with_running_pods_and_status() {
    let client = client().await;
    install_crd().await;
    let ns = TestNamespace::new(&client, "children").await;
    let _op = Operator::start(&ns.name);
    apply(&ns.name, &pool_yaml("gemma", ""));

    let d = eventually("the Deployment", WAIT, || {
        deployment(&client, &ns.name, "gemma")
    })
    .await;
    let owner = &d.owner_references()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str(), owner.controller),
        ("InferencePool", "gemma", Some(true))
    );
    let spec = d.spec.clone().unwrap();
    assert_eq!(spec.replicas, Some(2), "Auto mode starts at minReplicas");
    let c = &spec.template.spec.as_ref().unwrap().containers[0];
    let args = c.args.clone().unwrap();
    assert!(
        args.contains(&"--tensor-parallel-size=2".to_string()),
        "{args:?}"
    );
    assert!(args.contains(&"--max-model-len=8192".to_string()));
    assert_eq!(
        c.resources.as_ref().unwrap().limits.as_ref().unwrap()["nvidia.com/gpu"].0,
        "2"
    );
    assert!(c.readiness_probe.is_some() && c.startup_probe.is_some());

    let services: Api<Service> = Api::namespaced(client.clone(), &ns.name);
    let svc = eventually("the Service", WAIT, || async {
        services.get_opt("gemma").await.ok().flatten()
    })
    .await;
    assert_eq!(svc.owner_references()[0].name, "gemma");
    assert_eq!(
        svc.spec.unwrap().ports.unwrap()[0].name.as_deref(),
        Some("http")
    );

    // kwok runs the pods on the fake H100 nodes once the scheduler has fitted their GPUs.
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns.name);
    let running = eventually("2 Running pods on GPU nodes", WAIT, || async {
        let list = pods
            .list(&ListParams::default().labels("crossover.dev/pool=gemma"))
            .await
            .ok()?;
        let running: Vec<Pod> = list
            .items
            .into_iter()
            .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
            .collect();
        (running.len() == 2).then_some(running)
    })
    .await;
    for p in &running {
        let node = p.spec.as_ref().unwrap().node_name.clone().unwrap();
        assert!(node.starts_with("gpu-node-"), "{node}");
    }

    let pools: Api<InferencePool> = Api::namespaced(client.clone(), &ns.name);
    let status = eventually("status with 2 ready replicas", WAIT, || async {
        let s = pools.get("gemma").await.ok()?.status?;
        (s.ready_replicas == 2).then_some(s)
    })
    .await;
    assert_eq!(status.observed_generation, Some(1));
    assert_eq!(status.replicas, 2);
    assert_eq!(status.desired_replicas, Some(2));
    let ready = status
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .expect("Ready condition");
    assert_eq!(ready.status, "True");
    assert_eq!(
        status.selector.as_deref(),
        Some(
            "app.kubernetes.io/instance=gemma,app.kubernetes.io/name=vllm,crossover.dev/pool=gemma"
        )
    );
}

#[tokio::test]
async fn kubectl_get_prints_the_money_and_load_columns() {
    let client = client().await;
    install_crd().await;
    let ns = TestNamespace::new(&client, "columns").await;
    let _op = Operator::start(&ns.name);
    apply(&ns.name, &pool_yaml("gemma", ""));
    let pools: Api<InferencePool> = Api::namespaced(client.clone(), &ns.name);
    eventually("a status", WAIT, || async {
        pools.get("gemma").await.ok()?.status
    })
    .await;
    for resource in ["inferencepools.crossover.dev", "ipool", "inferencepools"] {
        let o = kubectl(&["get", resource, "-n", &ns.name]);
        assert!(o.status.success(), "{}", stderr(&o));
        let out = stdout(&o);
        let header: Vec<&str> = out.lines().next().unwrap().split_whitespace().collect();
        assert_eq!(
            header,
            [
                "NAME",
                "MODEL",
                "READY",
                "DESIRED",
                "UTIL",
                "POOL/MO",
                "API/MO",
                "CHEAPER",
                "PROVISIONING",
                "AGE"
            ],
            "{resource}"
        );
        assert!(out.contains("google/gemma-4-31b-it"), "{out}");
    }
    let o = kubectl(&["get", "crossover", "-n", &ns.name]);
    assert!(
        stdout(&o).contains("gemma"),
        "category lists the pool: {}",
        stdout(&o)
    );
}

#[tokio::test]
async fn invalid_manifests_are_refused_with_the_rules_message() {
    let client = client().await;
    install_crd().await;
    let ns = TestNamespace::new(&client, "invalid").await;
    let cases = [
        (
            "minReplicas: 5",
            "minReplicas must not be greater than spec.maxReplicas",
        ),
        ("", "set exactly one of spec.cost.replicaHourlyUsd"),
        ("", "replicaHourlyUsd must be between 0 and 10,000"),
        ("", "targetUtilization must be above 0 and at most 1"),
        (
            "replicas: 3",
            "only be set when spec.scaling.mode is External",
        ),
    ];
    let base = pool_yaml("bad", "");
    let manifests = [
        base.replace("minReplicas: 2", cases[0].0),
        base.replace(
            "replicaMonthlyUsd: 205",
            "replicaMonthlyUsd: 205, replicaHourlyUsd: 3",
        ),
        base.replace("replicaMonthlyUsd: 205", "replicaHourlyUsd: -3"),
        base.replace(
            "outputTokensPerSecond: 900",
            "outputTokensPerSecond: 900, targetUtilization: 1.5",
        ),
        format!("{base}  {}\n", cases[4].0),
    ];
    for (manifest, (_, message)) in manifests.iter().zip(cases) {
        let o = kubectl_with_stdin(&["apply", "-n", &ns.name, "-f", "-"], Some(manifest));
        assert!(!o.status.success(), "accepted:\n{manifest}");
        assert!(
            stderr(&o).contains(message),
            "expected {message:?} in: {}",
            stderr(&o)
        );
    }
    let pools = Api::<InferencePool>::namespaced(client.clone(), &ns.name)
        .list(&ListParams::default())
        .await
        .unwrap();
    assert!(pools.items.is_empty(), "nothing invalid was stored");
}

#[tokio::test]
async fn deleting_the_pool_garbage_collects_its_children() {
    let client = client().await;
    install_crd().await;
    let ns = TestNamespace::new(&client, "gc").await;
    let _op = Operator::start(&ns.name);
    apply(&ns.name, &pool_yaml("gemma", ""));
    eventually("the Deployment", WAIT, || {
        deployment(&client, &ns.name, "gemma")
    })
    .await;
    Api::<InferencePool>::namespaced(client.clone(), &ns.name)
        .delete("gemma", &DeleteParams::foreground())
        .await
        .unwrap();
    let services: Api<Service> = Api::namespaced(client.clone(), &ns.name);
    eventually("Deployment and Service gone", WAIT, || async {
        let d = deployment(&client, &ns.name, "gemma").await;
        let s = services.get_opt("gemma").await.ok()?;
        (d.is_none() && s.is_none()).then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_deleted_child_comes_back() {
    let client = client().await;
    install_crd().await;
    let ns = TestNamespace::new(&client, "recreate").await;
    let _op = Operator::start(&ns.name);
    apply(&ns.name, &pool_yaml("gemma", ""));
    let first = eventually("the Deployment", WAIT, || {
        deployment(&client, &ns.name, "gemma")
    })
    .await;
    Api::<Deployment>::namespaced(client.clone(), &ns.name)
        .delete("gemma", &DeleteParams::default())
        .await
        .unwrap();
    let services: Api<Service> = Api::namespaced(client.clone(), &ns.name);
    services
        .delete("gemma", &DeleteParams::default())
        .await
        .unwrap();
    eventually("a new Deployment and Service", WAIT, || async {
        let d = deployment(&client, &ns.name, "gemma").await?;
        services.get_opt("gemma").await.ok()??;
        (d.uid() != first.uid()).then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_spec_change_rolls_the_deployment() {
    let client = client().await;
    install_crd().await;
    let ns = TestNamespace::new(&client, "roll").await;
    let _op = Operator::start(&ns.name);
    apply(&ns.name, &pool_yaml("gemma", ""));
    let before = eventually("the Deployment", WAIT, || {
        deployment(&client, &ns.name, "gemma")
    })
    .await;
    apply(
        &ns.name,
        &pool_yaml("gemma", "").replace("--max-model-len=8192", "--max-model-len=16384"),
    );
    let after = eventually("the new template", WAIT, || async {
        let d = deployment(&client, &ns.name, "gemma").await?;
        let args = d.spec.as_ref()?.template.spec.as_ref()?.containers[0]
            .args
            .clone()?;
        args.contains(&"--max-model-len=16384".to_string())
            .then_some(d)
    })
    .await;
    assert!(
        after.metadata.generation > before.metadata.generation,
        "template change bumps the generation"
    );
    let pools: Api<InferencePool> = Api::namespaced(client.clone(), &ns.name);
    eventually("observedGeneration 2", WAIT, || async {
        (pools.get("gemma").await.ok()?.status?.observed_generation == Some(2)).then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_reconcile_with_nothing_changed_writes_nothing() {
    let client = client().await;
    install_crd().await;
    let ns = TestNamespace::new(&client, "idempotent").await;
    let _op = Operator::start(&ns.name);
    apply(&ns.name, &pool_yaml("gemma", ""));
    let pools: Api<InferencePool> = Api::namespaced(client.clone(), &ns.name);
    // Settle: pods running and ready, and the operator has tried to read them (no simulator
    // here, so the steady state is MetricsAvailable=False/NoData).
    eventually("settled status", WAIT, || async {
        let s = pools.get("gemma").await.ok()?.status?;
        let metrics = s
            .conditions
            .iter()
            .find(|c| c.type_ == "MetricsAvailable")?;
        // Both pods tried: the operator's pod watch can trail the Deployment's ready count.
        let both_tried = metrics.message.starts_with("2 of 2 pods");
        (s.ready_replicas == 2 && metrics.reason == "NoData" && both_tried).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let versions = || async {
        let p = pools.get("gemma").await.unwrap().resource_version();
        let d = deployment(&client, &ns.name, "gemma")
            .await
            .unwrap()
            .resource_version();
        let s = Api::<Service>::namespaced(client.clone(), &ns.name)
            .get("gemma")
            .await
            .unwrap()
            .resource_version();
        (p, d, s)
    };
    let before = versions().await;
    let status_before =
        serde_json::to_string_pretty(&pools.get("gemma").await.unwrap().status).unwrap();
    // Several sync intervals (intervalSeconds: 2) pass; every reconcile must be a no-op.
    tokio::time::sleep(Duration::from_secs(8)).await;
    let status_after =
        serde_json::to_string_pretty(&pools.get("gemma").await.unwrap().status).unwrap();
    assert_eq!(
        versions().await,
        before,
        "pool, Deployment or Service changed without a spec change; status before:\n{status_before}\nafter:\n{status_after}"
    );
}

#[tokio::test]
async fn kubectl_scale_resizes_an_external_pool() {
    let client = client().await;
    install_crd().await;
    let ns = TestNamespace::new(&client, "scale").await;
    let _op = Operator::start(&ns.name);
    let manifest = pool_yaml("ext", "")
        .replace("intervalSeconds: 2", "intervalSeconds: 2, mode: External")
        .replace("minReplicas: 2", "minReplicas: 1");
    apply(&ns.name, &format!("{manifest}  replicas: 1\n"));
    eventually("1 replica", WAIT, || async {
        (deployment(&client, &ns.name, "ext").await?.spec?.replicas == Some(1)).then_some(())
    })
    .await;
    let o = kubectl(&["scale", "ipool", "ext", "--replicas=3", "-n", &ns.name]);
    assert!(o.status.success(), "{}", stderr(&o));
    eventually("3 replicas", WAIT, || async {
        (deployment(&client, &ns.name, "ext").await?.spec?.replicas == Some(3)).then_some(())
    })
    .await;
    // The scale subresource reads back what the pool reports.
    let pools: Api<InferencePool> = Api::namespaced(client.clone(), &ns.name);
    eventually("status.replicas 3", WAIT, || async {
        (pools.get("ext").await.ok()?.status?.replicas == 3).then_some(())
    })
    .await;
    let o = kubectl(&[
        "get",
        "ipool",
        "ext",
        "-n",
        &ns.name,
        "--subresource=scale",
        "-o",
        "jsonpath={.status.replicas} {.status.selector}",
    ]);
    assert!(stdout(&o).starts_with("3 "), "{}", stdout(&o));
    assert!(
        stdout(&o).contains("crossover.dev/pool=ext"),
        "{}",
        stdout(&o)
    );
}

#[tokio::test]
async fn a_restarted_operator_picks_up_where_it_was() {
    let client = client().await;
    install_crd().await;
    let ns = TestNamespace::new(&client, "restart").await;
    let op = Operator::start(&ns.name);
    apply(&ns.name, &pool_yaml("gemma", ""));
    let pools: Api<InferencePool> = Api::namespaced(client.clone(), &ns.name);
    eventually("ready status", WAIT, || async {
        (pools.get("gemma").await.ok()?.status?.ready_replicas == 2).then_some(())
    })
    .await;
    let before = deployment(&client, &ns.name, "gemma").await.unwrap();
    op.stop();
    // A spec change while the operator is down is picked up by the next one.
    apply(
        &ns.name,
        &pool_yaml("gemma", "").replace("--max-model-len=8192", "--max-model-len=4096"),
    );
    let _op = Operator::start(&ns.name);
    let after = eventually("the change applied after restart", WAIT, || async {
        let d = deployment(&client, &ns.name, "gemma").await?;
        let args = d.spec.as_ref()?.template.spec.as_ref()?.containers[0]
            .args
            .clone()?;
        args.contains(&"--max-model-len=4096".to_string())
            .then_some(d)
    })
    .await;
    assert_eq!(
        after.uid(),
        before.uid(),
        "the same Deployment, not a new one"
    );
    let all = Api::<Deployment>::namespaced(client.clone(), &ns.name)
        .list(&ListParams::default())
        .await
        .unwrap();
    assert_eq!(all.items.len(), 1, "no duplicate Deployments");
    let svcs = Api::<Service>::namespaced(client.clone(), &ns.name)
        .list(&ListParams::default())
        .await
        .unwrap();
    assert_eq!(svcs.items.len(), 1, "no duplicate Services");
}
