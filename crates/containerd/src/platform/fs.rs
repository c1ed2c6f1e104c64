//! Filesystem facts only Linux has: overlayfs opaque directories (an xattr) and device
//! nodes (char/block files with major and minor numbers). On other hosts no directory is
//! opaque and no file is a device node; asking for a device says so with a clear error.

use std::fs::{FileType, Metadata};
use std::path::Path;

use crimux_core::Result;
use crimux_spec::linux::DeviceKind;

pub(crate) use imp::{device_node, is_device, is_opaque_dir};

/// A device node of the host, as a container's spec needs it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct DeviceNode {
    pub kind: DeviceKind,
    pub major: i64,
    pub minor: i64,
    /// Permission bits (`0o777` at most).
    pub file_mode: u32,
    pub uid: u32,
    pub gid: u32,
}

#[cfg(target_os = "linux")]
mod imp {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::{FileTypeExt, MetadataExt};

    use crimux_core::Error;

    use super::*;

    /// Whether overlayfs treats `dir` as opaque (it hides the same directory in the layers
    /// below): the `trusted.` or `user.overlay.opaque` xattr is `y`. Symlinks are not
    /// followed.
    pub(crate) fn is_opaque_dir(dir: &Path) -> bool {
        let Ok(path) = CString::new(dir.as_os_str().as_bytes()) else {
            return false;
        };
        let mut value = [0u8; 1];
        for name in [c"trusted.overlay.opaque", c"user.overlay.opaque"] {
            // SAFETY: both strings are NUL-terminated and the buffer is as long as we say.
            let n = unsafe {
                libc::lgetxattr(
                    path.as_ptr(),
                    name.as_ptr(),
                    value.as_mut_ptr().cast(),
                    value.len(),
                )
            };
            if n == 1 && value[0] == b'y' {
                return true;
            }
        }
        false
    }

    /// Whether a file type is a char or block device.
    pub(crate) fn is_device(ft: &FileType) -> bool {
        ft.is_char_device() || ft.is_block_device()
    }

    /// The device node `path` whose metadata is `meta`; InvalidArgument if it is none.
    pub(crate) fn device_node(path: &Path, meta: &Metadata) -> Result<DeviceNode> {
        let kind = if meta.file_type().is_char_device() {
            DeviceKind::Char
        } else if meta.file_type().is_block_device() {
            DeviceKind::Block
        } else {
            return Err(Error::InvalidArgument(format!(
                "{} is not a device node",
                path.display()
            )));
        };
        let rdev = meta.rdev();
        Ok(DeviceNode {
            kind,
            major: i64::from(libc::major(rdev)),
            minor: i64::from(libc::minor(rdev)),
            file_mode: meta.mode() & 0o777,
            uid: meta.uid(),
            gid: meta.gid(),
        })
    }
}

#[cfg(not(target_os = "linux"))]
mod imp {
    use crimux_core::Error;

    use super::*;

    /// Overlayfs is Linux's: no directory is opaque here.
    pub(crate) fn is_opaque_dir(_dir: &Path) -> bool {
        false
    }

    /// No file is a device node here.
    pub(crate) fn is_device(_ft: &FileType) -> bool {
        false
    }

    /// Host device nodes are a Linux feature.
    pub(crate) fn device_node(path: &Path, _meta: &Metadata) -> Result<DeviceNode> {
        Err(Error::Unimplemented(format!(
            "device {}: host device nodes exist only on Linux hosts, not on {}",
            path.display(),
            std::env::consts::OS
        )))
    }
}

/// Makes a symbolic link to a file, for tests that need one on any host.
#[cfg(test)]
pub(crate) fn symlink_file(target: &Path, link: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    return std::os::unix::fs::symlink(target, link);
    #[cfg(windows)]
    return std::os::windows::fs::symlink_file(target, link);
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn dev_null_is_a_char_device_and_a_file_is_not() {
        let meta = std::fs::metadata("/dev/null").expect("/dev/null");
        assert!(is_device(&meta.file_type()));
        let node = device_node(Path::new("/dev/null"), &meta).expect("device");
        assert_eq!(
            (node.kind, node.major, node.minor),
            (DeviceKind::Char, 1, 3)
        );
        assert_eq!(node.file_mode, 0o666);
        let dir = tempfile::tempdir().expect("tempdir");
        let meta = std::fs::metadata(dir.path()).expect("dir");
        assert!(!is_device(&meta.file_type()));
        let err = device_node(dir.path(), &meta).expect_err("a directory");
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
        assert!(!is_opaque_dir(dir.path()), "no xattr set");
    }
}
