//! `crimux-log`: containerd binary-logging plugin that writes CRI-format logs.
//!
//! Started by the containerd shim, not by hand: crimux gives a task the stdout
//! URI `binary:///path/to/crimux-log?path=<log>&max-line=<n>&pidfile=<p>&attach=<sock>`.
//! Signals: SIGUSR1 reopens the log file (after kubelet rotated it); SIGTERM or
//! SIGINT drain the streams for a few seconds and exit.

use std::process::ExitCode;

const USAGE: &str = "usage: crimux-log path <log file> [max-line <bytes>] [pidfile <path>] \
[attach <unix socket>] [mkdir true]   (each also as key=value)
Started by the containerd shim (binary:// log URI) with container stdout on fd 3,
stderr on fd 4 and a ready pipe on fd 5. SIGUSR1 reopens the log file.";

#[cfg(unix)]
fn main() -> ExitCode {
    use crimux_cri_log::plugin::{run, PluginFds};
    use crimux_cri_log::PluginConfig;

    let args: Vec<_> = std::env::args_os().skip(1).collect();
    if args.iter().any(|a| a == "-h" || a == "--help") {
        println!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    // SAFETY: first thing in main, before the runtime or anything else opens a
    // descriptor, and called only here: fds 3..=5 are the inherited ones.
    let fds = match unsafe { PluginFds::inherited() } {
        Ok(fds) => fds,
        Err(e) => {
            eprintln!("crimux-log: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let config = match PluginConfig::from_args(args) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("crimux-log: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
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
            eprintln!("crimux-log: cannot start the runtime: {e}");
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
