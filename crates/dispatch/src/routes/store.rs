//! Reading and writing the route table: `<root>/routes.json`, written atomically (temp
//! file, fsync, rename, fsync of the directory), so a reader or a restart sees the old or
//! the new table, never a torn one. A file that does not parse is moved aside.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use crimux_core::{Error, Result};

use super::{RouteTable, FORMAT_VERSION, ROUTES_FILE};

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

    use crimux_core::sandbox::SandboxMetadata;
    use crimux_core::status::SandboxState;
    use crimux_core::{ContainerId, PodSandboxId};

    use super::*;
    use crate::routes::{LastKnown, SandboxRoute};

    fn meta(uid: &str, attempt: u32) -> SandboxMetadata {
        SandboxMetadata {
            name: "web".into(),
            uid: uid.into(),
            namespace: "default".into(),
            attempt,
        }
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

    #[test]
    fn version_1_files_still_load() {
        let dir = tempfile::tempdir().expect("tempdir");
        let v1 = r#"{"version":1,
            "sandboxes":{"s":{"backend":"wsl","uid":"u","name":"web","namespace":"default","attempt":2}},
            "containers":{"c":"s"}}"#;
        fs::write(dir.path().join(ROUTES_FILE), v1).expect("write");
        let store = RouteStore::new(Some(dir.path()));
        let t = store.load().expect("v1 loads");
        assert_eq!(t.sandboxes[&PodSandboxId::from("s")].backend, "wsl");
        assert_eq!(
            t.containers[&ContainerId::from("c")],
            PodSandboxId::from("s")
        );
        assert_eq!(t.last_known, LastKnown::default());
        // Without records, the sandbox is shown from its route; the container cannot be.
        let shown = t.sandboxes_on("wsl");
        assert_eq!(shown.len(), 1);
        assert_eq!(
            (shown[0].state, shown[0].metadata.attempt),
            (SandboxState::NotReady, 2)
        );
        assert!(t.containers_on("wsl").is_empty());
        // Saved again, it is version 2 and still has every route.
        store.save(&t).expect("save");
        let saved: serde_json::Value =
            serde_json::from_slice(&fs::read(dir.path().join(ROUTES_FILE)).expect("read"))
                .expect("json");
        assert_eq!(saved["version"], 2);
        assert_eq!(saved["containers"]["c"], "s");
    }
}
