//! The repository's vLLM simulator (`vllm-sim`) answering at the pool pods' real (loopback) IPs,
//! so the operator scrapes real vLLM exposition text over HTTP.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};

use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use kube::api::{Api, ListParams};

pub struct Sim {
    child: Child,
    control: String,
    http: reqwest::Client,
    known: std::sync::Mutex<std::collections::BTreeSet<String>>,
    /// The last load offered, offered again over new pods (the simulator splits it at POST time).
    last_load: std::sync::Mutex<Option<(String, f64, f64, f64)>>,
}

/// Which simulator (its control address) serves each pod IP, across the tests of this process.
fn served() -> std::sync::MutexGuard<'static, std::collections::HashMap<String, String>> {
    static SERVED: std::sync::OnceLock<
        std::sync::Mutex<std::collections::HashMap<String, String>>,
    > = std::sync::OnceLock::new();
    SERVED
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner())
}

/// Takes `ip` for the simulator at `control`: a pod IP is unique among live pods, so another
/// simulator still serving it serves a pod that is gone (kwok reuses freed IPs), and lets it go.
async fn claim(http: &reqwest::Client, ip: &str, control: &str) {
    let previous = served().insert(ip.to_string(), control.to_string());
    if let Some(other) = previous.filter(|other| other != control) {
        let _ = http
            .delete(format!("http://{other}/pods/{ip}:8000"))
            .send()
            .await;
    }
}

/// A free loopback port.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Running pods of a pool with their IPs.
pub async fn pod_ips(client: &kube::Client, ns: &str, pool: &str) -> Vec<(String, String)> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let list = pods
        .list(&ListParams::default().labels(&format!("crossover.dev/pool={pool}")))
        .await
        .map(|l| l.items)
        .unwrap_or_default();
    list.iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter_map(|p| Some((p.name_any(), p.status.as_ref()?.pod_ip.clone()?)))
        .collect()
}

impl Sim {
    /// Starts the simulator serving `pool`'s current pods; each pod sustains `capacity` output tok/s.
    pub async fn start(
        client: &kube::Client,
        ns: &str,
        pool: &str,
        output_tokens_per_second: f64,
    ) -> Self {
        let pods = pod_ips(client, ns, pool).await;
        assert!(
            !pods.is_empty(),
            "start the simulator once the pool has pods"
        );
        let http = reqwest::Client::new();
        let log = std::env::temp_dir().join(format!("crossover-vllm-sim-{ns}-{pool}.log"));
        let mut why = String::new();
        // A pick of free_port() can be taken before the simulator binds it, and kwok can give a
        // pod the IP another test's pod had: each start that dies is retried once that is fixed.
        for _attempt in 0..3 {
            let control = format!("127.0.0.1:{}", free_port());
            for (_, ip) in &pods {
                claim(&http, ip, &control).await;
            }
            let mut cmd = Command::new(env!("CARGO_BIN_EXE_vllm-sim"));
            cmd.args([
                "--control",
                &control,
                "--output-tokens-per-second",
                &output_tokens_per_second.to_string(),
            ]);
            // Fast single streams: a load step shows in the counters within a fraction of a second.
            cmd.args([
                "--input-tokens-per-second",
                "1000000",
                "--per-request-output-tokens-per-second",
                "1000",
            ]);
            for (_, ip) in &pods {
                cmd.args(["--pod", &format!("{pool}={ip}:8000")]);
            }
            let stderr = std::fs::File::create(&log).expect("vllm-sim log");
            let child = cmd
                .stdout(Stdio::null())
                .stderr(stderr)
                .spawn()
                .expect("start vllm-sim");
            let mut sim = Self {
                child,
                control,
                http: http.clone(),
                known: std::sync::Mutex::new(pods.iter().map(|(_, ip)| ip.clone()).collect()),
                last_load: std::sync::Mutex::new(None),
            };
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            while std::time::Instant::now() < deadline {
                if sim
                    .http
                    .get(format!("http://{}/health", sim.control))
                    .send()
                    .await
                    .is_ok()
                {
                    return sim;
                }
                if matches!(sim.child.try_wait(), Ok(Some(_))) {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
            sim.stop();
            why = std::fs::read_to_string(&log).unwrap_or_default();
        }
        panic!("vllm-sim did not start three times; its last words: {why}");
    }

    /// Serves pods the pool gained since the last call (the Deployment scaled up).
    pub async fn sync(&self, client: &kube::Client, ns: &str, pool: &str) {
        let mut added = false;
        let current: std::collections::BTreeSet<String> = pod_ips(client, ns, pool)
            .await
            .into_iter()
            .map(|(_, ip)| ip)
            .collect();
        // Stop answering for pods that are gone: kwok gives their IPs to other tests' pods.
        let gone: Vec<String> = self
            .known
            .lock()
            .unwrap()
            .difference(&current)
            .cloned()
            .collect();
        for ip in gone {
            added = true; // the load is split again over the pods that remain
            let _ = self
                .http
                .delete(format!("http://{}/pods/{ip}:8000", self.control))
                .send()
                .await;
            self.known.lock().unwrap().remove(&ip);
        }
        for ip in current {
            let new = self.known.lock().unwrap().insert(ip.clone());
            if new {
                claim(&self.http, &ip, &self.control).await;
                let _ = self
                    .http
                    .post(format!("http://{}/pods", self.control))
                    .json(&serde_json::json!({"address": format!("{ip}:8000"), "pool": pool}))
                    .send()
                    .await;
                added = true;
            }
        }
        let last = self.last_load.lock().unwrap().clone();
        if let (true, Some((p, rps, i, o))) = (added, last) {
            self.load(&p, rps, i, o).await;
        }
    }

    /// Offers this load to the pool, split evenly over its pods.
    pub async fn load(
        &self,
        pool: &str,
        requests_per_second: f64,
        input_tokens: f64,
        output_tokens: f64,
    ) {
        *self.last_load.lock().unwrap() = Some((
            pool.to_string(),
            requests_per_second,
            input_tokens,
            output_tokens,
        ));
        let r = self
            .http
            .post(format!("http://{}/load", self.control))
            .json(&serde_json::json!({
                "pool": pool,
                "requestsPerSecond": requests_per_second,
                "inputTokensPerRequest": input_tokens,
                "outputTokensPerRequest": output_tokens,
            }))
            .send()
            .await
            .expect("vllm-sim control");
        assert!(
            r.status().is_success(),
            "vllm-sim refused the load: {}",
            r.status()
        );
    }

    /// Generated tokens the simulator's pods of `pool` have counted (the truth month-to-date
    /// must match).
    pub async fn generation_tokens(&self, pool: &str) -> f64 {
        let pods: Vec<serde_json::Value> = self
            .http
            .get(format!("http://{}/pods", self.control))
            .send()
            .await
            .expect("vllm-sim control")
            .json()
            .await
            .expect("pod list");
        pods.iter()
            .filter(|p| p["pool"] == pool)
            .filter_map(|p| p["generationTokensTotal"].as_f64())
            .sum()
    }

    /// The control endpoint (POST /pods to add pods with other behaviours).
    pub fn control(&self) -> &str {
        &self.control
    }

    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        served().retain(|_, control| *control != self.control);
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        self.stop();
    }
}
