//! A server-side SPDY/3.1 session over any async byte stream.
//!
//! Two tasks run per connection: the reader decodes frames and applies them
//! to the shared state (see `state.rs`); the writer drains the frame queues,
//! compresses headers in wire order and writes. Applications get streams from
//! [`Connection::accept`] and may open server streams with
//! [`Connection::open_stream`].
//!
//! Flow control comes in two flavours because the peers that matter do not
//! implement SPDY/3.1 windows: moby/spdystream (kubelet, kubectl, crictl)
//! never sends WINDOW_UPDATE and ignores ours. [`FlowControl::Strict`] is the
//! draft's behaviour; [`FlowControl::Lenient`] is what those peers need.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::Notify;
use tokio::task::AbortHandle;

use crate::error::{Error, Result};
use crate::frame::{
    Frame, FrameDecoder, FrameEncoder, GoAwayStatus, Limits, StreamId, DEFAULT_INITIAL_WINDOW,
    MAX_FRAME_LEN, MAX_STREAM_ID,
};
use crate::headers::{Headers, DEFAULT_MAX_HEADER_BLOCK};
use crate::state::{Action, Shared, State, StreamState};
use crate::stream::Stream;

/// How send and receive windows are enforced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FlowControl {
    /// SPDY/3.1: writes wait for the peer's stream and session windows; a
    /// peer overrunning our stream window gets RST_STREAM FLOW_CONTROL_ERROR
    /// (our session window: GOAWAY).
    Strict,
    /// For peers without flow control (moby/spdystream): windows are tracked
    /// and WINDOW_UPDATEs still sent, but writes never wait for the peer's
    /// window, and instead of resetting an overrunning stream the reader stops
    /// reading the socket until that stream's buffer drains (TCP back-pressure).
    Lenient,
}

/// Connection tuning. `Default` suits the kubelet's streaming peers.
#[derive(Clone, Debug)]
pub struct Config {
    pub flow_control: FlowControl,
    /// Receive window we grant each stream (announced via SETTINGS if not 64 KiB).
    pub initial_window_size: u32,
    /// Receive window for the whole session (raised by WINDOW_UPDATE at start).
    pub session_window: u32,
    /// Largest frame accepted from the peer; larger is a session error.
    pub max_frame_len: usize,
    /// Largest decompressed header block accepted.
    pub max_header_block: usize,
    /// Largest DATA payload we send in one frame.
    pub max_send_frame: usize,
    /// DATA bytes queued for the socket before writers wait.
    pub write_queue_limit: usize,
    /// Peer streams open at once before new ones are refused.
    pub max_concurrent_streams: u32,
    /// Close (GOAWAY) after this long without any frame in either direction.
    pub idle_timeout: Option<Duration>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            flow_control: FlowControl::Lenient,
            initial_window_size: DEFAULT_INITIAL_WINDOW,
            session_window: 1024 * 1024,
            max_frame_len: MAX_FRAME_LEN,
            max_header_block: DEFAULT_MAX_HEADER_BLOCK,
            max_send_frame: 32 * 1024,
            write_queue_limit: 256 * 1024,
            max_concurrent_streams: 1000,
            idle_timeout: None,
        }
    }
}

impl Config {
    /// SPDY/3.1 flow control as the draft specifies it.
    pub fn strict() -> Self {
        Self {
            flow_control: FlowControl::Strict,
            ..Self::default()
        }
    }
}

/// A SPDY session in the server role (accepts odd, opens even stream ids).
pub struct Connection {
    shared: Arc<Shared>,
}

impl Connection {
    /// Starts the reader and writer tasks on the current tokio runtime.
    pub fn new<T>(io: T, config: Config) -> Result<Self>
    where
        T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let limits = Limits {
            max_frame_len: config.max_frame_len.min(MAX_FRAME_LEN),
            max_header_block: config.max_header_block,
        };
        let encoder = FrameEncoder::new()?;
        let decoder = FrameDecoder::new(limits);
        let shared = Arc::new(Shared {
            state: Mutex::new(State::new(&config)),
            writer_wake: Notify::new(),
            events: Notify::new(),
            config,
        });
        let (read_half, write_half) = tokio::io::split(io);
        let reader = tokio::spawn(read_loop(shared.clone(), read_half, decoder));
        tokio::spawn(write_loop(
            shared.clone(),
            write_half,
            encoder,
            reader.abort_handle(),
        ));
        shared.writer_wake.notify_one();
        Ok(Self { shared })
    }

    /// The next stream the peer opened, or `None` once the session is over.
    pub async fn accept(&self) -> Option<Stream> {
        loop {
            let notified = self.shared.events.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut state = self.shared.lock();
                while let Some(id) = state.accept_queue.pop_front() {
                    if let Some(st) = state.streams.get(&id) {
                        let headers = st.headers.clone();
                        return Some(Stream::new(self.shared.clone(), id, headers));
                    }
                }
                if state.closed
                    || state.closing
                    || state.goaway_sent
                    || state.goaway_received.is_some()
                {
                    return None;
                }
            }
            notified.await;
        }
    }

    /// Opens a server-initiated (even) stream with SYN_STREAM.
    pub fn open_stream(&self, headers: Headers, fin: bool) -> Result<Stream> {
        let mut state = self.shared.lock();
        if state.closed || state.closing || state.goaway_sent || state.goaway_received.is_some() {
            return Err(Error::Closed);
        }
        let id = state.next_local_id;
        if id > MAX_STREAM_ID {
            return Err(Error::InvalidFrame("stream ids exhausted".into()));
        }
        if let Some(max) = state.peer_max_streams {
            let open_local = state
                .streams
                .values()
                .filter(|s| s.local && !s.is_closed())
                .count();
            if open_local >= max as usize {
                return Err(Error::InvalidFrame(format!("peer allows {max} streams")));
            }
        }
        state.next_local_id += 2;
        let mut st = StreamState::new_local(
            headers.clone(),
            state.peer_initial_window,
            i64::from(self.shared.config.initial_window_size),
        );
        st.send_fin = fin;
        state.streams.insert(id, st);
        state.ordered.push_back(Frame::SynStream {
            stream_id: id,
            associated_to: 0,
            priority: 0,
            slot: 0,
            fin,
            unidirectional: false,
            headers: headers.clone(),
        });
        drop(state);
        self.shared.writer_wake.notify_one();
        Ok(Stream::new(self.shared.clone(), id, headers))
    }

    /// Sends a PING and waits for its echo; returns the round-trip time.
    pub async fn ping(&self) -> Result<Duration> {
        let id = {
            let mut state = self.shared.lock();
            if state.closed || state.closing {
                return Err(Error::Closed);
            }
            let id = state.next_ping_id;
            state.next_ping_id = if id >= MAX_STREAM_ID - 1 { 2 } else { id + 2 };
            state.pings.insert(id, Some(Instant::now()));
            state.control.push_back(Frame::Ping { id });
            id
        };
        self.shared.writer_wake.notify_one();
        let started = Instant::now();
        loop {
            let notified = self.shared.events.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut state = self.shared.lock();
                match state.pings.get(&id) {
                    Some(None) => {
                        state.pings.remove(&id);
                        return Ok(started.elapsed());
                    }
                    Some(Some(_)) if !state.closed => {}
                    _ => {
                        state.pings.remove(&id);
                        return Err(Error::Closed);
                    }
                }
            }
            notified.await;
        }
    }

    /// Sends GOAWAY: no new peer streams are accepted; open ones continue.
    pub fn goaway(&self, status: GoAwayStatus) {
        let mut state = self.shared.lock();
        if state.goaway_sent || state.closed {
            return;
        }
        state.goaway_sent = true;
        let last_good_stream_id = state.last_peer_id;
        state.control.push_back(Frame::GoAway {
            last_good_stream_id,
            status,
        });
        state.accept_queue.clear();
        drop(state);
        self.shared.writer_wake.notify_one();
        self.shared.events.notify_waiters();
    }

    /// The peer's GOAWAY, if one arrived: last stream it processed and why.
    pub fn peer_goaway(&self) -> Option<(StreamId, GoAwayStatus)> {
        self.shared.lock().goaway_received
    }

    /// Sends GOAWAY(OK) if not yet sent, flushes queued frames and closes the
    /// transport. Streams still open then fail with `ConnectionAborted`.
    pub async fn close(&self) {
        {
            let mut state = self.shared.lock();
            if !state.goaway_sent && !state.closed {
                state.goaway_sent = true;
                let last_good_stream_id = state.last_peer_id;
                state.control.push_back(Frame::GoAway {
                    last_good_stream_id,
                    status: GoAwayStatus::Ok,
                });
            }
            state.closing = true;
            state
                .close_reason
                .get_or_insert_with(|| "closed locally".into());
        }
        self.shared.writer_wake.notify_one();
        self.closed().await;
    }

    /// Waits until the session has ended.
    pub async fn closed(&self) {
        loop {
            let notified = self.shared.events.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.shared.lock().closed {
                return;
            }
            notified.await;
        }
    }

    pub fn is_closed(&self) -> bool {
        self.shared.lock().closed
    }

    /// Why the session ended, once it has.
    pub fn close_reason(&self) -> Option<String> {
        self.shared.lock().close_reason.clone()
    }
}

impl StreamState {
    fn new_local(headers: Headers, send_window: i64, recv_window: i64) -> Self {
        let mut st = Self::new_remote(headers, send_window, recv_window);
        st.local = true;
        st
    }
}

async fn read_loop<R: AsyncRead + Unpin>(
    shared: Arc<Shared>,
    mut io: R,
    mut decoder: FrameDecoder,
) {
    let mut buf = BytesMut::with_capacity(16 * 1024);
    let reason = loop {
        // Apply every complete frame already buffered.
        let mut failed = false;
        loop {
            match decoder.decode(&mut buf) {
                Ok(Some(frame)) => {
                    let action = {
                        let mut state = shared.lock();
                        state.last_activity = Instant::now();
                        state.on_frame(frame, &shared.config)
                    };
                    shared.writer_wake.notify_one();
                    shared.events.notify_waiters();
                    match action {
                        Action::Continue => {}
                        Action::Fail => {
                            failed = true;
                            break;
                        }
                        Action::Pause(id) => wait_for_drain(&shared, id).await,
                    }
                }
                Ok(None) => break,
                Err(Error::Stream {
                    stream_id,
                    status,
                    reason,
                }) => {
                    tracing::debug!(stream_id, %status, %reason, "SPDY stream error");
                    let mut state = shared.lock();
                    if stream_id % 2 == 1
                        && stream_id > state.last_peer_id
                        && !state.streams.contains_key(&stream_id)
                    {
                        state.last_peer_id = stream_id;
                    }
                    state.reset_stream(stream_id, status, true, &shared.config);
                    drop(state);
                    shared.writer_wake.notify_one();
                    shared.events.notify_waiters();
                }
                Err(err) => {
                    shared
                        .lock()
                        .fail(GoAwayStatus::ProtocolError, err.to_string());
                    failed = true;
                    break;
                }
            }
        }
        if failed {
            shared.writer_wake.notify_one();
            return;
        }
        let read = match idle_deadline(&shared) {
            Some(deadline) => {
                match tokio::time::timeout_at(deadline.into(), io.read_buf(&mut buf)).await {
                    Ok(read) => read,
                    Err(_) => {
                        if idle_deadline(&shared).is_some_and(|d| d <= Instant::now()) {
                            break "idle timeout".to_string();
                        }
                        continue;
                    }
                }
            }
            None => io.read_buf(&mut buf).await,
        };
        match read {
            Ok(0) => break "peer closed the connection".to_string(),
            Ok(_) => {}
            Err(e) => break format!("read failed: {e}"),
        }
    };
    tracing::debug!(%reason, "SPDY reader stopping");
    let mut state = shared.lock();
    if reason == "idle timeout" && !state.goaway_sent {
        state.goaway_sent = true;
        let last_good_stream_id = state.last_peer_id;
        state.control.push_back(Frame::GoAway {
            last_good_stream_id,
            status: GoAwayStatus::Ok,
        });
    }
    state.close_reason.get_or_insert(reason);
    state.closing = true;
    state.abort = true;
    drop(state);
    shared.writer_wake.notify_one();
}

fn idle_deadline(shared: &Shared) -> Option<Instant> {
    let idle = shared.config.idle_timeout?;
    Some(shared.lock().last_activity + idle)
}

/// Lenient mode back-pressure: hold the socket until the stream drains.
async fn wait_for_drain(shared: &Shared, id: StreamId) {
    let cap = shared.config.initial_window_size as usize;
    loop {
        let notified = shared.events.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        {
            let mut state = shared.lock();
            let drained = match state.streams.get(&id) {
                Some(st) => st.recv_buffered <= cap || st.reset.is_some() || !st.has_handle,
                None => true,
            };
            if drained || state.closing {
                state.reader_paused = false;
                return;
            }
            state.reader_paused = true;
        }
        notified.await;
    }
}

async fn write_loop<W: AsyncWrite + Unpin>(
    shared: Arc<Shared>,
    mut io: W,
    mut encoder: FrameEncoder,
    reader: AbortHandle,
) {
    let mut buf = BytesMut::with_capacity(64 * 1024);
    let mut written: Vec<(StreamId, usize)> = Vec::new();
    let outcome: std::result::Result<(), String> = loop {
        let (frames, done) = take_batch(&shared);
        if frames.is_empty() {
            if done {
                break Ok(());
            }
            shared.writer_wake.notified().await;
            continue;
        }
        buf.clear();
        written.clear();
        let mut encode_error = None;
        for frame in &frames {
            if let Frame::Data {
                stream_id, data, ..
            } = frame
            {
                written.push((*stream_id, data.len()));
            }
            if let Err(e) = encoder.encode(frame, &mut buf) {
                encode_error = Some(e);
                break;
            }
        }
        if let Some(e) = encode_error {
            break Err(format!("encoding failed: {e}"));
        }
        if let Err(e) = io.write_all(&buf).await {
            break Err(format!("write failed: {e}"));
        }
        if let Err(e) = io.flush().await {
            break Err(format!("flush failed: {e}"));
        }
        let mut state = shared.lock();
        state.last_activity = Instant::now();
        for (id, n) in &written {
            state.queued_data = state.queued_data.saturating_sub(*n);
            if let Some(st) = state.streams.get_mut(id) {
                st.unwritten = st.unwritten.saturating_sub(*n);
                if st.unwritten == 0 {
                    if let Some(w) = st.flush_waker.take() {
                        w.wake();
                    }
                }
            }
        }
        state.wake_writers();
    };
    let _ = io.shutdown().await;
    reader.abort();
    let mut state = shared.lock();
    let reason = outcome.err();
    if let Some(r) = &reason {
        tracing::debug!(reason = %r, "SPDY writer stopped");
    }
    state.mark_closed(reason.or_else(|| Some("connection closed".into())));
    state.pings.clear();
    drop(state);
    shared.events.notify_waiters();
}

/// Takes queued frames (control first). Returns `done` when the writer should
/// exit: closing with nothing left it may send.
fn take_batch(shared: &Shared) -> (Vec<Frame>, bool) {
    let mut state = shared.lock();
    let mut frames: Vec<Frame> = state.control.drain(..).collect();
    let abort = state.abort;
    let mut bytes = 0;
    while bytes < 64 * 1024 && !abort {
        let Some(frame) = state.ordered.pop_front() else {
            break;
        };
        if let Frame::Data { data, .. } = &frame {
            bytes += data.len();
        }
        bytes += 16;
        frames.push(frame);
    }
    if abort && !state.ordered.is_empty() {
        state.ordered.clear();
        state.queued_data = 0;
    }
    let done = frames.is_empty()
        && state.closing
        && state.control.is_empty()
        && (abort || state.ordered.is_empty());
    (frames, done)
}
