//! StopContainer and RemoveContainer.
//!
//! Stop signals the task (the image's StopSignal, else SIGTERM), waits the grace period,
//! then kills every process of the container; it never deletes the task, whose exit status
//! must outlive a crimux restart. Remove does that too, forcibly, then deletes the task,
//! the object with its snapshot, the log plugin crimux started for a container with stdin
//! and no terminal (if any), and the container's files.

use std::path::Path;
use std::time::Duration;

use crimux_core::status::ContainerEventKind;
use crimux_core::{ContainerId, Error, Result};

use super::events;
use super::record::{attach_socket, container_dir, record};
use super::start::{end_detached_logger, logs_through_fifos};
use crate::backend::Inner;
use crate::platform::signals::{self, SIGKILL, SIGTERM};
use crate::runtime::lock::lock_container;
use crate::runtime::{object, task};

/// How long a SIGKILLed task may take to be reaped before we give up on it.
const KILL_WAIT: Duration = Duration::from_secs(60);

fn is_live(t: Option<&task::TaskState>) -> bool {
    t.is_some_and(|t| t.status != task::TaskStatus::Stopped)
}

/// SIGKILLs every process of the container's task and waits for it to be reaped.
pub(crate) async fn kill_and_wait(inner: &Inner, id: &str) -> Result<()> {
    task::kill(inner, id, SIGKILL, true).await?;
    match task::wait(inner, id, Some(KILL_WAIT)).await {
        Ok(Some(_)) => Ok(()),
        Ok(None) => Err(Error::DeadlineExceeded(format!(
            "container {id} did not die within {KILL_WAIT:?} of SIGKILL"
        ))),
        Err(e) if e.is_not_found() => Ok(()),
        Err(e) => Err(e),
    }
}

/// Stops container `id` (the lock must be held).
async fn stop_locked(inner: &Inner, id: &ContainerId, timeout: Duration) -> Result<()> {
    let rec = record(inner, id).await?;
    let state = task::state(inner, id.as_str()).await?;
    if !is_live(state.as_ref()) {
        return Ok(());
    }
    if !timeout.is_zero() {
        let signal = match rec.stop_signal.as_deref() {
            Some(s) => signals::parse(s).unwrap_or_else(|e| {
                tracing::warn!(container = %id, %e, "using SIGTERM");
                SIGTERM
            }),
            None => SIGTERM,
        };
        task::kill(inner, id.as_str(), signal, false).await?;
        match task::wait(inner, id.as_str(), Some(timeout)).await {
            Ok(Some(exit)) => {
                tracing::info!(container = %id, code = exit.code, "container stopped");
                return Ok(());
            }
            Ok(None) => {
                tracing::info!(container = %id, ?timeout, signal, "grace period over; killing");
            }
            Err(e) if e.is_not_found() => return Ok(()),
            Err(e) => return Err(e),
        }
    }
    kill_and_wait(inner, id.as_str()).await?;
    tracing::info!(container = %id, "container killed");
    Ok(())
}

/// The STOPPED event comes from the event monitor, which sees every exit of a task
/// (stopped by us or not).
pub(crate) async fn stop(inner: &Inner, id: &ContainerId, timeout: Duration) -> Result<()> {
    let _me = lock_container(&inner.runtime.state_dir, id.as_str()).await;
    stop_locked(inner, id, timeout).await?;
    Ok(())
}

async fn remove_dir(dir: &Path) -> Result<()> {
    match tokio::fs::remove_dir_all(dir).await {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::Internal(format!("removing {}: {e}", dir.display()))),
    }
}

pub(crate) async fn remove(inner: &Inner, id: &ContainerId) -> Result<()> {
    let _me = lock_container(&inner.runtime.state_dir, id.as_str()).await;
    let rec = match record(inner, id).await {
        Ok(r) => Some(r),
        Err(e) if e.is_not_found() => None,
        Err(e) => return Err(e),
    };
    let Some(rec) = rec else {
        // Not ours or unknown: nothing to do, but leftovers of a half-done removal go.
        if object::get(inner, id.as_str()).await.is_err() {
            remove_dir(&container_dir(&inner.runtime.state_dir, id.as_str())).await?;
        }
        return Ok(());
    };
    if is_live(task::state(inner, id.as_str()).await?.as_ref()) {
        kill_and_wait(inner, id.as_str()).await?;
    }
    task::delete(inner, id.as_str()).await?;
    let state_dir = &inner.runtime.state_dir;
    // The shim stopped the binary logger with the task; a logger crimux started on FIFOs
    // exits at their end, which the task's deletion brought.
    if logs_through_fifos(rec.config.stdin, rec.config.tty) {
        end_detached_logger(state_dir, id.as_str()).await;
    }
    object::remove(inner, id.as_str()).await?;
    remove_dir(&container_dir(state_dir, id.as_str())).await?;
    if let Some(sock) = attach_socket(state_dir, id.as_str()) {
        match tokio::fs::remove_file(&sock).await {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!(container = %id, %e, "attach socket left behind"),
        }
    }
    tracing::info!(backend = %inner.name, container = %id, "container removed");
    events::emit(inner, id, &rec.sandbox_id, ContainerEventKind::Deleted).await;
    Ok(())
}
