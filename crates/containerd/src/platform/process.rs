//! Signals to processes of the host (not of a container): the log plugin reopens its file
//! on SIGUSR1. These are the host's own signal numbers, hence `libc` here and not
//! [`super::signals`]. Windows has no signals to send.

pub(crate) use imp::ask_to_reopen;

#[cfg(unix)]
mod imp {
    /// Sends SIGUSR1 to host process `pid` (greater than 1), asking it to reopen its files.
    pub(crate) fn ask_to_reopen(pid: i32) -> std::io::Result<()> {
        if pid <= 1 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("pid {pid} is not a process to signal"),
            ));
        }
        // SAFETY: kill(2) with a positive pid and a valid signal number has no memory
        // effects.
        if unsafe { libc::kill(pid, libc::SIGUSR1) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }
}

#[cfg(not(unix))]
mod imp {
    /// There is no SIGUSR1 to send on this host.
    pub(crate) fn ask_to_reopen(pid: i32) -> std::io::Result<()> {
        Err(std::io::Error::new(
            std::io::ErrorKind::Unsupported,
            format!(
                "process {pid} cannot be asked to reopen its files: that takes SIGUSR1, \
                 and {} has no signals",
                std::env::consts::OS
            ),
        ))
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    #[test]
    fn signals_a_live_process_and_refuses_init_and_the_dead() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .expect("sleep");
        let pid = i32::try_from(child.id()).expect("pid");
        ask_to_reopen(pid).expect("signalled");
        // sleep does not handle SIGUSR1: it dies of it, which shows it was delivered.
        let status = child.wait().expect("wait");
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(libc::SIGUSR1));
        let err = ask_to_reopen(pid).expect_err("reaped");
        assert_eq!(err.raw_os_error(), Some(libc::ESRCH));
        assert_eq!(
            ask_to_reopen(1).expect_err("init").kind(),
            std::io::ErrorKind::InvalidInput
        );
    }
}
