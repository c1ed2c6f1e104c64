//! Images as crimux sees them, whichever backend holds them.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::platform::Platform;

/// An image id: `sha256:` and the hex digest of the image's config, as containerd's CRI
/// reports it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ImageId(pub String);

impl ImageId {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ImageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One image in one backend.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Image {
    pub id: ImageId,
    /// Normalised `repo:tag` names, sorted.
    pub repo_tags: Vec<String>,
    /// Normalised `repo@sha256:...` names, sorted.
    pub repo_digests: Vec<String>,
    /// Compressed size of config and layers, as containerd's CRI reports it.
    pub size: u64,
    /// The config's `User`, verbatim (`""`, `"1000"`, `"nobody:nogroup"`, ...).
    pub user: String,
    /// The platform the config declares.
    pub platform: Platform,
    /// The image config JSON, for verbose status.
    pub config: Option<serde_json::Value>,
    pub pinned: bool,
}

/// The user part of an image's `User`, as the CRI splits it: a numeric uid or a name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ImageUser {
    None,
    Uid(i64),
    Name(String),
}

impl Image {
    pub fn image_user(&self) -> ImageUser {
        parse_image_user(&self.user)
    }

    /// Whether `name` (a normalised reference, id or digest) names this image.
    pub fn is_named(&self, name: &str) -> bool {
        self.id.0 == name
            || self.repo_tags.iter().any(|t| t == name)
            || self.repo_digests.iter().any(|d| d == name)
    }
}

/// Splits an image config `User` (`user[:group]`) into the CRI's uid-or-username.
pub fn parse_image_user(user: &str) -> ImageUser {
    let user = user.split(':').next().unwrap_or_default().trim();
    if user.is_empty() {
        return ImageUser::None;
    }
    match user.parse::<i64>() {
        Ok(uid) => ImageUser::Uid(uid),
        Err(_) => ImageUser::Name(user.to_string()),
    }
}

/// Registry credentials as a pull request carries them (the CRI `AuthConfig`).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
    /// base64 of `username:password`.
    pub auth: String,
    pub server_address: String,
    /// A refresh token for the registry's token service.
    pub identity_token: String,
    /// A bearer token sent to the registry as it is.
    pub registry_token: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print secrets.
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("server_address", &self.server_address)
            .finish_non_exhaustive()
    }
}

impl Credentials {
    pub fn is_empty(&self) -> bool {
        self.username.is_empty()
            && self.password.is_empty()
            && self.auth.is_empty()
            && self.identity_token.is_empty()
            && self.registry_token.is_empty()
    }
}

/// A request to pull one image into one backend.
#[derive(Clone, Debug, Default)]
pub struct PullImage {
    /// The reference as the client gave it (short names allowed).
    pub reference: String,
    pub credentials: Option<Credentials>,
    /// The uid of the pod the pull is for, when the client said (used for routing hints).
    pub pod_uid: Option<String>,
    /// Pod name for messages, as `namespace/name`.
    pub pod_name: Option<String>,
}

/// How much of a filesystem a backend's images use.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct FsUsage {
    /// Unix nanoseconds when measured.
    pub timestamp_ns: i64,
    pub mountpoint: String,
    pub used_bytes: u64,
    pub inodes_used: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_user_splits_like_the_cri() {
        let cases = [
            ("", ImageUser::None),
            ("1000", ImageUser::Uid(1000)),
            ("1000:1000", ImageUser::Uid(1000)),
            ("nobody", ImageUser::Name("nobody".into())),
            ("www-data:www-data", ImageUser::Name("www-data".into())),
            (":100", ImageUser::None),
        ];
        for (user, want) in cases {
            assert_eq!(parse_image_user(user), want, "{user:?}");
        }
    }

    #[test]
    fn credentials_debug_hides_secrets() {
        let c = Credentials {
            username: "u".into(),
            password: "hunter2".into(),
            ..Default::default()
        };
        assert!(!format!("{c:?}").contains("hunter2"));
    }
}
