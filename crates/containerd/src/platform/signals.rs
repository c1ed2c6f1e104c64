//! Signal numbers for signals sent to containers.
//!
//! A signal to a container is delivered by the container's OS, not the host's: runc on
//! Linux, and on Windows runhcs for Linux containers (LCOW), both take Linux numbers. So
//! this is a constant table of Linux numbers that compiles on every host, not `libc`
//! constants (which would be the host's, and do not exist on Windows). The numbers are
//! those of x86, Arm, RISC-V, PowerPC and s390 Linux (MIPS, SPARC and Alpha differ; no
//! container image targets them here).

use crimux_core::{Error, Result};

pub(crate) const SIGKILL: u32 = 9;
pub(crate) const SIGTERM: u32 = 15;

/// Linux signals by name, without the `SIG` prefix.
const BY_NAME: &[(&str, u32)] = &[
    ("HUP", 1),
    ("INT", 2),
    ("QUIT", 3),
    ("ILL", 4),
    ("TRAP", 5),
    ("ABRT", 6),
    ("IOT", 6),
    ("BUS", 7),
    ("FPE", 8),
    ("KILL", SIGKILL),
    ("USR1", 10),
    ("SEGV", 11),
    ("USR2", 12),
    ("PIPE", 13),
    ("ALRM", 14),
    ("TERM", SIGTERM),
    ("STKFLT", 16),
    ("CHLD", 17),
    ("CONT", 18),
    ("STOP", 19),
    ("TSTP", 20),
    ("TTIN", 21),
    ("TTOU", 22),
    ("URG", 23),
    ("XCPU", 24),
    ("XFSZ", 25),
    ("VTALRM", 26),
    ("PROF", 27),
    ("WINCH", 28),
    ("IO", 29),
    ("POLL", 29),
    ("PWR", 30),
    ("SYS", 31),
];

/// The Linux number of a signal named without its `SIG` prefix, in upper case (`TERM`).
pub(crate) fn by_name(name: &str) -> Option<u32> {
    BY_NAME.iter().find(|(n, _)| *n == name).map(|(_, v)| *v)
}

/// Parses a stop signal as images write it: `SIGQUIT`, `QUIT`, `sigquit` or `3` (any
/// number from 1 to 64, real-time signals included).
pub(crate) fn parse(s: &str) -> Result<u32> {
    let s = s.trim();
    if let Ok(n) = s.parse::<u32>() {
        if (1..=64).contains(&n) {
            return Ok(n);
        }
    }
    let upper = s.to_ascii_uppercase();
    let name = upper.strip_prefix("SIG").unwrap_or(&upper);
    by_name(name).ok_or_else(|| Error::InvalidArgument(format!("unknown stop signal {s:?}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stop_signals() {
        for (s, n) in [
            ("SIGQUIT", 3),
            ("QUIT", 3),
            ("sigterm", 15),
            (" SIGKILL ", 9),
            ("9", 9),
            ("64", 64),
            ("SIGRTMIN+1", 0),
            ("SIGWINCH", 28),
            ("SIGIOT", 6),
            ("POLL", 29),
        ] {
            match parse(s) {
                Ok(got) => assert_eq!(got, n, "{s}"),
                Err(_) => assert_eq!(n, 0, "{s}"),
            }
        }
        for bad in ["0", "65", "NOPE", "", "SIG"] {
            let err = parse(bad).expect_err(bad);
            assert_eq!(err.code(), tonic::Code::InvalidArgument, "{bad}");
        }
    }

    /// On a Linux host the table must agree with the C library, name by name.
    #[cfg(all(
        target_os = "linux",
        any(target_arch = "x86_64", target_arch = "aarch64")
    ))]
    #[test]
    fn table_matches_linux_libc() {
        let libc: &[(&str, libc::c_int)] = &[
            ("HUP", libc::SIGHUP),
            ("INT", libc::SIGINT),
            ("QUIT", libc::SIGQUIT),
            ("ILL", libc::SIGILL),
            ("TRAP", libc::SIGTRAP),
            ("ABRT", libc::SIGABRT),
            ("IOT", libc::SIGIOT),
            ("BUS", libc::SIGBUS),
            ("FPE", libc::SIGFPE),
            ("KILL", libc::SIGKILL),
            ("USR1", libc::SIGUSR1),
            ("SEGV", libc::SIGSEGV),
            ("USR2", libc::SIGUSR2),
            ("PIPE", libc::SIGPIPE),
            ("ALRM", libc::SIGALRM),
            ("TERM", libc::SIGTERM),
            ("STKFLT", libc::SIGSTKFLT),
            ("CHLD", libc::SIGCHLD),
            ("CONT", libc::SIGCONT),
            ("STOP", libc::SIGSTOP),
            ("TSTP", libc::SIGTSTP),
            ("TTIN", libc::SIGTTIN),
            ("TTOU", libc::SIGTTOU),
            ("URG", libc::SIGURG),
            ("XCPU", libc::SIGXCPU),
            ("XFSZ", libc::SIGXFSZ),
            ("VTALRM", libc::SIGVTALRM),
            ("PROF", libc::SIGPROF),
            ("WINCH", libc::SIGWINCH),
            ("IO", libc::SIGIO),
            ("POLL", libc::SIGPOLL),
            ("PWR", libc::SIGPWR),
            ("SYS", libc::SIGSYS),
        ];
        assert_eq!(libc.len(), BY_NAME.len());
        for (name, n) in libc {
            assert_eq!(by_name(name), u32::try_from(*n).ok(), "SIG{name}");
        }
    }
}
