//! Metrics sources an administrator defines (`PrometheusSource`, cluster-scoped, its Secrets and
//! ConfigMaps in the operator's namespace) against what a pool author can do with a pool: an
//! https Prometheus read with the administrator's CA, each misconfiguration named in a condition,
//! and no way for a user with rights only on pools to get a Secret's value out through one.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::HeaderMap;
use kube::api::Api;

use crossover::api::InferencePool;

use crate::harness::*;
use crate::load::replicas;
use crate::prometheus::{Prometheus, Setup, condition, pool};
use crate::sim::{Sim, pod_ips};

/// A cluster-scoped PrometheusSource, deleted when dropped.
struct Source {
    name: String,
}

impl Source {
    fn apply(name: &str, spec: &str) -> Self {
        let manifest = format!(
            "apiVersion: crossover.dev/v1alpha1\nkind: PrometheusSource\nmetadata: {{name: {name}}}\nspec:\n{spec}"
        );
        let o = kubectl_with_stdin(&["apply", "-f", "-"], Some(&manifest));
        assert!(o.status.success(), "{}", stderr(&o));
        Self {
            name: name.to_string(),
        }
    }
}

impl Drop for Source {
    fn drop(&mut self) {
        let _ = kubectl(&["delete", "prometheussource", &self.name, "--wait=false"]);
    }
}

fn sourced(name: &str) -> String {
    format!("{{source: Prometheus, prometheus: {{sourceRef: {{name: {name}}}}}}}")
}

/// The operator, reading sources' Secrets and ConfigMaps from the test namespace.
fn operator(ns: &str) -> Operator {
    Operator::start_as(ns, &[], &["--source-namespace", ns], ns)
}

#[tokio::test]
async fn an_https_prometheus_with_a_ca_from_a_config_map_is_read() {
    let client = client().await;
    install_crd().await;
    let ns = TestNamespace::new(&client, "https").await;
    let prom = Prometheus::start_with(
        &ns.name,
        Setup {
            tls: true,
            ..Setup::default()
        },
    );
    let ca = prom.ca_pem();
    let cm = format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: prometheus-ca}}\ndata:\n  ca.crt: |\n{}",
        ca.lines().map(|l| format!("    {l}\n")).collect::<String>()
    );
    apply(&ns.name, &cm);
    let _source = Source::apply(
        &ns.name,
        &format!(
            "  url: {}\n  ca: {{configMapKeyRef: {{name: prometheus-ca, key: ca.crt}}}}\n",
            prom.url
        ),
    );
    let _op = operator(&ns.name);
    apply(&ns.name, &pool("queried", &sourced(&ns.name)));
    eventually("a running pod", Duration::from_secs(60), || async {
        (!pod_ips(&client, &ns.name, "queried").await.is_empty()).then_some(())
    })
    .await;
    let sim = Sim::start(&client, &ns.name, "queried", 1000.0).await;
    sim.load("queried", 3.0, 200.0, 500.0).await;
    let pools: Api<InferencePool> = Api::namespaced(client.clone(), &ns.name);
    eventually(
        "scaled to 3 on load read over https",
        Duration::from_secs(120),
        || async {
            sim.sync(&client, &ns.name, "queried").await;
            prom.targets(&ns.name, &pod_ips(&client, &ns.name, "queried").await);
            (replicas(&client, &ns.name, "queried").await? == 3).then_some(())
        },
    )
    .await;
    let c = condition(&pools, "queried", "MetricsAvailable")
        .await
        .unwrap();
    assert_eq!(c.status, "True", "{}", c.message);
}

#[tokio::test]
async fn each_source_misconfiguration_is_named_in_the_condition() {
    let client = client().await;
    install_crd().await;
    let ns = TestNamespace::new(&client, "badsource").await;
    let prom = Prometheus::start_with(
        &ns.name,
        Setup {
            tls: true,
            ..Setup::default()
        },
    );
    // A token over plain http: the API server refuses the source itself.
    let refused = kubectl_with_stdin(
        &["apply", "-f", "-"],
        Some(&format!(
            "apiVersion: crossover.dev/v1alpha1\nkind: PrometheusSource\nmetadata: {{name: {}-http}}\nspec:\n  url: http://127.0.0.1:9\n  bearerTokenSecretRef: {{name: t, key: token}}\n",
            ns.name
        )),
    );
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains("would travel over plain http"),
        "{}",
        stderr(&refused)
    );
    // A token Secret that does not exist, on an https source.
    let _source = Source::apply(
        &ns.name,
        &format!(
            "  url: {}\n  bearerTokenSecretRef: {{name: prometheus-token, key: token}}\n",
            prom.url
        ),
    );
    let _op = operator(&ns.name);
    apply(&ns.name, &pool("missing", &sourced("no-such-source")));
    apply(&ns.name, &pool("nosecret", &sourced(&ns.name)));
    let pools: Api<InferencePool> = Api::namespaced(client.clone(), &ns.name);
    for (name, reason, words) in [
        (
            "missing",
            "SourceNotFound",
            "PrometheusSource no-such-source does not exist",
        ),
        (
            "nosecret",
            "SecretUnreadable",
            "prometheus-token does not exist",
        ),
    ] {
        let c = eventually(reason, Duration::from_secs(60), || async {
            let c = condition(&pools, name, "MetricsAvailable").await?;
            (c.reason == reason).then_some(c)
        })
        .await;
        assert_eq!(c.status, "False");
        assert!(c.message.contains(words), "{}", c.message);
    }
}

/// A plain HTTP server that answers every Prometheus query with an empty result and records
/// the Authorization header of each request.
async fn recorder() -> (String, Arc<Mutex<Vec<Option<String>>>>) {
    let seen: Arc<Mutex<Vec<Option<String>>>> = Arc::default();
    let log = seen.clone();
    let app = axum::Router::new().fallback(move |headers: HeaderMap| {
        let log = log.clone();
        async move {
            let auth = headers
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            log.lock().unwrap().push(auth);
            (
                [("content-type", "application/json")],
                r#"{"status":"success","data":{"resultType":"matrix","result":[]}}"#,
            )
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (url, seen)
}

#[tokio::test]
async fn a_user_with_rights_only_on_pools_cannot_get_a_secret_out_through_one() {
    let client = client().await;
    install_crd().await;
    let ns = TestNamespace::new(&client, "exfil").await;
    let user = format!("alice-{}", ns.name);
    // Alice may manage InferencePools in this namespace, nothing else.
    apply(
        &ns.name,
        &format!(
            "apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata: {{name: pool-author}}\nrules:\n- apiGroups: [crossover.dev]\n  resources: [inferencepools]\n  verbs: [get, list, watch, create, update, patch, delete]\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {{name: pool-author}}\nroleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: pool-author}}\nsubjects:\n- {{apiGroup: rbac.authorization.k8s.io, kind: User, name: {user}}}\n"
        ),
    );
    apply(
        &ns.name,
        "apiVersion: v1\nkind: Secret\nmetadata: {name: prod-db}\nstringData: {password: hunter2}\n---\napiVersion: v1\nkind: Secret\nmetadata: {name: prometheus-token}\nstringData: {token: admin-token}\n",
    );
    let as_alice = |args: &[&str], stdin: Option<&str>| {
        let mut all = vec!["--as", user.as_str(), "-n", ns.name.as_str()];
        all.extend_from_slice(args);
        kubectl_with_stdin(&all, stdin)
    };
    let denied = as_alice(&["get", "secret", "prod-db"], None);
    assert!(
        !denied.status.success(),
        "alice can read Secrets: the test is void"
    );

    // 1. The old route, a per-pool Secret sent to a URL of her choosing: refused at admission.
    let (alice_url, alice_seen) = recorder().await;
    let old = pool(
        "exfil",
        &format!(
            "{{source: Prometheus, prometheus: {{url: \"{alice_url}\", bearerTokenSecret: {{name: prod-db, key: password}}}}}}"
        ),
    );
    let o = as_alice(&["apply", "-f", "-"], Some(&old));
    assert!(
        !o.status.success(),
        "the API server accepted bearerTokenSecret"
    );
    assert!(stderr(&o).contains("sourceRef"), "{}", stderr(&o));
    // Nor can she pair an administrator's source with her own URL.
    let both = pool(
        "exfil",
        &format!(
            "{{source: Prometheus, prometheus: {{url: \"{alice_url}\", sourceRef: {{name: {}}}}}}}",
            ns.name
        ),
    );
    let o = as_alice(&["apply", "-f", "-"], Some(&both));
    assert!(!o.status.success());
    assert!(stderr(&o).contains("exactly one of url"), "{}", stderr(&o));
    // Nor define or change a source (cluster-scoped, administrators only).
    let o = as_alice(&["get", "prometheussources"], None);
    assert!(!o.status.success(), "alice can read PrometheusSources");

    // 2. What she can do: a pool on her URL (gets no credentials), and a pool on the
    // administrator's source (whose token goes only to the administrator's URL).
    let (admin_url, admin_seen) = recorder().await;
    let _source = Source::apply(
        &ns.name,
        &format!(
            "  url: {admin_url}\n  bearerTokenSecretRef: {{name: prometheus-token, key: token}}\n  allowTokenOverHttp: true\n"
        ),
    );
    let _op = operator(&ns.name);
    let plain = pool(
        "plain",
        &format!("{{source: Prometheus, prometheus: {{url: \"{alice_url}\"}}}}"),
    );
    assert!(
        as_alice(&["apply", "-f", "-"], Some(&plain))
            .status
            .success()
    );
    let sourced_pool = pool("sourced", &sourced(&ns.name));
    assert!(
        as_alice(&["apply", "-f", "-"], Some(&sourced_pool))
            .status
            .success()
    );
    for name in ["plain", "sourced"] {
        eventually("a running pod", Duration::from_secs(60), || async {
            (!pod_ips(&client, &ns.name, name).await.is_empty()).then_some(())
        })
        .await;
    }
    eventually("both servers queried", Duration::from_secs(60), || async {
        (alice_seen.lock().unwrap().len() >= 2 && admin_seen.lock().unwrap().len() >= 2)
            .then_some(())
    })
    .await;
    let alice_got = alice_seen.lock().unwrap().clone();
    assert!(
        alice_got.iter().all(Option::is_none),
        "a credential reached the pool author's URL: {alice_got:?}"
    );
    let admin_got = admin_seen.lock().unwrap().clone();
    assert!(
        admin_got
            .iter()
            .all(|a| a.as_deref() == Some("Bearer admin-token")),
        "{admin_got:?}"
    );
}
