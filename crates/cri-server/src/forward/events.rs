//! The relay of the inner crimux's container events: one background task per backend
//! keeps a GetContainerEvents stream open, converts each event to the host's view and
//! broadcasts it to this backend's subscribers (the outer dispatcher's event merge).
//!
//! The first stream is opened before `connect` returns, so no event of a pod created
//! right after connecting is missed. A stream that fails or ends (the inner crimux
//! restarted) is reopened with exponential backoff; the task ends when the backend is
//! dropped (its `Drop` aborts it).

use std::time::Duration;

use k8s_cri::v1;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use tokio::sync::broadcast;
use tonic::transport::Channel;
use tonic::Streaming;

use crimux_core::status::ContainerEvent;

use super::rewrite::Rewrite;
use crate::convert;

const FIRST_BACKOFF: Duration = Duration::from_millis(200);
const MAX_BACKOFF: Duration = Duration::from_secs(10);

struct Relay {
    backend: String,
    runtime: RuntimeServiceClient<Channel>,
    rewrite: Rewrite,
    events: broadcast::Sender<ContainerEvent>,
}

/// Opens the first stream, then spawns the task that relays it and its successors.
pub(super) async fn start(
    backend: String,
    runtime: RuntimeServiceClient<Channel>,
    rewrite: Rewrite,
    events: broadcast::Sender<ContainerEvent>,
) -> tokio::task::AbortHandle {
    let relay = Relay {
        backend,
        runtime,
        rewrite,
        events,
    };
    let first = relay.open().await;
    tokio::spawn(relay.run(first)).abort_handle()
}

impl Relay {
    async fn open(&self) -> Option<Streaming<v1::ContainerEventResponse>> {
        match self
            .runtime
            .clone()
            .get_container_events(v1::GetEventsRequest {})
            .await
        {
            Ok(response) => Some(response.into_inner()),
            Err(status) => {
                tracing::warn!(backend = %self.backend, code = ?status.code(), error = %status.message(), "cannot open the inner crimux's container events");
                None
            }
        }
    }

    async fn run(self, first: Option<Streaming<v1::ContainerEventResponse>>) {
        let mut stream = first;
        let mut backoff = FIRST_BACKOFF;
        loop {
            if let Some(s) = stream.take() {
                if self.pump(s).await {
                    backoff = FIRST_BACKOFF;
                }
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
            stream = self.open().await;
        }
    }

    /// Relays one stream until it ends; whether it delivered anything.
    async fn pump(&self, mut stream: Streaming<v1::ContainerEventResponse>) -> bool {
        let mut delivered = false;
        loop {
            match stream.message().await {
                Ok(Some(event)) => {
                    delivered = true;
                    match convert::event_from_proto(event) {
                        // Nobody subscribed is fine.
                        Ok(Some(e)) => drop(self.events.send(self.rewrite.event_out(e))),
                        Ok(None) => {}
                        Err(e) => {
                            tracing::warn!(backend = %self.backend, error = %e, "dropping an inner container event crimux cannot read");
                        }
                    }
                }
                Ok(None) => {
                    tracing::info!(backend = %self.backend, "the inner crimux ended its container events; reopening");
                    return delivered;
                }
                Err(status) => {
                    tracing::warn!(backend = %self.backend, code = ?status.code(), error = %status.message(), "inner container events failed; reopening");
                    return delivered;
                }
            }
        }
    }
}
