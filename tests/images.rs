//! ImageService integration tests: the real crimux binary against a private containerd and a
//! local registry. Every test checks containerd's own API as well as the CRI answer.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use base64::Engine;
use common::registry::{PASSWORD, USER};
use common::{eventually, spec, test_images, TestEnv, TestImage, NS};
use k8s_cri::v1::{
    AuthConfig, ImageFilter, ImageFsInfoRequest, ImageStatusRequest, ListImagesRequest,
    PullImageRequest, RemoveImageRequest,
};
use tonic::Code;
use tonic_types::StatusExt;

const MANAGED_LABEL: &str = "io.crimux.image";

/// The three records crimux creates for an image pulled by tag.
fn records_by_tag(env: &TestEnv, name_tag: &str, image: &TestImage) -> BTreeSet<String> {
    [
        env.registry.image(name_tag),
        env.registry.by_digest(&image.name, &image.digest),
        image.id().to_string(),
    ]
    .into_iter()
    .collect()
}

/// Asserts what a successful pull of `image` must leave in containerd: labelled records,
/// every blob, one committed snapshot per layer named by chain id, and no pull lease.
async fn assert_pulled(env: &TestEnv, image: &TestImage, records: &BTreeSet<String>) {
    let ctrd = env.ctrd().await;
    let all = ctrd.images(NS).await;
    for name in records {
        let record = all
            .iter()
            .find(|i| &i.name == name)
            .unwrap_or_else(|| panic!("no image record {name}; records: {all:#?}"));
        assert_eq!(
            record.labels.get(MANAGED_LABEL).map(String::as_str),
            Some("managed"),
            "record {name} is not labelled {MANAGED_LABEL}=managed"
        );
        let target = record.target.as_ref().expect("record has a target");
        assert_eq!(
            target.digest, image.digest,
            "record {name} targets the wrong digest"
        );
    }
    for blob in image.blobs() {
        assert!(
            ctrd.content_exists(NS, &blob).await,
            "content {blob} missing"
        );
    }
    let snapshots = ctrd.snapshots(NS).await;
    let mut parent = String::new();
    for chain_id in &image.chain_ids {
        let snap = snapshots
            .iter()
            .find(|s| &s.name == chain_id)
            .unwrap_or_else(|| panic!("no snapshot {chain_id}; snapshots: {snapshots:#?}"));
        assert_eq!(snap.kind, 3, "snapshot {chain_id} is not committed");
        assert_eq!(
            snap.parent, parent,
            "snapshot {chain_id} has the wrong parent"
        );
        parent = chain_id.clone();
    }
    assert_no_pull_leases(env).await;
}

async fn assert_no_pull_leases(env: &TestEnv) {
    let leases = env.ctrd().await.leases(NS).await;
    let pull_leases: Vec<_> = leases
        .iter()
        .filter(|l| l.id.starts_with("crimux-pull-"))
        .collect();
    assert!(pull_leases.is_empty(), "pull leases left: {pull_leases:#?}");
}

async fn status(env: &TestEnv, image: &str) -> Option<k8s_cri::v1::Image> {
    env.images()
        .await
        .image_status(ImageStatusRequest {
            image: Some(spec(image)),
            verbose: false,
        })
        .await
        .expect("ImageStatus")
        .into_inner()
        .image
}

async fn pull_with_auth(
    env: &TestEnv,
    image: &str,
    auth: AuthConfig,
) -> Result<String, tonic::Status> {
    env.images()
        .await
        .pull_image(PullImageRequest {
            image: Some(spec(image)),
            auth: Some(auth),
            sandbox_config: None,
        })
        .await
        .map(|r| r.into_inner().image_ref)
}

fn assert_code(result: Result<String, tonic::Status>, code: Code, what: &str) -> tonic::Status {
    match result {
        Ok(id) => panic!("{what}: expected {code:?}, pull succeeded with {id}"),
        Err(status) => {
            assert_eq!(status.code(), code, "{what}: {status:?}");
            status
        }
    }
}

#[tokio::test]
async fn pull_by_tag_creates_records_content_and_snapshots() {
    let env = TestEnv::start().await;
    let image = test_images().get("busybox:1.0");
    let id = env.pull_ok(&env.registry.image("busybox:1.0")).await;
    assert_eq!(id, image.id(), "PullImage returns the config digest");
    assert_pulled(&env, image, &records_by_tag(&env, "busybox:1.0", image)).await;
}

#[tokio::test]
async fn pull_multilayer_commits_a_snapshot_chain() {
    let env = TestEnv::start().await;
    let image = test_images().get("multilayer:latest");
    assert!(image.layers.len() >= 3);
    let id = env.pull_ok(&env.registry.image("multilayer:latest")).await;
    assert_eq!(id, image.id());
    assert_pulled(
        &env,
        image,
        &records_by_tag(&env, "multilayer:latest", image),
    )
    .await;
}

#[tokio::test]
async fn pull_by_digest_records_the_digest_but_no_tag() {
    let env = TestEnv::start().await;
    let image = test_images().get("busybox:1.1");
    let by_digest = env.registry.by_digest("busybox", &image.digest);
    let id = env.pull_ok(&by_digest).await;
    assert_eq!(id, image.id());
    let records: BTreeSet<String> = [by_digest.clone(), image.id().to_string()].into();
    assert_pulled(&env, image, &records).await;
    let names = env.ctrd().await.image_names(NS).await;
    assert!(
        !names.iter().any(|n| n.ends_with(":1.1")),
        "pull by digest must not create a tag record: {names:?}"
    );
    let img = status(&env, &by_digest).await.expect("status by digest");
    assert_eq!(img.id, image.id());
    assert!(img.repo_tags.is_empty(), "tags: {:?}", img.repo_tags);
    assert_eq!(img.repo_digests, vec![by_digest]);
}

#[tokio::test]
async fn pull_short_name_goes_through_the_docker_io_mirror() {
    let env = TestEnv::start().await;
    let image = test_images().get("busybox:latest");
    let id = env.pull_ok("busybox").await;
    assert_eq!(id, image.id());
    let names = env.ctrd().await.image_names(NS).await;
    assert!(
        names.contains("docker.io/library/busybox:latest"),
        "records: {names:?}"
    );
    let digest_ref = format!("docker.io/library/busybox@{}", image.digest);
    assert!(names.contains(&digest_ref), "records: {names:?}");
    let img = status(&env, "busybox").await.expect("status of busybox");
    assert_eq!(img.id, image.id());
    assert_eq!(
        img.repo_tags,
        vec!["docker.io/library/busybox:latest".to_string()]
    );
    assert_eq!(img.repo_digests, vec![digest_ref]);
    assert_no_pull_leases(&env).await;
}

#[tokio::test]
async fn pull_with_username_and_password() {
    let env = TestEnv::start().await;
    let image = test_images().get("busybox:1.0");
    let reference = env.auth_registry.image("busybox:1.0");
    let auth = AuthConfig {
        username: USER.into(),
        password: PASSWORD.into(),
        ..Default::default()
    };
    let id = pull_with_auth(&env, &reference, auth)
        .await
        .expect("authenticated pull");
    assert_eq!(id, image.id());
    let names = env.ctrd().await.image_names(NS).await;
    assert!(names.contains(&reference), "records: {names:?}");
    assert_no_pull_leases(&env).await;
}

#[tokio::test]
async fn pull_with_base64_auth() {
    let env = TestEnv::start().await;
    let image = test_images().get("withuser:latest");
    let reference = env.auth_registry.image("withuser:latest");
    let auth = AuthConfig {
        auth: base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}")),
        server_address: env.auth_registry.host(),
        ..Default::default()
    };
    let id = pull_with_auth(&env, &reference, auth)
        .await
        .expect("authenticated pull");
    assert_eq!(id, image.id());
    assert!(env.ctrd().await.content_exists(NS, &image.config).await);
}

#[tokio::test]
async fn pull_with_bad_or_missing_credentials_is_unauthenticated() {
    let env = TestEnv::start().await;
    let reference = env.auth_registry.image("busybox:1.0");
    let wrong = AuthConfig {
        username: USER.into(),
        password: "wrong-password".into(),
        ..Default::default()
    };
    assert_code(
        pull_with_auth(&env, &reference, wrong).await,
        Code::Unauthenticated,
        "wrong password",
    );
    let garbage = AuthConfig {
        auth: "!!not base64!!".into(),
        ..Default::default()
    };
    let result = pull_with_auth(&env, &reference, garbage).await;
    let status = result.expect_err("pull with undecodable auth must fail");
    assert!(
        matches!(status.code(), Code::Unauthenticated | Code::InvalidArgument),
        "undecodable auth: {status:?}"
    );
    assert_code(
        env.pull(&reference).await,
        Code::Unauthenticated,
        "no credentials",
    );
    env.assert_clean(NS).await;
}

#[tokio::test]
async fn pull_multiarch_index_picks_linux_amd64() {
    let env = TestEnv::start().await;
    let image = test_images().get("multiarch:latest");
    assert_ne!(image.digest, image.manifest, "multiarch is an index");
    assert_eq!(
        (image.os.as_str(), image.architecture.as_str()),
        ("linux", "amd64")
    );
    let id = env.pull_ok(&env.registry.image("multiarch:latest")).await;
    assert_eq!(
        id,
        image.id(),
        "the linux/amd64 config, not arm64's nor windows'"
    );
    assert_pulled(
        &env,
        image,
        &records_by_tag(&env, "multiarch:latest", image),
    )
    .await;
    // Layers of the other platforms are never downloaded.
    let ctrd = env.ctrd().await;
    for other in ["arm64:only", "windows:latest"] {
        for layer in &test_images().get(other).layers {
            assert!(
                !ctrd.content_exists(NS, layer).await,
                "{other} layer {layer} was downloaded"
            );
        }
    }
    let img = status(&env, &env.registry.image("multiarch:latest"))
        .await
        .expect("status");
    assert_eq!(
        img.repo_digests,
        vec![env.registry.by_digest("multiarch", &image.digest)]
    );
}

#[tokio::test]
async fn pull_windows_image_is_failed_precondition_with_error_info() {
    let env = TestEnv::start().await;
    let status = assert_code(
        env.pull(&env.registry.image("windows:latest")).await,
        Code::FailedPrecondition,
        "windows image on linux",
    );
    let details = status.get_error_details();
    let info = details
        .error_info()
        .unwrap_or_else(|| panic!("no ErrorInfo detail in {status:?}"));
    assert_eq!(info.reason, "OS_NOT_SUPPORTED");
    assert_eq!(info.domain, "crimux.io");
    env.assert_clean(NS).await;
}

#[tokio::test]
async fn list_images_and_filter_by_reference() {
    let env = TestEnv::start().await;
    let bb = test_images().get("busybox:1.0");
    let ml = test_images().get("multilayer:latest");
    env.pull_ok(&env.registry.image("busybox:1.0")).await;
    env.pull_ok(&env.registry.image("multilayer:latest")).await;

    let mut client = env.images().await;
    let all = client
        .list_images(ListImagesRequest { filter: None })
        .await
        .expect("ListImages")
        .into_inner()
        .images;
    let ids: BTreeSet<&str> = all.iter().map(|i| i.id.as_str()).collect();
    assert_eq!(
        ids,
        [bb.id(), ml.id()].into(),
        "one entry per image: {all:#?}"
    );
    let listed_bb = all
        .iter()
        .find(|i| i.id == bb.id())
        .expect("busybox listed");
    assert_eq!(listed_bb.repo_tags, vec![env.registry.image("busybox:1.0")]);
    assert_eq!(
        listed_bb.repo_digests,
        vec![env.registry.by_digest("busybox", &bb.digest)]
    );
    assert!(listed_bb.size > 0);

    let filtered = client
        .list_images(ListImagesRequest {
            filter: Some(ImageFilter {
                image: Some(spec(&env.registry.image("multilayer:latest"))),
            }),
        })
        .await
        .expect("ListImages with filter")
        .into_inner()
        .images;
    let ids: Vec<&str> = filtered.iter().map(|i| i.id.as_str()).collect();
    assert_eq!(ids, vec![ml.id()]);

    let none = client
        .list_images(ListImagesRequest {
            filter: Some(ImageFilter {
                image: Some(spec(&env.registry.image("busybox:no-such-tag"))),
            }),
        })
        .await
        .expect("ListImages with a filter matching nothing")
        .into_inner()
        .images;
    assert!(none.is_empty(), "{none:#?}");
}

#[tokio::test]
async fn image_status_reports_tags_digests_and_size() {
    let env = TestEnv::start().await;
    let image = test_images().get("busybox:latest");
    assert_eq!(image.id(), test_images().get("busybox:1.0").id());
    env.pull_ok(&env.registry.image("busybox:1.0")).await;
    env.pull_ok(&env.registry.image("busybox:latest")).await;
    let expected_tags: BTreeSet<String> = [
        env.registry.image("busybox:1.0"),
        env.registry.image("busybox:latest"),
    ]
    .into();
    // The same image, whichever way it is named.
    for name in [
        env.registry.image("busybox:1.0"),
        env.registry.by_digest("busybox", &image.digest),
        image.id().to_string(),
    ] {
        let img = status(&env, &name)
            .await
            .unwrap_or_else(|| panic!("no status for {name}"));
        assert_eq!(img.id, image.id(), "{name}");
        let tags: BTreeSet<String> = img.repo_tags.iter().cloned().collect();
        assert_eq!(tags, expected_tags, "{name}");
        assert_eq!(
            img.repo_digests,
            vec![env.registry.by_digest("busybox", &image.digest)],
            "{name}"
        );
        assert!(img.size > 0, "{name}: size {}", img.size);
        assert!(!img.pinned);
    }
}

#[tokio::test]
async fn image_status_uid_for_a_numeric_user() {
    let env = TestEnv::start().await;
    let reference = env.registry.image("withuser:latest");
    env.pull_ok(&reference).await;
    let img = status(&env, &reference).await.expect("status");
    assert_eq!(img.uid.map(|u| u.value), Some(1000));
    assert_eq!(img.username, "");
}

#[tokio::test]
async fn image_status_username_for_a_named_user() {
    let env = TestEnv::start().await;
    let reference = env.registry.image("nameduser:latest");
    env.pull_ok(&reference).await;
    let img = status(&env, &reference).await.expect("status");
    assert_eq!(img.uid, None);
    assert_eq!(img.username, "nobody");
}

#[tokio::test]
async fn image_status_verbose_has_info() {
    let env = TestEnv::start().await;
    let reference = env.registry.image("busybox:1.0");
    env.pull_ok(&reference).await;
    let resp = env
        .images()
        .await
        .image_status(ImageStatusRequest {
            image: Some(spec(&reference)),
            verbose: true,
        })
        .await
        .expect("ImageStatus verbose")
        .into_inner();
    assert!(resp.image.is_some());
    assert!(!resp.info.is_empty(), "verbose status has info");
    for (key, value) in &resp.info {
        assert!(!value.is_empty(), "info[{key}] is empty");
    }
}

#[tokio::test]
async fn image_status_of_unknown_image_is_none() {
    let env = TestEnv::start().await;
    for name in [
        env.registry.image("busybox:1.0"),
        "sha256:0000000000000000000000000000000000000000000000000000000000000000".to_string(),
        "busybox".to_string(),
    ] {
        assert!(status(&env, &name).await.is_none(), "{name}");
    }
}

/// Pulls busybox:1.1, removes it by `how`, and checks records, content and snapshots are gone.
async fn remove_and_check(how: &str) {
    let env = TestEnv::start().await;
    let image = test_images().get("busybox:1.1");
    let reference = env.registry.image("busybox:1.1");
    env.pull_ok(&reference).await;
    let name = match how {
        "id" => image.id().to_string(),
        "tag" => reference.clone(),
        "digest" => env.registry.by_digest("busybox", &image.digest),
        other => panic!("unknown removal {other}"),
    };
    env.images()
        .await
        .remove_image(RemoveImageRequest {
            image: Some(spec(&name)),
        })
        .await
        .unwrap_or_else(|s| panic!("RemoveImage {name}: {s:?}"));
    assert!(status(&env, &reference).await.is_none(), "still has status");
    assert!(
        status(&env, image.id()).await.is_none(),
        "still has status by id"
    );
    let names = env.ctrd().await.image_names(NS).await;
    assert!(
        names.is_empty(),
        "records left after removing by {how}: {names:?}"
    );
    env.assert_clean(NS).await;
}

#[tokio::test]
async fn remove_by_id_deletes_records_content_and_snapshots() {
    remove_and_check("id").await;
}

#[tokio::test]
async fn remove_by_tag_deletes_records_content_and_snapshots() {
    remove_and_check("tag").await;
}

#[tokio::test]
async fn remove_by_digest_deletes_records_content_and_snapshots() {
    remove_and_check("digest").await;
}

#[tokio::test]
async fn remove_keeps_layers_shared_with_another_image() {
    let env = TestEnv::start().await;
    let keep = test_images().get("busybox:1.0");
    let gone = test_images().get("busybox:1.1");
    assert_eq!(keep.layers, gone.layers, "1.0 and 1.1 share their layer");
    env.pull_ok(&env.registry.image("busybox:1.0")).await;
    env.pull_ok(&env.registry.image("busybox:1.1")).await;
    env.images()
        .await
        .remove_image(RemoveImageRequest {
            image: Some(spec(gone.id())),
        })
        .await
        .expect("RemoveImage");
    let ctrd = env.ctrd().await;
    eventually(
        "busybox:1.1's config to be collected",
        Duration::from_secs(15),
        || {
            let ctrd = ctrd.clone();
            async move {
                match ctrd.content_exists(NS, &gone.config).await {
                    false => Ok(()),
                    true => Err("config still in the content store".into()),
                }
            }
        },
    )
    .await;
    let img = status(&env, &env.registry.image("busybox:1.0")).await;
    assert_eq!(img.map(|i| i.id), Some(keep.id().to_string()));
    assert_pulled(&env, keep, &records_by_tag(&env, "busybox:1.0", keep)).await;
}

#[tokio::test]
async fn remove_unknown_image_is_ok() {
    let env = TestEnv::start().await;
    let mut client = env.images().await;
    for name in [
        env.registry.image("busybox:1.0"),
        "sha256:0000000000000000000000000000000000000000000000000000000000000000".to_string(),
    ] {
        client
            .remove_image(RemoveImageRequest {
                image: Some(spec(&name)),
            })
            .await
            .unwrap_or_else(|s| panic!("RemoveImage of unknown {name}: {s:?}"));
    }
}

#[tokio::test]
async fn image_fs_info_reports_usage_after_a_pull() {
    let env = TestEnv::start().await;
    env.pull_ok(&env.registry.image("multilayer:latest")).await;
    let resp = env
        .images()
        .await
        .image_fs_info(ImageFsInfoRequest {})
        .await
        .expect("ImageFsInfo")
        .into_inner();
    assert!(!resp.image_filesystems.is_empty(), "{resp:#?}");
    for fs in &resp.image_filesystems {
        let mountpoint = fs
            .fs_id
            .as_ref()
            .map(|f| f.mountpoint.as_str())
            .unwrap_or("");
        assert!(!mountpoint.is_empty(), "no mountpoint: {fs:#?}");
        let used = fs.used_bytes.as_ref().map(|u| u.value).unwrap_or(0);
        assert!(used > 0, "used_bytes is 0 after a pull: {fs:#?}");
        assert!(fs.timestamp > 0, "no timestamp: {fs:#?}");
    }
}

#[tokio::test]
async fn concurrent_duplicate_pulls_return_one_image() {
    let env = TestEnv::start().await;
    let image = test_images().get("multilayer:latest");
    let reference = env.registry.image("multilayer:latest");
    let pulls = (0..8).map(|_| {
        let reference = reference.clone();
        let socket = env.crimux.socket();
        tokio::spawn(async move {
            let channel = common::crimux::connect(&socket).await;
            k8s_cri::v1::image_service_client::ImageServiceClient::new(channel)
                .pull_image(PullImageRequest {
                    image: Some(spec(&reference)),
                    ..Default::default()
                })
                .await
                .map(|r| r.into_inner().image_ref)
        })
    });
    let results = join_all(pulls.collect()).await;
    for result in results {
        assert_eq!(result.expect("concurrent pull"), image.id());
    }
    let names = env.ctrd().await.image_names(NS).await;
    assert_eq!(names, records_by_tag(&env, "multilayer:latest", image));
    assert_pulled(&env, image, &names).await;
    let snapshots = env.ctrd().await.snapshot_names(NS).await;
    let chain: BTreeSet<String> = image.chain_ids.iter().cloned().collect();
    assert_eq!(snapshots, chain, "exactly one snapshot per layer");
}

/// Awaits every spawned task; panics if one panicked.
async fn join_all<T: Send + 'static>(handles: Vec<tokio::task::JoinHandle<T>>) -> Vec<T> {
    let mut out = Vec::with_capacity(handles.len());
    for handle in handles {
        out.push(handle.await.expect("pull task panicked"));
    }
    out
}

#[tokio::test]
async fn bad_references_are_invalid_argument() {
    let env = TestEnv::start().await;
    let host = env.registry.host();
    for bad in [
        String::new(),
        "Busybox:UPPER/case".to_string(),
        "busybox:tag with spaces".to_string(),
        format!("{host}/crimux-test/busybox@sha256:1234"),
        format!("{host}/crimux-test/busybox:{}", "t".repeat(200)),
        ":::".to_string(),
        format!("{host}/crimux-test//busybox:1.0"),
    ] {
        assert_code(
            env.pull(&bad).await,
            Code::InvalidArgument,
            &format!("pull {bad:?}"),
        );
    }
    let err = env
        .images()
        .await
        .pull_image(PullImageRequest::default())
        .await
        .expect_err("PullImage without an image spec");
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    env.assert_clean(NS).await;
}

#[tokio::test]
async fn missing_tag_or_repository_is_not_found() {
    let env = TestEnv::start().await;
    for missing in [
        env.registry.image("busybox:no-such-tag"),
        env.registry.image("no-such-repo:latest"),
        env.registry.by_digest(
            "busybox",
            "sha256:0000000000000000000000000000000000000000000000000000000000000000",
        ),
    ] {
        assert_code(env.pull(&missing).await, Code::NotFound, &missing);
    }
    env.assert_clean(NS).await;
}

#[tokio::test]
async fn registry_down_is_unavailable() {
    let env = TestEnv::start().await;
    let port = common::process::free_port();
    // Declared as a plain-HTTP host like the real ones, and also without hosts.toml (HTTPS).
    let certs_host = format!("127.0.0.1:{port}");
    let dir = env.certs_d().join(&certs_host);
    std::fs::create_dir_all(&dir).expect("mkdir");
    std::fs::write(
        dir.join("hosts.toml"),
        format!(
            "server = \"http://{certs_host}\"\n[host.\"http://{certs_host}\"]\n  \
             capabilities = [\"pull\", \"resolve\"]\n"
        ),
    )
    .expect("write hosts.toml");
    let down = format!("{certs_host}/crimux-test/busybox:1.0");
    assert_code(env.pull(&down).await, Code::Unavailable, &down);
    let port2 = common::process::free_port();
    let down2 = format!("127.0.0.1:{port2}/crimux-test/busybox:1.0");
    assert_code(env.pull(&down2).await, Code::Unavailable, &down2);
    env.assert_clean(NS).await;
}

#[tokio::test]
async fn failed_pull_after_a_good_one_leaves_the_good_one_alone() {
    let env = TestEnv::start().await;
    let image = test_images().get("busybox:1.0");
    env.pull_ok(&env.registry.image("busybox:1.0")).await;
    assert_code(
        env.pull(&env.registry.image("windows:latest")).await,
        Code::FailedPrecondition,
        "windows",
    );
    assert_code(
        env.pull(&env.registry.image("busybox:no-such-tag")).await,
        Code::NotFound,
        "missing tag",
    );
    let ctrd = env.ctrd().await;
    let expected = records_by_tag(&env, "busybox:1.0", image);
    eventually(
        "only busybox:1.0 to remain",
        Duration::from_secs(15),
        || {
            let ctrd = ctrd.clone();
            let expected = expected.clone();
            let blobs: BTreeSet<String> = image.blobs().into_iter().collect();
            async move {
                let names = ctrd.image_names(NS).await;
                let content = ctrd.content(NS).await;
                let ingests = ctrd.ingests(NS).await;
                if names == expected && content == blobs && ingests.is_empty() {
                    Ok(())
                } else {
                    Err(format!(
                        "records {names:?}, content {content:?}, ingests {ingests:?}"
                    ))
                }
            }
        },
    )
    .await;
    assert_pulled(&env, image, &expected).await;
}
