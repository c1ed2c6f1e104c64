//! `kind = "cri"` backends end to end, against real daemons: containerd A behind the OUTER
//! crimux (the primary), containerd B behind an INNER crimux, which the outer reaches as a
//! `kind = "cri"` delegate over TCP 127.0.0.1 with mutual TLS through a relay in front of
//! the inner's unix socket, as a Windows crimux reaches the Linux crimux in its WSL2 distro.
//!
//! - `pods`: a `wsl2` pod placed on the inner side (same ids in both crimux and in
//!   containerd B), logs under the mapped directory, exec-sync, streaming exec and
//!   port-forward relayed through the outer, events, stats, a SIGKILL of the outer,
//!   nothing left behind.
//! - `inner_down`: the inner crimux unreachable: its pods are still listed, operations on
//!   them are Unavailable, and all works again when it is back.
//! - `startup`: an unreachable or wrong inner endpoint at start is one line and exit 2.

mod common;

#[path = "cri_delegate/env.rs"]
mod env;
#[path = "cri_delegate/inner_down.rs"]
mod inner_down;
#[path = "cri_delegate/pods.rs"]
mod pods;
#[path = "cri_delegate/startup.rs"]
mod startup;
