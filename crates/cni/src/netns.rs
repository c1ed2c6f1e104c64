//! Pinned network namespaces: a netns bind-mounted onto a file, so it outlives every process
//! and can be handed to CNI plugins and to the OCI spec by path (containerd's CRI does the
//! same under `/var/run/netns`).
//!
//! The namespace is created on a dedicated, short-lived OS thread that `unshare`s and then
//! bind-mounts `/proc/thread-self/ns/net` onto the file; the calling thread (often a tokio
//! worker) never changes namespace. The directory is made a shared mountpoint (as
//! `ip netns` does for `/run/netns`), so unmounting a namespace also unmounts the copies
//! other mount namespaces took of it, and the netns is really freed.

use std::path::{Path, PathBuf};

use crimux_core::{Error, Result};

/// A network namespace pinned at a path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetNs {
    path: PathBuf,
}

impl NetNs {
    /// Where the namespace is pinned; what CNI's `CNI_NETNS` and the OCI spec get.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A handle for `path` without checking it (for removal of a namespace recorded earlier,
    /// which may be half gone).
    pub fn at(path: impl Into<PathBuf>) -> NetNs {
        NetNs { path: path.into() }
    }

    /// Unmounts and deletes the pinned namespace. Idempotent: a missing file, or a file that
    /// is no longer a mountpoint, is fine.
    pub fn remove(&self) -> Result<()> {
        imp::remove(&self.path)
    }
}

fn check_name(name: &str) -> Result<()> {
    if name.is_empty() || name == "." || name == ".." || name.contains(['/', '\0']) {
        return Err(Error::InvalidArgument(format!(
            "bad network namespace name {name:?}"
        )));
    }
    Ok(())
}

#[cfg(target_os = "linux")]
mod imp {
    pub(super) use crate::netns_linux::*;
}

#[cfg(windows)]
mod imp {
    pub(super) use crate::netns_windows::imp::*;
}

#[cfg(not(any(target_os = "linux", windows)))]
mod imp {
    use super::*;

    const UNSUPPORTED: &str = "network namespaces exist only on Linux and (as HCN) on Windows";

    pub(super) fn create(_dir: &Path, _name: &str) -> Result<NetNs> {
        Err(Error::Unimplemented(UNSUPPORTED.into()))
    }
    pub(super) fn open(_path: &Path) -> Result<NetNs> {
        Err(Error::Unimplemented(UNSUPPORTED.into()))
    }
    pub(super) fn remove(_path: &Path) -> Result<()> {
        Err(Error::Unimplemented(UNSUPPORTED.into()))
    }
    pub(super) fn run_in<F, T>(_ns: &NetNs, _f: F) -> Result<T>
    where
        F: FnOnce() -> T + Send,
        T: Send,
    {
        Err(Error::Unimplemented(UNSUPPORTED.into()))
    }
}

impl NetNs {
    /// Creates a new network namespace pinned at `dir/name`. Fails with `AlreadyExists` when
    /// the file exists.
    pub fn create(dir: &Path, name: &str) -> Result<NetNs> {
        check_name(name)?;
        imp::create(dir, name)
    }

    /// Opens an existing pinned namespace, checking that the path really is one.
    pub fn open(path: &Path) -> Result<NetNs> {
        imp::open(path)
    }

    /// Runs `f` on a fresh OS thread that has joined this namespace, and returns its value.
    ///
    /// Sockets created inside `f` stay in the namespace after it returns, so this is how to
    /// reach a pod's `localhost` (port-forward): `ns.run_in(|| TcpStream::connect(..))`.
    /// Child processes spawned inside `f` start in the namespace too. It blocks; call it from
    /// `spawn_blocking` in async code.
    pub fn run_in<F, T>(&self, f: F) -> Result<T>
    where
        F: FnOnce() -> T + Send,
        T: Send,
    {
        imp::run_in(self, f)
    }

    #[cfg_attr(not(any(target_os = "linux", windows)), allow(dead_code))]
    pub(crate) fn from_path(path: PathBuf) -> NetNs {
        NetNs { path }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_single_path_components() {
        for bad in ["", ".", "..", "a/b", "/abs", "nul\0"] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
        assert!(check_name("cni-0123abcd").is_ok());
    }
}
