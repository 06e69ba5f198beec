//! What every cluster test needs: a client for the test control plane (started by `make test` or
//! `make cluster-up`), a namespace of its own, the operator running against that namespace, and
//! the real kubectl. A missing cluster is a failure with a clear message, never a skip.

use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use kube::Client;
use kube::api::{Api, PostParams};
use tokio::sync::OnceCell;

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The kubeconfig of the test cluster: $KUBECONFIG, else the one `make cluster-up` writes.
pub fn kubeconfig() -> PathBuf {
    std::env::var_os("KUBECONFIG")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join(".cluster/kubeconfig"))
}

/// A client for the test cluster. Panics with instructions when it is not reachable.
pub async fn client() -> Client {
    let path = kubeconfig();
    let fail = |why: String| -> ! {
        panic!(
            "the test cluster is not reachable ({why}); start it with `make cluster-up` \
             (kubeconfig {}) or run everything with `make test`",
            path.display()
        )
    };
    let kc = kube::config::Kubeconfig::read_from(&path).unwrap_or_else(|e| fail(e.to_string()));
    let config = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .unwrap_or_else(|e| fail(e.to_string()));
    let client = Client::try_from(config).unwrap_or_else(|e| fail(e.to_string()));
    if let Err(e) = client.apiserver_version().await {
        fail(e.to_string());
    }
    client
}

/// kubectl as a person runs it, against the test cluster.
pub fn kubectl(args: &[&str]) -> Output {
    kubectl_with_stdin(args, None)
}

pub fn kubectl_with_stdin(args: &[&str], stdin: Option<&str>) -> Output {
    let mut cmd = Command::new("kubectl");
    cmd.env("KUBECONFIG", kubeconfig()).args(args);
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    });
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .expect("kubectl on PATH (make test puts the one built for the cluster there)");
    if let Some(input) = stdin {
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
    }
    child.wait_with_output().expect("kubectl ran")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

static CRD: OnceCell<()> = OnceCell::const_new();

/// Installs the committed CRD once per test run and waits until it is Established.
pub async fn install_crd() {
    CRD.get_or_init(|| async {
        let crds = repo().join("crds");
        let o = kubectl(&[
            "apply",
            "--server-side",
            "--force-conflicts",
            "-f",
            crds.to_str().unwrap(),
        ]);
        assert!(o.status.success(), "CRD apply failed: {}", stderr(&o));
        let o = kubectl(&[
            "wait",
            "--for=condition=Established",
            "crd/inferencepools.crossover.dev",
            "--timeout=60s",
        ]);
        assert!(o.status.success(), "CRD not Established: {}", stderr(&o));
    })
    .await;
}

/// A namespace of the test's own, deleted (with everything in it) when dropped.
pub struct TestNamespace {
    pub name: String,
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

impl TestNamespace {
    pub async fn new(client: &Client, prefix: &str) -> Self {
        let name = format!(
            "{prefix}-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst)
        );
        let ns: Namespace =
            serde_json::from_value(serde_json::json!({"metadata": {"name": name}})).unwrap();
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &ns)
            .await
            .expect("create test namespace");
        Self { name }
    }
}

impl Drop for TestNamespace {
    fn drop(&mut self) {
        let _ = Command::new("kubectl")
            .env("KUBECONFIG", kubeconfig())
            .args(["delete", "namespace", &self.name, "--wait=false"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// The operator binary running against one namespace, killed when dropped.
pub struct Operator {
    child: Child,
}

impl Operator {
    pub fn start(namespace: &str) -> Self {
        Self::start_with(namespace, &[])
    }

    pub fn start_with(namespace: &str, env: &[(&str, &str)]) -> Self {
        Self::start_as(namespace, env, &[], namespace)
    }

    /// `extra` arguments after `run --namespace NS`; `log_name` names its log file in the temp dir.
    /// Health and metrics go to an ephemeral port unless `extra` names `--probe-address`.
    pub fn start_as(namespace: &str, env: &[(&str, &str)], extra: &[&str], log_name: &str) -> Self {
        let log = std::fs::File::create(
            std::env::temp_dir().join(format!("crossover-operator-{log_name}.log")),
        )
        .expect("operator log file");
        let mut args = vec!["run", "--namespace", namespace];
        if !extra.contains(&"--probe-address") {
            args.extend(["--probe-address", "127.0.0.1:0"]);
        }
        args.extend(extra);
        // CROSSOVER_BIN lets a developer point at a copy while another build rewrites target/.
        let bin = std::env::var("CROSSOVER_BIN")
            .unwrap_or_else(|_| env!("CARGO_BIN_EXE_crossover").to_string());
        let child = Command::new(bin)
            .args(&args)
            .env("KUBECONFIG", kubeconfig())
            .env(
                "RUST_LOG",
                "info,kube=warn,crossover::controller::reconcile=debug",
            )
            // Every status change written at once, so tests read what the operator computed;
            // a test of the checkpoint itself sets its own.
            .env("CROSSOVER_STATUS_CHECKPOINT_SECONDS", "0")
            .envs(env.iter().copied())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start crossover run");
        Self { child }
    }

    /// The operator's process id (to read its memory from /proc).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Whether the process is still running (it has not exited).
    #[allow(dead_code)]
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `check` until it returns Some, or panics after `timeout` with `what`.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// Applies a manifest with kubectl into the namespace; panics with kubectl's words on failure.
pub fn apply(namespace: &str, manifest: &str) {
    let o = kubectl_with_stdin(&["apply", "-n", namespace, "-f", "-"], Some(manifest));
    assert!(o.status.success(), "kubectl apply failed: {}", stderr(&o));
}
