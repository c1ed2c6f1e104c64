//! `crimux-log`: containerd binary-logging plugin that writes CRI-format logs.
//!
//! Started by the containerd shim, not by hand: crimux gives a task the stdout
//! URI `binary:///path/to/crimux-log?path=<log>&max-line=<n>&pidfile=<p>&attach=<sock>`.
//! Or started by crimux itself with `stdout-fifo <p> stderr-fifo <p>`: it then detaches
//! (own session, /dev/null stdio) and the process crimux started exits once the detached
//! plugin is ready, with its status and error message.
//! Signals: SIGUSR1 reopens the log file (after kubelet rotated it); SIGTERM or
//! SIGINT drain the streams for a few seconds and exit.

use std::process::ExitCode;

const USAGE: &str = "usage: crimux-log path <log file> [max-line <bytes>] [pidfile <path>] \
[attach <unix socket>] [mkdir true] [stdout-fifo <fifo> stderr-fifo <fifo>]
(each also as key=value)
Started by the containerd shim (binary:// log URI) with container stdout on fd 3,
stderr on fd 4 and a ready pipe on fd 5; or, with stdout-fifo/stderr-fifo, detached
on those FIFOs, exiting once the detached logger is ready. SIGUSR1 reopens the log file.";

#[cfg(unix)]
fn main() -> ExitCode {
    use crimux_cri_log::daemon::{self, Forked};
    use crimux_cri_log::plugin::{run, PluginFds, Ready};
    use crimux_cri_log::PluginConfig;

    let args: Vec<_> = std::env::args_os().skip(1).collect();
    if args.iter().any(|a| a == "-h" || a == "--help") {
        println!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    // Parsing opens no descriptor, so fds 3..=5 are still the inherited ones after it.
    let config = match PluginConfig::from_args(args) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("crimux-log: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let fds = match &config.fifos {
        // SAFETY: still one thread: no runtime, subscriber or thread started yet.
        Some(inputs) => match unsafe { daemon::daemonize() } {
            Err(e) => {
                eprintln!("crimux-log: {e}");
                return ExitCode::FAILURE;
            }
            Ok(Forked::Launcher(Ok(()))) => return ExitCode::SUCCESS,
            Ok(Forked::Launcher(Err(message))) => {
                eprintln!("crimux-log: {message}");
                return ExitCode::FAILURE;
            }
            Ok(Forked::Daemon(ready)) => match daemon::open_fifos(inputs) {
                Ok((stdout, stderr)) => PluginFds {
                    stdout,
                    stderr,
                    ready: Some(Ready::Launcher(ready)),
                },
                Err(e) => {
                    daemon::report_failure(ready, &e);
                    return ExitCode::FAILURE;
                }
            },
        },
        // SAFETY: nothing has opened or wrapped a descriptor yet, and this is the
        // only call: fds 3..=5 are the inherited ones.
        None => match unsafe { PluginFds::inherited() } {
            Ok(fds) => fds,
            Err(e) => {
                eprintln!("crimux-log: {e}\n{USAGE}");
                return ExitCode::from(2);
            }
        },
    };
    // Under the shim stderr is /dev/null; by hand it may be a terminal.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let container = std::env::var("CONTAINER_ID").unwrap_or_default();
    let namespace = std::env::var("CONTAINER_NAMESPACE").unwrap_or_default();
    let span = tracing::info_span!("crimux-log", %container, %namespace);
    let _guard = span.enter();

    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            let e = format!("cannot start the runtime: {e}");
            if let Some(Ready::Launcher(ready)) = fds.ready {
                daemon::report_failure(ready, &e);
            }
            eprintln!("crimux-log: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(config, fds)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(%e, "crimux-log failed");
            eprintln!("crimux-log: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(not(unix))]
fn main() -> ExitCode {
    eprintln!(
        "crimux-log: containerd binary logging with CRI output is only implemented for \
         Linux shims; this platform is not supported.\n{USAGE}"
    );
    ExitCode::from(2)
}
