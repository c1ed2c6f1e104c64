//! Image calls: fan-outs over every backend and the hand-written merges of their answers.
//!
//! Images are per backend (a Linux and a Windows containerd each keep their own store),
//! so a pull goes to every backend and each one takes the platform it runs or refuses
//! with `OsNotSupported`. Reads ask every backend and merge.

use std::collections::HashMap;
use std::sync::Arc;

use futures::future::join_all;
use tonic::Code;

use crimux_core::{
    Backend, BackendInfo, Error, FsUsage, Image, ImageId, OsNotSupported, PullImage, Result,
};

use crate::dispatcher::Dispatcher;
use crate::routing::BackendIdx;

impl Dispatcher {
    /// Pulls with no runtime handler named; see [`Dispatcher::pull_image_for`].
    pub async fn pull_image(&self, request: &PullImage) -> Result<ImageId> {
        self.pull_image_for(request, "").await
    }

    /// Pulls an image where it will run.
    ///
    /// - A named `runtime_handler` (the image spec's) pulls into the backend serving it
    ///   only; an unknown handler is NotFound listing the known ones.
    /// - A pull for a pod (`pod_uid`, from the request's sandbox config) whose sandbox is
    ///   routed pulls into that pod's backend only. If that backend cannot run the image's
    ///   OS, the backends that can take it instead: the image's OS is then learned as the
    ///   pod's hint, and CreateContainer sends the pod round to the right backend.
    /// - Otherwise every backend is asked, and each takes the image if it can run it.
    ///
    /// The image's OS is recorded per backend that took it, and as the pod's hint when
    /// the pull was for a pod. Returns the primary's image id when it took the image,
    /// else the first delegate's.
    #[tracing::instrument(skip_all, fields(image = %request.reference, runtime_handler))]
    pub async fn pull_image_for(
        &self,
        request: &PullImage,
        runtime_handler: &str,
    ) -> Result<ImageId> {
        let everyone = self.fan_out();
        let target = if !runtime_handler.is_empty() {
            Some((self.router().backend_for_handler(runtime_handler)?, true))
        } else {
            request
                .pod_uid
                .as_deref()
                .and_then(|uid| self.pod_backend(uid))
                .map(|idx| (idx, false))
        };
        let (first, rest): (Vec<_>, Vec<_>) = match target {
            Some((idx, _)) => everyone.into_iter().partition(|(i, _)| *i == idx),
            None => (everyone, Vec::new()),
        };
        let mut result = self.pull_into(request, &first).await;
        if let (Some((_, false)), Err(Error::OsNotSupported(_))) = (target, &result) {
            if !rest.is_empty() {
                tracing::info!(pod = ?request.pod_name, "the pod's backend cannot run the image: pulling where it can run");
                result = self.pull_into(request, &rest).await;
            }
        }
        let (id, accepted) = result.map_err(|e| match e {
            // The refusal lists every OS this node runs, not only those asked.
            Error::OsNotSupported(mut r) => {
                r.node_os = self.node_os();
                Error::OsNotSupported(r)
            }
            e => e,
        })?;
        self.router()
            .record_pull(request.pod_uid.as_deref(), &accepted);
        tracing::info!(image_id = %id, backends = accepted.len(), "pulled image");
        Ok(id)
    }

    /// Pulls into `targets` at once and merges their answers.
    async fn pull_into(
        &self,
        request: &PullImage,
        targets: &[(BackendIdx, Arc<dyn Backend>)],
    ) -> Result<(ImageId, Vec<(BackendIdx, ImageId)>)> {
        let results = join_all(targets.iter().map(|(_, b)| async move {
            b.pull_image(request)
                .await
                .map_err(Dispatcher::unreachable(b))
        }))
        .await;
        let answers: Vec<(BackendIdx, Result<ImageId>)> =
            targets.iter().map(|(i, _)| *i).zip(results).collect();
        let infos: Vec<BackendInfo> = targets.iter().map(|(_, b)| b.info().clone()).collect();
        merge_pulls(request, &infos, answers)
    }

    /// The backend of a pod's newest routed sandbox, if it has one.
    fn pod_backend(&self, pod_uid: &str) -> Option<BackendIdx> {
        let name = {
            let routes = self.routes();
            routes
                .table
                .sandboxes
                .values()
                .filter(|r| r.uid == pod_uid)
                .max_by_key(|r| r.attempt)
                .map(|r| r.backend.clone())?
        };
        self.fan_out()
            .into_iter()
            .find(|(_, b)| b.info().name == name)
            .map(|(i, _)| i)
    }

    /// The image from the first backend (primary first) that has it. A backend that is
    /// unavailable is skipped; if no backend has the image and one was unavailable, the
    /// answer is that error rather than a possibly wrong "absent".
    pub async fn image_status(&self, image: &str) -> Result<Option<Image>> {
        let mut unavailable = None;
        for (_, backend) in self.fan_out() {
            match backend.image_status(image).await {
                Ok(Some(found)) => return Ok(Some(found)),
                Ok(None) => {}
                Err(e) if e.code() == Code::Unavailable => {
                    tracing::warn!(backend = %backend.info().name, error = %e, "skipping unavailable backend");
                    unavailable.get_or_insert(e);
                }
                Err(e) => return Err(e),
            }
        }
        match unavailable {
            Some(e) => Err(e),
            None => Ok(None),
        }
    }

    /// Every backend's images, merged by id.
    pub async fn list_images(&self) -> Result<Vec<Image>> {
        let per_backend = self.ask_all("list images", |b| b.list_images()).await?;
        Ok(merge_images(per_backend))
    }

    /// Removes the image's names from every backend. Every backend is tried; the first
    /// error, if any, is returned.
    pub async fn remove_image(&self, image: &str) -> Result<()> {
        let targets = self.fan_out();
        let results = join_all(targets.iter().map(|(_, b)| b.remove_image(image))).await;
        let mut first_err = None;
        for ((_, backend), result) in targets.iter().zip(results) {
            if let Err(e) = result {
                tracing::warn!(backend = %backend.info().name, image, error = %e, "remove image failed");
                first_err.get_or_insert(e.context(format_args!("backend {}", backend.info().name)));
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    /// Every backend's image filesystems, concatenated.
    pub async fn image_fs_info(&self) -> Result<Vec<FsUsage>> {
        let per_backend = self.ask_all("image fs info", |b| b.image_fs_info()).await?;
        Ok(per_backend.into_iter().flatten().collect())
    }

    /// Asks every backend (primary first), skipping unavailable ones with a warning. Fails
    /// on any other error, or when every backend is unavailable.
    async fn ask_all<'a, T, F, Fut>(&'a self, what: &str, call: F) -> Result<Vec<T>>
    where
        F: Fn(&'a dyn crimux_core::Backend) -> Fut,
        Fut: std::future::Future<Output = Result<T>> + 'a,
    {
        let targets = self.fan_out();
        let calls = targets
            .iter()
            .map(|(idx, _)| call(self.backend(*idx).as_ref()));
        let results = join_all(calls).await;
        let mut answers = Vec::with_capacity(results.len());
        let mut unavailable = None;
        for ((_, backend), result) in targets.iter().zip(results) {
            match result {
                Ok(v) => answers.push(v),
                Err(e) if e.code() == Code::Unavailable => {
                    tracing::warn!(backend = %backend.info().name, error = %e, "{what}: skipping unavailable backend");
                    unavailable.get_or_insert(e);
                }
                Err(e) => return Err(e.context(format_args!("backend {}", backend.info().name))),
            }
        }
        match unavailable {
            Some(e) if answers.is_empty() => Err(e),
            _ => Ok(answers),
        }
    }
}

/// Merges per-backend pull answers (in fan-out order).
///
/// Returns the image id to report and every backend that took the image. Any error other
/// than an OS refusal wins. When every backend refused for its OS, the refusals become
/// one, listing all of the node's OSes.
pub fn merge_pulls(
    request: &PullImage,
    infos: &[BackendInfo],
    answers: Vec<(BackendIdx, Result<ImageId>)>,
) -> Result<(ImageId, Vec<(BackendIdx, ImageId)>)> {
    let mut accepted = Vec::new();
    let mut refusal: Option<OsNotSupported> = None;
    for ((idx, answer), info) in answers.into_iter().zip(infos) {
        match answer {
            Ok(id) => accepted.push((idx, id)),
            Err(Error::OsNotSupported(r)) => {
                tracing::debug!(backend = %info.name, required_os = %r.required_os, "backend refused image for its OS");
                refusal.get_or_insert(*r);
            }
            Err(e) => return Err(e.context(format_args!("backend {}", info.name))),
        }
    }
    if let Some((_, id)) = accepted.first() {
        return Ok((id.clone(), accepted));
    }
    let Some(mut refusal) = refusal else {
        return Err(Error::Internal(format!(
            "pull {}: no backend answered",
            request.reference
        )));
    };
    let mut node_os: Vec<String> = infos.iter().map(|i| i.platform.os.clone()).collect();
    node_os.sort();
    node_os.dedup();
    refusal.node_os = node_os;
    if refusal.image.is_empty() {
        refusal.image = request.reference.clone();
    }
    if refusal.pod.is_empty() {
        refusal.pod = request.pod_name.clone().unwrap_or_default();
    }
    Err(refusal.into())
}

/// Merges per-backend image lists: one entry per id (the first backend's), with the union
/// of every backend's tags and digests, sorted. `pinned` if any backend pins it.
pub fn merge_images(per_backend: Vec<Vec<Image>>) -> Vec<Image> {
    let mut merged: Vec<Image> = Vec::new();
    let mut by_id: HashMap<ImageId, usize> = HashMap::new();
    for image in per_backend.into_iter().flatten() {
        match by_id.get(&image.id) {
            Some(&at) => {
                let m = &mut merged[at];
                m.repo_tags.extend(image.repo_tags);
                m.repo_digests.extend(image.repo_digests);
                m.pinned |= image.pinned;
            }
            None => {
                by_id.insert(image.id.clone(), merged.len());
                merged.push(image);
            }
        }
    }
    for m in &mut merged {
        m.repo_tags.sort();
        m.repo_tags.dedup();
        m.repo_digests.sort();
        m.repo_digests.dedup();
    }
    merged
}
