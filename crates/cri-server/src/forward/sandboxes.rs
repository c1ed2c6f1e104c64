//! Pod sandbox calls, forwarded. RunPodSandbox asks the inner crimux for the outer
//! dispatcher's id (`REQUESTED_SANDBOX_ID`); an inner crimux that answers with another id
//! does not know the annotation, so its sandbox is removed again and the call fails.

use async_trait::async_trait;
use k8s_cri::v1;

use crimux_core::sandbox::SandboxConfig;
use crimux_core::status::{SandboxStats, SandboxStatus, SandboxSummary};
use crimux_core::{Error, PodSandboxId, Result, SandboxBackend, REQUESTED_SANDBOX_ID};

use super::CriBackend;
use crate::convert;

impl CriBackend {
    /// Stops and removes a sandbox the inner crimux made under an id of its own choosing.
    async fn discard_sandbox(&self, id: &str) {
        let stop = self
            .runtime()
            .stop_pod_sandbox(v1::StopPodSandboxRequest {
                pod_sandbox_id: id.to_string(),
            })
            .await;
        let remove = self
            .runtime()
            .remove_pod_sandbox(v1::RemovePodSandboxRequest {
                pod_sandbox_id: id.to_string(),
            })
            .await;
        if let Err(e) = stop.and(remove) {
            tracing::error!(backend = %self.info.name, pod_id = %id, error = %e.message(), "could not remove a sandbox made under the wrong id");
        }
    }
}

/// The inner crimux ignored the requested id.
pub(super) fn id_not_honoured(backend: &str, what: &str, asked: &str, got: &str) -> Error {
    Error::FailedPrecondition(format!(
        "backend {backend}: the crimux it forwards to made {what} {got} instead of the \
         requested {asked} (it ignores crimux.io/requested-* annotations); upgrade the inner \
         crimux"
    ))
}

#[async_trait]
impl SandboxBackend for CriBackend {
    #[tracing::instrument(skip_all, fields(backend = %self.info.name, pod_id = %id))]
    async fn run_pod_sandbox(&self, id: &PodSandboxId, config: &SandboxConfig) -> Result<()> {
        let (mut proto, _) = self.rewrite.sandbox_config_in(config);
        proto
            .annotations
            .insert(REQUESTED_SANDBOX_ID.to_string(), id.0.clone());
        let response = self
            .call(
                "RunPodSandbox",
                self.runtime().run_pod_sandbox(v1::RunPodSandboxRequest {
                    config: Some(proto),
                    runtime_handler: self.rewrite.remote_handler(&config.runtime_handler),
                }),
            )
            .await?;
        if response.pod_sandbox_id != id.0 {
            self.discard_sandbox(&response.pod_sandbox_id).await;
            return Err(id_not_honoured(
                &self.info.name,
                "sandbox",
                id.as_str(),
                &response.pod_sandbox_id,
            ));
        }
        Ok(())
    }

    async fn stop_pod_sandbox(&self, id: &PodSandboxId) -> Result<()> {
        self.call(
            "StopPodSandbox",
            self.runtime().stop_pod_sandbox(v1::StopPodSandboxRequest {
                pod_sandbox_id: id.0.clone(),
            }),
        )
        .await?;
        Ok(())
    }

    async fn remove_pod_sandbox(&self, id: &PodSandboxId) -> Result<()> {
        self.call(
            "RemovePodSandbox",
            self.runtime()
                .remove_pod_sandbox(v1::RemovePodSandboxRequest {
                    pod_sandbox_id: id.0.clone(),
                }),
        )
        .await?;
        Ok(())
    }

    async fn pod_sandbox_status(&self, id: &PodSandboxId, verbose: bool) -> Result<SandboxStatus> {
        let response = self
            .call(
                "PodSandboxStatus",
                self.runtime()
                    .pod_sandbox_status(v1::PodSandboxStatusRequest {
                        pod_sandbox_id: id.0.clone(),
                        verbose,
                    }),
            )
            .await?;
        let status = convert::sandbox_status_from_proto(response)?;
        Ok(self.rewrite.sandbox_status_out(status))
    }

    /// Every sandbox of the inner crimux: the dispatcher filters.
    async fn list_pod_sandboxes(&self) -> Result<Vec<SandboxSummary>> {
        let response = self
            .call(
                "ListPodSandbox",
                self.runtime()
                    .list_pod_sandbox(v1::ListPodSandboxRequest { filter: None }),
            )
            .await?;
        response
            .items
            .into_iter()
            .map(|s| {
                Ok(self
                    .rewrite
                    .sandbox_summary_out(convert::sandbox_from_proto(s)?))
            })
            .collect()
    }

    async fn pod_sandbox_stats(&self, id: &PodSandboxId) -> Result<SandboxStats> {
        let response = self
            .call(
                "PodSandboxStats",
                self.runtime()
                    .pod_sandbox_stats(v1::PodSandboxStatsRequest {
                        pod_sandbox_id: id.0.clone(),
                    }),
            )
            .await?;
        let stats = response
            .stats
            .ok_or_else(|| self.no_stats("PodSandboxStats", id))?;
        convert::sandbox_stats_from_proto(stats)
    }
}
