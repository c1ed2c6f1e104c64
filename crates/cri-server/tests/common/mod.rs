//! The CRI services served in-process on a temporary unix socket over recording fake
//! backends, driven with k8s-cri's generated clients.

use std::sync::Arc;

use hyper_util::rt::TokioIo;
use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use tokio::net::{UnixListener, UnixStream};
use tokio_stream::wrappers::UnixListenerStream;
use tonic::transport::{Channel, Endpoint, Uri};

use crimux_core::Backend;
use crimux_cri::CriServer;
use crimux_dispatch::testing::FakeBackend;
use crimux_dispatch::Dispatcher;

pub struct Harness {
    _dir: tempfile::TempDir,
    channel: Channel,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    server: tokio::task::JoinHandle<Result<(), tonic::transport::Error>>,
}

impl Harness {
    pub async fn start(fakes: &[Arc<FakeBackend>]) -> Harness {
        let backends: Vec<Arc<dyn Backend>> = fakes
            .iter()
            .map(|f| f.clone() as Arc<dyn Backend>)
            .collect();
        let dispatcher = Arc::new(Dispatcher::new(backends, None).expect("topology"));
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("crimux.sock");
        let listener = UnixListener::bind(&path).expect("bind");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(CriServer::new(dispatcher).serve(
            UnixListenerStream::new(listener),
            async {
                let _ = stopped.await;
            },
        ));
        let channel =
            Endpoint::try_from("http://[::]:50051")
                .expect("endpoint")
                .connect_with_connector(tower::service_fn(move |_: Uri| {
                    let path = path.clone();
                    async move {
                        Ok::<_, std::io::Error>(TokioIo::new(UnixStream::connect(path).await?))
                    }
                }))
                .await
                .expect("connect to the in-process server");
        Harness {
            _dir: dir,
            channel,
            stop: Some(stop),
            server,
        }
    }

    pub fn images(&self) -> ImageServiceClient<Channel> {
        ImageServiceClient::new(self.channel.clone())
    }

    pub fn runtime(&self) -> RuntimeServiceClient<Channel> {
        RuntimeServiceClient::new(self.channel.clone())
    }

    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        drop(self.channel);
        self.server
            .await
            .expect("server task")
            .expect("server ended cleanly");
    }
}
