//! Platform-specific edges. The CRI listener is a unix socket on Linux and a named pipe on
//! Windows; the rest of the binary sees only `CriListener`, `create_private_dir`,
//! `shutdown_signal` and the default paths (`DEFAULTS`).
//!
//! `pipe_name` and `defaults` are pure and compiled on every OS, so Linux CI tests the
//! Windows pipe-name handling and the Windows defaults.

pub mod defaults;
pub mod pipe_name;

#[cfg(unix)]
mod listener_unix;
#[cfg(unix)]
mod unix;
#[cfg(unix)]
pub use listener_unix::CriListener;
#[cfg(unix)]
pub use unix::{create_private_dir, shutdown_signal, write_new_file};
/// This build's default locations.
#[cfg(unix)]
pub const DEFAULTS: &defaults::Defaults = &defaults::UNIX;

#[cfg(windows)]
mod listener_windows;
#[cfg(windows)]
mod service_windows;
#[cfg(windows)]
mod windows;
#[cfg(windows)]
pub use listener_windows::CriListener;
#[cfg(windows)]
pub use windows::{create_private_dir, shutdown_signal, write_new_file};
/// This build's default locations.
#[cfg(windows)]
pub const DEFAULTS: &defaults::Defaults = &defaults::WINDOWS;
