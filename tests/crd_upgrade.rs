//! Upgrading a real install, against the test control plane: the previous chart (0.1.0, as it
//! shipped, with its CRD in Helm's install-only crds/ folder; tests/cluster/testdata) installs an
//! old InferencePool CRD; the operator refuses to run against it (not ready, saying why, and a
//! Warning Event on its Pod) instead of writing status the old schema prunes; `helm upgrade` to
//! this chart upgrades the CRD, the waiting operator starts, and a status field the old schema did
//! not have is kept. Uninstalling leaves the CRD and the pools.
//!
//! A test binary of its own: it replaces the cluster-wide CRD, which the `cluster` binary's tests
//! share. cargo runs test binaries one after another, and this one leaves the committed CRD back.

#[path = "cluster/harness.rs"]
#[allow(dead_code)]
mod harness;

use std::collections::BTreeSet;
use std::process::{Command, Output};
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use kube::api::{Api, ListParams};

use harness::*;

fn helm(args: &[&str]) -> Output {
    Command::new("helm")
        .env("KUBECONFIG", kubeconfig())
        .args(args)
        .output()
        .expect("helm on PATH (make test puts the one built for the cluster there)")
}

fn ok(what: &str, o: Output) -> String {
    assert!(o.status.success(), "{what}: {}{}", stdout(&o), stderr(&o));
    stdout(&o)
}

const CRD: &str = "inferencepools.crossover.dev";

fn crd_json() -> serde_json::Value {
    serde_json::from_str(&ok(
        "kubectl get crd",
        kubectl(&["get", "crd", CRD, "-o", "json"]),
    ))
    .unwrap()
}

/// Every property path under `.status` in a CRD's schema (`status.cost.previousMonth.poolUsd`).
fn status_paths(crd: &serde_json::Value) -> BTreeSet<String> {
    fn walk(schema: &serde_json::Value, at: &str, out: &mut BTreeSet<String>) {
        if let Some(props) = schema["properties"].as_object() {
            for (k, v) in props {
                let path = format!("{at}.{k}");
                out.insert(path.clone());
                walk(v, &path, out);
            }
        }
        if schema["items"].is_object() {
            walk(&schema["items"], &format!("{at}[]"), out);
        }
    }
    let mut out = BTreeSet::new();
    walk(
        &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"],
        "status",
        &mut out,
    );
    out
}

/// The value at a dotted path (no list steps) in a JSON object, if present.
fn at<'a>(v: &'a serde_json::Value, path: &str) -> Option<&'a serde_json::Value> {
    path.split('.')
        .try_fold(v, |v, k| v.get(k))
        .filter(|v| !v.is_null())
}

fn pool_manifest(name: &str) -> String {
    format!(
        r#"apiVersion: crossover.dev/v1alpha1
kind: InferencePool
metadata: {{name: {name}}}
spec:
  model: google/gemma-4-31b-it
  engine: {{port: 8080}}
  gpu: {{count: 1, product: NVIDIA-H100-80GB-HBM3}}
  minReplicas: 1
  maxReplicas: 2
  scaling: {{intervalSeconds: 2}}
  cost: {{replicaMonthlyUsd: 205}}
  compareTo: {{model: gpt-5, inputUsdPerMillionTokens: 2.5, outputUsdPerMillionTokens: 10}}
"#
    )
}

async fn get(port: u16, path: &str) -> Option<(u16, String)> {
    let r = reqwest::get(format!("http://127.0.0.1:{port}{path}"))
        .await
        .ok()?;
    Some((r.status().as_u16(), r.text().await.ok()?))
}

/// Puts the committed CRD back for whatever runs next, even when the test fails half way, with no
/// Helm release claiming it (the upgraded release keeps it on uninstall).
struct RestoreCrd;

impl Drop for RestoreCrd {
    fn drop(&mut self) {
        let _ = kubectl(&[
            "annotate",
            "crd",
            CRD,
            "meta.helm.sh/release-name-",
            "meta.helm.sh/release-namespace-",
            "helm.sh/resource-policy-",
        ]);
        let _ = kubectl(&["label", "crd", CRD, "app.kubernetes.io/managed-by-"]);
        let crds = repo().join("crds");
        let _ = kubectl(&[
            "apply",
            "--server-side",
            "--force-conflicts",
            "-f",
            crds.to_str().unwrap(),
        ]);
    }
}

#[tokio::test]
async fn an_older_crd_is_refused_and_helm_upgrade_from_the_previous_chart_carries_a_new_status_field()
 {
    let client = client().await;
    let _restore = RestoreCrd;
    // Start from no CRD at all, as a cluster that never had crossover: Helm's crds/ folder only
    // installs a CRD that does not exist yet.
    let o = kubectl(&[
        "delete",
        "crd",
        CRD,
        "--ignore-not-found",
        "--wait=true",
        "--timeout=60s",
    ]);
    ok("kubectl delete crd", o);
    let ns = TestNamespace::new(&client, "upgrade").await;
    let previous = repo().join("tests/cluster/testdata/crossover-0.1.0.tgz");
    ok(
        "helm install of the previous chart",
        helm(&[
            "install",
            "xo",
            previous.to_str().unwrap(),
            "-n",
            &ns.name,
            "--set",
            "replicaCount=1",
            "--wait",
            "--timeout",
            "90s",
        ]),
    );
    let release = ReleaseGuard(ns.name.clone());
    let old_crd = crd_json();
    assert!(
        at(&old_crd, "metadata.annotations")
            .and_then(|a| a.get(crossover::api::SCHEMA_VERSION_ANNOTATION))
            .is_none(),
        "the previous chart's CRD predates the schema-version annotation"
    );
    let new_fields: Vec<String> =
        status_paths(&serde_json::to_value(crossover::api::crd()).unwrap())
            .difference(&status_paths(&old_crd))
            .filter(|p| !p.contains("[]"))
            .cloned()
            .collect();
    assert!(
        !new_fields.is_empty(),
        "this CRD declares no status field the previous one lacks: nothing for the upgrade to carry"
    );
    eprintln!("status fields the previous CRD lacks: {new_fields:?}");

    // The hazard the refusal prevents: under the old CRD a new status field is silently dropped.
    apply(&ns.name, &pool_manifest("pruned"));
    let field = new_fields
        .iter()
        .find(|p| p.matches('.').count() == 1)
        .cloned()
        .unwrap_or_else(|| new_fields[0].clone());
    let leaf = field.trim_start_matches("status.");
    let patch = serde_json::json!({"status": {leaf: "written"}}).to_string();
    let o = kubectl(&[
        "patch",
        "ipool",
        "pruned",
        "-n",
        &ns.name,
        "--subresource=status",
        "--type=merge",
        "-p",
        &patch,
    ]);
    ok("status patch under the old CRD", o);
    let pruned: serde_json::Value = serde_json::from_str(&ok(
        "kubectl get ipool",
        kubectl(&["get", "ipool", "pruned", "-n", &ns.name, "-o", "json"]),
    ))
    .unwrap();
    assert!(
        at(&pruned, &field).is_none(),
        "the old schema keeps {field}: the test would prove nothing"
    );

    // This operator, as the release's pod would run it, against the old CRD: it waits.
    let pod = Api::<Pod>::namespaced(client.clone(), &ns.name)
        .list(&ListParams::default().labels("app.kubernetes.io/instance=xo"))
        .await
        .unwrap()
        .items
        .into_iter()
        .next()
        .expect("the release's operator pod");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let address = format!("127.0.0.1:{port}");
    let uid = pod.uid().unwrap();
    let _op = Operator::start_as(
        &ns.name,
        &[
            ("POD_NAME", &pod.name_any()),
            ("POD_NAMESPACE", &ns.name),
            ("POD_UID", &uid),
        ],
        &["--probe-address", &address],
        &ns.name,
    );
    let (_, body) = eventually("/readyz says why", Duration::from_secs(30), || async {
        let (status, body) = get(port, "/readyz").await?;
        (status == 503 && body.contains("schema version")).then_some((status, body))
    })
    .await;
    assert!(
        body.contains("schema version 0, older than this operator's"),
        "{body}"
    );
    let event = eventually(
        "a CRDOutdated Event on the operator's Pod",
        Duration::from_secs(30),
        || async {
            let o = kubectl(&[
                "get",
                "events",
                "-n",
                &ns.name,
                "--field-selector",
                &format!("involvedObject.uid={uid},reason=CRDOutdated"),
                "-o",
                "json",
            ]);
            let list: serde_json::Value = serde_json::from_str(&stdout(&o)).ok()?;
            list["items"].as_array()?.first().cloned()
        },
    )
    .await;
    assert_eq!(event["type"], "Warning");
    apply(&ns.name, &pool_manifest("carried"));
    tokio::time::sleep(Duration::from_secs(3)).await;
    let o = kubectl(&["get", "deployment", "carried", "-n", &ns.name]);
    assert!(
        !o.status.success(),
        "the operator ran against the old CRD: it built the pool's Deployment"
    );

    // helm upgrade to this chart: the CRD is a template now, so Helm adopts and upgrades it.
    let chart = repo().join("charts/crossover");
    ok(
        "helm upgrade",
        helm(&[
            "upgrade",
            "xo",
            chart.to_str().unwrap(),
            "-n",
            &ns.name,
            "--reset-values",
            "--set",
            "replicaCount=1",
            "--take-ownership",
            "--wait",
            "--timeout",
            "90s",
        ]),
    );
    let upgraded = crd_json();
    assert_eq!(
        at(&upgraded, "metadata.annotations").unwrap()[crossover::api::SCHEMA_VERSION_ANNOTATION],
        crossover::api::CRD_SCHEMA_VERSION.to_string()
    );
    assert_eq!(
        at(&upgraded, "metadata.annotations").unwrap()["helm.sh/resource-policy"],
        "keep"
    );
    // The waiting operator notices within its retry interval and runs the pool; the status it
    // writes keeps the fields the old schema would have dropped.
    eventually(
        "/readyz 200 after the upgrade",
        Duration::from_secs(30),
        || async { (get(port, "/readyz").await?.0 == 200).then_some(()) },
    )
    .await;
    let kept = eventually(
        "a status with fields the previous CRD lacked",
        Duration::from_secs(60),
        || async {
            let o = kubectl(&["get", "ipool", "carried", "-n", &ns.name, "-o", "json"]);
            let pool: serde_json::Value = serde_json::from_str(&stdout(&o)).ok()?;
            let kept: Vec<&String> = new_fields
                .iter()
                .filter(|f| at(&pool, f).is_some())
                .collect();
            (!kept.is_empty()).then(|| kept.into_iter().cloned().collect::<Vec<_>>())
        },
    )
    .await;
    eprintln!("kept after the upgrade: {kept:?}");

    // Uninstalling keeps the CRD and every pool.
    drop(release);
    let o = kubectl(&["get", "ipool", "carried", "-n", &ns.name]);
    assert!(
        o.status.success(),
        "the pool went with the release: {}",
        stderr(&o)
    );
    ok(
        "the CRD stays after helm uninstall",
        kubectl(&["get", "crd", CRD]),
    );
}

/// Uninstalls the release when dropped.
struct ReleaseGuard(String);

impl Drop for ReleaseGuard {
    fn drop(&mut self) {
        let _ = helm(&["uninstall", "xo", "-n", &self.0, "--wait"]);
    }
}
