//! The image side of the containerd backend against a real containerd 1.6 and a local
//! registry (see `common`). Needs root, containerd, docker-registry, skopeo and umoci.

mod common;

use std::sync::Arc;

use common::{content_labels, inventory, World};
use crimux_containerd::{ContainerdBackend, ContainerdConfig};
use crimux_core::{Error, ImageBackend, PullImage};
use sha2::{Digest, Sha256};

fn pull(reference: &str) -> PullImage {
    PullImage {
        reference: reference.into(),
        pod_name: Some("default/web".into()),
        ..Default::default()
    }
}

fn chain_ids(diff_ids: &[String]) -> Vec<String> {
    let mut chains: Vec<String> = Vec::new();
    for d in diff_ids {
        let next = match chains.last() {
            None => d.clone(),
            Some(p) => format!("sha256:{}", hex::encode(Sha256::digest(format!("{p} {d}")))),
        };
        chains.push(next);
    }
    chains
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containerd_pull_stores_unpacks_names_and_remove_frees_everything() {
    let w = World::new().await;
    let reference = w.reference("test/busybox:1");
    let images = &w.images;
    let config = images.config_digest("busybox");
    let manifest = images.manifest_digest("busybox");
    let layers = images.layer_digests("busybox");
    assert_eq!(layers.len(), 2, "the test image has two layers");
    let chains = chain_ids(&images.diff_ids("busybox"));

    let id = w.backend.pull_image(&pull(&reference)).await.expect("pull");
    assert_eq!(id.as_str(), config);

    // containerd's own view: three records on the manifest, content, committed snapshots.
    let inv = inventory(&w.channel).await;
    let mut names: Vec<&str> = inv.images.iter().map(|i| i.name.as_str()).collect();
    names.sort();
    let digest_name = format!("{}/test/busybox@{manifest}", w.registry.host);
    let tag_name = format!("{}/test/busybox:1", w.registry.host);
    let mut want = vec![config.as_str(), digest_name.as_str(), tag_name.as_str()];
    want.sort();
    assert_eq!(names, want);
    for record in &inv.images {
        let target = record.target.as_ref().expect("target");
        assert_eq!(target.digest, manifest);
        assert_eq!(record.labels["io.crimux.image"], "managed");
        assert_eq!(record.labels["crimux.io/image.os"], "linux");
        assert_eq!(record.labels["crimux.io/image.arch"], "amd64");
    }
    for digest in [&config, &manifest, &layers[0], &layers[1]] {
        assert!(
            inv.content.contains(digest),
            "{digest} not in content store"
        );
    }
    let committed: Vec<&str> = inv
        .snapshots
        .iter()
        .filter(|s| s.kind == 3)
        .map(|s| s.name.as_str())
        .collect();
    for chain in &chains {
        assert!(
            committed.contains(&chain.as_str()),
            "snapshot {chain} missing: {committed:?}"
        );
    }
    assert_eq!(
        inv.snapshots.len(),
        2,
        "no active extraction snapshots left"
    );
    assert!(
        inv.leases.is_empty(),
        "pull lease left behind: {:?}",
        inv.leases
    );

    // GC labels as containerd sets them.
    let m = content_labels(&w.channel, &manifest).await;
    assert_eq!(m["containerd.io/gc.ref.content.config"], config);
    assert_eq!(m["containerd.io/gc.ref.content.l.0"], layers[0]);
    assert_eq!(m["containerd.io/gc.ref.content.l.1"], layers[1]);
    assert_eq!(
        m[&format!("containerd.io/distribution.source.{}", w.registry.host)],
        "test/busybox"
    );
    let c = content_labels(&w.channel, &config).await;
    assert_eq!(c["containerd.io/gc.ref.snapshot.overlayfs"], chains[1]);
    let l = content_labels(&w.channel, &layers[1]).await;
    assert_eq!(
        l["containerd.io/uncompressed"],
        images.diff_ids("busybox")[1]
    );

    // The unpacked files are really there.
    let snapshots_dir = w
        .containerd
        .root()
        .join("io.containerd.snapshotter.v1.overlayfs/snapshots");
    let unpacked: Vec<_> = std::fs::read_dir(&snapshots_dir)
        .expect("snapshots dir")
        .flatten()
        .map(|e| e.path().join("fs"))
        .collect();
    assert!(
        unpacked.iter().any(|fs| fs.join("bin/busybox").is_file()),
        "busybox not unpacked"
    );
    assert!(
        unpacked.iter().any(|fs| fs.join("hello.txt").is_file()),
        "layer 2 not unpacked"
    );

    // Status by every name the CRI may use.
    let hex = config.trim_start_matches("sha256:");
    for name in [
        reference.clone(),
        config.clone(),
        hex[..12].to_string(),
        format!("sha256:{}", &hex[..8]),
        digest_name.clone(),
    ] {
        let image = w
            .backend
            .image_status(&name)
            .await
            .expect("status")
            .unwrap_or_else(|| panic!("no image for {name}"));
        assert_eq!(image.id, id, "{name}");
        assert_eq!(image.repo_tags, std::slice::from_ref(&tag_name));
        assert_eq!(image.repo_digests, std::slice::from_ref(&digest_name));
        assert_eq!(image.user, "1000:1000");
        assert_eq!(image.platform.os, "linux");
        let manifest_json = images.manifest("busybox");
        let size: u64 = manifest_json["config"]["size"].as_u64().expect("size")
            + manifest_json["layers"]
                .as_array()
                .expect("layers")
                .iter()
                .map(|l| l["size"].as_u64().expect("size"))
                .sum::<u64>();
        assert_eq!(image.size, size);
        assert_eq!(
            image.config.as_ref().expect("config")["config"]["User"],
            "1000:1000"
        );
    }
    for unknown in [
        w.reference("test/busybox:2"),
        "ffff".into(),
        "not a ref!".into(),
    ] {
        assert!(
            w.backend
                .image_status(&unknown)
                .await
                .expect("status")
                .is_none(),
            "{unknown}"
        );
    }

    let list = w.backend.list_images().await.expect("list");
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].id, id);

    let fs = w.backend.image_fs_info().await.expect("fs info");
    assert_eq!(fs.len(), 1);
    assert!(
        fs[0].used_bytes > 1_000_000,
        "busybox alone is >1MB: {:?}",
        fs[0]
    );
    assert!(fs[0].inodes_used >= 3, "{:?}", fs[0]);
    assert_eq!(
        fs[0].mountpoint,
        w.containerd
            .root()
            .join("io.containerd.snapshotter.v1.overlayfs")
            .display()
            .to_string()
    );
    assert!(fs[0].timestamp_ns > 0);

    // Pulling again is idempotent.
    let again = w
        .backend
        .pull_image(&pull(&reference))
        .await
        .expect("second pull");
    assert_eq!(again, id);
    assert_eq!(inventory(&w.channel).await.images.len(), 3);

    // Remove: every record, then content and snapshots are collected.
    w.backend.remove_image(&reference).await.expect("remove");
    let inv = inventory(&w.channel).await;
    assert!(inv.images.is_empty(), "records left: {:?}", inv.images);
    assert!(inv.content.is_empty(), "content left: {:?}", inv.content);
    assert!(
        inv.snapshots.is_empty(),
        "snapshots left: {:?}",
        inv.snapshots
    );
    assert!(w
        .backend
        .image_status(&reference)
        .await
        .expect("status")
        .is_none());
    assert!(w.backend.list_images().await.expect("list").is_empty());
    // Removing what is gone is fine.
    w.backend
        .remove_image(&reference)
        .await
        .expect("remove again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containerd_pull_of_unknown_tag_is_not_found_and_leaves_nothing() {
    let w = World::new().await;
    let err = w
        .backend
        .pull_image(&pull(&w.reference("test/busybox:nope")))
        .await
        .expect_err("unknown tag");
    assert!(err.is_not_found(), "{err:?}");
    let err = w
        .backend
        .pull_image(&pull(&w.reference("test/nothing:1")))
        .await
        .expect_err("unknown repository");
    assert!(err.is_not_found(), "{err:?}");
    let err = w
        .backend
        .pull_image(&pull("Not//A Ref"))
        .await
        .expect_err("bad ref");
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
    let inv = inventory(&w.channel).await;
    assert!(inv.images.is_empty() && inv.content.is_empty() && inv.snapshots.is_empty());
    assert!(inv.leases.is_empty(), "{:?}", inv.leases);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containerd_pull_of_a_windows_image_is_refused_before_layers() {
    let w = World::new().await;
    w.registry.push(&w.images.layout(), "windows", "test/win:1");
    let reference = w.reference("test/win:1");
    let err = w
        .backend
        .pull_image(&pull(&reference))
        .await
        .expect_err("windows image");
    let Error::OsNotSupported(refusal) = err else {
        panic!("expected an OS refusal, got {err:?}");
    };
    assert_eq!(refusal.required_os, "windows");
    assert_eq!(refusal.node_os, ["linux"]);
    assert_eq!(refusal.image, reference);
    assert_eq!(refusal.pod, "default/web");
    for layer in w.images.layer_digests("windows") {
        assert_eq!(
            w.registry.blob_gets(&layer),
            0,
            "layer {layer} was downloaded"
        );
    }
    let inv = inventory(&w.channel).await;
    assert!(inv.images.is_empty() && inv.content.is_empty() && inv.snapshots.is_empty());
    assert!(inv.leases.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containerd_concurrent_pulls_download_once() {
    let w = World::new().await;
    // The same image under a second name shares every blob.
    w.registry
        .push(&w.images.layout(), "busybox", "test/busybox:other");
    let backend = Arc::clone(&w.backend);
    let mut pulls = Vec::new();
    for reference in [
        w.reference("test/busybox:1"),
        w.reference("test/busybox:1"),
        w.reference("test/busybox:1"),
        w.reference("test/busybox:other"),
    ] {
        let backend = Arc::clone(&backend);
        pulls.push(tokio::spawn(async move {
            backend.pull_image(&pull(&reference)).await
        }));
    }
    let mut ids = Vec::new();
    for p in pulls {
        ids.push(p.await.expect("join").expect("pull"));
    }
    assert!(ids.iter().all(|id| *id == ids[0]), "{ids:?}");
    for layer in w.images.layer_digests("busybox") {
        assert_eq!(
            w.registry.blob_gets(&layer),
            1,
            "layer {layer} downloaded more than once"
        );
    }
    let image = w
        .backend
        .image_status(&w.reference("test/busybox:other"))
        .await
        .expect("status")
        .expect("image");
    assert_eq!(image.repo_tags.len(), 2, "{:?}", image.repo_tags);
    let inv = inventory(&w.channel).await;
    assert_eq!(inv.snapshots.len(), 2);
    assert!(inv.leases.is_empty());
}

#[tokio::test]
async fn containerd_connect_to_a_missing_socket_is_unavailable() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = ContainerdConfig {
        name: "gone".into(),
        address: format!("unix://{}/none.sock", dir.path().display()),
        namespace: "k8s.io".into(),
        role: Default::default(),
        os: None,
        arch: None,
        runtime_handlers: vec![],
        tls: None,
        insecure: false,
        snapshotter: "overlayfs".into(),
        runtime: Default::default(),
    };
    let registry = crimux_registry::Registry::new(None).expect("registry");
    let err = ContainerdBackend::connect(config.clone(), registry.clone())
        .await
        .err()
        .expect("must fail");
    assert_eq!(err.code(), tonic::Code::Unavailable, "{err:?}");
    assert!(err.to_string().contains(&config.address), "{err}");
    let bad = ContainerdConfig {
        address: "http://x".into(),
        ..config
    };
    let err = ContainerdBackend::connect(bad, registry)
        .await
        .err()
        .expect("bad address");
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containerd_pull_of_an_index_picks_this_platform() {
    let w = World::new().await;
    let images = &w.images;
    images.add_index(
        "multi",
        &[
            ("windows", "windows", "amd64"),
            ("busybox", "linux", "amd64"),
        ],
    );
    images.add_index("winonly", &[("windows", "windows", "amd64")]);
    images.add_index("armonly", &[("busybox", "linux", "arm64")]);
    for tag in ["multi", "winonly", "armonly"] {
        w.registry
            .push(&images.layout(), tag, &format!("test/multi:{tag}"));
    }

    let id = w
        .backend
        .pull_image(&pull(&w.reference("test/multi:multi")))
        .await
        .expect("pull index");
    assert_eq!(id.as_str(), images.config_digest("busybox"));
    let inv = inventory(&w.channel).await;
    let index_digest = images.manifest_digest("multi");
    for record in &inv.images {
        let target = record.target.as_ref().expect("target");
        assert_eq!(target.digest, index_digest, "{}", record.name);
        assert_eq!(target.media_type, "application/vnd.oci.image.index.v1+json");
    }
    let labels = content_labels(&w.channel, &index_digest).await;
    assert_eq!(
        labels["containerd.io/gc.ref.content.m.0"],
        images.manifest_digest("windows")
    );
    assert_eq!(
        labels["containerd.io/gc.ref.content.m.1"],
        images.manifest_digest("busybox")
    );
    assert!(
        !inv.content.contains(&images.config_digest("windows")),
        "the windows manifest's config must not be fetched"
    );
    let image = w
        .backend
        .image_status(id.as_str())
        .await
        .expect("status")
        .expect("image");
    assert_eq!(image.user, "1000:1000");
    assert_eq!(
        image.repo_digests,
        [format!("{}/test/multi@{index_digest}", w.registry.host)]
    );

    let err = w
        .backend
        .pull_image(&pull(&w.reference("test/multi:winonly")))
        .await
        .expect_err("windows-only index");
    match err {
        Error::OsNotSupported(refusal) => assert_eq!(refusal.required_os, "windows"),
        other => panic!("expected an OS refusal, got {other:?}"),
    }
    let err = w
        .backend
        .pull_image(&pull(&w.reference("test/multi:armonly")))
        .await
        .expect_err("arm64-only index");
    assert!(
        err.is_not_found(),
        "same OS, other architecture is not found: {err:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containerd_failed_pull_leaves_no_content_snapshots_or_leases() {
    let w = World::new().await;
    let layers = w.images.layer_digests("busybox");
    // The second layer is corrupt; the config and first layer are stored first.
    w.registry.corrupt_blob(&layers[1]);
    let err = w
        .backend
        .pull_image(&pull(&w.reference("test/busybox:1")))
        .await
        .expect_err("corrupt layer");
    eprintln!("failed pull: {err}");
    assert!(
        err.to_string().contains(&layers[1]),
        "fails on the corrupt layer: {err}"
    );
    let inv = inventory(&w.channel).await;
    assert!(inv.images.is_empty(), "{:?}", inv.images);
    assert!(
        inv.content.is_empty(),
        "content left after failed pull: {:?}",
        inv.content
    );
    assert!(inv.snapshots.is_empty(), "{:?}", inv.snapshots);
    assert!(inv.leases.is_empty(), "{:?}", inv.leases);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containerd_backend_survives_a_daemon_restart() {
    let mut w = World::new().await;
    let reference = w.reference("test/busybox:1");
    let id = w.backend.pull_image(&pull(&reference)).await.expect("pull");
    w.containerd.restart();
    let image = w
        .backend
        .image_status(&reference)
        .await
        .expect("status after restart")
        .expect("image kept");
    assert_eq!(image.id, id);
    w.backend
        .remove_image(id.as_str())
        .await
        .expect("remove after restart");
}
