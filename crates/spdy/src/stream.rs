//! One multiplexed SPDY stream as an `AsyncRead + AsyncWrite` byte pipe.
//!
//! Reads drain DATA the reader task buffered (EOF after the peer's FIN) and
//! return flow-control credit as they go; writes queue DATA frames within the
//! peer's windows (strict mode) and the connection's write-queue limit;
//! `shutdown()` sends FIN (half-close). Dropping a stream we have not
//! half-closed resets it with CANCEL so the peer stops sending; dropping one we
//! have half-closed lets our last frames go out and discards the peer's rest.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::conn::FlowControl;
use crate::error::{Error, Result};
use crate::frame::{Frame, RstStatus, StreamId};
use crate::headers::Headers;
use crate::state::{SharedRef, State, StreamState};

/// A stream of a [`crate::Connection`].
pub struct Stream {
    shared: SharedRef,
    id: StreamId,
    headers: Headers,
}

impl std::fmt::Debug for Stream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stream").field("id", &self.id).finish()
    }
}

fn closed_err(state: &State) -> io::Error {
    let reason = state
        .close_reason
        .clone()
        .unwrap_or_else(|| "connection closed".into());
    io::Error::new(io::ErrorKind::ConnectionAborted, reason)
}

fn reset_err(status: RstStatus) -> io::Error {
    io::Error::from(Error::Reset(status))
}

impl Stream {
    pub(crate) fn new(shared: SharedRef, id: StreamId, headers: Headers) -> Self {
        Self {
            shared,
            id,
            headers,
        }
    }

    pub fn id(&self) -> StreamId {
        self.id
    }

    /// Headers of the SYN_STREAM that opened the stream.
    pub fn headers(&self) -> &Headers {
        &self.headers
    }

    /// Headers received later in HEADERS frames.
    pub fn extra_headers(&self) -> Headers {
        let state = self.shared.lock();
        state
            .streams
            .get(&self.id)
            .map(|st| st.extra_headers.clone())
            .unwrap_or_default()
    }

    /// Accepts a peer-opened stream with SYN_REPLY. With `fin` we send nothing
    /// more. Writing without replying first sends an empty SYN_REPLY.
    pub fn reply(&self, headers: Headers, fin: bool) -> Result<()> {
        let mut state = self.shared.lock();
        if state.closed {
            return Err(Error::Closed);
        }
        let st = state.streams.get_mut(&self.id).ok_or(Error::Closed)?;
        if let Some(status) = st.reset {
            return Err(Error::Reset(status));
        }
        if st.local || st.replied {
            return Err(Error::InvalidFrame(format!(
                "stream {} cannot be replied to",
                self.id
            )));
        }
        st.replied = true;
        st.send_fin |= fin;
        state.ordered.push_back(Frame::SynReply {
            stream_id: self.id,
            fin,
            headers,
        });
        drop(state);
        self.shared.writer_wake.notify_one();
        Ok(())
    }

    /// Sends a HEADERS frame on the stream.
    pub fn send_headers(&self, headers: Headers, fin: bool) -> Result<()> {
        let mut state = self.shared.lock();
        if state.closed {
            return Err(Error::Closed);
        }
        let id = self.id;
        let st = state.streams.get_mut(&id).ok_or(Error::Closed)?;
        if let Some(status) = st.reset {
            return Err(Error::Reset(status));
        }
        if st.send_fin {
            return Err(Error::InvalidFrame(format!("stream {id} is half-closed")));
        }
        let needs_reply = !st.local && !st.replied;
        st.replied = true;
        st.send_fin = fin;
        if needs_reply {
            state.ordered.push_back(empty_reply(id));
        }
        state.ordered.push_back(Frame::Headers {
            stream_id: id,
            fin,
            headers,
        });
        drop(state);
        self.shared.writer_wake.notify_one();
        Ok(())
    }

    /// Waits for the SYN_REPLY of a stream we opened.
    pub async fn reply_headers(&self) -> Result<Headers> {
        loop {
            let notified = self.shared.events.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let state = self.shared.lock();
                match state.streams.get(&self.id) {
                    Some(st) => {
                        if let Some(h) = &st.reply_headers {
                            return Ok(h.clone());
                        }
                        if let Some(status) = st.reset {
                            return Err(Error::Reset(status));
                        }
                    }
                    None => return Err(Error::Closed),
                }
                if state.closed {
                    return Err(Error::Closed);
                }
            }
            notified.await;
        }
    }

    /// Aborts the stream with RST_STREAM; buffered input is discarded.
    pub fn reset(&self, status: RstStatus) {
        let mut state = self.shared.lock();
        if state.closed {
            return;
        }
        let already = state
            .streams
            .get(&self.id)
            .is_none_or(|st| st.reset.is_some());
        if already {
            return;
        }
        let cfg = &self.shared.config;
        state.reset_stream(self.id, status, true, cfg);
        drop(state);
        self.shared.writer_wake.notify_one();
        self.shared.events.notify_waiters();
    }

    fn with_stream<T>(
        &self,
        f: impl FnOnce(&mut State, StreamId) -> Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        let mut state = self.shared.lock();
        if !state.streams.contains_key(&self.id) {
            return Poll::Ready(Err(closed_err(&state)));
        }
        f(&mut state, self.id)
    }
}

fn empty_reply(stream_id: StreamId) -> Frame {
    Frame::SynReply {
        stream_id,
        fin: false,
        headers: Headers::new(),
    }
}

fn stream_mut(state: &mut State, id: StreamId) -> io::Result<&mut StreamState> {
    state
        .streams
        .get_mut(&id)
        .ok_or_else(|| io::Error::new(io::ErrorKind::ConnectionAborted, "stream is gone"))
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let shared = self.shared.clone();
        let cfg = &shared.config;
        let res = self.with_stream(|state, id| {
            let st = stream_mut(state, id)?;
            if let Some(status) = st.reset {
                return Poll::Ready(Err(reset_err(status)));
            }
            let mut copied = 0;
            while buf.remaining() > 0 {
                let Some(chunk) = st.recv.front_mut() else {
                    break;
                };
                let n = chunk.len().min(buf.remaining());
                buf.put_slice(&chunk[..n]);
                chunk.advance(n);
                if chunk.is_empty() {
                    st.recv.pop_front();
                }
                copied += n;
            }
            if copied > 0 {
                st.recv_buffered -= copied;
                st.recv_unacked += copied as i64;
                let threshold = (i64::from(cfg.initial_window_size) / 2).max(1);
                let mut update = None;
                if !st.recv_fin && st.recv_unacked >= threshold {
                    update = Some(st.recv_unacked as u32);
                    st.recv_window += st.recv_unacked;
                    st.recv_unacked = 0;
                }
                if let Some(delta) = update {
                    state.control.push_back(Frame::WindowUpdate {
                        stream_id: id,
                        delta,
                    });
                }
                state.credit_session(copied, cfg);
                let wake_reader = state.reader_paused;
                return Poll::Ready(Ok((copied, wake_reader)));
            }
            if st.recv_fin {
                return Poll::Ready(Ok((0, false)));
            }
            if state.closed {
                return Poll::Ready(Err(closed_err(state)));
            }
            let st = stream_mut(state, id)?;
            st.read_waker = Some(cx.waker().clone());
            Poll::Pending
        });
        match res {
            Poll::Ready(Ok((copied, wake_reader))) => {
                if copied > 0 {
                    shared.writer_wake.notify_one();
                }
                if wake_reader {
                    shared.events.notify_waiters();
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let cfg = &self.shared.config;
        let res = self.with_stream(|state, id| {
            if state.closed || state.closing {
                return Poll::Ready(Err(closed_err(state)));
            }
            let queue_full = state.queued_data >= cfg.write_queue_limit;
            let session_window = state.send_window;
            let st = stream_mut(state, id)?;
            if let Some(status) = st.reset {
                return Poll::Ready(Err(reset_err(status)));
            }
            if st.send_fin {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::BrokenPipe,
                    "write after SPDY stream half-close",
                )));
            }
            if buf.is_empty() {
                return Poll::Ready(Ok(0));
            }
            let mut allowed = buf.len().min(cfg.max_send_frame);
            if cfg.flow_control == FlowControl::Strict {
                let window = st.send_window.min(session_window);
                if window <= 0 {
                    st.write_waker = Some(cx.waker().clone());
                    return Poll::Pending;
                }
                allowed = allowed.min(window as usize);
            }
            if queue_full {
                st.write_waker = Some(cx.waker().clone());
                return Poll::Pending;
            }
            let needs_reply = !st.local && !st.replied;
            st.replied = true;
            st.send_window -= allowed as i64;
            st.unwritten += allowed;
            state.send_window -= allowed as i64;
            state.queued_data += allowed;
            if needs_reply {
                state.ordered.push_back(empty_reply(id));
            }
            state.ordered.push_back(Frame::Data {
                stream_id: id,
                fin: false,
                data: Bytes::copy_from_slice(&buf[..allowed]),
            });
            Poll::Ready(Ok(allowed))
        });
        if matches!(res, Poll::Ready(Ok(n)) if n > 0) {
            self.shared.writer_wake.notify_one();
        }
        res
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.with_stream(|state, id| {
            let closed = state.closed;
            let st = stream_mut(state, id)?;
            if st.unwritten == 0 {
                return Poll::Ready(Ok(()));
            }
            if let Some(status) = st.reset {
                return Poll::Ready(Err(reset_err(status)));
            }
            if closed {
                return Poll::Ready(Err(closed_err(state)));
            }
            st.flush_waker = Some(cx.waker().clone());
            Poll::Pending
        })
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let queued = self.with_stream(|state, id| {
            if state.closed {
                return Poll::Ready(Err(closed_err(state)));
            }
            let st = stream_mut(state, id)?;
            if let Some(status) = st.reset {
                return Poll::Ready(Err(reset_err(status)));
            }
            if st.send_fin {
                return Poll::Ready(Ok(false));
            }
            let needs_reply = !st.local && !st.replied;
            st.replied = true;
            st.send_fin = true;
            if needs_reply {
                // The FIN rides on the reply itself.
                state.ordered.push_back(Frame::SynReply {
                    stream_id: id,
                    fin: true,
                    headers: Headers::new(),
                });
            } else {
                state.ordered.push_back(Frame::Data {
                    stream_id: id,
                    fin: true,
                    data: Bytes::new(),
                });
            }
            Poll::Ready(Ok(true))
        });
        match queued {
            Poll::Ready(Ok(true)) => self.shared.writer_wake.notify_one(),
            Poll::Ready(Ok(false)) => {}
            other => return other.map_ok(|_| ()),
        }
        self.poll_flush(cx)
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        let mut state = self.shared.lock();
        let Some(st) = state.streams.get_mut(&self.id) else {
            return;
        };
        st.has_handle = false;
        let unfinished = !st.is_closed();
        let buffered = st.recv_buffered;
        let half_closed = st.send_fin;
        if unfinished && half_closed {
            st.recv.clear();
            st.recv_buffered = 0;
        }
        let cfg = &self.shared.config;
        if unfinished && !state.closed && half_closed {
            // Half-closed by us: our queued DATA and FIN still go out (a reset would
            // discard them). What the peer still sends is dropped as it arrives, and the
            // stream is forgotten once the peer finishes or resets it.
            state.credit_session(buffered, cfg);
            let paused = state.reader_paused;
            drop(state);
            self.shared.writer_wake.notify_one();
            if paused {
                self.shared.events.notify_waiters();
            }
            return;
        }
        if unfinished && !state.closed {
            // Nobody will read or write any more: tell the peer to stop.
            state.reset_stream(self.id, RstStatus::Cancel, true, cfg);
            drop(state);
            self.shared.writer_wake.notify_one();
            self.shared.events.notify_waiters();
            return;
        }
        state.streams.remove(&self.id);
        state.credit_session(buffered, cfg);
        let paused = state.reader_paused;
        drop(state);
        self.shared.writer_wake.notify_one();
        if paused {
            self.shared.events.notify_waiters();
        }
    }
}
