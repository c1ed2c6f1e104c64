//! Exec, attach and port-forward sessions on containerd (the backend half of the
//! streaming server): see `crimux_core::streaming`. One file per session kind; `pump`
//! holds the bounded byte copies they share.

mod attach;
mod exec;
mod port_forward;
mod pump;

use async_trait::async_trait;
use crimux_core::streaming::{DuplexStream, ExecSpec, StreamIo};
use crimux_core::{ContainerId, PodSandboxId, Result};

use crate::ContainerdBackend;

#[async_trait]
impl crimux_core::StreamingBackend for ContainerdBackend {
    #[tracing::instrument(skip(self), fields(backend = %self.inner().name))]
    async fn check_exec(&self, id: &ContainerId) -> Result<()> {
        exec::check(self.inner(), id).await
    }

    #[tracing::instrument(skip(self, io), fields(backend = %self.inner().name))]
    async fn exec(&self, id: &ContainerId, spec: &ExecSpec, io: StreamIo) -> Result<i32> {
        exec::exec(self.inner(), id, spec, io).await
    }

    #[tracing::instrument(skip(self), fields(backend = %self.inner().name))]
    async fn check_attach(&self, id: &ContainerId) -> Result<()> {
        attach::check(self.inner(), id).await.map(drop)
    }

    #[tracing::instrument(skip(self, io), fields(backend = %self.inner().name))]
    async fn attach(&self, id: &ContainerId, io: StreamIo) -> Result<()> {
        attach::attach(self.inner(), id, io).await
    }

    #[tracing::instrument(skip(self), fields(backend = %self.inner().name))]
    async fn check_port_forward(&self, id: &PodSandboxId) -> Result<()> {
        port_forward::check(self.inner(), id).await.map(drop)
    }

    #[tracing::instrument(skip(self), fields(backend = %self.inner().name))]
    async fn port_forward(&self, id: &PodSandboxId, port: u16) -> Result<DuplexStream> {
        port_forward::port_forward(self.inner(), id, port).await
    }
}
