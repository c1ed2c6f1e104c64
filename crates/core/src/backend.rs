//! The traits a backend implements. A backend is one containerd daemon (or, in unit tests,
//! a recording fake). The traits are small and split by concern; the composite dispatcher
//! holds `Arc<dyn Backend>` and routes each call to one of them.

use std::fmt;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::image::{FsUsage, Image, ImageId, PullImage};
use crate::platform::Platform;

/// Whether a backend is the node's primary or a delegate for another OS.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum BackendRole {
    #[default]
    Primary,
    Delegate,
}

impl fmt::Display for BackendRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BackendRole::Primary => "primary",
            BackendRole::Delegate => "delegate",
        })
    }
}

/// What the dispatcher knows of a backend without asking it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackendInfo {
    /// The operator's name for it, unique on the node (`[[backend]] name`).
    pub name: String,
    pub role: BackendRole,
    /// The platform it runs, discovered or configured.
    pub platform: Platform,
    /// RuntimeClass handler names it serves; `""` is the default handler.
    pub runtime_handlers: Vec<String>,
}

/// Images in one backend's stores.
#[async_trait]
pub trait ImageBackend: Send + Sync {
    /// Pulls and unpacks an image for this backend's platform; returns its id.
    async fn pull_image(&self, request: &PullImage) -> Result<ImageId>;

    /// The image named by `image` (a reference, short name, id or id prefix), if present.
    async fn image_status(&self, image: &str) -> Result<Option<Image>>;

    async fn list_images(&self) -> Result<Vec<Image>>;

    /// Removes every name of the image; an absent image is not an error.
    async fn remove_image(&self, image: &str) -> Result<()>;

    /// Filesystem usage of the image store (the snapshotter).
    async fn image_fs_info(&self) -> Result<Vec<FsUsage>>;
}

/// A whole backend. Later issues add pod sandbox, container, streaming and status traits
/// as supertraits here; the dispatcher only ever holds this.
pub trait Backend: ImageBackend {
    fn info(&self) -> &BackendInfo;
}
