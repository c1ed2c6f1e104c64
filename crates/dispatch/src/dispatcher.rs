//! The composite dispatcher: the node's backends behind one façade.
//!
//! The CRI adapter calls the dispatcher as if it were one runtime; the dispatcher asks its
//! [`Router`] which backend (or which backends, for fan-out calls) should answer, then
//! awaits them with no lock held.
//!
//! Pods and containers are found through the durable route table (`routes.rs`): the
//! sandbox's backend is recorded before the backend is asked to create it, and a container
//! is recorded against its sandbox. Both locks here are std mutexes held for synchronous
//! work only (the route file is a few kilobytes, written under the lock so that writes
//! land in order), never across an `.await`.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

use futures::future::join_all;
use tonic::Code;

use crimux_core::status::{ContainerSummary, SandboxSummary};
use crimux_core::{Backend, BackendInfo, ContainerId, Error, PodSandboxId, Result};

use crate::routes::{RouteStore, RouteTable, SandboxRoute};
use crate::routing::{BackendIdx, PlacedBy, PodPlacement, Router};

/// The route table, the ids whose creation is in flight, and where the table is saved.
#[derive(Debug)]
pub(crate) struct RouteState {
    pub(crate) table: RouteTable,
    /// Sandbox and container ids routed before their backend call returned: a concurrent
    /// reconcile must not drop them for not being listed yet.
    pub(crate) pending: HashSet<String>,
    store: RouteStore,
}

impl RouteState {
    /// Applies `change` and saves; on a failed save nothing changes, so a caller that
    /// must persist a route before acting can refuse to act.
    pub(crate) fn commit(&mut self, change: impl FnOnce(&mut RouteTable)) -> Result<()> {
        let mut next = self.table.clone();
        change(&mut next);
        self.store.save(&next)?;
        self.table = next;
        Ok(())
    }

    /// Applies `change` and saves; a failed save is logged and the change kept in memory
    /// (used to forget routes: reconciling repairs the file later).
    pub(crate) fn commit_lossy(&mut self, change: impl FnOnce(&mut RouteTable)) {
        change(&mut self.table);
        if let Err(e) = self.store.save(&self.table) {
            tracing::warn!(error = %e, "cannot save routes; kept in memory");
        }
    }
}

/// The node's backends (exactly one primary), the router that picks among them, and the
/// routes of every pod and container.
pub struct Dispatcher {
    pub(crate) backends: Vec<Arc<dyn Backend>>,
    router: Mutex<Router>,
    routes: Mutex<RouteState>,
}

impl std::fmt::Debug for Dispatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self
            .backends
            .iter()
            .map(|b| b.info().name.as_str())
            .collect();
        f.debug_struct("Dispatcher")
            .field("backends", &names)
            .finish_non_exhaustive()
    }
}

impl Dispatcher {
    /// Validates the topology (see [`Router::new`]), takes ownership of the backends and
    /// loads the routes saved under `state_dir` (`None`: routes in memory only, for
    /// tests). Call [`Dispatcher::reconcile`] next to rebuild routes from the backends.
    pub fn new(backends: Vec<Arc<dyn Backend>>, state_dir: Option<PathBuf>) -> Result<Dispatcher> {
        let infos: Vec<BackendInfo> = backends.iter().map(|b| b.info().clone()).collect();
        let router = Router::new(infos)?;
        let store = RouteStore::new(state_dir.as_deref());
        let mut table = store.load()?;
        let names: Vec<&str> = backends.iter().map(|b| b.info().name.as_str()).collect();
        table.retain_backends(&names);
        tracing::info!(
            sandboxes = table.sandboxes.len(),
            containers = table.containers.len(),
            path = ?store.path(),
            "loaded routes"
        );
        Ok(Dispatcher {
            backends,
            router: Mutex::new(router),
            routes: Mutex::new(RouteState {
                table,
                pending: HashSet::new(),
                store,
            }),
        })
    }

    /// Rebuilds every reachable backend's routes from its own lists. A backend that cannot
    /// answer keeps the routes loaded from the file; it is reconciled on its next
    /// successful list.
    pub async fn reconcile(&self) {
        let targets = self.fan_out();
        let lists = join_all(targets.iter().map(|(_, b)| async move {
            let sandboxes = b.list_pod_sandboxes().await?;
            let containers = b.list_containers().await?;
            Ok::<_, Error>((sandboxes, containers))
        }))
        .await;
        for ((_, backend), listed) in targets.iter().zip(lists) {
            let name = &backend.info().name;
            match listed {
                Ok((sandboxes, containers)) => {
                    self.reconcile_backend(name, Some(&sandboxes), Some(&containers));
                }
                Err(e) => {
                    tracing::warn!(backend = %name, error = %e, "cannot list backend at start; keeping its saved routes")
                }
            }
        }
    }

    /// Replaces one backend's routes by what it just listed (sandboxes, containers or
    /// both), saving if anything changed.
    pub(crate) fn reconcile_backend(
        &self,
        backend: &str,
        sandboxes: Option<&[SandboxSummary]>,
        containers: Option<&[ContainerSummary]>,
    ) {
        let mut routes = self.routes();
        let RouteState { table, pending, .. } = &mut *routes;
        let mut changed = false;
        if let Some(sandboxes) = sandboxes {
            changed |= table.reconcile_sandboxes(backend, sandboxes, pending);
        }
        if let Some(containers) = containers {
            changed |= table.reconcile_containers(backend, containers, pending);
        }
        if changed {
            routes.commit_lossy(|_| {});
        }
    }

    /// The routes, locked; never held across an `.await`.
    pub(crate) fn routes(&self) -> MutexGuard<'_, RouteState> {
        // Every update replaces the table whole or is a single map operation, so a
        // poisoned lock still guards a consistent table.
        self.routes.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A copy of the route table, for tests and diagnostics.
    pub fn route_table(&self) -> RouteTable {
        self.routes().table.clone()
    }

    /// The backend with this configured name.
    pub(crate) fn backend_named(&self, name: &str) -> Option<Arc<dyn Backend>> {
        self.backends
            .iter()
            .find(|b| b.info().name == name)
            .cloned()
    }

    /// The full id `given` names, its route and its backend; unknown → NotFound.
    pub(crate) fn sandbox_route(
        &self,
        given: &str,
    ) -> Result<(PodSandboxId, SandboxRoute, Arc<dyn Backend>)> {
        let routes = self.routes();
        let id = routes.table.resolve_sandbox(given)?;
        let route = routes
            .table
            .sandboxes
            .get(&id)
            .ok_or_else(|| Error::NotFound(format!("pod sandbox {given:?} not found")))?;
        let backend = self.backend_named(&route.backend).ok_or_else(|| {
            Error::Internal(format!(
                "pod sandbox {id} routes to unknown backend {:?}",
                route.backend
            ))
        })?;
        Ok((id, route.clone(), backend))
    }

    /// The full id `given` names, its sandbox and their backend; unknown → NotFound.
    pub(crate) fn container_route(
        &self,
        given: &str,
    ) -> Result<(ContainerId, PodSandboxId, Arc<dyn Backend>)> {
        let routes = self.routes();
        let id = routes.table.resolve_container(given)?;
        let (sandbox, route) = routes
            .table
            .container_backend(&id)
            .ok_or_else(|| Error::NotFound(format!("container {given:?} has no pod sandbox")))?;
        let backend = self.backend_named(&route.backend).ok_or_else(|| {
            Error::Internal(format!(
                "container {id} routes to unknown backend {:?}",
                route.backend
            ))
        })?;
        Ok((id, sandbox.clone(), backend))
    }

    /// Whether an error means the backend could not be reached (lists answer for it from
    /// the records).
    pub(crate) fn is_unavailable(e: &Error) -> bool {
        e.code() == Code::Unavailable
    }

    /// Names the backend in an Unavailable error from a routed call, so the caller learns
    /// which backend is unreachable; other errors pass unchanged.
    pub(crate) fn unreachable(backend: &Arc<dyn Backend>) -> impl Fn(Error) -> Error + '_ {
        move |e| {
            if Dispatcher::is_unavailable(&e) {
                e.context(format_args!(
                    "backend {} is unreachable",
                    backend.info().name
                ))
            } else {
                e
            }
        }
    }

    /// Keeps the summaries a successful status call returned as the last known state of
    /// their (routed) sandbox and containers, saving when anything changed.
    pub(crate) fn remember(&self, sandboxes: &[&SandboxSummary], containers: &[&ContainerSummary]) {
        let mut routes = self.routes();
        let mut changed = false;
        for s in sandboxes {
            changed |= routes.table.record_sandbox(s);
        }
        for c in containers {
            changed |= routes.table.record_container(c);
        }
        if changed {
            routes.commit_lossy(|_| {});
        }
    }

    /// The router, locked. Callers keep the guard for synchronous decisions only and
    /// never across an `.await`.
    pub(crate) fn router(&self) -> MutexGuard<'_, Router> {
        // A panic while holding the lock leaves the maps consistent (every update is a
        // single insert), so a poisoned lock is still safe to use.
        self.router
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn backends(&self) -> &[Arc<dyn Backend>] {
        &self.backends
    }

    pub fn backend(&self, idx: BackendIdx) -> &Arc<dyn Backend> {
        &self.backends[idx.0]
    }

    pub fn primary(&self) -> &Arc<dyn Backend> {
        let idx = self.router().primary();
        self.backend(idx)
    }

    /// The OSes this node runs, sorted and deduplicated.
    pub fn node_os(&self) -> Vec<String> {
        self.router().node_os()
    }

    /// Named runtime handlers served on this node, sorted.
    pub fn runtime_handlers(&self) -> Vec<String> {
        self.router().runtime_handlers()
    }

    /// The OS learned for a pod from the images pulled for it.
    pub fn pod_os_hint(&self, pod_uid: &str) -> Option<String> {
        self.router().pod_os_hint(pod_uid).map(str::to_string)
    }

    /// The OS of an image, as learned when it was pulled through this dispatcher.
    pub fn image_os(&self, id: &crimux_core::ImageId) -> Option<String> {
        self.router().image_os(id).map(str::to_string)
    }

    /// The backend a pod runs on (used by the RuntimeService's sandbox calls).
    pub fn place_pod(&self, pod: &PodPlacement<'_>) -> Result<(Arc<dyn Backend>, PlacedBy)> {
        let (idx, by) = self.router().place_pod(pod)?;
        let backend = self.backend(idx).clone();
        tracing::debug!(pod = pod.name, backend = %backend.info().name, placed_by = ?by, "placed pod");
        Ok((backend, by))
    }

    /// Backends in fan-out order (primary first), with their index.
    pub(crate) fn fan_out(&self) -> Vec<(BackendIdx, Arc<dyn Backend>)> {
        let order = self.router().fan_out_order();
        order
            .into_iter()
            .map(|idx| (idx, self.backend(idx).clone()))
            .collect()
    }
}
