//! crimux's own vocabulary: ids, platforms, images, errors and the traits every backend
//! implements.
//!
//! Architecture Invariant: this crate knows nothing of CRI protos, containerd or HTTP. The
//! server adapter translates CRI messages into these types; backends translate them into
//! their daemon's API.

pub mod backend;
pub mod container;
pub mod error;
pub mod ids;
pub mod image;
pub mod platform;
pub mod sandbox;
pub mod status;
pub mod streaming;

pub use backend::{
    Backend, BackendInfo, BackendRole, ContainerBackend, ImageBackend, SandboxBackend,
    StatusBackend,
};
pub use error::{Error, OsNotSupported, Result};
pub use ids::{ContainerId, PodSandboxId, REQUESTED_CONTAINER_ID, REQUESTED_SANDBOX_ID};
pub use image::{Credentials, FsUsage, Image, ImageId, PullImage};
pub use platform::{OsKind, Platform};
pub use streaming::{
    ByteReader, ByteWriter, DuplexStream, ExecSpec, StreamIo, StreamingBackend, TermSize,
};
