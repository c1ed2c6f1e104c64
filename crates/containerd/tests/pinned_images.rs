//! The sandbox (pause) image is pinned, as containerd's CRI pins its own: its image records
//! carry `crimux.io/image.pinned=true` and `io.cri-containerd.pinned=pinned`, and the CRI
//! image reports `pinned`, so kubelet's image GC never removes it. Against a real
//! containerd 1.6 and a local registry (see `common`); the test busybox image stands in for
//! the pause.

mod common;

use std::collections::HashMap;
use std::process::Command;
use std::sync::Arc;

use common::{inventory, World, NAMESPACE};
use containerd_client::services::v1::images_client::ImagesClient;
use containerd_client::services::v1::{Image as Record, UpdateImageRequest};
use crimux_containerd::ContainerdBackend;
use crimux_core::{ImageBackend, PullImage};
use tonic::Request;

const PINNED: [(&str, &str); 2] = [
    ("crimux.io/image.pinned", "true"),
    ("io.cri-containerd.pinned", "pinned"),
];

fn pull(reference: &str) -> PullImage {
    PullImage {
        reference: reference.into(),
        ..Default::default()
    }
}

/// A second backend on the test containerd whose sandbox image is `sandbox_image`.
async fn backend_with_pause(w: &World, sandbox_image: &str) -> Arc<ContainerdBackend> {
    let mut config = w.containerd.config();
    config.name = "pause-test".into();
    config.runtime.sandbox_image = sandbox_image.into();
    ContainerdBackend::connect(config, w.registry.client())
        .await
        .expect("connect backend")
}

/// Adds tag `other` to the layout (busybox with one more env var: a different image id)
/// and pushes it as `test/other:1`.
fn push_other_image(w: &World) {
    let layout = w.images.layout();
    let out = Command::new("umoci")
        .args(["config", "--image"])
        .arg(format!("{}:busybox", layout.display()))
        .args(["--tag", "other", "--config.env", "PINNED_TEST=no"])
        .output()
        .expect("run umoci");
    assert!(out.status.success(), "umoci config: {out:?}");
    w.registry.push(&layout, "other", "test/other:1");
}

/// The labels of every record whose target is the manifest `manifest`, by record name.
async fn record_labels(w: &World, manifest: &str) -> HashMap<String, HashMap<String, String>> {
    inventory(&w.channel)
        .await
        .images
        .into_iter()
        .filter(|r| r.target.as_ref().is_some_and(|t| t.digest == manifest))
        .map(|r| (r.name, r.labels))
        .collect()
}

fn pinned(labels: &HashMap<String, String>) -> bool {
    PINNED
        .iter()
        .all(|(k, v)| labels.get(*k).map(String::as_str) == Some(*v))
}

async fn is_pinned(backend: &ContainerdBackend, image: &str) -> bool {
    backend
        .image_status(image)
        .await
        .expect("ImageStatus")
        .unwrap_or_else(|| panic!("{image} not found"))
        .pinned
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containerd_sandbox_image_pull_pins_it_and_nothing_else() {
    let w = World::new().await;
    push_other_image(&w);
    let pause_ref = w.reference("test/busybox:1");
    let other_ref = w.reference("test/other:1");
    let backend = backend_with_pause(&w, &pause_ref).await;

    // The pause, pulled by its configured name: every record (tag, digest, id) pinned.
    let pause_id = backend.pull_image(&pull(&pause_ref)).await.expect("pull");
    let manifest = w.images.manifest_digest("busybox");
    let labels = record_labels(&w, &manifest).await;
    assert_eq!(labels.len(), 3, "{labels:?}");
    for (name, l) in &labels {
        assert!(pinned(l), "record {name} not pinned: {l:?}");
        assert_eq!(l["io.crimux.image"], "managed", "{name}");
    }
    assert!(is_pinned(&backend, &pause_ref).await);
    assert!(is_pinned(&backend, pause_id.as_str()).await);

    // Any other image is not pinned.
    let other_id = backend.pull_image(&pull(&other_ref)).await.expect("pull");
    assert_ne!(other_id, pause_id);
    let other_labels = record_labels(&w, &w.images.manifest_digest("other")).await;
    assert_eq!(other_labels.len(), 3, "{other_labels:?}");
    assert!(other_labels
        .values()
        .all(|l| PINNED.iter().all(|(k, _)| !l.contains_key(*k))));
    let listed: HashMap<String, bool> = backend
        .list_images()
        .await
        .expect("ListImages")
        .into_iter()
        .map(|i| (i.id.0, i.pinned))
        .collect();
    assert_eq!(
        listed,
        HashMap::from([(pause_id.0.clone(), true), (other_id.0.clone(), false)])
    );

    // The same image pulled again under another name (it rewrites the shared id record
    // without the pin) stays pinned: its configured name still is.
    w.registry
        .push(&w.images.layout(), "busybox", "test/alias:1");
    let alias_id = backend
        .pull_image(&pull(&w.reference("test/alias:1")))
        .await
        .expect("pull alias");
    assert_eq!(alias_id, pause_id);
    assert!(is_pinned(&backend, &w.reference("test/alias:1")).await);

    // RemoveImage of a pinned image still removes it (as containerd's CRI does).
    backend
        .remove_image(pause_id.as_str())
        .await
        .expect("remove pinned");
    assert!(backend
        .image_status(pause_id.as_str())
        .await
        .expect("status")
        .is_none());
    assert!(record_labels(&w, &manifest).await.is_empty());
    backend
        .remove_image(other_id.as_str())
        .await
        .expect("remove other");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containerd_sandbox_image_already_present_is_pinned_at_start() {
    let w = World::new().await;
    push_other_image(&w);
    let pause_ref = w.reference("test/busybox:1");
    let other_ref = w.reference("test/other:1");

    // Pulled by a backend whose sandbox image is another one: not pinned.
    let id = w.backend.pull_image(&pull(&pause_ref)).await.expect("pull");
    let other_id = w.backend.pull_image(&pull(&other_ref)).await.expect("pull");
    assert!(!is_pinned(&w.backend, id.as_str()).await);
    let manifest = w.images.manifest_digest("busybox");
    assert!(record_labels(&w, &manifest)
        .await
        .values()
        .all(|l| !pinned(l)));

    // A backend started with it as its sandbox image pins every record of it.
    let backend = backend_with_pause(&w, &pause_ref).await;
    let labels = record_labels(&w, &manifest).await;
    assert_eq!(labels.len(), 3, "{labels:?}");
    for (name, l) in &labels {
        assert!(pinned(l), "record {name} not pinned at start: {l:?}");
    }
    assert!(is_pinned(&backend, id.as_str()).await);
    assert!(
        is_pinned(&w.backend, id.as_str()).await,
        "pinning is in the store"
    );
    assert!(!is_pinned(&backend, other_id.as_str()).await);

    // An image containerd's own CRI pinned (its label only) counts as pinned too.
    let mut update = Request::new(UpdateImageRequest {
        image: Some(Record {
            name: other_ref.clone(),
            labels: HashMap::from([("io.cri-containerd.pinned".into(), "pinned".into())]),
            ..Default::default()
        }),
        update_mask: Some(prost_types::FieldMask {
            paths: vec!["labels.io.cri-containerd.pinned".into()],
        }),
        source_date_epoch: None,
    });
    update.metadata_mut().insert(
        "containerd-namespace",
        NAMESPACE.parse().expect("namespace"),
    );
    ImagesClient::new(w.channel.clone())
        .update(update)
        .await
        .expect("label with containerd's key");
    assert!(is_pinned(&backend, other_id.as_str()).await);
}
