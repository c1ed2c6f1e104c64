//! ExecSync: run a command in a container and capture its output.

use std::time::Duration;

use crimux_core::status::ExecSyncOutput;
use crimux_core::{ContainerId, Result};

use crate::backend::Inner;

pub(crate) async fn exec_sync(
    inner: &Inner,
    id: &ContainerId,
    cmd: &[String],
    timeout: Option<Duration>,
) -> Result<ExecSyncOutput> {
    let _ = (inner, id, cmd, timeout);
    Err(crimux_core::Error::Unimplemented(
        "ExecSync is not implemented yet in crimux".into(),
    ))
}
