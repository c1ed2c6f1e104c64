//! The parts of an image's config that a runtime spec uses.

use std::collections::BTreeMap;

/// An image's runtime defaults, as `oci_spec::image::Config` carries them, with absent
/// fields made empty.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImageConfig {
    pub env: Vec<String>,
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub working_dir: String,
    /// `uid`, `uid:gid`, `name`, `name:group`, or empty.
    pub user: String,
    pub stop_signal: Option<String>,
    pub volumes: Vec<String>,
    pub labels: BTreeMap<String, String>,
}

impl From<&oci_spec::image::Config> for ImageConfig {
    fn from(c: &oci_spec::image::Config) -> Self {
        let mut volumes = c.volumes().clone().unwrap_or_default();
        volumes.sort();
        ImageConfig {
            env: c.env().clone().unwrap_or_default(),
            entrypoint: c.entrypoint().clone().unwrap_or_default(),
            cmd: c.cmd().clone().unwrap_or_default(),
            working_dir: c.working_dir().clone().unwrap_or_default(),
            user: c.user().clone().unwrap_or_default(),
            stop_signal: c.stop_signal().clone(),
            volumes,
            labels: c.labels().clone().unwrap_or_default().into_iter().collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_oci_config_fills_every_field() {
        let json = r#"{"User":"app:staff","Env":["A=1"],"Entrypoint":["/ep"],"Cmd":["x"],
            "WorkingDir":"/w","StopSignal":"SIGQUIT","Volumes":{"/b":{},"/a":{}},
            "Labels":{"k":"v"}}"#;
        let c: oci_spec::image::Config = serde_json::from_str(json).unwrap();
        let ic = ImageConfig::from(&c);
        assert_eq!(ic.user, "app:staff");
        assert_eq!(ic.env, ["A=1"]);
        assert_eq!(ic.entrypoint, ["/ep"]);
        assert_eq!(ic.cmd, ["x"]);
        assert_eq!(ic.working_dir, "/w");
        assert_eq!(ic.stop_signal.as_deref(), Some("SIGQUIT"));
        assert_eq!(ic.volumes, ["/a", "/b"]);
        assert_eq!(ic.labels["k"], "v");
        assert_eq!(
            ImageConfig::from(&oci_spec::image::Config::default()),
            ImageConfig::default()
        );
    }
}
