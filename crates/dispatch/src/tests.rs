//! Table-driven tests of routing and the image fan-outs, against recording fakes.

use std::collections::BTreeMap;
use std::sync::Arc;

use crimux_core::{
    Backend, BackendInfo, BackendRole, Error, FsUsage, ImageId, Platform, PullImage,
};
use tonic::Code;

use crate::testing::{image, Call, FakeBackend};
use crate::{Dispatcher, PlacedBy, PodPlacement, Router, OS_ANNOTATION};

fn info(name: &str, role: BackendRole, os: &str, handlers: &[&str]) -> BackendInfo {
    BackendInfo {
        name: name.into(),
        role,
        platform: Platform::new(os, "amd64"),
        runtime_handlers: handlers.iter().map(|h| h.to_string()).collect(),
    }
}

fn dispatcher(fakes: &[Arc<FakeBackend>]) -> Dispatcher {
    let backends: Vec<Arc<dyn Backend>> = fakes
        .iter()
        .map(|f| f.clone() as Arc<dyn Backend>)
        .collect();
    Dispatcher::new(backends, None).expect("valid topology")
}

fn pull(reference: &str, pod_uid: Option<&str>) -> PullImage {
    PullImage {
        reference: reference.into(),
        pod_uid: pod_uid.map(Into::into),
        pod_name: pod_uid.map(|_| "default/web".to_string()),
        ..Default::default()
    }
}

#[test]
fn topology_validation() {
    use BackendRole::{Delegate, Primary};
    let cases: Vec<(&str, Vec<BackendInfo>, Option<&str>)> = vec![
        ("one primary", vec![info("a", Primary, "linux", &[])], None),
        ("no backends", vec![], Some("no backends")),
        (
            "no primary",
            vec![info("a", Delegate, "linux", &[])],
            Some("found 0"),
        ),
        (
            "two primaries",
            vec![
                info("a", Primary, "linux", &[]),
                info("b", Primary, "windows", &[]),
            ],
            Some("found 2 (a, b)"),
        ),
        (
            "duplicate name",
            vec![
                info("a", Primary, "windows", &[]),
                info("a", Delegate, "linux", &[]),
            ],
            Some("\"a\" is used twice"),
        ),
        (
            "empty name",
            vec![info("", Primary, "linux", &[])],
            Some("empty name"),
        ),
        (
            "shared handler",
            vec![
                info("win", Primary, "windows", &["runhcs-wcow"]),
                info("wsl", Delegate, "linux", &["runc", "runhcs-wcow"]),
            ],
            Some("\"runhcs-wcow\" is served by both backend \"win\" and \"wsl\""),
        ),
        (
            "default handler is every backend's",
            vec![
                info("win", Primary, "windows", &["", "runhcs-wcow"]),
                info("wsl", Delegate, "linux", &["", "runc"]),
            ],
            None,
        ),
    ];
    for (name, infos, want_err) in cases {
        match (Router::new(infos), want_err) {
            (Ok(_), None) => {}
            (Err(e), Some(needle)) => {
                assert_eq!(e.code(), Code::InvalidArgument, "{name}");
                assert!(e.to_string().contains(needle), "{name}: {e}");
            }
            (Ok(_), Some(needle)) => panic!("{name}: accepted, wanted error {needle:?}"),
            (Err(e), None) => panic!("{name}: rejected: {e}"),
        }
    }
}

#[test]
fn dispatcher_validates_like_router() {
    let a = FakeBackend::delegate("a", "linux").into_arc();
    let err = Dispatcher::new(vec![a as Arc<dyn Backend>], None).expect_err("no primary");
    assert_eq!(err.code(), Code::InvalidArgument);
}

#[test]
fn pod_placement() {
    use BackendRole::{Delegate, Primary};
    let mut router = Router::new(vec![
        info("win", Primary, "windows", &["runhcs-wcow"]),
        info("wsl", Delegate, "linux", &["runc"]),
    ])
    .expect("valid");
    router.record_pull(
        Some("uid-linux"),
        &[(crate::BackendIdx(1), ImageId("sha256:l".into()))],
    );
    // (case, handler, annotation, uid, Ok(backend, rule) | Err(code))
    type Want = Result<(&'static str, PlacedBy), Code>;
    let cases: Vec<(&str, &str, Option<&str>, &str, Want)> = vec![
        (
            "handler wins",
            "runc",
            None,
            "u",
            Ok(("wsl", PlacedBy::RuntimeHandler)),
        ),
        (
            "handler over hint",
            "runhcs-wcow",
            None,
            "uid-linux",
            Ok(("win", PlacedBy::RuntimeHandler)),
        ),
        (
            "handler agrees with annotation",
            "runc",
            Some("linux"),
            "u",
            Ok(("wsl", PlacedBy::RuntimeHandler)),
        ),
        (
            "handler conflicts with annotation",
            "runc",
            Some("windows"),
            "u",
            Err(Code::InvalidArgument),
        ),
        ("unknown handler", "kata", None, "u", Err(Code::NotFound)),
        (
            "annotation",
            "",
            Some("Linux"),
            "u",
            Ok(("wsl", PlacedBy::Annotation)),
        ),
        (
            "annotation over hint",
            "",
            Some("windows"),
            "uid-linux",
            Ok(("win", PlacedBy::Annotation)),
        ),
        (
            "annotation for absent OS",
            "",
            Some("freebsd"),
            "u",
            Err(Code::FailedPrecondition),
        ),
        (
            "learned hint",
            "",
            None,
            "uid-linux",
            Ok(("wsl", PlacedBy::PodHint)),
        ),
        (
            "primary by default",
            "",
            None,
            "other",
            Ok(("win", PlacedBy::Primary)),
        ),
        (
            "blank annotation ignored",
            "",
            Some(" "),
            "other",
            Ok(("win", PlacedBy::Primary)),
        ),
    ];
    for (name, handler, os, uid, want) in cases {
        let mut annotations = BTreeMap::new();
        if let Some(os) = os {
            annotations.insert(OS_ANNOTATION.to_string(), os.to_string());
        }
        let pod = PodPlacement {
            uid,
            name: "default/web",
            runtime_handler: handler,
            annotations: &annotations,
        };
        let got = router
            .place_pod(&pod)
            .map(|(idx, by)| (router.info(idx).name.as_str(), by))
            .map_err(|e| e.code());
        let got = got.map(|(n, by)| (n.to_string(), by));
        let want = want.map(|(n, by)| (n.to_string(), by));
        assert_eq!(got, want, "{name}");
    }
    router.forget_pod("uid-linux");
    assert_eq!(router.pod_os_hint("uid-linux"), None);
}

#[tokio::test]
async fn pull_fans_out_and_merges_refusals() {
    let linux_img = image("sha256:l", &["docker.io/library/busybox:latest"], "linux");
    let win_img = image(
        "sha256:w",
        &["mcr.microsoft.com/nanoserver:ltsc2022"],
        "windows",
    );
    let freebsd_img = image("sha256:f", &["example.com/bsd:1"], "freebsd");
    let make = || {
        let win = FakeBackend::primary("win", "windows")
            .with_remote(linux_img.clone())
            .with_remote(win_img.clone())
            .with_remote(freebsd_img.clone())
            .into_arc();
        let wsl = FakeBackend::delegate("wsl", "linux")
            .with_remote(linux_img.clone())
            .with_remote(win_img.clone())
            .with_remote(freebsd_img.clone())
            .into_arc();
        (win, wsl)
    };
    // (reference, Ok(id, image os) | Err(code, node_os))
    type Want = Result<(&'static str, &'static str), (Code, &'static str)>;
    let cases: Vec<(&str, Want)> = vec![
        (
            "docker.io/library/busybox:latest",
            Ok(("sha256:l", "linux")),
        ),
        (
            "mcr.microsoft.com/nanoserver:ltsc2022",
            Ok(("sha256:w", "windows")),
        ),
        (
            "example.com/bsd:1",
            Err((Code::FailedPrecondition, "linux,windows")),
        ),
        ("example.com/missing:1", Err((Code::NotFound, ""))),
    ];
    for (reference, want) in cases {
        let (win, wsl) = make();
        let d = dispatcher(&[win.clone(), wsl.clone()]);
        let got = d.pull_image(&pull(reference, Some("uid-1"))).await;
        for fake in [&win, &wsl] {
            assert!(
                matches!(&fake.calls()[..], [Call::PullImage { reference: r, pod_uid: Some(u), authenticated: false }] if r == reference && u == "uid-1"),
                "{reference}: every backend is asked once: {:?}",
                fake.calls()
            );
        }
        match (got, want) {
            (Ok(id), Ok((want_id, os))) => {
                assert_eq!(id.as_str(), want_id, "{reference}");
                assert_eq!(d.image_os(&id).as_deref(), Some(os), "{reference}");
                assert_eq!(d.pod_os_hint("uid-1").as_deref(), Some(os), "{reference}");
            }
            (Err(e), Err((code, node_os))) => {
                assert_eq!(e.code(), code, "{reference}: {e}");
                if let Error::OsNotSupported(r) = &e {
                    assert_eq!(r.node_os.join(","), node_os, "{reference}");
                    assert_eq!(r.required_os, "freebsd");
                    assert_eq!(r.pod, "default/web");
                    assert_eq!(r.image, reference);
                }
                assert_eq!(d.pod_os_hint("uid-1"), None, "{reference}");
            }
            (got, want) => panic!("{reference}: got {got:?}, want {want:?}"),
        }
    }
}

#[tokio::test]
async fn pull_into_one_backend_and_multi_os_images() {
    let multi = image("sha256:m", &["example.com/multi:1"], "linux");
    let only = FakeBackend::primary("only", "linux")
        .with_remote(multi.clone())
        .into_arc();
    let d = dispatcher(std::slice::from_ref(&only));
    let id = d
        .pull_image(&pull("example.com/multi:1", None))
        .await
        .expect("pull");
    assert_eq!(id.as_str(), "sha256:m");
    assert_eq!(only.local_images().len(), 1);

    // When several backends take an image, the primary's id is reported; they all run
    // one OS here, so the pod hint is still that OS.
    let a = FakeBackend::delegate("a", "linux")
        .with_remote(multi.clone())
        .into_arc();
    let b = FakeBackend::primary("b", "linux")
        .with_remote(image("sha256:b", &["example.com/multi:1"], "linux"))
        .into_arc();
    let d = dispatcher(&[a, b]);
    let id = d
        .pull_image(&pull("example.com/multi:1", Some("u")))
        .await
        .expect("pull");
    assert_eq!(id.as_str(), "sha256:b");
    assert_eq!(d.pod_os_hint("u").as_deref(), Some("linux"));
}

#[tokio::test]
async fn pull_errors_other_than_os_propagate() {
    let img = image("sha256:l", &["example.com/a:1"], "linux");
    let win = FakeBackend::primary("win", "windows")
        .with_remote(img.clone())
        .into_arc();
    let wsl = FakeBackend::delegate("wsl", "linux")
        .with_remote(img)
        .into_arc();
    win.fail_pulls_with(|| Error::Unauthenticated("registry said 401".into()));
    let d = dispatcher(&[win, wsl]);
    let err = d
        .pull_image(&pull("example.com/a:1", None))
        .await
        .expect_err("fails");
    assert_eq!(err.code(), Code::Unauthenticated);
    assert!(err.to_string().contains("backend win"), "{err}");
}

#[tokio::test]
async fn list_merges_and_dedupes() {
    let mut shared_a = image("sha256:s", &["example.com/s:1"], "linux");
    shared_a.repo_digests = vec!["example.com/s@sha256:d".into()];
    let mut shared_b = image("sha256:s", &["example.com/s:2", "example.com/s:1"], "linux");
    shared_b.pinned = true;
    let a = FakeBackend::primary("a", "linux")
        .with_local(shared_a)
        .with_local(image("sha256:x", &["example.com/x:1"], "linux"))
        .into_arc();
    let b = FakeBackend::delegate("b", "linux")
        .with_local(shared_b)
        .with_local(image("sha256:y", &["example.com/y:1"], "linux"))
        .into_arc();
    let d = dispatcher(&[b.clone(), a.clone()]);
    let images = d.list_images().await.expect("list");
    let ids: Vec<&str> = images.iter().map(|i| i.id.as_str()).collect();
    assert_eq!(
        ids,
        ["sha256:s", "sha256:x", "sha256:y"],
        "primary's images first"
    );
    assert_eq!(images[0].repo_tags, ["example.com/s:1", "example.com/s:2"]);
    assert_eq!(images[0].repo_digests, ["example.com/s@sha256:d"]);
    assert!(images[0].pinned);

    b.set_unavailable(true);
    let images = d.list_images().await.expect("list with one backend down");
    let ids: Vec<&str> = images.iter().map(|i| i.id.as_str()).collect();
    assert_eq!(ids, ["sha256:s", "sha256:x"]);
    assert_eq!(
        b.calls().last(),
        Some(&Call::ListImages),
        "the down backend was asked"
    );

    a.set_unavailable(true);
    let err = d.list_images().await.expect_err("all down");
    assert_eq!(err.code(), Code::Unavailable);
}

#[tokio::test]
async fn status_remove_and_fs_info() {
    let a = FakeBackend::primary("a", "windows")
        .with_local(image("sha256:w", &["example.com/w:1"], "windows"))
        .with_fs(FsUsage {
            mountpoint: "C:\\snapshots".into(),
            used_bytes: 5,
            ..Default::default()
        })
        .into_arc();
    let b = FakeBackend::delegate("b", "linux")
        .with_local(image("sha256:l", &["example.com/l:1"], "linux"))
        .with_fs(FsUsage {
            mountpoint: "/var/lib/snapshots".into(),
            used_bytes: 7,
            ..Default::default()
        })
        .into_arc();
    let d = dispatcher(&[a.clone(), b.clone()]);

    let found = d.image_status("example.com/l:1").await.expect("status");
    assert_eq!(found.map(|i| i.id.0), Some("sha256:l".to_string()));
    assert_eq!(
        d.image_status("example.com/none:1").await.expect("status"),
        None
    );

    let fs = d.image_fs_info().await.expect("fs");
    let mounts: Vec<&str> = fs.iter().map(|f| f.mountpoint.as_str()).collect();
    assert_eq!(mounts, ["C:\\snapshots", "/var/lib/snapshots"]);

    b.set_unavailable(true);
    let fs = d.image_fs_info().await.expect("fs with one down");
    assert_eq!(fs.len(), 1);
    let err = d
        .image_status("example.com/l:1")
        .await
        .expect_err("maybe in the down one");
    assert_eq!(err.code(), Code::Unavailable);
    b.set_unavailable(false);

    d.remove_image("example.com/l:1").await.expect("remove");
    assert_eq!(
        a.calls().last(),
        Some(&Call::RemoveImage("example.com/l:1".into()))
    );
    assert!(b.local_images().is_empty());
    d.remove_image("example.com/l:1")
        .await
        .expect("remove is idempotent");
}
