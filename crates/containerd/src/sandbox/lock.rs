//! Serialising work on one pod sandbox, and reserving pod names while a sandbox is created.
//!
//! The CRI lets kubelet call Run/Stop/Remove for one pod concurrently (a retry racing the
//! original, or a stop racing a remove); CNI ADD and DEL of one pod must never overlap. So
//! every operation on a sandbox holds that sandbox's async lock. The locks live in a
//! process-wide table keyed by the backend's state directory and the id, and an entry goes
//! away when its last holder drops it: nothing accumulates.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, LazyLock, Mutex, MutexGuard};

use crimux_core::sandbox::SandboxMetadata;
use crimux_core::{Error, Result};
use tokio::sync::OwnedMutexGuard;

type Table = HashMap<String, Arc<tokio::sync::Mutex<()>>>;

static LOCKS: LazyLock<Mutex<Table>> = LazyLock::new(Mutex::default);
static NAMES: LazyLock<Mutex<HashSet<String>>> = LazyLock::new(Mutex::default);

fn table() -> MutexGuard<'static, Table> {
    // Every update is one insert or remove, so a poisoned table is still consistent.
    LOCKS.lock().unwrap_or_else(|p| p.into_inner())
}

fn names() -> MutexGuard<'static, HashSet<String>> {
    NAMES.lock().unwrap_or_else(|p| p.into_inner())
}

/// Holds one sandbox's lock; released (and the table entry dropped when unused) on drop.
pub(crate) struct PodLock {
    key: String,
    guard: Option<OwnedMutexGuard<()>>,
}

/// Waits for, and takes, the lock of sandbox `id` of the backend rooted at `state_dir`.
pub(crate) async fn lock_pod(state_dir: &Path, id: &str) -> PodLock {
    let key = format!("{}\0{id}", state_dir.display());
    let mutex = table().entry(key.clone()).or_default().clone();
    let guard = mutex.lock_owned().await;
    PodLock {
        key,
        guard: Some(guard),
    }
}

impl Drop for PodLock {
    fn drop(&mut self) {
        drop(self.guard.take());
        let mut table = table();
        // Only the table holds it now: nobody waits, so the entry can go.
        if table
            .get(&self.key)
            .is_some_and(|m| Arc::strong_count(m) == 1)
        {
            table.remove(&self.key);
        }
    }
}

/// A pod name (`name`, `namespace`, `uid`, `attempt`) reserved while its sandbox is being
/// created, so two concurrent runs of the same pod cannot both pass the duplicate check.
pub(crate) struct NameReservation {
    key: String,
}

/// Reserves the pod name of `meta` in the backend rooted at `state_dir`; AlreadyExists when
/// another run of the same pod is in progress.
pub(crate) fn reserve_name(state_dir: &Path, meta: &SandboxMetadata) -> Result<NameReservation> {
    let key = format!(
        "{}\0{}\0{}\0{}\0{}",
        state_dir.display(),
        meta.name,
        meta.namespace,
        meta.uid,
        meta.attempt
    );
    if !names().insert(key.clone()) {
        return Err(Error::AlreadyExists(format!(
            "pod sandbox {} (uid {}, attempt {}) is being created already",
            meta.pod_name(),
            meta.uid,
            meta.attempt
        )));
    }
    Ok(NameReservation { key })
}

impl Drop for NameReservation {
    fn drop(&mut self) {
        names().remove(&self.key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn locks_serialise_and_leave_nothing_behind() {
        let dir = Path::new("/test/locks");
        let first = lock_pod(dir, "a").await;
        let waiter = tokio::spawn(async move {
            let _second = lock_pod(Path::new("/test/locks"), "a").await;
        });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        let _other = lock_pod(dir, "b").await;
        drop(first);
        waiter.await.expect("second holder");
        drop(_other);
        assert!(!table().keys().any(|k| k.starts_with("/test/locks")));
    }

    #[test]
    fn names_are_reserved_once() {
        let meta = SandboxMetadata {
            name: "web".into(),
            uid: "u1".into(),
            namespace: "default".into(),
            attempt: 0,
        };
        let dir = Path::new("/test/names");
        let held = reserve_name(dir, &meta).expect("first");
        let err = reserve_name(dir, &meta).err().expect("second must fail");
        assert_eq!(err.code(), tonic::Code::AlreadyExists);
        let next = SandboxMetadata {
            attempt: 1,
            ..meta.clone()
        };
        drop(reserve_name(dir, &next).expect("another attempt"));
        drop(held);
        drop(reserve_name(dir, &meta).expect("after release"));
    }
}
