//! RunPodSandbox: validate, make sure the pause image is here, then network namespace, CNI,
//! pod files, the pause's containerd object and its task, undoing every step done so far
//! when a later one fails (the order containerd's CRI uses: network first, so the pause's
//! spec can name the namespace).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crimux_core::sandbox::{SandboxConfig, SandboxMetadata};
use crimux_core::{Error, PodSandboxId, PullImage, Result};
use crimux_spec::linux::{sandbox_spec, PodFiles, SandboxSpecInput};
use crimux_spec::windows::WindowsSandboxSpecInput;

use super::record::{SandboxRecord, KIND_LABEL, KIND_SANDBOX};
use super::undo::Undo;
use super::{files, network};
use crate::backend::Inner;
use crate::platform::signals::SIGKILL;
use crate::runtime::image::RunnableImage;
use crate::runtime::lock::{lock_pod, reserve_name};
use crate::runtime::{host, image, now_nanos, object, record_cache, task, windows};
use crate::RuntimeHandler;

/// How long a rollback waits for a killed pause to exit before deleting its task.
const KILL_WAIT: Duration = Duration::from_secs(10);

/// Labels that let `ctr` users (and people debugging) see whose pause this is.
const POD_NAME_LABEL: &str = "io.kubernetes.pod.name";
const POD_NAMESPACE_LABEL: &str = "io.kubernetes.pod.namespace";
const POD_UID_LABEL: &str = "io.kubernetes.pod.uid";

/// Runs the pod sandbox. The work happens in its own task: a client that goes away half
/// way must not leave half a sandbox behind, so the rollback always gets to run.
pub(crate) async fn run(
    inner: &Arc<Inner>,
    id: &PodSandboxId,
    config: &SandboxConfig,
) -> Result<()> {
    let (inner, id, config) = (Arc::clone(inner), id.clone(), config.clone());
    tokio::spawn(async move { run_owned(&inner, &id, &config).await })
        .await
        .map_err(|e| Error::Internal(format!("RunPodSandbox worker: {e}")))?
}

async fn run_owned(inner: &Arc<Inner>, id: &PodSandboxId, config: &SandboxConfig) -> Result<()> {
    check_id(id)?;
    validate_metadata(&config.metadata)?;
    let handler = find_handler(&inner.runtime.handlers, &config.runtime_handler)?;
    let state_dir = inner.runtime.state_dir.clone();
    let _name = reserve_name(&state_dir, &config.metadata)?;
    let _lock = lock_pod(&state_dir, id.as_str()).await;

    object::check_absent(inner, id.as_str(), "pod sandbox").await?;
    // From the record cache: no containerd List per create while the event stream is live.
    if let Some(other) = record_cache::sandboxes(inner)
        .await?
        .into_iter()
        .find(|r| r.config.metadata == config.metadata)
    {
        return Err(Error::AlreadyExists(format!(
            "pod sandbox {} (uid {}, attempt {}) exists already as {}",
            config.metadata.pod_name(),
            config.metadata.uid,
            config.metadata.attempt,
            other.id
        )));
    }
    let pause = pause_image(inner, &config.metadata).await?;

    let mut undo = Undo::default();
    match create(inner, id, config, &handler, &pause, &mut undo).await {
        Ok(()) => {
            tracing::info!(backend = %inner.name, sandbox = %id,
                pod = %config.metadata.pod_name(), "pod sandbox running");
            Ok(())
        }
        Err(e) => {
            tracing::warn!(backend = %inner.name, sandbox = %id, %e,
                "RunPodSandbox failed; rolling back");
            undo.run(id.as_str()).await;
            Err(e)
        }
    }
}

/// Every step, each pushing its undo as soon as it has succeeded.
async fn create<'a>(
    inner: &'a Inner,
    id: &'a PodSandboxId,
    config: &'a SandboxConfig,
    handler: &RuntimeHandler,
    pause: &RunnableImage,
    undo: &mut Undo<'a>,
) -> Result<()> {
    if windows::is_windows(inner) {
        return create_windows(inner, id, config, handler, pause, undo).await;
    }
    let state_dir: &'a Path = &inner.runtime.state_dir;
    let host_info = host::host_info(inner);

    let node_ip = inner.runtime.node_network_ip;
    let mut netns: Option<PathBuf> = None;
    let mut ips = Vec::new();
    if node_ip.is_none() && !files::host_network(config) {
        let path = network::create_netns(inner, id.as_str()).await?;
        let p = path.clone();
        undo.push("remove network namespace", async move {
            network::remove_netns(&p).await
        });
        // From here the cache entry exists even if ADD fails half way: DEL it either way.
        let p = path.clone();
        undo.push("tear down CNI", async move {
            network::detach(inner, id, &p, config).await
        });
        ips = network::attach(inner, id, &path, config).await?;
        netns = Some(path);
    }
    // `pod_network = "host"`: the pod is given the node's network, as if it had asked for
    // it, and its address is the node's. Containers read the network mode from the
    // record's config, so they follow.
    let node_networked = node_ip.map(|ip| {
        ips = vec![ip.to_string()];
        with_node_network(config)
    });
    let config: &SandboxConfig = node_networked.as_ref().unwrap_or(config);

    let pod_files = files::paths(state_dir, id.as_str(), config);
    undo.push(
        "remove sandbox files",
        files::remove(state_dir, id.as_str()),
    );
    files::create(
        &pod_files,
        config,
        &host_info.hostname,
        ips.first().map(String::as_str),
    )
    .await?;

    let record = SandboxRecord {
        id: id.clone(),
        config: config.clone(),
        created_at: now_nanos(),
        netns_path: netns.clone(),
        ips,
        runtime_type: handler.runtime_type.clone(),
        files: pod_files.clone(),
        image_id: pause.id.clone(),
    };
    let seccomp_localhost = host::localhost_seccomp(
        config
            .linux
            .as_ref()
            .and_then(|l| l.security.seccomp.as_ref()),
    )
    .await?;
    let netns_str = netns.as_ref().map(|p| p.to_string_lossy().into_owned());
    let hostname = pod_files.hostname.to_string_lossy();
    let hosts = pod_files.hosts.to_string_lossy();
    let resolv = pod_files.resolv_conf.to_string_lossy();
    let shm = pod_files.shm.as_ref().map(|p| p.to_string_lossy());
    let spec = sandbox_spec(&SandboxSpecInput {
        id: id.as_str(),
        config,
        image: &pause.config,
        image_name: &pause.name,
        netns_path: netns_str.as_deref(),
        files: PodFiles {
            hostname: Some(&hostname),
            hosts: Some(&hosts),
            resolv_conf: Some(&resolv),
            shm: shm.as_deref(),
        },
        host: &host_info,
        passwd: None,
        group: None,
        seccomp_localhost: seccomp_localhost.as_deref(),
    })?;

    let labels = sandbox_labels(config);
    object::create(
        inner,
        object::NewObject {
            id: id.as_str(),
            image_name: &pause.id,
            chain_id: &pause.chain_id,
            spec: &spec,
            runtime_type: &handler.runtime_type,
            runtime_options_json: &handler.options_json,
            labels,
            extension: record.extension()?,
        },
    )
    .await?;
    undo.push(
        "remove pause container object",
        object::remove(inner, id.as_str()),
    );

    // Empty stdio: the shim gives the pause /dev/null.
    task::create(inner, id.as_str(), &task::Stdio::default()).await?;
    undo.push("delete pause task", kill_and_delete(inner, id.as_str()));
    task::start(inner, id.as_str()).await?;
    Ok(())
}

/// The Windows steps (containerd's `sandbox_run_windows.go`): the pod's HCN namespace and
/// Windows CNI unless the pod uses the host's network, no pod files (Windows containers
/// get none), then the pause on hcsshim with a Windows spec naming the image's layer
/// folders and the namespace.
async fn create_windows<'a>(
    inner: &'a Inner,
    id: &'a PodSandboxId,
    config: &'a SandboxConfig,
    handler: &RuntimeHandler,
    pause: &RunnableImage,
    undo: &mut Undo<'a>,
) -> Result<()> {
    let mut netns: Option<PathBuf> = None;
    let mut ips = Vec::new();
    if !crimux_spec::windows::host_network(config) {
        let ns = windows::create_namespace(inner, id.as_str()).await?;
        let p = ns.clone();
        undo.push("remove HCN namespace", async move {
            network::remove_netns(&p).await
        });
        let p = ns.clone();
        undo.push("tear down CNI", async move {
            network::detach(inner, id, &p, config).await
        });
        ips = windows::attach(inner, id, &ns, config).await?;
        netns = Some(ns);
    }

    let runtime_type = windows::runtime_type(handler);
    let record = SandboxRecord {
        id: id.clone(),
        config: config.clone(),
        created_at: now_nanos(),
        netns_path: netns.clone(),
        ips,
        runtime_type: runtime_type.clone(),
        files: files::paths(&inner.runtime.state_dir, id.as_str(), config),
        image_id: pause.id.clone(),
    };
    let snapshot = object::prepare(inner, id.as_str(), &pause.chain_id).await?;
    let made = async {
        let layers = windows::layer_folders(&snapshot.mounts)?;
        let ns = netns.as_ref().map(|p| p.to_string_lossy().into_owned());
        let spec = crimux_spec::windows::sandbox_spec(&WindowsSandboxSpecInput {
            id: id.as_str(),
            config,
            image: &pause.config,
            image_name: &pause.name,
            network_namespace: ns.as_deref(),
            layer_folders: &layers,
            isolation: windows::isolation(&config.runtime_handler, &handler.options_json)?,
        })?;
        object::create_prepared(
            inner,
            object::NewObject {
                id: id.as_str(),
                image_name: &pause.id,
                chain_id: &pause.chain_id,
                spec: &spec,
                runtime_type: &runtime_type,
                runtime_options_json: &handler.options_json,
                labels: sandbox_labels(config),
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
    undo.push(
        "remove pause container object",
        object::remove(inner, id.as_str()),
    );
    task::create(inner, id.as_str(), &task::Stdio::default()).await?;
    undo.push("delete pause task", kill_and_delete(inner, id.as_str()));
    task::start(inner, id.as_str()).await?;
    Ok(())
}

fn sandbox_labels(config: &SandboxConfig) -> HashMap<String, String> {
    HashMap::from([
        (KIND_LABEL.to_string(), KIND_SANDBOX.to_string()),
        (POD_NAME_LABEL.to_string(), config.metadata.name.clone()),
        (
            POD_NAMESPACE_LABEL.to_string(),
            config.metadata.namespace.clone(),
        ),
        (POD_UID_LABEL.to_string(), config.metadata.uid.clone()),
    ])
}

/// SIGKILLs a task, waits (bounded) for it to exit and deletes it. No task is fine.
pub(crate) async fn kill_and_delete(inner: &Inner, id: &str) -> Result<()> {
    let Some(state) = task::state(inner, id).await? else {
        return Ok(());
    };
    if state.status != task::TaskStatus::Stopped {
        task::kill(inner, id, SIGKILL, true).await?;
        if task::wait(inner, id, Some(KILL_WAIT)).await?.is_none() {
            tracing::warn!(
                sandbox = id,
                "pause did not exit within {KILL_WAIT:?} of SIGKILL"
            );
        }
    }
    task::delete(inner, id).await.map(|_| ())
}

/// The pause image, pulled when absent.
async fn pause_image(inner: &Arc<Inner>, pod: &SandboxMetadata) -> Result<RunnableImage> {
    let name = &inner.runtime.sandbox_image;
    match image::runnable(inner, name).await {
        Ok(found) => return Ok(found),
        Err(e) if e.is_not_found() => {}
        Err(e) => return Err(e.context(format!("sandbox image {name}"))),
    }
    tracing::info!(backend = %inner.name, image = %name, "pulling the sandbox image");
    let request = PullImage {
        reference: name.clone(),
        credentials: None,
        pod_uid: Some(pod.uid.clone()),
        pod_name: Some(pod.pod_name()),
    };
    crate::pull::pull(inner, &request)
        .await
        .map_err(|e| e.context(format!("pulling sandbox image {name}")))?;
    image::runnable(inner, name)
        .await
        .map_err(|e| e.context(format!("sandbox image {name}")))
}

/// Sandbox ids become file names and containerd ids: one safe path component.
pub(crate) fn check_id(id: &PodSandboxId) -> Result<()> {
    object::check_id(id.as_str(), "pod sandbox")
}

fn validate_metadata(meta: &SandboxMetadata) -> Result<()> {
    for (field, value) in [
        ("name", &meta.name),
        ("uid", &meta.uid),
        ("namespace", &meta.namespace),
    ] {
        if value.is_empty() {
            return Err(Error::InvalidArgument(format!(
                "pod sandbox metadata.{field} must not be empty"
            )));
        }
    }
    Ok(())
}

/// The backend's handler called `name`; InvalidArgument naming the known ones otherwise.
pub(crate) fn find_handler(handlers: &[RuntimeHandler], name: &str) -> Result<RuntimeHandler> {
    if let Some(h) = handlers.iter().find(|h| h.name == name) {
        return Ok(h.clone());
    }
    let known: Vec<String> = handlers.iter().map(|h| format!("{:?}", h.name)).collect();
    Err(Error::InvalidArgument(format!(
        "no runtime handler {name:?} is configured; known handlers: [{}]",
        known.join(", ")
    )))
}

/// `config` with the network namespace mode set to the node's.
fn with_node_network(config: &SandboxConfig) -> SandboxConfig {
    let mut config = config.clone();
    config
        .linux
        .get_or_insert_with(Default::default)
        .security
        .namespace_options
        .network = crimux_core::sandbox::NamespaceMode::Node;
    config
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_must_be_one_safe_component() {
        let hex = "a".repeat(64);
        assert!(check_id(&PodSandboxId(hex)).is_ok());
        for bad in ["", "..", "a/b", ".x", "x y", &"a".repeat(77)] {
            assert!(check_id(&PodSandboxId(bad.into())).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn metadata_needs_name_uid_namespace() {
        let ok = SandboxMetadata {
            name: "n".into(),
            uid: "u".into(),
            namespace: "ns".into(),
            attempt: 0,
        };
        assert!(validate_metadata(&ok).is_ok());
        for clear in [
            |m: &mut SandboxMetadata| m.name.clear(),
            |m: &mut SandboxMetadata| m.uid.clear(),
            |m: &mut SandboxMetadata| m.namespace.clear(),
        ] {
            let mut m = ok.clone();
            clear(&mut m);
            let err = validate_metadata(&m).expect_err("must fail");
            assert_eq!(err.code(), tonic::Code::InvalidArgument);
        }
    }

    #[test]
    fn unknown_handlers_are_named() {
        let handlers = vec![
            RuntimeHandler::default(),
            RuntimeHandler {
                name: "kata".into(),
                ..Default::default()
            },
        ];
        assert!(find_handler(&handlers, "kata").is_ok());
        let err = find_handler(&handlers, "gvisor").expect_err("must fail");
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
        assert!(err.to_string().contains("\"kata\""), "{err}");
    }
}
