//! Streaming harness: a pod with running containers in a [`ContainerWorld`], and the
//! client's side of exec/attach sessions as in-memory pipes (`tokio::io::duplex`, bounded,
//! so back-pressure is real).

use std::time::{Duration, Instant};

use containerd_client::services::v1::tasks_client::TasksClient;
use containerd_client::services::v1::ListPidsRequest;
use crimux_core::container::ContainerConfig;
use crimux_core::sandbox::SandboxConfig;
use crimux_core::status::ContainerState;
use crimux_core::streaming::{StreamIo, TermSize};
use crimux_core::{ContainerBackend, ContainerId, PodSandboxId, SandboxBackend};
use tokio::io::{AsyncReadExt, DuplexStream};
use tokio::sync::mpsc;

use super::containers::{new_container_id, new_sandbox_id, ContainerWorld};

/// Bytes each in-memory client pipe holds.
pub const PIPE: usize = 64 << 10;

pub async fn run_pod(
    world: &ContainerWorld,
    config: SandboxConfig,
) -> (PodSandboxId, SandboxConfig) {
    let id = new_sandbox_id();
    world
        .backend
        .run_pod_sandbox(&id, &config)
        .await
        .expect("RunPodSandbox");
    (id, config)
}

/// Creates and starts `config` in the pod and waits until it runs.
pub async fn start(
    world: &ContainerWorld,
    pod: &(PodSandboxId, SandboxConfig),
    config: &ContainerConfig,
) -> ContainerId {
    let id = new_container_id();
    world
        .backend
        .create_container(&id, &pod.0, config, &pod.1)
        .await
        .expect("CreateContainer");
    world
        .backend
        .start_container(&id)
        .await
        .expect("StartContainer");
    wait_state(world, &id, ContainerState::Running).await;
    id
}

pub async fn wait_state(world: &ContainerWorld, id: &ContainerId, want: ContainerState) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let s = world
            .backend
            .container_status(id, false)
            .await
            .expect("status");
        if s.summary.state == want {
            return;
        }
        assert!(Instant::now() < deadline, "{id} never got {want:?}: {s:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub fn sh(script: &str) -> Vec<String> {
    vec!["/bin/sh".into(), "-c".into(), script.into()]
}

/// Pids containerd sees in the container's task (main process and execs).
pub async fn pids(world: &ContainerWorld, id: &ContainerId) -> Vec<u32> {
    let mut request = tonic::Request::new(ListPidsRequest {
        container_id: id.as_str().into(),
    });
    request.metadata_mut().insert(
        "containerd-namespace",
        super::NAMESPACE.parse().expect("namespace"),
    );
    let mut pids: Vec<u32> = TasksClient::new(world.pods.channel.clone())
        .list_pids(request)
        .await
        .expect("ListPids")
        .into_inner()
        .processes
        .iter()
        .map(|p| p.pid)
        .collect();
    pids.sort_unstable();
    pids
}

/// Files an exec leaves in the container's directory.
pub fn exec_files(world: &ContainerWorld, id: &ContainerId) -> Vec<String> {
    let dir = world.pods.state_dir.join("containers").join(id.as_str());
    std::fs::read_dir(&dir)
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("exec-"))
        .collect()
}

pub async fn wait_until(what: &str, limit: Duration, mut done: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done().await {
        assert!(Instant::now() < deadline, "{what} within {limit:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The test's ends of a session's streams.
#[derive(Default)]
pub struct Ends {
    pub stdin: Option<DuplexStream>,
    pub stdout: Option<DuplexStream>,
    pub stderr: Option<DuplexStream>,
    pub resize: Option<mpsc::Sender<TermSize>>,
}

/// A session's streams: `want` = (stdin, stdout, stderr, resize).
pub fn client(want: (bool, bool, bool, bool)) -> (StreamIo, Ends) {
    let mut ends = Ends::default();
    let mut io = StreamIo {
        stdin: None,
        stdout: None,
        stderr: None,
        resize: None,
    };
    if want.0 {
        let (ours, theirs) = tokio::io::duplex(PIPE);
        ends.stdin = Some(ours);
        io.stdin = Some(Box::pin(theirs));
    }
    if want.1 {
        let (ours, theirs) = tokio::io::duplex(PIPE);
        ends.stdout = Some(ours);
        io.stdout = Some(Box::pin(theirs));
    }
    if want.2 {
        let (ours, theirs) = tokio::io::duplex(PIPE);
        ends.stderr = Some(ours);
        io.stderr = Some(Box::pin(theirs));
    }
    if want.3 {
        let (tx, rx) = mpsc::channel(8);
        ends.resize = Some(tx);
        io.resize = Some(rx);
    }
    (io, ends)
}

/// Reads everything until the session drops its end.
pub async fn read_all(end: Option<DuplexStream>) -> Vec<u8> {
    let mut out = Vec::new();
    if let Some(mut end) = end {
        end.read_to_end(&mut out).await.expect("read client end");
    }
    out
}

/// Reads from `end` into `seen` until `seen` contains `want`.
pub async fn read_until(end: &mut DuplexStream, seen: &mut Vec<u8>, want: &str, limit: Duration) {
    let deadline = Instant::now() + limit;
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(seen).contains(want) {
        let left = deadline.saturating_duration_since(Instant::now());
        let n = tokio::time::timeout(left, end.read(&mut buf))
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "{want:?} not seen within {limit:?}; got {:?}",
                    String::from_utf8_lossy(seen)
                )
            })
            .expect("read");
        assert!(
            n > 0,
            "stream ended before {want:?}: {:?}",
            String::from_utf8_lossy(seen)
        );
        seen.extend_from_slice(&buf[..n]);
    }
}
