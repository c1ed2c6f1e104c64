//! containerd tasks: create with stdio URIs, start, signal, wait, delete, state.

use std::time::Duration;

use crimux_core::Result;

use crate::backend::Inner;

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

/// Creates the task of container `id` (its rootfs comes from the container's snapshot) and
/// returns its pid. Does not start it.
pub(crate) async fn create(inner: &Inner, id: &str, stdio: &Stdio) -> Result<u32> {
    let _ = (inner, id, stdio);
    Err(crimux_core::Error::Unimplemented("tasks are being built".into()))
}

pub(crate) async fn start(inner: &Inner, id: &str) -> Result<u32> {
    let _ = (inner, id);
    Err(crimux_core::Error::Unimplemented("tasks are being built".into()))
}

/// Signals the task's process (`all`: every process in it). A task that is gone is fine.
pub(crate) async fn kill(inner: &Inner, id: &str, signal: u32, all: bool) -> Result<()> {
    let _ = (inner, id, signal, all);
    Err(crimux_core::Error::Unimplemented("tasks are being built".into()))
}

/// Waits for the task to exit, at most `timeout` (None: for ever). `Ok(None)` on timeout.
pub(crate) async fn wait(
    inner: &Inner,
    id: &str,
    timeout: Option<Duration>,
) -> Result<Option<ExitStatus>> {
    let _ = (inner, id, timeout);
    Err(crimux_core::Error::Unimplemented("tasks are being built".into()))
}

/// Deletes the task (it must have exited); returns its exit status. No task: `Ok(None)`.
pub(crate) async fn delete(inner: &Inner, id: &str) -> Result<Option<ExitStatus>> {
    let _ = (inner, id);
    Err(crimux_core::Error::Unimplemented("tasks are being built".into()))
}

/// The task's state; `Ok(None)` when the container has no task.
pub(crate) async fn state(inner: &Inner, id: &str) -> Result<Option<TaskState>> {
    let _ = (inner, id);
    Err(crimux_core::Error::Unimplemented("tasks are being built".into()))
}
