//! StartContainer: the task, its output through the `crimux-log` binary-logging plugin
//! (CRI log format, SIGUSR1 reopens, an attach socket), and the start time in the record.
//! A failed start leaves the container Exited with reason StartError, as containerd's CRI
//! does, and no task behind.
//!
//! One exception to binary logging: a container with stdin and no terminal. containerd
//! 1.6's runc shim copies a process's stdin only when it copies the output itself (FIFO
//! stdio); with a `binary://` output the container gets /dev/null. So such a task gets
//! plain FIFOs for all three streams, and crimux starts `crimux-log` on the output FIFOs
//! itself, detached (own session, parent init), so the log still survives crimux: the
//! plugin's launcher returns once the logger holds the FIFOs open, before the shim opens
//! its ends. The shim closes its ends when the process exits; the logger then exits too.

use std::path::{Path, PathBuf};
use std::process::Stdio as ProcessStdio;
use std::time::{Duration, Instant};

use crimux_core::status::ContainerEventKind;
use crimux_core::{ContainerId, Error, Result};

use super::events;
use super::record::{attach_socket, container_dir, log_pidfile, record, save, StartFailure};
use crate::backend::Inner;
use crate::platform::fifo;
use crate::runtime::lock::{lock_container, lock_pod};
use crate::runtime::task::{self, Stdio};
use crate::sandbox::record::sandbox_pid;

/// Percent-encodes a query value: containerd parses the URI with Go's `url.Parse` and
/// decodes values (`+` as a space), so everything but unreserved characters and `/` is
/// escaped.
fn query_escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The log plugin as an absolute path: containerd runs `binary://` paths as they are.
fn plugin_path(configured: &Path) -> Result<PathBuf> {
    if configured.is_absolute() {
        return Ok(configured.to_path_buf());
    }
    std::env::var_os("PATH")
        .and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|p| p.join(configured))
                .find(|p| p.is_file())
        })
        .ok_or_else(|| {
            Error::FailedPrecondition(format!(
                "log plugin {} is not on PATH; configure its absolute path",
                configured.display()
            ))
        })
}

/// `binary://<plugin>?path=<log>&pidfile=<pidfile>[&attach=<socket>]`.
pub(crate) fn log_uri(plugin: &Path, log: &Path, pidfile: &Path, attach: Option<&Path>) -> String {
    let mut uri = format!(
        "binary://{}?path={}&pidfile={}",
        query_escape(&plugin.to_string_lossy()),
        query_escape(&log.to_string_lossy()),
        query_escape(&pidfile.to_string_lossy()),
    );
    if let Some(a) = attach {
        uri.push_str(&format!("&attach={}", query_escape(&a.to_string_lossy())));
    }
    uri
}

/// The stdin FIFO of a container opened with `stdin`.
pub(crate) fn stdin_fifo(state_dir: &Path, id: &str) -> PathBuf {
    container_dir(state_dir, id).join("stdin")
}

/// How long the plugin's launcher may take to report the detached logger ready.
const LOGGER_START: Duration = Duration::from_secs(10);
/// How long a detached logger may take to exit once its FIFOs ended.
const LOGGER_EXIT: Duration = Duration::from_secs(5);

/// Whether crimux runs the container's logger itself on FIFOs (stdin without a terminal)
/// rather than the shim through binary logging.
pub(crate) fn logs_through_fifos(stdin: bool, tty: bool) -> bool {
    stdin && !tty
}

/// Where the output of a container with stdin and no terminal goes when the CRI gave no log
/// path. It must go somewhere: with stdin but no stdout, the shim lets runc hand the
/// process runc's own output pipe, and `runc create` then never returns. The logger still
/// serves attach.
const DISCARDED_LOG: &str = "/dev/null";

/// The stdout and stderr FIFOs of a container whose logger crimux runs.
fn output_fifos(state_dir: &Path, id: &str) -> [PathBuf; 2] {
    let dir = container_dir(state_dir, id);
    [dir.join("stdout"), dir.join("stderr")]
}

/// Starts `crimux-log` detached on the output FIFOs and returns once it holds them open
/// and wrote its pidfile (or failed, with its message).
async fn start_detached_logger(
    inner: &Inner,
    id: &str,
    plugin: &Path,
    log: &Path,
    attach: Option<&Path>,
) -> Result<()> {
    let state_dir = &inner.runtime.state_dir;
    let [out, err] = output_fifos(state_dir, id);
    let mut cmd = tokio::process::Command::new(plugin);
    cmd.arg("path")
        .arg(log)
        .arg("pidfile")
        .arg(log_pidfile(state_dir, id))
        .arg("stdout-fifo")
        .arg(&out)
        .arg("stderr-fifo")
        .arg(&err);
    if let Some(a) = attach {
        cmd.arg("attach").arg(a);
    }
    cmd.env_clear()
        .env("CONTAINER_ID", id)
        .env("CONTAINER_NAMESPACE", inner.daemon.namespace())
        .stdin(ProcessStdio::null())
        .stdout(ProcessStdio::null())
        .stderr(ProcessStdio::piped())
        .kill_on_drop(true);
    let output = tokio::time::timeout(LOGGER_START, cmd.output())
        .await
        .map_err(|_| {
            Error::DeadlineExceeded(format!(
                "log plugin {} not ready within {LOGGER_START:?} for container {id}",
                plugin.display()
            ))
        })?
        .map_err(|e| Error::Internal(format!("running log plugin {}: {e}", plugin.display())))?;
    if !output.status.success() {
        return Err(Error::Internal(format!(
            "log plugin {} failed for container {id} ({}): {}",
            plugin.display(),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    tracing::debug!(container = id, "detached log plugin ready");
    Ok(())
}

/// Ends the detached logger of container `id` and removes its FIFOs: a writer that comes
/// and goes on each output FIFO is the end-of-file the logger exits at (once the shim's
/// ends are closed too: call after the task is deleted or was never created), then wait
/// for its pidfile to go. Never fails: what is left is logged.
pub(crate) async fn end_detached_logger(state_dir: &Path, id: &str) {
    let outputs = output_fifos(state_dir, id);
    for path in &outputs {
        match fifo::Writer::open(path) {
            Ok(writer) => drop(writer),
            Err(e) => tracing::debug!(container = id, %e, "no output FIFO to close"),
        }
    }
    let pidfile = log_pidfile(state_dir, id);
    let deadline = Instant::now() + LOGGER_EXIT;
    while tokio::fs::try_exists(&pidfile).await.unwrap_or(false) {
        if Instant::now() >= deadline {
            tracing::warn!(container = id, pidfile = %pidfile.display(), "log plugin still running");
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for path in outputs.iter().chain([&stdin_fifo(state_dir, id)]) {
        match fifo::remove(path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(container = id, path = %path.display(), %e, "FIFO left behind")
            }
        }
    }
}

async fn stdio(inner: &Inner, id: &str, log_path: &str, tty: bool, stdin: bool) -> Result<Stdio> {
    let state_dir = &inner.runtime.state_dir;
    let dir = container_dir(state_dir, id);
    tokio::fs::create_dir_all(&dir)
        .await
        .map_err(|e| Error::Internal(format!("creating {}: {e}", dir.display())))?;
    let mut out = Stdio {
        terminal: tty,
        ..Stdio::default()
    };
    if stdin {
        let fifo = stdin_fifo(state_dir, id);
        fifo::recreate(&fifo)?;
        out.stdin = fifo.to_string_lossy().into_owned();
    }
    let log_path = if log_path.is_empty() && logs_through_fifos(stdin, tty) {
        DISCARDED_LOG
    } else {
        log_path
    };
    if !log_path.is_empty() {
        let log = Path::new(log_path);
        if let Some(parent) = log.parent() {
            tokio::fs::create_dir_all(parent)
                .await
                .map_err(|e| Error::Internal(format!("creating {}: {e}", parent.display())))?;
        }
        let attach = attach_socket(state_dir, id);
        if let Some(a) = attach.as_deref().and_then(Path::parent) {
            tokio::fs::create_dir_all(a)
                .await
                .map_err(|e| Error::Internal(format!("creating {}: {e}", a.display())))?;
        } else {
            tracing::warn!(container = id, "state dir too deep for an attach socket");
        }
        let plugin = plugin_path(&inner.runtime.log_plugin)?;
        if logs_through_fifos(stdin, tty) {
            let [stdout, stderr] = output_fifos(state_dir, id);
            fifo::recreate(&stdout)?;
            fifo::recreate(&stderr)?;
            if let Err(e) = start_detached_logger(inner, id, &plugin, log, attach.as_deref()).await
            {
                end_detached_logger(state_dir, id).await;
                return Err(e);
            }
            out.stdout = stdout.to_string_lossy().into_owned();
            out.stderr = stderr.to_string_lossy().into_owned();
            return Ok(out);
        }
        let uri = log_uri(&plugin, log, &log_pidfile(state_dir, id), attach.as_deref());
        out.stdout = uri.clone();
        if !tty {
            out.stderr = uri;
        }
    }
    Ok(out)
}

pub(crate) async fn start(inner: &Inner, id: &ContainerId) -> Result<()> {
    // The pod's lock first (the order every path takes: pod, then container), so a start
    // racing StopPodSandbox either runs before the stop, which then stops it, or finds the
    // pod not ready: never a running container in a stopped pod. A container's sandbox never
    // changes, so reading it before locking is safe.
    let sandbox_id = record(inner, id).await?.sandbox_id;
    let _pod = lock_pod(&inner.runtime.state_dir, sandbox_id.as_str()).await;
    let _me = lock_container(&inner.runtime.state_dir, id.as_str()).await;
    let mut rec = record(inner, id).await?;
    let t = task::state(inner, id.as_str()).await?;
    if t.is_some() || rec.started_at != 0 || rec.start_failure.is_some() {
        return Err(Error::FailedPrecondition(format!(
            "container {id} is not in the created state"
        )));
    }
    if sandbox_pid(inner, &rec.sandbox_id).await?.is_none() {
        return Err(Error::FailedPrecondition(format!(
            "pod sandbox {} of container {id} is not ready",
            rec.sandbox_id
        )));
    }

    let started = async {
        let io = stdio(
            inner,
            id.as_str(),
            &rec.log_path,
            rec.config.tty,
            rec.config.stdin,
        )
        .await?;
        let run = async {
            task::create(inner, id.as_str(), &io).await?;
            // Stamped before the process runs: a quick exit must not precede its start.
            let at = crate::runtime::now_nanos();
            if let Err(e) = task::start(inner, id.as_str()).await {
                if let Err(undo) = task::delete(inner, id.as_str()).await {
                    tracing::warn!(container = %id, %undo, "rollback: task left behind");
                }
                return Err(e);
            }
            Ok(at)
        }
        .await;
        if run.is_err() && logs_through_fifos(rec.config.stdin, rec.config.tty) {
            end_detached_logger(&inner.runtime.state_dir, id.as_str()).await;
        }
        run
    }
    .await;
    let at = match started {
        Ok(at) => at,
        Err(e) => {
            rec.start_failure = Some(StartFailure {
                at: crate::runtime::now_nanos(),
                message: e.to_string(),
            });
            if let Err(save_err) = save(inner, &rec).await {
                tracing::warn!(container = %id, %save_err, "could not record the failed start");
            }
            events::emit(inner, id, &rec.sandbox_id, ContainerEventKind::Stopped).await;
            return Err(e);
        }
    };
    rec.started_at = at;
    if let Err(e) = save(inner, &rec).await {
        // Without the record the container would look never started: undo the start.
        if let Err(undo) = super::stop::kill_and_wait(inner, id.as_str()).await {
            tracing::warn!(container = %id, %undo, "rollback: task still running");
        }
        if let Err(undo) = task::delete(inner, id.as_str()).await {
            tracing::warn!(container = %id, %undo, "rollback: task left behind");
        }
        return Err(e);
    }
    tracing::info!(backend = %inner.name, container = %id, "container started");
    events::emit(inner, id, &rec.sandbox_id, ContainerEventKind::Started).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_uris_escape_their_values() {
        let uri = log_uri(
            Path::new("/usr/bin/crimux-log"),
            Path::new("/var/log/pods/ns_a+b c/x/0.log"),
            Path::new("/s/log.pid"),
            Some(Path::new("/s/attach.sock")),
        );
        assert_eq!(
            uri,
            "binary:///usr/bin/crimux-log?path=/var/log/pods/ns_a%2Bb%20c/x/0.log\
             &pidfile=/s/log.pid&attach=/s/attach.sock"
        );
        assert!(
            !log_uri(Path::new("/p"), Path::new("/l"), Path::new("/f"), None).contains("attach")
        );
    }

    #[test]
    fn plugin_paths_are_absolute() {
        assert_eq!(
            plugin_path(Path::new("/x/y")).expect("abs"),
            Path::new("/x/y")
        );
        assert_eq!(
            plugin_path(Path::new("sh"))
                .expect("on PATH")
                .file_name()
                .unwrap(),
            "sh"
        );
        let err = plugin_path(Path::new("no-such-plugin-here")).expect_err("missing");
        assert_eq!(err.code(), tonic::Code::FailedPrecondition);
    }
}
