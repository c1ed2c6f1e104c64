//! ListPodSandbox and ListContainers with many pods on a real containerd 1.6: how long a
//! relist takes, and that the states it reports follow every change (our own calls, exits
//! reported by containerd's events, and a containerd restart that cuts the event stream).
//! Needs root, CNI plugins in /usr/lib/cni, umoci, skopeo and busybox-static.
//!
//! `RELIST_PODS` (default 10) pods, each a pause and a sleeping container; the p50 of a
//! relist (both lists) over `RELIST_N` (default 50) rounds is printed.
#![cfg(target_os = "linux")]

mod common;

use std::time::{Duration, Instant};

use common::containers::{new_container_id, ContainerWorld};
use common::sandbox::new_id as new_sandbox_id;
use containerd_client::services::v1::containers_client::ContainersClient;
use containerd_client::services::v1::tasks_client::TasksClient;
use containerd_client::services::v1::{ListContainersRequest, ListTasksRequest};
use crimux_core::status::{ContainerState, SandboxState};
use crimux_core::{ContainerBackend, ContainerId, PodSandboxId, SandboxBackend};

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The state ListContainers reports for `id` (None: not listed).
async fn listed(backend: &dyn ContainerBackend, id: &ContainerId) -> Option<ContainerState> {
    backend
        .list_containers()
        .await
        .expect("list containers")
        .into_iter()
        .find(|c| &c.id == id)
        .map(|c| c.state)
}

async fn wait_listed(backend: &dyn ContainerBackend, id: &ContainerId, want: ContainerState) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let got = listed(backend, id).await;
        if got == Some(want) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "container {id} never listed {want:?}: {got:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The pid of the container's process, from its verbose status.
async fn pid_of(backend: &dyn ContainerBackend, id: &ContainerId) -> u32 {
    let status = backend.container_status(id, true).await.expect("status");
    let info: serde_json::Value = serde_json::from_str(&status.info["info"]).expect("verbose info");
    let pid = info["pid"].as_u64().expect("pid");
    u32::try_from(pid).expect("pid fits")
}

fn kill9(pid: u32) {
    let killed = std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .expect("kill");
    assert!(killed.success(), "kill -9 {pid}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relist_follows_every_change_and_is_fast() {
    let world = ContainerWorld::new().await;
    let backend = world.backend.clone();
    let pods = env_usize("RELIST_PODS", 10);
    let rounds = env_usize("RELIST_N", 50);
    let mut ids: Vec<(PodSandboxId, ContainerId)> = Vec::new();
    for i in 0..pods {
        let pod = world.pod(&format!("p{i}"));
        let sid = new_sandbox_id();
        backend.run_pod_sandbox(&sid, &pod).await.expect("run pod");
        let c = world.container("c", "sleep 3600");
        let cid = new_container_id();
        backend
            .create_container(&cid, &sid, &c, &pod)
            .await
            .expect("create");
        // Created is listed at once, Running as soon as the start returns.
        assert_eq!(listed(&*backend, &cid).await, Some(ContainerState::Created));
        backend.start_container(&cid).await.expect("start");
        assert_eq!(listed(&*backend, &cid).await, Some(ContainerState::Running));
        ids.push((sid, cid));
    }

    // The relist figure.
    let mut times = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let t = Instant::now();
        let sandboxes = backend.list_pod_sandboxes().await.expect("list pods");
        let containers = backend.list_containers().await.expect("list containers");
        times.push(t.elapsed());
        assert_eq!((sandboxes.len(), containers.len()), (pods, pods));
        assert!(sandboxes.iter().all(|s| s.state == SandboxState::Ready));
        assert!(containers
            .iter()
            .all(|c| c.state == ContainerState::Running));
    }
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "relist with {pods} pods: p50 {:.2} ms, p90 {:.2} ms, max {:.2} ms over {rounds} rounds",
        ms(times[times.len() / 2]),
        ms(times[times.len() * 9 / 10]),
        ms(times[times.len() - 1])
    );

    // Where a relist used to spend its time: containerd's Tasks.List (every shim asked)
    // against its Containers.List (the records), each over the same rounds.
    let channel = world.pods.channel.clone();
    fn ns<T>(m: T) -> tonic::Request<T> {
        let mut r = tonic::Request::new(m);
        r.metadata_mut().insert(
            "containerd-namespace",
            common::NAMESPACE.parse().expect("header"),
        );
        r
    }
    let mut tasks_list = Vec::with_capacity(rounds);
    let mut containers_list = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let t = Instant::now();
        TasksClient::new(channel.clone())
            .list(ns(ListTasksRequest::default()))
            .await
            .expect("tasks list");
        tasks_list.push(t.elapsed());
        let t = Instant::now();
        ContainersClient::new(channel.clone())
            .list(ns(ListContainersRequest::default()))
            .await
            .expect("containers list");
        containers_list.push(t.elapsed());
    }
    tasks_list.sort();
    containers_list.sort();
    println!(
        "containerd alone: Tasks.List p50 {:.2} ms, Containers.List p50 {:.2} ms",
        ms(tasks_list[rounds / 2]),
        ms(containers_list[rounds / 2])
    );

    // Our own stop: Exited as soon as it returns; the pod's stop: NOTREADY at once.
    let (sid0, cid0) = ids[0].clone();
    backend
        .stop_container(&cid0, Duration::from_secs(5))
        .await
        .expect("stop");
    assert_eq!(listed(&*backend, &cid0).await, Some(ContainerState::Exited));
    backend.stop_pod_sandbox(&sid0).await.expect("stop pod");
    let state = backend
        .list_pod_sandboxes()
        .await
        .expect("list")
        .into_iter()
        .find(|s| s.id == sid0)
        .map(|s| s.state);
    assert_eq!(state, Some(SandboxState::NotReady));

    // An exit nobody asked for reaches the list through containerd's events.
    let (_, cid1) = ids[1].clone();
    kill9(pid_of(&*backend, &cid1).await);
    wait_listed(&*backend, &cid1, ContainerState::Exited).await;

    // An exit while containerd restarts (its event stream is cut): the list still learns
    // it, through the resync that follows every reconnection.
    if pods > 2 {
        let (_, cid2) = ids[2].clone();
        let pid = pid_of(&*backend, &cid2).await;
        let mut world = world;
        kill9(pid);
        world.pods.containerd.restart();
        wait_listed(&*backend, &cid2, ContainerState::Exited).await;
        // Still running ones stay running, removed ones go.
        let (sid3, cid3) = ids.get(3).cloned().unwrap_or_else(|| ids[2].clone());
        if pods > 3 {
            wait_listed(&*backend, &cid3, ContainerState::Running).await;
        }
        backend.remove_pod_sandbox(&sid3).await.expect("remove");
        assert_eq!(listed(&*backend, &cid3).await, None);
        for (sid, _) in &ids {
            backend.remove_pod_sandbox(sid).await.expect("remove");
        }
        assert!(backend.list_containers().await.expect("list").is_empty());
        return;
    }
    for (sid, _) in &ids {
        backend.remove_pod_sandbox(sid).await.expect("remove");
    }
    assert!(backend.list_containers().await.expect("list").is_empty());
}
