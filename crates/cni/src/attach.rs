//! Running a whole network config list: ADD plugin by plugin with `prevResult` chaining and
//! rollback, DEL in reverse with the cached result, CHECK in order.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crimux_core::{Error, Result};
use serde_json::{Map, Value};

use crate::cache::{self, Entry};
use crate::config::{self, parse_version, plugin_type, ConfigError, NetworkConfigList};
use crate::exec::{self, Command, Invocation};
use crate::{AttachRequest, AttachResult, NetNs};

/// Where and how to run plugins; borrowed from [`crate::Cni`].
pub(crate) struct Runner<'a> {
    pub conf_dir: &'a Path,
    pub bin_dirs: &'a [PathBuf],
    pub cache_dir: &'a Path,
    pub timeout: Duration,
}

/// The spec's first version with CHECK and with `prevResult` on DEL.
const V0_4_0: (u32, u32, u32) = (0, 4, 0);

impl Runner<'_> {
    async fn load_config(&self) -> Result<NetworkConfigList, ConfigError> {
        let dir = self.conf_dir.to_path_buf();
        tokio::task::spawn_blocking(move || config::load_dir(&dir))
            .await
            .unwrap_or_else(|e| Err(ConfigError::Invalid(format!("config loader: {e}"))))
    }

    pub async fn add(&self, req: &AttachRequest) -> Result<AttachResult> {
        let id = req.container_id.as_str();
        cache::check_id(id)?;
        NetNs::open(&req.netns).map_err(|e| e.context("CNI ADD"))?;
        if let Some(old) = cache::load(self.cache_dir, id).await? {
            if old.result.is_some() {
                return Err(Error::AlreadyExists(format!(
                    "pod sandbox {id} is already attached to network {}; tear it down first",
                    old.config
                        .get("name")
                        .and_then(Value::as_str)
                        .unwrap_or("?")
                )));
            }
            // A crimux crash in the middle of an earlier ADD: undo it with its own config.
            tracing::warn!(container_id = id, "cleaning up an interrupted CNI ADD");
            self.teardown_entry(req, old).await?;
        }
        let list = self.load_config().await?;
        // Fail before running anything when a plugin is missing, so nothing needs undoing.
        for ty in list.plugin_types() {
            if exec::find_plugin(self.bin_dirs, ty).is_none() {
                return Err(ConfigError::MissingPlugin {
                    plugin: ty.to_string(),
                    searched: self.bin_dirs.to_vec(),
                }
                .into());
            }
        }
        let mut entry = Entry::new(
            id,
            &req.ifname,
            &req.netns,
            &cni_args(req)?,
            capability_args(req)?,
            list.raw.clone(),
        );
        cache::store(self.cache_dir, &entry).await?;
        let netns = req.netns.to_string_lossy();
        let inv = self.invocation(Command::Add, id, &netns, &entry);
        match self.add_all(&list, &inv, &entry.capability_args).await {
            Ok(result) => {
                let parsed = AttachResult::parse(result.clone(), &req.ifname);
                if let Ok(parsed) = parsed {
                    entry.result = Some(result);
                    cache::store(self.cache_dir, &entry).await?;
                    tracing::info!(container_id = id, network = %list.name,
                        ip = ?parsed.primary_ip(), "attached pod to CNI network");
                    return Ok(parsed);
                }
                self.rollback(&list, &entry).await;
                parsed
            }
            Err(e) => {
                self.rollback(&list, &entry).await;
                Err(e)
            }
        }
    }

    async fn add_all(
        &self,
        list: &NetworkConfigList,
        inv: &Invocation<'_>,
        caps: &Map<String, Value>,
    ) -> Result<Value> {
        let mut prev: Option<Value> = None;
        for plugin in &list.plugins {
            let ty = plugin_type(plugin)?;
            let conf = plugin_config(list, plugin, prev.as_ref(), caps)?;
            let out = exec::run(inv, ty, &conf).await?;
            prev = Some(out.ok_or_else(|| {
                Error::Internal(format!("CNI plugin {ty} ADD printed no result"))
            })?);
        }
        prev.ok_or_else(|| Error::Internal(format!("network {} has no plugins", list.name)))
    }

    /// After a failed ADD, DELs the whole list in reverse (the spec's advice), best effort:
    /// one plugin's failure does not stop the others. Forgets the pod only if all succeeded;
    /// otherwise the cache entry lets a later `teardown` retry.
    async fn rollback(&self, list: &NetworkConfigList, entry: &Entry) {
        let netns = entry.netns.to_string_lossy();
        let inv = self.invocation(Command::Del, &entry.container_id, &netns, entry);
        let mut clean = true;
        for plugin in list.plugins.iter().rev() {
            let res = match plugin_type(plugin) {
                Ok(ty) => match plugin_config(list, plugin, None, &entry.capability_args) {
                    Ok(conf) => exec::run(&inv, ty, &conf).await.map(|_| ()),
                    Err(e) => Err(e),
                },
                Err(e) => Err(e.into()),
            };
            if let Err(e) = res {
                clean = false;
                tracing::warn!(container_id = %entry.container_id, error = %e,
                    "CNI DEL after a failed ADD failed");
            }
        }
        if !clean {
            return;
        }
        if let Err(e) = cache::delete(self.cache_dir, &entry.container_id).await {
            tracing::warn!(container_id = %entry.container_id, error = %e, "CNI cache");
        }
    }

    pub async fn teardown(&self, req: &AttachRequest) -> Result<()> {
        let id = req.container_id.as_str();
        cache::check_id(id)?;
        let entry = match cache::load(self.cache_dir, id).await? {
            Some(entry) => entry,
            // Not attached by this crimux (or already detached): DEL with today's config, as
            // libcni does, so pods attached by older runtimes are still cleaned up.
            None => match self.load_config().await {
                Ok(list) => Entry::new(
                    id,
                    &req.ifname,
                    &req.netns,
                    &cni_args(req)?,
                    capability_args(req)?,
                    list.raw,
                ),
                Err(ConfigError::NoConfig { .. }) => {
                    tracing::warn!(
                        container_id = id,
                        "no CNI cache and no CNI config: nothing to DEL"
                    );
                    return Ok(());
                }
                Err(e) => return Err(e.into()),
            },
        };
        self.teardown_entry(req, entry).await
    }

    async fn teardown_entry(&self, req: &AttachRequest, entry: Entry) -> Result<()> {
        let list = NetworkConfigList::from_value(entry.config.clone())
            .map_err(|e| Error::Internal(format!("cached CNI config: {e}")))?;
        // The spec allows DEL without a namespace; plugins then clean up what they can.
        let netns_path = if req.netns.as_os_str().is_empty() {
            &entry.netns
        } else {
            &req.netns
        };
        let netns = match NetNs::open(netns_path) {
            Ok(_) => netns_path.to_string_lossy().into_owned(),
            Err(_) => String::new(),
        };
        let inv = self.invocation(Command::Del, &entry.container_id, &netns, &entry);
        let prev = entry
            .result
            .as_ref()
            .filter(|_| version_at_least(&list, V0_4_0));
        self.del_all(&list, &inv, prev, &entry.capability_args)
            .await?;
        cache::delete(self.cache_dir, &entry.container_id).await?;
        tracing::info!(container_id = %entry.container_id, network = %list.name,
            "detached pod from CNI network");
        Ok(())
    }

    async fn del_all(
        &self,
        list: &NetworkConfigList,
        inv: &Invocation<'_>,
        prev: Option<&Value>,
        caps: &Map<String, Value>,
    ) -> Result<()> {
        for plugin in list.plugins.iter().rev() {
            let ty = plugin_type(plugin)?;
            let conf = plugin_config(list, plugin, prev, caps)?;
            exec::run(inv, ty, &conf).await?;
        }
        Ok(())
    }

    pub async fn check(&self, req: &AttachRequest) -> Result<()> {
        let id = req.container_id.as_str();
        cache::check_id(id)?;
        let entry = cache::load(self.cache_dir, id).await?;
        let Some((entry, result)) = entry.and_then(|e| e.result.clone().map(|r| (e, r))) else {
            return Err(Error::NotFound(format!(
                "pod sandbox {id} is not attached to a CNI network"
            )));
        };
        let list = NetworkConfigList::from_value(entry.config.clone())
            .map_err(|e| Error::Internal(format!("cached CNI config: {e}")))?;
        if !version_at_least(&list, V0_4_0) {
            return Ok(());
        }
        NetNs::open(&entry.netns).map_err(|e| e.context("CNI CHECK"))?;
        let netns = entry.netns.to_string_lossy();
        let inv = self.invocation(Command::Check, id, &netns, &entry);
        for plugin in &list.plugins {
            let ty = plugin_type(plugin)?;
            let conf = plugin_config(&list, plugin, Some(&result), &entry.capability_args)?;
            exec::run(&inv, ty, &conf).await?;
        }
        Ok(())
    }

    fn invocation<'b>(
        &'b self,
        command: Command,
        id: &'b str,
        netns: &'b str,
        entry: &'b Entry,
    ) -> Invocation<'b> {
        Invocation {
            command,
            container_id: id,
            netns,
            ifname: &entry.ifname,
            args: &entry.cni_args,
            bin_dirs: self.bin_dirs,
            timeout: self.timeout,
        }
    }
}

fn version_at_least(list: &NetworkConfigList, min: (u32, u32, u32)) -> bool {
    parse_version(&list.cni_version).is_some_and(|v| v >= min)
}

/// `CNI_ARGS` as containerd and CRI-O pass them; `IgnoreUnknown` lets plugins that do not
/// know the K8S_* keys accept them.
pub(crate) fn cni_args(req: &AttachRequest) -> Result<String> {
    let pairs = [
        ("K8S_POD_NAMESPACE", req.pod.namespace.as_str()),
        ("K8S_POD_NAME", req.pod.name.as_str()),
        ("K8S_POD_INFRA_CONTAINER_ID", req.container_id.as_str()),
        ("K8S_POD_UID", req.pod.uid.as_str()),
    ];
    let mut out = String::from("IgnoreUnknown=1");
    for (k, v) in pairs {
        if v.contains([';', '=']) {
            return Err(Error::InvalidArgument(format!(
                "{k} {v:?} contains ';' or '='"
            )));
        }
        out.push_str(&format!(";{k}={v}"));
    }
    Ok(out)
}

/// The capability arguments of a request: `portMappings` for the mappings that ask for a
/// host port (containerd skips `hostPort: 0`, which only documents the container port).
pub(crate) fn capability_args(req: &AttachRequest) -> Result<Map<String, Value>> {
    let mut mappings = Vec::new();
    for pm in &req.port_mappings {
        if pm.host_port <= 0 {
            continue;
        }
        if pm.host_port > 65535 || !(1..=65535).contains(&pm.container_port) {
            return Err(Error::InvalidArgument(format!(
                "port mapping {}->{} is out of range",
                pm.host_port, pm.container_port
            )));
        }
        let protocol = match pm.protocol {
            crimux_core::sandbox::Protocol::Tcp => "tcp",
            crimux_core::sandbox::Protocol::Udp => "udp",
            crimux_core::sandbox::Protocol::Sctp => "sctp",
        };
        let mut m = Map::new();
        m.insert("hostPort".into(), pm.host_port.into());
        m.insert("containerPort".into(), pm.container_port.into());
        m.insert("protocol".into(), protocol.into());
        if !pm.host_ip.is_empty() {
            m.insert("hostIP".into(), pm.host_ip.clone().into());
        }
        mappings.push(Value::Object(m));
    }
    let mut caps = Map::new();
    if !mappings.is_empty() {
        caps.insert("portMappings".into(), Value::Array(mappings));
    }
    // go-cni's `dns` capability, which the Windows plugins read; only set when asked for.
    if let Some(dns) = &req.dns {
        caps.insert(
            "dns".into(),
            serde_json::json!({
                "servers": dns.servers,
                "searches": dns.searches,
                "options": dns.options,
            }),
        );
    }
    Ok(caps)
}

/// One plugin's stdin: its own config plus the list's `name` and `cniVersion`, the previous
/// result, and `runtimeConfig` holding only the capabilities the plugin declares.
pub(crate) fn plugin_config(
    list: &NetworkConfigList,
    plugin: &Value,
    prev_result: Option<&Value>,
    caps: &Map<String, Value>,
) -> Result<Vec<u8>> {
    let mut conf = plugin
        .as_object()
        .cloned()
        .ok_or_else(|| Error::Internal("CNI plugin config is not an object".into()))?;
    conf.insert("name".into(), list.name.clone().into());
    conf.insert("cniVersion".into(), list.cni_version.clone().into());
    if let Some(prev) = prev_result {
        conf.insert("prevResult".into(), prev.clone());
    }
    let declared = conf.get("capabilities").and_then(Value::as_object);
    let runtime: Map<String, Value> = caps
        .iter()
        .filter(|(k, _)| declared.and_then(|d| d.get(*k)).and_then(Value::as_bool) == Some(true))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if !runtime.is_empty() {
        conf.insert("runtimeConfig".into(), Value::Object(runtime));
    }
    serde_json::to_vec(&conf).map_err(|e| Error::Internal(format!("encode CNI config: {e}")))
}
