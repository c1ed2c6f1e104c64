//! crimux's streaming server: exec, attach and port-forward sessions over SPDY/3.1 and
//! WebSocket, for kubelet and crictl.

pub mod client;
