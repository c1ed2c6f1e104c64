//! containerd tasks: create with stdio URIs, start, signal, wait, delete, state.
//!
//! A task is the running side of a container object. containerd keeps a stopped task, and
//! its exit status, until someone deletes it: that is how exit codes survive a crimux
//! restart, so only removal deletes tasks.

use std::collections::HashMap;
use std::time::Duration;

use containerd_client::services::v1::snapshots::MountsRequest;
use containerd_client::services::v1::{
    CreateTaskRequest, DeleteTaskRequest, GetRequest, KillRequest, ListTasksRequest, StartRequest,
    UpdateTaskRequest, WaitRequest,
};
use containerd_client::types::v1::{Process, Status};
use crimux_core::{Error, Result};

use futures::future::join_all;

use super::task_cache::Plan;
use crate::backend::Inner;
use crate::client::is_not_found;

/// Where a task's stdio goes, as containerd takes it: FIFO paths or `binary://` URIs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Stdio {
    pub stdin: String,
    pub stdout: String,
    pub stderr: String,
    pub terminal: bool,
}

/// How a task ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ExitStatus {
    pub code: u32,
    /// Unix nanoseconds.
    pub exited_at: i64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TaskStatus {
    Created,
    Running,
    Paused,
    Stopped,
    Unknown,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct TaskState {
    pub status: TaskStatus,
    pub pid: u32,
    /// Set once stopped.
    pub exit: Option<ExitStatus>,
}

/// Unix nanoseconds of a protobuf timestamp (0 when absent).
pub(crate) fn nanos(ts: Option<&prost_types::Timestamp>) -> i64 {
    ts.map(|t| t.seconds.saturating_mul(1_000_000_000) + i64::from(t.nanos))
        .unwrap_or_default()
}

fn status_of(raw: i32) -> TaskStatus {
    match Status::try_from(raw).unwrap_or(Status::Unknown) {
        Status::Created => TaskStatus::Created,
        Status::Running => TaskStatus::Running,
        Status::Paused | Status::Pausing => TaskStatus::Paused,
        Status::Stopped => TaskStatus::Stopped,
        Status::Unknown => TaskStatus::Unknown,
    }
}

/// A task's state from containerd's process message.
fn state_of(p: &Process) -> TaskState {
    let status = status_of(p.status);
    TaskState {
        status,
        pid: p.pid,
        exit: (status == TaskStatus::Stopped).then(|| ExitStatus {
            code: p.exit_status,
            exited_at: nanos(p.exited_at.as_ref()),
        }),
    }
}

/// Creates the task of container `id` (its rootfs comes from the container's snapshot) and
/// returns its pid. Does not start it.
pub(crate) async fn create(inner: &Inner, id: &str, stdio: &Stdio) -> Result<u32> {
    // containerd's own client passes the snapshot's mounts as the rootfs: the daemon does
    // not mount a container's snapshot by itself. hcsshim takes the layers from the spec's
    // `windows.layerFolders` instead and refuses a task that has both.
    let mounts = if crate::runtime::windows::is_windows(inner) {
        Vec::new()
    } else {
        snapshot_mounts(inner, id).await?
    };
    let request = inner.daemon.request(
        CreateTaskRequest {
            container_id: id.to_string(),
            rootfs: mounts,
            stdin: stdio.stdin.clone(),
            stdout: stdio.stdout.clone(),
            stderr: stdio.stderr.clone(),
            terminal: stdio.terminal,
            ..Default::default()
        },
        None,
    );
    let pid = inner
        .daemon
        .tasks()
        .create(request)
        .await
        .map_err(|s| Error::backend(format!("creating task {id}"), s))?
        .into_inner()
        .pid;
    inner.tasks.mark(id);
    tracing::debug!(backend = %inner.name, id, pid, "task created");
    Ok(pid)
}

pub(crate) async fn start(inner: &Inner, id: &str) -> Result<u32> {
    let request = inner.daemon.request(
        StartRequest {
            container_id: id.to_string(),
            exec_id: String::new(),
        },
        None,
    );
    let started = inner.daemon.tasks().start(request).await;
    // A failed start may still have changed the task.
    inner.tasks.mark(id);
    let pid = started
        .map_err(|s| Error::backend(format!("starting task {id}"), s))?
        .into_inner()
        .pid;
    Ok(pid)
}

/// Signals the task's process (`all`: every process in it). A task that is gone is fine.
pub(crate) async fn kill(inner: &Inner, id: &str, signal: u32, all: bool) -> Result<()> {
    let request = inner.daemon.request(
        KillRequest {
            container_id: id.to_string(),
            exec_id: String::new(),
            signal,
            all,
        },
        None,
    );
    let killed = inner.daemon.tasks().kill(request).await;
    inner.tasks.mark(id);
    match killed {
        Ok(_) => Ok(()),
        // No task, or its process already finished.
        Err(s) if is_not_found(&s) => Ok(()),
        Err(s) => Err(Error::backend(format!("signal {signal} to task {id}"), s)),
    }
}

/// Waits for the task to exit, at most `timeout` (None: for ever). `Ok(None)` on timeout.
pub(crate) async fn wait(
    inner: &Inner,
    id: &str,
    timeout: Option<Duration>,
) -> Result<Option<ExitStatus>> {
    let request = inner.daemon.request(
        WaitRequest {
            container_id: id.to_string(),
            exec_id: String::new(),
        },
        None,
    );
    let mut client = inner.daemon.tasks();
    let call = client.wait(request);
    let answer = match timeout {
        Some(limit) => match tokio::time::timeout(limit, call).await {
            Ok(answer) => answer,
            Err(_) => return Ok(None),
        },
        None => call.await,
    };
    inner.tasks.mark(id);
    let done = answer
        .map_err(|s| Error::backend(format!("waiting for task {id}"), s))?
        .into_inner();
    Ok(Some(ExitStatus {
        code: done.exit_status,
        exited_at: nanos(done.exited_at.as_ref()),
    }))
}

/// Deletes the task (it must have exited); returns its exit status. No task: `Ok(None)`.
pub(crate) async fn delete(inner: &Inner, id: &str) -> Result<Option<ExitStatus>> {
    let request = inner.daemon.request(
        DeleteTaskRequest {
            container_id: id.to_string(),
        },
        None,
    );
    let deleted = inner.daemon.tasks().delete(request).await;
    inner.tasks.mark(id);
    match deleted {
        Ok(r) => {
            let r = r.into_inner();
            tracing::debug!(backend = %inner.name, id, code = r.exit_status, "task deleted");
            Ok(Some(ExitStatus {
                code: r.exit_status,
                exited_at: nanos(r.exited_at.as_ref()),
            }))
        }
        Err(s) if is_not_found(&s) => Ok(None),
        Err(s) => Err(Error::backend(format!("deleting task {id}"), s)),
    }
}

/// The task's state; `Ok(None)` when the container has no task.
pub(crate) async fn state(inner: &Inner, id: &str) -> Result<Option<TaskState>> {
    let request = inner.daemon.request(
        GetRequest {
            container_id: id.to_string(),
            exec_id: String::new(),
        },
        None,
    );
    match inner.daemon.tasks().get(request).await {
        Ok(r) => Ok(r.into_inner().process.as_ref().map(state_of)),
        Err(s) if is_not_found(&s) => Ok(None),
        Err(s) => Err(Error::backend(format!("task {id}"), s)),
    }
}

/// Every task in the namespace, by container id: one call for list operations.
pub(crate) async fn list(inner: &Inner) -> Result<Vec<(String, TaskState)>> {
    let request = inner.daemon.request(
        ListTasksRequest {
            filter: String::new(),
        },
        None,
    );
    let tasks = inner
        .daemon
        .tasks()
        .list(request)
        .await
        .map_err(|s| Error::backend("listing tasks", s))?
        .into_inner()
        .tasks;
    // containerd 1.6 fills only `id` (the container id for a task's init process).
    Ok(tasks
        .iter()
        .map(|p| {
            let id = if p.container_id.is_empty() {
                &p.id
            } else {
                &p.container_id
            };
            (id.clone(), state_of(p))
        })
        .collect())
}

/// Every task's state by container id, for the list operations: from the backend's task
/// mirror (`task_cache.rs`), refreshed first: a full Tasks.List when the mirror is cold,
/// else one Tasks.Get per task that changed since the last list.
pub(crate) async fn states(inner: &Inner) -> Result<HashMap<String, TaskState>> {
    let dirty = match inner.tasks.plan() {
        Plan::Resync { ticket, epoch } => {
            let listed = list(inner).await?;
            inner.tasks.finish_resync(ticket, epoch, &listed);
            inner.tasks.dirty_tickets()
        }
        Plan::Refresh(dirty) => dirty,
    };
    let reads = join_all(dirty.iter().map(|(id, _)| state(inner, id))).await;
    for ((id, ticket), read) in dirty.iter().zip(reads) {
        match read {
            Ok(found) => inner.tasks.apply(id, found, *ticket),
            // Left dirty: the next list asks again; this one fails like a Tasks.List would.
            Err(e) => return Err(e),
        }
    }
    Ok(inner.tasks.snapshot())
}

/// `type_url` of OCI `LinuxResources` JSON, as containerd's Update takes it.
pub(crate) const LINUX_RESOURCES_TYPE_URL: &str =
    "types.containerd.io/opencontainers/runtime-spec/1/LinuxResources";

/// Applies new resources to a running task.
pub(crate) async fn update(
    inner: &Inner,
    id: &str,
    resources: &oci_spec::runtime::LinuxResources,
) -> Result<()> {
    let value = serde_json::to_vec(resources)
        .map_err(|e| Error::Internal(format!("encoding resources of {id}: {e}")))?;
    let request = inner.daemon.request(
        UpdateTaskRequest {
            container_id: id.to_string(),
            resources: Some(prost_types::Any {
                type_url: LINUX_RESOURCES_TYPE_URL.to_string(),
                value,
            }),
            annotations: Default::default(),
        },
        None,
    );
    inner
        .daemon
        .tasks()
        .update(request)
        .await
        .map_err(|s| Error::backend(format!("updating resources of task {id}"), s))?;
    Ok(())
}

/// The mounts of container `id`'s writable snapshot.
async fn snapshot_mounts(inner: &Inner, id: &str) -> Result<Vec<containerd_client::types::Mount>> {
    Ok(inner
        .daemon
        .snapshots()
        .mounts(inner.daemon.request(
            MountsRequest {
                snapshotter: inner.snapshotter.clone(),
                key: id.to_string(),
            },
            None,
        ))
        .await
        .map_err(|s| Error::backend(format!("mounts of snapshot {id}"), s))?
        .into_inner()
        .mounts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_process_states() {
        let p = Process {
            pid: 7,
            status: Status::Stopped as i32,
            exit_status: 3,
            exited_at: Some(prost_types::Timestamp {
                seconds: 2,
                nanos: 5,
            }),
            ..Default::default()
        };
        let s = state_of(&p);
        assert_eq!(s.status, TaskStatus::Stopped);
        assert_eq!(
            s.exit,
            Some(ExitStatus {
                code: 3,
                exited_at: 2_000_000_005
            })
        );
        for (raw, want) in [
            (Status::Running, TaskStatus::Running),
            (Status::Created, TaskStatus::Created),
            (Status::Pausing, TaskStatus::Paused),
            (Status::Unknown, TaskStatus::Unknown),
        ] {
            let s = state_of(&Process {
                status: raw as i32,
                ..Default::default()
            });
            assert_eq!((s.status, s.exit), (want, None));
        }
        assert_eq!(status_of(99), TaskStatus::Unknown);
    }
}
