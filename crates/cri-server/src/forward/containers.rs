//! Container calls and the runtime Status, forwarded. CreateContainer asks for the outer
//! dispatcher's id (`REQUESTED_CONTAINER_ID`) as RunPodSandbox does; statuses come back
//! with host paths.

use std::time::Duration;

use async_trait::async_trait;
use k8s_cri::v1;

use crimux_core::container::{ContainerConfig, Resources, WindowsResources};
use crimux_core::sandbox::SandboxConfig;
use crimux_core::status::{
    BackendStatus, ContainerStats, ContainerStatus, ContainerSummary, ExecSyncOutput,
};
use crimux_core::{
    ContainerBackend, ContainerId, Error, PodSandboxId, Result, StatusBackend,
    REQUESTED_CONTAINER_ID,
};

use super::sandboxes::id_not_honoured;
use super::CriBackend;
use crate::convert;

/// A CRI timeout in whole seconds, rounded up so a sub-second timeout still limits the
/// call (0 means none).
fn seconds(timeout: Duration) -> i64 {
    let whole = timeout.as_secs() + u64::from(timeout.subsec_nanos() > 0);
    i64::try_from(whole).unwrap_or(i64::MAX)
}

impl CriBackend {
    /// The pod of container `id`, from the inner crimux's list (ContainerStatus and
    /// ContainerStats do not carry it). NotFound if the container is gone.
    async fn sandbox_of(&self, id: &ContainerId) -> Result<PodSandboxId> {
        let response = self
            .call(
                "ListContainers",
                self.runtime().list_containers(v1::ListContainersRequest {
                    filter: Some(v1::ContainerFilter {
                        id: id.0.clone(),
                        ..Default::default()
                    }),
                }),
            )
            .await?;
        response
            .containers
            .into_iter()
            .find(|c| c.id == id.0)
            .map(|c| PodSandboxId(c.pod_sandbox_id))
            .ok_or_else(|| {
                Error::NotFound(format!(
                    "backend {}: container {id} not found",
                    self.info.name
                ))
            })
    }
}

#[async_trait]
impl ContainerBackend for CriBackend {
    #[tracing::instrument(skip_all, fields(backend = %self.info.name, container_id = %id, pod_id = %sandbox_id))]
    async fn create_container(
        &self,
        id: &ContainerId,
        sandbox_id: &PodSandboxId,
        config: &ContainerConfig,
        sandbox_config: &SandboxConfig,
    ) -> Result<()> {
        let (sandbox_proto, dir_mapped) = self.rewrite.sandbox_config_in(sandbox_config);
        let mut proto = self.rewrite.container_config_in(config, dir_mapped);
        proto
            .annotations
            .insert(REQUESTED_CONTAINER_ID.to_string(), id.0.clone());
        let response = self
            .call(
                "CreateContainer",
                self.runtime().create_container(v1::CreateContainerRequest {
                    pod_sandbox_id: sandbox_id.0.clone(),
                    config: Some(proto),
                    sandbox_config: Some(sandbox_proto),
                }),
            )
            .await?;
        if response.container_id != id.0 {
            if let Err(e) = self
                .runtime()
                .remove_container(v1::RemoveContainerRequest {
                    container_id: response.container_id.clone(),
                })
                .await
            {
                tracing::error!(backend = %self.info.name, container_id = %response.container_id, error = %e.message(), "could not remove a container made under the wrong id");
            }
            return Err(id_not_honoured(
                &self.info.name,
                "container",
                id.as_str(),
                &response.container_id,
            ));
        }
        Ok(())
    }

    async fn start_container(&self, id: &ContainerId) -> Result<()> {
        self.call(
            "StartContainer",
            self.runtime().start_container(v1::StartContainerRequest {
                container_id: id.0.clone(),
            }),
        )
        .await?;
        Ok(())
    }

    async fn stop_container(&self, id: &ContainerId, timeout: Duration) -> Result<()> {
        self.call(
            "StopContainer",
            self.runtime().stop_container(v1::StopContainerRequest {
                container_id: id.0.clone(),
                timeout: seconds(timeout),
            }),
        )
        .await?;
        Ok(())
    }

    async fn remove_container(&self, id: &ContainerId) -> Result<()> {
        self.call(
            "RemoveContainer",
            self.runtime().remove_container(v1::RemoveContainerRequest {
                container_id: id.0.clone(),
            }),
        )
        .await?;
        Ok(())
    }

    /// Asked verbose, whatever the caller wants: the verbose info names the container's pod
    /// (the proto has no field for it) and how it was created (for attach checks). The
    /// info is dropped again unless the caller asked for it.
    async fn container_status(&self, id: &ContainerId, verbose: bool) -> Result<ContainerStatus> {
        let response = self
            .call(
                "ContainerStatus",
                self.runtime().container_status(v1::ContainerStatusRequest {
                    container_id: id.0.clone(),
                    verbose: true,
                }),
            )
            .await?;
        let mut status = convert::container_status_from_proto(response)?;
        if status.summary.sandbox_id.0.is_empty() {
            status.summary.sandbox_id = self.sandbox_of(id).await?;
        }
        if !verbose {
            status.info.clear();
        }
        Ok(self.rewrite.container_status_out(status))
    }

    /// Every container of the inner crimux: the dispatcher filters.
    async fn list_containers(&self) -> Result<Vec<ContainerSummary>> {
        let response = self
            .call(
                "ListContainers",
                self.runtime()
                    .list_containers(v1::ListContainersRequest { filter: None }),
            )
            .await?;
        response
            .containers
            .into_iter()
            .map(convert::container_from_proto)
            .collect()
    }

    async fn update_container_resources(
        &self,
        id: &ContainerId,
        linux: Option<&Resources>,
        windows: Option<&WindowsResources>,
    ) -> Result<()> {
        self.call(
            "UpdateContainerResources",
            self.runtime()
                .update_container_resources(v1::UpdateContainerResourcesRequest {
                    container_id: id.0.clone(),
                    linux: linux.map(convert::resources_to_proto),
                    windows: windows.map(convert::windows_resources_to_proto),
                    annotations: Default::default(),
                }),
        )
        .await?;
        Ok(())
    }

    async fn reopen_container_log(&self, id: &ContainerId) -> Result<()> {
        self.call(
            "ReopenContainerLog",
            self.runtime()
                .reopen_container_log(v1::ReopenContainerLogRequest {
                    container_id: id.0.clone(),
                }),
        )
        .await?;
        Ok(())
    }

    async fn exec_sync(
        &self,
        id: &ContainerId,
        cmd: &[String],
        timeout: Option<Duration>,
    ) -> Result<ExecSyncOutput> {
        let response = self
            .call(
                "ExecSync",
                self.runtime().exec_sync(v1::ExecSyncRequest {
                    container_id: id.0.clone(),
                    cmd: cmd.to_vec(),
                    timeout: timeout.map_or(0, seconds),
                }),
            )
            .await?;
        Ok(convert::exec_sync_from_proto(response))
    }

    async fn container_stats(&self, id: &ContainerId) -> Result<ContainerStats> {
        let response = self
            .call(
                "ContainerStats",
                self.runtime().container_stats(v1::ContainerStatsRequest {
                    container_id: id.0.clone(),
                }),
            )
            .await?;
        let stats = response
            .stats
            .ok_or_else(|| self.no_stats("ContainerStats", id))?;
        let mut stats = convert::container_stats_from_proto(stats)?;
        if stats.sandbox_id.0.is_empty() {
            stats.sandbox_id = self.sandbox_of(id).await?;
        }
        Ok(stats)
    }
}

#[async_trait]
impl StatusBackend for CriBackend {
    async fn status(&self) -> Result<BackendStatus> {
        let response = self
            .call(
                "Status",
                self.runtime().status(v1::StatusRequest { verbose: false }),
            )
            .await?;
        Ok(convert::backend_status_from_proto(response))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_round_up_to_seconds() {
        for (d, want) in [
            (Duration::ZERO, 0),
            (Duration::from_millis(1), 1),
            (Duration::from_secs(2), 2),
            (Duration::from_millis(2500), 3),
        ] {
            assert_eq!(seconds(d), want, "{d:?}");
        }
    }
}
