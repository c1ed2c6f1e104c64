//! A pod's network: a network namespace pinned under `<state_dir>/netns/<id>`, attached to
//! the node's CNI network. containerd's CRI creates and attaches it before the pause
//! exists, and tears it down (and removes the namespace) when the pod is stopped.

use std::path::{Path, PathBuf};

use crimux_cni::{AttachRequest, NetNs};
use crimux_core::sandbox::SandboxConfig;
use crimux_core::{Error, PodSandboxId, Result};

use crate::backend::Inner;

/// Where pod `id`'s namespace is pinned.
pub(crate) fn netns_path(state_dir: &Path, id: &str) -> PathBuf {
    state_dir.join("netns").join(id)
}

/// Creates and pins a fresh network namespace for `id`. A file left there by an earlier,
/// interrupted run of the same id is removed first.
pub(crate) async fn create_netns(inner: &Inner, id: &str) -> Result<PathBuf> {
    let dir = inner.runtime.state_dir.join("netns");
    let name = id.to_string();
    blocking(move || match NetNs::create(&dir, &name) {
        Err(e) if e.code() == tonic::Code::AlreadyExists => {
            tracing::warn!(sandbox = %name, "removing a stale network namespace");
            NetNs::at(dir.join(&name)).remove()?;
            NetNs::create(&dir, &name)
        }
        other => other,
    })
    .await
    .map(|ns| ns.path().to_path_buf())
}

/// Unmounts and deletes a pinned namespace. Idempotent.
pub(crate) async fn remove_netns(path: &Path) -> Result<()> {
    let ns = NetNs::at(path);
    blocking(move || ns.remove()).await
}

fn request(id: &PodSandboxId, netns: &Path, config: &SandboxConfig) -> AttachRequest {
    let mut req = AttachRequest::new(id.clone(), netns.to_path_buf(), config.metadata.clone());
    req.port_mappings = config.port_mappings.clone();
    req
}

/// CNI ADD; returns the pod's IPs, primary first. A failed ADD leaves nothing attached.
pub(crate) async fn attach(
    inner: &Inner,
    id: &PodSandboxId,
    netns: &Path,
    config: &SandboxConfig,
) -> Result<Vec<String>> {
    let result = inner
        .cni
        .setup(&request(id, netns, config))
        .await
        .map_err(|e| e.context(format!("setting up the network of pod sandbox {id}")))?;
    Ok(result.pod_ips().iter().map(ToString::to_string).collect())
}

/// CNI DEL with the cached attachment (the namespace may be gone). Idempotent.
pub(crate) async fn detach(
    inner: &Inner,
    id: &PodSandboxId,
    netns: &Path,
    config: &SandboxConfig,
) -> Result<()> {
    inner
        .cni
        .teardown(&request(id, netns, config))
        .await
        .map_err(|e| e.context(format!("tearing down the network of pod sandbox {id}")))
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::Internal(format!("network namespace worker: {e}")))?
}
