//! Serialising work on one container (a stop racing a remove, a retried create): every
//! lifecycle operation holds the container's async lock. Locks live in a process-wide
//! table keyed by the backend's state directory and a key; an entry goes away when its
//! last holder drops it.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, LazyLock, Mutex, MutexGuard};

use tokio::sync::OwnedMutexGuard;

type Table = HashMap<String, Arc<tokio::sync::Mutex<()>>>;

static LOCKS: LazyLock<Mutex<Table>> = LazyLock::new(Mutex::default);

fn table() -> MutexGuard<'static, Table> {
    // Every update is one insert or remove, so a poisoned table is still consistent.
    LOCKS.lock().unwrap_or_else(|p| p.into_inner())
}

/// Holds one lock; released (and the table entry dropped when unused) on drop.
pub(crate) struct Held {
    key: String,
    guard: Option<OwnedMutexGuard<()>>,
}

/// Waits for, and takes, lock `key` of the backend rooted at `state_dir`.
pub(crate) async fn lock(state_dir: &Path, key: &str) -> Held {
    let key = format!("{}\0{key}", state_dir.display());
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
        if table
            .get(&self.key)
            .is_some_and(|m| Arc::strong_count(m) == 1)
        {
            table.remove(&self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn one_holder_at_a_time_and_no_leftovers() {
        let dir = Path::new("/lock-test");
        let first = lock(dir, "c1").await;
        let waiting = tokio::spawn(async move { lock(dir, "c1").await });
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        assert!(!waiting.is_finished());
        let _other = lock(dir, "c2").await;
        drop(first);
        drop(waiting.await.expect("second holder"));
        assert!(!table().contains_key("/lock-test\0c1"));
    }
}
