//! Stats and metrics. ListMetricDescriptors and ListPodSandboxMetrics answer empty lists:
//! crimux exports no CRI-level metrics yet, and kubelet (cAdvisor-less stats) reads what
//! it needs from the stats RPCs.

use k8s_cri::v1;
use tonic::Status;

use crate::convert;

use super::CriRuntimeService;

impl CriRuntimeService {
    #[tracing::instrument(skip_all, fields(container_id = %request.container_id), err(Display, level = "debug"))]
    pub(super) async fn answer_container_stats(
        &self,
        request: v1::ContainerStatsRequest,
    ) -> Result<v1::ContainerStatsResponse, Status> {
        let stats = self
            .dispatcher
            .container_stats(&request.container_id)
            .await?;
        Ok(v1::ContainerStatsResponse {
            stats: Some(convert::container_stats_to_proto(&stats)),
        })
    }

    #[tracing::instrument(skip_all, err(Display, level = "warn"))]
    pub(super) async fn answer_list_container_stats(
        &self,
        request: v1::ListContainerStatsRequest,
    ) -> Result<v1::ListContainerStatsResponse, Status> {
        let filter = convert::container_stats_filter(request.filter);
        let stats = self.dispatcher.list_container_stats(&filter).await?;
        Ok(v1::ListContainerStatsResponse {
            stats: stats
                .iter()
                .map(convert::container_stats_to_proto)
                .collect(),
        })
    }

    #[tracing::instrument(skip_all, fields(pod_id = %request.pod_sandbox_id), err(Display, level = "debug"))]
    pub(super) async fn answer_pod_sandbox_stats(
        &self,
        request: v1::PodSandboxStatsRequest,
    ) -> Result<v1::PodSandboxStatsResponse, Status> {
        let stats = self
            .dispatcher
            .pod_sandbox_stats(&request.pod_sandbox_id)
            .await?;
        Ok(v1::PodSandboxStatsResponse {
            stats: Some(convert::sandbox_stats_to_proto(&stats)),
        })
    }

    #[tracing::instrument(skip_all, err(Display, level = "warn"))]
    pub(super) async fn answer_list_pod_sandbox_stats(
        &self,
        request: v1::ListPodSandboxStatsRequest,
    ) -> Result<v1::ListPodSandboxStatsResponse, Status> {
        let filter = convert::sandbox_stats_filter(request.filter);
        let stats = self.dispatcher.list_pod_sandbox_stats(&filter).await?;
        Ok(v1::ListPodSandboxStatsResponse {
            stats: stats.iter().map(convert::sandbox_stats_to_proto).collect(),
        })
    }

    pub(super) async fn answer_list_metric_descriptors(
        &self,
        _request: v1::ListMetricDescriptorsRequest,
    ) -> Result<v1::ListMetricDescriptorsResponse, Status> {
        Ok(v1::ListMetricDescriptorsResponse::default())
    }

    pub(super) async fn answer_list_pod_sandbox_metrics(
        &self,
        _request: v1::ListPodSandboxMetricsRequest,
    ) -> Result<v1::ListPodSandboxMetricsResponse, Status> {
        Ok(v1::ListPodSandboxMetricsResponse::default())
    }
}
