//! Windows path handling done as text, so that specs for a Windows host can be built (and
//! tested) on any host: `std::path` follows the host running crimux, not the one running
//! the container.
//!
//! hcsshim wants clean paths with backslashes, absolute container paths with a drive
//! (`\data` becomes `C:\data`), and named pipes (`\\.\pipe\name`) exactly as given
//! (containerd's `parseMount` for Windows).

use crimux_core::{Error, Result};

/// The prefix of a named pipe path; such mounts are passed through untouched.
pub const NAMED_PIPE_PREFIX: &str = r"\\.\pipe\";

/// Whether `p` names a named pipe.
pub fn is_named_pipe(p: &str) -> bool {
    p.starts_with(NAMED_PIPE_PREFIX)
}

/// Splits off a path's root: a drive (`C:`), a UNC or device prefix (`\\server\share`,
/// `\\?\C:`), or nothing. The rest keeps its leading separator, if any.
fn split_prefix(p: &str) -> (String, &str) {
    let bytes = p.as_bytes();
    if bytes.len() >= 2 && bytes[1] == b':' && bytes[0].is_ascii_alphabetic() {
        return (p[..2].to_ascii_uppercase(), &p[2..]);
    }
    if let Some(rest) = p.strip_prefix(r"\\") {
        // `\\server\share` or `\\?\X:` / `\\.\device`: the first two components are the root.
        let mut parts = rest.splitn(3, '\\');
        let a = parts.next().unwrap_or("");
        let b = parts.next().unwrap_or("");
        let root_len = 2 + a.len() + if b.is_empty() { 0 } else { 1 + b.len() };
        return (p[..root_len].to_string(), &p[root_len..]);
    }
    (String::new(), p)
}

/// Cleans a Windows path lexically, as Go's `filepath.Clean` does on Windows: `/` becomes
/// `\`, repeated separators collapse, `.` goes, `..` removes the component before it (never
/// above the root), and no trailing separator is kept except the root's. A bare drive
/// (`D:`) stays as it is (Go would add a `.` that hcsshim then refuses).
pub fn clean_path(p: &str) -> String {
    let p = p.replace('/', "\\");
    let (prefix, rest) = split_prefix(&p);
    let rooted = rest.starts_with('\\');
    let mut parts: Vec<&str> = Vec::new();
    for c in rest.split('\\') {
        match c {
            "" | "." => {}
            ".." => {
                if parts.last().is_some_and(|l| *l != "..") {
                    parts.pop();
                } else if !rooted {
                    parts.push("..");
                }
            }
            c => parts.push(c),
        }
    }
    let mut out = prefix;
    if rooted {
        out.push('\\');
    }
    out.push_str(&parts.join("\\"));
    if out.is_empty() {
        out.push('.');
    }
    out
}

/// A mount's source on the host: named pipes as given, everything else cleaned.
pub fn mount_source(src: &str) -> Result<String> {
    if src.is_empty() {
        return Err(Error::InvalidArgument(
            "mount host_path must not be empty".into(),
        ));
    }
    Ok(if is_named_pipe(src) {
        src.to_string()
    } else {
        clean_path(src)
    })
}

/// A mount's destination in the container: named pipes as given; a bare drive other than
/// `C:` as given (`C:` itself is the rootfs and cannot be a mount); anything else cleaned,
/// with `C:` put in front of a path that starts at the root (`\data` → `C:\data`).
pub fn mount_destination(dst: &str) -> Result<String> {
    if dst.is_empty() {
        return Err(Error::InvalidArgument(
            "mount container_path must not be empty".into(),
        ));
    }
    if is_named_pipe(dst) {
        return Ok(dst.to_string());
    }
    let b = dst.as_bytes();
    if b.len() == 2 && b[1] == b':' {
        if b[0].eq_ignore_ascii_case(&b'c') {
            return Err(Error::InvalidArgument(
                "a mount's container_path can not be the C drive".into(),
            ));
        }
        return Ok(dst.to_string());
    }
    let clean = clean_path(dst);
    Ok(if clean.starts_with('\\') && !clean.starts_with(r"\\") {
        format!("C:{clean}")
    } else {
        clean
    })
}

/// The number of components of a cleaned destination: mounts are applied shortest first,
/// so a mount at `C:\a` never hides one at `C:\a\b`.
pub(crate) fn depth(dst: &str) -> usize {
    clean_path(dst)
        .split('\\')
        .filter(|c| !c.is_empty())
        .count()
}

/// Whether `p` is an absolute Windows path: a drive followed by a separator, or a UNC path.
pub fn is_absolute(p: &str) -> bool {
    let b = p.as_bytes();
    (b.len() >= 3 && b[0].is_ascii_alphabetic() && b[1] == b':' && matches!(b[2], b'\\' | b'/'))
        || p.starts_with(r"\\")
        || p.starts_with("//")
}

/// A container's log file on a Windows node: the CRI `log_path` below the pod's
/// `log_directory` (`C:\var\log\pods\<ns>_<name>_<uid>`), joined with backslashes.
/// `None` when either is empty (the output is then discarded, as containerd does). The
/// relative part may use either separator, but must stay below the directory.
pub fn join_log_path(log_directory: &str, log_path: &str) -> Result<Option<String>> {
    if log_directory.is_empty() || log_path.is_empty() {
        return Ok(None);
    }
    if !is_absolute(log_directory) {
        return Err(Error::InvalidArgument(format!(
            "log_directory {log_directory:?} must be an absolute Windows path"
        )));
    }
    let escapes = log_path.starts_with(['\\', '/'])
        || log_path.contains(':')
        || log_path
            .split(['\\', '/'])
            .any(|c| c == ".." || c.is_empty());
    if escapes {
        return Err(Error::InvalidArgument(format!(
            "log_path {log_path:?} must be relative to the pod's log directory and stay in it"
        )));
    }
    let dir = clean_path(log_directory);
    let rel = clean_path(log_path);
    Ok(Some(format!("{}\\{rel}", dir.trim_end_matches('\\'))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cleans_like_go_filepath_on_windows() {
        for (input, want) in [
            (r"C:\a\b", r"C:\a\b"),
            ("c:/a//b/", r"C:\a\b"),
            (r"C:\a\.\b\..\c", r"C:\a\c"),
            (r"C:\..\a", r"C:\a"),
            (r"\data", r"\data"),
            ("a/../../b", r"..\b"),
            (r"\\server\share\x\..\y", r"\\server\share\y"),
            ("D:", "D:"),
            ("", "."),
        ] {
            assert_eq!(clean_path(input), want, "{input}");
        }
    }

    #[test]
    fn destinations_get_a_drive_and_pipes_pass() {
        assert_eq!(mount_destination(r"\data").unwrap(), r"C:\data");
        assert_eq!(mount_destination("/etc/app").unwrap(), r"C:\etc\app");
        assert_eq!(mount_destination(r"C:\data\").unwrap(), r"C:\data");
        assert_eq!(mount_destination("D:").unwrap(), "D:");
        assert_eq!(
            mount_destination(r"\\.\pipe\docker_engine").unwrap(),
            r"\\.\pipe\docker_engine"
        );
        for bad in ["", "C:", "c:"] {
            assert!(
                matches!(mount_destination(bad), Err(Error::InvalidArgument(_))),
                "{bad:?}"
            );
        }
        assert_eq!(
            mount_source(r"\\.\pipe\x/y").unwrap(),
            r"\\.\pipe\x/y",
            "pipes are never cleaned"
        );
        assert_eq!(mount_source("C:/k/data/").unwrap(), r"C:\k\data");
        assert_eq!(depth(r"C:\a\b"), 3);
    }

    #[test]
    fn log_paths_join_with_backslashes_and_stay_inside() {
        let dir = r"C:\var\log\pods\default_web_uid-1";
        assert_eq!(
            join_log_path(dir, "app/0.log").unwrap().as_deref(),
            Some(r"C:\var\log\pods\default_web_uid-1\app\0.log")
        );
        assert_eq!(
            join_log_path(r"C:\var\log\pods\x\", r"app\1.log")
                .unwrap()
                .as_deref(),
            Some(r"C:\var\log\pods\x\app\1.log")
        );
        assert_eq!(join_log_path("", "a.log").unwrap(), None);
        assert_eq!(join_log_path(dir, "").unwrap(), None);
        for bad in [
            r"..\x.log",
            r"\x.log",
            "/x.log",
            r"a\..\..\b",
            "D:x.log",
            r"a\\b",
        ] {
            assert!(join_log_path(dir, bad).is_err(), "{bad}");
        }
        assert!(join_log_path("/var/log/pods/x", "a.log").is_err());
        assert!(join_log_path("relative", "a.log").is_err());
    }
}
