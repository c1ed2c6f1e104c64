//! crimux: a Kubernetes CRI runtime that routes pods across containerd backends.
//!
//! The binary is thin: flags and config (`cli`, `config`), logging, the platform's
//! listener, and `serve`, which wires the library crates together.

// The Windows named-pipe listener (not built yet) will wrap its connections the same way.
#[cfg_attr(not(unix), allow(dead_code))]
mod authority;
mod certs;
mod cli;
mod config;
mod logging;
mod node_labels;
mod platform;
mod serve;

use std::path::Path;
use std::process::ExitCode;

use clap::Parser;

use crate::cli::{Cli, Command, GlobalArgs};
use crate::config::{Config, ConfigError, DEFAULT_CONFIG_PATH};

/// Exit code for anything the operator must fix before crimux can start.
const EXIT_STARTUP: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve_main(&cli.global),
        Command::NodeLabels(args) => node_labels::main(&cli.global, &args),
        Command::Certs(args) => certs::main(&cli.global, &args),
    }
}

fn serve_main(args: &GlobalArgs) -> ExitCode {
    let config = match load_config(args) {
        Ok(config) => config,
        Err(e) => return fail(EXIT_STARTUP, &e),
    };
    if let Err(e) = logging::init(&args.log_level, args.log_file.as_deref()) {
        return fail(EXIT_STARTUP, &format!("{e:#}"));
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            return fail(
                EXIT_STARTUP,
                &format!("cannot start the async runtime: {e}"),
            )
        }
    };
    match runtime.block_on(serve::run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => fail(failure.code, &format!("{:#}", failure.error)),
    }
}

/// The config file (explicit, or the default path if present) with flags applied on top.
pub(crate) fn load_config(args: &GlobalArgs) -> Result<Config, ConfigError> {
    let mut config = match &args.config {
        Some(path) => Config::load(path, false)?,
        None => Config::load(Path::new(DEFAULT_CONFIG_PATH), true)?,
    };
    if let Some(listen) = &args.listen {
        config.listen = listen.clone();
    }
    if let Some(root) = &args.root {
        config.root = root.clone();
    }
    config
        .validate(cfg!(windows))
        .map_err(|e| ConfigError(format!("after flags: {e}")))?;
    Ok(config)
}

/// Prints one line to stderr and exits with `code`.
pub(crate) fn fail(code: u8, message: &impl std::fmt::Display) -> ExitCode {
    let line = message.to_string().replace('\n', " ");
    eprintln!("crimux: {line}");
    ExitCode::from(code)
}
