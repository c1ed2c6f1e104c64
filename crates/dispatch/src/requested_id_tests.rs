//! Requested ids (`crimux.io/requested-sandbox-id` / `-container-id`): honoured when
//! well-formed and free, refused otherwise, and never seen by the backend or in statuses.

use std::sync::Arc;

use tonic::Code;

use crimux_core::{ContainerBackend, SandboxBackend, REQUESTED_CONTAINER_ID, REQUESTED_SANDBOX_ID};

use super::{container, dispatcher_at, pod};
use crate::testing::{Call, FakeBackend};
use crate::{ContainerFilter, Dispatcher, SandboxFilter};

const A: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
const B: &str = "fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210";

fn one() -> (Arc<FakeBackend>, Dispatcher) {
    let fake = FakeBackend::primary("only", "linux").into_arc();
    let d = dispatcher_at(std::slice::from_ref(&fake), None);
    (fake, d)
}

/// A pod asking for `id`, with one other annotation that must survive.
fn pod_asking(name: &str, uid: &str, id: &str) -> crimux_core::sandbox::SandboxConfig {
    let mut p = pod(name, uid, 0);
    p.annotations.insert(REQUESTED_SANDBOX_ID.into(), id.into());
    p.annotations.insert("keep".into(), "me".into());
    p
}

fn container_asking(name: &str, id: &str) -> crimux_core::container::ContainerConfig {
    let mut c = container(name, "img");
    c.annotations
        .insert(REQUESTED_CONTAINER_ID.into(), id.into());
    c.annotations.insert("keep".into(), "me".into());
    c
}

#[tokio::test]
async fn requested_sandbox_id_is_honoured_and_stripped() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fake = FakeBackend::primary("only", "linux").into_arc();
    let d = dispatcher_at(std::slice::from_ref(&fake), Some(dir.path()));
    let id = d
        .run_pod_sandbox(&pod_asking("web", "u", A))
        .await
        .expect("run");
    assert_eq!(id.as_str(), A);
    assert_eq!(fake.sandbox_ids(), [A.to_string()]);
    assert!(fake.calls().contains(&Call::RunPodSandbox {
        id: A.into(),
        pod: "default/web".into()
    }));
    // What the backend holds, what crimux records and what it reports.
    let held = fake.list_pod_sandboxes().await.expect("fake list");
    let listed = d
        .list_pod_sandboxes(&SandboxFilter::default())
        .await
        .expect("list");
    let status = d.pod_sandbox_status(A, false).await.expect("status");
    let recorded = d.route_table().last_known.sandboxes[&id].clone();
    let saved = std::fs::read_to_string(dir.path().join(crate::ROUTES_FILE)).expect("routes saved");
    for (what, annotations) in [
        ("backend", &held[0].annotations),
        ("list", &listed[0].annotations),
        ("status", &status.sandbox.summary.annotations),
        ("record", &recorded.annotations),
    ] {
        assert!(
            !annotations.contains_key(REQUESTED_SANDBOX_ID),
            "{what}: {annotations:?}"
        );
        assert_eq!(
            annotations.get("keep").map(String::as_str),
            Some("me"),
            "{what}"
        );
    }
    assert!(!saved.contains(REQUESTED_SANDBOX_ID), "{saved}");
}

#[tokio::test]
async fn malformed_requested_ids_are_invalid_arguments() {
    let cases = [
        ("empty", String::new()),
        ("short", "abc123".to_string()),
        ("uppercase", A.to_ascii_uppercase()),
        ("not hex", "g".repeat(64)),
        ("too long", format!("{A}0")),
        ("spaces", format!(" {}", &A[1..])),
    ];
    for (name, value) in cases {
        let (fake, d) = one();
        let err = d
            .run_pod_sandbox(&pod_asking("web", "u", &value))
            .await
            .expect_err(name);
        assert_eq!(err.code(), Code::InvalidArgument, "{name}: {err}");
        assert!(
            err.to_string().contains(REQUESTED_SANDBOX_ID),
            "{name}: {err}"
        );
        assert!(fake.calls().is_empty(), "{name}: backend called");
        assert!(d.route_table().sandboxes.is_empty(), "{name}");

        let sid = d.run_pod_sandbox(&pod("web", "u", 0)).await.expect("run");
        let err = d
            .create_container(
                sid.as_str(),
                &container_asking("c", &value),
                &pod("web", "u", 0),
            )
            .await
            .expect_err(name);
        assert_eq!(err.code(), Code::InvalidArgument, "{name}: {err}");
        assert!(
            err.to_string().contains(REQUESTED_CONTAINER_ID),
            "{name}: {err}"
        );
        assert!(fake.container_ids().is_empty(), "{name}");
        assert!(d.route_table().containers.is_empty(), "{name}");
    }
}

#[tokio::test]
async fn taken_requested_ids_already_exist() {
    let (fake, d) = one();
    d.run_pod_sandbox(&pod_asking("web", "u1", A))
        .await
        .expect("first");
    let err = d
        .run_pod_sandbox(&pod_asking("other", "u2", A))
        .await
        .expect_err("sandbox id taken by a sandbox");
    assert_eq!(err.code(), Code::AlreadyExists, "{err}");
    assert!(err.to_string().contains(REQUESTED_SANDBOX_ID), "{err}");
    let cid = d
        .create_container(A, &container_asking("c", B), &pod("web", "u1", 0))
        .await
        .expect("container");
    assert_eq!(cid.as_str(), B);
    for (case, result) in [
        (
            "sandbox id taken by a container",
            d.run_pod_sandbox(&pod_asking("other", "u2", B))
                .await
                .map(drop),
        ),
        (
            "container id taken by a container",
            d.create_container(A, &container_asking("c2", B), &pod("web", "u1", 0))
                .await
                .map(drop),
        ),
        (
            "container id taken by a sandbox",
            d.create_container(A, &container_asking("c3", A), &pod("web", "u1", 0))
                .await
                .map(drop),
        ),
    ] {
        let err = result.expect_err(case);
        assert_eq!(err.code(), Code::AlreadyExists, "{case}: {err}");
    }
    // A creation still in flight holds its id too.
    let pending = "1".repeat(64);
    d.routes().pending.insert(pending.clone());
    let err = d
        .run_pod_sandbox(&pod_asking("other", "u3", &pending))
        .await
        .expect_err("pending");
    assert_eq!(err.code(), Code::AlreadyExists, "{err}");
    let err = d
        .create_container(A, &container_asking("c4", &pending), &pod("web", "u1", 0))
        .await
        .expect_err("pending");
    assert_eq!(err.code(), Code::AlreadyExists, "{err}");
    // Nothing of the refused calls reached the backend.
    assert_eq!(fake.sandbox_ids(), [A.to_string()]);
    assert_eq!(fake.container_ids(), [B.to_string()]);
    let routes = d.route_table();
    assert_eq!(routes.sandboxes.len(), 1);
    assert_eq!(routes.containers.len(), 1);
}

#[tokio::test]
async fn requested_container_id_is_honoured_and_stripped() {
    let (fake, d) = one();
    // The pod config that comes with CreateContainer may still carry the pod's request.
    let p = pod_asking("web", "u", A);
    let sid = d.run_pod_sandbox(&p).await.expect("run");
    let cid = d
        .create_container(sid.as_str(), &container_asking("c", B), &p)
        .await
        .expect("create");
    assert_eq!(cid.as_str(), B);
    assert_eq!(fake.container_ids(), [B.to_string()]);
    assert_eq!(d.route_table().containers[&cid], sid);
    let held = fake.list_containers().await.expect("fake list");
    let listed = d
        .list_containers(&ContainerFilter::default())
        .await
        .expect("list");
    let status = d.container_status(B, false).await.expect("status");
    let pod_status = d.pod_sandbox_status(A, false).await.expect("pod status");
    let recorded = d.route_table().last_known.containers[&cid].clone();
    for (what, annotations) in [
        ("backend", &held[0].annotations),
        ("list", &listed[0].annotations),
        ("status", &status.summary.annotations),
        ("pod status", &pod_status.containers[0].summary.annotations),
        ("record", &recorded.annotations),
    ] {
        assert!(
            !annotations.contains_key(REQUESTED_CONTAINER_ID),
            "{what}: {annotations:?}"
        );
        assert_eq!(
            annotations.get("keep").map(String::as_str),
            Some("me"),
            "{what}"
        );
    }
    // Removed, the id is free again.
    d.remove_container(B).await.expect("remove");
    let again = d
        .create_container(sid.as_str(), &container_asking("c", B), &p)
        .await
        .expect("id reusable after removal");
    assert_eq!(again.as_str(), B);
    let _ = fake.container_status(&again, false).await.expect("exists");
}
