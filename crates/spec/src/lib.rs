//! OCI runtime specs for crimux's pod sandboxes and containers.
//!
//! crimux does what containerd's CRI plugin does, so the specs built here follow its
//! behaviour (`internal/cri/server/container_create*.go`, `podsandbox/sandbox_run_linux.go`,
//! `pkg/oci/spec_opts.go`), written anew from the CRI's own terms in `crimux_core`.
//!
//! Architecture Invariant: everything here is a pure function of its inputs. Reading
//! `/etc/passwd` out of a rootfs, stat-ing devices, probing the host (cgroup version,
//! AppArmor, hugepage sizes, the current `oom_score_adj`) and reading a Localhost seccomp
//! profile are the caller's job; their results come in as [`HostInfo`], file contents and
//! resolved [`linux::HostDevice`]s. So the crate builds (and its specs can be built) on any
//! host, Windows included.

pub mod annotations;
pub mod caps;
mod image;
pub mod linux;
pub mod seccomp;
pub mod user;
pub mod windows;

pub use image::ImageConfig;
pub use linux::{container_spec, sandbox_spec, ContainerSpecInput, SandboxSpecInput};
pub use windows::{Isolation, WindowsContainerSpecInput, WindowsSandboxSpecInput};

/// What the spec builders need to know about the Linux host that will run the spec.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HostInfo {
    /// The host's architecture, Go-style (`amd64`, `arm64`, ...): selects the seccomp
    /// architectures of the default profile.
    pub arch: String,
    /// The node's hostname: `HOSTNAME` for containers of pods that set none.
    pub hostname: String,
    pub has_apparmor: bool,
    pub has_seccomp: bool,
    pub cgroup_v2: bool,
    /// Whether the memory cgroup can limit swap (`memory.memsw.*` on v1, `memory.swap.max`
    /// on v2); without it no swap limit is written.
    pub has_swap_controller: bool,
    /// The current process's `oom_score_adj`. A lower requested value is raised to it,
    /// since the kernel refuses to lower it without CAP_SYS_RESOURCE
    /// (containerd's `restrict_oom_score_adj`).
    pub min_oom_score_adj: i64,
    /// Hugepage sizes the host supports, spelled as the CRI spells them (`2MB`, `1GB`).
    pub hugepage_sizes: Vec<String>,
    /// The node's capability bounding set (the `CapBnd` mask of `/proc/self/status`); `None`
    /// when unknown (a remote backend). Privileged containers and `add: [ALL]` get the known
    /// capabilities within it, since runc cannot grant more than it holds.
    pub capability_bounding: Option<u64>,
}

/// Turns an `oci_spec` builder error into crimux's: it means a bug here, not bad input.
pub(crate) fn oci_err(e: oci_spec::OciSpecError) -> crimux_core::Error {
    crimux_core::Error::Internal(format!("building OCI spec: {e}"))
}
