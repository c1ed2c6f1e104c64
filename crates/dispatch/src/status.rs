//! Node readiness merged from every backend's, and container events merged into one
//! stream.
//!
//! The runtime is ready when the primary is: kubelet must not see a node whose primary
//! cannot run pods as ready, while a delegate being down only affects pods placed on it.
//! The network is ready when every backend that answered says so: a pod may land on any.
//! Each backend also gets a condition of its own (`BackendReachable/<name>`), false with
//! the error when it cannot be reached: while it is down its pods are listed from crimux's
//! records, and this condition is the status that says why.

use futures::stream::{self, BoxStream, StreamExt};
use tokio::sync::broadcast;

use crimux_core::status::{BackendStatus, ContainerEvent};
use crimux_core::BackendRole;

use crate::dispatcher::Dispatcher;

/// Reason used when the primary cannot report its status at all.
pub const RUNTIME_UNREACHABLE_REASON: &str = "PrimaryBackendUnreachable";
/// Reason used when no backend reported its network.
pub const NETWORK_UNKNOWN_REASON: &str = "NetworkPluginNotReady";

/// Type of the per-backend condition: this prefix, then the backend's name.
pub const BACKEND_CONDITION_PREFIX: &str = "BackendReachable/";
/// Reason of a per-backend condition whose backend does not answer.
pub const BACKEND_UNREACHABLE_REASON: &str = "BackendUnreachable";

/// A condition of the node beyond runtime and network readiness (CRI `RuntimeCondition`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeCondition {
    pub kind: String,
    pub status: bool,
    pub reason: String,
    pub message: String,
}

/// One backend's answer to a status call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackendReport {
    pub name: String,
    pub role: BackendRole,
    /// The platform it runs (reported in verbose Status, which is how a forwarding
    /// `kind = "cri"` backend learns the platform of the crimux it forwards to).
    pub platform: crimux_core::Platform,
    /// The status, or why it could not be had.
    pub status: Result<BackendStatus, String>,
}

/// The node's readiness, as the CRI Status reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeStatus {
    pub runtime_ready: bool,
    pub runtime_reason: String,
    pub runtime_message: String,
    pub network_ready: bool,
    pub network_reason: String,
    pub network_message: String,
    /// One condition per backend: reachable, or why not.
    pub conditions: Vec<NodeCondition>,
    /// Every backend's own answer, for verbose status.
    pub backends: Vec<BackendReport>,
}

/// The per-backend conditions of [`NodeStatus::conditions`].
fn backend_conditions(reports: &[BackendReport]) -> Vec<NodeCondition> {
    reports
        .iter()
        .map(|r| match &r.status {
            Ok(_) => NodeCondition {
                kind: format!("{BACKEND_CONDITION_PREFIX}{}", r.name),
                status: true,
                reason: String::new(),
                message: String::new(),
            },
            Err(e) => NodeCondition {
                kind: format!("{BACKEND_CONDITION_PREFIX}{}", r.name),
                status: false,
                reason: BACKEND_UNREACHABLE_REASON.to_string(),
                message: format!(
                    "{} backend {} is unreachable: {e}; its pods and containers are listed \
                     with their last known state and operations on them fail with Unavailable",
                    r.role, r.name
                ),
            },
        })
        .collect()
}

/// Merges per-backend reports; see the module doc.
pub fn merge_status(reports: Vec<BackendReport>) -> NodeStatus {
    let primary = reports.iter().find(|r| r.role == BackendRole::Primary);
    let (runtime_ready, runtime_reason, runtime_message) =
        match primary.map(|p| (&p.name, &p.status)) {
            Some((_, Ok(s))) => (s.runtime_ready, s.runtime_reason.clone(), String::new()),
            Some((name, Err(e))) => (
                false,
                RUNTIME_UNREACHABLE_REASON.to_string(),
                format!("backend {name}: {e}"),
            ),
            None => (
                false,
                RUNTIME_UNREACHABLE_REASON.to_string(),
                "no primary backend".to_string(),
            ),
        };
    let answered: Vec<(&String, &BackendStatus)> = reports
        .iter()
        .filter_map(|r| r.status.as_ref().ok().map(|s| (&r.name, s)))
        .collect();
    let not_ready = answered.iter().find(|(_, s)| !s.network_ready);
    let (network_ready, network_reason, network_message) = match (answered.is_empty(), not_ready) {
        (true, _) => (
            false,
            NETWORK_UNKNOWN_REASON.to_string(),
            "no backend reported its network status".to_string(),
        ),
        (false, Some((name, s))) => (
            false,
            if s.network_reason.is_empty() {
                NETWORK_UNKNOWN_REASON.to_string()
            } else {
                s.network_reason.clone()
            },
            format!("backend {name}: {}", s.network_message),
        ),
        (false, None) => (true, String::new(), String::new()),
    };
    NodeStatus {
        runtime_ready,
        runtime_reason,
        runtime_message,
        network_ready,
        network_reason,
        network_message,
        conditions: backend_conditions(&reports),
        backends: reports,
    }
}

impl Dispatcher {
    /// Asks every backend for its status at once and merges the answers.
    pub async fn status(&self) -> NodeStatus {
        let targets = self.fan_out();
        let answers = futures::future::join_all(targets.iter().map(|(_, b)| b.status())).await;
        let reports = targets
            .iter()
            .zip(answers)
            .map(|((_, b), status)| BackendReport {
                name: b.info().name.clone(),
                role: b.info().role,
                platform: b.info().platform.clone(),
                status: status.map_err(|e| e.to_string()),
            })
            .collect();
        merge_status(reports)
    }

    /// Every backend's container events as one stream, or `None` when no backend reports
    /// events. A subscriber that falls behind loses the oldest events (logged); the stream
    /// ends when every backend's sender is gone.
    pub fn subscribe_events(&self) -> Option<BoxStream<'static, ContainerEvent>> {
        let receivers: Vec<(String, broadcast::Receiver<ContainerEvent>)> = self
            .backends
            .iter()
            .filter_map(|b| b.subscribe_events().map(|rx| (b.info().name.clone(), rx)))
            .collect();
        if receivers.is_empty() {
            return None;
        }
        let streams = receivers.into_iter().map(|(name, rx)| {
            stream::unfold((name, rx), |(name, mut rx)| async move {
                loop {
                    match rx.recv().await {
                        Ok(event) => return Some((event, (name, rx))),
                        Err(broadcast::error::RecvError::Lagged(n)) => {
                            tracing::warn!(backend = %name, lost = n, "container event subscriber fell behind");
                        }
                        Err(broadcast::error::RecvError::Closed) => return None,
                    }
                }
            })
            .boxed()
        });
        Some(stream::select_all(streams).boxed())
    }
}
