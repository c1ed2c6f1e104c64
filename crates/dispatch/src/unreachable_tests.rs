//! Table-driven tests of the rules session 2 completed: an unreachable backend's pods
//! listed from crimux's records, pulls routed by handler and by pod, the refusal's text,
//! RemoveImage on every store, and the image OS learned from the backends' stores.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tonic::Code;

use crimux_core::container::{ContainerConfig, ContainerMetadata};
use crimux_core::sandbox::{SandboxConfig, SandboxMetadata};
use crimux_core::status::{ContainerState, SandboxState};
use crimux_core::{Backend, ContainerBackend, Error, PullImage, SandboxBackend};

use crate::testing::{image, Call, FakeBackend};
use crate::{
    ContainerFilter, Dispatcher, SandboxFilter, BACKEND_CONDITION_PREFIX,
    BACKEND_UNREACHABLE_REASON, OS_ANNOTATION, ROUTES_FILE,
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

/// A Windows primary serving `runhcs-wcow` and a Linux delegate serving `runc`, both
/// able to pull a Windows and a Linux image.
fn win_and_wsl() -> (Arc<FakeBackend>, Arc<FakeBackend>) {
    let fake = |f: FakeBackend| {
        f.with_remote(image("sha256:w", &["example.com/win:1"], "windows"))
            .with_remote(image("sha256:l", &["example.com/lin:1"], "linux"))
            .into_arc()
    };
    (
        fake(FakeBackend::primary("win", "windows").with_handlers(&["runhcs-wcow"])),
        fake(FakeBackend::delegate("wsl", "linux").with_handlers(&["runc"])),
    )
}

fn on_wsl(name: &str, uid: &str) -> SandboxConfig {
    let mut p = pod(name, uid, 0);
    p.runtime_handler = "runc".into();
    p
}

fn ids<T>(v: &[T], id: impl Fn(&T) -> String) -> Vec<String> {
    let mut ids: Vec<String> = v.iter().map(id).collect();
    ids.sort();
    ids
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

#[tokio::test]
async fn unreachable_backend_is_listed_from_records_and_reconciled() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (win, wsl) = win_and_wsl();
    let fakes = [win.clone(), wsl.clone()];
    let d = dispatcher_at(&fakes, Some(dir.path()));
    let a = d.run_pod_sandbox(&pod("a", "ua", 0)).await.expect("a");
    let b = d.run_pod_sandbox(&on_wsl("b", "ub")).await.expect("b");
    let cb = d
        .create_container(b.as_str(), &container("cb", "i"), &on_wsl("b", "ub"))
        .await
        .expect("cb");
    d.start_container(cb.as_str()).await.expect("start");
    // A relist while everything answers records the running state.
    d.list_containers(&ContainerFilter::default())
        .await
        .expect("list");

    wsl.set_unavailable(true);
    let sandboxes = d
        .list_pod_sandboxes(&SandboxFilter::default())
        .await
        .expect("the primary still answers");
    assert_eq!(
        ids(&sandboxes, |s| s.id.0.clone()),
        sorted(vec![a.0.clone(), b.0.clone()])
    );
    let recorded = sandboxes.iter().find(|s| s.id == b).expect("b listed");
    assert_eq!(recorded.state, SandboxState::Ready, "last known state");
    assert_eq!(recorded.labels["app"], "b", "labels kept for kubelet");
    assert_eq!(recorded.runtime_handler, "runc");
    let containers = d
        .list_containers(&ContainerFilter::default())
        .await
        .expect("partial");
    assert_eq!(containers.len(), 1);
    assert_eq!(
        (&containers[0].id, containers[0].state),
        (&cb, ContainerState::Running)
    );
    assert_eq!(containers[0].metadata.name, "cb");

    // Status and every operation routed there: Unavailable, naming the backend.
    // (call, wanted code)
    let cases = [
        "sandbox status",
        "container status",
        "stop container",
        "exec sync",
        "stop sandbox",
        "remove container",
        "remove sandbox",
        "create container",
    ];
    for call in cases {
        let got = match call {
            "sandbox status" => d.pod_sandbox_status(b.as_str(), false).await.map(drop),
            "container status" => d.container_status(cb.as_str(), false).await.map(drop),
            "stop container" => d.stop_container(cb.as_str(), Duration::ZERO).await,
            "exec sync" => d
                .exec_sync(cb.as_str(), &["true".into()], None)
                .await
                .map(drop),
            "stop sandbox" => d.stop_pod_sandbox(b.as_str()).await,
            "remove container" => d.remove_container(cb.as_str()).await,
            "remove sandbox" => d.remove_pod_sandbox(b.as_str()).await,
            "create container" => d
                .create_container(b.as_str(), &container("x", "i"), &on_wsl("b", "ub"))
                .await
                .map(drop),
            other => panic!("no case {other}"),
        };
        let err = got.expect_err(call);
        assert_eq!(err.code(), Code::Unavailable, "{call}: {err}");
        assert!(err.to_string().contains("backend wsl"), "{call}: {err}");
    }
    let routes = d.route_table();
    assert!(routes.sandboxes.contains_key(&b) && routes.containers.contains_key(&cb));
    assert_eq!(
        routes.containers.len(),
        1,
        "the failed create left no route"
    );

    // The runtime Status says which backend is unreachable and why.
    let status = d.status().await;
    assert!(status.runtime_ready, "the primary answers");
    let condition = status
        .conditions
        .iter()
        .find(|c| c.kind == format!("{BACKEND_CONDITION_PREFIX}wsl"))
        .expect("a condition for wsl");
    assert!(!condition.status);
    assert_eq!(condition.reason, BACKEND_UNREACHABLE_REASON);
    assert!(
        condition.message.contains("unavailable"),
        "{}",
        condition.message
    );
    assert!(status
        .conditions
        .iter()
        .any(|c| c.kind == format!("{BACKEND_CONDITION_PREFIX}win") && c.status));

    // crimux restarts while the delegate is still down: the records come from the file.
    drop(d);
    let d = dispatcher_at(&fakes, Some(dir.path()));
    d.reconcile().await;
    let containers = d
        .list_containers(&ContainerFilter::default())
        .await
        .expect("from the file");
    assert_eq!(
        (containers.len(), containers[0].state),
        (1, ContainerState::Running)
    );

    // While it was down, its container exited and a pod appeared behind crimux's back.
    wsl.set_unavailable(false);
    wsl.stop_container(&cb, Duration::ZERO).await.expect("exit");
    let other = "e".repeat(64);
    wsl.insert_sandbox(&other, pod("other", "uo", 0));
    let sandboxes = d
        .list_pod_sandboxes(&SandboxFilter::default())
        .await
        .expect("back");
    assert_eq!(
        ids(&sandboxes, |s| s.id.0.clone()),
        sorted(vec![a.0.clone(), b.0.clone(), other.clone()]),
        "no loss, no duplicate"
    );
    let containers = d
        .list_containers(&ContainerFilter::default())
        .await
        .expect("back");
    assert_eq!(
        (containers.len(), containers[0].state),
        (1, ContainerState::Exited),
        "the backend's state, not the record's"
    );
    assert!(d.status().await.conditions.iter().all(|c| c.status));
    let saved = std::fs::read_to_string(dir.path().join(ROUTES_FILE)).expect("saved");
    let saved: serde_json::Value = serde_json::from_str(&saved).expect("json");
    assert_eq!(
        saved["last_known"]["containers"][cb.as_str()]["state"],
        "exited",
        "the record is refreshed and saved"
    );
    assert!(saved["last_known"]["sandboxes"].get(&other).is_some());

    // Removed while reachable: route and records go.
    d.remove_pod_sandbox(b.as_str()).await.expect("remove");
    let routes = d.route_table();
    assert!(!routes.last_known.sandboxes.contains_key(&b));
    assert!(routes.last_known.containers.is_empty());
}

#[tokio::test]
async fn status_calls_refresh_the_records() {
    let (win, wsl) = win_and_wsl();
    let d = dispatcher_at(&[win.clone(), wsl.clone()], None);
    let b = d.run_pod_sandbox(&on_wsl("b", "ub")).await.expect("b");
    let cb = d
        .create_container(b.as_str(), &container("cb", "i"), &on_wsl("b", "ub"))
        .await
        .expect("cb");
    let record = |d: &Dispatcher| d.route_table().last_known.containers[&cb].state;
    assert_eq!(record(&d), ContainerState::Created, "recorded at create");
    wsl.start_container(&cb)
        .await
        .expect("behind crimux's back");
    d.container_status(cb.as_str(), false)
        .await
        .expect("status");
    assert_eq!(record(&d), ContainerState::Running);
    wsl.stop_pod_sandbox(&b)
        .await
        .expect("behind crimux's back");
    d.pod_sandbox_status(b.as_str(), false)
        .await
        .expect("status");
    assert_eq!(record(&d), ContainerState::Exited);
    assert_eq!(
        d.route_table().last_known.sandboxes[&b].state,
        SandboxState::NotReady
    );
}

fn pulls(fake: &FakeBackend) -> usize {
    fake.calls()
        .iter()
        .filter(|c| matches!(c, Call::PullImage { .. }))
        .count()
}

#[tokio::test]
async fn pulls_follow_handler_and_pod() {
    // (case, runtime handler, pod uid, pod's sandbox on wsl?, image, pulls on (win, wsl),
    //  Ok(hint for the uid) | Err(code))
    type Case<'a> = (
        &'a str,
        &'a str,
        Option<&'a str>,
        Option<bool>,
        &'a str,
        (usize, usize),
        Result<Option<&'a str>, Code>,
    );
    let lin = "example.com/lin:1";
    let win_image = "example.com/win:1";
    let cases: Vec<Case<'_>> = vec![
        ("no pod: everyone", "", None, None, lin, (1, 1), Ok(None)),
        (
            "unrouted pod: everyone, hint learned",
            "",
            Some("u"),
            None,
            lin,
            (1, 1),
            Ok(Some("linux")),
        ),
        ("handler", "runc", None, None, lin, (0, 1), Ok(None)),
        (
            "handler wins over the pod",
            "runc",
            Some("u"),
            Some(false),
            lin,
            (0, 1),
            Ok(Some("linux")),
        ),
        (
            "unknown handler",
            "kata",
            None,
            None,
            lin,
            (0, 0),
            Err(Code::NotFound),
        ),
        (
            "handler whose OS cannot run it",
            "runhcs-wcow",
            None,
            None,
            lin,
            (1, 0),
            Err(Code::FailedPrecondition),
        ),
        (
            "pod on wsl",
            "",
            Some("u"),
            Some(true),
            lin,
            (0, 1),
            Ok(Some("linux")),
        ),
        (
            "pod on win, windows image",
            "",
            Some("u"),
            Some(false),
            win_image,
            (1, 0),
            Ok(Some("windows")),
        ),
        (
            "pod on win, linux image: pulled where it runs, the pod hinted",
            "",
            Some("u"),
            Some(false),
            lin,
            (1, 1),
            Ok(Some("linux")),
        ),
    ];
    for (name, handler, uid, routed_on_wsl, reference, (on_win, on_wsl_n), want) in cases {
        let (win, wsl) = win_and_wsl();
        let d = dispatcher_at(&[win.clone(), wsl.clone()], None);
        if let (Some(uid), Some(wsl_side)) = (uid, routed_on_wsl) {
            let mut p = pod("web", uid, 0);
            if wsl_side {
                p.runtime_handler = "runc".into();
            }
            d.run_pod_sandbox(&p).await.expect(name);
        }
        let request = PullImage {
            reference: reference.into(),
            pod_uid: uid.map(Into::into),
            pod_name: uid.map(|_| "default/web".to_string()),
            ..Default::default()
        };
        let got = d.pull_image_for(&request, handler).await;
        assert_eq!((pulls(&win), pulls(&wsl)), (on_win, on_wsl_n), "{name}");
        match (got, want) {
            (Ok(_), Ok(hint)) => {
                assert_eq!(d.pod_os_hint("u").as_deref(), hint, "{name}");
            }
            (Err(e), Err(code)) => {
                assert_eq!(e.code(), code, "{name}: {e}");
                if code == Code::NotFound {
                    assert!(e.to_string().contains("[runc, runhcs-wcow]"), "{name}: {e}");
                }
                if let Error::OsNotSupported(r) = &e {
                    assert_eq!(r.node_os, ["linux", "windows"], "{name}");
                }
            }
            (got, want) => panic!("{name}: got {got:?}, want {want:?}"),
        }
    }

    // The pod's backend unreachable: Unavailable naming it, nothing pulled elsewhere.
    let (win, wsl) = win_and_wsl();
    let d = dispatcher_at(&[win.clone(), wsl.clone()], None);
    d.run_pod_sandbox(&on_wsl("web", "u")).await.expect("run");
    wsl.set_unavailable(true);
    let err = d
        .pull_image(&PullImage {
            reference: lin.into(),
            pod_uid: Some("u".into()),
            ..Default::default()
        })
        .await
        .expect_err("down");
    assert_eq!(err.code(), Code::Unavailable);
    assert!(err.to_string().contains("backend wsl"), "{err}");
    assert_eq!(pulls(&win), 0);
}

#[tokio::test]
async fn refusals_name_everything_and_both_remedies() {
    let only = || {
        FakeBackend::primary("only", "linux")
            .with_remote(image("sha256:w", &["example.com/win:1"], "windows"))
            .into_arc()
    };
    // (case, what is asked, the name the message must give)
    let cases = ["pull", "annotated pod", "container"];
    for case in cases {
        let fake = only();
        let d = dispatcher_at(std::slice::from_ref(&fake), None);
        let err = match case {
            "pull" => d
                .pull_image(&PullImage {
                    reference: "example.com/win:1".into(),
                    pod_uid: Some("u".into()),
                    pod_name: Some("default/web".into()),
                    ..Default::default()
                })
                .await
                .map(drop),
            "annotated pod" => {
                let mut p = pod("web", "u", 0);
                p.annotations.insert(OS_ANNOTATION.into(), "windows".into());
                d.run_pod_sandbox(&p).await.map(drop)
            }
            "container" => {
                let p = pod("web", "u", 0);
                let sid = d.run_pod_sandbox(&p).await.expect("run");
                d.router()
                    .record_image_os(crimux_core::ImageId("sha256:w".into()), "windows");
                d.create_container(sid.as_str(), &container("c", "sha256:w"), &p)
                    .await
                    .map(drop)
            }
            other => panic!("no case {other}"),
        }
        .expect_err(case);
        let Error::OsNotSupported(r) = &err else {
            panic!("{case}: want OsNotSupported, got {err}");
        };
        assert_eq!(
            (r.required_os.as_str(), r.node_os.as_slice(), r.pod.as_str()),
            ("windows", &["linux".to_string()][..], "default/web"),
            "{case}"
        );
        let message = err.to_string();
        for needle in [
            "pod default/web",
            "needs OS \"windows\"",
            "runs only [linux]",
            "enable a crimux delegate backend for windows",
            "crimux.io/os.windows=true",
        ] {
            assert!(message.contains(needle), "{case}: {needle:?} in {message}");
        }
        if case != "annotated pod" {
            assert!(!r.image.is_empty(), "{case}: the image is named");
        }
        let status = tonic::Status::from(err);
        assert_eq!(status.code(), Code::FailedPrecondition, "{case}");
        assert!(!status.details().is_empty(), "{case}: ErrorInfo attached");
        if case == "annotated pod" {
            assert!(d.route_table().sandboxes.is_empty(), "nothing left behind");
            assert!(fake.sandbox_ids().is_empty());
        }
    }
}

#[tokio::test]
async fn remove_image_removes_from_every_store_that_has_it() {
    let multi = |os: &str| image("sha256:m", &["example.com/multi:1"], os);
    let win = FakeBackend::primary("win", "windows")
        .with_local(multi("windows"))
        .into_arc();
    let wsl = FakeBackend::delegate("wsl", "linux")
        .with_local(multi("linux"))
        .with_local(image("sha256:o", &["example.com/other:1"], "linux"))
        .into_arc();
    let d = dispatcher_at(&[win.clone(), wsl.clone()], None);
    d.remove_image("example.com/multi:1").await.expect("remove");
    assert!(win.local_images().is_empty());
    assert_eq!(wsl.local_images().len(), 1, "only the named image goes");
    for fake in [&win, &wsl] {
        assert!(fake
            .calls()
            .contains(&Call::RemoveImage("example.com/multi:1".into())));
    }
    // An unreachable backend cannot have removed it: Unavailable, naming it, while the
    // others did their part.
    wsl.set_unavailable(true);
    let err = d
        .remove_image("example.com/other:1")
        .await
        .expect_err("wsl down");
    assert_eq!(err.code(), Code::Unavailable);
    assert!(err.to_string().contains("backend wsl"), "{err}");
}

#[tokio::test]
async fn image_os_learned_from_the_stores_drives_the_round_trip() {
    // The Linux image was pulled before crimux started (or by another crimux): no pull
    // taught its OS. The pod has no handler and lands on the Windows primary.
    let win = FakeBackend::primary("win", "windows").into_arc();
    let wsl = FakeBackend::delegate("wsl", "linux")
        .with_local(image("sha256:l", &["example.com/lin:1"], "linux"))
        .into_arc();
    let d = dispatcher_at(&[win.clone(), wsl.clone()], None);
    let p = pod("web", "uid-1", 0);
    let sid = d.run_pod_sandbox(&p).await.expect("run");
    let err = d
        .create_container(sid.as_str(), &container("c", "sha256:l"), &p)
        .await
        .expect_err("linux image in a windows pod");
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert_eq!(
        win.sandbox_state(sid.as_str()),
        Some(SandboxState::NotReady)
    );
    assert_eq!(d.pod_os_hint("uid-1").as_deref(), Some("linux"));
    let next = d
        .run_pod_sandbox(&pod("web", "uid-1", 1))
        .await
        .expect("rerun");
    assert_eq!(wsl.sandbox_ids(), std::slice::from_ref(&next.0));
    d.create_container(next.as_str(), &container("c", "sha256:l"), &p)
        .await
        .expect("runs on the delegate");
}
