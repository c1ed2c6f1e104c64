//! The durable record of one container, stored as JSON in an extension of its containerd
//! object (`crimux.io/container`), so a restarted crimux knows every container again: its
//! CRI config, pod, image, log file, user, and what happened to it (started, OOM-killed,
//! failed to start).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crimux_core::container::{ContainerConfig, Resources, WindowsResources};
use crimux_core::status::ResolvedUser;
use crimux_core::{ContainerId, Error, PodSandboxId, Result};
use serde::{Deserialize, Serialize};

use crate::backend::Inner;
use crate::runtime::object;
use crate::sandbox::record::{KIND_CONTAINER, KIND_LABEL, SANDBOX_ID_LABEL};

/// containerd container extension key holding a [`ContainerRecord`].
pub(crate) const CONTAINER_EXTENSION: &str = "crimux.io/container";
/// `type_url` of that extension's `Any`.
pub(crate) const CONTAINER_TYPE_URL: &str = "crimux.io/ContainerRecord";

/// Why a container that ran no task counts as exited: its start failed.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct StartFailure {
    /// Unix nanoseconds.
    pub at: i64,
    pub message: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ContainerRecord {
    pub id: ContainerId,
    pub sandbox_id: PodSandboxId,
    pub config: ContainerConfig,
    /// Unix nanoseconds.
    pub created_at: i64,
    /// Unix nanoseconds; 0 until StartContainer succeeded.
    #[serde(default)]
    pub started_at: i64,
    /// The image as resolved (normalised name) and its id.
    pub image_name: String,
    pub image_id: String,
    /// Absolute path of the CRI log file; empty when the container has none.
    #[serde(default)]
    pub log_path: String,
    pub user: ResolvedUser,
    /// The image's `StopSignal`, verbatim (`SIGQUIT`, `3`, ...); `None`: SIGTERM.
    #[serde(default)]
    pub stop_signal: Option<String>,
    /// Set by the event monitor when the kernel OOM-killed a process of the container.
    #[serde(default)]
    pub oom_killed: bool,
    #[serde(default)]
    pub start_failure: Option<StartFailure>,
    /// Current resources (as created, then as updated).
    #[serde(default)]
    pub resources: Option<Resources>,
    #[serde(default)]
    pub windows_resources: Option<WindowsResources>,
    /// The containerd runtime type the container runs with.
    #[serde(default)]
    pub runtime_type: String,
}

impl ContainerRecord {
    /// The record as stored in the object's extension.
    pub(crate) fn extension(&self) -> Result<(&'static str, &'static str, Vec<u8>)> {
        let json = serde_json::to_vec(self)
            .map_err(|e| Error::Internal(format!("encoding container record {}: {e}", self.id)))?;
        Ok((CONTAINER_EXTENSION, CONTAINER_TYPE_URL, json))
    }

    pub(crate) fn decode(id: &str, json: &[u8]) -> Result<ContainerRecord> {
        serde_json::from_slice(json)
            .map_err(|e| Error::Internal(format!("container {id}: unreadable record: {e}")))
    }

    /// The labels of the containerd object.
    pub(crate) fn labels(&self) -> HashMap<String, String> {
        HashMap::from([
            (KIND_LABEL.to_string(), KIND_CONTAINER.to_string()),
            (
                SANDBOX_ID_LABEL.to_string(),
                self.sandbox_id.as_str().to_string(),
            ),
        ])
    }
}

/// Loads a container's record. Unknown id, or an object that is not a crimux container:
/// `Error::NotFound`.
pub(crate) async fn record(inner: &Inner, id: &ContainerId) -> Result<ContainerRecord> {
    let not_found = || Error::NotFound(format!("container {id} not found"));
    let (labels, json) = match object::load(inner, id.as_str(), CONTAINER_EXTENSION).await {
        Ok(found) => found,
        Err(e) if e.is_not_found() => return Err(not_found()),
        Err(e) => return Err(e),
    };
    if labels.get(KIND_LABEL).map(String::as_str) != Some(KIND_CONTAINER) {
        return Err(not_found());
    }
    ContainerRecord::decode(id.as_str(), &json)
}

/// Stores a changed record (the object must exist).
pub(crate) async fn save(inner: &Inner, record: &ContainerRecord) -> Result<()> {
    object::update(inner, record.id.as_str(), record.extension()?, None).await
}

/// The container's own directory on the host: log plugin pidfile, stdin FIFO, exec FIFOs.
pub(crate) fn container_dir(state_dir: &Path, id: &str) -> PathBuf {
    state_dir.join("containers").join(id)
}

/// The log plugin's pidfile (SIGUSR1 to its pid reopens the log file).
pub(crate) fn log_pidfile(state_dir: &Path, id: &str) -> PathBuf {
    container_dir(state_dir, id).join("log.pid")
}

/// The longest unix socket path the kernel takes (`sun_path` is 108 bytes with its NUL).
const MAX_SOCKET_PATH: usize = 107;

/// The log plugin's attach socket (raw output frames for CRI Attach): `containers/<id>/
/// attach.sock` when that fits in a socket address, else the shorter `attach/<id>`; `None`
/// when even that is too long (the container then runs without an attach socket).
pub(crate) fn attach_socket(state_dir: &Path, id: &str) -> Option<PathBuf> {
    // Container ids are 64 random hex characters: the first 24 (96 bits) are as unique as
    // the whole id for one node, and keep deep state directories within a socket address.
    let short = id.get(..24).unwrap_or(id);
    [
        container_dir(state_dir, id).join("attach.sock"),
        state_dir.join("attach").join(id),
        state_dir.join("a").join(short),
    ]
    .into_iter()
    .find(|p| p.as_os_str().len() <= MAX_SOCKET_PATH)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attach_sockets_fit_a_socket_address() {
        let id = "a".repeat(64);
        let short = attach_socket(Path::new("/s"), &id).expect("fits");
        assert!(short.ends_with("attach.sock"));
        let long = attach_socket(Path::new("/var/lib/crimux/backends/default"), &id).expect("fits");
        assert_eq!(
            long,
            Path::new("/var/lib/crimux/backends/default/attach").join(&id)
        );
        let deep = format!("/tmp/{}", "d".repeat(60));
        let short = attach_socket(Path::new(&deep), &id).expect("fits");
        assert_eq!(short, Path::new(&deep).join("a").join(&id[..24]));
        assert_eq!(attach_socket(Path::new(&"/x".repeat(60)), &id), None);
    }

    #[test]
    fn old_records_without_new_fields_decode() {
        let json = serde_json::json!({
            "id": "c", "sandbox_id": "s", "config": ContainerConfig::default(),
            "created_at": 1, "image_name": "i", "image_id": "sha256:x",
            "user": ResolvedUser::default(),
        });
        let r = ContainerRecord::decode("c", &serde_json::to_vec(&json).unwrap()).expect("decode");
        assert_eq!(r.started_at, 0);
        assert!(!r.oom_killed && r.start_failure.is_none());
    }
}
