//! Images: specs, pulls, images and filesystem usage.

use std::collections::HashMap;

use k8s_cri::v1;

use crimux_core::image::{parse_image_user, ImageUser};
use crimux_core::{Credentials, Error, FsUsage, Image, PullImage, Result};

/// The image an `ImageSpec` names; `rpc` goes in the message when it names none.
pub fn image_name(spec: Option<&v1::ImageSpec>, rpc: &str) -> Result<String> {
    match spec.map(|s| s.image.trim()) {
        Some(name) if !name.is_empty() => Ok(name.to_string()),
        _ => Err(Error::InvalidArgument(format!(
            "{rpc}: image spec with a non-empty image name is required"
        ))),
    }
}

/// The request's credentials, `None` when it carries none.
pub fn credentials(auth: Option<v1::AuthConfig>) -> Option<Credentials> {
    let auth = auth?;
    let creds = Credentials {
        username: auth.username,
        password: auth.password,
        auth: auth.auth,
        server_address: auth.server_address,
        identity_token: auth.identity_token,
        registry_token: auth.registry_token,
    };
    (!creds.is_empty()).then_some(creds)
}

/// A PullImage request as the dispatcher takes it.
pub fn pull_request(request: v1::PullImageRequest) -> Result<PullImage> {
    let reference = image_name(request.image.as_ref(), "PullImage")?;
    let metadata = request.sandbox_config.and_then(|c| c.metadata);
    let pod_uid = metadata
        .as_ref()
        .map(|m| m.uid.clone())
        .filter(|u| !u.is_empty());
    let pod_name =
        metadata
            .as_ref()
            .filter(|m| !m.name.is_empty())
            .map(|m| match m.namespace.as_str() {
                "" => m.name.clone(),
                ns => format!("{ns}/{}", m.name),
            });
    Ok(PullImage {
        reference,
        credentials: credentials(request.auth),
        pod_uid,
        pod_name,
    })
}

/// An image as the CRI reports it.
pub fn image_to_proto(image: &Image) -> v1::Image {
    let (uid, username) = match parse_image_user(&image.user) {
        ImageUser::None => (None, String::new()),
        ImageUser::Uid(uid) => (Some(v1::Int64Value { value: uid }), String::new()),
        ImageUser::Name(name) => (None, name),
    };
    v1::Image {
        id: image.id.0.clone(),
        repo_tags: image.repo_tags.clone(),
        repo_digests: image.repo_digests.clone(),
        size: image.size,
        uid,
        username,
        spec: Some(v1::ImageSpec {
            image: image.id.0.clone(),
            ..Default::default()
        }),
        pinned: image.pinned,
    }
}

/// The `info` map of a verbose ImageStatus: key `"info"` holds JSON with the image config
/// under `imageSpec`, as containerd's CRI reports it.
pub fn verbose_image_info(image: &Image) -> HashMap<String, String> {
    let info = serde_json::json!({
        "id": image.id.0,
        "imageSpec": image.config,
        "platform": image.platform.to_string(),
    });
    HashMap::from([("info".to_string(), info.to_string())])
}

pub fn fs_usage(usage: &FsUsage) -> v1::FilesystemUsage {
    v1::FilesystemUsage {
        timestamp: usage.timestamp_ns,
        fs_id: Some(v1::FilesystemIdentifier {
            mountpoint: usage.mountpoint.clone(),
        }),
        used_bytes: Some(v1::UInt64Value {
            value: usage.used_bytes,
        }),
        inodes_used: Some(v1::UInt64Value {
            value: usage.inodes_used,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crimux_core::{ImageId, Platform};

    fn spec(image: &str) -> v1::ImageSpec {
        v1::ImageSpec {
            image: image.into(),
            ..Default::default()
        }
    }

    #[test]
    fn image_names() {
        let cases = [
            (None, None),
            (Some(""), None),
            (Some("  "), None),
            (Some("busybox"), Some("busybox")),
            (Some(" busybox:1 "), Some("busybox:1")),
        ];
        for (given, want) in cases {
            let s = given.map(spec);
            let got = image_name(s.as_ref(), "ImageStatus");
            match want {
                Some(w) => assert_eq!(got.expect("valid"), w),
                None => {
                    let e = got.expect_err("invalid");
                    assert_eq!(e.code(), tonic::Code::InvalidArgument);
                    assert!(e.to_string().starts_with("ImageStatus"), "{e}");
                }
            }
        }
    }

    #[test]
    fn pull_requests() {
        let meta = |name: &str, ns: &str, uid: &str| v1::PodSandboxConfig {
            metadata: Some(v1::PodSandboxMetadata {
                name: name.into(),
                namespace: ns.into(),
                uid: uid.into(),
                attempt: 0,
            }),
            ..Default::default()
        };
        let auth = v1::AuthConfig {
            username: "u".into(),
            password: "p".into(),
            ..Default::default()
        };
        // (request, reference, pod_uid, pod_name, has credentials)
        let cases = vec![
            (
                v1::PullImageRequest {
                    image: Some(spec("busybox")),
                    ..Default::default()
                },
                "busybox",
                None,
                None,
                false,
            ),
            (
                v1::PullImageRequest {
                    image: Some(spec("busybox")),
                    auth: Some(auth.clone()),
                    sandbox_config: Some(meta("web", "default", "uid-1")),
                },
                "busybox",
                Some("uid-1"),
                Some("default/web"),
                true,
            ),
            (
                v1::PullImageRequest {
                    image: Some(spec("busybox")),
                    auth: Some(v1::AuthConfig::default()),
                    sandbox_config: Some(meta("web", "", "")),
                },
                "busybox",
                None,
                Some("web"),
                false,
            ),
        ];
        for (req, reference, uid, name, creds) in cases {
            let got = pull_request(req).expect("valid");
            assert_eq!(got.reference, reference);
            assert_eq!(got.pod_uid.as_deref(), uid);
            assert_eq!(got.pod_name.as_deref(), name);
            assert_eq!(got.credentials.is_some(), creds);
        }
        let got = pull_request(v1::PullImageRequest {
            image: Some(spec("x")),
            auth: Some(auth),
            ..Default::default()
        })
        .expect("valid");
        let c = got.credentials.expect("credentials");
        assert_eq!((c.username.as_str(), c.password.as_str()), ("u", "p"));
        assert!(pull_request(v1::PullImageRequest::default()).is_err());
    }

    #[test]
    fn images_to_proto() {
        let base = Image {
            id: ImageId("sha256:abc".into()),
            repo_tags: vec!["docker.io/library/busybox:latest".into()],
            repo_digests: vec!["docker.io/library/busybox@sha256:def".into()],
            size: 4242,
            user: String::new(),
            platform: Platform::new("linux", "amd64"),
            config: None,
            pinned: true,
        };
        // (user, uid, username)
        let cases = [
            ("", None, ""),
            ("1000:1000", Some(1000), ""),
            ("0", Some(0), ""),
            ("nobody", None, "nobody"),
        ];
        for (user, uid, username) in cases {
            let image = Image {
                user: user.into(),
                ..base.clone()
            };
            let p = image_to_proto(&image);
            assert_eq!(p.id, "sha256:abc");
            assert_eq!(p.repo_tags, base.repo_tags);
            assert_eq!(p.repo_digests, base.repo_digests);
            assert_eq!(p.size, 4242);
            assert!(p.pinned);
            assert_eq!(p.spec.map(|s| s.image).as_deref(), Some("sha256:abc"));
            assert_eq!(p.uid.map(|u| u.value), uid, "{user:?}");
            assert_eq!(p.username, username, "{user:?}");
        }
    }

    #[test]
    fn verbose_info_holds_the_config() {
        let image = Image {
            id: ImageId("sha256:abc".into()),
            repo_tags: vec![],
            repo_digests: vec![],
            size: 1,
            user: String::new(),
            platform: Platform::new("linux", "arm64"),
            config: Some(serde_json::json!({"config": {"Cmd": ["sh"]}})),
            pinned: false,
        };
        let info = verbose_image_info(&image);
        let parsed: serde_json::Value = serde_json::from_str(&info["info"]).expect("info is JSON");
        assert_eq!(parsed["imageSpec"]["config"]["Cmd"][0], "sh");
        assert_eq!(parsed["platform"], "linux/arm64");
        assert_eq!(parsed["id"], "sha256:abc");
    }

    #[test]
    fn fs_usage_to_proto() {
        let p = fs_usage(&FsUsage {
            timestamp_ns: 7,
            mountpoint: "/var/lib/containerd/snapshots".into(),
            used_bytes: 10,
            inodes_used: 3,
        });
        assert_eq!(p.timestamp, 7);
        assert_eq!(
            p.fs_id.map(|f| f.mountpoint).as_deref(),
            Some("/var/lib/containerd/snapshots")
        );
        assert_eq!(p.used_bytes.map(|v| v.value), Some(10));
        assert_eq!(p.inodes_used.map(|v| v.value), Some(3));
    }
}
