//! `kind = "cri"` backends: a `CriBackend` forwarding every Backend call to an in-process
//! inner crimux (CriServer over a dispatcher of a recording fake), checking what the fake
//! received (ids, paths, handlers) and what comes back (host paths, codes, events, relayed
//! exec/attach/port-forward sessions).

#[path = "common/echo_backend.rs"]
mod echo_backend;
#[path = "common/forward_harness.rs"]
mod forward_harness;
#[path = "common/old_inner.rs"]
mod old_inner;

use std::sync::Arc;
use std::time::Duration;

use k8s_cri::v1;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::Code;

use crimux_core::container::{ContainerConfig, ContainerMetadata, Mount, Resources};
use crimux_core::sandbox::{SandboxConfig, SandboxMetadata};
use crimux_core::status::{ContainerEventKind, ContainerState, SandboxState};
use crimux_core::{
    Backend, BackendRole, ContainerBackend, ContainerId, Error, ExecSpec, ImageBackend, Platform,
    PodSandboxId, PullImage, SandboxBackend, StatusBackend, StreamIo, StreamingBackend,
};
use crimux_cri::forward::{CriBackend, CriBackendConfig, ForwardedHandler, PathMapping};
use crimux_dispatch::testing::{image, Call, FakeBackend};

use echo_backend::EXEC_EXIT_CODE;
use forward_harness::{channel_to, Inner};
use old_inner::OldInner;

const WAIT: Duration = Duration::from_secs(10);

fn config(os: Option<&str>) -> CriBackendConfig {
    CriBackendConfig {
        name: "wsl".into(),
        role: BackendRole::Delegate,
        os: os.map(Into::into),
        arch: os.map(|_| "amd64".into()),
        runtime_handlers: vec![ForwardedHandler {
            name: "wsl".into(),
            remote: "".into(),
        }],
        path_map: vec![PathMapping {
            host: "C:\\".into(),
            backend: "/mnt/c/".into(),
        }],
    }
}

fn inner_fake() -> Arc<FakeBackend> {
    FakeBackend::primary("inner", "linux")
        .with_remote(image(
            "sha256:bb",
            &["docker.io/library/busybox:latest"],
            "linux",
        ))
        .with_remote(image(
            "sha256:win",
            &["mcr.microsoft.com/nanoserver:ltsc2022"],
            "windows",
        ))
        .with_fs(crimux_core::FsUsage {
            timestamp_ns: 1,
            mountpoint: "/var/lib/containerd/snapshots".into(),
            used_bytes: 100,
            inodes_used: 10,
        })
        .into_arc()
}

async fn forward(inner: &Inner) -> Arc<CriBackend> {
    CriBackend::connect(config(Some("linux")), inner.channel())
        .await
        .expect("connect")
}

fn pod_id(n: u8) -> PodSandboxId {
    PodSandboxId(format!("{n:02x}").repeat(32))
}

fn container_id(n: u8) -> ContainerId {
    ContainerId(format!("c{n:x}").repeat(32))
}

fn pod(name: &str) -> SandboxConfig {
    SandboxConfig {
        metadata: SandboxMetadata {
            name: name.into(),
            uid: format!("uid-{name}"),
            namespace: "default".into(),
            attempt: 0,
        },
        log_directory: format!("C:\\var\\log\\pods\\default_{name}_uid"),
        runtime_handler: "wsl".into(),
        ..Default::default()
    }
}

fn container(name: &str, log_path: &str) -> ContainerConfig {
    ContainerConfig {
        metadata: ContainerMetadata {
            name: name.into(),
            attempt: 0,
        },
        image: "docker.io/library/busybox:latest".into(),
        command: vec!["sleep".into(), "inf".into()],
        log_path: log_path.into(),
        stdin: true,
        mounts: vec![
            Mount {
                container_path: "/data".into(),
                host_path: "c:\\Data\\web".into(),
                ..Default::default()
            },
            Mount {
                container_path: "/etc/hosts".into(),
                host_path: "/var/lib/crimux/hosts".into(),
                ..Default::default()
            },
        ],
        ..Default::default()
    }
}

/// A ready pod with one running container, created through the forward.
async fn pod_with_container(backend: &CriBackend) -> (PodSandboxId, ContainerId) {
    let (p, c) = (pod_id(1), container_id(1));
    backend
        .run_pod_sandbox(&p, &pod("web"))
        .await
        .expect("run pod through the forward");
    backend
        .create_container(&c, &p, &container("web", "web\\0.log"), &pod("web"))
        .await
        .expect("create container through the forward");
    backend.start_container(&c).await.expect("start");
    (p, c)
}

#[tokio::test]
async fn connect_learns_info_and_unreachable_is_unavailable() {
    let inner = Inner::start(inner_fake()).await;
    let backend = forward(&inner).await;
    let info = Backend::info(backend.as_ref());
    assert_eq!(info.name, "wsl");
    assert_eq!(info.role, BackendRole::Delegate);
    assert_eq!(info.platform, Platform::new("linux", "amd64"));
    assert_eq!(info.runtime_handlers, ["wsl"]);

    // Without a configured platform, the inner crimux's verbose Status names it.
    let discovered = CriBackend::connect(config(None), inner.channel())
        .await
        .expect("connect discovering the platform");
    assert_eq!(discovered.info().platform.os, "linux");
    assert_eq!(discovered.info().platform.architecture, "amd64");

    let nowhere = inner.socket().with_file_name("nobody.sock");
    let err = CriBackend::connect(config(Some("linux")), channel_to(&nowhere))
        .await
        .expect_err("nothing listens there");
    assert_eq!(err.code(), Code::Unavailable, "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("wsl") && msg.contains("the crimux it forwards to"),
        "{msg}"
    );
    drop((backend, discovered));
    inner.stop().await;
}

#[tokio::test]
async fn images_forward() {
    let inner = Inner::start(inner_fake()).await;
    let backend = forward(&inner).await;

    assert_eq!(
        backend.image_status("sha256:bb").await.expect("status"),
        None
    );
    let id = backend
        .pull_image(&PullImage {
            reference: "docker.io/library/busybox:latest".into(),
            pod_uid: Some("uid-web".into()),
            ..Default::default()
        })
        .await
        .expect("pull");
    assert_eq!(id.as_str(), "sha256:bb");
    assert!(inner.fake.calls().contains(&Call::PullImage {
        reference: "docker.io/library/busybox:latest".into(),
        pod_uid: Some("uid-web".into()),
        authenticated: false,
    }));

    let img = backend
        .image_status("sha256:bb")
        .await
        .expect("status")
        .expect("present after the pull");
    assert_eq!(img.id, id);
    assert_eq!(img.repo_tags, ["docker.io/library/busybox:latest"]);
    assert_eq!(img.platform.os, "linux");
    let listed = backend.list_images().await.expect("list");
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].id, id);
    let fs = backend.image_fs_info().await.expect("fs info");
    assert_eq!(fs.len(), 1);
    assert_eq!(fs[0].used_bytes, 100);

    backend.remove_image("sha256:bb").await.expect("remove");
    assert!(backend.list_images().await.expect("list").is_empty());

    let err = backend
        .pull_image(&PullImage {
            reference: "docker.io/library/nosuch:1".into(),
            ..Default::default()
        })
        .await
        .expect_err("unknown image");
    assert_eq!(err.code(), Code::NotFound, "{err}");
    let err = backend
        .pull_image(&PullImage {
            reference: "mcr.microsoft.com/nanoserver:ltsc2022".into(),
            ..Default::default()
        })
        .await
        .expect_err("a Windows image on a Linux crimux");
    assert!(
        matches!(&err, Error::OsNotSupported(r) if r.required_os == "windows"),
        "{err:?}"
    );
    drop(backend);
    inner.stop().await;
}

#[tokio::test]
async fn ids_paths_and_handlers_cross_the_forward() {
    let inner = Inner::start(inner_fake()).await;
    let backend = forward(&inner).await;
    let (p, c) = pod_with_container(&backend).await;

    // The inner side made the outer dispatcher's ids.
    assert_eq!(inner.fake.sandbox_ids(), [p.as_str()]);
    assert_eq!(inner.fake.container_ids(), [c.as_str()]);

    // It received its own paths...
    let raw = inner.container_status(&c.0).await;
    assert_eq!(raw.log_path, "web/0.log");
    let hosts: Vec<&str> = raw.mounts.iter().map(|m| m.host_path.as_str()).collect();
    assert_eq!(hosts, ["/mnt/c/Data/web", "/var/lib/crimux/hosts"]);

    // ...and the outer side sees host paths again.
    let status = backend.container_status(&c, false).await.expect("status");
    assert_eq!(status.summary.state, ContainerState::Running);
    assert_eq!(status.summary.sandbox_id, p);
    let hosts: Vec<&str> = status.mounts.iter().map(|m| m.host_path.as_str()).collect();
    assert_eq!(hosts, ["C:\\Data\\web", "/var/lib/crimux/hosts"]);

    // An absolute host log path is mapped and mapped back.
    let c2 = container_id(2);
    backend
        .create_container(
            &c2,
            &p,
            &container("side", "C:\\logs\\side.log"),
            &pod("web"),
        )
        .await
        .expect("second container");
    let raw = inner.container_status(&c2.0).await;
    assert_eq!(raw.log_path, "/mnt/c/logs/side.log");
    let status = backend.container_status(&c2, false).await.expect("status");
    assert_eq!(status.log_path, "C:\\logs\\side.log");

    // The handler: "wsl" outside is the default one inside, and "wsl" again on the way out.
    let sandbox = backend.pod_sandbox_status(&p, false).await.expect("status");
    assert_eq!(sandbox.summary.runtime_handler, "wsl");
    assert_eq!(sandbox.summary.state, SandboxState::Ready);
    let raw = inner.sandbox_status(&p.0).await;
    assert_eq!(raw.runtime_handler, "");
    let listed = backend.list_pod_sandboxes().await.expect("list");
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].runtime_handler, "wsl");
    drop(backend);
    inner.stop().await;
}

#[tokio::test]
async fn every_runtime_call_forwards_and_keeps_its_code() {
    let inner = Inner::start(inner_fake()).await;
    let backend = forward(&inner).await;
    let (p, c) = pod_with_container(&backend).await;

    let containers = backend.list_containers().await.expect("list");
    assert_eq!(containers.len(), 1);
    assert_eq!(containers[0].id, c);

    let out = backend
        .exec_sync(
            &c,
            &["echo".into(), "hi".into()],
            Some(Duration::from_millis(1500)),
        )
        .await
        .expect("exec sync");
    assert_eq!(out.stdout, b"echo hi");
    assert_eq!(out.exit_code, 2);
    assert!(inner.fake.calls().contains(&Call::ExecSync {
        id: c.0.clone(),
        cmd: vec!["echo".into(), "hi".into()],
        timeout: Some(Duration::from_secs(2)),
    }));

    let resources = Resources {
        cpu_shares: 512,
        memory_limit_in_bytes: 64 << 20,
        ..Default::default()
    };
    backend
        .update_container_resources(&c, Some(&resources), None)
        .await
        .expect("update");
    assert!(inner
        .fake
        .calls()
        .contains(&Call::UpdateContainerResources {
            id: c.0.clone(),
            linux: Some(resources.clone()),
        }));
    backend.reopen_container_log(&c).await.expect("reopen");

    let stats = backend.container_stats(&c).await.expect("container stats");
    assert_eq!(
        (stats.id.clone(), stats.memory_usage_bytes),
        (c.clone(), 300)
    );
    assert_eq!(stats.sandbox_id, p);
    let pod_stats = backend.pod_sandbox_stats(&p).await.expect("pod stats");
    assert_eq!(pod_stats.id, p);
    assert_eq!(pod_stats.containers.len(), 1);

    let status = backend.status().await.expect("status");
    assert!(status.runtime_ready && status.network_ready, "{status:?}");

    // Errors keep their codes.
    let unknown_c = container_id(9);
    let unknown_p = pod_id(9);
    let codes = [
        (
            backend.container_status(&unknown_c, false).await.map(drop),
            Code::NotFound,
        ),
        (backend.start_container(&unknown_c).await, Code::NotFound),
        (
            backend
                .pod_sandbox_status(&unknown_p, false)
                .await
                .map(drop),
            Code::NotFound,
        ),
        (backend.start_container(&c).await, Code::FailedPrecondition),
        (
            backend.run_pod_sandbox(&p, &pod("web")).await,
            Code::AlreadyExists,
        ),
        (
            backend
                .create_container(&unknown_c, &unknown_p, &container("x", "x.log"), &pod("x"))
                .await,
            Code::NotFound,
        ),
    ];
    for (i, (result, code)) in codes.into_iter().enumerate() {
        let err = result.expect_err("must fail");
        assert_eq!(err.code(), code, "case {i}: {err}");
    }

    backend
        .stop_container(&c, Duration::from_secs(5))
        .await
        .expect("stop");
    assert!(inner.fake.calls().contains(&Call::StopContainer {
        id: c.0.clone(),
        timeout: Duration::from_secs(5),
    }));
    backend.remove_container(&c).await.expect("remove");
    backend
        .remove_container(&c)
        .await
        .expect("remove is idempotent");
    backend.stop_pod_sandbox(&p).await.expect("stop pod");
    assert_eq!(inner.fake.sandbox_state(&p.0), Some(SandboxState::NotReady));
    backend.remove_pod_sandbox(&p).await.expect("remove pod");
    assert!(inner.fake.sandbox_ids().is_empty());
    drop(backend);
    inner.stop().await;
}

#[tokio::test]
async fn events_are_relayed_with_host_paths() {
    let inner = Inner::start(inner_fake()).await;
    let backend = forward(&inner).await;
    let mut events = backend.subscribe_events().expect("events");
    let (_, c) = pod_with_container(&backend).await;

    let mut kinds = Vec::new();
    while kinds.len() < 2 {
        let event = tokio::time::timeout(WAIT, events.recv())
            .await
            .expect("an event in time")
            .expect("relay alive");
        assert_eq!(event.container_id, c);
        let status = event
            .containers
            .iter()
            .find(|s| s.summary.id == c)
            .expect("the container's status in its event");
        assert_eq!(status.mounts[0].host_path, "C:\\Data\\web");
        if let Some(sandbox) = &event.sandbox {
            assert_eq!(sandbox.summary.runtime_handler, "wsl");
        }
        kinds.push(event.kind);
    }
    assert_eq!(
        kinds,
        [ContainerEventKind::Created, ContainerEventKind::Started]
    );

    // Dropping the backend stops the relay: the last sender goes away.
    drop(backend);
    let end = tokio::time::timeout(WAIT, events.recv())
        .await
        .expect("the relay ends in time");
    assert!(end.is_err(), "{end:?}");
    inner.stop().await;
}

#[tokio::test]
async fn taken_ids_are_refused_by_the_inner_crimux() {
    let inner = Inner::start(inner_fake()).await;
    let backend = forward(&inner).await;
    let (p, _) = pod_with_container(&backend).await;
    let err = backend
        .run_pod_sandbox(&p, &pod("other"))
        .await
        .expect_err("id taken");
    assert_eq!(err.code(), Code::AlreadyExists, "{err}");
    assert_eq!(inner.fake.sandbox_ids(), [p.as_str()]);
    drop(backend);
    inner.stop().await;
}

#[tokio::test]
async fn an_inner_crimux_ignoring_requested_ids_is_refused_and_cleaned_up() {
    let fake = inner_fake();
    let old = OldInner::start(fake.clone()).await;
    let backend = CriBackend::connect(config(Some("linux")), channel_to(&old.socket()))
        .await
        .expect("connect");
    let err = backend
        .run_pod_sandbox(&pod_id(1), &pod("web"))
        .await
        .expect_err("the inner crimux chose its own id");
    assert_eq!(err.code(), Code::FailedPrecondition, "{err}");
    assert!(err.to_string().contains("upgrade"), "{err}");
    assert!(fake.sandbox_ids().is_empty(), "{:?}", fake.sandbox_ids());
    let calls = fake.calls();
    assert!(calls
        .iter()
        .any(|c| matches!(c, Call::RunPodSandbox { .. })));
    assert!(calls.iter().any(|c| matches!(c, Call::RemovePodSandbox(_))));

    // A container: the pod is put in place under the inner crimux's own id first.
    let inner_pod = old_pod(&old).await;
    let err = backend
        .create_container(
            &container_id(1),
            &PodSandboxId(inner_pod),
            &container("web", "web.log"),
            &pod("web"),
        )
        .await
        .expect_err("the inner crimux chose its own id");
    assert_eq!(err.code(), Code::FailedPrecondition, "{err}");
    assert!(
        fake.container_ids().is_empty(),
        "{:?}",
        fake.container_ids()
    );
}

/// A pod made directly on the old inner crimux; its id.
async fn old_pod(old: &OldInner) -> String {
    let mut client =
        k8s_cri::v1::runtime_service_client::RuntimeServiceClient::new(channel_to(&old.socket()));
    client
        .run_pod_sandbox(v1::RunPodSandboxRequest {
            config: Some(crimux_cri::convert::sandbox_config_to_proto(&pod("direct"))),
            runtime_handler: String::new(),
        })
        .await
        .expect("direct pod")
        .into_inner()
        .pod_sandbox_id
}

/// A writer half whose bytes the test reads back once the session is over.
fn capture() -> (crimux_core::ByteWriter, tokio::io::DuplexStream) {
    let (write, read) = tokio::io::duplex(64 * 1024);
    (Box::pin(write), read)
}

async fn read_all(mut r: tokio::io::DuplexStream) -> Vec<u8> {
    let mut out = Vec::new();
    tokio::time::timeout(WAIT, r.read_to_end(&mut out))
        .await
        .expect("output in time")
        .expect("read");
    out
}

#[tokio::test]
async fn exec_attach_and_port_forward_are_relayed() {
    let inner = Inner::start(inner_fake()).await;
    let backend = forward(&inner).await;
    let (p, c) = pod_with_container(&backend).await;

    backend.check_exec(&c).await.expect("exec possible");
    let err = backend
        .check_exec(&container_id(9))
        .await
        .expect_err("unknown");
    assert_eq!(err.code(), Code::NotFound);

    let (stdout, out) = capture();
    let (stderr, errs) = capture();
    let io = StreamIo {
        stdin: Some(Box::pin(&b" and stdin"[..])),
        stdout: Some(stdout),
        stderr: Some(stderr),
        resize: None,
    };
    let spec = ExecSpec {
        cmd: vec!["echo".into(), "hi".into()],
        tty: false,
    };
    let code = tokio::time::timeout(WAIT, backend.exec(&c, &spec, io))
        .await
        .expect("exec in time")
        .expect("exec relayed");
    assert_eq!(code, EXEC_EXIT_CODE);
    assert_eq!(read_all(out).await, b"echo hi and stdin");
    assert_eq!(read_all(errs).await, b"err");

    backend.check_attach(&c).await.expect("attach possible");
    let (stdout, out) = capture();
    let io = StreamIo {
        stdin: None,
        stdout: Some(stdout),
        stderr: None,
        resize: None,
    };
    tokio::time::timeout(WAIT, backend.attach(&c, io))
        .await
        .expect("attach in time")
        .expect("attach relayed");
    assert_eq!(read_all(out).await, b"attached");

    backend.check_port_forward(&p).await.expect("pod ready");
    let mut conn = tokio::time::timeout(WAIT, backend.port_forward(&p, 8080))
        .await
        .expect("port-forward in time")
        .expect("port-forward relayed");
    conn.write_all(b"ping").await.expect("write");
    let mut buf = [0u8; 4];
    tokio::time::timeout(WAIT, conn.read_exact(&mut buf))
        .await
        .expect("echo in time")
        .expect("read");
    assert_eq!(&buf, b"ping");
    drop(conn);

    backend.stop_pod_sandbox(&p).await.expect("stop pod");
    let err = backend.check_port_forward(&p).await.expect_err("not ready");
    assert_eq!(err.code(), Code::FailedPrecondition);
    let err = backend.check_exec(&c).await.expect_err("not running");
    assert_eq!(err.code(), Code::FailedPrecondition);
    drop(backend);
    inner.stop().await;
}
