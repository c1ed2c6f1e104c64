//! An inner crimux from before requested ids: its RuntimeService drops the
//! `crimux.io/requested-*` annotations before the dispatcher sees them, so it chooses ids
//! of its own. Every other RPC is the real `CriRuntimeService`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use k8s_cri::v1;
use k8s_cri::v1::runtime_service_server::{RuntimeService, RuntimeServiceServer};
use tokio::net::UnixListener;
use tokio_stream::wrappers::UnixListenerStream;
use tonic::transport::Server;
use tonic::{Request, Response, Status};

use crimux_core::{Backend, REQUESTED_CONTAINER_ID, REQUESTED_SANDBOX_ID};
use crimux_cri::{CriRuntimeService, CriServer};
use crimux_dispatch::testing::FakeBackend;
use crimux_dispatch::Dispatcher;

pub struct IgnoresRequestedIds(CriRuntimeService);

macro_rules! delegate {
    ($($rpc:ident($req:ident) -> $resp:ident;)*) => {
        #[tonic::async_trait]
        impl RuntimeService for IgnoresRequestedIds {
            $(
                async fn $rpc(
                    &self,
                    request: Request<v1::$req>,
                ) -> Result<Response<v1::$resp>, Status> {
                    self.0.$rpc(request).await
                }
            )*

            type GetContainerEventsStream =
                <CriRuntimeService as RuntimeService>::GetContainerEventsStream;

            async fn get_container_events(
                &self,
                request: Request<v1::GetEventsRequest>,
            ) -> Result<Response<Self::GetContainerEventsStream>, Status> {
                self.0.get_container_events(request).await
            }

            async fn run_pod_sandbox(
                &self,
                request: Request<v1::RunPodSandboxRequest>,
            ) -> Result<Response<v1::RunPodSandboxResponse>, Status> {
                let mut request = request.into_inner();
                if let Some(config) = request.config.as_mut() {
                    config.annotations.remove(REQUESTED_SANDBOX_ID);
                }
                self.0.run_pod_sandbox(Request::new(request)).await
            }

            async fn create_container(
                &self,
                request: Request<v1::CreateContainerRequest>,
            ) -> Result<Response<v1::CreateContainerResponse>, Status> {
                let mut request = request.into_inner();
                if let Some(config) = request.config.as_mut() {
                    config.annotations.remove(REQUESTED_CONTAINER_ID);
                }
                self.0.create_container(Request::new(request)).await
            }
        }
    };
}

delegate! {
    version(VersionRequest) -> VersionResponse;
    status(StatusRequest) -> StatusResponse;
    runtime_config(RuntimeConfigRequest) -> RuntimeConfigResponse;
    update_runtime_config(UpdateRuntimeConfigRequest) -> UpdateRuntimeConfigResponse;
    stop_pod_sandbox(StopPodSandboxRequest) -> StopPodSandboxResponse;
    remove_pod_sandbox(RemovePodSandboxRequest) -> RemovePodSandboxResponse;
    pod_sandbox_status(PodSandboxStatusRequest) -> PodSandboxStatusResponse;
    list_pod_sandbox(ListPodSandboxRequest) -> ListPodSandboxResponse;
    start_container(StartContainerRequest) -> StartContainerResponse;
    stop_container(StopContainerRequest) -> StopContainerResponse;
    remove_container(RemoveContainerRequest) -> RemoveContainerResponse;
    list_containers(ListContainersRequest) -> ListContainersResponse;
    container_status(ContainerStatusRequest) -> ContainerStatusResponse;
    update_container_resources(UpdateContainerResourcesRequest) -> UpdateContainerResourcesResponse;
    reopen_container_log(ReopenContainerLogRequest) -> ReopenContainerLogResponse;
    exec_sync(ExecSyncRequest) -> ExecSyncResponse;
    container_stats(ContainerStatsRequest) -> ContainerStatsResponse;
    list_container_stats(ListContainerStatsRequest) -> ListContainerStatsResponse;
    pod_sandbox_stats(PodSandboxStatsRequest) -> PodSandboxStatsResponse;
    list_pod_sandbox_stats(ListPodSandboxStatsRequest) -> ListPodSandboxStatsResponse;
    list_metric_descriptors(ListMetricDescriptorsRequest) -> ListMetricDescriptorsResponse;
    list_pod_sandbox_metrics(ListPodSandboxMetricsRequest) -> ListPodSandboxMetricsResponse;
    exec(ExecRequest) -> ExecResponse;
    attach(AttachRequest) -> AttachResponse;
    port_forward(PortForwardRequest) -> PortForwardResponse;
    checkpoint_container(CheckpointContainerRequest) -> CheckpointContainerResponse;
}

/// The old inner crimux, serving on a socket in a temporary directory until dropped.
pub struct OldInner {
    dir: tempfile::TempDir,
    server: tokio::task::JoinHandle<Result<(), tonic::transport::Error>>,
}

impl OldInner {
    pub async fn start(fake: Arc<FakeBackend>) -> OldInner {
        let dispatcher =
            Arc::new(Dispatcher::new(vec![fake as Arc<dyn Backend>], None).expect("topology"));
        let images = CriServer::new(dispatcher.clone()).image_service();
        let runtime = IgnoresRequestedIds(CriRuntimeService::new(dispatcher));
        let dir = tempfile::tempdir().expect("tempdir");
        let listener = UnixListener::bind(socket_in(dir.path())).expect("bind");
        let server = tokio::spawn(
            Server::builder()
                .add_service(RuntimeServiceServer::new(runtime))
                .add_service(images)
                .serve_with_incoming(UnixListenerStream::new(listener)),
        );
        OldInner { dir, server }
    }

    pub fn socket(&self) -> PathBuf {
        socket_in(self.dir.path())
    }
}

impl Drop for OldInner {
    fn drop(&mut self) {
        self.server.abort();
    }
}

fn socket_in(dir: &Path) -> PathBuf {
    dir.join("old.sock")
}
