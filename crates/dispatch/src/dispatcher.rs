//! The composite dispatcher: the node's backends behind one façade.
//!
//! The CRI adapter calls the dispatcher as if it were one runtime; the dispatcher asks its
//! [`Router`] which backend (or which backends, for fan-out calls) should answer, then
//! awaits them with no lock held.

use std::sync::{Arc, Mutex, MutexGuard};

use crimux_core::{Backend, BackendInfo, Result};

use crate::routing::{BackendIdx, PlacedBy, PodPlacement, Router};

/// The node's backends (exactly one primary) and the router that picks among them.
pub struct Dispatcher {
    pub(crate) backends: Vec<Arc<dyn Backend>>,
    router: Mutex<Router>,
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
    /// Validates the topology (see [`Router::new`]) and takes ownership of the backends.
    pub fn new(backends: Vec<Arc<dyn Backend>>) -> Result<Dispatcher> {
        let infos: Vec<BackendInfo> = backends.iter().map(|b| b.info().clone()).collect();
        let router = Router::new(infos)?;
        Ok(Dispatcher {
            backends,
            router: Mutex::new(router),
        })
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
