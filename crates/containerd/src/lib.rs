//! A crimux backend on one containerd daemon, through containerd's native gRPC API.
//!
//! This crate does on the client side what containerd's CRI plugin does inside the daemon:
//! pulls go through `crimux-registry`, land in containerd's content store with the
//! garbage-collection labels containerd expects, are unpacked into snapshots and named by
//! image records. Only services containerd 1.6 has are used (content, images, diff,
//! snapshots, leases, introspection, version, namespaces).
//!
//! Architecture Invariant: this crate is the only one that knows containerd's API; it knows
//! nothing of CRI protos. Everything it keeps lives in containerd (records, labels, leases),
//! so a crimux restart loses nothing.

mod backend;
mod client;
mod config;
pub mod connect;
mod container;
mod content;
mod images;
mod labels;
mod lease;
mod monitor;
mod platform;
mod pull;
mod records;
mod runtime;
mod sandbox;
mod singleflight;
mod streaming;
mod unpack;

use std::path::PathBuf;

use crimux_core::BackendRole;

pub use backend::ContainerdBackend;
pub use labels::{IMAGE_ARCH, IMAGE_ID, IMAGE_MANAGED, IMAGE_OS};

/// Mutual TLS for a `tcp://` containerd address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsConfig {
    /// PEM CA that signed the daemon's certificate.
    pub ca: PathBuf,
    /// PEM client certificate and key.
    pub cert: PathBuf,
    pub key: PathBuf,
    /// The name the daemon's certificate carries, when not the address's host.
    pub server_name: Option<String>,
}

/// How to reach and use one containerd daemon.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContainerdConfig {
    pub name: String,
    /// `unix:///path`, `tcp://host:port` or `npipe:////./pipe/name`.
    pub address: String,
    pub namespace: String,
    pub role: BackendRole,
    /// Overrides of the platform discovered from the daemon.
    pub os: Option<String>,
    pub arch: Option<String>,
    pub runtime_handlers: Vec<String>,
    pub tls: Option<TlsConfig>,
    /// Allows plain `tcp://` to a loopback address.
    pub insecure: bool,
    pub snapshotter: String,
    /// What running pods on this daemon needs; unused by the image side.
    pub runtime: RuntimeOptions,
}

/// A RuntimeClass handler this backend serves and the containerd runtime behind it.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct RuntimeHandler {
    /// The handler name (`""` is the default handler).
    pub name: String,
    /// `io.containerd.runc.v2` on Linux, `io.containerd.runhcs.v1` on Windows.
    pub runtime_type: String,
    /// Runtime options as the operator wrote them (TOML table rendered as JSON).
    pub options_json: String,
}

/// Settings for pods and containers on one backend.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuntimeOptions {
    /// This backend's own directory under crimux's root (`<root>/backends/<name>`): pinned
    /// network namespaces, sandbox files (hostname, hosts, resolv.conf), CNI cache, pidfiles.
    pub state_dir: PathBuf,
    /// The pause image (`sandbox_image` in crimux's config).
    pub sandbox_image: String,
    pub cni_conf_dir: PathBuf,
    pub cni_bin_dirs: Vec<PathBuf>,
    /// The `crimux-log` binary the shim starts for container output (binary logging).
    pub log_plugin: PathBuf,
    /// Handlers with their runtime types; the default handler `""` is always present.
    pub handlers: Vec<RuntimeHandler>,
    /// `pod_network = "host"` (a WSL2 distro with mirrored networking): every pod of this
    /// backend runs in the node's network like a hostNetwork pod (no netns, no CNI) and
    /// reports this address, the node's, as its IP. `None`: pods get their own netns and
    /// the IP CNI gives them.
    pub node_network_ip: Option<std::net::IpAddr>,
}

impl Default for RuntimeOptions {
    fn default() -> Self {
        RuntimeOptions {
            state_dir: PathBuf::from("/var/lib/crimux/backends/default"),
            sandbox_image: "registry.k8s.io/pause:3.10".to_string(),
            cni_conf_dir: PathBuf::from("/etc/cni/net.d"),
            cni_bin_dirs: vec![PathBuf::from("/opt/cni/bin")],
            log_plugin: PathBuf::from("crimux-log"),
            handlers: vec![RuntimeHandler {
                name: String::new(),
                runtime_type: DEFAULT_RUNTIME_TYPE.to_string(),
                options_json: String::new(),
            }],
            node_network_ip: None,
        }
    }
}

/// The runtime containerd runs Linux containers with.
pub const DEFAULT_RUNTIME_TYPE: &str = "io.containerd.runc.v2";

pub const DEFAULT_SNAPSHOTTER: &str = "overlayfs";
pub const DEFAULT_NAMESPACE: &str = "k8s.io";
