//! Pieces pod sandboxes and containers share: containerd tasks, container objects with
//! their snapshots, what the backend's host offers, and image configs.

pub(crate) mod host;
pub(crate) mod image;
pub(crate) mod object;
pub(crate) mod runc;
pub(crate) mod task;
