//! The crimux config file (TOML) and its validation.
//!
//! Every table denies unknown keys, so a typo is an error naming the key rather than a
//! setting silently ignored. Parsing and validation are pure: tests feed strings and
//! never touch the machine.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crimux_core::{BackendRole, OsKind};

use crate::platform::pipe_name::PipeName;
use crate::platform::DEFAULTS;

pub const DEFAULT_CONFIG_PATH: &str = DEFAULTS.config_path;
pub const DEFAULT_LISTEN: &str = DEFAULTS.listen;
pub const DEFAULT_ROOT: &str = DEFAULTS.root;
pub const DEFAULT_SANDBOX_IMAGE: &str = "registry.k8s.io/pause:3.10";
pub const DEFAULT_REGISTRY_CONFIG_PATH: &str = DEFAULTS.registry_config_path;
pub const DEFAULT_CONTAINERD_ADDRESS: &str = DEFAULTS.containerd_address;
pub const DEFAULT_NAMESPACE: &str = "k8s.io";

#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Where kubelet reaches crimux: a unix socket path (`unix://` prefix allowed), or on
    /// Windows a named pipe (`npipe:////./pipe/crimux` or `\\.\pipe\crimux`).
    pub listen: String,
    /// crimux's own state directory.
    pub root: PathBuf,
    pub sandbox_image: String,
    pub registry: RegistryConfig,
    #[serde(rename = "backend")]
    pub backends: Vec<BackendConfig>,
    pub cni: CniConfig,
    pub streaming: StreamingConfig,
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RegistryConfig {
    /// containerd-style `hosts.toml` tree; a missing directory means no mirrors.
    pub config_path: PathBuf,
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackendConfig {
    pub name: String,
    /// What answers at `address`: a containerd, or another crimux (see [`BackendKind`]).
    #[serde(default)]
    pub kind: BackendKind,
    pub address: String,
    /// containerd namespace; unset means `k8s.io` (see [`BackendConfig::namespace`]).
    /// Only for kind = "containerd".
    #[serde(default)]
    pub namespace: Option<String>,
    /// Unset means primary when it is the only backend, delegate otherwise.
    #[serde(default)]
    pub role: Option<BackendRole>,
    #[serde(default)]
    pub os: Option<String>,
    #[serde(default)]
    pub arch: Option<String>,
    #[serde(default)]
    pub snapshotter: Option<String>,
    #[serde(default)]
    pub insecure: bool,
    #[serde(default)]
    pub tls: Option<TlsConfig>,
    #[serde(default)]
    pub runtime_handlers: Vec<RuntimeHandlerConfig>,
    /// How this backend's pods are networked; see [`PodNetwork`] (unset means `cni`).
    #[serde(default)]
    pub pod_network: Option<PodNetwork>,
    /// The node's address, reported as every pod's IP when `pod_network = "host"` (set it
    /// to kubelet's `--node-ip`). Required then, refused otherwise.
    #[serde(default)]
    pub node_ip: Option<IpAddr>,
    /// Host path prefixes and their names on the other crimux's side; only for
    /// kind = "cri".
    #[serde(default)]
    pub path_map: Vec<PathMapConfig>,
}

/// What a `[[backend]]` is.
///
/// A WSL2 distro's shim cannot see the Windows host, so the host-side work of its pods
/// (netns, CNI, pod files, logger, FIFOs) must happen in the distro: a Linux crimux runs
/// there, and the Windows crimux forwards CRI to it as a `cri` backend.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    /// A containerd daemon, driven through its native API.
    #[default]
    Containerd,
    /// Another crimux, reached over CRI; it owns its containerd, runtimes and networking.
    Cri,
}

/// `{ host = 'C:\', backend = '/mnt/c/' }`: a host path prefix (log directories, mount
/// sources) and what the same directory is called where the other crimux runs.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PathMapConfig {
    pub host: String,
    pub backend: String,
}

impl BackendConfig {
    /// The containerd namespace, default applied.
    pub fn namespace(&self) -> &str {
        self.namespace.as_deref().unwrap_or(DEFAULT_NAMESPACE)
    }

    /// How pods are networked, default applied.
    pub fn pod_network(&self) -> PodNetwork {
        self.pod_network.unwrap_or_default()
    }
}

/// Where a backend's pods get their network, and so which IP crimux reports for them.
///
/// A WSL2 delegate's CNI pods live on a bridge inside the distro, behind WSL's own network:
/// their CNI addresses are right only when the operator routes the pod CIDR to the distro
/// (`cni`). In WSL's mirrored networking mode the distro shares the node's addresses, and
/// `host` runs every pod in the distro's (= the node's) network and reports `node_ip`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PodNetwork {
    /// A network namespace per pod, attached with CNI; the pod IP is CNI's first address.
    #[default]
    Cni,
    /// Every pod shares the backend host's network namespace (as `hostNetwork` pods do):
    /// no namespace, no CNI; the pod IP is `node_ip`.
    Host,
}

#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    #[serde(default)]
    pub server_name: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuntimeHandlerConfig {
    pub name: String,
    /// containerd runtime type (`io.containerd.runc.v2`, ...); used when pods arrive.
    #[serde(default)]
    pub runtime_type: String,
    #[serde(default)]
    pub options: toml::Table,
    /// For kind = "cri": the handler this one is called on the other crimux (unset: its
    /// default handler, `""`).
    #[serde(default)]
    pub remote: Option<String>,
}

/// Accepted now, used when pod networking arrives.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CniConfig {
    pub conf_dir: PathBuf,
    pub bin_dirs: Vec<PathBuf>,
}

/// Accepted now, used when exec/attach/port-forward arrive.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StreamingConfig {
    pub address: String,
    pub port: u16,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: DEFAULT_LISTEN.into(),
            root: DEFAULT_ROOT.into(),
            sandbox_image: DEFAULT_SANDBOX_IMAGE.into(),
            registry: RegistryConfig::default(),
            backends: vec![BackendConfig {
                name: "default".into(),
                kind: BackendKind::Containerd,
                address: DEFAULT_CONTAINERD_ADDRESS.into(),
                namespace: None,
                role: None,
                os: None,
                arch: None,
                snapshotter: None,
                insecure: false,
                tls: None,
                runtime_handlers: Vec::new(),
                pod_network: None,
                node_ip: None,
                path_map: Vec::new(),
            }],
            cni: CniConfig::default(),
            streaming: StreamingConfig::default(),
        }
    }
}

impl Default for RegistryConfig {
    fn default() -> Self {
        RegistryConfig {
            config_path: DEFAULT_REGISTRY_CONFIG_PATH.into(),
        }
    }
}

impl Default for CniConfig {
    fn default() -> Self {
        CniConfig {
            conf_dir: DEFAULTS.cni_conf_dir.into(),
            bin_dirs: vec![DEFAULTS.cni_bin_dir.into()],
        }
    }
}

impl Default for StreamingConfig {
    fn default() -> Self {
        StreamingConfig {
            address: "127.0.0.1".into(),
            port: 0,
            tls_cert: None,
            tls_key: None,
        }
    }
}

/// A config problem, phrased for one line of stderr.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// Parses and validates a config file's text. `windows` says which platform's rules
    /// apply (named pipes are Windows-only).
    pub fn parse(text: &str, windows: bool) -> Result<Config, ConfigError> {
        let mut config: Config =
            toml::from_str(text).map_err(|e| ConfigError(toml_error(text, &e)))?;
        config.validate(windows)?;
        config.normalise_pipes();
        Ok(config)
    }

    /// Reads `path`. A missing file is an error unless `optional` (the default path).
    pub fn load(path: &Path, optional: bool) -> Result<Config, ConfigError> {
        let in_file = |msg: String| ConfigError(format!("config {}: {msg}", path.display()));
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if optional && e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Config::default());
            }
            Err(e) => return Err(in_file(format!("cannot read: {e}"))),
        };
        Config::parse(&text, cfg!(windows)).map_err(|e| in_file(e.0))
    }

    /// The role each backend plays, defaults applied.
    pub fn role_of(&self, backend: &BackendConfig) -> BackendRole {
        match backend.role {
            Some(role) => role,
            None if self.backends.len() == 1 => BackendRole::Primary,
            None => BackendRole::Delegate,
        }
    }

    /// Rewrites every valid `npipe://` backend address in the one form every consumer
    /// reads the same way (`npipe:////./pipe/<name>`).
    fn normalise_pipes(&mut self) {
        for b in &mut self.backends {
            if b.address.trim().starts_with("npipe://") {
                if let Ok(pipe) = PipeName::parse(&b.address) {
                    b.address = pipe.endpoint();
                }
            }
        }
    }

    pub fn validate(&self, windows: bool) -> Result<(), ConfigError> {
        let err = |m: String| Err(ConfigError(m));
        if self.listen.trim().is_empty() {
            return err("listen: must name a socket path".into());
        }
        check_listen(&self.listen, windows).map_err(|m| ConfigError(format!("listen: {m}")))?;
        if self.root.as_os_str().is_empty() {
            return err("root: must name a directory".into());
        }
        if self.backends.is_empty() {
            return err("backend: at least one [[backend]] is required".into());
        }
        let mut names: Vec<&str> = Vec::new();
        let mut handlers: Vec<(&str, &str)> = Vec::new();
        for b in &self.backends {
            let at = format!("backend {:?}", b.name);
            if b.name.trim().is_empty() {
                return err("backend: name must not be empty".into());
            }
            if names.contains(&b.name.as_str()) {
                return err(format!("{at}: name is used by two [[backend]] tables"));
            }
            names.push(&b.name);
            if b.namespace().trim().is_empty() {
                return err(format!("{at}: namespace must not be empty"));
            }
            check_address(b, windows).map_err(|m| ConfigError(format!("{at}: {m}")))?;
            check_kind(b).map_err(|m| ConfigError(format!("{at}: {m}")))?;
            if let Some(os) = &b.os {
                if let Err(e) = os.parse::<OsKind>() {
                    return err(format!("{at}: os: {e}"));
                }
            }
            if b.arch.as_deref().is_some_and(|a| a.trim().is_empty()) {
                return err(format!("{at}: arch must not be empty"));
            }
            if b.snapshotter
                .as_deref()
                .is_some_and(|s| s.trim().is_empty())
            {
                return err(format!("{at}: snapshotter must not be empty"));
            }
            for h in &b.runtime_handlers {
                if h.name.trim().is_empty() {
                    return err(format!("{at}: runtime_handlers: name must not be empty"));
                }
                if let Some((other, _)) = handlers.iter().find(|(_, n)| *n == h.name) {
                    return err(format!(
                        "{at}: runtime handler {:?} is already served by backend {other:?}",
                        h.name
                    ));
                }
                handlers.push((&b.name, &h.name));
            }
            match (b.pod_network(), b.node_ip) {
                (PodNetwork::Host, None) => {
                    return err(format!(
                        "{at}: pod_network = \"host\" needs node_ip (the node's address, as \
                         given to kubelet's --node-ip)"
                    ))
                }
                (PodNetwork::Cni, Some(_)) => {
                    return err(format!(
                        "{at}: node_ip is used only with pod_network = \"host\""
                    ))
                }
                (_, Some(ip)) if ip.is_unspecified() || ip.is_loopback() => {
                    return err(format!(
                        "{at}: node_ip {ip} is not an address other nodes can reach"
                    ))
                }
                _ => {}
            }
        }
        let primaries: Vec<&str> = self
            .backends
            .iter()
            .filter(|b| self.role_of(b) == BackendRole::Primary)
            .map(|b| b.name.as_str())
            .collect();
        if primaries.len() != 1 {
            return err(format!(
                "backend: exactly one backend must have role = \"primary\", found {} ({})",
                primaries.len(),
                primaries.join(", ")
            ));
        }
        if self.streaming.tls_cert.is_some() != self.streaming.tls_key.is_some() {
            return err("streaming: tls_cert and tls_key must be set together".into());
        }
        Ok(())
    }
}

/// What `kind` allows: a `cri` backend forwards to a crimux that owns its containerd,
/// runtimes and networking, so the keys about those are refused rather than ignored; a
/// `containerd` backend has no other side to map paths or handler names to.
fn check_kind(b: &BackendConfig) -> Result<(), String> {
    let cri = "kind = \"cri\"";
    if b.kind == BackendKind::Containerd {
        if !b.path_map.is_empty() {
            return Err(format!(
                "path_map is only for {cri} backends (a containerd backend shares crimux's paths)"
            ));
        }
        if let Some(h) = b.runtime_handlers.iter().find(|h| h.remote.is_some()) {
            return Err(format!(
                "runtime handler {:?}: remote is only for {cri} backends (use runtime_type)",
                h.name
            ));
        }
        return Ok(());
    }
    let owned = |key: &str| {
        Err(format!(
            "{key} is not for {cri} backends: set it in the config of the crimux this backend \
             forwards to"
        ))
    };
    if b.namespace.is_some() {
        return owned("namespace");
    }
    if b.snapshotter.is_some() {
        return owned("snapshotter");
    }
    if b.pod_network.is_some() {
        return owned("pod_network");
    }
    if b.node_ip.is_some() {
        return owned("node_ip");
    }
    if b.address.trim().starts_with("npipe://") {
        return Err(format!(
            "address {:?}: a {cri} backend is reached by unix:// or tcp://",
            b.address.trim()
        ));
    }
    for h in &b.runtime_handlers {
        if !h.runtime_type.is_empty() || !h.options.is_empty() {
            return Err(format!(
                "runtime handler {:?}: runtime_type and options are not for {cri} backends: \
                 the crimux it forwards to runs the handler; name it with remote = \"<handler>\"",
                h.name
            ));
        }
    }
    let mut hosts: Vec<&str> = Vec::new();
    for m in &b.path_map {
        let (host, backend) = (m.host.trim(), m.backend.trim());
        if host.is_empty() || backend.is_empty() {
            return Err("path_map: host and backend must not be empty".into());
        }
        if !is_absolute(host) || !is_absolute(backend) {
            return Err(format!(
                "path_map {host:?} = {backend:?}: both must be absolute paths (C:\\, /mnt/c/)"
            ));
        }
        if hosts.iter().any(|h| h.eq_ignore_ascii_case(host)) {
            return Err(format!("path_map: host {host:?} is mapped twice"));
        }
        hosts.push(host);
    }
    Ok(())
}

/// An absolute path on either side of a `path_map`: `/…`, a drive letter `C:\` / `C:/`, or
/// a UNC path `\\server\share`.
fn is_absolute(path: &str) -> bool {
    let b = path.as_bytes();
    let drive =
        b.len() >= 3 && b[0].is_ascii_alphabetic() && b[1] == b':' && matches!(b[2], b'\\' | b'/');
    path.starts_with('/') || path.starts_with("\\\\") || drive
}

/// Checks a backend's address: scheme, and that TCP is either TLS or loopback with
/// `insecure = true` (the containerd API is root on the node).
fn check_address(b: &BackendConfig, windows: bool) -> Result<(), String> {
    let address = b.address.trim();
    let bad = |why: &str| Err(format!("address {address:?}: {why}"));
    if let Some(path) = address.strip_prefix("unix://") {
        if path.is_empty() {
            return bad("empty socket path");
        }
        return Ok(());
    }
    if address.starts_with("npipe://") {
        if !windows {
            return bad("npipe:// addresses are only for Windows");
        }
        return PipeName::parse(address).map(|_| ());
    }
    let Some(rest) = address.strip_prefix("tcp://") else {
        return bad("scheme must be unix://, tcp:// or npipe://");
    };
    let Some((host, port)) = rest.trim_end_matches('/').rsplit_once(':') else {
        return bad("tcp:// needs host:port");
    };
    if port.parse::<u16>().is_err() {
        return bad("invalid port");
    }
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return bad("tcp:// needs a host");
    }
    if b.tls.is_some() {
        return Ok(());
    }
    let loopback = host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
    match (b.insecure, loopback) {
        (true, true) => Ok(()),
        (true, false) => {
            bad("insecure = true is allowed only for a loopback address; set [backend.tls]")
        }
        (false, _) => bad("tcp:// needs [backend.tls] (or insecure = true on a loopback address)"),
    }
}

/// `listen` is a named pipe on Windows and a unix socket path elsewhere.
fn check_listen(listen: &str, windows: bool) -> Result<(), String> {
    let is_pipe = PipeName::looks_like_pipe(listen);
    match (windows, is_pipe) {
        (true, true) => PipeName::parse(listen).map(|_| ()),
        (true, false) => Err(format!(
            "{listen:?}: on Windows crimux serves a named pipe (npipe:////./pipe/crimux)"
        )),
        (false, true) => Err(format!("{listen:?}: named pipes are only for Windows")),
        (false, false) => {
            let path = listen.strip_prefix("unix://").unwrap_or(listen);
            if path.is_empty() {
                Err(format!("{listen:?}: empty socket path"))
            } else {
                Ok(())
            }
        }
    }
}

/// One line from a TOML error: its message and the line it points at.
fn toml_error(text: &str, e: &toml::de::Error) -> String {
    let message = e.message().trim().replace('\n', " ");
    match e.span() {
        Some(span) => {
            let before = text.get(..span.start).unwrap_or(text);
            let line = before.matches('\n').count() + 1;
            format!("{message} at line {line}")
        }
        None => message,
    }
}

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;
