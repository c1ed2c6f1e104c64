//! Pod networking on Linux the way containerd's CRI does it: a network namespace pinned to a
//! file ([`NetNs`]), attached to the node's CNI network by running the CNI plugins of the
//! first valid config in the config directory ([`Cni`]).
//!
//! Architecture Invariant: this crate knows nothing of CRI protos or containerd; it takes a
//! sandbox id, its metadata and port mappings and returns addresses.
//!
//! On Windows the namespace is an HCN namespace named by its GUID ([`netns_windows`]) and
//! the plugins are the Windows CNI plugins (`win-bridge.exe`, `win-overlay.exe`, `nat.exe`),
//! run the same way: `CNI_NETNS` is the namespace GUID, `CNI_CONTAINERID` the sandbox id.
//! Which kind a pod gets follows its backend's OS ([`NetnsKind`]); config parsing and the
//! pure Windows parts work everywhere.

pub mod config;
pub mod netns;
pub mod netns_windows;
pub mod result;

#[cfg(any(target_os = "linux", windows))]
mod attach;
#[cfg(any(target_os = "linux", windows))]
mod cache;
#[cfg(any(target_os = "linux", windows))]
mod exec;
#[cfg(windows)]
mod hcn;
#[cfg(target_os = "linux")]
mod netns_linux;

use std::path::PathBuf;
use std::time::Duration;

use crimux_core::sandbox::{DnsConfig, PortMapping, SandboxMetadata};
use crimux_core::{PodSandboxId, Result};

pub use config::{ConfigError, NetworkConfigList};
pub use netns::NetNs;
pub use netns_windows::{create_pod_netns, NetnsKind};
pub use result::{AttachResult, Interface, IpConfig};

/// The pod-side interface name CRI runtimes use.
pub const DEFAULT_IFNAME: &str = "eth0";

/// How long one plugin invocation may take before it is killed.
pub const DEFAULT_PLUGIN_TIMEOUT: Duration = Duration::from_secs(120);

/// Attaching (or detaching) one pod sandbox.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttachRequest {
    /// `CNI_CONTAINERID`; also names the cache entry.
    pub container_id: PodSandboxId,
    /// The pinned namespace ([`NetNs::path`]).
    pub netns: PathBuf,
    /// Pod-side interface, [`DEFAULT_IFNAME`] unless told otherwise.
    pub ifname: String,
    /// Namespace, name and uid become `K8S_POD_*` in `CNI_ARGS`.
    pub pod: SandboxMetadata,
    /// Passed as the `portMappings` capability to plugins that declare it.
    pub port_mappings: Vec<PortMapping>,
    /// Passed as the `dns` capability to plugins that declare it (the Windows plugins
    /// configure the endpoint's DNS from it); `None` passes nothing.
    pub dns: Option<DnsConfig>,
}

impl AttachRequest {
    pub fn new(container_id: PodSandboxId, netns: PathBuf, pod: SandboxMetadata) -> Self {
        AttachRequest {
            container_id,
            netns,
            ifname: DEFAULT_IFNAME.to_string(),
            pod,
            port_mappings: Vec::new(),
            dns: None,
        }
    }
}

/// The node's CNI setup: where configs, plugin binaries and the attachment cache live.
///
/// Callers serialize `setup`/`teardown` per sandbox (the RuntimeService holds the pod's
/// lock); different sandboxes may run concurrently.
#[derive(Clone, Debug)]
pub struct Cni {
    conf_dir: PathBuf,
    bin_dirs: Vec<PathBuf>,
    #[cfg_attr(not(any(target_os = "linux", windows)), allow(dead_code))]
    cache_dir: PathBuf,
    timeout: Duration,
}

impl Cni {
    /// `conf_dir` e.g. `/etc/cni/net.d`, `bin_dirs` e.g. `[/opt/cni/bin]`, `cache_dir` a
    /// crimux state directory (e.g. `/var/lib/crimux/cni`).
    pub fn new(
        conf_dir: impl Into<PathBuf>,
        bin_dirs: Vec<PathBuf>,
        cache_dir: impl Into<PathBuf>,
    ) -> Self {
        Cni {
            conf_dir: conf_dir.into(),
            bin_dirs,
            cache_dir: cache_dir.into(),
            timeout: DEFAULT_PLUGIN_TIMEOUT,
        }
    }

    /// Overrides [`DEFAULT_PLUGIN_TIMEOUT`].
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The network config that `setup` would use now.
    pub fn load_config(&self) -> std::result::Result<NetworkConfigList, ConfigError> {
        config::load_dir(&self.conf_dir)
    }

    /// Whether pods can be attached: a valid config exists and every plugin it names is in
    /// a bin dir. The error is the `NetworkReady=false` message.
    pub fn status(&self) -> std::result::Result<NetworkConfigList, ConfigError> {
        let list = self.load_config()?;
        for plugin in list.plugin_types() {
            let names = netns_windows::plugin_file_names(plugin, cfg!(windows));
            if !self
                .bin_dirs
                .iter()
                .any(|d| names.iter().any(|n| d.join(n).is_file()))
            {
                return Err(ConfigError::MissingPlugin {
                    plugin: plugin.to_string(),
                    searched: self.bin_dirs.clone(),
                });
            }
        }
        Ok(list)
    }

    /// CNI ADD through every plugin of the current config. On failure the plugins are
    /// DEL'd again, so a failed setup leaves nothing behind.
    pub async fn setup(&self, req: &AttachRequest) -> Result<AttachResult> {
        #[cfg(any(target_os = "linux", windows))]
        return self.runner().add(req).await;
        #[cfg(not(any(target_os = "linux", windows)))]
        return Err(unsupported(req));
    }

    /// CNI DEL in reverse order with the config and result cached by `setup`. Idempotent:
    /// succeeds when the pod is already detached or its namespace is gone.
    pub async fn teardown(&self, req: &AttachRequest) -> Result<()> {
        #[cfg(any(target_os = "linux", windows))]
        return self.runner().teardown(req).await;
        #[cfg(not(any(target_os = "linux", windows)))]
        return Err(unsupported(req));
    }

    /// CNI CHECK (spec 0.4.0+) of an attached pod; `Ok` for older config versions.
    pub async fn check(&self, req: &AttachRequest) -> Result<()> {
        #[cfg(any(target_os = "linux", windows))]
        return self.runner().check(req).await;
        #[cfg(not(any(target_os = "linux", windows)))]
        return Err(unsupported(req));
    }

    #[cfg(any(target_os = "linux", windows))]
    fn runner(&self) -> attach::Runner<'_> {
        attach::Runner {
            conf_dir: &self.conf_dir,
            bin_dirs: &self.bin_dirs,
            cache_dir: &self.cache_dir,
            timeout: self.timeout,
        }
    }
}

#[cfg(not(any(target_os = "linux", windows)))]
fn unsupported(req: &AttachRequest) -> crimux_core::Error {
    crimux_core::Error::Unimplemented(format!(
        "CNI networking for pod sandbox {} needs Linux or Windows",
        req.container_id
    ))
}
