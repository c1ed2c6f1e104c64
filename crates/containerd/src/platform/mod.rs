//! Everything that differs between the host operating systems crimux runs on (Linux and
//! Windows), one small module per concern. The rest of the crate calls these functions and
//! compiles unchanged on every host.
//!
//! Architecture Invariant: `cfg(unix)`, `cfg(windows)` and `cfg(target_os = ...)` appear
//! only under `platform/`. A concern a host does not have gets a stub that returns a clear
//! error (usually `Error::Unimplemented` naming the host), never a silent no-op that would
//! hide a missing feature.
//!
//! - [`signals`]: Linux signal numbers by name. No `cfg`: signals go to the container's
//!   OS, not the host's, and containerd takes Linux numbers on Windows too.
//! - [`attach`]: connecting to the log plugin's attach socket (unix sockets).
//! - [`fifo`]: the pipes a shim writes a process's output to (FIFOs on Unix, named pipes
//!   on Windows).
//! - [`fs`]: overlay opaque-directory xattrs and device nodes (Linux only).
//! - [`mount`]: the pod's shm tmpfs and the mount table (Linux only).
//! - [`process`]: signalling a host process (the log plugin).
//! - [`transport`]: the local sockets containerd listens on (unix sockets, named pipes).

pub(crate) mod attach;
pub(crate) mod fifo;
pub(crate) mod fs;
pub(crate) mod mount;
pub(crate) mod process;
pub(crate) mod signals;
pub(crate) mod transport;
