//! The CRI ImageService: every RPC unpacks its request, calls the dispatcher and packs
//! the answer. Nothing here decides anything.

use std::sync::Arc;

use k8s_cri::v1;
use k8s_cri::v1::image_service_server::ImageService;
use tonic::{Request, Response, Status};

use crimux_dispatch::Dispatcher;

use crate::convert;

/// ImageService over the dispatcher.
#[derive(Clone, Debug)]
pub struct CriImageService {
    dispatcher: Arc<Dispatcher>,
}

impl CriImageService {
    pub fn new(dispatcher: Arc<Dispatcher>) -> Self {
        CriImageService { dispatcher }
    }
}

fn spec_name(spec: Option<&v1::ImageSpec>) -> &str {
    spec.map(|s| s.image.as_str()).unwrap_or_default()
}

#[tonic::async_trait]
impl ImageService for CriImageService {
    #[tracing::instrument(skip_all, fields(filter), err(Display, level = "warn"))]
    async fn list_images(
        &self,
        request: Request<v1::ListImagesRequest>,
    ) -> Result<Response<v1::ListImagesResponse>, Status> {
        let request = request.into_inner();
        let filter = request
            .filter
            .as_ref()
            .map(|f| spec_name(f.image.as_ref()).trim())
            .filter(|f| !f.is_empty());
        tracing::Span::current().record("filter", filter);
        // A filter names one image the way ImageStatus does, so the backend resolves it
        // (short names, ids, id prefixes) rather than this crate matching strings.
        let images = match filter {
            Some(name) => self
                .dispatcher
                .image_status(name)
                .await
                .map_err(Status::from)?
                .into_iter()
                .collect(),
            None => self.dispatcher.list_images().await.map_err(Status::from)?,
        };
        Ok(Response::new(v1::ListImagesResponse {
            images: images.iter().map(convert::image_to_proto).collect(),
        }))
    }

    #[tracing::instrument(skip_all, fields(image, verbose), err(Display, level = "warn"))]
    async fn image_status(
        &self,
        request: Request<v1::ImageStatusRequest>,
    ) -> Result<Response<v1::ImageStatusResponse>, Status> {
        let request = request.into_inner();
        let span = tracing::Span::current();
        span.record("image", spec_name(request.image.as_ref()));
        span.record("verbose", request.verbose);
        let name = convert::image_name(request.image.as_ref(), "ImageStatus")?;
        let found = self
            .dispatcher
            .image_status(&name)
            .await
            .map_err(Status::from)?;
        let info = match (&found, request.verbose) {
            (Some(image), true) => convert::verbose_image_info(image),
            _ => Default::default(),
        };
        Ok(Response::new(v1::ImageStatusResponse {
            image: found.as_ref().map(convert::image_to_proto),
            info,
        }))
    }

    // The request carries credentials: only the image and pod are logged.
    #[tracing::instrument(skip_all, fields(image, pod), err(Display, level = "warn"))]
    async fn pull_image(
        &self,
        request: Request<v1::PullImageRequest>,
    ) -> Result<Response<v1::PullImageResponse>, Status> {
        let request = request.into_inner();
        let span = tracing::Span::current();
        span.record("image", spec_name(request.image.as_ref()));
        // The image spec's RuntimeClass handler picks the backend to pull into.
        let handler = request
            .image
            .as_ref()
            .map(|i| i.runtime_handler.clone())
            .unwrap_or_default();
        let pull = convert::pull_request(request)?;
        if let Some(pod) = &pull.pod_name {
            span.record("pod", pod.as_str());
        }
        let id = self
            .dispatcher
            .pull_image_for(&pull, &handler)
            .await
            .map_err(Status::from)?;
        Ok(Response::new(v1::PullImageResponse { image_ref: id.0 }))
    }

    #[tracing::instrument(skip_all, fields(image), err(Display, level = "warn"))]
    async fn remove_image(
        &self,
        request: Request<v1::RemoveImageRequest>,
    ) -> Result<Response<v1::RemoveImageResponse>, Status> {
        let request = request.into_inner();
        tracing::Span::current().record("image", spec_name(request.image.as_ref()));
        let name = convert::image_name(request.image.as_ref(), "RemoveImage")?;
        self.dispatcher
            .remove_image(&name)
            .await
            .map_err(Status::from)?;
        Ok(Response::new(v1::RemoveImageResponse {}))
    }

    #[tracing::instrument(skip_all, err(Display, level = "warn"))]
    async fn image_fs_info(
        &self,
        _request: Request<v1::ImageFsInfoRequest>,
    ) -> Result<Response<v1::ImageFsInfoResponse>, Status> {
        let usage = self
            .dispatcher
            .image_fs_info()
            .await
            .map_err(Status::from)?;
        let filesystems: Vec<v1::FilesystemUsage> = usage.iter().map(convert::fs_usage).collect();
        // Containers' writable layers live in the same snapshotter as the images until
        // the RuntimeService measures them apart.
        Ok(Response::new(v1::ImageFsInfoResponse {
            container_filesystems: filesystems.clone(),
            image_filesystems: filesystems,
        }))
    }
}
