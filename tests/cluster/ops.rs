//! The operator's production surface: health, readiness and metrics over HTTP, and leader
//! election on a Lease so that of two replicas only one writes, and a standby takes over.

use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::Api;

use crate::harness::*;
use crate::pools::pool_yaml;

/// A port free right now on 127.0.0.1.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// GET `path` on the operator at `port`: (status, body), or None while it does not answer.
async fn get(port: u16, path: &str) -> Option<(u16, String)> {
    let r = reqwest::get(format!("http://127.0.0.1:{port}{path}"))
        .await
        .ok()?;
    Some((r.status().as_u16(), r.text().await.ok()?))
}

async fn metric(port: u16, line_start: &str) -> Option<f64> {
    let (_, body) = get(port, "/metrics").await?;
    body.lines()
        .find(|l| l.starts_with(line_start))?
        .rsplit(' ')
        .next()?
        .parse()
        .ok()
}

/// An operator replica named `who` with a 4 s lease, serving health and metrics on `port`.
fn replica(ns: &str, who: &str, port: u16) -> Operator {
    let address = format!("127.0.0.1:{port}");
    Operator::start_as(
        ns,
        &[("POD_NAME", who)],
        &["--probe-address", &address, "--lease-duration-seconds", "4"],
        &format!("{ns}-{who}"),
    )
}

async fn holder(client: &kube::Client, ns: &str) -> Option<String> {
    Api::<Lease>::namespaced(client.clone(), ns)
        .get_opt(&format!("crossover-leader-{ns}"))
        .await
        .ok()??
        .spec?
        .holder_identity
}

async fn has_deployment(client: &kube::Client, ns: &str, name: &str) -> bool {
    Api::<Deployment>::namespaced(client.clone(), ns)
        .get_opt(name)
        .await
        .ok()
        .flatten()
        .is_some()
}

#[tokio::test]
async fn health_readiness_and_metrics_are_served() {
    let client = client().await;
    install_crd().await;
    let ns = TestNamespace::new(&client, "ops").await;
    let port = free_port();
    let address = format!("127.0.0.1:{port}");
    let _op = Operator::start_as(&ns.name, &[], &["--probe-address", &address], &ns.name);
    let (status, body) = eventually("/healthz", Duration::from_secs(30), || {
        get(port, "/healthz")
    })
    .await;
    assert_eq!((status, body.trim()), (200, "ok"));
    eventually("/readyz 200", Duration::from_secs(30), || async {
        (get(port, "/readyz").await?.0 == 200).then_some(())
    })
    .await;
    apply(&ns.name, &pool_yaml("measured", ""));
    eventually(
        "a counted reconcile and the leader gauge",
        Duration::from_secs(60),
        || async {
            let ok = metric(port, r#"crossover_reconciles_total{result="ok""#).await?;
            let leader = metric(port, "crossover_leader ").await?;
            (ok >= 1.0 && leader == 1.0).then_some(())
        },
    )
    .await;
    let (_, body) = get(port, "/metrics").await.unwrap();
    assert!(
        body.contains("crossover_reconcile_duration_seconds_bucket"),
        "{body}"
    );
}

#[tokio::test]
async fn only_the_lease_holder_writes_and_a_standby_takes_over() {
    let client = client().await;
    install_crd().await;
    let ns = TestNamespace::new(&client, "leader").await;
    let (port_a, port_b) = (free_port(), free_port());
    let a = replica(&ns.name, "replica-a", port_a);
    eventually(
        "replica-a holds the lease",
        Duration::from_secs(30),
        || async { (holder(&client, &ns.name).await? == "replica-a").then_some(()) },
    )
    .await;
    let _b = replica(&ns.name, "replica-b", port_b);
    // The standby is ready (it can take over) but does not lead.
    eventually(
        "replica-b ready as a standby",
        Duration::from_secs(30),
        || async {
            let ready = get(port_b, "/readyz").await?.0 == 200;
            let leader = metric(port_b, "crossover_leader ").await?;
            (ready && leader == 0.0).then_some(())
        },
    )
    .await;

    apply(&ns.name, &pool_yaml("first", ""));
    eventually(
        "the leader builds the first pool",
        Duration::from_secs(60),
        || async {
            has_deployment(&client, &ns.name, "first")
                .await
                .then_some(())
        },
    )
    .await;
    // Only the leader reconciled: the standby has counted nothing.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let standby_reconciles = metric(port_b, "crossover_reconciles_total").await;
    assert_eq!(standby_reconciles, None, "the standby reconciled");
    assert_eq!(
        holder(&client, &ns.name).await.as_deref(),
        Some("replica-a")
    );

    // The leader dies without releasing: the standby takes over once the 4 s lease expires.
    a.stop();
    let killed = Instant::now();
    eventually(
        "replica-b takes the lease",
        Duration::from_secs(30),
        || async { (holder(&client, &ns.name).await? == "replica-b").then_some(()) },
    )
    .await;
    let took = killed.elapsed();
    eprintln!("standby took over {took:?} after the leader was killed (lease 4 s)");
    assert!(took < Duration::from_secs(12), "takeover took {took:?}");
    apply(&ns.name, &pool_yaml("second", ""));
    eventually(
        "the new leader builds the second pool",
        Duration::from_secs(60),
        || async {
            has_deployment(&client, &ns.name, "second")
                .await
                .then_some(())
        },
    )
    .await;
    let leader = metric(port_b, "crossover_leader ").await;
    assert_eq!(leader, Some(1.0));
}
