//! Registry hosts from containerd's `hosts.toml` layout, so mirror configuration written for
//! containerd's CRI plugin keeps working under crimux.
//!
//! `<config_path>/<host[:port]>/hosts.toml` configures one registry, and
//! `<config_path>/_default/hosts.toml` every registry without its own directory. The
//! `[host."<url>"]` tables are mirrors, tried in file order; the top-level `server` (default
//! `https://<host>`, `https://registry-1.docker.io` for docker.io) comes last. Files are read
//! on every lookup, as containerd does, so edits apply to the next pull.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use crimux_core::{Error, Result};
use serde::Deserialize;

const HOSTS_FILE: &str = "hosts.toml";
const DEFAULT_DIR: &str = "_default";
const DOCKER_HUB_SERVER: &str = "https://registry-1.docker.io";

/// What a host may be used for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Capabilities {
    pub pull: bool,
    pub resolve: bool,
    pub push: bool,
}

impl Capabilities {
    pub const ALL: Capabilities = Capabilities {
        pull: true,
        resolve: true,
        push: true,
    };
    /// What a `[host]` entry gets when it names none.
    pub const MIRROR_DEFAULT: Capabilities = Capabilities {
        pull: true,
        resolve: true,
        push: false,
    };
}

/// A client certificate: the certificate file and its key (`None`: the key is in the same file).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientCert {
    pub cert: PathBuf,
    pub key: Option<PathBuf>,
}

/// One endpoint to try for a registry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegistryHost {
    /// The API root, normally ending in `/v2`.
    pub url: url::Url,
    pub capabilities: Capabilities,
    pub skip_verify: bool,
    /// Extra CA certificates (PEM) to trust.
    pub ca: Vec<PathBuf>,
    pub client: Vec<ClientCert>,
    pub headers: Vec<(String, String)>,
    /// The URL's path was taken as is, without `/v2` appended.
    pub override_path: bool,
    /// Retry over plain http when https cannot connect (local registries without TLS).
    pub http_fallback: bool,
}

/// Where `hosts.toml` files live; `None` means no configuration at all.
#[derive(Clone, Debug, Default)]
pub struct HostsConfig {
    dir: Option<PathBuf>,
}

impl HostsConfig {
    /// Uses `dir` as containerd's `config_path`, checking every `hosts.toml` in it now so a
    /// typo shows at startup. A missing directory means no configuration.
    pub fn load(dir: Option<&Path>) -> Result<HostsConfig> {
        let config = HostsConfig {
            dir: dir.map(Path::to_path_buf),
        };
        if let Some(dir) = dir.filter(|d| d.is_dir()) {
            let entries = std::fs::read_dir(dir).map_err(|e| {
                Error::InvalidArgument(format!(
                    "reading registry config dir {}: {e}",
                    dir.display()
                ))
            })?;
            for entry in entries.flatten() {
                let file = entry.path().join(HOSTS_FILE);
                if file.is_file() {
                    read_hosts_file(&file)?;
                }
            }
        }
        Ok(config)
    }

    /// The hosts to try for `domain` (a reference's registry, `host[:port]`), in order.
    pub fn hosts_for(&self, domain: &str) -> Result<Vec<RegistryHost>> {
        let found = self.dir.as_deref().and_then(|dir| {
            [domain, DEFAULT_DIR]
                .iter()
                .map(|d| dir.join(d).join(HOSTS_FILE))
                .find(|f| f.is_file())
        });
        let Some(file) = found else {
            return Ok(vec![default_server(domain)?]);
        };
        let parsed = read_hosts_file(&file)?;
        let base = file.parent().unwrap_or(Path::new("/"));
        let bad = |e: String| Error::InvalidArgument(format!("{}: {e}", file.display()));
        let mut hosts = Vec::new();
        for (raw, entry) in &parsed.hosts {
            hosts.push(
                entry
                    .to_host(raw, base, Capabilities::MIRROR_DEFAULT)
                    .map_err(bad)?,
            );
        }
        let server = match &parsed.top.server {
            Some(server) => parsed
                .top
                .to_host(server, base, Capabilities::ALL)
                .map_err(bad)?,
            None => {
                let mut server = default_server(domain)?;
                let configured = parsed
                    .top
                    .to_host(server.url.as_str(), base, Capabilities::ALL)
                    .map_err(bad)?;
                server.capabilities = configured.capabilities;
                server.skip_verify = configured.skip_verify;
                server.ca = configured.ca;
                server.client = configured.client;
                server.headers = configured.headers;
                server
            }
        };
        hosts.push(server);
        Ok(hosts)
    }
}

/// `https://<domain>/v2` (registry-1.docker.io for docker.io), with an http fallback for
/// loopback registries.
fn default_server(domain: &str) -> Result<RegistryHost> {
    let raw = if domain == crate::reference::DOCKER_HUB {
        DOCKER_HUB_SERVER.to_string()
    } else {
        format!("https://{domain}")
    };
    let mut url = url::Url::parse(&raw).map_err(|e| {
        Error::InvalidArgument(format!(
            "registry host {domain:?} is not a valid URL host: {e}"
        ))
    })?;
    url.set_path("/v2");
    Ok(RegistryHost {
        url,
        capabilities: Capabilities::ALL,
        skip_verify: false,
        ca: Vec::new(),
        client: Vec::new(),
        headers: Vec::new(),
        override_path: false,
        http_fallback: is_localhost(domain),
    })
}

/// `localhost`, `127.0.0.0/8` or `::1`, with or without a port.
pub fn is_localhost(domain: &str) -> bool {
    let host = match domain.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => domain.rsplit_once(':').map_or(domain, |(h, _)| h),
    };
    host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[derive(Debug)]
struct HostsFile {
    top: HostEntry,
    hosts: Vec<(String, HostEntry)>,
}

/// The keys of the top level and of each `[host."<url>"]` table.
#[derive(Debug, Default, Deserialize)]
struct HostEntry {
    server: Option<String>,
    capabilities: Option<Vec<String>>,
    skip_verify: Option<bool>,
    ca: Option<OneOrMany>,
    client: Option<ClientSpec>,
    header: Option<toml::Table>,
    override_path: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    fn into_vec(self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s],
            OneOrMany::Many(v) => v,
        }
    }
}

/// `client = "cert.pem"`, `client = ["a.pem", "b.pem"]` or `client = [["cert", "key"], ...]`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum ClientSpec {
    One(String),
    Many(Vec<OneOrMany>),
}

fn read_hosts_file(file: &Path) -> Result<HostsFile> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| Error::InvalidArgument(format!("reading {}: {e}", file.display())))?;
    parse_hosts_file(&text)
        .map_err(|e| Error::InvalidArgument(format!("malformed {}: {e}", file.display())))
}

fn parse_hosts_file(text: &str) -> std::result::Result<HostsFile, String> {
    let mut table: toml::Table = text.parse().map_err(|e: toml::de::Error| e.to_string())?;
    let host_tables = match table.remove("host") {
        None => toml::Table::new(),
        Some(toml::Value::Table(t)) => t,
        Some(_) => return Err("`host` must be a table of [host.\"<url>\"] sections".into()),
    };
    let top: HostEntry = toml::Value::Table(table)
        .try_into()
        .map_err(|e: toml::de::Error| e.to_string())?;
    let mut hosts = Vec::new();
    for (url, value) in host_tables {
        let entry: HostEntry = value
            .try_into()
            .map_err(|e: toml::de::Error| format!("[host.{url:?}]: {e}"))?;
        hosts.push((url, entry));
    }
    Ok(HostsFile { top, hosts })
}

impl HostEntry {
    fn to_host(
        &self,
        raw: &str,
        base: &Path,
        default_caps: Capabilities,
    ) -> std::result::Result<RegistryHost, String> {
        let with_scheme = if raw.contains("://") {
            raw.to_string()
        } else {
            format!("https://{raw}")
        };
        let mut url =
            url::Url::parse(&with_scheme).map_err(|e| format!("invalid host URL {raw:?}: {e}"))?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err(format!("invalid host URL {raw:?}: need http(s)://host"));
        }
        let override_path = self.override_path.unwrap_or(false);
        if !override_path {
            let path = url.path().trim_end_matches('/').to_string();
            if !path.ends_with("/v2") {
                url.set_path(&format!("{path}/v2"));
            }
        }
        let capabilities = match &self.capabilities {
            None => default_caps,
            Some(names) => {
                let mut caps = Capabilities::default();
                for name in names {
                    match name.as_str() {
                        "pull" => caps.pull = true,
                        "resolve" => caps.resolve = true,
                        "push" => caps.push = true,
                        other => return Err(format!("unknown capability {other:?} for {raw:?}")),
                    }
                }
                caps
            }
        };
        let abs = |p: &str| {
            let p = PathBuf::from(p);
            if p.is_absolute() {
                p
            } else {
                base.join(p)
            }
        };
        let ca = self.ca.as_ref().map(|c| match c {
            OneOrMany::One(s) => vec![abs(s)],
            OneOrMany::Many(v) => v.iter().map(|s| abs(s)).collect(),
        });
        let mut client = Vec::new();
        match &self.client {
            None => {}
            Some(ClientSpec::One(c)) => client.push(ClientCert {
                cert: abs(c),
                key: None,
            }),
            Some(ClientSpec::Many(items)) => {
                for item in items {
                    match item {
                        OneOrMany::One(c) => client.push(ClientCert {
                            cert: abs(c),
                            key: None,
                        }),
                        OneOrMany::Many(pair) => match pair.as_slice() {
                            [c] => client.push(ClientCert {
                                cert: abs(c),
                                key: None,
                            }),
                            [c, k] => client.push(ClientCert {
                                cert: abs(c),
                                key: Some(abs(k)),
                            }),
                            _ => return Err(format!("client for {raw:?}: want [cert, key] pairs")),
                        },
                    }
                }
            }
        }
        let mut headers = Vec::new();
        for (name, value) in self.header.iter().flatten() {
            let values: OneOrMany = value.clone().try_into().map_err(|_| {
                format!("header {name:?} for {raw:?} must be a string or list of strings")
            })?;
            for v in values.into_vec() {
                headers.push((name.clone(), v));
            }
        }
        Ok(RegistryHost {
            url,
            capabilities,
            skip_verify: self.skip_verify.unwrap_or(false),
            ca: ca.unwrap_or_default(),
            client,
            headers,
            override_path,
            http_fallback: false,
        })
    }
}

#[cfg(test)]
#[path = "hosts_tests.rs"]
mod tests;
