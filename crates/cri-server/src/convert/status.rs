//! List filters in, node status conditions and container events out.

use k8s_cri::v1;

use crimux_core::status::{ContainerEvent, ContainerEventKind};
use crimux_core::Result;
use crimux_dispatch::{ContainerFilter, NodeStatus, SandboxFilter};

use super::btree;
use super::container::{container_state, container_status_to_proto};
use super::sandbox::{sandbox_state, sandbox_status_to_proto};

pub const RUNTIME_READY: &str = "RuntimeReady";
pub const NETWORK_READY: &str = "NetworkReady";

pub fn sandbox_filter(f: Option<v1::PodSandboxFilter>) -> Result<SandboxFilter> {
    let Some(f) = f else {
        return Ok(SandboxFilter::default());
    };
    Ok(SandboxFilter {
        id: f.id,
        state: f.state.map(|s| sandbox_state(s.state)).transpose()?,
        labels: btree(f.label_selector),
    })
}

pub fn sandbox_stats_filter(f: Option<v1::PodSandboxStatsFilter>) -> SandboxFilter {
    f.map(|f| SandboxFilter {
        id: f.id,
        state: None,
        labels: btree(f.label_selector),
    })
    .unwrap_or_default()
}

pub fn container_filter(f: Option<v1::ContainerFilter>) -> Result<ContainerFilter> {
    let Some(f) = f else {
        return Ok(ContainerFilter::default());
    };
    Ok(ContainerFilter {
        id: f.id,
        sandbox_id: f.pod_sandbox_id,
        state: f.state.map(|s| container_state(s.state)).transpose()?,
        labels: btree(f.label_selector),
    })
}

pub fn container_stats_filter(f: Option<v1::ContainerStatsFilter>) -> ContainerFilter {
    f.map(|f| ContainerFilter {
        id: f.id,
        sandbox_id: f.pod_sandbox_id,
        state: None,
        labels: btree(f.label_selector),
    })
    .unwrap_or_default()
}

/// The two conditions kubelet requires.
pub fn runtime_conditions(s: &NodeStatus) -> Vec<v1::RuntimeCondition> {
    let mut conditions = vec![
        v1::RuntimeCondition {
            r#type: RUNTIME_READY.into(),
            status: s.runtime_ready,
            reason: s.runtime_reason.clone(),
            message: s.runtime_message.clone(),
        },
        v1::RuntimeCondition {
            r#type: NETWORK_READY.into(),
            status: s.network_ready,
            reason: s.network_reason.clone(),
            message: s.network_message.clone(),
        },
    ];
    // One per backend: which one is unreachable, and why.
    conditions.extend(s.conditions.iter().map(|c| v1::RuntimeCondition {
        r#type: c.kind.clone(),
        status: c.status,
        reason: c.reason.clone(),
        message: c.message.clone(),
    }));
    conditions
}

/// Each backend's own answer as JSON, for verbose Status. `platform` (`os/arch[/variant]`)
/// is how a forwarding backend learns what the crimux it forwards to runs
/// (`platform_from_status_info`).
pub fn backend_statuses_json(s: &NodeStatus) -> serde_json::Value {
    s.backends
        .iter()
        .map(|b| match &b.status {
            Ok(st) => serde_json::json!({
                "name": b.name,
                "role": b.role.to_string(),
                "platform": b.platform.to_string(),
                "runtimeReady": st.runtime_ready,
                "runtimeReason": st.runtime_reason,
                "networkReady": st.network_ready,
                "networkReason": st.network_reason,
                "networkMessage": st.network_message,
            }),
            Err(e) => serde_json::json!({
                "name": b.name,
                "role": b.role.to_string(),
                "platform": b.platform.to_string(),
                "error": e,
            }),
        })
        .collect()
}

pub fn event_kind_to_proto(k: ContainerEventKind) -> v1::ContainerEventType {
    match k {
        ContainerEventKind::Created => v1::ContainerEventType::ContainerCreatedEvent,
        ContainerEventKind::Started => v1::ContainerEventType::ContainerStartedEvent,
        ContainerEventKind::Stopped => v1::ContainerEventType::ContainerStoppedEvent,
        ContainerEventKind::Deleted => v1::ContainerEventType::ContainerDeletedEvent,
    }
}

pub fn event_to_proto(e: &ContainerEvent) -> v1::ContainerEventResponse {
    v1::ContainerEventResponse {
        container_id: e.container_id.0.clone(),
        container_event_type: event_kind_to_proto(e.kind) as i32,
        created_at: e.created_at,
        pod_sandbox_status: e.sandbox.as_ref().map(sandbox_status_to_proto),
        containers_statuses: e.containers.iter().map(container_status_to_proto).collect(),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, HashMap};

    use crimux_core::status::{ContainerState, SandboxState};
    use crimux_core::ContainerId;
    use crimux_dispatch::BackendReport;

    use super::*;

    #[test]
    fn filters() {
        let labels = HashMap::from([("app".to_string(), "web".to_string())]);
        let want_labels = BTreeMap::from([("app".to_string(), "web".to_string())]);
        assert_eq!(
            sandbox_filter(None).expect("none"),
            SandboxFilter::default()
        );
        let f = sandbox_filter(Some(v1::PodSandboxFilter {
            id: "ab".into(),
            state: Some(v1::PodSandboxStateValue {
                state: v1::PodSandboxState::SandboxNotready as i32,
            }),
            label_selector: labels.clone(),
        }))
        .expect("valid");
        assert_eq!(
            f,
            SandboxFilter {
                id: "ab".into(),
                state: Some(SandboxState::NotReady),
                labels: want_labels.clone()
            }
        );
        let f = container_filter(Some(v1::ContainerFilter {
            id: "c".into(),
            state: Some(v1::ContainerStateValue {
                state: v1::ContainerState::ContainerRunning as i32,
            }),
            pod_sandbox_id: "p".into(),
            label_selector: labels.clone(),
        }))
        .expect("valid");
        assert_eq!(
            f,
            ContainerFilter {
                id: "c".into(),
                sandbox_id: "p".into(),
                state: Some(ContainerState::Running),
                labels: want_labels.clone()
            }
        );
        let bad = container_filter(Some(v1::ContainerFilter {
            state: Some(v1::ContainerStateValue { state: 99 }),
            ..Default::default()
        }));
        assert!(bad.is_err());
        let f = container_stats_filter(Some(v1::ContainerStatsFilter {
            id: "c".into(),
            pod_sandbox_id: "p".into(),
            label_selector: labels.clone(),
        }));
        assert_eq!(
            (f.id.as_str(), f.sandbox_id.as_str(), f.state),
            ("c", "p", None)
        );
        let f = sandbox_stats_filter(Some(v1::PodSandboxStatsFilter {
            id: "s".into(),
            label_selector: labels,
        }));
        assert_eq!((f.id.as_str(), f.labels), ("s", want_labels));
    }

    #[test]
    fn conditions_and_events() {
        let node = NodeStatus {
            runtime_ready: true,
            runtime_reason: String::new(),
            runtime_message: String::new(),
            network_ready: false,
            network_reason: "NetworkPluginNotReady".into(),
            network_message: "backend a: no CNI".into(),
            conditions: vec![crimux_dispatch::NodeCondition {
                kind: "BackendReachable/a".into(),
                status: false,
                reason: "BackendUnreachable".into(),
                message: "down".into(),
            }],
            backends: vec![BackendReport {
                name: "a".into(),
                role: crimux_core::BackendRole::Primary,
                platform: crimux_core::Platform::host(),
                status: Err("down".into()),
            }],
        };
        let c = runtime_conditions(&node);
        assert_eq!((c[0].r#type.as_str(), c[0].status), ("RuntimeReady", true));
        assert_eq!((c[1].r#type.as_str(), c[1].status), ("NetworkReady", false));
        assert_eq!(c[1].message, "backend a: no CNI");
        assert_eq!(
            (c[2].r#type.as_str(), c[2].status),
            ("BackendReachable/a", false)
        );
        let json = backend_statuses_json(&node);
        assert_eq!(json[0]["error"], "down");
        assert_eq!(
            json[0]["platform"],
            crimux_core::Platform::host().to_string()
        );
        for (kind, want) in [
            (
                ContainerEventKind::Created,
                v1::ContainerEventType::ContainerCreatedEvent,
            ),
            (
                ContainerEventKind::Started,
                v1::ContainerEventType::ContainerStartedEvent,
            ),
            (
                ContainerEventKind::Stopped,
                v1::ContainerEventType::ContainerStoppedEvent,
            ),
            (
                ContainerEventKind::Deleted,
                v1::ContainerEventType::ContainerDeletedEvent,
            ),
        ] {
            let e = event_to_proto(&ContainerEvent {
                container_id: ContainerId::from("c"),
                kind,
                created_at: 42,
                sandbox: None,
                containers: Vec::new(),
            });
            assert_eq!(e.container_event_type, want as i32);
            assert_eq!((e.container_id.as_str(), e.created_at), ("c", 42));
        }
    }
}
