//! Operating systems and platforms, as OCI image configs and containerd name them.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The operating system a workload needs. Closed on purpose: crimux routes only between
/// these, and anything else is refused by name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OsKind {
    Linux,
    Windows,
}

impl OsKind {
    pub fn as_str(self) -> &'static str {
        match self {
            OsKind::Linux => "linux",
            OsKind::Windows => "windows",
        }
    }

    /// The OS of the machine crimux itself was built for.
    pub fn host() -> OsKind {
        if cfg!(windows) {
            OsKind::Windows
        } else {
            OsKind::Linux
        }
    }
}

impl fmt::Display for OsKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown operating system {0:?} (expected \"linux\" or \"windows\")")]
pub struct UnknownOs(pub String);

impl FromStr for OsKind {
    type Err = UnknownOs;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "linux" => Ok(OsKind::Linux),
            "windows" => Ok(OsKind::Windows),
            _ => Err(UnknownOs(s.to_string())),
        }
    }
}

/// An OCI platform: what an image needs or what a backend runs.
///
/// `os` stays a string because images name operating systems crimux cannot run
/// (`freebsd`, ...) and a refusal must still say which.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

impl Platform {
    pub fn new(os: impl Into<String>, architecture: impl Into<String>) -> Self {
        Platform {
            os: os.into(),
            architecture: architecture.into(),
            variant: None,
        }
    }

    /// The platform crimux was built for, in OCI spelling (`amd64`, not `x86_64`).
    pub fn host() -> Self {
        Platform::new(OsKind::host().as_str(), oci_arch(std::env::consts::ARCH))
    }

    /// The OS as a kind crimux can route, if it is one.
    pub fn os_kind(&self) -> Option<OsKind> {
        self.os.parse().ok()
    }

    /// Whether a backend running `self` can run an image built for `image`.
    /// OS must match exactly; architecture must match after normalisation; a variant only
    /// matters when both sides name one.
    pub fn can_run(&self, image: &Platform) -> bool {
        if !self.os.eq_ignore_ascii_case(&image.os) {
            return false;
        }
        if oci_arch(&self.architecture) != oci_arch(&image.architecture) {
            return false;
        }
        match (&self.variant, &image.variant) {
            (Some(a), Some(b)) => a == b,
            _ => true,
        }
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

/// Normalises an architecture name to the OCI spelling.
pub fn oci_arch(arch: &str) -> String {
    match arch {
        "x86_64" | "x86-64" => "amd64".into(),
        "aarch64" => "arm64".into(),
        "i386" | "i686" | "x86" => "386".into(),
        other => other.to_ascii_lowercase(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn os_kind_parses_case_insensitively() {
        assert_eq!("Linux".parse::<OsKind>(), Ok(OsKind::Linux));
        assert_eq!("windows".parse::<OsKind>(), Ok(OsKind::Windows));
        assert!("plan9".parse::<OsKind>().is_err());
    }

    #[test]
    fn can_run_matches_os_arch_and_variant() {
        let cases = [
            (("linux", "amd64", None), ("linux", "amd64", None), true),
            (("linux", "x86_64", None), ("linux", "amd64", None), true),
            (("linux", "amd64", None), ("windows", "amd64", None), false),
            (("linux", "amd64", None), ("linux", "arm64", None), false),
            (
                ("linux", "arm", Some("v7")),
                ("linux", "arm", Some("v6")),
                false,
            ),
            (("linux", "arm", Some("v7")), ("linux", "arm", None), true),
        ];
        for ((bo, ba, bv), (io, ia, iv), want) in cases {
            let backend = Platform {
                os: bo.into(),
                architecture: ba.into(),
                variant: bv.map(Into::into),
            };
            let image = Platform {
                os: io.into(),
                architecture: ia.into(),
                variant: iv.map(Into::into),
            };
            assert_eq!(backend.can_run(&image), want, "{backend} runs {image}?");
        }
    }
}
