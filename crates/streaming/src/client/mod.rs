//! A client for crimux's streaming server (SPDY/3.1 and WebSocket), for tests and
//! `crimux-bench`: it speaks the remotecommand and portforward protocols as kubelet and
//! crictl do.
//!
//! - [`exec`] / [`attach`]: SPDY/3.1, offering `v4.channel.k8s.io` down to
//!   `channel.k8s.io`; streams opened in client-go's order (error first), stdin half-closed
//!   with FIN, resizes as JSON, the exit code read from the v4 error stream's `Status`.
//! - [`exec_websocket`] / [`attach_websocket`]: the same over WebSocket with
//!   `v5.channel.k8s.io` / `v4.channel.k8s.io`.
//! - [`port_forward`]: `portforward.k8s.io`, one [`Forwarded`] duplex stream per request.
//! - [`relay_exec`] / [`relay_attach`] / [`relay_port_forward`]: a session of another
//!   crimux's streaming server pumped through a `StreamIo` (the `kind = "cri"` backend).
//!
//! Only `http://` URLs: TLS is not spoken here.

mod http;
mod portforward;
mod relay;
mod relay_forward;
mod remotecommand;
mod session;
pub mod spdy;
mod websocket;

use crimux_core::Error;

pub use self::portforward::{port_forward, Forwarded, PortForward, PORT_FORWARD_PROTOCOL};
pub use self::relay::{relay_attach, relay_exec, relay_port_forward};
pub use self::remotecommand::{attach, exec, ExecOptions, STREAM_TYPE};
pub use self::session::{decode_status, Output, Session};
pub use self::spdy::{Config as SpdyConfig, Incoming};

/// The remotecommand sub-protocols. V5 exists only over WebSocket.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// `channel.k8s.io`
    V1,
    /// `v2.channel.k8s.io`
    V2,
    /// `v3.channel.k8s.io`: adds the resize stream.
    V3,
    /// `v4.channel.k8s.io`: the error stream carries a JSON Status.
    V4,
    /// `v5.channel.k8s.io` (WebSocket): adds closing a channel (stdin EOF).
    V5,
}

impl Protocol {
    pub fn name(self) -> &'static str {
        match self {
            Protocol::V1 => "channel.k8s.io",
            Protocol::V2 => "v2.channel.k8s.io",
            Protocol::V3 => "v3.channel.k8s.io",
            Protocol::V4 => "v4.channel.k8s.io",
            Protocol::V5 => "v5.channel.k8s.io",
        }
    }

    pub fn from_name(name: &str) -> Option<Protocol> {
        [
            Protocol::V1,
            Protocol::V2,
            Protocol::V3,
            Protocol::V4,
            Protocol::V5,
        ]
        .into_iter()
        .find(|p| p.name() == name.trim())
    }

    /// v3 and later carry terminal resizes.
    pub fn has_resize(self) -> bool {
        matches!(self, Protocol::V3 | Protocol::V4 | Protocol::V5)
    }

    /// v4 and later report the outcome as a JSON `Status`.
    pub fn has_json_status(self) -> bool {
        matches!(self, Protocol::V4 | Protocol::V5)
    }
}

impl std::fmt::Display for Protocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Exec over WebSocket (offers v5 then v4 unless `opts.protocols` says otherwise).
pub async fn exec_websocket(url: &str, opts: ExecOptions) -> Result<Session, Error> {
    websocket::exec(url, opts).await
}

/// Attach over WebSocket (same wire protocol as exec).
pub async fn attach_websocket(url: &str, opts: ExecOptions) -> Result<Session, Error> {
    websocket::exec(url, opts).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocol_names() {
        for p in [
            Protocol::V1,
            Protocol::V2,
            Protocol::V3,
            Protocol::V4,
            Protocol::V5,
        ] {
            assert_eq!(Protocol::from_name(p.name()), Some(p));
        }
        assert_eq!(Protocol::from_name("v6.channel.k8s.io"), None);
        assert!(!Protocol::V2.has_resize() && Protocol::V3.has_resize());
        assert!(!Protocol::V3.has_json_status() && Protocol::V4.has_json_status());
    }
}

#[cfg(test)]
mod loopback_tests;
