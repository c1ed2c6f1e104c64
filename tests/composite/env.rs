//! A node with two backends: the harness's usual [`PodEnv`] (its containerd on a unix socket
//! is the primary) plus a second containerd with its own root, state and socket that also
//! serves TCP 127.0.0.1 with mutual TLS: the delegate, reached by crimux as
//! `tcp://127.0.0.1:<port>` with `[backend.tls]`, as a WSL2 containerd is from Windows.
//!
//! Dropped in field order: the pods go first, through crimux (so CNI DEL runs for both
//! backends), then whatever still runs in the delegate is killed and the delegate stopped.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use k8s_cri::v1::{
    ContainerState, ListContainersRequest, ListPodSandboxRequest, PodSandbox, PodSandboxConfig,
    PodSandboxStatusRequest, PullImageRequest, RunPodSandboxRequest,
};
use tempfile::TempDir;

use crate::common::certs::Certs;
use crate::common::containerd::ContainerdClient;
use crate::common::crimux::{BackendConfig, BackendTls, CrimuxConfig};
use crate::common::runtime::PodEnv;
use crate::common::{Containerd, Crimux, NS};

/// The delegate's backend name and the RuntimeClass handler it serves.
pub const DELEGATE: &str = "wsl";
pub const HANDLER: &str = "wsl2";

/// How the primary is declared.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Primary {
    /// What containerd's introspection says (linux).
    Discovered,
    /// `os = "windows"`: a simulated Windows node (the daemon is really Linux).
    DeclaredWindows,
}

pub struct Composite {
    pub p: PodEnv,
    pub delegate: Delegate,
    /// The delegate's TLS material (under `dir`, which lives as long as the node).
    #[allow(dead_code)]
    pub certs: Certs,
    #[allow(dead_code)]
    pub dir: TempDir,
}

/// The delegate containerd; on drop, kills what still runs in it (starting it again first
/// if a test stopped it and then failed).
pub struct Delegate {
    pub containerd: Containerd,
}

impl Composite {
    /// Starts the primary (harness containerd + crimux), the TLS delegate, and crimux again
    /// with both backends.
    pub async fn start(primary: Primary) -> Composite {
        Composite::start_with(primary, |_| {}).await
    }

    pub async fn start_with(primary: Primary, adjust: impl FnOnce(&mut CrimuxConfig)) -> Composite {
        let mut p = PodEnv::start().await;
        let dir = tempfile::Builder::new()
            .prefix("crimux-composite-")
            .tempdir()
            .expect("create composite dir");
        let certs = Certs::generate(&dir.path().join("certs"), "crimux test CA");
        let delegate = Containerd::start_tcp_tls(&certs).await;
        let mut config = p.env.crimux.config().clone();
        config.backends[0].role = Some("primary".into());
        if primary == Primary::DeclaredWindows {
            config.backends[0].os = Some("windows".into());
        }
        config.backends.push(delegate_backend(&delegate, &certs));
        adjust(&mut config);
        p.env.crimux.stop();
        p.env.crimux = Crimux::start(config).await;
        Composite {
            p,
            delegate: Delegate {
                containerd: delegate,
            },
            certs,
            dir,
        }
    }

    pub fn crimux(&self) -> &Crimux {
        &self.p.env.crimux
    }

    pub async fn primary_ctrd(&self) -> ContainerdClient {
        self.p.env.containerd.client().await
    }

    pub async fn delegate_ctrd(&self) -> ContainerdClient {
        self.delegate.containerd.client().await
    }

    /// PullImage through crimux, optionally for a pod (as kubelet does); the image ref.
    pub async fn pull(
        &self,
        image: &str,
        pod: Option<&PodSandboxConfig>,
    ) -> Result<String, tonic::Status> {
        self.p
            .env
            .images()
            .await
            .pull_image(PullImageRequest {
                image: Some(crate::common::spec(image)),
                auth: None,
                sandbox_config: pod.cloned(),
            })
            .await
            .map(|r| r.into_inner().image_ref)
    }

    pub async fn pull_ok(&self, image: &str, pod: Option<&PodSandboxConfig>) -> String {
        match self.pull(image, pod).await {
            Ok(r) => r,
            Err(s) => {
                self.crimux().dump_log();
                panic!("PullImage {image}: {s:?}");
            }
        }
    }

    /// RunPodSandbox with a RuntimeClass handler; records the id for the leak checks.
    pub async fn try_run_pod(
        &self,
        config: &PodSandboxConfig,
        handler: &str,
    ) -> Result<String, tonic::Status> {
        let id = self
            .p
            .rt()
            .await
            .run_pod_sandbox(RunPodSandboxRequest {
                config: Some(config.clone()),
                runtime_handler: handler.to_string(),
            })
            .await?
            .into_inner()
            .pod_sandbox_id;
        self.p
            .pod_ids
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(id.clone());
        Ok(id)
    }

    pub async fn run_pod(&self, config: &PodSandboxConfig, handler: &str) -> String {
        match self.try_run_pod(config, handler).await {
            Ok(id) => id,
            Err(s) => {
                self.crimux().dump_log();
                panic!("RunPodSandbox (handler {handler:?}): {s:?}");
            }
        }
    }

    pub async fn pods(&self) -> Vec<PodSandbox> {
        self.p
            .rt()
            .await
            .list_pod_sandbox(ListPodSandboxRequest { filter: None })
            .await
            .expect("ListPodSandbox")
            .into_inner()
            .items
    }

    pub async fn pod_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.pods().await.into_iter().map(|p| p.id).collect();
        ids.sort();
        ids
    }

    /// Container ids as ListContainers answers them (sorted, duplicates kept).
    pub async fn container_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self
            .p
            .rt()
            .await
            .list_containers(ListContainersRequest { filter: None })
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

    pub async fn pod_state(&self, id: &str) -> Result<i32, tonic::Status> {
        self.p
            .rt()
            .await
            .pod_sandbox_status(PodSandboxStatusRequest {
                pod_sandbox_id: id.to_string(),
                verbose: false,
            })
            .await
            .map(|r| r.into_inner().status.map(|s| s.state).unwrap_or(-1))
    }

    pub async fn assert_container_running(&self, id: &str) {
        let s = self.p.container_status(id).await;
        assert_eq!(
            s.state,
            ContainerState::ContainerRunning as i32,
            "container {id}: {s:?}"
        );
    }

    /// The CRI log file of a container made by `PodEnv::container_config(name, ..)` in a
    /// pod made by `PodEnv::pod_config(pod_name)`.
    pub fn log_file(&self, pod: &PodSandboxConfig, container: &str) -> PathBuf {
        PathBuf::from(&pod.log_directory).join(format!("{container}.log"))
    }
}

/// The delegate's `[[backend]]`: TCP with mutual TLS, handler `wsl2`.
pub fn delegate_backend(delegate: &Containerd, certs: &Certs) -> BackendConfig {
    let mut b = BackendConfig::new(
        DELEGATE,
        &delegate.tcp_address().expect("delegate serves TCP"),
    );
    b.role = Some("delegate".into());
    b.runtime_handlers = vec![HANDLER.to_string()];
    b.tls = Some(BackendTls {
        ca: certs.ca(),
        cert: certs.client_cert(),
        key: certs.client_key(),
        server_name: None,
    });
    b
}

impl Drop for Delegate {
    fn drop(&mut self) {
        if !self.containerd.is_running() {
            let containerd = &mut self.containerd;
            std::thread::scope(|s| {
                s.spawn(|| {
                    if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                    {
                        rt.block_on(containerd.start_again());
                    }
                });
            });
        }
        let address = self.containerd.socket();
        let ctr = |args: &[&str]| {
            Command::new("ctr")
                .arg("--address")
                .arg(&address)
                .args(["--namespace", NS])
                .args(args)
                .output()
        };
        if let Ok(out) = ctr(&["tasks", "ls", "-q"]) {
            for id in String::from_utf8_lossy(&out.stdout).lines() {
                let _ = ctr(&["tasks", "kill", "-a", "-s", "SIGKILL", id]);
                std::thread::sleep(Duration::from_millis(100));
                let _ = ctr(&["tasks", "delete", "-f", id]);
            }
        }
    }
}
