//! Manifests and indexes: media types, parsing, and choosing the manifest for a platform.
//!
//! Docker's v2 schema 2 formats are the OCI formats under other media type names, so both
//! parse into `oci_spec` types. Platform choice follows containerd: OS and architecture
//! must match; an exact variant beats a missing one, which beats an older compatible one;
//! attestation entries (`unknown/unknown`) are never chosen.

use crimux_core::platform::oci_arch;
use crimux_core::{Error, Platform, Result};
use oci_spec::image::{Descriptor, ImageIndex, ImageManifest};

pub const MEDIA_TYPE_DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const MEDIA_TYPE_DOCKER_MANIFEST_LIST: &str =
    "application/vnd.docker.distribution.manifest.list.v2+json";
pub const MEDIA_TYPE_DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
pub const MEDIA_TYPE_DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
pub const MEDIA_TYPE_DOCKER_FOREIGN_LAYER_GZIP: &str =
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip";
pub const MEDIA_TYPE_OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const MEDIA_TYPE_OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const MEDIA_TYPE_OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const MEDIA_TYPE_OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
pub const MEDIA_TYPE_OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const MEDIA_TYPE_OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
pub const MEDIA_TYPE_OCI_NONDISTRIBUTABLE_LAYER: &str =
    "application/vnd.oci.image.layer.nondistributable.v1.tar";
pub const MEDIA_TYPE_OCI_NONDISTRIBUTABLE_LAYER_GZIP: &str =
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip";
pub const MEDIA_TYPE_OCI_NONDISTRIBUTABLE_LAYER_ZSTD: &str =
    "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd";

/// The `Accept` header for manifest requests, most preferred first.
pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
application/vnd.oci.image.manifest.v1+json, \
application/vnd.docker.distribution.manifest.list.v2+json, \
application/vnd.docker.distribution.manifest.v2+json";

/// One parsed manifest document.
// Unboxed on purpose: callers match on it directly and a manifest is parsed a few times per pull.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug)]
pub enum Manifest {
    Index(ImageIndex),
    Image(ImageManifest),
}

impl Manifest {
    /// Parses a manifest. `media_type` is the HTTP `Content-Type`; when it is missing or
    /// generic (`application/json`, ...), the document's own `mediaType`, then its shape
    /// (`manifests` vs `layers`), decide.
    pub fn parse(media_type: &str, bytes: &[u8]) -> Result<Manifest> {
        let mt = detect_media_type(media_type, bytes)?;
        let malformed =
            |e: serde_json::Error| Error::Internal(format!("malformed manifest ({mt}): {e}"));
        if is_index_media_type(&mt) {
            serde_json::from_slice(bytes)
                .map(Manifest::Index)
                .map_err(malformed)
        } else if is_manifest_media_type(&mt) {
            serde_json::from_slice(bytes)
                .map(Manifest::Image)
                .map_err(malformed)
        } else {
            Err(Error::InvalidArgument(format!(
                "unsupported manifest media type {mt:?}"
            )))
        }
    }
}

/// The media type of a manifest document: the header's when it names a manifest type,
/// else the JSON's `mediaType`, else guessed from the fields present.
pub fn detect_media_type(content_type: &str, bytes: &[u8]) -> Result<String> {
    let header = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if is_index_media_type(&header) || is_manifest_media_type(&header) {
        return Ok(header);
    }
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Shape {
        schema_version: Option<u32>,
        media_type: Option<String>,
        manifests: Option<serde_json::Value>,
        layers: Option<serde_json::Value>,
        config: Option<serde_json::Value>,
    }
    let shape: Shape = serde_json::from_slice(bytes)
        .map_err(|e| Error::Internal(format!("manifest is not JSON ({header:?}): {e}")))?;
    if shape.schema_version == Some(1) {
        return Err(Error::InvalidArgument(
            "docker schema 1 manifests are not supported; push the image with a current client"
                .into(),
        ));
    }
    if let Some(mt) = shape.media_type.filter(|m| !m.is_empty()) {
        return Ok(mt);
    }
    if shape.manifests.is_some() {
        Ok(MEDIA_TYPE_OCI_INDEX.into())
    } else if shape.layers.is_some() || shape.config.is_some() {
        Ok(MEDIA_TYPE_OCI_MANIFEST.into())
    } else {
        Err(Error::InvalidArgument(format!(
            "cannot tell the manifest type of a {header:?} document"
        )))
    }
}

/// Whether a media type names a list of manifests (OCI index or docker manifest list).
pub fn is_index_media_type(mt: &str) -> bool {
    mt == MEDIA_TYPE_OCI_INDEX || mt == MEDIA_TYPE_DOCKER_MANIFEST_LIST
}

/// Whether a media type names a single-image manifest.
pub fn is_manifest_media_type(mt: &str) -> bool {
    mt == MEDIA_TYPE_OCI_MANIFEST || mt == MEDIA_TYPE_DOCKER_MANIFEST
}

/// How a layer blob is compressed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LayerCompression {
    None,
    Gzip,
    Zstd,
}

/// The compression of a layer media type, or `None` when it is not a layer type we unpack.
pub fn layer_compression(mt: &str) -> Option<LayerCompression> {
    match mt {
        MEDIA_TYPE_OCI_LAYER | MEDIA_TYPE_OCI_NONDISTRIBUTABLE_LAYER => {
            Some(LayerCompression::None)
        }
        MEDIA_TYPE_OCI_LAYER_GZIP
        | MEDIA_TYPE_OCI_NONDISTRIBUTABLE_LAYER_GZIP
        | MEDIA_TYPE_DOCKER_LAYER_GZIP
        | MEDIA_TYPE_DOCKER_FOREIGN_LAYER_GZIP => Some(LayerCompression::Gzip),
        MEDIA_TYPE_OCI_LAYER_ZSTD | MEDIA_TYPE_OCI_NONDISTRIBUTABLE_LAYER_ZSTD => {
            Some(LayerCompression::Zstd)
        }
        _ => None,
    }
}

/// The best manifest in `index` for `platform`, or `None` when nothing there runs on it.
/// Ties keep index order.
pub fn select_manifest(index: &ImageIndex, platform: &Platform) -> Option<Descriptor> {
    let mut best: Option<(u32, &Descriptor)> = None;
    for d in index.manifests() {
        let Some(score) = score(d, platform) else {
            continue;
        };
        if best.is_none_or(|(s, _)| score > s) {
            best = Some((score, d));
        }
    }
    best.map(|(_, d)| d.clone())
}

/// The platforms an index offers, in index order without duplicates; attestation entries
/// and entries without a platform are left out.
pub fn index_platforms(index: &ImageIndex) -> Vec<Platform> {
    let mut out: Vec<Platform> = Vec::new();
    for d in index.manifests() {
        if let Some(p) = descriptor_platform(d) {
            if p.os != "unknown" && !out.contains(&p) {
                out.push(p);
            }
        }
    }
    out
}

/// A descriptor's platform in crimux's spelling.
pub fn descriptor_platform(d: &Descriptor) -> Option<Platform> {
    let p = d.platform().as_ref()?;
    Some(Platform {
        os: p.os().to_string(),
        architecture: p.architecture().to_string(),
        variant: p.variant().clone().filter(|v| !v.is_empty()),
    })
}

/// How well a descriptor fits; `None` when it cannot run.
fn score(d: &Descriptor, want: &Platform) -> Option<u32> {
    let Some(have) = descriptor_platform(d) else {
        // No platform: only a plain manifest may be a last resort.
        return is_manifest_media_type(d.media_type().as_ref()).then_some(1);
    };
    if have.os == "unknown" || !have.os.eq_ignore_ascii_case(&want.os) {
        return None;
    }
    let arch = oci_arch(&want.architecture);
    if oci_arch(&have.architecture) != arch {
        return None;
    }
    let want_v = normalise_variant(&arch, want.variant.as_deref());
    let have_v = normalise_variant(&arch, have.variant.as_deref());
    match (want_v, have_v) {
        (w, h) if w == h => Some(100),
        (_, None) => Some(90),
        (None, Some(h)) => Some(80 - variant_level(&h).min(79)),
        (Some(w), Some(h)) => {
            let (wl, hl) = (variant_level(&w), variant_level(&h));
            // An older variant of the same family runs on a newer CPU (arm v7 runs v6).
            (hl > 0 && hl < wl && hl < 60).then(|| 60 - (wl - hl))
        }
    }
}

/// arm64 is v8 and arm is v7 unless told otherwise, as containerd normalises them.
fn normalise_variant(arch: &str, v: Option<&str>) -> Option<String> {
    let v = v.filter(|v| !v.is_empty()).map(str::to_ascii_lowercase);
    let v = match (arch, v) {
        ("arm", None) => "v7".to_string(),
        (_, None) => return None,
        (_, Some(v)) => v,
    };
    match (arch, v.as_str()) {
        ("arm64", "v8" | "8") => None,
        (_, s) if s.bytes().all(|b| b.is_ascii_digit()) => Some(format!("v{s}")),
        _ => Some(v),
    }
}

/// The numeric level of a `vN` variant, 0 when it is not one.
fn variant_level(v: &str) -> u32 {
    v.strip_prefix('v')
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(n: u8, os: &str, arch: &str, variant: Option<&str>) -> serde_json::Value {
        let mut platform = serde_json::json!({"os": os, "architecture": arch});
        if let Some(v) = variant {
            platform["variant"] = v.into();
        }
        serde_json::json!({
            "mediaType": MEDIA_TYPE_DOCKER_MANIFEST,
            "digest": format!("sha256:{}", format!("{n:02x}").repeat(32)),
            "size": 100 + n as u64,
            "platform": platform,
        })
    }

    fn index(entries: Vec<serde_json::Value>) -> ImageIndex {
        let doc = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": MEDIA_TYPE_DOCKER_MANIFEST_LIST,
            "manifests": entries,
        });
        match Manifest::parse(MEDIA_TYPE_DOCKER_MANIFEST_LIST, doc.to_string().as_bytes()) {
            Ok(Manifest::Index(i)) => i,
            other => panic!("not an index: {other:?}"),
        }
    }

    fn plat(os: &str, arch: &str, variant: Option<&str>) -> Platform {
        Platform {
            os: os.into(),
            architecture: arch.into(),
            variant: variant.map(Into::into),
        }
    }

    fn chosen(i: &ImageIndex, p: &Platform) -> Option<u64> {
        select_manifest(i, p).map(|d| d.size() - 100)
    }

    #[test]
    fn selects_platforms_like_containerd() {
        let multi = index(vec![
            entry(0, "unknown", "unknown", None),
            entry(1, "linux", "amd64", None),
            entry(2, "linux", "arm", Some("v6")),
            entry(3, "linux", "arm", Some("v7")),
            entry(4, "linux", "arm64", Some("v8")),
            entry(5, "windows", "amd64", None),
            entry(6, "linux", "386", None),
        ]);
        let only_v5 = index(vec![entry(1, "linux", "arm", Some("v5"))]);
        let att_only = index(vec![entry(0, "unknown", "unknown", None)]);
        let cases: Vec<(&ImageIndex, Platform, Option<u64>)> = vec![
            (&multi, plat("linux", "amd64", None), Some(1)),
            (&multi, plat("linux", "x86_64", None), Some(1)),
            (&multi, plat("linux", "arm", Some("v7")), Some(3)),
            (&multi, plat("linux", "arm", Some("v6")), Some(2)),
            (&multi, plat("linux", "arm", Some("v8")), Some(3)),
            (&multi, plat("linux", "arm64", None), Some(4)),
            (&multi, plat("linux", "aarch64", Some("v8")), Some(4)),
            (&multi, plat("windows", "amd64", None), Some(5)),
            (&multi, plat("linux", "386", None), Some(6)),
            (&multi, plat("linux", "s390x", None), None),
            (&multi, plat("darwin", "amd64", None), None),
            (&multi, plat("unknown", "unknown", None), None),
            (&only_v5, plat("linux", "arm", Some("v7")), Some(1)),
            (&only_v5, plat("linux", "arm", Some("v5")), Some(1)),
            (&only_v5, plat("linux", "arm", None), Some(1)),
            (&att_only, plat("linux", "amd64", None), None),
        ];
        for (i, p, want) in cases {
            assert_eq!(chosen(i, &p), want, "{p}");
        }
        let v6_only = index(vec![entry(1, "linux", "arm", Some("v7"))]);
        assert_eq!(chosen(&v6_only, &plat("linux", "arm", Some("v6"))), None);
    }

    #[test]
    fn lists_platforms_without_attestations() {
        let i = index(vec![
            entry(1, "linux", "amd64", None),
            entry(0, "unknown", "unknown", None),
            entry(3, "linux", "arm", Some("v7")),
            entry(4, "linux", "amd64", None),
        ]);
        assert_eq!(
            index_platforms(&i),
            vec![
                plat("linux", "amd64", None),
                plat("linux", "arm", Some("v7"))
            ]
        );
    }

    #[test]
    fn parse_uses_header_then_body_then_shape() {
        let d = "sha256:".to_string() + &"ab".repeat(32);
        let image = serde_json::json!({
            "schemaVersion": 2,
            "config": {"mediaType": MEDIA_TYPE_DOCKER_CONFIG, "digest": d, "size": 2},
            "layers": [{"mediaType": MEDIA_TYPE_DOCKER_LAYER_GZIP, "digest": d, "size": 3}],
        })
        .to_string();
        let idx = serde_json::json!({"schemaVersion": 2, "manifests": []}).to_string();
        let with_mt = serde_json::json!({"schemaVersion": 2, "mediaType": MEDIA_TYPE_OCI_INDEX, "manifests": []})
            .to_string();
        assert!(matches!(
            Manifest::parse(MEDIA_TYPE_DOCKER_MANIFEST, image.as_bytes()),
            Ok(Manifest::Image(_))
        ));
        assert!(matches!(
            Manifest::parse("application/json", image.as_bytes()),
            Ok(Manifest::Image(_))
        ));
        assert!(matches!(
            Manifest::parse("", idx.as_bytes()),
            Ok(Manifest::Index(_))
        ));
        assert!(matches!(
            Manifest::parse("text/plain", with_mt.as_bytes()),
            Ok(Manifest::Index(_))
        ));
        assert!(matches!(
            Manifest::parse(
                &format!("{MEDIA_TYPE_OCI_INDEX}; charset=utf-8"),
                idx.as_bytes()
            ),
            Ok(Manifest::Index(_))
        ));
        assert_eq!(
            detect_media_type("", image.as_bytes()).unwrap(),
            MEDIA_TYPE_OCI_MANIFEST
        );
        let schema1 = r#"{"schemaVersion":1,"fsLayers":[]}"#;
        assert!(matches!(
            Manifest::parse("", schema1.as_bytes()),
            Err(Error::InvalidArgument(_))
        ));
        assert!(matches!(
            Manifest::parse("", b"not json"),
            Err(Error::Internal(_))
        ));
        assert!(matches!(
            Manifest::parse(MEDIA_TYPE_OCI_MANIFEST, b"{}"),
            Err(Error::Internal(_))
        ));
        assert!(matches!(
            Manifest::parse("", b"{}"),
            Err(Error::InvalidArgument(_))
        ));
    }

    #[test]
    fn layer_compressions() {
        assert_eq!(
            layer_compression(MEDIA_TYPE_DOCKER_LAYER_GZIP),
            Some(LayerCompression::Gzip)
        );
        assert_eq!(
            layer_compression(MEDIA_TYPE_OCI_LAYER_ZSTD),
            Some(LayerCompression::Zstd)
        );
        assert_eq!(
            layer_compression(MEDIA_TYPE_OCI_LAYER),
            Some(LayerCompression::None)
        );
        assert_eq!(layer_compression(MEDIA_TYPE_OCI_CONFIG), None);
    }
}
