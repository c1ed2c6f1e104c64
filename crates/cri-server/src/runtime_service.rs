//! The CRI RuntimeService. This session answers only what kubelet asks before it runs a
//! pod (Version, Status, RuntimeConfig); every other RPC answers `Unimplemented` with its
//! name, never a panic. The trait impl is generated from the table at the bottom so the
//! answered RPCs stay ordinary, formatted methods.

use std::pin::Pin;
use std::sync::Arc;

use k8s_cri::v1;
use k8s_cri::v1::runtime_service_server::RuntimeService;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

use crimux_dispatch::Dispatcher;

/// The CRI API version crimux speaks.
pub const RUNTIME_API_VERSION: &str = "v1";
/// The kubelet-facing API version string every CRI runtime reports.
pub const KUBELET_API_VERSION: &str = "0.1.0";
pub const RUNTIME_NAME: &str = "crimux";

pub const NETWORK_NOT_READY_REASON: &str = "NetworkPluginNotReady";
pub const NETWORK_NOT_READY_MESSAGE: &str =
    "crimux: pod networking arrives with the RuntimeService";

/// RuntimeService over the dispatcher.
#[derive(Clone, Debug)]
pub struct CriRuntimeService {
    dispatcher: Arc<Dispatcher>,
}

type EventStream = Pin<Box<dyn Stream<Item = Result<v1::ContainerEventResponse, Status>> + Send>>;

fn unimplemented_rpc(rpc: &str) -> Status {
    tracing::debug!(rpc, "unimplemented RPC called");
    Status::unimplemented(format!("{rpc} is not implemented yet in crimux"))
}

impl CriRuntimeService {
    pub fn new(dispatcher: Arc<Dispatcher>) -> Self {
        CriRuntimeService { dispatcher }
    }

    #[tracing::instrument(skip(self))]
    async fn answer_version(
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

    #[tracing::instrument(skip(self))]
    async fn answer_status(
        &self,
        request: v1::StatusRequest,
    ) -> Result<v1::StatusResponse, Status> {
        let conditions = vec![
            v1::RuntimeCondition {
                r#type: "RuntimeReady".into(),
                status: true,
                reason: String::new(),
                message: String::new(),
            },
            v1::RuntimeCondition {
                r#type: "NetworkReady".into(),
                status: false,
                reason: NETWORK_NOT_READY_REASON.into(),
                message: NETWORK_NOT_READY_MESSAGE.into(),
            },
        ];
        // The default handler ("") and every named one a backend serves.
        let runtime_handlers = std::iter::once(String::new())
            .chain(self.dispatcher.runtime_handlers())
            .map(|name| v1::RuntimeHandler {
                name,
                features: Some(v1::RuntimeHandlerFeatures::default()),
            })
            .collect();
        let mut info = std::collections::HashMap::new();
        if request.verbose {
            let backends: Vec<serde_json::Value> = self
                .dispatcher
                .backends()
                .iter()
                .map(|b| {
                    let i = b.info();
                    serde_json::json!({
                        "name": i.name,
                        "role": i.role.to_string(),
                        "platform": i.platform.to_string(),
                        "runtimeHandlers": i.runtime_handlers,
                    })
                })
                .collect();
            info.insert(
                "backends".to_string(),
                serde_json::Value::from(backends).to_string(),
            );
        }
        Ok(v1::StatusResponse {
            status: Some(v1::RuntimeStatus { conditions }),
            info,
            runtime_handlers,
            features: Some(v1::RuntimeFeatures::default()),
        })
    }

    #[tracing::instrument(skip(self))]
    async fn answer_runtime_config(
        &self,
        _request: v1::RuntimeConfigRequest,
    ) -> Result<v1::RuntimeConfigResponse, Status> {
        Ok(v1::RuntimeConfigResponse {
            linux: Some(v1::LinuxRuntimeConfiguration {
                cgroup_driver: v1::CgroupDriver::Cgroupfs as i32,
            }),
        })
    }
}

/// Generates the `RuntimeService` impl: `answered` RPCs forward to a method of
/// `CriRuntimeService`, `unimplemented` ones answer `Unimplemented` naming the RPC.
macro_rules! runtime_service {
    (
        answered { $($rpc:ident($req:ident) -> $resp:ident => $method:ident;)* }
        unimplemented { $($urpc:ident($ureq:ident) -> $uresp:ident = $name:literal;)* }
    ) => {
        #[tonic::async_trait]
        impl RuntimeService for CriRuntimeService {
            $(
                async fn $rpc(
                    &self,
                    request: Request<v1::$req>,
                ) -> Result<Response<v1::$resp>, Status> {
                    self.$method(request.into_inner()).await.map(Response::new)
                }
            )*
            $(
                async fn $urpc(
                    &self,
                    _request: Request<v1::$ureq>,
                ) -> Result<Response<v1::$uresp>, Status> {
                    Err(unimplemented_rpc($name))
                }
            )*

            type GetContainerEventsStream = EventStream;

            async fn get_container_events(
                &self,
                _request: Request<v1::GetEventsRequest>,
            ) -> Result<Response<EventStream>, Status> {
                Err(unimplemented_rpc("GetContainerEvents"))
            }
        }
    };
}

runtime_service! {
    answered {
        version(VersionRequest) -> VersionResponse => answer_version;
        status(StatusRequest) -> StatusResponse => answer_status;
        runtime_config(RuntimeConfigRequest) -> RuntimeConfigResponse => answer_runtime_config;
    }
    unimplemented {
        run_pod_sandbox(RunPodSandboxRequest) -> RunPodSandboxResponse = "RunPodSandbox";
        stop_pod_sandbox(StopPodSandboxRequest) -> StopPodSandboxResponse = "StopPodSandbox";
        remove_pod_sandbox(RemovePodSandboxRequest) -> RemovePodSandboxResponse = "RemovePodSandbox";
        pod_sandbox_status(PodSandboxStatusRequest) -> PodSandboxStatusResponse = "PodSandboxStatus";
        list_pod_sandbox(ListPodSandboxRequest) -> ListPodSandboxResponse = "ListPodSandbox";
        create_container(CreateContainerRequest) -> CreateContainerResponse = "CreateContainer";
        start_container(StartContainerRequest) -> StartContainerResponse = "StartContainer";
        stop_container(StopContainerRequest) -> StopContainerResponse = "StopContainer";
        remove_container(RemoveContainerRequest) -> RemoveContainerResponse = "RemoveContainer";
        list_containers(ListContainersRequest) -> ListContainersResponse = "ListContainers";
        container_status(ContainerStatusRequest) -> ContainerStatusResponse = "ContainerStatus";
        update_container_resources(UpdateContainerResourcesRequest) -> UpdateContainerResourcesResponse = "UpdateContainerResources";
        reopen_container_log(ReopenContainerLogRequest) -> ReopenContainerLogResponse = "ReopenContainerLog";
        exec_sync(ExecSyncRequest) -> ExecSyncResponse = "ExecSync";
        exec(ExecRequest) -> ExecResponse = "Exec";
        attach(AttachRequest) -> AttachResponse = "Attach";
        port_forward(PortForwardRequest) -> PortForwardResponse = "PortForward";
        container_stats(ContainerStatsRequest) -> ContainerStatsResponse = "ContainerStats";
        list_container_stats(ListContainerStatsRequest) -> ListContainerStatsResponse = "ListContainerStats";
        pod_sandbox_stats(PodSandboxStatsRequest) -> PodSandboxStatsResponse = "PodSandboxStats";
        list_pod_sandbox_stats(ListPodSandboxStatsRequest) -> ListPodSandboxStatsResponse = "ListPodSandboxStats";
        update_runtime_config(UpdateRuntimeConfigRequest) -> UpdateRuntimeConfigResponse = "UpdateRuntimeConfig";
        checkpoint_container(CheckpointContainerRequest) -> CheckpointContainerResponse = "CheckpointContainer";
        list_metric_descriptors(ListMetricDescriptorsRequest) -> ListMetricDescriptorsResponse = "ListMetricDescriptors";
        list_pod_sandbox_metrics(ListPodSandboxMetricsRequest) -> ListPodSandboxMetricsResponse = "ListPodSandboxMetrics";
    }
}
