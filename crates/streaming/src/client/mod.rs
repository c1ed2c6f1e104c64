//! A client for crimux's streaming server (SPDY/3.1 and WebSocket), for tests and
//! `crimux-bench`: it speaks the remotecommand and portforward protocols as kubelet and
//! crictl do.
