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
mod content;
mod images;
mod labels;
mod lease;
mod pull;
mod records;
mod singleflight;
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
}

pub const DEFAULT_SNAPSHOTTER: &str = "overlayfs";
pub const DEFAULT_NAMESPACE: &str = "k8s.io";
