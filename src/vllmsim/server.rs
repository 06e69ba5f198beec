//! HTTP edges of the simulator: one listener per simulated pod (`/metrics`, `/health`), a control
//! listener to push load and add, remove or restart pods, and a ticker that advances every pod
//! with real time.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use serde::Deserialize;
use tokio::net::TcpListener;
use tokio::task::AbortHandle;

use futures::StreamExt;

use super::{Behavior, HUGE_BODY_BYTES, LoadRequest, Simulator};

/// Shared between the ticker, the pod listeners and the control endpoint.
#[derive(Clone)]
pub struct Shared {
    sim: Arc<Mutex<Simulator>>,
    listeners: Arc<Mutex<HashMap<SocketAddr, AbortHandle>>>,
}

impl Shared {
    pub fn new(sim: Simulator) -> Self {
        Self {
            sim: Arc::new(Mutex::new(sim)),
            listeners: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// The simulator state; a panicked holder cannot leave it half-stepped in a way that matters
    /// for a test double, so a poisoned lock is taken over.
    pub fn sim(&self) -> MutexGuard<'_, Simulator> {
        self.sim.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn listeners(&self) -> MutexGuard<'_, HashMap<SocketAddr, AbortHandle>> {
        self.listeners.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Binds a pod's listener (port 0 picks a free port) and starts serving it; returns its address.
    pub async fn add_pod(&self, address: SocketAddr, pool: &str) -> std::io::Result<SocketAddr> {
        let listener = TcpListener::bind(address).await?;
        let bound = listener.local_addr()?;
        self.sim().add_pod(bound, pool, unix_now_seconds());
        let app = Router::new()
            .route("/metrics", get(pod_metrics))
            .route("/health", get(|| async { "ok" }))
            .with_state((self.clone(), bound));
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        self.listeners().insert(bound, task.abort_handle());
        Ok(bound)
    }

    /// Stops a pod's listener and forgets it.
    pub fn remove_pod(&self, address: SocketAddr) -> bool {
        if let Some(task) = self.listeners().remove(&address) {
            task.abort();
        }
        self.sim().remove_pod(address)
    }

    /// Advances every pod with real time until the task is dropped.
    pub fn spawn_ticker(&self, tick: Duration) -> tokio::task::JoinHandle<()> {
        let shared = self.clone();
        tokio::spawn(async move {
            let mut interval = tokio::time::interval(tick);
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut last = Instant::now();
            loop {
                interval.tick().await;
                let now = Instant::now();
                shared.sim().step((now - last).as_secs_f64());
                last = now;
            }
        })
    }

    /// The control API: `GET /health`, `GET /pods`, `POST /load`, `POST /pods`,
    /// `DELETE /pods/{address}`, `POST /pods/{address}/restart`.
    pub fn control_router(&self) -> Router {
        Router::new()
            .route("/health", get(|| async { "ok" }))
            .route("/load", post(set_load))
            .route("/pods", get(list_pods).post(add_pod))
            .route("/pods/{address}", delete(remove_pod))
            .route("/pods/{address}/restart", post(restart_pod))
            .route("/pods/{address}/behavior", put(set_behavior))
            .with_state(self.clone())
    }
}

/// A running simulator: where its control endpoint and pods listen.
pub struct Running {
    pub shared: Shared,
    pub control: SocketAddr,
    pub pods: Vec<SocketAddr>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Running {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
        for (_, task) in self.shared.listeners().drain() {
            task.abort();
        }
    }
}

/// Starts the simulator: binds the control address and every `(pool, address)` pod, and a ticker.
pub async fn start(
    sim: Simulator,
    control: SocketAddr,
    pods: &[(String, SocketAddr)],
    tick: Duration,
) -> std::io::Result<Running> {
    let shared = Shared::new(sim);
    let mut bound = Vec::new();
    for (pool, addr) in pods {
        bound.push(shared.add_pod(*addr, pool).await?);
    }
    let listener = TcpListener::bind(control).await?;
    let control = listener.local_addr()?;
    let app = shared.control_router();
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let ticker = shared.spawn_ticker(tick);
    Ok(Running {
        shared,
        control,
        pods: bound,
        tasks: vec![server, ticker],
    })
}

fn unix_now_seconds() -> f64 {
    chrono::Utc::now().timestamp_millis() as f64 / 1000.0
}

/// 64 KiB of exposition lines of a family crossover does not read: cheap to skip, so only the
/// byte cap stops them.
fn filler() -> Bytes {
    static CHUNK: std::sync::OnceLock<Bytes> = std::sync::OnceLock::new();
    CHUNK
        .get_or_init(|| {
            let line = b"junk_metric_total{padding=\"xxxxxxxxxxxxxxxxxxxxxxxx\"} 1\n";
            let mut v = Vec::with_capacity(64 * 1024);
            while v.len() + line.len() <= 64 * 1024 {
                v.extend_from_slice(line);
            }
            v.resize(64 * 1024, b'\n');
            Bytes::from(v)
        })
        .clone()
}

async fn pod_metrics(State((shared, addr)): State<(Shared, SocketAddr)>) -> Response {
    let behavior = shared.sim().pods.get(&addr).map(|p| p.behavior);
    let chunks = futures::stream::repeat_with(|| Ok::<_, std::io::Error>(filler()));
    match behavior {
        Some(Behavior::Huge) => {
            let n = HUGE_BODY_BYTES / 65536;
            return (
                [(header::CONTENT_LENGTH, (n * 65536).to_string())],
                axum::body::Body::from_stream(chunks.take(n as usize)),
            )
                .into_response();
        }
        Some(Behavior::HugeChunked) => {
            let n = (HUGE_BODY_BYTES / 65536) as usize;
            return axum::body::Body::from_stream(chunks.take(n)).into_response();
        }
        Some(Behavior::Endless) => return axum::body::Body::from_stream(chunks).into_response(),
        Some(Behavior::Unavailable) => return StatusCode::SERVICE_UNAVAILABLE.into_response(),
        _ => {}
    }
    match shared.sim().render(addr) {
        Some(body) => (
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            body,
        )
            .into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

fn bad_request(e: impl std::fmt::Display) -> Response {
    (StatusCode::BAD_REQUEST, format!("{e}\n")).into_response()
}

fn json(status: StatusCode, value: &impl serde::Serialize) -> Response {
    match serde_json::to_string(value) {
        Ok(body) => (status, [(header::CONTENT_TYPE, "application/json")], body).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

async fn set_load(State(shared): State<Shared>, body: Bytes) -> Response {
    let req: LoadRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return bad_request(e),
    };
    let valid = [
        req.requests_per_second,
        req.input_tokens_per_request,
        req.output_tokens_per_request,
    ]
    .iter()
    .all(|v| v.is_finite() && *v >= 0.0);
    if !valid {
        return bad_request("load values must be finite and not negative");
    }
    let n = shared.sim().set_load(&req);
    if n == 0 {
        return (StatusCode::NOT_FOUND, "no pod matches\n").into_response();
    }
    json(StatusCode::OK, &serde_json::json!({ "pods": n }))
}

async fn list_pods(State(shared): State<Shared>) -> Response {
    json(StatusCode::OK, &shared.sim().status())
}

#[derive(Deserialize)]
struct AddPod {
    address: SocketAddr,
    #[serde(default = "default_pool")]
    pool: String,
    /// What its /metrics answers (vllm, huge, hugeChunked, endless).
    #[serde(default)]
    behavior: Behavior,
    /// Labels added to every series it exports.
    #[serde(default)]
    labels: std::collections::BTreeMap<String, String>,
}

fn default_pool() -> String {
    "default".into()
}

async fn add_pod(State(shared): State<Shared>, body: Bytes) -> Response {
    let req: AddPod = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return bad_request(e),
    };
    match shared.add_pod(req.address, &req.pool).await {
        Ok(bound) => {
            if let Some(pod) = shared.sim().pods.get_mut(&bound) {
                pod.behavior = req.behavior;
                pod.extra_labels = req.labels.into_iter().collect();
            }
            json(
                StatusCode::CREATED,
                &serde_json::json!({ "address": bound.to_string() }),
            )
        }
        Err(e) => (StatusCode::CONFLICT, format!("cannot listen: {e}\n")).into_response(),
    }
}

async fn remove_pod(State(shared): State<Shared>, Path(address): Path<String>) -> Response {
    let Ok(addr) = address.parse() else {
        return bad_request("address must be ip:port");
    };
    if shared.remove_pod(addr) {
        StatusCode::NO_CONTENT.into_response()
    } else {
        StatusCode::NOT_FOUND.into_response()
    }
}

#[derive(Deserialize)]
struct SetBehavior {
    behavior: Behavior,
}

/// Switches what an existing pod's /metrics answers (its engine keeps its state and counters).
async fn set_behavior(
    State(shared): State<Shared>,
    Path(address): Path<String>,
    body: Bytes,
) -> Response {
    let Ok(addr) = address.parse() else {
        return bad_request("address must be ip:port");
    };
    let req: SetBehavior = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return bad_request(e),
    };
    match shared.sim().pods.get_mut(&addr) {
        Some(pod) => {
            pod.behavior = req.behavior;
            StatusCode::NO_CONTENT.into_response()
        }
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn restart_pod(State(shared): State<Shared>, Path(address): Path<String>) -> Response {
    let Ok(addr) = address.parse() else {
        return bad_request("address must be ip:port");
    };
    if shared.sim().restart_pod(addr, unix_now_seconds()) {
        StatusCode::NO_CONTENT.into_response()
    } else {
        StatusCode::NOT_FOUND.into_response()
    }
}
