//! CRI responses back into domain types: what a `kind = "cri"` backend (crate module
//! `forward`) receives from the crimux it forwards to. The inverse of the `*_to_proto`
//! functions in the sibling modules; each is round-trip tested against them.
//!
//! A response field the domain cannot hold (an unknown enum value, a status without its
//! status message) is an `Internal` error naming the field: the other side is a crimux, so
//! it is a bug, not bad user input. A missing optional message reads as its zero value.
//!
//! Two things a CRI response does not carry and the caller fills from its own routes:
//! the pod of a container in `ContainerStatus` (taken from the verbose `info` when there)
//! and in `ContainerStats` (taken from the pod in `PodSandboxStats`).

use std::collections::HashMap;

use k8s_cri::v1;

use crimux_core::container::{ContainerMetadata, Mount};
use crimux_core::image::{parse_image_user, ImageUser};
use crimux_core::sandbox::SandboxMetadata;
use crimux_core::status::{
    BackendStatus, ContainerEvent, ContainerEventKind, ContainerStats, ContainerStatus,
    ContainerSummary, ExecSyncOutput, ResolvedUser, SandboxStats, SandboxStatus, SandboxSummary,
};
use crimux_core::{
    ContainerId, Error, FsUsage, Image, ImageId, Platform, PodSandboxId, PullImage, Result,
};

use super::btree;
use super::container::{container_state, mount, resources, windows_resources};
use super::sandbox::{namespace_options, sandbox_state};
use super::status::{NETWORK_READY, RUNTIME_READY};

/// Reason reported when the other crimux's Status lacks one of the two required conditions.
pub const CONDITION_MISSING_REASON: &str = "ConditionMissing";

/// An error of a conversion reused from the request direction, as a response error.
fn internal(field: &str) -> impl FnOnce(Error) -> Error + '_ {
    move |e| Error::Internal(format!("{field} in the forwarded-to crimux's answer: {e}"))
}

fn unknown_enum(field: &str, value: i32) -> Error {
    Error::Internal(format!(
        "{field}: unknown value {value} in the forwarded-to crimux's answer"
    ))
}

fn missing(what: &str) -> Error {
    Error::Internal(format!(
        "the forwarded-to crimux's {what} answer has no {what} message"
    ))
}

/// `os/arch[/variant]`, as `Platform`'s `Display` writes it.
pub fn parse_platform(s: &str) -> Option<Platform> {
    let parts: Vec<&str> = s.split('/').collect();
    if parts.iter().any(|p| p.is_empty()) {
        return None;
    }
    match parts.as_slice() {
        [os, arch] => Some(Platform::new(*os, *arch)),
        [os, arch, variant] => Some(Platform {
            variant: Some((*variant).to_string()),
            ..Platform::new(*os, *arch)
        }),
        _ => None,
    }
}

/// A PullImage as the request another crimux receives (image, auth, sandbox config).
/// The pod is sent as sandbox metadata (uid, and `namespace/name` split back), which is
/// all [`super::pull_request`] reads of it.
pub fn pull_request_to_proto(request: &PullImage) -> v1::PullImageRequest {
    let sandbox_config = (request.pod_uid.is_some() || request.pod_name.is_some()).then(|| {
        let (namespace, name) = match request.pod_name.as_deref().map(|n| n.split_once('/')) {
            Some(Some((ns, name))) => (ns.to_string(), name.to_string()),
            Some(None) => (String::new(), request.pod_name.clone().unwrap_or_default()),
            None => (String::new(), String::new()),
        };
        v1::PodSandboxConfig {
            metadata: Some(v1::PodSandboxMetadata {
                name,
                uid: request.pod_uid.clone().unwrap_or_default(),
                namespace,
                attempt: 0,
            }),
            ..Default::default()
        }
    });
    v1::PullImageRequest {
        image: Some(v1::ImageSpec {
            image: request.reference.clone(),
            ..Default::default()
        }),
        auth: request.credentials.as_ref().map(|c| v1::AuthConfig {
            username: c.username.clone(),
            password: c.password.clone(),
            auth: c.auth.clone(),
            server_address: c.server_address.clone(),
            identity_token: c.identity_token.clone(),
            registry_token: c.registry_token.clone(),
        }),
        sandbox_config,
    }
}

/// What the verbose image info `verbose_image_info` writes holds for the domain.
#[derive(Default)]
struct VerboseImage {
    platform: Option<Platform>,
    config: Option<serde_json::Value>,
}

fn verbose_image(info: &HashMap<String, String>) -> Result<VerboseImage> {
    let Some(raw) = info.get("info") else {
        return Ok(VerboseImage::default());
    };
    let mut parsed: serde_json::Value =
        serde_json::from_str(raw).map_err(|e| Error::Internal(format!("image info: {e}")))?;
    let platform = match parsed.get("platform").and_then(|p| p.as_str()) {
        Some(p) => Some(parse_platform(p).ok_or_else(|| {
            Error::Internal(format!(
                "image info: platform {p:?} is not os/arch[/variant]"
            ))
        })?),
        None => None,
    };
    let config = parsed
        .get_mut("imageSpec")
        .map(serde_json::Value::take)
        .filter(|c| !c.is_null());
    Ok(VerboseImage { platform, config })
}

/// An image from an ImageStatus response. With `verbose`, the platform and config come
/// from the `info` JSON (see `verbose_image_info`); without, the platform is `fallback`
/// (the backend's own: a backend only pulls images for its platform).
///
/// The image's `User` is the config's verbatim when the config is there and agrees with
/// the response's uid/username; otherwise it is rebuilt from them (`1000:1000` reads back
/// as `1000`, which is all the CRI and crimux's container user resolution use of it).
pub fn image_from_proto(
    image: v1::Image,
    info: &HashMap<String, String>,
    fallback: &Platform,
) -> Result<Image> {
    let VerboseImage { platform, config } = verbose_image(info)?;
    let split = match (image.uid, image.username.as_str()) {
        (Some(uid), _) => ImageUser::Uid(uid.value),
        (None, "") => ImageUser::None,
        (None, name) => ImageUser::Name(name.to_string()),
    };
    let config_user = config
        .as_ref()
        .and_then(|c| c.pointer("/config/User"))
        .and_then(|u| u.as_str())
        .filter(|u| parse_image_user(u) == split);
    let user = match (config_user, split) {
        (Some(u), _) => u.to_string(),
        (None, ImageUser::None) => String::new(),
        (None, ImageUser::Uid(uid)) => uid.to_string(),
        (None, ImageUser::Name(name)) => name,
    };
    Ok(Image {
        id: ImageId(image.id),
        repo_tags: image.repo_tags,
        repo_digests: image.repo_digests,
        size: image.size,
        user,
        platform: platform.unwrap_or_else(|| fallback.clone()),
        config,
        pinned: image.pinned,
    })
}

pub fn fs_usage_from_proto(usage: v1::FilesystemUsage) -> FsUsage {
    FsUsage {
        timestamp_ns: usage.timestamp,
        mountpoint: usage.fs_id.map(|f| f.mountpoint).unwrap_or_default(),
        used_bytes: usage.used_bytes.map(|v| v.value).unwrap_or_default(),
        inodes_used: usage.inodes_used.map(|v| v.value).unwrap_or_default(),
    }
}

fn sandbox_metadata(m: Option<v1::PodSandboxMetadata>) -> SandboxMetadata {
    let m = m.unwrap_or_default();
    SandboxMetadata {
        name: m.name,
        uid: m.uid,
        namespace: m.namespace,
        attempt: m.attempt,
    }
}

fn container_metadata(m: Option<v1::ContainerMetadata>) -> ContainerMetadata {
    let m = m.unwrap_or_default();
    ContainerMetadata {
        name: m.name,
        attempt: m.attempt,
    }
}

pub fn sandbox_from_proto(sandbox: v1::PodSandbox) -> Result<SandboxSummary> {
    Ok(SandboxSummary {
        id: PodSandboxId(sandbox.id),
        metadata: sandbox_metadata(sandbox.metadata),
        state: sandbox_state(sandbox.state)
            .map_err(|_| unknown_enum("PodSandbox.state", sandbox.state))?,
        created_at: sandbox.created_at,
        labels: btree(sandbox.labels),
        annotations: btree(sandbox.annotations),
        runtime_handler: sandbox.runtime_handler,
    })
}

/// A sandbox status; the pod's IPs primary first.
fn sandbox_status(s: v1::PodSandboxStatus, info: HashMap<String, String>) -> Result<SandboxStatus> {
    let network = s.network.unwrap_or_default();
    let ips = std::iter::once(network.ip)
        .filter(|ip| !ip.is_empty())
        .chain(network.additional_ips.into_iter().map(|p| p.ip))
        .collect();
    let options = s.linux.and_then(|l| l.namespaces).and_then(|n| n.options);
    Ok(SandboxStatus {
        summary: SandboxSummary {
            id: PodSandboxId(s.id),
            metadata: sandbox_metadata(s.metadata),
            state: sandbox_state(s.state)
                .map_err(|_| unknown_enum("PodSandboxStatus.state", s.state))?,
            created_at: s.created_at,
            labels: btree(s.labels),
            annotations: btree(s.annotations),
            runtime_handler: s.runtime_handler,
        },
        ips,
        namespace_options: namespace_options(options)
            .map_err(internal("PodSandboxStatus.linux.namespaces"))?,
        info: btree(info),
    })
}

/// A PodSandboxStatus response, `info` (verbose) included. Its container statuses are
/// not part of the domain's sandbox status (the backend lists them on their own).
pub fn sandbox_status_from_proto(response: v1::PodSandboxStatusResponse) -> Result<SandboxStatus> {
    let status = response.status.ok_or_else(|| missing("PodSandboxStatus"))?;
    sandbox_status(status, response.info)
}

/// The image a container names, and its image id (`image_ref`, else the newer `image_id`).
fn container_images(
    image: Option<v1::ImageSpec>,
    image_ref: String,
    image_id: String,
) -> (String, String) {
    let image = image.map(|i| i.image).unwrap_or_default();
    let image_ref = if image_ref.is_empty() {
        image_id
    } else {
        image_ref
    };
    (image, image_ref)
}

pub fn container_from_proto(container: v1::Container) -> Result<ContainerSummary> {
    let (image, image_ref) =
        container_images(container.image, container.image_ref, container.image_id);
    Ok(ContainerSummary {
        id: ContainerId(container.id),
        sandbox_id: PodSandboxId(container.pod_sandbox_id),
        metadata: container_metadata(container.metadata),
        image,
        image_ref,
        state: container_state(container.state)
            .map_err(|_| unknown_enum("Container.state", container.state))?,
        created_at: container.created_at,
        labels: btree(container.labels),
        annotations: btree(container.annotations),
    })
}

/// The pod of a container, from its verbose info (`sandboxID`, as crimux's containerd
/// backend writes it); empty when not verbose.
fn sandbox_of(info: &HashMap<String, String>) -> String {
    info.get("info")
        .and_then(|raw| serde_json::from_str::<serde_json::Value>(raw).ok())
        .and_then(|v| {
            v.get("sandboxID")
                .and_then(|s| s.as_str())
                .map(String::from)
        })
        .unwrap_or_default()
}

/// A container status; `sandbox_id` is the caller's to give (the proto has no field).
fn container_status(
    s: v1::ContainerStatus,
    sandbox_id: String,
    info: HashMap<String, String>,
) -> Result<ContainerStatus> {
    let (image, image_ref) = container_images(s.image, s.image_ref, s.image_id);
    let resources_msg = s.resources.unwrap_or_default();
    let windows_resources = resources_msg
        .windows
        .map(windows_resources)
        .transpose()
        .map_err(internal("ContainerStatus.resources.windows"))?;
    let mounts = s
        .mounts
        .into_iter()
        .map(|m| mount(m).map_err(internal("ContainerStatus.mounts")))
        .collect::<Result<Vec<Mount>>>()?;
    Ok(ContainerStatus {
        summary: ContainerSummary {
            id: ContainerId(s.id),
            sandbox_id: PodSandboxId(sandbox_id),
            metadata: container_metadata(s.metadata),
            image,
            image_ref,
            state: container_state(s.state)
                .map_err(|_| unknown_enum("ContainerStatus.state", s.state))?,
            created_at: s.created_at,
            labels: btree(s.labels),
            annotations: btree(s.annotations),
        },
        started_at: s.started_at,
        finished_at: s.finished_at,
        exit_code: s.exit_code,
        reason: s.reason,
        message: s.message,
        mounts,
        log_path: s.log_path,
        resources: resources_msg.linux.map(resources),
        windows_resources,
        user: s.user.and_then(|u| u.linux).map(|u| ResolvedUser {
            uid: u.uid,
            gid: u.gid,
            supplemental_groups: u.supplemental_groups,
        }),
        info: btree(info),
    })
}

/// A ContainerStatus response, `info` (verbose) included. The container's pod is read from
/// the verbose info; without it `summary.sandbox_id` is empty and the caller fills it.
pub fn container_status_from_proto(
    response: v1::ContainerStatusResponse,
) -> Result<ContainerStatus> {
    let status = response.status.ok_or_else(|| missing("ContainerStatus"))?;
    let sandbox_id = sandbox_of(&response.info);
    container_status(status, sandbox_id, response.info)
}

/// Container stats; `sandbox_id` is empty (the proto has no field): the caller fills it.
pub fn container_stats_from_proto(stats: v1::ContainerStats) -> Result<ContainerStats> {
    let attributes = stats.attributes.ok_or_else(|| {
        Error::Internal("the forwarded-to crimux's ContainerStats have no attributes".into())
    })?;
    let cpu = stats.cpu.unwrap_or_default();
    let memory = stats.memory.unwrap_or_default();
    let layer = stats.writable_layer.unwrap_or_default();
    let timestamp = [cpu.timestamp, memory.timestamp, layer.timestamp]
        .into_iter()
        .find(|t| *t != 0)
        .unwrap_or_default();
    Ok(ContainerStats {
        id: ContainerId(attributes.id),
        sandbox_id: PodSandboxId(String::new()),
        metadata: container_metadata(attributes.metadata),
        labels: btree(attributes.labels),
        annotations: btree(attributes.annotations),
        timestamp,
        cpu_usage_core_nanos: value(cpu.usage_core_nano_seconds),
        memory_working_set_bytes: value(memory.working_set_bytes),
        memory_usage_bytes: value(memory.usage_bytes),
        writable_layer_bytes: value(layer.used_bytes),
        writable_layer_inodes: value(layer.inodes_used),
        writable_layer_mountpoint: layer.fs_id.map(|f| f.mountpoint).unwrap_or_default(),
    })
}

fn value(v: Option<v1::UInt64Value>) -> u64 {
    v.map(|v| v.value).unwrap_or_default()
}

/// Pod stats as crimux reports them (the Linux shape); each container's `sandbox_id` is
/// the pod's.
pub fn sandbox_stats_from_proto(stats: v1::PodSandboxStats) -> Result<SandboxStats> {
    let attributes = stats.attributes.ok_or_else(|| {
        Error::Internal("the forwarded-to crimux's PodSandboxStats have no attributes".into())
    })?;
    let linux = stats.linux.unwrap_or_default();
    let cpu = linux.cpu.unwrap_or_default();
    let memory = linux.memory.unwrap_or_default();
    let id = PodSandboxId(attributes.id);
    let containers = linux
        .containers
        .into_iter()
        .map(|c| {
            container_stats_from_proto(c).map(|c| ContainerStats {
                sandbox_id: id.clone(),
                ..c
            })
        })
        .collect::<Result<_>>()?;
    Ok(SandboxStats {
        metadata: sandbox_metadata(attributes.metadata),
        labels: btree(attributes.labels),
        annotations: btree(attributes.annotations),
        timestamp: if cpu.timestamp != 0 {
            cpu.timestamp
        } else {
            memory.timestamp
        },
        cpu_usage_core_nanos: value(cpu.usage_core_nano_seconds),
        memory_working_set_bytes: value(memory.working_set_bytes),
        containers,
        id,
    })
}

pub fn exec_sync_from_proto(response: v1::ExecSyncResponse) -> ExecSyncOutput {
    ExecSyncOutput {
        stdout: response.stdout,
        stderr: response.stderr,
        exit_code: response.exit_code,
    }
}

/// The readiness of the crimux behind a forwarding backend, from its Status response
/// (RuntimeReady and NetworkReady conditions). A missing condition is not ready, with
/// reason [`CONDITION_MISSING_REASON`]. The runtime condition's message has no place in
/// the domain and is dropped.
pub fn backend_status_from_proto(response: v1::StatusResponse) -> BackendStatus {
    let conditions = response.status.map(|s| s.conditions).unwrap_or_default();
    let find = |kind: &str| conditions.iter().find(|c| c.r#type == kind);
    let (runtime_ready, runtime_reason) = match find(RUNTIME_READY) {
        Some(c) => (c.status, c.reason.clone()),
        None => (false, CONDITION_MISSING_REASON.to_string()),
    };
    let (network_ready, network_reason, network_message) = match find(NETWORK_READY) {
        Some(c) => (c.status, c.reason.clone(), c.message.clone()),
        None => (
            false,
            CONDITION_MISSING_REASON.to_string(),
            format!("the forwarded-to crimux reports no {NETWORK_READY} condition"),
        ),
    };
    BackendStatus {
        runtime_ready,
        runtime_reason,
        network_ready,
        network_reason,
        network_message,
    }
}

/// The platform of the other crimux's primary backend (else its first), from a verbose
/// Status response's `info` (key `backends`: each entry's `platform`, or its status's, as
/// the runtime service and `backend_statuses_json` write them). `None` if absent.
pub fn platform_from_status_info(info: &HashMap<String, String>) -> Option<Platform> {
    let backends: serde_json::Value = serde_json::from_str(info.get("backends")?).ok()?;
    let backends = backends.as_array()?;
    let entry = backends
        .iter()
        .find(|b| b.get("role").and_then(|r| r.as_str()) == Some("primary"))
        .or_else(|| backends.first())?;
    let platform = entry
        .get("platform")
        .or_else(|| entry.pointer("/status/platform"))?
        .as_str()?;
    parse_platform(platform)
}

/// A container event; `None` for event types crimux does not model (a newer CRI's), so
/// one such event does not end the stream. The containers' pod is the event's sandbox's.
pub fn event_from_proto(event: v1::ContainerEventResponse) -> Result<Option<ContainerEvent>> {
    let kind = match v1::ContainerEventType::try_from(event.container_event_type) {
        Ok(v1::ContainerEventType::ContainerCreatedEvent) => ContainerEventKind::Created,
        Ok(v1::ContainerEventType::ContainerStartedEvent) => ContainerEventKind::Started,
        Ok(v1::ContainerEventType::ContainerStoppedEvent) => ContainerEventKind::Stopped,
        Ok(v1::ContainerEventType::ContainerDeletedEvent) => ContainerEventKind::Deleted,
        Err(_) => {
            tracing::debug!(
                container_id = %event.container_id,
                event_type = event.container_event_type,
                "ignoring a container event type crimux does not model"
            );
            return Ok(None);
        }
    };
    let sandbox = event
        .pod_sandbox_status
        .map(|s| sandbox_status(s, HashMap::new()))
        .transpose()?;
    let sandbox_id = sandbox
        .as_ref()
        .map(|s| s.summary.id.0.clone())
        .unwrap_or_default();
    let containers = event
        .containers_statuses
        .into_iter()
        .map(|c| container_status(c, sandbox_id.clone(), HashMap::new()))
        .collect::<Result<_>>()?;
    Ok(Some(ContainerEvent {
        container_id: ContainerId(event.container_id),
        kind,
        created_at: event.created_at,
        sandbox,
        containers,
    }))
}

#[cfg(test)]
#[path = "from_proto_tests.rs"]
mod tests;
