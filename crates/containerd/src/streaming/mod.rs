//! Exec, attach and port-forward sessions on containerd (the backend half of the
//! streaming server): see `crimux_core::streaming`.

use async_trait::async_trait;

use crate::ContainerdBackend;

#[async_trait]
impl crimux_core::StreamingBackend for ContainerdBackend {}
