//! Composite dispatch: one node, several backends, one CRI façade.
//!
//! A node has exactly one primary backend and any number of delegates (say, a Windows
//! primary and a WSL2 Linux delegate). Every pod is placed on exactly one backend and its
//! containers follow it; images live per backend, so pulls fan out and reads merge.
//!
//! - [`routing`]: the pure, synchronous [`Router`] that picks backends.
//! - [`Dispatcher`]: holds the backends and awaits them, never under a lock.
//! - `images`: the image calls and their fan-out merges.
//! - [`routes`]: the durable route table (sandbox → backend, container → sandbox).
//! - `sandboxes`, `containers`: the pod and container calls, routed by that table.
//! - `lists`, `status`: the runtime fan-outs (lists, stats, readiness, events).
//!
//! Architecture Invariant: this crate knows backends only through `crimux_core` traits;
//! it knows neither CRI protos nor containerd.

mod containers;
mod dispatcher;
mod images;
mod lists;
pub mod routes;
pub mod routing;
mod sandboxes;
mod status;
mod streaming;
#[cfg(any(test, feature = "testing"))]
pub mod testing;

#[cfg(test)]
mod runtime_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod unreachable_tests;

pub use dispatcher::Dispatcher;
pub use images::{merge_images, merge_pulls};
pub use lists::{ContainerFilter, SandboxFilter};
pub use routes::{LastKnown, RouteTable, SandboxRoute, ROUTES_FILE};
pub use routing::{BackendIdx, PlacedBy, PodPlacement, Router, OS_ANNOTATION};
pub use sandboxes::{new_id, PodStatusReport};
pub use status::{
    merge_status, BackendReport, NodeCondition, NodeStatus, BACKEND_CONDITION_PREFIX,
    BACKEND_UNREACHABLE_REASON,
};
