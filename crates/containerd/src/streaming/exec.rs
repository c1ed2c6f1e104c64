//! Exec with the client's streams: a containerd exec process (the container's own process
//! spec with other arguments, as ExecSync runs it) whose stdio are FIFOs under the
//! container's state directory, pumped to and from the client.
//!
//! With a tty there is one output FIFO (a terminal merges stdout and stderr) and resizes
//! go to containerd's ResizePty. The client's stdin end becomes the process's end-of-file
//! (crimux's end of the FIFO closed, then CloseIO for the shim's). The exit code is
//! returned once the output is delivered; output still flowing after the exit (a
//! background child holding the pipe) is read while it keeps coming, within a bound.
//!
//! The future may be dropped at any point: [`ExecProcess`] kills and deletes the process
//! in the background and [`Fifos`] removes the pipes, so a client that goes away leaks
//! nothing. Nothing is spawned per session and nothing is shared between sessions, so
//! sessions run side by side.

use std::time::{Duration, Instant};

use crimux_core::streaming::{ExecSpec, StreamIo};
use crimux_core::{ContainerId, Error, Result};
use tonic::Code;

use super::pump::{self, InputEnd, Progress, Sink};
use crate::backend::Inner;
use crate::container::exec::{
    exec_process, new_exec_id, running_spec, ExecProcess, ExecStdio, Fifos, DRAIN_GRACE,
};
use crate::container::record::container_dir;

/// The longest output may keep flowing after the process exited.
const DRAIN_CAP: Duration = Duration::from_secs(30);
/// Back-to-back Wait failures tolerated before the session fails.
const WAIT_RETRIES: u32 = 5;
/// A Wait that fails sooner than this counts as back to back.
const WAIT_RETRY_QUICK: Duration = Duration::from_secs(2);
const WAIT_RETRY_DELAY: Duration = Duration::from_millis(200);

pub(super) async fn check(inner: &Inner, id: &ContainerId) -> Result<()> {
    running_spec(inner, id).await.map(drop)
}

pub(super) async fn exec(
    inner: &Inner,
    id: &ContainerId,
    spec: &ExecSpec,
    mut io: StreamIo,
) -> Result<i32> {
    if spec.cmd.is_empty() {
        return Err(Error::InvalidArgument(format!(
            "exec in container {id}: the command is empty"
        )));
    }
    let oci = running_spec(inner, id).await?;
    let tty = spec.tty;
    let mut resize = if tty { io.resize.take() } else { None };
    let first = pump::queued_size(&mut resize);
    let process = exec_process(&oci, &spec.cmd, tty, first.map(|s| (s.width, s.height)))?;
    let exec_id = new_exec_id();
    let dir = container_dir(&inner.runtime.state_dir, id.as_str());

    let mut fifos = Fifos::new(&dir, &exec_id)?;
    let mut stdio = ExecStdio {
        stdin: String::new(),
        stdout: String::new(),
        stderr: String::new(),
        terminal: tty,
    };
    let stdin = match io.stdin.take() {
        Some(client) => {
            let (path, writer) = fifos.writer("stdin")?;
            stdio.stdin = path;
            Some((client, writer))
        }
        None => None,
    };
    // Output FIFOs exist even for streams the client did not ask for: their output is
    // read and dropped, so the process never blocks or dies on a closed pipe.
    let (path, stdout) = fifos.reader("stdout")?;
    stdio.stdout = path;
    let stderr = if tty {
        None
    } else {
        let (path, reader) = fifos.reader("stderr")?;
        stdio.stderr = path;
        Some(reader)
    };
    let stdout_sink = Sink::new(io.stdout.take(), "stdout");
    let stderr_sink = Sink::new(if tty { None } else { io.stderr.take() }, "stderr");

    let mut exec = ExecProcess::new(&inner.daemon, id.as_str(), &exec_id);
    tracing::debug!(backend = %inner.name, container = %id, exec_id, tty, "exec session starting");
    let delivered = Progress::default();
    let (exited, exit_seen) = tokio::sync::oneshot::channel::<Duration>();
    let running = async {
        let result = async {
            exec.start(stdio, process).await?;
            let (cid, eid) = (id.as_str(), exec_id.as_str());
            let input = async {
                if let Some((client, writer)) = stdin {
                    if pump::client_to_pipe(client, writer).await == InputEnd::Eof {
                        if let Err(e) = pump::close_stdin(&inner.daemon, cid, eid).await {
                            tracing::warn!(container = cid, exec_id = eid, %e, "closing exec stdin");
                        }
                    }
                }
            };
            let resizing = async {
                if let Some(sizes) = resize {
                    pump::resize_loop(&inner.daemon, cid, eid, sizes).await;
                }
            };
            let side = async {
                tokio::join!(input, resizing);
            };
            tokio::select! {
                code = wait(&mut exec) => code,
                never = pump::then_idle(side) => match never {},
            }
        }
        .await;
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
            tokio::join!(
                pump::pipe_to_client(stdout, stdout_sink, &delivered),
                async {
                    if let Some(reader) = stderr {
                        pump::pipe_to_client(reader, stderr_sink, &delivered).await;
                    }
                },
            );
        };
        let late = async {
            let grace = exit_seen.await.unwrap_or(Duration::ZERO);
            drain_window(grace, &delivered).await;
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
    tracing::debug!(backend = %inner.name, container = %id, exec_id, code, "exec session finished");
    Ok(i32::try_from(code).unwrap_or(i32::MAX))
}

/// Waits for the exec process to exit. A long session outlives gRPC connections (a daemon
/// may drop an idle-looking one): a Wait cut by the transport is asked again, as long as
/// such failures do not come back to back.
async fn wait(exec: &mut ExecProcess) -> Result<u32> {
    let mut quick = 0;
    loop {
        let asked = Instant::now();
        match exec.wait().await {
            Err(e)
                if matches!(e.code(), Code::Unavailable | Code::Unknown)
                    && quick < WAIT_RETRIES =>
            {
                quick = if asked.elapsed() < WAIT_RETRY_QUICK {
                    quick + 1
                } else {
                    0
                };
                tracing::debug!(container = %exec.container_id, exec_id = %exec.exec_id, %e, "waiting for the exec process again");
                tokio::time::sleep(WAIT_RETRY_DELAY).await;
            }
            other => return other,
        }
    }
}

/// After the exit: returns once output has been idle for `grace` (nothing delivered and
/// no send under way), or after [`DRAIN_CAP`], so a slow client still gets the end of the
/// output but a background child writing for ever does not hold the session.
async fn drain_window(grace: Duration, progress: &Progress) {
    if grace.is_zero() {
        return;
    }
    let started = Instant::now();
    let mut seen = progress.mark();
    loop {
        tokio::time::sleep(grace).await;
        let now = progress.mark();
        if (now.is_some() && now == seen) || started.elapsed() >= DRAIN_CAP {
            return;
        }
        seen = now;
    }
}
