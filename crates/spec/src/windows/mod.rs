//! Windows runtime specs (Windows containers on Windows, run by hcsshim's
//! `io.containerd.runhcs.v1` shim): the pod sandbox's (the pause) and its containers',
//! built as containerd's CRI plugin builds them on Windows
//! (`internal/cri/server/container_create.go` `buildWindowsSpec`,
//! `podsandbox/sandbox_run_windows.go`, `internal/cri/opts/spec_windows_opts.go`).
//!
//! The shape differs from Linux: no `root` (hcsshim fills it from the layers), no `linux`
//! section, and a `windows` section with the layer folders, resources, the pod's HCN
//! network namespace, a gMSA credential spec and, for Hyper-V isolation, `hyperv`. Encode
//! specs with [`spec_to_json`] (hcsshim wants the credential spec as a string). Everything
//! here is pure; the
//! caller resolves the layer folders (from the snapshot's mounts), the namespace id (from
//! HCN) and the image config.

mod assemble;
mod container;
mod credential;
pub mod paths;
mod sandbox;

use crimux_core::container::ContainerConfig;
use crimux_core::sandbox::{NamespaceMode, SandboxConfig};

use crate::ImageConfig;

pub use container::container_spec;
pub use credential::{spec_from_json, spec_to_json};
pub use paths::join_log_path;
pub use sandbox::sandbox_spec;

/// The RuntimeClass handler for process-isolated Windows pods.
pub const HANDLER_PROCESS: &str = "runhcs-wcow-process";
/// The RuntimeClass handler for Hyper-V isolated Windows pods (one utility VM per pod).
pub const HANDLER_HYPERVISOR: &str = "runhcs-wcow-hypervisor";
/// The containerd runtime type that runs Windows containers (hcsshim).
pub const RUNTIME_TYPE: &str = "io.containerd.runhcs.v1";
/// The pause's CPU shares (containerd's `DefaultSandboxCPUshares`).
pub const SANDBOX_CPU_SHARES: u16 = 2;
/// The working directory of a process when neither the CRI nor the image names one.
pub const DEFAULT_CWD: &str = r"C:\";
/// The working directory of a HostProcess container without one: where hcsshim mounts
/// the container's image on the host.
pub const HOST_PROCESS_CWD: &str = r"C:\hpc";
/// The largest CPU shares and CPU maximum Windows accepts.
pub const CPU_LIMIT_MAX: i64 = 10_000;

/// Annotations hcsshim reads. The first is set on every spec (containerd does the same);
/// the others are passed through from the pod's annotations as described on
/// [`POD_ANNOTATION_PREFIXES`].
pub mod annotations {
    /// `"true"` on every spec of a HostProcess pod, `"false"` otherwise.
    pub const HOST_PROCESS: &str = "microsoft.com/hostprocess-container";
    /// HostProcess containers run as the user containerd runs as, not as `run_as_username`.
    pub const HOST_PROCESS_INHERIT_USER: &str = "microsoft.com/hostprocess-inherit-user";
    /// Where on the host a HostProcess container's image is mounted.
    pub const HOST_PROCESS_ROOTFS_LOCATION: &str = "microsoft.com/hostprocess-rootfs-location";
    /// hcsshim's settings of the pod's utility VM (`...computetopology.processor.count`,
    /// `...computetopology.memory.sizeinmb`, ...): Hyper-V isolation only.
    pub const VIRTUAL_MACHINE_PREFIX: &str = "io.microsoft.virtualmachine.";
    /// hcsshim's per-container overrides (`io.microsoft.container.processor.count`, ...).
    pub const CONTAINER_PREFIX: &str = "io.microsoft.container.";
}

/// The pod annotations copied onto the specs: containerd copies the annotations its
/// runtime config's `pod_annotations` lists; crimux has no such list and copies hcsshim's
/// own keys, which is what Windows node configurations put in that list.
/// `(prefix or key, only for Hyper-V isolation, only for HostProcess pods)`.
pub const POD_ANNOTATION_PREFIXES: &[(&str, bool, bool)] = &[
    (annotations::VIRTUAL_MACHINE_PREFIX, true, false),
    (annotations::CONTAINER_PREFIX, false, false),
    (annotations::HOST_PROCESS_INHERIT_USER, false, true),
    (annotations::HOST_PROCESS_ROOTFS_LOCATION, false, true),
];

/// How a Windows pod is isolated from the host.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Isolation {
    /// Process isolation: the containers share the host's kernel (`runhcs-wcow-process`).
    #[default]
    Process,
    /// Hyper-V isolation: the pod runs in its own utility VM (`runhcs-wcow-hypervisor`).
    HyperV,
}

impl Isolation {
    /// The isolation a RuntimeClass handler's name asks for: `runhcs-wcow-hypervisor` and
    /// its build-pinned variants (`runhcs-wcow-hypervisor-19041`, as hcsshim's tests name
    /// them) are Hyper-V; every other handler is process isolation (unless its runhcs
    /// options say `SandboxIsolation = HYPERVISOR`, which the caller decides).
    pub fn for_handler(handler: &str) -> Isolation {
        if handler.starts_with(HANDLER_HYPERVISOR) {
            Isolation::HyperV
        } else {
            Isolation::Process
        }
    }
}

/// Whether the pod runs HostProcess containers (which get the host's network).
pub fn host_process(sandbox: &SandboxConfig) -> bool {
    sandbox.windows.as_ref().is_some_and(|w| w.host_process)
}

/// Whether the pod uses the host's network: HostProcess pods always do, and other pods
/// when their namespace options say so.
pub fn host_network(sandbox: &SandboxConfig) -> bool {
    sandbox
        .windows
        .as_ref()
        .is_some_and(|w| w.host_process || w.network == NamespaceMode::Node)
}

/// Everything the pause's spec is built from.
#[derive(Clone, Copy, Debug)]
pub struct WindowsSandboxSpecInput<'a> {
    pub id: &'a str,
    pub config: &'a SandboxConfig,
    /// The pause image's config and name.
    pub image: &'a ImageConfig,
    pub image_name: &'a str,
    /// The pod's HCN namespace id (a GUID); `None` with the host's network.
    pub network_namespace: Option<&'a str>,
    /// The image's layer folders, top-most first, then the container's scratch layer;
    /// empty to let the shim take them from the task's rootfs mounts.
    pub layer_folders: &'a [String],
    pub isolation: Isolation,
}

/// Everything a container's spec is built from.
#[derive(Clone, Copy, Debug)]
pub struct WindowsContainerSpecInput<'a> {
    pub id: &'a str,
    pub sandbox_id: &'a str,
    pub config: &'a ContainerConfig,
    pub sandbox: &'a SandboxConfig,
    pub image: &'a ImageConfig,
    /// The image as resolved (for the `image-name` annotation).
    pub image_name: &'a str,
    /// The pod's HCN namespace id; `None` with the host's network.
    pub network_namespace: Option<&'a str>,
    pub layer_folders: &'a [String],
    pub isolation: Isolation,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crimux_core::sandbox::WindowsSandboxConfig;

    #[test]
    fn handlers_choose_isolation() {
        assert_eq!(Isolation::for_handler(""), Isolation::Process);
        assert_eq!(Isolation::for_handler(HANDLER_PROCESS), Isolation::Process);
        assert_eq!(
            Isolation::for_handler(HANDLER_HYPERVISOR),
            Isolation::HyperV
        );
        assert_eq!(
            Isolation::for_handler("runhcs-wcow-hypervisor-19041"),
            Isolation::HyperV
        );
    }

    #[test]
    fn host_process_pods_use_the_host_network() {
        let mut sb = SandboxConfig::default();
        assert!(!host_network(&sb));
        sb.windows = Some(WindowsSandboxConfig {
            host_process: true,
            ..Default::default()
        });
        assert!(host_network(&sb) && host_process(&sb));
        sb.windows = Some(WindowsSandboxConfig {
            network: NamespaceMode::Node,
            ..Default::default()
        });
        assert!(host_network(&sb) && !host_process(&sb));
    }
}
