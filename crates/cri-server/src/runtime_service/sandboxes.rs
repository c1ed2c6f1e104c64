//! The pod sandbox RPCs.

use std::collections::HashMap;

use k8s_cri::v1;
use tonic::Status;

use crimux_core::Error;

use crate::convert;

use super::CriRuntimeService;

impl CriRuntimeService {
    #[tracing::instrument(skip_all, fields(pod, handler = %request.runtime_handler), err(Display, level = "warn"))]
    pub(super) async fn answer_run_pod_sandbox(
        &self,
        request: v1::RunPodSandboxRequest,
    ) -> Result<v1::RunPodSandboxResponse, Status> {
        let config = request
            .config
            .ok_or_else(|| Error::InvalidArgument("RunPodSandbox: config is required".into()))?;
        let config = convert::sandbox_config(config, request.runtime_handler)?;
        tracing::Span::current().record("pod", config.metadata.pod_name());
        let id = self.dispatcher.run_pod_sandbox(&config).await?;
        Ok(v1::RunPodSandboxResponse {
            pod_sandbox_id: id.0,
        })
    }

    #[tracing::instrument(skip_all, fields(pod_id = %request.pod_sandbox_id), err(Display, level = "warn"))]
    pub(super) async fn answer_stop_pod_sandbox(
        &self,
        request: v1::StopPodSandboxRequest,
    ) -> Result<v1::StopPodSandboxResponse, Status> {
        self.dispatcher
            .stop_pod_sandbox(&request.pod_sandbox_id)
            .await?;
        Ok(v1::StopPodSandboxResponse {})
    }

    #[tracing::instrument(skip_all, fields(pod_id = %request.pod_sandbox_id), err(Display, level = "warn"))]
    pub(super) async fn answer_remove_pod_sandbox(
        &self,
        request: v1::RemovePodSandboxRequest,
    ) -> Result<v1::RemovePodSandboxResponse, Status> {
        self.dispatcher
            .remove_pod_sandbox(&request.pod_sandbox_id)
            .await?;
        Ok(v1::RemovePodSandboxResponse {})
    }

    /// The pod's status with its containers' (the evented PLEG reads them from here) and
    /// when they were gathered; `info` only when verbose.
    #[tracing::instrument(skip_all, fields(pod_id = %request.pod_sandbox_id), err(Display, level = "debug"))]
    pub(super) async fn answer_pod_sandbox_status(
        &self,
        request: v1::PodSandboxStatusRequest,
    ) -> Result<v1::PodSandboxStatusResponse, Status> {
        let report = self
            .dispatcher
            .pod_sandbox_status(&request.pod_sandbox_id, request.verbose)
            .await?;
        let info: HashMap<String, String> = if request.verbose {
            report.sandbox.info.clone().into_iter().collect()
        } else {
            HashMap::new()
        };
        Ok(v1::PodSandboxStatusResponse {
            status: Some(convert::sandbox_status_to_proto(&report.sandbox)),
            info,
            containers_statuses: report
                .containers
                .iter()
                .map(convert::container_status_to_proto)
                .collect(),
            timestamp: report.timestamp,
        })
    }

    #[tracing::instrument(skip_all, err(Display, level = "warn"))]
    pub(super) async fn answer_list_pod_sandbox(
        &self,
        request: v1::ListPodSandboxRequest,
    ) -> Result<v1::ListPodSandboxResponse, Status> {
        let filter = convert::sandbox_filter(request.filter)?;
        let items = self.dispatcher.list_pod_sandboxes(&filter).await?;
        Ok(v1::ListPodSandboxResponse {
            items: items.iter().map(convert::sandbox_to_proto).collect(),
        })
    }
}
