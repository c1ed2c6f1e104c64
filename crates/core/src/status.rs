//! What backends report about pod sandboxes and containers.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::container::{ContainerMetadata, Mount, Resources, WindowsResources};
use crate::ids::{ContainerId, PodSandboxId};
use crate::sandbox::{NamespaceOptions, SandboxMetadata};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SandboxState {
    Ready,
    NotReady,
}

/// A sandbox as `ListPodSandbox` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SandboxSummary {
    pub id: PodSandboxId,
    pub metadata: SandboxMetadata,
    pub state: SandboxState,
    /// Unix nanoseconds.
    pub created_at: i64,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub runtime_handler: String,
}

/// A sandbox as `PodSandboxStatus` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SandboxStatus {
    pub summary: SandboxSummary,
    /// The pod's IPs, primary first; empty for host network.
    pub ips: Vec<String>,
    pub namespace_options: NamespaceOptions,
    /// Verbose details (`info` in the CRI response), JSON values by key.
    pub info: BTreeMap<String, String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ContainerState {
    Created,
    Running,
    Exited,
    Unknown,
}

/// A container as `ListContainers` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerSummary {
    pub id: ContainerId,
    pub sandbox_id: PodSandboxId,
    pub metadata: ContainerMetadata,
    /// The image as the client named it.
    pub image: String,
    /// The image id (`sha256:<config digest>`).
    pub image_ref: String,
    pub state: ContainerState,
    pub created_at: i64,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
}

/// A container as `ContainerStatus` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerStatus {
    pub summary: ContainerSummary,
    pub started_at: i64,
    pub finished_at: i64,
    pub exit_code: i32,
    /// `Completed`, `Error`, `OOMKilled`, or empty while not exited.
    pub reason: String,
    pub message: String,
    pub mounts: Vec<Mount>,
    /// Absolute path of the CRI log file.
    pub log_path: String,
    pub resources: Option<Resources>,
    pub windows_resources: Option<WindowsResources>,
    pub user: Option<ResolvedUser>,
    pub info: BTreeMap<String, String>,
}

/// The user a container's process runs as, after resolution.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResolvedUser {
    pub uid: i64,
    pub gid: i64,
    pub supplemental_groups: Vec<i64>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecSyncOutput {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub exit_code: i32,
}

/// Resource usage of one container.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerStats {
    pub id: ContainerId,
    pub sandbox_id: PodSandboxId,
    pub metadata: ContainerMetadata,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    /// Unix nanoseconds when measured.
    pub timestamp: i64,
    /// Cumulative CPU time in nanoseconds.
    pub cpu_usage_core_nanos: u64,
    pub memory_working_set_bytes: u64,
    pub memory_usage_bytes: u64,
    /// Bytes used by the writable layer.
    pub writable_layer_bytes: u64,
    pub writable_layer_inodes: u64,
    /// Where the writable layer lives (the snapshotter's root).
    pub writable_layer_mountpoint: String,
}

/// Resource usage of one pod.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SandboxStats {
    pub id: PodSandboxId,
    pub metadata: SandboxMetadata,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub timestamp: i64,
    pub cpu_usage_core_nanos: u64,
    pub memory_working_set_bytes: u64,
    pub containers: Vec<ContainerStats>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ContainerEventKind {
    Created,
    Started,
    Stopped,
    Deleted,
}

/// A container lifecycle event, for kubelet's evented PLEG.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerEvent {
    pub container_id: ContainerId,
    pub kind: ContainerEventKind,
    /// Unix nanoseconds.
    pub created_at: i64,
    pub sandbox: Option<SandboxStatus>,
    /// The statuses of the pod's containers after the event.
    pub containers: Vec<ContainerStatus>,
}

/// Whether a backend can run pods right now.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackendStatus {
    pub runtime_ready: bool,
    pub runtime_reason: String,
    pub network_ready: bool,
    /// Why the network is not ready (`NetworkPluginNotReady`), and the message.
    pub network_reason: String,
    pub network_message: String,
}
