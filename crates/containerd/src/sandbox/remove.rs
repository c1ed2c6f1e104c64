//! RemovePodSandbox: stop if needed, remove the pod's containers, then the sandbox's files
//! and, last, its containerd object, so a failure half way leaves the record for a retry
//! to find. Idempotent: an unknown id also clears leftovers of an interrupted remove.

use std::path::Path;

use crimux_core::{ContainerBackend, ContainerId, PodSandboxId, Result};

use super::record::{load_sandbox, pod_containers};
use super::run::check_id;
use super::stop::stop_locked;
use super::{files, network};
use crate::backend::Inner;
use crate::runtime::lock::lock_pod;
use crate::runtime::object;
use crate::ContainerdBackend;

/// Removes sandbox `id` and everything it owns; an unknown id succeeds.
pub(crate) async fn remove(backend: &ContainerdBackend, id: &PodSandboxId) -> Result<()> {
    let inner = backend.inner();
    let _lock = lock_pod(&inner.runtime.state_dir, id.as_str()).await;
    let record = match load_sandbox(inner, id).await {
        Ok(record) => record,
        Err(e) if e.is_not_found() => return remove_leftovers(inner, id).await,
        Err(e) => return Err(e),
    };
    stop_locked(backend, &record).await?;
    for cid in pod_containers(inner, id).await? {
        backend
            .remove_container(&ContainerId(cid.clone()))
            .await
            .map_err(|e| e.context(format!("removing container {cid} of pod {id}")))?;
    }
    if let Some(netns) = &record.netns_path {
        network::remove_netns(netns).await?;
    }
    files::remove(&inner.runtime.state_dir, id.as_str()).await?;
    object::remove(inner, id.as_str()).await?;
    tracing::info!(backend = %inner.name, sandbox = %id, "pod sandbox removed");
    Ok(())
}

/// What an interrupted run or remove of `id` may have left on the host after its
/// containerd object went (or before it came): CNI attachment, netns, files.
async fn remove_leftovers(inner: &Inner, id: &PodSandboxId) -> Result<()> {
    if check_id(id).is_err() {
        // Never a name run accepted, so nothing of it can exist (nor may it name a path).
        return Ok(());
    }
    let state_dir = &inner.runtime.state_dir;
    let netns = network::netns_path(state_dir, id.as_str());
    let cached = state_dir
        .join("cni-cache")
        .join(format!("{}.json", id.as_str()));
    if exists(&cached).await {
        tracing::warn!(sandbox = %id, "detaching a leftover CNI attachment");
        network::detach(inner, id, &netns, &Default::default()).await?;
    }
    if exists(&netns).await {
        network::remove_netns(&netns).await?;
    }
    if exists(&files::sandbox_dir(state_dir, id.as_str())).await {
        files::remove(state_dir, id.as_str()).await?;
    }
    Ok(())
}

async fn exists(path: &Path) -> bool {
    tokio::fs::try_exists(path).await.unwrap_or(false)
}
