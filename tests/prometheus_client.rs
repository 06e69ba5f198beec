//! The Prometheus client against servers that misbehave, without a cluster: a pool author may
//! name any URL, so an answer of hundreds of megabytes, one that never ends, or one that never
//! comes must be refused within the byte cap and the timeout, and say only what kind of failure
//! it was.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::response::IntoResponse;
use crossover::load::http::{self, ClientOptions};
use crossover::load::prometheus::{PrometheusClient, Scope};
use tokio::sync::Semaphore;

static PERMITS: Semaphore = Semaphore::const_new(2);

/// Serves `handler` on a free loopback port; returns its base URL.
async fn serve(app: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    url
}

fn chunks() -> impl futures::Stream<Item = Result<Bytes, std::io::Error>> {
    let chunk = Bytes::from(vec![b' '; 64 * 1024]);
    futures::stream::repeat_with(move || Ok(chunk.clone()))
}

async fn read(url: &str) -> (Result<(), String>, Duration) {
    let client = PrometheusClient {
        http: http::client(&ClientOptions {
            timeout: Duration::from_secs(5),
            ..Default::default()
        })
        .unwrap(),
        base_url: url.to_string(),
        token: None,
        headers: vec![],
        timeout: Duration::from_secs(5),
    };
    let scope = Scope {
        namespaces: BTreeSet::from(["ml".to_string()]),
        selector: None,
    };
    let started = Instant::now();
    let r = client.read(&scope, &HashMap::new(), 60, &PERMITS).await;
    (r.map(|_| ()).map_err(|e| e.to_string()), started.elapsed())
}

#[tokio::test]
async fn hostile_prometheus_answers_are_refused_by_kind() {
    use futures::StreamExt;
    let huge = serve(axum::Router::new().fallback(|| async {
        (
            [("content-length", (300u64 << 20).to_string())],
            Body::from_stream(chunks().take(4800)),
        )
            .into_response()
    }))
    .await;
    let endless =
        serve(axum::Router::new().fallback(|| async { Body::from_stream(chunks()) })).await;
    let silent = serve(axum::Router::new().fallback(|| async {
        tokio::time::sleep(Duration::from_secs(60)).await;
        "late"
    }))
    .await;
    let reflecting = serve(axum::Router::new().fallback(|| async {
        (
            axum::http::StatusCode::BAD_REQUEST,
            r#"{"status":"error","errorType":"bad_data","error":"the secret is hunter2"}"#,
        )
    }))
    .await;
    for (url, want) in [
        (&huge, "larger than"),
        (&endless, "larger than"),
        (&silent, "timed out"),
        (&reflecting, "the query failed (bad_data)"),
    ] {
        let (r, took) = read(url).await;
        let e = r.expect_err("a hostile answer was accepted");
        println!("{want}: refused after {took:?}: {e}");
        assert!(e.contains(want), "{e}");
        assert!(!e.contains("hunter2"), "{e}");
        assert!(took < Duration::from_secs(6), "{took:?}");
    }
}
