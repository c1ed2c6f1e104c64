//! The traits a backend implements. A backend is one containerd daemon (or, in unit tests,
//! a recording fake). The traits are small and split by concern; the composite dispatcher
//! holds `Arc<dyn Backend>` and routes each call to one of them.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::container::{ContainerConfig, Resources, WindowsResources};
use crate::error::{Error, Result};
use crate::ids::{ContainerId, PodSandboxId};
use crate::image::{FsUsage, Image, ImageId, PullImage};
use crate::platform::Platform;
use crate::sandbox::SandboxConfig;
use crate::status::{
    BackendStatus, ContainerEvent, ContainerStats, ContainerStatus, ContainerSummary,
    ExecSyncOutput, SandboxStats, SandboxStatus, SandboxSummary,
};

/// Whether a backend is the node's primary or a delegate for another OS.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum BackendRole {
    #[default]
    Primary,
    Delegate,
}

impl fmt::Display for BackendRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BackendRole::Primary => "primary",
            BackendRole::Delegate => "delegate",
        })
    }
}

/// What the dispatcher knows of a backend without asking it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackendInfo {
    /// The operator's name for it, unique on the node (`[[backend]] name`).
    pub name: String,
    pub role: BackendRole,
    /// The platform it runs, discovered or configured.
    pub platform: Platform,
    /// RuntimeClass handler names it serves; `""` is the default handler.
    pub runtime_handlers: Vec<String>,
}

/// Images in one backend's stores.
#[async_trait]
pub trait ImageBackend: Send + Sync {
    /// Pulls and unpacks an image for this backend's platform; returns its id.
    async fn pull_image(&self, request: &PullImage) -> Result<ImageId>;

    /// The image named by `image` (a reference, short name, id or id prefix), if present.
    async fn image_status(&self, image: &str) -> Result<Option<Image>>;

    async fn list_images(&self) -> Result<Vec<Image>>;

    /// Removes every name of the image; an absent image is not an error.
    async fn remove_image(&self, image: &str) -> Result<()>;

    /// Filesystem usage of the image store (the snapshotter).
    async fn image_fs_info(&self) -> Result<Vec<FsUsage>>;
}

fn not_built(what: &str) -> Error {
    Error::Unimplemented(format!("{what} is not implemented yet in crimux"))
}

/// Pod sandboxes in one backend. The dispatcher chooses the id; the backend owns the rest
/// (pause container, network namespace, CNI) and rolls back every step on failure.
#[async_trait]
pub trait SandboxBackend: Send + Sync {
    async fn run_pod_sandbox(&self, id: &PodSandboxId, config: &SandboxConfig) -> Result<()> {
        let _ = (id, config);
        Err(not_built("RunPodSandbox"))
    }

    /// Stops every container of the pod, then the pause, then tears the network down.
    /// Idempotent.
    async fn stop_pod_sandbox(&self, id: &PodSandboxId) -> Result<()> {
        let _ = id;
        Err(not_built("StopPodSandbox"))
    }

    /// Stops first if needed; removes containers, netns, snapshots, files and records.
    /// An unknown id succeeds.
    async fn remove_pod_sandbox(&self, id: &PodSandboxId) -> Result<()> {
        let _ = id;
        Err(not_built("RemovePodSandbox"))
    }

    async fn pod_sandbox_status(&self, id: &PodSandboxId, verbose: bool) -> Result<SandboxStatus> {
        let _ = (id, verbose);
        Err(not_built("PodSandboxStatus"))
    }

    async fn list_pod_sandboxes(&self) -> Result<Vec<SandboxSummary>> {
        Err(not_built("ListPodSandbox"))
    }

    async fn pod_sandbox_stats(&self, id: &PodSandboxId) -> Result<SandboxStats> {
        let _ = id;
        Err(not_built("PodSandboxStats"))
    }
}

/// Containers in one backend. A container always lives on its sandbox's backend.
#[async_trait]
pub trait ContainerBackend: Send + Sync {
    async fn create_container(
        &self,
        id: &ContainerId,
        sandbox_id: &PodSandboxId,
        config: &ContainerConfig,
        sandbox_config: &SandboxConfig,
    ) -> Result<()> {
        let _ = (id, sandbox_id, config, sandbox_config);
        Err(not_built("CreateContainer"))
    }

    async fn start_container(&self, id: &ContainerId) -> Result<()> {
        let _ = id;
        Err(not_built("StartContainer"))
    }

    /// Sends the stop signal, waits up to `timeout`, then SIGKILL. Stopping an exited
    /// container succeeds.
    async fn stop_container(&self, id: &ContainerId, timeout: Duration) -> Result<()> {
        let _ = (id, timeout);
        Err(not_built("StopContainer"))
    }

    /// An unknown id succeeds.
    async fn remove_container(&self, id: &ContainerId) -> Result<()> {
        let _ = id;
        Err(not_built("RemoveContainer"))
    }

    async fn container_status(&self, id: &ContainerId, verbose: bool) -> Result<ContainerStatus> {
        let _ = (id, verbose);
        Err(not_built("ContainerStatus"))
    }

    async fn list_containers(&self) -> Result<Vec<ContainerSummary>> {
        Err(not_built("ListContainers"))
    }

    async fn update_container_resources(
        &self,
        id: &ContainerId,
        linux: Option<&Resources>,
        windows: Option<&WindowsResources>,
    ) -> Result<()> {
        let _ = (id, linux, windows);
        Err(not_built("UpdateContainerResources"))
    }

    async fn reopen_container_log(&self, id: &ContainerId) -> Result<()> {
        let _ = id;
        Err(not_built("ReopenContainerLog"))
    }

    /// Runs `cmd` in the container and captures its output; `timeout` kills it.
    async fn exec_sync(
        &self,
        id: &ContainerId,
        cmd: &[String],
        timeout: Option<Duration>,
    ) -> Result<ExecSyncOutput> {
        let _ = (id, cmd, timeout);
        Err(not_built("ExecSync"))
    }

    async fn container_stats(&self, id: &ContainerId) -> Result<ContainerStats> {
        let _ = id;
        Err(not_built("ContainerStats"))
    }
}

/// Readiness of one backend.
#[async_trait]
pub trait StatusBackend: Send + Sync {
    async fn status(&self) -> Result<BackendStatus> {
        Err(not_built("Status"))
    }
}

/// A whole backend: the dispatcher only ever holds this.
pub trait Backend:
    ImageBackend
    + SandboxBackend
    + ContainerBackend
    + StatusBackend
    + crate::streaming::StreamingBackend
{
    fn info(&self) -> &BackendInfo;

    /// Container lifecycle events from this backend, for GetContainerEvents.
    fn subscribe_events(&self) -> Option<tokio::sync::broadcast::Receiver<ContainerEvent>> {
        None
    }
}
