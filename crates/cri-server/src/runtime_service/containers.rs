//! The container RPCs. Timeouts arrive in seconds; ExecSync's 0 means none.

use std::collections::HashMap;
use std::time::Duration;

use k8s_cri::v1;
use tonic::Status;

use crimux_core::Error;

use crate::convert;

use super::CriRuntimeService;

/// A CRI timeout in seconds; zero or negative is "no timeout" for ExecSync.
fn exec_timeout(seconds: i64) -> Option<Duration> {
    u64::try_from(seconds)
        .ok()
        .filter(|s| *s > 0)
        .map(Duration::from_secs)
}

/// StopContainer's grace period; negative is treated as zero (kill at once).
fn stop_timeout(seconds: i64) -> Duration {
    Duration::from_secs(u64::try_from(seconds).unwrap_or(0))
}

impl CriRuntimeService {
    // The config carries environment values: only names are logged.
    #[tracing::instrument(skip_all, fields(pod_id = %request.pod_sandbox_id, container), err(Display, level = "warn"))]
    pub(super) async fn answer_create_container(
        &self,
        request: v1::CreateContainerRequest,
    ) -> Result<v1::CreateContainerResponse, Status> {
        let config = request
            .config
            .ok_or_else(|| Error::InvalidArgument("CreateContainer: config is required".into()))?;
        let config = convert::container_config(config)?;
        tracing::Span::current().record("container", config.metadata.name.as_str());
        // The sandbox config is what kubelet used for RunPodSandbox; the handler is the
        // sandbox's own and the backend already knows it.
        let sandbox_config = match request.sandbox_config {
            Some(c) => convert::sandbox_config(c, String::new())?,
            None => Default::default(),
        };
        let id = self
            .dispatcher
            .create_container(&request.pod_sandbox_id, &config, &sandbox_config)
            .await?;
        Ok(v1::CreateContainerResponse { container_id: id.0 })
    }

    #[tracing::instrument(skip_all, fields(container_id = %request.container_id), err(Display, level = "warn"))]
    pub(super) async fn answer_start_container(
        &self,
        request: v1::StartContainerRequest,
    ) -> Result<v1::StartContainerResponse, Status> {
        self.dispatcher
            .start_container(&request.container_id)
            .await?;
        Ok(v1::StartContainerResponse {})
    }

    #[tracing::instrument(skip_all, fields(container_id = %request.container_id, timeout = request.timeout), err(Display, level = "warn"))]
    pub(super) async fn answer_stop_container(
        &self,
        request: v1::StopContainerRequest,
    ) -> Result<v1::StopContainerResponse, Status> {
        self.dispatcher
            .stop_container(&request.container_id, stop_timeout(request.timeout))
            .await?;
        Ok(v1::StopContainerResponse {})
    }

    #[tracing::instrument(skip_all, fields(container_id = %request.container_id), err(Display, level = "warn"))]
    pub(super) async fn answer_remove_container(
        &self,
        request: v1::RemoveContainerRequest,
    ) -> Result<v1::RemoveContainerResponse, Status> {
        self.dispatcher
            .remove_container(&request.container_id)
            .await?;
        Ok(v1::RemoveContainerResponse {})
    }

    #[tracing::instrument(skip_all, err(Display, level = "warn"))]
    pub(super) async fn answer_list_containers(
        &self,
        request: v1::ListContainersRequest,
    ) -> Result<v1::ListContainersResponse, Status> {
        let filter = convert::container_filter(request.filter)?;
        let containers = self.dispatcher.list_containers(&filter).await?;
        Ok(v1::ListContainersResponse {
            containers: containers.iter().map(convert::container_to_proto).collect(),
        })
    }

    #[tracing::instrument(skip_all, fields(container_id = %request.container_id), err(Display, level = "debug"))]
    pub(super) async fn answer_container_status(
        &self,
        request: v1::ContainerStatusRequest,
    ) -> Result<v1::ContainerStatusResponse, Status> {
        let status = self
            .dispatcher
            .container_status(&request.container_id, request.verbose)
            .await?;
        let info: HashMap<String, String> = if request.verbose {
            status.info.clone().into_iter().collect()
        } else {
            HashMap::new()
        };
        Ok(v1::ContainerStatusResponse {
            status: Some(convert::container_status_to_proto(&status)),
            info,
        })
    }

    #[tracing::instrument(skip_all, fields(container_id = %request.container_id), err(Display, level = "warn"))]
    pub(super) async fn answer_update_container_resources(
        &self,
        request: v1::UpdateContainerResourcesRequest,
    ) -> Result<v1::UpdateContainerResourcesResponse, Status> {
        let linux = request.linux.map(convert::resources);
        let windows = request
            .windows
            .map(convert::windows_resources)
            .transpose()?;
        self.dispatcher
            .update_container_resources(&request.container_id, linux.as_ref(), windows.as_ref())
            .await?;
        Ok(v1::UpdateContainerResourcesResponse {})
    }

    #[tracing::instrument(skip_all, fields(container_id = %request.container_id), err(Display, level = "warn"))]
    pub(super) async fn answer_reopen_container_log(
        &self,
        request: v1::ReopenContainerLogRequest,
    ) -> Result<v1::ReopenContainerLogResponse, Status> {
        self.dispatcher
            .reopen_container_log(&request.container_id)
            .await?;
        Ok(v1::ReopenContainerLogResponse {})
    }

    // The command may carry secrets: only its length is logged.
    #[tracing::instrument(skip_all, fields(container_id = %request.container_id, args = request.cmd.len(), timeout = request.timeout), err(Display, level = "warn"))]
    pub(super) async fn answer_exec_sync(
        &self,
        request: v1::ExecSyncRequest,
    ) -> Result<v1::ExecSyncResponse, Status> {
        if request.cmd.is_empty() {
            return Err(Error::InvalidArgument("ExecSync: cmd is required".into()).into());
        }
        let out = self
            .dispatcher
            .exec_sync(
                &request.container_id,
                &request.cmd,
                exec_timeout(request.timeout),
            )
            .await?;
        Ok(v1::ExecSyncResponse {
            stdout: out.stdout,
            stderr: out.stderr,
            exit_code: out.exit_code,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts() {
        let cases = [(0, None, 0), (-1, None, 0), (5, Some(5), 5)];
        for (secs, exec, stop) in cases {
            assert_eq!(exec_timeout(secs), exec.map(Duration::from_secs), "{secs}");
            assert_eq!(stop_timeout(secs), Duration::from_secs(stop), "{secs}");
        }
    }
}
