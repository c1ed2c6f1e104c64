//! Images as the CRI sees them, read back from containerd's image records and content:
//! status, list, remove and the image filesystem's usage.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use containerd_client::services::v1::snapshots::{ListSnapshotsRequest, UsageRequest};
use containerd_client::services::v1::Image as Record;
use containerd_client::types::Descriptor;
use crimux_core::{Error, FsUsage, Image, ImageId, Result};
use crimux_registry::manifest::{select_manifest, Manifest};
use crimux_registry::Reference;

use crate::backend::Inner;
use crate::config::ImageConfig;
use crate::content;
use crate::labels;
use crate::records;

/// What an image's content says about it; immutable, so cached by target digest.
pub struct Details {
    size: u64,
    config: ImageConfig,
}

/// The records of each crimux image, by image id.
type Groups = BTreeMap<String, Vec<Record>>;

async fn groups(inner: &Inner) -> Result<Groups> {
    let mut groups = Groups::new();
    for record in records::list(&inner.daemon).await? {
        if let Some(id) = records::image_id(&record) {
            groups.entry(id.to_string()).or_default().push(record);
        }
    }
    Ok(groups)
}

/// Resolves a name the CRI may use for an image to its id, as containerd's CRI does: a full
/// id, a reference (short names normalised), or a unique id prefix with or without `sha256:`.
pub fn resolve(groups: &Groups, name: &str) -> Result<Option<String>> {
    if groups.contains_key(name) {
        return Ok(Some(name.to_string()));
    }
    if let Ok(reference) = Reference::parse(name) {
        let wanted = match &reference.digest {
            Some(digest) => Some(reference.with_digest(digest)),
            None => reference.tagged(),
        };
        if let Some(wanted) = wanted {
            for (id, records) in groups {
                if records.iter().any(|r| r.name == wanted) {
                    return Ok(Some(id.clone()));
                }
            }
        }
    }
    let prefix = name.strip_prefix("sha256:").unwrap_or(name);
    if prefix.is_empty() || !prefix.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Ok(None);
    }
    let prefix = prefix.to_ascii_lowercase();
    let mut matches = groups.keys().filter(|id| {
        id.strip_prefix("sha256:")
            .is_some_and(|hex| hex.starts_with(&prefix))
    });
    match (matches.next(), matches.next()) {
        (Some(id), None) => Ok(Some(id.clone())),
        (None, _) => Ok(None),
        (Some(_), Some(_)) => Err(Error::InvalidArgument(format!(
            "image id prefix {name:?} matches more than one image"
        ))),
    }
}

/// Splits an image's record names into CRI repo tags and repo digests, sorted.
pub fn names(id: &str, records: &[Record]) -> (Vec<String>, Vec<String>) {
    let (mut digests, mut tags): (Vec<String>, Vec<String>) = records
        .iter()
        .map(|r| r.name.clone())
        .filter(|n| n != id)
        .partition(|n| n.contains('@'));
    tags.sort();
    tags.dedup();
    digests.sort();
    digests.dedup();
    (tags, digests)
}

async fn details(inner: &Inner, target: &Descriptor) -> Result<Arc<Details>> {
    if let Some(cached) = inner.details_cache().get(&target.digest) {
        return Ok(Arc::clone(cached));
    }
    let bytes = content::read(&inner.daemon, &target.digest).await?;
    let manifest = match Manifest::parse(&target.media_type, &bytes)? {
        Manifest::Image(manifest) => manifest,
        Manifest::Index(index) => {
            let chosen = select_manifest(&index, &inner.platform).ok_or_else(|| {
                Error::NotFound(format!(
                    "index {} has no manifest for {}",
                    target.digest, inner.platform
                ))
            })?;
            let bytes = content::read(&inner.daemon, chosen.digest().as_ref()).await?;
            match Manifest::parse(chosen.media_type().as_ref(), &bytes)? {
                Manifest::Image(manifest) => manifest,
                Manifest::Index(_) => {
                    return Err(Error::InvalidArgument(format!(
                        "nested index in {}",
                        target.digest
                    )))
                }
            }
        }
    };
    let config_bytes = content::read(&inner.daemon, manifest.config().digest().as_ref()).await?;
    let config = ImageConfig::parse(&config_bytes)?;
    let size = manifest.config().size() + manifest.layers().iter().map(|l| l.size()).sum::<u64>();
    let details = Arc::new(Details { size, config });
    inner
        .details_cache()
        .insert(target.digest.clone(), Arc::clone(&details));
    Ok(details)
}

async fn build(inner: &Inner, id: &str, records: &[Record]) -> Result<Image> {
    let target = records
        .iter()
        .find_map(|r| r.target.clone())
        .ok_or_else(|| Error::Internal(format!("image {id} has no target")))?;
    let details = details(inner, &target)
        .await
        .map_err(|e| e.context(format!("reading image {id}")))?;
    let (repo_tags, repo_digests) = names(id, records);
    Ok(Image {
        id: ImageId(id.to_string()),
        repo_tags,
        repo_digests,
        size: details.size,
        user: details.config.user.clone(),
        platform: details.config.platform.clone(),
        config: Some(details.config.json.clone()),
        pinned: records.iter().any(|r| labels::is_pinned(&r.labels)),
    })
}

pub async fn status(inner: &Inner, name: &str) -> Result<Option<Image>> {
    let groups = groups(inner).await?;
    let Some(id) = resolve(&groups, name)? else {
        return Ok(None);
    };
    match groups.get(&id) {
        Some(records) => build(inner, &id, records).await.map(Some),
        None => Ok(None),
    }
}

pub async fn list(inner: &Inner) -> Result<Vec<Image>> {
    let groups = groups(inner).await?;
    let mut images = Vec::with_capacity(groups.len());
    for (id, records) in &groups {
        match build(inner, id, records).await {
            Ok(image) => images.push(image),
            // Removed while we listed it: not an error.
            Err(e) if e.is_not_found() => tracing::debug!(id, %e, "image vanished while listing"),
            Err(e) => return Err(e),
        }
    }
    Ok(images)
}

/// Pins every record of the backend's sandbox image, if the store has it, as containerd's
/// CRI pins its own: kubelet's image GC never removes an image reported `pinned`. A pull of
/// the sandbox image by its configured name pins what it names (see `pull.rs`); this is for
/// an image already here when the backend starts (pulled before, or by an older crimux).
/// Returns the image id.
pub async fn pin_sandbox_image(inner: &Inner) -> Result<Option<String>> {
    let groups = groups(inner).await?;
    let Some(id) = resolve(&groups, &inner.runtime.sandbox_image)? else {
        return Ok(None);
    };
    let unpinned = groups
        .get(&id)
        .into_iter()
        .flatten()
        .filter(|r| !labels::is_pinned(&r.labels));
    for record in unpinned {
        records::pin(&inner.daemon, record).await?;
    }
    Ok(Some(id))
}

/// Deletes every record of the image (a pinned one too, as containerd's CRI does: kubelet
/// never asks, an operator may); the last deletion waits for the collector, so its
/// content and snapshots are gone when we answer.
pub async fn remove(inner: &Inner, name: &str) -> Result<()> {
    let groups = groups(inner).await?;
    let Some(id) = resolve(&groups, name)? else {
        return Ok(());
    };
    let Some(records) = groups.get(&id) else {
        return Ok(());
    };
    for (i, record) in records.iter().enumerate() {
        let last = i + 1 == records.len();
        records::delete(&inner.daemon, &record.name, last).await?;
        if let Some(target) = &record.target {
            inner.details_cache().remove(&target.digest);
        }
    }
    tracing::info!(backend = %inner.name, image = %id, "removed image");
    Ok(())
}

/// Sums the usage of every snapshot in our namespace of the snapshotter.
pub async fn fs_info(inner: &Inner) -> Result<Vec<FsUsage>> {
    let request = inner.daemon.request(
        ListSnapshotsRequest {
            snapshotter: inner.snapshotter.clone(),
            filters: Vec::new(),
        },
        None,
    );
    let mut stream = inner
        .daemon
        .snapshots()
        .list(request)
        .await
        .map_err(|s| Error::backend("listing snapshots", s))?
        .into_inner();
    let mut keys = Vec::new();
    while let Some(page) = stream
        .message()
        .await
        .map_err(|s| Error::backend("listing snapshots", s))?
    {
        keys.extend(page.info.into_iter().map(|i| i.name));
    }
    let (mut bytes, mut inodes) = (0u64, 0u64);
    for key in keys {
        let request = inner.daemon.request(
            UsageRequest {
                snapshotter: inner.snapshotter.clone(),
                key: key.clone(),
            },
            None,
        );
        match inner.daemon.snapshots().usage(request).await {
            Ok(usage) => {
                let usage = usage.into_inner();
                bytes += u64::try_from(usage.size).unwrap_or_default();
                inodes += u64::try_from(usage.inodes).unwrap_or_default();
            }
            // Removed since we listed it.
            Err(status) if status.code() == tonic::Code::NotFound => {}
            Err(status) => return Err(Error::backend(format!("snapshot usage {key}"), status)),
        }
    }
    let timestamp_ns = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or_default();
    Ok(vec![FsUsage {
        timestamp_ns,
        mountpoint: inner.snapshotter_root.clone(),
        used_bytes: bytes,
        inodes_used: inodes,
    }])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(name: &str) -> Record {
        Record {
            name: name.into(),
            ..Default::default()
        }
    }

    #[test]
    fn splits_names_into_tags_and_digests() {
        let id = format!("sha256:{}", "a".repeat(64));
        let records = [
            record("docker.io/library/busybox:latest"),
            record(&id),
            record("docker.io/library/busybox@sha256:1234"),
            record("docker.io/library/busybox:1.36"),
        ];
        let (tags, digests) = names(&id, &records);
        assert_eq!(
            tags,
            [
                "docker.io/library/busybox:1.36",
                "docker.io/library/busybox:latest"
            ]
        );
        assert_eq!(digests, ["docker.io/library/busybox@sha256:1234"]);
    }

    #[test]
    fn resolves_ids_and_unique_prefixes() {
        let a = format!("sha256:abc{}", "0".repeat(61));
        let b = format!("sha256:abd{}", "0".repeat(61));
        let groups = Groups::from([(a.clone(), vec![record(&a)]), (b.clone(), vec![record(&b)])]);
        let cases: [(&str, Option<&str>); 6] = [
            (&a, Some(&a)),
            ("abc", Some(&a)),
            ("sha256:abd", Some(&b)),
            ("ABD", Some(&b)),
            ("abe", None),
            ("", None),
        ];
        for (name, want) in cases {
            assert_eq!(
                resolve(&groups, name).expect(name).as_deref(),
                want,
                "{name}"
            );
        }
        assert_eq!(
            resolve(&groups, "ab").expect_err("ambiguous").code(),
            tonic::Code::InvalidArgument
        );
    }
}
