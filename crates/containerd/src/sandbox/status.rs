//! PodSandboxStatus and ListPodSandbox from the records in containerd and the pause tasks'
//! states, and the backend's readiness (StatusBackend).

use std::collections::{BTreeMap, HashMap};

use crimux_core::status::{BackendStatus, SandboxState, SandboxStatus, SandboxSummary};
use crimux_core::{PodSandboxId, Result};
use serde_json::json;

use super::record::{load_sandbox, SandboxRecord};
use crate::backend::Inner;
use crate::platform::mount;
use crate::runtime::record_cache;
use crate::runtime::task::{self, TaskState, TaskStatus};

/// The CRI's reason for a network that is not ready.
pub(crate) const NETWORK_NOT_READY: &str = "NetworkPluginNotReady";
/// The CRI's reason for a runtime that is not ready.
pub(crate) const RUNTIME_NOT_READY: &str = "ContainerdNotReady";

fn state_of(task: Option<&TaskState>) -> SandboxState {
    match task {
        Some(t) if t.status == TaskStatus::Running => SandboxState::Ready,
        _ => SandboxState::NotReady,
    }
}

fn summary(record: &SandboxRecord, state: SandboxState) -> SandboxSummary {
    SandboxSummary {
        id: record.id.clone(),
        metadata: record.config.metadata.clone(),
        state,
        created_at: record.created_at,
        labels: record.config.labels.clone(),
        annotations: record.config.annotations.clone(),
        runtime_handler: record.config.runtime_handler.clone(),
    }
}

/// The sandbox's status; `verbose` adds `info["info"]`, a JSON document shaped like
/// containerd's (pid, process status, netns, runtime, the config as given).
pub(crate) async fn status(
    inner: &Inner,
    id: &PodSandboxId,
    verbose: bool,
) -> Result<SandboxStatus> {
    let record = load_sandbox(inner, id).await?;
    let task = task::state(inner, id.as_str()).await?;
    let state = state_of(task.as_ref());
    // After Stop the namespace is gone and with it the addresses (containerd reports none
    // once the netns is closed).
    let netns_open = match &record.netns_path {
        Some(p) => mount::is_mountpoint(p).await?,
        None => false,
    };
    // A pod given the node's network (`pod_network = "host"`) has no netns but recorded
    // the node's address: it holds while the pod is ready.
    let node_networked = record.netns_path.is_none() && !record.ips.is_empty();
    let ips = if netns_open || (node_networked && state == SandboxState::Ready) {
        record.ips.clone()
    } else {
        Vec::new()
    };
    let namespace_options = record
        .config
        .linux
        .as_ref()
        .map(|l| l.security.namespace_options.clone())
        .unwrap_or_default();
    let mut info = BTreeMap::new();
    if verbose {
        info.insert(
            "info".to_string(),
            verbose_info(inner, &record, task.as_ref(), netns_open).to_string(),
        );
    }
    Ok(SandboxStatus {
        summary: summary(&record, state),
        ips,
        namespace_options,
        info,
    })
}

fn verbose_info(
    inner: &Inner,
    record: &SandboxRecord,
    task: Option<&TaskState>,
    netns_open: bool,
) -> serde_json::Value {
    let process_status = match task.map(|t| t.status) {
        Some(TaskStatus::Created) => "created",
        Some(TaskStatus::Running) => "running",
        Some(TaskStatus::Paused) => "paused",
        Some(TaskStatus::Stopped) => "stopped",
        Some(TaskStatus::Unknown) => "unknown",
        None => "deleted",
    };
    let handler = inner
        .runtime
        .handlers
        .iter()
        .find(|h| h.name == record.config.runtime_handler);
    json!({
        "pid": task.map(|t| t.pid).unwrap_or(0),
        "processStatus": process_status,
        "netNamespacePath": record.netns_path.as_ref().map(|p| p.display().to_string()).unwrap_or_default(),
        "netNamespaceClosed": !netns_open,
        "image": record.image_id,
        "snapshotKey": record.id,
        "snapshotter": inner.snapshotter,
        "runtimeHandler": record.config.runtime_handler,
        "runtimeType": record.runtime_type,
        "runtimeOptions": handler
            .and_then(|h| serde_json::from_str::<serde_json::Value>(&h.options_json).ok()),
        "config": record.config,
        "files": record.files,
        "ips": record.ips,
        "createdAt": record.created_at,
    })
}

/// Every sandbox with its state: the records and the task states from the backend's
/// mirrors (`runtime/record_cache.rs`, `runtime/task_cache.rs`).
pub(crate) async fn list(inner: &Inner) -> Result<Vec<SandboxSummary>> {
    let records = record_cache::sandboxes(inner).await?;
    let tasks: HashMap<String, TaskState> = task::states(inner).await?;
    Ok(records
        .iter()
        .map(|r| summary(r, state_of(tasks.get(r.id.as_str()))))
        .collect())
}

/// Runtime ready when containerd answers; network ready when a valid CNI config with all
/// its plugins is there.
pub(crate) async fn backend_status(inner: &Inner) -> Result<BackendStatus> {
    let version = inner
        .daemon
        .version()
        .version(inner.daemon.request((), None))
        .await;
    let (runtime_ready, runtime_reason) = match version {
        Ok(_) => (true, String::new()),
        Err(s) => {
            tracing::warn!(backend = %inner.name, status = %s, "containerd is not answering");
            (false, RUNTIME_NOT_READY.to_string())
        }
    };
    let cni = inner.cni.clone();
    let network = tokio::task::spawn_blocking(move || cni.status().map(|_| ()))
        .await
        .map_err(|e| crimux_core::Error::Internal(format!("CNI status worker: {e}")))?;
    let (network_ready, network_reason, network_message) = match network {
        Ok(()) => (true, String::new(), String::new()),
        Err(e) => (
            false,
            NETWORK_NOT_READY.to_string(),
            format!("Network plugin returns error: cni plugin not initialized: {e}"),
        ),
    };
    Ok(BackendStatus {
        runtime_ready,
        runtime_reason,
        network_ready,
        network_reason,
        network_message,
    })
}
