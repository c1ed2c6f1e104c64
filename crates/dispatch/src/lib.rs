//! Composite dispatch: one node, several backends, one CRI façade.
//!
//! A node has exactly one primary backend and any number of delegates (say, a Windows
//! primary and a WSL2 Linux delegate). Every pod is placed on exactly one backend and its
//! containers follow it; images live per backend, so pulls fan out and reads merge.
//!
//! - [`routing`]: the pure, synchronous [`Router`] that picks backends.
//! - [`Dispatcher`]: holds the backends and awaits them, never under a lock.
//! - `images`: the image calls and their fan-out merges.
//!
//! Architecture Invariant: this crate knows backends only through `crimux_core` traits;
//! it knows neither CRI protos nor containerd.

mod dispatcher;
mod images;
pub mod routing;
#[cfg(any(test, feature = "testing"))]
pub mod testing;

#[cfg(test)]
mod tests;

pub use dispatcher::Dispatcher;
pub use images::{merge_images, merge_pulls};
pub use routing::{BackendIdx, PlacedBy, PodPlacement, Router, OS_ANNOTATION};
