//! Pod sandbox harness: a private containerd and registry (from `common`), a pause image
//! (a static C `pause` built with gcc, packed with umoci), a CNI network of its own (bridge
//! `crs<hex>`, a /24 in 10.198.0.0/16, its own IPAM dir) and a backend whose state lives in
//! a tempdir. Dropping a `PodWorld` kills every task left in its namespace, DELs every
//! CNI attachment left, unmounts what is mounted under its state dir and deletes the
//! bridge, so a failed assertion leaks nothing onto the host.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;

use containerd_client::services::v1::containers_client::ContainersClient;
use containerd_client::services::v1::snapshots::snapshots_client::SnapshotsClient;
use containerd_client::services::v1::snapshots::ListSnapshotsRequest;
use containerd_client::services::v1::tasks_client::TasksClient;
use containerd_client::services::v1::{ListContainersRequest, ListTasksRequest};
use crimux_containerd::{ContainerdBackend, RuntimeOptions};
use crimux_core::sandbox::{
    DnsConfig, LinuxSandboxConfig, NamespaceMode, PortMapping, Protocol, SandboxConfig,
    SandboxMetadata,
};
use crimux_core::PodSandboxId;
use serde_json::json;
use tonic::transport::Channel;
use tonic::Request;

use super::{Containerd, LocalRegistry, NAMESPACE};

pub const PLUGIN_DIR: &str = "/usr/lib/cni";

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

/// Distinct /24s within 10.198.0.0/16 for the tests of this process.
fn next_octet() -> u8 {
    static NEXT: AtomicU8 = AtomicU8::new(0);
    static BASE: std::sync::OnceLock<u8> = std::sync::OnceLock::new();
    let base = *BASE.get_or_init(|| rand::random::<u8>() % 200);
    base + NEXT.fetch_add(1, Ordering::SeqCst) % 50 + 1
}

/// A random 64-hex sandbox id, as the dispatcher makes them.
pub fn new_id() -> PodSandboxId {
    let bytes: [u8; 32] = rand::random();
    PodSandboxId(hex::encode(bytes))
}

/// Builds tags `pause` (entrypoint `/pause`, a static binary that sleeps until signalled)
/// and `broken` (entrypoint `/missing`) into an OCI layout.
fn build_pause_layout(dir: &Path) -> PathBuf {
    let c = dir.join("pause.c");
    std::fs::write(
        &c,
        "#include <signal.h>\n#include <unistd.h>\n\
         static void quit(int s) { (void)s; _exit(0); }\n\
         int main(void) { signal(SIGTERM, quit); signal(SIGINT, quit); for (;;) pause(); }\n",
    )
    .expect("write pause.c");
    let bundle = dir.join("bundle");
    let layout = dir.join("layout");
    let image = |tag: &str| format!("{}:{tag}", layout.display());
    run(Command::new("umoci")
        .args(["init", "--layout"])
        .arg(&layout));
    run(Command::new("umoci").args(["new", "--image", &image("pause")]));
    run(Command::new("umoci")
        .args(["unpack", "--image", &image("pause")])
        .arg(&bundle));
    run(Command::new("gcc")
        .args(["-static", "-O2", "-o"])
        .arg(bundle.join("rootfs/pause"))
        .arg(&c));
    run(Command::new("umoci")
        .args(["repack", "--image", &image("pause")])
        .arg(&bundle));
    run(Command::new("umoci").args([
        "config",
        "--image",
        &image("pause"),
        "--config.entrypoint",
        "/pause",
        "--config.user",
        "65535:65535",
        "--os",
        "linux",
        "--architecture",
        "amd64",
    ]));
    run(Command::new("umoci").args([
        "config",
        "--image",
        &image("pause"),
        "--tag",
        "broken",
        "--config.entrypoint",
        "/missing",
    ]));
    layout
}

/// How the test network is set up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Net {
    /// bridge + portmap + loopback.
    Good,
    /// The list names a plugin that is not installed.
    MissingPlugin,
    /// `tuning` fails after `bridge` attached the pod (an unknown sysctl).
    FailingPlugin,
}

/// Everything a sandbox test needs.
pub struct PodWorld {
    pub backend: Arc<ContainerdBackend>,
    pub channel: Channel,
    pub state_dir: PathBuf,
    pub conf_dir: PathBuf,
    pub ipam_dir: PathBuf,
    pub bridge: String,
    pub network: String,
    pub subnet_prefix: String,
    pub pause_image: String,
    pub tmp: tempfile::TempDir,
    pub registry: LocalRegistry,
    pub containerd: Containerd,
}

impl PodWorld {
    pub async fn new() -> PodWorld {
        Self::with(Net::Good, "pause").await
    }

    /// A world whose network is `net` and whose sandbox image is tag `pause_tag`.
    pub async fn with(net: Net, pause_tag: &str) -> PodWorld {
        Self::with_runtime(net, pause_tag, |_| {}).await
    }

    /// Like [`PodWorld::with`], with the backend's runtime options adjusted.
    pub async fn with_runtime(
        net: Net,
        pause_tag: &str,
        adjust: impl FnOnce(&mut RuntimeOptions),
    ) -> PodWorld {
        for plugin in ["bridge", "host-local", "portmap", "loopback", "tuning"] {
            let p = Path::new(PLUGIN_DIR).join(plugin);
            assert!(
                p.is_file(),
                "{} missing: install containernetworking-plugins",
                p.display()
            );
        }
        let containerd = Containerd::start();
        let registry = LocalRegistry::start();
        let tmp = tempfile::Builder::new()
            .prefix("crimux-pod")
            .tempdir()
            .expect("tempdir");
        let layout = build_pause_layout(tmp.path());
        registry.push(&layout, "pause", "test/pause:1");
        registry.push(&layout, "broken", "test/pause:broken");
        let pause_image = format!(
            "{}/test/pause:{}",
            registry.host,
            if pause_tag == "pause" { "1" } else { pause_tag }
        );

        let tag = format!("{:04x}", rand::random::<u16>());
        let octet = next_octet();
        let bridge = format!("crs{tag}");
        let network = format!("crimux-sbx-{tag}");
        let conf_dir = tmp.path().join("net.d");
        let ipam_dir = tmp.path().join("ipam");
        std::fs::create_dir_all(&conf_dir).expect("conf dir");
        let mut plugins = vec![
            json!({
                "type": "bridge",
                "bridge": bridge,
                "isGateway": true,
                "ipMasq": false,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": format!("10.198.{octet}.0/24")}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                    "dataDir": ipam_dir,
                },
            }),
            json!({"type": "portmap", "capabilities": {"portMappings": true}, "snat": true}),
            json!({"type": "loopback"}),
        ];
        match net {
            Net::Good => {}
            Net::MissingPlugin => plugins.push(json!({"type": "crimux-no-such-plugin"})),
            Net::FailingPlugin => plugins.insert(
                1,
                json!({"type": "tuning", "sysctl": {"net.crimux.no_such_sysctl": "1"}}),
            ),
        }
        let list = json!({"cniVersion": "1.0.0", "name": network, "plugins": plugins});
        std::fs::write(conf_dir.join("10-test.conflist"), list.to_string()).expect("conflist");

        let state_dir = tmp.path().join("state");
        let mut config = containerd.config();
        config.runtime = RuntimeOptions {
            state_dir: state_dir.clone(),
            sandbox_image: pause_image.clone(),
            cni_conf_dir: conf_dir.clone(),
            cni_bin_dirs: vec![PathBuf::from(PLUGIN_DIR)],
            ..RuntimeOptions::default()
        };
        adjust(&mut config.runtime);
        let backend = ContainerdBackend::connect(config, registry.client())
            .await
            .expect("connect backend");
        let channel = containerd.channel().await;
        PodWorld {
            backend,
            channel,
            state_dir,
            conf_dir,
            ipam_dir,
            bridge,
            network,
            subnet_prefix: format!("10.198.{octet}."),
            pause_image,
            tmp,
            registry,
            containerd,
        }
    }

    /// A second backend on the same daemon and state, as a restarted crimux makes it.
    pub async fn reconnect(&self) -> Arc<ContainerdBackend> {
        let mut config = self.containerd.config();
        config.runtime = RuntimeOptions {
            state_dir: self.state_dir.clone(),
            sandbox_image: self.pause_image.clone(),
            cni_conf_dir: self.conf_dir.clone(),
            cni_bin_dirs: vec![PathBuf::from(PLUGIN_DIR)],
            ..RuntimeOptions::default()
        };
        ContainerdBackend::connect(config, self.registry.client())
            .await
            .expect("reconnect backend")
    }

    pub fn netns_path(&self, id: &PodSandboxId) -> PathBuf {
        self.state_dir.join("netns").join(id.as_str())
    }

    pub fn files_dir(&self, id: &PodSandboxId) -> PathBuf {
        self.state_dir.join("sandboxes").join(id.as_str())
    }

    pub fn cni_cache(&self, id: &PodSandboxId) -> PathBuf {
        self.state_dir
            .join("cni-cache")
            .join(format!("{}.json", id.as_str()))
    }

    /// Addresses host-local holds for `id`.
    pub fn reserved_ips(&self, id: &PodSandboxId) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(self.ipam_dir.join(&self.network)) else {
            return Vec::new();
        };
        entries
            .filter_map(Result::ok)
            .filter(|e| {
                std::fs::read_to_string(e.path())
                    .map(|c| c.contains(id.as_str()))
                    .unwrap_or(false)
            })
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect()
    }

    /// Everything of sandbox `id` still on the host or in containerd; empty when clean.
    pub async fn leftovers(&self, id: &PodSandboxId) -> Vec<String> {
        let mut left = Vec::new();
        let containers = ContainersClient::new(self.channel.clone())
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
        let tasks = TasksClient::new(self.channel.clone())
            .list(req(ListTasksRequest::default()))
            .await
            .expect("list tasks")
            .into_inner()
            .tasks;
        left.extend(
            tasks
                .iter()
                .filter(|t| t.container_id == id.as_str())
                .map(|t| format!("task {} pid {}", t.container_id, t.pid)),
        );
        let mut stream = SnapshotsClient::new(self.channel.clone())
            .list(req(ListSnapshotsRequest {
                snapshotter: "overlayfs".into(),
                filters: vec![],
            }))
            .await
            .expect("list snapshots")
            .into_inner();
        while let Some(page) = stream.message().await.expect("snapshot page") {
            left.extend(
                page.info
                    .iter()
                    .filter(|s| s.name == id.as_str())
                    .map(|s| format!("snapshot {}", s.name)),
            );
        }
        left.extend(
            mounts_mentioning(id.as_str())
                .into_iter()
                .map(|m| format!("mount {m}")),
        );
        for path in [self.netns_path(id), self.files_dir(id), self.cni_cache(id)] {
            if path.exists() {
                left.push(format!("file {}", path.display()));
            }
        }
        left.extend(
            self.reserved_ips(id)
                .into_iter()
                .map(|ip| format!("IPAM reservation {ip}")),
        );
        left.extend(
            iptables_lines_mentioning(id.as_str())
                .into_iter()
                .map(|l| format!("iptables {l}")),
        );
        left
    }
}

impl Drop for PodWorld {
    fn drop(&mut self) {
        // Tasks first: their shims would outlive the test's containerd otherwise.
        let ctr = |args: &[&str]| {
            Command::new("ctr")
                .arg("--address")
                .arg(&self.containerd.socket)
                .args(["--namespace", NAMESPACE])
                .args(args)
                .output()
        };
        if let Ok(out) = ctr(&["tasks", "ls", "-q"]) {
            for id in String::from_utf8_lossy(&out.stdout).lines() {
                let _ = ctr(&["tasks", "kill", "-a", "-s", "SIGKILL", id]);
                std::thread::sleep(std::time::Duration::from_millis(100));
                let _ = ctr(&["tasks", "delete", "-f", id]);
            }
        }
        // CNI attachments left behind, DEL'd with a runtime of their own.
        let cache = self.state_dir.join("cni-cache");
        let cni = crimux_cni::Cni::new(&self.conf_dir, vec![PathBuf::from(PLUGIN_DIR)], &cache);
        let ids: Vec<String> = std::fs::read_dir(&cache)
            .into_iter()
            .flatten()
            .filter_map(Result::ok)
            .filter_map(|e| {
                e.file_name()
                    .to_string_lossy()
                    .strip_suffix(".json")
                    .map(str::to_string)
            })
            .collect();
        let netns_dir = self.state_dir.join("netns");
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            for id in ids {
                let req = crimux_cni::AttachRequest::new(
                    PodSandboxId(id.clone()),
                    netns_dir.join(&id),
                    SandboxMetadata::default(),
                );
                let _ = rt.block_on(cni.teardown(&req));
            }
        })
        .join();
        // Mounts under the state dir (netns pins, shm), innermost first.
        let state = self.state_dir.to_string_lossy().into_owned();
        let mut mounts: Vec<String> = mount_points()
            .into_iter()
            .filter(|m| m.starts_with(&state))
            .collect();
        mounts.reverse();
        for m in mounts {
            let _ = Command::new("umount").arg("-l").arg(&m).output();
        }
        let _ = Command::new("ip")
            .args(["link", "del", &self.bridge])
            .output();
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

/// Mount points of this process's mount namespace.
pub fn mount_points() -> Vec<String> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .expect("mountinfo")
        .lines()
        .filter_map(|l| l.split(' ').nth(4).map(str::to_string))
        .collect()
}

/// Mounts whose mount point names `needle`, with their filesystem type.
pub fn mounts_mentioning(needle: &str) -> Vec<String> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .expect("mountinfo")
        .lines()
        .filter(|l| l.split(' ').nth(4).is_some_and(|m| m.contains(needle)))
        .map(str::to_string)
        .collect()
}

/// The filesystem type mounted at exactly `path`, if any.
pub fn mount_type(path: &Path) -> Option<String> {
    let path = path.to_string_lossy();
    std::fs::read_to_string("/proc/self/mountinfo")
        .expect("mountinfo")
        .lines()
        .filter(|l| l.split(' ').nth(4) == Some(&*path))
        .filter_map(|l| l.split(" - ").nth(1))
        .filter_map(|rest| rest.split(' ').next().map(str::to_string))
        .next_back()
}

pub fn iptables_lines_mentioning(needle: &str) -> Vec<String> {
    let mut lines = Vec::new();
    for table in ["nat", "filter"] {
        let out = Command::new("iptables-save")
            .args(["-t", table])
            .output()
            .expect("iptables-save (install iptables)");
        lines.extend(
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .filter(|l| l.contains(needle))
                .map(str::to_string),
        );
    }
    lines
}

/// A pod config on the test network, with DNS settings and a host port.
pub fn pod_config(name: &str) -> SandboxConfig {
    SandboxConfig {
        metadata: SandboxMetadata {
            name: name.into(),
            uid: format!("uid-{name}"),
            namespace: "crimux-test".into(),
            attempt: 0,
        },
        hostname: format!("{name}-host"),
        dns: Some(DnsConfig {
            servers: vec!["10.96.0.10".into()],
            searches: vec!["crimux-test.svc.cluster.local".into()],
            options: vec!["ndots:5".into()],
        }),
        labels: [("app".to_string(), name.to_string())].into(),
        annotations: [("note".to_string(), "sandbox test".to_string())].into(),
        linux: Some(LinuxSandboxConfig::default()),
        ..Default::default()
    }
}

/// `pod_config` with a host port (so portmap installs rules naming the pod).
pub fn pod_config_with_port(name: &str, host_port: i32) -> SandboxConfig {
    let mut config = pod_config(name);
    config.port_mappings = vec![PortMapping {
        protocol: Protocol::Tcp,
        container_port: 80,
        host_port,
        host_ip: String::new(),
    }];
    config
}

/// `pod_config` in the host's network and IPC namespaces.
pub fn host_network_config(name: &str) -> SandboxConfig {
    let mut config = pod_config(name);
    let linux = config.linux.get_or_insert_with(Default::default);
    linux.security.namespace_options.network = NamespaceMode::Node;
    linux.security.namespace_options.ipc = NamespaceMode::Node;
    config
}

/// `(dev, inode)` of a namespace file, to compare namespaces.
pub fn ns_identity(path: &Path) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).unwrap_or_else(|e| panic!("stat {}: {e}", path.display()));
    (m.dev(), m.ino())
}
