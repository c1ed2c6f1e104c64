//! The attachment cache: for each pod, the exact network config, arguments and result of its
//! ADD, written atomically under `cache_dir/<container id>.json`.
//!
//! DEL reads it so that a pod attached before a crimux restart, or before an admin changed
//! the config directory, is detached with the config that attached it, and so that plugins
//! get the ADD result as `prevResult` as the spec requires (libcni keeps the same cache).

use std::io::Write;
use std::path::{Path, PathBuf};

use crimux_core::{Error, Result};
use serde::{Deserialize, Serialize};
use serde_json::Value;

const KIND: &str = "crimuxCniCacheV1";

/// One pod's cached attachment.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub(crate) struct Entry {
    pub kind: String,
    pub container_id: String,
    pub ifname: String,
    pub netns: PathBuf,
    pub cni_args: String,
    /// Capability arguments by name (`portMappings`).
    pub capability_args: serde_json::Map<String, Value>,
    /// The network config list ADD ran.
    pub config: Value,
    /// The final ADD result; `None` while ADD is running (or if it crashed half way).
    pub result: Option<Value>,
}

impl Entry {
    pub fn new(
        container_id: &str,
        ifname: &str,
        netns: &Path,
        cni_args: &str,
        capability_args: serde_json::Map<String, Value>,
        config: Value,
    ) -> Self {
        Entry {
            kind: KIND.to_string(),
            container_id: container_id.to_string(),
            ifname: ifname.to_string(),
            netns: netns.to_path_buf(),
            cni_args: cni_args.to_string(),
            capability_args,
            config,
            result: None,
        }
    }
}

/// Container ids become file names: one path component, no hidden files.
pub(crate) fn check_id(id: &str) -> Result<()> {
    let ok = !id.is_empty()
        && !id.starts_with('.')
        && id.len() <= 200
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidArgument(format!(
            "bad container id {id:?} for CNI"
        )))
    }
}

fn path(dir: &Path, id: &str) -> PathBuf {
    dir.join(format!("{id}.json"))
}

/// Reads a pod's entry; `None` when there is none. A corrupt file is an error: guessing a
/// config for DEL could tear down the wrong thing.
pub(crate) async fn load(dir: &Path, id: &str) -> Result<Option<Entry>> {
    let file = path(dir, id);
    let bytes = match tokio::fs::read(&file).await {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::Internal(format!("read {}: {e}", file.display()))),
    };
    let entry: Entry = serde_json::from_slice(&bytes)
        .map_err(|e| Error::Internal(format!("corrupt CNI cache {}: {e}", file.display())))?;
    if entry.kind != KIND {
        return Err(Error::Internal(format!(
            "CNI cache {} has unknown kind {:?}",
            file.display(),
            entry.kind
        )));
    }
    Ok(Some(entry))
}

/// Writes a pod's entry atomically: a temp file in the same dir, fsync, rename, fsync dir.
pub(crate) async fn store(dir: &Path, entry: &Entry) -> Result<()> {
    let bytes = serde_json::to_vec_pretty(entry)
        .map_err(|e| Error::Internal(format!("encode CNI cache: {e}")))?;
    let dir = dir.to_path_buf();
    let id = entry.container_id.clone();
    tokio::task::spawn_blocking(move || store_blocking(&dir, &id, &bytes))
        .await
        .map_err(|e| Error::Internal(format!("CNI cache writer: {e}")))?
}

fn store_blocking(dir: &Path, id: &str, bytes: &[u8]) -> Result<()> {
    let fail = |what: &str, e: std::io::Error| Error::Internal(format!("{what}: {e}"));
    std::fs::create_dir_all(dir).map_err(|e| fail(&format!("create {}", dir.display()), e))?;
    let tmp = dir.join(format!(".{id}.json.tmp"));
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path(dir, id))?;
        std::fs::File::open(dir)?.sync_all()
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        fail(&format!("write CNI cache for {id}"), e)
    })
}

/// Deletes a pod's entry; missing is fine.
pub(crate) async fn delete(dir: &Path, id: &str) -> Result<()> {
    let file = path(dir, id);
    match tokio::fs::remove_file(&file).await {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::Internal(format!("remove {}: {e}", file.display()))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_file_names() {
        for bad in ["", ".", "..", ".hidden", "a/b", "a b", "x\0"] {
            assert!(check_id(bad).is_err(), "{bad:?}");
        }
        check_id("0123456789abcdef-pod_1.x").unwrap();
    }

    #[tokio::test]
    async fn round_trip_and_delete() {
        let dir = tempfile::tempdir().unwrap();
        let cache = dir.path().join("nested");
        assert_eq!(load(&cache, "abc").await.unwrap(), None);
        let mut entry = Entry::new(
            "abc",
            "eth0",
            Path::new("/run/netns/x"),
            "IgnoreUnknown=1",
            Default::default(),
            serde_json::json!({"name": "n"}),
        );
        store(&cache, &entry).await.unwrap();
        entry.result = Some(serde_json::json!({"cniVersion": "1.0.0"}));
        store(&cache, &entry).await.unwrap();
        assert_eq!(load(&cache, "abc").await.unwrap(), Some(entry));
        // Only the entry is left: no temp files.
        let names: Vec<_> = std::fs::read_dir(&cache)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("abc.json")]);
        delete(&cache, "abc").await.unwrap();
        delete(&cache, "abc").await.unwrap();
        assert_eq!(load(&cache, "abc").await.unwrap(), None);

        std::fs::write(cache.join("bad.json"), "{").unwrap();
        assert!(load(&cache, "bad").await.is_err());
    }
}
