//! The client end of a SPDY/3.1 connection, as small as kubelet's and crictl's peer
//! (moby/spdystream) needs it: client streams (odd ids) opened one at a time, each waiting
//! for its SYN_REPLY; DATA in both directions with FIN for half-close; PING answered;
//! GOAWAY on close. Like spdystream it sends no WINDOW_UPDATE unless asked to
//! ([`Config::window_updates`]), so tests see what a real kubelet does to the server.
//!
//! One reader task routes incoming frames to per-stream channels (a full channel stalls
//! the reader, so a slow consumer back-pressures through TCP, as with spdystream); one
//! writer task owns the header compressor and writes frames in the order they were queued.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use crimux_core::Error;
use crimux_spdy::{Frame, FrameDecoder, FrameEncoder, GoAwayStatus, Headers, Limits, RstStatus};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

/// How long a new stream waits for the server's SYN_REPLY (client-go's value).
const REPLY_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest DATA payload this client sends.
const MAX_DATA: usize = 32 * 1024;
/// Incoming DATA frames buffered per stream before the reader stalls.
const STREAM_BUFFER: usize = 16;

/// Client behaviour knobs.
#[derive(Clone, Copy, Debug, Default)]
pub struct Config {
    /// Send WINDOW_UPDATE (stream and session) for every DATA frame consumed. spdystream,
    /// hence kubelet and crictl, never does; a server must not depend on it.
    pub window_updates: bool,
}

/// What the writer task is asked to do.
enum Out {
    Frame(Frame),
    /// Send GOAWAY, flush and shut the write side down.
    Close,
}

/// One stream's routing entry in the reader.
struct Slot {
    reply: Option<oneshot::Sender<Result<Headers, Error>>>,
    data: Option<mpsc::Sender<Result<Bytes, Error>>>,
}

struct Shared {
    streams: Mutex<HashMap<u32, Slot>>,
    config: Config,
}

/// A client SPDY connection. Dropping it aborts both tasks (the TCP connection closes at
/// once, as when a client dies); [`Connection::close`] ends it politely.
pub struct Connection {
    out: mpsc::Sender<Out>,
    shared: Arc<Shared>,
    /// Next stream id; held across sending SYN_STREAM so ids go out increasing.
    next_id: tokio::sync::Mutex<u32>,
    reader: JoinHandle<()>,
    writer: JoinHandle<()>,
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.reader.abort();
        self.writer.abort();
    }
}

impl Connection {
    /// Starts the connection on an upgraded socket; `leftover` is what followed the HTTP
    /// response head.
    pub fn start(io: TcpStream, leftover: BytesMut, config: Config) -> Result<Self, Error> {
        let encoder = FrameEncoder::new()
            .map_err(|e| Error::Internal(format!("SPDY header compressor: {e}")))?;
        let (read, write) = io.into_split();
        let (out, rx) = mpsc::channel(64);
        let shared = Arc::new(Shared {
            streams: Mutex::new(HashMap::new()),
            config,
        });
        let reader = tokio::spawn(read_loop(read, leftover, shared.clone(), out.clone()));
        let writer = tokio::spawn(write_loop(write, encoder, rx));
        Ok(Connection {
            out,
            shared,
            next_id: tokio::sync::Mutex::new(1),
            reader,
            writer,
        })
    }

    /// Opens a stream with `headers` and waits for the server's SYN_REPLY.
    pub async fn open(&self, headers: Headers) -> Result<Stream, Error> {
        let (reply_tx, reply_rx) = oneshot::channel();
        let (data_tx, data_rx) = mpsc::channel(STREAM_BUFFER);
        let id = {
            let mut next = self.next_id.lock().await;
            let id = *next;
            if id > crimux_spdy::frame::MAX_STREAM_ID {
                return Err(Error::Unavailable("SPDY stream ids exhausted".into()));
            }
            *next += 2;
            lock(&self.shared.streams).insert(
                id,
                Slot {
                    reply: Some(reply_tx),
                    data: Some(data_tx),
                },
            );
            let syn = Frame::SynStream {
                stream_id: id,
                associated_to: 0,
                priority: 0,
                slot: 0,
                fin: false,
                unidirectional: false,
                headers,
            };
            send(&self.out, Out::Frame(syn)).await?;
            id
        };
        let reply = tokio::time::timeout(REPLY_TIMEOUT, reply_rx)
            .await
            .map_err(|_| Error::DeadlineExceeded(format!("no SYN_REPLY for stream {id}")))?
            .map_err(|_| closed())??;
        let ack = self.shared.config.window_updates.then(|| self.out.clone());
        Ok(Stream {
            writer: Writer {
                id,
                out: self.out.clone(),
                closed: false,
            },
            incoming: Incoming {
                id,
                rx: data_rx,
                ack,
            },
            reply,
        })
    }

    /// Sends GOAWAY and closes the write side once queued frames are out; the server then
    /// closes the connection.
    pub async fn close(&self) {
        let _ = self.out.send(Out::Close).await;
    }
}

/// One client-opened stream: its writing half, its incoming data and the reply headers.
pub struct Stream {
    pub writer: Writer,
    pub incoming: Incoming,
    pub reply: Headers,
}

/// Sends DATA on one stream.
pub struct Writer {
    id: u32,
    out: mpsc::Sender<Out>,
    closed: bool,
}

impl Writer {
    pub fn id(&self) -> u32 {
        self.id
    }

    /// Sends `data` in DATA frames of at most 32 KiB.
    pub async fn write(&mut self, data: &[u8]) -> Result<(), Error> {
        if self.closed {
            return Err(Error::FailedPrecondition(format!(
                "stream {} is closed for writing",
                self.id
            )));
        }
        for chunk in data.chunks(MAX_DATA) {
            self.data(Bytes::copy_from_slice(chunk), false).await?;
        }
        Ok(())
    }

    /// Half-closes the stream: an empty DATA frame with FIN (what spdystream's Close sends).
    pub async fn close(&mut self) -> Result<(), Error> {
        if self.closed {
            return Ok(());
        }
        self.closed = true;
        self.data(Bytes::new(), true).await
    }

    /// Resets the stream (CANCEL).
    pub async fn reset(&mut self) -> Result<(), Error> {
        self.closed = true;
        let rst = Frame::RstStream {
            stream_id: self.id,
            status: RstStatus::Cancel,
        };
        send(&self.out, Out::Frame(rst)).await
    }

    async fn data(&self, data: Bytes, fin: bool) -> Result<(), Error> {
        let frame = Frame::Data {
            stream_id: self.id,
            fin,
            data,
        };
        send(&self.out, Out::Frame(frame)).await
    }
}

/// The data a stream receives, in order; `None` after the server's FIN.
pub struct Incoming {
    id: u32,
    rx: mpsc::Receiver<Result<Bytes, Error>>,
    /// Where WINDOW_UPDATEs go, when the client sends them.
    ack: Option<mpsc::Sender<Out>>,
}

impl Incoming {
    /// An incoming side fed by something other than a SPDY stream (the WebSocket client).
    pub(crate) fn from_channel(rx: mpsc::Receiver<Result<Bytes, Error>>) -> Self {
        Incoming {
            id: 0,
            rx,
            ack: None,
        }
    }

    /// The next chunk; `Ok(None)` at end of stream; an error if the stream was reset or the
    /// connection failed.
    pub async fn recv(&mut self) -> Result<Option<Bytes>, Error> {
        match self.rx.recv().await {
            None => Ok(None),
            Some(Err(e)) => Err(e),
            Some(Ok(data)) => {
                if let (Some(out), Ok(delta)) = (&self.ack, u32::try_from(data.len())) {
                    if delta > 0 {
                        for stream_id in [self.id, 0] {
                            let update = Frame::WindowUpdate { stream_id, delta };
                            // A failed update means the connection is gone; recv reports it.
                            let _ = out.send(Out::Frame(update)).await;
                        }
                    }
                }
                Ok(Some(data))
            }
        }
    }

    /// Polls for the next chunk, for a reader inside a `poll_*` function. Sends no
    /// WINDOW_UPDATE: only for connections without [`Config::window_updates`].
    pub(crate) fn poll_recv(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Bytes, Error>>> {
        self.rx.poll_recv(cx)
    }

    /// Everything until end of stream.
    pub async fn read_to_end(&mut self) -> Result<Vec<u8>, Error> {
        let mut all = Vec::new();
        while let Some(chunk) = self.recv().await? {
            all.extend_from_slice(&chunk);
        }
        Ok(all)
    }
}

fn closed() -> Error {
    Error::Unavailable("SPDY connection closed".into())
}

async fn send(out: &mpsc::Sender<Out>, what: Out) -> Result<(), Error> {
    out.send(what).await.map_err(|_| closed())
}

fn lock(m: &Mutex<HashMap<u32, Slot>>) -> std::sync::MutexGuard<'_, HashMap<u32, Slot>> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

async fn write_loop(
    mut io: OwnedWriteHalf,
    mut encoder: FrameEncoder,
    mut rx: mpsc::Receiver<Out>,
) {
    let mut buf = BytesMut::with_capacity(64 * 1024);
    let mut last_id = 0;
    while let Some(first) = rx.recv().await {
        let mut next = Some(first);
        let mut close = false;
        // Batch what is already queued into one write.
        while let Some(item) = next.take() {
            match item {
                Out::Frame(frame) => {
                    if let Frame::SynStream { stream_id, .. } = &frame {
                        last_id = *stream_id;
                    }
                    if let Err(e) = encoder.encode(&frame, &mut buf) {
                        tracing::warn!(error = %e, "SPDY client: cannot encode a frame");
                        return;
                    }
                }
                Out::Close => {
                    close = true;
                    break;
                }
            }
            if buf.len() < 64 * 1024 {
                next = rx.try_recv().ok();
            }
        }
        if close {
            let goaway = Frame::GoAway {
                last_good_stream_id: last_id & !1,
                status: GoAwayStatus::Ok,
            };
            let _ = encoder.encode(&goaway, &mut buf);
        }
        if io.write_all(&buf).await.is_err() {
            return;
        }
        buf.clear();
        if close {
            let _ = io.shutdown().await;
            return;
        }
    }
}

async fn read_loop(
    mut io: OwnedReadHalf,
    mut buf: BytesMut,
    shared: Arc<Shared>,
    out: mpsc::Sender<Out>,
) {
    let mut decoder = FrameDecoder::new(Limits::default());
    let reason = loop {
        let frame = match decoder.decode(&mut buf) {
            Ok(Some(frame)) => frame,
            Ok(None) => match io.read_buf(&mut buf).await {
                Ok(0) => break "connection closed by the server".to_string(),
                Ok(_) => continue,
                Err(e) => break format!("read: {e}"),
            },
            Err(e) if !e.is_session_error() => {
                tracing::debug!(error = %e, "SPDY client: stream error from server frame");
                continue;
            }
            Err(e) => break format!("bad frame from server: {e}"),
        };
        route(frame, &shared, &out).await;
    };
    tracing::debug!(%reason, "SPDY client connection ended");
    let slots: Vec<Slot> = lock(&shared.streams).drain().map(|(_, s)| s).collect();
    for mut slot in slots {
        if let Some(reply) = slot.reply.take() {
            let _ = reply.send(Err(Error::Unavailable(reason.clone())));
        }
        // A stream the server never finished learns why (if its buffer has room).
        if let Some(data) = slot.data.take() {
            let _ = data.try_send(Err(Error::Unavailable(reason.clone())));
        }
    }
}

/// Delivers one frame.
async fn route(frame: Frame, shared: &Shared, out: &mpsc::Sender<Out>) {
    match frame {
        Frame::SynReply {
            stream_id,
            fin,
            headers,
        } => {
            let mut streams = lock(&shared.streams);
            if let Some(slot) = streams.get_mut(&stream_id) {
                if let Some(reply) = slot.reply.take() {
                    let _ = reply.send(Ok(headers));
                }
                if fin {
                    slot.data = None;
                }
            }
        }
        Frame::Data {
            stream_id,
            fin,
            data,
        } => {
            let sender = {
                let mut streams = lock(&shared.streams);
                match streams.get_mut(&stream_id) {
                    None => None,
                    Some(slot) if !fin => slot.data.clone(),
                    Some(slot) => {
                        let data = slot.data.take();
                        if slot.reply.is_none() {
                            streams.remove(&stream_id);
                        }
                        data
                    }
                }
            };
            if let Some(sender) = sender {
                if !data.is_empty() {
                    // A dropped receiver means nobody reads this stream: discard.
                    let _ = sender.send(Ok(data)).await;
                }
            }
        }
        Frame::RstStream { stream_id, status } => {
            // Like spdystream, a reset ends the stream's data as an EOF: kubelet's streaming
            // server (and containerd's) ends exec streams with RST_STREAM CANCEL after the
            // status, not with FIN. A stream refused before its reply fails to open.
            let slot = lock(&shared.streams).remove(&stream_id);
            if let Some(mut slot) = slot {
                tracing::debug!(stream_id, %status, "SPDY client: stream reset by the server");
                if let Some(reply) = slot.reply.take() {
                    let _ = reply.send(Err(Error::Unavailable(format!(
                        "stream {stream_id} reset: {status}"
                    ))));
                }
            }
        }
        Frame::Ping { id } => {
            // Even ids are the server's pings: echo them. Odd ones would answer ours.
            if id % 2 == 0 {
                let _ = out.send(Out::Frame(Frame::Ping { id })).await;
            }
        }
        Frame::SynStream { stream_id, .. } => {
            let rst = Frame::RstStream {
                stream_id,
                status: RstStatus::RefusedStream,
            };
            let _ = out.send(Out::Frame(rst)).await;
        }
        Frame::GoAway { status, .. } => {
            tracing::debug!(?status, "SPDY client: server sent GOAWAY");
        }
        Frame::Settings { .. }
        | Frame::WindowUpdate { .. }
        | Frame::Headers { .. }
        | Frame::Unknown { .. } => {}
    }
}
