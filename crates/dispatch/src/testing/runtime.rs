//! The fake's pod sandboxes and containers: in-memory state machines that behave like the
//! CRI says (idempotent stop/remove, NotFound for unknown ids) and emit container events.

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;

use crimux_core::container::{ContainerConfig, Resources, WindowsResources};
use crimux_core::sandbox::SandboxConfig;
use crimux_core::status::{
    BackendStatus, ContainerEvent, ContainerEventKind, ContainerState, ContainerStats,
    ContainerStatus, ContainerSummary, ExecSyncOutput, SandboxState, SandboxStats, SandboxStatus,
    SandboxSummary,
};
use crimux_core::{
    ContainerBackend, ContainerId, Error, PodSandboxId, Result, SandboxBackend, StatusBackend,
};

use super::{Call, FakeBackend, FakeContainer, FakeSandbox, State};

/// The pod IP every fake sandbox reports.
pub const FAKE_POD_IP: &str = "10.88.0.2";

fn sandbox_summary(id: &PodSandboxId, s: &FakeSandbox) -> SandboxSummary {
    SandboxSummary {
        id: id.clone(),
        metadata: s.config.metadata.clone(),
        state: s.state,
        created_at: s.created_at,
        labels: s.config.labels.clone(),
        annotations: s.config.annotations.clone(),
        runtime_handler: s.config.runtime_handler.clone(),
    }
}

fn sandbox_status(id: &PodSandboxId, s: &FakeSandbox) -> SandboxStatus {
    SandboxStatus {
        summary: sandbox_summary(id, s),
        ips: vec![FAKE_POD_IP.to_string()],
        namespace_options: s
            .config
            .linux
            .as_ref()
            .map(|l| l.security.namespace_options.clone())
            .unwrap_or_default(),
        info: BTreeMap::new(),
    }
}

fn container_summary(id: &ContainerId, c: &FakeContainer) -> ContainerSummary {
    ContainerSummary {
        id: id.clone(),
        sandbox_id: c.sandbox_id.clone(),
        metadata: c.config.metadata.clone(),
        image: c.config.image.clone(),
        image_ref: c.config.image.clone(),
        state: c.state,
        created_at: c.created_at,
        labels: c.config.labels.clone(),
        annotations: c.config.annotations.clone(),
    }
}

fn container_status(id: &ContainerId, c: &FakeContainer) -> ContainerStatus {
    ContainerStatus {
        summary: container_summary(id, c),
        started_at: 0,
        finished_at: 0,
        exit_code: 0,
        reason: if c.state == ContainerState::Exited {
            "Completed".into()
        } else {
            String::new()
        },
        message: String::new(),
        mounts: c.config.mounts.clone(),
        log_path: c.config.log_path.clone(),
        resources: c.resources.clone(),
        windows_resources: None,
        user: None,
        info: BTreeMap::new(),
    }
}

fn container_stats(id: &ContainerId, c: &FakeContainer) -> ContainerStats {
    ContainerStats {
        id: id.clone(),
        sandbox_id: c.sandbox_id.clone(),
        metadata: c.config.metadata.clone(),
        labels: c.config.labels.clone(),
        annotations: c.config.annotations.clone(),
        timestamp: 1,
        cpu_usage_core_nanos: 100,
        memory_working_set_bytes: 200,
        memory_usage_bytes: 300,
        writable_layer_bytes: 400,
        writable_layer_inodes: 5,
        writable_layer_mountpoint: "/fake/snapshots".into(),
    }
}

impl FakeBackend {
    /// Records the call and fails if the fake is unavailable or `op` was told to fail.
    fn enter_op(&self, op: &'static str, call: Call) -> Result<std::sync::MutexGuard<'_, State>> {
        let state = self.enter(call)?;
        if let Some(make) = state.failures.get(op) {
            return Err(make());
        }
        Ok(state)
    }

    fn emit(&self, state: &State, id: &ContainerId, kind: ContainerEventKind) {
        let (sandbox, containers) = match state.containers.get(id) {
            Some(c) => (
                state
                    .sandboxes
                    .get(&c.sandbox_id)
                    .map(|s| sandbox_status(&c.sandbox_id, s)),
                state
                    .containers
                    .iter()
                    .filter(|(_, o)| o.sandbox_id == c.sandbox_id)
                    .map(|(oid, o)| container_status(oid, o))
                    .collect(),
            ),
            None => (None, Vec::new()),
        };
        // Nobody listening is fine.
        let _ = self.events.send(ContainerEvent {
            container_id: id.clone(),
            kind,
            created_at: state.clock,
            sandbox,
            containers,
        });
    }

    fn unknown_container(id: &ContainerId) -> Error {
        Error::NotFound(format!("container {id} not found"))
    }
}

#[async_trait]
impl SandboxBackend for FakeBackend {
    async fn run_pod_sandbox(&self, id: &PodSandboxId, config: &SandboxConfig) -> Result<()> {
        let call = Call::RunPodSandbox {
            id: id.0.clone(),
            pod: config.metadata.pod_name(),
        };
        let mut state = self.enter_op("run_pod_sandbox", call)?;
        if state.sandboxes.contains_key(id) {
            return Err(Error::AlreadyExists(format!("sandbox {id} exists")));
        }
        state.clock += 1;
        let created_at = state.clock;
        state.sandboxes.insert(
            id.clone(),
            FakeSandbox {
                config: config.clone(),
                state: SandboxState::Ready,
                created_at,
            },
        );
        Ok(())
    }

    async fn stop_pod_sandbox(&self, id: &PodSandboxId) -> Result<()> {
        let mut state = self.enter_op("stop_pod_sandbox", Call::StopPodSandbox(id.0.clone()))?;
        if let Some(s) = state.sandboxes.get_mut(id) {
            s.state = SandboxState::NotReady;
        }
        for c in state
            .containers
            .values_mut()
            .filter(|c| &c.sandbox_id == id)
        {
            if c.state == ContainerState::Running {
                c.state = ContainerState::Exited;
            }
        }
        Ok(())
    }

    async fn remove_pod_sandbox(&self, id: &PodSandboxId) -> Result<()> {
        let mut state =
            self.enter_op("remove_pod_sandbox", Call::RemovePodSandbox(id.0.clone()))?;
        state.sandboxes.remove(id);
        state.containers.retain(|_, c| &c.sandbox_id != id);
        Ok(())
    }

    async fn pod_sandbox_status(&self, id: &PodSandboxId, _verbose: bool) -> Result<SandboxStatus> {
        let state = self.enter_op("pod_sandbox_status", Call::PodSandboxStatus(id.0.clone()))?;
        state
            .sandboxes
            .get(id)
            .map(|s| sandbox_status(id, s))
            .ok_or_else(|| Error::NotFound(format!("sandbox {id} not found")))
    }

    async fn list_pod_sandboxes(&self) -> Result<Vec<SandboxSummary>> {
        let state = self.enter_op("list_pod_sandboxes", Call::ListPodSandboxes)?;
        Ok(state
            .sandboxes
            .iter()
            .map(|(id, s)| sandbox_summary(id, s))
            .collect())
    }

    async fn pod_sandbox_stats(&self, id: &PodSandboxId) -> Result<SandboxStats> {
        let state = self.enter_op("pod_sandbox_stats", Call::PodSandboxStats(id.0.clone()))?;
        let s = state
            .sandboxes
            .get(id)
            .ok_or_else(|| Error::NotFound(format!("sandbox {id} not found")))?;
        Ok(SandboxStats {
            id: id.clone(),
            metadata: s.config.metadata.clone(),
            labels: s.config.labels.clone(),
            annotations: s.config.annotations.clone(),
            timestamp: 1,
            cpu_usage_core_nanos: 1000,
            memory_working_set_bytes: 2000,
            containers: state
                .containers
                .iter()
                .filter(|(_, c)| &c.sandbox_id == id)
                .map(|(cid, c)| container_stats(cid, c))
                .collect(),
        })
    }
}

#[async_trait]
impl ContainerBackend for FakeBackend {
    async fn create_container(
        &self,
        id: &ContainerId,
        sandbox_id: &PodSandboxId,
        config: &ContainerConfig,
        _sandbox_config: &SandboxConfig,
    ) -> Result<()> {
        let call = Call::CreateContainer {
            id: id.0.clone(),
            sandbox_id: sandbox_id.0.clone(),
            name: config.metadata.name.clone(),
        };
        let mut state = self.enter_op("create_container", call)?;
        if !state.sandboxes.contains_key(sandbox_id) {
            return Err(Error::NotFound(format!("sandbox {sandbox_id} not found")));
        }
        state.clock += 1;
        let created_at = state.clock;
        state.containers.insert(
            id.clone(),
            FakeContainer {
                sandbox_id: sandbox_id.clone(),
                config: config.clone(),
                state: ContainerState::Created,
                created_at,
                resources: None,
            },
        );
        self.emit(&state, id, ContainerEventKind::Created);
        Ok(())
    }

    async fn start_container(&self, id: &ContainerId) -> Result<()> {
        let mut state = self.enter_op("start_container", Call::StartContainer(id.0.clone()))?;
        let c = state
            .containers
            .get_mut(id)
            .ok_or_else(|| Self::unknown_container(id))?;
        if c.state != ContainerState::Created {
            return Err(Error::FailedPrecondition(format!(
                "container {id} is {:?}, not created",
                c.state
            )));
        }
        c.state = ContainerState::Running;
        self.emit(&state, id, ContainerEventKind::Started);
        Ok(())
    }

    async fn stop_container(&self, id: &ContainerId, timeout: Duration) -> Result<()> {
        let call = Call::StopContainer {
            id: id.0.clone(),
            timeout,
        };
        let mut state = self.enter_op("stop_container", call)?;
        let c = state
            .containers
            .get_mut(id)
            .ok_or_else(|| Self::unknown_container(id))?;
        c.state = ContainerState::Exited;
        self.emit(&state, id, ContainerEventKind::Stopped);
        Ok(())
    }

    async fn remove_container(&self, id: &ContainerId) -> Result<()> {
        let mut state = self.enter_op("remove_container", Call::RemoveContainer(id.0.clone()))?;
        if state.containers.contains_key(id) {
            self.emit(&state, id, ContainerEventKind::Deleted);
            state.containers.remove(id);
        }
        Ok(())
    }

    async fn container_status(&self, id: &ContainerId, _verbose: bool) -> Result<ContainerStatus> {
        let state = self.enter_op("container_status", Call::ContainerStatus(id.0.clone()))?;
        state
            .containers
            .get(id)
            .map(|c| container_status(id, c))
            .ok_or_else(|| Self::unknown_container(id))
    }

    async fn list_containers(&self) -> Result<Vec<ContainerSummary>> {
        let state = self.enter_op("list_containers", Call::ListContainers)?;
        Ok(state
            .containers
            .iter()
            .map(|(id, c)| container_summary(id, c))
            .collect())
    }

    async fn update_container_resources(
        &self,
        id: &ContainerId,
        linux: Option<&Resources>,
        _windows: Option<&WindowsResources>,
    ) -> Result<()> {
        let call = Call::UpdateContainerResources {
            id: id.0.clone(),
            linux: linux.cloned(),
        };
        let mut state = self.enter_op("update_container_resources", call)?;
        let c = state
            .containers
            .get_mut(id)
            .ok_or_else(|| Self::unknown_container(id))?;
        c.resources = linux.cloned();
        Ok(())
    }

    async fn reopen_container_log(&self, id: &ContainerId) -> Result<()> {
        let state = self.enter_op(
            "reopen_container_log",
            Call::ReopenContainerLog(id.0.clone()),
        )?;
        match state.containers.get(id) {
            None => Err(Self::unknown_container(id)),
            Some(c) if c.state != ContainerState::Running => Err(Error::FailedPrecondition(
                format!("container {id} is not running"),
            )),
            Some(_) => Ok(()),
        }
    }

    async fn exec_sync(
        &self,
        id: &ContainerId,
        cmd: &[String],
        timeout: Option<Duration>,
    ) -> Result<ExecSyncOutput> {
        let call = Call::ExecSync {
            id: id.0.clone(),
            cmd: cmd.to_vec(),
            timeout,
        };
        let state = self.enter_op("exec_sync", call)?;
        match state.containers.get(id) {
            None => Err(Self::unknown_container(id)),
            Some(c) if c.state != ContainerState::Running => Err(Error::FailedPrecondition(
                format!("container {id} is not running"),
            )),
            // Echoes the command: stdout is the words joined, exit code their count.
            Some(_) => Ok(ExecSyncOutput {
                stdout: cmd.join(" ").into_bytes(),
                stderr: b"err".to_vec(),
                exit_code: i32::try_from(cmd.len()).unwrap_or(i32::MAX),
            }),
        }
    }

    async fn container_stats(&self, id: &ContainerId) -> Result<ContainerStats> {
        let state = self.enter_op("container_stats", Call::ContainerStats(id.0.clone()))?;
        state
            .containers
            .get(id)
            .map(|c| container_stats(id, c))
            .ok_or_else(|| Self::unknown_container(id))
    }
}

#[async_trait]
impl StatusBackend for FakeBackend {
    async fn status(&self) -> Result<BackendStatus> {
        let state = self.enter_op("status", Call::Status)?;
        Ok(state.status.clone().unwrap_or(BackendStatus {
            runtime_ready: true,
            runtime_reason: String::new(),
            network_ready: true,
            network_reason: String::new(),
            network_message: String::new(),
        }))
    }
}
