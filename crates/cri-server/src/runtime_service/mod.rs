//! The CRI RuntimeService: each RPC unpacks its request, converts it (`convert`), calls
//! the dispatcher and packs the answer. The answering methods live by concern:
//!
//! - `runtime`: Version, Status, RuntimeConfig, UpdateRuntimeConfig, GetContainerEvents.
//! - `sandboxes`: the pod sandbox RPCs.
//! - `containers`: the container RPCs, ExecSync included.
//! - `stats`: stats and metrics.
//! - `streaming`: Exec, Attach and PortForward (URLs at the streaming server).
//!
//! The trait impl is generated from the table at the bottom. CheckpointContainer answers
//! `Unimplemented` naming the RPC, never a panic.

mod containers;
mod runtime;
mod sandboxes;
mod stats;
mod streaming;

use std::pin::Pin;
use std::sync::{Arc, Mutex};

use k8s_cri::v1;
use k8s_cri::v1::runtime_service_server::RuntimeService;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

use crimux_dispatch::Dispatcher;

pub use runtime::{KUBELET_API_VERSION, RUNTIME_API_VERSION, RUNTIME_NAME};

/// RuntimeService over the dispatcher.
#[derive(Clone, Debug)]
pub struct CriRuntimeService {
    dispatcher: Arc<Dispatcher>,
    /// The pod CIDR kubelet last sent with UpdateRuntimeConfig (reported in verbose
    /// Status; CNI configs carry their own ranges).
    pod_cidr: Arc<Mutex<String>>,
    /// Turns true when the server stops; event streams end then.
    closing: tokio::sync::watch::Receiver<bool>,
    /// Where Exec/Attach/PortForward URLs point; without it those RPCs are Unavailable.
    streaming: Option<Arc<crimux_streaming::Server>>,
}

type EventStream = Pin<Box<dyn Stream<Item = Result<v1::ContainerEventResponse, Status>> + Send>>;

fn unimplemented_rpc(rpc: &str) -> Status {
    tracing::debug!(rpc, "unimplemented RPC called");
    Status::unimplemented(format!("{rpc} is not implemented yet in crimux"))
}

impl CriRuntimeService {
    /// A service whose event streams last until their client goes away.
    pub fn new(dispatcher: Arc<Dispatcher>) -> Self {
        // The sender is dropped at once: `closing` then never turns true.
        Self::with_closing(dispatcher, tokio::sync::watch::channel(false).1)
    }

    /// A service whose event streams also end when `closing` turns true.
    pub fn with_closing(
        dispatcher: Arc<Dispatcher>,
        closing: tokio::sync::watch::Receiver<bool>,
    ) -> Self {
        CriRuntimeService {
            dispatcher,
            pod_cidr: Arc::new(Mutex::new(String::new())),
            closing,
            streaming: None,
        }
    }

    /// Answers Exec, Attach and PortForward with URLs at `server`.
    pub fn with_streaming(mut self, server: Arc<crimux_streaming::Server>) -> Self {
        self.streaming = Some(server);
        self
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
                request: Request<v1::GetEventsRequest>,
            ) -> Result<Response<EventStream>, Status> {
                self.answer_get_container_events(request.into_inner()).map(Response::new)
            }
        }
    };
}

runtime_service! {
    answered {
        version(VersionRequest) -> VersionResponse => answer_version;
        status(StatusRequest) -> StatusResponse => answer_status;
        runtime_config(RuntimeConfigRequest) -> RuntimeConfigResponse => answer_runtime_config;
        update_runtime_config(UpdateRuntimeConfigRequest) -> UpdateRuntimeConfigResponse => answer_update_runtime_config;
        run_pod_sandbox(RunPodSandboxRequest) -> RunPodSandboxResponse => answer_run_pod_sandbox;
        stop_pod_sandbox(StopPodSandboxRequest) -> StopPodSandboxResponse => answer_stop_pod_sandbox;
        remove_pod_sandbox(RemovePodSandboxRequest) -> RemovePodSandboxResponse => answer_remove_pod_sandbox;
        pod_sandbox_status(PodSandboxStatusRequest) -> PodSandboxStatusResponse => answer_pod_sandbox_status;
        list_pod_sandbox(ListPodSandboxRequest) -> ListPodSandboxResponse => answer_list_pod_sandbox;
        create_container(CreateContainerRequest) -> CreateContainerResponse => answer_create_container;
        start_container(StartContainerRequest) -> StartContainerResponse => answer_start_container;
        stop_container(StopContainerRequest) -> StopContainerResponse => answer_stop_container;
        remove_container(RemoveContainerRequest) -> RemoveContainerResponse => answer_remove_container;
        list_containers(ListContainersRequest) -> ListContainersResponse => answer_list_containers;
        container_status(ContainerStatusRequest) -> ContainerStatusResponse => answer_container_status;
        update_container_resources(UpdateContainerResourcesRequest) -> UpdateContainerResourcesResponse => answer_update_container_resources;
        reopen_container_log(ReopenContainerLogRequest) -> ReopenContainerLogResponse => answer_reopen_container_log;
        exec_sync(ExecSyncRequest) -> ExecSyncResponse => answer_exec_sync;
        container_stats(ContainerStatsRequest) -> ContainerStatsResponse => answer_container_stats;
        list_container_stats(ListContainerStatsRequest) -> ListContainerStatsResponse => answer_list_container_stats;
        pod_sandbox_stats(PodSandboxStatsRequest) -> PodSandboxStatsResponse => answer_pod_sandbox_stats;
        list_pod_sandbox_stats(ListPodSandboxStatsRequest) -> ListPodSandboxStatsResponse => answer_list_pod_sandbox_stats;
        list_metric_descriptors(ListMetricDescriptorsRequest) -> ListMetricDescriptorsResponse => answer_list_metric_descriptors;
        list_pod_sandbox_metrics(ListPodSandboxMetricsRequest) -> ListPodSandboxMetricsResponse => answer_list_pod_sandbox_metrics;
        exec(ExecRequest) -> ExecResponse => answer_exec;
        attach(AttachRequest) -> AttachResponse => answer_attach;
        port_forward(PortForwardRequest) -> PortForwardResponse => answer_port_forward;
    }
    unimplemented {
        checkpoint_container(CheckpointContainerRequest) -> CheckpointContainerResponse = "CheckpointContainer";
    }
}
