//! Process-level bits that differ on Windows: private directories, key files, and stopping
//! (Ctrl-C from a console, or a Stop control from the service control manager).

use std::path::Path;

use super::service_windows;

/// Creates `dir` (and parents). Windows has no mode bits: the directory inherits its
/// parent's ACL; install-crimux.ps1 restricts `C:\ProgramData\crimux` to Administrators
/// and SYSTEM.
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)
}

/// Writes `contents` to `path` (replacing it) and syncs it. Private files inherit the
/// directory's ACL (see [`create_private_dir`]).
pub fn write_new_file(path: &Path, contents: &[u8], _private: bool) -> std::io::Result<()> {
    use std::io::Write;
    let mut file = std::fs::File::create(path)?;
    file.write_all(contents)?;
    file.sync_all()
}

/// Resolves on Ctrl-C or on the service's Stop/Shutdown control. Connects to the service
/// control manager first (when started as a service), so the SCM sees RUNNING early.
pub fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = ()>> {
    let mut stop = service_windows::watch_stop();
    Ok(async move {
        let ctrl_c = async {
            if let Err(e) = tokio::signal::ctrl_c().await {
                tracing::warn!(error = %e, "cannot watch Ctrl-C");
                std::future::pending::<()>().await;
            }
        };
        tokio::select! {
            _ = ctrl_c => tracing::info!("Ctrl-C: shutting down"),
            _ = stop.wait_for(|stop| *stop) => tracing::info!("service stop: shutting down"),
        }
        service_windows::report_stopped();
    })
}
