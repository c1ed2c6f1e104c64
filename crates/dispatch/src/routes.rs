//! The durable route table: which backend holds each pod sandbox, and which sandbox each
//! container belongs to.
//!
//! A container follows its pod, so only sandboxes name a backend. The table is small and
//! lives in `<root>/routes.json`, written atomically (temp file, fsync, rename, fsync of the
//! directory) on every change, so a crimux killed at any point restarts with every route it
//! had promised to a caller. The backends remain the source of truth: [`RouteTable::reconcile`]
//! rebuilds one backend's routes from what it lists, which also repairs a lost file.
//!
//! Architecture Invariant: this module is pure data plus file IO; it never talks to a
//! backend and never awaits.

use std::collections::{BTreeMap, HashSet};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crimux_core::sandbox::SandboxMetadata;
use crimux_core::status::{ContainerSummary, SandboxSummary};
use crimux_core::{ContainerId, Error, PodSandboxId, Result};

/// The file name of the table under crimux's root.
pub const ROUTES_FILE: &str = "routes.json";
const FORMAT_VERSION: u32 = 1;

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
}

/// Sandbox → backend and container → sandbox.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteTable {
    #[serde(default)]
    version: u32,
    #[serde(default)]
    pub sandboxes: BTreeMap<PodSandboxId, SandboxRoute>,
    #[serde(default)]
    pub containers: BTreeMap<ContainerId, PodSandboxId>,
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

    /// Drops a sandbox and every container routed to it; returns the dropped route.
    pub fn remove_sandbox(&mut self, id: &PodSandboxId) -> Option<SandboxRoute> {
        self.containers.retain(|_, s| s != id);
        self.sandboxes.remove(id)
    }

    /// Replaces `backend`'s sandbox routes by what it listed (dropping the containers of
    /// sandboxes it no longer has). Ids in `pending` (creations in flight, whose route was
    /// written before the backend call) are kept even when not listed yet. Returns whether
    /// anything changed.
    pub fn reconcile_sandboxes(
        &mut self,
        backend: &str,
        sandboxes: &[SandboxSummary],
        pending: &HashSet<String>,
    ) -> bool {
        let before = self.clone();
        let listed: HashSet<&PodSandboxId> = sandboxes.iter().map(|s| &s.id).collect();
        let stale: Vec<PodSandboxId> = self
            .sandboxes
            .iter()
            .filter(|(id, r)| {
                r.backend == backend && !listed.contains(id) && !pending.contains(id.as_str())
            })
            .map(|(id, _)| id.clone())
            .collect();
        for id in &stale {
            tracing::info!(pod_id = %id, backend, "dropping route of a sandbox the backend no longer has");
            self.remove_sandbox(id);
        }
        for s in sandboxes {
            let route = SandboxRoute::new(backend, &s.metadata);
            if let Some(old) = self.sandboxes.insert(s.id.clone(), route) {
                if old.backend != backend {
                    tracing::warn!(pod_id = %s.id, backend, previous = %old.backend, "sandbox moved backend");
                }
            }
        }
        *self != before
    }

    /// Replaces the container routes of `backend`'s sandboxes by what it listed; see
    /// [`RouteTable::reconcile_sandboxes`] for `pending`. A container whose sandbox is not
    /// routed to `backend` is not routed (reconcile sandboxes first).
    pub fn reconcile_containers(
        &mut self,
        backend: &str,
        containers: &[ContainerSummary],
        pending: &HashSet<String>,
    ) -> bool {
        let before = self.clone();
        let listed: HashSet<&ContainerId> = containers.iter().map(|c| &c.id).collect();
        let sandboxes = &self.sandboxes;
        self.containers.retain(|id, sandbox| {
            let here = sandboxes.get(sandbox).is_some_and(|r| r.backend == backend);
            !here || listed.contains(id) || pending.contains(id.as_str())
        });
        for c in containers {
            if self
                .sandboxes
                .get(&c.sandbox_id)
                .is_some_and(|r| r.backend == backend)
            {
                self.containers.insert(c.id.clone(), c.sandbox_id.clone());
            } else {
                tracing::warn!(container_id = %c.id, pod_id = %c.sandbox_id, backend, "container of an unrouted sandbox: not routed");
            }
        }
        *self != before
    }

    /// Drops routes naming a backend that is no longer configured.
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
    }
}

/// Reads and writes the table; `None` keeps it in memory only (unit tests).
#[derive(Clone, Debug)]
pub struct RouteStore {
    path: Option<PathBuf>,
}

impl RouteStore {
    pub fn new(state_dir: Option<&Path>) -> RouteStore {
        RouteStore {
            path: state_dir.map(|d| d.join(ROUTES_FILE)),
        }
    }

    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// The saved table; an absent file is an empty table. A file that does not parse is
    /// moved aside (`routes.json.bad`) and an empty table returned: reconciling with the
    /// backends rebuilds it, and the bad copy stays for the operator.
    pub fn load(&self) -> Result<RouteTable> {
        let Some(path) = &self.path else {
            return Ok(RouteTable::default());
        };
        let bytes = match fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(RouteTable::default()),
            Err(e) => {
                return Err(Error::Internal(format!(
                    "cannot read routes {}: {e}",
                    path.display()
                )))
            }
        };
        match serde_json::from_slice::<RouteTable>(&bytes) {
            Ok(table) => Ok(table),
            Err(e) => {
                let aside = path.with_extension("json.bad");
                tracing::error!(path = %path.display(), error = %e, aside = %aside.display(), "routes file is corrupt; starting empty and reconciling from backends");
                fs::rename(path, &aside).map_err(|e| {
                    Error::Internal(format!("cannot move aside {}: {e}", path.display()))
                })?;
                Ok(RouteTable::default())
            }
        }
    }

    /// Writes the table atomically: a reader (or a restart) sees the old or the new file,
    /// never a torn one.
    pub fn save(&self, table: &RouteTable) -> Result<()> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let fail = |what: &str, e: std::io::Error| {
            Error::Internal(format!("cannot {what} routes {}: {e}", path.display()))
        };
        let dir = path.parent().ok_or_else(|| {
            Error::Internal(format!("routes path {} has no parent", path.display()))
        })?;
        fs::create_dir_all(dir).map_err(|e| fail("create the directory of", e))?;
        let mut versioned = table.clone();
        versioned.version = FORMAT_VERSION;
        let json = serde_json::to_vec_pretty(&versioned)
            .map_err(|e| Error::Internal(format!("cannot encode routes: {e}")))?;
        let tmp = path.with_extension("json.tmp");
        let mut file = fs::File::create(&tmp).map_err(|e| fail("create temp file for", e))?;
        file.write_all(&json).map_err(|e| fail("write", e))?;
        file.sync_all().map_err(|e| fail("fsync", e))?;
        drop(file);
        fs::rename(&tmp, path).map_err(|e| fail("rename into place", e))?;
        // The rename is durable only once the directory entry is; best effort where a
        // directory cannot be opened (Windows).
        if let Ok(d) = fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
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

    #[test]
    fn save_load_and_corrupt_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = RouteStore::new(Some(dir.path()));
        assert_eq!(store.load().expect("absent"), RouteTable::default());
        let mut t = RouteTable::default();
        t.sandboxes.insert(
            PodSandboxId::from("s"),
            SandboxRoute::new("wsl", &meta("u", 2)),
        );
        t.containers
            .insert(ContainerId::from("c"), PodSandboxId::from("s"));
        store.save(&t).expect("save");
        let loaded = store.load().expect("load");
        assert_eq!(loaded.sandboxes, t.sandboxes);
        assert_eq!(loaded.containers, t.containers);
        assert!(!dir.path().join("routes.json.tmp").exists());

        fs::write(dir.path().join(ROUTES_FILE), b"{not json").expect("corrupt");
        assert_eq!(store.load().expect("empty"), RouteTable::default());
        assert!(
            dir.path().join("routes.json.bad").exists(),
            "kept for the operator"
        );

        let mut t2 = loaded.clone();
        assert!(t2.remove_sandbox(&PodSandboxId::from("s")).is_some());
        assert!(t2.containers.is_empty(), "containers follow their sandbox");
        assert_eq!(
            RouteStore::new(None).load().expect("memory"),
            RouteTable::default()
        );
    }
}
