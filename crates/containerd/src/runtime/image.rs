//! An image as containers need it: its id, config and top chain id (the snapshot parent).

use crimux_core::Result;
use crimux_spec::ImageConfig;

use crate::backend::Inner;

pub(crate) struct RunnableImage {
    /// `sha256:<config digest>`.
    pub id: String,
    /// The name the client used, normalised.
    pub name: String,
    pub config: ImageConfig,
    /// Top chain id of the unpacked layers.
    pub chain_id: String,
    pub platform: crimux_core::Platform,
}

/// Resolves an image name, id or digest present in this backend. Absent: NotFound.
pub(crate) async fn runnable(inner: &Inner, name: &str) -> Result<RunnableImage> {
    let _ = (inner, name);
    Err(crimux_core::Error::Unimplemented("runnable images are being built".into()))
}
