//! Named-pipe names and the pipe's security descriptor: the pure part of the Windows
//! listener, compiled everywhere so Linux CI tests it.
//!
//! kubelet and crictl spell a pipe `npipe:////./pipe/crimux` (Go's URL form), people type
//! `\\.\pipe\crimux`, and some tools write `npipe://./pipe/crimux`. All three mean the same
//! local pipe; Windows wants the `\\.\pipe\<name>` form.

use std::fmt;

/// Who may open the CRI pipe: a protected DACL (`P`: nothing inherited) granting generic
/// all (`GA`) to built-in Administrators (`BA`) and LocalSystem (`SY`) only. kubelet runs as
/// SYSTEM (or an administrator); crictl needs an elevated prompt, as it does for
/// containerd's own pipe.
#[cfg_attr(not(windows), allow(dead_code))]
pub const PIPE_SDDL: &str = "D:P(A;;GA;;;BA)(A;;GA;;;SY)";

/// The longest pipe path Windows accepts (`\\.\pipe\` included).
const MAX_PIPE_PATH: usize = 256;

const PREFIX: &str = r"\\.\pipe\";

/// A local named pipe, held as `\\.\pipe\<name>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PipeName(String);

impl PipeName {
    /// Parses any accepted spelling of a local pipe. Remote pipes (`\\host\pipe\x`), a
    /// missing or nested name, and anything else are refused with the reason.
    pub fn parse(address: &str) -> Result<PipeName, String> {
        let bad = |why: &str| Err(format!("pipe {address:?}: {why}"));
        let trimmed = address.trim();
        let path = match trimmed.strip_prefix("npipe://") {
            // `npipe:////./pipe/x` leaves `//./pipe/x`; `npipe://./pipe/x` leaves `./pipe/x`.
            Some(rest) if rest.starts_with("//") || rest.starts_with(r"\\") => rest.to_string(),
            Some(rest) => format!("//{rest}"),
            None => trimmed.to_string(),
        };
        let path = path.replace('/', r"\");
        let Some(rest) = path.strip_prefix(r"\\") else {
            return bad(r"expected npipe:////./pipe/<name> or \\.\pipe\<name>");
        };
        let Some((host, rest)) = rest.split_once('\\') else {
            return bad(r"expected npipe:////./pipe/<name> or \\.\pipe\<name>");
        };
        if host != "." {
            return bad("only local pipes (host \".\") can be served or dialled");
        }
        let Some((kind, name)) = rest.split_once('\\') else {
            return bad("missing the pipe\\ part");
        };
        if !kind.eq_ignore_ascii_case("pipe") {
            return bad("the path must be under \\\\.\\pipe\\");
        }
        if name.is_empty() {
            return bad("empty pipe name");
        }
        if name.contains('\\') {
            return bad("a pipe name cannot contain another separator");
        }
        if name.chars().any(char::is_control) {
            return bad("control characters in the pipe name");
        }
        let full = format!("{PREFIX}{name}");
        if full.len() > MAX_PIPE_PATH {
            return bad("longer than 256 characters");
        }
        Ok(PipeName(full))
    }

    /// Whether `address` is spelled as a pipe at all (so a unix path is not mistaken for
    /// one and vice versa).
    pub fn looks_like_pipe(address: &str) -> bool {
        let a = address.trim();
        a.starts_with("npipe://") || a.starts_with(r"\\") || a.starts_with("//")
    }

    /// `\\.\pipe\<name>`, what `CreateNamedPipeW` and `CreateFileW` take.
    #[cfg_attr(not(windows), allow(dead_code))]
    pub fn path(&self) -> &str {
        &self.0
    }

    /// `npipe:////./pipe/<name>`, the form kubelet's `containerRuntimeEndpoint` and
    /// crictl's `--runtime-endpoint` use.
    pub fn endpoint(&self) -> String {
        format!("npipe://{}", self.0.replace('\\', "/"))
    }
}

impl fmt::Display for PipeName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_spelling_names_the_same_pipe() {
        for spelling in [
            "npipe:////./pipe/crimux",
            "npipe://./pipe/crimux",
            r"\\.\pipe\crimux",
            "//./pipe/crimux",
            r"npipe://\\.\pipe\crimux",
            " npipe:////./PIPE/crimux ",
        ] {
            let pipe = PipeName::parse(spelling).unwrap_or_else(|e| panic!("{spelling}: {e}"));
            assert_eq!(pipe.path(), r"\\.\pipe\crimux", "{spelling}");
            assert_eq!(pipe.endpoint(), "npipe:////./pipe/crimux", "{spelling}");
            assert_eq!(pipe.to_string(), r"\\.\pipe\crimux");
        }
        let containerd = PipeName::parse("npipe:////./pipe/containerd-containerd").expect("ok");
        assert_eq!(containerd.path(), r"\\.\pipe\containerd-containerd");
    }

    #[test]
    fn bad_names_say_why() {
        let long = format!("npipe:////./pipe/{}", "x".repeat(300));
        let cases = [
            ("npipe://", "expected npipe:"),
            ("/run/crimux/crimux.sock", "expected npipe:"),
            ("unix:///run/x.sock", "expected npipe:"),
            (r"\\server\pipe\crimux", "only local pipes"),
            ("npipe:////host/pipe/crimux", "only local pipes"),
            ("npipe:////./pipe/", "empty pipe name"),
            ("npipe:////./pipe", "missing the pipe"),
            ("npipe:////./mailslot/x", "under \\\\.\\pipe\\"),
            ("npipe:////./pipe/a/b", "another separator"),
            ("npipe:////./pipe/a\nb", "control characters"),
            (long.as_str(), "longer than 256"),
        ];
        for (address, needle) in cases {
            let err = PipeName::parse(address).expect_err(address);
            assert!(err.contains(needle), "{address:?}: {err}");
        }
    }

    #[test]
    fn pipe_spellings_are_recognised() {
        assert!(PipeName::looks_like_pipe("npipe:////./pipe/crimux"));
        assert!(PipeName::looks_like_pipe(r"\\.\pipe\crimux"));
        assert!(!PipeName::looks_like_pipe("/run/crimux/crimux.sock"));
        assert!(!PipeName::looks_like_pipe("unix:///run/crimux/crimux.sock"));
    }

    #[test]
    fn sddl_allows_only_administrators_and_system() {
        // Protected DACL, exactly two allow entries, no inheritance, no world/users.
        assert!(PIPE_SDDL.starts_with("D:P"));
        let aces: Vec<&str> = PIPE_SDDL
            .trim_start_matches("D:P")
            .split(')')
            .filter(|a| !a.is_empty())
            .map(|a| a.trim_start_matches('('))
            .collect();
        assert_eq!(aces, ["A;;GA;;;BA", "A;;GA;;;SY"]);
    }
}
