//! A recording fake backend for unit tests here and in the CRI adapter.
//!
//! It holds a "remote" set of pullable images and a "local" store, refuses images of
//! another OS the way a real backend does, keeps pod sandboxes and containers in memory
//! (`runtime.rs`), emits container events, records every call, and can be told to fail.

mod runtime;

pub use runtime::FAKE_POD_IP;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::broadcast;

use crimux_core::container::{ContainerConfig, Resources};
use crimux_core::sandbox::SandboxConfig;
use crimux_core::status::{BackendStatus, ContainerEvent, ContainerState, SandboxState};
use crimux_core::{
    Backend, BackendInfo, BackendRole, ContainerId, Error, FsUsage, Image, ImageBackend, ImageId,
    OsNotSupported, Platform, PodSandboxId, PullImage, Result,
};

/// One call the fake received.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Call {
    PullImage {
        reference: String,
        pod_uid: Option<String>,
        /// Whether credentials came with the request (never the secrets themselves).
        authenticated: bool,
    },
    ImageStatus(String),
    ListImages,
    RemoveImage(String),
    ImageFsInfo,
    RunPodSandbox {
        id: String,
        /// `namespace/name`.
        pod: String,
    },
    StopPodSandbox(String),
    RemovePodSandbox(String),
    PodSandboxStatus(String),
    ListPodSandboxes,
    PodSandboxStats(String),
    CreateContainer {
        id: String,
        sandbox_id: String,
        name: String,
    },
    StartContainer(String),
    StopContainer {
        id: String,
        timeout: Duration,
    },
    RemoveContainer(String),
    ContainerStatus(String),
    ListContainers,
    UpdateContainerResources {
        id: String,
        linux: Option<Resources>,
    },
    ReopenContainerLog(String),
    ExecSync {
        id: String,
        cmd: Vec<String>,
        timeout: Option<Duration>,
    },
    ContainerStats(String),
    Status,
}

/// A sandbox the fake runs.
#[derive(Clone, Debug)]
struct FakeSandbox {
    config: SandboxConfig,
    state: SandboxState,
    created_at: i64,
}

/// A container the fake runs.
#[derive(Clone, Debug)]
struct FakeContainer {
    sandbox_id: PodSandboxId,
    config: ContainerConfig,
    state: ContainerState,
    created_at: i64,
    resources: Option<Resources>,
}

#[derive(Default)]
struct State {
    remote: Vec<Image>,
    local: Vec<Image>,
    fs: Vec<FsUsage>,
    calls: Vec<Call>,
    unavailable: bool,
    pull_error: Option<fn() -> Error>,
    sandboxes: BTreeMap<PodSandboxId, FakeSandbox>,
    containers: BTreeMap<ContainerId, FakeContainer>,
    /// Runtime operations (by trait method name) that fail with the built error.
    failures: HashMap<&'static str, fn() -> Error>,
    status: Option<BackendStatus>,
    /// A logical clock for created/started times.
    clock: i64,
}

/// A backend that answers from memory.
pub struct FakeBackend {
    info: BackendInfo,
    state: Mutex<State>,
    events: broadcast::Sender<ContainerEvent>,
}

/// An image of `os`/amd64 with the given id and tags, no digests, 1000 bytes.
pub fn image(id: &str, tags: &[&str], os: &str) -> Image {
    Image {
        id: ImageId(id.to_string()),
        repo_tags: tags.iter().map(|t| t.to_string()).collect(),
        repo_digests: Vec::new(),
        size: 1000,
        user: String::new(),
        platform: Platform::new(os, "amd64"),
        config: None,
        pinned: false,
    }
}

impl FakeBackend {
    /// A fake running `os`/amd64 that serves no named runtime handler.
    pub fn new(name: &str, role: BackendRole, os: &str) -> FakeBackend {
        FakeBackend {
            info: BackendInfo {
                name: name.to_string(),
                role,
                platform: Platform::new(os, "amd64"),
                runtime_handlers: Vec::new(),
            },
            state: Mutex::new(State::default()),
            events: broadcast::channel(64).0,
        }
    }

    pub fn primary(name: &str, os: &str) -> FakeBackend {
        FakeBackend::new(name, BackendRole::Primary, os)
    }

    pub fn delegate(name: &str, os: &str) -> FakeBackend {
        FakeBackend::new(name, BackendRole::Delegate, os)
    }

    pub fn with_handlers(mut self, handlers: &[&str]) -> FakeBackend {
        self.info.runtime_handlers = handlers.iter().map(|h| h.to_string()).collect();
        self
    }

    /// Makes `image` pullable by any of its names.
    pub fn with_remote(self, image: Image) -> FakeBackend {
        self.state().remote.push(image);
        self
    }

    /// Puts `image` in the local store, as if pulled earlier.
    pub fn with_local(self, image: Image) -> FakeBackend {
        self.state().local.push(image);
        self
    }

    pub fn with_fs(self, usage: FsUsage) -> FakeBackend {
        self.state().fs.push(usage);
        self
    }

    pub fn into_arc(self) -> Arc<FakeBackend> {
        Arc::new(self)
    }

    /// While set, every call fails with `Error::Unavailable`.
    pub fn set_unavailable(&self, unavailable: bool) {
        self.state().unavailable = unavailable;
    }

    /// Makes every later pull fail with the error `make` builds.
    pub fn fail_pulls_with(&self, make: fn() -> Error) {
        self.state().pull_error = Some(make);
    }

    /// Makes every later call of the runtime method `op` (`"run_pod_sandbox"`,
    /// `"create_container"`, ...) fail with the error `make` builds.
    pub fn fail_op_with(&self, op: &'static str, make: fn() -> Error) {
        self.state().failures.insert(op, make);
    }

    /// Forgets every `fail_op_with`.
    pub fn clear_failures(&self) {
        self.state().failures.clear();
    }

    /// What `status` answers (default: runtime and network ready).
    pub fn set_status(&self, status: BackendStatus) {
        self.state().status = Some(status);
    }

    /// Puts a ready sandbox in place as if created earlier (or behind crimux's back).
    pub fn insert_sandbox(&self, id: &str, config: SandboxConfig) {
        let mut state = self.state();
        state.clock += 1;
        let created_at = state.clock;
        state.sandboxes.insert(
            PodSandboxId::from(id),
            FakeSandbox {
                config,
                state: SandboxState::Ready,
                created_at,
            },
        );
    }

    /// Puts a created container in place as if created earlier.
    pub fn insert_container(&self, id: &str, sandbox_id: &str, config: ContainerConfig) {
        let mut state = self.state();
        state.clock += 1;
        let created_at = state.clock;
        state.containers.insert(
            ContainerId::from(id),
            FakeContainer {
                sandbox_id: PodSandboxId::from(sandbox_id),
                config,
                state: ContainerState::Created,
                created_at,
                resources: None,
            },
        );
    }

    /// Ids of the sandboxes the fake holds.
    pub fn sandbox_ids(&self) -> Vec<String> {
        self.state().sandboxes.keys().map(|k| k.0.clone()).collect()
    }

    /// Ids of the containers the fake holds.
    pub fn container_ids(&self) -> Vec<String> {
        self.state()
            .containers
            .keys()
            .map(|k| k.0.clone())
            .collect()
    }

    /// The state of a sandbox the fake holds.
    pub fn sandbox_state(&self, id: &str) -> Option<SandboxState> {
        self.state()
            .sandboxes
            .get(&PodSandboxId::from(id))
            .map(|s| s.state)
    }

    pub fn calls(&self) -> Vec<Call> {
        self.state().calls.clone()
    }

    pub fn local_images(&self) -> Vec<Image> {
        self.state().local.clone()
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records the call and fails if the fake is unavailable.
    fn enter(&self, call: Call) -> Result<MutexGuard<'_, State>> {
        let mut state = self.state();
        state.calls.push(call);
        if state.unavailable {
            return Err(Error::Unavailable(format!(
                "backend {} is unavailable",
                self.info.name
            )));
        }
        Ok(state)
    }
}

#[async_trait]
impl ImageBackend for FakeBackend {
    async fn pull_image(&self, request: &PullImage) -> Result<ImageId> {
        let mut state = self.enter(Call::PullImage {
            reference: request.reference.clone(),
            pod_uid: request.pod_uid.clone(),
            authenticated: request.credentials.as_ref().is_some_and(|c| !c.is_empty()),
        })?;
        if let Some(make) = state.pull_error {
            return Err(make());
        }
        let Some(found) = state
            .remote
            .iter()
            .find(|i| i.is_named(&request.reference))
            .cloned()
        else {
            return Err(Error::NotFound(format!(
                "{}: not found in the registry",
                request.reference
            )));
        };
        if !self.info.platform.can_run(&found.platform) {
            return Err(OsNotSupported {
                required_os: found.platform.os.clone(),
                node_os: vec![self.info.platform.os.clone()],
                image: request.reference.clone(),
                pod: request.pod_name.clone().unwrap_or_default(),
            }
            .into());
        }
        let id = found.id.clone();
        match state.local.iter_mut().find(|i| i.id == id) {
            Some(local) => {
                for tag in found.repo_tags {
                    if !local.repo_tags.contains(&tag) {
                        local.repo_tags.push(tag);
                    }
                }
            }
            None => state.local.push(found),
        }
        Ok(id)
    }

    async fn image_status(&self, image: &str) -> Result<Option<Image>> {
        let state = self.enter(Call::ImageStatus(image.to_string()))?;
        Ok(state.local.iter().find(|i| i.is_named(image)).cloned())
    }

    async fn list_images(&self) -> Result<Vec<Image>> {
        let state = self.enter(Call::ListImages)?;
        Ok(state.local.clone())
    }

    async fn remove_image(&self, image: &str) -> Result<()> {
        let mut state = self.enter(Call::RemoveImage(image.to_string()))?;
        state.local.retain(|i| !i.is_named(image));
        Ok(())
    }

    async fn image_fs_info(&self) -> Result<Vec<FsUsage>> {
        let state = self.enter(Call::ImageFsInfo)?;
        Ok(state.fs.clone())
    }
}

/// Streaming is not faked: every call answers Unimplemented (the trait's defaults).
impl crimux_core::StreamingBackend for FakeBackend {}

impl Backend for FakeBackend {
    fn info(&self) -> &BackendInfo {
        &self.info
    }

    fn subscribe_events(&self) -> Option<broadcast::Receiver<ContainerEvent>> {
        Some(self.events.subscribe())
    }
}
