//! Process-level bits that differ on unix: private directories and stop signals.

use std::future::Future;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use tokio::signal::unix::{signal, SignalKind};

/// Creates `dir` (and parents) readable by root only, if missing.
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

/// Writes `contents` to `path` (replacing it), mode 0600 when `private`, else 0644, and
/// syncs it. The mode is set again after writing in case the file already existed.
pub fn write_new_file(path: &Path, contents: &[u8], private: bool) -> std::io::Result<()> {
    let mode = if private { 0o600 } else { 0o644 };
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(path)?;
    file.set_permissions(std::fs::Permissions::from_mode(mode))?;
    file.write_all(contents)?;
    file.sync_all()
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
