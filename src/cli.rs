//! Command-line flags. Flags override the config file; each has an environment fallback
//! so a unit file or a test can set it without editing argv.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "crimux",
    version,
    about = "A Kubernetes CRI runtime that routes pods across containerd backends",
    propagate_version = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,

    #[command(flatten)]
    pub global: GlobalArgs,
}

/// Options every subcommand understands.
#[derive(Debug, Clone, Args)]
pub struct GlobalArgs {
    /// Config file (TOML). Without it, /etc/crimux/config.toml is read if it exists.
    #[arg(long, global = true, env = "CRIMUX_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Unix socket to serve CRI on (overrides `listen`).
    #[arg(long, global = true, env = "CRIMUX_LISTEN", value_name = "PATH")]
    pub listen: Option<String>,

    /// State directory (overrides `root`).
    #[arg(long, global = true, env = "CRIMUX_ROOT", value_name = "DIR")]
    pub root: Option<PathBuf>,

    /// Log filter: a level (error, warn, info, debug, trace) or tracing directives such
    /// as `info,crimux_containerd=debug`.
    #[arg(
        long,
        global = true,
        env = "CRIMUX_LOG_LEVEL",
        value_name = "LEVEL",
        default_value = "info"
    )]
    pub log_level: String,
}

#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Serve the CRI on the listen socket (the default).
    Serve,
}
