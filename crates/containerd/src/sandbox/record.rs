//! The durable record of one pod sandbox. It is stored as JSON in an extension of the pause
//! container's containerd object (`crimux.io/sandbox`), so a restarted crimux finds every
//! sandbox again by listing containerd.

use std::path::PathBuf;

use crimux_core::sandbox::SandboxConfig;
use crimux_core::{Error, PodSandboxId, Result};
use serde::{Deserialize, Serialize};

use crate::backend::Inner;
use crate::runtime::{object, task};

/// containerd container extension key holding a [`SandboxRecord`].
pub(crate) const SANDBOX_EXTENSION: &str = "crimux.io/sandbox";
/// `type_url` of that extension's `Any`.
pub(crate) const SANDBOX_TYPE_URL: &str = "crimux.io/SandboxRecord";

/// Label saying what a crimux containerd object is.
pub(crate) const KIND_LABEL: &str = "crimux.io/kind";
/// [`KIND_LABEL`] value of a pod sandbox's pause container.
pub(crate) const KIND_SANDBOX: &str = "sandbox";
/// [`KIND_LABEL`] value of a workload container.
pub(crate) const KIND_CONTAINER: &str = "container";
/// Label on a workload container naming its pod sandbox.
pub(crate) const SANDBOX_ID_LABEL: &str = "crimux.io/sandbox-id";

/// Files the sandbox shares with its containers, on the backend's host.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SandboxFiles {
    pub hostname: PathBuf,
    pub hosts: PathBuf,
    pub resolv_conf: PathBuf,
    /// A tmpfs mounted on the host and bound at `/dev/shm` in every container of the pod;
    /// `None` with host IPC.
    pub shm: Option<PathBuf>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SandboxRecord {
    pub id: PodSandboxId,
    pub config: SandboxConfig,
    /// Unix nanoseconds.
    pub created_at: i64,
    /// The pinned network namespace; `None` with host network.
    pub netns_path: Option<PathBuf>,
    /// Pod IPs from CNI, primary first.
    pub ips: Vec<String>,
    /// containerd runtime type of the pod's handler (`io.containerd.runc.v2`).
    pub runtime_type: String,
    pub files: SandboxFiles,
    /// The pause image's id.
    pub image_id: String,
}

impl SandboxRecord {
    /// The record as stored in the object's extension.
    pub(crate) fn extension(&self) -> Result<(&'static str, &'static str, Vec<u8>)> {
        let json = serde_json::to_vec(self)
            .map_err(|e| Error::Internal(format!("encoding sandbox record {}: {e}", self.id)))?;
        Ok((SANDBOX_EXTENSION, SANDBOX_TYPE_URL, json))
    }

    /// Decodes a stored record.
    pub(crate) fn decode(id: &str, json: &[u8]) -> Result<SandboxRecord> {
        serde_json::from_slice(json)
            .map_err(|e| Error::Internal(format!("sandbox {id}: unreadable record: {e}")))
    }
}

/// Loads a sandbox's record from containerd. Unknown id, or an object that is not a
/// sandbox: `Error::NotFound`.
pub(crate) async fn load_sandbox(inner: &Inner, id: &PodSandboxId) -> Result<SandboxRecord> {
    let not_found = || Error::NotFound(format!("pod sandbox {id} not found"));
    let (labels, json) = match object::load(inner, id.as_str(), SANDBOX_EXTENSION).await {
        Ok(found) => found,
        Err(e) if e.is_not_found() => return Err(not_found()),
        Err(e) => return Err(e),
    };
    if labels.get(KIND_LABEL).map(String::as_str) != Some(KIND_SANDBOX) || json.is_empty() {
        return Err(not_found());
    }
    SandboxRecord::decode(id.as_str(), &json)
}

/// The pause task's pid while it runs; `None` when the sandbox has no running pause.
/// Unknown sandbox: `Error::NotFound`.
pub(crate) async fn sandbox_pid(inner: &Inner, id: &PodSandboxId) -> Result<Option<u32>> {
    load_sandbox(inner, id).await?;
    let state = task::state(inner, id.as_str()).await?;
    Ok(state
        .filter(|s| s.status == task::TaskStatus::Running && s.pid != 0)
        .map(|s| s.pid))
}

/// Ids of the containers of pod `id`.
pub(crate) async fn pod_containers(inner: &Inner, id: &PodSandboxId) -> Result<Vec<String>> {
    object::list(
        inner,
        &[
            (KIND_LABEL, KIND_CONTAINER),
            (SANDBOX_ID_LABEL, id.as_str()),
        ],
    )
    .await
}
