//! The CRI v1 gRPC adapter: kubelet's RuntimeService and ImageService over a
//! [`Dispatcher`].
//!
//! - `convert`: CRI protos to domain types and back.
//! - [`CriImageService`], [`CriRuntimeService`]: the tonic services, one thin method per
//!   RPC (`into_inner` → dispatcher → `Status::from` → `Response`).
//! - [`CriServer`]: both services, ready to add to a tonic server or serve directly.
//!
//! Architecture Invariant: this is the only crate that knows CRI protos (`k8s_cri::v1`).
//! It decides nothing: routing lives in `crimux-dispatch`, behaviour in the backends.

pub mod convert;
pub mod forward;
mod image_service;
mod runtime_service;

use std::future::Future;
use std::sync::Arc;

use k8s_cri::v1::image_service_server::ImageServiceServer;
use k8s_cri::v1::runtime_service_server::RuntimeServiceServer;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_stream::Stream;
use tonic::transport::server::Connected;
use tonic::transport::Server;

use crimux_dispatch::Dispatcher;

pub use image_service::CriImageService;
pub use runtime_service::{
    CriRuntimeService, KUBELET_API_VERSION, RUNTIME_API_VERSION, RUNTIME_NAME,
};

/// Largest CRI message accepted or sent. kubelet allows 16 MiB; tonic's default of 4 MiB
/// is too small for ListImages/ListContainers on a busy node.
pub const MAX_MESSAGE_SIZE: usize = 16 * 1024 * 1024;

/// Both CRI services over one dispatcher.
#[derive(Clone, Debug)]
pub struct CriServer {
    dispatcher: Arc<Dispatcher>,
    /// The exec/attach/port-forward server the streaming RPCs hand out URLs for.
    streaming: Option<Arc<crimux_streaming::Server>>,
    /// Turns true when serving should stop: open GetContainerEvents streams end then, so
    /// a graceful shutdown does not wait on a kubelet that never hangs up.
    closing: tokio::sync::watch::Sender<bool>,
}

impl CriServer {
    pub fn new(dispatcher: Arc<Dispatcher>) -> Self {
        CriServer {
            dispatcher,
            streaming: None,
            closing: tokio::sync::watch::channel(false).0,
        }
    }

    /// Answers Exec, Attach and PortForward with URLs at `server` (without one they are
    /// Unavailable).
    pub fn with_streaming(mut self, server: Arc<crimux_streaming::Server>) -> Self {
        self.streaming = Some(server);
        self
    }

    pub fn dispatcher(&self) -> &Arc<Dispatcher> {
        &self.dispatcher
    }

    pub fn runtime_service(&self) -> RuntimeServiceServer<CriRuntimeService> {
        let mut service =
            CriRuntimeService::with_closing(self.dispatcher.clone(), self.closing.subscribe());
        if let Some(server) = &self.streaming {
            service = service.with_streaming(server.clone());
        }
        RuntimeServiceServer::new(service)
            .max_decoding_message_size(MAX_MESSAGE_SIZE)
            .max_encoding_message_size(MAX_MESSAGE_SIZE)
    }

    pub fn image_service(&self) -> ImageServiceServer<CriImageService> {
        ImageServiceServer::new(CriImageService::new(self.dispatcher.clone()))
            .max_decoding_message_size(MAX_MESSAGE_SIZE)
            .max_encoding_message_size(MAX_MESSAGE_SIZE)
    }

    /// Serves both services on `incoming` connections until `shutdown` resolves, then
    /// ends event streams and lets in-flight calls finish.
    pub async fn serve<I, IO, IE, F>(
        self,
        incoming: I,
        shutdown: F,
    ) -> Result<(), tonic::transport::Error>
    where
        I: Stream<Item = Result<IO, IE>>,
        IO: AsyncRead + AsyncWrite + Connected + Unpin + Send + 'static,
        IE: Into<Box<dyn std::error::Error + Send + Sync>>,
        F: Future<Output = ()>,
    {
        let closing = self.closing.clone();
        let shutdown = async move {
            shutdown.await;
            closing.send_replace(true);
        };
        Server::builder()
            .add_service(self.runtime_service())
            .add_service(self.image_service())
            .serve_with_incoming_shutdown(incoming, shutdown)
            .await
    }
}
