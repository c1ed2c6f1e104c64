//! The CRI ImageService (and the RuntimeService basics) served in-process over recording
//! fake backends.

mod common;

use std::sync::Arc;

use k8s_cri::v1;
use tonic::Code;
use tonic_types::StatusExt;

use common::Harness;
use crimux_core::{Error, FsUsage};
use crimux_dispatch::testing::{image, Call, FakeBackend};

fn spec(name: &str) -> Option<v1::ImageSpec> {
    Some(v1::ImageSpec {
        image: name.into(),
        ..Default::default()
    })
}

fn linux_primary() -> Arc<FakeBackend> {
    let mut busybox = image("sha256:bb", &["docker.io/library/busybox:latest"], "linux");
    busybox.user = "1000".into();
    busybox.config = Some(serde_json::json!({"architecture": "amd64", "os": "linux"}));
    FakeBackend::primary("default", "linux")
        .with_remote(busybox)
        .with_remote(image(
            "sha256:win",
            &["mcr.microsoft.com/nanoserver:ltsc2022"],
            "windows",
        ))
        .with_local(image("sha256:old", &["docker.io/library/old:1"], "linux"))
        .with_fs(FsUsage {
            timestamp_ns: 1,
            mountpoint: "/var/lib/containerd/io.containerd.snapshotter.v1.overlayfs".into(),
            used_bytes: 100,
            inodes_used: 10,
        })
        .into_arc()
}

#[tokio::test]
async fn image_service_round_trip() {
    let fake = linux_primary();
    let h = Harness::start(std::slice::from_ref(&fake)).await;
    let mut images = h.images();

    let status = images
        .image_status(v1::ImageStatusRequest {
            image: spec("docker.io/library/busybox:latest"),
            verbose: true,
        })
        .await
        .expect("status of an unknown image is not an error")
        .into_inner();
    assert_eq!(status.image, None);
    assert!(status.info.is_empty());

    let pulled = images
        .pull_image(v1::PullImageRequest {
            image: spec("docker.io/library/busybox:latest"),
            auth: Some(v1::AuthConfig {
                username: "u".into(),
                password: "secret".into(),
                ..Default::default()
            }),
            sandbox_config: Some(v1::PodSandboxConfig {
                metadata: Some(v1::PodSandboxMetadata {
                    name: "web".into(),
                    uid: "uid-1".into(),
                    namespace: "default".into(),
                    attempt: 0,
                }),
                ..Default::default()
            }),
        })
        .await
        .expect("pull")
        .into_inner();
    assert_eq!(pulled.image_ref, "sha256:bb");
    assert!(fake.calls().contains(&Call::PullImage {
        reference: "docker.io/library/busybox:latest".into(),
        pod_uid: Some("uid-1".into()),
        authenticated: true,
    }));

    let status = images
        .image_status(v1::ImageStatusRequest {
            image: spec("sha256:bb"),
            verbose: true,
        })
        .await
        .expect("status")
        .into_inner();
    let img = status.image.expect("present after pull");
    assert_eq!(img.id, "sha256:bb");
    assert_eq!(img.uid.map(|u| u.value), Some(1000));
    assert_eq!(img.spec.map(|s| s.image).as_deref(), Some("sha256:bb"));
    let info: serde_json::Value = serde_json::from_str(&status.info["info"]).expect("json");
    assert_eq!(info["imageSpec"]["os"], "linux");

    let all = images
        .list_images(v1::ListImagesRequest { filter: None })
        .await
        .expect("list")
        .into_inner();
    let mut ids: Vec<String> = all.images.into_iter().map(|i| i.id).collect();
    ids.sort();
    assert_eq!(ids, ["sha256:bb", "sha256:old"]);

    let filtered = images
        .list_images(v1::ListImagesRequest {
            filter: Some(v1::ImageFilter {
                image: spec("docker.io/library/old:1"),
            }),
        })
        .await
        .expect("filtered list")
        .into_inner();
    let ids: Vec<String> = filtered.images.into_iter().map(|i| i.id).collect();
    assert_eq!(ids, ["sha256:old"]);

    images
        .remove_image(v1::RemoveImageRequest {
            image: spec("docker.io/library/old:1"),
        })
        .await
        .expect("remove");
    images
        .remove_image(v1::RemoveImageRequest {
            image: spec("docker.io/library/old:1"),
        })
        .await
        .expect("remove is idempotent");
    let err = images
        .remove_image(v1::RemoveImageRequest { image: None })
        .await
        .expect_err("spec required");
    assert_eq!(err.code(), Code::InvalidArgument);

    let fs = images
        .image_fs_info(v1::ImageFsInfoRequest {})
        .await
        .expect("fs info")
        .into_inner();
    assert_eq!(fs.image_filesystems.len(), 1);
    assert_eq!(
        fs.image_filesystems[0].used_bytes.as_ref().map(|v| v.value),
        Some(100)
    );
    assert_eq!(fs.container_filesystems, fs.image_filesystems);

    h.stop().await;
}

#[tokio::test]
async fn pull_errors_map_to_codes() {
    let fake = linux_primary();
    let h = Harness::start(std::slice::from_ref(&fake)).await;
    let mut images = h.images();
    let pull = |name: &str| v1::PullImageRequest {
        image: spec(name),
        ..Default::default()
    };

    let err = images.pull_image(pull("")).await.expect_err("empty image");
    assert_eq!(err.code(), Code::InvalidArgument);
    let err = images
        .pull_image(v1::PullImageRequest::default())
        .await
        .expect_err("no spec");
    assert_eq!(err.code(), Code::InvalidArgument);

    let err = images
        .pull_image(pull("example.com/missing:1"))
        .await
        .expect_err("missing");
    assert_eq!(err.code(), Code::NotFound);

    let err = images
        .pull_image(pull("mcr.microsoft.com/nanoserver:ltsc2022"))
        .await
        .expect_err("windows image on a linux node");
    assert_eq!(err.code(), Code::FailedPrecondition);
    let details = err.get_error_details();
    let info = details.error_info().expect("ErrorInfo detail");
    assert_eq!(info.reason, "OS_NOT_SUPPORTED");
    assert_eq!(info.metadata["required_os"], "windows");
    assert_eq!(info.metadata["node_os"], "linux");

    fake.fail_pulls_with(|| Error::Unauthenticated("registry said 401".into()));
    let err = images
        .pull_image(pull("docker.io/library/busybox:latest"))
        .await
        .expect_err("auth failure");
    assert_eq!(err.code(), Code::Unauthenticated);
    assert!(!err.message().contains("secret"));

    fake.set_unavailable(true);
    let err = images
        .image_status(v1::ImageStatusRequest {
            image: spec("busybox"),
            verbose: false,
        })
        .await
        .expect_err("backend down");
    assert_eq!(err.code(), Code::Unavailable);

    h.stop().await;
}

#[tokio::test]
async fn runtime_service_answers_what_it_can() {
    let h = Harness::start(&[linux_primary()]).await;
    let mut runtime = h.runtime();

    let version = runtime
        .version(v1::VersionRequest {
            version: "v1".into(),
        })
        .await
        .expect("version")
        .into_inner();
    assert_eq!(version.version, "0.1.0");
    assert_eq!(version.runtime_name, "crimux");
    assert_eq!(version.runtime_version, env!("CARGO_PKG_VERSION"));
    assert_eq!(version.runtime_api_version, "v1");

    let status = runtime
        .status(v1::StatusRequest { verbose: true })
        .await
        .expect("status")
        .into_inner();
    let conditions = status.status.expect("runtime status").conditions;
    let runtime_ready = conditions
        .iter()
        .find(|c| c.r#type == "RuntimeReady")
        .expect("RuntimeReady");
    assert!(runtime_ready.status);
    let network = conditions
        .iter()
        .find(|c| c.r#type == "NetworkReady")
        .expect("NetworkReady");
    assert!(network.status);
    assert!(status.info["backends"].contains("\"default\""));

    let config = runtime
        .runtime_config(v1::RuntimeConfigRequest {})
        .await
        .expect("runtime config")
        .into_inner();
    assert_eq!(
        config.linux.map(|l| l.cgroup_driver),
        Some(v1::CgroupDriver::Cgroupfs as i32)
    );

    // The streaming RPCs validate first: an empty request names what is missing.
    for (rpc, err) in [
        (
            "Exec",
            runtime
                .exec(v1::ExecRequest::default())
                .await
                .expect_err("no container"),
        ),
        (
            "Attach",
            runtime
                .attach(v1::AttachRequest::default())
                .await
                .expect_err("no container"),
        ),
        (
            "PortForward",
            runtime
                .port_forward(v1::PortForwardRequest::default())
                .await
                .expect_err("no sandbox"),
        ),
    ] {
        assert_eq!(err.code(), Code::InvalidArgument, "{rpc}");
        assert!(err.message().starts_with(rpc), "{}", err.message());
    }

    let err = runtime
        .checkpoint_container(v1::CheckpointContainerRequest::default())
        .await
        .expect_err("later");
    assert_eq!(err.code(), Code::Unimplemented);
    assert_eq!(
        err.message(),
        "CheckpointContainer is not implemented yet in crimux"
    );

    h.stop().await;
}
