//! CreateContainer: a writable snapshot of the image, an OCI spec joining the pod's
//! namespaces, and a containerd container object carrying crimux's record. Every step is
//! undone when a later one fails.

use std::path::{Component, Path, PathBuf};

use crimux_core::container::ContainerConfig;
use crimux_core::sandbox::{NamespaceMode, SandboxConfig};
use crimux_core::status::{ContainerEventKind, ResolvedUser};
use crimux_core::{ContainerId, Error, PodSandboxId, Result};
use crimux_spec::linux::{container_spec, ContainerSpecInput, PodFiles};
use crimux_spec::windows::WindowsContainerSpecInput;

use super::record::{container_dir, ContainerRecord};
use super::{events, rootfs};
use crate::backend::Inner;
use crate::runtime::lock::{lock_container, lock_pod};
use crate::runtime::object::{self, NewObject};
use crate::runtime::{host, image, record_cache, task, windows};
use crate::sandbox::record::{load_sandbox, sandbox_pid, SandboxRecord};

/// The absolute log file: `log_path` below the pod's `log_directory`. `None` when either
/// is empty (the container's output is then discarded, as containerd does).
pub(crate) fn log_file(log_directory: &str, log_path: &str) -> Result<Option<PathBuf>> {
    if log_path.is_empty() || log_directory.is_empty() {
        return Ok(None);
    }
    let rel = Path::new(log_path);
    let escapes = rel
        .components()
        .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir));
    if escapes {
        return Err(Error::InvalidArgument(format!(
            "log_path {log_path:?} must be relative to the pod's log directory and stay in it"
        )));
    }
    if !Path::new(log_directory).is_absolute() {
        return Err(Error::InvalidArgument(format!(
            "log_directory {log_directory:?} must be absolute"
        )));
    }
    Ok(Some(Path::new(log_directory).join(rel)))
}

fn stop_signal(config: &crimux_spec::ImageConfig) -> Option<String> {
    config.stop_signal.clone().filter(|s| !s.trim().is_empty())
}

/// The pid of the container a `Target` pid namespace names.
async fn target_pid(inner: &Inner, config: &ContainerConfig) -> Result<Option<u32>> {
    let ns = config
        .linux
        .as_ref()
        .and_then(|l| l.security.as_ref())
        .map(|s| &s.namespace_options);
    let Some(ns) = ns.filter(|n| n.pid == NamespaceMode::Target) else {
        return Ok(None);
    };
    match task::state(inner, &ns.target_id).await? {
        Some(t) if t.status == task::TaskStatus::Running => Ok(Some(t.pid)),
        _ => Err(Error::NotFound(format!(
            "target container {:?} of the pid namespace is not running",
            ns.target_id
        ))),
    }
}

fn path_str(p: &Path) -> Option<&str> {
    p.to_str()
}

pub(crate) async fn create(
    inner: &Inner,
    id: &ContainerId,
    sandbox_id: &PodSandboxId,
    config: &ContainerConfig,
    sandbox_config: &SandboxConfig,
) -> Result<()> {
    object::check_id(id.as_str(), "container")?;
    if config.metadata.name.is_empty() {
        return Err(Error::InvalidArgument(
            "container metadata.name must not be empty".into(),
        ));
    }
    // The pod's lock, held until the object exists: a StopPodSandbox or RemovePodSandbox
    // of the pod runs either before (and the pod is then not ready or gone below) or after
    // (and stops or removes this container too), never in between to leave an orphan.
    // It also makes creates in one pod take turns, so the name check below cannot race.
    // The pod's lock comes before the container's, as everywhere.
    let _pod = lock_pod(&inner.runtime.state_dir, sandbox_id.as_str()).await;
    let _me = lock_container(&inner.runtime.state_dir, id.as_str()).await;
    let sandbox = load_sandbox(inner, sandbox_id).await?;
    let Some(pause_pid) = sandbox_pid(inner, sandbox_id).await? else {
        return Err(Error::FailedPrecondition(format!(
            "pod sandbox {sandbox_id} is not ready"
        )));
    };
    let log_path = if windows::is_windows(inner) {
        crimux_spec::windows::join_log_path(&sandbox_config.log_directory, &config.log_path)?
            .map(PathBuf::from)
    } else {
        log_file(&sandbox_config.log_directory, &config.log_path)?
    };

    object::check_absent(inner, id.as_str(), "container").await?;
    // From the record cache: no containerd List per create while the event stream is live.
    if let Some(other) = record_cache::containers(inner)
        .await?
        .into_iter()
        .find(|r| r.sandbox_id == *sandbox_id && r.config.metadata == config.metadata)
    {
        return Err(Error::AlreadyExists(format!(
            "container {:?} (attempt {}) exists already in pod {sandbox_id} as {}",
            config.metadata.name, config.metadata.attempt, other.id
        )));
    }
    let image = image::runnable(inner, &config.image).await.map_err(|e| {
        e.context(format!(
            "image {:?} of container {:?}",
            config.image, config.metadata.name
        ))
    })?;
    if !image.platform.os.eq_ignore_ascii_case(&inner.platform.os) {
        return Err(Error::FailedPrecondition(format!(
            "image {} is for {}, this backend runs {}",
            image.name, image.platform.os, inner.platform.os
        )));
    }
    let new = New {
        id,
        sandbox_id,
        config,
        sandbox_config,
        sandbox: &sandbox,
        image: &image,
        log_path: log_path.as_deref(),
    };
    if windows::is_windows(inner) {
        create_windows_object(inner, &new).await?;
    } else {
        create_linux_object(inner, &new, pause_pid).await?;
    }

    let dir = container_dir(&inner.runtime.state_dir, id.as_str());
    if let Err(e) = tokio::fs::create_dir_all(&dir).await {
        if let Err(undo) = object::remove(inner, id.as_str()).await {
            tracing::warn!(container = %id, %undo, "rollback: container object left behind");
        }
        return Err(Error::Internal(format!("creating {}: {e}", dir.display())));
    }
    tracing::info!(backend = %inner.name, container = %id, sandbox = %sandbox_id,
        name = %config.metadata.name, image = %image.id, "container created");
    events::emit(inner, id, sandbox_id, ContainerEventKind::Created).await;
    Ok(())
}

/// What both platforms' object creation take, resolved by [`create`].
struct New<'a> {
    id: &'a ContainerId,
    sandbox_id: &'a PodSandboxId,
    config: &'a ContainerConfig,
    sandbox_config: &'a SandboxConfig,
    sandbox: &'a SandboxRecord,
    image: &'a image::RunnableImage,
    log_path: Option<&'a Path>,
}

impl New<'_> {
    /// crimux's record of the container; `user` as the spec resolved it.
    fn record(&self, user: ResolvedUser) -> ContainerRecord {
        let config = self.config;
        ContainerRecord {
            id: self.id.clone(),
            sandbox_id: self.sandbox_id.clone(),
            config: config.clone(),
            created_at: crate::runtime::now_nanos(),
            started_at: 0,
            image_name: self.image.name.clone(),
            image_id: self.image.id.clone(),
            log_path: self
                .log_path
                .map(|p| p.to_string_lossy().into_owned())
                .unwrap_or_default(),
            user,
            stop_signal: stop_signal(&self.image.config),
            oom_killed: false,
            start_failure: None,
            resources: config.linux.as_ref().and_then(|l| l.resources.clone()),
            windows_resources: config.windows.as_ref().and_then(|w| w.resources.clone()),
            runtime_type: self.sandbox.runtime_type.clone(),
        }
    }

    /// The handler's runtime options, when the handler still names the pod's runtime.
    fn runtime_options(&self, inner: &Inner) -> String {
        inner
            .runtime
            .handlers
            .iter()
            .find(|h| h.name == self.sandbox_config.runtime_handler)
            .filter(|h| {
                // On Windows the pod's runtime type is the handler's as `runtime_type` maps it.
                h.runtime_type == self.sandbox.runtime_type
                    || (windows::is_windows(inner)
                        && windows::runtime_type(h) == self.sandbox.runtime_type)
            })
            .map(|h| h.options_json.clone())
            .unwrap_or_default()
    }
}

/// A Windows container (containerd's `buildWindowsSpec`): a writable snapshot whose layer
/// folders go into a Windows spec joining the pod's HCN namespace.
async fn create_windows_object(inner: &Inner, new: &New<'_>) -> Result<()> {
    let id = new.id;
    let options = new.runtime_options(inner);
    let isolation = windows::isolation(&new.sandbox_config.runtime_handler, &options)?;
    let labels = windows::snapshot_labels(new.config)?;
    let snapshot =
        object::prepare_labelled(inner, id.as_str(), &new.image.chain_id, labels).await?;
    let made = async {
        let layers = windows::layer_folders(&snapshot.mounts)?;
        let ns = new
            .sandbox
            .netns_path
            .as_ref()
            .map(|p| p.to_string_lossy().into_owned());
        let spec = crimux_spec::windows::container_spec(&WindowsContainerSpecInput {
            id: id.as_str(),
            sandbox_id: new.sandbox_id.as_str(),
            config: new.config,
            sandbox: new.sandbox_config,
            image: &new.image.config,
            image_name: &new.image.name,
            network_namespace: ns.as_deref(),
            layer_folders: &layers,
            isolation,
        })?;
        let record = new.record(ResolvedUser::default());
        object::create_prepared(
            inner,
            NewObject {
                id: id.as_str(),
                image_name: &new.image.id,
                chain_id: &new.image.chain_id,
                spec: &spec,
                runtime_type: &new.sandbox.runtime_type,
                runtime_options_json: &options,
                labels: record.labels(),
                extension: record.extension()?,
            },
        )
        .await
    }
    .await;
    if let Err(e) = made {
        snapshot.discard(inner).await;
        return Err(e);
    }
    snapshot.keep(inner).await;
    Ok(())
}

/// A Linux container: devices, seccomp and the user from the image's `/etc/passwd`, then
/// the spec joining the pause's namespaces.
async fn create_linux_object(inner: &Inner, new: &New<'_>, pause_pid: u32) -> Result<()> {
    let New {
        id,
        sandbox_id,
        config,
        sandbox_config,
        sandbox,
        image,
        ..
    } = *new;
    let seccomp = host::localhost_seccomp(
        config
            .linux
            .as_ref()
            .and_then(|l| l.security.as_ref())
            .and_then(|s| s.seccomp.as_ref()),
    )
    .await?;
    let devices = rootfs::devices(&config.devices)?;
    let privileged = config
        .linux
        .as_ref()
        .and_then(|l| l.security.as_ref())
        .is_some_and(|s| s.privileged);
    let host_devices = if privileged {
        rootfs::all_host_devices()
    } else {
        Vec::new()
    };
    let target = target_pid(inner, config).await?;
    let host_info = host::host_info(inner);

    let snapshot = object::prepare(inner, id.as_str(), &image.chain_id).await?;
    let made = async {
        let files = if host::is_local(inner) {
            rootfs::user_files_from(&snapshot.mounts).await?
        } else {
            rootfs::UserFiles {
                passwd: None,
                group: None,
            }
        };
        let spec = build_spec(
            id,
            sandbox_id,
            config,
            sandbox_config,
            sandbox,
            pause_pid,
            target,
            image,
            &devices,
            &host_devices,
            &host_info,
            &files,
            seccomp.as_deref(),
        )?;
        let user = spec
            .process()
            .as_ref()
            .map(|p| {
                let u = p.user();
                ResolvedUser {
                    uid: i64::from(u.uid()),
                    gid: i64::from(u.gid()),
                    supplemental_groups: u
                        .additional_gids()
                        .clone()
                        .unwrap_or_default()
                        .into_iter()
                        .map(i64::from)
                        .collect(),
                }
            })
            .unwrap_or_default();
        let record = new.record(user);
        let options = new.runtime_options(inner);
        object::create_prepared(
            inner,
            NewObject {
                id: id.as_str(),
                image_name: &image.id,
                chain_id: &image.chain_id,
                spec: &spec,
                runtime_type: &sandbox.runtime_type,
                runtime_options_json: &options,
                labels: record.labels(),
                extension: record.extension()?,
            },
        )
        .await
    }
    .await;
    if let Err(e) = made {
        snapshot.discard(inner).await;
        return Err(e);
    }
    snapshot.keep(inner).await;
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn build_spec(
    id: &ContainerId,
    sandbox_id: &PodSandboxId,
    config: &ContainerConfig,
    sandbox_config: &SandboxConfig,
    sandbox: &SandboxRecord,
    pause_pid: u32,
    target_pid: Option<u32>,
    image: &image::RunnableImage,
    devices: &[crimux_spec::linux::HostDevice],
    host_devices: &[crimux_spec::linux::HostDevice],
    host_info: &crimux_spec::HostInfo,
    files: &rootfs::UserFiles,
    seccomp: Option<&str>,
) -> Result<oci_spec::runtime::Spec> {
    let f = &sandbox.files;
    container_spec(&ContainerSpecInput {
        id: id.as_str(),
        sandbox_id: sandbox_id.as_str(),
        config,
        sandbox: sandbox_config,
        sandbox_pid: pause_pid,
        target_pid,
        image: &image.config,
        image_name: &image.name,
        netns_path: sandbox.netns_path.as_deref().and_then(path_str),
        files: PodFiles {
            hostname: path_str(&f.hostname),
            hosts: path_str(&f.hosts),
            resolv_conf: path_str(&f.resolv_conf),
            shm: f.shm.as_deref().and_then(path_str),
        },
        devices,
        host_devices,
        host: host_info,
        passwd: files.passwd.as_deref(),
        group: files.group.as_deref(),
        seccomp_localhost: seccomp,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_paths_stay_in_the_log_directory() {
        assert_eq!(
            log_file("/var/log/pods/x", "c/0.log").expect("ok"),
            Some(PathBuf::from("/var/log/pods/x/c/0.log"))
        );
        assert_eq!(log_file("", "c/0.log").expect("ok"), None);
        assert_eq!(log_file("/d", "").expect("ok"), None);
        for bad in ["../c.log", "/etc/passwd", "c/../../x", "a/../b"] {
            let err = log_file("/var/log/pods/x", bad).expect_err(bad);
            assert_eq!(err.code(), tonic::Code::InvalidArgument, "{bad}");
        }
        assert!(log_file("relative", "c.log").is_err());
    }
}
