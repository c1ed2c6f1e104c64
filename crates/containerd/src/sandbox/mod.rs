//! Pod sandboxes on containerd: the pause container, its network namespace and CNI, and
//! the sandbox's files. One file per operation; `record` is what other modules read.

mod files;
mod network;
pub(crate) mod record;
mod remove;
mod run;
mod stats;
mod status;
mod stop;
mod undo;

use async_trait::async_trait;
use crimux_core::sandbox::SandboxConfig;
use crimux_core::status::{BackendStatus, SandboxStats, SandboxStatus, SandboxSummary};
use crimux_core::{PodSandboxId, Result};

use crate::ContainerdBackend;

#[async_trait]
impl crimux_core::SandboxBackend for ContainerdBackend {
    #[tracing::instrument(skip(self, config), fields(backend = %self.inner().name, pod = %config.metadata.pod_name()))]
    async fn run_pod_sandbox(&self, id: &PodSandboxId, config: &SandboxConfig) -> Result<()> {
        run::run(self.inner(), id, config).await
    }

    #[tracing::instrument(skip(self), fields(backend = %self.inner().name))]
    async fn stop_pod_sandbox(&self, id: &PodSandboxId) -> Result<()> {
        stop::stop(self, id).await
    }

    #[tracing::instrument(skip(self), fields(backend = %self.inner().name))]
    async fn remove_pod_sandbox(&self, id: &PodSandboxId) -> Result<()> {
        remove::remove(self, id).await
    }

    #[tracing::instrument(skip(self), fields(backend = %self.inner().name))]
    async fn pod_sandbox_status(&self, id: &PodSandboxId, verbose: bool) -> Result<SandboxStatus> {
        status::status(self.inner(), id, verbose).await
    }

    #[tracing::instrument(skip(self), fields(backend = %self.inner().name))]
    async fn list_pod_sandboxes(&self) -> Result<Vec<SandboxSummary>> {
        status::list(self.inner()).await
    }

    #[tracing::instrument(skip(self), fields(backend = %self.inner().name))]
    async fn pod_sandbox_stats(&self, id: &PodSandboxId) -> Result<SandboxStats> {
        stats::stats(self.inner(), id).await
    }
}

#[async_trait]
impl crimux_core::StatusBackend for ContainerdBackend {
    #[tracing::instrument(skip(self), fields(backend = %self.inner().name))]
    async fn status(&self) -> Result<BackendStatus> {
        status::backend_status(self.inner()).await
    }
}
