//! Containers on a real containerd 1.6 with runc, in pods run by the sandbox code, with
//! output through the `crimux-log` plugin. Needs root, CNI plugins in /usr/lib/cni,
//! umoci, skopeo and busybox-static; every test runs its own daemons and checks that
//! nothing is left behind.
#![cfg(target_os = "linux")]

mod common;

use std::time::{Duration, Instant};

use common::containers::{new_container_id, ContainerWorld};
use common::sandbox::new_id as new_sandbox_id;
use crimux_core::container::{ContainerSecurity, LinuxContainerConfig, Resources};
use crimux_core::status::{ContainerEventKind, ContainerState, ContainerStatus};
use crimux_core::{ContainerBackend, ContainerId, PodSandboxId, SandboxBackend};
use crimux_cri_log::{parse_line, Stream};
use tonic::Code;

async fn wait_state(
    backend: &dyn ContainerBackend,
    id: &ContainerId,
    want: ContainerState,
) -> ContainerStatus {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let s = backend.container_status(id, false).await.expect("status");
        if s.summary.state == want {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "container {id} never got {want:?}: {s:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The log file's entries as (stream, content), every line parsed with the CRI rules.
fn log_entries(path: &std::path::Path) -> Vec<(Stream, String)> {
    let text = std::fs::read(path).unwrap_or_else(|e| panic!("log {}: {e}", path.display()));
    text.split_inclusive(|b| *b == b'\n')
        .map(|line| {
            let e = parse_line(line).unwrap_or_else(|e| {
                panic!("bad CRI log line {:?}: {e}", String::from_utf8_lossy(line))
            });
            (e.stream, String::from_utf8_lossy(e.content).into_owned())
        })
        .collect()
}

async fn wait_log_line(path: &std::path::Path, needle: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if path.exists() && log_entries(path).iter().any(|(_, c)| c.contains(needle)) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{needle:?} never logged to {}",
            path.display()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn run_pod(
    world: &ContainerWorld,
    name: &str,
) -> (PodSandboxId, crimux_core::sandbox::SandboxConfig) {
    let id = new_sandbox_id();
    let config = world.pod(name);
    world
        .backend
        .run_pod_sandbox(&id, &config)
        .await
        .expect("RunPodSandbox");
    (id, config)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn container_lifecycle_logs_exit_codes_and_leaves_nothing() {
    let world = ContainerWorld::new().await;
    let backend = &world.backend;
    let mut events = crimux_core::Backend::subscribe_events(backend.as_ref()).expect("events");
    let (pod, pod_config) = run_pod(&world, "life").await;

    // A container that shows who and where it is, writes to both streams, and fails.
    let failing = new_container_id();
    let mut config = world.container(
        "failing",
        "echo out-line; echo err-line >&2; id; env; hostname; exit 3",
    );
    config.linux = Some(LinuxContainerConfig {
        resources: None,
        security: Some(ContainerSecurity {
            run_as_username: "app".into(),
            ..Default::default()
        }),
    });
    backend
        .create_container(&failing, &pod, &config, &pod_config)
        .await
        .expect("CreateContainer");
    let created = backend
        .container_status(&failing, false)
        .await
        .expect("status");
    assert_eq!(created.summary.state, ContainerState::Created);
    assert_eq!(created.summary.sandbox_id, pod);
    assert_eq!(created.summary.metadata, config.metadata);
    assert_eq!(created.summary.image, world.image);
    assert!(created.summary.image_ref.starts_with("sha256:"));
    assert_eq!(created.summary.labels, config.labels);
    assert_eq!(created.summary.annotations, config.annotations);
    let log = world.log_file(&pod_config, &config);
    assert_eq!(created.log_path, log.to_string_lossy());
    let user = created.user.expect("user");
    assert_eq!((user.uid, user.gid), (1234, 2345));
    assert!(user.supplemental_groups.contains(&3456), "{user:?}");
    assert_eq!(created.started_at, 0);

    backend
        .start_container(&failing)
        .await
        .expect("StartContainer");
    let exited = wait_state(backend.as_ref(), &failing, ContainerState::Exited).await;
    assert_eq!(exited.exit_code, 3);
    assert_eq!(exited.reason, "Error");
    assert!(
        exited.started_at > 0 && exited.finished_at >= exited.started_at,
        "{exited:?}"
    );

    wait_log_line(&log, "HOSTNAME=").await;
    let entries = log_entries(&log);
    let has = |stream: Stream, text: &str| {
        entries
            .iter()
            .any(|(s, c)| *s == stream && c.contains(text))
    };
    assert!(has(Stream::Stdout, "out-line"), "{entries:?}");
    assert!(has(Stream::Stderr, "err-line"), "{entries:?}");
    assert!(
        has(
            Stream::Stdout,
            "uid=1234(app) gid=2345(app) groups=2345(app),3456(extra)"
        ),
        "{entries:?}"
    );
    assert!(has(Stream::Stdout, "GREETING=hello world"), "{entries:?}");
    assert!(has(Stream::Stdout, "FROM_IMAGE=yes"), "{entries:?}");
    assert!(has(Stream::Stdout, "HOSTNAME=life-host"), "{entries:?}");
    assert!(
        entries
            .iter()
            .any(|(s, c)| *s == Stream::Stdout && c == "life-host"),
        "hostname: {entries:?}"
    );

    // Exit 0 is Completed.
    let ok = new_container_id();
    let ok_config = world.container("ok", "exit 0");
    backend
        .create_container(&ok, &pod, &ok_config, &pod_config)
        .await
        .expect("create ok");
    backend.start_container(&ok).await.expect("start ok");
    let done = wait_state(backend.as_ref(), &ok, ContainerState::Exited).await;
    assert_eq!((done.exit_code, done.reason.as_str()), (0, "Completed"));

    // A process that ignores SIGTERM (sh as pid 1) is killed after the grace period.
    let sleeper = new_container_id();
    backend
        .create_container(
            &sleeper,
            &pod,
            &world.container("sleeper", "trap '' TERM; sleep 1000"),
            &pod_config,
        )
        .await
        .expect("create sleeper");
    backend
        .start_container(&sleeper)
        .await
        .expect("start sleeper");
    wait_state(backend.as_ref(), &sleeper, ContainerState::Running).await;
    let err = backend
        .start_container(&sleeper)
        .await
        .expect_err("started twice");
    assert_eq!(err.code(), Code::FailedPrecondition);
    let listed = backend.list_containers().await.expect("list");
    assert_eq!(listed.len(), 3);
    assert!(listed
        .iter()
        .any(|c| c.id == sleeper && c.state == ContainerState::Running));
    let t0 = Instant::now();
    backend
        .stop_container(&sleeper, Duration::from_secs(1))
        .await
        .expect("StopContainer");
    assert!(t0.elapsed() >= Duration::from_secs(1));
    let stopped = backend
        .container_status(&sleeper, false)
        .await
        .expect("status");
    assert_eq!(stopped.summary.state, ContainerState::Exited);
    assert_eq!(stopped.exit_code, 137);
    backend
        .stop_container(&sleeper, Duration::from_secs(1))
        .await
        .expect("stopping an exited container");

    for id in [&failing, &ok, &sleeper] {
        backend.remove_container(id).await.expect("RemoveContainer");
        let err = backend.container_status(id, false).await.expect_err("gone");
        assert_eq!(err.code(), Code::NotFound);
        backend.remove_container(id).await.expect("second remove");
        let left = world.leftovers(id).await;
        assert!(left.is_empty(), "container {id} left behind: {left:#?}");
    }
    assert!(backend.list_containers().await.expect("list").is_empty());

    let mut kinds = Vec::new();
    while let Ok(e) = events.try_recv() {
        if e.container_id == sleeper {
            kinds.push(e.kind);
        }
    }
    assert_eq!(
        kinds,
        [
            ContainerEventKind::Created,
            ContainerEventKind::Started,
            ContainerEventKind::Stopped,
            ContainerEventKind::Deleted
        ]
    );

    backend
        .stop_pod_sandbox(&pod)
        .await
        .expect("StopPodSandbox");
    backend
        .remove_pod_sandbox(&pod)
        .await
        .expect("RemovePodSandbox");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn container_create_is_validated_and_failures_leave_nothing() {
    let world = ContainerWorld::new().await;
    let backend = &world.backend;
    let (pod, pod_config) = run_pod(&world, "checks").await;

    let mut bad_log = world.container("badlog", "true");
    for path in ["../escape.log", "/etc/abs.log", "a/../../b.log"] {
        bad_log.log_path = path.into();
        let id = new_container_id();
        let err = backend
            .create_container(&id, &pod, &bad_log, &pod_config)
            .await
            .expect_err(path);
        assert_eq!(err.code(), Code::InvalidArgument, "{path}: {err}");
        assert!(world.leftovers(&id).await.is_empty());
    }

    let mut missing = world.container("missing", "true");
    missing.image = format!("{}/test/nothing:1", world.pods.registry.host);
    let id = new_container_id();
    let err = backend
        .create_container(&id, &pod, &missing, &pod_config)
        .await
        .expect_err("unknown image");
    assert_eq!(err.code(), Code::NotFound);
    assert!(err.to_string().contains("test/nothing:1"), "{err}");

    let unknown_user = {
        let mut c = world.container("nouser", "true");
        c.linux = Some(LinuxContainerConfig {
            resources: None,
            security: Some(ContainerSecurity {
                run_as_username: "nobody-here".into(),
                ..Default::default()
            }),
        });
        c
    };
    let id = new_container_id();
    let err = backend
        .create_container(&id, &pod, &unknown_user, &pod_config)
        .await
        .expect_err("unknown user");
    assert_ne!(err.code(), Code::Ok);
    let left = world.leftovers(&id).await;
    assert!(left.is_empty(), "failed create left {left:#?}");

    let first = new_container_id();
    let config = world.container("dup", "sleep 1000");
    backend
        .create_container(&first, &pod, &config, &pod_config)
        .await
        .expect("create");
    let second = new_container_id();
    let err = backend
        .create_container(&second, &pod, &config, &pod_config)
        .await
        .expect_err("same name and attempt");
    assert_eq!(err.code(), Code::AlreadyExists);
    let err = backend
        .create_container(&first, &pod, &world.container("other", "true"), &pod_config)
        .await
        .expect_err("same id");
    assert_eq!(err.code(), Code::AlreadyExists);
    let mut next_attempt = config.clone();
    next_attempt.metadata.attempt = 1;
    backend
        .create_container(&second, &pod, &next_attempt, &pod_config)
        .await
        .expect("next attempt");

    let err = backend
        .create_container(&new_container_id(), &new_sandbox_id(), &config, &pod_config)
        .await
        .expect_err("unknown pod");
    assert_eq!(err.code(), Code::NotFound);

    let unknown = new_container_id();
    assert_eq!(
        backend
            .container_status(&unknown, false)
            .await
            .expect_err("unknown")
            .code(),
        Code::NotFound
    );
    backend
        .remove_container(&unknown)
        .await
        .expect("remove unknown");
    assert_eq!(
        backend
            .stop_container(&unknown, Duration::from_secs(1))
            .await
            .expect_err("stop unknown")
            .code(),
        Code::NotFound
    );
    assert_eq!(
        backend
            .reopen_container_log(&first)
            .await
            .expect_err("not running")
            .code(),
        Code::FailedPrecondition
    );

    // A start that fails leaves the container Exited (StartError) and no task behind.
    let broken = new_container_id();
    let mut no_binary = world.container("broken", "true");
    no_binary.command = vec!["/no/such/binary".into()];
    backend
        .create_container(&broken, &pod, &no_binary, &pod_config)
        .await
        .expect("create broken");
    backend
        .start_container(&broken)
        .await
        .expect_err("no binary");
    let s = backend
        .container_status(&broken, false)
        .await
        .expect("status");
    assert_eq!(
        (s.summary.state, s.exit_code, s.reason.as_str()),
        (ContainerState::Exited, 128, "StartError")
    );
    assert!(s.message.contains("no/such/binary"), "{}", s.message);
    backend
        .remove_container(&broken)
        .await
        .expect("remove broken");
    let left = world.leftovers(&broken).await;
    assert!(left.is_empty(), "failed start left {left:#?}");

    // A stopped pod takes no new containers and starts none.
    backend
        .stop_pod_sandbox(&pod)
        .await
        .expect("StopPodSandbox");
    let err = backend
        .create_container(
            &new_container_id(),
            &pod,
            &world.container("late", "true"),
            &pod_config,
        )
        .await
        .expect_err("pod not ready");
    assert_eq!(err.code(), Code::FailedPrecondition);
    let err = backend
        .start_container(&first)
        .await
        .expect_err("pod not ready");
    assert_eq!(err.code(), Code::FailedPrecondition);

    for id in [&first, &second] {
        backend.remove_container(id).await.expect("remove");
        assert!(world.leftovers(id).await.is_empty());
    }
    backend
        .remove_pod_sandbox(&pod)
        .await
        .expect("RemovePodSandbox");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containers_and_exit_codes_survive_a_crimux_restart() {
    let world = ContainerWorld::new().await;
    let (pod, pod_config) = run_pod(&world, "restart").await;
    let quitter = new_container_id();
    let runner = new_container_id();
    let created = new_container_id();
    {
        let backend = &world.backend;
        for (id, name, script) in [
            (&quitter, "quitter", "sleep 2; exit 7"),
            (&runner, "runner", "sleep 1000"),
            (&created, "created", "true"),
        ] {
            backend
                .create_container(id, &pod, &world.container(name, script), &pod_config)
                .await
                .expect("create");
        }
        backend.start_container(&quitter).await.expect("start");
        backend.start_container(&runner).await.expect("start");
        wait_state(backend.as_ref(), &quitter, ContainerState::Running).await;
    }
    // crimux is "down" while the quitter exits.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let again = world.reconnect().await;
    let q = again
        .container_status(&quitter, false)
        .await
        .expect("status");
    assert_eq!(
        (q.summary.state, q.exit_code, q.reason.as_str()),
        (ContainerState::Exited, 7, "Error")
    );
    assert!(q.started_at > 0 && q.finished_at > q.started_at);
    assert_eq!(
        again
            .container_status(&runner, false)
            .await
            .expect("status")
            .summary
            .state,
        ContainerState::Running
    );
    assert_eq!(
        again
            .container_status(&created, false)
            .await
            .expect("status")
            .summary
            .state,
        ContainerState::Created
    );
    let mut ids: Vec<ContainerId> = again
        .list_containers()
        .await
        .expect("list")
        .into_iter()
        .map(|c| c.id)
        .collect();
    ids.sort();
    let mut want = vec![quitter.clone(), runner.clone(), created.clone()];
    want.sort();
    assert_eq!(ids, want);

    again
        .start_container(&created)
        .await
        .expect("start after restart");
    wait_state(again.as_ref(), &created, ContainerState::Exited).await;
    for id in [&quitter, &runner, &created] {
        again.remove_container(id).await.expect("remove");
        assert!(world.leftovers(id).await.is_empty());
    }
    again.stop_pod_sandbox(&pod).await.expect("stop pod");
    again.remove_pod_sandbox(&pod).await.expect("remove pod");
}

/// The memory cgroup (v1) directory of a process.
fn memory_cgroup(pid: u32) -> std::path::PathBuf {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).expect("proc cgroup");
    let line = text
        .lines()
        .find(|l| {
            l.split(':')
                .nth(1)
                .is_some_and(|c| c.split(',').any(|c| c == "memory"))
        })
        .or_else(|| text.lines().find(|l| l.starts_with("0::")))
        .expect("memory cgroup line");
    let path = line.splitn(3, ':').nth(2).expect("path");
    if line.starts_with("0::") {
        std::path::Path::new("/sys/fs/cgroup").join(path.trim_start_matches('/'))
    } else {
        std::path::Path::new("/sys/fs/cgroup/memory").join(path.trim_start_matches('/'))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_reopen_after_rotation_and_resources_update_live() {
    let world = ContainerWorld::new().await;
    let backend = &world.backend;
    let (pod, pod_config) = run_pod(&world, "rotate").await;
    let id = new_container_id();
    let config = world.container(
        "ticker",
        "i=0; while true; do echo tick-$i; i=$((i+1)); sleep 0.1; done",
    );
    backend
        .create_container(&id, &pod, &config, &pod_config)
        .await
        .expect("create");
    backend.start_container(&id).await.expect("start");
    let log = world.log_file(&pod_config, &config);
    wait_log_line(&log, "tick-3").await;

    let rotated = log.with_extension("log.1");
    std::fs::rename(&log, &rotated).expect("rotate");
    backend
        .reopen_container_log(&id)
        .await
        .expect("ReopenContainerLog");
    wait_log_line(&log, "tick-").await;
    let old = log_entries(&rotated);
    let new = log_entries(&log);
    let number = |c: &str| {
        c.trim_start_matches("tick-")
            .parse::<u64>()
            .expect("tick n")
    };
    let last_old = old.iter().map(|(_, c)| number(c)).max().expect("old lines");
    let first_new = new.iter().map(|(_, c)| number(c)).min().expect("new lines");
    assert_eq!(
        first_new,
        last_old + 1,
        "no line lost or repeated across the reopen"
    );

    // Live resource update reaches the cgroup and the status.
    let verbose = backend.container_status(&id, true).await.expect("verbose");
    let info: serde_json::Value = serde_json::from_str(&verbose.info["info"]).expect("info JSON");
    let pid = info["pid"].as_u64().expect("pid") as u32;
    let resources = Resources {
        memory_limit_in_bytes: 96 << 20,
        cpu_shares: 256,
        ..Default::default()
    };
    backend
        .update_container_resources(&id, Some(&resources), None)
        .await
        .expect("UpdateContainerResources");
    let cg = memory_cgroup(pid);
    let limit = std::fs::read_to_string(cg.join("memory.limit_in_bytes"))
        .or_else(|_| std::fs::read_to_string(cg.join("memory.max")))
        .expect("memory limit file");
    assert_eq!(limit.trim(), (96u64 << 20).to_string());
    let status = backend.container_status(&id, false).await.expect("status");
    assert_eq!(status.resources, Some(resources));

    backend
        .stop_container(&id, Duration::from_secs(0))
        .await
        .expect("stop");
    assert_eq!(
        backend
            .reopen_container_log(&id)
            .await
            .expect_err("stopped")
            .code(),
        Code::FailedPrecondition
    );
    backend.remove_container(&id).await.expect("remove");
    assert!(world.leftovers(&id).await.is_empty());
    backend.stop_pod_sandbox(&pod).await.expect("stop pod");
    backend.remove_pod_sandbox(&pod).await.expect("remove pod");
}
