//! The one error type of crimux's domain, and its one mapping to a gRPC status.

use std::collections::HashMap;

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong, classified by what the caller can do about it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    AlreadyExists(String),
    #[error("{0}")]
    FailedPrecondition(String),
    #[error("{0}")]
    Unauthenticated(String),
    #[error("{0}")]
    PermissionDenied(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    DeadlineExceeded(String),
    #[error("{0}")]
    Unimplemented(String),
    #[error("{0}")]
    Internal(String),
    /// The workload needs an OS that no backend on this node runs.
    #[error("{0}")]
    OsNotSupported(Box<OsNotSupported>),
    /// A backend daemon answered with a status of its own; its code passes through.
    #[error("{context}: {}", status.message())]
    Backend { context: String, status: Status },
}

impl Error {
    /// Wraps a backend's status with what crimux was doing.
    pub fn backend(context: impl Into<String>, status: Status) -> Self {
        Error::Backend {
            context: context.into(),
            status,
        }
    }

    /// The gRPC code this error maps to.
    pub fn code(&self) -> Code {
        match self {
            Error::InvalidArgument(_) => Code::InvalidArgument,
            Error::NotFound(_) => Code::NotFound,
            Error::AlreadyExists(_) => Code::AlreadyExists,
            Error::FailedPrecondition(_) | Error::OsNotSupported(_) => Code::FailedPrecondition,
            Error::Unauthenticated(_) => Code::Unauthenticated,
            Error::PermissionDenied(_) => Code::PermissionDenied,
            Error::Unavailable(_) => Code::Unavailable,
            Error::DeadlineExceeded(_) => Code::DeadlineExceeded,
            Error::Unimplemented(_) => Code::Unimplemented,
            Error::Internal(_) => Code::Internal,
            Error::Backend { status, .. } => status.code(),
        }
    }

    pub fn is_not_found(&self) -> bool {
        self.code() == Code::NotFound
    }

    /// Adds context in front of the message, keeping the classification.
    pub fn context(self, what: impl std::fmt::Display) -> Self {
        match self {
            Error::InvalidArgument(m) => Error::InvalidArgument(format!("{what}: {m}")),
            Error::NotFound(m) => Error::NotFound(format!("{what}: {m}")),
            Error::AlreadyExists(m) => Error::AlreadyExists(format!("{what}: {m}")),
            Error::FailedPrecondition(m) => Error::FailedPrecondition(format!("{what}: {m}")),
            Error::Unauthenticated(m) => Error::Unauthenticated(format!("{what}: {m}")),
            Error::PermissionDenied(m) => Error::PermissionDenied(format!("{what}: {m}")),
            Error::Unavailable(m) => Error::Unavailable(format!("{what}: {m}")),
            Error::DeadlineExceeded(m) => Error::DeadlineExceeded(format!("{what}: {m}")),
            Error::Unimplemented(m) => Error::Unimplemented(format!("{what}: {m}")),
            Error::Internal(m) => Error::Internal(format!("{what}: {m}")),
            e @ Error::OsNotSupported(_) => e,
            Error::Backend { context, status } => Error::Backend {
                context: format!("{what}: {context}"),
                status,
            },
        }
    }
}

/// The refusal of a workload whose OS no backend here runs. It becomes FailedPrecondition
/// with a `google.rpc.ErrorInfo` detail, so cluster tooling can place the pod elsewhere.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OsNotSupported {
    pub required_os: String,
    /// The OSes this node's backends run, sorted.
    pub node_os: Vec<String>,
    pub image: String,
    pub pod: String,
}

pub const ERROR_DOMAIN: &str = "crimux.io";
pub const REASON_OS_NOT_SUPPORTED: &str = "OS_NOT_SUPPORTED";
pub const NODE_LABEL_PREFIX: &str = "crimux.io/os.";

impl std::fmt::Display for OsNotSupported {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let what = match (self.pod.is_empty(), self.image.is_empty()) {
            (false, false) => format!("pod {} (image {})", self.pod, self.image),
            (false, true) => format!("pod {}", self.pod),
            (true, false) => format!("image {}", self.image),
            (true, true) => "workload".to_string(),
        };
        write!(
            f,
            "{what} needs OS {:?}, but this node runs only [{}]; enable a crimux delegate \
             backend for {} on this node, or schedule the pod onto a node labelled {}{}=true",
            self.required_os,
            self.node_os.join(", "),
            self.required_os,
            NODE_LABEL_PREFIX,
            self.required_os
        )
    }
}

impl From<OsNotSupported> for Error {
    fn from(e: OsNotSupported) -> Self {
        Error::OsNotSupported(Box::new(e))
    }
}

impl From<Error> for Status {
    fn from(e: Error) -> Status {
        match e {
            Error::OsNotSupported(refusal) => {
                let metadata = HashMap::from([
                    ("required_os".to_string(), refusal.required_os.clone()),
                    ("node_os".to_string(), refusal.node_os.join(",")),
                    ("image".to_string(), refusal.image.clone()),
                    ("pod".to_string(), refusal.pod.clone()),
                ]);
                Status::with_error_details(
                    Code::FailedPrecondition,
                    refusal.to_string(),
                    ErrorDetails::with_error_info(REASON_OS_NOT_SUPPORTED, ERROR_DOMAIN, metadata),
                )
            }
            Error::Backend { context, status } => {
                Status::new(status.code(), format!("{context}: {}", status.message()))
            }
            other => Status::new(other.code(), other.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refusal() -> OsNotSupported {
        OsNotSupported {
            required_os: "windows".into(),
            node_os: vec!["linux".into()],
            image: "example.com/win:1".into(),
            pod: "default/web".into(),
        }
    }

    #[test]
    fn every_variant_maps_to_its_code() {
        let cases: Vec<(Error, Code)> = vec![
            (Error::InvalidArgument("x".into()), Code::InvalidArgument),
            (Error::NotFound("x".into()), Code::NotFound),
            (Error::AlreadyExists("x".into()), Code::AlreadyExists),
            (
                Error::FailedPrecondition("x".into()),
                Code::FailedPrecondition,
            ),
            (Error::Unauthenticated("x".into()), Code::Unauthenticated),
            (Error::PermissionDenied("x".into()), Code::PermissionDenied),
            (Error::Unavailable("x".into()), Code::Unavailable),
            (Error::DeadlineExceeded("x".into()), Code::DeadlineExceeded),
            (Error::Unimplemented("x".into()), Code::Unimplemented),
            (Error::Internal("x".into()), Code::Internal),
            (refusal().into(), Code::FailedPrecondition),
            (
                Error::backend("pull", Status::resource_exhausted("full")),
                Code::ResourceExhausted,
            ),
        ];
        for (err, code) in cases {
            let msg = err.to_string();
            let status: Status = err.into();
            assert_eq!(status.code(), code, "{msg}");
            assert!(status.message().contains(&msg) || msg.contains(status.message()));
        }
    }

    #[test]
    fn os_refusal_carries_error_info() {
        let status: Status = Error::from(refusal()).into();
        assert_eq!(status.code(), Code::FailedPrecondition);
        let msg = status.message();
        for needle in [
            "default/web",
            "windows",
            "linux",
            "delegate",
            "crimux.io/os.windows=true",
        ] {
            assert!(msg.contains(needle), "{needle:?} missing from {msg:?}");
        }
        let details = status.get_error_details();
        let info = details.error_info().expect("ErrorInfo detail");
        assert_eq!(info.reason, REASON_OS_NOT_SUPPORTED);
        assert_eq!(info.domain, ERROR_DOMAIN);
        assert_eq!(info.metadata["required_os"], "windows");
        assert_eq!(info.metadata["node_os"], "linux");
        assert_eq!(info.metadata["image"], "example.com/win:1");
        assert_eq!(info.metadata["pod"], "default/web");
    }

    #[test]
    fn context_keeps_code() {
        let e = Error::NotFound("no such image".into()).context("image busybox");
        assert_eq!(e.code(), Code::NotFound);
        assert_eq!(e.to_string(), "image busybox: no such image");
    }
}
