//! Process-level bits that differ on unix: private directories and stop signals.

use std::future::Future;
use std::os::unix::fs::DirBuilderExt;
use std::path::Path;

use tokio::signal::unix::{signal, SignalKind};

/// Creates `dir` (and parents) readable by root only, if missing.
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

/// Watches SIGTERM and SIGINT from now on; the future resolves on the first one. Handlers
/// are installed before startup work so an early stop is not lost (or fatal).
pub fn shutdown_signal() -> std::io::Result<impl Future<Output = ()>> {
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = terminate.recv() => tracing::info!("SIGTERM: shutting down"),
            _ = interrupt.recv() => tracing::info!("SIGINT: shutting down"),
        }
    })
}
