//! crimux's streaming server: exec, attach and port-forward sessions over SPDY/3.1 and
//! WebSocket, for kubelet and crictl.
//!
//! The CRI's Exec, Attach and PortForward RPCs validate a request and ask [`Server`] for a
//! URL (`/exec/<token>`, `/attach/<token>`, `/portforward/<token>`); the client then
//! upgrades an HTTP/1.1 connection at that URL and the server runs the session on a
//! [`StreamingBackend`](crimux_core::StreamingBackend).
//!
//! - `server`: listener, TLS, token store, routing of one request per connection.
//! - `exec_spdy`, `websocket`: the remotecommand protocol (exec, attach) over SPDY/3.1
//!   and over WebSocket; `protocol`: versions, the status JSON, resize messages.
//! - `portforward`: `portforward.k8s.io` over SPDY/3.1.
//!
//! Architecture Invariant: this crate knows HTTP, SPDY and WebSocket but no CRI protos and
//! no containerd: sessions reach containers only through `StreamingBackend`.

pub mod client;
mod exec_spdy;
mod http;
mod portforward;
pub mod protocol;
mod server;
mod session;
mod tls;
mod tokens;
mod websocket;

pub use server::{Server, ServerOptions, TlsFiles};
pub use tokens::Streams;
