//! Pod sandbox calls: placement and id on creation, then the recorded backend for the
//! rest of the pod's life.
//!
//! RunPodSandbox writes the route before asking the backend, so a crimux killed mid-create
//! still knows where to look (and reconciling drops the route if the backend never made
//! the sandbox). A failed create drops the route again.

use futures::future::join_all;

use crimux_core::status::{
    ContainerStatus, ContainerSummary, SandboxState, SandboxStats, SandboxStatus, SandboxSummary,
};
use crimux_core::{Error, PodSandboxId, Result};

use crate::dispatcher::Dispatcher;
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
            let id = loop {
                let id = PodSandboxId(new_id());
                if !routes.table.sandboxes.contains_key(&id) {
                    break id;
                }
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
