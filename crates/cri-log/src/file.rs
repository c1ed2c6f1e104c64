//! The log file that kubelet reads.
//!
//! Opened append-only and created when missing (mode 0640 before umask, like
//! containerd's CRI plugin). kubelet rotates a container log by renaming it and
//! then asking the runtime to `ReopenContainerLog`: [`LogFile::reopen`] closes the
//! old handle and opens a fresh file at the same path, so new output never goes
//! to the renamed file.
//!
//! Both streams share one `LogFile`; the caller writes whole entries with one
//! [`LogFile::write_entries`] call from a single writer, so entries of stdout and
//! stderr interleave whole and are never mixed inside a line.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// How to open the log file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogFileOptions {
    /// Create missing parent directories. kubelet creates the pod log directory
    /// itself, so crimux leaves this off in production; tests turn it on.
    pub create_parent_dirs: bool,
    /// Permission bits for a newly created file (unix only; umask applies).
    pub mode: u32,
}

impl Default for LogFileOptions {
    fn default() -> Self {
        Self {
            create_parent_dirs: false,
            mode: 0o640,
        }
    }
}

/// An open CRI log file.
#[derive(Debug)]
pub struct LogFile {
    path: PathBuf,
    options: LogFileOptions,
    file: File,
}

impl LogFile {
    /// Opens (creating if needed) `path` for appending.
    pub fn open(path: impl Into<PathBuf>, options: LogFileOptions) -> Result<Self> {
        let path = path.into();
        let file = open_append(&path, &options)?;
        Ok(Self {
            path,
            options,
            file,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends already-encoded entries. On error some of the bytes may have been
    /// written; the caller logs and carries on, as containerd does, so that the
    /// container's output keeps being drained.
    pub fn write_entries(&mut self, entries: &[u8]) -> Result<()> {
        self.file
            .write_all(entries)
            .map_err(|e| Error::io("write log file", &self.path, e))
    }

    /// Closes the current file and opens `path` again. When opening fails the old
    /// handle is kept (output keeps going somewhere) and the error is returned.
    pub fn reopen(&mut self) -> Result<()> {
        self.file = open_append(&self.path, &self.options)?;
        Ok(())
    }

    /// Flushes file data to disk.
    pub fn sync(&self) -> Result<()> {
        self.file
            .sync_data()
            .map_err(|e| Error::io("sync log file", &self.path, e))
    }
}

fn open_append(path: &Path, options: &LogFileOptions) -> Result<File> {
    if options.create_parent_dirs {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            fs::create_dir_all(parent).map_err(|e| Error::io("create log dir", parent, e))?;
        }
    }
    let mut open = OpenOptions::new();
    open.append(true).create(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        open.mode(options.mode);
    }
    open.open(path)
        .map_err(|e| Error::io("open log file", path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appends_and_reopens_after_rename() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pod/ctr/0.log");
        assert!(LogFile::open(&path, LogFileOptions::default()).is_err());
        let opts = LogFileOptions {
            create_parent_dirs: true,
            ..LogFileOptions::default()
        };
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, b"old\n").unwrap();
        let mut f = LogFile::open(&path, opts).unwrap();
        f.write_entries(b"one\n").unwrap();
        let rotated = dir.path().join("pod/ctr/0.log.1");
        fs::rename(&path, &rotated).unwrap();
        f.write_entries(b"two\n").unwrap();
        f.reopen().unwrap();
        f.write_entries(b"three\n").unwrap();
        f.sync().unwrap();
        assert_eq!(fs::read(&rotated).unwrap(), b"old\none\ntwo\n");
        assert_eq!(fs::read(&path).unwrap(), b"three\n");
    }

    #[test]
    fn creates_parent_dirs_when_asked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a/b/c.log");
        let opts = LogFileOptions {
            create_parent_dirs: true,
            ..LogFileOptions::default()
        };
        let mut f = LogFile::open(&path, opts).unwrap();
        f.write_entries(b"x\n").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"x\n");
    }

    #[cfg(unix)]
    #[test]
    fn new_file_mode_is_at_most_0640() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.log");
        LogFile::open(&path, LogFileOptions::default()).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode & !0o640, 0, "mode {mode:o}");
    }

    #[test]
    fn reopen_failure_keeps_old_handle() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("d");
        fs::create_dir(&sub).unwrap();
        let path = sub.join("x.log");
        let mut f = LogFile::open(&path, LogFileOptions::default()).unwrap();
        let moved = dir.path().join("moved");
        fs::rename(&sub, &moved).unwrap();
        assert!(f.reopen().is_err());
        f.write_entries(b"still\n").unwrap();
        assert_eq!(fs::read(moved.join("x.log")).unwrap(), b"still\n");
    }
}
