//! Process-level bits that differ on Windows: private directories and stop signals.

use std::path::Path;

/// Creates `dir` (and parents); Windows ACLs are inherited from the parent for now.
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)
}

/// Resolves on Ctrl-C (service stop handling arrives with the Windows service wrapper).
pub fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = ()>> {
    Ok(async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::warn!(error = %e, "cannot watch Ctrl-C");
            std::future::pending::<()>().await;
        }
        tracing::info!("Ctrl-C: shutting down");
    })
}
