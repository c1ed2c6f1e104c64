//! CRI protos to crimux domain types and back. Pure functions, table-tested in each file.
//!
//! - `image`: image specs, pulls, images and filesystem usage.
//! - `sandbox`: `PodSandboxConfig` ⇄ `SandboxConfig`, sandbox lists and statuses.
//! - `container`: `ContainerConfig` ⇄ `ContainerConfig`, resources, container lists and
//!   statuses.
//! - `status`: list filters, node status conditions and container events.
//! - `stats`: container and pod stats.
//!
//! Inbound conversions reject what crimux cannot honour (an unknown enum value, an image
//! volume, CDI devices) with `InvalidArgument`/`Unimplemented` rather than dropping it;
//! fields crimux does not model and that change nothing (deprecated duplicates are read)
//! are ignored.

mod container;
mod from_proto;
mod image;
mod sandbox;
mod stats;
mod status;

pub use container::*;
pub use from_proto::*;
pub use image::*;
pub use sandbox::*;
pub use stats::*;
pub use status::*;

use std::collections::{BTreeMap, HashMap};

/// A proto map as the domain's ordered map.
pub(crate) fn btree(map: HashMap<String, String>) -> BTreeMap<String, String> {
    map.into_iter().collect()
}

/// A domain map as a proto map.
pub(crate) fn hash(map: &BTreeMap<String, String>) -> HashMap<String, String> {
    map.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}
