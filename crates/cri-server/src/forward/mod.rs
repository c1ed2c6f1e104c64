//! A backend that is another crimux: every call routed to it is forwarded over CRI.
//!
//! This is how a Windows crimux runs Linux pods in WSL2 (`kind = "cri"` in the config): a
//! Linux crimux inside the distro does the host-side work (netns, CNI, pod files, logger,
//! FIFOs) where the shim can see it, and the Windows crimux forwards to it, keeping its
//! own routes. Ids are the outer dispatcher's: they are sent as the
//! `REQUESTED_SANDBOX_ID` / `REQUESTED_CONTAINER_ID` annotations, which the inner crimux
//! honours, so both route tables name every pod alike. Host paths (log directory, log
//! path, mount sources) are rewritten by the configured [`PathMapping`]s on the way in and
//! back on the way out. Exec, attach and port-forward are relayed session by session to
//! the inner crimux's streaming server (`crimux_streaming::client::relay_*`).
//!
//! Files: `paths` (pure path mapping), `rewrite` (paths and handler names applied to
//! requests and answers), `errors` (gRPC statuses back into crimux errors), then one file
//! per trait: `images`, `sandboxes`, `containers` (with `status`), `streaming`, and
//! `events` (the relay of the inner GetContainerEvents stream).

mod containers;
mod errors;
mod events;
mod images;
mod paths;
mod rewrite;
mod sandboxes;
mod streaming;

use std::future::Future;
use std::sync::Arc;

use k8s_cri::v1;
use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use tokio::sync::broadcast;
use tonic::transport::Channel;

use crimux_core::status::ContainerEvent;
use crimux_core::{Backend, BackendInfo, BackendRole, Error, Platform, Result};

use crate::convert;
use crate::MAX_MESSAGE_SIZE;
use paths::PathMap;
use rewrite::Rewrite;

/// A host path prefix and what it is called on the forwarded-to side
/// (`C:\` → `/mnt/c/` for WSL2). Matching is case-insensitive for a drive-letter prefix;
/// after a mapped prefix, `\` separators become `/`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PathMapping {
    pub host: String,
    pub backend: String,
}

/// A RuntimeClass handler this backend serves, and the handler name used on the inner
/// crimux (`""` is its default).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ForwardedHandler {
    pub name: String,
    pub remote: String,
}

#[derive(Clone, Debug)]
pub struct CriBackendConfig {
    pub name: String,
    pub role: BackendRole,
    /// Override the discovered platform (from the inner crimux's verbose Status).
    pub os: Option<String>,
    pub arch: Option<String>,
    pub runtime_handlers: Vec<ForwardedHandler>,
    pub path_map: Vec<PathMapping>,
}

/// How many events the relay buffers per subscriber before the slowest one lags.
const EVENT_BUFFER: usize = 256;

/// A forwarding backend over one gRPC channel to another crimux.
#[derive(Debug)]
pub struct CriBackend {
    info: BackendInfo,
    rewrite: Rewrite,
    runtime: RuntimeServiceClient<Channel>,
    images: ImageServiceClient<Channel>,
    events: broadcast::Sender<ContainerEvent>,
    /// The event relay task, stopped when the backend is dropped.
    relay: tokio::task::AbortHandle,
}

impl CriBackend {
    /// Checks the other side answers CRI (Version), learns its platform unless configured,
    /// and starts the event relay. Unreachable → Unavailable naming the backend.
    pub async fn connect(config: CriBackendConfig, channel: Channel) -> Result<Arc<CriBackend>> {
        let runtime = RuntimeServiceClient::new(channel.clone())
            .max_decoding_message_size(MAX_MESSAGE_SIZE)
            .max_encoding_message_size(MAX_MESSAGE_SIZE);
        let images = ImageServiceClient::new(channel)
            .max_decoding_message_size(MAX_MESSAGE_SIZE)
            .max_encoding_message_size(MAX_MESSAGE_SIZE);
        let name = config.name.clone();

        let version = runtime
            .clone()
            .version(v1::VersionRequest {
                version: crate::KUBELET_API_VERSION.to_string(),
            })
            .await
            .map_err(|status| unreachable(&name, status))?
            .into_inner();
        tracing::info!(
            backend = %name,
            runtime = %version.runtime_name,
            runtime_version = %version.runtime_version,
            api = %version.runtime_api_version,
            "connected to the crimux this backend forwards to"
        );

        let platform = platform(&config, &runtime).await?;
        let rewrite = Rewrite::new(
            PathMap::new(&config.path_map),
            config.runtime_handlers.clone(),
            &platform,
        );
        let info = BackendInfo {
            name: name.clone(),
            role: config.role,
            platform,
            runtime_handlers: config
                .runtime_handlers
                .iter()
                .map(|h| h.name.clone())
                .collect(),
        };

        let (events, _) = broadcast::channel(EVENT_BUFFER);
        let relay = events::start(name, runtime.clone(), rewrite.clone(), events.clone()).await;
        Ok(Arc::new(CriBackend {
            info,
            rewrite,
            runtime,
            images,
            events,
            relay,
        }))
    }

    pub fn info(&self) -> &BackendInfo {
        &self.info
    }

    /// A RuntimeService client for one call (tonic clients are cheap clones of the channel).
    fn runtime(&self) -> RuntimeServiceClient<Channel> {
        self.runtime.clone()
    }

    fn images(&self) -> ImageServiceClient<Channel> {
        self.images.clone()
    }

    /// Awaits `call`, one `rpc` to the inner crimux: its answer, or its failure as a crimux
    /// error of the same code.
    async fn call<T>(
        &self,
        rpc: &str,
        call: impl Future<Output = std::result::Result<tonic::Response<T>, tonic::Status>>,
    ) -> Result<T> {
        call.await
            .map(tonic::Response::into_inner)
            .map_err(|status| errors::from_status(&self.info.name, rpc, status))
    }

    /// The error for an `rpc` about `id` whose answer left out its stats.
    fn no_stats(&self, rpc: &str, id: &dyn std::fmt::Display) -> Error {
        Error::Internal(format!(
            "backend {}: {rpc} for {id} answered without stats",
            self.info.name
        ))
    }
}

impl Drop for CriBackend {
    fn drop(&mut self) {
        self.relay.abort();
    }
}

impl Backend for CriBackend {
    fn info(&self) -> &BackendInfo {
        &self.info
    }

    fn subscribe_events(&self) -> Option<broadcast::Receiver<ContainerEvent>> {
        Some(self.events.subscribe())
    }
}

/// Version failed: the other side is down, or is not a CRI runtime at all.
fn unreachable(name: &str, status: tonic::Status) -> Error {
    if status.code() == tonic::Code::Unimplemented {
        return Error::FailedPrecondition(format!(
            "backend {name}: the endpoint it forwards to does not serve the CRI v1 \
             RuntimeService (Version: {})",
            status.message()
        ));
    }
    Error::Unavailable(format!(
        "backend {name}: cannot reach the crimux it forwards to: {}",
        status.message()
    ))
}

/// The configured `os`/`arch`, with what is missing taken from the inner crimux's verbose
/// Status (the platform of its primary backend).
async fn platform(
    config: &CriBackendConfig,
    runtime: &RuntimeServiceClient<Channel>,
) -> Result<Platform> {
    if let (Some(os), Some(arch)) = (&config.os, &config.arch) {
        return Ok(Platform::new(os.clone(), arch.clone()));
    }
    let discovered = match runtime
        .clone()
        .status(v1::StatusRequest { verbose: true })
        .await
    {
        Ok(response) => convert::platform_from_status_info(&response.into_inner().info),
        Err(status) => {
            tracing::warn!(backend = %config.name, error = %status.message(), "verbose Status failed; platform unknown");
            None
        }
    };
    let os = config
        .os
        .clone()
        .or_else(|| discovered.as_ref().map(|p| p.os.clone()));
    let arch = config
        .arch
        .clone()
        .or_else(|| discovered.as_ref().map(|p| p.architecture.clone()));
    match (os, arch) {
        (Some(os), Some(arch)) => {
            let variant = discovered
                .filter(|p| config.arch.is_none() && p.architecture == arch)
                .and_then(|p| p.variant);
            Ok(Platform {
                os,
                architecture: arch,
                variant,
            })
        }
        _ => Err(Error::FailedPrecondition(format!(
            "backend {}: the crimux it forwards to did not report its platform; set `os` \
             and `arch` in its [[backend]] config",
            config.name
        ))),
    }
}
