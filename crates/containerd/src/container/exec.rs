//! ExecSync: run a command in a running container and capture its output.
//!
//! The command runs as a containerd exec process whose spec is the container's own process
//! (user, env, cwd, capabilities) with other arguments. Its stdout and stderr go to two
//! pipes (FIFOs under the container's state directory; named pipes on Windows, see
//! `platform::fifo`) whose reading ends we open before the shim opens them for writing.
//! Whatever happens — success, error, timeout, or the caller dropping the future — the
//! exec process is killed and deleted and the FIFOs are removed: [`ExecProcess`] and
//! [`Fifos`] are guards that clean up on drop.

use std::path::{Path, PathBuf};
use std::time::Duration;

use containerd_client::services::v1::{
    DeleteProcessRequest, ExecProcessRequest, GetRequest, KillRequest, StartRequest, WaitRequest,
};
use containerd_client::types::v1::Status;
use crimux_core::status::ExecSyncOutput;
use crimux_core::{ContainerId, Error, Result};

use super::record::container_dir;
use crate::backend::Inner;
use crate::client::{is_not_found, Daemon};
use crate::platform::fifo;
use crate::platform::signals::SIGKILL;
use crate::runtime::object;
use crate::runtime::task::{self, TaskStatus};
use crate::sandbox::record::{KIND_CONTAINER, KIND_LABEL};

/// The most output kept per stream; the rest is read and dropped so the process never
/// blocks on a full pipe.
const OUTPUT_CAP: usize = 16 << 20;
/// containerd's type URL for an OCI `Process` in JSON.
const PROCESS_TYPE_URL: &str = "types.containerd.io/opencontainers/runtime-spec/1/Process";
/// How long a killed exec process may take to be reaped.
const KILL_WAIT: Duration = Duration::from_secs(10);
/// How long output may keep flowing after the process exited (a background child can hold
/// the pipe open for ever; we stop reading after this).
pub(crate) const DRAIN_GRACE: Duration = Duration::from_secs(2);
/// Tries again of an Exec or Start call whose connection dropped.
const AMBIGUOUS_RETRIES: u32 = 3;
const AMBIGUOUS_DELAY: Duration = Duration::from_millis(200);
/// How long an Exec or Start call cut short by a dropped caller may take to land.
const IN_FLIGHT_GRACE: Duration = Duration::from_secs(1);

pub(crate) async fn exec_sync(
    inner: &Inner,
    id: &ContainerId,
    cmd: &[String],
    timeout: Option<Duration>,
) -> Result<ExecSyncOutput> {
    if cmd.is_empty() {
        return Err(Error::InvalidArgument(format!(
            "exec in container {id}: the command is empty"
        )));
    }
    let spec = running_spec(inner, id).await?;
    let process = exec_process(&spec, cmd, false, None)?;
    let timeout = timeout.filter(|t| !t.is_zero());
    let exec_id = new_exec_id();
    let dir = container_dir(&inner.runtime.state_dir, id.as_str());
    let (fifos, stdout, stderr) = Fifos::create(&dir, &exec_id)?;

    let mut exec = ExecProcess::new(&inner.daemon, id.as_str(), &exec_id);
    let mut out = Vec::new();
    let mut err = Vec::new();
    let (exited, exit_seen) = tokio::sync::oneshot::channel::<Duration>();
    let running = async {
        let result = run(inner, &mut exec, &fifos, process, timeout, cmd).await;
        // Never started: no writer will come, stop reading at once.
        let grace = if exec.started {
            DRAIN_GRACE
        } else {
            Duration::ZERO
        };
        let _ = exited.send(grace);
        result
    };
    let reading = async {
        let both = async {
            tokio::join!(drain(stdout, &mut out), drain(stderr, &mut err));
        };
        let late = async {
            let grace = exit_seen.await.unwrap_or(Duration::ZERO);
            tokio::time::sleep(grace).await;
        };
        tokio::select! {
            () = both => {}
            () = late => tracing::debug!(container = %id, "exec output still open after exit; stopped reading"),
        }
    };
    let (result, ()) = tokio::join!(running, reading);
    exec.delete().await;
    drop(fifos);
    let code = result?;
    tracing::debug!(backend = %inner.name, container = %id, exec_id, code, "exec finished");
    Ok(ExecSyncOutput {
        stdout: out,
        stderr: err,
        exit_code: i32::try_from(code).unwrap_or(i32::MAX),
    })
}

/// Creates, starts and waits for the exec process; kills it on timeout. Returns its exit
/// status.
async fn run(
    inner: &Inner,
    exec: &mut ExecProcess,
    fifos: &Fifos,
    process: prost_types::Any,
    timeout: Option<Duration>,
    cmd: &[String],
) -> Result<u32> {
    let (id, exec_id) = (exec.container_id.clone(), exec.exec_id.clone());
    let stdio = ExecStdio {
        stdin: String::new(),
        stdout: fifos.stdout.clone(),
        stderr: fifos.stderr.clone(),
        terminal: false,
    };
    exec.start(stdio, process).await?;
    let waited = match timeout {
        None => Some(exec.wait().await),
        Some(limit) => tokio::time::timeout(limit, exec.wait()).await.ok(),
    };
    match waited {
        Some(answer) => answer,
        None => {
            let limit = timeout.unwrap_or_default();
            tracing::info!(container = %id, exec_id, ?limit, "exec timed out; killing it");
            kill_and_reap(&inner.daemon, &id, &exec_id).await;
            exec.reaped = true;
            Err(Error::DeadlineExceeded(format!(
                "command {cmd:?} in container {id} timed out after {}s",
                limit.as_secs_f64()
            )))
        }
    }
}

/// SIGKILLs an exec process and waits (bounded) until containerd saw it exit.
async fn kill_and_reap(daemon: &Daemon, id: &str, exec_id: &str) {
    let kill = KillRequest {
        container_id: id.to_string(),
        exec_id: exec_id.to_string(),
        signal: SIGKILL,
        all: false,
    };
    if let Err(s) = daemon.tasks().kill(daemon.request(kill, None)).await {
        if !is_not_found(&s) {
            tracing::warn!(container = id, exec_id, error = %s, "killing exec process");
        }
        return;
    }
    let wait = WaitRequest {
        container_id: id.to_string(),
        exec_id: exec_id.to_string(),
    };
    let mut tasks = daemon.tasks();
    let waited = tokio::time::timeout(KILL_WAIT, tasks.wait(daemon.request(wait, None))).await;
    if !matches!(waited, Ok(Ok(_))) {
        tracing::warn!(
            container = id,
            exec_id,
            "killed exec process did not exit in time"
        );
    }
}

/// Reads a stream to its end, keeping at most [`OUTPUT_CAP`] bytes. Cancel-safe: what was
/// read stays in `buf`.
async fn drain(mut rx: fifo::Reader, buf: &mut Vec<u8>) {
    let mut chunk = vec![0u8; 64 << 10];
    loop {
        match rx.read(&mut chunk).await {
            Ok(0) => return,
            Ok(n) => {
                let room = OUTPUT_CAP.saturating_sub(buf.len());
                buf.extend_from_slice(&chunk[..n.min(room)]);
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => {
                tracing::warn!(error = %e, "reading exec output");
                return;
            }
        }
    }
}

/// The container's OCI spec as JSON (kept whole, so fields we do not model survive), from
/// its containerd object. Absent, or not a crimux container: NotFound.
pub(crate) async fn container_spec(inner: &Inner, id: &str) -> Result<serde_json::Value> {
    let not_found = || Error::NotFound(format!("container {id} not found"));
    let object = match object::get(inner, id).await {
        Ok(object) => object,
        Err(e) if e.is_not_found() => return Err(not_found()),
        Err(e) => return Err(e),
    };
    if object.labels.get(KIND_LABEL).map(String::as_str) != Some(KIND_CONTAINER) {
        return Err(not_found());
    }
    let spec = object
        .spec
        .ok_or_else(|| Error::Internal(format!("container {id} has no OCI spec")))?;
    serde_json::from_slice(&spec.value)
        .map_err(|e| Error::Internal(format!("OCI spec of container {id}: {e}")))
}

/// A fresh exec id; random, so concurrent execs never collide.
pub(crate) fn new_exec_id() -> String {
    format!("crimux-exec-{}", hex::encode(rand::random::<[u8; 8]>()))
}

/// The OCI spec of container `id`, which must exist (NotFound) and run
/// (FailedPrecondition).
pub(crate) async fn running_spec(inner: &Inner, id: &ContainerId) -> Result<serde_json::Value> {
    let spec = container_spec(inner, id.as_str()).await?;
    match task::state(inner, id.as_str()).await? {
        Some(state) if state.status == TaskStatus::Running => Ok(spec),
        _ => Err(Error::FailedPrecondition(format!(
            "container {id} is not running"
        ))),
    }
}

/// The exec process: the container's process with `cmd` as arguments, with a terminal of
/// `console` size (width, height) when known, or none.
pub(crate) fn exec_process(
    spec: &serde_json::Value,
    cmd: &[String],
    terminal: bool,
    console: Option<(u16, u16)>,
) -> Result<prost_types::Any> {
    let mut process = spec
        .get("process")
        .filter(|p| p.is_object())
        .cloned()
        .ok_or_else(|| Error::Internal("the container's OCI spec has no process".into()))?;
    if let Some(p) = process.as_object_mut() {
        p.insert("args".into(), serde_json::json!(cmd));
        p.insert("terminal".into(), serde_json::Value::Bool(terminal));
        p.remove("consoleSize");
        p.remove("commandLine");
        if let (true, Some((width, height))) = (terminal, console) {
            p.insert(
                "consoleSize".into(),
                serde_json::json!({"width": width, "height": height}),
            );
        }
    }
    let value = serde_json::to_vec(&process)
        .map_err(|e| Error::Internal(format!("encoding exec process: {e}")))?;
    Ok(prost_types::Any {
        type_url: PROCESS_TYPE_URL.to_string(),
        value,
    })
}

/// Where an exec process's stdio goes: FIFO paths (`""`: none).
pub(crate) struct ExecStdio {
    pub stdin: String,
    pub stdout: String,
    pub stderr: String,
    pub terminal: bool,
}

/// An exec process containerd may know of. Until [`ExecProcess::delete`] ran, dropping it
/// kills and deletes the process in the background.
pub(crate) struct ExecProcess {
    daemon: Daemon,
    pub container_id: String,
    pub exec_id: String,
    /// Set just before asking containerd to create the process.
    armed: bool,
    /// Set once the process runs (its output may then flow).
    pub started: bool,
    /// Set once containerd saw it exit.
    pub reaped: bool,
}

impl ExecProcess {
    /// Creates the process in containerd and starts it.
    pub(crate) async fn start(
        &mut self,
        stdio: ExecStdio,
        process: prost_types::Any,
    ) -> Result<()> {
        let (id, exec_id) = (self.container_id.clone(), self.exec_id.clone());
        self.armed = true;
        let request = ExecProcessRequest {
            container_id: id.clone(),
            stdin: stdio.stdin,
            stdout: stdio.stdout,
            stderr: stdio.stderr,
            terminal: stdio.terminal,
            spec: Some(process),
            exec_id: exec_id.clone(),
        };
        let mut tries = 0;
        loop {
            let created = self
                .daemon
                .tasks()
                .exec(self.daemon.request(request.clone(), None))
                .await;
            match created {
                Ok(_) => break,
                // The connection dropped: the call may have landed all the same.
                Err(s) if ambiguous(&s) && self.status().await.is_some() => break,
                Err(s) if ambiguous(&s) && tries < AMBIGUOUS_RETRIES => tries += 1,
                Err(s) => return Err(Error::backend(format!("exec in container {id}"), s)),
            }
            tokio::time::sleep(AMBIGUOUS_DELAY).await;
        }
        let start = StartRequest {
            container_id: id.clone(),
            exec_id: exec_id.clone(),
        };
        let mut tries = 0;
        loop {
            let started = self
                .daemon
                .tasks()
                .start(self.daemon.request(start.clone(), None))
                .await;
            match started {
                Ok(_) => break,
                Err(s) if ambiguous(&s) => match self.status().await {
                    Some(Status::Running | Status::Stopped | Status::Paused) => break,
                    Some(Status::Created) if tries < AMBIGUOUS_RETRIES => tries += 1,
                    _ => {
                        return Err(Error::backend(
                            format!("starting exec {exec_id} in container {id}"),
                            s,
                        ))
                    }
                },
                Err(s) => {
                    return Err(Error::backend(
                        format!("starting exec {exec_id} in container {id}"),
                        s,
                    ))
                }
            }
            tokio::time::sleep(AMBIGUOUS_DELAY).await;
        }
        self.started = true;
        Ok(())
    }

    /// The process's status as containerd reports it; `None` when unknown to it (or the
    /// daemon cannot say).
    async fn status(&self) -> Option<Status> {
        let request = GetRequest {
            container_id: self.container_id.clone(),
            exec_id: self.exec_id.clone(),
        };
        let answer = self
            .daemon
            .tasks()
            .get(self.daemon.request(request, None))
            .await
            .ok()?;
        let process = answer.into_inner().process?;
        Status::try_from(process.status).ok()
    }

    /// Waits for the process to exit and returns its exit status. Cancel-safe.
    pub(crate) async fn wait(&mut self) -> Result<u32> {
        let request = WaitRequest {
            container_id: self.container_id.clone(),
            exec_id: self.exec_id.clone(),
        };
        let done = self
            .daemon
            .tasks()
            .wait(self.daemon.request(request, None))
            .await
            .map_err(|s| {
                Error::backend(
                    format!("waiting for exec {} in {}", self.exec_id, self.container_id),
                    s,
                )
            })?;
        self.reaped = true;
        Ok(done.into_inner().exit_status)
    }

    pub(crate) fn new(daemon: &Daemon, container_id: &str, exec_id: &str) -> ExecProcess {
        ExecProcess {
            daemon: daemon.clone(),
            container_id: container_id.to_string(),
            exec_id: exec_id.to_string(),
            armed: false,
            started: false,
            reaped: false,
        }
    }

    /// Deletes the process, killing it first if it may still run (an error half way);
    /// nothing to do if it was never created.
    pub(crate) async fn delete(&mut self) {
        if !std::mem::take(&mut self.armed) {
            return;
        }
        if self.started && !self.reaped {
            kill_and_reap(&self.daemon, &self.container_id, &self.exec_id).await;
        }
        delete_process(&self.daemon, &self.container_id, &self.exec_id).await;
    }
}

impl Drop for ExecProcess {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let (daemon, id, exec_id) = (
            self.daemon.clone(),
            self.container_id.clone(),
            self.exec_id.clone(),
        );
        // Dropped before containerd confirmed the start: the Exec or Start call may still
        // land after a first cleanup, so look once more a little later.
        let in_flight = !self.started;
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(async move {
                    kill_and_reap(&daemon, &id, &exec_id).await;
                    delete_process(&daemon, &id, &exec_id).await;
                    if in_flight {
                        tokio::time::sleep(IN_FLIGHT_GRACE).await;
                        kill_and_reap(&daemon, &id, &exec_id).await;
                        delete_process(&daemon, &id, &exec_id).await;
                    }
                });
            }
            Err(_) => {
                tracing::warn!(container = %id, exec_id, "exec abandoned outside a runtime")
            }
        }
    }
}

/// Whether a failed call may have reached containerd anyway: the connection dropped
/// (a daemon may close one it considers idle) rather than containerd answering.
fn ambiguous(s: &tonic::Status) -> bool {
    matches!(s.code(), tonic::Code::Unknown | tonic::Code::Unavailable)
}

async fn delete_process(daemon: &Daemon, id: &str, exec_id: &str) {
    let request = DeleteProcessRequest {
        container_id: id.to_string(),
        exec_id: exec_id.to_string(),
    };
    match daemon
        .tasks()
        .delete_process(daemon.request(request, None))
        .await
    {
        Ok(_) => {}
        Err(s) if is_not_found(&s) => {}
        Err(s) => tracing::warn!(container = id, exec_id, error = %s, "deleting exec process"),
    }
}

/// The FIFOs of one exec; every one created is removed on drop.
pub(crate) struct Fifos {
    dir: PathBuf,
    exec_id: String,
    paths: Vec<PathBuf>,
    /// ExecSync's two (`""` when absent).
    stdout: String,
    stderr: String,
}

impl Fifos {
    /// No FIFOs yet, in `dir` (created if missing), for exec `exec_id`.
    pub(crate) fn new(dir: &Path, exec_id: &str) -> Result<Fifos> {
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::Internal(format!("creating {}: {e}", dir.display())))?;
        Ok(Fifos {
            dir: dir.to_path_buf(),
            exec_id: exec_id.to_string(),
            paths: Vec::new(),
            stdout: String::new(),
            stderr: String::new(),
        })
    }

    fn next(&mut self, stream: &str) -> PathBuf {
        let path = fifo::path(&self.dir, &format!("exec-{}-{stream}", self.exec_id));
        self.paths.push(path.clone());
        path
    }

    /// Creates the pipe for `stream` and opens its reading end, which waits for a late
    /// writer rather than seeing an early end-of-file. Returns the path for containerd.
    pub(crate) fn reader(&mut self, stream: &str) -> Result<(String, fifo::Reader)> {
        let path = self.next(stream);
        let reader = fifo::Reader::create(&path)?;
        Ok((path.to_string_lossy().into_owned(), reader))
    }

    /// Creates the pipe for `stream` and opens its writing end (no reader needed yet).
    pub(crate) fn writer(&mut self, stream: &str) -> Result<(String, fifo::Writer)> {
        let path = self.next(stream);
        let writer = fifo::Writer::create(&path)?;
        Ok((path.to_string_lossy().into_owned(), writer))
    }

    /// ExecSync's pair: stdout's and stderr's reading ends.
    fn create(dir: &Path, exec_id: &str) -> Result<(Fifos, fifo::Reader, fifo::Reader)> {
        let mut fifos = Fifos::new(dir, exec_id)?;
        let (stdout_path, stdout) = fifos.reader("stdout")?;
        let (stderr_path, stderr) = fifos.reader("stderr")?;
        fifos.stdout = stdout_path;
        fifos.stderr = stderr_path;
        Ok((fifos, stdout, stderr))
    }
}

impl Drop for Fifos {
    fn drop(&mut self) {
        for path in &self.paths {
            if let Err(e) = fifo::remove(path) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    tracing::warn!(path = %path.display(), error = %e, "removing exec FIFO");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn exec_process_takes_the_containers_process_with_new_args() {
        let spec = serde_json::json!({
            "ociVersion": "1.0.2",
            "process": {
                "terminal": true,
                "consoleSize": {"height": 1, "width": 2},
                "user": {"uid": 1000, "gid": 1000},
                "args": ["/bin/server"],
                "env": ["PATH=/bin"],
                "cwd": "/work"
            }
        });
        let any = exec_process(&spec, &["echo".into(), "hi".into()], false, Some((80, 24)))
            .expect("process");
        assert_eq!(any.type_url, PROCESS_TYPE_URL);
        let p: serde_json::Value = serde_json::from_slice(&any.value).expect("JSON");
        assert_eq!(p["args"], serde_json::json!(["echo", "hi"]));
        assert_eq!(p["terminal"], false);
        assert_eq!(p["user"]["uid"], 1000);
        assert_eq!(p["cwd"], "/work");
        assert!(p.get("consoleSize").is_none());
        let tty = exec_process(&spec, &["sh".into()], true, Some((80, 24))).expect("tty");
        let p: serde_json::Value = serde_json::from_slice(&tty.value).expect("JSON");
        assert_eq!(p["terminal"], true);
        assert_eq!(
            p["consoleSize"],
            serde_json::json!({"width": 80, "height": 24})
        );
        assert!(exec_process(&serde_json::json!({}), &["x".into()], false, None).is_err());
    }

    #[tokio::test]
    async fn fifos_wait_for_a_late_writer_and_are_removed_on_drop() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (fifos, rx, erx) =
            Fifos::create(&dir.path().join("c1"), "crimux-exec-1").expect("fifos");
        let (stdout, stderr) = (fifos.stdout.clone(), fifos.stderr.clone());
        let writer = std::thread::spawn(move || {
            // The reader is already waiting; a late writer must not be seen as EOF.
            std::thread::sleep(Duration::from_millis(200));
            let mut w = std::fs::OpenOptions::new()
                .write(true)
                .open(&stdout)
                .expect("open writer");
            w.write_all(b"hi\n").expect("write");
            drop(std::fs::OpenOptions::new().write(true).open(&stderr));
        });
        let mut out = Vec::new();
        let mut err = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), async {
            tokio::join!(drain(rx, &mut out), drain(erx, &mut err));
        })
        .await
        .expect("drained");
        writer.join().expect("writer");
        assert_eq!(out, b"hi\n");
        assert!(err.is_empty());
        let paths = fifos.paths.clone();
        assert_eq!(paths.len(), 2);
        assert!(paths.iter().all(|p| p.exists()));
        drop(fifos);
        assert!(paths.iter().all(|p| !p.exists()));
    }

    #[tokio::test]
    async fn output_is_capped() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (fifos, rx, _erx) = Fifos::create(dir.path(), "crimux-exec-2").expect("fifos");
        let path = fifos.paths[0].clone();
        let writer = std::thread::spawn(move || {
            let mut w = std::fs::OpenOptions::new()
                .write(true)
                .open(&path)
                .expect("writer");
            let block = vec![b'x'; 1 << 20];
            for _ in 0..(OUTPUT_CAP >> 20) + 2 {
                w.write_all(&block).expect("write");
            }
        });
        let mut out = Vec::new();
        drain(rx, &mut out).await;
        writer.join().expect("writer");
        assert_eq!(out.len(), OUTPUT_CAP);
    }
}
