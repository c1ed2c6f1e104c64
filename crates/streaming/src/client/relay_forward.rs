//! One relayed port-forward connection as a byte stream: the data of a forwarded
//! connection, with what the inner server reports on the request's error stream turned
//! into an `io::Error` for the reader.
//!
//! A crimux streaming server writes a failure (connection refused in the pod, a pod-side
//! read or write error) on the error stream *before* it ends the data stream, over one
//! ordered connection: so once the data reached end-of-file, any failure text is already
//! in the error stream's buffer. A read therefore delivers data first, and at end-of-file
//! (or while waiting for data) reports a failure if one arrived. The stream owns the
//! port-forward connection: dropping it closes the inner session.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, DuplexStream, ReadBuf};

use super::portforward::PortForward;
use super::spdy::Incoming;

/// Failure text kept from the error stream at most (the rest is dropped).
const MAX_ERROR: usize = 4 * 1024;

/// What the request's error stream said so far.
enum Report {
    /// Still open; the bytes received.
    Open(Vec<u8>),
    /// Ended without a word.
    Clean,
    /// A failure: the server's text, or why the error stream broke.
    Failed(String),
}

/// A relayed forwarded connection (see the module doc).
pub(crate) struct Relayed {
    io: DuplexStream,
    error: Incoming,
    report: Report,
    _session: PortForward,
}

impl Relayed {
    pub(crate) fn new(io: DuplexStream, error: Incoming, session: PortForward) -> Self {
        Relayed {
            io,
            error,
            report: Report::Open(Vec::new()),
            _session: session,
        }
    }

    /// Takes in what the error stream has ready (registering for more); the failure, if
    /// one is known.
    fn poll_report(&mut self, cx: &mut Context<'_>) -> Option<String> {
        while let Report::Open(text) = &mut self.report {
            match self.error.poll_recv(cx) {
                Poll::Pending => break,
                Poll::Ready(Some(Ok(chunk))) => {
                    let room = MAX_ERROR.saturating_sub(text.len());
                    text.extend_from_slice(&chunk[..chunk.len().min(room)]);
                }
                Poll::Ready(Some(Err(e))) => {
                    self.report = Report::Failed(format!("port-forward error stream: {e}"));
                }
                Poll::Ready(None) if text.is_empty() => self.report = Report::Clean,
                Poll::Ready(None) => {
                    self.report = Report::Failed(String::from_utf8_lossy(text).into_owned());
                }
            }
        }
        self.failure()
    }

    /// The failure known so far, without polling.
    fn failure(&self) -> Option<String> {
        match &self.report {
            Report::Failed(text) => Some(text.clone()),
            Report::Open(text) if !text.is_empty() => Some(String::from_utf8_lossy(text).into()),
            Report::Open(_) | Report::Clean => None,
        }
    }
}

fn failed(text: String) -> io::Error {
    io::Error::other(text)
}

impl AsyncRead for Relayed {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        let eof = match Pin::new(&mut this.io).poll_read(cx, buf) {
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            Poll::Ready(Ok(())) if buf.filled().len() > before => return Poll::Ready(Ok(())),
            Poll::Ready(Ok(())) => true,
            Poll::Pending => false,
        };
        if let Some(text) = this.poll_report(cx) {
            return Poll::Ready(Err(failed(text)));
        }
        match eof {
            true => Poll::Ready(Ok(())),
            false => Poll::Pending,
        }
    }
}

impl AsyncWrite for Relayed {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        // Only what is known: polling the error stream here would steal the reader's
        // wake-up when reads and writes run in different tasks.
        if let Some(text) = this.failure() {
            return Poll::Ready(Err(failed(text)));
        }
        Pin::new(&mut this.io).poll_write(cx, data)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    /// Half-closes towards the pod (FIN on the data stream).
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}
