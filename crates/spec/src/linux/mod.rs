//! Linux runtime specs: the pod sandbox's (the pause process) and its containers'.

mod assemble;
mod container;
mod mounts;
mod namespaces;
mod process;
mod resources;
mod sandbox;

use crimux_core::container::ContainerConfig;
use crimux_core::sandbox::SandboxConfig;

use crate::{HostInfo, ImageConfig};

pub use container::container_spec;
pub use namespaces::validate_sysctls;
pub use process::{merge_env, DEFAULT_PATH_ENV};
pub use sandbox::sandbox_spec;

/// The AppArmor profile crimux's RuntimeDefault names; whoever runs the spec must have
/// loaded it.
pub const APPARMOR_DEFAULT_PROFILE: &str = "crimux-default";
/// The OCI runtime spec version the specs claim.
pub const OCI_VERSION: &str = "1.1.0";
/// The pause's `oom_score_adj`: the last process the OOM killer picks, after the kubelet
/// (-999).
pub const SANDBOX_OOM_SCORE_ADJ: i64 = -998;
/// The pause's CPU shares: the minimum, since it only sleeps.
pub const SANDBOX_CPU_SHARES: u64 = 2;

/// Host files a pod's containers bind-mount, prepared by the caller (paths on the host).
#[derive(Clone, Copy, Debug, Default)]
pub struct PodFiles<'a> {
    pub hostname: Option<&'a str>,
    pub hosts: Option<&'a str>,
    pub resolv_conf: Option<&'a str>,
    /// The pod's `/dev/shm` (a tmpfs the caller mounted); `None` leaves the runtime's own
    /// tmpfs. With host IPC the host's `/dev/shm` is used instead.
    pub shm: Option<&'a str>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DeviceKind {
    #[default]
    Char,
    Block,
}

/// A device node the caller found on the host (by stat-ing a CRI `Device`'s `host_path`,
/// or listing `/dev` for privileged containers).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HostDevice {
    pub container_path: String,
    pub kind: DeviceKind,
    pub major: i64,
    pub minor: i64,
    pub file_mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    /// cgroup access: any of `r`, `w`, `m`; empty means `rwm`.
    pub permissions: String,
}

/// Everything the pause's spec is built from.
#[derive(Clone, Copy, Debug)]
pub struct SandboxSpecInput<'a> {
    pub id: &'a str,
    pub config: &'a SandboxConfig,
    /// The pause image's config and name.
    pub image: &'a ImageConfig,
    pub image_name: &'a str,
    /// The pod's network namespace (a bind-mounted nsfs file). `None` with a pod network
    /// lets the runtime create a fresh one; host network ignores it.
    pub netns_path: Option<&'a str>,
    /// `resolv_conf` and `shm` are mounted into the pause.
    pub files: PodFiles<'a>,
    pub host: &'a HostInfo,
    /// The pause image's `/etc/passwd` and `/etc/group`, if it has them.
    pub passwd: Option<&'a str>,
    pub group: Option<&'a str>,
    /// The contents of the sandbox's Localhost seccomp profile, read by the caller.
    pub seccomp_localhost: Option<&'a str>,
}

/// Everything a container's spec is built from.
#[derive(Clone, Copy, Debug)]
pub struct ContainerSpecInput<'a> {
    pub id: &'a str,
    pub sandbox_id: &'a str,
    pub config: &'a ContainerConfig,
    pub sandbox: &'a SandboxConfig,
    /// The pause's pid: the container joins `/proc/<pid>/ns/{net,ipc,uts,pid}` as its
    /// namespace options say.
    pub sandbox_pid: u32,
    /// The pid of the `target_id` container, for `NamespaceMode::Target` pid namespaces.
    pub target_pid: Option<u32>,
    pub image: &'a ImageConfig,
    /// The image as resolved (for the `image-name` annotation).
    pub image_name: &'a str,
    /// The pod's network namespace; `None` joins the pause's via `/proc`.
    pub netns_path: Option<&'a str>,
    pub files: PodFiles<'a>,
    /// The CRI `devices`, resolved by the caller, in order.
    pub devices: &'a [HostDevice],
    /// All host devices, added for privileged containers.
    pub host_devices: &'a [HostDevice],
    pub host: &'a HostInfo,
    pub passwd: Option<&'a str>,
    pub group: Option<&'a str>,
    pub seccomp_localhost: Option<&'a str>,
}

/// The cgroups path of a pod's sandbox or container: systemd's `slice:prefix:id` when the
/// parent is a systemd slice, else `parent/id` (containerd's rule, with crimux's prefix).
pub fn cgroups_path(parent: &str, id: &str) -> Option<String> {
    if parent.is_empty() {
        return None;
    }
    let base = parent
        .trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or(parent);
    if base.ends_with(".slice") {
        Some(format!("{base}:crimux:{id}"))
    } else {
        Some(format!("{}/{id}", parent.trim_end_matches('/')))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cgroups_paths() {
        assert_eq!(cgroups_path("", "x"), None);
        assert_eq!(
            cgroups_path("/kubepods/burstable/podU", "x").as_deref(),
            Some("/kubepods/burstable/podU/x")
        );
        assert_eq!(
            cgroups_path("/kubepods.slice/kubepods-pod1.slice", "x").as_deref(),
            Some("kubepods-pod1.slice:crimux:x")
        );
    }
}
