//! remotecommand (exec and attach) over SPDY/3.1, as kubelet and crictl speak it.
//!
//! After the `101 Switching Protocols` the client opens one SPDY stream per standard
//! stream, each named by its `streamType` header (`error`, `stdin`, `stdout`, `stderr`,
//! `resize`), in any order. The server replies to each, waits (bounded) until every stream
//! the token grants is open, runs the session on the backend, then half-closes stdout and
//! stderr, writes the outcome on the error stream and closes the connection.

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

use crimux_core::{StreamIo, TermSize};
use crimux_spdy::upgrade::{switching_protocols_response, RequestHead};
use crimux_spdy::{Connection, Headers, RstStatus, Stream};

use crate::http;
use crate::protocol::{self, Version, ACCEPTED_HEADER, PROTOCOL_HEADER};
use crate::server::Shared;
use crate::session::{self, Command, Lent};

/// After the error stream is written, how long the client gets to hang up first (so the
/// close does not race data it has yet to read).
const LINGER: Duration = Duration::from_secs(2);
/// Time allowed to flush a stream's last bytes at the end of a session.
const FLUSH: Duration = Duration::from_secs(30);
/// Largest SPDY frame accepted from a client.
const MAX_FRAME: usize = 1024 * 1024;
pub(crate) const STREAM_TYPE: &str = "streamtype";

/// The streams of one session, by type.
#[derive(Default)]
pub(crate) struct Streams {
    pub error: Option<Stream>,
    pub stdin: Option<Stream>,
    pub stdout: Option<Stream>,
    pub stderr: Option<Stream>,
    pub resize: Option<Stream>,
}

/// Answers the handshake: the chosen version, or `None` after a 403 (no common version).
pub(crate) async fn handshake<IO: AsyncWrite + Unpin>(
    io: &mut IO,
    head: &RequestHead,
    supported: &[&'static str],
) -> Option<Option<&'static str>> {
    let offers = protocol::offers(head.header_all(PROTOCOL_HEADER));
    let chosen = if offers.is_empty() {
        // No negotiation: the oldest protocol, as kubelet does.
        None
    } else {
        let Some(p) = protocol::negotiate(&offers, supported) else {
            let accepted: Vec<(&str, &str)> =
                supported.iter().map(|p| (ACCEPTED_HEADER, *p)).collect();
            let msg = format!(
                "unable to upgrade: unable to negotiate protocol: client supports {offers:?}, \
                 server accepts {supported:?}"
            );
            http::respond(io, 403, "Forbidden", &accepted, &msg).await;
            return None;
        };
        Some(p)
    };
    if let Err(e) = io.write_all(&switching_protocols_response(chosen)).await {
        tracing::debug!(error = %e, "streaming: cannot answer the upgrade");
        return None;
    }
    Some(chosen)
}

pub(crate) fn spdy_config(shared: &Shared) -> crimux_spdy::Config {
    crimux_spdy::Config {
        idle_timeout: Some(shared.options.idle_timeout),
        // kubelet's peers send DATA in chunks of at most 32 KiB; 16 MiB frames would let
        // one connection pin that much memory.
        max_frame_len: MAX_FRAME,
        ..crimux_spdy::Config::default()
    }
}

pub(crate) async fn serve<IO>(shared: &Shared, mut io: IO, head: &RequestHead, cmd: Command)
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let Some(chosen) = handshake(&mut io, head, protocol::SPDY_REMOTECOMMAND).await else {
        return;
    };
    let version = Version::from_name(chosen.unwrap_or_default()).unwrap_or(Version::V1);
    let conn = match Connection::new(io, spdy_config(shared)) {
        Ok(conn) => conn,
        Err(e) => {
            tracing::warn!(error = %e, "streaming: cannot start a SPDY session");
            return;
        }
    };
    let want_resize = cmd.streams.tty && version.supports_resize();
    let wait = wait_for_streams(&conn, cmd.streams, want_resize);
    let streams = match tokio::time::timeout(shared.options.stream_creation_timeout, wait).await {
        Ok(Ok(streams)) => streams,
        Ok(Err(reason)) => {
            tracing::debug!(session = %cmd, %reason, "streaming: session not started");
            conn.close().await;
            return;
        }
        Err(_) => {
            tracing::warn!(session = %cmd, "streaming: timed out waiting for the client's streams");
            conn.close().await;
            return;
        }
    };
    run(shared, conn, cmd, version, streams).await;
}

/// Accepts streams until every expected one is open; refuses unexpected or repeated ones.
pub(crate) async fn wait_for_streams(
    conn: &Connection,
    want: crate::tokens::Streams,
    want_resize: bool,
) -> Result<Streams, String> {
    let mut got = Streams::default();
    loop {
        let complete = got.error.is_some()
            && (!want.stdin || got.stdin.is_some())
            && (!want.stdout || got.stdout.is_some())
            && (!want.stderr || got.stderr.is_some())
            && (!want_resize || got.resize.is_some());
        if complete {
            return Ok(got);
        }
        let Some(stream) = conn.accept().await else {
            return Err("the connection closed before the streams were open".into());
        };
        let kind = stream
            .headers()
            .get(STREAM_TYPE)
            .unwrap_or_default()
            .to_string();
        let slot = match kind.as_str() {
            "error" => &mut got.error,
            "stdin" if want.stdin => &mut got.stdin,
            "stdout" if want.stdout => &mut got.stdout,
            "stderr" if want.stderr => &mut got.stderr,
            "resize" if want_resize => &mut got.resize,
            _ => {
                tracing::debug!(stream_type = %kind, "streaming: refusing an unexpected stream");
                stream.reset(RstStatus::RefusedStream);
                continue;
            }
        };
        if slot.is_some() {
            tracing::debug!(stream_type = %kind, "streaming: refusing a repeated stream");
            stream.reset(RstStatus::RefusedStream);
            continue;
        }
        if stream.reply(Headers::new(), false).is_err() {
            continue;
        }
        *slot = Some(stream);
    }
}

async fn run(shared: &Shared, conn: Connection, cmd: Command, version: Version, mut s: Streams) {
    let (stdin, stdin_home) = split(s.stdin.take());
    let (stdout, stdout_home) = split(s.stdout.take());
    let (stderr, stderr_home) = split(s.stderr.take());
    let (resize_tx, resize_rx) = mpsc::channel(8);
    let io = StreamIo {
        stdin: stdin.map(|v| Box::pin(v) as _),
        stdout: stdout.map(|v| Box::pin(v) as _),
        stderr: stderr.map(|v| Box::pin(v) as _),
        resize: s.resize.is_some().then_some(resize_rx),
    };
    let outcome = {
        let session = cmd.run(shared.backend.as_ref(), io);
        let resize = pump_resize(s.resize.as_mut(), resize_tx);
        let extra = refuse_more_streams(&conn);
        tokio::pin!(session, resize, extra);
        let (mut resize_done, mut extra_done) = (false, false);
        loop {
            tokio::select! {
                outcome = &mut session => break Some(outcome),
                _ = conn.closed() => break None,
                _ = &mut resize, if !resize_done => resize_done = true,
                _ = &mut extra, if !extra_done => extra_done = true,
            }
        }
    };
    let Some(outcome) = outcome else {
        tracing::debug!(session = %cmd, reason = ?conn.close_reason(), "streaming: client went away");
        return;
    };
    let mut outputs: Vec<Stream> = [stdout_home, stderr_home]
        .iter()
        .filter_map(|h| h.as_ref().and_then(session::reclaim))
        .collect();
    for out in &mut outputs {
        if tokio::time::timeout(FLUSH, out.shutdown()).await.is_err() {
            tracing::debug!(session = %cmd, "streaming: output not flushed in time");
        }
    }
    if let Some(error) = s.error.as_mut() {
        let body = outcome.encode(version);
        let write = async {
            if !body.is_empty() {
                error.write_all(&body).await?;
            }
            error.shutdown().await
        };
        if let Ok(Err(e)) = tokio::time::timeout(FLUSH, write).await {
            tracing::debug!(session = %cmd, error = %e, "streaming: cannot write the status");
        }
    }
    let _ = tokio::time::timeout(LINGER, conn.closed()).await;
    conn.close().await;
    // Streams (including a stdin the backend returned) drop only now: after the close,
    // dropping them sends nothing.
    drop((outputs, s, stdin_home));
}

type Home = std::sync::Arc<std::sync::Mutex<Option<Stream>>>;

fn split(stream: Option<Stream>) -> (Option<Lent<Stream>>, Option<Home>) {
    match stream {
        Some(s) => {
            let (lent, home) = Lent::new(s);
            (Some(lent), Some(home))
        }
        None => (None, None),
    }
}

/// Reads terminal sizes until the stream ends; keeps draining after a bad message or a
/// backend that stopped listening, so the session never stalls on unread resize bytes.
pub(crate) async fn pump_resize<R: AsyncRead + Unpin>(
    stream: Option<&mut R>,
    tx: mpsc::Sender<TermSize>,
) {
    let Some(stream) = stream else {
        return std::future::pending().await;
    };
    let mut decoder = Some(protocol::ResizeDecoder::default());
    let mut buf = [0u8; 1024];
    loop {
        let n = match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let Some(d) = decoder.as_mut() else { continue };
        match d.push(&buf[..n]) {
            Ok(sizes) => {
                for size in sizes {
                    if tx.send(size).await.is_err() {
                        decoder = None;
                        break;
                    }
                }
            }
            Err(reason) => {
                tracing::debug!(%reason, "streaming: ignoring further resize messages");
                decoder = None;
            }
        }
    }
}

/// Refuses streams opened after the session started (none are expected).
pub(crate) async fn refuse_more_streams(conn: &Connection) {
    while let Some(stream) = conn.accept().await {
        tracing::debug!(stream_id = stream.id(), "streaming: refusing a late stream");
        stream.reset(RstStatus::RefusedStream);
    }
    std::future::pending::<()>().await
}
