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

    /// Append the log to this file instead of writing it to stderr (a Windows service has
    /// no stderr).
    #[arg(long, global = true, env = "CRIMUX_LOG_FILE", value_name = "FILE")]
    pub log_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Serve the CRI on the listen socket (the default).
    Serve,
    /// Print the node labels for kubelet's `--node-labels`: one `crimux.io/os.<os>=true`
    /// per OS the configured backends run (asking each containerd when `os` is unset).
    NodeLabels(NodeLabelsArgs),
    /// Make the mutual-TLS material for a TCP delegate (a WSL2 containerd): a CA, the
    /// delegate's server certificate and crimux's client certificate.
    Certs(CertsArgs),
}

#[derive(Debug, Clone, Args)]
pub struct NodeLabelsArgs {
    /// Use the configured `os` of every backend and never contact containerd; a backend
    /// without `os` is then an error.
    #[arg(long)]
    pub offline: bool,
}

#[derive(Debug, Clone, Args)]
pub struct CertsArgs {
    /// Directory to write the files into (created with mode 0700 if missing).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,

    /// DNS names and IP addresses the delegate's server certificate is valid for.
    #[arg(long = "server-name", value_name = "NAME", default_values_t = vec!["localhost".to_string(), "127.0.0.1".to_string()])]
    pub server_names: Vec<String>,

    /// Days the certificates stay valid.
    #[arg(long, default_value_t = 825)]
    pub days: u32,

    /// Replace files that already exist (otherwise their presence is an error).
    #[arg(long)]
    pub force: bool,
}
