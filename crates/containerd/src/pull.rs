//! Pulling an image into containerd, the way containerd's own client does it: resolve,
//! choose the manifest for this backend's platform, refuse foreign OSes before downloading
//! layers, store every blob with the garbage-collection labels containerd expects, unpack
//! layers into snapshots and name the result. All of it under one lease (see `lease.rs`).

use std::sync::Arc;

use bytes::Bytes;
use crimux_core::{Error, ImageId, OsNotSupported, PullImage, Result};
use crimux_registry::manifest::{index_platforms, select_manifest, Manifest};
use crimux_registry::{BlobStream, Reference, Repository};
use futures::future::{BoxFuture, FutureExt};
use futures::{StreamExt, TryStreamExt};
use oci_spec::image::{Descriptor, ImageIndex, ImageManifest};
use sha2::{Digest, Sha256};

use crate::backend::Inner;
use crate::config::ImageConfig;
use crate::content::{self, Blob};
use crate::labels::{self, Labels};
use crate::lease;
use crate::records;
use crate::unpack::{self, chain_ids, Layer};

/// Layers downloaded at once by one pull.
const PARALLEL_LAYERS: usize = 3;
/// The largest image config we read into memory.
const MAX_CONFIG: u64 = 16 << 20;

/// Pulls `request`, once however many callers ask for the same reference at the same time.
pub async fn pull(inner: &Arc<Inner>, request: &PullImage) -> Result<ImageId> {
    let reference = Reference::parse(&request.reference)
        .map_err(|e| e.context(format!("image reference {:?}", request.reference)))?;
    let key = reference.to_string();
    let work = {
        let inner = Arc::clone(inner);
        let request = request.clone();
        async move { pull_once(inner, reference, request).await }
    };
    inner.pulls.run(&key, work).await
}

/// What was resolved and chosen before anything is stored.
struct Plan {
    top: Descriptor,
    index: Option<(ImageIndex, Bytes)>,
    manifest_descriptor: Descriptor,
    manifest: ImageManifest,
    manifest_bytes: Bytes,
    config: ImageConfig,
    config_bytes: Bytes,
}

async fn pull_once(inner: Arc<Inner>, reference: Reference, request: PullImage) -> Result<ImageId> {
    let started = std::time::Instant::now();
    tracing::info!(backend = %inner.name, image = %reference, "pulling image");
    let repository = Arc::new(
        inner
            .registry
            .repository(&reference, request.credentials.as_ref()),
    );
    let plan = plan(&inner, &repository, &reference, &request).await?;

    let lease = lease::create(&inner.daemon).await?;
    let result = store(&inner, &repository, &reference, &plan, &lease).await;
    // On failure the collector must have taken everything before we answer.
    let deleted = lease::delete(&inner.daemon, &lease, result.is_err()).await;
    match (&result, deleted) {
        (Ok(id), Ok(())) => {
            tracing::info!(backend = %inner.name, image = %reference, %id,
                elapsed_ms = started.elapsed().as_millis() as u64, "pulled image");
        }
        (Ok(_), Err(e)) => tracing::warn!(lease, ?e, "pull lease not deleted; it expires in 1h"),
        (Err(e), Err(le)) => tracing::warn!(lease, ?e, ?le, "failed pull's lease not deleted"),
        (Err(e), Ok(())) => {
            tracing::info!(backend = %inner.name, image = %reference, %e, "pull failed")
        }
    }
    result
}

/// Resolves the reference, picks the manifest for this backend and reads the config, so
/// an image this backend cannot run is refused before any layer is downloaded.
async fn plan(
    inner: &Inner,
    repository: &Repository,
    reference: &Reference,
    request: &PullImage,
) -> Result<Plan> {
    let resolved = repository
        .resolve()
        .await
        .map_err(|e| e.context(format!("resolving {reference}")))?;
    let top = resolved.descriptor;
    let (index, manifest_descriptor, manifest_bytes) =
        match Manifest::parse(top.media_type().as_ref(), &resolved.bytes)? {
            Manifest::Index(index) => {
                let chosen = select_manifest(&index, &inner.platform)
                    .ok_or_else(|| no_platform_match(inner, &index, request))?;
                let bytes = repository
                    .fetch_manifest(&chosen)
                    .await
                    .map_err(|e| e.context(format!("fetching manifest {}", chosen.digest())))?;
                (Some((index, resolved.bytes)), chosen, bytes)
            }
            Manifest::Image(_) => (None, top.clone(), resolved.bytes),
        };
    let manifest =
        match Manifest::parse(manifest_descriptor.media_type().as_ref(), &manifest_bytes)? {
            Manifest::Image(manifest) => manifest,
            Manifest::Index(_) => {
                return Err(Error::InvalidArgument(format!(
                    "{reference}: index {} points at another index",
                    top.digest()
                )))
            }
        };
    let config_bytes = fetch_config(repository, manifest.config()).await?;
    let config = ImageConfig::parse(&config_bytes)
        .map_err(|e| e.context(format!("{reference} config {}", manifest.config().digest())))?;
    if !inner.platform.os.eq_ignore_ascii_case(&config.platform.os) {
        return Err(refusal(inner, &config.platform.os, request));
    }
    if !inner.platform.can_run(&config.platform) {
        return Err(Error::NotFound(format!(
            "{reference} is built for {}, backend {} runs {}",
            config.platform, inner.name, inner.platform
        )));
    }
    if config.diff_ids.len() != manifest.layers().len() {
        return Err(Error::InvalidArgument(format!(
            "{reference}: manifest has {} layers but its config lists {} diff ids",
            manifest.layers().len(),
            config.diff_ids.len()
        )));
    }
    Ok(Plan {
        top,
        index,
        manifest_descriptor,
        manifest,
        manifest_bytes,
        config,
        config_bytes,
    })
}

/// An index without a manifest for us: a foreign OS is an OS refusal (so the pod can go
/// elsewhere); our OS on another architecture is simply not found.
fn no_platform_match(inner: &Inner, index: &ImageIndex, request: &PullImage) -> Error {
    let platforms = index_platforms(index);
    if platforms
        .iter()
        .any(|p| p.os.eq_ignore_ascii_case(&inner.platform.os))
    {
        let offered: Vec<String> = platforms.iter().map(ToString::to_string).collect();
        return Error::NotFound(format!(
            "{} has no manifest for {} (it has {})",
            request.reference,
            inner.platform,
            offered.join(", ")
        ));
    }
    let required = platforms.first().map(|p| p.os.clone()).unwrap_or_default();
    refusal(inner, &required, request)
}

fn refusal(inner: &Inner, required_os: &str, request: &PullImage) -> Error {
    OsNotSupported {
        required_os: required_os.to_string(),
        node_os: vec![inner.platform.os.clone()],
        image: request.reference.clone(),
        pod: request.pod_name.clone().unwrap_or_default(),
    }
    .into()
}

async fn fetch_config(repository: &Repository, descriptor: &Descriptor) -> Result<Bytes> {
    let context = || format!("fetching config {}", descriptor.digest());
    if descriptor.size() > MAX_CONFIG {
        return Err(Error::InvalidArgument(format!(
            "{}: config is too large",
            context()
        )));
    }
    let mut stream = repository
        .fetch_blob(descriptor)
        .await
        .map_err(|e| e.context(context()))?;
    let mut data = Vec::with_capacity(descriptor.size() as usize);
    while let Some(chunk) = stream.next().await {
        data.extend_from_slice(&chunk.map_err(|e| e.context(context()))?);
        if data.len() as u64 > descriptor.size() {
            break;
        }
    }
    let actual = format!("sha256:{}", hex::encode(Sha256::digest(&data)));
    if actual != descriptor.digest().to_string() {
        return Err(Error::InvalidArgument(format!(
            "{}: content has digest {actual}",
            context()
        )));
    }
    Ok(data.into())
}

/// Stores blobs, unpacks and names the image; everything is held by `lease`.
async fn store(
    inner: &Arc<Inner>,
    repository: &Arc<Repository>,
    reference: &Reference,
    plan: &Plan,
    lease: &str,
) -> Result<ImageId> {
    let source = labels::distribution_source(&reference.domain, &reference.repository);
    let layers = plan.manifest.layers();
    let chains = chain_ids(&plan.config.diff_ids);
    let config_descriptor = plan.manifest.config();

    let config_labels = labels::config_labels(
        &inner.snapshotter,
        chains.last().map(String::as_str),
        &source,
    );
    ensure_blob(
        inner,
        lease,
        repository,
        config_descriptor,
        config_labels,
        Some(plan.config_bytes.clone()),
    )
    .await?;

    // Boxed up front: a lazily mapped stream of borrowing futures trips rustc's
    // higher-ranked Send inference when the whole pull is spawned.
    let downloads: Vec<BoxFuture<'_, Result<()>>> = layers
        .iter()
        .zip(&plan.config.diff_ids)
        .map(|(layer, diff_id)| {
            let labels = labels::layer_labels(diff_id, &source);
            ensure_blob(inner, lease, repository, layer, labels, None).boxed()
        })
        .collect();
    futures::stream::iter(downloads)
        .buffer_unordered(PARALLEL_LAYERS)
        .try_collect::<Vec<()>>()
        .await?;

    let layer_digests: Vec<String> = layers.iter().map(|l| l.digest().to_string()).collect();
    let manifest_labels =
        labels::manifest_labels(config_descriptor.digest().as_ref(), &layer_digests, &source);
    ensure_blob(
        inner,
        lease,
        repository,
        &plan.manifest_descriptor,
        manifest_labels,
        Some(plan.manifest_bytes.clone()),
    )
    .await?;

    if let Some((index, bytes)) = &plan.index {
        let children: Vec<String> = index
            .manifests()
            .iter()
            .map(|m| m.digest().to_string())
            .collect();
        let index_labels = labels::index_labels(&children, &source);
        ensure_blob(
            inner,
            lease,
            repository,
            &plan.top,
            index_labels,
            Some(bytes.clone()),
        )
        .await?;
    }

    let unpack_layers: Vec<Layer> = layers
        .iter()
        .zip(&plan.config.diff_ids)
        .map(|(blob, diff_id)| Layer {
            blob: to_containerd(blob),
            diff_id: diff_id.clone(),
        })
        .collect();
    unpack::unpack(&inner.daemon, lease, &inner.snapshotter, &unpack_layers)
        .await
        .map_err(|e| e.context(format!("unpacking {reference}")))?;

    let id = config_descriptor.digest().to_string();
    let mut names = Vec::new();
    if reference.digest.is_none() {
        names.extend(reference.tagged());
    }
    names.push(reference.with_digest(plan.top.digest().as_ref()));
    names.push(id.clone());
    let mut record_labels: Labels = labels::image_labels(
        &id,
        &plan.config.platform.os,
        &plan.config.platform.architecture,
    );
    if is_sandbox_image(inner, reference) {
        record_labels.extend(labels::pinned_labels());
    }
    let target = to_containerd(&plan.top);
    for name in &names {
        records::put(&inner.daemon, name, &target, &record_labels).await?;
    }
    Ok(ImageId(id))
}

/// Whether `reference` names this backend's sandbox image (after normalisation), whose
/// records are pinned as containerd's CRI pins its own.
fn is_sandbox_image(inner: &Inner, reference: &Reference) -> bool {
    Reference::parse(&inner.runtime.sandbox_image)
        .is_ok_and(|pause| pause.to_string() == reference.to_string())
}

/// Makes sure a blob is in the content store and held by our lease. Downloads of one digest
/// are shared between concurrent pulls; since the pull that downloaded a blob may fail and
/// drop it, we re-check after leasing it.
async fn ensure_blob(
    inner: &Arc<Inner>,
    lease: &str,
    repository: &Arc<Repository>,
    descriptor: &Descriptor,
    labels: Labels,
    inline: Option<Bytes>,
) -> Result<()> {
    let digest = descriptor.digest().to_string();
    for _ in 0..3 {
        let work = {
            let inner = Arc::clone(inner);
            let repository = Arc::clone(repository);
            let descriptor = descriptor.clone();
            let labels = labels.clone();
            let inline = inline.clone();
            let lease = lease.to_string();
            async move {
                let digest = descriptor.digest().to_string();
                let blob = Blob {
                    digest: &digest,
                    size: descriptor.size(),
                    labels,
                };
                let open = || open_blob(&repository, &descriptor, inline.clone());
                content::write(&inner.daemon, &lease, blob, open).await
            }
        };
        inner.blobs.run(&digest, work).await?;
        lease::hold_content(&inner.daemon, lease, &digest).await?;
        if content::info(&inner.daemon, &digest).await?.is_some() {
            return Ok(());
        }
        tracing::debug!(
            digest,
            "blob collected after a shared download failed; fetching again"
        );
    }
    Err(Error::Unavailable(format!(
        "content {digest} keeps disappearing from the store"
    )))
}

async fn open_blob(
    repository: &Repository,
    descriptor: &Descriptor,
    inline: Option<Bytes>,
) -> Result<BlobStream> {
    match inline {
        Some(bytes) => Ok(Box::pin(futures::stream::once(async move { Ok(bytes) }))),
        None => repository
            .fetch_blob(descriptor)
            .await
            .map_err(|e| e.context(format!("fetching blob {}", descriptor.digest()))),
    }
}

/// An OCI descriptor as containerd's API spells it.
pub fn to_containerd(descriptor: &Descriptor) -> containerd_client::types::Descriptor {
    containerd_client::types::Descriptor {
        media_type: descriptor.media_type().to_string(),
        digest: descriptor.digest().to_string(),
        size: descriptor.size() as i64,
        annotations: descriptor
            .annotations()
            .clone()
            .unwrap_or_default()
            .into_iter()
            .collect(),
    }
}
