//! Containers on containerd: specs, writable snapshots, tasks with binary logging,
//! exec-sync, stats and lifecycle events.

pub(crate) mod exec;
pub(crate) mod stats;

use std::time::Duration;

use async_trait::async_trait;
use crimux_core::container::{ContainerConfig, Resources, WindowsResources};
use crimux_core::sandbox::SandboxConfig;
use crimux_core::status::{ContainerStats, ContainerStatus, ContainerSummary, ExecSyncOutput};
use crimux_core::{ContainerId, PodSandboxId, Result};

use crate::ContainerdBackend;


#[async_trait]
impl crimux_core::ContainerBackend for ContainerdBackend {
    async fn exec_sync(
        &self,
        id: &ContainerId,
        cmd: &[String],
        timeout: Option<Duration>,
    ) -> Result<ExecSyncOutput> {
        exec::exec_sync(self.inner(), id, cmd, timeout).await
    }

    async fn container_stats(&self, id: &ContainerId) -> Result<ContainerStats> {
        stats::container_stats(self.inner(), id).await
    }
}

// Keep the imports the lifecycle methods will use.
#[allow(dead_code)]
type Unused = (
    ContainerConfig,
    Resources,
    WindowsResources,
    SandboxConfig,
    ContainerStatus,
    ContainerSummary,
    PodSandboxId,
);
