//! Interactive streams into containers: exec, attach and port-forward.
//!
//! The streaming server (crate `crimux-streaming`) speaks SPDY/WebSocket to kubelet and
//! crictl and hands each session's byte streams to a [`StreamingBackend`]; the backend
//! connects them to a containerd exec process, a container's main process, or a TCP port
//! inside a pod. The backend never sees HTTP; the server never sees containerd.

use std::pin::Pin;

use async_trait::async_trait;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::error::{Error, Result};
use crate::ids::{ContainerId, PodSandboxId};

/// A terminal size in character cells, as the `resize` stream sends it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct TermSize {
    pub width: u16,
    pub height: u16,
}

/// A byte source from the client (stdin).
pub type ByteReader = Pin<Box<dyn AsyncRead + Send>>;
/// A byte sink to the client (stdout, stderr).
pub type ByteWriter = Pin<Box<dyn AsyncWrite + Send>>;

/// A bidirectional byte stream (a forwarded TCP connection).
pub trait Duplex: AsyncRead + AsyncWrite + Send {}
impl<T: AsyncRead + AsyncWrite + Send + ?Sized> Duplex for T {}
pub type DuplexStream = Pin<Box<dyn Duplex>>;

/// The client's side of one exec or attach session. A `None` stream was not requested.
///
/// Writers apply back-pressure: a write that does not complete means the client is slow,
/// and the backend must stop reading from the process rather than buffer without bound.
/// When `stdin` reaches end-of-file the process's stdin is closed. With a tty, `stderr` is
/// `None` (a terminal has one output) and `resize` delivers terminal size changes.
pub struct StreamIo {
    pub stdin: Option<ByteReader>,
    pub stdout: Option<ByteWriter>,
    pub stderr: Option<ByteWriter>,
    pub resize: Option<tokio::sync::mpsc::Receiver<TermSize>>,
}

impl std::fmt::Debug for StreamIo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamIo")
            .field("stdin", &self.stdin.is_some())
            .field("stdout", &self.stdout.is_some())
            .field("stderr", &self.stderr.is_some())
            .field("resize", &self.resize.is_some())
            .finish()
    }
}

/// What an exec session runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExecSpec {
    pub cmd: Vec<String>,
    pub tty: bool,
}

fn not_built(what: &str) -> Error {
    Error::Unimplemented(format!("{what} is not implemented yet in crimux"))
}

/// Streams into one backend's containers and pods.
///
/// Every method's future may be dropped at any moment (the client went away): the backend
/// then kills and deletes what it started (exec process, FIFOs) and leaks nothing.
#[async_trait]
pub trait StreamingBackend: Send + Sync {
    /// Checks that an exec can start in `id` now: the container exists and runs.
    async fn check_exec(&self, id: &ContainerId) -> Result<()> {
        let _ = id;
        Err(not_built("Exec"))
    }

    /// Runs `spec.cmd` in the running container `id` with the client's streams and returns
    /// its exit code once it exited and its output was delivered.
    async fn exec(&self, id: &ContainerId, spec: &ExecSpec, io: StreamIo) -> Result<i32> {
        let _ = (id, spec, io);
        Err(not_built("Exec"))
    }

    /// Checks that `id` can be attached to now: it runs and was created with stdin or a tty
    /// (FailedPrecondition otherwise, saying which).
    async fn check_attach(&self, id: &ContainerId) -> Result<()> {
        let _ = id;
        Err(not_built("Attach"))
    }

    /// Connects the client's streams to the main process of `id` until the process exits
    /// or the client closes its streams. Output keeps going to the CRI log meanwhile.
    async fn attach(&self, id: &ContainerId, io: StreamIo) -> Result<()> {
        let _ = (id, io);
        Err(not_built("Attach"))
    }

    /// Checks that port-forwarding into sandbox `id` can start: it exists and is ready.
    async fn check_port_forward(&self, id: &PodSandboxId) -> Result<()> {
        let _ = id;
        Err(not_built("PortForward"))
    }

    /// Opens a TCP connection to `port` on localhost inside the sandbox's network
    /// namespace. A refused connection is an error (the session reports it and goes on).
    async fn port_forward(&self, id: &PodSandboxId, port: u16) -> Result<DuplexStream> {
        let _ = (id, port);
        Err(not_built("PortForward"))
    }
}
