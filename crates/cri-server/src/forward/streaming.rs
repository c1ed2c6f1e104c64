//! Exec, attach and port-forward, relayed session by session: the outer streaming server
//! terminates the client's SPDY/WebSocket session and hands this backend a [`StreamIo`];
//! the backend asks the inner crimux for a URL (its Exec, Attach or PortForward RPC) and
//! `crimux_streaming::client::relay_*` runs that URL as a client, pumping bytes both ways.
//! The inner URLs may name 127.0.0.1: they are used as the inner crimux made them.

use async_trait::async_trait;
use k8s_cri::v1;

use crimux_core::status::{ContainerState, SandboxState};
use crimux_core::{
    ContainerBackend, ContainerId, DuplexStream, Error, ExecSpec, PodSandboxId, Result,
    SandboxBackend, StreamIo, StreamingBackend,
};
use crimux_streaming::client::{relay_attach, relay_exec, relay_port_forward};

use super::CriBackend;

/// The `stdin`/`tty` a container was created with, from a verbose status's `info` JSON
/// (`{"config": {...}}`, as crimux's backends write it), if it says.
fn created_with(status: &crimux_core::status::ContainerStatus) -> Option<(bool, bool)> {
    let info: serde_json::Value = serde_json::from_str(status.info.get("info")?).ok()?;
    let config = info.get("config")?;
    let flag = |k: &str| config.get(k).and_then(serde_json::Value::as_bool);
    Some((flag("stdin")?, flag("tty")?))
}

impl CriBackend {
    /// The container's status if it runs (FailedPrecondition otherwise).
    async fn running(&self, id: &ContainerId) -> Result<crimux_core::status::ContainerStatus> {
        let status = self.container_status(id, true).await?;
        if status.summary.state != ContainerState::Running {
            return Err(Error::FailedPrecondition(format!(
                "container {id} is not running"
            )));
        }
        Ok(status)
    }

    async fn attach_url(&self, request: v1::AttachRequest) -> Result<String> {
        let response = self.call("Attach", self.runtime().attach(request)).await?;
        Ok(response.url)
    }
}

/// An Attach request for `id` asking for the streams `io` has.
fn attach_request(id: &ContainerId, tty: bool, io: &StreamIo) -> v1::AttachRequest {
    v1::AttachRequest {
        container_id: id.0.clone(),
        stdin: io.stdin.is_some(),
        tty,
        stdout: io.stdout.is_some(),
        stderr: io.stderr.is_some() && !tty,
    }
}

#[async_trait]
impl StreamingBackend for CriBackend {
    async fn check_exec(&self, id: &ContainerId) -> Result<()> {
        self.running(id).await.map(drop)
    }

    #[tracing::instrument(skip_all, fields(backend = %self.info.name, container_id = %id, tty = spec.tty))]
    async fn exec(&self, id: &ContainerId, spec: &ExecSpec, io: StreamIo) -> Result<i32> {
        let response = self
            .call(
                "Exec",
                self.runtime().exec(v1::ExecRequest {
                    container_id: id.0.clone(),
                    cmd: spec.cmd.clone(),
                    tty: spec.tty,
                    stdin: io.stdin.is_some(),
                    stdout: io.stdout.is_some(),
                    stderr: io.stderr.is_some(),
                }),
            )
            .await?;
        relay_exec(&response.url, spec.tty, io).await
    }

    /// Running, and created with stdin or a tty. When the inner status does not say how
    /// the container was created, the inner Attach RPC's own check decides (the URL it
    /// answers with is single-use and simply expires).
    async fn check_attach(&self, id: &ContainerId) -> Result<()> {
        let status = self.running(id).await?;
        match created_with(&status) {
            Some((false, false)) => Err(Error::FailedPrecondition(format!(
                "container {id} was not created with stdin or tty; attach needs one of them"
            ))),
            Some(_) => Ok(()),
            None => {
                let probe = v1::AttachRequest {
                    container_id: id.0.clone(),
                    stdout: true,
                    ..Default::default()
                };
                self.attach_url(probe).await.map(drop)
            }
        }
    }

    #[tracing::instrument(skip_all, fields(backend = %self.info.name, container_id = %id))]
    async fn attach(&self, id: &ContainerId, io: StreamIo) -> Result<()> {
        let status = self.running(id).await?;
        // The session must use the container's own tty setting; without it in the status,
        // a resize stream is what a tty session has.
        let tty = created_with(&status).map_or(io.resize.is_some(), |(_, tty)| tty);
        let url = self.attach_url(attach_request(id, tty, &io)).await?;
        relay_attach(&url, tty, io).await
    }

    async fn check_port_forward(&self, id: &PodSandboxId) -> Result<()> {
        let status = self.pod_sandbox_status(id, false).await?;
        if status.summary.state != SandboxState::Ready {
            return Err(Error::FailedPrecondition(format!(
                "pod sandbox {id} is not ready"
            )));
        }
        Ok(())
    }

    #[tracing::instrument(skip_all, fields(backend = %self.info.name, pod_id = %id, port))]
    async fn port_forward(&self, id: &PodSandboxId, port: u16) -> Result<DuplexStream> {
        let response = self
            .call(
                "PortForward",
                self.runtime().port_forward(v1::PortForwardRequest {
                    pod_sandbox_id: id.0.clone(),
                    port: vec![i32::from(port)],
                }),
            )
            .await?;
        relay_port_forward(&response.url, port).await
    }
}
