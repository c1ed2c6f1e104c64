//! The pipes a shim connects a process's stdio to.
//!
//! On Unix they are FIFOs in the container's state directory: crimux creates them with
//! `mkfifo(3)` and opens its end before the shim opens the other. On Windows containerd's
//! shims take named pipes (`\\.\pipe\...`) and connect to them as clients, so crimux is
//! the pipe server: creating the pipe and opening crimux's end are one step, and the pipe
//! vanishes with its last handle.

use std::path::Path;

use crimux_core::Result;

pub(crate) use imp::{create, path, remove, Reader, Writer};

#[cfg(unix)]
mod imp {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    use std::path::{Path, PathBuf};

    use crimux_core::{Error, Result};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::unix::pipe;

    /// The FIFO `name` in `dir`.
    pub(crate) fn path(dir: &Path, name: &str) -> PathBuf {
        dir.join(name)
    }

    /// Creates a FIFO (mode 0600) at `path` for a shim to open.
    pub(crate) fn create(path: &Path) -> Result<()> {
        let c = CString::new(path.as_os_str().as_bytes())
            .map_err(|_| Error::Internal(format!("{} contains a NUL byte", path.display())))?;
        // SAFETY: `c` is a valid NUL-terminated path that outlives the call.
        if unsafe { libc::mkfifo(c.as_ptr(), 0o600) } != 0 {
            let e = std::io::Error::last_os_error();
            return Err(Error::Internal(format!(
                "creating FIFO {}: {e}",
                path.display()
            )));
        }
        Ok(())
    }

    /// Removes a FIFO.
    pub(crate) fn remove(path: &Path) -> std::io::Result<()> {
        std::fs::remove_file(path)
    }

    /// crimux's reading end of a pipe a shim writes to.
    pub(crate) struct Reader(pipe::Receiver);

    impl Reader {
        /// Creates the FIFO at `path` and opens it for reading without waiting for a
        /// writer. Reads wait for data (epoll reports no hang-up before a writer came and
        /// went), so there is no early end-of-file.
        pub(crate) fn create(path: &Path) -> Result<Reader> {
            create(path)?;
            pipe::OpenOptions::new()
                .open_receiver(path)
                .map(Reader)
                .map_err(|e| Error::Internal(format!("opening {}: {e}", path.display())))
        }

        /// Reads what the writer sent; `Ok(0)` once every writer closed its end.
        /// Cancel-safe.
        pub(crate) async fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            self.0.read(buf).await
        }
    }

    /// crimux's writing end of a pipe a shim reads from (a process's stdin). Dropping it
    /// closes crimux's end.
    pub(crate) struct Writer(pipe::Sender);

    impl Writer {
        /// Creates the FIFO at `path` and opens its writing end (see [`Writer::open`]).
        pub(crate) fn create(path: &Path) -> Result<Writer> {
            create(path)?;
            Writer::open(path)
        }

        /// Opens an existing FIFO for writing without waiting for a reader. On Linux the
        /// FIFO is opened read-write, so the open never fails for want of a reader (the
        /// shim opens its end later) and no write sees a broken pipe; writes wait while
        /// the pipe is full, which is the back-pressure.
        pub(crate) fn open(path: &Path) -> Result<Writer> {
            let mut options = pipe::OpenOptions::new();
            #[cfg(target_os = "linux")]
            options.read_write(true);
            options.open_sender(path).map(Writer).map_err(|e| {
                Error::Internal(format!("opening {} for writing: {e}", path.display()))
            })
        }

        /// Writes all of `buf`. Not cancel-safe (part may have been written).
        pub(crate) async fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
            self.0.write_all(buf).await
        }
    }
}

#[cfg(windows)]
mod imp {
    use std::io::ErrorKind;
    use std::path::{Path, PathBuf};

    use crimux_core::{Error, Result};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::windows::named_pipe::{NamedPipeServer, ServerOptions};

    /// The client connected between the pipe's creation and our `connect`: not an error.
    const ERROR_PIPE_CONNECTED: i32 = 535;
    /// The client closed its end: the end of the stream.
    const ERROR_BROKEN_PIPE: i32 = 109;

    /// A named pipe for `name`. Named pipes live in their own namespace, not in `dir`, so
    /// the name must be unique on the host (callers put a random id in it).
    pub(crate) fn path(_dir: &Path, name: &str) -> PathBuf {
        PathBuf::from(format!(r"\\.\pipe\crimux-{name}"))
    }

    /// A pipe the shim opens later (a container's stdin) needs a server crimux keeps for
    /// the container's whole life; crimux does not keep one yet.
    pub(crate) fn create(path: &Path) -> Result<()> {
        Err(Error::Unimplemented(format!(
            "pipe {} for a container's stdin: stdin is not implemented on Windows \
             (containerd's Windows shims need a named pipe server kept for the container's life)",
            path.display()
        )))
    }

    /// Nothing to remove: a named pipe goes away with its last handle.
    pub(crate) fn remove(_path: &Path) -> std::io::Result<()> {
        Ok(())
    }

    /// crimux's reading end of a pipe a shim writes to: the server side of a named pipe.
    pub(crate) struct Reader {
        server: NamedPipeServer,
        connected: bool,
    }

    impl Reader {
        /// Creates the named pipe `path` (inbound only, and failing if another process
        /// already owns the name) for the shim to connect to.
        pub(crate) fn create(path: &Path) -> Result<Reader> {
            let server = ServerOptions::new()
                .first_pipe_instance(true)
                .access_inbound(true)
                .access_outbound(false)
                .max_instances(1)
                .create(path.as_os_str())
                .map_err(|e| {
                    Error::Internal(format!("creating named pipe {}: {e}", path.display()))
                })?;
            Ok(Reader {
                server,
                connected: false,
            })
        }

        /// Waits for the shim to connect, then reads what it sent; `Ok(0)` once it closed
        /// its end. Cancel-safe.
        pub(crate) async fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            if !self.connected {
                match self.server.connect().await {
                    Ok(()) => {}
                    Err(e) if e.raw_os_error() == Some(ERROR_PIPE_CONNECTED) => {}
                    Err(e) => return Err(e),
                }
                self.connected = true;
            }
            match self.server.read(buf).await {
                Err(e)
                    if e.kind() == ErrorKind::BrokenPipe
                        || e.raw_os_error() == Some(ERROR_BROKEN_PIPE) =>
                {
                    Ok(0)
                }
                other => other,
            }
        }
    }

    /// crimux's writing end of a pipe a shim reads from: the server side of an outbound
    /// named pipe.
    pub(crate) struct Writer {
        server: NamedPipeServer,
        connected: bool,
    }

    impl Writer {
        /// Creates the named pipe `path` (outbound only) for the shim to connect to.
        pub(crate) fn create(path: &Path) -> Result<Writer> {
            let server = ServerOptions::new()
                .first_pipe_instance(true)
                .access_inbound(false)
                .access_outbound(true)
                .max_instances(1)
                .create(path.as_os_str())
                .map_err(|e| {
                    Error::Internal(format!("creating named pipe {}: {e}", path.display()))
                })?;
            Ok(Writer {
                server,
                connected: false,
            })
        }

        /// A container's stdin pipe belongs to the shim's client on Windows; crimux
        /// does not keep one (see [`create`]).
        pub(crate) fn open(path: &Path) -> Result<Writer> {
            Err(Error::Unimplemented(format!(
                "writing to {}: a container's stdin is not implemented on Windows",
                path.display()
            )))
        }

        /// Waits for the shim to connect, then writes all of `buf`.
        pub(crate) async fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
            if !self.connected {
                match self.server.connect().await {
                    Ok(()) => {}
                    Err(e) if e.raw_os_error() == Some(ERROR_PIPE_CONNECTED) => {}
                    Err(e) => return Err(e),
                }
                self.connected = true;
            }
            self.server.write_all(buf).await
        }
    }
}

/// Creates `path` as a fresh FIFO, replacing whatever a previous start left there.
pub(crate) fn recreate(path: &Path) -> Result<()> {
    match remove(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(crimux_core::Error::Internal(format!(
                "removing {}: {e}",
                path.display()
            )))
        }
    }
    create(path)
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::unix::fs::FileTypeExt;
    use std::time::Duration;
    use tokio::io::AsyncReadExt;

    #[tokio::test]
    async fn a_reader_waits_for_a_late_writer() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = path(dir.path(), "out");
        let mut reader = Reader::create(&p).expect("reader");
        let writer_path = p.clone();
        let writer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(200));
            let mut w = std::fs::OpenOptions::new()
                .write(true)
                .open(&writer_path)
                .expect("open writer");
            w.write_all(b"late").expect("write");
        });
        let mut buf = [0u8; 16];
        let n = tokio::time::timeout(Duration::from_secs(5), reader.read(&mut buf))
            .await
            .expect("in time")
            .expect("read");
        assert_eq!(&buf[..n], b"late");
        writer.join().expect("writer");
        let end = tokio::time::timeout(Duration::from_secs(5), reader.read(&mut buf)).await;
        assert_eq!(end.expect("in time").expect("read"), 0);
        assert!(Reader::create(&p).is_err(), "the FIFO already exists");
    }

    #[tokio::test]
    async fn a_writer_opens_before_its_reader_and_its_drop_is_the_end() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = path(dir.path(), "stdin");
        let mut writer = Writer::create(&p).expect("writer without a reader");
        writer.write_all(b"early").await.expect("buffered");
        let mut reader = pipe_reader(&p);
        let mut buf = [0u8; 16];
        let n = reader.read(&mut buf).await.expect("read");
        assert_eq!(&buf[..n], b"early");
        let again = Writer::open(&p).expect("a second writer");
        drop((writer, again));
        let end = tokio::time::timeout(Duration::from_secs(5), reader.read(&mut buf)).await;
        assert_eq!(end.expect("in time").expect("read"), 0);
        assert!(Writer::open(&dir.path().join("missing")).is_err());
    }

    fn pipe_reader(p: &Path) -> tokio::net::unix::pipe::Receiver {
        tokio::net::unix::pipe::OpenOptions::new()
            .open_receiver(p)
            .expect("reader")
    }

    #[test]
    fn recreate_replaces_a_stale_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = path(dir.path(), "stdin");
        std::fs::write(&p, "stale").expect("write");
        recreate(&p).expect("recreate");
        let meta = std::fs::symlink_metadata(&p).expect("metadata");
        assert!(meta.file_type().is_fifo());
        recreate(&p).expect("again");
        remove(&p).expect("remove");
        assert!(!p.exists());
        let err = create(&dir.path().join("missing/stdin")).expect_err("no directory");
        assert_eq!(err.code(), tonic::Code::Internal);
    }
}
