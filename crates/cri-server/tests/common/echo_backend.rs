//! A fake backend with streaming: every runtime call goes to a recording
//! [`FakeBackend`]; exec echoes its command and stdin, attach greets, and port-forward
//! echoes the bytes it gets. Lets the forwarding tests relay real sessions through an
//! inner crimux's streaming server.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crimux_core::container::{ContainerConfig, Resources, WindowsResources};
use crimux_core::sandbox::SandboxConfig;
use crimux_core::status::{
    BackendStatus, ContainerEvent, ContainerState, ContainerStats, ContainerStatus,
    ContainerSummary, ExecSyncOutput, SandboxStats, SandboxStatus, SandboxSummary,
};
use crimux_core::{
    Backend, BackendInfo, ContainerBackend, ContainerId, DuplexStream, Error, ExecSpec, FsUsage,
    Image, ImageBackend, ImageId, PodSandboxId, PullImage, Result, SandboxBackend, StatusBackend,
    StreamIo, StreamingBackend,
};
use crimux_dispatch::testing::FakeBackend;

/// The exit code of every echoed exec.
pub const EXEC_EXIT_CODE: i32 = 3;

pub struct EchoBackend(pub Arc<FakeBackend>);

#[async_trait]
impl ImageBackend for EchoBackend {
    async fn pull_image(&self, request: &PullImage) -> Result<ImageId> {
        self.0.pull_image(request).await
    }
    async fn image_status(&self, image: &str) -> Result<Option<Image>> {
        self.0.image_status(image).await
    }
    async fn list_images(&self) -> Result<Vec<Image>> {
        self.0.list_images().await
    }
    async fn remove_image(&self, image: &str) -> Result<()> {
        self.0.remove_image(image).await
    }
    async fn image_fs_info(&self) -> Result<Vec<FsUsage>> {
        self.0.image_fs_info().await
    }
}

#[async_trait]
impl SandboxBackend for EchoBackend {
    async fn run_pod_sandbox(&self, id: &PodSandboxId, config: &SandboxConfig) -> Result<()> {
        self.0.run_pod_sandbox(id, config).await
    }
    async fn stop_pod_sandbox(&self, id: &PodSandboxId) -> Result<()> {
        self.0.stop_pod_sandbox(id).await
    }
    async fn remove_pod_sandbox(&self, id: &PodSandboxId) -> Result<()> {
        self.0.remove_pod_sandbox(id).await
    }
    async fn pod_sandbox_status(&self, id: &PodSandboxId, verbose: bool) -> Result<SandboxStatus> {
        self.0.pod_sandbox_status(id, verbose).await
    }
    async fn list_pod_sandboxes(&self) -> Result<Vec<SandboxSummary>> {
        self.0.list_pod_sandboxes().await
    }
    async fn pod_sandbox_stats(&self, id: &PodSandboxId) -> Result<SandboxStats> {
        self.0.pod_sandbox_stats(id).await
    }
}

#[async_trait]
impl ContainerBackend for EchoBackend {
    async fn create_container(
        &self,
        id: &ContainerId,
        sandbox_id: &PodSandboxId,
        config: &ContainerConfig,
        sandbox_config: &SandboxConfig,
    ) -> Result<()> {
        self.0
            .create_container(id, sandbox_id, config, sandbox_config)
            .await
    }
    async fn start_container(&self, id: &ContainerId) -> Result<()> {
        self.0.start_container(id).await
    }
    async fn stop_container(&self, id: &ContainerId, timeout: Duration) -> Result<()> {
        self.0.stop_container(id, timeout).await
    }
    async fn remove_container(&self, id: &ContainerId) -> Result<()> {
        self.0.remove_container(id).await
    }
    async fn container_status(&self, id: &ContainerId, verbose: bool) -> Result<ContainerStatus> {
        self.0.container_status(id, verbose).await
    }
    async fn list_containers(&self) -> Result<Vec<ContainerSummary>> {
        self.0.list_containers().await
    }
    async fn update_container_resources(
        &self,
        id: &ContainerId,
        linux: Option<&Resources>,
        windows: Option<&WindowsResources>,
    ) -> Result<()> {
        self.0.update_container_resources(id, linux, windows).await
    }
    async fn reopen_container_log(&self, id: &ContainerId) -> Result<()> {
        self.0.reopen_container_log(id).await
    }
    async fn exec_sync(
        &self,
        id: &ContainerId,
        cmd: &[String],
        timeout: Option<Duration>,
    ) -> Result<ExecSyncOutput> {
        self.0.exec_sync(id, cmd, timeout).await
    }
    async fn container_stats(&self, id: &ContainerId) -> Result<ContainerStats> {
        self.0.container_stats(id).await
    }
}

#[async_trait]
impl StatusBackend for EchoBackend {
    async fn status(&self) -> Result<BackendStatus> {
        self.0.status().await
    }
}

/// Writes `bytes` to a session's output stream and closes it (the client sees its end).
async fn write_and_close(w: &mut (impl AsyncWrite + Unpin), bytes: &[u8]) -> Result<()> {
    let internal = |e: std::io::Error| Error::Internal(e.to_string());
    w.write_all(bytes).await.map_err(internal)?;
    w.shutdown().await.map_err(internal)
}

impl EchoBackend {
    async fn running(&self, id: &ContainerId) -> Result<()> {
        let status = self.0.container_status(id, false).await?;
        if status.summary.state != ContainerState::Running {
            return Err(Error::FailedPrecondition(format!(
                "container {id} is not running"
            )));
        }
        Ok(())
    }
}

#[async_trait]
impl StreamingBackend for EchoBackend {
    async fn check_exec(&self, id: &ContainerId) -> Result<()> {
        self.running(id).await
    }

    /// Writes `cmd` joined by spaces, then everything read from stdin, to stdout; `err` to
    /// stderr.
    async fn exec(&self, id: &ContainerId, spec: &ExecSpec, mut io: StreamIo) -> Result<i32> {
        self.running(id).await?;
        let mut out = spec.cmd.join(" ").into_bytes();
        if let Some(stdin) = io.stdin.as_mut() {
            stdin
                .read_to_end(&mut out)
                .await
                .map_err(|e| Error::Internal(e.to_string()))?;
        }
        if let Some(stdout) = io.stdout.as_mut() {
            write_and_close(stdout, &out).await?;
        }
        if let Some(stderr) = io.stderr.as_mut() {
            write_and_close(stderr, b"err").await?;
        }
        Ok(EXEC_EXIT_CODE)
    }

    async fn check_attach(&self, id: &ContainerId) -> Result<()> {
        self.running(id).await
    }

    async fn attach(&self, id: &ContainerId, mut io: StreamIo) -> Result<()> {
        self.running(id).await?;
        if let Some(stdout) = io.stdout.as_mut() {
            write_and_close(stdout, b"attached").await?;
        }
        Ok(())
    }

    async fn check_port_forward(&self, id: &PodSandboxId) -> Result<()> {
        self.0.pod_sandbox_status(id, false).await.map(drop)
    }

    /// A connection that echoes what it receives.
    async fn port_forward(&self, id: &PodSandboxId, _port: u16) -> Result<DuplexStream> {
        self.check_port_forward(id).await?;
        let (client, mut server) = tokio::io::duplex(4096);
        tokio::spawn(async move {
            let mut buf = [0u8; 1024];
            loop {
                match server.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if server.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                }
            }
        });
        Ok(Box::pin(client))
    }
}

impl Backend for EchoBackend {
    fn info(&self) -> &BackendInfo {
        self.0.info()
    }

    fn subscribe_events(&self) -> Option<tokio::sync::broadcast::Receiver<ContainerEvent>> {
        self.0.subscribe_events()
    }
}
