//! The test images: built once per machine by tests/harness/build-images.sh into
//! `<target>/test-images`, described by its images.json so tests know every digest up front.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use serde::Deserialize;

use super::process::run;

/// One image (or, for an index, its linux/amd64 child) as built by build-images.sh.
#[derive(Debug, Clone, Deserialize)]
pub struct TestImage {
    pub name: String,
    pub tag: String,
    /// The ref inside the OCI layout ("<name>-<tag>").
    #[serde(rename = "ref")]
    pub layout_ref: String,
    /// Digest of what the tag points at: the manifest, or the index for multiarch.
    pub digest: String,
    pub media_type: String,
    /// The linux/amd64 manifest (equal to `digest` unless this is an index).
    pub manifest: String,
    /// The config digest: crimux's image id.
    pub config: String,
    pub os: String,
    pub architecture: String,
    pub user: String,
    pub layers: Vec<String>,
    pub diff_ids: Vec<String>,
    /// Names of the committed snapshots of this image's layers, bottom first.
    pub chain_ids: Vec<String>,
    /// manifest + config + compressed layers, bytes.
    pub size: u64,
    /// For an index: each child's platform (`os`, `architecture`, `variant`) and `manifest`.
    #[serde(default)]
    pub platforms: Vec<serde_json::Value>,
}

impl TestImage {
    /// The image id crimux reports: the config digest.
    pub fn id(&self) -> &str {
        &self.config
    }

    /// The digest of every blob the linux/amd64 image is made of (incl. the index, if any).
    pub fn blobs(&self) -> Vec<String> {
        let mut blobs = vec![
            self.digest.clone(),
            self.manifest.clone(),
            self.config.clone(),
        ];
        blobs.extend(self.layers.iter().cloned());
        blobs.dedup();
        blobs
    }
}

pub struct TestImages {
    pub dir: PathBuf,
    images: BTreeMap<String, TestImage>,
}

impl TestImages {
    /// The OCI layout holding every ref.
    pub fn layout(&self) -> PathBuf {
        self.dir.join("oci")
    }

    /// `name:tag`, e.g. "busybox:1.0"; panics if the build did not produce it.
    pub fn get(&self, name_tag: &str) -> &TestImage {
        self.images
            .get(name_tag)
            .unwrap_or_else(|| panic!("no test image {name_tag} in {}", self.dir.display()))
    }
}

/// Where build-images.sh puts its output: `<cargo target dir>/test-images`.
pub fn images_root() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    target.join("test-images")
}

/// Builds (or reuses) an image set: `"standard"` or `"big"`.
pub fn build(kind: &str) -> TestImages {
    let root = images_root();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/harness/build-images.sh");
    let mut cmd = Command::new("bash");
    cmd.arg(&script).arg(&root);
    if kind == "big" {
        cmd.arg("big");
    }
    run(&mut cmd);
    let dir = root.join(kind);
    let json = std::fs::read_to_string(dir.join("images.json"))
        .unwrap_or_else(|e| panic!("read {}/images.json: {e}", dir.display()));
    let images = serde_json::from_str(&json)
        .unwrap_or_else(|e| panic!("parse {}/images.json: {e}", dir.display()));
    TestImages { dir, images }
}

/// The standard image set, built once per test process (and once per machine, thanks to
/// the script's stamp and lock).
pub fn test_images() -> &'static TestImages {
    static IMAGES: OnceLock<TestImages> = OnceLock::new();
    IMAGES.get_or_init(|| build("standard"))
}
