//! Detached mode: `crimux-log` started by crimux, not by a containerd shim.
//!
//! The containerd 1.6 runc shim wires a container's stdin only when it copies the output
//! itself (FIFO stdio), never when the output goes to a logging binary. So for a container
//! with stdin and no terminal crimux gives the task plain FIFOs and starts the plugin on
//! them itself (`stdout-fifo`/`stderr-fifo`). The plugin must then outlive crimux like a
//! shim's child does: the process crimux starts (the *launcher*) forks, the child (the
//! *daemon*) leaves crimux's session, puts /dev/null on its stdio and runs the plugin; the
//! launcher waits until the daemon is ready (FIFOs open, attach socket bound, pidfile
//! written) or failed, then exits with that outcome and the daemon's message on stderr.
//! crimux waits only on the launcher: the daemon's parent becomes init (or the nearest
//! subreaper), so crimux neither reaps it nor takes it down when crimux dies.
//!
//! The ready pipe is the one the shim's protocol already has (fd 5): closed empty when
//! ready; a failure before that writes its message into it first.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use crate::args::FifoInputs;
use crate::error::{Error, Result};

/// Which side of the fork this process is on.
#[derive(Debug)]
pub enum Forked {
    /// The process crimux started: the daemon is ready (`Ok`) or failed with a message.
    Launcher(std::result::Result<(), String>),
    /// The detached daemon, holding the write end of the ready pipe.
    Daemon(OwnedFd),
}

/// Forks the detached daemon and, in the launcher, waits for its readiness.
///
/// # Safety
/// The process must have a single thread (call before any runtime or thread starts):
/// only the calling thread survives in the child.
pub unsafe fn daemonize() -> Result<Forked> {
    let mut ends = [0; 2];
    // SAFETY: `ends` is a valid array of two ints for pipe2 to fill.
    if unsafe { libc::pipe2(ends.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(os("create the ready pipe"));
    }
    // SAFETY: pipe2 succeeded, so both descriptors are open and owned by nothing else.
    let (read, write) = unsafe { (OwnedFd::from_raw_fd(ends[0]), OwnedFd::from_raw_fd(ends[1])) };
    // SAFETY: the caller guarantees one thread, so the child inherits a consistent state.
    match unsafe { libc::fork() } {
        -1 => Err(os("fork the daemon")),
        0 => {
            drop(read);
            detach()?;
            Ok(Forked::Daemon(write))
        }
        child => {
            drop(write);
            Ok(Forked::Launcher(await_ready(read, child)))
        }
    }
}

/// Reads the daemon's report: nothing then end-of-file is ready, unless it died.
fn await_ready(read: OwnedFd, child: libc::pid_t) -> std::result::Result<(), String> {
    let mut message = String::new();
    if let Err(e) = File::from(read).read_to_string(&mut message) {
        return Err(format!("reading the daemon's ready pipe: {e}"));
    }
    if !message.is_empty() {
        return Err(message);
    }
    let mut status = 0;
    // SAFETY: waitpid on our own child with a valid pointer to an int.
    match unsafe { libc::waitpid(child, &mut status, libc::WNOHANG) } {
        0 => Ok(()),
        _ => Err(format!(
            "the daemon exited before it was ready (wait status {status})"
        )),
    }
}

/// New session, no controlling terminal, /dev/null on stdio: nothing of crimux's
/// (its terminal, its process group, the launcher's output pipes) is held any more.
fn detach() -> Result<()> {
    // SAFETY: setsid has no memory effects; it fails only for a group leader, which a
    // freshly forked child is not.
    if unsafe { libc::setsid() } == -1 {
        return Err(os("setsid"));
    }
    let null = OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
        .map_err(|e| Error::io("open", "/dev/null", e))?;
    for fd in 0..=2 {
        // SAFETY: dup2 onto the standard descriptors, which this process owns; `null`
        // stays open for the call.
        if unsafe { libc::dup2(std::os::fd::AsRawFd::as_raw_fd(&null), fd) } == -1 {
            return Err(os("redirect stdio to /dev/null"));
        }
    }
    Ok(())
}

/// Opens the output FIFOs for reading without waiting for a writer (the shim opens its
/// ends when the task is created, after we are ready).
pub fn open_fifos(inputs: &FifoInputs) -> Result<(OwnedFd, OwnedFd)> {
    Ok((open_fifo(&inputs.stdout)?, open_fifo(&inputs.stderr)?))
}

fn open_fifo(path: &Path) -> Result<OwnedFd> {
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOFOLLOW)
        .open(path)
        .map(OwnedFd::from)
        .map_err(|e| Error::io("open FIFO", path, e))
}

/// Tells whoever waits on the ready pipe why we did not get ready.
pub fn report_failure(ready: OwnedFd, error: &dyn std::fmt::Display) {
    // Best effort: the reader may be gone, and there is nowhere else to say it.
    let _ = File::from(ready).write_all(error.to_string().as_bytes());
}

fn os(op: &'static str) -> Error {
    Error::Os {
        op,
        source: io::Error::last_os_error(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::FileTypeExt;

    #[test]
    fn fifos_open_without_a_writer_and_must_exist() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let err = dir.path().join("err");
        for p in [&out, &err] {
            let c = std::ffi::CString::new(p.to_str().unwrap()).unwrap();
            // SAFETY: a valid C string.
            assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
            assert!(std::fs::metadata(p).unwrap().file_type().is_fifo());
        }
        let inputs = FifoInputs {
            stdout: out.clone(),
            stderr: err,
        };
        open_fifos(&inputs).expect("no writer needed");
        let missing = FifoInputs {
            stdout: out,
            stderr: dir.path().join("missing"),
        };
        assert!(matches!(open_fifos(&missing), Err(Error::Io { .. })));
    }

    #[test]
    fn a_failure_report_reaches_the_reader() {
        let mut ends = [0; 2];
        // SAFETY: a valid array for pipe2.
        assert_eq!(
            unsafe { libc::pipe2(ends.as_mut_ptr(), libc::O_CLOEXEC) },
            0
        );
        // SAFETY: fresh descriptors from pipe2.
        let (r, w) = unsafe { (OwnedFd::from_raw_fd(ends[0]), OwnedFd::from_raw_fd(ends[1])) };
        report_failure(w, &"log file: permission denied");
        let mut got = String::new();
        File::from(r).read_to_string(&mut got).unwrap();
        assert_eq!(got, "log file: permission denied");
    }
}
