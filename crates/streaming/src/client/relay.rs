//! Relaying a session to another streaming server: the half of a `kind = "cri"` backend
//! that carries exec, attach and port-forward to the crimux that runs the pod.
//!
//! The outer crimux terminates the client's SPDY/WebSocket session itself and hands the
//! backend a [`StreamIo`]; the backend asks the inner crimux for a URL (its Exec, Attach or
//! PortForward RPC) and these functions connect that URL as a client and pump bytes both
//! ways with bounded buffers, so a slow reader on either side back-pressures the process.
//! Dropping the returned future closes the inner session (the inner server then kills its
//! exec process).
//!
//! Every pump holds one fixed buffer (or one received DATA frame) and delivers it before
//! reading more; the client connection stalls its socket reader once a stream has 16
//! frames unread, so a slow `io` writer stalls the inner server's writes, and through them
//! the process. Nothing here is spawned: all pumps live in the returned future.

use std::convert::Infallible;
use std::future::Future;

use crimux_core::streaming::{ByteReader, ByteWriter};
use crimux_core::{DuplexStream, Error, Result, StreamIo, TermSize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

use super::portforward::port_forward;
use super::relay_forward::Relayed;
use super::remotecommand::{self, ExecOptions};
use super::session::{resize_message, Session, Sink};
use super::spdy::{self, Incoming};
use super::Protocol;

/// The stdin buffer (the largest DATA frame the client sends).
const CHUNK: usize = 32 * 1024;

/// Runs the exec session at `url` (an exec URL from another crimux's Exec RPC, made with
/// the same tty/stdin/stdout/stderr as `io`), pumping `io` through it. Returns the exit
/// code once the process exited and its output was delivered.
pub async fn relay_exec(url: &str, tty: bool, io: StreamIo) -> Result<i32> {
    let session = remotecommand::exec(url, options(tty, &io)).await?;
    tracing::debug!(tty, streams = ?io, "relay: exec session connected");
    relay(session, io).await
}

/// Attaches through the attach URL `url` and pumps `io` until the process exits or the
/// client closes its streams.
pub async fn relay_attach(url: &str, tty: bool, io: StreamIo) -> Result<()> {
    let session = remotecommand::attach(url, options(tty, &io)).await?;
    tracing::debug!(tty, streams = ?io, "relay: attach session connected");
    // The inner server reports an attach that ended as success; only failures matter.
    relay(session, io).await.map(|_| ())
}

/// Opens one forwarded connection to `port` through the port-forward URL `url`. A
/// connection refused inside the pod surfaces as an error from the first read (or
/// earlier), carrying the inner server's message.
pub async fn relay_port_forward(url: &str, port: u16) -> Result<DuplexStream> {
    let session = port_forward(url, spdy::Config::default()).await?;
    let (io, request_id, error) = session.open_raw(port).await?;
    tracing::debug!(port, request_id, "relay: port-forward connection opened");
    Ok(Box::pin(Relayed::new(io, error, session)))
}

/// The streams to open: exactly those `io` has (the inner URL was minted for them), over
/// v4 only, the version that carries exit codes and resizes.
fn options(tty: bool, io: &StreamIo) -> ExecOptions {
    ExecOptions {
        stdin: io.stdin.is_some(),
        stdout: io.stdout.is_some(),
        stderr: io.stderr.is_some() && !tty,
        tty,
        protocols: vec![Protocol::V4],
        spdy: spdy::Config::default(),
    }
}

/// Pumps `io` through `session` until the inner process exited and its output reached
/// `io`; the exit code from the inner status.
async fn relay(mut session: Session, io: StreamIo) -> Result<i32> {
    let StreamIo {
        stdin,
        stdout,
        stderr,
        resize,
    } = io;
    let input = then_idle(input(stdin, session.take_stdin()));
    let sizes = then_idle(resizes(resize, session.take_resize()));
    let out = output(session.take_stdout(), stdout, "stdout");
    let err = output(session.take_stderr(), stderr, "stderr");
    let finish = async move {
        let (out, err) = tokio::join!(out, err);
        out?;
        err?;
        session.wait().await
    };
    tokio::select! {
        done = finish => done,
        never = input => match never {},
        never = sizes => match never {},
    }
}

/// Copies the client's stdin to the inner stdin; at end-of-file (or a failed read) closes
/// the inner stdin, so the process reads end-of-file.
async fn input(from: Option<ByteReader>, to: Option<Sink>) {
    let Some(mut to) = to else { return };
    if let Some(mut from) = from {
        let mut buf = vec![0u8; CHUNK];
        loop {
            let n = match from.read(&mut buf).await {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    tracing::debug!(error = %e, "relay: reading the client's stdin");
                    break;
                }
            };
            if let Err(e) = to.write(&buf[..n]).await {
                // The inner session is gone; the output side reports why.
                tracing::debug!(error = %e, "relay: writing the inner stdin");
                return;
            }
        }
    }
    if let Err(e) = to.close().await {
        tracing::debug!(error = %e, "relay: closing the inner stdin");
    }
}

/// Forwards terminal sizes as they come; closes the inner resize stream when the client's
/// resizes end.
async fn resizes(from: Option<mpsc::Receiver<TermSize>>, to: Option<Sink>) {
    let (Some(mut from), Some(mut to)) = (from, to) else {
        return;
    };
    while let Some(size) = from.recv().await {
        if let Err(e) = to.write(&resize_message(size.width, size.height)).await {
            tracing::debug!(error = %e, "relay: sending a resize");
            return;
        }
    }
    let _ = to.close().await;
}

/// Copies one inner output stream to the client's writer, chunk by chunk, until the inner
/// stream ends. A client writer that fails is dropped and later output discarded (the
/// process must never block on output nobody reads); the writer is dropped at the end, so
/// the outer server can close its stream. An inner stream that fails is an error.
async fn output(from: Option<Incoming>, to: Option<ByteWriter>, what: &'static str) -> Result<()> {
    let Some(mut from) = from else { return Ok(()) };
    let mut to = to;
    loop {
        let chunk = match from.recv().await {
            Ok(Some(chunk)) => chunk,
            Ok(None) => return Ok(()),
            Err(e) => {
                return Err(Error::Unavailable(format!(
                    "relay: the inner session's {what} failed: {e}"
                )))
            }
        };
        let Some(w) = to.as_mut() else { continue };
        let sent = async {
            w.write_all(&chunk).await?;
            w.flush().await
        };
        if let Err(e) = sent.await {
            tracing::debug!(stream = what, error = %e, "relay: client output closed; discarding");
            to = None;
        }
    }
}

/// Runs `f`, then never finishes: a side pump that must not end the session it runs in.
async fn then_idle(f: impl Future<Output = ()>) -> Infallible {
    f.await;
    std::future::pending().await
}
