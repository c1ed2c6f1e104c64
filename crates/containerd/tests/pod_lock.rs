//! CreateContainer racing RemovePodSandbox of the same pod, on a real containerd 1.6 with
//! runc: the create holds the pod's lock while it checks the pod and makes the object, so
//! the remove runs wholly before it (the create fails) or wholly after (and removes the new
//! container). Either way no container is left behind. Needs root, CNI plugins in
//! /usr/lib/cni, umoci, skopeo and busybox-static; each test runs its own daemons.
#![cfg(target_os = "linux")]

mod common;

use std::io::Write;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use common::containers::{new_container_id, new_sandbox_id, ContainerWorld};
use crimux_core::container::{
    ContainerSecurity, LinuxContainerConfig, ProfileType, SecurityProfile,
};
use crimux_core::{ContainerBackend, ContainerId, PodSandboxId, SandboxBackend};
use tonic::Code;

/// How many free races to run; each starts the create a little later than the one before,
/// so together they sweep the remove's start (the pod still ready, then stopping, then gone).
const ROUNDS: u32 = 10;
const STEP: Duration = Duration::from_millis(3);

/// Asserts that neither the container nor the pod left anything behind.
async fn assert_all_gone(world: &ContainerWorld, pod: &PodSandboxId, id: &ContainerId) {
    let left = world.leftovers(id).await;
    assert!(left.is_empty(), "container left: {left:?}");
    let left = world.pods.leftovers(pod).await;
    assert!(left.is_empty(), "pod left: {left:?}");
    let err = world
        .backend
        .container_status(id, false)
        .await
        .expect_err("the container must be gone");
    assert_eq!(err.code(), Code::NotFound);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_container_racing_remove_pod_sandbox_leaves_no_orphan() {
    let world = ContainerWorld::new().await;
    let mut created = 0;
    for round in 0..ROUNDS {
        let pod = new_sandbox_id();
        let pod_config = world.pod(&format!("race{round}"));
        world
            .backend
            .run_pod_sandbox(&pod, &pod_config)
            .await
            .expect("RunPodSandbox");
        let id = new_container_id();
        let config = world.container("racer", "sleep 100");
        let create = {
            let (backend, id, pod, pod_config) = (
                world.backend.clone(),
                id.clone(),
                pod.clone(),
                pod_config.clone(),
            );
            tokio::spawn(async move {
                tokio::time::sleep(STEP * round).await;
                backend
                    .create_container(&id, &pod, &config, &pod_config)
                    .await
            })
        };
        let remove = {
            let (backend, pod) = (world.backend.clone(), pod.clone());
            tokio::spawn(async move { backend.remove_pod_sandbox(&pod).await })
        };
        let outcome = create.await.expect("create task");
        remove
            .await
            .expect("remove task")
            .unwrap_or_else(|e| panic!("round {round}: RemovePodSandbox: {e}"));
        match outcome {
            Ok(()) => created += 1,
            Err(e) => assert!(
                matches!(e.code(), Code::FailedPrecondition | Code::NotFound),
                "round {round}: CreateContainer failed with {:?}: {e}",
                e.code()
            ),
        }
        assert_all_gone(&world, &pod, &id).await;
    }
    eprintln!("{created} of {ROUNDS} creates ran before their pod's removal");
}

/// The race made certain: the create is held up half way (reading its seccomp profile from
/// a FIFO) after it has found the pod ready, and the remove is started then. The remove
/// must wait for the create, and then remove the container it made.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remove_pod_sandbox_waits_for_a_create_in_progress_and_removes_its_container() {
    let world = ContainerWorld::new().await;
    let pod = new_sandbox_id();
    let pod_config = world.pod("held");
    world
        .backend
        .run_pod_sandbox(&pod, &pod_config)
        .await
        .expect("RunPodSandbox");
    let fifo: PathBuf = world.pods.tmp.path().join("seccomp.fifo");
    let made = Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("run mkfifo");
    assert!(made.success(), "mkfifo {}", fifo.display());
    let mut config = world.container("held", "sleep 100");
    config.linux = Some(LinuxContainerConfig {
        security: Some(ContainerSecurity {
            seccomp: Some(SecurityProfile {
                profile_type: ProfileType::Localhost,
                localhost_ref: fifo.to_string_lossy().into_owned(),
            }),
            ..Default::default()
        }),
        ..Default::default()
    });

    let id = new_container_id();
    let create = {
        let (backend, id, pod, pod_config) = (
            world.backend.clone(),
            id.clone(),
            pod.clone(),
            pod_config.clone(),
        );
        tokio::spawn(async move {
            backend
                .create_container(&id, &pod, &config, &pod_config)
                .await
        })
    };
    // Opening the FIFO for writing returns once the create has opened it to read: it has
    // checked the pod by then.
    let writer = {
        let fifo = fifo.clone();
        tokio::task::spawn_blocking(move || std::fs::OpenOptions::new().write(true).open(fifo))
    };
    let mut writer = tokio::time::timeout(Duration::from_secs(30), writer)
        .await
        .expect("CreateContainer never read its seccomp profile")
        .expect("writer task")
        .expect("open FIFO");
    let remove = {
        let (backend, pod) = (world.backend.clone(), pod.clone());
        tokio::spawn(async move { backend.remove_pod_sandbox(&pod).await })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let remove_went_first = remove.is_finished();
    tokio::task::spawn_blocking(move || writer.write_all(br#"{"defaultAction":"SCMP_ACT_ALLOW"}"#))
        .await
        .expect("writer task")
        .expect("write the profile");

    create
        .await
        .expect("create task")
        .expect("CreateContainer of a pod that was ready");
    remove
        .await
        .expect("remove task")
        .expect("RemovePodSandbox");
    assert!(
        !remove_went_first,
        "RemovePodSandbox finished while a CreateContainer in its pod was under way"
    );
    assert_all_gone(&world, &pod, &id).await;
}
