//! Errors of this crate. It deliberately does not use `crimux_core::Error`: the
//! `crimux-log` plugin must stay a small standalone binary, and crimux maps these
//! into its own error type where it calls the library.

use std::io;
use std::path::PathBuf;

/// A CRI log line that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("log line contains a newline before its end")]
    EmbeddedNewline,
    #[error("last log line has no trailing newline")]
    Unterminated,
    #[error("timestamp is not found")]
    MissingTimestamp,
    #[error("unexpected timestamp {0:?} (want RFC 3339)")]
    Timestamp(String),
    #[error("stream type is not found")]
    MissingStream,
    #[error("unexpected stream type {0:?}")]
    Stream(String),
    #[error("log tag is not found")]
    MissingTag,
    #[error("unexpected log tag {0:?}")]
    Tag(String),
    #[error("attach frame has unknown stream byte {0}")]
    FrameStream(u8),
}

/// Everything else that can go wrong: bad plugin arguments and I/O.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{op}: {source}")]
    Os {
        op: &'static str,
        #[source]
        source: io::Error,
    },
}

impl Error {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        Self::Io {
            op,
            path: path.into(),
            source,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
