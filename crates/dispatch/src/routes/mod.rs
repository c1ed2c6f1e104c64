//! The durable route table: which backend holds each pod sandbox, and which sandbox each
//! container belongs to, with what crimux last saw of each.
//!
//! A container follows its pod, so only sandboxes name a backend. The table is small and
//! lives in `<root>/routes.json`, written atomically (temp file, fsync, rename, fsync of the
//! directory) on every change, so a crimux killed at any point restarts with every route it
//! had promised to a caller. The backends remain the source of truth:
//! [`RouteTable::reconcile_sandboxes`] and [`RouteTable::reconcile_containers`] rebuild one
//! backend's routes from what it lists, which also repairs a lost file.
//!
//! Next to the routes, [`LastKnown`] keeps each routed sandbox's and container's last
//! summary (state, metadata, labels, annotations, image, creation time), refreshed by
//! every successful list or status. While a backend is unreachable its pods and containers
//! are listed from these records, with their last known state.
//!
//! File format: version 2 added `last_known`; a version 1 file (without it) still loads,
//! and a version 1 reader ignores the new key.
//!
//! Architecture Invariant: this module is pure data plus file IO; it never talks to a
//! backend and never awaits.

mod store;

pub use store::RouteStore;

use std::collections::{BTreeMap, HashSet};

use serde::{Deserialize, Serialize};

use crimux_core::sandbox::SandboxMetadata;
use crimux_core::status::{ContainerSummary, SandboxState, SandboxSummary};
use crimux_core::{ContainerId, Error, PodSandboxId, Result};

/// The file name of the table under crimux's root.
pub const ROUTES_FILE: &str = "routes.json";
const FORMAT_VERSION: u32 = 2;

/// Where a pod sandbox lives, with its metadata for duplicate detection.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SandboxRoute {
    /// The backend's configured name (stable across restarts, unlike its index).
    pub backend: String,
    pub uid: String,
    pub name: String,
    pub namespace: String,
    pub attempt: u32,
}

impl SandboxRoute {
    pub fn new(backend: &str, meta: &SandboxMetadata) -> SandboxRoute {
        SandboxRoute {
            backend: backend.to_string(),
            uid: meta.uid.clone(),
            name: meta.name.clone(),
            namespace: meta.namespace.clone(),
            attempt: meta.attempt,
        }
    }

    fn same_pod(&self, meta: &SandboxMetadata) -> bool {
        self.uid == meta.uid
            && self.name == meta.name
            && self.namespace == meta.namespace
            && self.attempt == meta.attempt
    }

    fn metadata(&self) -> SandboxMetadata {
        SandboxMetadata {
            name: self.name.clone(),
            uid: self.uid.clone(),
            namespace: self.namespace.clone(),
            attempt: self.attempt,
        }
    }
}

/// The last summary seen of every routed sandbox and container. Only routed ids have a
/// record: dropping a route drops its record.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastKnown {
    #[serde(default)]
    pub sandboxes: BTreeMap<PodSandboxId, SandboxSummary>,
    #[serde(default)]
    pub containers: BTreeMap<ContainerId, ContainerSummary>,
}

/// Sandbox → backend and container → sandbox, and the last summary of each.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteTable {
    #[serde(default)]
    pub(crate) version: u32,
    #[serde(default)]
    pub sandboxes: BTreeMap<PodSandboxId, SandboxRoute>,
    #[serde(default)]
    pub containers: BTreeMap<ContainerId, PodSandboxId>,
    #[serde(default)]
    pub last_known: LastKnown,
}

/// A full id, or a unique prefix of one (as crictl users type them).
fn resolve<'a>(keys: impl Iterator<Item = &'a str>, given: &str, what: &str) -> Result<&'a str> {
    if given.is_empty() {
        return Err(Error::InvalidArgument(format!("{what} id is required")));
    }
    let mut found = None;
    for key in keys.filter(|k| k.starts_with(given)) {
        if key == given {
            return Ok(key);
        }
        if found.replace(key).is_some() {
            return Err(Error::InvalidArgument(format!(
                "{what} id prefix {given:?} is ambiguous"
            )));
        }
    }
    found.ok_or_else(|| Error::NotFound(format!("{what} {given:?} not found")))
}

impl RouteTable {
    /// The sandbox id `given` names (full or unique prefix).
    pub fn resolve_sandbox(&self, given: &str) -> Result<PodSandboxId> {
        resolve(
            self.sandboxes.keys().map(|k| k.as_str()),
            given,
            "pod sandbox",
        )
        .map(PodSandboxId::from)
    }

    /// The container id `given` names (full or unique prefix).
    pub fn resolve_container(&self, given: &str) -> Result<ContainerId> {
        resolve(
            self.containers.keys().map(|k| k.as_str()),
            given,
            "container",
        )
        .map(ContainerId::from)
    }

    /// A sandbox already routed for the same pod incarnation, if any.
    pub fn duplicate_of(&self, meta: &SandboxMetadata) -> Option<&PodSandboxId> {
        self.sandboxes
            .iter()
            .find(|(_, r)| r.same_pod(meta))
            .map(|(id, _)| id)
    }

    /// The backend name of the sandbox a container belongs to.
    pub fn container_backend(&self, id: &ContainerId) -> Option<(&PodSandboxId, &SandboxRoute)> {
        let sandbox = self.containers.get(id)?;
        self.sandboxes.get(sandbox).map(|r| (sandbox, r))
    }

    /// Drops a sandbox and every container routed to it, with their records; returns the
    /// dropped route.
    pub fn remove_sandbox(&mut self, id: &PodSandboxId) -> Option<SandboxRoute> {
        self.containers.retain(|_, s| s != id);
        let containers = &self.containers;
        self.last_known
            .containers
            .retain(|c, _| containers.contains_key(c));
        self.last_known.sandboxes.remove(id);
        self.sandboxes.remove(id)
    }

    /// Drops a container's route and record.
    pub fn remove_container(&mut self, id: &ContainerId) -> Option<PodSandboxId> {
        self.last_known.containers.remove(id);
        self.containers.remove(id)
    }

    /// Keeps `summary` as the last known state of a routed sandbox; returns whether the
    /// record changed. An unrouted id is not recorded.
    pub fn record_sandbox(&mut self, summary: &SandboxSummary) -> bool {
        if !self.sandboxes.contains_key(&summary.id)
            || self.last_known.sandboxes.get(&summary.id) == Some(summary)
        {
            return false;
        }
        self.last_known
            .sandboxes
            .insert(summary.id.clone(), summary.clone());
        true
    }

    /// Keeps `summary` as the last known state of a routed container; see
    /// [`RouteTable::record_sandbox`].
    pub fn record_container(&mut self, summary: &ContainerSummary) -> bool {
        if !self.containers.contains_key(&summary.id)
            || self.last_known.containers.get(&summary.id) == Some(summary)
        {
            return false;
        }
        self.last_known
            .containers
            .insert(summary.id.clone(), summary.clone());
        true
    }

    /// The last known summaries of `backend`'s sandboxes. A route without a record (a
    /// table saved by an older crimux) is shown from the route's metadata as NOTREADY.
    pub fn sandboxes_on(&self, backend: &str) -> Vec<SandboxSummary> {
        self.sandboxes
            .iter()
            .filter(|(_, r)| r.backend == backend)
            .map(|(id, r)| match self.last_known.sandboxes.get(id) {
                Some(known) => known.clone(),
                None => SandboxSummary {
                    id: id.clone(),
                    metadata: r.metadata(),
                    state: SandboxState::NotReady,
                    created_at: 0,
                    labels: BTreeMap::new(),
                    annotations: BTreeMap::new(),
                    runtime_handler: String::new(),
                },
            })
            .collect()
    }

    /// The last known summaries of the containers in `backend`'s sandboxes. A container
    /// with no record (a table saved by an older crimux) cannot be described and is left
    /// out.
    pub fn containers_on(&self, backend: &str) -> Vec<ContainerSummary> {
        self.containers
            .iter()
            .filter(|(_, s)| self.sandboxes.get(*s).is_some_and(|r| r.backend == backend))
            .filter_map(|(id, _)| self.last_known.containers.get(id).cloned())
            .collect()
    }

    /// Replaces `backend`'s sandbox routes and records by what it listed (dropping the
    /// containers of sandboxes it no longer has). Ids in `pending` (creations in flight,
    /// whose route was written before the backend call) are kept even when not listed
    /// yet. Returns whether anything changed.
    pub fn reconcile_sandboxes(
        &mut self,
        backend: &str,
        sandboxes: &[SandboxSummary],
        pending: &HashSet<String>,
    ) -> bool {
        let listed: HashSet<&PodSandboxId> = sandboxes.iter().map(|s| &s.id).collect();
        let stale: Vec<PodSandboxId> = self
            .sandboxes
            .iter()
            .filter(|(id, r)| {
                r.backend == backend && !listed.contains(id) && !pending.contains(id.as_str())
            })
            .map(|(id, _)| id.clone())
            .collect();
        let mut changed = !stale.is_empty();
        for id in &stale {
            tracing::info!(pod_id = %id, backend, "dropping route of a sandbox the backend no longer has");
            self.remove_sandbox(id);
        }
        for s in sandboxes {
            let route = SandboxRoute::new(backend, &s.metadata);
            match self.sandboxes.get(&s.id) {
                Some(old) if *old == route => {}
                old => {
                    if let Some(old) = old.filter(|o| o.backend != backend) {
                        tracing::warn!(pod_id = %s.id, backend, previous = %old.backend, "sandbox moved backend");
                    }
                    self.sandboxes.insert(s.id.clone(), route);
                    changed = true;
                }
            }
            changed |= self.record_sandbox(s);
        }
        changed
    }

    /// Replaces the container routes and records of `backend`'s sandboxes by what it
    /// listed; see [`RouteTable::reconcile_sandboxes`] for `pending`. A container whose
    /// sandbox is not routed to `backend` is not routed (reconcile sandboxes first).
    pub fn reconcile_containers(
        &mut self,
        backend: &str,
        containers: &[ContainerSummary],
        pending: &HashSet<String>,
    ) -> bool {
        let listed: HashSet<&ContainerId> = containers.iter().map(|c| &c.id).collect();
        let sandboxes = &self.sandboxes;
        let stale: Vec<ContainerId> = self
            .containers
            .iter()
            .filter(|(id, sandbox)| {
                sandboxes
                    .get(*sandbox)
                    .is_some_and(|r| r.backend == backend)
                    && !listed.contains(id)
                    && !pending.contains(id.as_str())
            })
            .map(|(id, _)| id.clone())
            .collect();
        let mut changed = !stale.is_empty();
        for id in &stale {
            self.remove_container(id);
        }
        for c in containers {
            if self
                .sandboxes
                .get(&c.sandbox_id)
                .is_none_or(|r| r.backend != backend)
            {
                tracing::warn!(container_id = %c.id, pod_id = %c.sandbox_id, backend, "container of an unrouted sandbox: not routed");
                continue;
            }
            if self.containers.get(&c.id) != Some(&c.sandbox_id) {
                self.containers.insert(c.id.clone(), c.sandbox_id.clone());
                changed = true;
            }
            changed |= self.record_container(c);
        }
        changed
    }

    /// Drops routes naming a backend that is no longer configured, and records without a
    /// route.
    pub fn retain_backends(&mut self, known: &[&str]) {
        let gone: Vec<PodSandboxId> = self
            .sandboxes
            .iter()
            .filter(|(_, r)| !known.contains(&r.backend.as_str()))
            .map(|(id, _)| id.clone())
            .collect();
        for id in gone {
            tracing::warn!(pod_id = %id, "dropping route to a backend that is no longer configured");
            self.remove_sandbox(&id);
        }
        let sandboxes = &self.sandboxes;
        self.containers.retain(|_, s| sandboxes.contains_key(s));
        let containers = &self.containers;
        self.last_known
            .sandboxes
            .retain(|id, _| sandboxes.contains_key(id));
        self.last_known
            .containers
            .retain(|id, _| containers.contains_key(id));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(uid: &str, attempt: u32) -> SandboxMetadata {
        SandboxMetadata {
            name: "web".into(),
            uid: uid.into(),
            namespace: "default".into(),
            attempt,
        }
    }

    #[test]
    fn resolve_ids_and_prefixes() {
        let mut t = RouteTable::default();
        for id in ["abc1", "abc2", "def"] {
            t.sandboxes
                .insert(PodSandboxId::from(id), SandboxRoute::new("b", &meta(id, 0)));
        }
        // (given, Ok(id) | Err(code))
        let cases = [
            ("def", Ok("def")),
            ("d", Ok("def")),
            ("abc1", Ok("abc1")),
            ("abc", Err(tonic::Code::InvalidArgument)),
            ("", Err(tonic::Code::InvalidArgument)),
            ("zzz", Err(tonic::Code::NotFound)),
        ];
        for (given, want) in cases {
            let got = t
                .resolve_sandbox(given)
                .map(|id| id.0)
                .map_err(|e| e.code());
            assert_eq!(got, want.map(String::from), "{given:?}");
        }
        assert_eq!(
            t.duplicate_of(&meta("def", 0)),
            Some(&PodSandboxId::from("def"))
        );
        assert_eq!(t.duplicate_of(&meta("def", 1)), None);
    }

    fn summary(id: &str, uid: &str, state: SandboxState) -> SandboxSummary {
        SandboxSummary {
            id: PodSandboxId::from(id),
            metadata: meta(uid, 0),
            state,
            created_at: 7,
            labels: BTreeMap::from([("app".to_string(), "web".to_string())]),
            annotations: BTreeMap::new(),
            runtime_handler: String::new(),
        }
    }

    fn csummary(id: &str, sandbox: &str) -> ContainerSummary {
        ContainerSummary {
            id: ContainerId::from(id),
            sandbox_id: PodSandboxId::from(sandbox),
            metadata: crimux_core::container::ContainerMetadata {
                name: "c".into(),
                attempt: 0,
            },
            image: "busybox".into(),
            image_ref: "sha256:b".into(),
            state: crimux_core::status::ContainerState::Running,
            created_at: 8,
            labels: BTreeMap::new(),
            annotations: BTreeMap::new(),
        }
    }

    #[test]
    fn records_follow_routes() {
        let none = HashSet::new();
        let mut t = RouteTable::default();
        let s = summary("s", "u", SandboxState::Ready);
        assert!(!t.record_sandbox(&s), "unrouted ids are not recorded");
        assert!(t.reconcile_sandboxes("wsl", std::slice::from_ref(&s), &none));
        assert!(
            !t.reconcile_sandboxes("wsl", std::slice::from_ref(&s), &none),
            "no change"
        );
        let c = csummary("c", "s");
        assert!(t.reconcile_containers("wsl", std::slice::from_ref(&c), &none));
        assert_eq!(t.sandboxes_on("wsl"), vec![s.clone()]);
        assert_eq!(t.containers_on("wsl"), vec![c.clone()]);
        assert!(t.sandboxes_on("win").is_empty());
        // A state change is a change; the same summary again is not.
        let stopped = summary("s", "u", SandboxState::NotReady);
        assert!(t.record_sandbox(&stopped));
        assert!(!t.record_sandbox(&stopped));
        assert_eq!(t.sandboxes_on("wsl")[0].state, SandboxState::NotReady);
        // A container the backend no longer lists loses route and record.
        assert!(t.reconcile_containers("wsl", &[], &none));
        assert!(t.last_known.containers.is_empty() && t.containers.is_empty());
        assert!(t.reconcile_containers("wsl", std::slice::from_ref(&c), &none));
        // Removing the sandbox drops every record under it.
        t.remove_sandbox(&PodSandboxId::from("s"));
        assert_eq!(t.last_known, LastKnown::default());
        // Records of a backend that is no longer configured go with its routes.
        t.reconcile_sandboxes("old", &[s], &none);
        t.retain_backends(&["wsl"]);
        assert_eq!(t, RouteTable::default());
    }
}
