//! `ContainerdBackend`: connecting to one containerd daemon and serving crimux's backend
//! traits from it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use containerd_client::services::v1::{CreateNamespaceRequest, Namespace, Plugin, PluginsRequest};
use crimux_core::platform::oci_arch;
use crimux_core::{
    Backend, BackendInfo, Error, FsUsage, Image, ImageBackend, ImageId, Platform, PullImage, Result,
};
use crimux_registry::Registry;

use crate::client::{is_already_exists, Daemon};
use crate::images::{self, Details};
use crate::singleflight::SingleFlight;
use crate::{connect, pull, ContainerdConfig, RuntimeOptions};
use crimux_cni::Cni;
use crimux_core::status::ContainerEvent;
use tokio::sync::broadcast;

/// How long connecting may take before the daemon counts as unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The state the backend's operations share; held in an `Arc` so pulls can run in their
/// own tasks.
pub struct Inner {
    pub name: String,
    /// Whether the daemon runs on this machine (a `unix://` or `npipe://` address), so its
    /// host's files, mounts and processes are ours to read.
    pub local: bool,
    pub daemon: Daemon,
    pub registry: Registry,
    pub platform: Platform,
    pub snapshotter: String,
    /// The snapshotter's root directory on the daemon's host, for ImageFsInfo.
    pub snapshotter_root: String,
    pub pulls: SingleFlight<ImageId>,
    pub blobs: SingleFlight<()>,
    details: Mutex<HashMap<String, Arc<Details>>>,
    /// Settings for pods and containers (state dir, pause image, CNI, log plugin, handlers).
    pub runtime: RuntimeOptions,
    /// Pod networking for this backend's sandboxes.
    pub cni: Cni,
    /// Container lifecycle events, fanned out to GetContainerEvents subscribers.
    pub events: broadcast::Sender<ContainerEvent>,
    /// The task states lists answer from, kept current by the event monitor.
    pub tasks: crate::runtime::task_cache::TaskCache,
    /// The sandbox and container records lists answer from, kept current by crimux's own
    /// writes and the event monitor.
    pub records: crate::runtime::record_cache::RecordCache,
}

impl Inner {
    pub fn details_cache(&self) -> MutexGuard<'_, HashMap<String, Arc<Details>>> {
        self.details.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// One containerd daemon as a crimux backend.
pub struct ContainerdBackend {
    inner: Arc<Inner>,
    info: BackendInfo,
}

impl ContainerdBackend {
    /// Connects, checks the daemon answers, discovers its platform (unless configured) and
    /// makes sure the namespace exists.
    pub async fn connect(
        config: ContainerdConfig,
        registry: Registry,
    ) -> Result<Arc<ContainerdBackend>> {
        let channel = connect::channel(&config.address, config.tls.as_ref(), config.insecure)?;
        let daemon = Daemon::new(channel, &config.namespace)?;
        let unreachable = |why: String| {
            Error::Unavailable(format!(
                "containerd backend {} at {} is unreachable: {why}",
                config.name, config.address
            ))
        };

        let version = tokio::time::timeout(
            CONNECT_TIMEOUT,
            daemon.version().version(daemon.request((), None)),
        )
        .await
        .map_err(|_| unreachable(format!("no answer within {CONNECT_TIMEOUT:?}")))?
        .map_err(|s| match s.code() {
            tonic::Code::Unavailable | tonic::Code::Unknown => unreachable(s.message().to_string()),
            _ => Error::backend(format!("containerd {} version", config.address), s),
        })?
        .into_inner();

        let plugins = daemon
            .introspection()
            .plugins(daemon.request(
                PluginsRequest {
                    filters: Vec::new(),
                },
                None,
            ))
            .await
            .map_err(|s| Error::backend(format!("containerd {} plugins", config.address), s))?
            .into_inner()
            .plugins;
        let mut platform =
            discover_platform(&plugins, &config.snapshotter).unwrap_or_else(Platform::host);
        if let Some(os) = &config.os {
            platform.os = os.clone();
        }
        if let Some(arch) = &config.arch {
            platform.architecture = oci_arch(arch);
            platform.variant = None;
        }
        let snapshotter_root = plugins
            .iter()
            .find(|p| p.r#type == SNAPSHOTTER_PLUGIN && p.id == config.snapshotter)
            .and_then(|p| p.exports.get("root").cloned())
            .unwrap_or_default();

        ensure_namespace(&daemon, &config.namespace).await?;
        tracing::info!(
            backend = %config.name, address = %config.address, version = %version.version,
            %platform, namespace = %config.namespace, "connected to containerd"
        );

        let info = BackendInfo {
            name: config.name.clone(),
            role: config.role,
            platform: platform.clone(),
            runtime_handlers: config.runtime_handlers.clone(),
        };
        let inner = Arc::new(Inner {
            local: !config.address.starts_with("tcp://"),
            name: config.name,
            daemon,
            registry,
            platform,
            snapshotter: config.snapshotter,
            snapshotter_root,
            pulls: SingleFlight::default(),
            blobs: SingleFlight::default(),
            details: Mutex::default(),
            cni: Cni::new(
                config.runtime.cni_conf_dir.clone(),
                config.runtime.cni_bin_dirs.clone(),
                config.runtime.state_dir.join("cni-cache"),
            ),
            runtime: config.runtime,
            events: broadcast::channel(EVENT_BUFFER).0,
            tasks: Default::default(),
            records: Default::default(),
        });
        crate::monitor::spawn(&inner);
        // Not fatal: the backend serves without it, and the next pull of the pause pins it.
        match images::pin_sandbox_image(&inner).await {
            Ok(Some(id)) => {
                tracing::debug!(backend = %inner.name, image = %id, "sandbox image pinned")
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(backend = %inner.name, %e, "cannot pin the sandbox image"),
        }
        Ok(Arc::new(ContainerdBackend { inner, info }))
    }
}

/// Events a slow GetContainerEvents subscriber may lag behind before it misses some.
const EVENT_BUFFER: usize = 1024;

const SNAPSHOTTER_PLUGIN: &str = "io.containerd.snapshotter.v1";
const RUNTIME_PLUGIN: &str = "io.containerd.runtime.v2";

/// The daemon's platform, as its plugins report it: the task runtime first (it is what runs
/// containers), then the configured snapshotter, then any plugin naming one.
pub fn discover_platform(plugins: &[Plugin], snapshotter: &str) -> Option<Platform> {
    let usable = |p: &&Plugin| p.init_err.is_none() && !p.platforms.is_empty();
    let runtime = plugins
        .iter()
        .filter(usable)
        .find(|p| p.r#type == RUNTIME_PLUGIN || p.r#type.starts_with("io.containerd.runtime.v2"));
    let snapshots = || {
        plugins
            .iter()
            .filter(usable)
            .find(|p| p.r#type == SNAPSHOTTER_PLUGIN && p.id == snapshotter)
    };
    let any = || plugins.iter().find(usable);
    let chosen = runtime.or_else(snapshots).or_else(any)?;
    let p = chosen.platforms.first()?;
    Some(Platform {
        os: p.os.to_ascii_lowercase(),
        architecture: oci_arch(&p.architecture),
        variant: Some(p.variant.clone()).filter(|v| !v.is_empty()),
    })
}

async fn ensure_namespace(daemon: &Daemon, namespace: &str) -> Result<()> {
    let request = daemon.request(
        CreateNamespaceRequest {
            namespace: Some(Namespace {
                name: namespace.to_string(),
                labels: HashMap::new(),
            }),
        },
        None,
    );
    match daemon.namespaces().create(request).await {
        Ok(_) => Ok(()),
        Err(status) if is_already_exists(&status) => Ok(()),
        Err(status) => Err(Error::backend(
            format!("creating namespace {namespace}"),
            status,
        )),
    }
}

#[async_trait]
impl ImageBackend for ContainerdBackend {
    #[tracing::instrument(skip(self), fields(backend = %self.info.name, image = %request.reference))]
    async fn pull_image(&self, request: &PullImage) -> Result<ImageId> {
        pull::pull(&self.inner, request).await
    }

    #[tracing::instrument(skip(self), fields(backend = %self.info.name))]
    async fn image_status(&self, image: &str) -> Result<Option<Image>> {
        images::status(&self.inner, image).await
    }

    #[tracing::instrument(skip(self), fields(backend = %self.info.name))]
    async fn list_images(&self) -> Result<Vec<Image>> {
        images::list(&self.inner).await
    }

    #[tracing::instrument(skip(self), fields(backend = %self.info.name))]
    async fn remove_image(&self, image: &str) -> Result<()> {
        images::remove(&self.inner, image).await
    }

    #[tracing::instrument(skip(self), fields(backend = %self.info.name))]
    async fn image_fs_info(&self) -> Result<Vec<FsUsage>> {
        images::fs_info(&self.inner).await
    }
}

impl ContainerdBackend {
    /// The state every operation shares.
    pub(crate) fn inner(&self) -> &Arc<Inner> {
        &self.inner
    }

    /// Whether ListPodSandbox and ListContainers now answer their records from memory
    /// (the event stream is live and a full list has completed since) rather than from a
    /// containerd Containers.List: for diagnostics and tests.
    pub fn records_from_memory(&self) -> bool {
        self.inner.records.is_warm()
    }
}

impl Backend for ContainerdBackend {
    fn info(&self) -> &BackendInfo {
        &self.info
    }

    fn subscribe_events(&self) -> Option<broadcast::Receiver<ContainerEvent>> {
        Some(self.inner.events.subscribe())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use containerd_client::types::Platform as Wire;

    fn plugin(kind: &str, id: &str, os: &str, arch: &str) -> Plugin {
        Plugin {
            r#type: kind.into(),
            id: id.into(),
            platforms: vec![Wire {
                os: os.into(),
                architecture: arch.into(),
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    #[test]
    fn platform_comes_from_the_runtime_first() {
        let plugins = [
            plugin(SNAPSHOTTER_PLUGIN, "overlayfs", "linux", "arm64"),
            plugin("io.containerd.runtime.v2", "task", "windows", "x86_64"),
        ];
        let p = discover_platform(&plugins, "overlayfs").expect("platform");
        assert_eq!(p, Platform::new("windows", "amd64"));
        let p = discover_platform(&plugins[..1], "overlayfs").expect("platform");
        assert_eq!(p, Platform::new("linux", "arm64"));
        assert_eq!(discover_platform(&[], "overlayfs"), None);
    }
}
