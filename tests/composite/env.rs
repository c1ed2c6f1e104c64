//! A node with two backends: the harness's usual [`PodEnv`] (its containerd on a unix socket
//! is the primary) plus a second containerd with its own root, state and socket that also
//! serves TCP 127.0.0.1 with mutual TLS: the delegate, reached by crimux as
//! `tcp://127.0.0.1:<port>` with `[backend.tls]`, as a WSL2 containerd is from Windows.
//!
//! Dropped in field order: the pods go first, through crimux (so CNI DEL runs for both
//! backends), then whatever still runs in the delegate is killed and the delegate stopped.

use std::path::PathBuf;

use k8s_cri::v1::{ContainerState, ListPodSandboxRequest, PodSandbox, PodSandboxConfig};
use tempfile::TempDir;

use crate::common::certs::Certs;
use crate::common::containerd::ContainerdClient;
use crate::common::crimux::{BackendConfig, BackendTls, CrimuxConfig};
use crate::common::leaks;
use crate::common::runtime::{listed_container_ids, listed_pod_ids, PodEnv};
use crate::common::{Containerd, Crimux};

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
        self.p.env.pull_for(image, pod).await
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
    pub async fn run_pod(&self, config: &PodSandboxConfig, handler: &str) -> String {
        self.p.run_pod_on(config, handler).await
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
        listed_pod_ids(self.p.rt().await, None).await
    }

    /// Container ids as ListContainers answers them (sorted, duplicates kept).
    pub async fn container_ids(&self) -> Vec<String> {
        listed_container_ids(self.p.rt().await, None).await
    }

    pub async fn pod_state(&self, id: &str) -> Result<i32, tonic::Status> {
        let status = self.crimux().pod_status(id).await?;
        Ok(status.map_or(-1, |s| s.state))
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
        leaks::kill_tasks(&self.containerd.socket());
    }
}
