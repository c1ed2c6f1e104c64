//! Helpers shared by the integration tests: a netns state dir that cleans up its mounts, and
//! reading /proc/self/mountinfo.
#![allow(dead_code)]

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// `(mount point, fs type)` for every mount in this mount namespace.
pub fn mounts() -> Vec<(PathBuf, String)> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").expect("read mountinfo");
    info.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(' ').collect();
            let dash = fields.iter().position(|f| *f == "-")?;
            let point = fields.get(4)?.replace("\\040", " ");
            Some((PathBuf::from(point), fields.get(dash + 1)?.to_string()))
        })
        .collect()
}

/// Mounts at or below `dir`.
pub fn mounts_under(dir: &Path) -> Vec<(PathBuf, String)> {
    mounts()
        .into_iter()
        .filter(|(p, _)| p.starts_with(dir))
        .collect()
}

/// A temp dir for pinned namespaces. On drop it unmounts everything under it (namespaces
/// a failed test left behind, and the dir's own shared bind mount) before deleting it.
pub struct NsDir {
    pub dir: tempfile::TempDir,
}

impl NsDir {
    pub fn new() -> NsDir {
        NsDir {
            dir: tempfile::Builder::new()
                .prefix("crimux-netns-")
                .tempdir()
                .expect("tempdir"),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for NsDir {
    fn drop(&mut self) {
        let mut under = mounts_under(self.dir.path());
        // Deepest first, so the dir's own mount goes last.
        under.sort_by_key(|(p, _)| std::cmp::Reverse(p.as_os_str().len()));
        for (point, _) in under {
            let c = CString::new(point.as_os_str().as_bytes()).expect("path");
            // SAFETY: valid NUL-terminated path.
            unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
        }
    }
}

/// Unmounts the dir's own bind mount (what `NsDir` does last), for tests that then assert
/// nothing is left.
pub fn unmount_dir(dir: &Path) {
    let c = CString::new(dir.as_os_str().as_bytes()).expect("path");
    // SAFETY: valid NUL-terminated path.
    unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
}

/// The namespace identity (`net:[inode]`) the calling thread is in.
pub fn current_netns() -> String {
    std::fs::read_link("/proc/thread-self/ns/net")
        .expect("readlink ns/net")
        .to_string_lossy()
        .into_owned()
}
