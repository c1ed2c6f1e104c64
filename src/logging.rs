//! The one place the tracing subscriber is set up.

use std::fs::OpenOptions;
use std::io::IsTerminal;
use std::path::Path;
use std::sync::Mutex;

use anyhow::{bail, Context};
use tracing_subscriber::EnvFilter;

const LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];

/// Logs to stderr, or appends to `file` (a Windows service has no stderr), with `filter`.
/// A bare word must be a level: `EnvFilter` would take `inof` as a target name and
/// silently log nothing.
pub fn init(filter: &str, file: Option<&Path>) -> anyhow::Result<()> {
    let filter = filter.trim();
    let is_directive = filter.contains(['=', ',', ':', '[']);
    if !is_directive && !LEVELS.contains(&filter.to_ascii_lowercase().as_str()) {
        bail!(
            "--log-level {filter:?}: expected one of {}",
            LEVELS.join(", ")
        );
    }
    let env_filter =
        EnvFilter::try_new(filter).with_context(|| format!("--log-level {filter:?}"))?;
    let builder = tracing_subscriber::fmt().with_env_filter(env_filter);
    let installed = match file {
        Some(path) => {
            let log = OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .with_context(|| format!("--log-file {}", path.display()))?;
            builder
                .with_writer(Mutex::new(log))
                .with_ansi(false)
                .try_init()
        }
        None => builder
            .with_writer(std::io::stderr)
            .with_ansi(std::io::stderr().is_terminal())
            .try_init(),
    };
    installed.map_err(|e| anyhow::anyhow!("cannot set up logging: {e}"))
}
