//! Loading the node's CNI network configuration the way libcni does.
//!
//! The files `*.conf`, `*.conflist` and `*.json` in the config directory are read in lexical
//! order and the first valid one wins. A single-plugin `.conf`/`.json` is wrapped into a list
//! of one plugin, so the rest of the crate only ever sees lists. Invalid files are skipped with
//! a warning (as kubelet's and CRI-O's loaders do), so one broken file does not take the node's
//! networking down while a valid one is present.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

/// File extensions libcni considers, in no particular order (files are sorted by name).
const EXTENSIONS: [&str; 3] = ["conf", "conflist", "json"];

/// The spec's default when a config names no version (libcni treats it as 0.1.0).
const DEFAULT_CNI_VERSION: &str = "0.1.0";

/// Why no network config is usable; a reason for `NetworkReady=false`, not a crimux bug.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// No file in the directory holds a valid network config.
    #[error("no valid CNI network config found in {}{}", dir.display(), skipped_note(skipped))]
    NoConfig {
        dir: PathBuf,
        /// `file: reason` for every candidate that was skipped.
        skipped: Vec<String>,
    },
    /// The chosen config names a plugin that none of the bin dirs holds.
    #[error("CNI plugin {plugin:?} not found in any of [{}]", join_paths(searched))]
    MissingPlugin {
        plugin: String,
        searched: Vec<PathBuf>,
    },
    /// The bytes are not a valid network config (list).
    #[error("invalid CNI network config: {0}")]
    Invalid(String),
}

fn skipped_note(skipped: &[String]) -> String {
    if skipped.is_empty() {
        String::new()
    } else {
        format!(" (skipped: {})", skipped.join("; "))
    }
}

pub(crate) fn join_paths(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

impl From<ConfigError> for crimux_core::Error {
    fn from(e: ConfigError) -> Self {
        crimux_core::Error::FailedPrecondition(e.to_string())
    }
}

/// A network config list: what every ADD/DEL runs through, plugin by plugin.
#[derive(Clone, Debug, PartialEq)]
pub struct NetworkConfigList {
    pub name: String,
    pub cni_version: String,
    /// Each plugin's own config object; every one has a string `type`.
    pub plugins: Vec<Value>,
    /// The whole list as JSON (for a `.conf`, the list it was wrapped into). Cached with each
    /// attachment so DEL runs the exact config ADD ran.
    pub raw: Value,
    /// The file it came from, if any (none when it comes from the attachment cache).
    pub source: Option<PathBuf>,
}

impl NetworkConfigList {
    /// Parses a `.conflist` document.
    pub fn from_conflist(bytes: &[u8]) -> Result<Self, ConfigError> {
        let raw: Value = serde_json::from_slice(bytes)
            .map_err(|e| ConfigError::Invalid(format!("not JSON: {e}")))?;
        Self::from_value(raw)
    }

    /// Parses a single-plugin `.conf` document and wraps it into a list, as libcni does.
    pub fn from_conf(bytes: &[u8]) -> Result<Self, ConfigError> {
        let conf: Value = serde_json::from_slice(bytes)
            .map_err(|e| ConfigError::Invalid(format!("not JSON: {e}")))?;
        let obj = conf
            .as_object()
            .ok_or_else(|| ConfigError::Invalid("not a JSON object".into()))?;
        plugin_type(&conf)?;
        let mut list = Map::new();
        if let Some(v) = obj.get("cniVersion") {
            list.insert("cniVersion".into(), v.clone());
        }
        if let Some(v) = obj.get("name") {
            list.insert("name".into(), v.clone());
        }
        list.insert("plugins".into(), Value::Array(vec![conf.clone()]));
        Self::from_value(Value::Object(list))
    }

    /// Validates a list already in JSON form (a conflist, or one read back from the cache).
    pub fn from_value(raw: Value) -> Result<Self, ConfigError> {
        let obj = raw
            .as_object()
            .ok_or_else(|| ConfigError::Invalid("not a JSON object".into()))?;
        let name = match obj.get("name") {
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            _ => return Err(ConfigError::Invalid("missing network \"name\"".into())),
        };
        let cni_version = match obj.get("cniVersion") {
            None | Some(Value::Null) => DEFAULT_CNI_VERSION.to_string(),
            Some(Value::String(s)) if parse_version(s).is_some() => s.clone(),
            Some(v) => return Err(ConfigError::Invalid(format!("bad \"cniVersion\" {v}"))),
        };
        let plugins = match obj.get("plugins") {
            Some(Value::Array(p)) if !p.is_empty() => p.clone(),
            Some(Value::Array(_)) => {
                return Err(ConfigError::Invalid(format!(
                    "network {name:?} has no plugins"
                )))
            }
            _ => return Err(ConfigError::Invalid("missing \"plugins\" list".into())),
        };
        for plugin in &plugins {
            plugin_type(plugin)?;
        }
        Ok(NetworkConfigList {
            name,
            cni_version,
            plugins,
            raw,
            source: None,
        })
    }

    /// The `type` of each plugin, in order.
    pub fn plugin_types(&self) -> Vec<&str> {
        self.plugins
            .iter()
            .filter_map(|p| p.get("type").and_then(Value::as_str))
            .collect()
    }
}

/// A plugin's `type`: the executable's file name, so no path separators.
pub(crate) fn plugin_type(plugin: &Value) -> Result<&str, ConfigError> {
    match plugin.get("type") {
        Some(Value::String(t))
            if !t.is_empty() && !t.contains(['/', '\\']) && t != "." && t != ".." =>
        {
            Ok(t)
        }
        Some(Value::String(t)) => Err(ConfigError::Invalid(format!("bad plugin type {t:?}"))),
        _ => Err(ConfigError::Invalid("plugin without a \"type\"".into())),
    }
}

/// `"1.0.0"` → `(1, 0, 0)`; missing parts count as 0.
pub(crate) fn parse_version(v: &str) -> Option<(u32, u32, u32)> {
    let mut parts = v.split('.').map(|p| p.parse::<u32>());
    let major = parts.next()?.ok()?;
    let minor = parts.next().unwrap_or(Ok(0)).ok()?;
    let patch = parts.next().unwrap_or(Ok(0)).ok()?;
    if parts.next().is_some() {
        return None;
    }
    Some((major, minor, patch))
}

/// The candidate files in `dir`, sorted by name.
fn candidate_files(dir: &Path) -> Result<Vec<PathBuf>, ConfigError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            return Err(ConfigError::NoConfig {
                dir: dir.to_path_buf(),
                skipped: vec![format!("cannot read directory: {e}")],
            })
        }
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .filter(|p| {
            p.extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| EXTENSIONS.contains(&e))
        })
        .collect();
    files.sort();
    Ok(files)
}

/// Loads the first valid network config list from `dir`.
pub fn load_dir(dir: &Path) -> Result<NetworkConfigList, ConfigError> {
    let mut skipped = Vec::new();
    for file in candidate_files(dir)? {
        let parsed = std::fs::read(&file)
            .map_err(|e| ConfigError::Invalid(format!("cannot read: {e}")))
            .and_then(|bytes| {
                if file.extension().is_some_and(|e| e == "conflist") {
                    NetworkConfigList::from_conflist(&bytes)
                } else {
                    NetworkConfigList::from_conf(&bytes)
                }
            });
        match parsed {
            Ok(mut list) => {
                tracing::debug!(file = %file.display(), network = %list.name, "using CNI config");
                list.source = Some(file);
                return Ok(list);
            }
            Err(e) => {
                tracing::warn!(file = %file.display(), error = %e, "skipping CNI config file");
                skipped.push(format!("{}: {e}", file.display()));
            }
        }
    }
    Err(ConfigError::NoConfig {
        dir: dir.to_path_buf(),
        skipped,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const BRIDGE_LIST: &str = r#"{"cniVersion":"1.0.0","name":"list","plugins":[{"type":"bridge"},{"type":"portmap","capabilities":{"portMappings":true}}]}"#;
    const BRIDGE_CONF: &str =
        r#"{"cniVersion":"0.4.0","name":"single","type":"bridge","bridge":"cni0"}"#;

    /// Writes `files` into a fresh dir and loads it.
    fn load(files: &[(&str, &str)]) -> (tempfile::TempDir, Result<NetworkConfigList, ConfigError>) {
        let dir = tempfile::tempdir().unwrap();
        for (name, body) in files {
            std::fs::write(dir.path().join(name), body).unwrap();
        }
        let res = load_dir(dir.path());
        (dir, res)
    }

    #[test]
    fn loading_follows_libcni_rules() {
        // (files, expected network name, expected plugin types)
        type Case<'a> = (Vec<(&'a str, &'a str)>, &'a str, Vec<&'a str>);
        let cases: Vec<Case> = vec![
            (
                vec![("10-a.conflist", BRIDGE_LIST)],
                "list",
                vec!["bridge", "portmap"],
            ),
            (vec![("10-a.conf", BRIDGE_CONF)], "single", vec!["bridge"]),
            (vec![("10-a.json", BRIDGE_CONF)], "single", vec!["bridge"]),
            // Lexical order: "05" sorts before "10".
            (
                vec![("10-a.conflist", BRIDGE_LIST), ("05-b.conf", BRIDGE_CONF)],
                "single",
                vec!["bridge"],
            ),
            // Invalid files are skipped: bad JSON, missing type, empty plugins, bad type.
            (
                vec![
                    ("01-bad.conflist", "{not json"),
                    ("02-notype.conf", r#"{"cniVersion":"1.0.0","name":"x"}"#),
                    (
                        "03-empty.conflist",
                        r#"{"cniVersion":"1.0.0","name":"x","plugins":[]}"#,
                    ),
                    (
                        "04-path.conflist",
                        r#"{"name":"x","plugins":[{"type":"../../bin/sh"}]}"#,
                    ),
                    ("05-noname.conflist", r#"{"plugins":[{"type":"bridge"}]}"#),
                    ("06-list-as-conf.conf", BRIDGE_LIST),
                    ("10-good.conflist", BRIDGE_LIST),
                ],
                "list",
                vec!["bridge", "portmap"],
            ),
            // Other extensions are ignored even when they sort first.
            (
                vec![("00-a.txt", BRIDGE_CONF), ("99-z.conflist", BRIDGE_LIST)],
                "list",
                vec!["bridge", "portmap"],
            ),
        ];
        for (files, name, types) in cases {
            let (_dir, res) = load(&files);
            let list = res.unwrap_or_else(|e| panic!("{files:?}: {e}"));
            assert_eq!(list.name, name, "{files:?}");
            assert_eq!(list.plugin_types(), types, "{files:?}");
            assert!(list.source.is_some());
        }
    }

    #[test]
    fn conf_is_wrapped_into_a_list() {
        let list = NetworkConfigList::from_conf(BRIDGE_CONF.as_bytes()).unwrap();
        assert_eq!(list.cni_version, "0.4.0");
        assert_eq!(list.raw["name"], "single");
        assert_eq!(list.raw["plugins"][0]["bridge"], "cni0");
        // Round trip through the cached form.
        let again = NetworkConfigList::from_value(list.raw.clone()).unwrap();
        assert_eq!(again.plugins, list.plugins);
    }

    #[test]
    fn missing_version_defaults_to_0_1_0() {
        let list = NetworkConfigList::from_conf(br#"{"name":"n","type":"bridge"}"#).unwrap();
        assert_eq!(list.cni_version, "0.1.0");
    }

    #[test]
    fn none_valid_is_no_config() {
        for files in [
            vec![],
            vec![("01-bad.conf", "{")],
            vec![("a.txt", BRIDGE_CONF)],
        ] {
            let (_dir, res) = load(&files);
            match res {
                Err(ConfigError::NoConfig { skipped, .. }) => {
                    assert_eq!(
                        skipped.len(),
                        files.iter().filter(|f| f.0.ends_with(".conf")).count()
                    )
                }
                other => panic!("{files:?}: {other:?}"),
            }
        }
        let missing = load_dir(Path::new("/nonexistent/crimux/cni"));
        assert!(matches!(missing, Err(ConfigError::NoConfig { .. })));
        let err: crimux_core::Error = missing.unwrap_err().into();
        assert!(
            matches!(err, crimux_core::Error::FailedPrecondition(_)),
            "{err:?}"
        );
    }

    #[test]
    fn versions_parse() {
        assert_eq!(parse_version("1.0.0"), Some((1, 0, 0)));
        assert_eq!(parse_version("0.4"), Some((0, 4, 0)));
        assert_eq!(parse_version("x"), None);
        assert_eq!(parse_version("1.0.0.0"), None);
    }
}
