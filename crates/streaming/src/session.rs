//! What an exec or attach session runs, independent of the transport: the backend call
//! and the outcome the error stream reports.

use std::fmt;
use std::sync::{Arc, Mutex};

use crimux_core::{ContainerId, ExecSpec, StreamIo, StreamingBackend};

use crate::protocol::Outcome;
use crate::tokens::Streams;

/// An exec or an attach, with the streams its token grants.
#[derive(Clone, Debug)]
pub(crate) struct Command {
    pub container: ContainerId,
    /// `None` for attach.
    pub exec: Option<ExecSpec>,
    pub streams: Streams,
}

impl Command {
    pub fn exec(container: ContainerId, spec: ExecSpec, streams: Streams) -> Self {
        Command {
            container,
            exec: Some(spec),
            streams,
        }
    }

    pub fn attach(container: ContainerId, streams: Streams) -> Self {
        Command {
            container,
            exec: None,
            streams,
        }
    }

    /// Runs the session on the backend; the future may be dropped (client gone).
    pub async fn run(&self, backend: &dyn StreamingBackend, io: StreamIo) -> Outcome {
        let cmd = self
            .exec
            .as_ref()
            .map(|s| s.cmd.clone())
            .unwrap_or_default();
        let result = match &self.exec {
            Some(spec) => backend.exec(&self.container, spec, io).await,
            None => backend.attach(&self.container, io).await.map(|()| 0),
        };
        match result {
            Ok(code) => Outcome::Exited { code, cmd },
            Err(err) => {
                tracing::warn!(session = %self, error = %err, "streaming session failed");
                Outcome::Failed(err)
            }
        }
    }
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.exec {
            Some(spec) => write!(f, "exec {:?} in {}", spec.cmd, self.container),
            None => write!(f, "attach to {}", self.container),
        }
    }
}

/// A value lent to the backend that comes home when the backend drops it, so the session
/// can still half-close it in order (and not reset it) once the backend is done.
pub(crate) struct Lent<T> {
    value: Option<T>,
    home: Arc<Mutex<Option<T>>>,
}

impl<T> Lent<T> {
    pub fn new(value: T) -> (Self, Arc<Mutex<Option<T>>>) {
        let home = Arc::new(Mutex::new(None));
        (
            Lent {
                value: Some(value),
                home: home.clone(),
            },
            home,
        )
    }
}

/// Takes back what a [`Lent`] returned (nothing if the backend still holds it).
pub(crate) fn reclaim<T>(home: &Arc<Mutex<Option<T>>>) -> Option<T> {
    home.lock().unwrap_or_else(|p| p.into_inner()).take()
}

impl<T> Drop for Lent<T> {
    fn drop(&mut self) {
        if let Some(v) = self.value.take() {
            *self.home.lock().unwrap_or_else(|p| p.into_inner()) = Some(v);
        }
    }
}

mod io_impls {
    use std::io;
    use std::pin::Pin;
    use std::task::{Context, Poll};

    use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

    use super::Lent;

    fn gone() -> io::Error {
        io::Error::new(io::ErrorKind::BrokenPipe, "stream returned")
    }

    impl<T: AsyncRead + Unpin> AsyncRead for Lent<T> {
        fn poll_read(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            match self.value.as_mut() {
                Some(v) => Pin::new(v).poll_read(cx, buf),
                None => Poll::Ready(Err(gone())),
            }
        }
    }

    impl<T: AsyncWrite + Unpin> AsyncWrite for Lent<T> {
        fn poll_write(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            match self.value.as_mut() {
                Some(v) => Pin::new(v).poll_write(cx, buf),
                None => Poll::Ready(Err(gone())),
            }
        }

        fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            match self.value.as_mut() {
                Some(v) => Pin::new(v).poll_flush(cx),
                None => Poll::Ready(Err(gone())),
            }
        }

        fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            match self.value.as_mut() {
                Some(v) => Pin::new(v).poll_shutdown(cx),
                None => Poll::Ready(Err(gone())),
            }
        }
    }
}
