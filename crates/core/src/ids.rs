//! Ids of pod sandboxes and containers: 64 hex characters, as containerd's CRI makes them.

use std::fmt;

use serde::{Deserialize, Serialize};

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        pub struct $name(pub String);

        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl From<&str> for $name {
            fn from(s: &str) -> Self {
                $name(s.to_string())
            }
        }
    };
}

id_type!(
    /// A pod sandbox id (the pause container's containerd id).
    PodSandboxId
);
id_type!(
    /// A container id (its containerd container id).
    ContainerId
);

/// Pod annotation by which a client asks for a given sandbox id (64 lowercase hex). Only
/// another crimux sends it: a Windows crimux forwarding a pod to the Linux crimux in its
/// WSL2 distro (`kind = "cri"` backends), so both route tables name the pod alike. The
/// dispatcher honours it (AlreadyExists if taken, InvalidArgument if malformed) and strips
/// it from the annotations it stores.
pub const REQUESTED_SANDBOX_ID: &str = "crimux.io/requested-sandbox-id";

/// Container annotation by which a client asks for a given container id, as
/// [`REQUESTED_SANDBOX_ID`] does for sandboxes.
pub const REQUESTED_CONTAINER_ID: &str = "crimux.io/requested-container-id";
