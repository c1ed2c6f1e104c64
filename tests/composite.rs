//! Composite dispatch end to end (issue 4), against real daemons: the crimux binary in front
//! of two containerds, the delegate reached over TCP 127.0.0.1 with mutual TLS (certificates
//! made per test with rcgen), CNI bridge networking and the test registry's images.
//!
//! - `refusals`: one Linux backend refuses Windows workloads with `FailedPrecondition` and a
//!   `google.rpc.ErrorInfo` (the basic cases are in tests/images.rs and tests/runtime.rs;
//!   these check every metadata field and that nothing is left behind).
//! - `tls`: how a TCP backend is accepted or refused at startup.
//! - `two_backends`: a `wsl2` pod on the TLS delegate, merged lists, routes across a SIGKILL
//!   of crimux and across the delegate going down and coming back.
//! - `windows_node`: the primary declared `os = "windows"`; Linux pods find the delegate.
//! - `os_round_trip`: that primary a `kind = "cri"` backend forwarding to a Linux crimux,
//!   so its pods run: a Linux container refused there, the sandbox NOTREADY, kubelet's
//!   retry on the delegate.
//! - `pinned_images`: the sandbox image is reported pinned, container images are not.

mod common;

#[path = "composite/env.rs"]
mod env;
#[path = "composite/os_round_trip.rs"]
mod os_round_trip;
#[path = "composite/pinned_images.rs"]
mod pinned_images;
#[path = "composite/refusals.rs"]
mod refusals;
#[path = "composite/tls.rs"]
mod tls;
#[path = "composite/two_backends.rs"]
mod two_backends;
#[path = "composite/windows_node.rs"]
mod windows_node;
