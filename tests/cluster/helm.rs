//! The Helm chart, with the real helm against the real API server: it lints; rendered with its
//! defaults and with every optional part on, the API server accepts every object (the monitoring
//! ones against the Prometheus Operator's own CRDs); a typo in values fails; its CRDs are the
//! committed ones; and the RBAC it grants, with and without `watchNamespace`, is exactly enough
//! to run a pool (proven by running the operator as the chart's ServiceAccount, through
//! impersonation) and nothing more (`kubectl auth can-i`). The upgrade from the previous chart,
//! which replaces the cluster-wide CRD, is in tests/crd_upgrade.rs, a binary of its own.

use std::process::{Command, Output};
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::rbac::v1::{ClusterRole, Role};
use kube::api::Api;
use tokio::sync::OnceCell;

use crossover::api::InferencePool;

use crate::harness::*;
use crate::pools::pool_yaml;

pub fn helm(args: &[&str]) -> Output {
    Command::new("helm")
        .env("KUBECONFIG", kubeconfig())
        .args(args)
        .output()
        .expect("helm on PATH (make test puts the one built for the cluster there)")
}

pub fn chart() -> String {
    repo()
        .join("charts/crossover")
        .to_str()
        .unwrap()
        .to_string()
}

/// Uninstalls on drop: the chart's ClusterRole and binding outlive the test namespace otherwise.
pub struct Release {
    pub name: &'static str,
    pub namespace: String,
}

impl Drop for Release {
    fn drop(&mut self) {
        let _ = helm(&["uninstall", self.name, "-n", &self.namespace]);
    }
}

/// The test kubeconfig, acting as `user` (the admin may impersonate anyone).
pub fn kubeconfig_as(user: &str, path: &std::path::Path) {
    let text = std::fs::read_to_string(kubeconfig()).unwrap();
    let mut kc: serde_json::Value = serde_saphyr::from_str(&text).unwrap();
    for u in kc["users"].as_array_mut().unwrap() {
        u["user"]["as"] = serde_json::Value::String(user.to_string());
    }
    std::fs::write(path, serde_saphyr::to_string(&kc).unwrap()).unwrap();
}

static MONITORING_CRDS: OnceCell<()> = OnceCell::const_new();

/// Installs the Prometheus Operator's ServiceMonitor, PodMonitor and PrometheusRule CRDs
/// (vendored in tests/cluster/testdata/monitoring-crds) once per run.
pub async fn install_monitoring_crds() {
    MONITORING_CRDS
        .get_or_init(|| async {
            let dir = repo().join("tests/cluster/testdata/monitoring-crds");
            let o = kubectl(&["apply", "--server-side", "-f", dir.to_str().unwrap()]);
            assert!(
                o.status.success(),
                "monitoring CRDs refused: {}",
                stderr(&o)
            );
            for crd in [
                "servicemonitors.monitoring.coreos.com",
                "podmonitors.monitoring.coreos.com",
                "prometheusrules.monitoring.coreos.com",
            ] {
                let o = kubectl(&[
                    "wait",
                    "--for=condition=Established",
                    &format!("crd/{crd}"),
                    "--timeout=60s",
                ]);
                assert!(o.status.success(), "{crd} not Established: {}", stderr(&o));
            }
        })
        .await;
}

/// The API server's version, for `helm template` (which otherwise assumes an old one and trips
/// the chart's kubeVersion).
pub async fn kube_version(client: &kube::Client) -> String {
    client.apiserver_version().await.unwrap().git_version
}

/// `helm template` of the chart into `namespace` with `--set` values; panics with helm's words.
pub fn render(kube_version: &str, namespace: &str, sets: &[&str]) -> String {
    let chart = chart();
    let mut args = vec![
        "template",
        "xo",
        &chart,
        "-n",
        namespace,
        "--kube-version",
        kube_version,
    ];
    for s in sets {
        args.extend(["--set", s]);
    }
    let o = helm(&args);
    assert!(o.status.success(), "helm template {sets:?}: {}", stderr(&o));
    stdout(&o)
}

/// Every optional part of the chart on.
pub const EVERYTHING_ON: &[&str] = &[
    "metrics.serviceMonitor.enabled=true",
    "metrics.serviceMonitor.labels.release=kube-prometheus-stack",
    "metrics.podMonitor.enabled=true",
    "metrics.prometheusRule.enabled=true",
    "metrics.prometheusRule.alertLabels.team=ml-platform",
    "metrics.dashboard.enabled=true",
    "nameOverride=xover",
    "extraArgs[0]=--clock-offset-seconds=0",
    "extraEnv[0].name=EXTRA",
    "extraEnv[0].value=on",
    "image.digest=sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
    "priorityClassName=",
    "podDisruptionBudget.maxUnavailable=1",
    "networkPolicy.enabled=true",
    "networkPolicy.extraEgress[0].ports[0].port=9090",
    "probeBindAddress=[::]",
];

/// The rendered documents of `kind`, as JSON.
fn documents(rendered: &str, kind: &str) -> Vec<serde_json::Value> {
    rendered
        .split("\n---")
        .filter_map(|d| serde_saphyr::from_str::<serde_json::Value>(d).ok())
        .filter(|d| d["kind"] == kind)
        .collect()
}

#[tokio::test]
async fn the_chart_with_defaults_and_with_every_option_on_is_accepted_by_the_api_server() {
    let client = client().await;
    install_crd().await;
    install_monitoring_crds().await;
    let ns = TestNamespace::new(&client, "chart").await;
    let version = kube_version(&client).await;
    let lint = helm(&["lint", "--strict", &chart()]);
    assert!(
        lint.status.success(),
        "helm lint --strict: {}{}",
        stdout(&lint),
        stderr(&lint)
    );
    let watch = format!("watchNamespace={}", ns.name);
    let mut everything: Vec<&str> = EVERYTHING_ON.to_vec();
    everything.push(&watch);
    for (what, sets) in [("defaults", vec![]), ("every option on", everything)] {
        let rendered = render(&version, &ns.name, &sets);
        let o = kubectl_with_stdin(
            &["apply", "--dry-run=server", "-n", &ns.name, "-f", "-"],
            Some(&rendered),
        );
        assert!(
            o.status.success(),
            "the API server refused the chart with {what}: {}",
            stderr(&o)
        );
        eprintln!("{what}:\n{}", stdout(&o));
    }
    let rendered = render(&version, &ns.name, EVERYTHING_ON);
    for kind in [
        "ServiceMonitor",
        "PodMonitor",
        "PrometheusRule",
        "ConfigMap",
        "NetworkPolicy",
    ] {
        assert_eq!(documents(&rendered, kind).len(), 1, "one {kind}");
    }
    let dashboard = &documents(&rendered, "ConfigMap")[0];
    assert_eq!(dashboard["metadata"]["labels"]["grafana_dashboard"], "1");
    let monitor = &documents(&rendered, "PodMonitor")[0];
    assert_eq!(
        monitor["spec"]["podMetricsEndpoints"][0]["port"], "http",
        "vLLM's port"
    );
    // A typo in values fails the install, naming the key.
    let chart = chart();
    let typo = helm(&[
        "template",
        "xo",
        &chart,
        "--kube-version",
        &version,
        "--set",
        "leaderElection.leaseDuration=20",
    ]);
    assert!(!typo.status.success(), "a misspelt value was accepted");
    assert!(stderr(&typo).contains("leaseDuration"), "{}", stderr(&typo));
}

#[tokio::test]
async fn the_chart_image_follows_app_version_and_its_crds_are_the_committed_ones() {
    let client = client().await;
    let version = kube_version(&client).await;
    let chart: serde_json::Value = serde_saphyr::from_str(
        &std::fs::read_to_string(repo().join("charts/crossover/Chart.yaml")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        chart["appVersion"],
        env!("CARGO_PKG_VERSION"),
        "appVersion is the operator's version, the tag make image builds"
    );
    let image = |sets: &[&str]| {
        let rendered = render(&version, "crossover", sets);
        documents(&rendered, "Deployment")[0]["spec"]["template"]["spec"]["containers"][0]["image"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let v = env!("CARGO_PKG_VERSION");
    assert_eq!(image(&[]), format!("ghcr.io/crossover-dev/crossover:{v}"));
    assert_eq!(
        image(&["image.tag=edge", "image.registry=registry.example:5000"]),
        "registry.example:5000/crossover-dev/crossover:edge"
    );
    let digest = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    assert_eq!(
        image(&[
            &format!("image.digest={digest}"),
            "global.imageRegistry=mirror.local"
        ]),
        format!("mirror.local/crossover-dev/crossover@{digest}")
    );
    // The CRDs the chart renders are the committed ones, kept on uninstall.
    let rendered = render(&version, "crossover", &[]);
    let crds = documents(&rendered, "CustomResourceDefinition");
    let generated = serde_json::to_value(crossover::api::crd()).unwrap();
    let ours = crds
        .iter()
        .find(|c| c["metadata"]["name"] == "inferencepools.crossover.dev")
        .expect("the InferencePool CRD in the chart");
    // Helm's YAML round trip writes 0.0 as 0: compare numbers as numbers.
    assert_eq!(
        numbers_as_f64(&ours["spec"]),
        numbers_as_f64(&generated["spec"])
    );
    let annotations = &ours["metadata"]["annotations"];
    assert_eq!(annotations["helm.sh/resource-policy"], "keep");
    assert_eq!(
        annotations[crossover::api::SCHEMA_VERSION_ANNOTATION],
        crossover::api::CRD_SCHEMA_VERSION.to_string()
    );
    let without = render(&version, "crossover", &["crds.enabled=false"]);
    assert!(documents(&without, "CustomResourceDefinition").is_empty());
    // kubectl explain tells a person what an InferencePool is, not kube-derive's placeholder.
    install_crd().await;
    let explain = kubectl(&["explain", "inferencepools.crossover.dev"]);
    let text = stdout(&explain);
    assert!(
        text.contains("runs one model on vLLM") && !text.contains("Auto-generated"),
        "kubectl explain: {text}{}",
        stderr(&explain)
    );
}

fn numbers_as_f64(v: &serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match v {
        Value::Number(n) => serde_json::json!(n.as_f64()),
        Value::Array(a) => Value::Array(a.iter().map(numbers_as_f64).collect()),
        Value::Object(o) => Value::Object(
            o.iter()
                .map(|(k, v)| (k.clone(), numbers_as_f64(v)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// `kubectl auth can-i VERB RESOURCE [-n NS | -A]` as `who`; `RESOURCE#sub` asks about the
/// subresource `sub`, `RESOURCE/NAME` about one object.
fn can(who: &str, verb: &str, resource: &str, namespace: Option<&str>) -> bool {
    let (resource, subresource) = match resource.split_once('#') {
        Some((r, sub)) => (r, Some(sub)),
        None => (resource, None),
    };
    let mut args = vec!["auth", "can-i", verb, resource, "--as", who];
    if let Some(sub) = subresource {
        args.extend(["--subresource", sub]);
    }
    match namespace {
        Some(ns) => args.extend(["-n", ns]),
        None => args.push("--all-namespaces"),
    }
    let o = kubectl(&args);
    match stdout(&o).trim() {
        "yes" => true,
        "no" => false,
        other => panic!("kubectl auth can-i {args:?}: {other} {}", stderr(&o)),
    }
}

fn assert_can(who: &str, checks: &[(bool, &str, &str, Option<&str>)]) {
    let wrong: Vec<String> = checks
        .iter()
        .filter(|(want, verb, resource, ns)| can(who, verb, resource, *ns) != *want)
        .map(|(want, verb, resource, ns)| {
            format!(
                "{verb} {resource} in {}: expected {}",
                ns.unwrap_or("all namespaces"),
                if *want { "yes" } else { "no" }
            )
        })
        .collect();
    assert!(wrong.is_empty(), "RBAC of {who}:\n{}", wrong.join("\n"));
}

/// Installs the chart as release `xo` into `namespace` (CRDs and aggregated roles stay with the
/// harness and with one test of their own: they are cluster-wide), waiting for it.
fn install(namespace: &str, sets: &[&str]) -> Release {
    let chart = chart();
    let mut args = vec![
        "install",
        "xo",
        &chart,
        "-n",
        namespace,
        "--set",
        "replicaCount=1",
        "--set",
        "crds.enabled=false",
        "--set",
        "rbac.aggregateToDefaultRoles=false",
        "--wait",
        "--timeout",
        "90s",
    ];
    for s in sets {
        args.extend(["--set", s]);
    }
    let o = helm(&args);
    let release = Release {
        name: "xo",
        namespace: namespace.to_string(),
    };
    assert!(
        o.status.success(),
        "helm install: {}{}",
        stdout(&o),
        stderr(&o)
    );
    release
}

/// Runs the operator as the chart's ServiceAccount, watching `watched`, with the Pod identity the
/// chart gives it in `release_ns`.
fn operator_as_chart(release_ns: &str, watched: &str) -> Operator {
    let as_chart = std::env::temp_dir().join(format!("kubeconfig-{release_ns}-{watched}"));
    kubeconfig_as(
        &format!("system:serviceaccount:{release_ns}:xo-crossover"),
        &as_chart,
    );
    Operator::start_as(
        watched,
        &[
            ("KUBECONFIG", as_chart.to_str().unwrap()),
            ("POD_NAMESPACE", release_ns),
            ("POD_NAME", "xo-crossover-0"),
        ],
        &[],
        &format!("{release_ns}-as-chart"),
    )
}

/// Applies a pool and waits for its Deployment, Service and status, as the chart's RBAC allows.
async fn runs_a_pool(client: &kube::Client, ns: &str) {
    apply(ns, &pool_yaml("rbac", ""));
    let pools: Api<InferencePool> = Api::namespaced(client.clone(), ns);
    eventually(
        "children and status written under the chart's RBAC",
        Duration::from_secs(60),
        || async {
            let deployment = Api::<Deployment>::namespaced(client.clone(), ns)
                .get_opt("rbac")
                .await
                .ok()??;
            Api::<Service>::namespaced(client.clone(), ns)
                .get_opt("rbac")
                .await
                .ok()??;
            let status = pools.get("rbac").await.ok()?.status?;
            (deployment.metadata.name.is_some() && status.observed_generation == Some(1))
                .then_some(())
        },
    )
    .await;
}

fn assert_no_refusals(log_name: &str) {
    let log = std::fs::read_to_string(
        std::env::temp_dir().join(format!("crossover-operator-{log_name}.log")),
    )
    .unwrap();
    assert!(
        !log.to_lowercase().contains("forbidden"),
        "the operator hit RBAC refusals:\n{log}"
    );
}

#[tokio::test]
async fn the_chart_installs_and_its_rbac_is_enough_to_run_a_pool() {
    let client = client().await;
    install_crd().await;
    let ns = TestNamespace::new(&client, "helm").await;
    let other = TestNamespace::new(&client, "helm-other").await;
    let started = Instant::now();
    let _release = install(&ns.name, &[]);
    let installed = started.elapsed();
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
        .get("xo-crossover")
        .await
        .expect("the release namespace's Role (Lease, source credentials)");

    // Run the operator as the chart's ServiceAccount: every read, apply, status write, Event and
    // Lease goes through the chart's RBAC, checked by the real API server.
    let _op = operator_as_chart(&ns.name, &ns.name);
    runs_a_pool(&client, &ns.name).await;
    eprintln!(
        "helm install --wait took {:.1}s; to a pool with status {:.1}s (operator as the chart's ServiceAccount)",
        installed.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    let sa = format!("system:serviceaccount:{}:xo-crossover", ns.name);
    let (here, there) = (Some(ns.name.as_str()), Some(other.name.as_str()));
    assert_can(
        &sa,
        &[
            // What the operator does, in every namespace (it watches them all).
            (true, "create", "deployments.apps", there),
            (true, "patch", "services", there),
            (true, "watch", "pods", None),
            (true, "patch", "inferencepools.crossover.dev#status", there),
            (true, "create", "events.events.k8s.io", there),
            (
                true,
                "get",
                "customresourcedefinitions.apiextensions.k8s.io/inferencepools.crossover.dev",
                None,
            ),
            // The Lease and the PrometheusSource credentials, in its own namespace only.
            (true, "get", "secrets", here),
            (true, "get", "configmaps", here),
            (true, "create", "leases.coordination.k8s.io", here),
            (false, "create", "leases.coordination.k8s.io", there),
            (false, "get", "secrets", there),
            (false, "get", "secrets", None),
            (false, "list", "secrets", here),
            // Nothing it does not use.
            (false, "patch", "inferencepools.crossover.dev", there),
            (false, "delete", "deployments.apps", there),
            (false, "create", "pods", there),
            (false, "update", "deployments.apps", there),
            (
                false,
                "list",
                "customresourcedefinitions.apiextensions.k8s.io",
                None,
            ),
            (
                false,
                "get",
                "customresourcedefinitions.apiextensions.k8s.io/other.example.com",
                None,
            ),
        ],
    );
    assert_no_refusals(&format!("{}-as-chart", ns.name));
}

#[tokio::test]
async fn with_watch_namespace_the_chart_grants_pool_rights_in_that_namespace_only() {
    let client = client().await;
    install_crd().await;
    let release_ns = TestNamespace::new(&client, "helm-release").await;
    let watched = TestNamespace::new(&client, "helm-watched").await;
    let other = TestNamespace::new(&client, "helm-elsewhere").await;
    let _release = install(
        &release_ns.name,
        &[&format!("watchNamespace={}", watched.name)],
    );
    let sa = format!("system:serviceaccount:{}:xo-crossover", release_ns.name);
    let (r, w, o) = (
        Some(release_ns.name.as_str()),
        Some(watched.name.as_str()),
        Some(other.name.as_str()),
    );
    assert_can(
        &sa,
        &[
            // Pools and their children in the watched namespace.
            (true, "create", "deployments.apps", w),
            (true, "patch", "services", w),
            (true, "list", "pods", w),
            (true, "patch", "inferencepools.crossover.dev#status", w),
            (true, "create", "events.events.k8s.io", w),
            // Nowhere else: not cluster-wide, not elsewhere, not even in its own namespace.
            (false, "create", "deployments.apps", None),
            (false, "create", "deployments.apps", o),
            (false, "create", "deployments.apps", r),
            (false, "patch", "services", o),
            (false, "list", "pods", o),
            (false, "list", "inferencepools.crossover.dev", o),
            (false, "list", "inferencepools.crossover.dev", None),
            // The Lease and the source credentials in the release namespace, never the watched.
            (true, "create", "leases.coordination.k8s.io", r),
            (false, "create", "leases.coordination.k8s.io", w),
            (true, "get", "secrets", r),
            (false, "get", "secrets", w),
            (false, "get", "secrets", None),
            // Cluster-wide only what is cluster-scoped.
            (
                true,
                "get",
                "customresourcedefinitions.apiextensions.k8s.io/inferencepools.crossover.dev",
                None,
            ),
        ],
    );
    // The operator still runs a pool with exactly that, and leads from its own namespace.
    let _op = operator_as_chart(&release_ns.name, &watched.name);
    runs_a_pool(&client, &watched.name).await;
    let lease = format!("crossover-leader-{}", watched.name);
    let o = kubectl(&["get", "lease", &lease, "-n", &release_ns.name]);
    assert!(
        o.status.success(),
        "the Lease {lease} is in the release namespace: {}",
        stderr(&o)
    );
    assert_no_refusals(&format!("{}-as-chart", release_ns.name));
}

#[tokio::test]
async fn pool_rights_travel_with_the_built_in_edit_and_view_roles() {
    let client = client().await;
    install_crd().await;
    let release_ns = TestNamespace::new(&client, "helm-aggregate").await;
    let team = TestNamespace::new(&client, "helm-team").await;
    // The one release in this run that renders the cluster-wide aggregated roles.
    let _release = install(&release_ns.name, &["rbac.aggregateToDefaultRoles=true"]);
    for (user, role) in [("alice", "edit"), ("bob", "view")] {
        let o = kubectl(&[
            "create",
            "rolebinding",
            &format!("{user}-{role}"),
            "-n",
            &team.name,
            &format!("--clusterrole={role}"),
            &format!("--user={user}"),
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
    }
    let t = Some(team.name.as_str());
    // The controller manager aggregates the rules into edit and view: wait for it.
    eventually(
        "InferencePool rules aggregated into edit",
        Duration::from_secs(30),
        || async { can("alice", "create", "inferencepools.crossover.dev", t).then_some(()) },
    )
    .await;
    assert_can(
        "alice",
        &[
            (true, "create", "inferencepools.crossover.dev", t),
            (true, "delete", "inferencepools.crossover.dev", t),
            (true, "patch", "inferencepools.crossover.dev#scale", t),
            (false, "patch", "inferencepools.crossover.dev#status", t),
            (false, "create", "inferencepools.crossover.dev", None),
        ],
    );
    eventually(
        "InferencePool rules aggregated into view",
        Duration::from_secs(30),
        || async { can("bob", "list", "inferencepools.crossover.dev", t).then_some(()) },
    )
    .await;
    assert_can(
        "bob",
        &[
            (true, "get", "inferencepools.crossover.dev", t),
            (true, "watch", "inferencepools.crossover.dev", t),
            (false, "create", "inferencepools.crossover.dev", t),
            (false, "patch", "inferencepools.crossover.dev#status", t),
        ],
    );
    // And alice, with nothing but edit, makes a pool the API server accepts.
    let alice = std::env::temp_dir().join(format!("kubeconfig-alice-{}", team.name));
    kubeconfig_as("alice", &alice);
    let o = Command::new("kubectl")
        .env("KUBECONFIG", &alice)
        .args(["apply", "-n", &team.name, "-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child
                .stdin
                .take()
                .unwrap()
                .write_all(pool_yaml("alices", "").as_bytes())?;
            child.wait_with_output()
        })
        .unwrap();
    assert!(o.status.success(), "alice's pool: {}", stderr(&o));
}
