//! Pod sandboxes on containerd: the pause container, its network namespace and CNI, and
//! the sandbox's files.

pub(crate) mod record;

use async_trait::async_trait;

use crate::ContainerdBackend;

#[async_trait]
impl crimux_core::SandboxBackend for ContainerdBackend {}

#[async_trait]
impl crimux_core::StatusBackend for ContainerdBackend {}
