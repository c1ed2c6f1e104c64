//! The record mirror on a real containerd 1.6: ListPodSandbox and ListContainers answer
//! from memory once the event stream is live, yet follow every change: crimux's own
//! writes at once, another client's through containerd's `/containers/*` events, and a
//! containerd restart (the mirror turns cold, lists read everything, then it refills).
//! Needs root, CNI plugins in /usr/lib/cni, umoci, skopeo and busybox-static.
#![cfg(target_os = "linux")]

mod common;

use std::future::Future;
use std::time::{Duration, Instant};

use common::containers::{new_container_id, ContainerWorld};
use common::sandbox::new_id as new_sandbox_id;
use containerd_client::services::v1::containers_client::ContainersClient;
use containerd_client::services::v1::{
    Container, CreateContainerRequest, DeleteContainerRequest, GetContainerRequest,
    UpdateContainerRequest,
};
use crimux_containerd::ContainerdBackend;
use crimux_core::container::Resources;
use crimux_core::status::{ContainerEventKind, ContainerState, ContainerSummary, SandboxState};
use crimux_core::{ContainerBackend, ContainerId, PodSandboxId, SandboxBackend};
use tonic::transport::Channel;
use tonic::Request;

const SANDBOX_EXTENSION: &str = "crimux.io/sandbox";
const CONTAINER_EXTENSION: &str = "crimux.io/container";

fn ns<T>(message: T) -> Request<T> {
    let mut r = Request::new(message);
    r.metadata_mut().insert(
        "containerd-namespace",
        common::NAMESPACE.parse().expect("header"),
    );
    r
}

async fn raw_get(raw: &Channel, id: &str) -> Container {
    ContainersClient::new(raw.clone())
        .get(ns(GetContainerRequest { id: id.into() }))
        .await
        .expect("raw get")
        .into_inner()
        .container
        .expect("container")
}

/// Another client's create: a copy of object `from` named `to`, with crimux's labels
/// (`keep_labels`) or none, its record (in extension `ext`) renamed too, and no snapshot.
async fn raw_copy(raw: &Channel, from: &str, to: &str, ext: &str, keep_labels: bool) {
    let mut c = raw_get(raw, from).await;
    c.id = to.into();
    c.snapshot_key.clear();
    c.snapshotter.clear();
    c.created_at = None;
    c.updated_at = None;
    if !keep_labels {
        c.labels.clear();
    }
    let any = c.extensions.get_mut(ext).expect("record extension");
    let mut record: serde_json::Value = serde_json::from_slice(&any.value).expect("record json");
    record["id"] = to.into();
    any.value = serde_json::to_vec(&record).expect("json");
    ContainersClient::new(raw.clone())
        .create(ns(CreateContainerRequest { container: Some(c) }))
        .await
        .expect("raw create");
}

/// Another client's update: the CRI labels in the record of object `id`.
async fn raw_relabel(raw: &Channel, id: &str, ext: &str, key: &str, value: &str) {
    let mut c = raw_get(raw, id).await;
    let any = c.extensions.get_mut(ext).expect("record extension");
    let mut record: serde_json::Value = serde_json::from_slice(&any.value).expect("record json");
    record["config"]["labels"][key] = value.into();
    any.value = serde_json::to_vec(&record).expect("json");
    ContainersClient::new(raw.clone())
        .update(ns(UpdateContainerRequest {
            container: Some(c),
            update_mask: Some(prost_types::FieldMask {
                paths: vec![format!("extensions.{ext}")],
            }),
        }))
        .await
        .expect("raw update");
}

async fn raw_delete(raw: &Channel, id: &str) {
    ContainersClient::new(raw.clone())
        .delete(ns(DeleteContainerRequest { id: id.into() }))
        .await
        .expect("raw delete");
}

async fn containers(b: &ContainerdBackend) -> Vec<ContainerSummary> {
    b.list_containers().await.expect("ListContainers")
}

async fn container(b: &ContainerdBackend, id: &ContainerId) -> Option<ContainerSummary> {
    containers(b).await.into_iter().find(|c| &c.id == id)
}

async fn pod_state(b: &ContainerdBackend, id: &PodSandboxId) -> Option<SandboxState> {
    b.list_pod_sandboxes()
        .await
        .expect("ListPodSandbox")
        .into_iter()
        .find(|s| &s.id == id)
        .map(|s| s.state)
}

/// Polls `check` until it holds, for at most 20 s.
async fn wait_until<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(20);
    while !check().await {
        assert!(Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_from_memory_follow_every_change() {
    let mut world = ContainerWorld::new().await;
    let b = world.backend.clone();
    let raw = world.pods.channel.clone();

    let pod = world.pod("rc");
    let sid = new_sandbox_id();
    b.run_pod_sandbox(&sid, &pod).await.expect("run pod");
    assert_eq!(pod_state(&b, &sid).await, Some(SandboxState::Ready));
    // The mirror warms once the event stream is live and a list has read everything.
    wait_until("the mirror warms", || async {
        pod_state(&b, &sid).await.is_some() && b.records_from_memory()
    })
    .await;

    // crimux's own writes show in the very next list, from memory.
    let sid2 = new_sandbox_id();
    b.run_pod_sandbox(&sid2, &world.pod("rc2"))
        .await
        .expect("run pod 2");
    assert_eq!(pod_state(&b, &sid2).await, Some(SandboxState::Ready));
    b.remove_pod_sandbox(&sid2).await.expect("remove pod 2");
    assert_eq!(pod_state(&b, &sid2).await, None);
    let cid = new_container_id();
    b.create_container(&cid, &sid, &world.container("c", "sleep 3600"), &pod)
        .await
        .expect("create");
    let listed = container(&b, &cid).await.expect("listed after create");
    assert_eq!(listed.state, ContainerState::Created);
    assert_eq!(listed.labels.get("c").map(String::as_str), Some("c"));
    b.start_container(&cid).await.expect("start");
    assert_eq!(
        container(&b, &cid).await.map(|c| c.state),
        Some(ContainerState::Running)
    );
    // A failed start is only in the record (no task): Exited at once.
    let broken = new_container_id();
    let mut no_binary = world.container("broken", "true");
    no_binary.command = vec!["/no/such/binary".into()];
    b.create_container(&broken, &sid, &no_binary, &pod)
        .await
        .expect("create broken");
    b.start_container(&broken).await.expect_err("no binary");
    assert_eq!(
        container(&b, &broken).await.map(|c| c.state),
        Some(ContainerState::Exited)
    );
    assert!(b.records_from_memory(), "our writes keep the mirror warm");

    // An update changes the mirrored record: the statuses a STOPPED event carries are
    // built from it.
    let mut events = crimux_core::Backend::subscribe_events(b.as_ref()).expect("events");
    let resources = Resources {
        memory_limit_in_bytes: 96 << 20,
        cpu_shares: 256,
        ..Default::default()
    };
    b.update_container_resources(&cid, Some(&resources), None)
        .await
        .expect("update");
    b.stop_container(&cid, Duration::from_secs(0))
        .await
        .expect("stop");
    let stopped = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            let e = events.recv().await.expect("event");
            if e.container_id == cid && e.kind == ContainerEventKind::Stopped {
                return e;
            }
        }
    })
    .await
    .expect("a STOPPED event");
    let status = stopped
        .containers
        .iter()
        .find(|s| s.summary.id == cid)
        .expect("the container's status in its event");
    assert_eq!(status.resources, Some(resources));

    // Another client's objects: created with crimux's labels they appear, relabelled
    // they change, deleted they go; one without crimux's labels never shows.
    let (other_c, other_s, stranger) = (new_container_id(), new_sandbox_id(), new_container_id());
    raw_copy(
        &raw,
        cid.as_str(),
        stranger.as_str(),
        CONTAINER_EXTENSION,
        false,
    )
    .await;
    raw_copy(
        &raw,
        cid.as_str(),
        other_c.as_str(),
        CONTAINER_EXTENSION,
        true,
    )
    .await;
    raw_copy(
        &raw,
        sid.as_str(),
        other_s.as_str(),
        SANDBOX_EXTENSION,
        true,
    )
    .await;
    wait_until("another client's container and pod are listed", || async {
        container(&b, &other_c).await.is_some() && pod_state(&b, &other_s).await.is_some()
    })
    .await;
    assert_eq!(
        pod_state(&b, &other_s).await,
        Some(SandboxState::NotReady),
        "no pause task"
    );
    assert!(container(&b, &stranger).await.is_none(), "not crimux's");
    assert!(
        b.records_from_memory(),
        "seen through events, not a full read"
    );
    raw_relabel(&raw, other_c.as_str(), CONTAINER_EXTENSION, "who", "other").await;
    wait_until("another client's update is listed", || async {
        container(&b, &other_c)
            .await
            .is_some_and(|c| c.labels.get("who").map(String::as_str) == Some("other"))
    })
    .await;
    for id in [other_c.as_str(), other_s.as_str(), stranger.as_str()] {
        raw_delete(&raw, id).await;
    }
    wait_until("objects deleted behind crimux's back go", || async {
        container(&b, &other_c).await.is_none() && pod_state(&b, &other_s).await.is_none()
    })
    .await;
    assert!(b.records_from_memory());

    // Removes show at once too, and leave nothing.
    for id in [&broken, &cid] {
        b.remove_container(id).await.expect("remove");
        assert!(
            container(&b, id).await.is_none(),
            "{id} listed after remove"
        );
        let left = world.leftovers(id).await;
        assert!(left.is_empty(), "{id} left {left:#?}");
    }

    // containerd restarts: the stream is lost, the mirror turns cold, and a change nobody
    // got an event for is still listed (the full read), then the mirror refills.
    let c2 = new_container_id();
    b.create_container(&c2, &sid, &world.container("c2", "sleep 3600"), &pod)
        .await
        .expect("create c2");
    world.pods.containerd.restart();
    wait_until("the mirror turns cold", || async {
        !b.records_from_memory()
    })
    .await;
    let raw = world.pods.containerd.channel().await;
    let unseen = new_container_id();
    raw_copy(
        &raw,
        c2.as_str(),
        unseen.as_str(),
        CONTAINER_EXTENSION,
        true,
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(20);
    let listed = loop {
        // The backend's channel may need a moment to reconnect.
        match b.list_containers().await {
            Ok(listed) => break listed,
            Err(e) => assert!(Instant::now() < deadline, "lists keep failing: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let ids: Vec<&ContainerId> = listed.iter().map(|c| &c.id).collect();
    assert!(
        ids.contains(&&unseen) && ids.contains(&&c2),
        "cold lists read everything: {ids:?}"
    );
    wait_until("the mirror refills", || async {
        b.list_containers().await.is_ok() && b.records_from_memory()
    })
    .await;
    assert!(container(&b, &unseen).await.is_some());
    assert_eq!(pod_state(&b, &sid).await, Some(SandboxState::Ready));
    raw_delete(&raw, unseen.as_str()).await;
    wait_until("a delete after the restart is seen", || async {
        container(&b, &unseen).await.is_none()
    })
    .await;
    assert!(b.records_from_memory());

    b.remove_pod_sandbox(&sid).await.expect("remove pod");
    assert_eq!(pod_state(&b, &sid).await, None);
    assert!(containers(&b).await.is_empty());
    let left = world.leftovers(&c2).await;
    assert!(left.is_empty(), "c2 left {left:#?}");
}
