//! The durable record of one pod sandbox. It is stored as JSON in an extension of the pause
//! container's containerd object (`crimux.io/sandbox`), so a restarted crimux finds every
//! sandbox again by listing containerd.

use std::path::PathBuf;

use crimux_core::sandbox::SandboxConfig;
use crimux_core::{PodSandboxId, Result};
use serde::{Deserialize, Serialize};

use crate::backend::Inner;

/// containerd container extension key holding a [`SandboxRecord`].
pub(crate) const SANDBOX_EXTENSION: &str = "crimux.io/sandbox";
/// `type_url` of that extension's `Any`.
pub(crate) const SANDBOX_TYPE_URL: &str = "crimux.io/SandboxRecord";

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

/// Loads a sandbox's record from containerd. Unknown id: `Error::NotFound`.
pub(crate) async fn load_sandbox(inner: &Inner, id: &PodSandboxId) -> Result<SandboxRecord> {
    let _ = (inner, id);
    Err(crimux_core::Error::Unimplemented(
        "sandbox records are being built".into(),
    ))
}
