//! Mounts: the tmpfs a pod shares as `/dev/shm`, and whether a path is a mount point (the
//! shm tmpfs, a pinned network namespace). Linux only; elsewhere nothing is mounted and
//! mounting says it is not available.
//!
//! Mounting goes through the `mount(8)` and `umount(8)` binaries rather than `mount(2)`:
//! it happens once per pod, and needs no `unsafe`.

use std::path::Path;

use crimux_core::Result;

pub(crate) use imp::{is_mountpoint, mount_tmpfs, unmount};

#[cfg(target_os = "linux")]
mod imp {
    use crimux_core::Error;

    use super::*;

    const MOUNTINFO: &str = "/proc/self/mountinfo";

    /// Mounts a tmpfs named `source` with `options` (`mount -o`) on `target`.
    pub(crate) async fn mount_tmpfs(source: &str, options: &str, target: &Path) -> Result<()> {
        run("mount", &["-t", "tmpfs", "-o", options, source], target).await
    }

    /// Unmounts the topmost mount on `target`.
    pub(crate) async fn unmount(target: &Path) -> Result<()> {
        run("umount", &[], target).await
    }

    async fn run(program: &str, args: &[&str], path: &Path) -> Result<()> {
        let out = tokio::process::Command::new(program)
            .args(args)
            .arg(path)
            .output()
            .await
            .map_err(|e| Error::Internal(format!("running {program}: {e}")))?;
        if out.status.success() {
            return Ok(());
        }
        Err(Error::Internal(format!(
            "{program} {}: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }

    /// Whether `path` is a mount point in this process's mount namespace.
    pub(crate) async fn is_mountpoint(path: &Path) -> Result<bool> {
        let info = match tokio::fs::read_to_string(MOUNTINFO).await {
            Ok(info) => info,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(e) => {
                return Err(Error::Internal(format!("reading {MOUNTINFO}: {e}")));
            }
        };
        let found = mount_points(&info).any(|p| Path::new(&p) == path);
        Ok(found)
    }

    /// The mount points listed in a `/proc/<pid>/mountinfo` (field 5, octal escapes
    /// decoded).
    pub(super) fn mount_points(mountinfo: &str) -> impl Iterator<Item = String> + '_ {
        mountinfo
            .lines()
            .filter_map(|line| line.split(' ').nth(4))
            .map(unescape)
    }

    fn unescape(field: &str) -> String {
        let bytes = field.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == b'\\' && i + 3 < bytes.len() {
                let oct = std::str::from_utf8(&bytes[i + 1..i + 4]).ok();
                if let Some(b) = oct.and_then(|o| u8::from_str_radix(o, 8).ok()) {
                    out.push(b);
                    i += 4;
                    continue;
                }
            }
            out.push(bytes[i]);
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    }
}

#[cfg(not(target_os = "linux"))]
mod imp {
    use crimux_core::Error;

    use super::*;

    /// tmpfs is Linux's.
    pub(crate) async fn mount_tmpfs(_source: &str, _options: &str, target: &Path) -> Result<()> {
        Err(Error::Unimplemented(format!(
            "mounting a tmpfs on {}: tmpfs mounts exist only on Linux hosts, not on {}",
            target.display(),
            std::env::consts::OS
        )))
    }

    /// Nothing here is ever mounted by crimux, so nothing is unmounted.
    pub(crate) async fn unmount(target: &Path) -> Result<()> {
        Err(Error::Unimplemented(format!(
            "unmounting {}: mounts exist only on Linux hosts, not on {}",
            target.display(),
            std::env::consts::OS
        )))
    }

    /// crimux mounts nothing on this host: no path is one of its mount points.
    pub(crate) async fn is_mountpoint(_path: &Path) -> Result<bool> {
        Ok(false)
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_points_are_unescaped() {
        let info = "22 1 0:21 / /proc rw,nosuid - proc proc rw\n\
                    99 22 0:50 / /var/a\\040b rw - tmpfs shm rw\n";
        let points: Vec<String> = imp::mount_points(info).collect();
        assert_eq!(points, ["/proc", "/var/a b"]);
    }

    #[tokio::test]
    async fn the_root_is_a_mount_point_and_a_fresh_directory_is_not() {
        assert!(is_mountpoint(Path::new("/")).await.expect("mountinfo"));
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(!is_mountpoint(dir.path()).await.expect("mountinfo"));
    }
}
