//! Server-side SPDY/3.1, the transport of the kubelet's exec, attach and
//! port-forward streams.
//!
//! Layers, bottom up:
//! - [`frame`]: the eight SPDY/3 control frames and DATA frames, and a
//!   [`FrameCodec`] that owns the header-compression state of a connection;
//! - [`headers`]: name/value blocks and their dictionary-primed zlib contexts;
//! - [`conn`]: a multiplexed [`Connection`] over any async byte stream, with
//!   [`Stream`]s that implement `AsyncRead`/`AsyncWrite`, flow control, PING,
//!   GOAWAY and idle timeout;
//! - [`upgrade`]: the HTTP/1.1 `Upgrade: SPDY/3.1` handshake helpers.
//!
//! Architecture invariant: this crate knows nothing of CRI or containers; the
//! Kubernetes stream protocols (`streamtype` headers) live above it.

pub mod conn;
pub mod error;
pub mod frame;
pub mod headers;
mod state;
mod stream;
pub mod upgrade;

pub use conn::{Config, Connection, FlowControl};
pub use error::{Error, Result};
pub use frame::{
    Frame, FrameCodec, FrameDecoder, FrameEncoder, GoAwayStatus, Limits, RstStatus, Setting,
    StreamId,
};
pub use headers::Headers;
pub use stream::Stream;
