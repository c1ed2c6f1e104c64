//! remotecommand (exec and attach) over WebSocket, as `crictl --transport websocket` and
//! newer kubectl speak it.
//!
//! Every message is binary and starts with its channel: 0 stdin, 1 stdout, 2 stderr,
//! 3 error, 4 resize. With `v5.channel.k8s.io` the message `[255, c]` closes channel `c`
//! (how the client says stdin ended; the server sends it when stdout or stderr end).
//! Output goes through bounded pipes and a bounded frame queue to one writer task, so a
//! slow client stops the backend's writes instead of growing buffers.

mod frame;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, DuplexStream, WriteHalf};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crimux_core::{StreamIo, TermSize};
use crimux_spdy::upgrade::RequestHead;

use crate::http::{self, Prefixed};
use crate::protocol::{self, ResizeDecoder, Version};
use crate::server::Shared;
use crate::session::Command;

pub use frame::accept_key;
use frame::{Message, Reader, OP_BINARY, OP_CLOSE, OP_PONG};

const STDIN: u8 = 0;
const STDOUT: u8 = 1;
const STDERR: u8 = 2;
const ERROR: u8 = 3;
const RESIZE: u8 = 4;
const CLOSE_SIGNAL: u8 = 255;

/// Bytes buffered in each stdin/stdout/stderr pipe.
const PIPE: usize = 64 * 1024;
/// Largest payload per output message.
const CHUNK: usize = 32 * 1024;
/// Frames queued for the socket.
const QUEUE: usize = 16;
/// Largest client message accepted.
const MAX_MESSAGE: usize = 256 * 1024;
const FLUSH: Duration = Duration::from_secs(30);
const LINGER: Duration = Duration::from_secs(2);

/// True for a WebSocket upgrade request.
pub(crate) fn is_upgrade(head: &RequestHead) -> bool {
    head.header_all("upgrade")
        .flat_map(|v| v.split(','))
        .any(|p| p.trim().eq_ignore_ascii_case("websocket"))
}

fn frame(opcode: u8, payload: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(payload.len() + 10);
    frame::encode(opcode, payload, &mut out);
    out.freeze()
}

fn channel_frame(channel: u8, data: &[u8]) -> Bytes {
    let mut payload = BytesMut::with_capacity(data.len() + 1);
    payload.put_u8(channel);
    payload.put_slice(data);
    frame(OP_BINARY, &payload)
}

/// Answers the handshake; the negotiated version, or `None` after an error answer.
async fn handshake<IO: AsyncWrite + Unpin>(io: &mut IO, head: &RequestHead) -> Option<Version> {
    let key = head.header("sec-websocket-key").unwrap_or_default();
    if head.method != "GET" || key.is_empty() || head.header("sec-websocket-version") != Some("13")
    {
        let msg = "a WebSocket upgrade needs GET, Sec-WebSocket-Key and Sec-WebSocket-Version: 13";
        http::respond(
            io,
            400,
            "Bad Request",
            &[("Sec-WebSocket-Version", "13")],
            msg,
        )
        .await;
        return None;
    }
    let offers = protocol::offers(head.header_all("sec-websocket-protocol"));
    let chosen = if offers.is_empty() {
        None
    } else {
        let Some(p) = protocol::negotiate(&offers, protocol::WEBSOCKET_REMOTECOMMAND) else {
            let msg = format!(
                "none of the subprotocols {offers:?} is supported; use one of {:?}",
                protocol::WEBSOCKET_REMOTECOMMAND
            );
            http::respond(io, 400, "Bad Request", &[], &msg).await;
            return None;
        };
        Some(p)
    };
    let mut answer = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {}\r\n",
        accept_key(key)
    );
    if let Some(p) = chosen {
        answer.push_str(&format!("Sec-WebSocket-Protocol: {p}\r\n"));
    }
    answer.push_str("\r\n");
    if io.write_all(answer.as_bytes()).await.is_err() {
        return None;
    }
    Version::from_name(chosen.unwrap_or_default())
}

/// When the connection last carried a frame either way.
#[derive(Clone)]
struct Activity(Arc<Mutex<Instant>>);

impl Activity {
    fn touch(&self) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
    }
    fn last(&self) -> Instant {
        *self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
    async fn idle(&self, limit: Duration) {
        loop {
            let deadline = self.last() + limit;
            if deadline <= Instant::now() {
                return;
            }
            tokio::time::sleep_until(deadline.into()).await;
        }
    }
}

pub(crate) async fn serve<IO>(
    shared: &Shared,
    mut io: Prefixed<IO>,
    head: &RequestHead,
    cmd: Command,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let Some(version) = handshake(&mut io, head).await else {
        return;
    };
    let activity = Activity(Arc::new(Mutex::new(Instant::now())));
    let (rd, wr) = tokio::io::split(io);
    let mut reader = Reader::new(rd, BytesMut::new(), MAX_MESSAGE);
    let (out, out_rx) = mpsc::channel::<Bytes>(QUEUE);
    let mut writer = JoinSet::new();
    writer.spawn(write_loop(wr, out_rx, activity.clone()));
    let mut pumps = JoinSet::new();
    let want = cmd.streams;
    let close_signals = version >= Version::V5;
    let stdout = want
        .stdout
        .then(|| output(&mut pumps, STDOUT, out.clone(), close_signals));
    let stderr = want
        .stderr
        .then(|| output(&mut pumps, STDERR, out.clone(), close_signals));
    let (stdin_backend, stdin) = match want.stdin {
        true => {
            let (a, b) = tokio::io::duplex(PIPE);
            (Some(a), Some(b))
        }
        false => (None, None),
    };
    let (resize_tx, resize_rx) = mpsc::channel(8);
    // Tell the client the session is up: an empty message on the first writable channel.
    let first = if want.stdout {
        STDOUT
    } else if want.stderr {
        STDERR
    } else {
        ERROR
    };
    if out.send(channel_frame(first, &[])).await.is_err() {
        return;
    }
    let io = StreamIo {
        stdin: stdin_backend.map(|s| Box::pin(s) as _),
        stdout: stdout.map(|s| Box::pin(s) as _),
        stderr: stderr.map(|s| Box::pin(s) as _),
        resize: want.tty.then_some(resize_rx),
    };
    let mut close_code = 1000u16;
    let outcome = {
        let session = cmd.run(shared.backend.as_ref(), io);
        let read = read_loop(
            &mut reader,
            stdin,
            resize_tx,
            out.clone(),
            close_signals,
            activity.clone(),
        );
        let idle = activity.idle(shared.options.idle_timeout);
        tokio::pin!(session, read, idle);
        tokio::select! {
            outcome = &mut session => Some(outcome),
            ended = &mut read => {
                let (code, why) = match ended {
                    Ok(why) => (1000u16, why),
                    Err(why) => (1002, why),
                };
                tracing::debug!(session = %cmd, reason = %why, "streaming: WebSocket client went away");
                close_code = code;
                None
            }
            _ = &mut idle => {
                tracing::info!(session = %cmd, "streaming: idle timeout");
                close_code = 1001;
                None
            }
        }
    };
    let Some(outcome) = outcome else {
        // Answer with a close frame (1002 after a protocol error) and go.
        pumps.shutdown().await;
        let _ = out.try_send(frame(OP_CLOSE, &close_code.to_be_bytes()));
        drop(out);
        let _ = tokio::time::timeout(LINGER, writer.join_next()).await;
        return;
    };
    // The backend dropped its pipe ends: the pumps forward what is left, then end.
    let _ = tokio::time::timeout(FLUSH, async { while pumps.join_next().await.is_some() {} }).await;
    let body = outcome.encode(version);
    if !body.is_empty() {
        let _ = out.send(channel_frame(ERROR, &body)).await;
    }
    let _ = out.send(frame(OP_CLOSE, &1000u16.to_be_bytes())).await;
    drop(out);
    let _ = tokio::time::timeout(FLUSH, writer.join_next()).await;
    // Give the client a moment to answer the close before the socket goes.
    let _ = tokio::time::timeout(LINGER, async {
        while let Ok(Some(m)) = reader.next().await {
            if m == Message::Close {
                break;
            }
        }
    })
    .await;
}

/// A pipe whose far end the backend writes; a pump turns what arrives into messages.
fn output(
    pumps: &mut JoinSet<()>,
    channel: u8,
    out: mpsc::Sender<Bytes>,
    close_signal: bool,
) -> DuplexStream {
    let (backend_end, mut ours) = tokio::io::duplex(PIPE);
    pumps.spawn(async move {
        let mut buf = vec![0u8; CHUNK];
        loop {
            let n = match ours.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            if out.send(channel_frame(channel, &buf[..n])).await.is_err() {
                return;
            }
        }
        if close_signal {
            let _ = out.send(channel_frame(CLOSE_SIGNAL, &[channel])).await;
        }
    });
    backend_end
}

async fn write_loop<IO: AsyncWrite>(
    mut wr: WriteHalf<IO>,
    mut frames: mpsc::Receiver<Bytes>,
    activity: Activity,
) {
    while let Some(f) = frames.recv().await {
        if let Err(e) = wr.write_all(&f).await {
            tracing::debug!(error = %e, "streaming: WebSocket write failed");
            return;
        }
        activity.touch();
    }
    let _ = wr.flush().await;
    let _ = wr.shutdown().await;
}

/// Routes client messages until the client goes away; returns why it ended (an error for
/// a protocol violation).
async fn read_loop<R: AsyncRead + Unpin>(
    reader: &mut Reader<R>,
    mut stdin: Option<DuplexStream>,
    resize: mpsc::Sender<TermSize>,
    out: mpsc::Sender<Bytes>,
    close_signals: bool,
    activity: Activity,
) -> Result<String, String> {
    let mut decoder = Some(ResizeDecoder::default());
    loop {
        let message = match reader.next().await {
            Ok(Some(m)) => m,
            Ok(None) => return Ok("connection closed".into()),
            Err(e) => return Err(format!("protocol error: {e}")),
        };
        activity.touch();
        let data = match message {
            Message::Binary(data) => data,
            Message::Ping(p) => {
                let _ = out.send(frame(OP_PONG, &p)).await;
                continue;
            }
            Message::Pong | Message::Text(_) => continue,
            Message::Close => return Ok("client sent close".into()),
        };
        let Some((&channel, data)) = data.split_first() else {
            continue;
        };
        match channel {
            STDIN => {
                if let Some(s) = stdin.as_mut() {
                    if s.write_all(data).await.is_err() {
                        // The backend stopped reading stdin: drop further input.
                        stdin = None;
                    }
                }
            }
            RESIZE => {
                let sizes = decoder.as_mut().map(|d| d.push(data));
                match sizes {
                    Some(Ok(sizes)) => {
                        for size in sizes {
                            let _ = resize.send(size).await;
                        }
                    }
                    Some(Err(reason)) => {
                        tracing::debug!(%reason, "streaming: ignoring further resize messages");
                        decoder = None;
                    }
                    None => {}
                }
            }
            CLOSE_SIGNAL if close_signals && data.first() == Some(&STDIN) => {
                if let Some(mut s) = stdin.take() {
                    let _ = s.shutdown().await;
                }
            }
            _ => {}
        }
    }
}
