//! Containers on containerd: specs, writable snapshots, tasks with binary logging,
//! exec-sync, stats and lifecycle events.
//!
//! One file per operation: `create`, `start`, `stop` (stop and remove), `status` (status
//! and list), `update` (resources and log reopening); `record` is the durable state,
//! `rootfs` reads what specs need from images and the host, `events` feeds
//! GetContainerEvents; `crate::runtime::lock` serialises work on one container.

pub(crate) mod create;
pub(crate) mod events;
pub(crate) mod exec;
pub(crate) mod record;
pub(crate) mod rootfs;
pub(crate) mod start;
pub(crate) mod stats;
pub(crate) mod status;
pub(crate) mod stop;
pub(crate) mod update;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use crimux_core::container::{ContainerConfig, Resources, WindowsResources};
use crimux_core::sandbox::SandboxConfig;
use crimux_core::status::{ContainerStats, ContainerStatus, ContainerSummary, ExecSyncOutput};
use crimux_core::{ContainerId, PodSandboxId, Result};

use crate::ContainerdBackend;

#[async_trait]
impl crimux_core::ContainerBackend for ContainerdBackend {
    #[tracing::instrument(skip(self, config, sandbox_config), fields(backend = %self.inner().name))]
    async fn create_container(
        &self,
        id: &ContainerId,
        sandbox_id: &PodSandboxId,
        config: &ContainerConfig,
        sandbox_config: &SandboxConfig,
    ) -> Result<()> {
        // In its own task, like RunPodSandbox: a client that goes away half way must not
        // stop the rollback from running.
        let inner = Arc::clone(self.inner());
        let (id, sandbox_id) = (id.clone(), sandbox_id.clone());
        let (config, sandbox_config) = (config.clone(), sandbox_config.clone());
        tokio::spawn(async move {
            create::create(&inner, &id, &sandbox_id, &config, &sandbox_config).await
        })
        .await
        .map_err(|e| crimux_core::Error::Internal(format!("CreateContainer worker: {e}")))?
    }

    #[tracing::instrument(skip(self), fields(backend = %self.inner().name))]
    async fn start_container(&self, id: &ContainerId) -> Result<()> {
        let (inner, id) = (Arc::clone(self.inner()), id.clone());
        tokio::spawn(async move { start::start(&inner, &id).await })
            .await
            .map_err(|e| crimux_core::Error::Internal(format!("StartContainer worker: {e}")))?
    }

    #[tracing::instrument(skip(self), fields(backend = %self.inner().name))]
    async fn stop_container(&self, id: &ContainerId, timeout: Duration) -> Result<()> {
        stop::stop(self.inner(), id, timeout).await
    }

    #[tracing::instrument(skip(self), fields(backend = %self.inner().name))]
    async fn remove_container(&self, id: &ContainerId) -> Result<()> {
        stop::remove(self.inner(), id).await
    }

    #[tracing::instrument(skip(self), fields(backend = %self.inner().name))]
    async fn container_status(&self, id: &ContainerId, verbose: bool) -> Result<ContainerStatus> {
        status::status(self.inner(), id, verbose).await
    }

    #[tracing::instrument(skip(self), fields(backend = %self.inner().name))]
    async fn list_containers(&self) -> Result<Vec<ContainerSummary>> {
        status::list(self.inner()).await
    }

    #[tracing::instrument(skip(self), fields(backend = %self.inner().name))]
    async fn update_container_resources(
        &self,
        id: &ContainerId,
        linux: Option<&Resources>,
        windows: Option<&WindowsResources>,
    ) -> Result<()> {
        update::update_resources(self.inner(), id, linux, windows).await
    }

    #[tracing::instrument(skip(self), fields(backend = %self.inner().name))]
    async fn reopen_container_log(&self, id: &ContainerId) -> Result<()> {
        update::reopen_log(self.inner(), id).await
    }

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
