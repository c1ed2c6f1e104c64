//! The CRI unix socket: created safely, served, and removed on the way out.
//!
//! Two crimux processes must never share a socket path: binding over a live socket would
//! steal kubelet from the running one. So an existing path is probed first, and only a
//! stale socket (nobody answers) is removed.

use std::future::Future;
use std::io::ErrorKind;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context};
use tokio_stream::wrappers::UnixListenerStream;
use tokio_stream::StreamExt;

use crate::authority::AuthorityFix;

use crimux_cri::CriServer;

/// Who may talk to the socket: root and the socket's group (kubelet, crictl via sudo).
const SOCKET_MODE: u32 = 0o660;

/// A bound CRI socket. Dropping it removes the socket file, if it is still ours.
pub struct CriListener {
    path: PathBuf,
    listener: Option<std::os::unix::net::UnixListener>,
    /// (device, inode) of the socket this process bound, so drop never removes a socket
    /// another process put at the same path later.
    identity: (u64, u64),
}

impl CriListener {
    /// Binds `listen` (a path, `unix://` prefix allowed), creating its directory and
    /// clearing a stale socket; refuses when another process answers on it.
    pub fn bind(listen: &str) -> anyhow::Result<CriListener> {
        let path = PathBuf::from(listen.strip_prefix("unix://").unwrap_or(listen));
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o755)
                .create(dir)
                .with_context(|| format!("cannot create socket directory {}", dir.display()))?;
        }
        clear_stale(&path)?;
        let listener = std::os::unix::net::UnixListener::bind(&path)
            .with_context(|| format!("cannot listen on {}", path.display()))?;
        listener
            .set_nonblocking(true)
            .with_context(|| format!("cannot listen on {}", path.display()))?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(SOCKET_MODE))
            .with_context(|| format!("cannot chmod {}", path.display()))?;
        let meta = std::fs::symlink_metadata(&path)
            .with_context(|| format!("cannot stat {}", path.display()))?;
        Ok(CriListener {
            path,
            listener: Some(listener),
            identity: (meta.dev(), meta.ino()),
        })
    }

    /// The address clients use, for logs.
    pub fn endpoint(&self) -> String {
        format!("unix://{}", self.path.display())
    }

    /// Serves until `shutdown` resolves, then lets in-flight calls finish. The socket is
    /// removed when `self` drops at the end.
    pub async fn serve(
        mut self,
        server: CriServer,
        shutdown: impl Future<Output = ()>,
    ) -> anyhow::Result<()> {
        let std_listener = self
            .listener
            .take()
            .ok_or_else(|| anyhow!("{} is already being served", self.endpoint()))?;
        let listener = tokio::net::UnixListener::from_std(std_listener)
            .with_context(|| format!("cannot listen on {}", self.path.display()))?;
        tracing::info!("serving CRI on {}", self.endpoint());
        // Clients that send the socket path as `:authority` are let in (see authority.rs).
        let incoming = UnixListenerStream::new(listener).map(|conn| conn.map(AuthorityFix::new));
        server
            .serve(incoming, shutdown)
            .await
            .with_context(|| format!("serving CRI on {}", self.endpoint()))
    }
}

impl Drop for CriListener {
    fn drop(&mut self) {
        let ours = std::fs::symlink_metadata(&self.path)
            .is_ok_and(|m| (m.dev(), m.ino()) == self.identity);
        if ours {
            if let Err(e) = std::fs::remove_file(&self.path) {
                tracing::warn!(path = %self.path.display(), error = %e, "cannot remove CRI socket");
            }
        }
    }
}

/// Makes `path` free to bind: absent is fine; a socket nobody answers on is removed; a
/// live socket or any other kind of file is refused.
fn clear_stale(path: &Path) -> anyhow::Result<()> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("cannot stat {}", path.display())),
    };
    if !meta.file_type().is_socket() {
        bail!(
            "{} exists and is not a socket; refusing to replace it",
            path.display()
        );
    }
    match std::os::unix::net::UnixStream::connect(path) {
        Ok(_) => bail!("another process is serving on {}", path.display()),
        Err(e) if matches!(e.kind(), ErrorKind::ConnectionRefused | ErrorKind::NotFound) => {
            tracing::info!(path = %path.display(), "removing stale CRI socket");
            std::fs::remove_file(path)
                .with_context(|| format!("cannot remove stale socket {}", path.display()))
        }
        Err(e) => {
            Err(e).with_context(|| format!("cannot probe existing socket {}", path.display()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binds_in_a_new_directory_and_cleans_up() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("run/crimux/crimux.sock");
        let listen = format!("unix://{}", path.display());
        let listener = CriListener::bind(&listen).expect("bind");
        assert_eq!(listener.endpoint(), listen);
        let mode = std::fs::metadata(&path)
            .expect("socket")
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o660);
        drop(listener);
        assert!(!path.exists(), "socket removed on drop");
    }

    #[test]
    fn stale_socket_is_replaced_live_one_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("crimux.sock");
        let listen = path.to_string_lossy().to_string();

        // A socket whose listener is gone is stale.
        drop(std::os::unix::net::UnixListener::bind(&path).expect("bind"));
        assert!(path.exists());
        let listener = CriListener::bind(&listen).expect("stale socket replaced");

        // While it is bound, a second bind is refused and leaves the socket alone.
        let err = CriListener::bind(&listen)
            .err()
            .expect("live socket refused");
        assert!(
            err.to_string().contains("another process is serving on"),
            "{err:#}"
        );
        assert!(path.exists());
        drop(listener);

        std::fs::write(&path, "not a socket").expect("write");
        let err = CriListener::bind(&listen)
            .err()
            .expect("regular file refused");
        assert!(err.to_string().contains("is not a socket"), "{err:#}");
        assert!(path.exists(), "the file is left alone");
    }
}
