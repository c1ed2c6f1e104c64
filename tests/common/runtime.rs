//! RuntimeService harness: a [`TestEnv`] whose crimux runs pods. Each [`PodEnv`] gets its own
//! CNI network (bridge `crt<4hex>`, a /24 in 10.197.0.0/16, its own host-local dataDir), the
//! static C pause image from build-images.sh as `sandbox_image`, and the `crimux-log` plugin
//! next to the crimux binary. Dropping a `PodEnv` removes every pod through crimux (so CNI
//! DEL cleans iptables and IPAM), then kills what is still running, unmounts what is mounted
//! under crimux's root and deletes the bridge: a failed assertion leaks nothing onto the host.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use containerd_client::services::v1::tasks_client::TasksClient;
use containerd_client::services::v1::GetRequest;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use k8s_cri::v1::{
    ContainerConfig, ContainerFilter, ContainerMetadata, ContainerState, ContainerStats,
    ContainerStatsRequest, ContainerStatus, ContainerStatusRequest, CreateContainerRequest,
    DnsConfig, ExecSyncRequest, ExecSyncResponse, ImageSpec, KeyValue, LinuxContainerConfig,
    LinuxPodSandboxConfig, ListContainerStatsRequest, ListContainersRequest, ListPodSandboxRequest,
    PodSandboxConfig, PodSandboxFilter, PodSandboxMetadata, PodSandboxStats,
    PodSandboxStatsRequest, RemovePodSandboxRequest, RunPodSandboxRequest, StartContainerRequest,
    StopPodSandboxRequest,
};
use tonic::transport::Channel;
use tonic::Request;

use super::crimux::CrimuxConfig;
use super::leaks;
use super::process::run;
use super::{eventually, test_images, Registry, TestEnv, NS};

/// Where Debian installs the CNI plugins.
pub const CNI_BIN_DIR: &str = "/usr/lib/cni";

/// Builds `crimux-log` next to the crimux binary under test (crimux finds its log plugin
/// there); `cargo test --test runtime` alone does not build another package's binary.
pub fn ensure_log_plugin() {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let crimux = PathBuf::from(super::crimux::binary());
        let plugin = crimux
            .parent()
            .map(|d| d.join("crimux-log"))
            .expect("crimux binary has a directory");
        if std::env::var_os("CRIMUX_BIN").is_none() {
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            let mut cmd = Command::new(cargo);
            cmd.args(["build", "-q", "-p", "crimux-cri-log", "--bin", "crimux-log"]);
            if crimux
                .parent()
                .and_then(Path::file_name)
                .is_some_and(|n| n == "release")
            {
                cmd.arg("--release");
            }
            run(&mut cmd);
        }
        assert!(plugin.is_file(), "{} was not built", plugin.display());
    });
}

/// Pushes the pause image to the shared anonymous registry once per test process.
fn pause_image() -> String {
    static PUSHED: OnceLock<String> = OnceLock::new();
    PUSHED
        .get_or_init(|| {
            let registry = Registry::shared();
            registry.push(
                test_images(),
                "pause:latest",
                &format!("{}/pause:latest", super::registry::PREFIX),
            );
            registry.image("pause:latest")
        })
        .clone()
}

/// Random bits without a `rand` dev-dependency.
pub fn random_u64() -> u64 {
    use std::io::Read;
    let mut buf = [0u8; 8];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .expect("read /dev/urandom");
    u64::from_le_bytes(buf)
}

/// Distinct /24s of 10.197.0.0/16 for the pods of this process.
fn next_octet() -> u8 {
    static NEXT: AtomicU8 = AtomicU8::new(0);
    static BASE: OnceLock<u8> = OnceLock::new();
    let base = *BASE.get_or_init(|| (random_u64() % 150) as u8);
    base + NEXT.fetch_add(1, Ordering::SeqCst) % 100 + 1
}

/// One test's CNI network: its conflist, IPAM dir and bridge.
pub struct PodNet {
    pub dir: tempfile::TempDir,
    pub bridge: String,
    pub network: String,
    /// "10.197.N." — every pod IP starts with it.
    pub subnet_prefix: String,
}

impl PodNet {
    fn new() -> PodNet {
        for plugin in ["bridge", "host-local", "portmap", "loopback"] {
            let p = Path::new(CNI_BIN_DIR).join(plugin);
            assert!(
                p.is_file(),
                "{} missing: install containernetworking-plugins",
                p.display()
            );
        }
        let dir = tempfile::Builder::new()
            .prefix("crimux-net-")
            .tempdir()
            .expect("create net dir");
        let tag = format!("{:04x}", random_u64() as u16);
        let octet = next_octet();
        let bridge = format!("crt{tag}");
        let network = format!("crimux-rt-{tag}");
        let conf_dir = dir.path().join("net.d");
        std::fs::create_dir_all(&conf_dir).expect("create net.d");
        let list = serde_json::json!({
            "cniVersion": "1.0.0",
            "name": network,
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": bridge,
                    "isGateway": true,
                    "ipMasq": false,
                    "hairpinMode": true,
                    "ipam": {
                        "type": "host-local",
                        "ranges": [[{"subnet": format!("10.197.{octet}.0/24")}]],
                        "routes": [{"dst": "0.0.0.0/0"}],
                        "dataDir": dir.path().join("ipam"),
                    },
                },
                {"type": "portmap", "capabilities": {"portMappings": true}, "snat": true},
                {"type": "loopback"},
            ],
        });
        std::fs::write(conf_dir.join("10-crimux-test.conflist"), list.to_string())
            .expect("write conflist");
        PodNet {
            dir,
            bridge,
            network,
            subnet_prefix: format!("10.197.{octet}."),
        }
    }

    pub fn conf_dir(&self) -> PathBuf {
        self.dir.path().join("net.d")
    }

    pub fn ipam_dir(&self) -> PathBuf {
        self.dir.path().join("ipam")
    }
}

/// A crimux that runs pods, and everything to check what it left.
pub struct PodEnv {
    pub env: TestEnv,
    pub net: PodNet,
    pub pause_image: String,
    pub busybox: String,
    /// Every pod id this test created, for the iptables leak check.
    pub pod_ids: Mutex<Vec<String>>,
}

impl PodEnv {
    pub async fn start() -> PodEnv {
        ensure_log_plugin();
        let net = PodNet::new();
        let conf_dir = net.conf_dir();
        // crimux pulls the pause image on the first RunPodSandbox.
        let pause = pause_image();
        let sandbox_image = pause.clone();
        let env = TestEnv::start_with(|c| {
            c.sandbox_image = sandbox_image;
            c.cni = Some((conf_dir, vec![PathBuf::from(CNI_BIN_DIR)]));
        })
        .await;
        let busybox = env.registry.image("busybox:latest");
        PodEnv {
            env,
            net,
            pause_image: pause,
            busybox,
            pod_ids: Mutex::new(Vec::new()),
        }
    }

    pub async fn rt(&self) -> RuntimeServiceClient<Channel> {
        self.env.crimux.runtime().await
    }

    /// The config of another crimux under `dir`, on the containerd at `containerd_address`
    /// as backend `backend`, sharing this env's pause image, registries and CNI network (one
    /// bridge, one IPAM directory): an inner crimux that an outer one forwards to.
    pub fn sibling_config(
        &self,
        dir: &Path,
        containerd_address: &str,
        backend: &str,
    ) -> CrimuxConfig {
        let mut config = CrimuxConfig::new(dir, containerd_address);
        config.backends[0].name = backend.into();
        config.sandbox_image = self.pause_image.clone();
        config.registry_config_path = Some(self.env.certs_d());
        config.cni = Some((self.net.conf_dir(), vec![PathBuf::from(CNI_BIN_DIR)]));
        config
    }

    /// A pod config on this network: hostname `<name>-host`, DNS, a label `app=<name>`,
    /// logs under the test dir.
    pub fn pod_config(&self, name: &str) -> PodSandboxConfig {
        let uid = format!("uid-{name}-{:08x}", random_u64() as u32);
        PodSandboxConfig {
            metadata: Some(PodSandboxMetadata {
                name: name.to_string(),
                uid,
                namespace: "crimux-test".to_string(),
                attempt: 0,
            }),
            hostname: format!("{name}-host"),
            log_directory: self
                .net
                .dir
                .path()
                .join("logs")
                .join(name)
                .display()
                .to_string(),
            dns_config: Some(DnsConfig {
                servers: vec!["10.96.0.10".into()],
                searches: vec!["crimux-test.svc.cluster.local".into()],
                options: vec!["ndots:5".into()],
            }),
            labels: HashMap::from([("app".to_string(), name.to_string())]),
            annotations: HashMap::from([("note".to_string(), "runtime test".to_string())]),
            linux: Some(LinuxPodSandboxConfig::default()),
            ..Default::default()
        }
    }

    /// RunPodSandbox; records the id for the leak checks.
    pub async fn try_run_pod(&self, config: &PodSandboxConfig) -> Result<String, tonic::Status> {
        self.try_run_pod_on(config, "").await
    }

    pub async fn run_pod(&self, config: &PodSandboxConfig) -> String {
        self.run_pod_on(config, "").await
    }

    /// RunPodSandbox with RuntimeClass handler `handler`; records the id for the leak checks.
    pub async fn try_run_pod_on(
        &self,
        config: &PodSandboxConfig,
        handler: &str,
    ) -> Result<String, tonic::Status> {
        let id = self
            .rt()
            .await
            .run_pod_sandbox(RunPodSandboxRequest {
                config: Some(config.clone()),
                runtime_handler: handler.to_string(),
            })
            .await?
            .into_inner()
            .pod_sandbox_id;
        self.pod_ids
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(id.clone());
        Ok(id)
    }

    /// [`PodEnv::try_run_pod_on`]; panics with crimux's log on failure.
    pub async fn run_pod_on(&self, config: &PodSandboxConfig, handler: &str) -> String {
        match self.try_run_pod_on(config, handler).await {
            Ok(id) => id,
            Err(status) => {
                self.env.crimux.dump_log();
                panic!("RunPodSandbox (handler {handler:?}): {status:?}");
            }
        }
    }

    /// Every pod id this test created (for [`leaks::iptables_left`]).
    pub fn created_pods(&self) -> Vec<String> {
        self.pod_ids
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// A busybox container running `sh -c script`, logging to `<name>.log`.
    pub fn container_config(&self, name: &str, script: &str) -> ContainerConfig {
        ContainerConfig {
            metadata: Some(ContainerMetadata {
                name: name.to_string(),
                attempt: 0,
            }),
            image: Some(ImageSpec {
                image: self.busybox.clone(),
                ..Default::default()
            }),
            command: vec!["sh".into(), "-c".into(), script.into()],
            envs: vec![KeyValue {
                key: "GREETING".into(),
                value: "hello world".into(),
            }],
            labels: HashMap::from([("c".to_string(), name.to_string())]),
            log_path: format!("{name}.log"),
            linux: Some(LinuxContainerConfig::default()),
            ..Default::default()
        }
    }

    pub async fn try_create(
        &self,
        pod_id: &str,
        pod: &PodSandboxConfig,
        config: &ContainerConfig,
    ) -> Result<String, tonic::Status> {
        self.rt()
            .await
            .create_container(CreateContainerRequest {
                pod_sandbox_id: pod_id.to_string(),
                config: Some(config.clone()),
                sandbox_config: Some(pod.clone()),
            })
            .await
            .map(|r| r.into_inner().container_id)
    }

    /// CreateContainer + StartContainer; panics with crimux's log on failure.
    pub async fn create_start(
        &self,
        pod_id: &str,
        pod: &PodSandboxConfig,
        config: &ContainerConfig,
    ) -> String {
        let id = match self.try_create(pod_id, pod, config).await {
            Ok(id) => id,
            Err(status) => {
                self.env.crimux.dump_log();
                panic!("CreateContainer: {status:?}");
            }
        };
        if let Err(status) = self
            .rt()
            .await
            .start_container(StartContainerRequest {
                container_id: id.clone(),
            })
            .await
        {
            self.env.crimux.dump_log();
            panic!("StartContainer: {status:?}");
        }
        id
    }

    pub async fn container_status(&self, id: &str) -> ContainerStatus {
        self.rt()
            .await
            .container_status(ContainerStatusRequest {
                container_id: id.to_string(),
                verbose: false,
            })
            .await
            .expect("ContainerStatus")
            .into_inner()
            .status
            .expect("ContainerStatus has a status")
    }

    /// ContainerStats of `id`, asserting they name it and show a working set (it runs).
    pub async fn live_container_stats(&self, id: &str) -> ContainerStats {
        let stats = self
            .rt()
            .await
            .container_stats(ContainerStatsRequest {
                container_id: id.to_string(),
            })
            .await
            .expect("ContainerStats")
            .into_inner()
            .stats
            .expect("stats");
        assert_eq!(
            stats.attributes.as_ref().map(|a| a.id.as_str()),
            Some(id),
            "{stats:?}"
        );
        assert!(
            stats
                .memory
                .as_ref()
                .and_then(|m| m.working_set_bytes.as_ref())
                .is_some_and(|v| v.value > 0),
            "{stats:?}"
        );
        stats
    }

    /// PodSandboxStats of pod `id`, asserting they name it.
    pub async fn pod_stats(&self, id: &str) -> PodSandboxStats {
        let stats = self
            .rt()
            .await
            .pod_sandbox_stats(PodSandboxStatsRequest {
                pod_sandbox_id: id.to_string(),
            })
            .await
            .expect("PodSandboxStats")
            .into_inner()
            .stats
            .expect("pod stats");
        assert_eq!(
            stats.attributes.as_ref().map(|a| a.id.as_str()),
            Some(id),
            "{stats:?}"
        );
        stats
    }

    /// The container ids ListContainerStats (unfiltered) names, sorted.
    pub async fn stats_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self
            .rt()
            .await
            .list_container_stats(ListContainerStatsRequest { filter: None })
            .await
            .expect("ListContainerStats")
            .into_inner()
            .stats
            .into_iter()
            .filter_map(|s| s.attributes.map(|a| a.id))
            .collect();
        ids.sort();
        ids
    }

    /// Waits until container `id` exited; returns its status.
    pub async fn wait_exited(&self, id: &str, timeout: Duration) -> ContainerStatus {
        eventually(&format!("container {id} to exit"), timeout, || async {
            let s = self.container_status(id).await;
            if s.state == ContainerState::ContainerExited as i32 {
                Ok(())
            } else {
                Err(format!("state {}", s.state))
            }
        })
        .await;
        self.container_status(id).await
    }

    pub async fn exec(&self, id: &str, cmd: &[&str]) -> ExecSyncResponse {
        self.rt()
            .await
            .exec_sync(ExecSyncRequest {
                container_id: id.to_string(),
                cmd: cmd.iter().map(|s| s.to_string()).collect(),
                timeout: 30,
            })
            .await
            .unwrap_or_else(|s| panic!("ExecSync {cmd:?}: {s:?}"))
            .into_inner()
    }

    /// `sh -c script` in container `id`; stdout, asserting exit code 0.
    pub async fn sh(&self, id: &str, script: &str) -> String {
        let r = self.exec(id, &["sh", "-c", script]).await;
        assert_eq!(
            r.exit_code,
            0,
            "{script:?} failed: stdout {:?} stderr {:?}",
            String::from_utf8_lossy(&r.stdout),
            String::from_utf8_lossy(&r.stderr)
        );
        String::from_utf8_lossy(&r.stdout).into_owned()
    }

    pub async fn stop_remove_pod(&self, id: &str) {
        let mut rt = self.rt().await;
        rt.stop_pod_sandbox(StopPodSandboxRequest {
            pod_sandbox_id: id.to_string(),
        })
        .await
        .expect("StopPodSandbox");
        rt.remove_pod_sandbox(RemovePodSandboxRequest {
            pod_sandbox_id: id.to_string(),
        })
        .await
        .expect("RemovePodSandbox");
    }

    /// Channel to this test's containerd.
    pub async fn ctrd_channel(&self) -> Channel {
        containerd_client::connect(self.env.containerd.socket())
            .await
            .expect("connect to containerd")
    }

    /// containerd's status of task `id` (1 = created, 2 = running, 3 = stopped).
    pub async fn task_status(&self, id: &str) -> Option<(i32, u32)> {
        let got = TasksClient::new(self.ctrd_channel().await)
            .get(in_ns(GetRequest {
                container_id: id.to_string(),
                exec_id: String::new(),
            }))
            .await
            .ok()?;
        got.into_inner().process.map(|p| (p.status, p.exit_status))
    }

    /// Everything a removed pod must not leave: containerd containers and tasks, snapshots
    /// that are not committed image layers, leases, mounts under crimux's root (its netns
    /// pin directory aside), iptables lines naming a pod this test created. Empty when clean.
    pub async fn leftovers(&self) -> Vec<String> {
        let crimux = &self.env.crimux;
        let mut left = leaks::containerd_leftovers(&self.env.ctrd().await, "").await;
        left.extend(leaks::mounts_left(
            crimux,
            &[leaks::netns_pin_dir(crimux, "default")],
        ));
        left.extend(leaks::iptables_left(&self.created_pods()));
        left
    }

    /// Waits up to 15 s for [`PodEnv::leftovers`] to be empty (GC, shim exits).
    pub async fn assert_no_leaks(&self) {
        leaks::assert_nothing_left("nothing left behind", Duration::from_secs(15), || {
            self.leftovers()
        })
        .await;
    }
}

impl Drop for PodEnv {
    fn drop(&mut self) {
        // Pods first, through crimux, so CNI DEL removes iptables rules and IPAM entries;
        // then whatever is still running (its shim would outlive the test's containerd).
        leaks::remove_pods_through(self.env.crimux.socket());
        leaks::kill_tasks(&self.env.containerd.socket());
        leaks::unmount_under(&self.env.crimux);
        let _ = Command::new("ip")
            .args(["link", "del", &self.net.bridge])
            .output();
    }
}

/// Sorted ids of the pods `rt` lists.
pub async fn listed_pod_ids(
    mut rt: RuntimeServiceClient<Channel>,
    filter: Option<PodSandboxFilter>,
) -> Vec<String> {
    let mut ids: Vec<String> = rt
        .list_pod_sandbox(ListPodSandboxRequest { filter })
        .await
        .expect("ListPodSandbox")
        .into_inner()
        .items
        .into_iter()
        .map(|p| p.id)
        .collect();
    ids.sort();
    ids
}

/// Sorted ids of the containers `rt` lists (duplicates kept).
pub async fn listed_container_ids(
    mut rt: RuntimeServiceClient<Channel>,
    filter: Option<ContainerFilter>,
) -> Vec<String> {
    let mut ids: Vec<String> = rt
        .list_containers(ListContainersRequest { filter })
        .await
        .expect("ListContainers")
        .into_inner()
        .containers
        .into_iter()
        .map(|c| c.id)
        .collect();
    ids.sort();
    ids
}

pub fn in_ns<T>(message: T) -> Request<T> {
    let mut req = Request::new(message);
    req.metadata_mut().insert(
        "containerd-namespace",
        NS.parse().expect("namespace is valid metadata"),
    );
    req
}

/// Mount points of this process's mount namespace.
pub fn mount_points() -> Vec<String> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .expect("read mountinfo")
        .lines()
        .filter_map(|l| l.split(' ').nth(4).map(str::to_string))
        .collect()
}

/// Every rule of the nat and filter tables.
pub fn iptables_lines() -> Vec<String> {
    let mut lines = Vec::new();
    for table in ["nat", "filter"] {
        let out = Command::new("iptables-save")
            .args(["-t", table])
            .output()
            .expect("iptables-save (install iptables)");
        lines.extend(
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .map(str::to_string),
        );
    }
    lines
}

/// Checks a CRI log line `<RFC3339Nano> <stream> <P|F> <text>`; returns (stream, tag, text).
pub fn parse_cri_log_line(line: &str) -> (String, String, String) {
    let mut parts = line.splitn(4, ' ');
    let ts = parts.next().unwrap_or_default();
    let stream = parts.next().unwrap_or_default().to_string();
    let tag = parts.next().unwrap_or_default().to_string();
    let text = parts.next().unwrap_or_default().to_string();
    let bytes = ts.as_bytes();
    let digits = |r: std::ops::Range<usize>| {
        r.clone()
            .all(|i| bytes.get(i).is_some_and(u8::is_ascii_digit))
    };
    let rfc3339 = digits(0..4)
        && bytes.get(4) == Some(&b'-')
        && digits(5..7)
        && bytes.get(7) == Some(&b'-')
        && digits(8..10)
        && bytes.get(10) == Some(&b'T')
        && digits(11..13)
        && bytes.get(13) == Some(&b':')
        && digits(14..16)
        && bytes.get(16) == Some(&b':')
        && digits(17..19)
        && (ts.ends_with('Z') || ts[19..].contains('+') || ts[19..].contains('-'));
    assert!(
        rfc3339,
        "log line timestamp {ts:?} is not RFC 3339: {line:?}"
    );
    (stream, tag, text)
}
