//! Pieces pod sandboxes and containers share: containerd tasks, container objects with
//! their snapshots, what the backend's host offers, image configs, and the lifecycle locks.

pub(crate) mod host;
pub(crate) mod image;
pub(crate) mod lock;
pub(crate) mod object;
pub(crate) mod options;
pub(crate) mod record_cache;
pub(crate) mod runc;
pub(crate) mod runhcs;
pub(crate) mod task;
pub(crate) mod task_cache;
pub(crate) mod windows;

use std::time::{SystemTime, UNIX_EPOCH};

/// Now, in Unix nanoseconds (0 before 1970), as the CRI's timestamps count.
pub(crate) fn now_nanos() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
