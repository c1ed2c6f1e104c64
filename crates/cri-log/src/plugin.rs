//! The `crimux-log` runtime: containerd binary logging, the plugin side.
//!
//! What the containerd 1.6 runc shim does (`pkg/process/io.go`, `NewBinaryIO`):
//! it creates a pipe for stdout and one for stderr and starts the binary with
//! their read ends as fds 3 and 4 and the write end of a "ready" pipe as fd 5;
//! the environment is only `CONTAINER_ID` and `CONTAINER_NAMESPACE`; stdin,
//! stdout and stderr are /dev/null. The shim blocks reading the ready pipe until
//! we close fd 5 (or exit), then starts the container. On task delete it closes
//! its pipe ends and sends SIGTERM, waiting 12 s before SIGKILL.
//!
//! So: open the log file, set up signals, the attach socket and the pidfile,
//! then close fd 5; copy both streams into the file until both reach EOF; on
//! SIGUSR1 reopen the file (after kubelet rotated it); on SIGTERM/SIGINT keep
//! draining for [`TERM_GRACE`], then write what is buffered and exit.
//!
//! In detached mode (`crate::daemon`) the streams are FIFOs crimux named and the
//! ready pipe leads to the launcher, which also learns why setup failed.

use std::fs;
use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::unix::pipe;
use tokio::net::{UnixListener, UnixStream};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::{timeout, Instant};
use tracing::{debug, error, info, warn};

use crate::args::PluginConfig;
use crate::attach::encode_frames;
use crate::error::{Error, Result};
use crate::file::{LogFile, LogFileOptions};
use crate::format::{LineEncoder, Stream};
use crate::timestamp::Timestamp;

pub const STDOUT_FD: RawFd = 3;
pub const STDERR_FD: RawFd = 4;
pub const READY_FD: RawFd = 5;
/// How long to keep draining after SIGTERM (containerd SIGKILLs after 12 s).
pub const TERM_GRACE: Duration = Duration::from_secs(5);
/// How long an attach client may take to accept one frame before it is dropped.
const ATTACH_WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// Frames an attach client may fall behind before it is dropped.
const ATTACH_QUEUE: usize = 128;
const READ_BUF: usize = 32 * 1024;
/// Encoded batches waiting for the file; when full, reading pauses (as under
/// containerd, a stalled disk slows the container rather than losing lines).
const WRITER_QUEUE: usize = 64;

/// The descriptors the shim hands over (or the detached daemon opened).
#[derive(Debug)]
pub struct PluginFds {
    pub stdout: OwnedFd,
    pub stderr: OwnedFd,
    /// Closed once we are ready; `None` when started by hand without fd 5.
    pub ready: Option<Ready>,
}

/// Who waits for us to be ready.
#[derive(Debug)]
pub enum Ready {
    /// The shim's fd 5: only closed, ready or not (the shim reads one byte or EOF).
    Shim(OwnedFd),
    /// The launcher of a detached daemon: a setup failure writes its message first.
    Launcher(OwnedFd),
}

impl Ready {
    fn failed(self, error: &Error) {
        if let Ready::Launcher(fd) = self {
            crate::daemon::report_failure(fd, error);
        }
    }
}

impl PluginFds {
    /// Takes ownership of inherited fds 3, 4 and (if open) 5.
    ///
    /// # Safety
    /// Call once, at program start, before anything else in the process opens
    /// or wraps a file descriptor: descriptors 3..=5 must be the inherited ones
    /// and owned by nothing else.
    pub unsafe fn inherited() -> Result<Self> {
        let take = |fd: RawFd| -> Option<OwnedFd> {
            // SAFETY: F_GETFD only reads the descriptor flags; no memory is touched.
            let open = unsafe { libc::fcntl(fd, libc::F_GETFD) } != -1;
            // SAFETY: the descriptor is open and, per this function's contract,
            // inherited and not owned by anything else in the process.
            open.then(|| unsafe { OwnedFd::from_raw_fd(fd) })
        };
        let missing = |what: &str| {
            Error::InvalidArgument(format!(
                "{what} is not open: crimux-log must be started by the containerd shim \
                 (binary logging) with stdout on fd 3, stderr on fd 4 and ready on fd 5"
            ))
        };
        let stdout = take(STDOUT_FD).ok_or_else(|| missing("fd 3 (container stdout)"))?;
        let stderr = take(STDERR_FD).ok_or_else(|| missing("fd 4 (container stderr)"))?;
        let ready = take(READY_FD).map(Ready::Shim);
        Ok(Self {
            stdout,
            stderr,
            ready,
        })
    }
}

enum WriterMsg {
    Entries(Vec<u8>),
    Reopen,
}

/// Everything set up before we tell the shim (or launcher) we are ready.
struct Prepared {
    file: LogFile,
    stdout: pipe::Receiver,
    stderr: pipe::Receiver,
    usr1: tokio::signal::unix::Signal,
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    frames: Option<broadcast::Sender<Bytes>>,
    attach: Option<AttachHub>,
}

fn prepare(
    config: &PluginConfig,
    stdout: OwnedFd,
    stderr: OwnedFd,
    cleanup: &mut Cleanup,
) -> Result<Prepared> {
    let options = LogFileOptions {
        create_parent_dirs: config.create_parent_dirs,
        ..LogFileOptions::default()
    };
    let file = LogFile::open(&config.path, options)?;
    let stdout = pipe::Receiver::from_owned_fd(stdout).map_err(os("use stdout as a pipe"))?;
    let stderr = pipe::Receiver::from_owned_fd(stderr).map_err(os("use stderr as a pipe"))?;
    // Handlers go in before the pidfile exists: SIGUSR1's default action kills.
    let usr1 = signal(SignalKind::user_defined1()).map_err(os("handle SIGUSR1"))?;
    let term = signal(SignalKind::terminate()).map_err(os("handle SIGTERM"))?;
    let int = signal(SignalKind::interrupt()).map_err(os("handle SIGINT"))?;
    let (frames, attach) = match &config.attach {
        Some(path) => {
            let (tx, hub) = AttachHub::bind(path, cleanup)?;
            (Some(tx), Some(hub))
        }
        None => (None, None),
    };
    if let Some(path) = &config.pidfile {
        write_pidfile(path)?;
        cleanup.paths.push(path.clone());
    }
    Ok(Prepared {
        file,
        stdout,
        stderr,
        usr1,
        term,
        int,
        frames,
        attach,
    })
}

/// Runs the plugin until both streams end (or the SIGTERM grace runs out).
pub async fn run(config: PluginConfig, fds: PluginFds) -> Result<()> {
    let PluginFds {
        stdout,
        stderr,
        ready,
    } = fds;
    let mut cleanup = Cleanup::default();
    let Prepared {
        file,
        stdout,
        stderr,
        mut usr1,
        mut term,
        mut int,
        frames,
        attach,
    } = match prepare(&config, stdout, stderr, &mut cleanup) {
        Ok(prepared) => prepared,
        Err(e) => {
            if let Some(ready) = ready {
                ready.failed(&e);
            }
            return Err(e);
        }
    };
    drop(ready);
    info!(path = %config.path.display(), max_line = config.max_line, "crimux-log ready");

    let (tx, rx) = mpsc::channel(WRITER_QUEUE);
    let writer = tokio::task::spawn_blocking(move || write_loop(file, rx));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut pumps = JoinSet::new();
    for (stream, pipe) in [(Stream::Stdout, stdout), (Stream::Stderr, stderr)] {
        let pump = Pump {
            stream,
            max_line: config.max_line,
            entries: tx.clone(),
            frames: frames.clone(),
            stop: stop_rx.clone(),
        };
        pumps.spawn(pump.run(pipe));
    }
    drop(frames);

    let grace = tokio::time::sleep(Duration::ZERO);
    tokio::pin!(grace);
    let mut terminating = false;
    loop {
        tokio::select! {
            done = pumps.join_next() => match done {
                None => break,
                Some(Ok(())) => {}
                Some(Err(e)) => error!(%e, "stream task failed"),
            },
            _ = usr1.recv() => {
                info!("SIGUSR1: reopening log file");
                // The writer only stops after every sender is gone; this cannot fail.
                let _ = tx.send(WriterMsg::Reopen).await;
            }
            _ = term.recv(), if !terminating => {
                info!("SIGTERM: draining until EOF");
                terminating = true;
                grace.as_mut().reset(Instant::now() + TERM_GRACE);
            }
            _ = int.recv(), if !terminating => {
                info!("SIGINT: draining until EOF");
                terminating = true;
                grace.as_mut().reset(Instant::now() + TERM_GRACE);
            }
            _ = &mut grace, if terminating && !*stop_tx.borrow() => {
                warn!("streams still open after the grace period; stopping");
                let _ = stop_tx.send(true);
            }
        }
    }
    drop(tx);
    match writer.await {
        Ok(file) => {
            if let Err(e) = file.sync() {
                warn!(%e, "final sync failed");
            }
        }
        Err(e) => error!(%e, "writer task failed"),
    }
    if let Some(hub) = attach {
        hub.shutdown().await;
    }
    info!("both streams closed; exiting");
    Ok(())
}

fn os(op: &'static str) -> impl FnOnce(io::Error) -> Error {
    move |source| Error::Os { op, source }
}

/// Owns the file and writes every batch in arrival order, so entries of the two
/// streams land whole and a reopen splits the output exactly at the signal.
fn write_loop(mut file: LogFile, mut rx: mpsc::Receiver<WriterMsg>) -> LogFile {
    let mut failing = false;
    while let Some(msg) = rx.blocking_recv() {
        match msg {
            WriterMsg::Entries(batch) => match file.write_entries(&batch) {
                Ok(()) => failing = false,
                Err(e) => {
                    // Log once per run of failures, keep draining the container.
                    if !failing {
                        error!(%e, "cannot write the log file; output is lost until it works");
                    }
                    failing = true;
                }
            },
            WriterMsg::Reopen => match file.reopen() {
                Ok(()) => info!(path = %file.path().display(), "log file reopened"),
                Err(e) => error!(%e, "reopen failed; still writing to the old file"),
            },
        }
    }
    file
}

/// Copies one stream: read, fan out raw to attach clients, encode, queue.
struct Pump {
    stream: Stream,
    max_line: usize,
    entries: mpsc::Sender<WriterMsg>,
    frames: Option<broadcast::Sender<Bytes>>,
    stop: watch::Receiver<bool>,
}

impl Pump {
    async fn run(mut self, mut pipe: pipe::Receiver) {
        let mut enc = LineEncoder::new(self.stream, self.max_line);
        let mut buf = vec![0u8; READ_BUF];
        loop {
            let n = tokio::select! {
                biased;
                _ = self.stop.wait_for(|stop| *stop) => break,
                read = pipe.read(&mut buf) => match read {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        warn!(stream = %self.stream, %e, "read failed; treating as EOF");
                        break;
                    }
                },
            };
            let data = &buf[..n];
            if let Some(frames) = self.frames.as_ref().filter(|f| f.receiver_count() > 0) {
                let mut frame = BytesMut::new();
                encode_frames(self.stream, data, &mut frame);
                // An error only means every client left meanwhile.
                let _ = frames.send(frame.freeze());
            }
            let mut out = Vec::new();
            enc.push(data, Timestamp::now(), &mut out);
            if !out.is_empty() && self.entries.send(WriterMsg::Entries(out)).await.is_err() {
                return;
            }
        }
        let mut out = Vec::new();
        enc.finish(Timestamp::now(), &mut out);
        if !out.is_empty() {
            let _ = self.entries.send(WriterMsg::Entries(out)).await;
        }
        debug!(stream = %self.stream, "stream closed");
    }
}

/// The attach socket: every client gets its own view of a bounded broadcast;
/// one that falls [`ATTACH_QUEUE`] frames behind, or stalls a write for
/// [`ATTACH_WRITE_TIMEOUT`], is disconnected. Sending never waits on clients.
struct AttachHub {
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl AttachHub {
    fn bind(path: &Path, cleanup: &mut Cleanup) -> Result<(broadcast::Sender<Bytes>, Self)> {
        match fs::symlink_metadata(path) {
            Ok(meta) if meta.file_type().is_socket() => {
                fs::remove_file(path).map_err(|e| Error::io("remove stale socket", path, e))?
            }
            Ok(_) => {
                return Err(Error::InvalidArgument(format!(
                    "attach={} exists and is not a socket",
                    path.display()
                )))
            }
            Err(_) => {}
        }
        let listener = UnixListener::bind(path).map_err(|e| Error::io("bind", path, e))?;
        cleanup.paths.push(path.to_path_buf());
        fs::set_permissions(path, fs::Permissions::from_mode(0o600))
            .map_err(|e| Error::io("chmod", path, e))?;
        let (frames, _) = broadcast::channel(ATTACH_QUEUE);
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(accept_loop(listener, frames.clone(), stopped));
        Ok((frames, Self { stop, task }))
    }

    /// Stops accepting, lets connected clients drain (bounded), and returns.
    async fn shutdown(self) {
        let _ = self.stop.send(());
        if let Err(e) = self.task.await {
            warn!(%e, "attach task failed");
        }
    }
}

async fn accept_loop(
    listener: UnixListener,
    frames: broadcast::Sender<Bytes>,
    mut stopped: oneshot::Receiver<()>,
) {
    let mut clients = JoinSet::new();
    loop {
        tokio::select! {
            _ = &mut stopped => break,
            accepted = listener.accept() => match accepted {
                Ok((sock, _)) => {
                    debug!("attach client connected");
                    clients.spawn(serve_client(sock, frames.subscribe()));
                }
                Err(e) => {
                    warn!(%e, "attach accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            Some(_) = clients.join_next(), if !clients.is_empty() => {}
        }
    }
    // Last sender gone: clients see the queued frames, then the end.
    drop(frames);
    let drain = async { while clients.join_next().await.is_some() {} };
    if timeout(Duration::from_secs(1), drain).await.is_err() {
        clients.abort_all();
    }
}

async fn serve_client(mut sock: UnixStream, mut frames: broadcast::Receiver<Bytes>) {
    let mut scratch = [0u8; 512];
    loop {
        tokio::select! {
            frame = frames.recv() => match frame {
                Ok(frame) => {
                    match timeout(ATTACH_WRITE_TIMEOUT, sock.write_all(&frame)).await {
                        Ok(Ok(())) => {}
                        Ok(Err(_)) => return,
                        Err(_) => {
                            warn!("attach client stalled; dropping it");
                            return;
                        }
                    }
                }
                Err(broadcast::error::RecvError::Lagged(skipped)) => {
                    warn!(skipped, "attach client too slow; dropping it");
                    return;
                }
                Err(broadcast::error::RecvError::Closed) => {
                    let _ = sock.shutdown().await;
                    return;
                }
            },
            // Clients send nothing; this only notices one that went away.
            read = sock.read(&mut scratch) => match read {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            },
        }
    }
}

fn write_pidfile(path: &Path) -> Result<()> {
    let tmp = PathBuf::from(format!("{}.tmp.{}", path.display(), std::process::id()));
    fs::write(&tmp, format!("{}\n", std::process::id()))
        .map_err(|e| Error::io("write pidfile", &tmp, e))?;
    fs::rename(&tmp, path).map_err(|e| {
        let _ = fs::remove_file(&tmp);
        Error::io("rename pidfile", path, e)
    })
}

/// Files we created and remove on the way out, on success and on error alike.
#[derive(Default)]
struct Cleanup {
    paths: Vec<PathBuf>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for path in &self.paths {
            if let Err(e) = fs::remove_file(path) {
                if e.kind() != io::ErrorKind::NotFound {
                    warn!(path = %path.display(), %e, "cleanup failed");
                }
            }
        }
    }
}
