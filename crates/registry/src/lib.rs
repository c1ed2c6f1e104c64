//! crimux's OCI distribution client: parses image references, reads containerd-style
//! `hosts.toml` mirror configuration, authenticates (basic, bearer, refresh tokens) and fetches
//! manifests and blobs over HTTP.
//!
//! Architecture Invariant: this crate knows HTTP and the distribution API but nothing of
//! containerd or CRI; it hands back bytes and streams, and callers store them.

pub mod auth;
pub mod client;
pub mod hosts;
pub mod manifest;
pub mod reference;

pub use client::{BlobStream, Registry, Repository, Resolved};
pub use reference::Reference;
