//! Pod sandboxes on a real containerd 1.6 with runc and the node's CNI plugins (bridge,
//! host-local, portmap, loopback in /usr/lib/cni). Needs root; every test runs its own
//! containerd, registry and CNI network, and checks that nothing is left behind.
#![cfg(target_os = "linux")]

mod common;

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;

use common::sandbox::{
    host_network_config, mount_type, new_id, ns_identity, pod_config, pod_config_with_port, Net,
    PodWorld,
};
use crimux_core::container::{ContainerConfig, ContainerMetadata};
use crimux_core::status::ContainerState;
use crimux_core::status::SandboxState;
use crimux_core::{ContainerBackend, ContainerId, PodSandboxId, SandboxBackend, StatusBackend};
use tonic::Code;

fn pid_of(info: &serde_json::Value) -> u32 {
    info["pid"].as_u64().expect("pid in verbose info") as u32
}

async fn verbose(world: &PodWorld, id: &PodSandboxId) -> serde_json::Value {
    let status = world
        .backend
        .pod_sandbox_status(id, true)
        .await
        .expect("status");
    serde_json::from_str(&status.info["info"]).expect("info is JSON")
}

async fn assert_clean(world: &PodWorld, id: &PodSandboxId) {
    let left = world.leftovers(id).await;
    assert!(left.is_empty(), "sandbox {id} left behind: {left:#?}");
}

#[tokio::test]
async fn sandbox_runs_stops_and_is_removed_without_leftovers() {
    let world = PodWorld::new().await;
    let id = new_id();
    let config = pod_config_with_port("web", host_port());
    world
        .backend
        .run_pod_sandbox(&id, &config)
        .await
        .expect("RunPodSandbox");

    // Ready, with an address on the test network.
    let status = world
        .backend
        .pod_sandbox_status(&id, false)
        .await
        .expect("status");
    assert_eq!(status.summary.state, SandboxState::Ready);
    assert_eq!(status.summary.metadata, config.metadata);
    assert_eq!(status.summary.labels, config.labels);
    assert_eq!(status.summary.annotations, config.annotations);
    assert!(status.summary.created_at > 0);
    assert_eq!(status.ips.len(), 1, "{:?}", status.ips);
    assert!(
        status.ips[0].starts_with(&world.subnet_prefix),
        "{} not in {}0/24",
        status.ips[0],
        world.subnet_prefix
    );
    assert_eq!(world.reserved_ips(&id), [status.ips[0].clone()]);
    assert!(status.info.is_empty());

    // The pause runs in the pinned namespace, with the pod's files.
    let info = verbose(&world, &id).await;
    let pid = pid_of(&info);
    assert!(pid > 0);
    assert_eq!(info["processStatus"], "running");
    assert_eq!(info["runtimeType"], "io.containerd.runc.v2");
    assert_eq!(info["config"]["metadata"]["name"], "web");
    let netns = world.netns_path(&id);
    assert_eq!(info["netNamespacePath"], netns.display().to_string());
    assert_eq!(mount_type(&netns).as_deref(), Some("nsfs"));
    assert_eq!(
        ns_identity(&netns),
        ns_identity(Path::new(&format!("/proc/{pid}/ns/net")))
    );
    let files = world.files_dir(&id);
    assert_eq!(
        std::fs::read_to_string(files.join("hostname")).expect("hostname"),
        "web-host\n"
    );
    let hosts = std::fs::read_to_string(files.join("hosts")).expect("hosts");
    assert!(hosts.contains("127.0.0.1\tlocalhost"), "{hosts}");
    assert!(
        hosts.contains(&format!("{}\tweb-host", status.ips[0])),
        "{hosts}"
    );
    let resolv = "search crimux-test.svc.cluster.local\nnameserver 10.96.0.10\noptions ndots:5\n";
    assert_eq!(
        std::fs::read_to_string(files.join("resolv.conf")).expect("resolv.conf"),
        resolv
    );
    // The pause sees them: resolv.conf bound in, the pod's hostname in its UTS namespace.
    assert_eq!(
        std::fs::read_to_string(format!("/proc/{pid}/root/etc/resolv.conf")).expect("pause"),
        resolv
    );
    assert_eq!(mount_type(&files.join("shm")).as_deref(), Some("tmpfs"));
    assert!(
        !common::sandbox::iptables_lines_mentioning(id.as_str()).is_empty(),
        "portmap installed no rules for the host port"
    );

    let listed = world.backend.list_pod_sandboxes().await.expect("list");
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].id, id);
    assert_eq!(listed[0].state, SandboxState::Ready);
    let stats = world.backend.pod_sandbox_stats(&id).await.expect("stats");
    assert_eq!(stats.id, id);
    assert_eq!(stats.metadata, config.metadata);
    assert!(stats.containers.is_empty());
    assert!(stats.cpu_usage_core_nanos > 0, "{stats:?}");
    assert!(stats.memory_working_set_bytes > 0, "{stats:?}");

    // Stop: NotReady, the network and the pause gone, the record kept; twice.
    for _ in 0..2 {
        world
            .backend
            .stop_pod_sandbox(&id)
            .await
            .expect("StopPodSandbox");
        let status = world
            .backend
            .pod_sandbox_status(&id, false)
            .await
            .expect("status after stop");
        assert_eq!(status.summary.state, SandboxState::NotReady);
        assert!(status.ips.is_empty(), "{:?}", status.ips);
        assert!(!netns.exists(), "netns still pinned");
        assert!(world.reserved_ips(&id).is_empty());
        assert!(common::sandbox::iptables_lines_mentioning(id.as_str()).is_empty());
        assert!(!world.cni_cache(&id).exists());
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists(),
            "pause still runs"
        );
    }
    assert_eq!(verbose(&world, &id).await["processStatus"], "deleted");
    let listed = world.backend.list_pod_sandboxes().await.expect("list");
    assert_eq!(listed[0].state, SandboxState::NotReady);

    // Remove: nothing left; twice; then it is unknown.
    for _ in 0..2 {
        world
            .backend
            .remove_pod_sandbox(&id)
            .await
            .expect("RemovePodSandbox");
        assert_clean(&world, &id).await;
    }
    let err = world
        .backend
        .pod_sandbox_status(&id, false)
        .await
        .expect_err("status of a removed sandbox");
    assert_eq!(err.code(), Code::NotFound);
    assert!(world
        .backend
        .list_pod_sandboxes()
        .await
        .expect("list")
        .is_empty());
}

#[tokio::test]
async fn remove_of_a_running_sandbox_stops_it_first() {
    let world = PodWorld::new().await;
    let id = new_id();
    world
        .backend
        .run_pod_sandbox(&id, &pod_config("direct"))
        .await
        .expect("run");
    let pid = pid_of(&verbose(&world, &id).await);
    world.backend.remove_pod_sandbox(&id).await.expect("remove");
    assert!(!Path::new(&format!("/proc/{pid}")).exists());
    assert_clean(&world, &id).await;
}

/// Stop stops the pod's containers; Remove removes them (and their snapshots and tasks).
#[tokio::test]
async fn stop_and_remove_take_the_pods_containers_along() {
    let world = PodWorld::new().await;
    let id = new_id();
    let config = pod_config("with-containers");
    world
        .backend
        .run_pod_sandbox(&id, &config)
        .await
        .expect("run");
    let cids: Vec<ContainerId> = (0..2).map(|_| ContainerId(new_id().0)).collect();
    for (i, cid) in cids.iter().enumerate() {
        let container = ContainerConfig {
            metadata: ContainerMetadata {
                name: format!("c{i}"),
                attempt: 0,
            },
            // The pause image doubles as a workload that sleeps until signalled.
            image: world.pause_image.clone(),
            command: vec!["/pause".into()],
            ..Default::default()
        };
        world
            .backend
            .create_container(cid, &id, &container, &config)
            .await
            .expect("create container");
        world
            .backend
            .start_container(cid)
            .await
            .expect("start container");
    }
    let stats = world.backend.pod_sandbox_stats(&id).await.expect("stats");
    let mut in_stats: Vec<_> = stats.containers.iter().map(|c| c.id.clone()).collect();
    in_stats.sort();
    let mut expected = cids.clone();
    expected.sort();
    assert_eq!(in_stats, expected);

    world.backend.stop_pod_sandbox(&id).await.expect("stop");
    for cid in &cids {
        let status = world
            .backend
            .container_status(cid, false)
            .await
            .expect("container status");
        assert_eq!(status.summary.state, ContainerState::Exited, "{cid}");
    }
    world.backend.remove_pod_sandbox(&id).await.expect("remove");
    for cid in &cids {
        let err = world
            .backend
            .container_status(cid, false)
            .await
            .expect_err("container removed with its pod");
        assert_eq!(err.code(), Code::NotFound);
        assert_clean(&world, &PodSandboxId(cid.0.clone())).await;
    }
    assert_clean(&world, &id).await;
}

#[tokio::test]
async fn unknown_sandboxes() {
    let world = PodWorld::new().await;
    let id = new_id();
    world
        .backend
        .stop_pod_sandbox(&id)
        .await
        .expect("stop unknown");
    world
        .backend
        .remove_pod_sandbox(&id)
        .await
        .expect("remove unknown");
    let bad = PodSandboxId("../../etc".into());
    world
        .backend
        .remove_pod_sandbox(&bad)
        .await
        .expect("remove bad id");
    for err in [
        world.backend.pod_sandbox_status(&id, true).await.err(),
        world.backend.pod_sandbox_stats(&id).await.err(),
    ] {
        assert_eq!(err.expect("must fail").code(), Code::NotFound);
    }
}

#[tokio::test]
async fn duplicates_and_bad_requests_are_refused_and_leave_nothing() {
    let world = PodWorld::new().await;
    let id = new_id();
    let config = pod_config("dup");
    world
        .backend
        .run_pod_sandbox(&id, &config)
        .await
        .expect("run");

    // The same pod (name, namespace, uid, attempt) under another id.
    let other = new_id();
    let err = world
        .backend
        .run_pod_sandbox(&other, &config)
        .await
        .expect_err("duplicate name");
    assert_eq!(err.code(), Code::AlreadyExists, "{err}");
    assert_clean(&world, &other).await;
    // The same id again.
    let mut next = config.clone();
    next.metadata.attempt = 1;
    let err = world
        .backend
        .run_pod_sandbox(&id, &next)
        .await
        .expect_err("duplicate id");
    assert_eq!(err.code(), Code::AlreadyExists, "{err}");
    // A new attempt under a new id is fine.
    let retry = new_id();
    world
        .backend
        .run_pod_sandbox(&retry, &next)
        .await
        .expect("attempt 1");

    // Unknown handler; empty metadata.
    let bad = new_id();
    let mut unknown = pod_config("handler");
    unknown.runtime_handler = "gvisor".into();
    let err = world
        .backend
        .run_pod_sandbox(&bad, &unknown)
        .await
        .expect_err("unknown handler");
    assert_eq!(err.code(), Code::InvalidArgument, "{err}");
    assert!(err.to_string().contains("gvisor"), "{err}");
    let mut nameless = pod_config("nameless");
    nameless.metadata.uid.clear();
    let err = world
        .backend
        .run_pod_sandbox(&bad, &nameless)
        .await
        .expect_err("no uid");
    assert_eq!(err.code(), Code::InvalidArgument, "{err}");
    assert_clean(&world, &bad).await;

    for id in [&id, &retry] {
        world.backend.remove_pod_sandbox(id).await.expect("remove");
        assert_clean(&world, id).await;
    }
}

/// A network whose ADD fails (a plugin missing, or failing after bridge attached the pod)
/// leaves neither netns, nor files, nor IPAM reservations, nor containerd objects.
#[tokio::test]
async fn failing_network_setup_rolls_back() {
    for net in [Net::MissingPlugin, Net::FailingPlugin] {
        let world = PodWorld::with(net, "pause").await;
        let id = new_id();
        let err = world
            .backend
            .run_pod_sandbox(&id, &pod_config_with_port("nonet", host_port()))
            .await
            .expect_err("run must fail");
        eprintln!("{net:?}: {err}");
        assert_clean(&world, &id).await;
        let status = world.backend.status().await.expect("status");
        assert_eq!(
            status.network_ready,
            net == Net::FailingPlugin,
            "{status:?}"
        );
    }
}

/// A pause that cannot start fails after the network, files and containerd object exist:
/// all of them are undone.
#[tokio::test]
async fn failing_pause_rolls_back_everything() {
    let world = PodWorld::with(Net::Good, "broken").await;
    let id = new_id();
    let err = world
        .backend
        .run_pod_sandbox(&id, &pod_config_with_port("broken", host_port()))
        .await
        .expect_err("run must fail");
    eprintln!("{err}");
    assert_clean(&world, &id).await;
    assert!(world
        .backend
        .list_pod_sandboxes()
        .await
        .expect("list")
        .is_empty());
    assert!(std::fs::read_dir(world.state_dir.join("sandboxes"))
        .map(|d| d.count() == 0)
        .unwrap_or(true));
}

#[tokio::test]
async fn host_network_pod_has_no_netns_and_no_shm() {
    let world = PodWorld::new().await;
    let id = new_id();
    world
        .backend
        .run_pod_sandbox(&id, &host_network_config("hostnet"))
        .await
        .expect("run");
    let status = world
        .backend
        .pod_sandbox_status(&id, true)
        .await
        .expect("status");
    assert_eq!(status.summary.state, SandboxState::Ready);
    assert!(status.ips.is_empty());
    let info: serde_json::Value = serde_json::from_str(&status.info["info"]).expect("JSON");
    let pid = pid_of(&info);
    assert_eq!(
        ns_identity(Path::new(&format!("/proc/{pid}/ns/net"))),
        ns_identity(Path::new("/proc/self/ns/net"))
    );
    assert!(!world.netns_path(&id).exists());
    assert!(!world.cni_cache(&id).exists());
    assert!(!world.files_dir(&id).join("shm").exists());
    let node = std::fs::read_to_string("/proc/sys/kernel/hostname").expect("hostname");
    assert_eq!(
        std::fs::read_to_string(world.files_dir(&id).join("hostname")).expect("hostname"),
        format!("{}\n", node.trim())
    );
    world.backend.stop_pod_sandbox(&id).await.expect("stop");
    world.backend.remove_pod_sandbox(&id).await.expect("remove");
    assert_clean(&world, &id).await;
}

/// `pod_network = "host"` (WSL2 mirrored networking): a pod that asked for its own network
/// gets the node's instead, with no netns and no CNI, and reports the configured node IP
/// while it is ready.
#[tokio::test]
async fn node_network_backend_reports_the_node_ip() {
    let node_ip: std::net::IpAddr = "192.0.2.17".parse().expect("ip");
    let world = PodWorld::with_runtime(Net::Good, "pause", |r| {
        r.node_network_ip = Some(node_ip);
    })
    .await;
    let id = new_id();
    world
        .backend
        .run_pod_sandbox(&id, &pod_config("mirrored"))
        .await
        .expect("run");
    let status = world
        .backend
        .pod_sandbox_status(&id, true)
        .await
        .expect("status");
    assert_eq!(status.summary.state, SandboxState::Ready);
    assert_eq!(status.ips, vec![node_ip.to_string()]);
    let info: serde_json::Value = serde_json::from_str(&status.info["info"]).expect("JSON");
    let pid = pid_of(&info);
    assert_eq!(
        ns_identity(Path::new(&format!("/proc/{pid}/ns/net"))),
        ns_identity(Path::new("/proc/self/ns/net")),
        "the pause runs in the node's network"
    );
    assert!(!world.netns_path(&id).exists());
    assert!(!world.cni_cache(&id).exists());
    assert!(
        world.reserved_ips(&id).is_empty(),
        "CNI gave out no address"
    );
    world.backend.stop_pod_sandbox(&id).await.expect("stop");
    let status = world
        .backend
        .pod_sandbox_status(&id, false)
        .await
        .expect("status");
    assert_eq!(status.summary.state, SandboxState::NotReady);
    assert!(status.ips.is_empty(), "a stopped pod has no address");
    world.backend.remove_pod_sandbox(&id).await.expect("remove");
    assert_clean(&world, &id).await;
}

#[tokio::test]
async fn ten_concurrent_sandboxes_run_and_are_removed_cleanly() {
    let world = PodWorld::new().await;
    let ids: Vec<PodSandboxId> = (0..10).map(|_| new_id()).collect();
    let runs = ids.iter().enumerate().map(|(i, id)| {
        let backend = Arc::clone(&world.backend);
        let id = id.clone();
        tokio::spawn(async move {
            backend
                .run_pod_sandbox(&id, &pod_config(&format!("many-{i}")))
                .await
        })
    });
    for r in futures::future::join_all(runs).await {
        r.expect("join").expect("run");
    }
    let listed = world.backend.list_pod_sandboxes().await.expect("list");
    assert_eq!(listed.len(), 10);
    assert!(listed.iter().all(|s| s.state == SandboxState::Ready));
    let mut ips = HashSet::new();
    for id in &ids {
        let status = world
            .backend
            .pod_sandbox_status(id, false)
            .await
            .expect("status");
        assert!(
            ips.insert(status.ips[0].clone()),
            "address {} given twice",
            status.ips[0]
        );
    }
    let removes = ids.iter().map(|id| {
        let backend = Arc::clone(&world.backend);
        let id = id.clone();
        tokio::spawn(async move { backend.remove_pod_sandbox(&id).await })
    });
    for r in futures::future::join_all(removes).await {
        r.expect("join").expect("remove");
    }
    for id in &ids {
        assert_clean(&world, id).await;
    }
    assert!(world
        .backend
        .list_pod_sandboxes()
        .await
        .expect("list")
        .is_empty());
}

#[tokio::test]
async fn a_restarted_backend_finds_and_removes_earlier_sandboxes() {
    let world = PodWorld::new().await;
    let (running, stopped) = (new_id(), new_id());
    world
        .backend
        .run_pod_sandbox(&running, &pod_config("before-a"))
        .await
        .expect("run a");
    world
        .backend
        .run_pod_sandbox(&stopped, &pod_config("before-b"))
        .await
        .expect("run b");
    world
        .backend
        .stop_pod_sandbox(&stopped)
        .await
        .expect("stop b");
    let ip = world
        .backend
        .pod_sandbox_status(&running, false)
        .await
        .expect("status")
        .ips;

    // A new backend with nothing in memory, as after a crimux restart.
    let again = world.reconnect().await;
    let mut listed = again.list_pod_sandboxes().await.expect("list");
    listed.sort_by_key(|s| s.metadata.name.clone());
    let states: Vec<_> = listed.iter().map(|s| (s.id.clone(), s.state)).collect();
    assert_eq!(
        states,
        [
            (running.clone(), SandboxState::Ready),
            (stopped.clone(), SandboxState::NotReady)
        ]
    );
    let status = again
        .pod_sandbox_status(&running, false)
        .await
        .expect("status");
    assert_eq!(status.ips, ip);
    let err = again
        .run_pod_sandbox(&new_id(), &pod_config("before-a"))
        .await
        .expect_err("duplicate across restarts");
    assert_eq!(err.code(), Code::AlreadyExists);
    for id in [&running, &stopped] {
        again.remove_pod_sandbox(id).await.expect("remove");
        assert_clean(&world, id).await;
    }
}

#[tokio::test]
async fn status_reports_runtime_and_network_readiness() {
    let world = PodWorld::new().await;
    let status = world.backend.status().await.expect("status");
    assert!(status.runtime_ready && status.network_ready, "{status:?}");
    for entry in std::fs::read_dir(&world.conf_dir).expect("conf dir") {
        std::fs::remove_file(entry.expect("entry").path()).expect("remove conf");
    }
    let status = world.backend.status().await.expect("status");
    assert!(status.runtime_ready);
    assert!(!status.network_ready);
    assert_eq!(status.network_reason, "NetworkPluginNotReady");
    assert!(!status.network_message.is_empty());
}

fn host_port() -> i32 {
    30000 + i32::from(rand::random::<u16>() % 20000)
}
