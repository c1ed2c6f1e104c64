//! The one place the tracing subscriber is set up.

use std::io::IsTerminal;

use anyhow::{bail, Context};
use tracing_subscriber::EnvFilter;

const LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];

/// Logs to stderr with `filter`. A bare word must be a level: `EnvFilter` would take
/// `inof` as a target name and silently log nothing.
pub fn init(filter: &str) -> anyhow::Result<()> {
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
    tracing_subscriber::fmt()
        .with_env_filter(env_filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init()
        .map_err(|e| anyhow::anyhow!("cannot set up logging: {e}"))
}
