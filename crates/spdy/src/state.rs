//! Session state shared by the reader task, the writer task and the stream
//! handles, and the reaction to every incoming frame.
//!
//! Everything here is synchronous and runs under one `std::sync::Mutex`
//! (never held across an `.await`). Outgoing frames are queued, not written:
//! the writer task drains `control` (PING, RST, WINDOW_UPDATE, GOAWAY,
//! SETTINGS) before `ordered` (SYN_REPLY, SYN_STREAM, HEADERS, DATA, whose
//! relative order per stream matters), and is the only place that compresses
//! headers, so compression order equals wire order.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::Waker;
use std::time::Instant;

use bytes::Bytes;
use tokio::sync::Notify;

use crate::conn::{Config, FlowControl};
use crate::frame::{
    Frame, GoAwayStatus, RstStatus, Setting, StreamId, DEFAULT_INITIAL_WINDOW, MAX_STREAM_ID,
    SETTINGS_INITIAL_WINDOW_SIZE, SETTINGS_MAX_CONCURRENT_STREAMS,
};
use crate::headers::Headers;

const MAX_WINDOW: i64 = MAX_STREAM_ID as i64;

pub(crate) struct Shared {
    pub state: Mutex<State>,
    /// Wakes the writer task (one waiter: permits are kept).
    pub writer_wake: Notify,
    /// Broadcast of state changes: accept queue, pings, replies, read progress, close.
    pub events: Notify,
    pub config: Config,
}

impl Shared {
    pub fn lock(&self) -> MutexGuard<'_, State> {
        // A poisoned lock means a panic elsewhere; the state is still usable.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// What the reader must do after handing a frame to the state.
pub(crate) enum Action {
    Continue,
    /// Stop reading the socket until this stream's buffer drains (lenient mode).
    Pause(StreamId),
    /// Session error: GOAWAY with this status has been queued; stop reading.
    Fail,
}

pub(crate) struct StreamState {
    pub headers: Headers,
    pub extra_headers: Headers,
    pub reply_headers: Option<Headers>,
    /// Opened by us (even id).
    pub local: bool,
    /// Remote stream: we sent SYN_REPLY. Local stream: we received it.
    pub replied: bool,
    pub recv: VecDeque<Bytes>,
    pub recv_buffered: usize,
    pub recv_fin: bool,
    pub send_fin: bool,
    pub reset: Option<RstStatus>,
    pub send_window: i64,
    pub recv_window: i64,
    pub recv_unacked: i64,
    /// Bytes of this stream's DATA queued but not yet written to the socket.
    pub unwritten: usize,
    /// A `Stream` handle exists (or waits in the accept queue).
    pub has_handle: bool,
    pub read_waker: Option<Waker>,
    pub write_waker: Option<Waker>,
    pub flush_waker: Option<Waker>,
}

impl StreamState {
    pub fn new_remote(headers: Headers, send_window: i64, recv_window: i64) -> Self {
        Self {
            headers,
            extra_headers: Headers::new(),
            reply_headers: None,
            local: false,
            replied: false,
            recv: VecDeque::new(),
            recv_buffered: 0,
            recv_fin: false,
            send_fin: false,
            reset: None,
            send_window,
            recv_window,
            recv_unacked: 0,
            unwritten: 0,
            has_handle: true,
            read_waker: None,
            write_waker: None,
            flush_waker: None,
        }
    }

    pub fn is_closed(&self) -> bool {
        self.reset.is_some() || (self.recv_fin && self.send_fin)
    }

    pub fn wake_all(&mut self) {
        for waker in [
            self.read_waker.take(),
            self.write_waker.take(),
            self.flush_waker.take(),
        ]
        .into_iter()
        .flatten()
        {
            waker.wake();
        }
    }
}

pub(crate) struct State {
    pub streams: HashMap<StreamId, StreamState>,
    pub accept_queue: VecDeque<StreamId>,
    pub control: VecDeque<Frame>,
    pub ordered: VecDeque<Frame>,
    /// DATA bytes sitting in `ordered`.
    pub queued_data: usize,
    pub send_window: i64,
    pub recv_window: i64,
    pub recv_unacked: i64,
    pub peer_initial_window: i64,
    pub peer_max_streams: Option<u32>,
    pub last_peer_id: StreamId,
    pub next_local_id: StreamId,
    pub goaway_sent: bool,
    pub goaway_received: Option<(StreamId, GoAwayStatus)>,
    /// The writer should drain what it may and stop.
    pub closing: bool,
    /// On `closing`, drop queued stream frames instead of draining them.
    pub abort: bool,
    /// The session is over; nothing more is read or written.
    pub closed: bool,
    pub close_reason: Option<String>,
    pub reader_paused: bool,
    pub next_ping_id: u32,
    pub pings: HashMap<u32, Option<Instant>>,
    pub last_activity: Instant,
    last_rst: Option<(StreamId, RstStatus)>,
}

impl State {
    pub fn new(config: &Config) -> Self {
        let mut state = Self {
            streams: HashMap::new(),
            accept_queue: VecDeque::new(),
            control: VecDeque::new(),
            ordered: VecDeque::new(),
            queued_data: 0,
            send_window: i64::from(DEFAULT_INITIAL_WINDOW),
            recv_window: i64::from(DEFAULT_INITIAL_WINDOW),
            recv_unacked: 0,
            peer_initial_window: i64::from(DEFAULT_INITIAL_WINDOW),
            peer_max_streams: None,
            last_peer_id: 0,
            next_local_id: 2,
            goaway_sent: false,
            goaway_received: None,
            closing: false,
            abort: false,
            closed: false,
            close_reason: None,
            reader_paused: false,
            next_ping_id: 2,
            pings: HashMap::new(),
            last_activity: Instant::now(),
            last_rst: None,
        };
        // Our receive parameters, announced only when they differ from the defaults
        // (peers such as spdystream ignore both frames, which is harmless).
        if config.initial_window_size != DEFAULT_INITIAL_WINDOW {
            state.control.push_back(Frame::Settings {
                clear: false,
                entries: vec![Setting {
                    flags: 0,
                    id: SETTINGS_INITIAL_WINDOW_SIZE,
                    value: config.initial_window_size,
                }],
            });
        }
        let extra = i64::from(config.session_window) - i64::from(DEFAULT_INITIAL_WINDOW);
        if extra > 0 {
            state.recv_window += extra;
            state.control.push_back(Frame::WindowUpdate {
                stream_id: 0,
                delta: extra as u32,
            });
        }
        state
    }

    pub fn open_streams(&self) -> usize {
        self.streams.values().filter(|s| !s.is_closed()).count()
    }

    /// Queues RST_STREAM, coalescing repeats for one stream (§2.4.2).
    pub fn send_rst(&mut self, stream_id: StreamId, status: RstStatus) {
        if self.last_rst == Some((stream_id, status)) {
            return;
        }
        self.last_rst = Some((stream_id, status));
        self.control
            .push_back(Frame::RstStream { stream_id, status });
    }

    /// Marks a stream reset (locally or by the peer) and releases its buffer.
    pub fn reset_stream(
        &mut self,
        stream_id: StreamId,
        status: RstStatus,
        send: bool,
        cfg: &Config,
    ) {
        let mut released = 0;
        if let Some(st) = self.streams.get_mut(&stream_id) {
            if st.reset.is_none() {
                st.reset = Some(status);
            }
            released = st.recv_buffered;
            st.recv.clear();
            st.recv_buffered = 0;
            st.wake_all();
            if !st.has_handle {
                self.streams.remove(&stream_id);
            }
        }
        // Nothing of a reset stream may follow its RST_STREAM. Dropped header
        // frames were never compressed, so the zlib context stays in step.
        let mut dropped = 0;
        self.ordered.retain(|f| {
            let (id, len) = match f {
                Frame::Data {
                    stream_id, data, ..
                } => (*stream_id, data.len()),
                Frame::SynReply { stream_id, .. }
                | Frame::SynStream { stream_id, .. }
                | Frame::Headers { stream_id, .. } => (*stream_id, 0),
                _ => (0, 0),
            };
            let keep = id != stream_id;
            if !keep {
                dropped += len;
            }
            keep
        });
        self.queued_data = self.queued_data.saturating_sub(dropped);
        if let Some(st) = self.streams.get_mut(&stream_id) {
            st.unwritten = 0;
        }
        if send {
            self.send_rst(stream_id, status);
        }
        self.credit_session(released, cfg);
    }

    /// Returns consumed (or discarded) bytes to the peer's session window.
    pub fn credit_session(&mut self, n: usize, cfg: &Config) {
        if n == 0 {
            return;
        }
        self.recv_unacked += n as i64;
        let threshold = (i64::from(cfg.session_window) / 2).max(1);
        if self.recv_unacked >= threshold {
            let delta = self.recv_unacked.min(MAX_WINDOW);
            self.recv_unacked -= delta;
            self.recv_window += delta;
            self.control.push_back(Frame::WindowUpdate {
                stream_id: 0,
                delta: delta as u32,
            });
        }
    }

    /// Session error: queue GOAWAY and stop everything.
    pub fn fail(&mut self, status: GoAwayStatus, reason: String) {
        tracing::warn!(%reason, ?status, "SPDY session error");
        if !self.goaway_sent {
            self.goaway_sent = true;
            self.control.push_back(Frame::GoAway {
                last_good_stream_id: self.last_peer_id,
                status,
            });
        }
        self.close_reason.get_or_insert(reason);
        self.closing = true;
        self.abort = true;
    }

    /// The session ended: every stream learns it.
    pub fn mark_closed(&mut self, reason: Option<String>) {
        self.closed = true;
        self.closing = true;
        if let Some(reason) = reason {
            self.close_reason.get_or_insert(reason);
        }
        self.accept_queue.clear();
        self.streams.retain(|_, st| st.has_handle);
        for st in self.streams.values_mut() {
            st.wake_all();
        }
    }

    pub fn wake_writers(&mut self) {
        for st in self.streams.values_mut() {
            if let Some(w) = st.write_waker.take() {
                w.wake();
            }
        }
    }

    /// Applies one incoming frame.
    pub fn on_frame(&mut self, frame: Frame, cfg: &Config) -> Action {
        match frame {
            Frame::SynStream {
                stream_id,
                fin,
                unidirectional,
                headers,
                ..
            } => return self.on_syn_stream(stream_id, fin, unidirectional, headers, cfg),
            Frame::SynReply {
                stream_id,
                fin,
                headers,
            } => self.on_syn_reply(stream_id, fin, headers),
            Frame::Headers {
                stream_id,
                fin,
                headers,
            } => self.on_headers(stream_id, fin, headers),
            Frame::Data {
                stream_id,
                fin,
                data,
            } => return self.on_data(stream_id, fin, data, cfg),
            Frame::RstStream { stream_id, status } => {
                tracing::debug!(stream_id, %status, "peer reset stream");
                self.reset_stream(stream_id, status, false, cfg);
            }
            Frame::Settings { entries, .. } => return self.on_settings(&entries),
            Frame::Ping { id } => {
                if id % 2 == 1 {
                    self.control.push_back(Frame::Ping { id });
                } else if let Some(slot) = self.pings.get_mut(&id) {
                    *slot = None;
                }
                // An even id we did not send is ignored (§2.6.5).
            }
            Frame::GoAway {
                last_good_stream_id,
                status,
            } => self.on_goaway(last_good_stream_id, status, cfg),
            Frame::WindowUpdate { stream_id, delta } => {
                return self.on_window_update(stream_id, delta)
            }
            Frame::Unknown {
                frame_type, len, ..
            } => {
                tracing::debug!(frame_type, len, "ignoring unknown SPDY control frame");
            }
        }
        Action::Continue
    }

    fn on_syn_stream(
        &mut self,
        id: StreamId,
        fin: bool,
        unidirectional: bool,
        headers: Headers,
        cfg: &Config,
    ) -> Action {
        if id & 1 == 0 {
            self.fail(
                GoAwayStatus::ProtocolError,
                format!("client opened even stream {id}"),
            );
            return Action::Fail;
        }
        if id <= self.last_peer_id {
            if self.streams.contains_key(&id) {
                self.reset_stream(id, RstStatus::ProtocolError, true, cfg);
                return Action::Continue;
            }
            self.fail(
                GoAwayStatus::ProtocolError,
                format!("stream id {id} not above {}", self.last_peer_id),
            );
            return Action::Fail;
        }
        if self.goaway_sent {
            // After GOAWAY, new streams are ignored (§2.6.6).
            return Action::Continue;
        }
        self.last_peer_id = id;
        if self.open_streams() >= cfg.max_concurrent_streams as usize {
            self.send_rst(id, RstStatus::RefusedStream);
            return Action::Continue;
        }
        let mut st = StreamState::new_remote(
            headers,
            self.peer_initial_window,
            i64::from(cfg.initial_window_size),
        );
        st.recv_fin = fin;
        st.send_fin = unidirectional;
        self.streams.insert(id, st);
        self.accept_queue.push_back(id);
        Action::Continue
    }

    fn on_syn_reply(&mut self, id: StreamId, fin: bool, headers: Headers) {
        match self.streams.get_mut(&id) {
            Some(st) if st.local && st.reset.is_none() => {
                if st.replied {
                    self.send_rst(id, RstStatus::StreamInUse);
                    return;
                }
                st.replied = true;
                st.reply_headers = Some(headers);
                st.recv_fin |= fin;
                st.wake_all();
            }
            Some(st) if st.reset.is_some() => {}
            Some(_) => self.send_rst(id, RstStatus::ProtocolError),
            None => self.send_rst(id, RstStatus::InvalidStream),
        }
    }

    fn on_headers(&mut self, id: StreamId, fin: bool, headers: Headers) {
        match self.streams.get_mut(&id) {
            Some(st) if st.reset.is_some() => {}
            Some(st) if st.recv_fin => self.send_rst(id, RstStatus::StreamAlreadyClosed),
            Some(st) => {
                for (n, v) in headers.iter() {
                    st.extra_headers.append(n, v);
                }
                st.recv_fin |= fin;
                st.wake_all();
            }
            None => self.unknown_stream(id),
        }
    }

    fn unknown_stream(&mut self, id: StreamId) {
        if self.goaway_sent {
            return;
        }
        let seen = if id % 2 == 1 {
            id <= self.last_peer_id
        } else {
            id < self.next_local_id
        };
        let status = if seen {
            RstStatus::ProtocolError
        } else {
            RstStatus::InvalidStream
        };
        self.send_rst(id, status);
    }

    fn on_data(&mut self, id: StreamId, fin: bool, data: Bytes, cfg: &Config) -> Action {
        let n = data.len() as i64;
        self.recv_window -= n;
        let strict = cfg.flow_control == FlowControl::Strict;
        if strict && self.recv_window < 0 {
            self.fail(
                GoAwayStatus::ProtocolError,
                "peer overran the session window".into(),
            );
            return Action::Fail;
        }
        let Some(st) = self.streams.get_mut(&id) else {
            self.unknown_stream(id);
            self.credit_session(data.len(), cfg);
            return Action::Continue;
        };
        if st.reset.is_some() {
            self.credit_session(data.len(), cfg);
            return Action::Continue;
        }
        if st.recv_fin {
            self.credit_session(data.len(), cfg);
            self.reset_stream(id, RstStatus::StreamAlreadyClosed, true, cfg);
            return Action::Continue;
        }
        if st.local && !st.replied {
            self.credit_session(data.len(), cfg);
            self.reset_stream(id, RstStatus::ProtocolError, true, cfg);
            return Action::Continue;
        }
        if !st.has_handle {
            // Nobody reads this stream any more (dropped after our FIN): discard.
            if fin {
                self.streams.remove(&id);
            }
            self.credit_session(data.len(), cfg);
            return Action::Continue;
        }
        st.recv_window -= n;
        if strict && st.recv_window < 0 {
            self.credit_session(data.len(), cfg);
            self.reset_stream(id, RstStatus::FlowControlError, true, cfg);
            return Action::Continue;
        }
        if !data.is_empty() {
            st.recv_buffered += data.len();
            st.recv.push_back(data);
        }
        st.recv_fin |= fin;
        if let Some(w) = st.read_waker.take() {
            w.wake();
        }
        let cap = cfg.initial_window_size as usize;
        if !strict && st.recv_buffered > cap && st.has_handle {
            return Action::Pause(id);
        }
        Action::Continue
    }

    fn on_settings(&mut self, entries: &[Setting]) -> Action {
        let mut seen = Vec::new();
        for e in entries {
            // Only the first value of a repeated id counts (§2.6.4).
            if seen.contains(&e.id) {
                continue;
            }
            seen.push(e.id);
            match e.id {
                SETTINGS_INITIAL_WINDOW_SIZE => {
                    let new = i64::from(e.value);
                    if new > MAX_WINDOW {
                        self.fail(GoAwayStatus::ProtocolError, format!("initial window {new}"));
                        return Action::Fail;
                    }
                    let delta = new - self.peer_initial_window;
                    self.peer_initial_window = new;
                    for st in self.streams.values_mut() {
                        st.send_window += delta;
                    }
                    self.wake_writers();
                }
                SETTINGS_MAX_CONCURRENT_STREAMS => self.peer_max_streams = Some(e.value),
                _ => {}
            }
        }
        Action::Continue
    }

    fn on_goaway(&mut self, last_good: StreamId, status: GoAwayStatus, cfg: &Config) {
        tracing::debug!(last_good, ?status, "peer sent GOAWAY");
        self.goaway_received = Some((last_good, status));
        // Our streams above last_good were never processed by the peer.
        let refused: Vec<StreamId> = self
            .streams
            .iter()
            .filter(|(id, st)| st.local && **id > last_good)
            .map(|(id, _)| *id)
            .collect();
        for id in refused {
            self.reset_stream(id, RstStatus::RefusedStream, false, cfg);
        }
    }

    fn on_window_update(&mut self, id: StreamId, delta: u32) -> Action {
        let delta = i64::from(delta);
        if id == 0 {
            self.send_window += delta;
            if self.send_window > MAX_WINDOW {
                self.fail(
                    GoAwayStatus::ProtocolError,
                    "session window overflow".into(),
                );
                return Action::Fail;
            }
            self.wake_writers();
            return Action::Continue;
        }
        // Updates may race with a close: unknown streams are ignored.
        if let Some(st) = self.streams.get_mut(&id) {
            st.send_window += delta;
            if st.send_window > MAX_WINDOW {
                self.send_rst(id, RstStatus::FlowControlError);
                if let Some(st) = self.streams.get_mut(&id) {
                    st.reset = Some(RstStatus::FlowControlError);
                    st.wake_all();
                }
            } else if let Some(w) = st.write_waker.take() {
                w.wake();
            }
        }
        Action::Continue
    }
}

pub(crate) type SharedRef = Arc<Shared>;
