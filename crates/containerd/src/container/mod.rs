//! Containers on containerd: specs, writable snapshots, tasks with binary logging,
//! exec-sync, stats and lifecycle events.

use async_trait::async_trait;

use crate::ContainerdBackend;

#[async_trait]
impl crimux_core::ContainerBackend for ContainerdBackend {}
