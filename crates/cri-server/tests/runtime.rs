//! The CRI RuntimeService served in-process over recording fake backends: every RPC's
//! happy path and its error codes.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use k8s_cri::v1;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use tokio_stream::StreamExt;
use tonic::transport::Channel;
use tonic::Code;
use tonic_types::StatusExt;

use common::Harness;
use crimux_dispatch::testing::{image, Call, FakeBackend, FAKE_POD_IP};

fn pod_config(name: &str, uid: &str) -> v1::PodSandboxConfig {
    v1::PodSandboxConfig {
        metadata: Some(v1::PodSandboxMetadata {
            name: name.into(),
            uid: uid.into(),
            namespace: "default".into(),
            attempt: 0,
        }),
        labels: HashMap::from([("app".to_string(), name.to_string())]),
        ..Default::default()
    }
}

fn container_config(name: &str, image: &str) -> v1::ContainerConfig {
    v1::ContainerConfig {
        metadata: Some(v1::ContainerMetadata {
            name: name.into(),
            attempt: 0,
        }),
        image: Some(v1::ImageSpec {
            image: image.into(),
            ..Default::default()
        }),
        envs: vec![v1::KeyValue {
            key: "A".into(),
            value: "1".into(),
        }],
        labels: HashMap::from([("c".to_string(), name.to_string())]),
        ..Default::default()
    }
}

async fn run_pod(rt: &mut RuntimeServiceClient<Channel>, name: &str, uid: &str) -> String {
    rt.run_pod_sandbox(v1::RunPodSandboxRequest {
        config: Some(pod_config(name, uid)),
        runtime_handler: String::new(),
    })
    .await
    .expect("run pod sandbox")
    .into_inner()
    .pod_sandbox_id
}

async fn create(
    rt: &mut RuntimeServiceClient<Channel>,
    pod: &str,
    name: &str,
    image: &str,
) -> Result<String, tonic::Status> {
    rt.create_container(v1::CreateContainerRequest {
        pod_sandbox_id: pod.into(),
        config: Some(container_config(name, image)),
        sandbox_config: Some(pod_config("web", "uid-1")),
    })
    .await
    .map(|r| r.into_inner().container_id)
}

#[tokio::test]
async fn pod_and_container_lifecycle() {
    let fake = FakeBackend::primary("default", "linux").into_arc();
    let h = Harness::start(std::slice::from_ref(&fake)).await;
    let mut rt = h.runtime();

    let err = rt
        .run_pod_sandbox(v1::RunPodSandboxRequest::default())
        .await
        .expect_err("config required");
    assert_eq!(err.code(), Code::InvalidArgument);

    let pod = run_pod(&mut rt, "web", "uid-1").await;
    assert_eq!(pod.len(), 64);
    let err = rt
        .run_pod_sandbox(v1::RunPodSandboxRequest {
            config: Some(pod_config("web", "uid-1")),
            runtime_handler: String::new(),
        })
        .await
        .expect_err("same pod twice");
    assert_eq!(err.code(), Code::AlreadyExists);
    let err = rt
        .run_pod_sandbox(v1::RunPodSandboxRequest {
            config: Some(pod_config("x", "uid-x")),
            runtime_handler: "kata".into(),
        })
        .await
        .expect_err("unknown handler");
    assert_eq!(err.code(), Code::NotFound);

    let err = rt
        .create_container(v1::CreateContainerRequest {
            pod_sandbox_id: pod.clone(),
            ..Default::default()
        })
        .await
        .expect_err("config required");
    assert_eq!(err.code(), Code::InvalidArgument);
    let err = create(&mut rt, &"f".repeat(64), "app", "busybox")
        .await
        .expect_err("unknown pod");
    assert_eq!(err.code(), Code::NotFound);
    let ctr = create(&mut rt, &pod, "app", "busybox")
        .await
        .expect("create");
    let other = create(&mut rt, &pod, "side", "busybox")
        .await
        .expect("create");
    rt.start_container(v1::StartContainerRequest {
        container_id: ctr.clone(),
    })
    .await
    .expect("start");

    let status = rt
        .pod_sandbox_status(v1::PodSandboxStatusRequest {
            pod_sandbox_id: pod.clone(),
            verbose: false,
        })
        .await
        .expect("pod status")
        .into_inner();
    let s = status.status.expect("status");
    assert_eq!(s.state, v1::PodSandboxState::SandboxReady as i32);
    assert_eq!(s.network.map(|n| n.ip).as_deref(), Some(FAKE_POD_IP));
    assert_eq!(s.metadata.map(|m| m.uid).as_deref(), Some("uid-1"));
    assert_eq!(status.containers_statuses.len(), 2);
    assert!(status.timestamp > 0);

    // (filter, want count)
    let pod_filters = [
        (None, 1),
        (
            Some(v1::PodSandboxFilter {
                id: pod[..8].into(),
                ..Default::default()
            }),
            1,
        ),
        (
            Some(v1::PodSandboxFilter {
                state: Some(v1::PodSandboxStateValue {
                    state: v1::PodSandboxState::SandboxNotready as i32,
                }),
                ..Default::default()
            }),
            0,
        ),
        (
            Some(v1::PodSandboxFilter {
                label_selector: HashMap::from([("app".into(), "web".into())]),
                ..Default::default()
            }),
            1,
        ),
    ];
    for (filter, want) in pod_filters {
        let items = rt
            .list_pod_sandbox(v1::ListPodSandboxRequest {
                filter: filter.clone(),
            })
            .await
            .expect("list pods")
            .into_inner()
            .items;
        assert_eq!(items.len(), want, "{filter:?}");
    }
    let container_filters = [
        (None, 2),
        (
            Some(v1::ContainerFilter {
                pod_sandbox_id: pod.clone(),
                ..Default::default()
            }),
            2,
        ),
        (
            Some(v1::ContainerFilter {
                state: Some(v1::ContainerStateValue {
                    state: v1::ContainerState::ContainerRunning as i32,
                }),
                ..Default::default()
            }),
            1,
        ),
        (
            Some(v1::ContainerFilter {
                id: other.clone(),
                ..Default::default()
            }),
            1,
        ),
        (
            Some(v1::ContainerFilter {
                label_selector: HashMap::from([("c".into(), "nope".into())]),
                ..Default::default()
            }),
            0,
        ),
    ];
    for (filter, want) in container_filters {
        let containers = rt
            .list_containers(v1::ListContainersRequest {
                filter: filter.clone(),
            })
            .await
            .expect("list containers")
            .into_inner()
            .containers;
        assert_eq!(containers.len(), want, "{filter:?}");
    }

    let cs = rt
        .container_status(v1::ContainerStatusRequest {
            container_id: ctr.clone(),
            verbose: true,
        })
        .await
        .expect("container status")
        .into_inner()
        .status
        .expect("status");
    assert_eq!(cs.state, v1::ContainerState::ContainerRunning as i32);
    assert_eq!(cs.metadata.map(|m| m.name).as_deref(), Some("app"));

    let err = rt
        .exec_sync(v1::ExecSyncRequest {
            container_id: ctr.clone(),
            cmd: vec![],
            timeout: 0,
        })
        .await
        .expect_err("cmd required");
    assert_eq!(err.code(), Code::InvalidArgument);
    let out = rt
        .exec_sync(v1::ExecSyncRequest {
            container_id: ctr.clone(),
            cmd: vec!["echo".into(), "hi".into()],
            timeout: 7,
        })
        .await
        .expect("exec")
        .into_inner();
    assert_eq!((out.stdout.as_slice(), out.exit_code), (&b"echo hi"[..], 2));
    let err = rt
        .exec_sync(v1::ExecSyncRequest {
            container_id: other.clone(),
            cmd: vec!["true".into()],
            timeout: 0,
        })
        .await
        .expect_err("not running");
    assert_eq!(err.code(), Code::FailedPrecondition);

    rt.update_container_resources(v1::UpdateContainerResourcesRequest {
        container_id: ctr.clone(),
        linux: Some(v1::LinuxContainerResources {
            cpu_shares: 256,
            ..Default::default()
        }),
        ..Default::default()
    })
    .await
    .expect("update");
    rt.reopen_container_log(v1::ReopenContainerLogRequest {
        container_id: ctr.clone(),
    })
    .await
    .expect("reopen");

    let stats = rt
        .container_stats(v1::ContainerStatsRequest {
            container_id: ctr.clone(),
        })
        .await
        .expect("stats")
        .into_inner()
        .stats
        .expect("stats");
    assert_eq!(stats.attributes.map(|a| a.id), Some(ctr.clone()));
    let all = rt
        .list_container_stats(v1::ListContainerStatsRequest {
            filter: Some(v1::ContainerStatsFilter {
                pod_sandbox_id: pod.clone(),
                ..Default::default()
            }),
        })
        .await
        .expect("list stats")
        .into_inner()
        .stats;
    assert_eq!(all.len(), 2);
    let ps = rt
        .pod_sandbox_stats(v1::PodSandboxStatsRequest {
            pod_sandbox_id: pod.clone(),
        })
        .await
        .expect("pod stats")
        .into_inner()
        .stats
        .expect("stats");
    assert_eq!(ps.linux.map(|l| l.containers.len()), Some(2));
    let all = rt
        .list_pod_sandbox_stats(v1::ListPodSandboxStatsRequest { filter: None })
        .await
        .expect("list pod stats")
        .into_inner()
        .stats;
    assert_eq!(all.len(), 1);
    let m = rt
        .list_metric_descriptors(v1::ListMetricDescriptorsRequest {})
        .await
        .expect("descriptors")
        .into_inner();
    assert!(m.descriptors.is_empty());
    let m = rt
        .list_pod_sandbox_metrics(v1::ListPodSandboxMetricsRequest {})
        .await
        .expect("metrics")
        .into_inner();
    assert!(m.pod_metrics.is_empty());

    rt.stop_container(v1::StopContainerRequest {
        container_id: ctr.clone(),
        timeout: 30,
    })
    .await
    .expect("stop");
    assert!(fake.calls().contains(&Call::StopContainer {
        id: ctr.clone(),
        timeout: Duration::from_secs(30)
    }));
    assert!(fake.calls().contains(&Call::ExecSync {
        id: ctr.clone(),
        cmd: vec!["echo".into(), "hi".into()],
        timeout: Some(Duration::from_secs(7))
    }));
    rt.remove_container(v1::RemoveContainerRequest {
        container_id: ctr.clone(),
    })
    .await
    .expect("remove");
    let err = rt
        .container_status(v1::ContainerStatusRequest {
            container_id: ctr.clone(),
            verbose: false,
        })
        .await
        .expect_err("removed");
    assert_eq!(err.code(), Code::NotFound);
    rt.stop_pod_sandbox(v1::StopPodSandboxRequest {
        pod_sandbox_id: pod.clone(),
    })
    .await
    .expect("stop pod");
    rt.remove_pod_sandbox(v1::RemovePodSandboxRequest {
        pod_sandbox_id: pod.clone(),
    })
    .await
    .expect("remove pod");
    assert!(fake.sandbox_ids().is_empty() && fake.container_ids().is_empty());
    h.stop().await;
}

#[tokio::test]
async fn unknown_ids() {
    let h = Harness::start(&[FakeBackend::primary("default", "linux").into_arc()]).await;
    let mut rt = h.runtime();
    let id = "0".repeat(64);
    rt.stop_pod_sandbox(v1::StopPodSandboxRequest {
        pod_sandbox_id: id.clone(),
    })
    .await
    .expect("idempotent stop");
    rt.remove_pod_sandbox(v1::RemovePodSandboxRequest {
        pod_sandbox_id: id.clone(),
    })
    .await
    .expect("idempotent remove");
    rt.remove_container(v1::RemoveContainerRequest {
        container_id: id.clone(),
    })
    .await
    .expect("idempotent remove");
    let codes = [
        rt.pod_sandbox_status(v1::PodSandboxStatusRequest {
            pod_sandbox_id: id.clone(),
            verbose: false,
        })
        .await
        .map(drop),
        rt.start_container(v1::StartContainerRequest {
            container_id: id.clone(),
        })
        .await
        .map(drop),
        rt.stop_container(v1::StopContainerRequest {
            container_id: id.clone(),
            timeout: 1,
        })
        .await
        .map(drop),
        rt.container_status(v1::ContainerStatusRequest {
            container_id: id.clone(),
            verbose: false,
        })
        .await
        .map(drop),
        rt.reopen_container_log(v1::ReopenContainerLogRequest {
            container_id: id.clone(),
        })
        .await
        .map(drop),
        rt.container_stats(v1::ContainerStatsRequest {
            container_id: id.clone(),
        })
        .await
        .map(drop),
        rt.pod_sandbox_stats(v1::PodSandboxStatsRequest {
            pod_sandbox_id: id.clone(),
        })
        .await
        .map(drop),
        rt.exec_sync(v1::ExecSyncRequest {
            container_id: id.clone(),
            cmd: vec!["x".into()],
            timeout: 0,
        })
        .await
        .map(drop),
        rt.update_container_resources(v1::UpdateContainerResourcesRequest {
            container_id: id.clone(),
            ..Default::default()
        })
        .await
        .map(drop),
    ];
    for (i, got) in codes.into_iter().enumerate() {
        assert_eq!(
            got.map_err(|e| e.code()).err(),
            Some(Code::NotFound),
            "call #{i}"
        );
    }
    h.stop().await;
}

#[tokio::test]
async fn status_config_and_events() {
    let win = FakeBackend::primary("win", "windows")
        .with_remote(image("sha256:l", &["example.com/lin:1"], "linux"))
        .into_arc();
    let wsl = FakeBackend::delegate("wsl", "linux")
        .with_remote(image("sha256:l", &["example.com/lin:1"], "linux"))
        .into_arc();
    wsl.set_status(crimux_core::status::BackendStatus {
        runtime_ready: true,
        runtime_reason: String::new(),
        network_ready: false,
        network_reason: "NetworkPluginNotReady".into(),
        network_message: "cni config uninitialized".into(),
    });
    let h = Harness::start(&[win.clone(), wsl.clone()]).await;
    let mut rt = h.runtime();

    rt.update_runtime_config(v1::UpdateRuntimeConfigRequest {
        runtime_config: Some(v1::RuntimeConfig {
            network_config: Some(v1::NetworkConfig {
                pod_cidr: "10.244.0.0/24".into(),
            }),
        }),
    })
    .await
    .expect("update runtime config");
    let status = rt
        .status(v1::StatusRequest { verbose: true })
        .await
        .expect("status")
        .into_inner();
    let conditions = status.status.expect("status").conditions;
    assert!(conditions[0].status, "primary is ready");
    assert!(!conditions[1].status);
    assert_eq!(
        conditions[1].message,
        "backend wsl: cni config uninitialized"
    );
    assert!(status.info["config"].contains("10.244.0.0/24"));
    assert!(status.info["backends"].contains("cni config uninitialized"));

    let mut events = rt
        .get_container_events(v1::GetEventsRequest {})
        .await
        .expect("events")
        .into_inner();
    // A Linux image in a pod on the Windows primary: the composite round trip.
    let mut images = h.images();
    images
        .pull_image(v1::PullImageRequest {
            image: Some(v1::ImageSpec {
                image: "example.com/lin:1".into(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .expect("pull");
    let pod = run_pod(&mut rt, "web", "uid-1").await;
    let err = create(&mut rt, &pod, "app", "sha256:l")
        .await
        .expect_err("wrong backend");
    assert_eq!(err.code(), Code::FailedPrecondition);
    let s = rt
        .pod_sandbox_status(v1::PodSandboxStatusRequest {
            pod_sandbox_id: pod.clone(),
            verbose: false,
        })
        .await
        .expect("status")
        .into_inner()
        .status
        .expect("status");
    assert_eq!(s.state, v1::PodSandboxState::SandboxNotready as i32);
    let retry = rt
        .run_pod_sandbox(v1::RunPodSandboxRequest {
            config: Some(v1::PodSandboxConfig {
                metadata: Some(v1::PodSandboxMetadata {
                    name: "web".into(),
                    uid: "uid-1".into(),
                    namespace: "default".into(),
                    attempt: 1,
                }),
                ..Default::default()
            }),
            runtime_handler: String::new(),
        })
        .await
        .expect("retry")
        .into_inner()
        .pod_sandbox_id;
    assert_eq!(wsl.sandbox_ids(), std::slice::from_ref(&retry));
    let ctr = create(&mut rt, &retry, "app", "sha256:l")
        .await
        .expect("create");
    let event = tokio::time::timeout(Duration::from_secs(5), events.next())
        .await
        .expect("event in time")
        .expect("stream open")
        .expect("event");
    assert_eq!(event.container_id, ctr);
    assert_eq!(
        event.container_event_type,
        v1::ContainerEventType::ContainerCreatedEvent as i32
    );
    assert_eq!(
        event.pod_sandbox_status.map(|s| s.id).as_deref(),
        Some(retry.as_str())
    );
    assert_eq!(event.containers_statuses.len(), 1);

    // A pod for an OS no backend runs is refused with the ErrorInfo detail.
    let mut bsd = pod_config("bsd", "uid-b");
    bsd.annotations
        .insert("crimux.io/os".into(), "freebsd".into());
    let err = rt
        .run_pod_sandbox(v1::RunPodSandboxRequest {
            config: Some(bsd),
            runtime_handler: String::new(),
        })
        .await
        .expect_err("freebsd");
    assert_eq!(err.code(), Code::FailedPrecondition);
    let details = err.get_error_details();
    let info = details.error_info().expect("ErrorInfo");
    assert_eq!(info.metadata["pod"], "default/bsd");
    assert_eq!(info.metadata["node_os"], "linux,windows");
    // Stopping the server ends the open event stream instead of waiting on it.
    tokio::time::timeout(Duration::from_secs(10), h.stop())
        .await
        .expect("graceful stop with an open event stream");
    let end = tokio::time::timeout(Duration::from_secs(5), events.next())
        .await
        .expect("stream ends");
    assert!(!matches!(end, Some(Ok(_))), "{end:?}");
}
