//! Pod sandbox calls: placement and id on creation, then the recorded backend for the
//! rest of the pod's life.
//!
//! RunPodSandbox writes the route before asking the backend, so a crimux killed mid-create
//! still knows where to look (and reconciling drops the route if the backend never made
//! the sandbox). A failed create drops the route again.
//!
//! The id is the dispatcher's own, unless the pod asks for one with
//! [`crimux_core::REQUESTED_SANDBOX_ID`]: another crimux forwarding to this one (a Windows
//! crimux and the Linux crimux in its WSL2 distro) sends its own id, so both route tables
//! name the pod alike. The annotation is checked, honoured and stripped here, so neither
//! the backend nor any status ever sees it.

use std::borrow::Cow;
use std::collections::BTreeMap;

use futures::future::join_all;

use crimux_core::status::{
    ContainerStatus, ContainerSummary, SandboxState, SandboxStats, SandboxStatus, SandboxSummary,
};
use crimux_core::{ContainerId, Error, PodSandboxId, Result, REQUESTED_SANDBOX_ID};

use crate::dispatcher::{Dispatcher, RouteState};
use crate::routes::SandboxRoute;
use crate::routing::PodPlacement;

/// A pod's status with its containers', as PodSandboxStatus reports them (the evented
/// PLEG reads the containers from here).
#[derive(Clone, Debug, PartialEq)]
pub struct PodStatusReport {
    pub sandbox: SandboxStatus,
    pub containers: Vec<ContainerStatus>,
    /// Unix nanoseconds when the statuses were gathered.
    pub timestamp: i64,
}

/// A new sandbox or container id: 64 random lowercase hex characters, as containerd's CRI
/// makes them.
pub fn new_id() -> String {
    let bytes: [u8; 32] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The id asked for by the annotation `key`, if present: 64 lowercase hex characters,
/// else InvalidArgument naming the annotation.
pub(crate) fn requested_id(
    annotations: &BTreeMap<String, String>,
    key: &str,
) -> Result<Option<String>> {
    let Some(value) = annotations.get(key) else {
        return Ok(None);
    };
    let valid = value.len() == 64
        && value
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    if !valid {
        return Err(Error::InvalidArgument(format!(
            "annotation {key}: {value:?} is not an id (64 lowercase hex characters)"
        )));
    }
    Ok(Some(value.clone()))
}

/// `config` with the annotation `key` removed when it is `present`; borrowed, not cloned,
/// when it is not (the usual case).
pub(crate) fn without<'a, T: Clone>(
    config: &'a T,
    annotations: impl Fn(&mut T) -> &mut BTreeMap<String, String>,
    key: &str,
    present: bool,
) -> Cow<'a, T> {
    if !present {
        return Cow::Borrowed(config);
    }
    let mut owned = config.clone();
    annotations(&mut owned).remove(key);
    Cow::Owned(owned)
}

/// AlreadyExists when `id` names a routed or pending sandbox or container (both are
/// containerd containers in one namespace, so they share the id space).
pub(crate) fn check_free(routes: &RouteState, id: &str, key: &str) -> Result<()> {
    let taken = routes.pending.contains(id)
        || routes
            .table
            .sandboxes
            .contains_key(&PodSandboxId(id.to_string()))
        || routes
            .table
            .containers
            .contains_key(&ContainerId(id.to_string()));
    if taken {
        return Err(Error::AlreadyExists(format!(
            "annotation {key}: id {id} is already in use"
        )));
    }
    Ok(())
}

/// Unix nanoseconds now.
pub(crate) fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or_default()
}

impl Dispatcher {
    /// Places the pod, routes a new id to the chosen backend and asks it to run the
    /// sandbox. The same pod incarnation (namespace, name, uid, attempt) twice is
    /// `AlreadyExists`, whichever backend holds the first.
    #[tracing::instrument(skip_all, fields(pod = %config.metadata.pod_name(), attempt = config.metadata.attempt))]
    pub async fn run_pod_sandbox(
        &self,
        config: &crimux_core::sandbox::SandboxConfig,
    ) -> Result<PodSandboxId> {
        let requested = requested_id(&config.annotations, REQUESTED_SANDBOX_ID)?;
        let config = without(
            config,
            |c| &mut c.annotations,
            REQUESTED_SANDBOX_ID,
            requested.is_some(),
        );
        let config = config.as_ref();
        let meta = &config.metadata;
        let pod_name = meta.pod_name();
        let (backend, _) = self.place_pod(&PodPlacement {
            uid: &meta.uid,
            name: &pod_name,
            runtime_handler: &config.runtime_handler,
            annotations: &config.annotations,
        })?;
        let name = backend.info().name.clone();
        let id = {
            let mut routes = self.routes();
            if let Some(existing) = routes.table.duplicate_of(meta) {
                return Err(Error::AlreadyExists(format!(
                    "pod {pod_name} (uid {:?}, attempt {}) already has sandbox {existing}",
                    meta.uid, meta.attempt
                )));
            }
            let id = match requested {
                Some(id) => {
                    check_free(&routes, &id, REQUESTED_SANDBOX_ID)?;
                    PodSandboxId(id)
                }
                None => loop {
                    let id = PodSandboxId(new_id());
                    if !routes.table.sandboxes.contains_key(&id) {
                        break id;
                    }
                },
            };
            // The record says what the pod will be once the backend answers: should the
            // backend become unreachable before its next list, the pod is still listed.
            let record = SandboxSummary {
                id: id.clone(),
                metadata: meta.clone(),
                state: SandboxState::Ready,
                created_at: now_ns(),
                labels: config.labels.clone(),
                annotations: config.annotations.clone(),
                runtime_handler: config.runtime_handler.clone(),
            };
            routes.commit(|t| {
                t.sandboxes
                    .insert(id.clone(), SandboxRoute::new(&name, meta));
                t.record_sandbox(&record);
            })?;
            routes.pending.insert(id.0.clone());
            id
        };
        let result = backend
            .run_pod_sandbox(&id, config)
            .await
            .map_err(Dispatcher::unreachable(&backend));
        let mut routes = self.routes();
        routes.pending.remove(id.as_str());
        match result {
            Ok(()) => {
                tracing::info!(pod_id = %id, backend = %name, "pod sandbox running");
                Ok(id)
            }
            Err(e) => {
                routes.commit_lossy(|t| {
                    t.remove_sandbox(&id);
                });
                tracing::warn!(pod_id = %id, backend = %name, error = %e, "run pod sandbox failed; route dropped");
                Err(e)
            }
        }
    }

    /// Stops the pod on its backend. An unknown id succeeds (the CRI's idempotence).
    pub async fn stop_pod_sandbox(&self, given: &str) -> Result<()> {
        let (id, _, backend) = match self.sandbox_route(given) {
            Err(e) if e.is_not_found() => {
                tracing::debug!(
                    pod_id = given,
                    "stop of an unknown pod sandbox: nothing to do"
                );
                return Ok(());
            }
            other => other?,
        };
        backend
            .stop_pod_sandbox(&id)
            .await
            .map_err(Dispatcher::unreachable(&backend))
    }

    /// Removes the pod on its backend, then forgets its routes (its containers' too) and,
    /// with its last sandbox, what was learned about its OS. An unknown id succeeds.
    pub async fn remove_pod_sandbox(&self, given: &str) -> Result<()> {
        let (id, route, backend) = match self.sandbox_route(given) {
            Err(e) if e.is_not_found() => {
                tracing::debug!(
                    pod_id = given,
                    "remove of an unknown pod sandbox: nothing to do"
                );
                return Ok(());
            }
            other => other?,
        };
        match backend.remove_pod_sandbox(&id).await {
            Ok(()) => {}
            Err(e) if e.is_not_found() => {
                tracing::debug!(pod_id = %id, "backend no longer had the sandbox")
            }
            Err(e) => return Err(Dispatcher::unreachable(&backend)(e)),
        }
        let last_of_pod = {
            let mut routes = self.routes();
            routes.commit_lossy(|t| {
                t.remove_sandbox(&id);
            });
            !routes.table.sandboxes.values().any(|r| r.uid == route.uid)
        };
        // kubelet makes the next sandbox before removing the old one, so what was learned
        // is kept while the pod has another sandbox.
        if last_of_pod {
            self.router().forget_pod(&route.uid);
        }
        Ok(())
    }

    /// The pod's status and its containers' (a container that vanishes meanwhile is left
    /// out).
    /// An unreachable backend's pod is Unavailable, naming the backend. What is learned
    /// is kept as the last known state.
    pub async fn pod_sandbox_status(&self, given: &str, verbose: bool) -> Result<PodStatusReport> {
        let (id, _, backend) = self.sandbox_route(given)?;
        let unreachable = Dispatcher::unreachable(&backend);
        let sandbox = backend
            .pod_sandbox_status(&id, verbose)
            .await
            .map_err(&unreachable)?;
        let listed = backend.list_containers().await.map_err(&unreachable)?;
        let statuses = join_all(
            listed
                .iter()
                .filter(|c| c.sandbox_id == id)
                .map(|c| backend.container_status(&c.id, false)),
        )
        .await;
        let containers = statuses
            .into_iter()
            .filter_map(|s| match s {
                Ok(s) => Some(s),
                Err(e) => {
                    tracing::debug!(pod_id = %id, error = %e, "container status skipped");
                    None
                }
            })
            .collect::<Vec<ContainerStatus>>();
        let summaries: Vec<&ContainerSummary> = containers.iter().map(|c| &c.summary).collect();
        self.remember(&[&sandbox.summary], &summaries);
        Ok(PodStatusReport {
            sandbox,
            containers,
            timestamp: now_ns(),
        })
    }

    pub async fn pod_sandbox_stats(&self, given: &str) -> Result<SandboxStats> {
        let (id, _, backend) = self.sandbox_route(given)?;
        backend
            .pod_sandbox_stats(&id)
            .await
            .map_err(Dispatcher::unreachable(&backend))
    }
}
