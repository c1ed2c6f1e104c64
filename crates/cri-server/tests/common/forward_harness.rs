//! An inner crimux for the forwarding tests: a `CriServer` (with a streaming server) over
//! a dispatcher of one [`EchoBackend`], on a temporary unix socket, and channels to it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use hyper_util::rt::TokioIo;
use k8s_cri::v1;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use tokio::net::{UnixListener, UnixStream};
use tokio_stream::wrappers::UnixListenerStream;
use tonic::transport::{Channel, Endpoint, Uri};

use crimux_core::{Backend, StreamingBackend};
use crimux_cri::CriServer;
use crimux_dispatch::testing::FakeBackend;
use crimux_dispatch::Dispatcher;

use super::echo_backend::EchoBackend;

pub struct Inner {
    pub fake: Arc<FakeBackend>,
    dir: tempfile::TempDir,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    server: tokio::task::JoinHandle<Result<(), tonic::transport::Error>>,
}

impl Inner {
    pub async fn start(fake: Arc<FakeBackend>) -> Inner {
        let backend: Arc<dyn Backend> = Arc::new(EchoBackend(fake.clone()));
        let dispatcher = Arc::new(Dispatcher::new(vec![backend], None).expect("topology"));
        let streaming = crimux_streaming::Server::bind(
            Default::default(),
            dispatcher.clone() as Arc<dyn StreamingBackend>,
        )
        .await
        .expect("streaming server");
        let dir = tempfile::tempdir().expect("tempdir");
        let listener = UnixListener::bind(dir.path().join("inner.sock")).expect("bind");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(CriServer::new(dispatcher).with_streaming(streaming).serve(
            UnixListenerStream::new(listener),
            async {
                let _ = stopped.await;
            },
        ));
        Inner {
            fake,
            dir,
            stop: Some(stop),
            server,
        }
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("inner.sock")
    }

    /// A channel to the inner crimux, as `src/serve.rs` hands one to a `kind = "cri"`
    /// backend.
    pub fn channel(&self) -> Channel {
        channel_to(&self.socket())
    }

    /// A plain CRI client of the inner crimux: what it holds, unmapped.
    pub fn runtime(&self) -> RuntimeServiceClient<Channel> {
        RuntimeServiceClient::new(self.channel())
    }

    /// Container `id`'s status as the inner crimux holds it (its own paths).
    pub async fn container_status(&self, id: &str) -> v1::ContainerStatus {
        self.runtime()
            .container_status(v1::ContainerStatusRequest {
                container_id: id.to_string(),
                verbose: false,
            })
            .await
            .expect("inner status")
            .into_inner()
            .status
            .expect("status")
    }

    /// Pod `id`'s status as the inner crimux holds it (its own handler names).
    pub async fn sandbox_status(&self, id: &str) -> v1::PodSandboxStatus {
        self.runtime()
            .pod_sandbox_status(v1::PodSandboxStatusRequest {
                pod_sandbox_id: id.to_string(),
                verbose: false,
            })
            .await
            .expect("inner sandbox status")
            .into_inner()
            .status
            .expect("status")
    }

    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.server
            .await
            .expect("server task")
            .expect("server ended cleanly");
    }
}

/// A lazy channel to the unix socket at `path` (connects on first use).
pub fn channel_to(path: &Path) -> Channel {
    let path = path.to_path_buf();
    Endpoint::try_from("http://[::]:50051")
        .expect("endpoint")
        .connect_with_connector_lazy(tower::service_fn(move |_: Uri| {
            let path = path.clone();
            async move { Ok::<_, std::io::Error>(TokioIo::new(UnixStream::connect(path).await?)) }
        }))
}
