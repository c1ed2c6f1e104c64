//! The files a pod sandbox shares with its containers, under
//! `<state_dir>/sandboxes/<id>/`: `hostname`, `hosts`, `resolv.conf`, and `shm`, a tmpfs
//! bound at `/dev/shm` in every container of the pod (containerd's CRI does the same).
//!
//! Mounting the shm tmpfs and reading the mount table are Linux's and live in
//! `platform::mount`.

use std::path::{Path, PathBuf};

use crimux_core::sandbox::{DnsConfig, NamespaceMode, SandboxConfig};
use crimux_core::{Error, Result};

use super::record::SandboxFiles;
use crate::platform::mount;

/// Size and flags of a pod's `/dev/shm`, as containerd's CRI mounts it (64 MiB).
const SHM_OPTIONS: &str = "nosuid,nodev,noexec,mode=1777,size=65536k";

const HOST_RESOLV_CONF: &str = "/etc/resolv.conf";
const HOST_HOSTS: &str = "/etc/hosts";

/// The lines every pod's `/etc/hosts` starts with (what kubelet and CRI-O write).
const LOCALHOST_LINES: &str = "127.0.0.1\tlocalhost\n\
::1\tlocalhost ip6-localhost ip6-loopback\n\
fe00::0\tip6-localnet\n\
fe00::0\tip6-mcastprefix\n\
fe00::1\tip6-allnodes\n\
fe00::2\tip6-allrouters\n";

/// The sandbox's own directory.
pub(crate) fn sandbox_dir(state_dir: &Path, id: &str) -> PathBuf {
    state_dir.join("sandboxes").join(id)
}

/// Where the files of sandbox `id` go; `shm` only without host IPC.
pub(crate) fn paths(state_dir: &Path, id: &str, config: &SandboxConfig) -> SandboxFiles {
    let dir = sandbox_dir(state_dir, id);
    SandboxFiles {
        hostname: dir.join("hostname"),
        hosts: dir.join("hosts"),
        resolv_conf: dir.join("resolv.conf"),
        shm: (!host_ipc(config)).then(|| dir.join("shm")),
    }
}

pub(crate) fn host_network(config: &SandboxConfig) -> bool {
    config
        .linux
        .as_ref()
        .is_some_and(|l| l.security.namespace_options.network == NamespaceMode::Node)
}

pub(crate) fn host_ipc(config: &SandboxConfig) -> bool {
    config
        .linux
        .as_ref()
        .is_some_and(|l| l.security.namespace_options.ipc == NamespaceMode::Node)
}

/// `resolv.conf` from the pod's DNS config (containerd's order: search, nameservers,
/// options); `None` when the config says nothing, so the host's file is used.
pub(crate) fn resolv_conf(dns: Option<&DnsConfig>) -> Option<String> {
    let dns = dns?;
    let mut out = String::new();
    if !dns.searches.is_empty() {
        out.push_str(&format!("search {}\n", dns.searches.join(" ")));
    }
    for server in &dns.servers {
        out.push_str(&format!("nameserver {server}\n"));
    }
    if !dns.options.is_empty() {
        out.push_str(&format!("options {}\n", dns.options.join(" ")));
    }
    (!out.is_empty()).then_some(out)
}

/// The pod's `/etc/hosts`: the localhost lines, then its own address and hostname.
pub(crate) fn hosts(hostname: &str, ip: Option<&str>) -> String {
    let mut out = LOCALHOST_LINES.to_string();
    if let Some(ip) = ip.filter(|_| !hostname.is_empty()) {
        out.push_str(&format!("{ip}\t{hostname}\n"));
    }
    out
}

/// The pod's hostname: its own, or the node's with host network or when it sets none.
pub(crate) fn hostname(config: &SandboxConfig, node_hostname: &str) -> String {
    if config.hostname.is_empty() || host_network(config) {
        node_hostname.to_string()
    } else {
        config.hostname.clone()
    }
}

fn io_err(what: &str, path: &Path, e: std::io::Error) -> Error {
    Error::Internal(format!("{what} {}: {e}", path.display()))
}

/// Writes hostname, hosts and resolv.conf and mounts the shm tmpfs. On failure the caller
/// runs [`remove`].
pub(crate) async fn create(
    files: &SandboxFiles,
    config: &SandboxConfig,
    node_hostname: &str,
    ip: Option<&str>,
) -> Result<()> {
    let dir = files
        .hostname
        .parent()
        .ok_or_else(|| Error::Internal("sandbox files have no directory".into()))?;
    tokio::fs::create_dir_all(dir)
        .await
        .map_err(|e| io_err("creating", dir, e))?;
    let name = hostname(config, node_hostname);
    write(&files.hostname, format!("{name}\n").as_bytes()).await?;
    let hosts_content = if host_network(config) {
        tokio::fs::read(HOST_HOSTS)
            .await
            .unwrap_or_else(|_| hosts(&name, None).into_bytes())
    } else {
        hosts(&name, ip).into_bytes()
    };
    write(&files.hosts, &hosts_content).await?;
    let resolv = match resolv_conf(config.dns.as_ref()) {
        Some(content) => content.into_bytes(),
        None => tokio::fs::read(HOST_RESOLV_CONF)
            .await
            .map_err(|e| io_err("reading", Path::new(HOST_RESOLV_CONF), e))?,
    };
    write(&files.resolv_conf, &resolv).await?;
    if let Some(shm) = &files.shm {
        tokio::fs::create_dir_all(shm)
            .await
            .map_err(|e| io_err("creating", shm, e))?;
        if !mount::is_mountpoint(shm).await? {
            mount::mount_tmpfs("shm", SHM_OPTIONS, shm).await?;
        }
    }
    Ok(())
}

async fn write(path: &Path, content: &[u8]) -> Result<()> {
    tokio::fs::write(path, content)
        .await
        .map_err(|e| io_err("writing", path, e))
}

/// Unmounts the shm tmpfs (every mount stacked on it) and deletes the sandbox directory.
/// Idempotent.
pub(crate) async fn remove(state_dir: &Path, id: &str) -> Result<()> {
    let dir = sandbox_dir(state_dir, id);
    unmount_shm(&dir.join("shm")).await?;
    match tokio::fs::remove_dir_all(&dir).await {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_err("removing", &dir, e)),
    }
}

/// Unmounts everything mounted on `shm`. Idempotent.
pub(crate) async fn unmount_shm(shm: &Path) -> Result<()> {
    // A mount can be stacked on another; a bounded loop takes them all off.
    for _ in 0..8 {
        if !mount::is_mountpoint(shm).await? {
            return Ok(());
        }
        mount::unmount(shm).await?;
    }
    Err(Error::Internal(format!(
        "{} is still mounted after 8 unmounts",
        shm.display()
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolv_conf_follows_containerd_order() {
        let dns = DnsConfig {
            servers: vec!["10.0.0.10".into(), "8.8.8.8".into()],
            searches: vec!["ns.svc.cluster.local".into(), "cluster.local".into()],
            options: vec!["ndots:5".into()],
        };
        assert_eq!(
            resolv_conf(Some(&dns)).as_deref(),
            Some(
                "search ns.svc.cluster.local cluster.local\nnameserver 10.0.0.10\n\
                 nameserver 8.8.8.8\noptions ndots:5\n"
            )
        );
        assert_eq!(resolv_conf(None), None);
        assert_eq!(resolv_conf(Some(&DnsConfig::default())), None);
    }

    #[test]
    fn hosts_has_localhost_and_the_pod() {
        let h = hosts("web-0", Some("10.1.2.3"));
        assert!(h.starts_with("127.0.0.1\tlocalhost\n"));
        assert!(h.ends_with("10.1.2.3\tweb-0\n"));
        assert!(!hosts("web-0", None).contains("web-0"));
    }
}
