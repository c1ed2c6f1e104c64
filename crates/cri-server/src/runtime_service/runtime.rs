//! Version, Status (merged from every backend), RuntimeConfig, UpdateRuntimeConfig and the
//! GetContainerEvents stream.

use std::collections::HashMap;

use futures::StreamExt;
use k8s_cri::v1;
use tonic::Status;

use crate::convert;

use super::{CriRuntimeService, EventStream};

/// The CRI API version crimux speaks.
pub const RUNTIME_API_VERSION: &str = "v1";
/// The kubelet-facing API version string every CRI runtime reports.
pub const KUBELET_API_VERSION: &str = "0.1.0";
pub const RUNTIME_NAME: &str = "crimux";

impl CriRuntimeService {
    #[tracing::instrument(skip_all)]
    pub(super) async fn answer_version(
        &self,
        _request: v1::VersionRequest,
    ) -> Result<v1::VersionResponse, Status> {
        Ok(v1::VersionResponse {
            version: KUBELET_API_VERSION.into(),
            runtime_name: RUNTIME_NAME.into(),
            runtime_version: env!("CARGO_PKG_VERSION").into(),
            runtime_api_version: RUNTIME_API_VERSION.into(),
        })
    }

    #[tracing::instrument(skip_all, fields(verbose = request.verbose))]
    pub(super) async fn answer_status(
        &self,
        request: v1::StatusRequest,
    ) -> Result<v1::StatusResponse, Status> {
        let node = self.dispatcher.status().await;
        // The default handler ("") and every named one a backend serves.
        let runtime_handlers = std::iter::once(String::new())
            .chain(self.dispatcher.runtime_handlers())
            .map(|name| v1::RuntimeHandler {
                name,
                features: Some(v1::RuntimeHandlerFeatures::default()),
            })
            .collect();
        let mut info = HashMap::new();
        if request.verbose {
            let statuses = convert::backend_statuses_json(&node);
            let backends: Vec<serde_json::Value> = self
                .dispatcher
                .backends()
                .iter()
                .zip(statuses.as_array().cloned().unwrap_or_default())
                .map(|(b, status)| {
                    let i = b.info();
                    serde_json::json!({
                        "name": i.name,
                        "role": i.role.to_string(),
                        "platform": i.platform.to_string(),
                        "runtimeHandlers": i.runtime_handlers,
                        "status": status,
                    })
                })
                .collect();
            info.insert(
                "backends".to_string(),
                serde_json::Value::from(backends).to_string(),
            );
            let cidr = self.pod_cidr().clone();
            info.insert(
                "config".to_string(),
                serde_json::json!({ "podCIDR": cidr }).to_string(),
            );
        }
        Ok(v1::StatusResponse {
            status: Some(v1::RuntimeStatus {
                conditions: convert::runtime_conditions(&node),
            }),
            info,
            runtime_handlers,
            features: Some(v1::RuntimeFeatures::default()),
        })
    }

    fn pod_cidr(&self) -> std::sync::MutexGuard<'_, String> {
        self.pod_cidr.lock().unwrap_or_else(|p| p.into_inner())
    }

    #[tracing::instrument(skip_all)]
    pub(super) async fn answer_runtime_config(
        &self,
        _request: v1::RuntimeConfigRequest,
    ) -> Result<v1::RuntimeConfigResponse, Status> {
        Ok(v1::RuntimeConfigResponse {
            linux: Some(v1::LinuxRuntimeConfiguration {
                cgroup_driver: v1::CgroupDriver::Cgroupfs as i32,
            }),
        })
    }

    /// Keeps the pod CIDR kubelet sends; crimux's CNI configs carry their own ranges, so
    /// it is only reported (verbose Status).
    #[tracing::instrument(skip_all)]
    pub(super) async fn answer_update_runtime_config(
        &self,
        request: v1::UpdateRuntimeConfigRequest,
    ) -> Result<v1::UpdateRuntimeConfigResponse, Status> {
        let cidr = request
            .runtime_config
            .and_then(|c| c.network_config)
            .map(|n| n.pod_cidr)
            .unwrap_or_default();
        if !cidr.is_empty() {
            tracing::info!(pod_cidr = %cidr, "pod CIDR updated");
            *self.pod_cidr() = cidr;
        }
        Ok(v1::UpdateRuntimeConfigResponse {})
    }

    /// Every backend's container events, until the client goes away. `Unimplemented` when
    /// no backend reports events (kubelet then keeps its polling PLEG).
    pub(super) fn answer_get_container_events(
        &self,
        _request: v1::GetEventsRequest,
    ) -> Result<EventStream, Status> {
        let Some(events) = self.dispatcher.subscribe_events() else {
            return Err(Status::unimplemented(
                "GetContainerEvents: no backend of this node reports container events",
            ));
        };
        let mut closing = self.closing.clone();
        let closed = async move {
            // A dropped sender (no server to stop) means never closing.
            if closing.wait_for(|c| *c).await.is_err() {
                std::future::pending::<()>().await;
            }
        };
        Ok(Box::pin(
            events
                .take_until(closed)
                .map(|e| Ok::<_, Status>(convert::event_to_proto(&e))),
        ))
    }
}
