//! The few fields of an OCI/Docker image config crimux needs, read leniently: images in the
//! wild omit or misspell much of the rest, and that must not stop a pull.

use crimux_core::{Error, Platform, Result};
use serde::Deserialize;

/// What crimux reads from an image config.
#[derive(Clone, Debug, PartialEq)]
pub struct ImageConfig {
    pub platform: Platform,
    /// `config.User`, verbatim.
    pub user: String,
    /// `rootfs.diff_ids`, in layer order.
    pub diff_ids: Vec<String>,
    /// The whole document, for verbose status.
    pub json: serde_json::Value,
}

#[derive(Deserialize)]
struct Raw {
    #[serde(default)]
    os: String,
    #[serde(default)]
    architecture: String,
    #[serde(default)]
    variant: Option<String>,
    #[serde(default)]
    config: Option<RawConfig>,
    #[serde(default)]
    rootfs: Option<RawRootFs>,
}

#[derive(Deserialize)]
struct RawConfig {
    #[serde(default, rename = "User")]
    user: Option<String>,
}

#[derive(Deserialize)]
struct RawRootFs {
    #[serde(default)]
    diff_ids: Vec<String>,
}

impl ImageConfig {
    pub fn parse(bytes: &[u8]) -> Result<ImageConfig> {
        let json: serde_json::Value = serde_json::from_slice(bytes)
            .map_err(|e| Error::InvalidArgument(format!("image config is not JSON: {e}")))?;
        let raw: Raw = serde_json::from_value(json.clone())
            .map_err(|e| Error::InvalidArgument(format!("image config: {e}")))?;
        if raw.os.is_empty() {
            return Err(Error::InvalidArgument("image config names no os".into()));
        }
        Ok(ImageConfig {
            platform: Platform {
                os: raw.os,
                architecture: raw.architecture,
                variant: raw.variant.filter(|v| !v.is_empty()),
            },
            user: raw.config.and_then(|c| c.user).unwrap_or_default(),
            diff_ids: raw.rootfs.map(|r| r.diff_ids).unwrap_or_default(),
            json,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_platform_user_and_diff_ids() {
        let cfg = ImageConfig::parse(
            br#"{"architecture":"arm","variant":"v7","os":"linux",
                 "config":{"User":"1000:1000","Cmd":["sh"]},
                 "rootfs":{"type":"layers","diff_ids":["sha256:a","sha256:b"]}}"#,
        )
        .expect("parse");
        assert_eq!(cfg.platform.os, "linux");
        assert_eq!(cfg.platform.architecture, "arm");
        assert_eq!(cfg.platform.variant.as_deref(), Some("v7"));
        assert_eq!(cfg.user, "1000:1000");
        assert_eq!(cfg.diff_ids, ["sha256:a", "sha256:b"]);
        assert_eq!(cfg.json["config"]["Cmd"][0], "sh");
    }

    #[test]
    fn missing_fields_are_empty() {
        let cases: [(&[u8], &str); 3] = [
            (br#"{"os":"linux","architecture":"amd64"}"#, ""),
            (br#"{"os":"linux","config":{}}"#, ""),
            (
                br#"{"os":"windows","config":{"User":"ContainerUser"}}"#,
                "ContainerUser",
            ),
        ];
        for (json, user) in cases {
            let cfg = ImageConfig::parse(json).expect("parse");
            assert_eq!(cfg.user, user);
            assert!(cfg.diff_ids.is_empty());
        }
    }

    #[test]
    fn rejects_garbage_and_configs_without_os() {
        for json in [&b"not json"[..], br#"{"architecture":"amd64"}"#, br#"[1]"#] {
            let err = ImageConfig::parse(json).expect_err("must fail");
            assert_eq!(err.code(), tonic::Code::InvalidArgument);
        }
    }
}
