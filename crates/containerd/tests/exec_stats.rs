//! ExecSync, ContainerStats and the containerd event monitor, on a real containerd 1.6
//! with runc, in pods run by the sandbox code. Needs root, CNI plugins in /usr/lib/cni,
//! umoci, skopeo and busybox-static; every test runs its own daemons.
#![cfg(target_os = "linux")]

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::containers::{new_container_id, new_sandbox_id, ContainerWorld};
use containerd_client::services::v1::tasks_client::TasksClient;
use containerd_client::services::v1::ListPidsRequest;
use crimux_core::container::{LinuxContainerConfig, Resources};
use crimux_core::sandbox::SandboxConfig;
use crimux_core::status::{ContainerEvent, ContainerEventKind, ContainerState, ContainerStatus};
use crimux_core::{Backend, ContainerBackend, ContainerId, PodSandboxId, SandboxBackend};
use tokio::sync::broadcast;
use tonic::Code;

async fn run_pod(world: &ContainerWorld, name: &str) -> (PodSandboxId, SandboxConfig) {
    let id = new_sandbox_id();
    let config = world.pod(name);
    world
        .backend
        .run_pod_sandbox(&id, &config)
        .await
        .expect("RunPodSandbox");
    (id, config)
}

/// Creates and starts a container running `script` in the pod.
async fn start(
    world: &ContainerWorld,
    pod: &(PodSandboxId, SandboxConfig),
    name: &str,
    script: &str,
    resources: Option<Resources>,
) -> ContainerId {
    let id = new_container_id();
    let mut config = world.container(name, script);
    config.linux = Some(LinuxContainerConfig {
        resources,
        security: None,
    });
    world
        .backend
        .create_container(&id, &pod.0, &config, &pod.1)
        .await
        .expect("CreateContainer");
    world
        .backend
        .start_container(&id)
        .await
        .expect("StartContainer");
    id
}

async fn wait_state(
    world: &ContainerWorld,
    id: &ContainerId,
    want: ContainerState,
) -> ContainerStatus {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let s = world
            .backend
            .container_status(id, false)
            .await
            .expect("status");
        if s.summary.state == want {
            return s;
        }
        assert!(Instant::now() < deadline, "{id} never got {want:?}: {s:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn sh(script: &str) -> Vec<String> {
    vec!["/bin/sh".into(), "-c".into(), script.into()]
}

/// Pids containerd sees in the container's task (main process and execs).
async fn pids(world: &ContainerWorld, id: &ContainerId) -> Vec<u32> {
    let mut request = tonic::Request::new(ListPidsRequest {
        container_id: id.as_str().into(),
    });
    request.metadata_mut().insert(
        "containerd-namespace",
        common::NAMESPACE.parse().expect("namespace"),
    );
    TasksClient::new(world.pods.channel.clone())
        .list_pids(request)
        .await
        .expect("ListPids")
        .into_inner()
        .processes
        .iter()
        .map(|p| p.pid)
        .collect()
}

/// Files an exec leaves in the container's directory.
fn exec_files(world: &ContainerWorld, id: &ContainerId) -> Vec<String> {
    let dir = world.pods.state_dir.join("containers").join(id.as_str());
    std::fs::read_dir(&dir)
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("exec-"))
        .collect()
}

/// Whether any process on the host runs exactly `cmdline` (NUL-separated args).
fn host_runs(cmdline: &[&str]) -> bool {
    let want: Vec<u8> = cmdline
        .iter()
        .flat_map(|a| [a.as_bytes(), b"\0"].concat())
        .collect();
    std::fs::read_dir("/proc")
        .expect("/proc")
        .filter_map(Result::ok)
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .bytes()
                .all(|b| b.is_ascii_digit())
        })
        .any(|e| std::fs::read(e.path().join("cmdline")).is_ok_and(|c| c == want))
}

async fn wait_until(what: &str, limit: Duration, mut done: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done().await {
        assert!(Instant::now() < deadline, "{what} within {limit:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_sync_captures_output_exit_codes_and_kills_on_timeout() {
    let world = ContainerWorld::new().await;
    let backend = world.backend.as_ref();
    let pod = run_pod(&world, "exec").await;
    let id = start(&world, &pod, "server", "sleep 1000", None).await;
    wait_state(&world, &id, ContainerState::Running).await;
    let base = pids(&world, &id).await;

    let hi = backend
        .exec_sync(&id, &["echo".into(), "hi".into()], None)
        .await
        .expect("echo hi");
    assert_eq!(
        (hi.stdout.as_slice(), hi.stderr.as_slice(), hi.exit_code),
        (&b"hi\n"[..], &b""[..], 0)
    );

    let failed = backend
        .exec_sync(
            &id,
            &sh("echo err >&2; echo out; exit 42"),
            Some(Duration::from_secs(10)),
        )
        .await
        .expect("exit 42");
    assert_eq!(failed.exit_code, 42);
    assert_eq!(failed.stdout, b"out\n");
    assert_eq!(failed.stderr, b"err\n");

    // The exec runs as the container's process: same environment and image PATH.
    let env = backend
        .exec_sync(&id, &["env".into()], None)
        .await
        .expect("env");
    let env = String::from_utf8_lossy(&env.stdout);
    assert!(env.contains("GREETING=hello world"), "{env}");

    // More output than a pipe holds does not block the process.
    let big = backend
        .exec_sync(&id, &sh("busybox head -c 3000000 /dev/zero"), None)
        .await
        .expect("big output");
    assert_eq!((big.stdout.len(), big.exit_code), (3_000_000, 0));

    // A timeout kills the process and leaves nothing behind.
    let t0 = Instant::now();
    let err = backend
        .exec_sync(
            &id,
            &["sleep".into(), "10".into()],
            Some(Duration::from_secs(1)),
        )
        .await
        .expect_err("timed out");
    let took = t0.elapsed();
    assert_eq!(err.code(), Code::DeadlineExceeded, "{err}");
    assert!(
        took >= Duration::from_secs(1) && took < Duration::from_millis(3500),
        "{took:?}"
    );
    assert_eq!(pids(&world, &id).await, base);
    assert!(!host_runs(&["sleep", "10"]));
    assert_eq!(exec_files(&world, &id), Vec::<String>::new());

    // A caller that goes away: the process is killed and deleted in the background.
    let dropped = tokio::time::timeout(
        Duration::from_millis(700),
        backend.exec_sync(&id, &["sleep".into(), "31".into()], None),
    )
    .await;
    assert!(dropped.is_err(), "sleep 31 finished early: {dropped:?}");
    wait_until(
        "the abandoned exec is killed",
        Duration::from_secs(10),
        async || pids(&world, &id).await == base && !host_runs(&["sleep", "31"]),
    )
    .await;
    assert_eq!(exec_files(&world, &id), Vec::<String>::new());

    let empty = backend.exec_sync(&id, &[], None).await.expect_err("empty");
    assert_eq!(empty.code(), Code::InvalidArgument);
    let unknown = backend
        .exec_sync(&new_container_id(), &["true".into()], None)
        .await
        .expect_err("unknown");
    assert_eq!(unknown.code(), Code::NotFound);
    let sandbox_id = ContainerId(pod.0.as_str().to_string());
    let pause = backend
        .exec_sync(&sandbox_id, &["true".into()], None)
        .await
        .expect_err("the pause is no container");
    assert_eq!(pause.code(), Code::NotFound);

    // Created but not started, and exited: not running.
    let created = new_container_id();
    backend
        .create_container(
            &created,
            &pod.0,
            &world.container("created", "true"),
            &pod.1,
        )
        .await
        .expect("create");
    let err = backend
        .exec_sync(&created, &["true".into()], None)
        .await
        .expect_err("created");
    assert_eq!(err.code(), Code::FailedPrecondition, "{err}");
    let exited = start(&world, &pod, "exited", "exit 0", None).await;
    wait_state(&world, &exited, ContainerState::Exited).await;
    let err = backend
        .exec_sync(&exited, &["true".into()], None)
        .await
        .expect_err("exited");
    assert_eq!(err.code(), Code::FailedPrecondition, "{err}");
    assert_eq!(exec_files(&world, &exited), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_report_cpu_memory_and_the_writable_layer() {
    let world = ContainerWorld::new().await;
    let backend = world.backend.as_ref();
    let pod = run_pod(&world, "stats").await;
    let script = "busybox dd if=/dev/zero of=/big bs=1M count=8 2>/dev/null; \
                  i=0; while [ $i -lt 100000 ]; do i=$((i+1)); done; \
                  x=$(busybox head -c 4000000 /dev/zero | busybox tr '\\0' a); sleep 1000";
    let id = start(&world, &pod, "worker", script, None).await;
    wait_state(&world, &id, ContainerState::Running).await;

    let mut stats = backend.container_stats(&id).await.expect("stats");
    let deadline = Instant::now() + Duration::from_secs(30);
    while stats.writable_layer_bytes < 8 << 20 || stats.cpu_usage_core_nanos < 10_000_000 {
        assert!(
            Instant::now() < deadline,
            "the work never showed: {stats:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
        stats = backend.container_stats(&id).await.expect("stats");
    }
    let config = world.container("worker", script);
    assert_eq!(stats.id, id);
    assert_eq!(stats.sandbox_id, pod.0);
    assert_eq!(stats.metadata, config.metadata);
    assert_eq!(stats.labels, config.labels);
    assert_eq!(stats.annotations, config.annotations);
    assert!(stats.memory_working_set_bytes > 0, "{stats:?}");
    assert!(
        stats.memory_usage_bytes >= stats.memory_working_set_bytes,
        "{stats:?}"
    );
    assert!(stats.writable_layer_inodes > 0, "{stats:?}");
    assert!(
        Path::new(&stats.writable_layer_mountpoint).is_dir(),
        "{stats:?}"
    );
    assert!(stats.timestamp > 0);

    // CPU is cumulative.
    let later = backend.container_stats(&id).await.expect("stats");
    assert!(later.cpu_usage_core_nanos >= stats.cpu_usage_core_nanos);

    // Stopped: no CPU or memory, the layer is still there.
    backend
        .stop_container(&id, Duration::from_secs(1))
        .await
        .expect("stop");
    let stopped = backend.container_stats(&id).await.expect("stats");
    assert_eq!(
        (
            stopped.cpu_usage_core_nanos,
            stopped.memory_working_set_bytes,
            stopped.memory_usage_bytes
        ),
        (0, 0, 0)
    );
    assert!(stopped.writable_layer_bytes >= 8 << 20, "{stopped:?}");

    let unknown = backend
        .container_stats(&new_container_id())
        .await
        .expect_err("unknown");
    assert_eq!(unknown.code(), Code::NotFound);
}

/// The next event about `id` of kind `kind`, skipping others.
async fn next_event(
    events: &mut broadcast::Receiver<ContainerEvent>,
    id: &ContainerId,
    kind: ContainerEventKind,
    limit: Duration,
) -> ContainerEvent {
    let deadline = Instant::now() + limit;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, events.recv()).await {
            Ok(Ok(e)) if e.container_id == *id && e.kind == kind => return e,
            Ok(Ok(_)) | Ok(Err(broadcast::error::RecvError::Lagged(_))) => {}
            Ok(Err(e)) => panic!("event stream closed: {e}"),
            Err(_) => panic!("no {kind:?} event for {id} within {limit:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn monitor_reports_exits_and_oom_kills_and_survives_a_daemon_restart() {
    let mut world = ContainerWorld::new().await;
    let mut events = world.backend.subscribe_events().expect("events");
    let pod = run_pod(&world, "monitor").await;

    // A container that exits by itself: STOPPED with its exit status.
    let quitter = start(&world, &pod, "quitter", "sleep 1; exit 7", None).await;
    let event = next_event(
        &mut events,
        &quitter,
        ContainerEventKind::Stopped,
        Duration::from_secs(20),
    )
    .await;
    let own = event
        .containers
        .iter()
        .find(|c| c.summary.id == quitter)
        .expect("the container's status in its event");
    assert_eq!(
        (own.summary.state, own.exit_code),
        (ContainerState::Exited, 7)
    );
    assert!(event.created_at > 0);

    // An exec exiting is no container event.
    let server = start(&world, &pod, "server", "sleep 1000", None).await;
    wait_state(&world, &server, ContainerState::Running).await;
    world
        .backend
        .exec_sync(&server, &["true".into()], None)
        .await
        .expect("exec");
    let quiet = tokio::time::timeout(
        Duration::from_millis(500),
        next_event(
            &mut events,
            &server,
            ContainerEventKind::Stopped,
            Duration::from_secs(5),
        ),
    )
    .await;
    assert!(
        quiet.is_err(),
        "an exec exit was reported as a container stop"
    );

    // OOM: a 16Mi limit and a process that keeps allocating.
    let limits = Resources {
        memory_limit_in_bytes: 16 << 20,
        ..Default::default()
    };
    let hog = start(
        &world,
        &pod,
        "hog",
        "busybox head -c 300000000 /dev/zero | busybox tail",
        Some(limits),
    )
    .await;
    next_event(
        &mut events,
        &hog,
        ContainerEventKind::Stopped,
        Duration::from_secs(30),
    )
    .await;
    let status = wait_state(&world, &hog, ContainerState::Exited).await;
    assert_eq!(status.reason, "OOMKilled", "{status:?}");
    // Durable: a restarted crimux still says so.
    let again = world.reconnect().await;
    let status = again.container_status(&hog, false).await.expect("status");
    assert_eq!(status.reason, "OOMKilled", "{status:?}");
    drop(again);

    // containerd restarts: the monitor subscribes again and still sees exits.
    world.pods.containerd.restart();
    let late = start(&world, &pod, "late", "sleep 4; exit 3", None).await;
    let event = next_event(
        &mut events,
        &late,
        ContainerEventKind::Stopped,
        Duration::from_secs(30),
    )
    .await;
    let own = event
        .containers
        .iter()
        .find(|c| c.summary.id == late)
        .expect("status in event");
    assert_eq!(own.exit_code, 3);
}
