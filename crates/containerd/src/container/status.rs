//! ContainerStatus and ListContainers: a container's record joined with its task's state.
//!
//! No task: Created, or Exited when the record says it started (its task went away with
//! a dead shim) or failed to start. A stopped task: Exited with the task's exit status,
//! which containerd keeps until RemoveContainer deletes the task.

use std::collections::{BTreeMap, HashMap};

use crimux_core::status::{ContainerState, ContainerStatus, ContainerSummary};
use crimux_core::{ContainerId, Result};

use super::record::{record, ContainerRecord};
use crate::backend::Inner;
use crate::runtime::record_cache;
use crate::runtime::task::{self, TaskState, TaskStatus};

/// containerd CRI's exit code for a container whose start failed.
const START_ERROR_EXIT_CODE: i32 = 128;
/// The exit code of a container whose task vanished without a recorded status.
const UNKNOWN_EXIT_CODE: i32 = 255;

pub(crate) fn summary(r: &ContainerRecord, state: ContainerState) -> ContainerSummary {
    ContainerSummary {
        id: r.id.clone(),
        sandbox_id: r.sandbox_id.clone(),
        metadata: r.config.metadata.clone(),
        image: r.config.image.clone(),
        image_ref: r.image_id.clone(),
        state,
        created_at: r.created_at,
        labels: r.config.labels.clone(),
        annotations: r.config.annotations.clone(),
    }
}

/// What a record and its task (if any) say about a container.
pub(crate) fn status_of(
    r: &ContainerRecord,
    task: Option<&TaskState>,
    verbose: bool,
) -> ContainerStatus {
    let (mut state, mut finished_at, mut exit_code, mut reason, mut message) =
        (ContainerState::Created, 0, 0, String::new(), String::new());
    match task {
        Some(t) => match t.status {
            TaskStatus::Created => {}
            TaskStatus::Running | TaskStatus::Paused => state = ContainerState::Running,
            TaskStatus::Stopped => {
                state = ContainerState::Exited;
                let exit = t.exit.unwrap_or(task::ExitStatus {
                    code: UNKNOWN_EXIT_CODE as u32,
                    exited_at: 0,
                });
                finished_at = exit.exited_at;
                exit_code = exit.code as i32;
            }
            TaskStatus::Unknown => state = ContainerState::Unknown,
        },
        None => {
            if let Some(f) = &r.start_failure {
                state = ContainerState::Exited;
                finished_at = f.at;
                exit_code = START_ERROR_EXIT_CODE;
                reason = "StartError".to_string();
                message = f.message.clone();
            } else if r.started_at != 0 {
                state = ContainerState::Exited;
                finished_at = r.started_at;
                exit_code = UNKNOWN_EXIT_CODE;
                reason = "Unknown".to_string();
                message = "the container's task is gone; its exit status was lost".to_string();
            }
        }
    }
    if state == ContainerState::Exited && reason.is_empty() {
        reason = if r.oom_killed {
            "OOMKilled"
        } else if exit_code == 0 {
            "Completed"
        } else {
            "Error"
        }
        .to_string();
    }
    let mut info = BTreeMap::new();
    if verbose {
        let detail = serde_json::json!({
            "sandboxID": r.sandbox_id,
            "pid": task.map(|t| t.pid).unwrap_or_default(),
            "image": r.image_name,
            "runtimeType": r.runtime_type,
            "config": r.config,
        });
        info.insert("info".to_string(), detail.to_string());
    }
    ContainerStatus {
        summary: summary(r, state),
        started_at: r.started_at,
        finished_at,
        exit_code,
        reason,
        message,
        mounts: r.config.mounts.clone(),
        log_path: r.log_path.clone(),
        resources: r.resources.clone(),
        windows_resources: r.windows_resources.clone(),
        user: Some(r.user.clone()),
        info,
    }
}

pub(crate) async fn status(
    inner: &Inner,
    id: &ContainerId,
    verbose: bool,
) -> Result<ContainerStatus> {
    let r = record(inner, id).await?;
    let t = task::state(inner, id.as_str()).await?;
    Ok(status_of(&r, t.as_ref(), verbose))
}

/// Statuses of every container (of one pod when `sandbox` is given): the records and the
/// task states from the backend's mirrors (`runtime/record_cache.rs`, `task_cache.rs`).
pub(crate) async fn statuses(inner: &Inner, sandbox: Option<&str>) -> Result<Vec<ContainerStatus>> {
    let records = record_cache::containers(inner).await?;
    let tasks: HashMap<String, TaskState> = task::states(inner).await?;
    Ok(records
        .iter()
        .filter(|r| sandbox.is_none_or(|s| r.sandbox_id.as_str() == s))
        .map(|r| status_of(r, tasks.get(r.id.as_str()), false))
        .collect())
}

pub(crate) async fn list(inner: &Inner) -> Result<Vec<ContainerSummary>> {
    Ok(statuses(inner, None)
        .await?
        .into_iter()
        .map(|s| s.summary)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::container::record::StartFailure;
    use crimux_core::container::ContainerConfig;
    use crimux_core::status::ResolvedUser;

    fn rec() -> ContainerRecord {
        ContainerRecord {
            id: "c".into(),
            sandbox_id: "s".into(),
            config: ContainerConfig::default(),
            created_at: 1,
            started_at: 0,
            image_name: "i".into(),
            image_id: "sha256:i".into(),
            log_path: String::new(),
            user: ResolvedUser::default(),
            stop_signal: None,
            oom_killed: false,
            start_failure: None,
            resources: None,
            windows_resources: None,
            runtime_type: String::new(),
        }
    }

    fn stopped(code: u32) -> TaskState {
        TaskState {
            status: TaskStatus::Stopped,
            pid: 9,
            exit: Some(task::ExitStatus {
                code,
                exited_at: 50,
            }),
        }
    }

    #[test]
    fn state_table() {
        let mut started = rec();
        started.started_at = 10;
        let mut oom = started.clone();
        oom.oom_killed = true;
        let mut failed = rec();
        failed.start_failure = Some(StartFailure {
            at: 20,
            message: "no such file".into(),
        });
        let running = TaskState {
            status: TaskStatus::Running,
            pid: 9,
            exit: None,
        };
        type Case<'a> = (
            &'a ContainerRecord,
            Option<TaskState>,
            ContainerState,
            i32,
            &'a str,
            i64,
        );
        let cases: [Case; 8] = [
            (&rec(), None, ContainerState::Created, 0, "", 0),
            (&started, Some(running), ContainerState::Running, 0, "", 0),
            (
                &started,
                Some(stopped(0)),
                ContainerState::Exited,
                0,
                "Completed",
                50,
            ),
            (
                &started,
                Some(stopped(3)),
                ContainerState::Exited,
                3,
                "Error",
                50,
            ),
            (
                &oom,
                Some(stopped(137)),
                ContainerState::Exited,
                137,
                "OOMKilled",
                50,
            ),
            (&failed, None, ContainerState::Exited, 128, "StartError", 20),
            (&started, None, ContainerState::Exited, 255, "Unknown", 10),
            (
                &rec(),
                Some(TaskState {
                    status: TaskStatus::Created,
                    pid: 9,
                    exit: None,
                }),
                ContainerState::Created,
                0,
                "",
                0,
            ),
        ];
        for (i, (r, t, state, code, reason, finished)) in cases.into_iter().enumerate() {
            let s = status_of(r, t.as_ref(), false);
            assert_eq!(
                (
                    s.summary.state,
                    s.exit_code,
                    s.reason.as_str(),
                    s.finished_at
                ),
                (state, code, reason, finished),
                "case {i}"
            );
        }
        assert!(status_of(&rec(), None, true).info.contains_key("info"));
    }
}
