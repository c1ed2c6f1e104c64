//! The `crimux-log` attach socket, from crimux's side: a unix socket on Unix. On Windows the
//! log plugin's attach socket is not served yet, so connecting says so.

#[cfg(unix)]
mod imp {
    use std::path::Path;

    /// A connection to a log plugin's attach socket: it only ever sends.
    pub(crate) type AttachStream = tokio::net::UnixStream;

    /// Connects to the attach socket at `path`.
    pub(crate) async fn connect(path: &Path) -> std::io::Result<AttachStream> {
        tokio::net::UnixStream::connect(path).await
    }
}

#[cfg(windows)]
mod imp {
    use std::path::Path;

    /// Never constructed on Windows: [`connect`] always fails.
    pub(crate) type AttachStream = tokio::io::Empty;

    /// Attach sockets are unix sockets, which crimux-log does not serve on Windows.
    pub(crate) async fn connect(path: &Path) -> std::io::Result<AttachStream> {
        Err(std::io::Error::new(
            std::io::ErrorKind::Unsupported,
            format!(
                "attach socket {}: attaching to a container's output is not implemented on Windows",
                path.display()
            ),
        ))
    }
}

pub(crate) use imp::{connect, AttachStream};
