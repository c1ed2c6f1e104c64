//! The event monitor: turns containerd's task exits and OOM kills into crimux state and
//! CRI container events.
//!
//! One background task per backend subscribes to containerd's event stream (task exits and
//! OOMs of our namespace). An OOM is recorded durably on the container's object, so
//! ContainerStatus reports `OOMKilled` even after a crimux restart; the exit of a
//! container's main process becomes a STOPPED event for GetContainerEvents subscribers.
//! Events are handled one at a time, in order, so an OOM is recorded before the exit it
//! caused is reported. When the stream ends (containerd restarted) the monitor subscribes
//! again with backoff; it stops once the backend is dropped (it only holds a `Weak`).
//!
//! The monitor also keeps the task mirror lists answer from (`runtime/task_cache.rs`):
//! every `/tasks/*` event marks its task for re-reading, and the stream's state decides
//! whether the mirror can be trusted. containerd sends a subscription's response headers
//! with its first event only, so while subscribing the monitor provokes one (a no-op
//! namespace label update, [`PROBE_LABEL`]); the subscription is known to be live once
//! anything arrives, and the mirror is resynced from then on. A stream that ends or fails
//! turns the mirror cold until the next resync.
//!
//! The record mirror (`runtime/record_cache.rs`) is kept the same way: every
//! `/containers/*` event (crimux's own writes, and any other client's) marks its object
//! for re-reading, and the stream's state decides whether it can be trusted.

use std::sync::{Arc, Weak};
use std::time::Duration;

use containerd_client::events::{
    ContainerCreate, ContainerDelete, ContainerUpdate, TaskCreate, TaskDelete, TaskExit, TaskOom,
    TaskPaused, TaskResumed, TaskStart,
};
use containerd_client::services::v1::{Namespace, SubscribeRequest, UpdateNamespaceRequest};
use containerd_client::types::Envelope;
use crimux_core::status::ContainerEventKind;
use crimux_core::{ContainerId, Result};
use prost::Message;

use crate::backend::Inner;
use crate::container::events;
use crate::container::record::{self, ContainerRecord};
use crate::runtime::lock::lock_container;
use crate::runtime::task::nanos;

const TOPIC_EXIT: &str = "/tasks/exit";
const TOPIC_OOM: &str = "/tasks/oom";
/// Task changes that only refresh the task mirror.
const TOPICS_CHANGED: [&str; 5] = [
    "/tasks/create",
    "/tasks/start",
    "/tasks/delete",
    "/tasks/paused",
    "/tasks/resumed",
];
/// Container object changes, which refresh the record mirror.
const TOPICS_OBJECTS: [&str; 3] = [
    "/containers/create",
    "/containers/update",
    "/containers/delete",
];
/// The event the monitor provokes while subscribing; see the module doc.
const TOPIC_PROBE: &str = "/namespaces/update";
/// The namespace label the probe "updates": set to the empty value, which containerd
/// treats as removing a label that is not there, so nothing changes but the event.
pub(crate) const PROBE_LABEL: &str = "crimux.io/event-probe";
/// How often the probe is repeated while the subscription has not answered.
const PROBE_EVERY: Duration = Duration::from_millis(300);
const FIRST_BACKOFF: Duration = Duration::from_millis(200);
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// How long recording an OOM waits for the container's lock.
const LOCK_WAIT: Duration = Duration::from_secs(3);
/// How often an idle monitor checks whether its backend is gone.
const ALIVE_CHECK: Duration = Duration::from_secs(2);

/// Starts the monitor of `inner`'s daemon; it ends when the last `Arc<Inner>` is dropped.
pub(crate) fn spawn(inner: &Arc<Inner>) {
    let namespace = inner.daemon.namespace().to_string();
    let weak = Arc::downgrade(inner);
    tokio::spawn(run(weak, namespace));
}

/// What the monitor acts on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum TaskEvent {
    /// The main process of task `container_id` exited.
    Exited {
        container_id: String,
        code: u32,
        exited_at: i64,
    },
    Oom {
        container_id: String,
    },
}

/// containerd filters: task exits and OOMs in our namespace (a filter list is an OR, the
/// comma inside one filter an AND).
pub(crate) fn filters(namespace: &str) -> Vec<String> {
    [TOPIC_EXIT, TOPIC_OOM]
        .iter()
        .chain(TOPICS_CHANGED.iter())
        .chain(TOPICS_OBJECTS.iter())
        .chain(std::iter::once(&TOPIC_PROBE))
        .map(|topic| format!("topic==\"{topic}\",namespace==\"{namespace}\""))
        .collect()
}

/// The container whose task an event in our namespace says changed: every `/tasks/*`
/// event of a task's main process (an exec's exit or delete changes no task state).
pub(crate) fn changed_task(envelope: &Envelope, namespace: &str) -> Option<String> {
    if envelope.namespace != namespace {
        return None;
    }
    let value = envelope.event.as_ref()?.value.as_slice();
    match envelope.topic.as_str() {
        TOPIC_EXIT => TaskExit::decode(value)
            .ok()
            .filter(|e| e.id == e.container_id)
            .map(|e| e.container_id),
        "/tasks/create" => TaskCreate::decode(value).ok().map(|e| e.container_id),
        "/tasks/start" => TaskStart::decode(value).ok().map(|e| e.container_id),
        "/tasks/delete" => TaskDelete::decode(value)
            .ok()
            .filter(|e| e.id.is_empty() || e.id == e.container_id)
            .map(|e| e.container_id),
        "/tasks/paused" => TaskPaused::decode(value).ok().map(|e| e.container_id),
        "/tasks/resumed" => TaskResumed::decode(value).ok().map(|e| e.container_id),
        _ => None,
    }
    .filter(|id| !id.is_empty())
}

/// The container object an event in our namespace says was created, updated or deleted.
pub(crate) fn changed_object(envelope: &Envelope, namespace: &str) -> Option<String> {
    if envelope.namespace != namespace {
        return None;
    }
    let value = envelope.event.as_ref()?.value.as_slice();
    match envelope.topic.as_str() {
        "/containers/create" => ContainerCreate::decode(value).ok().map(|e| e.id),
        "/containers/update" => ContainerUpdate::decode(value).ok().map(|e| e.id),
        "/containers/delete" => ContainerDelete::decode(value).ok().map(|e| e.id),
        _ => None,
    }
    .filter(|id| !id.is_empty())
}

/// Provokes a `/namespaces/update` event in our namespace (see [`PROBE_LABEL`]).
async fn probe(inner: &Inner) {
    let request = inner.daemon.request(
        UpdateNamespaceRequest {
            namespace: Some(Namespace {
                name: inner.daemon.namespace().to_string(),
                labels: std::collections::HashMap::new(),
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec![format!("labels.{PROBE_LABEL}")],
            }),
        },
        None,
    );
    if let Err(status) = inner.daemon.namespaces().update(request).await {
        tracing::debug!(backend = %inner.name, error = %status, "event stream probe failed");
    }
}

/// Decodes an envelope into the event we act on; others (an exec's exit, another
/// namespace, an unknown payload) are `None`.
pub(crate) fn decode(envelope: &Envelope, namespace: &str) -> Option<TaskEvent> {
    if envelope.namespace != namespace {
        return None;
    }
    let any = envelope.event.as_ref()?;
    match envelope.topic.as_str() {
        TOPIC_EXIT if any.type_url.ends_with("containerd.events.TaskExit") => {
            let exit = TaskExit::decode(any.value.as_slice()).ok()?;
            // An exec process exits with its own id; the task's main process carries the
            // container's id.
            (exit.id == exit.container_id).then(|| TaskEvent::Exited {
                exited_at: nanos(exit.exited_at.as_ref()),
                container_id: exit.container_id,
                code: exit.exit_status,
            })
        }
        TOPIC_OOM if any.type_url.ends_with("containerd.events.TaskOOM") => {
            let oom = TaskOom::decode(any.value.as_slice()).ok()?;
            Some(TaskEvent::Oom {
                container_id: oom.container_id,
            })
        }
        _ => None,
    }
}

async fn run(weak: Weak<Inner>, namespace: String) {
    let mut backoff = FIRST_BACKOFF;
    loop {
        let Some(inner) = weak.upgrade() else { return };
        let request = inner.daemon.request(
            SubscribeRequest {
                filters: filters(&namespace),
            },
            None,
        );
        let subscribed = subscribe(&inner, request).await;
        let backend = inner.name.clone();
        match subscribed {
            Ok(stream) => {
                // Something came through: the subscription is live, events are not lost
                // from here on, and a resync can make the task mirror trustworthy.
                inner.tasks.stream_up();
                inner.records.stream_up();
                drop(inner);
                tracing::debug!(%backend, "subscribed to containerd task events");
                backoff = FIRST_BACKOFF;
                let more = follow(&weak, stream.into_inner(), &namespace).await;
                if let Some(inner) = weak.upgrade() {
                    inner.tasks.stream_down();
                    inner.records.stream_down();
                }
                if !more {
                    return;
                }
                tracing::info!(%backend, "containerd event stream ended; subscribing again");
            }
            Err(status) => {
                inner.tasks.stream_down();
                inner.records.stream_down();
                drop(inner);
                tracing::warn!(%backend, error = %status, ?backoff, "subscribing to containerd events");
            }
        }
        if !sleep_while_alive(&weak, backoff).await {
            return;
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// Subscribes, provoking an event until containerd answers (it sends the response
/// headers with the first event).
async fn subscribe(
    inner: &Inner,
    request: tonic::Request<SubscribeRequest>,
) -> std::result::Result<tonic::Response<tonic::Streaming<Envelope>>, tonic::Status> {
    let mut client = inner.daemon.events();
    let call = client.subscribe(request);
    tokio::pin!(call);
    let mut probes = tokio::time::interval(PROBE_EVERY);
    loop {
        tokio::select! {
            answer = &mut call => return answer,
            _ = probes.tick() => probe(inner).await,
        }
    }
}

/// Handles events until the stream ends (`true`) or the backend is dropped (`false`).
async fn follow(
    weak: &Weak<Inner>,
    mut stream: tonic::Streaming<Envelope>,
    namespace: &str,
) -> bool {
    let mut alive = tokio::time::interval(ALIVE_CHECK);
    loop {
        let envelope = tokio::select! {
            next = stream.message() => next,
            _ = alive.tick() => {
                if weak.strong_count() == 0 {
                    return false;
                }
                continue;
            }
        };
        let envelope = match envelope {
            Ok(Some(envelope)) => envelope,
            Ok(None) => return true,
            Err(status) => {
                tracing::warn!(error = %status, "containerd event stream failed");
                return true;
            }
        };
        let changed = changed_task(&envelope, namespace);
        let event = decode(&envelope, namespace);
        let object = changed_object(&envelope, namespace);
        if changed.is_none() && event.is_none() && object.is_none() {
            continue;
        }
        let Some(inner) = weak.upgrade() else {
            return false;
        };
        if let Some(id) = object {
            inner.records.mark(&id);
        }
        // Marked before the STOPPED event goes out, so a list it prompts sees the exit.
        if let Some(id) = changed {
            inner.tasks.mark(&id);
        }
        if let Some(event) = event {
            handle(&inner, event).await;
        }
    }
}

async fn sleep_while_alive(weak: &Weak<Inner>, pause: Duration) -> bool {
    tokio::time::sleep(pause).await;
    weak.strong_count() > 0
}

async fn handle(inner: &Inner, event: TaskEvent) {
    match event {
        TaskEvent::Oom { container_id } => {
            if container_record(inner, &container_id).await.is_none() {
                return;
            }
            tracing::info!(backend = %inner.name, container = %container_id, "container OOM-killed");
            if let Err(e) = record_oom(inner, &container_id).await {
                tracing::warn!(backend = %inner.name, container = %container_id, error = %e, "recording OOM kill");
            }
        }
        TaskEvent::Exited {
            container_id,
            code,
            exited_at,
        } => {
            let Some(rec) = container_record(inner, &container_id).await else {
                return;
            };
            tracing::debug!(backend = %inner.name, container = %container_id, code, exited_at, "container exited");
            events::emit(inner, &rec.id, &rec.sandbox_id, ContainerEventKind::Stopped).await;
        }
    }
}

/// The record of crimux container `id`; `None` for anything else (a sandbox's pause,
/// someone else's container, one removed meanwhile).
async fn container_record(inner: &Inner, id: &str) -> Option<ContainerRecord> {
    match record::record(inner, &ContainerId::from(id)).await {
        Ok(r) => Some(r),
        Err(e) if e.is_not_found() => None,
        Err(e) => {
            tracing::warn!(backend = %inner.name, container = id, error = %e, "reading container record");
            None
        }
    }
}

/// Marks the container OOM-killed in its record, where ContainerStatus reads it. The
/// container's lock keeps a concurrent start or update from writing back an older record;
/// a stop can hold it for its whole grace period (and writes no record), so after
/// [`LOCK_WAIT`] we go ahead rather than hold up every other event.
async fn record_oom(inner: &Inner, id: &str) -> Result<()> {
    let id = ContainerId::from(id);
    let locked = tokio::time::timeout(
        LOCK_WAIT,
        lock_container(&inner.runtime.state_dir, id.as_str()),
    );
    let _me = match locked.await {
        Ok(held) => Some(held),
        Err(_) => {
            tracing::debug!(container = %id, "container busy; recording its OOM kill unlocked");
            None
        }
    };
    let mut rec = record::record(inner, &id).await?;
    if !rec.oom_killed {
        rec.oom_killed = true;
        record::save(inner, &rec).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn envelope(topic: &str, type_url: &str, value: Vec<u8>, namespace: &str) -> Envelope {
        Envelope {
            timestamp: None,
            namespace: namespace.into(),
            topic: topic.into(),
            event: Some(prost_types::Any {
                type_url: type_url.into(),
                value,
            }),
        }
    }

    fn exit(container: &str, process: &str) -> Vec<u8> {
        TaskExit {
            container_id: container.into(),
            id: process.into(),
            pid: 42,
            exit_status: 137,
            exited_at: Some(prost_types::Timestamp {
                seconds: 3,
                nanos: 4,
            }),
        }
        .encode_to_vec()
    }

    #[test]
    fn main_process_exits_and_ooms_are_decoded() {
        let e = envelope(
            TOPIC_EXIT,
            "containerd.events.TaskExit",
            exit("c1", "c1"),
            "ns",
        );
        assert_eq!(
            decode(&e, "ns"),
            Some(TaskEvent::Exited {
                container_id: "c1".into(),
                code: 137,
                exited_at: 3_000_000_004,
            })
        );
        let oom = TaskOom {
            container_id: "c2".into(),
        }
        .encode_to_vec();
        let e = envelope(TOPIC_OOM, "containerd.events.TaskOOM", oom, "ns");
        assert_eq!(
            decode(&e, "ns"),
            Some(TaskEvent::Oom {
                container_id: "c2".into()
            })
        );
    }

    #[test]
    fn exec_exits_other_namespaces_and_garbage_are_ignored() {
        let exec = envelope(
            TOPIC_EXIT,
            "containerd.events.TaskExit",
            exit("c1", "crimux-exec-1"),
            "ns",
        );
        assert_eq!(decode(&exec, "ns"), None);
        let other = envelope(
            TOPIC_EXIT,
            "containerd.events.TaskExit",
            exit("c1", "c1"),
            "x",
        );
        assert_eq!(decode(&other, "ns"), None);
        let garbage = envelope(TOPIC_EXIT, "containerd.events.TaskExit", vec![0xff], "ns");
        assert_eq!(decode(&garbage, "ns"), None);
        let wrong = envelope(
            TOPIC_EXIT,
            "containerd.events.TaskCreate",
            exit("c", "c"),
            "ns",
        );
        assert_eq!(decode(&wrong, "ns"), None);
    }

    #[test]
    fn filters_select_topics_in_our_namespace() {
        let f = filters("k8s.io");
        assert_eq!(
            &f[..2],
            [
                "topic==\"/tasks/exit\",namespace==\"k8s.io\"",
                "topic==\"/tasks/oom\",namespace==\"k8s.io\"",
            ]
        );
        for topic in [
            "/tasks/create",
            "/tasks/start",
            "/tasks/delete",
            "/containers/create",
            "/containers/update",
            "/containers/delete",
            TOPIC_PROBE,
        ] {
            assert!(
                f.contains(&format!("topic==\"{topic}\",namespace==\"k8s.io\"")),
                "{topic}: {f:?}"
            );
        }
    }

    #[test]
    fn task_changes_mark_their_container() {
        let create = TaskCreate {
            container_id: "c".into(),
            ..Default::default()
        }
        .encode_to_vec();
        let delete_exec = TaskDelete {
            container_id: "c".into(),
            id: "exec-1".into(),
            ..Default::default()
        }
        .encode_to_vec();
        let delete = TaskDelete {
            container_id: "c".into(),
            ..Default::default()
        }
        .encode_to_vec();
        // (topic, payload, namespace, marked container)
        let cases = [
            ("/tasks/create", create.clone(), "ns", Some("c")),
            ("/tasks/create", create, "other", None),
            ("/tasks/exit", exit("c", "c"), "ns", Some("c")),
            ("/tasks/exit", exit("c", "exec-1"), "ns", None),
            ("/tasks/delete", delete, "ns", Some("c")),
            ("/tasks/delete", delete_exec, "ns", None),
            (TOPIC_PROBE, Vec::new(), "ns", None),
        ];
        for (topic, value, ns, want) in cases {
            let e = envelope(topic, "x", value, ns);
            assert_eq!(changed_task(&e, "ns").as_deref(), want, "{topic} in {ns}");
        }
    }

    #[test]
    fn object_changes_mark_their_object() {
        let create = ContainerCreate {
            id: "c".into(),
            ..Default::default()
        }
        .encode_to_vec();
        let update = ContainerUpdate {
            id: "u".into(),
            ..Default::default()
        }
        .encode_to_vec();
        let delete = ContainerDelete { id: "d".into() }.encode_to_vec();
        // (topic, payload, namespace, marked object)
        let cases = [
            ("/containers/create", create.clone(), "ns", Some("c")),
            ("/containers/create", create, "other", None),
            ("/containers/update", update, "ns", Some("u")),
            ("/containers/delete", delete.clone(), "ns", Some("d")),
            ("/tasks/delete", delete, "ns", None),
            ("/containers/delete", vec![0xff], "ns", None),
            ("/containers/delete", Vec::new(), "ns", None),
        ];
        for (topic, value, ns, want) in cases {
            let e = envelope(topic, "x", value, ns);
            assert_eq!(changed_object(&e, "ns").as_deref(), want, "{topic} in {ns}");
        }
    }
}
