//! Table-driven tests of pod and container routing, durable routes, list merging, status
//! and events, against recording fakes.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use tonic::Code;

use crimux_core::container::{ContainerConfig, ContainerMetadata};
use crimux_core::sandbox::{SandboxConfig, SandboxMetadata};
use crimux_core::status::{BackendStatus, ContainerEventKind, ContainerState, SandboxState};
use crimux_core::{Backend, BackendRole, Error, ImageId, SandboxBackend};

use crate::testing::{image, Call, FakeBackend};
use crate::{
    merge_status, BackendReport, ContainerFilter, Dispatcher, SandboxFilter, OS_ANNOTATION,
    ROUTES_FILE,
};

fn dispatcher_at(fakes: &[Arc<FakeBackend>], dir: Option<&Path>) -> Dispatcher {
    let backends: Vec<Arc<dyn Backend>> = fakes
        .iter()
        .map(|f| f.clone() as Arc<dyn Backend>)
        .collect();
    Dispatcher::new(backends, dir.map(Path::to_path_buf)).expect("valid topology")
}

fn pod(name: &str, uid: &str, attempt: u32) -> SandboxConfig {
    SandboxConfig {
        metadata: SandboxMetadata {
            name: name.into(),
            uid: uid.into(),
            namespace: "default".into(),
            attempt,
        },
        labels: BTreeMap::from([("app".to_string(), name.to_string())]),
        ..Default::default()
    }
}

fn container(name: &str, image: &str) -> ContainerConfig {
    ContainerConfig {
        metadata: ContainerMetadata {
            name: name.into(),
            attempt: 0,
        },
        image: image.into(),
        labels: BTreeMap::from([("c".to_string(), name.to_string())]),
        ..Default::default()
    }
}

/// A Windows primary serving `runhcs-wcow` and a Linux delegate serving `runc`.
fn win_and_wsl() -> (Arc<FakeBackend>, Arc<FakeBackend>) {
    let win = FakeBackend::primary("win", "windows")
        .with_handlers(&["runhcs-wcow"])
        .with_remote(image("sha256:w", &["example.com/win:1"], "windows"))
        .with_remote(image("sha256:l", &["example.com/lin:1"], "linux"))
        .into_arc();
    let wsl = FakeBackend::delegate("wsl", "linux")
        .with_handlers(&["runc"])
        .with_remote(image("sha256:w", &["example.com/win:1"], "windows"))
        .with_remote(image("sha256:l", &["example.com/lin:1"], "linux"))
        .into_arc();
    (win, wsl)
}

fn ran_on(fake: &FakeBackend) -> usize {
    fake.calls()
        .iter()
        .filter(|c| matches!(c, Call::RunPodSandbox { .. }))
        .count()
}

#[tokio::test]
async fn run_pod_sandbox_places_and_routes() {
    // (case, handler, os annotation, Ok(backend) | Err(code))
    type Case<'a> = (&'a str, &'a str, Option<&'a str>, Result<&'a str, Code>);
    let cases: Vec<Case<'_>> = vec![
        ("default goes to primary", "", None, Ok("win")),
        ("handler", "runc", None, Ok("wsl")),
        ("annotation", "", Some("linux"), Ok("wsl")),
        ("unknown handler", "kata", None, Err(Code::NotFound)),
        (
            "OS nobody runs",
            "",
            Some("freebsd"),
            Err(Code::FailedPrecondition),
        ),
    ];
    for (name, handler, os, want) in cases {
        let (win, wsl) = win_and_wsl();
        let d = dispatcher_at(&[win.clone(), wsl.clone()], None);
        let mut config = pod("web", "uid-1", 0);
        config.runtime_handler = handler.into();
        if let Some(os) = os {
            config.annotations.insert(OS_ANNOTATION.into(), os.into());
        }
        match (d.run_pod_sandbox(&config).await, want) {
            (Ok(id), Ok(backend)) => {
                assert_eq!(id.as_str().len(), 64, "{name}");
                assert!(id
                    .as_str()
                    .bytes()
                    .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
                let routes = d.route_table();
                assert_eq!(routes.sandboxes[&id].backend, backend, "{name}");
                let (hit, miss) = if backend == "win" {
                    (&win, &wsl)
                } else {
                    (&wsl, &win)
                };
                assert_eq!(hit.sandbox_ids(), std::slice::from_ref(&id.0), "{name}");
                assert_eq!(ran_on(miss), 0, "{name}");
            }
            (Err(e), Err(code)) => {
                assert_eq!(e.code(), code, "{name}: {e}");
                if let Error::OsNotSupported(r) = &e {
                    assert_eq!(r.pod, "default/web");
                }
                if code == Code::NotFound {
                    assert!(e.to_string().contains("runc, runhcs-wcow"), "{name}: {e}");
                }
                assert!(d.route_table().sandboxes.is_empty(), "{name}");
            }
            (got, want) => panic!("{name}: got {got:?}, want {want:?}"),
        }
    }
}

#[tokio::test]
async fn pod_hint_from_pull_places_the_pod() {
    let (win, wsl) = win_and_wsl();
    let d = dispatcher_at(&[win.clone(), wsl.clone()], None);
    d.pull_image(&crimux_core::PullImage {
        reference: "example.com/lin:1".into(),
        pod_uid: Some("uid-9".into()),
        ..Default::default()
    })
    .await
    .expect("pull");
    d.run_pod_sandbox(&pod("lin", "uid-9", 0))
        .await
        .expect("run");
    assert_eq!(ran_on(&wsl), 1);
}

#[tokio::test]
async fn duplicate_pod_is_refused_across_backends() {
    let (win, wsl) = win_and_wsl();
    let d = dispatcher_at(&[win.clone(), wsl.clone()], None);
    let mut on_wsl = pod("web", "uid-1", 0);
    on_wsl
        .annotations
        .insert(OS_ANNOTATION.into(), "linux".into());
    d.run_pod_sandbox(&on_wsl).await.expect("first");
    // Same incarnation without the annotation would land on the primary.
    let err = d
        .run_pod_sandbox(&pod("web", "uid-1", 0))
        .await
        .expect_err("dup");
    assert_eq!(err.code(), Code::AlreadyExists);
    assert_eq!(ran_on(&win), 0);
    // The next attempt is a new incarnation.
    d.run_pod_sandbox(&pod("web", "uid-1", 1))
        .await
        .expect("attempt 1");
}

#[tokio::test]
async fn failed_creates_drop_their_routes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fake = FakeBackend::primary("only", "linux").into_arc();
    let d = dispatcher_at(std::slice::from_ref(&fake), Some(dir.path()));

    fake.fail_op_with("run_pod_sandbox", || Error::Internal("pause failed".into()));
    let err = d
        .run_pod_sandbox(&pod("web", "u", 0))
        .await
        .expect_err("fails");
    assert_eq!(err.code(), Code::Internal);
    let Some(Call::RunPodSandbox { id, .. }) = fake.calls().last().cloned() else {
        panic!("backend was called: {:?}", fake.calls());
    };
    assert!(d.route_table().sandboxes.is_empty());
    let saved = std::fs::read_to_string(dir.path().join(ROUTES_FILE)).expect("saved");
    assert!(!saved.contains(&id), "dropped from the file too");
    // The same pod incarnation can be retried: the failed route does not make it a dup.
    fake.clear_failures();
    let sid = d.run_pod_sandbox(&pod("web", "u", 0)).await.expect("retry");
    fake.fail_op_with("create_container", || {
        Error::InvalidArgument("bad mount".into())
    });
    let err = d
        .create_container(sid.as_str(), &container("c", "img"), &pod("web", "u", 0))
        .await
        .expect_err("fails");
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(d.route_table().containers.is_empty());
    let saved = std::fs::read_to_string(dir.path().join(ROUTES_FILE)).expect("saved");
    let saved: serde_json::Value = serde_json::from_str(&saved).expect("json");
    assert!(saved["sandboxes"].get(sid.as_str()).is_some());
    assert_eq!(saved["containers"], serde_json::json!({}));
}

#[tokio::test]
async fn route_is_saved_before_the_backend_is_asked() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().join("state");
    let fake = FakeBackend::primary("only", "linux").into_arc();
    let d = dispatcher_at(std::slice::from_ref(&fake), Some(&state));
    // Make saving impossible: the state directory becomes a file.
    std::fs::write(&state, b"not a directory").expect("write");
    let err = d
        .run_pod_sandbox(&pod("web", "u", 0))
        .await
        .expect_err("cannot save");
    assert_eq!(err.code(), Code::Internal);
    assert_eq!(ran_on(&fake), 0, "no backend call without a saved route");
    assert!(d.route_table().sandboxes.is_empty());
}

#[tokio::test]
async fn routes_survive_a_restart_and_are_reconciled() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (win, wsl) = win_and_wsl();
    let fakes = [win.clone(), wsl.clone()];
    let d = dispatcher_at(&fakes, Some(dir.path()));
    let mut lin = pod("lin", "uid-l", 0);
    lin.runtime_handler = "runc".into();
    let sid = d.run_pod_sandbox(&lin).await.expect("run");
    let cid = d
        .create_container(sid.as_str(), &container("c", "img"), &lin)
        .await
        .expect("create");
    drop(d);

    // Restart with the delegate down: its routes come from the file.
    wsl.set_unavailable(true);
    let d = dispatcher_at(&fakes, Some(dir.path()));
    d.reconcile().await;
    assert_eq!(d.route_table().containers[&cid], sid);
    wsl.set_unavailable(false);
    d.start_container(cid.as_str())
        .await
        .expect("routed to wsl");
    assert!(wsl.calls().contains(&Call::StartContainer(cid.0.clone())));

    // Restart with the file lost: the backends' lists rebuild it, and a sandbox made
    // behind crimux's back is picked up.
    std::fs::remove_file(dir.path().join(ROUTES_FILE)).expect("rm");
    win.insert_sandbox(&"b".repeat(64), pod("other", "uid-o", 0));
    let d = dispatcher_at(&fakes, Some(dir.path()));
    assert!(d.route_table().sandboxes.is_empty());
    d.reconcile().await;
    let routes = d.route_table();
    assert_eq!(routes.sandboxes[&sid].backend, "wsl");
    assert_eq!(
        routes.sandboxes[&crimux_core::PodSandboxId("b".repeat(64))].backend,
        "win"
    );
    assert_eq!(routes.containers[&cid], sid);

    // A route whose sandbox the backend no longer has is dropped on reconcile.
    wsl.remove_pod_sandbox(&sid)
        .await
        .expect("behind crimux's back");
    let d = dispatcher_at(&fakes, Some(dir.path()));
    d.reconcile().await;
    assert!(!d.route_table().sandboxes.contains_key(&sid));
    assert!(d.route_table().containers.is_empty());
    let err = d.start_container(cid.as_str()).await.expect_err("gone");
    assert_eq!(err.code(), Code::NotFound);
}

#[tokio::test]
async fn unknown_ids_not_found_or_idempotent() {
    let fake = FakeBackend::primary("only", "linux").into_arc();
    let d = dispatcher_at(std::slice::from_ref(&fake), None);
    let x = "0".repeat(64);
    let x = x.as_str();
    let c = container("c", "i");
    let p = pod("p", "u", 0);
    // (call, result code; None = Ok)
    let cases: Vec<(&str, Option<Code>)> = vec![
        ("stop sandbox", None),
        ("remove sandbox", None),
        ("remove container", None),
        ("sandbox status", Some(Code::NotFound)),
        ("sandbox stats", Some(Code::NotFound)),
        ("create container", Some(Code::NotFound)),
        ("start", Some(Code::NotFound)),
        ("stop", Some(Code::NotFound)),
        ("status", Some(Code::NotFound)),
        ("update", Some(Code::NotFound)),
        ("reopen", Some(Code::NotFound)),
        ("exec sync", Some(Code::NotFound)),
        ("stats", Some(Code::NotFound)),
    ];
    for (call, want) in cases {
        let got: Result<(), Error> = match call {
            "stop sandbox" => d.stop_pod_sandbox(x).await,
            "remove sandbox" => d.remove_pod_sandbox(x).await,
            "remove container" => d.remove_container(x).await,
            "sandbox status" => d.pod_sandbox_status(x, false).await.map(drop),
            "sandbox stats" => d.pod_sandbox_stats(x).await.map(drop),
            "create container" => d.create_container(x, &c, &p).await.map(drop),
            "start" => d.start_container(x).await,
            "stop" => d.stop_container(x, Duration::ZERO).await,
            "status" => d.container_status(x, false).await.map(drop),
            "update" => d.update_container_resources(x, None, None).await,
            "reopen" => d.reopen_container_log(x).await,
            "exec sync" => d.exec_sync(x, &["true".into()], None).await.map(drop),
            "stats" => d.container_stats(x).await.map(drop),
            other => panic!("no case {other}"),
        };
        assert_eq!(got.map_err(|e| e.code()).err(), want, "{call}");
    }
    assert!(
        fake.calls().is_empty(),
        "nothing reached the backend: {:?}",
        fake.calls()
    );
    let err = d.start_container("").await.expect_err("empty");
    assert_eq!(err.code(), Code::InvalidArgument);
}

#[tokio::test]
async fn lifecycle_follows_the_pod_and_prefixes_resolve() {
    let (win, wsl) = win_and_wsl();
    let d = dispatcher_at(&[win.clone(), wsl.clone()], None);
    let mut lin = pod("lin", "uid-l", 0);
    lin.runtime_handler = "runc".into();
    let sid = d.run_pod_sandbox(&lin).await.expect("run");
    let cid = d
        .create_container(&sid.as_str()[..12], &container("c", "img"), &lin)
        .await
        .expect("create by prefix");
    d.start_container(cid.as_str()).await.expect("start");
    let out = d
        .exec_sync(
            &cid.as_str()[..8],
            &["echo".into(), "hi".into()],
            Some(Duration::from_secs(3)),
        )
        .await
        .expect("exec");
    assert_eq!(out.stdout, b"echo hi");
    d.stop_container(cid.as_str(), Duration::from_secs(5))
        .await
        .expect("stop");
    assert!(wsl.calls().contains(&Call::StopContainer {
        id: cid.0.clone(),
        timeout: Duration::from_secs(5)
    }));
    let report = d
        .pod_sandbox_status(sid.as_str(), false)
        .await
        .expect("status");
    assert_eq!(report.containers.len(), 1);
    assert_eq!(report.containers[0].summary.state, ContainerState::Exited);
    assert!(report.timestamp > 0);
    // The image ("img") is in no store: CreateContainer looked for its OS in the
    // primary's store too. Nothing else went there.
    assert!(
        win.calls()
            .iter()
            .all(|c| matches!(c, Call::ImageStatus(i) if i == "img")),
        "nothing went to the primary: {:?}",
        win.calls()
    );

    d.remove_pod_sandbox(sid.as_str()).await.expect("remove");
    let routes = d.route_table();
    assert!(routes.sandboxes.is_empty() && routes.containers.is_empty());
    d.remove_pod_sandbox(sid.as_str())
        .await
        .expect("idempotent");
}

#[tokio::test]
async fn image_os_mismatch_round_trip() {
    let (win, wsl) = win_and_wsl();
    let d = dispatcher_at(&[win.clone(), wsl.clone()], None);
    let id = d
        .pull_image(&crimux_core::PullImage {
            reference: "example.com/lin:1".into(),
            ..Default::default()
        })
        .await
        .expect("pull");
    // No hint and no handler: the pod lands on the Windows primary.
    let p = pod("web", "uid-1", 0);
    let sid = d.run_pod_sandbox(&p).await.expect("run");
    let err = d
        .create_container(sid.as_str(), &container("c", id.as_str()), &p)
        .await
        .expect_err("linux image in a windows pod");
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(!matches!(err, Error::OsNotSupported(_)), "{err}");
    assert!(err.to_string().contains("linux"), "{err}");
    assert_eq!(
        win.sandbox_state(sid.as_str()),
        Some(SandboxState::NotReady)
    );
    assert!(d.route_table().containers.is_empty());
    assert_eq!(d.pod_os_hint("uid-1").as_deref(), Some("linux"));
    // kubelet's retry: a new attempt is placed on the Linux delegate, then the old
    // sandbox is removed; the hint lasts while the pod has a sandbox.
    let old = sid;
    let sid = d
        .run_pod_sandbox(&pod("web", "uid-1", 1))
        .await
        .expect("rerun");
    assert_eq!(wsl.sandbox_ids(), std::slice::from_ref(&sid.0));
    d.remove_pod_sandbox(old.as_str())
        .await
        .expect("remove old");
    assert_eq!(d.pod_os_hint("uid-1").as_deref(), Some("linux"));

    // An image OS no backend runs is refused by name.
    d.router()
        .record_image_os(ImageId("sha256:bsd".into()), "freebsd");
    let err = d
        .create_container(sid.as_str(), &container("c", "sha256:bsd"), &p)
        .await
        .expect_err("freebsd");
    let Error::OsNotSupported(r) = err else {
        panic!("want OsNotSupported, got {err}");
    };
    assert_eq!(
        (r.required_os.as_str(), r.pod.as_str()),
        ("freebsd", "default/web")
    );
    assert_eq!(r.node_os, ["linux", "windows"]);
    // A matching image goes through.
    d.create_container(sid.as_str(), &container("c", id.as_str()), &p)
        .await
        .expect("linux image in a linux pod");
    d.remove_pod_sandbox(sid.as_str())
        .await
        .expect("remove last");
    assert_eq!(d.pod_os_hint("uid-1"), None);
}

#[tokio::test]
async fn lists_merge_filter_and_skip_unavailable() {
    let (win, wsl) = win_and_wsl();
    let d = dispatcher_at(&[win.clone(), wsl.clone()], None);
    let a = d.run_pod_sandbox(&pod("a", "ua", 0)).await.expect("a");
    let mut bp = pod("b", "ub", 0);
    bp.runtime_handler = "runc".into();
    let b = d.run_pod_sandbox(&bp).await.expect("b");
    let ca = d
        .create_container(a.as_str(), &container("ca", "i"), &pod("a", "ua", 0))
        .await
        .expect("ca");
    let cb = d
        .create_container(b.as_str(), &container("cb", "i"), &bp)
        .await
        .expect("cb");
    d.start_container(cb.as_str()).await.expect("start");
    d.stop_pod_sandbox(a.as_str()).await.expect("stop a");

    let ids = |v: Vec<String>| v;
    // (filter, want sandbox ids)
    let cases = vec![
        (SandboxFilter::default(), vec![a.0.clone(), b.0.clone()]),
        (
            SandboxFilter {
                id: b.0[..6].into(),
                ..Default::default()
            },
            vec![b.0.clone()],
        ),
        (
            SandboxFilter {
                state: Some(SandboxState::Ready),
                ..Default::default()
            },
            vec![b.0.clone()],
        ),
        (
            SandboxFilter {
                labels: BTreeMap::from([("app".into(), "a".into())]),
                ..Default::default()
            },
            vec![a.0.clone()],
        ),
    ];
    for (filter, want) in cases {
        let got = d.list_pod_sandboxes(&filter).await.expect("list");
        assert_eq!(
            ids(got.into_iter().map(|s| s.id.0).collect()),
            want,
            "{filter:?}"
        );
    }
    let cases = vec![
        (ContainerFilter::default(), vec![ca.0.clone(), cb.0.clone()]),
        (
            ContainerFilter {
                sandbox_id: b.0.clone(),
                ..Default::default()
            },
            vec![cb.0.clone()],
        ),
        (
            ContainerFilter {
                state: Some(ContainerState::Running),
                ..Default::default()
            },
            vec![cb.0.clone()],
        ),
        (
            ContainerFilter {
                id: ca.0[..5].into(),
                ..Default::default()
            },
            vec![ca.0.clone()],
        ),
        (
            ContainerFilter {
                labels: BTreeMap::from([("c".into(), "cb".into())]),
                ..Default::default()
            },
            vec![cb.0.clone()],
        ),
    ];
    for (filter, want) in cases {
        let got = d.list_containers(&filter).await.expect("list");
        assert_eq!(
            got.into_iter().map(|c| c.id.0).collect::<Vec<_>>(),
            want,
            "{filter:?}"
        );
    }
    let stats = d
        .list_container_stats(&ContainerFilter::default())
        .await
        .expect("stats");
    assert_eq!(stats.len(), 2);
    let pod_stats = d
        .list_pod_sandbox_stats(&SandboxFilter {
            id: a.0.clone(),
            ..Default::default()
        })
        .await
        .expect("pod stats");
    assert_eq!(pod_stats.len(), 1);
    assert_eq!(pod_stats[0].containers.len(), 1);

    // The delegate goes down: its pods come from the records (see unreachable_tests.rs),
    // filtered like the rest, and its routes are kept.
    wsl.set_unavailable(true);
    let got = d
        .list_pod_sandboxes(&SandboxFilter {
            state: Some(SandboxState::Ready),
            ..Default::default()
        })
        .await
        .expect("partial");
    assert_eq!(
        got.into_iter().map(|s| s.id.0).collect::<Vec<_>>(),
        std::slice::from_ref(&b.0)
    );
    let got = d
        .list_containers(&ContainerFilter::default())
        .await
        .expect("partial");
    assert_eq!(got.len(), 2);
    assert!(d.route_table().containers.contains_key(&cb));
    let stats = d
        .list_container_stats(&ContainerFilter::default())
        .await
        .expect("stats of the reachable");
    assert_eq!(
        stats.len(),
        1,
        "nothing measured for an unreachable backend"
    );
    win.set_unavailable(true);
    let err = d
        .list_containers(&ContainerFilter::default())
        .await
        .expect_err("all down");
    assert_eq!(err.code(), Code::Unavailable);
    win.set_unavailable(false);
    win.fail_op_with("list_pod_sandboxes", || Error::Internal("boom".into()));
    let err = d
        .list_pod_sandboxes(&SandboxFilter::default())
        .await
        .expect_err("other errors fail");
    assert_eq!(err.code(), Code::Internal);
}

#[test]
fn status_merges() {
    let ready = |net: bool, reason: &str| {
        Ok(BackendStatus {
            runtime_ready: true,
            runtime_reason: String::new(),
            network_ready: net,
            network_reason: reason.into(),
            network_message: "cni".into(),
        })
    };
    let report = |name: &str, role, status| BackendReport {
        name: name.into(),
        role,
        platform: crimux_core::Platform::host(),
        status,
    };
    use BackendRole::{Delegate, Primary};
    // (case, reports, runtime ready, network ready, network reason)
    let cases = vec![
        (
            "all ready",
            vec![
                report("w", Primary, ready(true, "")),
                report("l", Delegate, ready(true, "")),
            ],
            true,
            true,
            "",
        ),
        (
            "delegate down",
            vec![
                report("w", Primary, ready(true, "")),
                report("l", Delegate, Err("down".into())),
            ],
            true,
            true,
            "",
        ),
        (
            "primary down",
            vec![
                report("w", Primary, Err("down".into())),
                report("l", Delegate, ready(true, "")),
            ],
            false,
            true,
            "",
        ),
        (
            "delegate network",
            vec![
                report("w", Primary, ready(true, "")),
                report("l", Delegate, ready(false, "NoCNI")),
            ],
            true,
            false,
            "NoCNI",
        ),
        (
            "network reason defaulted",
            vec![report("w", Primary, ready(false, ""))],
            true,
            false,
            "NetworkPluginNotReady",
        ),
        (
            "nobody answers",
            vec![report("w", Primary, Err("x".into()))],
            false,
            false,
            "NetworkPluginNotReady",
        ),
    ];
    for (name, reports, runtime, network, reason) in cases {
        let s = merge_status(reports);
        assert_eq!(s.runtime_ready, runtime, "{name}");
        assert_eq!(s.network_ready, network, "{name}");
        assert_eq!(s.network_reason, reason, "{name}");
        if !runtime {
            assert!(
                s.runtime_message.contains("backend w"),
                "{name}: {}",
                s.runtime_message
            );
        }
    }
}

#[tokio::test]
async fn events_merge_from_every_backend() {
    let (win, wsl) = win_and_wsl();
    let d = dispatcher_at(&[win.clone(), wsl.clone()], None);
    let mut events = d.subscribe_events().expect("fakes report events");
    let a = d.run_pod_sandbox(&pod("a", "ua", 0)).await.expect("a");
    let mut bp = pod("b", "ub", 0);
    bp.runtime_handler = "runc".into();
    let b = d.run_pod_sandbox(&bp).await.expect("b");
    let ca = d
        .create_container(a.as_str(), &container("ca", "i"), &pod("a", "ua", 0))
        .await
        .expect("ca");
    let cb = d
        .create_container(b.as_str(), &container("cb", "i"), &bp)
        .await
        .expect("cb");
    d.start_container(cb.as_str()).await.expect("start");
    let mut got = Vec::new();
    for _ in 0..3 {
        let e = tokio::time::timeout(Duration::from_secs(5), events.next())
            .await
            .expect("event in time")
            .expect("stream open");
        got.push((
            e.container_id.0.clone(),
            e.kind,
            e.sandbox.map(|s| s.summary.id.0),
        ));
    }
    got.sort_by_key(|(id, kind, _)| (id.clone(), *kind as u8));
    let mut want = vec![
        (ca.0.clone(), ContainerEventKind::Created, Some(a.0.clone())),
        (cb.0.clone(), ContainerEventKind::Created, Some(b.0.clone())),
        (cb.0.clone(), ContainerEventKind::Started, Some(b.0.clone())),
    ];
    want.sort_by_key(|(id, kind, _)| (id.clone(), *kind as u8));
    assert_eq!(got, want);
}

#[tokio::test]
async fn node_status_asks_every_backend() {
    let (win, wsl) = win_and_wsl();
    let d = dispatcher_at(&[win.clone(), wsl.clone()], None);
    wsl.set_status(BackendStatus {
        runtime_ready: true,
        runtime_reason: String::new(),
        network_ready: false,
        network_reason: "NetworkPluginNotReady".into(),
        network_message: "no CNI config".into(),
    });
    let s = d.status().await;
    assert!(s.runtime_ready);
    assert!(!s.network_ready);
    assert_eq!(s.network_message, "backend wsl: no CNI config");
    assert_eq!(s.backends.len(), 2);
}

#[path = "requested_id_tests.rs"]
mod requested_id;
