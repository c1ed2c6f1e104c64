//! The labels crimux puts on containerd objects.
//!
//! containerd's garbage collector follows `containerd.io/gc.ref.*` labels from image records
//! down to content and snapshots; anything not reachable from an image (or a lease) is
//! collected. We label exactly as containerd's own pull does, so images pulled by crimux and
//! by `ctr` share content and are collected the same way.

use std::collections::HashMap;

pub type Labels = HashMap<String, String>;

/// Marks an image record as crimux's (list and status see only these).
pub const IMAGE_MANAGED: &str = "io.crimux.image";
pub const IMAGE_MANAGED_VALUE: &str = "managed";
/// The OS and architecture of the image's selected config.
pub const IMAGE_OS: &str = "crimux.io/image.os";
pub const IMAGE_ARCH: &str = "crimux.io/image.arch";
/// The image id (config digest), so records group without reading content.
pub const IMAGE_ID: &str = "crimux.io/image.id";

/// A pinned image: the backend's sandbox (pause) image. CRI reports it `pinned`, so
/// kubelet's image GC never removes it. crimux's own key, and the one containerd's CRI puts
/// on its sandbox image, so `ctr images ls` shows it as containerd users expect.
pub const IMAGE_PINNED: &str = "crimux.io/image.pinned";
pub const IMAGE_PINNED_VALUE: &str = "true";
pub const CRI_PINNED: &str = "io.cri-containerd.pinned";
pub const CRI_PINNED_VALUE: &str = "pinned";

pub const GC_EXPIRE: &str = "containerd.io/gc.expire";
pub const UNCOMPRESSED: &str = "containerd.io/uncompressed";
pub const SNAPSHOT_REF: &str = "containerd.io/snapshot.ref";
const DISTRIBUTION_SOURCE: &str = "containerd.io/distribution.source.";

/// `containerd.io/distribution.source.<host>=<repository>`: where a blob came from, so a
/// later push can mount it instead of uploading.
pub fn distribution_source(domain: &str, repository: &str) -> (String, String) {
    (
        format!("{DISTRIBUTION_SOURCE}{domain}"),
        repository.to_string(),
    )
}

/// An index references its manifests.
pub fn index_labels(manifests: &[String], source: &(String, String)) -> Labels {
    let mut labels: Labels = manifests
        .iter()
        .enumerate()
        .map(|(i, digest)| {
            (
                format!("containerd.io/gc.ref.content.m.{i}"),
                digest.clone(),
            )
        })
        .collect();
    labels.insert(source.0.clone(), source.1.clone());
    labels
}

/// A manifest references its config and layers.
pub fn manifest_labels(config: &str, layers: &[String], source: &(String, String)) -> Labels {
    let mut labels: Labels = layers
        .iter()
        .enumerate()
        .map(|(i, digest)| {
            (
                format!("containerd.io/gc.ref.content.l.{i}"),
                digest.clone(),
            )
        })
        .collect();
    labels.insert("containerd.io/gc.ref.content.config".into(), config.into());
    labels.insert(source.0.clone(), source.1.clone());
    labels
}

/// A config references the unpacked top snapshot, which holds its parents.
pub fn config_labels(
    snapshotter: &str,
    top_chain_id: Option<&str>,
    source: &(String, String),
) -> Labels {
    let mut labels = Labels::new();
    if let Some(chain) = top_chain_id {
        labels.insert(
            format!("containerd.io/gc.ref.snapshot.{snapshotter}"),
            chain.into(),
        );
    }
    labels.insert(source.0.clone(), source.1.clone());
    labels
}

/// A layer records its uncompressed digest (diff id).
pub fn layer_labels(diff_id: &str, source: &(String, String)) -> Labels {
    Labels::from([
        (UNCOMPRESSED.to_string(), diff_id.to_string()),
        (source.0.clone(), source.1.clone()),
    ])
}

/// The labels of every image record of one pulled image.
pub fn image_labels(id: &str, os: &str, arch: &str) -> Labels {
    Labels::from([
        (IMAGE_MANAGED.to_string(), IMAGE_MANAGED_VALUE.to_string()),
        (IMAGE_ID.to_string(), id.to_string()),
        (IMAGE_OS.to_string(), os.to_string()),
        (IMAGE_ARCH.to_string(), arch.to_string()),
    ])
}

/// The labels that pin an image record (both keys).
pub fn pinned_labels() -> Labels {
    Labels::from([
        (IMAGE_PINNED.to_string(), IMAGE_PINNED_VALUE.to_string()),
        (CRI_PINNED.to_string(), CRI_PINNED_VALUE.to_string()),
    ])
}

/// Whether a record is pinned, by crimux's key or by containerd CRI's (an image pinned by
/// containerd's CRI before crimux took over stays pinned).
pub fn is_pinned(labels: &Labels) -> bool {
    labels.get(IMAGE_PINNED).map(String::as_str) == Some(IMAGE_PINNED_VALUE)
        || labels.get(CRI_PINNED).map(String::as_str) == Some(CRI_PINNED_VALUE)
}

/// The lease resource type of a snapshot in `snapshotter`.
pub fn snapshot_resource_type(snapshotter: &str) -> String {
    format!("snapshots/{snapshotter}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source() -> (String, String) {
        distribution_source("docker.io", "library/busybox")
    }

    #[test]
    fn index_and_manifest_reference_children_in_order() {
        let index = index_labels(&["sha256:a".into(), "sha256:b".into()], &source());
        assert_eq!(index["containerd.io/gc.ref.content.m.0"], "sha256:a");
        assert_eq!(index["containerd.io/gc.ref.content.m.1"], "sha256:b");
        assert_eq!(
            index["containerd.io/distribution.source.docker.io"],
            "library/busybox"
        );

        let manifest = manifest_labels(
            "sha256:c",
            &["sha256:l0".into(), "sha256:l1".into()],
            &source(),
        );
        assert_eq!(manifest["containerd.io/gc.ref.content.config"], "sha256:c");
        assert_eq!(manifest["containerd.io/gc.ref.content.l.0"], "sha256:l0");
        assert_eq!(manifest["containerd.io/gc.ref.content.l.1"], "sha256:l1");
        assert_eq!(manifest.len(), 4);
    }

    #[test]
    fn config_references_top_snapshot_and_layers_their_diff_id() {
        let config = config_labels("overlayfs", Some("sha256:top"), &source());
        assert_eq!(
            config["containerd.io/gc.ref.snapshot.overlayfs"],
            "sha256:top"
        );
        assert_eq!(config_labels("overlayfs", None, &source()).len(), 1);
        let layer = layer_labels("sha256:diff", &source());
        assert_eq!(layer[UNCOMPRESSED], "sha256:diff");
    }

    #[test]
    fn image_records_are_marked_managed() {
        let labels = image_labels("sha256:id", "linux", "amd64");
        assert_eq!(labels[IMAGE_MANAGED], "managed");
        assert_eq!(labels[IMAGE_ID], "sha256:id");
        assert_eq!(labels[IMAGE_OS], "linux");
        assert_eq!(labels[IMAGE_ARCH], "amd64");
        assert!(!is_pinned(&labels));
    }

    #[test]
    fn either_pin_label_pins() {
        let pinned = pinned_labels();
        assert_eq!(pinned["crimux.io/image.pinned"], "true");
        assert_eq!(pinned["io.cri-containerd.pinned"], "pinned");
        assert!(is_pinned(&pinned));
        for (key, value, want) in [
            (IMAGE_PINNED, "true", true),
            (CRI_PINNED, "pinned", true),
            (IMAGE_PINNED, "false", false),
            (CRI_PINNED, "unpinned", false),
        ] {
            let labels = Labels::from([(key.to_string(), value.to_string())]);
            assert_eq!(is_pinned(&labels), want, "{key}={value}");
        }
    }
}
