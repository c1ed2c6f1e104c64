//! Attach: the client's streams joined to a running container's main process.
//!
//! Output does not come from the container's pipes (the shim hands those to `crimux-log`,
//! which keeps writing the CRI log whoever is attached) but from the log plugin's attach
//! socket, which fans out a raw copy of every output chunk as frames (`crimux_cri_log::
//! attach`). Input goes into the container's stdin FIFO, which crimux created at start
//! (`container::start::stdin_fifo`); the shim copies it to the process (with a terminal,
//! through the console; without, because such a container's output goes through FIFOs
//! to a `crimux-log` crimux started, not through binary logging, see `container::start`).
//! The shim keeps a writer of its own on that FIFO, so a client leaving does not end the
//! process's stdin; `stdin_once` ends it with CloseIO. Resizes go to the main process's
//! terminal.
//!
//! A slow client stalls only its own socket: the log plugin never waits on attach
//! clients; one that falls too far behind is disconnected, which ends the session.

use containerd_client::services::v1::WaitRequest;
use crimux_core::streaming::StreamIo;
use crimux_core::{ContainerId, Error, Result};
use crimux_cri_log::attach::FrameDecoder;
use crimux_cri_log::Stream;
use tokio::io::AsyncReadExt;

use super::pump::{self, InputEnd, Sink, CHUNK};
use crate::backend::Inner;
use crate::container::record::{attach_socket, record, ContainerRecord};
use crate::container::start::stdin_fifo;
use crate::platform::{attach as socket, fifo};
use crate::runtime::task::{self, TaskStatus};

/// The container's record, if it can be attached to now: it exists (NotFound), runs and
/// was created with stdin or a tty (FailedPrecondition).
pub(super) async fn check(inner: &Inner, id: &ContainerId) -> Result<ContainerRecord> {
    let rec = record(inner, id).await?;
    match task::state(inner, id.as_str()).await? {
        Some(state) if state.status == TaskStatus::Running => {}
        _ => {
            return Err(Error::FailedPrecondition(format!(
                "container {id} is not running"
            )))
        }
    }
    if !rec.config.stdin && !rec.config.tty {
        return Err(Error::FailedPrecondition(format!(
            "container {id} was not created with stdin or tty; attach needs one of them"
        )));
    }
    Ok(rec)
}

pub(super) async fn attach(inner: &Inner, id: &ContainerId, mut io: StreamIo) -> Result<()> {
    let rec = check(inner, id).await?;
    let tty = rec.config.tty;
    let state_dir = &inner.runtime.state_dir;
    let output_wanted = io.stdout.is_some() || io.stderr.is_some();

    let connected = match attach_socket(state_dir, id.as_str()) {
        Some(path) => match socket::connect(&path).await {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::debug!(container = %id, path = %path.display(), error = %e, "no attach socket");
                None
            }
        },
        None => None,
    };
    if connected.is_none() && output_wanted {
        return Err(Error::FailedPrecondition(format!(
            "container {id} has no attach socket (it runs without a log path, or its log \
             plugin is gone), so its output cannot be attached to"
        )));
    }
    // stdin only reaches a container created with stdin; a tty-only container has none.
    let stdin = match (io.stdin.take(), rec.config.stdin) {
        (Some(client), true) => {
            let writer = fifo::Writer::open(&stdin_fifo(state_dir, id.as_str()))?;
            Some((client, writer))
        }
        _ => None,
    };
    let mut stdout = Sink::new(io.stdout.take(), "stdout");
    let mut stderr = Sink::new(if tty { None } else { io.stderr.take() }, "stderr");
    tracing::debug!(backend = %inner.name, container = %id, tty, "attach session starting");

    let output = async {
        match connected {
            Some(conn) => copy_frames(conn, &mut stdout, &mut stderr, tty).await,
            None => wait_exit(inner, id).await,
        }
    };
    let input = async {
        if let Some((client, writer)) = stdin {
            let end = pump::client_to_pipe(client, writer).await;
            // As containerd's CRI does: a tty's stdin stays open (kubectl detaches from a
            // terminal without meaning to end it, kubernetes#52686).
            if end == InputEnd::Eof && rec.config.stdin_once && !tty {
                if let Err(e) = pump::close_stdin(&inner.daemon, id.as_str(), "").await {
                    tracing::warn!(container = %id, %e, "closing the container's stdin");
                }
            }
        }
        if output_wanted {
            std::future::pending::<()>().await;
        }
    };
    let resizing = async {
        if let (true, Some(sizes)) = (tty, io.resize.take()) {
            pump::resize_loop(&inner.daemon, id.as_str(), "", sizes).await;
        }
    };
    tokio::select! {
        () = output => {}
        () = input => {}
        never = pump::then_idle(resizing) => match never {},
    }
    tracing::debug!(backend = %inner.name, container = %id, "attach session finished");
    Ok(())
}

/// Delivers output frames until the log plugin closes the socket (the process exited, or
/// the plugin dropped a client that fell behind) or every client stream failed.
async fn copy_frames(
    mut conn: socket::AttachStream,
    stdout: &mut Sink,
    stderr: &mut Sink,
    tty: bool,
) {
    let wanted = stdout.open() || stderr.open();
    let mut decoder = FrameDecoder::new();
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = match conn.read(&mut buf).await {
            Ok(0) => return,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                tracing::debug!(error = %e, "reading the attach socket");
                return;
            }
        };
        decoder.extend(&buf[..n]);
        loop {
            match decoder.next_frame() {
                Ok(Some((stream, data))) => {
                    // With a tty there is one output and it is stdout.
                    let sink = if tty || stream == Stream::Stdout {
                        &mut *stdout
                    } else {
                        &mut *stderr
                    };
                    sink.send(&data).await;
                }
                Ok(None) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "malformed attach frame; ending the session");
                    return;
                }
            }
        }
        if wanted && !stdout.open() && !stderr.open() {
            return;
        }
    }
}

/// Waits until the container's main process exited (no attach socket to tell us).
async fn wait_exit(inner: &Inner, id: &ContainerId) {
    let request = WaitRequest {
        container_id: id.as_str().to_string(),
        exec_id: String::new(),
    };
    if let Err(s) = inner
        .daemon
        .tasks()
        .wait(inner.daemon.request(request, None))
        .await
    {
        tracing::debug!(container = %id, error = %s, "waiting for the container to exit");
    }
}
