//! CRI-format container logs, written by a process that outlives crimux.
//!
//! kubelet reads container logs from a file in the CRI log format, one entry per
//! line: `<RFC3339Nano timestamp> <stdout|stderr> <P|F> <content>\n`. crimux does
//! not copy container output itself: it starts each task with the stdout URI
//! `binary:///path/to/crimux-log?path=<log file>&...`, and containerd's runc shim
//! spawns `crimux-log` as its own child with the container's stdout and stderr on
//! fds 3 and 4. The log keeps flowing while crimux is stopped or restarting.
//!
//! Code map:
//! - [`format`]: raw output → CRI entries ([`LineEncoder`]), pure.
//! - [`parse`]: CRI lines → entries, and entries → whole lines.
//! - [`timestamp`]: RFC 3339 formatting/parsing without a date library.
//! - [`file`]: the append-only log file with reopen-after-rotation.
//! - [`attach`]: frame format of the live-output socket (for `kubectl attach`).
//! - [`args`]: the plugin's arguments as the shim passes them.
//! - `plugin` (unix only): the `crimux-log` runtime.
//! - `daemon` (unix only): detached mode, started by crimux on FIFOs it names.
//!
//! Architecture Invariant: this crate knows nothing of CRI protos, containerd's
//! API or `crimux-core`; the plugin binary must stay small and standalone.

pub mod args;
pub mod attach;
#[cfg(unix)]
pub mod daemon;
pub mod error;
pub mod file;
pub mod format;
pub mod parse;
#[cfg(unix)]
pub mod plugin;
pub mod timestamp;

pub use args::{FifoInputs, PluginConfig};
pub use error::{Error, ParseError, Result};
pub use file::{LogFile, LogFileOptions};
pub use format::{write_entry, LineEncoder, Stream, Tag, DEFAULT_MAX_LINE};
pub use parse::{assemble_lines, parse_line, parse_log, Entry, Line};
pub use timestamp::Timestamp;
