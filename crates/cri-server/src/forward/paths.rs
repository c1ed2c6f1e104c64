//! Host paths ⇄ the forwarded-to side's paths, as pure string functions.
//!
//! A Windows crimux forwarding to a Linux crimux in WSL2 names files on the Windows host
//! (`C:\var\log\pods\...`) that the distro sees under another prefix (`/mnt/c/var/...`).
//! The configured [`PathMapping`]s say which prefix is which; a path under none of them
//! passes unchanged (a Linux path, a named pipe, an inner-only path).
//!
//! Rules: the longest matching prefix wins; a drive-letter prefix (`C:\`) matches
//! case-insensitively and treats `\` and `/` alike; a prefix only matches whole path
//! components (`C:\data` does not match `C:\database`); after a mapped prefix the rest's
//! separators become the other side's (`\` → `/` on the way in, and back on the way out
//! when the host prefix is a Windows path).

use super::PathMapping;

/// The configured mappings, ordered for longest-prefix-first matching in each direction.
#[derive(Clone, Debug, Default)]
pub(crate) struct PathMap {
    /// Sorted by `host` length, longest first.
    inward: Vec<PathMapping>,
    /// Sorted by `backend` length, longest first.
    outward: Vec<PathMapping>,
}

impl PathMap {
    pub(crate) fn new(mappings: &[PathMapping]) -> PathMap {
        let mut inward = mappings.to_vec();
        inward.sort_by_key(|m| std::cmp::Reverse(m.host.len()));
        let mut outward = mappings.to_vec();
        outward.sort_by_key(|m| std::cmp::Reverse(m.backend.len()));
        PathMap { inward, outward }
    }

    /// The backend's name for a host path, if a mapping applies.
    pub(crate) fn mapped_to_backend(&self, host: &str) -> Option<String> {
        self.inward.iter().find_map(|m| {
            let rest = strip_prefix(host, &m.host)?;
            Some(join(&m.backend, &rest.replace('\\', "/"), '/'))
        })
    }

    /// The host's name for a backend path, if a mapping applies.
    pub(crate) fn mapped_to_host(&self, backend: &str) -> Option<String> {
        self.outward.iter().find_map(|m| {
            let rest = strip_prefix(backend, &m.backend)?;
            if is_windows_path(&m.host) {
                Some(join(&m.host, &rest.replace('/', "\\"), '\\'))
            } else {
                Some(join(&m.host, rest, '/'))
            }
        })
    }

    /// A host path as the backend names it; unmapped paths pass unchanged.
    pub(crate) fn to_backend(&self, host: &str) -> String {
        self.mapped_to_backend(host)
            .unwrap_or_else(|| host.to_string())
    }

    /// A backend path as the host names it; unmapped paths pass unchanged.
    pub(crate) fn to_host(&self, backend: &str) -> String {
        self.mapped_to_host(backend)
            .unwrap_or_else(|| backend.to_string())
    }
}

/// Whether `path` is an absolute Windows path: a drive letter (`C:\`, `c:/`) or a UNC or
/// device path (`\\server\share`, `\\.\pipe\x`).
pub(crate) fn is_windows_path(path: &str) -> bool {
    has_drive_letter(path) || path.starts_with("\\\\")
}

fn has_drive_letter(path: &str) -> bool {
    let b = path.as_bytes();
    b.len() >= 2 && b[0].is_ascii_alphabetic() && b[1] == b':'
}

fn is_sep(b: u8) -> bool {
    b == b'/' || b == b'\\'
}

/// What follows `prefix` in `path`, if `path` is `prefix` or lies under it. A drive-letter
/// prefix compares ASCII case-insensitively with `\` and `/` alike.
fn strip_prefix<'a>(path: &'a str, prefix: &str) -> Option<&'a str> {
    if prefix.is_empty() {
        return None;
    }
    let rest = if has_drive_letter(prefix) {
        let head = path.get(..prefix.len())?;
        let same = head
            .bytes()
            .zip(prefix.bytes())
            .all(|(a, b)| a.eq_ignore_ascii_case(&b) || (is_sep(a) && is_sep(b)));
        if !same {
            return None;
        }
        path.get(prefix.len()..)?
    } else {
        path.strip_prefix(prefix)?
    };
    // Whole components only: the prefix ends at a separator, or the path does.
    let at_boundary = rest.is_empty()
        || prefix.bytes().last().is_some_and(is_sep)
        || rest.bytes().next().is_some_and(is_sep);
    at_boundary.then_some(rest)
}

/// `prefix` and `rest` with exactly one `sep` between them (none if `rest` is empty).
fn join(prefix: &str, rest: &str, sep: char) -> String {
    let rest = rest.trim_start_matches(['/', '\\']);
    if rest.is_empty() {
        return prefix.to_string();
    }
    if prefix.ends_with(['/', '\\']) {
        format!("{prefix}{rest}")
    } else {
        format!("{prefix}{sep}{rest}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> PathMap {
        let mappings: Vec<PathMapping> = pairs
            .iter()
            .map(|(h, b)| PathMapping {
                host: h.to_string(),
                backend: b.to_string(),
            })
            .collect();
        PathMap::new(&mappings)
    }

    #[test]
    fn host_paths_map_inward() {
        let wsl = map(&[("C:\\", "/mnt/c/"), ("D:\\", "/mnt/d/")]);
        let linux = map(&[("/var/log/pods", "/srv/pods")]);
        let several = map(&[
            ("C:\\", "/mnt/c/"),
            ("C:\\var\\log\\pods", "/var/log/pods"),
            ("C:\\var", "/mnt/var"),
        ]);
        let none = map(&[]);
        let cases: [(&PathMap, &str, &str); 16] = [
            (
                &wsl,
                "C:\\var\\log\\pods\\ns_web_1",
                "/mnt/c/var/log/pods/ns_web_1",
            ),
            (&wsl, "c:\\Data\\x.txt", "/mnt/c/Data/x.txt"),
            (&wsl, "C:/mixed\\seps/here", "/mnt/c/mixed/seps/here"),
            (&wsl, "D:\\", "/mnt/d/"),
            (&wsl, "E:\\other", "E:\\other"),
            (
                &wsl,
                "\\\\.\\pipe\\docker_engine",
                "\\\\.\\pipe\\docker_engine",
            ),
            (&wsl, "/var/log/pods", "/var/log/pods"),
            (
                &linux,
                "/var/log/pods/ns_web_1/c/0.log",
                "/srv/pods/ns_web_1/c/0.log",
            ),
            (&linux, "/var/log/pods", "/srv/pods"),
            (&linux, "/var/log/podsx", "/var/log/podsx"),
            (&linux, "/VAR/log/pods", "/VAR/log/pods"),
            (
                &several,
                "C:\\var\\log\\pods\\a\\0.log",
                "/var/log/pods/a/0.log",
            ),
            (&several, "C:\\var\\lib\\x", "/mnt/var/lib/x"),
            (&several, "C:\\variable", "/mnt/c/variable"),
            (&several, "C:\\Users\\me", "/mnt/c/Users/me"),
            (&none, "C:\\var\\log", "C:\\var\\log"),
        ];
        for (m, host, want) in cases {
            assert_eq!(m.to_backend(host), want, "{host}");
        }
        assert_eq!(none.mapped_to_backend("/x"), None);
        assert_eq!(wsl.mapped_to_backend("E:\\x"), None);
    }

    #[test]
    fn backend_paths_map_outward() {
        let wsl = map(&[("C:\\", "/mnt/c/")]);
        let prefix_without_sep = map(&[("C:\\k", "/mnt/c/k")]);
        let linux = map(&[("/var/log/pods", "/srv/pods")]);
        let several = map(&[("C:\\", "/mnt/c/"), ("C:\\var\\log\\pods", "/var/log/pods")]);
        let cases: [(&PathMap, &str, &str); 9] = [
            (
                &wsl,
                "/mnt/c/var/log/pods/a/0.log",
                "C:\\var\\log\\pods\\a\\0.log",
            ),
            (&wsl, "/mnt/c/", "C:\\"),
            (&wsl, "/var/lib/crimux/x", "/var/lib/crimux/x"),
            (&wsl, "/mnt/cx/y", "/mnt/cx/y"),
            (&prefix_without_sep, "/mnt/c/k/a/b", "C:\\k\\a\\b"),
            (&prefix_without_sep, "/mnt/c/kk", "/mnt/c/kk"),
            (&linux, "/srv/pods/a/0.log", "/var/log/pods/a/0.log"),
            (
                &several,
                "/var/log/pods/a/0.log",
                "C:\\var\\log\\pods\\a\\0.log",
            ),
            (&several, "/mnt/c/Users", "C:\\Users"),
        ];
        for (m, backend, want) in cases {
            assert_eq!(m.to_host(backend), want, "{backend}");
        }
    }

    #[test]
    fn mapped_paths_round_trip() {
        let m = map(&[
            ("C:\\", "/mnt/c/"),
            ("C:\\var\\log\\pods", "/var/log/pods"),
            ("/data", "/srv/data"),
        ]);
        for host in [
            "C:\\var\\log\\pods\\ns_web_uid\\web\\0.log",
            "C:\\Users\\me\\config.json",
            "C:\\",
            "/data/a/b",
            "/unmapped/x",
            "\\\\.\\pipe\\x",
        ] {
            assert_eq!(m.to_host(&m.to_backend(host)), host, "{host}");
        }
    }

    #[test]
    fn windows_paths_are_recognised() {
        for (p, want) in [
            ("C:\\x", true),
            ("c:/x", true),
            ("\\\\server\\share", true),
            ("/mnt/c", false),
            ("web\\0.log", false),
            ("", false),
        ] {
            assert_eq!(is_windows_path(p), want, "{p}");
        }
    }
}
