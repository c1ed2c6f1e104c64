//! The byte pumps of a session: the client's stdin into a pipe, a pipe to the client's
//! stdout or stderr, and terminal resizes to containerd. Every pump holds one fixed-size
//! buffer and writes it out before reading again, so a slow side slows the other down
//! instead of making crimux buffer without bound.

use std::convert::Infallible;
use std::future::Future;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use containerd_client::services::v1::{CloseIoRequest, ResizePtyRequest};
use crimux_core::streaming::{ByteReader, ByteWriter, TermSize};
use crimux_core::{Error, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

use crate::client::{is_not_found, Daemon};
use crate::platform::fifo;

/// The one buffer each pump reads into.
pub(super) const CHUNK: usize = 32 << 10;

/// How the client's stdin ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum InputEnd {
    /// The client closed it: the process should see end-of-file.
    Eof,
    /// Reading the client or writing the pipe failed.
    Failed,
}

/// Copies the client's stdin into `to` until the client closes it. `to` is dropped on
/// return, closing crimux's end of the pipe.
pub(super) async fn client_to_pipe(mut from: ByteReader, mut to: fifo::Writer) -> InputEnd {
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) => return InputEnd::Eof,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                tracing::debug!(error = %e, "reading the client's stdin");
                return InputEnd::Failed;
            }
        };
        if let Err(e) = to.write_all(&buf[..n]).await {
            tracing::debug!(error = %e, "writing stdin to the process");
            return InputEnd::Failed;
        }
    }
}

/// Where one output stream goes: the client's writer, or nowhere once it failed or was
/// never requested (the process must never block on a pipe nobody reads).
pub(super) struct Sink {
    writer: Option<ByteWriter>,
    what: &'static str,
}

impl Sink {
    pub(super) fn new(writer: Option<ByteWriter>, what: &'static str) -> Sink {
        Sink { writer, what }
    }

    /// Whether output still reaches a client.
    pub(super) fn open(&self) -> bool {
        self.writer.is_some()
    }

    /// Delivers `data` (waiting while the client is slow); a failed client is dropped and
    /// later data discarded. Returns whether the client still takes output.
    pub(super) async fn send(&mut self, data: &[u8]) -> bool {
        let Some(w) = self.writer.as_mut() else {
            return false;
        };
        let sent = async {
            w.write_all(data).await?;
            w.flush().await
        };
        if let Err(e) = sent.await {
            tracing::debug!(stream = self.what, error = %e, "client output closed; discarding");
            self.writer = None;
        }
        self.writer.is_some()
    }
}

/// How far the output pumps of one session got: bytes delivered, and sends under way (a
/// slow client is still progress).
#[derive(Debug, Default)]
pub(super) struct Progress {
    bytes: AtomicU64,
    sending: AtomicUsize,
}

impl Progress {
    /// A mark that changes whenever output moved; `None` while a send is under way.
    pub(super) fn mark(&self) -> Option<u64> {
        (self.sending.load(Ordering::Acquire) == 0).then(|| self.bytes.load(Ordering::Acquire))
    }
}

/// Copies a pipe to the client until every writer of the pipe closed it, noting progress.
pub(super) async fn pipe_to_client(mut from: fifo::Reader, mut to: Sink, progress: &Progress) {
    let mut buf = vec![0u8; CHUNK];
    loop {
        match from.read(&mut buf).await {
            Ok(0) => return,
            Ok(n) => {
                progress.sending.fetch_add(1, Ordering::AcqRel);
                to.send(&buf[..n]).await;
                progress.bytes.fetch_add(n as u64, Ordering::AcqRel);
                progress.sending.fetch_sub(1, Ordering::AcqRel);
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => {
                tracing::warn!(stream = to.what, error = %e, "reading process output");
                return;
            }
        }
    }
}

/// Applies every terminal size the client sends to process `exec_id` (`""`: the
/// container's main process) until the client stops sending.
pub(super) async fn resize_loop(
    daemon: &Daemon,
    container_id: &str,
    exec_id: &str,
    mut sizes: mpsc::Receiver<TermSize>,
) {
    while let Some(size) = sizes.recv().await {
        if size.width == 0 || size.height == 0 {
            continue;
        }
        let request = ResizePtyRequest {
            container_id: container_id.to_string(),
            exec_id: exec_id.to_string(),
            width: u32::from(size.width),
            height: u32::from(size.height),
        };
        if let Err(s) = daemon
            .tasks()
            .resize_pty(daemon.request(request, None))
            .await
        {
            tracing::debug!(container = container_id, exec_id, error = %s, "resizing the terminal");
        }
    }
}

/// Closes the stdin of process `exec_id` (`""`: the main process) in the shim, which keeps
/// its own end of the stdin pipe open until told: after this, the process reads
/// end-of-file once crimux's ends are closed too.
pub(super) async fn close_stdin(daemon: &Daemon, container_id: &str, exec_id: &str) -> Result<()> {
    let request = CloseIoRequest {
        container_id: container_id.to_string(),
        exec_id: exec_id.to_string(),
        stdin: true,
    };
    match daemon.tasks().close_io(daemon.request(request, None)).await {
        Ok(_) => Ok(()),
        Err(s) if is_not_found(&s) => Ok(()),
        Err(s) => Err(Error::backend(
            format!("closing stdin of {container_id} {exec_id}"),
            s,
        )),
    }
}

/// Runs `f`, then never finishes: a side job (stdin, resizes) that must not end the
/// session it runs in.
pub(super) async fn then_idle(f: impl Future<Output = ()>) -> Infallible {
    f.await;
    std::future::pending().await
}

/// The first size already queued by the client, if any (to create the terminal with).
pub(super) fn queued_size(sizes: &mut Option<mpsc::Receiver<TermSize>>) -> Option<TermSize> {
    let rx = sizes.as_mut()?;
    let mut last = None;
    while let Ok(size) = rx.try_recv() {
        last = Some(size);
    }
    last.filter(|s| s.width != 0 && s.height != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_sink_that_fails_discards_from_then_on() {
        let (w, r) = tokio::io::duplex(4);
        let mut sink = Sink::new(Some(Box::pin(w)), "stdout");
        drop(r);
        assert!(!sink.send(b"lost").await);
        assert!(!sink.open());
        assert!(!sink.send(b"more").await);
        let mut none = Sink::new(None, "stderr");
        assert!(!none.send(b"x").await);
    }

    #[tokio::test]
    async fn a_slow_client_holds_the_pump_back() {
        let (w, mut r) = tokio::io::duplex(8);
        let mut sink = Sink::new(Some(Box::pin(w)), "stdout");
        let send = sink.send(&[7u8; 64]);
        tokio::pin!(send);
        // The client has room for 8 bytes: the send waits until it reads.
        let early = tokio::time::timeout(std::time::Duration::from_millis(100), &mut send).await;
        assert!(early.is_err(), "the send did not wait for the client");
        let mut got = Vec::new();
        let reader = async {
            let mut buf = [0u8; 64];
            while got.len() < 64 {
                let n = r.read(&mut buf).await.expect("read");
                got.extend_from_slice(&buf[..n]);
            }
        };
        let (sent, ()) = tokio::join!(send, reader);
        assert!(sent);
        assert_eq!(got, vec![7u8; 64]);
    }

    #[tokio::test]
    async fn the_latest_queued_size_is_used() {
        let (tx, rx) = mpsc::channel(4);
        let mut sizes = Some(rx);
        assert_eq!(queued_size(&mut sizes), None);
        tx.send(TermSize {
            width: 1,
            height: 2,
        })
        .await
        .expect("send");
        tx.send(TermSize {
            width: 80,
            height: 24,
        })
        .await
        .expect("send");
        assert_eq!(
            queued_size(&mut sizes),
            Some(TermSize {
                width: 80,
                height: 24
            })
        );
        assert_eq!(queued_size(&mut None), None);
    }
}
