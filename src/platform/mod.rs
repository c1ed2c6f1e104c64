//! Platform-specific edges. The CRI listener is a unix socket on Linux and, later, a
//! named pipe on Windows; the rest of the binary sees only `CriListener`,
//! `create_private_dir` and `shutdown_signal`.

#[cfg(unix)]
mod listener_unix;
#[cfg(unix)]
mod unix;
#[cfg(unix)]
pub use listener_unix::CriListener;
#[cfg(unix)]
pub use unix::{create_private_dir, shutdown_signal};

#[cfg(windows)]
mod listener_windows;
#[cfg(windows)]
mod windows;
#[cfg(windows)]
pub use listener_windows::CriListener;
#[cfg(windows)]
pub use windows::{create_private_dir, shutdown_signal};
