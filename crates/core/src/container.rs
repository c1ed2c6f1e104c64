//! A container's configuration in crimux's own terms (from the CRI `ContainerConfig`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::sandbox::NamespaceOptions;

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerMetadata {
    pub name: String,
    pub attempt: u32,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Propagation {
    #[default]
    Private,
    HostToContainer,
    Bidirectional,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mount {
    pub container_path: String,
    pub host_path: String,
    pub readonly: bool,
    pub recursive_readonly: bool,
    pub selinux_relabel: bool,
    pub propagation: Propagation,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Device {
    pub container_path: String,
    pub host_path: String,
    /// cgroup permissions: any of `r`, `w`, `m`.
    pub permissions: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HugepageLimit {
    /// `2MB`, `1GB`, ... as the CRI spells it.
    pub page_size: String,
    pub limit: u64,
}

/// Linux resources; zero means unset, as in the CRI.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resources {
    pub cpu_period: i64,
    pub cpu_quota: i64,
    pub cpu_shares: i64,
    pub memory_limit_in_bytes: i64,
    pub memory_swap_limit_in_bytes: i64,
    pub oom_score_adj: i64,
    pub cpuset_cpus: String,
    pub cpuset_mems: String,
    pub hugepage_limits: Vec<HugepageLimit>,
    pub unified: BTreeMap<String, String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SelinuxOption {
    pub user: String,
    pub role: String,
    pub r#type: String,
    pub level: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProfileType {
    #[default]
    RuntimeDefault,
    Unconfined,
    Localhost,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecurityProfile {
    pub profile_type: ProfileType,
    /// For `Localhost`: the profile's path on the node.
    pub localhost_ref: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Capabilities {
    /// Names as the CRI gives them (`NET_ADMIN` or `CAP_NET_ADMIN`; `ALL`).
    pub add: Vec<String>,
    pub drop: Vec<String>,
    pub add_ambient: Vec<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerSecurity {
    pub capabilities: Option<Capabilities>,
    pub privileged: bool,
    pub namespace_options: NamespaceOptions,
    pub selinux: Option<SelinuxOption>,
    pub run_as_user: Option<i64>,
    pub run_as_group: Option<i64>,
    pub run_as_username: String,
    pub readonly_rootfs: bool,
    pub supplemental_groups: Vec<i64>,
    pub no_new_privs: bool,
    pub masked_paths: Vec<String>,
    pub readonly_paths: Vec<String>,
    pub seccomp: Option<SecurityProfile>,
    pub apparmor: Option<SecurityProfile>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinuxContainerConfig {
    pub resources: Option<Resources>,
    pub security: Option<ContainerSecurity>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WindowsResources {
    pub cpu_shares: i64,
    pub cpu_count: i64,
    pub cpu_maximum: i64,
    pub memory_limit_in_bytes: i64,
    pub rootfs_size_in_bytes: i64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WindowsContainerConfig {
    pub resources: Option<WindowsResources>,
    pub run_as_username: String,
    pub credential_spec: String,
    pub host_process: bool,
}

/// Everything the CRI says about a container.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerConfig {
    pub metadata: ContainerMetadata,
    /// The image as the client named it.
    pub image: String,
    pub command: Vec<String>,
    pub args: Vec<String>,
    pub working_dir: String,
    /// In order; later entries override earlier ones with the same key.
    pub envs: Vec<(String, String)>,
    pub mounts: Vec<Mount>,
    pub devices: Vec<Device>,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    /// Relative to the sandbox's `log_directory`.
    pub log_path: String,
    pub stdin: bool,
    pub stdin_once: bool,
    pub tty: bool,
    pub linux: Option<LinuxContainerConfig>,
    pub windows: Option<WindowsContainerConfig>,
}
