//! Container lifecycle events for GetContainerEvents (kubelet's evented PLEG).

use crimux_core::status::{ContainerEvent, ContainerEventKind};
use crimux_core::{ContainerId, PodSandboxId};

use super::status::statuses;
use crate::backend::Inner;

/// Publishes an event with the statuses of the pod's containers after it. Nobody
/// listening is fine; a failure to gather the statuses sends the event without them.
pub(crate) async fn emit(
    inner: &Inner,
    id: &ContainerId,
    sandbox_id: &PodSandboxId,
    kind: ContainerEventKind,
) {
    if inner.events.receiver_count() == 0 {
        return;
    }
    let containers = match statuses(inner, Some(sandbox_id.as_str())).await {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(container = %id, %e, "container event without statuses");
            Vec::new()
        }
    };
    let event = ContainerEvent {
        container_id: id.clone(),
        kind,
        created_at: crate::runtime::now_nanos(),
        sandbox: None,
        containers,
    };
    let _ = inner.events.send(event);
}
