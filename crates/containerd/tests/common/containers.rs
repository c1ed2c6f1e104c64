//! Container harness, on top of the pod harness (`common::sandbox`): a `tools` image
//! (busybox-static with its applets linked, an `/etc/passwd` naming `app` = 1234:2345 and
//! an `/etc/group` adding `app` to `extra` = 3456), the `crimux-log` plugin built from
//! this workspace, and a backend whose runtime options name that plugin.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use containerd_client::services::v1::containers_client::ContainersClient;
use containerd_client::services::v1::tasks_client::TasksClient;
use containerd_client::services::v1::{ListContainersRequest, ListTasksRequest};
use crimux_containerd::{ContainerdBackend, RuntimeOptions};
use crimux_core::container::{ContainerConfig, ContainerMetadata, LinuxContainerConfig};
use crimux_core::sandbox::SandboxConfig;
use crimux_core::{ContainerId, ImageBackend, PullImage};
use tonic::Request;

use super::sandbox::{mounts_mentioning, PodWorld, PLUGIN_DIR};
use super::NAMESPACE;

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

/// Builds `crimux-log` (a no-op when up to date) and returns its path.
pub fn log_plugin() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    // target/<profile>/deps/<test> → target/<profile>/crimux-log
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target profile dir")
        .to_path_buf();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args(["build", "-q", "-p", "crimux-cri-log", "--bin", "crimux-log"]);
    if profile_dir.file_name().is_some_and(|n| n == "release") {
        cmd.arg("--release");
    }
    run(&mut cmd);
    let plugin = profile_dir.join("crimux-log");
    assert!(plugin.is_file(), "{} was not built", plugin.display());
    plugin
}

fn build_tools_layout(dir: &Path) -> PathBuf {
    let layout = dir.join("tools-layout");
    let bundle = dir.join("tools-bundle");
    let image = format!("{}:tools", layout.display());
    run(Command::new("umoci")
        .args(["init", "--layout"])
        .arg(&layout));
    run(Command::new("umoci").args(["new", "--image", &image]));
    run(Command::new("umoci")
        .args(["unpack", "--image", &image])
        .arg(&bundle));
    let root = bundle.join("rootfs");
    for d in ["bin", "etc", "tmp"] {
        std::fs::create_dir_all(root.join(d)).expect("mkdir");
    }
    std::fs::copy("/bin/busybox", root.join("bin/busybox")).expect("copy busybox-static");
    for applet in [
        "sh", "id", "env", "hostname", "sleep", "cat", "echo", "ls", "true", "false", "kill",
        "trap", "mkdir", "grep",
    ] {
        std::os::unix::fs::symlink("busybox", root.join("bin").join(applet)).expect("symlink");
    }
    std::fs::write(
        root.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\napp:x:1234:2345::/tmp:/bin/sh\n",
    )
    .expect("passwd");
    std::fs::write(
        root.join("etc/group"),
        "root:x:0:\napp:x:2345:\nextra:x:3456:app\n",
    )
    .expect("group");
    run(Command::new("umoci")
        .args(["repack", "--image", &image])
        .arg(&bundle));
    run(Command::new("umoci").args([
        "config",
        "--image",
        &image,
        "--config.cmd",
        "/bin/sh",
        "--config.env",
        "PATH=/bin",
        "--config.env",
        "FROM_IMAGE=yes",
        "--os",
        "linux",
        "--architecture",
        "amd64",
    ]));
    layout
}

/// A pod world plus a backend that can log, and the tools image pulled.
pub struct ContainerWorld {
    pub pods: PodWorld,
    pub backend: Arc<ContainerdBackend>,
    pub plugin: PathBuf,
    pub image: String,
    pub logs: PathBuf,
}

impl ContainerWorld {
    pub async fn new() -> ContainerWorld {
        let plugin = log_plugin();
        let pods = PodWorld::new().await;
        let layout = build_tools_layout(pods.tmp.path());
        pods.registry.push(&layout, "tools", "test/tools:1");
        let image = format!("{}/test/tools:1", pods.registry.host);
        let logs = pods.tmp.path().join("logs");
        let backend = Self::connect(&pods, &plugin).await;
        backend
            .pull_image(&PullImage {
                reference: image.clone(),
                credentials: None,
                pod_uid: None,
                pod_name: None,
            })
            .await
            .expect("pull tools image");
        ContainerWorld {
            pods,
            backend,
            plugin,
            image,
            logs,
        }
    }

    async fn connect(pods: &PodWorld, plugin: &Path) -> Arc<ContainerdBackend> {
        let mut config = pods.containerd.config();
        config.runtime = RuntimeOptions {
            state_dir: pods.state_dir.clone(),
            sandbox_image: pods.pause_image.clone(),
            cni_conf_dir: pods.conf_dir.clone(),
            cni_bin_dirs: vec![PathBuf::from(PLUGIN_DIR)],
            log_plugin: plugin.to_path_buf(),
            ..RuntimeOptions::default()
        };
        ContainerdBackend::connect(config, pods.registry.client())
            .await
            .expect("connect backend")
    }

    /// A second backend on the same daemon and state: crimux restarted.
    pub async fn reconnect(&self) -> Arc<ContainerdBackend> {
        Self::connect(&self.pods, &self.plugin).await
    }

    /// A pod config whose logs go under this world's log dir.
    pub fn pod(&self, name: &str) -> SandboxConfig {
        let mut config = super::sandbox::pod_config(name);
        config.log_directory = self.logs.join(name).to_string_lossy().into_owned();
        config
    }

    /// A container running `script` with `sh -c`, logging to `<name>/0.log`.
    pub fn container(&self, name: &str, script: &str) -> ContainerConfig {
        ContainerConfig {
            metadata: ContainerMetadata {
                name: name.into(),
                attempt: 0,
            },
            image: self.image.clone(),
            command: vec!["/bin/sh".into(), "-c".into(), script.into()],
            log_path: format!("{name}/0.log"),
            labels: [("c".to_string(), name.to_string())].into(),
            annotations: [("note".to_string(), "container test".to_string())].into(),
            envs: vec![("GREETING".into(), "hello world".into())],
            linux: Some(LinuxContainerConfig::default()),
            ..Default::default()
        }
    }

    pub fn log_file(&self, pod: &SandboxConfig, c: &ContainerConfig) -> PathBuf {
        Path::new(&pod.log_directory).join(&c.log_path)
    }

    /// Everything of container `id` left in containerd or on the host.
    pub async fn leftovers(&self, id: &ContainerId) -> Vec<String> {
        let mut left = Vec::new();
        let containers = ContainersClient::new(self.pods.channel.clone())
            .list(req(ListContainersRequest::default()))
            .await
            .expect("list containers")
            .into_inner()
            .containers;
        left.extend(
            containers
                .iter()
                .filter(|c| c.id == id.as_str())
                .map(|c| format!("containerd container {}", c.id)),
        );
        let tasks = TasksClient::new(self.pods.channel.clone())
            .list(req(ListTasksRequest::default()))
            .await
            .expect("list tasks")
            .into_inner()
            .tasks;
        left.extend(
            tasks
                .iter()
                .filter(|t| t.container_id == id.as_str())
                .map(|t| format!("task {}", t.container_id)),
        );
        let snapshots = super::inventory(&self.pods.channel).await.snapshots;
        left.extend(
            snapshots
                .iter()
                .filter(|s| s.name == id.as_str())
                .map(|s| format!("snapshot {}", s.name)),
        );
        left.extend(
            mounts_mentioning(id.as_str())
                .into_iter()
                .map(|m| format!("mount {m}")),
        );
        let dir = self.pods.state_dir.join("containers").join(id.as_str());
        if dir.exists() {
            left.push(format!("dir {}", dir.display()));
        }
        left
    }
}

fn req<T>(message: T) -> Request<T> {
    let mut request = Request::new(message);
    request.metadata_mut().insert(
        "containerd-namespace",
        NAMESPACE.parse().expect("namespace"),
    );
    request
}

/// A random 64-hex container id.
pub fn new_container_id() -> ContainerId {
    let bytes: [u8; 32] = rand::random();
    ContainerId(hex::encode(bytes))
}

/// A random 64-hex sandbox id (re-exported for container tests).
#[allow(unused_imports)]
pub use super::sandbox::new_id as new_sandbox_id;
