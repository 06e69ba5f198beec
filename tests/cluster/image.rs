//! The operator's image, as `make image` builds it (reused while current): pushed to a real
//! registry (`crane registry serve` on 127.0.0.1) and pulled back, its config is what the chart
//! relies on (entrypoint, a non-root user, OCI labels), its filesystem has no shell, and the binary
//! runs from that filesystem alone (chroot, as uid 65532): `--version` answers, and `crossover run`
//! serves /healthz and becomes ready against the test cluster over TLS.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use crate::harness::*;

fn crane(args: &[&str]) -> Output {
    Command::new("crane")
        .args(args)
        .output()
        .expect("crane on PATH (make test puts the one tools/build.sh builds there)")
}

fn ok(what: &str, o: Output) -> String {
    assert!(
        o.status.success(),
        "{what} failed: {}{}",
        stdout(&o),
        stderr(&o)
    );
    stdout(&o)
}

/// A registry of the test's own, on 127.0.0.1, stopped when dropped.
struct Registry {
    child: Child,
    address: String,
}

impl Registry {
    fn start() -> Self {
        let mut child = Command::new("crane")
            .args(["registry", "serve", "--address", "127.0.0.1:0"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("crane on PATH");
        let stderr = child.stderr.take().unwrap();
        let mut lines = BufReader::new(stderr).lines();
        let port = loop {
            let line = lines
                .next()
                .expect("crane registry serve exited before serving")
                .unwrap();
            if let Some(port) = line.split("serving on port ").nth(1) {
                break port.trim().to_string();
            }
        };
        // Keep draining its log so it never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Self {
            child,
            address: format!("127.0.0.1:{port}"),
        }
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The archive `make image` builds, built now if it is missing or stale.
fn image_archive() -> PathBuf {
    let o = Command::new(repo().join("tools/image.sh"))
        .current_dir(repo())
        .output()
        .expect("run tools/image.sh");
    let out = ok("tools/image.sh (make image)", o);
    PathBuf::from(out.lines().last().expect("the archive's path").trim())
}

fn untar(archive: &Path, into: &Path) {
    std::fs::create_dir_all(into).unwrap();
    let o = Command::new("tar")
        .arg("-xf")
        .arg(archive)
        .arg("-C")
        .arg(into)
        .output()
        .unwrap();
    ok("tar -x", o);
}

/// Runs `args` from the image's filesystem alone: chroot into it as the image's user, with none
/// of the host's environment.
fn in_image(rootfs: &Path, user: &str, args: &[&str]) -> Command {
    // Found on the host's PATH before the environment is cleared.
    let chroot = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
        .map(|dir| dir.join("chroot"))
        .find(|p| p.is_file())
        .expect("chroot (coreutils) on the host");
    let mut cmd = Command::new(chroot);
    cmd.arg(format!("--userspec={user}"))
        .arg(rootfs)
        .args(args)
        .env_clear();
    cmd
}

fn label<'a>(config: &'a serde_json::Value, key: &str) -> &'a str {
    config["config"]["Labels"][key]
        .as_str()
        .unwrap_or_else(|| panic!("label {key} missing: {}", config["config"]["Labels"]))
}

#[tokio::test]
async fn the_image_from_a_registry_runs_as_non_root_without_a_shell_and_serves_health() {
    let client = client().await;
    install_crd().await;
    let ns = TestNamespace::new(&client, "image").await;
    let archive = image_archive();
    let work = std::env::temp_dir().join(format!("crossover-image-{}", ns.name));
    let _ = std::fs::remove_dir_all(&work);
    untar(&archive, &work.join("layout"));

    let registry = Registry::start();
    let version = env!("CARGO_PKG_VERSION");
    let reference = format!("{}/crossover:{version}", registry.address);
    ok(
        "crane push",
        crane(&["push", work.join("layout").to_str().unwrap(), &reference]),
    );
    let pulled = work.join("pulled");
    ok(
        "crane pull",
        crane(&["pull", "--format=oci", &reference, pulled.to_str().unwrap()]),
    );
    let digest = ok("crane digest", crane(&["digest", &reference]));
    let built = std::fs::read_to_string(format!("{}.digest", archive.display())).unwrap();
    assert_eq!(
        digest.trim(),
        built.trim(),
        "the registry serves the image make image built"
    );

    let config: serde_json::Value =
        serde_json::from_str(&ok("crane config", crane(&["config", &reference]))).unwrap();
    assert_eq!(config["os"], "linux");
    assert_eq!(
        config["config"]["Entrypoint"],
        serde_json::json!(["/crossover"])
    );
    assert_eq!(config["config"]["Cmd"], serde_json::json!(["run"]));
    let user = config["config"]["User"].as_str().unwrap().to_string();
    let uid: u32 = user.split(':').next().unwrap().parse().unwrap();
    assert_ne!(uid, 0, "the image must not run as root ({user})");
    assert_eq!(
        uid, 65532,
        "the chart's podSecurityContext.runAsUser is 65532"
    );
    assert_eq!(
        label(&config, "org.opencontainers.image.title"),
        "crossover"
    );
    assert_eq!(label(&config, "org.opencontainers.image.version"), version);
    assert_eq!(
        label(&config, "org.opencontainers.image.licenses"),
        "Apache-2.0"
    );
    assert!(!label(&config, "org.opencontainers.image.revision").is_empty());
    assert!(label(&config, "org.opencontainers.image.source").starts_with("https://"));

    // The filesystem as a container runtime would unpack it.
    let rootfs = work.join("rootfs");
    std::fs::create_dir_all(&rootfs).unwrap();
    let export = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "crane export '{reference}' - | tar -x -C '{}'",
            rootfs.display()
        ))
        .output()
        .unwrap();
    ok("crane export", export);
    assert!(rootfs.join("crossover").is_file());
    for shell in ["bin/sh", "bin/bash", "bin/busybox", "usr/bin/sh"] {
        assert!(!rootfs.join(shell).exists(), "the image has {shell}");
    }
    let passwd = std::fs::read_to_string(rootfs.join("etc/passwd")).unwrap();
    assert!(passwd.contains(":65532:65532:"), "{passwd}");
    assert!(rootfs.join("usr/share/doc/crossover/LICENSE").is_file());
    let layer_bytes: u64 = std::fs::read_dir(pulled.join("blobs/sha256"))
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .max()
        .unwrap();
    let binary_bytes = std::fs::metadata(rootfs.join("crossover")).unwrap().len();
    eprintln!(
        "image {}: largest blob (the layer, compressed) {:.1} MiB, binary {:.1} MiB",
        digest.trim(),
        layer_bytes as f64 / 1048576.0,
        binary_bytes as f64 / 1048576.0
    );

    // Nothing from the host: no dynamic loader, no libc, no shell; only what the image holds.
    let version_out = in_image(&rootfs, &user, &["/crossover", "--version"])
        .output()
        .expect("chroot");
    assert_eq!(
        ok("crossover --version in the image", version_out).trim(),
        format!("crossover {version}")
    );

    // The operator from the image, against the test cluster: the kubeconfig and its certificates
    // go into the image's /tmp, readable by its user.
    let pki = rootfs.join("tmp/pki");
    std::fs::create_dir_all(&pki).unwrap();
    let host_pki = kubeconfig().parent().unwrap().join("pki");
    for f in ["ca.crt", "admin.crt", "admin.key"] {
        std::fs::copy(host_pki.join(f), pki.join(f)).unwrap();
    }
    let kc = std::fs::read_to_string(kubeconfig())
        .unwrap()
        .replace(host_pki.to_str().unwrap(), "/tmp/pki");
    std::fs::write(rootfs.join("tmp/kubeconfig"), kc).unwrap();
    let o = Command::new("chmod")
        .args(["-R", "a+rX"])
        .arg(rootfs.join("tmp"))
        .output()
        .unwrap();
    ok("chmod", o);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let address = format!("127.0.0.1:{port}");
    let log = std::fs::File::create(work.join("operator.log")).unwrap();
    let mut operator = in_image(
        &rootfs,
        &user,
        &[
            "/crossover",
            "run",
            "--namespace",
            &ns.name,
            "--probe-address",
            &address,
            "--leader-elect=false",
        ],
    )
    .env("KUBECONFIG", "/tmp/kubeconfig")
    .env("RUST_LOG", "info,kube=warn")
    .stdout(log.try_clone().unwrap())
    .stderr(log)
    .spawn()
    .expect("chroot crossover run");
    let http = reqwest::Client::new();
    let get = |path: &'static str| {
        let http = http.clone();
        let address = address.clone();
        async move {
            let r = http
                .get(format!("http://{address}{path}"))
                .send()
                .await
                .ok()?;
            Some((r.status().as_u16(), r.text().await.ok()?))
        }
    };
    let healthz = eventually("/healthz from the image", Duration::from_secs(30), || {
        get("/healthz")
    })
    .await;
    assert_eq!((healthz.0, healthz.1.trim()), (200, "ok"));
    eventually(
        "/readyz 200: the image's binary reached the API server over TLS and found the CRD",
        Duration::from_secs(30),
        || async { (get("/readyz").await?.0 == 200).then_some(()) },
    )
    .await;
    let _ = operator.kill();
    let _ = operator.wait();
    let _ = std::fs::remove_dir_all(&work);
}
