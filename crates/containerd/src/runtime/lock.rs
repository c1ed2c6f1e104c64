//! Serialising work on one pod sandbox or one container, and reserving pod names while a
//! sandbox is created.
//!
//! The CRI lets kubelet call lifecycle RPCs concurrently (a retry racing the original, a
//! stop racing a remove, a CreateContainer racing a RemovePodSandbox of its pod), and CNI
//! ADD and DEL of one pod must never overlap. So every lifecycle operation holds an async
//! lock: [`lock_pod`] for the pod (RunPodSandbox, StopPodSandbox, RemovePodSandbox, and
//! CreateContainer while it checks the pod is ready and makes the object), [`lock_container`]
//! for one container. Where both are taken the pod's comes first; the pod operations call
//! the container ones with the pod's lock held, so those must never take it (tokio's
//! Mutex is not reentrant).
//!
//! The locks live in one process-wide table keyed by the backend's state directory, the
//! kind and the id; an entry goes away when its last holder drops it: nothing accumulates.

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

/// Holds one lock; released (and the table entry dropped when unused) on drop.
pub(crate) struct Held {
    key: String,
    guard: Option<OwnedMutexGuard<()>>,
}

/// Waits for, and takes, the lock of pod sandbox `id` of the backend rooted at `state_dir`.
pub(crate) async fn lock_pod(state_dir: &Path, id: &str) -> Held {
    lock(state_dir, "pod", id).await
}

/// Waits for, and takes, the lock of container `id` of the backend rooted at `state_dir`.
pub(crate) async fn lock_container(state_dir: &Path, id: &str) -> Held {
    lock(state_dir, "container", id).await
}

async fn lock(state_dir: &Path, kind: &str, id: &str) -> Held {
    let key = format!("{}\0{kind}\0{id}", state_dir.display());
    let mutex = table().entry(key.clone()).or_default().clone();
    let guard = mutex.lock_owned().await;
    Held {
        key,
        guard: Some(guard),
    }
}

impl Drop for Held {
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
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        assert!(!waiter.is_finished());
        let _other = lock_pod(dir, "b").await;
        // A container with the pod's id is another lock.
        let _container = lock_container(dir, "a").await;
        drop(first);
        waiter.await.expect("second holder");
        drop(_other);
        drop(_container);
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
