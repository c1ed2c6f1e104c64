//! The Linux system calls behind [`crate::NetNs`]: unshare, bind mount, setns, umount.

use std::ffi::CString;
use std::fs::OpenOptions;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::Mutex;

use crimux_core::{Error, Result};

use crate::netns::NetNs;

/// `statfs.f_type` of the nsfs filesystem that namespace files live on.
const NSFS_MAGIC: u64 = 0x6e73_6673;
/// `ioctl(fd, NS_GET_NSTYPE)`: which kind of namespace an nsfs file is (Linux 4.11+).
const NS_GET_NSTYPE: libc::c_ulong = 0xb703;
/// Bound on stacked mounts `remove` peels off one path.
const MAX_STACKED_MOUNTS: usize = 16;

/// Serializes making a directory a shared mountpoint, so two creates never both bind-mount it.
static SHARED_DIR_LOCK: Mutex<()> = Mutex::new(());

fn cstr(path: &Path) -> Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| Error::InvalidArgument(format!("path {} contains NUL", path.display())))
}

/// Classifies an OS error by what the caller can do about it.
fn os_error(what: String, e: io::Error) -> Error {
    match e.raw_os_error() {
        Some(libc::EPERM) | Some(libc::EACCES) => Error::PermissionDenied(format!("{what}: {e}")),
        Some(libc::ENOENT) => Error::NotFound(format!("{what}: {e}")),
        _ => Error::Internal(format!("{what}: {e}")),
    }
}

fn check(rc: libc::c_int) -> io::Result<()> {
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Makes `dir` a shared mountpoint, bind-mounting it onto itself first when it is not a
/// mountpoint yet (what iproute2 does for /run/netns).
fn make_shared(dir: &Path) -> Result<()> {
    let _guard = SHARED_DIR_LOCK.lock().unwrap_or_else(|p| p.into_inner());
    let c = cstr(dir)?;
    let share = || {
        // SAFETY: `c` is a valid NUL-terminated path; other pointers may be null for a
        // propagation change.
        check(unsafe {
            libc::mount(
                std::ptr::null(),
                c.as_ptr(),
                std::ptr::null(),
                libc::MS_SHARED | libc::MS_REC,
                std::ptr::null(),
            )
        })
    };
    match share() {
        Ok(()) => return Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {}
        Err(e) => return Err(os_error(format!("make {} shared", dir.display()), e)),
    }
    // SAFETY: both paths are valid NUL-terminated strings; no data argument for a bind.
    check(unsafe {
        libc::mount(
            c.as_ptr(),
            c.as_ptr(),
            std::ptr::null(),
            libc::MS_BIND | libc::MS_REC,
            std::ptr::null(),
        )
    })
    .map_err(|e| os_error(format!("bind-mount {} onto itself", dir.display()), e))?;
    share().map_err(|e| os_error(format!("make {} shared", dir.display()), e))
}

/// Brings `lo` up in the calling thread's network namespace, as containerd's CRI does for
/// every pod (its built-in loopback network): a pod must reach its own 127.0.0.1 — port
/// forwarding connects there — even when the node's CNI config lists no `loopback` plugin.
fn loopback_up() -> io::Result<()> {
    // SAFETY: a plain datagram socket, closed below by OwnedFd.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh descriptor we own.
    let sock = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) };
    // SAFETY: ifreq is plain old data; all-zero is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS/SIOCSIFFLAGS read and write `req`, which outlives the calls;
    // the union member used is the flags one these requests define.
    unsafe {
        check(libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req))?;
        req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
        check(libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req))
    }
}

pub(crate) fn create(dir: &Path, name: &str) -> Result<NetNs> {
    std::fs::create_dir_all(dir)
        .map_err(|e| os_error(format!("create netns dir {}", dir.display()), e))?;
    make_shared(dir)?;
    let path = dir.join(name);
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o444)
        .open(&path)
        .map_err(|e| match e.kind() {
            io::ErrorKind::AlreadyExists => {
                Error::AlreadyExists(format!("network namespace {} exists", path.display()))
            }
            _ => os_error(format!("create {}", path.display()), e),
        })?;
    let target = cstr(&path)?;
    // A dedicated thread: after unshare it is in the new namespace for the rest of its
    // short life, and no other code ever runs on it.
    let pinned = std::thread::Builder::new()
        .name("crimux-netns-new".into())
        .spawn(move || -> io::Result<()> {
            // SAFETY: unshare only changes this thread's namespace membership.
            check(unsafe { libc::unshare(libc::CLONE_NEWNET) })?;
            loopback_up()?;
            let source = c"/proc/thread-self/ns/net";
            // SAFETY: valid NUL-terminated paths; a bind mount takes no fs type or data.
            check(unsafe {
                libc::mount(
                    source.as_ptr(),
                    target.as_ptr(),
                    std::ptr::null(),
                    libc::MS_BIND,
                    std::ptr::null(),
                )
            })
        })
        .map_err(|e| Error::Internal(format!("spawn netns thread: {e}")))?
        .join()
        .map_err(|_| Error::Internal("netns thread panicked".into()))
        .and_then(|r| r.map_err(|e| os_error(format!("pin netns at {}", path.display()), e)));
    if let Err(e) = pinned {
        let _ = std::fs::remove_file(&path);
        return Err(e);
    }
    tracing::debug!(netns = %path.display(), "created network namespace");
    Ok(NetNs::from_path(path))
}

pub(crate) fn open(path: &Path) -> Result<NetNs> {
    let c = cstr(path)?;
    // SAFETY: `statfs` is plain old data; the kernel fills it on success.
    let mut fs: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: valid path and a valid out-pointer.
    check(unsafe { libc::statfs(c.as_ptr(), &mut fs) })
        .map_err(|e| os_error(format!("network namespace {}", path.display()), e))?;
    #[allow(clippy::unnecessary_cast)]
    if fs.f_type as u64 != NSFS_MAGIC {
        return Err(Error::FailedPrecondition(format!(
            "{} is not a mounted namespace",
            path.display()
        )));
    }
    let file =
        std::fs::File::open(path).map_err(|e| os_error(format!("open {}", path.display()), e))?;
    // SAFETY: NS_GET_NSTYPE takes no argument and only reads the fd.
    let kind = unsafe { libc::ioctl(file.as_raw_fd(), NS_GET_NSTYPE as _) };
    if kind >= 0 && kind != libc::CLONE_NEWNET {
        return Err(Error::FailedPrecondition(format!(
            "{} is a namespace, but not a network namespace",
            path.display()
        )));
    }
    Ok(NetNs::from_path(path.to_path_buf()))
}

pub(crate) fn remove(path: &Path) -> Result<()> {
    let c = cstr(path)?;
    for _ in 0..MAX_STACKED_MOUNTS {
        // SAFETY: valid NUL-terminated path.
        match check(unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) }) {
            Ok(()) => continue,
            Err(e) if matches!(e.raw_os_error(), Some(libc::EINVAL) | Some(libc::ENOENT)) => break,
            Err(e) => return Err(os_error(format!("unmount {}", path.display()), e)),
        }
    }
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(os_error(format!("remove {}", path.display()), e)),
    }
    tracing::debug!(netns = %path.display(), "removed network namespace");
    Ok(())
}

pub(crate) fn run_in<F, T>(ns: &NetNs, f: F) -> Result<T>
where
    F: FnOnce() -> T + Send,
    T: Send,
{
    let path = ns.path();
    let file =
        std::fs::File::open(path).map_err(|e| os_error(format!("open {}", path.display()), e))?;
    std::thread::scope(|scope| {
        let handle = std::thread::Builder::new()
            .name("crimux-netns-run".into())
            .spawn_scoped(scope, move || -> Result<T> {
                // SAFETY: setns only changes this thread's namespace; the fd is open.
                check(unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) })
                    .map_err(|e| os_error(format!("setns into {}", path.display()), e))?;
                drop(file);
                Ok(f())
            })
            .map_err(|e| Error::Internal(format!("spawn netns thread: {e}")))?;
        handle
            .join()
            .map_err(|_| Error::Internal(format!("code run in {} panicked", path.display())))?
    })
}
