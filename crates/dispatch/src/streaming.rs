//! Streaming calls (exec, attach, port-forward) follow the pod like every other call: the
//! dispatcher is itself a [`StreamingBackend`] that resolves the id (a prefix is fine),
//! finds the pod's backend and hands the session to it.

use async_trait::async_trait;

use crimux_core::{
    ContainerId, DuplexStream, ExecSpec, PodSandboxId, Result, StreamIo, StreamingBackend,
};

use crate::dispatcher::Dispatcher;

#[async_trait]
impl StreamingBackend for Dispatcher {
    async fn check_exec(&self, id: &ContainerId) -> Result<()> {
        let (id, _, backend) = self.container_route(id.as_str())?;
        backend.check_exec(&id).await
    }

    async fn exec(&self, id: &ContainerId, spec: &ExecSpec, io: StreamIo) -> Result<i32> {
        let (id, _, backend) = self.container_route(id.as_str())?;
        backend.exec(&id, spec, io).await
    }

    async fn check_attach(&self, id: &ContainerId) -> Result<()> {
        let (id, _, backend) = self.container_route(id.as_str())?;
        backend.check_attach(&id).await
    }

    async fn attach(&self, id: &ContainerId, io: StreamIo) -> Result<()> {
        let (id, _, backend) = self.container_route(id.as_str())?;
        backend.attach(&id, io).await
    }

    async fn check_port_forward(&self, id: &PodSandboxId) -> Result<()> {
        let (id, _, backend) = self.sandbox_route(id.as_str())?;
        backend.check_port_forward(&id).await
    }

    async fn port_forward(&self, id: &PodSandboxId, port: u16) -> Result<DuplexStream> {
        let (id, _, backend) = self.sandbox_route(id.as_str())?;
        backend.port_forward(&id, port).await
    }
}
