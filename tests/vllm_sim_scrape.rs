//! End to end without a cluster: the simulator serves /metrics over HTTP, the scrape client reads
//! it, and derive() turns two scrapes into the Observation the controller would act on.

use std::net::SocketAddr;
use std::time::Duration;

use std::time::Instant;

use crossover::load::derive::between as derive;
use crossover::load::scrape::{ScrapeError, ScrapeTarget, scrape_pods, split_results};
use crossover::vllmsim::{Behavior, EngineConfig, LoadRequest, PodConfig, Simulator, server};
use tokio::sync::Semaphore;

/// The operator's global bound on scrapes in flight.
static PERMITS: Semaphore = Semaphore::const_new(32);

fn sim(engines: usize) -> Simulator {
    Simulator::new(PodConfig {
        model: "meta-llama/Llama-3.1-8B-Instruct".into(),
        engines,
        legacy_names: false,
        engine: EngineConfig {
            output_tokens_per_second: 2000.0,
            input_tokens_per_second: 20_000.0,
            per_request_output_tokens_per_second: 100.0,
            max_num_seqs: 256,
            kv_cache_tokens: 1_000_000.0,
            max_model_len: 8192,
        },
    })
}

fn local() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

fn targets(pods: &[SocketAddr]) -> Vec<ScrapeTarget> {
    pods.iter()
        .enumerate()
        .map(|(i, a)| ScrapeTarget {
            pod: format!("pod-{i}"),
            url: format!("http://{a}/metrics"),
        })
        .collect()
}

#[tokio::test]
async fn scraped_simulator_load_matches_pushed_load() {
    let pods = vec![
        ("llama".to_string(), local()),
        ("llama".to_string(), local()),
    ];
    let running = server::start(sim(2), local(), &pods, Duration::from_millis(50))
        .await
        .unwrap();
    let http = reqwest::Client::new();
    let load = LoadRequest {
        pool: Some("llama".into()),
        pod: None,
        requests_per_second: 10.0,
        input_tokens_per_request: 400.0,
        output_tokens_per_request: 100.0,
    };
    let resp = http
        .post(format!("http://{}/load", running.control))
        .body(serde_json::to_string(&load).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);

    // Let the pipeline fill (100 tokens at 100 tok/s: ~1 s per request), then measure 2 s.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let t = targets(&running.pods);
    let timeout = Duration::from_secs(2);
    let (prev, failed) = split_results(scrape_pods(&http, t.clone(), timeout, &PERMITS).await);
    assert!(failed.is_empty());
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (cur, _) = split_results(scrape_pods(&http, t, timeout, &PERMITS).await);

    let o = derive(&prev, &cur, 2);
    assert!(o.is_complete(), "{o:?}");
    assert!((o.output_tokens_per_second - 1000.0).abs() < 150.0, "{o:?}");
    assert!((o.input_tokens_per_second - 4000.0).abs() < 600.0, "{o:?}");
    assert!((o.requests_per_second - 10.0).abs() < 1.5, "{o:?}");
    assert_eq!(o.requests_waiting, 0.0);
    assert!(
        o.requests_running > 5.0 && o.requests_running < 15.0,
        "{o:?}"
    );
    assert_eq!(o.mean_output_tokens_per_request, Some(100.0));
    assert!(o.ttft_p90_seconds.unwrap() < 0.1, "{o:?}");
}

#[tokio::test]
async fn saturated_pod_queues_and_ttft_rises() {
    let pods = vec![("llama".to_string(), local())];
    let running = server::start(sim(1), local(), &pods, Duration::from_millis(50))
        .await
        .unwrap();
    // 40 req/s x 100 tokens = 4000 tok/s against 2000 tok/s of capacity
    running.shared.sim().set_load(&LoadRequest {
        pool: None,
        pod: None,
        requests_per_second: 40.0,
        input_tokens_per_request: 100.0,
        output_tokens_per_request: 100.0,
    });
    let http = reqwest::Client::new();
    let t = targets(&running.pods);
    let timeout = Duration::from_secs(2);
    tokio::time::sleep(Duration::from_secs(8)).await;
    let (prev, _) = split_results(scrape_pods(&http, t.clone(), timeout, &PERMITS).await);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (cur, _) = split_results(scrape_pods(&http, t, timeout, &PERMITS).await);
    let o = derive(&prev, &cur, 1);
    assert!(o.requests_waiting > 20.0, "{o:?}");
    assert!(o.output_tokens_per_second < 2300.0, "{o:?}");
    assert!(o.ttft_p50_seconds.unwrap() > 0.5, "{o:?}");
    let waiting_before = prev["pod-0"].reading.requests_waiting.unwrap();
    assert!(
        o.requests_waiting > waiting_before,
        "queue grows: {waiting_before} -> {o:?}"
    );
}

#[tokio::test]
async fn removed_pod_is_an_error_not_zeros() {
    let pods = vec![("a".to_string(), local()), ("a".to_string(), local())];
    let running = server::start(sim(1), local(), &pods, Duration::from_millis(50))
        .await
        .unwrap();
    let http = reqwest::Client::new();
    let gone = running.pods[1];
    let resp = http
        .delete(format!("http://{}/pods/{gone}", running.control))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    let results = scrape_pods(
        &http,
        targets(&running.pods),
        Duration::from_secs(1),
        &PERMITS,
    )
    .await;
    let (ok, failed) = split_results(results);
    assert_eq!(ok.len(), 1);
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].0, "pod-1");
    assert!(matches!(
        failed[0].1,
        ScrapeError::Request(_) | ScrapeError::Timeout(_)
    ));
    let o = derive(&ok, &ok, 2);
    assert!(!o.is_complete());
}

#[tokio::test]
async fn restart_is_handled_as_a_counter_reset() {
    let pods = vec![("a".to_string(), local())];
    let running = server::start(sim(1), local(), &pods, Duration::from_millis(50))
        .await
        .unwrap();
    running.shared.sim().set_load(&LoadRequest {
        pool: None,
        pod: None,
        requests_per_second: 20.0,
        input_tokens_per_request: 100.0,
        output_tokens_per_request: 50.0,
    });
    let http = reqwest::Client::new();
    let t = targets(&running.pods);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (prev, _) =
        split_results(scrape_pods(&http, t.clone(), Duration::from_secs(1), &PERMITS).await);
    let addr = running.pods[0];
    let resp = http
        .post(format!("http://{}/pods/{addr}/restart", running.control))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (cur, _) = split_results(scrape_pods(&http, t, Duration::from_secs(1), &PERMITS).await);
    let o = derive(&prev, &cur, 1);
    // Never negative, and no more than the offered 2000 input tok/s (plus timing slack).
    assert!(
        o.input_tokens_per_second >= 0.0 && o.input_tokens_per_second < 2600.0,
        "{o:?}"
    );
    assert!(o.output_tokens_per_second >= 0.0, "{o:?}");
}

#[tokio::test]
async fn hostile_bodies_are_refused_at_the_cap_in_well_under_the_timeout() {
    let pods = vec![
        ("a".to_string(), local()),
        ("a".to_string(), local()),
        ("a".to_string(), local()),
    ];
    let running = server::start(sim(1), local(), &pods, Duration::from_millis(50))
        .await
        .unwrap();
    for (addr, behavior) in
        running
            .pods
            .iter()
            .zip([Behavior::Huge, Behavior::HugeChunked, Behavior::Endless])
    {
        running.shared.sim().pods.get_mut(addr).unwrap().behavior = behavior;
    }
    let http = crossover::load::http::client(&crossover::load::http::ClientOptions {
        timeout: Duration::from_secs(10),
        ..Default::default()
    })
    .unwrap();
    for (i, t) in targets(&running.pods).into_iter().enumerate() {
        let started = Instant::now();
        let (ok, failed) =
            split_results(scrape_pods(&http, vec![t], Duration::from_secs(10), &PERMITS).await);
        let took = started.elapsed();
        assert!(ok.is_empty());
        let kind = failed[0].1.kind();
        println!("hostile body {i}: refused as {kind} after {took:?}");
        assert_eq!(kind, "too_large", "{}", failed[0].1);
        assert!(took < Duration::from_secs(5), "{took:?}");
    }
}
