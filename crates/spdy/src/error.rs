//! The crate's one error type.
//!
//! SPDY distinguishes two kinds of peer errors (draft 3.1 §2.4): a *session*
//! error ends the whole connection with GOAWAY, a *stream* error ends one
//! stream with RST_STREAM and leaves the others running. [`Error::is_session_error`]
//! tells the connection which reaction a decoding failure needs.

use std::io;

use crate::frame::{RstStatus, StreamId};

/// Everything that can go wrong in framing, header compression or a stream.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The peer broke the framing layer; the session cannot continue.
    #[error("SPDY protocol error: {0}")]
    Protocol(String),
    /// A frame's length field exceeds the configured maximum.
    #[error("SPDY frame of {len} bytes exceeds the limit of {max} bytes")]
    FrameTooLarge { len: usize, max: usize },
    /// A control frame carried a version other than 3.
    #[error("unsupported SPDY version {0}")]
    UnsupportedVersion(u16),
    /// The zlib stream of header blocks is corrupt (compression state is lost).
    #[error("SPDY header compression failed: {0}")]
    Compression(String),
    /// A header block decompressed to more than the configured cap.
    #[error("SPDY header block exceeds {limit} bytes")]
    HeaderBlockTooLarge { limit: usize },
    /// A problem confined to one stream: answer with RST_STREAM `status`.
    #[error("SPDY stream {stream_id}: {reason} ({status})")]
    Stream {
        stream_id: StreamId,
        status: RstStatus,
        reason: String,
    },
    /// We were asked to encode something the wire format cannot carry.
    #[error("invalid SPDY frame: {0}")]
    InvalidFrame(String),
    /// The stream was reset (by the peer, or locally) with this status.
    #[error("SPDY stream reset: {0}")]
    Reset(RstStatus),
    /// The session has ended (closed, went away, timed out or failed).
    #[error("SPDY connection closed")]
    Closed,
    /// Transport failure.
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// Shorthand used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// True when the error corrupts the session (framing or compression state)
    /// and the connection must send GOAWAY and close.
    pub fn is_session_error(&self) -> bool {
        !matches!(
            self,
            Error::Stream { .. } | Error::Reset(_) | Error::InvalidFrame(_)
        )
    }

    pub(crate) fn stream(
        stream_id: StreamId,
        status: RstStatus,
        reason: impl Into<String>,
    ) -> Self {
        Error::Stream {
            stream_id,
            status,
            reason: reason.into(),
        }
    }
}

impl From<Error> for io::Error {
    fn from(err: Error) -> Self {
        let kind = match &err {
            Error::Io(e) => e.kind(),
            Error::Reset(_) => io::ErrorKind::ConnectionReset,
            Error::Closed => io::ErrorKind::ConnectionAborted,
            Error::InvalidFrame(_) => io::ErrorKind::InvalidInput,
            _ => io::ErrorKind::InvalidData,
        };
        match err {
            Error::Io(e) => e,
            other => io::Error::new(kind, other),
        }
    }
}
