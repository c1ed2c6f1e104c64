//! The inner crimux's gRPC statuses as crimux errors, keeping their codes.
//!
//! The dispatcher and kubelet act on codes (NotFound on an unknown id, AlreadyExists,
//! FailedPrecondition), so a forwarded call must fail exactly as the inner crimux's call
//! did. An OS refusal (FailedPrecondition with the `OS_NOT_SUPPORTED` ErrorInfo) comes back
//! as [`Error::OsNotSupported`] so the outer crimux sends the same detail on.

use tonic::{Code, Status};
use tonic_types::StatusExt;

use crimux_core::error::{ERROR_DOMAIN, REASON_OS_NOT_SUPPORTED};
use crimux_core::{Error, OsNotSupported};

/// `status`, returned by the inner crimux to `rpc` called through backend `backend`, as a
/// crimux error of the same code.
pub(crate) fn from_status(backend: &str, rpc: &str, status: Status) -> Error {
    if let Some(refusal) = os_refusal(&status) {
        return refusal.into();
    }
    let inner = status.message();
    let message = format!("backend {backend}: {inner}");
    match status.code() {
        Code::InvalidArgument => Error::InvalidArgument(message),
        Code::NotFound => Error::NotFound(message),
        Code::AlreadyExists => Error::AlreadyExists(message),
        Code::FailedPrecondition => Error::FailedPrecondition(message),
        Code::Unauthenticated => Error::Unauthenticated(message),
        Code::PermissionDenied => Error::PermissionDenied(message),
        Code::Unavailable => Error::Unavailable(format!(
            "backend {backend}: {rpc} on the crimux it forwards to failed: {inner}"
        )),
        Code::DeadlineExceeded => Error::DeadlineExceeded(message),
        Code::Unimplemented => Error::Unimplemented(message),
        Code::Internal => Error::Internal(message),
        // ResourceExhausted, Cancelled, Unknown, ...: the status passes through as it is.
        _ => Error::backend(format!("backend {backend}: {rpc}"), status),
    }
}

/// The OS refusal a status carries as its ErrorInfo detail, if it is one.
fn os_refusal(status: &Status) -> Option<OsNotSupported> {
    if status.code() != Code::FailedPrecondition {
        return None;
    }
    let details = status.get_error_details();
    let info = details.error_info()?;
    if info.reason != REASON_OS_NOT_SUPPORTED || info.domain != ERROR_DOMAIN {
        return None;
    }
    let field = |k: &str| info.metadata.get(k).cloned().unwrap_or_default();
    Some(OsNotSupported {
        required_os: field("required_os"),
        node_os: field("node_os")
            .split(',')
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect(),
        image: field("image"),
        pod: field("pod"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_survive_the_forward() {
        let codes = [
            Code::InvalidArgument,
            Code::NotFound,
            Code::AlreadyExists,
            Code::FailedPrecondition,
            Code::Unauthenticated,
            Code::PermissionDenied,
            Code::Unavailable,
            Code::DeadlineExceeded,
            Code::Unimplemented,
            Code::Internal,
            Code::ResourceExhausted,
            Code::Cancelled,
            Code::Unknown,
        ];
        for code in codes {
            let err = from_status("wsl", "ContainerStatus", Status::new(code, "inner says"));
            assert_eq!(err.code(), code);
            let msg = err.to_string();
            assert!(msg.contains("inner says") && msg.contains("wsl"), "{msg}");
            assert_eq!(Status::from(err).code(), code);
        }
    }

    #[test]
    fn os_refusal_keeps_its_error_info() {
        let refusal = OsNotSupported {
            required_os: "windows".into(),
            node_os: vec!["linux".into()],
            image: "mcr.microsoft.com/nanoserver:ltsc2022".into(),
            pod: "default/web".into(),
        };
        let status = Status::from(Error::from(refusal.clone()));
        match from_status("wsl", "PullImage", status) {
            Error::OsNotSupported(got) => assert_eq!(*got, refusal),
            other => panic!("not an OS refusal: {other:?}"),
        }
        let plain = from_status("wsl", "PullImage", Status::failed_precondition("no"));
        assert!(matches!(plain, Error::FailedPrecondition(_)));
    }
}
