//! ImageService calls, forwarded. Images live in the inner crimux's stores; the outer
//! dispatcher only sends this backend images its platform runs.

use std::collections::HashMap;

use async_trait::async_trait;
use k8s_cri::v1;

use crimux_core::{FsUsage, Image, ImageBackend, ImageId, PullImage, Result};

use super::CriBackend;
use crate::convert;

fn spec(image: &str) -> Option<v1::ImageSpec> {
    Some(v1::ImageSpec {
        image: image.to_string(),
        ..Default::default()
    })
}

#[async_trait]
impl ImageBackend for CriBackend {
    #[tracing::instrument(skip_all, fields(backend = %self.info.name, image = %request.reference))]
    async fn pull_image(&self, request: &PullImage) -> Result<ImageId> {
        let response = self
            .call(
                "PullImage",
                self.images()
                    .pull_image(convert::pull_request_to_proto(request)),
            )
            .await?;
        Ok(ImageId(response.image_ref))
    }

    async fn image_status(&self, image: &str) -> Result<Option<Image>> {
        // Verbose: the platform and config come back in `info`.
        let response = self
            .call(
                "ImageStatus",
                self.images().image_status(v1::ImageStatusRequest {
                    image: spec(image),
                    verbose: true,
                }),
            )
            .await?;
        response
            .image
            .map(|i| convert::image_from_proto(i, &response.info, &self.info.platform))
            .transpose()
    }

    async fn list_images(&self) -> Result<Vec<Image>> {
        let response = self
            .call(
                "ListImages",
                self.images()
                    .list_images(v1::ListImagesRequest { filter: None }),
            )
            .await?;
        let no_info = HashMap::new();
        response
            .images
            .into_iter()
            .map(|i| convert::image_from_proto(i, &no_info, &self.info.platform))
            .collect()
    }

    async fn remove_image(&self, image: &str) -> Result<()> {
        self.call(
            "RemoveImage",
            self.images()
                .remove_image(v1::RemoveImageRequest { image: spec(image) }),
        )
        .await?;
        Ok(())
    }

    async fn image_fs_info(&self) -> Result<Vec<FsUsage>> {
        let response = self
            .call(
                "ImageFsInfo",
                self.images().image_fs_info(v1::ImageFsInfoRequest {}),
            )
            .await?;
        Ok(response
            .image_filesystems
            .into_iter()
            .map(convert::fs_usage_from_proto)
            .collect())
    }
}
