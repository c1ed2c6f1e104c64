//! Test harness: a private containerd 1.6 and a local `docker-registry`, each in its own
//! temporary directory, plus small images built with umoci and pushed with skopeo.
//!
//! These tests need root and the daemons; a missing tool fails the test with a message
//! saying what to install. Nothing is skipped.

#![allow(dead_code)]

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use containerd_client::services::v1::snapshots::ListSnapshotsRequest;
use containerd_client::services::v1::{ListContentRequest, ListImagesRequest};
use crimux_containerd::{ContainerdBackend, ContainerdConfig};
use crimux_core::BackendRole;
use sha2::{Digest, Sha256};
use tonic::transport::Channel;
use tonic::Request;

pub const NAMESPACE: &str = "crimux-test";

fn require(tool: &str) -> PathBuf {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(tool))
            .find(|p| p.is_file())
    });
    found.unwrap_or_else(|| {
        panic!("{tool} is required for the containerd backend tests (apt-get install containerd docker-registry skopeo umoci); it is not on PATH")
    })
}

fn run(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn wait_for(what: &str, child: &mut Child, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !ready() {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("{what} exited early with {status}");
        }
        assert!(
            Instant::now() < deadline,
            "{what} did not become ready in 30s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A child process killed when the test ends, however it ends.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A private containerd.
pub struct Containerd {
    process: Killed,
    pub dir: tempfile::TempDir,
    pub socket: PathBuf,
}

impl Containerd {
    pub fn start() -> Containerd {
        let dir = tempfile::Builder::new()
            .prefix("crimux-ctd")
            .tempdir()
            .expect("tempdir");
        let d = dir.path();
        let socket = d.join("c.sock");
        let config = format!(
            r#"version = 2
root = "{root}"
state = "{state}"
disabled_plugins = ["io.containerd.grpc.v1.cri"]

[grpc]
  address = "{socket}"

[ttrpc]
  address = "{socket}.ttrpc"

[plugins."io.containerd.internal.v1.opt"]
  path = "{opt}"
"#,
            root = d.join("root").display(),
            state = d.join("state").display(),
            socket = socket.display(),
            opt = d.join("opt").display(),
        );
        std::fs::write(d.join("config.toml"), config).expect("write config");
        let log = std::fs::File::create(d.join("containerd.log")).expect("log file");
        let process = Killed(Self::spawn(d, &socket, log));
        Containerd {
            process,
            dir,
            socket,
        }
    }

    fn spawn(dir: &Path, socket: &Path, log: std::fs::File) -> Child {
        let mut child = Command::new(require("containerd"))
            .arg("--config")
            .arg(dir.join("config.toml"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn containerd");
        wait_for("containerd", &mut child, || socket.exists());
        child
    }

    /// Kills the daemon and starts it again on the same state.
    pub fn restart(&mut self) {
        let _ = self.process.0.kill();
        let _ = self.process.0.wait();
        let _ = std::fs::remove_file(&self.socket);
        let log = std::fs::OpenOptions::new()
            .append(true)
            .open(self.dir.path().join("containerd.log"))
            .expect("log file");
        self.process = Killed(Self::spawn(self.dir.path(), &self.socket, log));
    }

    pub fn address(&self) -> String {
        format!("unix://{}", self.socket.display())
    }

    pub fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    /// A raw client for checking what the backend did through containerd's own API.
    pub async fn channel(&self) -> Channel {
        containerd_client::connect(&self.socket)
            .await
            .expect("connect to test containerd")
    }

    pub fn config(&self) -> ContainerdConfig {
        ContainerdConfig {
            name: "test".into(),
            address: self.address(),
            namespace: NAMESPACE.into(),
            role: BackendRole::Primary,
            os: None,
            arch: None,
            runtime_handlers: vec![String::new()],
            tls: None,
            insecure: false,
            snapshotter: "overlayfs".into(),
            runtime: Default::default(),
        }
    }
}

/// A local registry over plain http, with a hosts.toml directory pointing at it.
pub struct LocalRegistry {
    _process: Killed,
    pub dir: tempfile::TempDir,
    pub host: String,
}

impl LocalRegistry {
    pub fn start() -> LocalRegistry {
        let binary = require("docker-registry");
        let dir = tempfile::Builder::new()
            .prefix("crimux-reg")
            .tempdir()
            .expect("tempdir");
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let host = format!("127.0.0.1:{port}");
        let config = format!(
            "version: 0.1\nlog:\n  level: info\n  accesslog:\n    disabled: false\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {host}\n",
            dir.path().join("data").display()
        );
        std::fs::write(dir.path().join("config.yml"), config).expect("write registry config");
        let log = std::fs::File::create(dir.path().join("registry.log")).expect("log file");
        let log2 = log.try_clone().expect("log file");
        let mut child = Command::new(binary)
            .arg("serve")
            .arg(dir.path().join("config.yml"))
            .stdout(log)
            .stderr(log2)
            .spawn()
            .expect("spawn docker-registry");
        wait_for("docker-registry", &mut child, || {
            TcpStream::connect(&host).is_ok()
        });
        let hosts = dir.path().join("certs.d").join(&host);
        std::fs::create_dir_all(&hosts).expect("hosts dir");
        std::fs::write(
            hosts.join("hosts.toml"),
            format!(
                "server = \"http://{host}\"\n\n[host.\"http://{host}\"]\n  capabilities = [\"pull\", \"resolve\"]\n"
            ),
        )
        .expect("hosts.toml");
        LocalRegistry {
            _process: Killed(child),
            dir,
            host,
        }
    }

    pub fn hosts_dir(&self) -> PathBuf {
        self.dir.path().join("certs.d")
    }

    pub fn client(&self) -> crimux_registry::Registry {
        crimux_registry::Registry::new(Some(&self.hosts_dir())).expect("registry client")
    }

    /// Pushes `layout:tag` as `<host>/<repository>`.
    pub fn push(&self, layout: &Path, tag: &str, repository: &str) {
        let skopeo = require("skopeo");
        run(Command::new(skopeo)
            .args(["copy", "--all", "--dest-tls-verify=false", "--quiet"])
            .arg(format!("oci:{}:{tag}", layout.display()))
            .arg(format!("docker://{}/{repository}", self.host)));
    }

    /// Overwrites the stored bytes of a blob (same length), so it no longer matches its digest.
    pub fn corrupt_blob(&self, digest: &str) {
        let hex = digest.strip_prefix("sha256:").expect("sha256 digest");
        let path = self
            .dir
            .path()
            .join("data/docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data");
        let len = std::fs::metadata(&path).expect("stored blob").len() as usize;
        std::fs::write(&path, vec![0x42u8; len]).expect("corrupt blob");
    }

    /// How many times the registry served `GET` for a blob.
    pub fn blob_gets(&self, digest: &str) -> usize {
        let log = std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default();
        log.lines()
            .filter(|l| l.contains("\"GET /v2/") && l.contains(&format!("/blobs/{digest}")))
            .count()
    }
}

/// Test images in an OCI layout.
pub struct Images {
    pub dir: tempfile::TempDir,
}

impl Images {
    pub fn layout(&self) -> PathBuf {
        self.dir.path().join("layout")
    }

    /// Builds tag `busybox`: two layers (busybox, then a text file), User 1000:1000; and
    /// tag `windows`: the same layers under a config saying os windows.
    pub fn build() -> Images {
        let umoci = require("umoci");
        let dir = tempfile::Builder::new()
            .prefix("crimux-img")
            .tempdir()
            .expect("tempdir");
        let layout = dir.path().join("layout");
        let image = |tag: &str| format!("{}:{tag}", layout.display());
        let bundle1 = dir.path().join("b1");
        let bundle2 = dir.path().join("b2");
        run(Command::new(&umoci).args(["init", "--layout"]).arg(&layout));
        run(Command::new(&umoci).args(["new", "--image", &image("busybox")]));
        run(Command::new(&umoci)
            .args(["unpack", "--image", &image("busybox")])
            .arg(&bundle1));
        let bin = bundle1.join("rootfs/bin");
        std::fs::create_dir_all(&bin).expect("mkdir bin");
        std::fs::copy(require("busybox"), bin.join("busybox")).expect("copy busybox");
        run(Command::new(&umoci)
            .args(["repack", "--image", &image("busybox")])
            .arg(&bundle1));
        run(Command::new(&umoci)
            .args(["unpack", "--image", &image("busybox")])
            .arg(&bundle2));
        std::fs::write(bundle2.join("rootfs/hello.txt"), "hello from crimux\n").expect("write");
        run(Command::new(&umoci)
            .args(["repack", "--image", &image("busybox")])
            .arg(&bundle2));
        run(Command::new(&umoci).args([
            "config",
            "--image",
            &image("busybox"),
            "--config.user",
            "1000:1000",
            "--config.cmd",
            "/bin/busybox",
            "--os",
            "linux",
            "--architecture",
            "amd64",
        ]));
        run(Command::new(&umoci).args([
            "config",
            "--image",
            &image("busybox"),
            "--tag",
            "windows",
            "--os",
            "windows",
        ]));
        Images { dir }
    }

    /// Adds tag `tag`: an OCI index of the manifests of `entries` (tag, os, architecture).
    pub fn add_index(&self, tag: &str, entries: &[(&str, &str, &str)]) {
        let manifests: Vec<serde_json::Value> = entries
            .iter()
            .map(|(from, os, arch)| {
                let digest = self.manifest_digest(from);
                serde_json::json!({
                    "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "digest": digest,
                    "size": self.blob(&digest).len(),
                    "platform": {"os": os, "architecture": arch},
                })
            })
            .collect();
        let index = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": manifests,
        }))
        .expect("index JSON");
        let hex = hex::encode(Sha256::digest(&index));
        std::fs::write(self.layout().join("blobs/sha256").join(&hex), &index).expect("write index");
        let top_path = self.layout().join("index.json");
        let mut top: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&top_path).expect("index.json")).expect("JSON");
        top["manifests"]
            .as_array_mut()
            .expect("manifests")
            .push(serde_json::json!({
                "mediaType": "application/vnd.oci.image.index.v1+json",
                "digest": format!("sha256:{hex}"),
                "size": index.len(),
                "annotations": {"org.opencontainers.image.ref.name": tag},
            }));
        std::fs::write(&top_path, serde_json::to_vec(&top).expect("JSON"))
            .expect("write index.json");
    }

    fn blob(&self, digest: &str) -> Vec<u8> {
        let hex = digest.strip_prefix("sha256:").expect("sha256 digest");
        std::fs::read(self.layout().join("blobs/sha256").join(hex)).expect("read blob")
    }

    fn json(&self, digest: &str) -> serde_json::Value {
        serde_json::from_slice(&self.blob(digest)).expect("blob JSON")
    }

    /// The manifest digest of `tag` in the layout.
    pub fn manifest_digest(&self, tag: &str) -> String {
        let index: serde_json::Value = serde_json::from_slice(
            &std::fs::read(self.layout().join("index.json")).expect("index.json"),
        )
        .expect("index JSON");
        index["manifests"]
            .as_array()
            .expect("manifests")
            .iter()
            .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == tag)
            .and_then(|m| m["digest"].as_str())
            .unwrap_or_else(|| panic!("tag {tag} not in layout"))
            .to_string()
    }

    pub fn manifest(&self, tag: &str) -> serde_json::Value {
        self.json(&self.manifest_digest(tag))
    }

    pub fn config_digest(&self, tag: &str) -> String {
        self.manifest(tag)["config"]["digest"]
            .as_str()
            .expect("config digest")
            .to_string()
    }

    pub fn layer_digests(&self, tag: &str) -> Vec<String> {
        self.manifest(tag)["layers"]
            .as_array()
            .expect("layers")
            .iter()
            .map(|l| l["digest"].as_str().expect("digest").to_string())
            .collect()
    }

    pub fn diff_ids(&self, tag: &str) -> Vec<String> {
        self.json(&self.config_digest(tag))["rootfs"]["diff_ids"]
            .as_array()
            .expect("diff_ids")
            .iter()
            .map(|d| d.as_str().expect("diff id").to_string())
            .collect()
    }
}

/// What containerd holds in the test namespace.
pub struct Inventory {
    pub images: Vec<containerd_client::services::v1::Image>,
    pub content: Vec<String>,
    pub snapshots: Vec<containerd_client::services::v1::snapshots::Info>,
    pub leases: Vec<String>,
}

fn req<T>(message: T) -> Request<T> {
    let mut request = Request::new(message);
    request.metadata_mut().insert(
        "containerd-namespace",
        NAMESPACE.parse().expect("namespace"),
    );
    request
}

pub async fn inventory(channel: &Channel) -> Inventory {
    use containerd_client::services::v1::content_client::ContentClient;
    use containerd_client::services::v1::images_client::ImagesClient;
    use containerd_client::services::v1::leases_client::LeasesClient;
    use containerd_client::services::v1::snapshots::snapshots_client::SnapshotsClient;
    let images = ImagesClient::new(channel.clone())
        .list(req(ListImagesRequest::default()))
        .await
        .expect("list images")
        .into_inner()
        .images;
    let mut content = Vec::new();
    let mut stream = ContentClient::new(channel.clone())
        .list(req(ListContentRequest::default()))
        .await
        .expect("list content")
        .into_inner();
    while let Some(page) = stream.message().await.expect("content page") {
        content.extend(page.info.into_iter().map(|i| i.digest));
    }
    let mut snapshots = Vec::new();
    let mut stream = SnapshotsClient::new(channel.clone())
        .list(req(ListSnapshotsRequest {
            snapshotter: "overlayfs".into(),
            filters: vec![],
        }))
        .await
        .expect("list snapshots")
        .into_inner();
    while let Some(page) = stream.message().await.expect("snapshot page") {
        snapshots.extend(page.info);
    }
    let leases = LeasesClient::new(channel.clone())
        .list(req(containerd_client::services::v1::ListRequest::default()))
        .await
        .expect("list leases")
        .into_inner()
        .leases
        .into_iter()
        .map(|l| l.id)
        .collect();
    Inventory {
        images,
        content,
        snapshots,
        leases,
    }
}

pub async fn content_labels(
    channel: &Channel,
    digest: &str,
) -> std::collections::HashMap<String, String> {
    use containerd_client::services::v1::content_client::ContentClient;
    ContentClient::new(channel.clone())
        .info(req(containerd_client::services::v1::InfoRequest {
            digest: digest.into(),
        }))
        .await
        .expect("content info")
        .into_inner()
        .info
        .expect("info")
        .labels
}

/// Everything one test needs: daemons, images pushed, a connected backend.
pub struct World {
    pub containerd: Containerd,
    pub registry: LocalRegistry,
    pub images: Arc<Images>,
    pub backend: Arc<ContainerdBackend>,
    pub channel: Channel,
}

impl World {
    pub async fn new() -> World {
        let containerd = Containerd::start();
        let registry = LocalRegistry::start();
        let images = Arc::new(Images::build());
        registry.push(&images.layout(), "busybox", "test/busybox:1");
        let backend = ContainerdBackend::connect(containerd.config(), registry.client())
            .await
            .expect("connect backend");
        let channel = containerd.channel().await;
        World {
            containerd,
            registry,
            images,
            backend,
            channel,
        }
    }

    pub fn reference(&self, path: &str) -> String {
        format!("{}/{path}", self.registry.host)
    }
}
pub mod containers;
pub mod sandbox;
pub mod streams;
