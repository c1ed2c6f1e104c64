//! StopPodSandbox: every container of the pod, then the pause, then the network. The
//! record stays (the pod is NotReady until removed); the pause's task is deleted, as
//! containerd's CRI does when a sandbox exits, so its shim goes away. Idempotent.

use std::time::Duration;

use crimux_core::{ContainerBackend, ContainerId, PodSandboxId, Result};

use super::network;
use super::record::{load_sandbox, pod_containers, SandboxRecord};
use super::run::kill_and_delete;
use crate::runtime::lock::lock_pod;
use crate::ContainerdBackend;

/// Stops sandbox `id`; an unknown id succeeds.
pub(crate) async fn stop(backend: &ContainerdBackend, id: &PodSandboxId) -> Result<()> {
    let inner = backend.inner();
    let _lock = lock_pod(&inner.runtime.state_dir, id.as_str()).await;
    let record = match load_sandbox(inner, id).await {
        Ok(record) => record,
        Err(e) if e.is_not_found() => return Ok(()),
        Err(e) => return Err(e),
    };
    stop_locked(backend, &record).await?;
    tracing::info!(backend = %inner.name, sandbox = %id, "pod sandbox stopped");
    Ok(())
}

/// The work of [`stop`], with the pod's lock held by the caller.
pub(crate) async fn stop_locked(backend: &ContainerdBackend, record: &SandboxRecord) -> Result<()> {
    let inner = backend.inner();
    let id = &record.id;
    for cid in pod_containers(inner, id).await? {
        match backend
            .stop_container(&ContainerId(cid.clone()), Duration::ZERO)
            .await
        {
            Ok(()) => {}
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e.context(format!("stopping container {cid} of pod {id}"))),
        }
    }
    kill_and_delete(inner, id.as_str())
        .await
        .map_err(|e| e.context(format!("stopping the pause of pod sandbox {id}")))?;
    if let Some(netns) = &record.netns_path {
        // DEL needs the namespace when it is still there; only after it succeeded may the
        // namespace go, so a failed DEL can be retried by the next Stop.
        network::detach(inner, id, netns, &record.config).await?;
        network::remove_netns(netns).await?;
    }
    Ok(())
}
