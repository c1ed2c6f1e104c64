//! An image as containers need it: its id, config and top chain id (the snapshot parent).

use std::collections::BTreeMap;

use crimux_core::{Error, Result};
use crimux_registry::Reference;
use crimux_spec::ImageConfig;

use crate::backend::Inner;
use crate::{content, images, records, unpack};

pub(crate) struct RunnableImage {
    /// `sha256:<config digest>`.
    pub id: String,
    /// The name the client used, normalised.
    pub name: String,
    pub config: ImageConfig,
    /// Top chain id of the unpacked layers.
    pub chain_id: String,
    pub platform: crimux_core::Platform,
}

/// The name to show for `name`: the reference normalised (`busybox` →
/// `docker.io/library/busybox:latest`) when one of the image's records carries it, else
/// (an id or id prefix) the image id.
fn display_name(name: &str, id: &str, record_names: &[&str]) -> String {
    let normalised = Reference::parse(name).ok().and_then(|r| match &r.digest {
        Some(d) => Some(r.with_digest(d)),
        None => r.tagged(),
    });
    match normalised {
        Some(n) if record_names.contains(&n.as_str()) => n,
        _ => id.to_string(),
    }
}

/// Resolves an image name, id or digest present in this backend. Absent: NotFound.
pub(crate) async fn runnable(inner: &Inner, name: &str) -> Result<RunnableImage> {
    let mut groups: BTreeMap<String, Vec<_>> = BTreeMap::new();
    for record in records::list(&inner.daemon).await? {
        if let Some(id) = records::image_id(&record) {
            groups.entry(id.to_string()).or_default().push(record);
        }
    }
    let id = images::resolve(&groups, name)?
        .ok_or_else(|| Error::NotFound(format!("image {name:?} not found")))?;
    // crimux names an image by its config's digest, so the config is read directly.
    let bytes = match content::read(&inner.daemon, &id).await {
        Ok(bytes) => bytes,
        Err(e) if e.is_not_found() => {
            return Err(Error::NotFound(format!(
                "image {name:?} ({id}) has no config in the content store"
            )))
        }
        Err(e) => return Err(e),
    };
    let record_names: Vec<&str> = groups
        .get(&id)
        .map(|rs| rs.iter().map(|r| r.name.as_str()).collect())
        .unwrap_or_default();
    from_config(&id, display_name(name, &id, &record_names), &bytes)
}

fn from_config(id: &str, name: String, bytes: &[u8]) -> Result<RunnableImage> {
    let summary =
        crate::config::ImageConfig::parse(bytes).map_err(|e| e.context(format!("image {id}")))?;
    let full: oci_spec::image::ImageConfiguration = serde_json::from_slice(bytes)
        .map_err(|e| Error::InvalidArgument(format!("image {id} config: {e}")))?;
    let config = full
        .config()
        .as_ref()
        .map(ImageConfig::from)
        .unwrap_or_default();
    let chain_id = unpack::chain_ids(&summary.diff_ids)
        .pop()
        .ok_or_else(|| Error::FailedPrecondition(format!("image {id} has no layers")))?;
    Ok(RunnableImage {
        id: id.to_string(),
        name,
        config,
        chain_id,
        platform: summary.platform,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_config_and_top_chain() {
        let json = br#"{"os":"linux","architecture":"amd64",
            "config":{"User":"1000","Cmd":["sh"],"StopSignal":"SIGQUIT"},
            "rootfs":{"type":"layers","diff_ids":["sha256:a","sha256:b"]}}"#;
        let img = from_config("sha256:x", "n".into(), json).expect("config");
        assert_eq!(img.config.user, "1000");
        assert_eq!(img.config.cmd, ["sh"]);
        assert_eq!(img.config.stop_signal.as_deref(), Some("SIGQUIT"));
        assert_eq!(
            img.chain_id,
            unpack::chain_ids(&["sha256:a".into(), "sha256:b".into()])[1]
        );
        assert_eq!(img.platform.os, "linux");
        let none = br#"{"os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
        assert!(from_config("sha256:x", "n".into(), none).is_err());
    }

    #[test]
    fn display_names() {
        let names = ["docker.io/library/busybox:latest", "sha256:abcd"];
        assert_eq!(
            display_name("busybox", "sha256:abcd", &names),
            "docker.io/library/busybox:latest"
        );
        assert_eq!(
            display_name("sha256:abcd", "sha256:abcd", &names),
            "sha256:abcd"
        );
        assert_eq!(display_name("abc", "sha256:abcd", &names), "sha256:abcd");
    }
}
