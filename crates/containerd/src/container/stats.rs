//! Container stats: CPU, memory working set and writable-layer usage.

use crimux_core::status::ContainerStats;
use crimux_core::{ContainerId, Result};

use crate::backend::Inner;

pub(crate) async fn container_stats(inner: &Inner, id: &ContainerId) -> Result<ContainerStats> {
    let _ = (inner, id);
    Err(crimux_core::Error::Unimplemented(
        "ContainerStats is not implemented yet in crimux".into(),
    ))
}
